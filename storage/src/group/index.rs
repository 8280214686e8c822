//! The pending lists in memory: per group, each pending entry's owner and whether it is in
//! the ready index ([`Held`]), so acknowledging (XACK, XACKDEL, XDELEX ACKED/DELREF) finds
//! what it removes without a point read of the `pel` keyspace; and the same entries ordered
//! by owner, so a consumer's own pending list (a history read, XGROUP DELCONSUMER) needs no
//! second key per pending entry on disk. Redis keeps its pending lists in memory for the
//! same reasons.
//!
//! - The durable pending list stays the truth: every change still writes the `pel` and
//!   `ready` keys in the batch, so crash safety is as before; this index is rebuilt from
//!   `pel` at open. (Stores written before it kept a per-consumer keyspace, `cpel`; it is
//!   emptied at open and no longer written.)
//! - Only the writer touches it (it sits under the store's writer lock). A batch records its
//!   changes in an [`IndexDelta`] that reads see first; the delta is applied after the
//!   commit succeeded and dropped when it failed, so the index never holds what the disk
//!   does not, and nothing is cloned per commit.
//! - It is bounded ([`crate::StoreConfig::pending_index_bytes`]). Past the bound the
//!   largest group leaves the index and is served by point reads again, until its pending
//!   list is empty; the figures are in [`PendingIndexStats`].
//! - The by-owner order (one B-tree per consumer) is cleaned lazily: an ack or a claim
//!   leaves the entry's key in its old owner's tree instead of finding it there (a random
//!   descent through a tree of millions of keys cost a third of an ack's time), readers
//!   skip keys whose entry is no longer pending under that owner, a sweep paced by the acks
//!   removes them, so a consumer's stale keys stay within its live ones' number plus
//!   [`SWEEP_FLOOR`] and one batch's, and a consumer left with no live entry drops its tree
//!   whole. A consumer's own pending list so costs a walk of at most about twice its
//!   length, whatever the other consumers hold.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::{HashMap, HashMapExt};

use crate::codec::{self, Kind};
use crate::error::{corrupt, Result};
use crate::id::StreamId;
use crate::keys::key_id;
use crate::keyspaces::Keyspaces;
use crate::meta::{PendingEntry, PendingState};

/// What the ack path needs of a pending entry: the owner's consumer ID and whether the
/// entry is in the ready index. One word: the ID shifted left, the ready flag in bit 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held(u64);

impl Held {
    pub(crate) fn of(pel: &PendingEntry) -> Held {
        debug_assert!(pel.consumer_id < 1 << 63, "consumer id out of range");
        Held(pel.consumer_id << 1 | u64::from(pel.state == PendingState::Ready))
    }

    pub(crate) fn consumer_id(self) -> u64 {
        self.0 >> 1
    }

    pub(crate) fn ready(self) -> bool {
        self.0 & 1 == 1
    }
}

/// One consumer's pending entries in ID order, with stale ones: entries since acked or
/// claimed by another consumer, left for [`Owned::sweep`] (finding each in the tree was a
/// random descent through up to millions of keys, a third of an ack's time).
#[derive(Default)]
struct Owned {
    /// Live and stale entry IDs.
    ids: BTreeSet<StreamId>,
    /// How many of `ids` are live.
    live: usize,
    /// Keys made stale since the last sweep, which it pays back.
    debt: usize,
    /// Where the next sweep starts.
    cursor: StreamId,
}

impl Owned {
    fn stale(&self) -> usize {
        self.ids.len() - self.live
    }

    /// Removes stale keys while they outnumber the live ones by more than [`SWEEP_FLOOR`].
    /// It visits keys in ID order from where the last sweep stopped (a walk along the
    /// tree's leaves, not a descent per key): twice as many as were made stale since the
    /// last sweep, plus the excess over the floor up to [`SWEEP_STEP`]. Past the floor at
    /// least half the keys are stale, so each visit removes one with even odds or better,
    /// and the excess is gone within a few batches. `live` tells a live key. Returns the
    /// keys removed.
    fn sweep(&mut self, live: impl Fn(StreamId) -> bool) -> usize {
        let debt = std::mem::take(&mut self.debt);
        let excess = self.stale().saturating_sub(self.live + SWEEP_FLOOR);
        if debt == 0 || excess == 0 {
            return 0;
        }
        let budget = debt
            .saturating_mul(2)
            .saturating_add(excess.min(SWEEP_STEP));
        let mut dead = Vec::new();
        let mut next = None;
        for (seen, &id) in self.ids.range(self.cursor..).enumerate() {
            if seen == budget {
                next = Some(id);
                break;
            }
            if !live(id) {
                dead.push(id);
            }
        }
        for id in &dead {
            self.ids.remove(id);
        }
        // At the end of the tree the next pass starts over.
        self.cursor = next.unwrap_or(StreamId::MIN);
        dead.len()
    }
}

/// A group's pending entries by ID: one hash table, split into [`SHARDS`] once it holds
/// [`SPLIT_AT`] entries, so that no table's growth (a pass over all its entries into a
/// table twice the size) stalls the writer: one table growing past 917,504 entries took
/// 135 ms here, one of 64 shards at a million entries in all takes well under a
/// millisecond.
struct ById {
    shards: Vec<HashMap<StreamId, Held>>,
    len: usize,
    /// Slots allocated in all shards (a table grows only on insertion).
    capacity: usize,
}

/// Entries at which a group's table is split into shards.
const SPLIT_AT: usize = 1 << 15;

/// Shards of a split table.
const SHARDS: usize = 64;

impl Default for ById {
    fn default() -> Self {
        ById {
            shards: vec![HashMap::new()],
            len: 0,
            capacity: 0,
        }
    }
}

impl ById {
    /// The shard of `id`: a multiplicative mix of both halves, its top six bits. (Each
    /// shard's own hasher is seeded at random, as every writer table is.)
    fn shard(&self, id: StreamId) -> usize {
        if self.shards.len() == 1 {
            return 0;
        }
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        ((id.ms.wrapping_mul(K) ^ id.seq).wrapping_mul(K) >> 58) as usize
    }

    fn get(&self, id: &StreamId) -> Option<&Held> {
        self.shards[self.shard(*id)].get(id)
    }

    /// True when `id` is pending under consumer `cid`.
    fn held_by(&self, id: StreamId, cid: u64) -> bool {
        self.get(&id).is_some_and(|h| h.consumer_id() == cid)
    }

    fn insert(&mut self, id: StreamId, h: Held) -> Option<Held> {
        if self.shards.len() == 1 && self.len >= SPLIT_AT {
            self.split();
        }
        let i = self.shard(id);
        let shard = &mut self.shards[i];
        let before = shard.capacity();
        let old = shard.insert(id, h);
        self.capacity += shard.capacity() - before;
        self.len += usize::from(old.is_none());
        old
    }

    fn remove(&mut self, id: &StreamId) -> Option<Held> {
        let i = self.shard(*id);
        let old = self.shards[i].remove(id);
        self.len -= usize::from(old.is_some());
        old
    }

    fn split(&mut self) {
        let one = std::mem::take(&mut self.shards);
        self.shards = (0..SHARDS)
            .map(|_| HashMap::with_capacity(2 * SPLIT_AT / SHARDS))
            .collect();
        for (id, h) in one.into_iter().flatten() {
            let i = self.shard(id);
            self.shards[i].insert(id, h);
        }
        self.capacity = self.shards.iter().map(HashMap::capacity).sum();
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated in all shards.
    fn capacity(&self) -> usize {
        self.capacity
    }
}

/// One held group's pending list: by entry ID, and the same entries by owner.
#[derive(Default)]
struct GroupPending {
    by_id: ById,
    /// Per consumer ID, the entries it holds (an entry of `by_id` is live in its owner's
    /// tree and stale in any other that still has it). A consumer left with no live entry
    /// leaves the map, stale keys and all.
    by_owner: HashMap<u64, Owned>,
    /// Keys in all of `by_owner`'s trees.
    owner_keys: usize,
    /// Consumers with a debt to sweep.
    indebted: Vec<u64>,
}

/// Heap bytes per by-owner key: the key (16 bytes) with the B-tree's node overhead at half
/// fill.
const OWNER_KEY_BYTES: u64 = 40;

/// Heap bytes per consumer with pending entries: its slot in `by_owner` and a tree's root.
const OWNER_BYTES: u64 = 256;

/// Stale by-owner keys a consumer may hold beyond as many as it has live ones, before the
/// sweep starts.
const SWEEP_FLOOR: usize = 1024;

/// The most keys one sweep visits to pay back an excess over the floor (beyond twice the
/// keys its batch made stale): a few hundred microseconds.
const SWEEP_STEP: usize = 4096;

impl GroupPending {
    /// Holds `id` as `h`; true when it was not held before.
    fn put(&mut self, id: StreamId, h: Held) -> bool {
        let old = self.by_id.insert(id, h);
        match old {
            Some(old) if old.consumer_id() == h.consumer_id() => return false,
            // The old owner's key goes stale.
            Some(old) => self.went_stale(old.consumer_id()),
            None => {}
        }
        let owned = self.by_owner.entry(h.consumer_id()).or_default();
        owned.live += 1;
        if owned.ids.insert(id) {
            self.owner_keys += 1;
        }
        old.is_none()
    }

    /// Forgets `id` (its by-owner key goes stale); true when it was held.
    fn remove(&mut self, id: StreamId) -> bool {
        match self.by_id.remove(&id) {
            Some(old) => {
                self.went_stale(old.consumer_id());
                true
            }
            None => false,
        }
    }

    /// One of `cid`'s keys went stale: with none live left its tree goes, else the key is
    /// owed to the sweep.
    fn went_stale(&mut self, cid: u64) {
        let Some(owned) = self.by_owner.get_mut(&cid) else {
            debug_assert!(false, "consumer {cid} holds an entry but has no tree");
            return;
        };
        owned.live -= 1;
        if owned.live == 0 {
            self.owner_keys -= owned.ids.len();
            self.by_owner.remove(&cid);
            return;
        }
        if owned.debt == 0 {
            self.indebted.push(cid);
        }
        owned.debt += 1;
    }

    /// Sweeps the trees of the consumers whose keys went stale since the last sweep.
    fn sweep(&mut self) {
        let by_id = &self.by_id;
        for cid in self.indebted.drain(..) {
            if let Some(owned) = self.by_owner.get_mut(&cid) {
                self.owner_keys -= owned.sweep(|id| by_id.held_by(id, cid));
            }
        }
    }

    /// True when `cid`'s key `id` is live.
    fn live(&self, cid: u64, id: StreamId) -> bool {
        self.by_id.held_by(id, cid)
    }

    /// The live entries consumer `cid` owns, from `from` on, in ID order.
    fn owned(&self, cid: u64, from: StreamId) -> impl Iterator<Item = StreamId> + '_ {
        self.by_owner
            .get(&cid)
            .into_iter()
            .flat_map(move |o| o.ids.range(from..))
            .copied()
            .filter(move |&id| self.live(cid, id))
    }

    fn len(&self) -> u64 {
        self.by_id.len() as u64
    }

    /// Estimated heap bytes: hashbrown keeps one control byte per bucket beside each
    /// (key, value) slot, and a split table the shards' headers (an empty group counts
    /// nothing); the by-owner keys count stale ones too.
    fn bytes(&self) -> u64 {
        let slot = std::mem::size_of::<(StreamId, Held)>() + 1;
        (self.by_id.capacity() * slot) as u64
            + ((self.by_id.shards.len() - 1) * std::mem::size_of::<HashMap<StreamId, Held>>())
                as u64
            + self.owner_keys as u64 * OWNER_KEY_BYTES
            + self.by_owner.len() as u64 * OWNER_BYTES
    }
}

/// One group's pending list in memory, or its absence.
enum GroupIndex {
    Indexed(GroupPending),
    /// Left out to keep the bound: its entries are read from the store.
    Unindexed,
}

/// The answer of the committed index for one entry.
pub(crate) enum Lookup {
    /// Pending, with what the ack path needs.
    Held(Held),
    /// Not pending.
    Absent,
    /// The group is not indexed: read the store.
    Unknown,
}

/// What a batch changed, applied after its commit.
#[derive(Default)]
pub(crate) struct IndexDelta {
    /// (group ID, entry ID) -> the entry's new state (`None`: no longer pending).
    changes: HashMap<(u64, StreamId), Option<Held>>,
    /// Groups destroyed (with their stream or alone).
    dropped: Vec<u64>,
}

impl IndexDelta {
    pub(crate) fn get(&self, gid: u64, id: StreamId) -> Option<Option<Held>> {
        self.changes.get(&(gid, id)).copied()
    }

    pub(crate) fn put(&mut self, gid: u64, id: StreamId, held: Held) {
        self.changes.insert((gid, id), Some(held));
    }

    pub(crate) fn remove(&mut self, gid: u64, id: StreamId) {
        self.changes.insert((gid, id), None);
    }

    pub(crate) fn drop_group(&mut self, gid: u64) {
        self.dropped.push(gid);
    }

    /// The entries this batch made (or left) pending under consumer `cid` of group `gid`,
    /// from `from` on, in ID order. Linear in the batch's changes: only a consumer's own
    /// pending list asks (a history read, XGROUP DELCONSUMER).
    pub(crate) fn owned_by(&self, gid: u64, cid: u64, from: StreamId) -> Vec<StreamId> {
        let mut ids: Vec<StreamId> = self
            .changes
            .iter()
            .filter(|((g, id), h)| {
                *g == gid && *id >= from && h.is_some_and(|h| h.consumer_id() == cid)
            })
            .map(|((_, id), _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// The index's size, readable without the writer lock (for `/metrics`).
#[derive(Default)]
pub(crate) struct PendingIndexStats {
    entries: AtomicU64,
    bytes: AtomicU64,
    groups: AtomicU64,
    unindexed_groups: AtomicU64,
}

/// A snapshot of [`PendingIndexStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingIndexFigures {
    /// Pending entries held in memory.
    pub entries: u64,
    /// Estimated heap bytes of the index (table capacity, not just entries).
    pub bytes: u64,
    /// Groups whose pending list is held.
    pub groups: u64,
    /// Groups left out to keep the bound (served by point reads).
    pub unindexed_groups: u64,
}

impl PendingIndexStats {
    pub(crate) fn figures(&self) -> PendingIndexFigures {
        PendingIndexFigures {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            unindexed_groups: self.unindexed_groups.load(Ordering::Relaxed),
        }
    }
}

/// Fixed cost of one group's entry in the outer table, with the inner table's header.
const GROUP_BYTES: u64 = (std::mem::size_of::<(u64, GroupIndex)>() + 1) as u64;

/// The pending lists of every live group.
pub(crate) struct PendingIndex {
    groups: HashMap<u64, GroupIndex>,
    max_bytes: u64,
    entries: u64,
    bytes: u64,
    unindexed: u64,
}

impl PendingIndex {
    /// Builds the index from the committed `pel` keyspace for the live groups `gids`, in
    /// group order, until `max_bytes`; groups past it are left out.
    pub(crate) fn load(
        snap: &fjall::Snapshot,
        ks: &Keyspaces,
        gids: &[u64],
        max_bytes: u64,
    ) -> Result<PendingIndex> {
        let mut index = PendingIndex {
            groups: HashMap::with_capacity(gids.len()),
            max_bytes,
            entries: 0,
            bytes: 0,
            unindexed: 0,
        };
        for &gid in gids {
            let mut group = GroupPending::default();
            let mut fits = true;
            for item in fjall::Readable::prefix(snap, ks.pel.inner(), crate::keys::prefix(gid)) {
                let (k, v) = item.into_inner()?;
                let id = key_id(&k, "pending key", b"")?;
                let pel: PendingEntry = codec::decode(Kind::Pending, &v)
                    .map_err(|r| corrupt("pending entry", b"", Some(id), r))?;
                group.put(id, Held::of(&pel));
                if index.bytes + GROUP_BYTES + group.bytes() > max_bytes {
                    fits = false;
                    break;
                }
            }
            index.bytes += GROUP_BYTES;
            if fits {
                index.entries += group.len();
                index.bytes += group.bytes();
                index.groups.insert(gid, GroupIndex::Indexed(group));
            } else {
                index.unindexed += 1;
                index.groups.insert(gid, GroupIndex::Unindexed);
            }
        }
        Ok(index)
    }

    /// The committed state of one entry. A group the index has never seen was created after
    /// the index was built and every change to it has gone through a delta: it is held,
    /// empty so far.
    pub(crate) fn lookup(&self, gid: u64, id: StreamId) -> Lookup {
        match self.groups.get(&gid) {
            None => Lookup::Absent,
            Some(GroupIndex::Unindexed) => Lookup::Unknown,
            Some(GroupIndex::Indexed(g)) => g
                .by_id
                .get(&id)
                .map_or(Lookup::Absent, |h| Lookup::Held(*h)),
        }
    }

    /// The committed pending entries consumer `cid` of group `gid` owns, from `from` on, in
    /// ID order; `None` when the group is left out of the index (read the store).
    pub(crate) fn owned(
        &self,
        gid: u64,
        cid: u64,
        from: StreamId,
    ) -> Option<impl Iterator<Item = StreamId> + '_> {
        let group = match self.groups.get(&gid) {
            Some(GroupIndex::Unindexed) => return None,
            Some(GroupIndex::Indexed(g)) => Some(g),
            None => None,
        };
        Some(group.into_iter().flat_map(move |g| g.owned(cid, from)))
    }

    /// Applies a committed batch's changes. `emptied`: groups the batch left with no pending
    /// entry (an unindexed one among them is held again, empty).
    pub(crate) fn apply(&mut self, delta: IndexDelta, emptied: &[u64]) {
        // Groups whose by-owner keys this batch made stale (almost always one).
        let mut swept: Vec<u64> = Vec::new();
        for ((gid, id), change) in delta.changes {
            let group = self.groups.entry(gid).or_insert_with(|| {
                self.bytes += GROUP_BYTES;
                GroupIndex::Indexed(GroupPending::default())
            });
            let GroupIndex::Indexed(g) = group else {
                continue;
            };
            let before = g.bytes();
            let owed = !g.indebted.is_empty();
            match change {
                Some(h) => {
                    if g.put(id, h) {
                        self.entries += 1;
                    }
                }
                None => {
                    if g.remove(id) {
                        self.entries -= 1;
                    }
                }
            }
            self.bytes = self.bytes - before + g.bytes();
            // A group is listed once: when its first consumer comes to owe a sweep (the
            // sweeps below are what settle the debts).
            if !owed && !g.indebted.is_empty() {
                swept.push(gid);
            }
        }
        for gid in swept {
            if let Some(GroupIndex::Indexed(g)) = self.groups.get_mut(&gid) {
                let before = g.bytes();
                g.sweep();
                self.bytes = self.bytes - before + g.bytes();
            }
        }
        for gid in delta.dropped {
            self.forget(gid);
        }
        for &gid in emptied {
            if let Some(g @ GroupIndex::Unindexed) = self.groups.get_mut(&gid) {
                *g = GroupIndex::Indexed(GroupPending::default());
                self.unindexed -= 1;
            }
        }
        while self.bytes > self.max_bytes && self.evict_largest() {}
    }

    /// Removes a destroyed group.
    fn forget(&mut self, gid: u64) {
        match self.groups.remove(&gid) {
            Some(GroupIndex::Indexed(g)) => {
                self.entries -= g.len();
                self.bytes -= g.bytes() + GROUP_BYTES;
            }
            Some(GroupIndex::Unindexed) => {
                self.unindexed -= 1;
                self.bytes -= GROUP_BYTES;
            }
            None => {}
        }
    }

    /// Leaves the largest held group out; false when none is left to leave out.
    fn evict_largest(&mut self) -> bool {
        let largest = self
            .groups
            .iter()
            .filter_map(|(gid, g)| match g {
                GroupIndex::Indexed(g) if g.len() > 0 => Some((g.bytes(), *gid)),
                _ => None,
            })
            .max();
        let Some((_, gid)) = largest else {
            return false;
        };
        if let Some(g) = self.groups.get_mut(&gid) {
            if let GroupIndex::Indexed(g) = std::mem::replace(g, GroupIndex::Unindexed) {
                self.entries -= g.len();
                self.bytes -= g.bytes();
                self.unindexed += 1;
            }
        }
        true
    }

    /// Where the index disagrees with the `pel` keyspace of `snap` (taken under the writer
    /// lock, so of the same commit) for the live groups `gids`: at most ten descriptions.
    pub(crate) fn differences(
        &self,
        snap: &fjall::Snapshot,
        ks: &Keyspaces,
        gids: &[u64],
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for &gid in gids {
            let empty = GroupPending::default();
            let group = match self.groups.get(&gid) {
                Some(GroupIndex::Unindexed) => continue,
                Some(GroupIndex::Indexed(g)) => g,
                None => &empty,
            };
            let held = &group.by_id;
            let mut stored = 0;
            for item in fjall::Readable::prefix(snap, ks.pel.inner(), crate::keys::prefix(gid)) {
                let (k, v) = item.into_inner()?;
                let id = key_id(&k, "pending key", b"")?;
                let pel: PendingEntry = codec::decode(Kind::Pending, &v)
                    .map_err(|r| corrupt("pending entry", b"", Some(id), r))?;
                stored += 1;
                if held.get(&id) != Some(&Held::of(&pel)) && out.len() < 10 {
                    out.push(format!(
                        "group {gid}: pending entry {id} is {:?} in memory, {:?} stored",
                        held.get(&id),
                        Held::of(&pel)
                    ));
                }
                let listed = group
                    .by_owner
                    .get(&pel.consumer_id)
                    .is_some_and(|o| o.ids.contains(&id));
                if !listed && out.len() < 10 {
                    out.push(format!(
                        "group {gid}: pending entry {id} is missing from consumer {}'s list in memory",
                        pel.consumer_id
                    ));
                }
            }
            if stored != held.len() && out.len() < 10 {
                out.push(format!(
                    "group {gid}: {} pending entries in memory, {stored} stored",
                    held.len()
                ));
            }
            let mut live = 0;
            for (&cid, o) in &group.by_owner {
                let n = o.ids.iter().filter(|&&id| group.live(cid, id)).count();
                if n != o.live && out.len() < 10 {
                    out.push(format!(
                        "group {gid}: consumer {cid} has {n} entries in its list in memory, {} counted",
                        o.live
                    ));
                }
                live += n;
            }
            if live != held.len() && out.len() < 10 {
                out.push(format!(
                    "group {gid}: {live} entries in the consumers' lists in memory, {} pending",
                    held.len()
                ));
            }
        }
        Ok(out)
    }

    /// Publishes the figures.
    pub(crate) fn publish(&self, stats: &PendingIndexStats) {
        stats.entries.store(self.entries, Ordering::Relaxed);
        stats.bytes.store(self.bytes, Ordering::Relaxed);
        let held = self.groups.len() as u64 - self.unindexed;
        stats.groups.store(held, Ordering::Relaxed);
        stats
            .unindexed_groups
            .store(self.unindexed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(cid: u64, ready: bool) -> Held {
        Held(cid << 1 | u64::from(ready))
    }

    fn index(max_bytes: u64) -> PendingIndex {
        PendingIndex {
            groups: HashMap::new(),
            max_bytes,
            entries: 0,
            bytes: 0,
            unindexed: 0,
        }
    }

    fn id(n: u64) -> StreamId {
        StreamId { ms: n, seq: 0 }
    }

    #[test]
    fn held_packs_owner_and_ready() {
        let h = held(41, true);
        assert_eq!((h.consumer_id(), h.ready()), (41, true));
        let h = held(u64::MAX >> 1, false);
        assert_eq!((h.consumer_id(), h.ready()), (u64::MAX >> 1, false));
    }

    #[test]
    fn a_delta_counts_only_once_applied() {
        let mut ix = index(u64::MAX);
        let mut d = IndexDelta::default();
        d.put(7, id(1), held(1, false));
        d.put(7, id(2), held(1, false));
        assert!(matches!(ix.lookup(7, id(1)), Lookup::Absent));
        ix.apply(d, &[]);
        assert!(matches!(ix.lookup(7, id(1)), Lookup::Held(h) if h == held(1, false)));
        assert_eq!(ix.entries, 2);
        let mut d = IndexDelta::default();
        d.remove(7, id(1));
        d.remove(7, id(9));
        ix.apply(d, &[]);
        assert!(matches!(ix.lookup(7, id(1)), Lookup::Absent));
        assert_eq!(ix.entries, 1);
        let mut d = IndexDelta::default();
        d.drop_group(7);
        ix.apply(d, &[]);
        assert_eq!((ix.entries, ix.bytes), (0, 0));
    }

    #[test]
    fn each_consumers_entries_are_kept_in_order_through_claims_and_acks() {
        let mut ix = index(u64::MAX);
        let mut d = IndexDelta::default();
        for n in [5, 1, 3, 2, 4] {
            d.put(7, id(n), held(n % 2, false));
        }
        ix.apply(d, &[]);
        let owned = |ix: &PendingIndex, cid, from| {
            ix.owned(7, cid, id(from))
                .map(|it| it.map(|i| i.ms).collect::<Vec<_>>())
        };
        assert_eq!(owned(&ix, 1, 0), Some(vec![1, 3, 5]));
        assert_eq!(owned(&ix, 0, 0), Some(vec![2, 4]));
        assert_eq!(owned(&ix, 1, 2), Some(vec![3, 5]));
        assert_eq!(owned(&ix, 9, 0), Some(vec![]));
        // A claim moves the entry to its new owner's list; an ack removes it from both.
        let mut d = IndexDelta::default();
        d.put(7, id(3), held(0, true));
        d.remove(7, id(5));
        // The batch's own view of consumer 0's list, before the commit.
        assert_eq!(d.owned_by(7, 0, id(0)), vec![id(3)]);
        assert_eq!(d.owned_by(7, 1, id(0)), vec![]);
        ix.apply(d, &[]);
        assert_eq!(owned(&ix, 1, 0), Some(vec![1]));
        assert_eq!(owned(&ix, 0, 0), Some(vec![2, 3, 4]));
        assert_eq!(ix.entries, 4);
        // A group the index never saw is empty; one left out is unknown.
        assert_eq!(ix.owned(8, 0, id(0)).map(|it| it.count()), Some(0));
        ix.groups.insert(9, GroupIndex::Unindexed);
        assert!(ix.owned(9, 0, id(0)).is_none());
    }

    #[test]
    fn stale_owner_keys_are_skipped_and_swept_to_near_the_live_ones() {
        let mut ix = index(u64::MAX);
        let mut d = IndexDelta::default();
        for n in 0..20_000 {
            d.put(7, id(n), held(n % 3, false));
        }
        // Consumer 9 holds 5,000 entries it never acks.
        for n in 100_000..105_000 {
            d.put(7, id(n), held(9, false));
        }
        ix.apply(d, &[]);
        // Ack in batches of 100, in a scattered order, and move every tenth survivor to
        // consumer 5 on the way.
        let mut live: std::collections::BTreeMap<u64, u64> = (0..20_000)
            .map(|n| (n, n % 3))
            .chain((100_000..105_000).map(|n| (n, 9)))
            .collect();
        let mut order: Vec<u64> = (0..20_000).collect();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let mut most_stale = 0;
        for (round, acks) in order[..18_000].chunks(100).enumerate() {
            let mut d = IndexDelta::default();
            for &n in acks {
                if live.remove(&n).is_some() {
                    d.remove(7, id(n));
                }
            }
            if round % 10 == 0 {
                for (&n, owner) in live.iter_mut().filter(|(n, _)| **n < 20_000).step_by(10) {
                    *owner = 5;
                    d.put(7, id(n), held(5, false));
                }
            }
            ix.apply(d, &[]);
            let Some(GroupIndex::Indexed(g)) = ix.groups.get(&7) else {
                panic!("group 7 is held");
            };
            // Each consumer's stale keys stay within its live ones' number, the floor and
            // one batch's (100 acks, or up to 2,000 claims), whatever consumer 9 holds.
            for (cid, o) in &g.by_owner {
                most_stale = most_stale.max(o.stale());
                assert!(
                    o.stale() <= o.live + SWEEP_FLOOR + 2_100,
                    "round {round}: consumer {cid} has {} stale keys, {} live",
                    o.stale(),
                    o.live
                );
            }
            assert_eq!(
                g.owner_keys,
                g.by_owner.values().map(|o| o.ids.len()).sum::<usize>()
            );
        }
        assert!(most_stale > SWEEP_FLOOR, "the sweep was never needed");
        for cid in [0, 1, 2, 5, 9] {
            let want: Vec<u64> = live
                .iter()
                .filter(|(_, &o)| o == cid)
                .map(|(&n, _)| n)
                .collect();
            let got: Vec<u64> = ix
                .owned(7, cid, id(0))
                .expect("held")
                .map(|i| i.ms)
                .collect();
            assert_eq!(got, want, "consumer {cid}");
        }
        assert_eq!(ix.entries, live.len() as u64);
        // A consumer whose last entry is acked leaves, stale keys and all.
        let mut d = IndexDelta::default();
        for n in 100_000..105_000 {
            d.remove(7, id(n));
        }
        ix.apply(d, &[]);
        let Some(GroupIndex::Indexed(g)) = ix.groups.get(&7) else {
            panic!("group 7 is held");
        };
        assert!(!g.by_owner.contains_key(&9));
    }

    #[test]
    fn a_large_group_is_split_into_shards_that_answer_as_one_table() {
        let mut ix = index(u64::MAX);
        let n = 3 * SPLIT_AT as u64;
        let mut d = IndexDelta::default();
        for i in 0..n {
            d.put(
                7,
                StreamId {
                    ms: 1_000 + i / 3,
                    seq: i % 3,
                },
                held(i % 2, false),
            );
        }
        ix.apply(d, &[]);
        let at = |i: u64| StreamId {
            ms: 1_000 + i / 3,
            seq: i % 3,
        };
        let Some(GroupIndex::Indexed(g)) = ix.groups.get(&7) else {
            panic!("group 7 is held");
        };
        assert_eq!(g.by_id.shards.len(), SHARDS);
        assert_eq!(g.by_id.len(), n as usize);
        assert_eq!(
            g.by_id.capacity(),
            g.by_id.shards.iter().map(HashMap::capacity).sum::<usize>()
        );
        // No shard holds more than twice its share.
        let most = g.by_id.shards.iter().map(HashMap::len).max().unwrap_or(0);
        assert!(most < 2 * n as usize / SHARDS, "a shard holds {most}");
        let mut d = IndexDelta::default();
        for i in (0..n).step_by(2) {
            d.remove(7, at(i));
        }
        ix.apply(d, &[]);
        for i in [0, 1, n / 2, n / 2 + 1, n - 2, n - 1] {
            let want = i % 2 == 1;
            assert_eq!(
                matches!(ix.lookup(7, at(i)), Lookup::Held(_)),
                want,
                "entry {i}"
            );
        }
        assert_eq!(ix.entries, n / 2);
        // Consumer 1 held the odd entries, all still pending; consumer 0 has none left.
        assert_eq!(
            ix.owned(7, 1, StreamId::MIN).map(Iterator::count),
            Some(n as usize / 2)
        );
        assert_eq!(ix.owned(7, 0, StreamId::MIN).map(Iterator::count), Some(0));
    }

    #[test]
    fn past_the_bound_the_largest_group_is_left_out_until_empty() {
        let mut ix = index(4096);
        let mut d = IndexDelta::default();
        for n in 0..200 {
            d.put(1, id(n), held(1, false));
        }
        d.put(2, id(1), held(1, false));
        ix.apply(d, &[]);
        assert!(matches!(ix.lookup(1, id(3)), Lookup::Unknown));
        assert!(matches!(ix.lookup(2, id(1)), Lookup::Held(_)));
        assert!(ix.bytes <= 4096);
        assert_eq!((ix.entries, ix.unindexed), (1, 1));
        // Changes to a left-out group are not held; once it is empty it is held again.
        let mut d = IndexDelta::default();
        d.remove(1, id(3));
        ix.apply(d, &[1]);
        assert!(matches!(ix.lookup(1, id(3)), Lookup::Absent));
        assert_eq!(ix.unindexed, 0);
    }
}
