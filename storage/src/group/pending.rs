//! The pending-entries list: every change to a pending entry goes through
//! [`Txn::put_pending`] or [`Txn::remove_pending`], which keep the pending list, the
//! pending lists in memory (with their per-consumer order), the due and ready indexes and
//! the counters in step.

use super::index::{Held, Lookup};
use crate::codec::{self, Kind};
use crate::error::{corrupt, Result};
use crate::id::{StreamId, StreamKey};
use crate::kernel::{GroupState, Txn};
use crate::keys::{self, key_id};
use crate::keyspaces::Keyspaces;
use crate::meta::{DeliveryPolicy, PendingEntry, PendingState};
use crate::overlay::View;

impl Txn<'_> {
    /// Reads a pending entry of a group.
    pub(crate) fn pending_entry(
        &self,
        stream: &[u8],
        gid: u64,
        id: StreamId,
    ) -> Result<Option<PendingEntry>> {
        read_pending(&self.tx, self.ks, stream, gid, id)
    }

    /// What the ack path needs of a pending entry of a group, from the pending lists in
    /// memory (this batch's changes first); a point read only for a group left out of them.
    pub(crate) fn held(&self, stream: &[u8], gid: u64, id: StreamId) -> Result<Option<Held>> {
        if let Some(change) = self.pending_delta.get(gid, id) {
            return Ok(change);
        }
        match self.pending.lookup(gid, id) {
            Lookup::Held(h) => Ok(Some(h)),
            Lookup::Absent => Ok(None),
            Lookup::Unknown => Ok(self.pending_entry(stream, gid, id)?.as_ref().map(Held::of)),
        }
    }

    /// The entries consumer `cid` of group `gid` holds pending, from `from` on, in ID order,
    /// at most `count`, as of this point of the batch: from the pending lists in memory
    /// with this batch's changes, or, for a group left out of them, by a scan of the
    /// group's pending list from `from` (linear in the group's pending entries past it).
    pub(crate) fn owned_ids(
        &self,
        stream: &[u8],
        gid: u64,
        cid: u64,
        from: StreamId,
        count: usize,
    ) -> Result<Vec<StreamId>> {
        let Some(committed) = self.pending.owned(gid, cid, from) else {
            let mut out = Vec::new();
            let (lo, hi) = (keys::id_key(gid, from), keys::id_key(gid, StreamId::MAX));
            for item in self.tx.range(&self.ks.pel, lo..=hi) {
                if out.len() >= count {
                    break;
                }
                let (k, v) = item.into_inner()?;
                let id = key_id(&k, "pending key", stream)?;
                let pel: PendingEntry = codec::decode(Kind::Pending, &v)
                    .map_err(|r| corrupt("pending entry", stream, Some(id), r))?;
                if pel.consumer_id == cid {
                    out.push(id);
                }
            }
            return Ok(out);
        };
        // Committed entries this batch changed are judged by their change alone.
        let mut committed = committed
            .filter(|&id| self.pending_delta.get(gid, id).is_none())
            .peekable();
        let mut changed = self
            .pending_delta
            .owned_by(gid, cid, from)
            .into_iter()
            .peekable();
        let mut out = Vec::new();
        while out.len() < count {
            let next = match (committed.peek(), changed.peek()) {
                (Some(a), Some(b)) if a < b => committed.next(),
                (Some(_), Some(_)) | (None, Some(_)) => changed.next(),
                (Some(_), None) => committed.next(),
                (None, None) => None,
            };
            match next {
                Some(id) => out.push(id),
                None => break,
            }
        }
        Ok(out)
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
        self.pending_delta.put(gid, id, Held::of(pel));
        let prev_owner = prev.map(|p| p.consumer_id);
        if prev_owner != Some(pel.consumer_id) {
            if let Some(c) = prev_owner.and_then(|old| g.consumer_by_id_mut(old)) {
                debug_assert!(c.pending > 0, "consumer pending underflow");
                c.pending = c.pending.saturating_sub(1);
            }
            if let Some(c) = g.consumer_by_id_mut(pel.consumer_id) {
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
        self.remove_held(g, id, Held::of(pel));
    }

    /// [`Txn::remove_pending`] with what [`Txn::held`] found: all the removal needs.
    pub(crate) fn remove_held(&mut self, g: &mut GroupState, id: StreamId, held: Held) {
        let gid = g.meta.group_id;
        self.pending_delta.remove(gid, id);
        self.tx.remove(&self.ks.pel, keys::id_key(gid, id));
        if held.ready() {
            self.tx.remove(&self.ks.ready, keys::id_key(gid, id));
            debug_assert!(g.meta.ready > 0, "ready count underflow");
            g.meta.ready = g.meta.ready.saturating_sub(1);
        }
        if let Some(c) = g.consumer_by_id_mut(held.consumer_id()) {
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

    /// Pending entries of the group for the given IDs (already without duplicates:
    /// `unique_ids`).
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
}

fn read_pending(
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
