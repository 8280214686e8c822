//! Reads: a [`Query`] and its [`Answer`], the shapes they carry (XINFO, XPENDING and DLQ
//! listings), and the filter a DLQ read or move applies. Types only: `read` evaluates a
//! query against any consistent view; [`crate::Store::query`] answers from the last commit
//! and [`crate::Op::Query`] inside a batch.

use bincode::{Decode, Encode};

use crate::id::{StreamId, StreamKey};
use crate::meta::{DeliveryPolicy, PendingState};
use crate::record::{DeadLetter, DeadReason, Entry};

/// Where an `XREAD` of one stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ReadStart {
    /// Entries after this ID.
    After(StreamId),
    /// `$`: only entries added from now on (nothing, on a first read).
    New,
    /// `+`: the last entry, or the next one added to an empty stream.
    LastEntry,
}

/// A read. Every count a peer controls is bounded by the caller (the fronts pass Redis's
/// counts through; the broker runs large reads off the network thread).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[non_exhaustive]
pub enum Query {
    /// XRANGE / XREVRANGE: entries in `[start, end]`, newest first when `rev`.
    Range {
        /// Stream.
        stream: StreamKey,
        /// Lowest ID.
        start: StreamId,
        /// Highest ID.
        end: StreamId,
        /// At most this many (`None`: all).
        count: Option<usize>,
        /// Newest first.
        rev: bool,
    },
    /// XREAD over several streams.
    Read {
        /// Streams and where each starts.
        streams: Vec<(StreamKey, ReadStart)>,
        /// At most this many per stream (`None`: all).
        count: Option<usize>,
    },
    /// XINFO STREAM, XLEN, TYPE: the stream's facts with its first and last entries.
    Stream {
        /// Stream.
        stream: StreamKey,
    },
    /// EXISTS: how many of these streams exist.
    Exist {
        /// Streams (repeats count again, as in Redis).
        streams: Vec<StreamKey>,
    },
    /// KEYS / SCAN / DBSIZE: the stream names of a namespace, sorted.
    Names {
        /// Namespace.
        ns: u16,
    },
    /// XINFO GROUPS.
    Groups {
        /// Stream.
        stream: StreamKey,
    },
    /// XINFO CONSUMERS.
    Consumers {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
    },
    /// XPENDING's summary.
    PendingSummary {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
    },
    /// XPENDING's extended form.
    Pending {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// Bounds, count, consumer, idle filter.
        query: PendingQuery,
    },
    /// A group's delivery policy.
    Policy {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
    },
    /// Dead letters matching a filter.
    DeadLetters {
        /// The dead-letter stream.
        dlq: StreamKey,
        /// Which.
        filter: DlqFilter,
        /// At most this many (capped by [`crate::Limits::dlq_list_max`]).
        count: usize,
    },
    /// XINFO STREAM FULL: the stream, its first entries, every group with its pending
    /// entries and consumers, all from one view.
    StreamFull {
        /// Stream.
        stream: StreamKey,
        /// At most this many entries, and pending entries per group and per consumer.
        count: usize,
    },
    /// A task ([`crate::task`]).
    Task {
        /// Task ID.
        task: Vec<u8>,
    },
    /// Tasks in ID order after `after` (empty: from the first), filtered: at most `count`,
    /// examining at most [`crate::Limits::task_scan_max`] records.
    Tasks {
        /// Which.
        filter: crate::task::TaskFilter,
        /// Continue after this task ID.
        after: Vec<u8>,
        /// At most this many.
        count: usize,
    },
}

impl Query {
    /// The streams the query reads (the committed view takes just these; the broker checks
    /// the caller's rights on them).
    pub fn streams(&self) -> Vec<&StreamKey> {
        match self {
            Query::Range { stream, .. }
            | Query::Stream { stream }
            | Query::Groups { stream }
            | Query::Consumers { stream, .. }
            | Query::PendingSummary { stream, .. }
            | Query::Pending { stream, .. }
            | Query::Policy { stream, .. }
            | Query::StreamFull { stream, .. } => vec![stream],
            Query::DeadLetters { dlq, .. } => vec![dlq],
            Query::Read { streams, .. } => streams.iter().map(|s| &s.0).collect(),
            Query::Exist { streams } => streams.iter().collect(),
            Query::Tasks { filter, .. } => filter.stream.iter().collect(),
            Query::Names { .. } | Query::Task { .. } => Vec::new(),
        }
    }
}

/// The answer to a [`Query`], in the same shape.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// Range.
    Entries(Vec<Entry>),
    /// Read: per stream, the entries and the ID a later read should continue after.
    Read(Vec<(Vec<Entry>, StreamId)>),
    /// Stream (`None`: no such stream).
    Stream(Option<Box<StreamInfo>>),
    /// Exist.
    Count(u64),
    /// Names.
    Names(Vec<Vec<u8>>),
    /// Groups.
    Groups(Vec<GroupInfo>),
    /// Consumers.
    Consumers(Vec<ConsumerInfo>),
    /// PendingSummary.
    PendingSummary(PendingSummary),
    /// Pending.
    Pending(Vec<PendingInfo>),
    /// Policy.
    Policy(Option<DeliveryPolicy>),
    /// DeadLetters.
    DeadLetters(Vec<(Entry, DeadLetter)>),
    /// StreamFull (`None`: no such stream).
    StreamFull(Option<Box<StreamFull>>),
    /// Task (`None`: no such task).
    Task(Option<Box<crate::task::TaskRecord>>),
    /// Tasks, and the task ID to continue after when the scan stopped early.
    Tasks(Vec<crate::task::TaskRecord>, Option<Vec<u8>>),
}

/// XINFO STREAM's facts about a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// Entries stored.
    pub length: u64,
    /// Last generated ID.
    pub last_generated_id: StreamId,
    /// Largest ID removed by XDEL.
    pub max_deleted_entry_id: StreamId,
    /// Entries ever added.
    pub entries_added: u64,
    /// First entry's ID (`0-0` when empty).
    pub recorded_first_entry_id: StreamId,
    /// Number of groups.
    pub groups: usize,
    /// First entry.
    pub first_entry: Option<Entry>,
    /// Last entry.
    pub last_entry: Option<Entry>,
    /// Entries per lane, critical first.
    pub lane_len: [u64; 5],
    /// Bytes of fields and values stored.
    pub bytes: u64,
    /// Entries trimmed before some group had them.
    pub trimmed_undelivered: u64,
    /// Creation time (Unix ms).
    pub created_ms: u64,
    /// Redis radix-tree nodes (emulated, [`crate::nodes`]).
    pub nodes: u64,
    /// Redis 8.6's idempotent production: settings and counters (`None`: the stream
    /// never used it).
    pub idmp: Option<IdmpInfo>,
}

/// XINFO STREAM's IDMP fields (Redis 8.6, [`crate::idmp`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdmpInfo {
    /// `idmp-duration`, seconds.
    pub duration_s: u64,
    /// `idmp-maxsize`.
    pub maxsize: u64,
    /// `pids-tracked`.
    pub pids_tracked: u64,
    /// `iids-tracked`.
    pub iids_tracked: u64,
    /// `iids-added`.
    pub iids_added: u64,
    /// `iids-duplicates`.
    pub iids_duplicates: u64,
}

/// XINFO STREAM FULL's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamFull {
    /// The stream's facts.
    pub info: StreamInfo,
    /// Its first entries.
    pub entries: Vec<Entry>,
    /// Each group: its facts, its pending entries, and each consumer with its own.
    pub groups: Vec<GroupFull>,
    /// The time the idle times were computed at: `now_ms - idle` is the absolute time
    /// (XINFO STREAM FULL's seen-time and delivery time), the same on every read.
    pub now_ms: u64,
}

/// One group in [`StreamFull`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupFull {
    /// Facts.
    pub info: GroupInfo,
    /// Pending entries (at most the query's count).
    pub pending: Vec<PendingInfo>,
    /// Consumers with their pending entries.
    pub consumers: Vec<(ConsumerInfo, Vec<PendingInfo>)>,
}

/// XINFO GROUPS' facts about a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Name.
    pub name: Vec<u8>,
    /// Number of consumers.
    pub consumers: usize,
    /// Pending entries.
    pub pending: u64,
    /// Last delivered ID.
    pub last_delivered_id: StreamId,
    /// Redis's entries-read (`None`: unknown).
    pub entries_read: Option<u64>,
    /// Redis 7.4's lag (`None`: unknown; negative only after an ENTRIESREAD above the
    /// entries added).
    pub lag: Option<i64>,
    /// Delivery policy.
    pub policy: Option<DeliveryPolicy>,
    /// Pending entries whose retry is due.
    pub ready: u64,
    /// Counters.
    pub counters: crate::meta::GroupCounters,
}

/// XINFO CONSUMERS' facts about a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Name.
    pub name: Vec<u8>,
    /// Pending entries.
    pub pending: u64,
    /// ms since last seen.
    pub idle_ms: u64,
    /// ms since it last got entries (`None`: never).
    pub inactive_ms: Option<u64>,
}

/// XPENDING's summary form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSummary {
    /// Pending entries.
    pub count: u64,
    /// Smallest and largest pending ID.
    pub bounds: Option<(StreamId, StreamId)>,
    /// Consumers with pending entries, by name, and their counts.
    pub consumers: Vec<(Vec<u8>, u64)>,
}

/// XPENDING's extended form: one pending entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingInfo {
    /// Entry ID.
    pub id: StreamId,
    /// Owner.
    pub consumer: Vec<u8>,
    /// ms since last delivery.
    pub idle_ms: u64,
    /// Delivery count.
    pub deliveries: u64,
    /// Failed attempts.
    pub failures: u32,
    /// Retry state.
    pub state: PendingState,
}

/// Arguments of an extended XPENDING.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PendingQuery {
    /// Lowest ID (inclusive).
    pub start: StreamId,
    /// Highest ID (inclusive).
    pub end: StreamId,
    /// At most this many.
    pub count: usize,
    /// Only this consumer's entries.
    pub consumer: Option<Vec<u8>>,
    /// Only entries idle at least this long.
    pub min_idle_ms: Option<u64>,
}

/// One stream's facts straight from the in-memory catalog (no disk reads), for metrics,
/// `cortex stat` and dashboards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    /// Name.
    pub name: Vec<u8>,
    /// Entries stored.
    pub length: u64,
    /// Bytes of fields and values stored.
    pub bytes: u64,
    /// Entries ever added.
    pub entries_added: u64,
    /// Last generated ID.
    pub last_id: StreamId,
    /// Entries per lane, critical first.
    pub lane_len: [u64; 5],
    /// Entries trimmed before some group had them.
    pub trimmed_undelivered: u64,
    /// Creation time (Unix ms).
    pub created_ms: u64,
    /// Its groups, by name.
    pub groups: Vec<GroupInfo>,
}

/// Which dead letters a DLQ operation concerns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct DlqFilter {
    /// Only this DLQ entry.
    pub id: Option<StreamId>,
    /// Only entries from this origin stream.
    pub origin_stream: Option<Vec<u8>>,
    /// Only entries dead-lettered by this group.
    pub group: Option<Vec<u8>>,
    /// Only entries with this reason.
    pub reason: Option<DeadReason>,
}

impl DlqFilter {
    /// True when the dead letter `d`, stored at `id` in its DLQ, is one the filter selects.
    pub(crate) fn matches(&self, id: StreamId, d: &DeadLetter) -> bool {
        self.id.is_none_or(|f| f == id)
            && self
                .origin_stream
                .as_ref()
                .is_none_or(|s| *s == d.origin_stream)
            && self.group.as_ref().is_none_or(|g| *g == d.group)
            && self.reason.is_none_or(|r| r == d.reason)
    }
}
