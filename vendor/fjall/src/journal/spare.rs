// cortex patch (whole file): the next journal, written before it is needed.
//
// The filler (`prefill.rs`) writes a new journal's blocks while the writer appends to the
// same file. Every chunk it allocates changes that file's block map, so the writer's next
// `fdatasync` must wait for the file system's journal commit, the very cost the filler is
// there to spare, and it also waits for the chunk's writeback. With one client's commits
// (about 200 B each, 14,000 a second) the filler runs for a second or more of each journal,
// and the slow commits of a run cluster there (vendor/README.md has the figures).
//
// So, once the active journal is past `SPARE_AFTER` (fjall rotates a journal once about
// 64 MB are written into it), a thread writes the NEXT journal ahead of time, in a file of
// its own (`SPARE_NAME`, which recovery skips: it does not end in `.jnl`): preallocated to
// the journal's length and all of it written as zeros, 64 KiB at a time, then `sync_all`,
// so that its blocks and block map are on disk before any commit lands in it. It writes
// only while the writer is idle: after any sync of a commit it waits until 10 ms have
// passed without one, so a commit meets at most one chunk in flight, and only after a
// pause. (Paced as the filler is, 1 ms after each chunk, it took 15 % off 1 KB XADDs at
// `-c 50 -P 1` while it ran.) A busy writer leaves it unfinished; the rotation then creates
// its journal as fjall does (sparse, with the filler), and the spare goes on for the next.
// A ready spare is renamed into place by the rotation (under the journal lock; the
// rotation's directory `fsync` makes the name durable, as it does for a new file), and the
// writer's syncs in it write data only. Zeros read as the end of a journal at recovery,
// exactly as the holes did, so a journal made from a spare recovers as any other.
//
// Best-effort, like the filler: an I/O error, a cancel, or less than `MIN_FREE_BYTES` free
// stops it and removes the file. Dropping the spare (the database closes) cancels it, waits
// for its thread, and removes the file unless it was taken; recovery removes one left by a
// process that did not close.

use super::prefill::{has_room, write_out, Ahead, CHUNK, IDLE, ZEROS};
use super::writer::PRE_ALLOCATED_BYTES;
use std::{
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

/// The spare's file name in the journal's folder: not a `.jnl`, so recovery skips it.
pub const SPARE_NAME: &str = "next.jnl-spare";

/// The active journal's length past which its spare is started: a database that never
/// writes this much into a journal (tests, idle brokers) never pays for one, and one that
/// does has as much again before the rotation for the spare to be written.
#[cfg(not(test))]
pub const SPARE_AFTER: u64 = 32 << 20;
/// Smaller in tests, which write that much first.
#[cfg(test)]
pub const SPARE_AFTER: u64 = 2 << 20;

/// What the spare's thread and its owner share.
struct Shared {
    cancel: AtomicBool,
    ready: AtomicBool,
    ahead: Arc<Ahead>,
}

/// A journal being written ahead of its rotation.
pub struct Spare {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Spare {
    /// Starts writing a spare journal in `folder`; `None` when its thread cannot be
    /// started (the rotation creates its journal as fjall does).
    pub fn start(folder: &Path, ahead: Arc<Ahead>) -> Option<Self> {
        let path = folder.join(SPARE_NAME);
        let shared = Arc::new(Shared {
            cancel: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            ahead,
        });
        let theirs = shared.clone();
        let at = path.clone();
        let thread = std::thread::Builder::new()
            .name("fjall:jnl-spare".into())
            .spawn(move || match write_spare(&at, &theirs) {
                Ok(true) => theirs.ready.store(true, Ordering::Release),
                Ok(false) => {
                    let _ = std::fs::remove_file(&at);
                }
                Err(e) => {
                    log::debug!("journal spare at {} not written: {e:?}", at.display());
                    let _ = std::fs::remove_file(&at);
                }
            })
            .ok()?;
        Some(Self {
            path,
            shared,
            thread: Some(thread),
        })
    }

    /// Whether the spare is written and synced.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The spare, renamed to `path` and opened for writing at its start, if it is ready and
    /// nothing is at `path`. The caller makes the name durable (`fsync` of the folder).
    pub fn take(&mut self, path: &Path) -> Option<File> {
        if !self.is_ready() || path.try_exists().unwrap_or(true) {
            return None;
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::fs::rename(&self.path, path).ok()?;
        // Taken: from here on the file is the journal's, and dropping `self` leaves it be.
        self.shared.ready.store(false, Ordering::Release);
        self.path = PathBuf::new();
        match OpenOptions::new().write(true).open(path) {
            Ok(file) => Some(file),
            Err(e) => {
                // The name is there with zeros only: recovery reads it as an empty journal.
                // Without a file to write, fjall's own create fails on the name, as it would
                // on any leftover; remove it so that the caller can create the journal.
                log::debug!(
                    "journal spare renamed to {} but not opened: {e:?}",
                    path.display()
                );
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }
}

/// The spare's thread: preallocates the journal's length and writes all of it.
/// `Ok(true)` once written and synced, `Ok(false)` when cancelled or short of room.
fn write_spare(path: &Path, shared: &Shared) -> std::io::Result<bool> {
    // A spare left by a process that stopped before its rotation: start again.
    let _ = std::fs::remove_file(path);
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.set_len(PRE_ALLOCATED_BYTES)?;
    let mut pos = 0;
    let mut seen = shared.ahead.syncs.load(Ordering::Relaxed);
    while pos < PRE_ALLOCATED_BYTES {
        if shared.cancel.load(Ordering::Relaxed) {
            return Ok(false);
        }
        // The writer synced a commit since the last look: it is not idle.
        std::thread::sleep(IDLE);
        let now = shared.ahead.syncs.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            continue;
        }
        if !has_room(&file) {
            return Ok(false);
        }
        // Idle: chunks back to back until the writer syncs again.
        while pos < PRE_ALLOCATED_BYTES && shared.ahead.syncs.load(Ordering::Relaxed) == seen {
            if shared.cancel.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let len = (PRE_ALLOCATED_BYTES - pos).min(CHUNK as u64) as usize;
            file.write_all_at(&ZEROS[..len], pos)?;
            write_out(&file, pos, len)?;
            shared
                .ahead
                .written
                .fetch_add(len as u64, Ordering::Relaxed);
            pos += len as u64;
        }
    }
    file.sync_all()?;
    Ok(!shared.cancel.load(Ordering::Relaxed))
}

impl Drop for Spare {
    /// Stops the thread and waits for it (at most one chunk, or its 10 ms look at the
    /// writer), and removes a spare that was not taken.
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
