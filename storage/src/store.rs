//! The store's facade: opening, the write path (one atomic batch per [`Store::apply`], each
//! [`Op`] dispatched to the domain file that implements it) and the read path (each
//! [`Query`] evaluated by `read` against the last commit).
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

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fjall::{Database, PersistMode, Readable};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::codec::{self, Kind};
use crate::config::{Durability, StoreConfig};
use crate::error::{corrupt, Error, Result};
use crate::group::{IndexDelta, PendingIndex, PendingIndexFigures, PendingIndexStats, ReadLimits};
use crate::id::{StreamId, StreamKey};
use crate::kernel::{Catalog, GroupState, StreamState, Txn};
use crate::keys::{self, due_key, key_id};
use crate::keyspaces::{open_keyspaces, read_progress, Keyspaces};
use crate::meta::{ConsumerMeta, DeliveryPolicy, GroupMeta, StreamMeta, SystemMeta};
use crate::nodes::NodeLimits;
use crate::ops::{BatchOutcome, Changes, Op, Reply};
use crate::overlay::Overlay;
use crate::query::{
    Answer, ConsumerInfo, DlqFilter, GroupInfo, PendingInfo, PendingQuery, PendingSummary, Query,
    StreamInfo, StreamSummary,
};
use crate::read::{Committed, ReadCtx};
use crate::record::{DeadLetter, Entry, Record};

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
    /// Syncs a test asked to fail ([`Store::fail_next_syncs`]).
    injected_sync_failures: AtomicU64,
}

impl Store {
    /// Opens (or creates) a store in `path` and rebuilds the in-memory catalog.
    pub fn open(path: impl AsRef<Path>, cfg: StoreConfig) -> Result<Store> {
        cfg.validate()?;
        let db = Database::builder(path.as_ref())
            .cache_size(cfg.cache_bytes)
            .max_journaling_size(cfg.journal_bytes_max)
            .open()
            .map_err(|e| crate::damage::why_unopenable(path.as_ref(), e))?;
        let ks = open_keyspaces(&db, &cfg)?;
        // Stores written before each consumer's pending order moved into memory
        // (`group::index`) kept it in `cpel`; nothing reads it now.
        if ks.cpel.inner().first_key_value().is_some() {
            ks.cpel.inner().clear()?;
        }
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
            injected_sync_failures: AtomicU64::new(0),
        })
    }

    /// Makes the next `n` commits fail as an I/O error of the disk would (nothing of them is
    /// written), for tests of what the layers above do with a failed commit: the error paths
    /// a full tmpfs cannot reach (EIO on a healthy disk). Unused in production.
    pub fn fail_next_commits(&self, n: u64) {
        self.injected_failures.store(n, Ordering::Relaxed);
    }

    /// Makes the next `n` syncs fail as a failed `fdatasync` would, for tests of what the
    /// layers above do with it: a [`Store::sync_journal`] fails after its sync (the bytes
    /// may or may not be on the disk, as after a real failure), a commit that syncs itself
    /// fails before anything of it is applied (as fjall fails it). Unused in production.
    pub fn fail_next_syncs(&self, n: u64) {
        self.injected_sync_failures.store(n, Ordering::Relaxed);
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
        self.apply_inner(ops, now_ms, None, true)
    }

    /// [`Store::apply`], written to the journal without waiting for its sync: the batch is
    /// visible to readers when this returns, and durable once a [`Store::sync_journal`]
    /// that began after it returns. For a caller that overlaps one batch's sync with the
    /// next batch: it must hold each batch's replies, and every answer that may have read
    /// the batch, until then. Under [`Durability::Buffered`] the same as [`Store::apply`].
    pub fn apply_unsynced(&self, ops: Vec<Op>, now_ms: u64) -> Result<BatchOutcome> {
        self.apply_inner(ops, now_ms, None, false)
    }

    /// Makes every batch applied so far durable (one `fdatasync` of the journal) without
    /// holding up the batches applied meanwhile. A failure poisons the store: every later
    /// commit fails until it is reopened.
    pub fn sync_journal(&self) -> Result<()> {
        self.db.sync_journal()?;
        injected(
            &self.injected_sync_failures,
            "injected sync error (a test's fault)",
        )
    }

    /// [`Store::apply`] for a replicated log: `progress` (opaque here: the log position and
    /// whatever else the log needs to resume) is written in the same atomic commit, so after
    /// a crash the store and its recorded progress always agree. Read it back with
    /// [`Store::progress`]. `ops` may be empty (a log entry with no ops still moves it).
    pub fn apply_logged(&self, ops: Vec<Op>, now_ms: u64, progress: &[u8]) -> Result<BatchOutcome> {
        self.apply_inner(ops, now_ms, Some(progress), true)
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
        sync: bool,
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
        for op in &ops {
            let counts = Changes::of(op);
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
            Durability::SyncEachCommit if sync => PersistMode::SyncData,
            // Handed to the OS at once, unsynced: a full disk fails this commit (ENOSPC at
            // the `write`), as it fails a synced one, rather than the sync that follows.
            // Under `Buffered` a crash of the process keeps what was acknowledged.
            _ => PersistMode::Buffer,
        };
        injected(
            &self.injected_failures,
            "injected I/O error (a test's fault)",
        )?;
        if mode == PersistMode::SyncData {
            // A batch synced in its own commit: fjall syncs before it applies, and a
            // failed sync applies nothing.
            injected(
                &self.injected_sync_failures,
                "injected sync error (a test's fault)",
            )?;
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
                    cat.streams.insert(key, Arc::new(*s));
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
            spent: ops,
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

    /// Zeros written into the journal ahead of the writer while it was idle (fjall's filler
    /// and spare: `vendor/README.md`), in bytes since the store was opened.
    pub fn journal_written_ahead(&self) -> u64 {
        self.db.journal_written_ahead()
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
        task_sys: crate::task::life::read_task_sys(&snap, ks)?,
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

impl<'a> Txn<'a> {
    fn apply_op(&mut self, op: &Op) -> Result<Reply> {
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
                stream,
                *id,
                fields,
                meta,
                idempotency_key.as_deref(),
                *no_mkstream,
                *trim,
            ),
            Op::Delete { stream, ids } => self.delete_entries(stream, ids),
            Op::ConfigureIdmp {
                stream,
                duration_s,
                maxsize,
            } => {
                let sid = self
                    .stream(stream)
                    .map(|s| s.meta.stream_id)
                    .ok_or_else(|| Error::NoSuchStream {
                        stream: stream.name.clone(),
                    })?;
                self.idmp_configure(sid, &stream.name, *duration_s, *maxsize)
                    .map(|()| Reply::Ok)
            }
            Op::DeleteEx {
                stream,
                ack,
                ids,
                refs,
            } => self.delete_ex(stream, ack.as_deref(), ids, *refs),
            Op::NackMode {
                stream,
                group,
                ids,
                mode,
                retry_count,
            } => self.nack_mode(stream, group, ids, *mode, *retry_count, false),
            Op::NackForce {
                stream,
                group,
                ids,
                mode,
                retry_count,
            } => self.nack_mode(stream, group, ids, *mode, *retry_count, true),
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
                streams,
                group,
                consumer,
                ReadLimits {
                    count: *count,
                    max_count: *max_count,
                    max_bytes: *max_bytes,
                },
                *noack,
                *claim,
            ),
            Op::Trim { stream, trim } => self.trim_op(stream, *trim),
            Op::SetId {
                stream,
                last_id,
                entries_added,
                max_deleted_id,
            } => self.set_id(stream, *last_id, *entries_added, *max_deleted_id),
            Op::DeleteStream { stream } => self.delete_stream(stream),
            Op::RenameStream { from, to, replace } => self.rename_stream(from, to, *replace),
            Op::FlushNamespace { ns } => self.flush_namespace(*ns),
            Op::SwapNamespaces { a, b } => self.swap_namespaces(*a, *b),
            Op::CreateGroup {
                stream,
                group,
                start,
                mkstream,
                entries_read,
                policy,
            } => self.create_group(
                stream,
                group,
                *start,
                *mkstream,
                *entries_read,
                policy.clone(),
            ),
            Op::SetGroupId {
                stream,
                group,
                start,
                entries_read,
            } => self.set_group_id(stream, group, *start, *entries_read),
            Op::DestroyGroup { stream, group } => self.destroy_group(stream, group),
            Op::CreateConsumer {
                stream,
                group,
                consumer,
            } => self.create_consumer(stream, group, consumer),
            Op::DeleteConsumer {
                stream,
                group,
                consumer,
            } => self.delete_consumer(stream, group, consumer),
            Op::SetPolicy {
                stream,
                group,
                policy,
            } => self.set_policy(stream, group, policy.clone()),
            Op::PatchPolicy {
                stream,
                group,
                patch,
            } => self.patch_policy(stream, group, patch),
            Op::ReadGroup {
                streams,
                group,
                consumer,
                count,
                noack,
                retry,
            } => self.read_groups(streams, group, consumer, *count, *noack, *retry),
            Op::Deliver {
                stream,
                group,
                consumer,
                from,
                count,
                noack,
            } => self.deliver(stream, group, consumer, *from, *count, *noack),
            Op::Ack { stream, group, ids } => self.ack(stream, group, ids),
            Op::Progress {
                stream,
                group,
                consumer,
                ids,
            } => self.progress(stream, group, consumer, ids),
            Op::Nack {
                stream,
                group,
                ids,
                error,
                reject,
            } => self.nack(stream, group, ids, error.as_deref(), *reject),
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
                stream,
                group,
                consumer,
                *min_idle_ms,
                ids,
                *delivery_time_ms,
                *retry_count,
                *force,
                *justid,
                *last_id,
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
                stream,
                group,
                consumer,
                *min_idle_ms,
                *start,
                *count,
                *justid,
            ),
            Op::Tick => self.tick(),
            Op::DlqRedrive { dlq, filter, limit } => self.dlq_redrive(dlq, filter, *limit),
            Op::DlqPurge { dlq, filter, limit } => self.dlq_purge(dlq, filter, *limit),
            Op::Query(q) => crate::read::answer(&*self, q, self.now).map(Reply::Answer),
            Op::SetNodeLimits(l) => {
                self.node_limits = *l;
                Ok(Reply::Ok)
            }
            Op::CancelTask { task } => self.cancel_task(task),
        };
        // Dead letters are appended once the op's own stream is back in the staging map.
        self.flush_dead_letters();
        self.flush_task_changes()?;
        if let Some(e) = self.task_error.take() {
            return Err(e);
        }
        r
    }
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
                    groups: crate::read::group_infos(&st),
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
            cfg: &self.cfg,
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
        crate::read::answer(&self.committed(q), q, now_ms).map_err(|e| match e {
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

/// The read shortcuts tests and the broker's own housekeeping use: each is a [`Query`]
/// answered by [`Store::query`] (the same evaluation, the same errors), or a fact of the
/// catalog that needs no read.
impl Store {
    /// Answers a query whose answer does not depend on the time.
    fn ask(&self, q: Query) -> Result<Answer> {
        self.query(&q, 0)
    }

    /// XRANGE / XREVRANGE: entries between the bounds, at most `count`, newest first when
    /// `rev` ([`Query::Range`]).
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
        match self.ask(Query::Range {
            stream: key.clone(),
            start,
            end,
            count,
            rev,
        })? {
            Answer::Entries(e) => Ok(e),
            other => Err(unexpected(other)),
        }
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

    /// XLEN (0 for a missing stream), from the catalog.
    pub fn len(&self, key: &StreamKey) -> u64 {
        self.stream_state(key).map_or(0, |s| s.meta.length)
    }

    /// True when the stream exists (possibly empty), from the catalog.
    pub fn exists(&self, key: &StreamKey) -> bool {
        self.stream_state(key).is_some()
    }

    /// The stream's last generated ID (for `$`), from the catalog.
    pub fn last_id(&self, key: &StreamKey) -> Option<StreamId> {
        self.stream_state(key).map(|s| s.meta.last_id)
    }

    /// Names of the streams of a namespace, sorted (the committed view of [`Query::Names`],
    /// which reads the catalog only).
    pub fn list_streams(&self, ns: u16) -> Vec<Vec<u8>> {
        self.committed(&Query::Names { ns }).names(ns)
    }

    /// Number of streams in a namespace (DBSIZE), from the catalog.
    pub fn stream_count(&self, ns: u16) -> usize {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        cat.streams.keys().filter(|k| k.ns == ns).count()
    }

    /// The radix-tree node sizes appends are placed by (CONFIG stream-node-max-*).
    pub fn node_limits(&self) -> NodeLimits {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .node_limits
    }

    /// XINFO STREAM ([`Query::Stream`]).
    pub fn stream_info(&self, key: &StreamKey) -> Result<Option<StreamInfo>> {
        match self.ask(Query::Stream {
            stream: key.clone(),
        })? {
            Answer::Stream(s) => Ok(s.map(|s| *s)),
            other => Err(unexpected(other)),
        }
    }

    /// XINFO GROUPS ([`Query::Groups`]).
    pub fn groups_info(&self, key: &StreamKey) -> Result<Vec<GroupInfo>> {
        match self.ask(Query::Groups {
            stream: key.clone(),
        })? {
            Answer::Groups(g) => Ok(g),
            other => Err(unexpected(other)),
        }
    }

    /// XINFO CONSUMERS ([`Query::Consumers`]).
    pub fn consumers_info(
        &self,
        key: &StreamKey,
        group: &[u8],
        now_ms: u64,
    ) -> Result<Vec<ConsumerInfo>> {
        let q = Query::Consumers {
            stream: key.clone(),
            group: group.to_vec(),
        };
        match self.query(&q, now_ms)? {
            Answer::Consumers(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// XPENDING summary ([`Query::PendingSummary`]).
    pub fn pending_summary(&self, key: &StreamKey, group: &[u8]) -> Result<PendingSummary> {
        match self.ask(Query::PendingSummary {
            stream: key.clone(),
            group: group.to_vec(),
        })? {
            Answer::PendingSummary(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    /// XPENDING extended form ([`Query::Pending`]).
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
        match self.query(&query, now_ms)? {
            Answer::Pending(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    /// A group's delivery policy ([`Query::Policy`]).
    pub fn group_policy(&self, key: &StreamKey, group: &[u8]) -> Result<Option<DeliveryPolicy>> {
        match self.ask(Query::Policy {
            stream: key.clone(),
            group: group.to_vec(),
        })? {
            Answer::Policy(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    /// Entries of a dead-letter stream matching the filter, oldest first, at most `count`
    /// ([`Query::DeadLetters`]).
    pub fn dlq_list(
        &self,
        dlq: &StreamKey,
        filter: &DlqFilter,
        count: usize,
    ) -> Result<Vec<(Entry, DeadLetter)>> {
        match self.ask(Query::DeadLetters {
            dlq: dlq.clone(),
            filter: filter.clone(),
            count,
        })? {
            Answer::DeadLetters(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }
}

/// An answer of another shape than its query's: `read::answer` answers every query in its
/// own shape, so this is a bug in it, never something a caller or the disk can cause.
fn unexpected(a: Answer) -> Error {
    unreachable!("a query was answered in another shape: {a:?}")
}

/// A fault a test armed ([`Store::fail_next_commits`], [`Store::fail_next_syncs`]): takes one
/// and fails as an I/O error with `why`, when one is left.
fn injected(armed: &AtomicU64, why: &str) -> Result<()> {
    match armed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)) {
        Ok(_) => Err(Error::Storage(fjall::Error::Io(std::io::Error::other(
            why.to_string(),
        )))),
        Err(_) => Ok(()),
    }
}
