//! What the broker measures, and the one place its numbers are put together: `/metrics`,
//! the HTTP API's overview (the dashboard) and `cortex stat` all read [`Broker::overview`],
//! so they always agree.
//!
//! Two kinds of numbers:
//! - **Durable** ones come from the store's catalog at scrape time (stream lengths, group
//!   lag and pending, and the per-group counters the store keeps in its metadata:
//!   delivered, redelivered, acked, failed attempts, dead-lettered). They survive restarts.
//! - **Process** ones are counted by the writer from each commit's events and timings
//!   (latency histograms, nacks, dead letters by reason), and restart from zero, as
//!   Prometheus counters may.
//!
//! Cardinality is bounded: labels are stream, group, reason and protocol names only (never
//! an agent or message ID), and at most `metrics_streams_max` streams get series of their
//! own (by name order, so membership is stable); the rest are summed under `stream="other"`.

use std::sync::atomic::{AtomicU64, Ordering};

use cortex_storage::{GroupInfo, StreamSummary, DEFAULT_DLQ};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

pub use crate::core::metrics::{Latency, Metrics, OTHER};

/// A [`Latency`] as registered: the registry needs an owned value, this borrows by `Arc`.
#[derive(Debug, Clone)]
struct LatencyMetric(std::sync::Arc<Latency>);

impl EncodeMetric for LatencyMetric {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.0.counts();
        let buckets: Vec<(f64, u64)> = Latency::bounds()
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(counts.iter().copied())
            .collect();
        // The count is the buckets' sum, so the two always agree within one scrape.
        let count = counts.iter().sum();
        let sum = self.0.sum_secs();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Everything an operator looks at, at one moment.
#[derive(Clone, Debug)]
pub struct Overview {
    /// Unix ms when taken.
    pub now_ms: u64,
    /// Seconds since the broker started.
    pub uptime_s: u64,
    /// Streams (namespace 0, the one agents use) with their groups.
    pub streams: Vec<StreamSummary>,
    /// Dead-letter streams (the default one and every policy's) and their lengths.
    pub dlqs: Vec<(Vec<u8>, u64)>,
    /// Open connections per protocol.
    pub connections: Vec<(&'static str, u64)>,
    /// Store files on disk.
    pub storage_bytes: u64,
    /// Zeros written into the journal ahead of the writer, since the store was opened.
    pub journal_ahead_bytes: u64,
    /// The pending lists the writer keeps in memory for acks.
    pub pending_index: cortex_storage::PendingIndexFigures,
    /// The data disk: free space, watermark, refusals, a failed store.
    pub disk: super::disk::DiskState,
    /// Problems the store check after start found.
    pub damaged: u64,
    /// How far broker time is ahead of the system clock (absorbing a step back), in ms.
    pub clock_ahead_ms: u64,
    /// Submissions waiting for the writer.
    pub writer_queue: u64,
    /// Writer commits since start.
    pub commits: u64,
    /// Ops applied since start.
    pub ops: u64,
    /// The cluster as this node sees it (`None`: a single node).
    pub cluster: Option<crate::cluster::Status>,
}

impl Overview {
    /// Builds the dead-letter list from the streams: the default DLQ plus every dead-letter
    /// stream a group's policy names, with their current lengths.
    pub(crate) fn dlqs_of(streams: &[StreamSummary]) -> Vec<(Vec<u8>, u64)> {
        let mut names: Vec<Vec<u8>> = vec![DEFAULT_DLQ.to_vec()];
        for s in streams {
            for g in &s.groups {
                if let Some(p) = &g.policy {
                    names.push(p.dead_letter.clone());
                }
            }
        }
        names.sort();
        names.dedup();
        let len = |n: &[u8]| {
            streams
                .binary_search_by(|s| s.name.as_slice().cmp(n))
                .map_or(0, |i| streams[i].length)
        };
        names.into_iter().map(|n| (n.clone(), len(&n))).collect()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    stream: String,
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DlqLabel {
    dlq: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

type Counters<L> = Family<L, Counter>;
type Gauges<L> = Family<L, Gauge>;

/// The per-group families.
#[derive(Default)]
struct GroupFamilies {
    delivered: Counters<GroupLabel>,
    redelivered: Counters<GroupLabel>,
    acked: Counters<GroupLabel>,
    nacked: Counters<GroupLabel>,
    failed: Counters<GroupLabel>,
    dead: Counters<GroupLabel>,
    lag: Gauges<GroupLabel>,
    pending: Gauges<GroupLabel>,
    consumers: Gauges<GroupLabel>,
    ready: Gauges<GroupLabel>,
}

impl GroupFamilies {
    fn add(&self, l: &GroupLabel, g: &GroupInfo, nacked: u64) {
        let c = &g.counters;
        self.delivered.get_or_create(l).inc_by(c.delivered);
        self.redelivered.get_or_create(l).inc_by(c.redelivered);
        self.acked.get_or_create(l).inc_by(c.acked);
        self.nacked.get_or_create(l).inc_by(nacked);
        self.failed.get_or_create(l).inc_by(c.failures);
        self.dead.get_or_create(l).inc_by(c.dead_lettered);
        let gauge = |v: u64| v.min(i64::MAX as u64) as i64;
        self.lag
            .get_or_create(l)
            .inc_by(gauge(g.lag.map_or(0, |l| l.max(0) as u64)));
        self.pending.get_or_create(l).inc_by(gauge(g.pending));
        self.consumers
            .get_or_create(l)
            .inc_by(gauge(g.consumers as u64));
        self.ready.get_or_create(l).inc_by(gauge(g.ready));
    }

    fn register(self, r: &mut Registry) {
        r.register(
            "group_delivered",
            "Entries handed to a consumer of the group for the first time (durable)",
            self.delivered,
        );
        r.register(
            "group_redelivered",
            "Entries handed out again: history reads, claims and retries (durable)",
            self.redelivered,
        );
        r.register("group_acked", "Entries acknowledged (durable)", self.acked);
        r.register(
            "group_nacked",
            "Entries a consumer reported as failed (NACK or reject) since the broker started",
            self.nacked,
        );
        r.register(
            "group_failed_attempts",
            "Failed delivery attempts: nacks plus ack timeouts (durable)",
            self.failed,
        );
        r.register(
            "group_dead_lettered",
            "Entries the group sent to its dead-letter stream (durable)",
            self.dead,
        );
        r.register(
            "group_lag",
            "Entries of the stream not yet handed to the group (0 when unknown)",
            self.lag,
        );
        r.register(
            "group_pending",
            "Entries delivered to the group and not yet acknowledged",
            self.pending,
        );
        r.register(
            "group_consumers",
            "Consumers known to the group",
            self.consumers,
        );
        r.register(
            "group_retries_ready",
            "Pending entries whose retry is due",
            self.ready,
        );
    }
}

/// Renders an overview plus the process metrics in the Prometheus text format (0.0.4), or
/// in OpenMetrics when `openmetrics`.
pub(crate) fn render(
    o: &Overview,
    m: &Metrics,
    streams_max: usize,
    openmetrics: bool,
) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("cortex");
    let published: Counters<StreamLabel> = Family::default();
    let entries: Gauges<StreamLabel> = Family::default();
    let bytes: Gauges<StreamLabel> = Family::default();
    let groups = GroupFamilies::default();
    for (i, s) in o.streams.iter().enumerate() {
        let (stream, own) = if i < streams_max {
            (text(&s.name), true)
        } else {
            (OTHER.to_string(), false)
        };
        let l = StreamLabel {
            stream: stream.clone(),
        };
        published.get_or_create(&l).inc_by(s.entries_added);
        entries
            .get_or_create(&l)
            .inc_by(s.length.min(i64::MAX as u64) as i64);
        bytes
            .get_or_create(&l)
            .inc_by(s.bytes.min(i64::MAX as u64) as i64);
        for g in &s.groups {
            let gl = GroupLabel {
                stream: stream.clone(),
                group: if own { text(&g.name) } else { OTHER.into() },
            };
            groups.add(&gl, g, m.nacked(&s.name, &g.name));
        }
    }
    reg.register(
        "stream_published",
        "Entries appended to the stream, all time (durable)",
        published,
    );
    reg.register("stream_entries", "Entries stored in the stream", entries);
    reg.register_with_unit(
        "stream",
        "Bytes of fields and values stored in the stream",
        Unit::Bytes,
        bytes,
    );
    groups.register(&mut reg);

    let dlq: Gauges<DlqLabel> = Family::default();
    for (name, len) in &o.dlqs {
        dlq.get_or_create(&DlqLabel { dlq: text(name) })
            .set((*len).min(i64::MAX as u64) as i64);
    }
    reg.register(
        "dlq_entries",
        "Dead letters waiting in each dead-letter stream",
        dlq,
    );
    let dead: Counters<ReasonLabel> = Family::default();
    for (reason, n) in m.dead_by_reason() {
        dead.get_or_create(&ReasonLabel {
            reason: reason.into(),
        })
        .inc_by(n);
    }
    reg.register(
        "dead_letters",
        "Entries dead-lettered since the broker started, by reason",
        dead,
    );
    let conns: Gauges<ProtocolLabel> = Family::default();
    for (p, n) in &o.connections {
        conns
            .get_or_create(&ProtocolLabel {
                protocol: (*p).into(),
            })
            .set(*n as i64);
    }
    reg.register("connections", "Open client connections by protocol", conns);
    reg.register_with_unit(
        "publish_durable",
        "Time from a publish's submission to its durable acknowledgement",
        Unit::Seconds,
        LatencyMetric(m.publish_durable.clone()),
    );
    reg.register_with_unit(
        "delivery_latency",
        "Time from an entry's publication (its ID time) to its first delivery to a group",
        Unit::Seconds,
        LatencyMetric(m.delivery.clone()),
    );
    reg.register_with_unit(
        "commit_duration",
        "One commit: applying a batch and its fsync (its apply only when the sync runs beside the next commit: journal_sync_duration)",
        Unit::Seconds,
        LatencyMetric(m.commit.clone()),
    );
    reg.register_with_unit(
        "journal_sync_duration",
        "One fsync of the journal made beside the next commit, covering every commit applied before it",
        Unit::Seconds,
        LatencyMetric(m.journal_sync.clone()),
    );
    let gauge = |v: u64| {
        let g: Gauge = Gauge::default();
        g.set(v.min(i64::MAX as u64) as i64);
        g
    };
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    reg.register_with_unit(
        "storage",
        "Size of the store's files on disk",
        Unit::Bytes,
        gauge(o.storage_bytes),
    );
    reg.register_with_unit(
        "journal_written_ahead",
        "Zeros written into the journal ahead of the writer while it was idle (a new journal's blocks, and the next journal), so that a later commit's fsync allocates none; since the store was opened",
        Unit::Bytes,
        counter(o.journal_ahead_bytes),
    );
    reg.register_with_unit(
        "pending_index",
        "Heap the writer's in-memory pending lists take (the ack path's index; bounded by the store's pending_index_bytes)",
        Unit::Bytes,
        gauge(o.pending_index.bytes),
    );
    reg.register(
        "pending_index_entries",
        "Pending entries held in the in-memory pending lists",
        gauge(o.pending_index.entries),
    );
    reg.register(
        "pending_index_groups_on_disk",
        "Groups left out of the in-memory pending lists to keep their bound: their acks read the store",
        gauge(o.pending_index.unindexed_groups),
    );
    reg.register_with_unit(
        "disk_free",
        "Free space on the data disk",
        Unit::Bytes,
        gauge(o.disk.free),
    );
    reg.register_with_unit(
        "disk_free_min",
        "New data is refused below this much free space on the data disk (0: off)",
        Unit::Bytes,
        gauge(o.disk.min_free),
    );
    reg.register(
        "disk_low",
        "1 while the data disk is under its free-space watermark and new data is refused",
        gauge(u64::from(o.disk.low)),
    );
    reg.register(
        "disk_refused_writes",
        "Submissions refused because the data disk was under its watermark",
        counter(o.disk.refused),
    );
    reg.register(
        "store_failed",
        "1 while the store is failed (a commit hit a full disk or an I/O error) and writes are refused until it is reopened",
        gauge(u64::from(o.disk.failed.is_some())),
    );
    reg.register(
        "store_damaged",
        "Problems the store check after start found (damaged disk blocks, records failing their CRC, broken indexes)",
        gauge(o.damaged),
    );
    reg.register(
        "store_reopens",
        "Times a failed store was reopened without a restart",
        counter(o.disk.recoveries),
    );
    reg.register_with_unit(
        "clock_ahead",
        "How far broker time is ahead of the system clock after the system clock stepped back (it is absorbed at 1/64 speed)",
        Unit::Seconds,
        {
            let g = Gauge::<f64, AtomicU64>::default();
            g.set(o.clock_ahead_ms as f64 / 1000.0);
            g
        },
    );
    reg.register(
        "writer_queue_depth",
        "Submissions waiting for the writer",
        gauge(o.writer_queue),
    );
    reg.register("commits", "Writer commits", counter(o.commits));
    reg.register(
        "commits_inline",
        "Of the commits, those made on the network thread: the small writes of every client ready at once, gathered while the writer was idle",
        counter(m.inline_commits.load(Ordering::Relaxed)),
    );
    reg.register(
        "push_deliveries_in_commit",
        "Push deliveries handed out by the commit that appended the entry",
        counter(m.pushed_in_commit.load(Ordering::Relaxed)),
    );
    reg.register(
        "push_deliveries_read",
        "Push deliveries a subscription read by itself after the entry's commit",
        counter(m.pushed_read.load(Ordering::Relaxed)),
    );
    reg.register("ops", "Operations applied by the writer", counter(o.ops));
    reg.register(
        "http_requests",
        "HTTP requests answered",
        counter(m.http_requests.load(Ordering::Relaxed)),
    );
    reg.register_with_unit(
        "uptime",
        "Time since the broker started",
        Unit::Seconds,
        gauge(o.uptime_s),
    );
    if let Some(c) = &o.cluster {
        let leads = c.leader == Some(c.id) && c.state == "Leader";
        reg.register(
            "cluster_leader",
            "1 on the cluster's leader, 0 elsewhere",
            gauge(u64::from(leads)),
        );
        reg.register(
            "cluster_has_leader",
            "1 while this node knows a leader (writes can be taken)",
            gauge(u64::from(c.leader.is_some())),
        );
        reg.register("cluster_term", "The current Raft term", gauge(c.term));
        reg.register(
            "cluster_voters",
            "Voters in the membership",
            gauge(c.voters.len() as u64),
        );
        reg.register(
            "cluster_last_log_index",
            "Last Raft log index on this node",
            gauge(c.last_log_index),
        );
        reg.register(
            "cluster_applied_index",
            "Last log index applied to this node's store",
            gauge(c.applied_index),
        );
        let lag: Gauges<NodeLabel> = Family::default();
        for (id, _, behind) in c.followers.iter().flatten() {
            lag.get_or_create(&NodeLabel {
                node: id.to_string(),
            })
            .set((*behind).min(i64::MAX as u64) as i64);
        }
        reg.register(
            "cluster_follower_lag",
            "On the leader: log entries each follower has not yet acknowledged",
            lag,
        );
    }
    let info: Gauges<VersionLabel> = Family::default();
    info.get_or_create(&VersionLabel {
        version: env!("CARGO_PKG_VERSION").into(),
    })
    .set(1);
    reg.register("build_info", "The broker's version (always 1)", info);
    let mut out = String::new();
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &reg)?;
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg)?;
    }
    Ok(out)
}
