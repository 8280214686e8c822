//! The one read API. A [`Query`] is answered against a consistent view: the committed
//! catalog with the snapshot committed with it ([`Store::query`], which never waits for the
//! writer), or a batch in progress ([`crate::Op::Query`], which sees the batch's own earlier
//! writes, so a transaction's reads and writes are one atomic batch).

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use bincode::{Decode, Encode};

use crate::codec::{self, Kind};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::group::{lag, read_pending};
use crate::id::StreamId;
use crate::keys;
use crate::meta::{DeliveryPolicy, PendingEntry, PendingState};
use crate::ops::{DlqFilter, StreamKey};
use crate::overlay::{Ks, View};
use crate::record::{DeadLetter, Entry, Record};
use crate::store::{corrupt, key_id, GroupState, Keyspaces, StreamState, Txn};
use crate::Store;

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
        /// At most this many (capped by [`Limits::dlq_list_max`]).
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
    /// examining at most [`Limits::task_scan_max`] records.
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

/// A consistent view to read from.
pub(crate) trait ReadCtx {
    /// The key/value view.
    type V: View;
    /// Reads go here.
    fn view(&self) -> &Self::V;
    /// The keyspaces.
    fn ks(&self) -> &Keyspaces;
    /// The limits.
    fn limits(&self) -> &Limits;
    /// A stream's state in this view.
    fn stream(&self, key: &StreamKey) -> Option<&StreamState>;
    /// The sorted stream names of a namespace.
    fn names(&self, ns: u16) -> Vec<Vec<u8>>;
}

/// The committed view: the streams a query names, with the snapshot committed with them.
pub(crate) struct Committed<'a> {
    ks: &'a Keyspaces,
    limits: &'a Limits,
    streams: HashMap<StreamKey, Arc<StreamState>>,
    names: Vec<StreamKey>,
    snap: fjall::Snapshot,
}

impl ReadCtx for Committed<'_> {
    type V = fjall::Snapshot;
    fn view(&self) -> &fjall::Snapshot {
        &self.snap
    }
    fn ks(&self) -> &Keyspaces {
        self.ks
    }
    fn limits(&self) -> &Limits {
        self.limits
    }
    fn stream(&self, key: &StreamKey) -> Option<&StreamState> {
        self.streams.get(key).map(|s| &**s)
    }
    fn names(&self, ns: u16) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = self
            .names
            .iter()
            .filter(|k| k.ns == ns)
            .map(|k| k.name.clone())
            .collect();
        v.sort();
        v
    }
}

impl ReadCtx for Txn<'_> {
    type V = crate::overlay::Overlay;
    fn view(&self) -> &Self::V {
        &self.tx
    }
    fn ks(&self) -> &Keyspaces {
        self.ks
    }
    fn limits(&self) -> &Limits {
        &self.cfg.limits
    }
    fn stream(&self, key: &StreamKey) -> Option<&StreamState> {
        Txn::stream(self, key)
    }
    fn names(&self, ns: u16) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = self
            .base
            .streams
            .keys()
            .chain(self.staged.keys())
            .filter(|k| k.ns == ns && Txn::stream(self, k).is_some())
            .map(|k| k.name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
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

impl Store {
    /// Every stream of a namespace with its groups, sorted by name, from the last commit.
    /// Costs one pass over the catalog; the catalog lock is held only to copy pointers.
    pub fn overview(&self, ns: u16) -> Vec<StreamSummary> {
        let mut streams: Vec<(Vec<u8>, Arc<StreamState>)> = {
            let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
            cat.streams
                .iter()
                .filter(|(k, _)| k.ns == ns)
                .map(|(k, s)| (k.name.clone(), s.clone()))
                .collect()
        };
        streams.sort_by(|a, b| a.0.cmp(&b.0));
        streams
            .into_iter()
            .map(|(name, st)| {
                let m = &st.meta;
                StreamSummary {
                    length: m.length,
                    bytes: m.bytes,
                    entries_added: m.entries_added,
                    last_id: m.last_id,
                    lane_len: m.lane_len,
                    trimmed_undelivered: m.trimmed_undelivered,
                    created_ms: m.created_ms,
                    groups: group_infos(&st),
                    name,
                }
            })
            .collect()
    }
}

impl Store {
    /// The committed view for a query: only the streams it names are taken from the
    /// catalog (all names for [`Query::Names`]), with the snapshot committed with them.
    fn committed(&self, q: &Query) -> Committed<'_> {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        let streams = q
            .streams()
            .into_iter()
            .filter_map(|k| cat.streams.get(k).map(|s| (k.clone(), s.clone())))
            .collect();
        let names = match q {
            Query::Names { .. } => cat.streams.keys().cloned().collect(),
            _ => Vec::new(),
        };
        Committed {
            ks: &self.ks,
            limits: &self.cfg.limits,
            streams,
            names,
            snap: cat.snap.clone(),
        }
    }

    /// At most how many items the query's answer holds now (its count, capped by what the
    /// streams hold), so a caller can tell a small read from a large one before running it.
    pub fn answer_bound(&self, q: &Query) -> usize {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        let len = |k: &StreamKey| cat.streams.get(k).map_or(0, |s| s.meta.length as usize);
        let pending = |k: &StreamKey, g: &[u8]| {
            cat.streams
                .get(k)
                .and_then(|s| s.groups.get(g))
                .map_or(0, |g| g.meta.pending as usize)
        };
        match q {
            Query::Range { stream, count, .. } => count.unwrap_or(usize::MAX).min(len(stream)),
            Query::Read { streams, count } => streams
                .iter()
                .map(|(k, _)| count.unwrap_or(usize::MAX).min(len(k)))
                .fold(0usize, usize::saturating_add),
            Query::Pending {
                stream,
                group,
                query,
            } => query.count.min(pending(stream, group)),
            Query::DeadLetters { dlq, count, .. } => (*count).min(len(dlq)),
            Query::StreamFull { stream, count } => {
                let groups = cat.streams.get(stream).map_or(0, |s| {
                    s.groups
                        .values()
                        .map(|g| (*count).min(g.meta.pending as usize) * 2 + g.consumers.len())
                        .fold(0usize, usize::saturating_add)
                });
                (*count).min(len(stream)).saturating_add(groups)
            }
            Query::Names { .. } => cat.streams.len(),
            Query::Tasks { count, .. } => *count,
            Query::Task { .. } => 1,
            Query::Exist { streams } => streams.len(),
            Query::Stream { .. }
            | Query::Groups { .. }
            | Query::Consumers { .. }
            | Query::PendingSummary { .. }
            | Query::Policy { .. } => 1,
        }
    }

    /// Answers a query from the last commit; never waits for the writer.
    pub fn query(&self, q: &Query, now_ms: u64) -> Result<Answer> {
        answer(&self.committed(q), q, now_ms).map_err(|e| match e {
            // fjall's error names no stream: say which one the read was of.
            Error::Storage(inner) => Error::Corruption {
                what: "data",
                stream: queried_stream(q),
                id: None,
                reason: format!(
                    "a disk block the read needs cannot be read (damaged, or an I/O error): {inner}; the store check after start reports which IDs"
                ),
            },
            other => other,
        })
    }
}

/// The stream a query reads, when it reads one.
fn queried_stream(q: &Query) -> Vec<u8> {
    match q.streams().as_slice() {
        [one] => one.name.clone(),
        _ => Vec::new(),
    }
}

/// Answers a query against any consistent view.
pub(crate) fn answer(ctx: &impl ReadCtx, q: &Query, now: u64) -> Result<Answer> {
    Ok(match q {
        Query::Range {
            stream,
            start,
            end,
            count,
            rev,
        } => Answer::Entries(range(ctx, stream, *start, *end, *count, *rev)?),
        Query::Read { streams, count } => {
            let max = ctx.limits().streams_per_read_max;
            if streams.len() > max {
                return Err(Error::TooLarge {
                    what: "number of streams in one read",
                    len: streams.len(),
                    max,
                });
            }
            let mut out = Vec::with_capacity(streams.len());
            for (k, start) in streams {
                out.push(read_after(ctx, k, *start, *count)?);
            }
            Answer::Read(out)
        }
        Query::Stream { stream } => Answer::Stream(stream_info(ctx, stream)?.map(Box::new)),
        Query::Exist { streams } => {
            Answer::Count(streams.iter().filter(|k| ctx.stream(k).is_some()).count() as u64)
        }
        Query::Names { ns } => Answer::Names(ctx.names(*ns)),
        Query::Groups { stream } => Answer::Groups(groups_info(ctx, stream)?),
        Query::Consumers { stream, group } => {
            let (st, g) = group_state(ctx, stream, group)?;
            Answer::Consumers(consumers_info(st, g, now))
        }
        Query::PendingSummary { stream, group } => {
            Answer::PendingSummary(pending_summary(ctx, stream, group)?)
        }
        Query::Pending {
            stream,
            group,
            query,
        } => Answer::Pending(pending_range(ctx, stream, group, query, now)?),
        Query::Policy { stream, group } => {
            Answer::Policy(group_state(ctx, stream, group)?.1.meta.policy.clone())
        }
        Query::DeadLetters { dlq, filter, count } => {
            Answer::DeadLetters(dead_letters(ctx, dlq, filter, *count)?)
        }
        Query::StreamFull { stream, count } => {
            Answer::StreamFull(stream_full(ctx, stream, *count, now)?.map(Box::new))
        }
        Query::Task { task } => {
            Answer::Task(crate::task::get_task(ctx.view(), ctx.ks(), task)?.map(Box::new))
        }
        Query::Tasks {
            filter,
            after,
            count,
        } => {
            let l = ctx.limits();
            let (tasks, next) = crate::task::list_tasks(
                ctx.view(),
                ctx.ks(),
                filter,
                after,
                (*count).min(l.read_count_max),
                l.task_scan_max,
            )?;
            Answer::Tasks(tasks, next)
        }
    })
}

fn decode_entry(name: &[u8], k: &[u8], v: &[u8]) -> Result<Entry> {
    let id = key_id(k, "entry key", name)?;
    let record = codec::decode(Kind::Entry, v).map_err(|r| corrupt("entry", name, Some(id), r))?;
    Ok(Entry { id, record })
}

/// Scans entries of a stream in `[start, end]` (inclusive bounds), at most `count`, oldest
/// first (newest first when `rev`).
pub(crate) fn scan_entries(
    r: &impl View,
    ks: &Keyspaces,
    name: &[u8],
    stream_id: u64,
    bounds: std::ops::RangeInclusive<StreamId>,
    count: usize,
    rev: bool,
) -> Result<Vec<Entry>> {
    let (start, end) = bounds.into_inner();
    if start > end || count == 0 {
        return Ok(Vec::new());
    }
    let b = (
        Bound::Included(keys::id_key(stream_id, start).to_vec()),
        Bound::Included(keys::id_key(stream_id, end).to_vec()),
    );
    let items = if rev {
        r.scan_rev(&ks.entries, b)
    } else {
        r.scan(&ks.entries, b)
    };
    let mut out = Vec::new();
    for item in items {
        if out.len() >= count {
            break;
        }
        let (k, v) = item.into_inner()?;
        out.push(decode_entry(name, &k, &v)?);
    }
    Ok(out)
}

/// Entries in `[start, end]`; a missing stream reads as empty. Entries past their TTL are
/// still part of the log and are returned; only group reads withhold them.
fn range(
    ctx: &impl ReadCtx,
    key: &StreamKey,
    start: StreamId,
    end: StreamId,
    count: Option<usize>,
    rev: bool,
) -> Result<Vec<Entry>> {
    let Some(st) = ctx.stream(key) else {
        return Ok(Vec::new());
    };
    if st.meta.length == 0 {
        return Ok(Vec::new());
    }
    // Never seek below the first entry: the head of a trimmed stream is tombstones.
    let lo = start.max(st.meta.first_id);
    scan_entries(
        ctx.view(),
        ctx.ks(),
        &key.name,
        st.meta.stream_id,
        lo..=end,
        count.unwrap_or(usize::MAX),
        rev,
    )
}

fn read_after(
    ctx: &impl ReadCtx,
    key: &StreamKey,
    start: ReadStart,
    count: Option<usize>,
) -> Result<(Vec<Entry>, StreamId)> {
    let last = ctx.stream(key).map_or(StreamId::MIN, |s| s.meta.last_id);
    match start {
        ReadStart::New => Ok((Vec::new(), last)),
        ReadStart::LastEntry => {
            let e = range(ctx, key, StreamId::MIN, StreamId::MAX, Some(1), true)?;
            let after = e.first().map_or(last, |e| e.id);
            Ok((e, after))
        }
        ReadStart::After(id) => match id.next() {
            None => Ok((Vec::new(), id)),
            Some(from) => Ok((range(ctx, key, from, StreamId::MAX, count, false)?, id)),
        },
    }
}

fn stream_info(ctx: &impl ReadCtx, key: &StreamKey) -> Result<Option<StreamInfo>> {
    let Some(st) = ctx.stream(key) else {
        return Ok(None);
    };
    let m = &st.meta;
    let (first_entry, last_entry) = if m.length == 0 {
        (None, None)
    } else {
        let f = range(ctx, key, StreamId::MIN, StreamId::MAX, Some(1), false)?;
        let l = range(ctx, key, StreamId::MIN, StreamId::MAX, Some(1), true)?;
        (f.into_iter().next(), l.into_iter().next())
    };
    Ok(Some(StreamInfo {
        length: m.length,
        last_generated_id: m.last_id,
        max_deleted_entry_id: m.max_deleted_id,
        entries_added: m.entries_added,
        recorded_first_entry_id: m.first_id,
        groups: st.groups.len(),
        first_entry,
        last_entry,
        lane_len: m.lane_len,
        bytes: m.bytes,
        trimmed_undelivered: m.trimmed_undelivered,
        created_ms: m.created_ms,
        nodes: m.nodes,
    }))
}

fn group_state<'c>(
    ctx: &'c impl ReadCtx,
    key: &StreamKey,
    group: &[u8],
) -> Result<(&'c StreamState, &'c GroupState)> {
    let st = ctx.stream(key).ok_or_else(|| Error::NoSuchStream {
        stream: key.name.clone(),
    })?;
    let g = st.groups.get(group).ok_or_else(|| Error::NoSuchGroup {
        stream: key.name.clone(),
        group: group.to_vec(),
    })?;
    Ok((st, g))
}

fn groups_info(ctx: &impl ReadCtx, key: &StreamKey) -> Result<Vec<GroupInfo>> {
    let st = ctx.stream(key).ok_or_else(|| Error::NoSuchStream {
        stream: key.name.clone(),
    })?;
    Ok(group_infos(st))
}

fn group_infos(st: &StreamState) -> Vec<GroupInfo> {
    st.groups
        .iter()
        .map(|(name, g)| GroupInfo {
            name: name.clone(),
            consumers: g.consumers.len(),
            pending: g.meta.pending,
            last_delivered_id: g.meta.last_id,
            entries_read: g.meta.entries_read,
            lag: lag(&st.meta, &g.meta),
            policy: g.meta.policy.clone(),
            ready: g.meta.ready,
            counters: g.meta.counters,
        })
        .collect()
}

fn consumers_info(_st: &StreamState, g: &GroupState, now_ms: u64) -> Vec<ConsumerInfo> {
    g.consumers
        .iter()
        .map(|(name, c)| ConsumerInfo {
            name: name.clone(),
            pending: c.pending,
            idle_ms: now_ms.saturating_sub(c.seen_ms),
            inactive_ms: c.active_ms.map(|a| now_ms.saturating_sub(a)),
        })
        .collect()
}

fn first_key(items: &mut dyn Iterator<Item = crate::overlay::Item>) -> Result<Option<Vec<u8>>> {
    match items.next() {
        Some(i) => Ok(Some(i.key()?.to_vec())),
        None => Ok(None),
    }
}

fn pending_summary(ctx: &impl ReadCtx, key: &StreamKey, group: &[u8]) -> Result<PendingSummary> {
    let (_, g) = group_state(ctx, key, group)?;
    let gid = g.meta.group_id;
    let pel: &Ks = &ctx.ks().pel;
    let whole = crate::overlay::prefix_range(&keys::prefix(gid));
    let first = first_key(&mut *ctx.view().scan(pel, whole.clone()))?;
    let last = first_key(&mut *ctx.view().scan_rev(pel, whole))?;
    let id = |k: Option<Vec<u8>>| -> Result<Option<StreamId>> {
        k.map(|k| key_id(&k, "pending key", &key.name)).transpose()
    };
    Ok(PendingSummary {
        count: g.meta.pending,
        bounds: id(first)?.zip(id(last)?),
        consumers: g
            .consumers
            .iter()
            .filter(|(_, c)| c.pending > 0)
            .map(|(n, c)| (n.clone(), c.pending))
            .collect(),
    })
}

fn pending_range(
    ctx: &impl ReadCtx,
    key: &StreamKey,
    group: &[u8],
    q: &PendingQuery,
    now_ms: u64,
) -> Result<Vec<PendingInfo>> {
    let (_, g) = group_state(ctx, key, group)?;
    let gid = g.meta.group_id;
    let (view, ks) = (ctx.view(), ctx.ks());
    let mut out = Vec::new();
    if q.start > q.end || q.count == 0 {
        return Ok(out);
    }
    let mut push = |id: StreamId, p: PendingEntry| {
        let idle_ms = now_ms.saturating_sub(p.delivered_ms);
        if q.min_idle_ms.is_some_and(|m| idle_ms < m) {
            return false;
        }
        out.push(PendingInfo {
            id,
            consumer: g.consumer_name(p.consumer_id).to_vec(),
            idle_ms,
            deliveries: p.deliveries,
            failures: p.failures,
            state: p.state,
        });
        out.len() >= q.count
    };
    if let Some(cname) = &q.consumer {
        let Some(c) = g.consumers.get(cname) else {
            return Ok(Vec::new());
        };
        let from = keys::consumer_pending(gid, c.consumer_id, q.start);
        let to = keys::consumer_pending(gid, c.consumer_id, q.end);
        for item in view.range(&ks.cpel, from..=to) {
            let id = key_id(&item.key()?, "consumer pending key", &key.name)?;
            if let Some(p) = read_pending(view, ks, &key.name, gid, id)? {
                if push(id, p) {
                    break;
                }
            }
        }
    } else {
        let from = keys::id_key(gid, q.start);
        let to = keys::id_key(gid, q.end);
        for item in view.range(&ks.pel, from..=to) {
            let (k, v) = item.into_inner()?;
            let id = key_id(&k, "pending key", &key.name)?;
            let p: PendingEntry = codec::decode(Kind::Pending, &v)
                .map_err(|r| corrupt("pending entry", &key.name, Some(id), r))?;
            if push(id, p) {
                break;
            }
        }
    }
    Ok(out)
}

fn dead_letters(
    ctx: &impl ReadCtx,
    dlq: &StreamKey,
    filter: &DlqFilter,
    count: usize,
) -> Result<Vec<(Entry, DeadLetter)>> {
    let entries = match filter.id {
        Some(id) => range(ctx, dlq, id, id, None, false)?,
        None => range(
            ctx,
            dlq,
            StreamId::MIN,
            StreamId::MAX,
            Some(ctx.limits().dlq_scan_max),
            false,
        )?,
    };
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let d = e.record.dead_letter.clone()?;
            crate::dlq::matches(filter, e.id, &d).then_some((e, *d))
        })
        .take(count.min(ctx.limits().dlq_list_max))
        .collect())
}

fn stream_full(
    ctx: &impl ReadCtx,
    key: &StreamKey,
    count: usize,
    now: u64,
) -> Result<Option<StreamFull>> {
    let Some(info) = stream_info(ctx, key)? else {
        return Ok(None);
    };
    let entries = range(ctx, key, StreamId::MIN, StreamId::MAX, Some(count), false)?;
    let mut groups = Vec::new();
    for g in groups_info(ctx, key)? {
        let all = PendingQuery {
            start: StreamId::MIN,
            end: StreamId::MAX,
            count,
            consumer: None,
            min_idle_ms: None,
        };
        let pending = pending_range(ctx, key, &g.name, &all, now)?;
        let (st, gs) = group_state(ctx, key, &g.name)?;
        let mut consumers = Vec::new();
        for c in consumers_info(st, gs, now) {
            let q = PendingQuery {
                consumer: Some(c.name.clone()),
                ..all.clone()
            };
            let own = pending_range(ctx, key, &g.name, &q, now)?;
            consumers.push((c, own));
        }
        groups.push(GroupFull {
            info: g,
            pending,
            consumers,
        });
    }
    Ok(Some(StreamFull {
        info,
        entries,
        groups,
        now_ms: now,
    }))
}

impl Store {
    /// XRANGE / XREVRANGE / XREAD: entries between the bounds, at most `count`, newest first
    /// when `rev` (a shortcut for [`Query::Range`]).
    pub fn range(
        &self,
        key: &StreamKey,
        start: Bound<StreamId>,
        end: Bound<StreamId>,
        count: Option<usize>,
        rev: bool,
    ) -> Result<Vec<Entry>> {
        let lo = match start {
            Bound::Unbounded => Some(StreamId::MIN),
            Bound::Included(id) => Some(id),
            Bound::Excluded(id) => id.next(),
        };
        let hi = match end {
            Bound::Unbounded => Some(StreamId::MAX),
            Bound::Included(id) => Some(id),
            Bound::Excluded(id) => id.prev(),
        };
        let (Some(start), Some(end)) = (lo, hi) else {
            return Ok(Vec::new());
        };
        let q = Query::Range {
            stream: key.clone(),
            start,
            end,
            count,
            rev,
        };
        range(&self.committed(&q), key, start, end, count, rev)
    }

    /// One entry by ID.
    pub fn get(&self, key: &StreamKey, id: StreamId) -> Result<Option<Record>> {
        Ok(self
            .range(
                key,
                Bound::Included(id),
                Bound::Included(id),
                Some(1),
                false,
            )?
            .pop()
            .map(|e| e.record))
    }

    /// XLEN (0 for a missing stream).
    pub fn len(&self, key: &StreamKey) -> u64 {
        self.stream_state(key).map_or(0, |s| s.meta.length)
    }

    /// True when the stream exists (possibly empty).
    pub fn exists(&self, key: &StreamKey) -> bool {
        self.stream_state(key).is_some()
    }

    /// The stream's last generated ID (for `$`).
    pub fn last_id(&self, key: &StreamKey) -> Option<StreamId> {
        self.stream_state(key).map(|s| s.meta.last_id)
    }

    /// Names of the streams of a namespace, sorted.
    pub fn list_streams(&self, ns: u16) -> Vec<Vec<u8>> {
        let q = Query::Names { ns };
        self.committed(&q).names(ns)
    }

    /// Number of streams in a namespace (DBSIZE).
    pub fn stream_count(&self, ns: u16) -> usize {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        cat.streams.keys().filter(|k| k.ns == ns).count()
    }

    /// The radix-tree node sizes appends are placed by (CONFIG stream-node-max-*).
    pub fn node_limits(&self) -> crate::nodes::NodeLimits {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .node_limits
    }

    /// XINFO STREAM.
    pub fn stream_info(&self, key: &StreamKey) -> Result<Option<StreamInfo>> {
        let q = Query::Stream {
            stream: key.clone(),
        };
        stream_info(&self.committed(&q), key)
    }

    /// XINFO GROUPS.
    pub fn groups_info(&self, key: &StreamKey) -> Result<Vec<GroupInfo>> {
        let q = Query::Groups {
            stream: key.clone(),
        };
        groups_info(&self.committed(&q), key)
    }

    /// XINFO CONSUMERS.
    pub fn consumers_info(
        &self,
        key: &StreamKey,
        group: &[u8],
        now_ms: u64,
    ) -> Result<Vec<ConsumerInfo>> {
        match self.query(
            &Query::Consumers {
                stream: key.clone(),
                group: group.to_vec(),
            },
            now_ms,
        )? {
            Answer::Consumers(c) => Ok(c),
            _ => Ok(Vec::new()),
        }
    }

    /// XPENDING summary.
    pub fn pending_summary(&self, key: &StreamKey, group: &[u8]) -> Result<PendingSummary> {
        let q = Query::PendingSummary {
            stream: key.clone(),
            group: group.to_vec(),
        };
        pending_summary(&self.committed(&q), key, group)
    }

    /// XPENDING extended form.
    pub fn pending_range(
        &self,
        key: &StreamKey,
        group: &[u8],
        q: &PendingQuery,
        now_ms: u64,
    ) -> Result<Vec<PendingInfo>> {
        let query = Query::Pending {
            stream: key.clone(),
            group: group.to_vec(),
            query: q.clone(),
        };
        pending_range(&self.committed(&query), key, group, q, now_ms)
    }

    /// A group's delivery policy.
    pub fn group_policy(&self, key: &StreamKey, group: &[u8]) -> Result<Option<DeliveryPolicy>> {
        let q = Query::Policy {
            stream: key.clone(),
            group: group.to_vec(),
        };
        Ok(group_state(&self.committed(&q), key, group)?
            .1
            .meta
            .policy
            .clone())
    }

    /// Entries of a dead-letter stream matching the filter, oldest first, at most `count`.
    pub fn dlq_list(
        &self,
        dlq: &StreamKey,
        filter: &DlqFilter,
        count: usize,
    ) -> Result<Vec<(Entry, DeadLetter)>> {
        let q = Query::DeadLetters {
            dlq: dlq.clone(),
            filter: filter.clone(),
            count,
        };
        dead_letters(&self.committed(&q), dlq, filter, count)
    }
}
