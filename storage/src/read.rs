//! The one read API's evaluation. A [`Query`] is answered against a consistent view: the
//! committed catalog with the snapshot committed with it ([`crate::Store::query`], which never waits for the
//! writer), or a batch in progress ([`crate::Op::Query`], which sees the batch's own earlier
//! writes, so a transaction's reads and writes are one atomic batch).

use std::sync::Arc;

use foldhash::HashMap;

use crate::codec::{self, Kind};
use crate::config::{Limits, StoreConfig};
use crate::error::{corrupt, Error, Result};
use crate::group::lag;
use crate::id::{StreamId, StreamKey};
use crate::kernel::{scan_entries, GroupState, StreamState, Txn};
use crate::keys::{self, key_id};
use crate::keyspaces::Keyspaces;
use crate::meta::PendingEntry;
use crate::overlay::{Ks, View};
use crate::query::{
    Answer, ConsumerInfo, DlqFilter, GroupFull, GroupInfo, PendingInfo, PendingQuery,
    PendingSummary, Query, ReadStart, StreamFull, StreamInfo,
};
use crate::record::{DeadLetter, Entry};

/// A consistent view to read from.
pub(crate) trait ReadCtx {
    /// The key/value view.
    type V: View;
    /// Reads go here.
    fn view(&self) -> &Self::V;
    /// The keyspaces.
    fn ks(&self) -> &Keyspaces;
    /// The store's settings.
    fn cfg(&self) -> &StoreConfig;
    /// The limits.
    fn limits(&self) -> &Limits {
        &self.cfg().limits
    }
    /// A stream's state in this view.
    fn stream(&self, key: &StreamKey) -> Option<&StreamState>;
    /// The sorted stream names of a namespace.
    fn names(&self, ns: u16) -> Vec<Vec<u8>>;
}

/// The committed view: the streams a query names, with the snapshot committed with them.
pub(crate) struct Committed<'a> {
    pub(crate) ks: &'a Keyspaces,
    pub(crate) cfg: &'a StoreConfig,
    pub(crate) streams: HashMap<StreamKey, Arc<StreamState>>,
    pub(crate) names: Vec<StreamKey>,
    pub(crate) snap: fjall::Snapshot,
}

impl ReadCtx for Committed<'_> {
    type V = fjall::Snapshot;
    fn view(&self) -> &fjall::Snapshot {
        &self.snap
    }
    fn ks(&self) -> &Keyspaces {
        self.ks
    }
    fn cfg(&self) -> &StoreConfig {
        self.cfg
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
    fn cfg(&self) -> &StoreConfig {
        self.cfg
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
            Answer::Task(crate::task::life::get_task(ctx.view(), ctx.ks(), task)?.map(Box::new))
        }
        Query::Tasks {
            filter,
            after,
            count,
        } => {
            let l = ctx.limits();
            let (tasks, next) = crate::task::life::list_tasks(
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
        idmp: crate::idmp::info(ctx.view(), ctx.ks(), ctx.cfg(), m.stream_id)?,
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

pub(crate) fn group_infos(st: &StreamState) -> Vec<GroupInfo> {
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
    // A consumer's own pending entries: the group's list in ID order, the others' skipped.
    // Off the writer there is no per-consumer order (the writer keeps it in memory), so
    // the scan stops once it has met every entry the consumer holds.
    let owner = match &q.consumer {
        None => None,
        Some(cname) => match g.consumers.get(cname) {
            Some(c) if c.pending > 0 => Some((c.consumer_id, c.pending)),
            _ => return Ok(Vec::new()),
        },
    };
    let mut met = 0u64;
    let from = keys::id_key(gid, q.start);
    let to = keys::id_key(gid, q.end);
    for item in view.range(&ks.pel, from..=to) {
        let (k, v) = item.into_inner()?;
        let id = key_id(&k, "pending key", &key.name)?;
        let p: PendingEntry = codec::decode(Kind::Pending, &v)
            .map_err(|r| corrupt("pending entry", &key.name, Some(id), r))?;
        if let Some((cid, holds)) = owner {
            if p.consumer_id != cid {
                continue;
            }
            met += 1;
            if push(id, p) || met >= holds {
                break;
            }
        } else if push(id, p) {
            break;
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
            filter.matches(e.id, &d).then_some((e, *d))
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
