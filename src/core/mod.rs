//! The core: the one writer, apply, the timer, recovery and the disk loop, over the store.
//!
//! Everything that changes the store passes through here, on every node and in every mode:
//! - submissions queue for the writer ([`Core::queue`]); the writer drains what waits into
//!   one batch and hands it to the [`Sequencer`] this node runs with, which puts it in the
//!   one order every copy of the store applies. The single node's sequencer ([`Local`])
//!   commits the batch there and then (group commit, one fsync); a cluster node's proposes
//!   it to the replicated log (`cluster`), and the entries come back through
//!   [`Core::apply_logged`] in log order;
//! - waiting push consumers and blocked readers register as mailboxes ([`mailbox`]), and
//!   the batch that appends to their stream carries their reads: an entry reaches a waiting
//!   consumer with credit in the commit that appended it;
//! - every commit feeds the metrics, the wake-ups, the alerts and the timer's next deadline;
//! - time-driven work (ticks, disk and damage alerts) runs where the sequencer leads.
//!
//! The core knows no front, no permission check beyond the disk's watermark, and nothing of
//! Raft: `broker` sits above it (who may do what, publish, push, request/reply), and
//! `cluster` below `broker` and above the core (the log, the network, the state machine).

pub mod alerts;
mod apply;
pub mod clock;
pub mod disk;
pub mod mailbox;
pub mod metrics;
pub mod notify;
mod relay;
pub mod seq;
mod syncer;
mod timer;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use cortex_storage::{Event, Op, Reply, Store, StoreConfig};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::{Config, Fsync};
use crate::perm::Refusal;
pub use clock::Clock;
pub use notify::Notifier;
pub use seq::{Applying, Local, Origin, Origins, Sequencer};
pub use syncer::Ticket;

/// Replies of one submission, one per op.
pub type Replies = Vec<cortex_storage::Result<Reply>>;

/// Why a submission got no replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker is shutting down.
    ShuttingDown,
    /// The store failed (I/O); the broker stops.
    Storage(String),
    /// Too many submissions are waiting.
    Busy,
    /// A broker task failed unexpectedly.
    Internal(String),
    /// The principal lacks a right.
    NoPermission(Refusal),
    /// The cluster cannot take the write now (no leader, or the leader changed under it).
    Unavailable(String),
    /// The data disk is below its free-space watermark: new data is refused (the message
    /// says how much is free).
    DiskFull(String),
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerError::ShuttingDown => f.write_str("the broker is shutting down"),
            BrokerError::Storage(e) => write!(f, "storage failure: {e}"),
            BrokerError::Busy => f.write_str("the broker's write queue is full, retry later"),
            BrokerError::Internal(e) => write!(f, "internal error: {e}"),
            BrokerError::NoPermission(r) => write!(f, "{r}"),
            BrokerError::Unavailable(e) => write!(f, "cluster unavailable: {e}"),
            BrokerError::DiskFull(e) => f.write_str(e),
        }
    }
}

/// A submission on the writer's queue.
pub struct Submission {
    /// Its ops, applied one after the other with nothing in between.
    pub ops: Vec<Op>,
    /// Who waits for it.
    pub reply: ReplyTo,
}

/// A submission on the writer's queue, waiting for its commit.
pub struct Queued {
    rx: oneshot::Receiver<Result<Replies, BrokerError>>,
    /// It appends (the publish latency histogram).
    publish: bool,
    started: std::time::Instant,
}

/// Who waits for a submission.
pub enum ReplyTo {
    /// A local caller, for the replies.
    Local(oneshot::Sender<Result<Replies, BrokerError>>),
    /// A follower's forwarded batch (cluster leader): the origins name the follower's
    /// waiting submissions, answered there when it applies the entry; `done` hears whether
    /// the entry was committed.
    Forwarded {
        /// The follower's submissions in the batch.
        origins: Vec<Origin>,
        /// Told whether the entry was committed.
        done: oneshot::Sender<Result<(), String>>,
    },
}

impl ReplyTo {
    /// Tells the waiter that its submission failed.
    pub fn fail(self, e: BrokerError) {
        match self {
            ReplyTo::Local(tx) => {
                let _ = tx.send(Err(e));
            }
            ReplyTo::Forwarded { done, .. } => {
                let _ = done.send(Err(e.to_string()));
            }
        }
    }
}

/// The writer thread; [`Writer::join`] finishes when it has stopped.
pub struct Writer(std::thread::JoinHandle<()>);

impl Writer {
    /// Waits until the writer stopped.
    pub async fn join(self) {
        let _ = tokio::task::spawn_blocking(move || self.0.join()).await;
    }
}

/// Counters for INFO.
#[derive(Default)]
pub struct Stats {
    /// Commits made by the writer.
    pub commits: AtomicU64,
    /// Ops applied.
    pub ops: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Commands processed.
    pub commands: AtomicU64,
    /// Clients connected now.
    pub clients: AtomicU64,
    /// Clients blocked now.
    pub blocked: AtomicU64,
    /// Alerts written.
    pub alerts: AtomicU64,
    /// Changes since start, counted as Redis counts its "dirty" counter (INFO's
    /// `rdb_changes_since_last_save`; there is no save to reset it).
    pub dirty: AtomicU64,
    /// Damage the check after start found in the store (0 until it finished).
    pub damaged: AtomicU64,
}

/// Handle to the core; cheap to clone.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Shared>,
}

impl std::ops::Deref for Core {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

/// What the core holds.
pub struct Shared {
    /// The store; swapped when a cluster node installs a snapshot, and reopened when a
    /// commit failed (see `writer.rs`). `None` only while the writer holds the write lock
    /// to reopen it: no reader ever sees `None`.
    store: RwLock<Option<Arc<Store>>>,
    /// Where the store lives.
    store_dir: PathBuf,
    /// The data disk's free space and the store's failure state.
    pub disk: disk::DiskWatch,
    submit: mpsc::Sender<Submission>,
    /// Submissions sent to the writer's queue and not yet sequenced (see [`Core::send`]).
    in_flight: AtomicUsize,
    /// Small submissions gathered for one commit on the runtime's thread, while a caller
    /// leads them ([`Core::submit`]).
    gathered: Mutex<Option<Gathered>>,
    /// Held by whoever commits: the writer for each batch, or the runtime's thread
    /// committing the small submissions gathered while the writer is idle
    /// ([`Core::commit_gathered`]).
    commit_gate: Mutex<()>,
    /// Wake-ups of blocked readers and mailboxes, by stream.
    pub notifier: Notifier,
    /// Broker time.
    pub clock: Clock,
    /// The validated configuration.
    pub config: Config,
    timer_wake: Notify,
    /// Counters for INFO.
    pub stats: Stats,
    stopping: AtomicBool,
    /// Set, and `failed_notify` woken, when the store failed: the process must exit.
    failed: Mutex<Option<String>>,
    failed_notify: Notify,
    /// When the core started (Unix ms).
    pub started_ms: u64,
    alerts: mpsc::Sender<Event>,
    /// The next deadline the store reported (`u64::MAX`: none); the timer sleeps until it.
    next_deadline_ms: AtomicU64,
    /// The sequencer this node runs with (set once, before the writer starts).
    sequencer: OnceLock<Arc<dyn Sequencer>>,
    /// This node's submissions waiting for a replicated entry (cluster).
    pub origins: Origins,
    /// What the writer thread hands to the runtime's thread after a commit (mailbox wake-ups,
    /// answers), with one wake-up.
    relay: Arc<relay::Relay>,
    /// How far the commits applied ahead of their sync are durable (reads wait for it).
    durable: Arc<syncer::Durable>,
    /// Commits applied on the runtime's thread, waiting for a syncer thread's fsync.
    syncer: syncer::Syncer,
    /// The syncer threads, joined at shutdown.
    syncer_threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The largest `now_ms` of a replicated entry applied here (a leader stamps at least
    /// this).
    pub applied_now: AtomicU64,
    /// Cluster: the mailbox reads this node's writer added to its proposals, by the
    /// submission number of their origin (always the entry's last).
    plans: Mutex<HashMap<u64, Vec<mailbox::Planned>>>,
    /// Cluster leader: its credit for the other nodes' mailboxes.
    pub remote_credit: mailbox::RemoteCredit,
    /// Latencies and counts for `/metrics`.
    pub metrics: metrics::Metrics,
    /// The ID of every task a commit applied here changed (watchers re-read the task; one
    /// that lags re-reads it too, the history being durable).
    pub task_news: tokio::sync::broadcast::Sender<Arc<[u8]>>,
}

/// The queues [`Core::open`] makes, for [`Core::run`] and the broker's alert task.
pub struct Queues {
    /// The writer's queue.
    pub submissions: mpsc::Receiver<Submission>,
    /// Commit events worth an alert (dead letters, undelivered trims).
    pub alerts: mpsc::Receiver<Event>,
}

impl Core {
    /// Opens the store in `store_dir` with `store_cfg`. Nothing runs until [`Core::run`].
    pub fn open(
        config: Config,
        store_dir: PathBuf,
        store_cfg: StoreConfig,
    ) -> Result<(Core, Queues), String> {
        let store = Store::open(&store_dir, store_cfg)
            .map_err(|e| format!("cannot open store in {}: {e}", store_dir.display()))?;
        let disk = disk::DiskWatch::new(store_dir.clone(), config.disk_free_min_bytes);
        let (tx, rx) = mpsc::channel(config.queue_max);
        let (alert_tx, alert_rx) = mpsc::channel(10_000);
        let clock = Clock::new();
        let started_ms = clock.now_ms();
        let first_deadline = store.next_deadline_ms(started_ms).unwrap_or(u64::MAX);
        let node_id = config.cluster.as_ref().map_or(0, |c| c.node_id);
        let durable = Arc::new(syncer::Durable::default());
        let core = Core {
            inner: Arc::new(Shared {
                store: RwLock::new(Some(Arc::new(store))),
                store_dir,
                disk,
                submit: tx,
                in_flight: AtomicUsize::new(0),
                gathered: Mutex::new(None),
                commit_gate: Mutex::new(()),
                notifier: Notifier::default(),
                clock,
                config,
                timer_wake: Notify::new(),
                stats: Stats::default(),
                stopping: AtomicBool::new(false),
                failed: Mutex::new(None),
                failed_notify: Notify::new(),
                started_ms,
                alerts: alert_tx,
                task_news: tokio::sync::broadcast::channel(1024).0,
                next_deadline_ms: AtomicU64::new(first_deadline),
                sequencer: OnceLock::new(),
                origins: Origins::new(node_id),
                relay: Arc::new(relay::Relay::new(durable.clone())),
                durable,
                syncer: syncer::Syncer::default(),
                syncer_threads: Mutex::new(Vec::new()),
                applied_now: AtomicU64::new(0),
                plans: Mutex::new(HashMap::new()),
                remote_credit: mailbox::RemoteCredit::default(),
                metrics: metrics::Metrics::default(),
            }),
        };
        Ok((
            core,
            Queues {
                submissions: rx,
                alerts: alert_rx,
            },
        ))
    }

    /// Starts the writer thread with `sequencer` (the one place a batch's sequencer is
    /// chosen: every batch this node's writer drains goes to it), and the timer, the disk
    /// loop and the check of the store after start (on the current tokio runtime).
    pub fn run(
        &self,
        submissions: mpsc::Receiver<Submission>,
        sequencer: Arc<dyn Sequencer>,
    ) -> Result<Writer, String> {
        if self.inner.sequencer.set(sequencer).is_err() {
            return Err("the core runs already".into());
        }
        self.relay.start();
        let me = self.clone();
        let rt = tokio::runtime::Handle::current();
        let writer = std::thread::Builder::new()
            .name("cortex-writer".into())
            .spawn(move || {
                let _rt = rt.enter();
                me.writer_loop(submissions)
            })
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        if self.syncs_ahead() {
            *self
                .syncer_threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = self.start_syncers()?;
        }
        if self.config.fsync == Fsync::Everysec && self.config.cluster.is_none() {
            let me = self.clone();
            std::thread::Builder::new()
                .name("cortex-fsync".into())
                .spawn(move || {
                    while !me.stopping() {
                        std::thread::sleep(Duration::from_secs(1));
                        if let Err(e) = me.store().persist() {
                            tracing::error!("periodic fsync failed: {e}");
                        }
                    }
                })
                .map_err(|e| format!("cannot start the fsync thread: {e}"))?;
        }
        tokio::spawn(self.clone().timer_loop());
        tokio::spawn(self.clone().disk_loop());
        tokio::spawn(self.clone().scrub());
        Ok(Writer(writer))
    }

    /// The sequencer this node runs with.
    pub fn sequencer(&self) -> &Arc<dyn Sequencer> {
        self.inner
            .sequencer
            .get()
            .expect("the sequencer is set before anything runs")
    }

    /// True where time-driven work runs: the single node, or the cluster's leader.
    pub fn leads(&self) -> bool {
        self.inner.sequencer.get().is_none_or(|s| s.leads())
    }

    /// The store as of now (a snapshot install may swap it for a newer one later).
    pub fn store(&self) -> Arc<Store> {
        self.store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            // The writer empties the slot only under the write lock, and fills it again (or
            // exits the process) before releasing it.
            .expect("the store is present outside a reopen")
    }

    /// Swaps the store for one installed from a snapshot; wakes every blocked reader (the
    /// state they wait on moved) and re-reads the next deadline.
    pub fn replace_store(&self, store: Store) {
        let deadline = store.next_deadline_ms(self.now_ms());
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(store));
        self.notifier.notify_all();
        self.set_deadline(deadline);
    }

    /// Unix ms as the broker sees them.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// True once shutdown began (or the store failed).
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Submissions waiting for the writer.
    pub fn queued(&self) -> u64 {
        (self.submit.max_capacity() - self.submit.capacity()) as u64
    }

    /// Steps the system clock as the broker sees it and lets the timer act on deadlines
    /// that passed (the caller checks that tests allow it).
    pub fn step_clock(&self, ms: i64) {
        self.clock.step(ms);
        self.timer_wake.notify_one();
    }

    /// Resolves when the store failed; the broker cannot go on and the process should exit
    /// (a restart recovers everything committed from the journal).
    pub async fn failure(&self) -> String {
        loop {
            let notified = self.failed_notify.notified();
            if let Some(e) = self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return e;
            }
            notified.await;
        }
    }

    /// Queues ops that passed the broker's checks; the returned future gives their
    /// replies once committed. Queued before this returns: submissions made one after the
    /// other are applied in that order even when their replies are awaited later.
    pub fn submit_now(
        &self,
        ops: Vec<Op>,
    ) -> impl std::future::Future<Output = Result<Replies, BrokerError>> + Send + 'static {
        let queued = match self.refusal(&ops) {
            Some(e) => Err(e),
            None => self.queue(ops),
        };
        let me = self.clone();
        async move { me.answer(queued?).await }
    }

    /// Submits the broker's own writes (alerts), which the disk watermark lets through: they
    /// are small, and an alert about the full disk must get out.
    pub async fn submit_system(&self, ops: Vec<Op>) -> Result<Replies, BrokerError> {
        if self.stopping() {
            return Err(BrokerError::ShuttingDown);
        }
        let queued = self.queue(ops)?;
        self.answer(queued).await
    }

    /// Why a caller's submission is refused before it is queued or gathered: the broker
    /// stops, or the data disk is past its watermark.
    fn refusal(&self, ops: &[Op]) -> Option<BrokerError> {
        if self.stopping() {
            return Some(BrokerError::ShuttingDown);
        }
        self.disk.refusal(ops).map(BrokerError::DiskFull)
    }

    /// A caller's submission of `ops` (the default policy applied), and what its caller
    /// waits on.
    fn submission(&self, mut ops: Vec<Op>) -> (Submission, Queued) {
        self.prepare(&mut ops);
        let publish = ops.iter().any(|o| matches!(o, Op::Append { .. }));
        let (tx, rx) = oneshot::channel();
        let queued = Queued {
            rx,
            publish,
            started: std::time::Instant::now(),
        };
        let sub = Submission {
            ops,
            reply: ReplyTo::Local(tx),
        };
        (sub, queued)
    }

    /// Puts a submission on the writer's queue.
    fn queue(&self, ops: Vec<Op>) -> Result<Queued, BrokerError> {
        let (sub, queued) = self.submission(ops);
        self.send(sub).map_err(|(_, e)| e)?;
        Ok(queued)
    }

    /// [`Core::submit_now`], awaited at once; a small write while the writer is idle joins
    /// the writes gathered on the runtime's thread instead, and commits there
    /// ([`Core::commit_gathered`]).
    pub async fn submit(&self, ops: Vec<Op>) -> Result<Replies, BrokerError> {
        if !inline_size(&ops)
            || self.in_flight.load(Ordering::Acquire) > 0
            || !self.sequencer().commits_here()
        {
            return self.submit_now(ops).await;
        }
        if let Some(e) = self.refusal(&ops) {
            return Err(e);
        }
        let (sub, queued) = self.submission(ops);
        match self.gather(sub) {
            Gather::Leads => {
                // Every task runnable now (tokio defers a yielding task until the I/O
                // driver was polled, so every client whose request is readable now
                // included) runs before the leader commits: what they submit meanwhile
                // joins this commit, as Redis reads every ready client before its one
                // fsync. A leader dropped while it waits commits on the way out.
                let leading = Leading(self);
                tokio::task::yield_now().await;
                drop(leading);
            }
            Gather::Joined => {}
            Gather::Full(sub) => self.send(sub).map_err(|(_, e)| e)?,
        }
        self.answer(queued).await
    }

    /// Adds a small submission to the ones gathered for a commit on the runtime's thread:
    /// the first becomes their leader; one that would take them over [`GATHER_OPS_MAX`]
    /// ops (or `batch_ops_max`) comes back, for the queue.
    fn gather(&self, sub: Submission) -> Gather {
        let max = self.config.batch_ops_max.min(GATHER_OPS_MAX);
        let mut g = self.gathered.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *g {
            None => {
                *g = Some(Gathered {
                    ops: sub.ops.len(),
                    subs: vec![sub],
                });
                Gather::Leads
            }
            Some(g) if g.ops + sub.ops.len() <= max => {
                g.ops += sub.ops.len();
                g.subs.push(sub);
                Gather::Joined
            }
            Some(_) => Gather::Full(sub),
        }
    }

    /// The gathered submissions, committed on the caller's (the runtime's) thread as Redis
    /// does on its one thread: no hand-over to the writer thread and no wake-up back, the
    /// two thread hops of every unpipelined write, and one fsync for every client that was
    /// ready at once. They go to the writer's queue instead, in the order gathered, unless
    /// all of these hold: the broker is not stopping, nobody holds the commit gate, the
    /// store works, and nothing sent to the queue is still unsequenced (so every
    /// submission made before each of these, by its caller or another, is committed first:
    /// the order of submissions holds).
    fn commit_gathered(&self) {
        let Some(Gathered { subs, .. }) = self
            .gathered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        if !self.stopping() {
            if let Ok(_gate) = self.commit_gate.try_lock() {
                // Under the gate: a failure is only ever recorded by a commit, which holds
                // it, and a failed store is the writer's to reopen (it may wait for the
                // disk).
                if self.in_flight.load(Ordering::Acquire) == 0 && self.disk.failed().is_none() {
                    self.metrics.inline_commits.fetch_add(1, Ordering::Relaxed);
                    self.commit_here(subs, false);
                    return;
                }
            }
        }
        for sub in subs {
            if let Err((sub, why)) = self.send(sub) {
                sub.reply.fail(why);
            }
        }
    }

    /// Sends a submission to the writer's queue, counted in `in_flight` until the writer
    /// has sequenced it; a refused one comes back with why (the queue is full, or the
    /// writer has stopped).
    fn send(&self, sub: Submission) -> Result<(), (Submission, BrokerError)> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.submit.try_send(sub).map_err(|e| {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(s) => (s, BrokerError::Busy),
                mpsc::error::TrySendError::Closed(s) => (s, BrokerError::ShuttingDown),
            }
        })
    }

    /// A queued submission's replies, once committed.
    async fn answer(&self, q: Queued) -> Result<Replies, BrokerError> {
        let r = q.rx.await.unwrap_or(Err(BrokerError::ShuttingDown));
        if q.publish && r.is_ok() {
            self.metrics.publish_durable.observe(q.started.elapsed());
        }
        r
    }

    /// A follower's batch, on the leader: sequenced with the follower's origins; `Ok` when
    /// committed.
    pub async fn submit_forwarded(&self, ops: Vec<Op>, origins: Vec<Origin>) -> Result<(), String> {
        if self.stopping() {
            return Err(BrokerError::ShuttingDown.to_string());
        }
        let (done, rx) = oneshot::channel();
        self.send(Submission {
            ops,
            reply: ReplyTo::Forwarded { origins, done },
        })
        .map_err(|(_, e)| e.to_string())?;
        rx.await
            .unwrap_or_else(|_| Err(BrokerError::ShuttingDown.to_string()))
    }

    /// Rules applied to ops before they are sequenced: a group created without a policy
    /// gets the configured default (so the op carries it, and a replica applying it needs
    /// no config of its own).
    fn prepare(&self, ops: &mut [Op]) {
        let Some(default) = &self.config.default_policy else {
            return;
        };
        for op in ops {
            if let Op::CreateGroup { policy, .. } = op {
                if policy.is_none() {
                    *policy = Some(default.clone());
                }
            }
        }
    }

    /// Taken before a read whose answer goes to a client; see [`Core::visible`].
    pub fn read_ticket(&self) -> Ticket {
        self.durable.ticket()
    }

    /// After such a read: waits until every commit it may have seen is durable (a commit
    /// on the runtime's thread is visible before its sync ends: `syncer.rs`). At once when
    /// nothing waits for a sync; refused when such a sync failed.
    pub async fn visible(&self, t: Ticket) -> Result<(), BrokerError> {
        self.durable.visible(t).await
    }

    /// Marks `n` submissions the writer drained as sequenced.
    pub(super) fn sequenced(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
    }

    /// Records the store's next deadline and wakes the timer when it moved.
    fn set_deadline(&self, next: Option<u64>) {
        let next = next.unwrap_or(u64::MAX);
        if self.next_deadline_ms.swap(next, Ordering::AcqRel) != next {
            self.timer_wake.notify_one();
        }
    }

    /// Begins shutdown: new submissions are refused; the writer finishes what is queued,
    /// closes the store cleanly and exits.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.nudge_writer();
        self.timer_wake.notify_one();
    }

    /// An empty submission: wakes the writer (to notice a shutdown, or to reopen a failed
    /// store).
    fn nudge_writer(&self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.send(Submission {
            ops: Vec::new(),
            reply: ReplyTo::Local(tx),
        });
    }

    /// Records a store failure: the process must exit (a restart recovers what was
    /// committed).
    pub fn fail_store(&self, e: &str) {
        tracing::error!("storage failure, the broker stops: {e}");
        self.stopping.store(true, Ordering::Relaxed);
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        self.failed_notify.notify_one();
    }

    fn plans(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<mailbox::Planned>>> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Most ops of a submission that [`Core::submit`] gathers for the runtime's thread.
const INLINE_OPS_MAX: usize = 16;
/// Most ops gathered for one commit on the runtime's thread. A pass over the ready clients
/// with more goes to the writer thread: its parsing and formatting then take long enough
/// that overlapping them with the writer's apply and fsync saves more than the two thread
/// hops cost (measured: -c 50 -P 1, about 30 ops a pass, is faster gathered; -c 50 -P 16,
/// 800 a pass, is faster on the writer).
const GATHER_OPS_MAX: usize = 64;
/// Most IDs of one ack, or entries of one group read, it takes.
const INLINE_IDS_MAX: usize = 128;

/// A submission small enough to commit on a runtime thread: a few appends (not trimming),
/// acks of few IDs, or group reads of one stream with a small COUNT.
fn inline_size(ops: &[Op]) -> bool {
    !ops.is_empty()
        && ops.len() <= INLINE_OPS_MAX
        && ops.iter().all(|op| match op {
            Op::Append { trim, .. } => trim.is_none(),
            Op::Ack { ids, .. } => ids.len() <= INLINE_IDS_MAX,
            Op::ReadGroup { streams, count, .. } => {
                streams.len() == 1 && count.is_some_and(|c| c <= INLINE_IDS_MAX)
            }
            _ => false,
        })
}

/// Small submissions gathered for one commit on the runtime's thread.
struct Gathered {
    subs: Vec<Submission>,
    /// Their ops.
    ops: usize,
}

/// Where [`Core::gather`] put a submission.
enum Gather {
    /// It is the first: its caller commits them all.
    Leads,
    /// It joined a leader's.
    Joined,
    /// It would make them too many: it goes to the queue.
    Full(Submission),
}

/// The leader of the gathered submissions: commits them when dropped, after its yield or
/// when its caller gave up meanwhile (so no submission it gathered is ever left behind).
struct Leading<'a>(&'a Core);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.commit_gathered();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_storage::{IdSpec, Meta, StreamKey};
    use std::ops::Bound;

    /// A core on a fresh store in `dir`, its writer running, with `batch_ops_max`.
    fn core(dir: &std::path::Path, batch_ops_max: usize) -> Core {
        let flags = crate::config::ServeFlags {
            data_dir: Some(dir.join("data")),
            ..Default::default()
        };
        let mut config = Config::build(Default::default(), &flags).expect("config");
        config.batch_ops_max = batch_ops_max;
        let (store, store_cfg) = (config.data_dir.clone(), config.store.clone());
        let (core, queues) = Core::open(config, store, store_cfg).expect("core");
        core.run(queues.submissions, Arc::new(Local))
            .expect("writer");
        core
    }

    /// A submitting task's answer; a lost submission fails the test instead of hanging it.
    async fn answered(
        t: tokio::task::JoinHandle<Result<Replies, BrokerError>>,
    ) -> Result<Replies, BrokerError> {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("answered within a minute")
            .expect("task")
    }

    /// An append of one field, `n`, to stream `s`.
    fn append(n: usize) -> Op {
        append_to("s", n)
    }

    /// An append of one field, `n`, to `stream` (the mailbox tests use it too).
    pub(super) fn append_to(stream: &str, n: usize) -> Op {
        Op::Append {
            stream: StreamKey::new(0, stream),
            id: IdSpec::Auto,
            fields: vec![(b"n".to_vec(), n.to_string().into_bytes())],
            meta: Meta::default(),
            idempotency_key: None,
            no_mkstream: false,
            trim: None,
        }
    }

    /// `n` tasks, spawned in order, each submitting one append of its number; every one
    /// answered. Returns the numbers in the stream's order.
    async fn appends(core: &Core, n: usize) -> Vec<String> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let core = core.clone();
                tokio::spawn(async move { core.submit(vec![append(i)]).await })
            })
            .collect();
        for t in tasks {
            let replies = answered(t).await.expect("committed");
            assert!(replies[0].is_ok(), "{:?}", replies[0]);
        }
        core.store()
            .range(
                &StreamKey::new(0, "s"),
                Bound::Unbounded,
                Bound::Unbounded,
                None,
                false,
            )
            .expect("range")
            .into_iter()
            .map(|e| String::from_utf8(e.record.fields[0].1.clone()).expect("utf-8"))
            .collect()
    }

    /// A commit gathered on the runtime's thread from several clients is synced on the
    /// syncer threads, and its answers wait for that sync: when it fails, every one of them
    /// is refused (none was told "done" before it), reads are refused until the store is
    /// reopened, and after the reopen the writes go on. A lone client with nothing else
    /// syncing syncs in line: the syncer is not used.
    #[tokio::test(flavor = "current_thread")]
    async fn gathered_answers_wait_for_the_sync_beside_the_next_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let core = core(dir.path(), 4096);
        let syncs = || core.metrics.journal_sync.count();
        // Alone: in line.
        answered(tokio::spawn({
            let core = core.clone();
            async move { core.submit(vec![append(0)]).await }
        }))
        .await
        .expect("committed");
        assert_eq!(syncs(), 0);
        // Five at once: one commit, synced beside; its sync fails.
        core.store().fail_next_syncs(1);
        let tasks: Vec<_> = (1..6)
            .map(|i| {
                let core = core.clone();
                tokio::spawn(async move { core.submit(vec![append(i)]).await })
            })
            .collect();
        for t in tasks {
            match answered(t).await {
                Err(BrokerError::Storage(e)) => assert!(e.contains("injected sync"), "{e}"),
                other => panic!("answered before its sync failed: {other:?}"),
            }
        }
        assert_eq!(syncs(), 1);
        assert!(core.visible(core.read_ticket()).await.is_err());
        // The next write goes to the writer, which reopens the store; reads work again.
        let r = answered(tokio::spawn({
            let core = core.clone();
            async move { core.submit(vec![append(6)]).await }
        }))
        .await
        .expect("committed after the reopen");
        assert!(r[0].is_ok(), "{r:?}");
        core.visible(core.read_ticket()).await.expect("reads again");
        assert_eq!(core.disk.recoveries.load(Ordering::Relaxed), 1);
        core.shutdown();
    }

    /// Small writes of every task runnable at once are gathered by the first, which commits
    /// them all on the runtime's thread in one commit, in the order submitted.
    #[tokio::test(flavor = "current_thread")]
    async fn small_writes_ready_at_once_share_one_commit_on_the_runtime_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let core = core(dir.path(), 4096);
        let commits = core.stats.commits.load(Ordering::Relaxed);
        let order = appends(&core, 20).await;
        let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(order, want);
        assert_eq!(core.metrics.inline_commits.load(Ordering::Relaxed), 1);
        assert_eq!(core.stats.commits.load(Ordering::Relaxed) - commits, 1);
        core.shutdown();
    }

    /// Gathered writes go to the writer's queue, in the order gathered and after what was
    /// queued first, when the queue holds unsequenced submissions; one that would take the
    /// gathered over `batch_ops_max` is queued at once. No write is lost or committed
    /// twice either way.
    #[tokio::test(flavor = "current_thread")]
    #[allow(clippy::await_holding_lock)] // the writer thread is the one held off
    async fn gathered_writes_queue_behind_what_was_queued_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let core = core(dir.path(), 3);
        // The writer cannot sequence while the gate is held: what reaches the queue stays
        // unsequenced until the gate is let go, whatever the scheduler does.
        let gate = core.commit_gate.lock().expect("gate");
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let core = core.clone();
                tokio::spawn(async move { core.submit(vec![append(i)]).await })
            })
            .collect();
        // Every task runs up to its wait: 0 leads and yields, 1 and 2 join it, 3 finds the
        // gathered full (3 ops) and queues, 4-19 find the queue busy and queue, then 0
        // sends the gathered behind them.
        for _ in 0..100 {
            if core.in_flight.load(Ordering::Acquire) == 20 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(core.in_flight.load(Ordering::Acquire), 20);
        drop(gate);
        for t in tasks {
            answered(t).await.expect("committed");
        }
        let order = appends(&core, 0).await;
        let want: Vec<String> = (3..20).chain(0..3).map(|i| i.to_string()).collect();
        assert_eq!(order, want);
        assert_eq!(core.metrics.inline_commits.load(Ordering::Relaxed), 0);
        core.shutdown();
    }

    /// A leader whose caller gives up while it waits for the others still commits what it
    /// gathered: the others are answered.
    #[tokio::test(flavor = "current_thread")]
    async fn a_leader_dropped_while_gathering_commits_what_it_gathered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let core = core(dir.path(), 4096);
        let leader = {
            let core = core.clone();
            tokio::spawn(async move { core.submit(vec![append(0)]).await })
        };
        let joined = {
            let core = core.clone();
            tokio::spawn(async move { core.submit(vec![append(1)]).await })
        };
        // Both have run to their wait (the leader yields, the other waits for its answer):
        // nothing was committed yet.
        let gathered = |core: &Core| {
            let g = core.gathered.lock().expect("gathered");
            g.as_ref().map_or(0, |g| g.subs.len())
        };
        for _ in 0..100 {
            if gathered(&core) == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(gathered(&core), 2);
        leader.abort();
        assert!(leader.await.expect_err("aborted").is_cancelled());
        answered(joined).await.expect("committed");
        assert_eq!(appends(&core, 0).await, ["0", "1"]);
        core.shutdown();
    }
}
