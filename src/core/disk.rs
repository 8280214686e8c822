//! The data disk: a free-space watermark that refuses new data before the disk is full, and
//! the state of a store whose commit failed (a full disk or an I/O error), which the writer
//! reopens once space is back.
//!
//! Why a watermark: fjall poisons its database on the first failed persist (a full disk
//! included), and a store that ran out of space mid-flush needs the space back before it can
//! take anything. Refusing *new* data (publishes, re-drives, new groups) while `min_free`
//! bytes are still free keeps room for what frees space or is small: acks, nacks, deletes,
//! trims, group reads, and the journal and compaction work behind them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use cortex_storage::Op;

/// How often the sampler reads the disk's free space.
pub(super) const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The data disk as last sampled.
pub struct DiskWatch {
    path: PathBuf,
    /// Writes of new data are refused below this many free bytes (0: never).
    min_free: u64,
    /// Free bytes (for unprivileged users: `f_bavail`) at the last sample.
    free: AtomicU64,
    /// What the new data admitted since the last sample will take on the disk, as
    /// estimated by [`disk_cost`]: the free space now is at most `free` less this.
    admitted: AtomicU64,
    /// Below the watermark now.
    low: AtomicBool,
    /// Submissions refused for want of space.
    pub(super) refused: AtomicU64,
    /// Why the store failed, while it is being reopened.
    failed: Mutex<Option<String>>,
    /// Times a failed store was reopened.
    pub(super) recoveries: AtomicU64,
}

/// The disk's state, for metrics and errors.
#[derive(Clone, Debug, Default)]
pub struct DiskState {
    /// Free bytes at the last sample.
    pub free: u64,
    /// The watermark (0: off).
    pub min_free: u64,
    /// New data is refused.
    pub low: bool,
    /// The store failed and is being reopened: every write is refused.
    pub failed: Option<String>,
    /// Submissions refused for want of space since start.
    pub refused: u64,
    /// Failed stores reopened since start.
    pub recoveries: u64,
}

/// Free bytes on the filesystem holding `path`.
pub(crate) fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// What an op that adds data (a publish, a re-drive, a new group: what the watermark
/// refuses) will take on the disk, over-estimated: its bytes twice (the
/// journal now, a table when the memtable is flushed) plus a record's overhead. A re-drive
/// copies entries the op does not name: it counts its limit times a small entry, at least
/// 64 KiB. Zero for an op that adds nothing (acks, deletes, trims, reads).
fn disk_cost(op: &Op) -> u64 {
    const RECORD: u64 = 128;
    let bytes = match op {
        Op::Append { stream, fields, .. } => fields
            .iter()
            .map(|(f, v)| (f.len() + v.len() + 8) as u64)
            .sum::<u64>()
            .saturating_add(stream.name.len() as u64 + RECORD),
        Op::DlqRedrive { limit, .. } => (*limit as u64).saturating_mul(RECORD * 4).max(64 << 10),
        Op::CreateGroup { stream, group, .. } => (stream.name.len() + group.len()) as u64 + RECORD,
        _ => 0,
    };
    bytes.saturating_mul(2)
}

impl DiskWatch {
    pub(super) fn new(path: PathBuf, min_free: u64) -> DiskWatch {
        let w = DiskWatch {
            path,
            min_free,
            free: AtomicU64::new(u64::MAX),
            admitted: AtomicU64::new(0),
            low: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            failed: Mutex::new(None),
            recoveries: AtomicU64::new(0),
        };
        w.sample();
        w
    }

    /// Reads the free space and updates the low flag. Leaving the low state needs an eighth
    /// of the watermark more, so a disk hovering at the mark does not flap.
    pub(super) fn sample(&self) {
        // Cleared before the read: what is admitted meanwhile counts twice (in the free
        // space, if already written, and here), never not at all.
        self.admitted.store(0, Ordering::Relaxed);
        let free = match free_bytes(&self.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cannot read free space of {}: {e}", self.path.display());
                return;
            }
        };
        self.free.store(free, Ordering::Relaxed);
        if self.min_free == 0 {
            return;
        }
        let was = self.low.load(Ordering::Relaxed);
        let low = if was {
            free < self.min_free.saturating_add(self.min_free / 8)
        } else {
            free < self.min_free
        };
        if low != was {
            self.low.store(low, Ordering::Relaxed);
            if low {
                tracing::warn!(
                    "the data disk has {} free, under the minimum of {}: publishes are refused until space is freed",
                    mib(free),
                    mib(self.min_free)
                );
            } else {
                tracing::info!(
                    "the data disk has {} free again: publishes are accepted",
                    mib(free)
                );
            }
        }
    }

    /// The refusal for a submission that adds data while the disk is low.
    ///
    /// The sampler reads the disk every [`SAMPLE_EVERY`]; a fast publisher writes megabytes
    /// in that time. So each admitted submission's estimated cost is counted against the
    /// last sample, and once the estimate reaches the watermark the disk is read again, here
    /// (one `statvfs`, only near the mark). What can pass the mark is then what is admitted
    /// but not yet written, not a sampling period's worth of publishes.
    pub(super) fn refusal(&self, ops: &[Op]) -> Option<String> {
        if self.min_free == 0 {
            return None;
        }
        let cost: u64 = ops.iter().map(disk_cost).sum();
        if cost == 0 {
            return None;
        }
        if !self.low.load(Ordering::Relaxed) {
            let since = self
                .admitted
                .fetch_add(cost, Ordering::Relaxed)
                .saturating_add(cost);
            let free = self.free.load(Ordering::Relaxed);
            if free.saturating_sub(since) >= self.min_free {
                return None;
            }
            self.sample();
            if !self.low.load(Ordering::Relaxed) {
                // The op's cost goes on the new sample's count.
                self.admitted.fetch_add(cost, Ordering::Relaxed);
                return None;
            }
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Some(format!(
            "the data disk has {} free, under the minimum of {} (disk_free_min_bytes): new data is refused until space is freed; acks and reads still work",
            mib(self.free.load(Ordering::Relaxed)),
            mib(self.min_free)
        ))
    }

    /// True when there is room to reopen a failed store: half the watermark free (1 MiB
    /// without one). Reopening replays the journal and may flush it; what comes after is
    /// what the watermark admits (acks first, new data above the mark).
    pub(super) fn room_to_recover(&self) -> bool {
        self.sample();
        let need = if self.min_free == 0 {
            1 << 20
        } else {
            self.min_free / 2
        };
        self.free.load(Ordering::Relaxed) >= need
    }

    pub(super) fn set_failed(&self, why: Option<String>) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    pub(super) fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn state(&self) -> DiskState {
        DiskState {
            free: self.free.load(Ordering::Relaxed),
            min_free: self.min_free,
            low: self.low.load(Ordering::Relaxed),
            failed: self.failed(),
            refused: self.refused.load(Ordering::Relaxed),
            recoveries: self.recoveries.load(Ordering::Relaxed),
        }
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

impl super::Core {
    /// Samples the data disk's free space and writes an alert at each change of state:
    /// under the watermark (`disk_low`), above it again (`disk_ok`), a failed store reopened
    /// (`store_reopened`). While a failed store waits, it wakes the writer to reopen it.
    pub(super) async fn disk_loop(self) {
        let mut every = tokio::time::interval(SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut low, mut failed) = (false, false);
        while !self.stopping() {
            every.tick().await;
            self.disk.sample();
            let d = self.disk.state();
            let mut alerts = Vec::new();
            if d.failed.is_some() != failed {
                failed = d.failed.is_some();
                if !failed {
                    alerts.push(super::alerts::disk_alert(
                        "store_reopened",
                        "the store was reopened after a failed commit: writes are accepted again",
                    ));
                }
            }
            // A failed store cannot take an alert: the watermark's change is noticed (and
            // written) once the store is back.
            if !failed && d.low != low {
                low = d.low;
                alerts.push(if low {
                    super::alerts::disk_alert(
                        "disk_low",
                        &format!(
                            "the data disk has {} bytes free, under the minimum of {}: publishes are refused",
                            d.free, d.min_free
                        ),
                    )
                } else {
                    super::alerts::disk_alert(
                        "disk_ok",
                        &format!(
                            "the data disk has {} bytes free again: publishes are accepted",
                            d.free
                        ),
                    )
                });
            }
            if !alerts.is_empty() && self.leads() {
                if let Err(e) = self.submit_system(alerts).await {
                    tracing::warn!("could not write the disk alert: {e}");
                }
            }
            if failed {
                // An empty submission: the writer tries to reopen the store.
                self.nudge_writer();
            }
        }
    }

    /// Checks every record and index of the store after start, in the background (the
    /// same check as `cortex verify`): damage on the disk is logged with its stream and IDs,
    /// counted in `cortex_store_damaged` and written to the alert stream. Damaged entries
    /// are never served: a read that meets one fails with a storage error naming it.
    pub(super) async fn scrub(self) {
        let store = self.store();
        let started = std::time::Instant::now();
        let report = match tokio::task::spawn_blocking(move || store.scrub()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!("the store check after start failed: {e}");
                return;
            }
            Err(e) => {
                tracing::error!("the store check after start did not finish: {e}");
                return;
            }
        };
        let n = report.damage.len() as u64;
        self.stats.damaged.store(n, Ordering::Relaxed);
        for d in &report.damage {
            let ids: Vec<String> = d.ids.iter().map(ToString::to_string).collect();
            tracing::error!(
                stream = %String::from_utf8_lossy(&d.stream),
                ids = %ids.join(","),
                "store damage: {}",
                d.what
            );
        }
        tracing::info!(
            "store checked in {:?}: {} streams, {} entries, {} problems",
            started.elapsed(),
            report.streams,
            report.entries,
            n
        );
        if n > 0 && self.leads() {
            let first = &report.damage[0];
            let op = super::alerts::damage_alert(&format!(
                "the store check after start found {n} problems; first: stream '{}': {} (run `cortex verify` on a copy for the full list)",
                String::from_utf8_lossy(&first.stream),
                first.what
            ));
            if let Err(e) = self.submit_system(vec![op]).await {
                tracing::warn!("could not write the damage alert: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_has_hysteresis_and_zero_turns_it_off() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        let off = DiskWatch::new(dir.path().into(), 0);
        assert!(!off.state().low);
        // A watermark above the free space: low, and appends are refused, acks are not.
        let w = DiskWatch::new(dir.path().into(), free.saturating_mul(2).max(1 << 40));
        assert!(w.state().low);
        let append = Op::Append {
            stream: cortex_storage::StreamKey::new(0, b"s".to_vec()),
            id: cortex_storage::IdSpec::Auto,
            fields: vec![(b"f".to_vec(), b"v".to_vec())],
            meta: cortex_storage::Meta::default(),
            idempotency_key: None,
            no_mkstream: false,
            trim: None,
        };
        assert!(w.refusal(std::slice::from_ref(&append)).is_some());
        let ack = Op::Ack {
            stream: cortex_storage::StreamKey::new(0, b"s".to_vec()),
            group: b"g".to_vec(),
            ids: Vec::new(),
        };
        assert!(w.refusal(&[ack]).is_none());
        assert_eq!(w.state().refused, 1);
    }
}
