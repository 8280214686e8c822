//! Consumer groups with Redis 7 semantics, plus priority lanes.
//!
//! Every change to a pending entry goes through [`Txn::put_pending`] or
//! [`Txn::remove_pending`], which keep the pending list, the per-consumer index, the due
//! and ready indexes and the counters in step.

use std::collections::VecDeque;

use crate::overlay::View;

use crate::codec::{self, Kind};
use crate::error::{Error, Result};
use crate::id::{Lane, StreamId};
use crate::keys;
use crate::meta::{
    ConsumerMeta, DeliveryPolicy, GroupMeta, PendingEntry, PendingState, StreamMeta, DEFAULT_DLQ,
};
use crate::ops::{GroupStart, ReadFrom, Reply, StreamKey};
use crate::record::{DeadReason, Record};
use crate::store::{corrupt, get_record, key_id, unique_ids, GroupState, Keyspaces, Txn};
use crate::stream::check_name;

/// Redis's `streamEstimateDistanceFromFirstEverEntry`: the logical read counter of `id`, if
/// it can be known.
pub(crate) fn estimate_distance(m: &StreamMeta, id: StreamId) -> Option<u64> {
    if m.entries_added == 0 {
        return Some(0);
    }
    if m.length == 0 && id <= m.last_id {
        return Some(m.entries_added);
    }
    if id == m.last_id {
        return Some(m.entries_added);
    }
    if id > m.last_id {
        return None;
    }
    if m.max_deleted_id.is_zero() || (id < m.first_id && m.max_deleted_id < m.first_id) {
        if id < m.first_id {
            return Some(m.entries_added - m.length);
        }
        if id == m.first_id {
            return Some(m.entries_added - m.length + 1);
        }
    }
    None
}

/// Redis's `streamRangeHasTombstones(s, start, NULL)`.
pub(crate) fn range_has_tombstones(m: &StreamMeta, start: StreamId) -> bool {
    if m.length == 0 || m.max_deleted_id.is_zero() || m.first_id > m.max_deleted_id {
        return false;
    }
    start <= m.max_deleted_id
}

/// Redis's consumer group lag, `None` when it cannot be known. As in current Redis: an empty
/// stream has lag 0, and a group whose last ID is behind the first entry (everything between
/// was trimmed or deleted) has every remaining entry to read.
pub(crate) fn lag(m: &StreamMeta, g: &GroupMeta) -> Option<u64> {
    if m.entries_added == 0 || m.length == 0 {
        return Some(0);
    }
    if g.last_id < m.first_id {
        return Some(m.length);
    }
    if let Some(read) = g.entries_read {
        if !range_has_tombstones(m, g.last_id) {
            return Some(m.entries_added.saturating_sub(read));
        }
    }
    estimate_distance(m, g.last_id).map(|read| m.entries_added.saturating_sub(read))
}

/// Updates a group's cursor and read counter for an entry it has consumed (delivered,
/// delivered without ack, or dead-lettered on the way).
fn consume(m: &StreamMeta, g: &mut GroupMeta, id: StreamId, lane: Lane) {
    let c = &mut g.lane_cursor[lane.index()];
    if id > *c {
        *c = id;
    }
    if id > g.last_id {
        // Entries between the last ID and the first entry were removed: the counter cannot
        // simply step on, it is estimated again.
        let gap = g.last_id < m.first_id;
        g.entries_read = match g.entries_read {
            Some(read) if !gap && !range_has_tombstones(m, id) => Some(read + 1),
            _ if m.entries_added > 0 => estimate_distance(m, id),
            other => other,
        };
        g.last_id = id;
    } else if let Some(read) = g.entries_read {
        // Handed out out of ID order (a lower lane after a higher one).
        g.entries_read = Some((read + 1).min(m.entries_added));
    }
}

fn resolve_start(m: &StreamMeta, start: GroupStart) -> StreamId {
    match start {
        GroupStart::Last => m.last_id,
        GroupStart::Id(id) => id,
    }
}

/// One planned change of a group read, claim or nack (planned while reading, applied after).
pub(crate) enum Action {
    /// Hand a new entry to the consumer.
    Deliver {
        id: StreamId,
        lane: Lane,
        record: Record,
        existing: Option<PendingEntry>,
    },
    /// Hand a pending entry (again) to the consumer.
    Redeliver {
        id: StreamId,
        pel: PendingEntry,
        record: Record,
    },
    /// Remove a pending entry whose stream entry is gone.
    Drop { id: StreamId, pel: PendingEntry },
    /// Move to the dead-letter stream (`pel` when it was pending).
    DeadLetter {
        id: StreamId,
        lane: Lane,
        record: Record,
        pel: Option<PendingEntry>,
        reason: DeadReason,
    },
}

/// Reads the next entries of one lane after a cursor, lazily, in ID order.
struct LaneReader {
    lane: Lane,
    /// Buffered (id, record, last skipped non-normal ID before it).
    buf: VecDeque<(StreamId, Record, Option<StreamId>)>,
    next_after: StreamId,
    done: bool,
    /// The normal lane scans all entries and skips other lanes; this is the last skipped.
    skipped_to: Option<StreamId>,
    scan_budget: usize,
}

impl LaneReader {
    fn new(lane: Lane, cursor: StreamId, last: StreamId, scan_budget: usize) -> Self {
        LaneReader {
            lane,
            buf: VecDeque::new(),
            next_after: cursor,
            done: cursor >= last,
            skipped_to: None,
            scan_budget,
        }
    }

    fn peek(
        &mut self,
        r: &impl View,
        ks: &Keyspaces,
        name: &[u8],
        sid: u64,
        want: usize,
    ) -> Result<Option<StreamId>> {
        if self.buf.is_empty() && !self.done {
            self.fill(r, ks, name, sid, want.clamp(1, 512))?;
        }
        Ok(self.buf.front().map(|e| e.0))
    }

    fn fill(
        &mut self,
        r: &impl View,
        ks: &Keyspaces,
        name: &[u8],
        sid: u64,
        want: usize,
    ) -> Result<()> {
        let Some(from_id) = self.next_after.next() else {
            self.done = true;
            return Ok(());
        };
        let mut got = 0;
        if self.lane == Lane::Normal {
            let from = keys::id_key(sid, from_id);
            let to = keys::id_key(sid, StreamId::MAX);
            let mut exhausted = true;
            for g in r.range(&ks.entries, from..=to) {
                if got >= want || self.scan_budget == 0 {
                    exhausted = false;
                    break;
                }
                self.scan_budget -= 1;
                let (k, v) = g.into_inner()?;
                let id = key_id(&k, "entry key", name)?;
                let rec: Record = codec::decode(Kind::Entry, &v)
                    .map_err(|reason| corrupt("entry", name, Some(id), reason))?;
                self.next_after = id;
                if rec.meta.lane == Lane::Normal {
                    self.buf.push_back((id, rec, self.skipped_to.take()));
                    got += 1;
                } else {
                    self.skipped_to = Some(id);
                }
            }
            self.done = exhausted || self.scan_budget == 0;
        } else {
            let from = keys::lane(sid, self.lane, from_id);
            let to = keys::lane(sid, self.lane, StreamId::MAX);
            let mut exhausted = true;
            for g in r.range(&ks.lanes, from..=to) {
                if got >= want {
                    exhausted = false;
                    break;
                }
                let k = g.key()?;
                let id = key_id(&k, "lane key", name)?;
                self.next_after = id;
                if let Some(rec) = get_record(r, ks, name, sid, id)? {
                    self.buf.push_back((id, rec, None));
                    got += 1;
                }
            }
            self.done = exhausted;
        }
        Ok(())
    }

    /// The normal lane's cursor may move over skipped entries of other lanes up to the next
    /// entry not taken.
    fn consumed_to(&self) -> Option<StreamId> {
        match self.buf.front() {
            Some((_, _, skipped)) => *skipped,
            None => self.skipped_to,
        }
    }
}

impl Txn<'_> {
    fn group_names(&self, key: &StreamKey, group: &[u8]) -> Result<()> {
        let max = self.cfg.limits.group_name_max;
        check_name("stream name", &key.name, self.cfg.limits.stream_name_max)?;
        check_name("group name", group, max)
    }

    pub(crate) fn create_group(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        start: GroupStart,
        mkstream: bool,
        entries_read: Option<u64>,
        policy: Option<DeliveryPolicy>,
    ) -> Result<Reply> {
        self.group_names(key, group)?;
        if let Some(p) = &policy {
            self.validate_policy(p)?;
        }
        match self.stream(key) {
            None if !mkstream => {
                return Err(Error::NoSuchStream {
                    stream: key.name.clone(),
                })
            }
            None => self.create_stream(key),
            Some(st) if st.groups.contains_key(group) => {
                return Err(Error::GroupExists {
                    group: group.to_vec(),
                })
            }
            Some(_) => {}
        }
        let gid = self.next_group_id();
        self.with_stream(key, |txn, st| {
            // Like Redis, ENTRIESREAD cannot exceed what the stream ever had.
            let mut meta = GroupMeta {
                group_id: gid,
                entries_read: entries_read.map(|n| n.min(st.meta.entries_added)),
                ..GroupMeta::default()
            };
            meta.set_cursor(resolve_start(&st.meta, start));
            meta.policy = policy;
            st.groups
                .insert(group.to_vec(), std::sync::Arc::new(GroupState::new(meta)));
            txn.touched_groups
                .insert((st.meta.stream_id, group.to_vec()));
        });
        Ok(Reply::Ok)
    }

    pub(crate) fn set_group_id(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        start: GroupStart,
        entries_read: Option<u64>,
    ) -> Result<Reply> {
        self.group(key, group)?;
        self.with_group(key, group, |_, m, g| {
            let id = resolve_start(m, start);
            let high = g
                .meta
                .lane_cursor
                .iter()
                .copied()
                .chain([g.meta.last_id, g.meta.rewound_below])
                .max()
                .unwrap_or(StreamId::MIN);
            g.meta.rewound_below = high;
            g.meta.set_cursor(id);
            g.meta.entries_read = entries_read.map(|n| n.min(m.entries_added));
        });
        Ok(Reply::Ok)
    }

    pub(crate) fn destroy_group(&mut self, key: &StreamKey, group: &[u8]) -> Result<Reply> {
        let Some(st) = self.stream(key) else {
            return Err(Error::NoSuchStream {
                stream: key.name.clone(),
            });
        };
        let Some(g) = st.groups.get(group) else {
            return Ok(Reply::Count(0));
        };
        let gid = g.meta.group_id;
        let sid = st.meta.stream_id;
        self.tx.remove(&self.ks.groups, keys::group(sid, group));
        self.tx
            .insert(&self.ks.sys, keys::garbage(keys::GC_GROUP, gid), []);
        self.sys.garbage_pending = true;
        self.with_stream(key, |_, st| st.groups.remove(group));
        self.touched_groups.remove(&(sid, group.to_vec()));
        self.events.push(crate::ops::Event::GroupDestroyed {
            stream: key.clone(),
            group: group.to_vec(),
        });
        Ok(Reply::Count(1))
    }

    /// Finds or creates a consumer, marking it seen now. Returns its internal ID.
    pub(crate) fn ensure_consumer(g: &mut GroupState, name: &[u8], now: u64) -> u64 {
        if let Some(c) = g.consumers.get_mut(name) {
            c.seen_ms = now;
            return c.consumer_id;
        }
        let id = g.meta.next_consumer_id;
        g.meta.next_consumer_id += 1;
        g.consumers.insert(
            name.to_vec(),
            ConsumerMeta {
                consumer_id: id,
                seen_ms: now,
                active_ms: None,
                pending: 0,
            },
        );
        g.names.insert(id, name.to_vec());
        id
    }

    pub(crate) fn create_consumer(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
    ) -> Result<Reply> {
        check_name("consumer name", consumer, self.cfg.limits.group_name_max)?;
        let g = self.group(key, group)?;
        if g.consumers.contains_key(consumer) {
            return Ok(Reply::Count(0));
        }
        let now = self.now;
        self.with_group(key, group, |_, _, g| {
            Self::ensure_consumer(g, consumer, now)
        });
        Ok(Reply::Count(1))
    }

    pub(crate) fn delete_consumer(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
    ) -> Result<Reply> {
        let g = self.group(key, group)?;
        let Some(c) = g.consumers.get(consumer) else {
            return Ok(Reply::Count(0));
        };
        let (gid, cid) = (g.meta.group_id, c.consumer_id);
        let mut owned = Vec::new();
        let from = keys::consumer_pending(gid, cid, StreamId::MIN);
        let to = keys::consumer_pending(gid, cid, StreamId::MAX);
        for item in self.tx.range(&self.ks.cpel, from..=to) {
            let id = key_id(&item.key()?, "consumer pending key", &key.name)?;
            owned.push((id, self.pending_entry(&key.name, gid, id)?));
        }
        let n = owned.len() as u64;
        self.with_group(key, group, |txn, _, g| {
            for (id, pel) in owned {
                if let Some(pel) = pel {
                    txn.remove_pending(g, id, &pel);
                }
            }
            g.consumers.remove(consumer);
            g.names.remove(&cid);
        });
        self.tx
            .remove(&self.ks.consumers, keys::consumer(gid, consumer));
        Ok(Reply::Count(n))
    }

    fn validate_policy(&self, p: &DeliveryPolicy) -> Result<()> {
        {
            if p.max_attempts == 0 || p.max_attempts > DeliveryPolicy::MAX_ATTEMPTS_MAX {
                return Err(Error::InvalidArgument(format!(
                    "max_attempts must be 1 to {}",
                    DeliveryPolicy::MAX_ATTEMPTS_MAX
                )));
            }
            if p.backoff_ms.len() > DeliveryPolicy::BACKOFF_STEPS_MAX {
                return Err(Error::TooLarge {
                    what: "backoff steps",
                    len: p.backoff_ms.len(),
                    max: DeliveryPolicy::BACKOFF_STEPS_MAX,
                });
            }
            if p.ack_wait_ms == Some(0) || p.max_age_ms == Some(0) {
                return Err(Error::InvalidArgument(
                    "ack_wait_ms and max_age_ms must be positive".into(),
                ));
            }
            check_name(
                "dead-letter stream name",
                &p.dead_letter,
                self.cfg.limits.stream_name_max,
            )?;
        }
        Ok(())
    }

    pub(crate) fn set_policy(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        policy: Option<DeliveryPolicy>,
    ) -> Result<Reply> {
        if let Some(p) = &policy {
            self.validate_policy(p)?;
        }
        self.group(key, group)?;
        self.with_group(key, group, |_, _, g| g.meta.policy = policy);
        Ok(Reply::Ok)
    }

    /// Changes some fields of the policy, reading the current one inside the batch.
    pub(crate) fn patch_policy(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        patch: &crate::ops::PolicyPatch,
    ) -> Result<Reply> {
        let current = self.group(key, group)?.meta.policy.clone();
        self.set_policy(key, group, Some(patch.apply(current)))
    }

    /// Reads a pending entry of a group.
    pub(crate) fn pending_entry(
        &self,
        stream: &[u8],
        gid: u64,
        id: StreamId,
    ) -> Result<Option<PendingEntry>> {
        read_pending(&self.tx, self.ks, stream, gid, id)
    }

    /// Writes a pending entry and keeps every index and counter in step with the change
    /// from `prev` (`None`: the entry was not pending).
    pub(crate) fn put_pending(
        &mut self,
        g: &mut GroupState,
        id: StreamId,
        pel: &PendingEntry,
        prev: Option<&PendingEntry>,
    ) {
        let gid = g.meta.group_id;
        self.tx.insert(
            &self.ks.pel,
            keys::id_key(gid, id),
            codec::encode(Kind::Pending, pel),
        );
        let prev_owner = prev.map(|p| p.consumer_id);
        if prev_owner != Some(pel.consumer_id) {
            if let Some(old) = prev_owner {
                self.tx
                    .remove(&self.ks.cpel, keys::consumer_pending(gid, old, id));
                let name = g.consumer_name(old).to_vec();
                if let Some(c) = g.consumers.get_mut(&name) {
                    debug_assert!(c.pending > 0, "consumer pending underflow");
                    c.pending = c.pending.saturating_sub(1);
                }
            }
            self.tx.insert(
                &self.ks.cpel,
                keys::consumer_pending(gid, pel.consumer_id, id),
                [],
            );
            let name = g.consumer_name(pel.consumer_id).to_vec();
            if let Some(c) = g.consumers.get_mut(&name) {
                c.pending += 1;
            }
        }
        if prev.is_none() {
            g.meta.pending += 1;
        }
        // Due keys are never deleted eagerly: a stale one is recognised (its time differs
        // from the entry's) and dropped when time passes it, so the future part of the due
        // index never fills with tombstones.
        if let Some(t) = pel.due_ms() {
            if prev.and_then(PendingEntry::due_ms) != Some(t) {
                self.tx.insert(&self.ks.due, keys::due(gid, t, id), []);
                g.due_floor_ms = g.due_floor_ms.min(t);
            }
        }
        let was_ready = prev.is_some_and(|p| p.state == PendingState::Ready);
        let is_ready = pel.state == PendingState::Ready;
        if is_ready && !was_ready {
            self.tx.insert(&self.ks.ready, keys::id_key(gid, id), []);
            g.meta.ready += 1;
            g.ready_floor = g.ready_floor.min(id);
        } else if was_ready && !is_ready {
            self.tx.remove(&self.ks.ready, keys::id_key(gid, id));
            debug_assert!(g.meta.ready > 0, "ready count underflow");
            g.meta.ready = g.meta.ready.saturating_sub(1);
        }
    }

    /// Removes a pending entry with its index keys and counters.
    pub(crate) fn remove_pending(&mut self, g: &mut GroupState, id: StreamId, pel: &PendingEntry) {
        let gid = g.meta.group_id;
        self.tx.remove(&self.ks.pel, keys::id_key(gid, id));
        self.tx.remove(
            &self.ks.cpel,
            keys::consumer_pending(gid, pel.consumer_id, id),
        );
        if pel.state == PendingState::Ready {
            self.tx.remove(&self.ks.ready, keys::id_key(gid, id));
            debug_assert!(g.meta.ready > 0, "ready count underflow");
            g.meta.ready = g.meta.ready.saturating_sub(1);
        }
        let name = g.consumer_name(pel.consumer_id).to_vec();
        if let Some(c) = g.consumers.get_mut(&name) {
            debug_assert!(c.pending > 0, "consumer pending underflow");
            c.pending = c.pending.saturating_sub(1);
        }
        debug_assert!(g.meta.pending > 0, "group pending underflow");
        g.meta.pending = g.meta.pending.saturating_sub(1);
    }

    /// The state a pending entry gets when handed to a consumer now.
    pub(crate) fn delivered_state(&self, policy: Option<&DeliveryPolicy>) -> PendingState {
        PendingState::Delivered {
            deadline_ms: policy
                .and_then(|p| p.ack_wait_ms)
                .map(|w| self.now.saturating_add(w)),
        }
    }

    /// XREADGROUP over every stream of the op: validates all of them, then reads each.
    pub(crate) fn read_groups(
        &mut self,
        streams: &[(StreamKey, ReadFrom)],
        group: &[u8],
        consumer: &[u8],
        count: Option<usize>,
        noack: bool,
        retry: bool,
    ) -> Result<Reply> {
        check_name("consumer name", consumer, self.cfg.limits.group_name_max)?;
        let max = self.cfg.limits.streams_per_read_max;
        if streams.is_empty() || streams.len() > max {
            return Err(Error::TooLarge {
                what: "number of streams in one read",
                len: streams.len(),
                max,
            });
        }
        for (key, _) in streams {
            self.group(key, group)?;
        }
        if retry
            && !streams
                .iter()
                .any(|(k, f)| self.may_hand_out(k, group, consumer, *f))
        {
            return Ok(Reply::GroupRead(vec![Vec::new(); streams.len()]));
        }
        let mut out = Vec::with_capacity(streams.len());
        for (key, from) in streams {
            out.push(self.read_group(key, group, consumer, count, noack, *from)?);
        }
        Ok(Reply::GroupRead(out))
    }

    /// False when a read of the group certainly hands out nothing and changes nothing
    /// (judged from metadata alone: no retry ready or due, no lane with unread entries).
    fn may_hand_out(&self, key: &StreamKey, group: &[u8], consumer: &[u8], from: ReadFrom) -> bool {
        let Some(st) = self.stream(key) else {
            return true;
        };
        let Some(g) = st.groups.get(group) else {
            return true;
        };
        let Some(c) = g.consumers.get(consumer) else {
            return true;
        };
        match from {
            ReadFrom::History(_) => c.pending > 0,
            ReadFrom::New => {
                g.meta.ready > 0
                    || (g.meta.policy.is_some() && g.due_floor_ms <= self.now)
                    || Lane::ALL
                        .iter()
                        .any(|&l| g.meta.cursor(l) < st.meta.lane_last[l.index()])
            }
        }
    }

    fn read_group(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
        count: Option<usize>,
        noack: bool,
        from: ReadFrom,
    ) -> Result<Vec<(StreamId, Option<Record>)>> {
        let max = self.cfg.limits.read_count_max;
        let count = count.unwrap_or(max).min(max);
        let now = self.now;
        let cid = self
            .with_group(key, group, |_, _, g| {
                Self::ensure_consumer(g, consumer, now)
            })
            .unwrap_or(0);
        match from {
            ReadFrom::History(after) => self.read_history(key, group, cid, after, count),
            ReadFrom::New => {
                self.process_due(key, group)?;
                self.read_new(key, group, cid, count, noack)
            }
        }
    }

    fn read_history(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        cid: u64,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<(StreamId, Option<Record>)>> {
        let (sid, gid) = {
            let st = self.existing(key)?;
            (
                st.meta.stream_id,
                st.groups.get(group).map_or(0, |g| g.meta.group_id),
            )
        };
        let mut out = Vec::new();
        let mut plan = Vec::new();
        if let Some(start) = after.next() {
            let from = keys::consumer_pending(gid, cid, start);
            let to = keys::consumer_pending(gid, cid, StreamId::MAX);
            let ids: Vec<StreamId> = self
                .tx
                .range(&self.ks.cpel, from..=to)
                .take(count)
                .map(|g| key_id(&g.key()?, "consumer pending key", &key.name))
                .collect::<Result<_>>()?;
            for id in ids {
                let record = self.get_record(key, sid, id)?;
                if record.is_some() {
                    if let Some(pel) = self.pending_entry(&key.name, gid, id)? {
                        plan.push((id, pel));
                    }
                }
                out.push((id, record));
            }
        }
        let now = self.now;
        self.with_group(key, group, |txn, _, g| {
            if !out.is_empty() {
                if let Some(name) = g.names.get(&cid).cloned() {
                    if let Some(c) = g.consumers.get_mut(&name) {
                        c.active_ms = Some(now);
                    }
                }
            }
            let state = txn.delivered_state(g.meta.policy.as_ref());
            for (id, prev) in plan {
                let mut pel = prev.clone();
                pel.deliveries += 1;
                pel.delivered_ms = now;
                pel.state = state;
                g.meta.counters.redelivered += 1;
                txn.put_pending(g, id, &pel, Some(&prev));
            }
        });
        Ok(out)
    }

    fn freshness(
        policy: Option<&DeliveryPolicy>,
        id: StreamId,
        record: &Record,
        now: u64,
    ) -> Option<DeadReason> {
        if record.is_expired(now) {
            return Some(DeadReason::Expired);
        }
        let max_age = policy.and_then(|p| p.max_age_ms)?;
        (now.saturating_sub(id.ms) > max_age).then_some(DeadReason::Stale)
    }

    fn read_new(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        cid: u64,
        count: usize,
        noack: bool,
    ) -> Result<Vec<(StreamId, Option<Record>)>> {
        let now = self.now;
        let limits = &self.cfg.limits;
        let dl_max = limits.dead_letters_per_read_max;
        let guard = self.cfg.starvation_guard;
        let st = self.existing(key)?;
        let sid = st.meta.stream_id;
        let g = st.groups.get(group).ok_or_else(|| Error::NoSuchGroup {
            stream: key.name.clone(),
            group: group.to_vec(),
        })?;
        let gid = g.meta.group_id;
        let policy = g.meta.policy.clone();
        let mut streak = g.meta.streak;
        let rewound_below = g.meta.rewound_below;
        let mut plan: Vec<Action> = Vec::new();
        let mut handed = 0usize;
        let mut dead = 0usize;

        // 1. Retries that are due (only groups with a policy have any).
        if g.meta.ready > 0 && count > 0 {
            let from = keys::id_key(gid, g.ready_floor);
            let to = keys::id_key(gid, StreamId::MAX);
            let ids: Vec<StreamId> = self
                .tx
                .range(&self.ks.ready, from..=to)
                .take(count)
                .map(|g| key_id(&g.key()?, "ready key", &key.name))
                .collect::<Result<_>>()?;
            for id in ids {
                let Some(pel) = self.pending_entry(&key.name, gid, id)? else {
                    continue;
                };
                match self.get_record(key, sid, id)? {
                    None => plan.push(Action::Drop { id, pel }),
                    Some(record) => match Self::freshness(policy.as_ref(), id, &record, now) {
                        Some(reason) if dead < dl_max => {
                            dead += 1;
                            plan.push(Action::DeadLetter {
                                id,
                                lane: record.meta.lane,
                                record,
                                pel: Some(pel),
                                reason,
                            });
                        }
                        Some(_) => {}
                        None => {
                            handed += 1;
                            plan.push(Action::Redeliver { id, pel, record });
                        }
                    },
                }
            }
        }

        // 2. New entries, highest lane first, with the starvation guard.
        let scan_budget = count.saturating_add(10_000);
        let mut readers: Vec<LaneReader> = Lane::ALL
            .iter()
            .map(|&l| {
                LaneReader::new(
                    l,
                    g.meta.cursor(l),
                    st.meta.lane_last[l.index()],
                    scan_budget,
                )
            })
            .collect();
        while handed < count && dead < dl_max {
            let want = count - handed;
            let mut heads = [None; 5];
            for (i, r) in readers.iter_mut().enumerate() {
                heads[i] = r.peek(&self.tx, self.ks, &key.name, sid, want)?;
            }
            let Some(top) = heads.iter().position(Option::is_some) else {
                break;
            };
            let oldest_lower = (top + 1..5)
                .filter_map(|i| heads[i].map(|id| (id, i)))
                .min()
                .map(|(_, i)| i);
            let pick = match oldest_lower {
                Some(lower) if guard > 0 && streak >= guard => {
                    streak = 0;
                    lower
                }
                Some(_) => {
                    streak += 1;
                    top
                }
                None => {
                    streak = 0;
                    top
                }
            };
            let Some((id, record, _)) = readers[pick].buf.pop_front() else {
                break;
            };
            let lane = readers[pick].lane;
            if let Some(reason) = Self::freshness(policy.as_ref(), id, &record, now) {
                dead += 1;
                plan.push(Action::DeadLetter {
                    id,
                    lane,
                    record,
                    pel: None,
                    reason,
                });
                continue;
            }
            let existing = if !noack && id <= rewound_below {
                self.pending_entry(&key.name, gid, id)?
            } else {
                None
            };
            handed += 1;
            plan.push(Action::Deliver {
                id,
                lane,
                record,
                existing,
            });
        }
        let normal_skip = readers[Lane::Normal.index()].consumed_to();

        // 3. Apply the plan.
        let mut out = Vec::with_capacity(handed);
        self.with_group(key, group, |txn, m, g| {
            let state = txn.delivered_state(g.meta.policy.as_ref());
            let dlq = policy
                .as_ref()
                .map_or(DEFAULT_DLQ.to_vec(), |p| p.dead_letter.clone());
            for action in plan {
                match action {
                    Action::Deliver {
                        id,
                        lane,
                        record,
                        existing,
                    } => {
                        consume(m, &mut g.meta, id, lane);
                        g.meta.counters.delivered += 1;
                        if !noack {
                            let pel = PendingEntry {
                                consumer_id: cid,
                                delivered_ms: now,
                                deliveries: 1,
                                failures: 0,
                                state,
                                last_error: None,
                            };
                            txn.put_pending(g, id, &pel, existing.as_ref());
                        }
                        out.push((id, Some(record)));
                    }
                    Action::Redeliver {
                        id,
                        pel: prev,
                        record,
                    } => {
                        let mut pel = prev.clone();
                        pel.consumer_id = cid;
                        pel.deliveries += 1;
                        pel.delivered_ms = now;
                        pel.state = state;
                        g.meta.counters.redelivered += 1;
                        txn.put_pending(g, id, &pel, Some(&prev));
                        out.push((id, Some(record)));
                    }
                    Action::Drop { id, pel } => txn.remove_pending(g, id, &pel),
                    Action::DeadLetter {
                        id,
                        lane,
                        record,
                        pel,
                        reason,
                    } => {
                        if pel.is_none() {
                            consume(m, &mut g.meta, id, lane);
                        }
                        txn.dead_letter(key, group, g, &dlq, id, record, pel.as_ref(), reason);
                    }
                }
            }
            if let Some(skip) = normal_skip {
                let c = &mut g.meta.lane_cursor[Lane::Normal.index()];
                if skip > *c {
                    *c = skip;
                }
            }
            g.meta.streak = streak;
            if !out.is_empty() {
                if let Some(name) = g.names.get(&cid).cloned() {
                    if let Some(c) = g.consumers.get_mut(&name) {
                        c.active_ms = Some(now);
                    }
                }
            }
        });
        Ok(out)
    }

    /// Pending entries of the group for the given IDs (already without duplicates, see
    /// [`unique_ids`]).
    pub(crate) fn pending_of(
        &self,
        key: &StreamKey,
        gid: u64,
        ids: &[StreamId],
    ) -> Result<Vec<(StreamId, PendingEntry)>> {
        let mut found: Vec<(StreamId, PendingEntry)> = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(p) = self.pending_entry(&key.name, gid, id)? {
                found.push((id, p));
            }
        }
        Ok(found)
    }

    pub(crate) fn ack(&mut self, key: &StreamKey, group: &[u8], ids: &[StreamId]) -> Result<Reply> {
        let ids = unique_ids(ids, self.cfg.limits.ids_per_op_max)?;
        let Some(st) = self.stream(key) else {
            return Ok(Reply::Count(0));
        };
        let Some(g) = st.groups.get(group) else {
            return Ok(Reply::Count(0));
        };
        let found = self.pending_of(key, g.meta.group_id, &ids)?;
        let n = found.len() as u64;
        self.with_group(key, group, |txn, _, g| {
            for (id, pel) in &found {
                txn.remove_pending(g, *id, pel);
                g.meta.counters.acked += 1;
            }
        });
        Ok(Reply::Count(n))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn claim(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
        min_idle_ms: u64,
        ids: &[StreamId],
        delivery_time_ms: Option<u64>,
        retry_count: Option<u64>,
        force: bool,
        justid: bool,
        last_id: Option<StreamId>,
    ) -> Result<Reply> {
        check_name("consumer name", consumer, self.cfg.limits.group_name_max)?;
        let ids = unique_ids(ids, self.cfg.limits.ids_per_op_max)?;
        let g = self.group(key, group)?;
        let (sid, gid) = (self.existing(key)?.meta.stream_id, g.meta.group_id);
        let now = self.now;
        // Plan: (id, previous pending entry, record) to claim; pending entries to drop.
        let mut claims: Vec<(StreamId, Option<PendingEntry>, Option<Record>)> = Vec::new();
        let mut drops: Vec<(StreamId, PendingEntry)> = Vec::new();
        for id in ids {
            let pel = self.pending_entry(&key.name, gid, id)?;
            let record = self.get_record(key, sid, id)?;
            let Some(record) = record else {
                if let Some(p) = pel {
                    drops.push((id, p));
                }
                continue;
            };
            match &pel {
                None if !force => continue,
                Some(p) if min_idle_ms > 0 && now.saturating_sub(p.delivered_ms) < min_idle_ms => {
                    continue
                }
                _ => {}
            }
            claims.push((id, pel, Some(record)));
        }
        let mut out = Vec::with_capacity(claims.len());
        self.with_group(key, group, |txn, _, g| {
            for (id, pel) in &drops {
                txn.remove_pending(g, *id, pel);
            }
            if !claims.is_empty() {
                let cid = Self::ensure_consumer(g, consumer, now);
                if let Some(c) = g.consumers.get_mut(consumer) {
                    c.active_ms = Some(now);
                }
                let state = txn.delivered_state(g.meta.policy.as_ref());
                for (id, prev, record) in claims {
                    let mut pel = prev.clone().unwrap_or(PendingEntry {
                        consumer_id: cid,
                        delivered_ms: now,
                        deliveries: 0,
                        failures: 0,
                        state,
                        last_error: None,
                    });
                    pel.consumer_id = cid;
                    pel.delivered_ms = delivery_time_ms.unwrap_or(now);
                    pel.state = state;
                    match retry_count {
                        Some(n) => pel.deliveries = n,
                        None if !justid => pel.deliveries += 1,
                        None => {}
                    }
                    g.meta.counters.redelivered += 1;
                    txn.put_pending(g, id, &pel, prev.as_ref());
                    out.push((id, if justid { None } else { record }));
                }
            }
            if let Some(l) = last_id {
                if l > g.meta.last_id {
                    g.meta.last_id = l;
                }
                for c in &mut g.meta.lane_cursor {
                    *c = (*c).max(l);
                }
            }
        });
        Ok(Reply::Entries(out))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn autoclaim(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
        min_idle_ms: u64,
        start: StreamId,
        count: usize,
        justid: bool,
    ) -> Result<Reply> {
        check_name("consumer name", consumer, self.cfg.limits.group_name_max)?;
        let max = self.cfg.limits.read_count_max;
        if count == 0 || count > max {
            return Err(Error::InvalidArgument(format!("COUNT must be 1 to {max}")));
        }
        let g = self.group(key, group)?;
        let (sid, gid) = (self.existing(key)?.meta.stream_id, g.meta.group_id);
        let now = self.now;
        let mut attempts = count.saturating_mul(10);
        let mut claims = Vec::new();
        let mut drops = Vec::new();
        let mut next = StreamId::MIN;
        {
            let from = keys::id_key(gid, start);
            let to = keys::id_key(gid, StreamId::MAX);
            let mut it = self.tx.range(&self.ks.pel, from..=to);
            // Like Redis, deleted entries count toward COUNT (it bounds the reply).
            while attempts > 0 && claims.len() + drops.len() < count {
                let Some(item) = it.next() else { break };
                attempts -= 1;
                let (k, v) = item.into_inner()?;
                let id = key_id(&k, "pending key", &key.name)?;
                let pel: PendingEntry = codec::decode(Kind::Pending, &v)
                    .map_err(|r| corrupt("pending entry", &key.name, Some(id), r))?;
                match get_record(&self.tx, self.ks, &key.name, sid, id)? {
                    None => drops.push((id, pel)),
                    Some(_)
                        if min_idle_ms > 0
                            && now.saturating_sub(pel.delivered_ms) < min_idle_ms => {}
                    Some(rec) => claims.push((id, pel, rec)),
                }
            }
            if let Some(item) = it.next() {
                next = key_id(&item.key()?, "pending key", &key.name)?;
            }
        }
        let mut out = Vec::with_capacity(claims.len());
        let deleted: Vec<StreamId> = drops.iter().map(|d| d.0).collect();
        self.with_group(key, group, |txn, _, g| {
            for (id, pel) in &drops {
                txn.remove_pending(g, *id, pel);
            }
            if claims.is_empty() {
                return;
            }
            let cid = Self::ensure_consumer(g, consumer, now);
            if let Some(c) = g.consumers.get_mut(consumer) {
                c.active_ms = Some(now);
            }
            let state = txn.delivered_state(g.meta.policy.as_ref());
            for (id, prev, record) in claims {
                let mut pel = prev.clone();
                pel.consumer_id = cid;
                pel.delivered_ms = now;
                pel.state = state;
                if !justid {
                    pel.deliveries += 1;
                }
                g.meta.counters.redelivered += 1;
                txn.put_pending(g, id, &pel, Some(&prev));
                out.push((id, if justid { None } else { Some(record) }));
            }
        });
        Ok(Reply::AutoClaimed {
            next,
            claimed: out,
            deleted,
        })
    }
}

pub(crate) fn read_pending(
    r: &impl View,
    ks: &Keyspaces,
    stream: &[u8],
    gid: u64,
    id: StreamId,
) -> Result<Option<PendingEntry>> {
    match r.get(&ks.pel, keys::id_key(gid, id))? {
        None => Ok(None),
        Some(v) => codec::decode(Kind::Pending, &v)
            .map(Some)
            .map_err(|reason| corrupt("pending entry", stream, Some(id), reason)),
    }
}
