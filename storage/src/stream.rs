//! Streams: append, delete, trim, XSETID, delete/rename/flush, and range reads.

use crate::overlay::View;

use crate::codec::{self, Kind};
use crate::error::{Error, Result};
use crate::id::{IdSpec, Lane, StreamId};
use crate::keys;
use crate::meta::IdempotencyRecord;
use crate::ops::{Event, Reply, StreamKey, Trim, TrimStrategy};
use crate::record::{Fields, Meta, Record};
use crate::store::{corrupt, key_id, unique_ids, Keyspaces, StreamState, Txn};

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

fn validate_trim(t: &Trim) -> Result<()> {
    if t.limit == Some(0) {
        return Err(Error::InvalidArgument("trim LIMIT must be positive".into()));
    }
    Ok(())
}

impl Txn<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        key: &StreamKey,
        spec: IdSpec,
        fields: Fields,
        meta: Meta,
        idempotency_key: Option<Vec<u8>>,
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
        if let Some(k) = &idempotency_key {
            check_name("idempotency key", k, l.idempotency_key_max)?;
        }
        if let Some(t) = &trim {
            validate_trim(t)?;
        }
        let existing = self.stream(key).map(|s| (s.meta.stream_id, s.meta.last_id));
        if existing.is_none() && no_mkstream {
            return Ok(Reply::Nil);
        }
        if let (Some((sid, _)), Some(k)) = (existing, &idempotency_key) {
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

        // From here on nothing can fail but the disk.
        if existing.is_none() {
            self.create_stream(key);
        }
        let record = Record {
            fields,
            meta,
            dead_letter: None,
        };
        let now = self.now;
        self.with_stream(key, |txn, st| {
            txn.insert_entry(key, st, id, &record);
            if let Some(k) = &idempotency_key {
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
        record: &Record,
    ) {
        let sid = st.meta.stream_id;
        let lane = record.meta.lane;
        self.tx.insert(
            &self.ks.entries,
            keys::id_key(sid, id),
            codec::encode(Kind::Entry, record),
        );
        if lane != Lane::Normal {
            self.tx
                .insert(&self.ks.lanes, keys::lane(sid, lane, id), []);
        }
        let m = &mut st.meta;
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

    /// Trims the head of a stream. Cannot fail but for the disk (corrupt records are removed
    /// like any other). Returns how many entries went.
    pub(crate) fn trim(&mut self, key: &StreamKey, st: &mut StreamState, t: Trim) -> Result<u64> {
        let sid = st.meta.stream_id;
        let cap = t
            .limit
            .unwrap_or(u64::MAX)
            .min(self.cfg.limits.trim_per_op_max);
        let (max_delete, min_id) = match t.strategy {
            TrimStrategy::MaxLen(n) => (st.meta.length.saturating_sub(n), StreamId::MAX),
            TrimStrategy::MinId(id) => (u64::MAX, id),
            TrimStrategy::MaxAgeMs(ms) => (u64::MAX, StreamId::new(self.now.saturating_sub(ms), 0)),
            TrimStrategy::MaxBytes(_) => (u64::MAX, StreamId::MAX),
        };
        // MaxBytes: bytes still to free.
        let mut to_free = match t.strategy {
            TrimStrategy::MaxBytes(b) => st.meta.bytes.saturating_sub(b),
            _ => u64::MAX,
        };
        if to_free == 0 {
            return Ok(0);
        }
        let want = max_delete.min(cap);
        if want == 0 || st.meta.length == 0 || st.meta.first_id >= min_id {
            return Ok(0);
        }
        let from = keys::id_key(sid, st.meta.first_id);
        let to = keys::id_key(sid, StreamId::MAX);
        let mut gone = Vec::new();
        for g in self.tx.range(&self.ks.entries, from..=to) {
            let (k, v) = g.into_inner()?;
            let id = key_id(&k, "entry key", &key.name)?;
            if gone.len() as u64 >= want || id >= min_id {
                break;
            }
            let (lane, size) = lane_and_size(&self.tx, self.ks, sid, id, &v)?;
            gone.push((id, lane, size));
            if matches!(t.strategy, TrimStrategy::MaxBytes(_)) {
                to_free = to_free.saturating_sub(size.max(1));
                if to_free == 0 {
                    break;
                }
            }
        }
        // Count, per group, entries it had not been handed yet.
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
        let st = self.existing(key)?;
        if let Some(md) = max_deleted_id {
            if last_id < md {
                return Err(Error::MaxDeletedTooLarge);
            }
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
        let groups: Vec<(Vec<u8>, u64)> = st
            .groups
            .iter()
            .map(|(n, g)| (n.clone(), g.meta.group_id))
            .collect();
        for (name, gid) in groups {
            self.tx.remove(&self.ks.groups, keys::group(sid, &name));
            self.tx
                .insert(&self.ks.sys, keys::garbage(keys::GC_GROUP, gid), []);
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
        self.staged.insert(to.clone(), Some(st));
        self.events.push(Event::Renamed {
            from: from.clone(),
            to: to.clone(),
        });
        Ok(Reply::Count(1))
    }

    pub(crate) fn flush_namespace(&mut self, ns: u16) -> Result<Reply> {
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
        let mut n = 0;
        for k in names {
            if let Reply::Count(c) = self.delete_stream(&k)? {
                n += c;
            }
        }
        Ok(Reply::Count(n))
    }
}
