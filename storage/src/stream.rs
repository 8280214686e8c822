//! Streams: append, delete, trim, XSETID, delete/rename/flush, and range reads.

use std::borrow::Cow;

use crate::overlay::View;

use crate::codec::{self, Kind};
use crate::error::{corrupt, Error, Result};
use crate::id::{IdSpec, Lane, StreamId, StreamKey};
use crate::kernel::{unique_ids, StreamState, Txn};
use crate::keys::{self, key_id};
use crate::keyspaces::Keyspaces;
use crate::meta::IdempotencyRecord;
use crate::nodes::Node;
use crate::ops::{Event, RefPolicy, Reply, Trim, TrimStrategy};
use crate::record::{Fields, Meta, Record, RecordRef};
use crate::task::{TaskEvent, TaskRef};

/// Checks a name against its limit.
pub(crate) fn check_name(what: &'static str, name: &[u8], max: usize) -> Result<()> {
    if name.is_empty() || name.len() > max {
        return Err(Error::BadName {
            what,
            len: name.len(),
            max,
        });
    }
    Ok(())
}

/// The ID an append gets, by Redis's rules.
pub fn next_id(last: StreamId, spec: IdSpec, now_ms: u64) -> Result<StreamId> {
    match spec {
        IdSpec::Auto => {
            if last == StreamId::MAX {
                return Err(Error::IdExhausted);
            }
            if now_ms > last.ms {
                Ok(StreamId::new(now_ms, 0))
            } else {
                last.next().ok_or(Error::IdExhausted)
            }
        }
        IdSpec::AutoSeq(ms) => {
            if ms > last.ms {
                Ok(StreamId::new(ms, 0))
            } else if ms == last.ms && last.seq < u64::MAX {
                Ok(StreamId::new(ms, last.seq + 1))
            } else {
                Err(Error::IdNotGreater { last })
            }
        }
        IdSpec::Explicit(id) => {
            if id.is_zero() {
                Err(Error::IdZero)
            } else if id <= last {
                Err(Error::IdNotGreater { last })
            } else {
                Ok(id)
            }
        }
    }
}

/// Lane and payload size of a stored entry, tolerant of corruption: a record that is being
/// removed need not decode (its lane is then found in the lane index).
fn lane_and_size(
    r: &impl View,
    ks: &Keyspaces,
    stream_id: u64,
    id: StreamId,
    value: &[u8],
) -> Result<(Lane, u64)> {
    if let Ok(rec) = codec::decode::<Record>(Kind::Entry, value) {
        return Ok((rec.meta.lane, rec.payload_len() as u64));
    }
    for lane in Lane::ALL {
        if lane != Lane::Normal && r.contains_key(&ks.lanes, keys::lane(stream_id, lane, id))? {
            return Ok((lane, 0));
        }
    }
    Ok((Lane::Normal, 0))
}

fn decode_node(v: &[u8], name: &[u8]) -> Result<Node> {
    codec::decode(Kind::Node, v).map_err(|r| corrupt("radix-tree node", name, None, r))
}

/// What a trim does with the next entry it looks at.
enum Step {
    Take,
    Skip,
    Stop,
}

fn validate_trim(t: &Trim) -> Result<()> {
    if t.limit.is_some() && !t.approx {
        return Err(Error::InvalidArgument(
            "LIMIT cannot be used without the special ~ option".into(),
        ));
    }
    Ok(())
}

impl Txn<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        key: &StreamKey,
        spec: IdSpec,
        fields: &Fields,
        meta: &Meta,
        idempotency_key: Option<&[u8]>,
        no_mkstream: bool,
        trim: Option<Trim>,
    ) -> Result<Reply> {
        let l = &self.cfg.limits;
        check_name("stream name", &key.name, l.stream_name_max)?;
        if fields.is_empty() {
            return Err(Error::InvalidArgument(
                "an entry needs at least one field/value pair".into(),
            ));
        }
        if fields.len() > l.fields_max {
            return Err(Error::TooLarge {
                what: "number of fields",
                len: fields.len(),
                max: l.fields_max,
            });
        }
        let payload: usize = fields.iter().map(|(f, v)| f.len() + v.len()).sum();
        if payload > l.entry_bytes_max {
            return Err(Error::TooLarge {
                what: "entry size in bytes",
                len: payload,
                max: l.entry_bytes_max,
            });
        }
        let meta_len = meta.producer.as_ref().map_or(0, Vec::len)
            + meta
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if meta_len > l.meta_bytes_max {
            return Err(Error::TooLarge {
                what: "metadata size in bytes",
                len: meta_len,
                max: l.meta_bytes_max,
            });
        }
        if let Some(k) = idempotency_key {
            check_name("idempotency key", k, l.idempotency_key_max)?;
        }
        // XADD IDMP's (producer, iid), kept per stream by its own rules.
        let idmp = match idempotency_key {
            Some(k) => crate::idmp::parse(k)?,
            None => None,
        };
        // Copied only to settle a schedule header; otherwise stored as the op has it.
        let meta = if meta.has_schedule() {
            let mut settled = meta.clone();
            settled
                .settle_schedule(self.now, l.schedule_ahead_max_ms)
                .map_err(Error::InvalidArgument)?;
            Cow::Owned(settled)
        } else {
            Cow::Borrowed(meta)
        };
        if let Some(t) = &trim {
            validate_trim(t)?;
        }
        let existing = self.stream(key).map(|s| (s.meta.stream_id, s.meta.last_id));
        if existing.is_none() && no_mkstream {
            return Ok(Reply::Nil);
        }
        if let (Some((sid, _)), Some((pid, iid)), Some(k)) = (existing, idmp, idempotency_key) {
            if let Some(id) = self.idmp_repeat(sid, pid, iid, k)? {
                return Ok(Reply::Appended {
                    id,
                    duplicate: true,
                });
            }
        } else if let (Some((sid, _)), Some(k)) = (existing, idempotency_key) {
            if let Some(v) = self.tx.get(&self.ks.idem, keys::idempotency(sid, k))? {
                let rec: IdempotencyRecord = codec::decode(Kind::Idempotency, &v)
                    .map_err(|r| corrupt("idempotency record", &key.name, None, r))?;
                if rec.seen_ms.saturating_add(self.cfg.idempotency_window_ms) > self.now {
                    return Ok(Reply::Appended {
                        id: rec.id,
                        duplicate: true,
                    });
                }
            }
        }
        let last = existing.map_or(StreamId::MIN, |(_, last)| last);
        let id = next_id(last, spec, self.now)?;
        let task = self.admit_task(existing.map(|(sid, _)| sid), &meta)?;

        // From here on nothing can fail but the disk.
        if existing.is_none() {
            self.create_stream(key);
        }
        let record = RecordRef {
            fields,
            meta: &meta,
            dead_letter: None,
        };
        let now = self.now;
        // Only a task needs its producer after the record moves into the stream.
        let producer = task.as_ref().and_then(|_| record.meta.producer.clone());
        let mut sid = 0;
        self.with_stream(key, |txn, st| {
            sid = st.meta.stream_id;
            txn.insert_entry(key, st, id, record);
            if let Some((pid, iid)) = idmp {
                txn.idmp_keep(st.meta.stream_id, pid, iid, id)?;
            } else if let Some(k) = idempotency_key {
                let sid = st.meta.stream_id;
                let v = IdempotencyRecord { id, seen_ms: now };
                txn.tx.insert(
                    &txn.ks.idem,
                    keys::idempotency(sid, k),
                    codec::encode(Kind::Idempotency, &v),
                );
                txn.tx
                    .insert(&txn.ks.idem_exp, keys::idempotency_expiry(now, sid, k), []);
                // The floor is exact when this is the only key, and never above a key (a
                // clock that went back would otherwise hide this one from expiry).
                txn.sys.idem_floor_ms = if txn.sys.idem_keys == 0 {
                    now
                } else {
                    txn.sys.idem_floor_ms.min(now)
                };
                txn.sys.idem_keys += 1;
            }
            match trim {
                Some(t) => txn.trim(key, st, t).map(|_| ()),
                None => Ok(()),
            }
        })
        .unwrap_or(Ok(()))?;
        if let Some(t) = task {
            self.task_appended(key, sid, id, producer.as_deref(), t)?;
        }
        Ok(Reply::Appended {
            id,
            duplicate: false,
        })
    }

    /// Writes an entry whose ID the caller checked, and updates the stream's metadata.
    pub(crate) fn insert_entry(
        &mut self,
        key: &StreamKey,
        st: &mut StreamState,
        id: StreamId,
        record: RecordRef<'_>,
    ) {
        let sid = st.meta.stream_id;
        let lane = record.meta.lane;
        self.tx.insert(
            &self.ks.entries,
            keys::id_key(sid, id),
            codec::encode(Kind::Entry, &record),
        );
        if lane != Lane::Normal {
            self.tx
                .insert(&self.ks.lanes, keys::lane(sid, lane, id), []);
        }
        let lim = self.node_limits;
        let m = &mut st.meta;
        match &mut m.tail {
            Some(t) if !t.is_full_for(record.fields, lim) => t.push(id, record.fields),
            tail => {
                if let Some(old) = tail.take() {
                    self.tx.insert(
                        &self.ks.nodes,
                        keys::id_key(sid, old.first),
                        codec::encode(Kind::Node, &old),
                    );
                }
                *tail = Some(Node::new(id, record.fields));
                m.nodes += 1;
            }
        }
        debug_assert!(id > m.last_id, "appended IDs only grow");
        m.last_id = id;
        if m.length == 0 {
            m.first_id = id;
        }
        m.length += 1;
        m.entries_added += 1;
        m.lane_len[lane.index()] += 1;
        m.lane_last[lane.index()] = id;
        m.bytes += record.payload_len() as u64;
        self.events.push(Event::Appended {
            stream: key.clone(),
            id,
            lane,
        });
    }

    /// Removes entries (given with lane and size) and fixes the metadata.
    pub(crate) fn remove_entries(
        &mut self,
        key: &StreamKey,
        st: &mut StreamState,
        gone: &[(StreamId, Lane, u64)],
    ) -> Result<()> {
        let sid = st.meta.stream_id;
        let mut first_gone = false;
        if self.task_sys.records > 0 && self.open_tasks(sid)? > 0 {
            for &(id, _, _) in gone {
                self.task_touch(TaskRef::Entry(sid, id), TaskEvent::Removed);
            }
        }
        for &(id, lane, size) in gone {
            self.tx.remove_weak(&self.ks.entries, keys::id_key(sid, id));
            if lane != Lane::Normal {
                self.tx
                    .remove_weak(&self.ks.lanes, keys::lane(sid, lane, id));
            }
            let m = &mut st.meta;
            debug_assert!(m.length > 0, "stream length underflow");
            debug_assert!(m.lane_len[lane.index()] > 0, "lane length underflow");
            debug_assert!(m.bytes >= size, "stream bytes underflow");
            m.length -= 1;
            m.lane_len[lane.index()] = m.lane_len[lane.index()].saturating_sub(1);
            m.bytes = m.bytes.saturating_sub(size);
            first_gone |= id == m.first_id;
        }
        self.forget_in_nodes(&key.name, st, gone.iter().map(|g| g.0))?;
        if st.meta.length == 0 {
            st.meta.first_id = StreamId::MIN;
        } else if first_gone {
            let from = keys::id_key(sid, st.meta.first_id);
            let to = keys::id_key(sid, StreamId::MAX);
            let first = match self.tx.range(&self.ks.entries, from..=to).next() {
                Some(g) => Some(key_id(&g.key()?, "entry key", &key.name)?),
                None => None,
            };
            st.meta.first_id = first.unwrap_or(StreamId::MIN);
        }
        Ok(())
    }

    pub(crate) fn delete_entries(&mut self, key: &StreamKey, ids: &[StreamId]) -> Result<Reply> {
        let ids = unique_ids(ids, self.cfg.limits.ids_per_op_max)?;
        let Some(st) = self.stream(key) else {
            return Ok(Reply::Count(0));
        };
        let sid = st.meta.stream_id;
        let mut gone: Vec<(StreamId, Lane, u64)> = Vec::new();
        for id in ids {
            if let Some(v) = self.tx.get(&self.ks.entries, keys::id_key(sid, id))? {
                let (lane, size) = lane_and_size(&self.tx, self.ks, sid, id, &v)?;
                gone.push((id, lane, size));
            }
        }
        if gone.is_empty() {
            return Ok(Reply::Count(0));
        }
        let n = gone.len() as u64;
        self.with_stream(key, |txn, st| {
            for g in &gone {
                if g.0 > st.meta.max_deleted_id {
                    st.meta.max_deleted_id = g.0;
                }
            }
            txn.remove_entries(key, st, &gone)
        })
        .unwrap_or(Ok(()))?;
        Ok(Reply::Count(n))
    }

    pub(crate) fn trim_op(&mut self, key: &StreamKey, t: Trim) -> Result<Reply> {
        validate_trim(&t)?;
        let n = self
            .with_stream(key, |txn, st| txn.trim(key, st, t))
            .unwrap_or(Ok(0))?;
        Ok(Reply::Count(n))
    }

    /// Marks removed entries deleted in their radix-tree nodes; a node left with no live
    /// entry goes, as in Redis (and if it was the tail, the node before becomes the tail).
    fn forget_in_nodes(
        &mut self,
        name: &[u8],
        st: &mut StreamState,
        ids: impl Iterator<Item = StreamId>,
    ) -> Result<()> {
        let sid = st.meta.stream_id;
        let untracked = st.meta.untracked_through;
        let mut ids: Vec<StreamId> = ids.filter(|id| *id > untracked).collect();
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort_unstable();
        let mut cur: Option<Node> = None;
        for id in ids {
            if let Some(t) = st.meta.tail.as_mut().filter(|t| id >= t.first) {
                t.mark_deleted();
                continue;
            }
            if !cur.as_ref().is_some_and(|n| id >= n.first && id <= n.last) {
                if let Some(n) = cur.take() {
                    self.put_node(sid, &mut st.meta, n);
                }
                cur = self.node_at_or_before(sid, id, name)?.map(|(_, n)| n);
            }
            if let Some(n) = cur.as_mut() {
                n.mark_deleted();
            }
        }
        if let Some(n) = cur.take() {
            self.put_node(sid, &mut st.meta, n);
        }
        if st.meta.tail.as_ref().is_some_and(|t| t.live == 0) {
            st.meta.tail = None;
            st.meta.nodes = st.meta.nodes.saturating_sub(1);
            if let Some((k, n)) = self.node_at_or_before(sid, StreamId::MAX, name)? {
                self.tx.remove(&self.ks.nodes, k);
                st.meta.tail = Some(n);
            }
        }
        Ok(())
    }

    /// Writes back a closed node, or removes it when nothing in it is live.
    fn put_node(&mut self, sid: u64, m: &mut crate::meta::StreamMeta, n: Node) {
        let k = keys::id_key(sid, n.first);
        if n.live == 0 {
            self.tx.remove(&self.ks.nodes, k);
            m.nodes = m.nodes.saturating_sub(1);
        } else {
            self.tx
                .insert(&self.ks.nodes, k, codec::encode(Kind::Node, &n));
        }
    }

    /// The closed node with the largest first ID at or below `id`.
    fn node_at_or_before(
        &self,
        sid: u64,
        id: StreamId,
        name: &[u8],
    ) -> Result<Option<(Vec<u8>, Node)>> {
        let from = keys::id_key(sid, StreamId::MIN);
        let to = keys::id_key(sid, id);
        let Some(k) = self.tx.last_key(&self.ks.nodes, from..=to)? else {
            return Ok(None);
        };
        let Some(v) = self.tx.get(&self.ks.nodes, &k)? else {
            return Ok(None);
        };
        Ok(Some((k.to_vec(), decode_node(&v, name)?)))
    }

    /// The closed node with the smallest first ID above `after` (`None`: from the start).
    fn node_after(&self, sid: u64, after: Option<StreamId>, name: &[u8]) -> Result<Option<Node>> {
        let from = match after.and_then(StreamId::next) {
            Some(id) => keys::id_key(sid, id),
            None if after.is_some() => return Ok(None),
            None => keys::id_key(sid, StreamId::MIN),
        };
        let to = keys::id_key(sid, StreamId::MAX);
        let Some(item) = self.tx.range(&self.ks.nodes, from..=to).next() else {
            return Ok(None);
        };
        let (_, v) = item.into_inner()?;
        decode_node(&v, name).map(Some)
    }

    /// Entries of a stream from `from` through `to`, in ID order, with lane and size, as
    /// `step` says: take it, skip it, or stop there.
    fn collect_entries(
        &self,
        name: &[u8],
        sid: u64,
        from: StreamId,
        to: StreamId,
        gone: &mut Vec<(StreamId, Lane, u64)>,
        mut step: impl FnMut(StreamId, Lane, u64) -> Result<Step>,
    ) -> Result<()> {
        let range = keys::id_key(sid, from)..=keys::id_key(sid, to);
        for g in self.tx.range(&self.ks.entries, range) {
            let (k, v) = g.into_inner()?;
            let id = key_id(&k, "entry key", name)?;
            let (lane, size) = lane_and_size(&self.tx, self.ks, sid, id, &v)?;
            match step(id, lane, size)? {
                Step::Take => gone.push((id, lane, size)),
                Step::Skip => {}
                Step::Stop => break,
            }
        }
        Ok(())
    }

    /// Whether a trim with `refs` may remove this entry: with [`RefPolicy::Acked`] only
    /// once no group needs it (a group reading it later, or holding it pending).
    fn trimmable(
        &self,
        name: &[u8],
        st: &StreamState,
        refs: RefPolicy,
        id: StreamId,
        lane: Lane,
    ) -> Result<bool> {
        match refs {
            RefPolicy::Acked => Ok(!self.needed_by_group(name, st, id, lane)?),
            RefPolicy::KeepRef | RefPolicy::DelRef => Ok(true),
        }
    }

    /// Trims the head of a stream. Cannot fail but for the disk (corrupt records are removed
    /// like any other). Returns how many entries went.
    ///
    /// MAXLEN, MINID and MAXAGE follow Redis's `streamTrim` over the emulated radix-tree
    /// nodes ([`crate::nodes`]): whole nodes go while the threshold allows; `~` stops at the
    /// first node that cannot go whole, an exact trim goes on inside it. A `~` trim without
    /// LIMIT removes at most 100 nodes' worth of entries, as in Redis.
    ///
    /// With [`RefPolicy::Acked`] an entry a group still needs stays and the trim goes on
    /// past it (a node that could go whole loses only its other entries), as Redis 8.2 does,
    /// looking at no more entries than a trim may remove (`trim_per_op_max`); with
    /// [`RefPolicy::DelRef`] the removed entries leave every group's pending list too.
    pub(crate) fn trim(&mut self, key: &StreamKey, st: &mut StreamState, t: Trim) -> Result<u64> {
        let (maxlen, min_id) = match t.strategy {
            TrimStrategy::MaxLen(n) => (Some(n), StreamId::MAX),
            TrimStrategy::MinId(id) => (None, id),
            TrimStrategy::MaxAgeMs(ms) => (None, StreamId::new(self.now.saturating_sub(ms), 0)),
            TrimStrategy::MaxBytes(b) => return self.trim_bytes(key, st, b, t.limit, t.refs),
        };
        let cap = self.cfg.limits.trim_per_op_max;
        let limit = match t.limit {
            Some(0) => cap,
            Some(n) => n.min(cap),
            None if t.approx => self.node_limits.approx_trim_limit().min(cap),
            None => cap,
        };
        let sid = st.meta.stream_id;
        let name = &key.name[..];
        let refs = t.refs;
        let mut length = st.meta.length;
        let enough = |length: u64| maxlen.is_some_and(|m| length <= m);
        let mut gone: Vec<(StreamId, Lane, u64)> = Vec::new();
        // Entries looked at: as many as removed, but for ACKED, which skips the ones a group
        // still needs; bounded like removals, so no trim holds the writer longer.
        let mut looked = 0u64;
        let state: &StreamState = st;
        // Entries from before node tracking: exactly, as they were trimmed then.
        if length > 0 && state.meta.first_id <= state.meta.untracked_through {
            let (first, through) = (state.meta.first_id, state.meta.untracked_through);
            let mut n = 0u64;
            self.collect_entries(name, sid, first, through, &mut gone, |id, lane, _| {
                if enough(length) || id >= min_id || n >= limit || looked >= cap {
                    return Ok(Step::Stop);
                }
                looked += 1;
                if !self.trimmable(name, state, refs, id, lane)? {
                    return Ok(Step::Skip);
                }
                length -= 1;
                n += 1;
                Ok(Step::Take)
            })?;
        }
        let mut after: Option<StreamId> = None;
        let mut tail_done = false;
        loop {
            if enough(length) || tail_done || looked >= cap {
                break;
            }
            let node = match self.node_after(sid, after, name)? {
                Some(n) => n,
                None => match state.meta.tail.clone() {
                    Some(n) => {
                        tail_done = true;
                        n
                    }
                    None => break,
                },
            };
            after = Some(node.first);
            let entries = node.live;
            // Redis's LIMIT stops a `~` trim before a node it cannot take whole; an exact trim
            // (no LIMIT in Redis, only our per-op cap) goes on inside the node up to the cap.
            let over = gone.len() as u64 + entries > limit;
            if over && t.approx {
                break;
            }
            let whole = !over
                && match maxlen {
                    Some(m) => length - entries >= m,
                    None => node.last < min_id,
                };
            if whole {
                self.collect_entries(
                    name,
                    sid,
                    node.first,
                    node.last,
                    &mut gone,
                    |id, lane, _| {
                        if looked >= cap {
                            return Ok(Step::Stop);
                        }
                        looked += 1;
                        if !self.trimmable(name, state, refs, id, lane)? {
                            return Ok(Step::Skip);
                        }
                        length -= 1;
                        Ok(Step::Take)
                    },
                )?;
                continue;
            }
            if t.approx {
                break;
            }
            // Inside a node: bounded by the per-op cap too (with both node limits at 0 one
            // node can hold the whole stream).
            let mut room = limit.saturating_sub(gone.len() as u64);
            self.collect_entries(
                name,
                sid,
                node.first,
                node.last,
                &mut gone,
                |id, lane, _| {
                    if enough(length) || id >= min_id || room == 0 || looked >= cap {
                        return Ok(Step::Stop);
                    }
                    looked += 1;
                    if !self.trimmable(name, state, refs, id, lane)? {
                        return Ok(Step::Skip);
                    }
                    length -= 1;
                    room -= 1;
                    Ok(Step::Take)
                },
            )?;
            break;
        }
        self.finish_trim(key, st, gone, refs)
    }

    /// MAXBYTES (cortex retention): oldest entries until the stream's payload fits.
    fn trim_bytes(
        &mut self,
        key: &StreamKey,
        st: &mut StreamState,
        max_bytes: u64,
        limit: Option<u64>,
        refs: RefPolicy,
    ) -> Result<u64> {
        let mut to_free = st.meta.bytes.saturating_sub(max_bytes);
        if to_free == 0 || st.meta.length == 0 {
            return Ok(0);
        }
        let cap = match limit {
            Some(0) | None => self.cfg.limits.trim_per_op_max,
            Some(n) => n.min(self.cfg.limits.trim_per_op_max),
        };
        let mut gone = Vec::new();
        let (mut n, mut looked) = (0u64, 0u64);
        let (sid, first) = (st.meta.stream_id, st.meta.first_id);
        let state: &StreamState = st;
        self.collect_entries(
            &key.name,
            sid,
            first,
            StreamId::MAX,
            &mut gone,
            |id, lane, size| {
                if to_free == 0 || n >= cap || looked >= cap {
                    return Ok(Step::Stop);
                }
                looked += 1;
                if !self.trimmable(&key.name, state, refs, id, lane)? {
                    return Ok(Step::Skip);
                }
                n += 1;
                to_free = to_free.saturating_sub(size.max(1));
                Ok(Step::Take)
            },
        )?;
        self.finish_trim(key, st, gone, refs)
    }

    /// Removes trimmed entries, counting per group those it had not been handed yet; with
    /// [`RefPolicy::DelRef`] they leave every group's pending list as well.
    fn finish_trim(
        &mut self,
        key: &StreamKey,
        st: &mut StreamState,
        gone: Vec<(StreamId, Lane, u64)>,
        refs: RefPolicy,
    ) -> Result<u64> {
        if gone.is_empty() {
            return Ok(0);
        }
        if refs == RefPolicy::DelRef {
            let ids: Vec<StreamId> = gone.iter().map(|(id, _, _)| *id).collect();
            self.drop_trimmed_refs(&key.name, st, &ids)?;
        }
        for (gname, g) in &st.groups {
            let undelivered = gone
                .iter()
                .filter(|(id, lane, _)| *id > g.meta.cursor(*lane))
                .count() as u64;
            if undelivered > 0 {
                st.meta.trimmed_undelivered += undelivered;
                self.events.push(Event::TrimmedUndelivered {
                    stream: key.clone(),
                    group: gname.clone(),
                    count: undelivered,
                });
            }
        }
        self.remove_entries(key, st, &gone)?;
        Ok(gone.len() as u64)
    }

    pub(crate) fn set_id(
        &mut self,
        key: &StreamKey,
        last_id: StreamId,
        entries_added: Option<u64>,
        max_deleted_id: Option<StreamId>,
    ) -> Result<Reply> {
        if let Some(md) = max_deleted_id {
            if last_id < md {
                return Err(Error::MaxDeletedTooLarge);
            }
        }
        let st = self.existing(key)?;
        if last_id < st.meta.max_deleted_id {
            return Err(Error::SetIdBelowMaxDeleted);
        }
        if st.meta.length > 0 {
            let sid = st.meta.stream_id;
            let from = keys::id_key(sid, StreamId::MIN);
            let to = keys::id_key(sid, StreamId::MAX);
            let top = match self.tx.last_key(&self.ks.entries, from..=to)? {
                Some(k) => key_id(&k, "entry key", &key.name)?,
                None => StreamId::MIN,
            };
            if last_id < top {
                return Err(Error::SetIdTooSmall);
            }
            if entries_added.is_some_and(|n| n < st.meta.length) {
                return Err(Error::EntriesAddedTooSmall);
            }
        }
        self.with_stream(key, |_, st| {
            st.meta.last_id = last_id;
            if let Some(n) = entries_added {
                st.meta.entries_added = n;
            }
            if let Some(md) = max_deleted_id {
                st.meta.max_deleted_id = md;
            }
        });
        Ok(Reply::Ok)
    }

    pub(crate) fn delete_stream(&mut self, key: &StreamKey) -> Result<Reply> {
        let Some(st) = self.stream(key) else {
            return Ok(Reply::Count(0));
        };
        let sid = st.meta.stream_id;
        let groups = st.group_ids();
        self.tasks_of_deleted_stream(sid)?;
        for (name, gid) in groups {
            self.tx.remove(&self.ks.groups, keys::group(sid, &name));
            self.tx
                .insert(&self.ks.sys, keys::garbage(keys::GC_GROUP, gid), []);
            self.pending_delta.drop_group(gid);
        }
        self.tx
            .insert(&self.ks.sys, keys::garbage(keys::GC_STREAM, sid), []);
        self.sys.garbage_pending = true;
        self.tx
            .remove(&self.ks.streams, keys::stream(key.ns, &key.name));
        self.staged.insert(key.clone(), None);
        self.events.push(Event::StreamDeleted {
            stream: key.clone(),
        });
        Ok(Reply::Count(1))
    }

    pub(crate) fn rename_stream(
        &mut self,
        from: &StreamKey,
        to: &StreamKey,
        replace: bool,
    ) -> Result<Reply> {
        check_name("stream name", &to.name, self.cfg.limits.stream_name_max)?;
        let Some(st) = self.stream(from) else {
            return Err(Error::NoSuchStream {
                stream: from.name.clone(),
            });
        };
        if from == to {
            return Ok(Reply::Count(1));
        }
        let st = st.clone();
        if self.stream(to).is_some() {
            if !replace {
                return Err(Error::TargetExists);
            }
            self.delete_stream(to)?;
        }
        self.tx
            .remove(&self.ks.streams, keys::stream(from.ns, &from.name));
        self.staged.insert(from.clone(), None);
        self.staged.insert(to.clone(), Some(Box::new(st)));
        self.events.push(Event::Renamed {
            from: from.clone(),
            to: to.clone(),
        });
        Ok(Reply::Count(1))
    }

    /// Keys of a namespace's streams as this batch sees them (some may be deleted).
    fn namespace_keys(&self, ns: u16) -> Vec<StreamKey> {
        let mut names: Vec<StreamKey> = self
            .base
            .streams
            .keys()
            .filter(|k| k.ns == ns)
            .cloned()
            .collect();
        names.extend(self.staged.keys().filter(|k| k.ns == ns).cloned());
        names.sort();
        names.dedup();
        names
    }

    /// SWAPDB: the streams of `a` and `b` trade places. Only their catalog keys move (a
    /// stream's data is keyed by its internal ID); readers blocked on either side re-check.
    pub(crate) fn swap_namespaces(&mut self, a: u16, b: u16) -> Result<Reply> {
        if a == b {
            return Ok(Reply::Ok);
        }
        let mut moved = Vec::new();
        for k in self
            .namespace_keys(a)
            .into_iter()
            .chain(self.namespace_keys(b))
        {
            if let Some(st) = self.stream(&k).cloned() {
                moved.push((k, st));
            }
        }
        for (k, _) in &moved {
            self.tx
                .remove(&self.ks.streams, keys::stream(k.ns, &k.name));
            self.staged.insert(k.clone(), None);
        }
        for (from, st) in moved {
            let to = StreamKey::new(if from.ns == a { b } else { a }, from.name.clone());
            self.staged.insert(to.clone(), Some(Box::new(st)));
            self.events.push(Event::Renamed { from, to });
        }
        Ok(Reply::Ok)
    }

    pub(crate) fn flush_namespace(&mut self, ns: u16) -> Result<Reply> {
        let names = self.namespace_keys(ns);
        let mut n = 0;
        for k in names {
            if let Reply::Count(c) = self.delete_stream(&k)? {
                n += c;
            }
        }
        Ok(Reply::Count(n))
    }
}
