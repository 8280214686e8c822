//! The store: opening, the write path (one atomic batch per [`Store::apply`]) and the
//! concurrent read path.
//!
//! Durable state lives in fjall keyspaces (see [`crate::keys`]). Small per-stream, per-group and
//! per-consumer metadata is also held in memory (the catalog), rebuilt at open; nothing in the
//! catalog grows with the number of stored entries. The writer also keeps the pending lists'
//! owners in memory for acks ([`crate::group::index`], bounded).
//!
//! Writes go through a single-writer fjall transaction, so an op sees the writes of the ops
//! before it in the same batch. The catalog is staged copy-on-write during a batch and installed
//! only after the commit succeeded; readers on other threads see the catalog as of the last
//! commit and never wait for a batch to finish.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fjall::{Database, KeyspaceCreateOptions, PersistMode, Readable};

use crate::codec::{self, Kind};
use crate::config::{Durability, StoreConfig};
use crate::error::{Error, Result};
use crate::group::{IndexDelta, PendingIndex, PendingIndexFigures, PendingIndexStats, ReadLimits};
use crate::id::StreamId;
use crate::keys;
use crate::meta::{ConsumerMeta, GroupMeta, StreamMeta, SystemMeta};
use crate::nodes::NodeLimits;
use crate::ops::{BatchOutcome, Changes, Event, Op, Reply, StreamKey};
use crate::overlay::{Ks, Overlay, View};
use crate::record::Record;
use crate::task::{TaskEvent, TaskRef, TaskSys};

/// The keyspaces, opened once.
pub(crate) struct Keyspaces {
    pub(crate) streams: Ks,
    pub(crate) groups: Ks,
    pub(crate) consumers: Ks,
    pub(crate) entries: Ks,
    pub(crate) lanes: Ks,
    pub(crate) pel: Ks,
    pub(crate) cpel: Ks,
    pub(crate) due: Ks,
    pub(crate) ready: Ks,
    pub(crate) idem: Ks,
    pub(crate) idem_exp: Ks,
    pub(crate) sys: Ks,
    pub(crate) nodes: Ks,
    pub(crate) sched: Ks,
    pub(crate) tasks: Ks,
}

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
    fn group_ids(&self) -> Vec<u64> {
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
    fn stream_deadlines(st: &StreamState) -> impl Iterator<Item = (u64, u64)> + '_ {
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

/// The broker's durable state. Cheap to share between threads (`Arc<Store>`): writes are
/// serialised internally, reads run concurrently with them.
pub struct Store {
    pub(crate) db: Database,
    pub(crate) ks: Keyspaces,
    pub(crate) cfg: StoreConfig,
    pub(crate) catalog: RwLock<Catalog>,
    /// Serialises writes; holds what only the writer reads, the pending lists in memory.
    writer: Mutex<PendingIndex>,
    /// The pending index's size, for `/metrics` without the writer lock.
    pending_stats: PendingIndexStats,
    /// Commits still to fail with an injected I/O error ([`Store::fail_next_commits`]).
    injected_failures: AtomicU64,
}

/// Opens (creating when missing) the store's keyspaces with their settings.
pub(crate) fn open_keyspaces(db: &Database, cfg: &StoreConfig) -> Result<Keyspaces> {
    let big = cfg.memtable_bytes;
    let small = big.min(4 << 20);
    Ok(Keyspaces {
        streams: open_keyspace(db, 0, "streams", small)?,
        groups: open_keyspace(db, 1, "groups", small)?,
        consumers: open_keyspace(db, 2, "consumers", small)?,
        entries: open_keyspace(db, 3, "entries", big)?,
        lanes: open_keyspace(db, 4, "lanes", small)?,
        pel: open_keyspace(db, 5, "pel", big)?,
        cpel: open_keyspace(db, 6, "cpel", small)?,
        due: open_keyspace(db, 7, "due", small)?,
        ready: open_keyspace(db, 8, "ready", small)?,
        idem: open_keyspace(db, 9, "idem", small)?,
        idem_exp: open_keyspace(db, 10, "idem_exp", small)?,
        sys: open_keyspace(db, 11, "sys", small)?,
        nodes: open_keyspace(db, 12, "nodes", small)?,
        sched: open_keyspace(db, 13, "sched", small)?,
        tasks: open_keyspace(db, 14, "tasks", small)?,
    })
}

fn open_keyspace(db: &Database, id: usize, name: &str, memtable: u64) -> Result<Ks> {
    let ks = db.keyspace(name, || {
        KeyspaceCreateOptions::default().max_memtable_size(memtable)
    })?;
    Ok(Ks { id, ks })
}

impl Keyspaces {
    /// Every keyspace, in `Ks::id` order.
    pub(crate) fn all(&self) -> [&Ks; 15] {
        [
            &self.streams,
            &self.groups,
            &self.consumers,
            &self.entries,
            &self.lanes,
            &self.pel,
            &self.cpel,
            &self.due,
            &self.ready,
            &self.idem,
            &self.idem_exp,
            &self.sys,
            &self.nodes,
            &self.sched,
            &self.tasks,
        ]
    }
}

pub(crate) fn corrupt(
    what: &'static str,
    stream: &[u8],
    id: Option<StreamId>,
    reason: String,
) -> Error {
    Error::Corruption {
        what,
        stream: stream.to_vec(),
        id,
        reason,
    }
}

/// The entry ID at the end of a key read from disk; a malformed key is corruption, never an ID.
/// Reads the recorded log progress from a snapshot.
pub(crate) fn read_progress(snap: &fjall::Snapshot, ks: &Keyspaces) -> Result<Option<Vec<u8>>> {
    match Readable::get(snap, ks.sys.inner(), keys::PROGRESS_KEY)? {
        None => Ok(None),
        Some(v) => codec::decode::<Vec<u8>>(Kind::Progress, &v)
            .map(Some)
            .map_err(|r| corrupt("log progress", b"", None, r)),
    }
}

pub(crate) fn key_id(key: &[u8], what: &'static str, stream: &[u8]) -> Result<StreamId> {
    keys::trailing_id(key).ok_or_else(|| {
        corrupt(
            what,
            stream,
            None,
            format!("malformed key of {} bytes", key.len()),
        )
    })
}

/// The due time and entry ID of a `due` key read from disk.
pub(crate) fn due_key(key: &[u8], stream: &[u8]) -> Result<(u64, StreamId)> {
    match (keys::due_time(key), keys::trailing_id(key)) {
        (Some(t), Some(id)) if key.len() == 32 => Ok((t, id)),
        _ => Err(corrupt(
            "due key",
            stream,
            None,
            format!("malformed key of {} bytes", key.len()),
        )),
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

impl Store {
    /// Opens (or creates) a store in `path` and rebuilds the in-memory catalog.
    pub fn open(path: impl AsRef<Path>, cfg: StoreConfig) -> Result<Store> {
        cfg.validate()?;
        let db = Database::builder(path.as_ref())
            .cache_size(cfg.cache_bytes)
            .max_journaling_size(cfg.journal_bytes_max)
            .open()
            .map_err(|e| crate::maintenance::why_unopenable(path.as_ref(), e))?;
        let ks = open_keyspaces(&db, &cfg)?;
        let catalog = load_catalog(&db, &ks)?;
        let gids = catalog.group_ids();
        let index = PendingIndex::load(&catalog.snap, &ks, &gids, cfg.pending_index_bytes)?;
        let pending_stats = PendingIndexStats::default();
        index.publish(&pending_stats);
        Ok(Store {
            db,
            ks,
            cfg,
            catalog: RwLock::new(catalog),
            writer: Mutex::new(index),
            pending_stats,
            injected_failures: AtomicU64::new(0),
        })
    }

    /// Makes the next `n` commits fail as an I/O error of the disk would (nothing of them is
    /// written), for tests of what the layers above do with a failed commit: the error paths
    /// a full tmpfs cannot reach (EIO on a healthy disk). Unused in production.
    pub fn fail_next_commits(&self, n: u64) {
        self.injected_failures.store(n, Ordering::Relaxed);
    }

    /// The size of the pending lists held in memory.
    pub fn pending_index(&self) -> PendingIndexFigures {
        self.pending_stats.figures()
    }

    /// Where the pending lists in memory disagree with the stored ones (none, unless a bug).
    pub(crate) fn pending_index_differences(&self) -> Result<Vec<String>> {
        let index = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        index.differences(&cat.snap, &self.ks, &cat.group_ids())
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Applies `ops` in order as ONE atomic commit (one fsync under
    /// [`Durability::SyncEachCommit`]) and returns each op's own result. An op that fails
    /// with an argument error changes nothing; the others still apply. An I/O failure fails
    /// the whole batch and nothing of it is applied.
    pub fn apply(&self, ops: Vec<Op>, now_ms: u64) -> Result<BatchOutcome> {
        self.apply_inner(ops, now_ms, None)
    }

    /// [`Store::apply`] for a replicated log: `progress` (opaque here: the log position and
    /// whatever else the log needs to resume) is written in the same atomic commit, so after
    /// a crash the store and its recorded progress always agree. Read it back with
    /// [`Store::progress`]. `ops` may be empty (a log entry with no ops still moves it).
    pub fn apply_logged(&self, ops: Vec<Op>, now_ms: u64, progress: &[u8]) -> Result<BatchOutcome> {
        self.apply_inner(ops, now_ms, Some(progress))
    }

    /// The progress the last [`Store::apply_logged`] recorded, as of the last commit.
    pub fn progress(&self) -> Result<Option<Vec<u8>>> {
        let snap = self
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .snap
            .clone();
        read_progress(&snap, &self.ks)
    }

    fn apply_inner(
        &self,
        ops: Vec<Op>,
        now_ms: u64,
        progress: Option<&[u8]>,
    ) -> Result<BatchOutcome> {
        let mut index = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let base = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        let tx = Overlay::new(self.db.snapshot(), self.ks.all().len());
        let mut txn = Txn {
            tx,
            ks: &self.ks,
            base: &base,
            cfg: &self.cfg,
            now: now_ms,
            staged: HashMap::new(),
            sys: base.sys,
            node_limits: base.node_limits,
            touched_groups: HashSet::new(),
            events: Vec::new(),
            dead_letters: Vec::new(),
            task_sys: base.task_sys,
            task_changes: Vec::new(),
            task_error: None,
            consumers_created: 0,
            pending: &index,
            pending_delta: IndexDelta::default(),
        };
        let mut replies = Vec::with_capacity(ops.len());
        let mut changes = 0;
        for op in ops {
            let counts = Changes::of(&op);
            match txn.apply_op(op) {
                // Before the commit nothing is written: a failure here is a read's.
                Err(Error::Storage(e)) => return Err(Error::Unreadable(e)),
                Err(e) if e.is_fatal() => return Err(e),
                r => {
                    changes += counts.count(&r) + std::mem::take(&mut txn.consumers_created);
                    replies.push(r);
                }
            }
        }
        let node_limits = txn.node_limits;
        let task_sys = txn.task_sys;
        let (mut tx, staged, sys, events, delta) = txn.finish();
        if let Some(p) = progress {
            tx.insert(
                &self.ks.sys,
                keys::PROGRESS_KEY,
                codec::encode(Kind::Progress, &p),
            );
        }
        let mode = match self.cfg.durability {
            Durability::SyncEachCommit => PersistMode::SyncData,
            Durability::Buffered => PersistMode::Buffer,
        };
        if self
            .injected_failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Storage(fjall::Error::Io(std::io::Error::other(
                "injected I/O error (a test's fault)",
            ))));
        }
        tx.commit(&self.db, &self.ks.all(), mode)?;
        drop(base);
        // Still under the writer mutex: this snapshot sees exactly this commit. It is
        // installed with the catalog, under the same lock, so readers get a matching pair.
        let snap = self.db.snapshot();
        let emptied: Vec<u64> = staged
            .values()
            .flatten()
            .flat_map(|st| st.groups.values())
            .filter(|g| g.meta.pending == 0)
            .map(|g| g.meta.group_id)
            .collect();
        // The writer lock (`index`) is held until the catalog below is installed, so the
        // next batch starts from this commit's catalog.
        index.apply(delta, &emptied);
        index.publish(&self.pending_stats);
        let mut cat = self.catalog.write().unwrap_or_else(|p| p.into_inner());
        for (key, state) in staged {
            if let Some(old) = cat.streams.get(&key) {
                for d in Catalog::stream_deadlines(old).collect::<Vec<_>>() {
                    cat.deadlines.remove(&d);
                }
            }
            match state {
                Some(s) => {
                    cat.deadlines.extend(Catalog::stream_deadlines(&s));
                    cat.streams.insert(key, Arc::new(s));
                }
                None => {
                    cat.streams.remove(&key);
                }
            }
        }
        cat.sys = sys;
        cat.task_sys = task_sys;
        cat.snap = snap;
        cat.node_limits = node_limits;
        let next_deadline_ms = cat.next_deadline_ms(
            now_ms,
            self.cfg.idempotency_window_ms,
            self.cfg.limits.task_keep_ms,
        );
        Ok(BatchOutcome {
            replies,
            events,
            next_deadline_ms,
            changes,
        })
    }

    /// Applies one op in its own batch.
    pub fn apply_one(&self, op: Op, now_ms: u64) -> Result<Reply> {
        let mut out = self.apply(vec![op], now_ms)?;
        out.replies.pop().unwrap_or(Ok(Reply::Ok))
    }

    /// Shuts down cleanly: flushes every memtable to disk tables and fsyncs, so the next
    /// open has no journal to replay. Dropping the store without closing is safe too (the
    /// next open replays the journal, bounded by `journal_bytes_max`).
    pub fn close(self) -> Result<()> {
        self.checkpoint()
    }

    /// Flushes every memtable to disk tables and fsyncs, without closing (for a shared store
    /// at shutdown): the next open has little or no journal to replay.
    pub fn checkpoint(&self) -> Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for ks in self.ks.all() {
            ks.ks.rotate_memtable_and_wait()?;
        }
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Fsyncs everything committed so far (for [`Durability::Buffered`]).
    pub fn persist(&self) -> Result<()> {
        Ok(self.db.persist(PersistMode::SyncData)?)
    }

    /// Disk space used by the store's files, in bytes.
    pub fn disk_space(&self) -> Result<u64> {
        Ok(self.db.disk_space()?)
    }

    /// The committed state of a stream, if it exists.
    pub(crate) fn stream_state(&self, key: &StreamKey) -> Option<Arc<StreamState>> {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        cat.streams.get(key).cloned()
    }

    /// The earliest moment [`Op::Tick`] has work (may be in the past: tick now); `None`
    /// when nothing is pending. Also returned by every [`Store::apply`].
    pub fn next_deadline_ms(&self, now_ms: u64) -> Option<u64> {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        cat.next_deadline_ms(
            now_ms,
            self.cfg.idempotency_window_ms,
            self.cfg.limits.task_keep_ms,
        )
    }
}

fn load_catalog(db: &Database, ks: &Keyspaces) -> Result<Catalog> {
    let snap = db.snapshot();
    let mut cat = Catalog {
        streams: HashMap::new(),
        sys: SystemMeta::default(),
        snap: snap.clone(),
        deadlines: BTreeSet::new(),
        node_limits: NodeLimits::default(),
        task_sys: crate::task::read_task_sys(&snap, ks)?,
    };
    if let Some(v) = Readable::get(&snap, ks.sys.inner(), keys::SYSTEM_KEY)? {
        cat.sys =
            codec::decode(Kind::System, &v).map_err(|r| corrupt("system record", b"", None, r))?;
    }
    for item in Readable::iter(&snap, ks.streams.inner()) {
        let (k, v) = item.into_inner()?;
        let (ns, name) = keys::parse_stream(&k)
            .ok_or_else(|| corrupt("stream key", &k, None, "too short".into()))?;
        let meta = StreamMeta::decode(&v).map_err(|r| corrupt("stream meta", name, None, r))?;
        if meta.stream_id >= cat.sys.next_stream_id {
            return Err(corrupt(
                "stream meta",
                name,
                None,
                format!(
                    "stream id {} not below the counter {}",
                    meta.stream_id, cat.sys.next_stream_id
                ),
            ));
        }
        let mut groups = BTreeMap::new();
        for g in Readable::prefix(&snap, ks.groups.inner(), keys::prefix(meta.stream_id)) {
            let (gk, gv) = g.into_inner()?;
            let gname = gk[8..].to_vec();
            let gmeta: GroupMeta = codec::decode(Kind::GroupMeta, &gv)
                .map_err(|r| corrupt("group meta", name, None, r))?;
            let mut gs = GroupState::new(gmeta);
            let gid = gs.meta.group_id;
            for c in Readable::prefix(&snap, ks.consumers.inner(), keys::prefix(gid)) {
                let (ck, cv) = c.into_inner()?;
                let cmeta: ConsumerMeta = codec::decode(Kind::ConsumerMeta, &cv)
                    .map_err(|r| corrupt("consumer meta", name, None, r))?;
                gs.names.insert(cmeta.consumer_id, ck[8..].to_vec());
                gs.consumers.insert(ck[8..].to_vec(), cmeta);
            }
            if let Some(first) = Readable::prefix(&snap, ks.due.inner(), keys::prefix(gid)).next() {
                let k = first.key()?;
                gs.due_floor_ms = due_key(&k, name)?.0;
            }
            if let Some(first) = Readable::prefix(&snap, ks.ready.inner(), keys::prefix(gid)).next()
            {
                let k = first.key()?;
                gs.ready_floor = key_id(&k, "ready key", name)?;
            }
            if let Some(first) = Readable::prefix(&snap, ks.sched.inner(), keys::prefix(gid)).next()
            {
                let k = first.key()?;
                gs.sched_floor_ms = due_key(&k, name)?.0;
            }
            groups.insert(gname, Arc::new(gs));
        }
        let st = StreamState { meta, groups };
        cat.deadlines.extend(Catalog::stream_deadlines(&st));
        cat.streams
            .insert(StreamKey::new(ns, name.to_vec()), Arc::new(st));
    }
    Ok(cat)
}

/// A deferred move to a dead-letter stream (applied after the op's own stream is back in
/// the staging map, so an origin may also be its own dead-letter stream).
pub(crate) struct PendingDeadLetter {
    pub(crate) dlq: StreamKey,
    pub(crate) record: Record,
    pub(crate) event: Event,
}

/// The write context of one batch.
pub(crate) struct Txn<'a> {
    pub(crate) tx: Overlay,
    pub(crate) ks: &'a Keyspaces,
    pub(crate) base: &'a Catalog,
    pub(crate) cfg: &'a StoreConfig,
    pub(crate) now: u64,
    /// Streams changed by this batch (`None`: deleted).
    pub(crate) staged: HashMap<StreamKey, Option<StreamState>>,
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
    fn apply_op(&mut self, op: Op) -> Result<Reply> {
        let r = match op {
            Op::Append {
                stream,
                id,
                fields,
                meta,
                idempotency_key,
                no_mkstream,
                trim,
            } => self.append(
                &stream,
                id,
                fields,
                meta,
                idempotency_key,
                no_mkstream,
                trim,
            ),
            Op::Delete { stream, ids } => self.delete_entries(&stream, &ids),
            Op::DeleteEx {
                stream,
                ack,
                ids,
                refs,
            } => self.delete_ex(&stream, ack.as_deref(), &ids, refs),
            Op::NackMode {
                stream,
                group,
                ids,
                mode,
                retry_count,
            } => self.nack_mode(&stream, &group, &ids, mode, retry_count),
            Op::ReadGroupEx {
                streams,
                group,
                consumer,
                count,
                noack,
                claim,
                max_count,
                max_bytes,
            } => self.read_groups_ex(
                &streams,
                &group,
                &consumer,
                ReadLimits {
                    count,
                    max_count,
                    max_bytes,
                },
                noack,
                claim,
            ),
            Op::Trim { stream, trim } => self.trim_op(&stream, trim),
            Op::SetId {
                stream,
                last_id,
                entries_added,
                max_deleted_id,
            } => self.set_id(&stream, last_id, entries_added, max_deleted_id),
            Op::DeleteStream { stream } => self.delete_stream(&stream),
            Op::RenameStream { from, to, replace } => self.rename_stream(&from, &to, replace),
            Op::FlushNamespace { ns } => self.flush_namespace(ns),
            Op::SwapNamespaces { a, b } => self.swap_namespaces(a, b),
            Op::CreateGroup {
                stream,
                group,
                start,
                mkstream,
                entries_read,
                policy,
            } => self.create_group(&stream, &group, start, mkstream, entries_read, policy),
            Op::SetGroupId {
                stream,
                group,
                start,
                entries_read,
            } => self.set_group_id(&stream, &group, start, entries_read),
            Op::DestroyGroup { stream, group } => self.destroy_group(&stream, &group),
            Op::CreateConsumer {
                stream,
                group,
                consumer,
            } => self.create_consumer(&stream, &group, &consumer),
            Op::DeleteConsumer {
                stream,
                group,
                consumer,
            } => self.delete_consumer(&stream, &group, &consumer),
            Op::SetPolicy {
                stream,
                group,
                policy,
            } => self.set_policy(&stream, &group, policy),
            Op::PatchPolicy {
                stream,
                group,
                patch,
            } => self.patch_policy(&stream, &group, &patch),
            Op::ReadGroup {
                streams,
                group,
                consumer,
                count,
                noack,
                retry,
            } => self.read_groups(&streams, &group, &consumer, count, noack, retry),
            Op::Deliver {
                stream,
                group,
                consumer,
                from,
                count,
                noack,
            } => self.deliver(&stream, &group, &consumer, from, count, noack),
            Op::Ack { stream, group, ids } => self.ack(&stream, &group, &ids),
            Op::Progress {
                stream,
                group,
                consumer,
                ids,
            } => self.progress(&stream, &group, &consumer, &ids),
            Op::Nack {
                stream,
                group,
                ids,
                error,
                reject,
            } => self.nack(&stream, &group, &ids, error, reject),
            Op::Claim {
                stream,
                group,
                consumer,
                min_idle_ms,
                ids,
                delivery_time_ms,
                retry_count,
                force,
                justid,
                last_id,
            } => self.claim(
                &stream,
                &group,
                &consumer,
                min_idle_ms,
                &ids,
                delivery_time_ms,
                retry_count,
                force,
                justid,
                last_id,
            ),
            Op::AutoClaim {
                stream,
                group,
                consumer,
                min_idle_ms,
                start,
                count,
                justid,
            } => self.autoclaim(
                &stream,
                &group,
                &consumer,
                min_idle_ms,
                start,
                count,
                justid,
            ),
            Op::Tick => self.tick(),
            Op::DlqRedrive { dlq, filter, limit } => self.dlq_redrive(&dlq, &filter, limit),
            Op::DlqPurge { dlq, filter, limit } => self.dlq_purge(&dlq, &filter, limit),
            Op::Query(q) => crate::read::answer(&*self, &q, self.now).map(Reply::Answer),
            Op::SetNodeLimits(l) => {
                self.node_limits = l;
                Ok(Reply::Ok)
            }
            Op::CancelTask { task } => self.cancel_task(&task),
        };
        // Dead letters are appended once the op's own stream is back in the staging map.
        self.flush_dead_letters();
        self.flush_task_changes()?;
        if let Some(e) = self.task_error.take() {
            return Err(e);
        }
        r
    }

    /// Writes the metadata of everything the batch touched into the transaction.
    fn finish(
        mut self,
    ) -> (
        Overlay,
        HashMap<StreamKey, Option<StreamState>>,
        SystemMeta,
        Vec<Event>,
        IndexDelta,
    ) {
        for (key, state) in &self.staged {
            let Some(st) = state else { continue };
            let sk = keys::stream(key.ns, &key.name);
            self.tx.insert(&self.ks.streams, sk, st.meta.encode());
            for (gname, g) in &st.groups {
                if !self
                    .touched_groups
                    .contains(&(st.meta.stream_id, gname.clone()))
                {
                    continue;
                }
                let gk = keys::group(st.meta.stream_id, gname);
                self.tx
                    .insert(&self.ks.groups, gk, codec::encode(Kind::GroupMeta, &g.meta));
                for (cname, c) in &g.consumers {
                    let ck = keys::consumer(g.meta.group_id, cname);
                    self.tx
                        .insert(&self.ks.consumers, ck, codec::encode(Kind::ConsumerMeta, c));
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
            Some(s) => s.as_ref(),
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
        let mut st = match self.staged.remove(key) {
            Some(Some(s)) => s,
            Some(None) => {
                self.staged.insert(key.clone(), None);
                return None;
            }
            None => (**self.base.streams.get(key)?).clone(),
        };
        let out = f(self, &mut st);
        self.staged.insert(key.clone(), Some(st));
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
            Some(StreamState {
                meta,
                groups: BTreeMap::new(),
            }),
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
