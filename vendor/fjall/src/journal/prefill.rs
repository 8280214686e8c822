// cortex patch (whole file): a new journal's blocks written ahead of the writer.
//
// A journal is created sparse: `set_len` of 64 MiB, no blocks. A commit whose bytes reach a
// new 4 KiB block then makes its `fdatasync` allocate that block and write the inode's block
// map as well (ext4 `ext4_write_inode`), which measured 1.5-2x the sync of a block that was
// already written (cortex's `benches/fsync-alloc.py`). So, once the writer is past
// `START_AFTER` and has synced a commit, a background thread writes zeros into the journal's
// remaining preallocated bytes, from the end backwards, until it meets the writer: 64 KiB at
// a time, each written out to the device (`sync_file_range`, no cache flush), with a 1 ms
// pause after each, and one `fdatasync` at the end. It writes only while the writer is idle,
// as the spare does (`spare.rs`): after any sync of a commit it waits until 10 ms have passed
// without one, and it looks again after every chunk. The disk serves one request at a time,
// so a commit's sync queued behind a chunk waits for it: written beside a lone client's
// commits, the chunks made most of that client's syncs over 0.6 ms (README, twenty-first
// session). Zeros read as the end of the journal at recovery, exactly as the holes did.
//
// The handshake keeps the filler from ever writing over the writer's bytes:
// - the writer publishes the end of each write (`writer_end`) before it makes it, then reads
//   the lowest offset the filler has claimed (`claimed_from`);
// - the filler publishes a chunk's claim, then reads `writer_end`, and gives the chunk up
//   (and stops) if the writer has reached it;
// - both pairs are `SeqCst`, so at least one side sees the other; a writer that sees a claim
//   reaching its bytes waits on `chunk`, which the filler holds while it writes a chunk.
//   After that the filler's next claim sees the writer and stops, and the writer's bytes land
//   after the zeros.
// The filler is best-effort: an I/O error, a cancel (the journal was rotated or closed: the
// writer's drop waits for the filler to stop) or less than `MIN_FREE_BYTES` free on the file
// system stops it, and the rest stays sparse. Only new journals are filled: one reopened at
// recovery is appended to with `O_APPEND` after recovery truncates it, and stays sparse until
// the next rotation.

use std::{
    fs::File,
    io::{Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

/// The writer's offset past which the filler starts: a database that never writes this much
/// into a journal (tests, idle brokers) never pays for filling one.
pub const START_AFTER: u64 = 1 << 20;

/// Bytes the filler writes out at a time: a commit's sync that meets a chunk in flight
/// (not yet written out by the filler) writes at most this much more; and a chunk's
/// allocation dirties the inode once, which the next commit's sync writes.
pub(super) const CHUNK: usize = 64 << 10;

/// The filler's pause after each chunk: it keeps the filler under about 50 MB/s, so that a
/// writer whose syncs are seconds apart (`--fsync everysec`), idle to the filler between
/// them, does not share the disk with a filler writing flat out.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// How long the writer must go without a sync before the filler (and the spare) writes: the
/// writer is idle then.
pub(super) const IDLE: std::time::Duration = std::time::Duration::from_millis(10);

/// The filler writes only while the file system keeps this much free: filling takes the
/// journal's space up front, and a nearly full disk should run out on real data.
const MIN_FREE_BYTES: u64 = 1 << 30;

pub(super) static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// What the journal writer shares, across its rotations, with the threads that write zeros
/// ahead of it (this filler, and the spare: `spare.rs`).
#[derive(Default)]
pub struct Ahead {
    /// The writer's syncs, counted (`Writer::persist`, `Writer::sync_handle`): both write
    /// only while this stands still. The journal's own syncs (its seal at rotation, before
    /// a flush, at open) are not counted (`Writer::persist_uncounted`).
    pub syncs: AtomicU64,
    /// The zeros both have written out, in bytes (`Database::journal_written_ahead`).
    pub written: AtomicU64,
}

#[derive(Default)]
struct Shared {
    /// The end of the bytes the writer has written or is about to write.
    writer_end: AtomicU64,
    /// The lowest offset the filler has claimed; it writes nothing below it.
    claimed_from: AtomicU64,
    /// Set once the filler will write nothing more.
    stopped: AtomicBool,
    /// Asks the filler to stop.
    cancel: AtomicBool,
    /// The writer's: its syncs pace the filler, which counts its zeros there.
    ahead: Arc<Ahead>,
    /// Held by the filler while it writes a chunk.
    chunk: Mutex<()>,
}

/// The journal's file, as the writer's `BufWriter` sees it: every write goes through the
/// handshake while a filler may be running.
pub struct JournalFile {
    file: File,
    /// Where the next write lands: tracked for files this module may fill, which are opened
    /// without `O_APPEND` and positioned only by their writes.
    pos: u64,
    /// The preallocated length, for files this module may fill.
    fill_end: Option<u64>,
    filler: Option<Arc<Shared>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Kept across rotations ([`JournalFile::share`]); the filler gets a handle.
    ahead: Arc<Ahead>,
}

impl JournalFile {
    /// A file the writer appends to with `O_APPEND` (a journal reopened at recovery, whose
    /// length recovery may still truncate): never filled.
    pub fn plain(file: File) -> Self {
        Self {
            file,
            pos: 0,
            fill_end: None,
            filler: None,
            thread: None,
            ahead: Arc::default(),
        }
    }

    /// A new journal, positioned at 0, whose bytes up to `len` are preallocated holes.
    pub fn fillable(file: File, len: u64) -> Self {
        let mut this = Self::plain(file);
        this.fill_end = Some(len);
        this
    }

    pub fn get_ref(&self) -> &File {
        &self.file
    }

    pub fn get_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Whether a filler started and has stopped: for tests.
    #[cfg(test)]
    pub fn fill_stopped(&self) -> Option<bool> {
        self.filler
            .as_ref()
            .map(|shared| shared.stopped.load(Ordering::Acquire))
    }

    /// Whether `file`'s file system has room for a filler: for tests.
    #[cfg(test)]
    pub fn has_room(&self) -> bool {
        has_room(&self.file)
    }

    /// Where the next write lands.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The writer's syncs and the zeros written ahead of it, which its filler shares.
    pub fn ahead(&self) -> &Arc<Ahead> {
        &self.ahead
    }

    /// Takes over the last journal's [`Ahead`] (a rotation, before anything is written, so
    /// before a filler can start).
    pub fn share(&mut self, ahead: Arc<Ahead>) {
        self.ahead = ahead;
    }

    /// Starts the filler once the writer is past `START_AFTER`, if it syncs at all: only a
    /// sync pays for a hole, so a journal whose writer never syncs a commit is never filled
    /// (the journal's own syncs, at rotation and before flushes, do not count).
    fn maybe_start(&mut self) {
        let Some(end) = self.fill_end else {
            return;
        };
        if self.pos < START_AFTER || self.ahead.syncs.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.fill_end = None;
        if end <= self.pos {
            return;
        }
        let Ok(file) = self.file.try_clone() else {
            return;
        };
        let shared = Arc::new(Shared {
            writer_end: AtomicU64::new(self.pos),
            claimed_from: AtomicU64::new(end),
            ahead: self.ahead.clone(),
            ..Shared::default()
        });
        let theirs = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("fjall:jnl-fill".into())
            .spawn(move || fill(&file, end, &theirs));
        if let Ok(thread) = spawned {
            self.filler = Some(shared);
            self.thread = Some(thread);
        }
    }

    /// The writer's side of the handshake, before it writes up to `end`.
    fn before_write(&self, end: u64) {
        let Some(shared) = &self.filler else {
            return;
        };
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        shared.writer_end.store(end, Ordering::SeqCst);
        if shared.claimed_from.load(Ordering::SeqCst) < end {
            // The filler holds, or is about to take, a chunk that reaches these bytes: wait
            // for it to be written; the filler's next claim sees `writer_end` and stops.
            drop(shared.chunk.lock());
        }
    }
}

fn fill(file: &File, end: u64, shared: &Shared) {
    let mut low = end;
    let mut seen = shared.ahead.syncs.load(Ordering::Relaxed);
    'fill: while !shared.cancel.load(Ordering::Relaxed) {
        // The writer synced a commit since the last look: it is not idle.
        pause(shared, IDLE);
        let now = shared.ahead.syncs.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            continue;
        }
        if !has_room(file) {
            break;
        }
        // Idle: chunks until the writer syncs again.
        while shared.ahead.syncs.load(Ordering::Relaxed) == seen {
            if shared.cancel.load(Ordering::Relaxed) {
                break 'fill;
            }
            let from = low.saturating_sub(CHUNK as u64);
            if from == low {
                break 'fill;
            }
            // At most CHUNK.
            let len = (low - from) as usize;
            let written = {
                let _chunk = shared.chunk.lock();
                shared.claimed_from.store(from, Ordering::SeqCst);
                if shared.writer_end.load(Ordering::SeqCst) > from {
                    break 'fill;
                }
                file.write_all_at(&ZEROS[..len], from)
            };
            if written.and_then(|()| write_out(file, from, len)).is_err() {
                break 'fill;
            }
            shared
                .ahead
                .written
                .fetch_add(len as u64, Ordering::Relaxed);
            low = from;
            pause(shared, PAUSE);
        }
    }
    shared.stopped.store(true, Ordering::Release);
    if low < end {
        let _ = file.sync_data();
    }
}

/// Waits `d`, or less once the filler is cancelled: the writer's drop unparks it, so a
/// rotation (under the journal's lock) does not wait out the filler's 10 ms look at the
/// writer.
fn pause(shared: &Shared, d: std::time::Duration) {
    let until = std::time::Instant::now() + d;
    while !shared.cancel.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::park_timeout(left);
    }
}

/// Writes a chunk out to the device and waits for it, without a cache flush (unlike
/// `fdatasync`, which would queue every commit's flush behind the filler's).
#[allow(unsafe_code)]
pub(super) fn write_out(file: &File, from: u64, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain system call on an open descriptor.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), from as i64, len as i64, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the file system holding `file` keeps `MIN_FREE_BYTES` free.
#[allow(unsafe_code)]
pub(super) fn has_room(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `fstatvfs` only writes the zeroed struct it is given, and `file` is open.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::fstatvfs(file.as_raw_fd(), &raw mut st) != 0 {
            return false;
        }
        u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)) >= MIN_FREE_BYTES
    }
}

impl Drop for JournalFile {
    /// Stops the filler and waits for it (at most the chunk it is writing: its pauses are
    /// cut short), so that nothing writes into a journal after its writer is gone: a rotated
    /// journal is sealed, and a closed store's journals may be trimmed or copied at once.
    fn drop(&mut self) {
        if let Some(shared) = &self.filler {
            shared.cancel.store(true, Ordering::Relaxed);
        }
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Write for JournalFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.before_write(self.pos + buf.len() as u64);
        let n = self.file.write(buf)?;
        self.pos += n as u64;
        self.maybe_start();
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for JournalFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let at = self.file.seek(pos)?;
        self.pos = at;
        Ok(at)
    }
}
