//! Acknowledging and claiming pending entries: XACK, XCLAIM, XAUTOCLAIM, and XREADGROUP's
//! CLAIM (Redis 8.4).

use crate::codec::{self, Kind};
use crate::error::{corrupt, Error, Result};
use crate::id::{StreamId, StreamKey};
use crate::kernel::{get_record, unique_ids, GroupState, Txn};
use crate::keys::{self, key_id};
use crate::meta::{PendingEntry, PendingState};
use crate::ops::{ClaimedEntry, ReadFrom, Reply};
use crate::overlay::View;
use crate::record::Record;
use crate::stream::check_name;
use crate::task::{TaskEvent, TaskRef};

/// How much one extended group read may hand out ([`crate::Op::ReadGroupEx`]).
pub(crate) struct ReadLimits {
    /// COUNT per stream.
    pub(crate) count: Option<usize>,
    /// MAXCOUNT over all streams.
    pub(crate) max_count: Option<usize>,
    /// MAXSIZE over all streams (a soft cap).
    pub(crate) max_bytes: Option<usize>,
}

impl Txn<'_> {
    /// Makes `consumer` (created if new, counted as a change) the one claiming now: its ID
    /// and the state the entries it claims take.
    fn claimer(&mut self, g: &mut GroupState, consumer: &[u8]) -> (u64, PendingState) {
        let now = self.now;
        self.consumers_created += u64::from(!g.consumers.contains_key(consumer));
        let cid = Self::ensure_consumer(g, consumer, now);
        if let Some(c) = g.consumers.get_mut(consumer) {
            c.active_ms = Some(now);
        }
        (cid, self.delivered_state(g.meta.policy.as_ref()))
    }

    /// Gives pending entry `id` to the claimer (`cid`, `state` from [`Txn::claimer`]) now,
    /// counting a delivery when `delivered`.
    fn hand_over(
        &mut self,
        g: &mut GroupState,
        id: StreamId,
        prev: &PendingEntry,
        (cid, state): (u64, PendingState),
        delivered: bool,
    ) {
        let mut pel = prev.clone();
        pel.consumer_id = cid;
        pel.delivered_ms = self.now;
        pel.state = state;
        if delivered {
            pel.deliveries += 1;
        }
        g.meta.counters.redelivered += 1;
        self.put_pending(g, id, &pel, Some(prev));
    }

    pub(crate) fn ack(&mut self, key: &StreamKey, group: &[u8], ids: &[StreamId]) -> Result<Reply> {
        let ids = unique_ids(ids, self.cfg.limits.ids_per_op_max)?;
        let Some(st) = self.stream(key) else {
            return Ok(Reply::Count(0));
        };
        let Some(g) = st.groups.get(group) else {
            return Ok(Reply::Count(0));
        };
        let sid = st.meta.stream_id;
        let gid = g.meta.group_id;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(held) = self.held(&key.name, gid, id)? {
                found.push((id, held));
            }
        }
        let n = found.len() as u64;
        self.with_group(key, group, |txn, _, g| {
            for &(id, held) in &found {
                txn.remove_held(g, id, held);
                g.meta.counters.acked += 1;
                txn.task_touch(TaskRef::Entry(sid, id), TaskEvent::Acked);
            }
        });
        Ok(Reply::Count(n))
    }

    /// [`crate::Op::Progress`]: fresh ack deadlines for deliveries the consumer still holds.
    pub(crate) fn progress(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
        ids: &[StreamId],
    ) -> Result<Reply> {
        let ids = unique_ids(ids, self.cfg.limits.ids_per_op_max)?;
        let g = self.group(key, group)?;
        let Some(cid) = g.consumers.get(consumer).map(|c| c.consumer_id) else {
            return Ok(Reply::Count(0));
        };
        let policy = g.meta.policy.clone();
        let found = self.pending_of(key, g.meta.group_id, &ids)?;
        let state = self.delivered_state(policy.as_ref());
        let now = self.now;
        let mut n = 0;
        self.with_group(key, group, |txn, _, g| {
            for (id, prev) in &found {
                if prev.consumer_id != cid || !matches!(prev.state, PendingState::Delivered { .. })
                {
                    continue;
                }
                let mut pel = prev.clone();
                pel.delivered_ms = now;
                pel.state = state;
                txn.put_pending(g, *id, &pel, Some(prev));
                n += 1;
            }
            if let Some(c) = g.consumers.get_mut(consumer) {
                c.seen_ms = now;
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
                let (cid, state) = txn.claimer(g, consumer);
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
                let (id, pel) = pending_item(item, &key.name)?;
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
            let (cid, state) = txn.claimer(g, consumer);
            for (id, prev, record) in claims {
                txn.hand_over(g, id, &prev, (cid, state), !justid);
                out.push((id, if justid { None } else { Some(record) }));
            }
        });
        Ok(Reply::AutoClaimed {
            next,
            claimed: out,
            deleted,
        })
    }

    /// [`crate::Op::ReadGroupEx`].
    pub(crate) fn read_groups_ex(
        &mut self,
        streams: &[(StreamKey, ReadFrom)],
        group: &[u8],
        consumer: &[u8],
        limits: ReadLimits,
        noack: bool,
        claim: Option<u64>,
    ) -> Result<Reply> {
        self.check_group_read(streams.iter().map(|(k, _)| k), group, consumer)?;
        if claim.is_some()
            && streams
                .iter()
                .any(|(_, f)| matches!(f, ReadFrom::History(_)))
        {
            return Err(Error::InvalidArgument(
                "CLAIM can be used only with the > ID".into(),
            ));
        }
        let read_max = self.cfg.limits.read_count_max;
        let mut left = limits.max_count.unwrap_or(usize::MAX);
        let mut bytes = limits.max_bytes;
        let mut out: Vec<Vec<ClaimedEntry>> = Vec::with_capacity(streams.len());
        let mut history: Vec<Vec<(StreamId, Option<Record>)>> = Vec::with_capacity(streams.len());
        for (key, from) in streams {
            let want = limits.count.unwrap_or(read_max).min(read_max).min(left);
            let mut got = Vec::new();
            if let Some(min_idle_ms) = claim {
                got =
                    self.claim_idle(key, group, consumer, min_idle_ms, want, noack, &mut bytes)?;
            }
            let mut handed: Vec<(StreamId, Option<Record>)> = Vec::new();
            let mut from = *from;
            while got.len() + handed.len() < want && bytes != Some(0) {
                let rest = want - got.len() - handed.len();
                // Under a byte cap, one entry at a time: none is handed out past it.
                let step = if bytes.is_some() { 1 } else { rest };
                let read = self.read_group(key, group, consumer, Some(step), noack, from)?;
                if read.is_empty() {
                    break;
                }
                for d in read {
                    if let (Some(b), Some(r)) = (bytes.as_mut(), d.record.as_ref()) {
                        *b = b.saturating_sub(crate::ops::reply_bytes(r));
                    }
                    if let ReadFrom::History(_) = from {
                        from = ReadFrom::History(d.id);
                    }
                    handed.push((d.id, d.record));
                }
            }
            left -= got.len() + handed.len();
            got.extend(handed.iter().filter_map(|(id, r)| {
                Some(ClaimedEntry {
                    id: *id,
                    record: r.clone()?,
                    idle_ms: 0,
                    deliveries: 0,
                })
            }));
            out.push(got);
            history.push(handed);
        }
        Ok(match claim {
            Some(_) => Reply::ClaimRead(out),
            None => Reply::GroupRead(history),
        })
    }

    /// Claims for `consumer` up to `count` of the group's entries handed out and idle at
    /// least `min_idle_ms`, in ID order, scanning at most ten pending entries per one
    /// claimed (as XAUTOCLAIM); entries deleted from the stream leave the pending list on
    /// the way; with `noack` the claimed ones leave it too. No entry is claimed once `bytes`
    /// (MAXSIZE's budget, when set) is spent; each claimed one spends its size.
    #[allow(clippy::too_many_arguments)]
    fn claim_idle(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
        min_idle_ms: u64,
        count: usize,
        noack: bool,
        bytes: &mut Option<usize>,
    ) -> Result<Vec<ClaimedEntry>> {
        let g = self.group(key, group)?;
        let (sid, gid) = (self.existing(key)?.meta.stream_id, g.meta.group_id);
        let now = self.now;
        let mut budget = count.saturating_mul(10);
        let mut claims = Vec::new();
        let mut drops = Vec::new();
        {
            let from = keys::id_key(gid, StreamId::MIN);
            let to = keys::id_key(gid, StreamId::MAX);
            let mut it = self.tx.range(&self.ks.pel, from..=to);
            while budget > 0 && claims.len() < count && *bytes != Some(0) {
                let Some(item) = it.next() else { break };
                budget -= 1;
                let (id, pel) = pending_item(item, &key.name)?;
                // A retry waiting out its backoff, or one ready for the next read, is the
                // policy's to hand out; only deliveries in a consumer's hands are claimed.
                if !matches!(pel.state, PendingState::Delivered { .. })
                    || now.saturating_sub(pel.delivered_ms) < min_idle_ms
                {
                    continue;
                }
                match get_record(&self.tx, self.ks, &key.name, sid, id)? {
                    None => drops.push((id, pel)),
                    Some(rec) => {
                        if let Some(b) = bytes.as_mut() {
                            *b = b.saturating_sub(crate::ops::reply_bytes(&rec));
                        }
                        claims.push((id, pel, rec));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(claims.len());
        self.with_group(key, group, |txn, _, g| {
            for (id, pel) in &drops {
                txn.remove_pending(g, *id, pel);
            }
            if claims.is_empty() {
                return;
            }
            let (cid, state) = txn.claimer(g, consumer);
            for (id, prev, record) in claims {
                if noack {
                    txn.remove_pending(g, id, &prev);
                    g.meta.counters.redelivered += 1;
                } else {
                    txn.hand_over(g, id, &prev, (cid, state), true);
                }
                out.push(ClaimedEntry {
                    id,
                    record,
                    idle_ms: now.saturating_sub(prev.delivered_ms),
                    deliveries: prev.deliveries,
                });
            }
        });
        Ok(out)
    }
}

/// One item of a range over the pending list: its entry ID and pending entry.
fn pending_item(item: crate::overlay::Item, stream: &[u8]) -> Result<(StreamId, PendingEntry)> {
    let (k, v) = item.into_inner()?;
    let id = key_id(&k, "pending key", stream)?;
    let pel = codec::decode(Kind::Pending, &v)
        .map_err(|r| corrupt("pending entry", stream, Some(id), r))?;
    Ok((id, pel))
}
