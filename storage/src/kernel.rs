//! The kernel every part of the store builds on: the in-memory state of streams and groups
//! (the catalog readers see), the write context of one batch ([`Txn`]: its view, its
//! staged copy-on-write state, and the writing of what it touched), and the helpers every
//! domain file shares (one entry's record, an entry scan, the ID dedupe).
//!
//! Below it: the keyspaces, keys, codec, overlay and stored types; above it: the domain
//! files (stream, group, policy, dlq, task) that add their ops as `Txn` methods, the
//! evaluation of queries (`read`), and the facade (`store`) that dispatches each `Op`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet};

use crate::codec::{self, Kind};
use crate::config::StoreConfig;
use crate::error::{corrupt, Error, Result};
use crate::group::index::{IndexDelta, PendingIndex};
use crate::id::{StreamId, StreamKey};
use crate::keys::{self, key_id};
use crate::keyspaces::Keyspaces;
use crate::meta::{ConsumerMeta, GroupMeta, StreamMeta, SystemMeta};
use crate::nodes::NodeLimits;
use crate::ops::Event;
use crate::overlay::{Overlay, View};
use crate::record::{Entry, Record};
use crate::task::{TaskEvent, TaskRef, TaskSys};

/// In-memory state of a consumer group.
#[derive(Clone, Debug)]
pub(crate) struct GroupState {
    pub(crate) meta: GroupMeta,
    pub(crate) consumers: BTreeMap<Vec<u8>, ConsumerMeta>,
    /// consumer_id -> name.
    pub(crate) names: HashMap<u64, Vec<u8>>,
    /// No due key of the group is below this time (`u64::MAX`: none).
    pub(crate) due_floor_ms: u64,
    /// No ready key of the group is below this ID.
    pub(crate) ready_floor: StreamId,
    /// The time of the group's first `sched` key (`u64::MAX`: none); scans start here, so
    /// they never walk the tombstones of entries handed out.
    pub(crate) sched_floor_ms: u64,
    /// The tick found set-aside entries whose time has come and woke the readers: no more
    /// ticks for the group until a read takes them. In memory only; after a restart
    /// `sched_floor_ms <= now` says the same, so reads answer alike on every node.
    pub(crate) sched_due: bool,
}

impl GroupState {
    pub(crate) fn new(meta: GroupMeta) -> Self {
        GroupState {
            meta,
            consumers: BTreeMap::new(),
            names: HashMap::new(),
            due_floor_ms: u64::MAX,
            ready_floor: StreamId::MAX,
            sched_floor_ms: u64::MAX,
            sched_due: false,
        }
    }

    pub(crate) fn consumer_name(&self, consumer_id: u64) -> &[u8] {
        self.names.get(&consumer_id).map_or(&[][..], |n| &n[..])
    }

    /// The consumer with this ID, found through its name without copying it.
    pub(crate) fn consumer_by_id_mut(&mut self, consumer_id: u64) -> Option<&mut ConsumerMeta> {
        let GroupState {
            names, consumers, ..
        } = self;
        names
            .get(&consumer_id)
            .and_then(|name| consumers.get_mut(name))
    }
}

/// In-memory state of a stream.
#[derive(Clone, Debug)]
pub(crate) struct StreamState {
    pub(crate) meta: StreamMeta,
    pub(crate) groups: BTreeMap<Vec<u8>, Arc<GroupState>>,
}

impl StreamState {
    /// Its groups' names and internal IDs, in name order.
    pub(crate) fn group_ids(&self) -> Vec<(Vec<u8>, u64)> {
        self.groups
            .iter()
            .map(|(n, g)| (n.clone(), g.meta.group_id))
            .collect()
    }
}

/// The committed state readers see: the in-memory catalog and the fjall snapshot taken
/// right after the commit that produced it, installed together, so a reader never pairs a
/// catalog with data of another commit.
pub(crate) struct Catalog {
    pub(crate) streams: HashMap<StreamKey, Arc<StreamState>>,
    pub(crate) sys: SystemMeta,
    /// The snapshot committed with this catalog.
    pub(crate) snap: fjall::Snapshot,
    /// (due floor, group ID) of every group with a policy and a deadline: the broker's
    /// next tick is the first one (quinn-proto's `poll_timeout`, kept in O(log n)).
    pub(crate) deadlines: BTreeSet<(u64, u64)>,
    /// Radix-tree node sizes new entries are placed by (not persisted, as in Redis).
    pub(crate) node_limits: NodeLimits,
    /// Task counters ([`crate::task`]).
    pub(crate) task_sys: TaskSys,
}

impl Catalog {
    /// The internal IDs of every live group, in order.
    pub(crate) fn group_ids(&self) -> Vec<u64> {
        let mut gids: Vec<u64> = self
            .streams
            .values()
            .flat_map(|st| st.groups.values().map(|g| g.meta.group_id))
            .collect();
        gids.sort_unstable();
        gids
    }

    /// The deadlines of one stream's groups (policy groups with a due key, groups with
    /// entries set aside until their delivery time).
    pub(crate) fn stream_deadlines(st: &StreamState) -> impl Iterator<Item = (u64, u64)> + '_ {
        st.groups.values().flat_map(|g| {
            let due = (g.meta.policy.is_some() && g.due_floor_ms != u64::MAX)
                .then_some((g.due_floor_ms, g.meta.group_id));
            let sched = (!g.sched_due && g.sched_floor_ms != u64::MAX)
                .then_some((g.sched_floor_ms, g.meta.group_id));
            due.into_iter().chain(sched)
        })
    }

    /// The earliest moment the store has time-driven work (may be in the past).
    pub(crate) fn next_deadline_ms(
        &self,
        now_ms: u64,
        idem_window_ms: u64,
        task_keep_ms: u64,
    ) -> Option<u64> {
        let mut next = self.deadlines.first().map_or(u64::MAX, |d| d.0);
        if let Some(t) = self.task_sys.next_due_ms(task_keep_ms) {
            next = next.min(t);
        }
        if self.sys.garbage_pending {
            next = next.min(now_ms);
        }
        if self.sys.idem_keys > 0 {
            next = next.min(self.sys.idem_floor_ms.saturating_add(idem_window_ms));
        }
        (next != u64::MAX).then_some(next)
    }
}

/// A deferred move to a dead-letter stream (applied after the op's own stream is back in
/// the staging map, so an origin may also be its own dead-letter stream).
pub(crate) struct PendingDeadLetter {
    pub(crate) dlq: StreamKey,
    pub(crate) record: Record,
    pub(crate) event: Event,
}

/// The streams a batch changed (`None`: deleted), each boxed: [`Txn::with_stream`] takes
/// one out and puts it back on every op, and a box moves as one pointer where the state
/// itself is some 350 bytes (callgrind: 380 instructions of copying per XADD unboxed).
pub(crate) type Staged = HashMap<StreamKey, Option<Box<StreamState>>>;

/// The write context of one batch.
pub(crate) struct Txn<'a> {
    pub(crate) tx: Overlay,
    pub(crate) ks: &'a Keyspaces,
    pub(crate) base: &'a Catalog,
    pub(crate) cfg: &'a StoreConfig,
    pub(crate) now: u64,
    /// Streams changed by this batch (`None`: deleted).
    pub(crate) staged: Staged,
    pub(crate) sys: SystemMeta,
    /// Node sizes for appends (an op of this batch may change them).
    pub(crate) node_limits: NodeLimits,
    /// (stream_id, group name) whose metadata must be written.
    pub(crate) touched_groups: HashSet<(u64, Vec<u8>)>,
    pub(crate) events: Vec<Event>,
    pub(crate) dead_letters: Vec<PendingDeadLetter>,
    /// Task counters as of this point of the batch.
    pub(crate) task_sys: TaskSys,
    /// Task changes the current op queued ([`Txn::flush_task_changes`]).
    pub(crate) task_changes: Vec<(TaskRef, TaskEvent)>,
    /// A read a task change needed failed inside a closure; the op fails with it.
    pub(crate) task_error: Option<Error>,
    /// Consumers the current op created on the way (a group read or claim by a new
    /// name): Redis counts each as a change.
    pub(crate) consumers_created: u64,
    /// The pending lists in memory as of the last commit ([`crate::group::index`]).
    pub(crate) pending: &'a PendingIndex,
    /// This batch's changes to them, read first and applied after the commit.
    pub(crate) pending_delta: IndexDelta,
}

impl<'a> Txn<'a> {
    /// Writes the metadata of everything the batch touched into the transaction: the
    /// stream, group and consumer records that differ from the last commit's catalog, or
    /// whose key an op of the batch wrote or removed. The stored records equal the catalog
    /// after every commit (it is loaded from them and installed with them), so a record the
    /// batch left as it was is not written again: an ack rewrites its group and its
    /// consumer, not the stream nor the group's other consumers.
    pub(crate) fn finish(mut self) -> (Overlay, Staged, SystemMeta, Vec<Event>, IndexDelta) {
        for (key, state) in &self.staged {
            let Some(st) = state else { continue };
            // The last commit's state under the same key, if it is the same stream.
            let before = self
                .base
                .streams
                .get(key)
                .filter(|b| b.meta.stream_id == st.meta.stream_id);
            let sk = keys::stream(key.ns, &key.name);
            if before.is_none_or(|b| b.meta != st.meta) || self.tx.wrote(&self.ks.streams, &sk) {
                self.tx.insert(&self.ks.streams, sk, st.meta.encode());
            }
            for (gname, g) in &st.groups {
                if !self
                    .touched_groups
                    .contains(&(st.meta.stream_id, gname.clone()))
                {
                    continue;
                }
                let was = before
                    .and_then(|b| b.groups.get(gname))
                    .filter(|b| b.meta.group_id == g.meta.group_id);
                let gk = keys::group(st.meta.stream_id, gname);
                if was.is_none_or(|w| w.meta != g.meta) || self.tx.wrote(&self.ks.groups, &gk) {
                    self.tx
                        .insert(&self.ks.groups, gk, codec::encode(Kind::GroupMeta, &g.meta));
                }
                for (cname, c) in &g.consumers {
                    let ck = keys::consumer(g.meta.group_id, cname);
                    let same = was.and_then(|w| w.consumers.get(cname)) == Some(c);
                    if !same || self.tx.wrote(&self.ks.consumers, &ck) {
                        self.tx.insert(
                            &self.ks.consumers,
                            ck,
                            codec::encode(Kind::ConsumerMeta, c),
                        );
                    }
                }
            }
        }
        if self.task_sys != self.base.task_sys {
            self.tx.insert(
                &self.ks.sys,
                crate::task::TASK_SYS_KEY,
                self.task_sys.encode(),
            );
        }
        if self.sys != self.base.sys {
            self.tx.insert(
                &self.ks.sys,
                keys::SYSTEM_KEY,
                codec::encode(Kind::System, &self.sys),
            );
        }
        (
            self.tx,
            self.staged,
            self.sys,
            self.events,
            self.pending_delta,
        )
    }

    /// The stream's state as of this point of the batch.
    pub(crate) fn stream(&self, key: &StreamKey) -> Option<&StreamState> {
        match self.staged.get(key) {
            Some(s) => s.as_deref(),
            None => self.base.streams.get(key).map(|a| &**a),
        }
    }

    /// Like [`Txn::stream`], or `NoSuchStream`.
    pub(crate) fn existing(&self, key: &StreamKey) -> Result<&StreamState> {
        self.stream(key).ok_or_else(|| Error::NoSuchStream {
            stream: key.name.clone(),
        })
    }

    /// The group's state, or the Redis-style error for a missing stream or group.
    pub(crate) fn group(&self, key: &StreamKey, group: &[u8]) -> Result<&GroupState> {
        let st = self.existing(key)?;
        st.groups
            .get(group)
            .map(|g| &**g)
            .ok_or_else(|| Error::NoSuchGroup {
                stream: key.name.clone(),
                group: group.to_vec(),
            })
    }

    /// Takes the stream out of the staging area for mutation; `f` gets the context and the
    /// state; the state is put back afterwards. `None` if the stream does not exist.
    pub(crate) fn with_stream<T>(
        &mut self,
        key: &StreamKey,
        f: impl FnOnce(&mut Self, &mut StreamState) -> T,
    ) -> Option<T> {
        // The staged key goes back in as it came out: no copy of the name per op.
        let (key, mut st) = match self.staged.remove_entry(key) {
            Some((k, Some(s))) => (k, s),
            Some((k, None)) => {
                self.staged.insert(k, None);
                return None;
            }
            None => (
                key.clone(),
                Box::new((**self.base.streams.get(key)?).clone()),
            ),
        };
        let out = f(self, &mut st);
        self.staged.insert(key, Some(st));
        Some(out)
    }

    /// Like [`Txn::with_stream`] for one group of the stream; marks the group for writing.
    pub(crate) fn with_group<T>(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        f: impl FnOnce(&mut Self, &StreamMeta, &mut GroupState) -> T,
    ) -> Option<T> {
        self.with_stream(key, |txn, st| {
            let g = st.groups.get_mut(group)?;
            txn.touched_groups
                .insert((st.meta.stream_id, group.to_vec()));
            Some(f(txn, &st.meta, Arc::make_mut(g)))
        })
        .flatten()
    }

    /// Creates an empty stream (the caller checked it does not exist).
    pub(crate) fn create_stream(&mut self, key: &StreamKey) {
        let stream_id = self.sys.next_stream_id;
        self.sys.next_stream_id += 1;
        let meta = StreamMeta {
            stream_id,
            created_ms: self.now,
            ..StreamMeta::default()
        };
        self.staged.insert(
            key.clone(),
            Some(Box::new(StreamState {
                meta,
                groups: BTreeMap::new(),
            })),
        );
    }

    /// A fresh group internal ID.
    pub(crate) fn next_group_id(&mut self) -> u64 {
        let id = self.sys.next_group_id;
        self.sys.next_group_id += 1;
        id
    }

    /// Reads and checks an entry's record (RYOW: sees this batch's writes).
    pub(crate) fn get_record(
        &self,
        key: &StreamKey,
        stream_id: u64,
        id: StreamId,
    ) -> Result<Option<Record>> {
        get_record(&self.tx, self.ks, &key.name, stream_id, id)
    }
}

/// Reads and checks one entry from any view (a transaction or a snapshot).
pub(crate) fn get_record(
    r: &impl View,
    ks: &Keyspaces,
    name: &[u8],
    stream_id: u64,
    id: StreamId,
) -> Result<Option<Record>> {
    match r.get(&ks.entries, keys::id_key(stream_id, id))? {
        None => Ok(None),
        Some(v) => codec::decode(Kind::Entry, &v)
            .map(Some)
            .map_err(|reason| corrupt("entry", name, Some(id), reason)),
    }
}

/// IDs without duplicates, in the order first given; at most `max` (checked before any
/// work). O(n log n), so one command with many IDs cannot stall the writer.
pub(crate) fn unique_ids(ids: &[StreamId], max: usize) -> Result<Vec<StreamId>> {
    if ids.len() > max {
        return Err(Error::TooLarge {
            what: "number of IDs",
            len: ids.len(),
            max,
        });
    }
    if ids.len() <= 1 {
        return Ok(ids.to_vec());
    }
    let mut order: Vec<(StreamId, usize)> = ids.iter().copied().zip(0..).collect();
    order.sort_unstable();
    order.dedup_by_key(|(id, _)| *id);
    order.sort_unstable_by_key(|(_, i)| *i);
    Ok(order.into_iter().map(|(id, _)| id).collect())
}

/// One entry from its key and stored value.
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
