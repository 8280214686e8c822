//! What the core measures as it commits: latency histograms and the counts taken from
//! each commit's events. Process numbers: they restart from zero, as Prometheus counters
//! may. `broker::metrics` puts them together with the store's durable numbers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use cortex_storage::{DeadReason, Event};

/// Label of series beyond the per-stream cap, and of their groups.
pub const OTHER: &str = "other";

/// Upper bounds (seconds) of the latency histograms: 50 µs to 10 s, about three per decade.
const LATENCY_BOUNDS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A fixed-bucket latency histogram: lock-free to record, readable by the dashboard (bucket
/// counts) and encodable for Prometheus.
#[derive(Debug)]
pub struct Latency {
    /// Per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Latency {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BOUNDS.partition_point(|&b| b < s);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Upper bounds (seconds; the last bucket, not listed, is `+Inf`).
    pub fn bounds() -> &'static [f64] {
        &LATENCY_BOUNDS
    }

    /// Per-bucket counts (not cumulative), `+Inf` last.
    pub fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// The observations' sum, in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The broker's process-lifetime measurements.
#[derive(Debug, Default)]
pub struct Metrics {
    /// From a publish submitted to its durable acknowledgement.
    pub publish_durable: std::sync::Arc<Latency>,
    /// From an entry's ID time (its publication) to its first delivery to a group.
    pub delivery: std::sync::Arc<Latency>,
    /// One writer commit: apply plus fsync (under `--fsync always`, mostly fsync); a commit
    /// whose sync runs beside the next one (`syncer.rs`): its apply only.
    pub commit: std::sync::Arc<Latency>,
    /// One journal sync on a syncer thread (it covers every commit applied before it).
    pub journal_sync: std::sync::Arc<Latency>,
    /// Dead letters by reason, in the order of [`DeadReason::ALL`].
    dead: [AtomicU64; 5],
    /// Nacked entries per stream, then group; bounded like every labelled series.
    nacked: Mutex<Nacks>,
    /// QUIC connections open.
    pub quic_connections: AtomicU64,
    /// HTTP connections open (live tails included); also the limit's count.
    pub http_connections: AtomicU64,
    /// HTTP live tails (server-sent event streams) open.
    pub http_streams: AtomicU64,
    /// HTTP requests answered.
    pub http_requests: AtomicU64,
    /// Push deliveries handed out by the commit that appended them (a mailbox's read in
    /// the same batch).
    pub pushed_in_commit: AtomicU64,
    /// Push deliveries a subscription read by itself (replays, retries, entries left while
    /// its window was full, appends no leader planned for it).
    pub pushed_read: AtomicU64,
    /// Commits made on the runtime's thread, of the small writes gathered while the writer
    /// was idle (`Core::commit_gathered`).
    pub inline_commits: AtomicU64,
}

/// Nacks by stream, then group, and how many (stream, group) series there are.
#[derive(Debug, Default)]
struct Nacks {
    by_stream: HashMap<Vec<u8>, HashMap<Vec<u8>, u64>>,
    series: usize,
}

impl Nacks {
    fn get(&self, stream: &[u8], group: &[u8]) -> u64 {
        self.by_stream
            .get(stream)
            .and_then(|g| g.get(group))
            .copied()
            .unwrap_or(0)
    }

    /// Adds to a series; a new series past the cap is counted under `other`.
    fn add(&mut self, stream: &[u8], group: &[u8], n: u64) {
        if let Some(c) = self
            .by_stream
            .get_mut(stream)
            .and_then(|g| g.get_mut(group))
        {
            *c += n;
            return;
        }
        let (stream, group) = if self.series < NACKED_SERIES_MAX {
            (stream, group)
        } else {
            (OTHER.as_bytes(), OTHER.as_bytes())
        };
        let groups = self.by_stream.entry(stream.to_vec()).or_default();
        if !groups.contains_key(group) {
            self.series += 1;
        }
        *groups.entry(group.to_vec()).or_default() += n;
    }
}

/// Most (stream, group) pairs whose nacks are counted apart; more go to `other`.
const NACKED_SERIES_MAX: usize = 10_000;

fn reason_index(r: DeadReason) -> usize {
    match r {
        DeadReason::MaxAttempts => 0,
        DeadReason::Expired => 1,
        DeadReason::Stale => 2,
        DeadReason::Rejected => 3,
        DeadReason::Canceled => 4,
    }
}

const REASONS: [&str; 5] = ["max_attempts", "expired", "stale", "rejected", "canceled"];

impl Metrics {
    /// Counts what one commit did (called by the writer after each commit).
    pub fn on_commit(&self, events: &[Event], took: Duration) {
        self.commit.observe(took);
        for e in events {
            match e {
                Event::Delivered { ages_ms, .. } => {
                    for &a in ages_ms {
                        self.delivery.observe(Duration::from_millis(a));
                    }
                }
                Event::DeadLettered { reason, .. } => {
                    self.dead[reason_index(*reason)].fetch_add(1, Ordering::Relaxed);
                }
                Event::Nacked {
                    stream,
                    group,
                    count,
                } => self.nacked.lock().unwrap_or_else(|p| p.into_inner()).add(
                    &stream.name,
                    group,
                    *count,
                ),
                _ => {}
            }
        }
    }

    /// Dead letters since start, by reason name.
    pub fn dead_by_reason(&self) -> Vec<(&'static str, u64)> {
        REASONS
            .iter()
            .zip(&self.dead)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Nacks since start of one group.
    pub fn nacked(&self, stream: &[u8], group: &[u8]) -> u64 {
        self.nacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream, group)
    }
}
