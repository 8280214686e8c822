// cortex patch: the table writer's writeback, paced (see vendor/README.md).
//
// A flush or compaction writes a table into the page cache at the speed of a core and
// `fsync`s it at the end: the device then gets the whole table (16 MiB and more) at once,
// and every journal `fdatasync` the broker makes meanwhile waits behind it. RocksDB's
// `bytes_per_sync` is the remedy used here: every `CHUNK` bytes, the writer waits for the
// writeback of the previous chunk to finish and starts the writeback of this one
// (`sync_file_range`, no device cache flush), so at most about one chunk of the table is in
// flight ahead of a commit's `fdatasync`, and the table's final `fsync` has almost nothing
// left to write. Durability is unchanged: the final `fsync` is still what makes the table
// durable; this only moves the writes earlier. Best-effort: an error here is ignored (the
// final `fsync` reports a real one).

use std::fs::File;

/// Bytes of a table between two pacing points.
pub const CHUNK: u64 = 512 * 1_024;

/// Where the writeback of a table file stands.
#[derive(Default)]
pub struct Pace {
    /// Start of the range whose writeback was started last.
    started_from: u64,
    /// End of that range: everything before `started_from` was waited for.
    started_to: u64,
}

impl Pace {
    /// Whether a table of about `approx` bytes has reached the next pacing point.
    pub fn due(&self, approx: u64) -> bool {
        approx >= self.started_to + CHUNK
    }

    /// Called with the file's written length (what has left the writer's buffer): at each
    /// `CHUNK`, waits for the previous range and starts the next.
    pub fn after_write(&mut self, file: &File, written: u64) {
        self.step(written, |from, len, flags| range(file, from, len, flags));
    }

    /// [`Pace::after_write`]'s bookkeeping, with the system call given.
    fn step(&mut self, written: u64, mut sync: impl FnMut(u64, u64, u32)) {
        if !self.due(written) {
            return;
        }
        sync(
            self.started_from,
            self.started_to - self.started_from,
            libc_flags::WAIT_BEFORE,
        );
        sync(
            self.started_to,
            written - self.started_to,
            libc_flags::WRITE,
        );
        self.started_from = self.started_to;
        self.started_to = written;
    }
}

#[cfg(target_os = "linux")]
mod libc_flags {
    pub const WAIT_BEFORE: u32 = libc::SYNC_FILE_RANGE_WAIT_BEFORE;
    pub const WRITE: u32 = libc::SYNC_FILE_RANGE_WRITE;
}

#[cfg(not(target_os = "linux"))]
mod libc_flags {
    pub const WAIT_BEFORE: u32 = 1;
    pub const WRITE: u32 = 2;
}

#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "a plain system call")]
#[expect(
    clippy::cast_possible_wrap,
    reason = "table files are far below i64::MAX"
)]
fn range(file: &File, from: u64, len: u64, flags: u32) {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return;
    }
    // SAFETY: a plain system call on an open descriptor; it reads no memory of ours.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), from as i64, len as i64, flags) };
    if rc != 0 {
        log::debug!(
            "sync_file_range on a table file: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn range(_file: &File, _from: u64, _len: u64, _flags: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writeback ranges started follow each other without gap or overlap, each of at
    /// least `CHUNK` bytes and within what was written; each wait is for the range started
    /// just before.
    #[test]
    fn writeback_is_started_chunk_by_chunk_and_waited_for_in_order() {
        let mut pace = Pace::default();
        let mut calls = Vec::new();
        let mut written = 0;
        for step in 0..3_000u64 {
            // Blocks of varying size, as compressed blocks are.
            written += 1_000 + (step * 7_919) % 6_000;
            pace.step(written, |from, len, flags| {
                calls.push((from, len, flags, written))
            });
        }
        let starts: Vec<_> = calls.iter().filter(|c| c.2 == libc_flags::WRITE).collect();
        let waits: Vec<_> = calls
            .iter()
            .filter(|c| c.2 == libc_flags::WAIT_BEFORE)
            .collect();
        assert!(
            starts.len() > 10,
            "{} ranges for {written} bytes",
            starts.len()
        );
        assert_eq!(starts.len(), waits.len());
        let mut prev = (0, 0);
        for (i, (&&(from, len, _, at), &&(wfrom, wlen, _, _))) in
            starts.iter().zip(&waits).enumerate()
        {
            assert_eq!(from, prev.0 + prev.1, "range {i} leaves a gap or overlaps");
            assert!(len >= CHUNK, "range {i} is {len} bytes");
            assert!(from + len <= at, "range {i} goes past what was written");
            assert_eq!((wfrom, wlen), prev, "wait {i} is not for the range before");
            prev = (from, len);
        }
    }
}
