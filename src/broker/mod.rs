//! The one broker core every front uses. A front parses requests and formats replies; what
//! the broker *does* is reached through [`Broker`]:
//!
//! - [`Broker::authenticate`] / [`Broker::open_session`]: a [`Principal`], without which
//!   no other call can be made.
//! - [`Broker::submit`]: a batch of [`Op`]s. A single **writer thread** drains everything
//!   waiting, applies it as one commit (one fsync under `--fsync always`) and answers each
//!   submitter after that commit. One submission is never split: it is applied as one
//!   contiguous, atomic run of one batch, so [`Broker::transaction`] (MULTI/EXEC) is isolated
//!   from every other client and from the broker's own timer, retention and alerts.
//! - [`Broker::query`], [`Broker::read_group`], [`Broker::read_streams`] (`read.rs`): reads
//!   and blocking reads, woken by the writer's events through the [`Notifier`].
//! - A timer task drives time (ack timeouts, backoff, TTL, idempotency expiry, garbage) by
//!   submitting [`Op::Tick`] at exactly the deadline every commit reports
//!   ([`cortex_storage::BatchOutcome::next_deadline_ms`]); nothing polls. An alert task
//!   summarises dead letters on `cortex:alerts`.

mod alerts;
mod auth;
mod clock;
pub(crate) mod disk;
pub mod mailbox;
pub mod metrics;
mod notify;
pub mod perm;
pub mod publish;
pub mod push;
mod read;
pub mod reqrep;
mod retention;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use cortex_storage::{Event, Op, Reply, Store, StreamKey};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::cluster;
/// The cluster types fronts show or pass on (fronts import the broker, never `cluster`).
pub use crate::cluster::{Membership, Status as ClusterStatus, Until};
use crate::config::{Config, Fsync};
pub use auth::{AuthError, Principal};
pub use clock::Clock;
pub use notify::Notifier;
pub use perm::{Permissions, Refusal, Right};
pub use read::{Blocking, GroupRead, INLINE_READ_MAX};

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

struct Submission {
    ops: Vec<Op>,
    reply: ReplyTo,
}

/// A submission on the writer's queue, waiting for its commit.
struct Queued {
    rx: oneshot::Receiver<Result<Replies, BrokerError>>,
    /// It appends (the publish latency histogram).
    publish: bool,
    started: std::time::Instant,
}

/// Who waits for a submission.
enum ReplyTo {
    /// A local caller, for the replies.
    Local(oneshot::Sender<Result<Replies, BrokerError>>),
    /// A follower's forwarded batch (cluster leader): the origins name the follower's
    /// waiting submissions, answered there when it applies the entry; `done` hears whether
    /// the entry was committed.
    Forwarded {
        origins: Vec<cluster::Origin>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

impl ReplyTo {
    fn fail(self, e: BrokerError) {
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

/// The writer: a thread (single node) or a task (cluster: proposals are async).
pub enum Writer {
    /// The single node's writer thread.
    Thread(std::thread::JoinHandle<()>),
    /// The cluster writer task.
    Task(tokio::task::JoinHandle<()>),
}

impl Writer {
    /// Waits until the writer stopped.
    pub async fn join(self) {
        match self {
            Writer::Thread(t) => {
                let _ = tokio::task::spawn_blocking(move || t.join()).await;
            }
            Writer::Task(t) => {
                let _ = t.await;
            }
        }
    }
}

/// The longest the timer sleeps without reading the clock again.
const TIMER_RECHECK: Duration = Duration::from_secs(1);

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

/// Handle to the broker; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store; swapped when a cluster node installs a snapshot, and reopened when a
    /// commit failed (see [`Broker::reopen_store`]). `None` only while the writer holds the
    /// write lock to reopen it: no reader ever sees `None`.
    store: RwLock<Option<Arc<Store>>>,
    /// The data disk's free space and the store's failure state.
    disk: disk::DiskWatch,
    /// This node's cluster side (`[cluster]` configured).
    cluster: OnceLock<Arc<cluster::Node>>,
    submit: mpsc::Sender<Submission>,
    notifier: Notifier,
    clock: Clock,
    config: Config,
    timer_wake: Notify,
    stats: Stats,
    stopping: AtomicBool,
    /// Set, and `failed_notify` woken, when the store failed: the process must exit.
    failed: std::sync::Mutex<Option<String>>,
    failed_notify: Notify,
    /// Woken whenever a client connection closes ([`Broker::wait_connections`]).
    connection_closed: Notify,
    started_ms: u64,
    alerts: mpsc::Sender<Event>,
    /// The next deadline the store reported (`u64::MAX`: none); the timer sleeps until it.
    next_deadline_ms: AtomicU64,
    /// Live requests and inbox subscribers.
    requests: reqrep::Requests,
    /// Cluster: the mailbox reads this node's writer added to its proposals, by the
    /// submission number of their origin (always the entry's last).
    plans: std::sync::Mutex<HashMap<u64, Vec<mailbox::Planned>>>,
    /// Cluster leader: its credit for the other nodes' mailboxes.
    remote_credit: mailbox::RemoteCredit,
    /// Woken when this node's mailboxes should be announced again.
    mail_announce: Arc<Notify>,
    /// Latencies and counts for `/metrics`.
    metrics: metrics::Metrics,
}

impl Broker {
    /// Opens the store and starts the writer, timer and alert tasks (on the current tokio
    /// runtime). Returns the broker and a handle that finishes when the writer has stopped.
    pub async fn start(config: Config) -> Result<(Broker, Writer), String> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
        let dirs = cluster::sm::Dirs {
            root: config.data_dir.join("cluster"),
        };
        let (store_dir, store_cfg) = if config.cluster.is_some() {
            // Every node must start from the same (empty) state: a single node's store in
            // the data dir would silently diverge from the others.
            if config.data_dir.join("version").exists()
                || config.data_dir.join("keyspaces").exists()
            {
                return Err(format!(
                    "{} holds a single node's store; a cluster node starts from an empty data \
                     directory (re-publish what must be kept, from `cortex replay`'s output, \
                     or keep this directory for the single node)",
                    config.data_dir.display()
                ));
            }
            std::fs::create_dir_all(&dirs.root)
                .map_err(|e| format!("cannot create {}: {e}", dirs.root.display()))?;
            dirs.clean()?;
            (dirs.current_state().0, config.store_for_cluster())
        } else {
            (config.data_dir.clone(), config.store.clone())
        };
        let store = Store::open(&store_dir, store_cfg)
            .map_err(|e| format!("cannot open store in {}: {e}", store_dir.display()))?;
        let store = Arc::new(store);
        let disk = disk::DiskWatch::new(store_dir.clone(), config.disk_free_min_bytes);
        let (tx, rx) = mpsc::channel(config.queue_max);
        let (alert_tx, alert_rx) = mpsc::channel(10_000);
        let clock = Clock::new();
        let started_ms = clock.now_ms();
        let first_deadline = store.next_deadline_ms(started_ms).unwrap_or(u64::MAX);
        let broker = Broker {
            inner: Arc::new(Inner {
                store: RwLock::new(Some(store)),
                disk,
                cluster: OnceLock::new(),
                submit: tx,
                notifier: Notifier::default(),
                clock,
                config,
                timer_wake: Notify::new(),
                stats: Stats::default(),
                stopping: AtomicBool::new(false),
                failed: std::sync::Mutex::new(None),
                failed_notify: Notify::new(),
                connection_closed: Notify::new(),
                started_ms,
                alerts: alert_tx,
                next_deadline_ms: AtomicU64::new(first_deadline),
                requests: reqrep::Requests::default(),
                plans: std::sync::Mutex::new(HashMap::new()),
                remote_credit: mailbox::RemoteCredit::default(),
                mail_announce: Arc::new(Notify::new()),
                metrics: metrics::Metrics::default(),
            }),
        };
        let writer = if let Some(cc) = broker.inner.config.cluster.clone() {
            let node = broker.start_cluster(cc, dirs).await?;
            Writer::Task(tokio::spawn(broker.clone().cluster_writer(rx, node)))
        } else {
            let b = broker.clone();
            Writer::Thread(
                std::thread::Builder::new()
                    .name("cortex-writer".into())
                    .spawn(move || b.writer_loop(rx))
                    .map_err(|e| format!("cannot start the writer thread: {e}"))?,
            )
        };
        if broker.inner.config.fsync == Fsync::Everysec && broker.cluster().is_none() {
            let b = broker.clone();
            std::thread::Builder::new()
                .name("cortex-fsync".into())
                .spawn(move || {
                    while !b.inner.stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_secs(1));
                        if let Err(e) = b.store().persist() {
                            tracing::error!("periodic fsync failed: {e}");
                        }
                    }
                })
                .map_err(|e| format!("cannot start the fsync thread: {e}"))?;
        }
        tokio::spawn(broker.clone().timer_loop());
        tokio::spawn(broker.clone().disk_loop());
        tokio::spawn(broker.clone().scrub());
        tokio::spawn(alerts::run(broker.clone(), alert_rx));
        if !broker.inner.config.retention.is_empty() {
            tokio::spawn(retention::run(broker.clone()));
        }
        Ok((broker, writer))
    }

    /// The store (the broker's own tasks; fronts read through [`Broker::query`]).
    pub(crate) fn store(&self) -> Arc<Store> {
        self.store_arc()
    }

    /// The store as of now (a snapshot install may swap it for a newer one later).
    pub(crate) fn store_arc(&self) -> Arc<Store> {
        self.inner
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            // The writer empties the slot only under the write lock, and fills it again (or
            // exits the process) before releasing it.
            .expect("the store is present outside a reopen")
    }

    /// The data disk's free space and the store's failure state.
    pub fn disk(&self) -> disk::DiskState {
        self.inner.disk.state()
    }

    /// Swaps the store for one installed from a snapshot; wakes every blocked reader (the
    /// state they wait on moved) and re-reads the next deadline.
    pub(crate) fn replace_store(&self, store: Store) {
        let deadline = store.next_deadline_ms(self.now_ms());
        *self.inner.store.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(store));
        self.inner.notifier.notify_all();
        self.set_deadline(deadline);
    }

    /// `cortex cluster`: the node's view of the cluster as JSON, after a membership change
    /// when one is given (admin).
    pub async fn cluster_admin(
        &self,
        who: &Principal,
        change: Option<cluster::Membership>,
    ) -> Result<Result<String, String>, BrokerError> {
        who.authorize_admin().map_err(BrokerError::NoPermission)?;
        let Some(node) = self.cluster() else {
            return Ok(Err(
                "this broker is a single node ([cluster] is not configured)".into(),
            ));
        };
        if let Some(change) = change {
            if let Err(e) = node.change_membership(change).await {
                return Ok(Err(e));
            }
        }
        Ok(serde_json::to_string_pretty(&node.status()).map_err(|e| e.to_string()))
    }

    /// The node's view of the cluster once `until` holds (admin); `Ok(None)` on timeout,
    /// `Err(Unavailable)` on a single node.
    pub async fn cluster_wait(
        &self,
        who: &Principal,
        until: cluster::Until,
        timeout: Duration,
    ) -> Result<Option<cluster::Status>, BrokerError> {
        who.authorize_admin().map_err(BrokerError::NoPermission)?;
        let node = self.cluster().ok_or_else(|| {
            BrokerError::Unavailable(
                "this broker is a single node ([cluster] is not configured)".into(),
            )
        })?;
        Ok(node.wait(until, timeout).await)
    }

    /// This node's cluster side, when `[cluster]` is configured.
    pub fn cluster(&self) -> Option<&Arc<cluster::Node>> {
        self.inner.cluster.get()
    }

    /// True unless this node is a cluster follower: time-driven work (ticks, retention,
    /// alerts) runs only where this is true.
    pub fn is_leader(&self) -> bool {
        self.cluster().is_none_or(|n| n.is_leader())
    }

    /// Disk space used by the store, in bytes.
    pub fn disk_bytes(&self) -> u64 {
        self.store().disk_space().unwrap_or(0)
    }

    /// Flushes memtables and fsyncs (at shutdown, after the writer stopped).
    pub fn checkpoint(&self) -> Result<(), String> {
        self.store().checkpoint().map_err(|e| e.to_string())
    }

    /// A principal for a new connection: the anonymous one when no tokens are configured,
    /// else `None` (the client must authenticate first).
    pub fn open_session(&self) -> Option<Principal> {
        self.inner
            .config
            .tokens
            .is_empty()
            .then(Principal::internal)
    }

    /// On a broker without tokens, the session of a client under the name it gives (its
    /// inbox and reply stream are named after it), with every right; `None` when tokens are
    /// configured (the client must authenticate).
    pub fn anonymous_session(&self, agent: &str) -> Option<Principal> {
        let p = match agent {
            "" => self.open_session()?,
            a => self
                .open_session()
                .map(|_| Principal::agent_with(a, Permissions::all()))?,
        };
        Some(p)
    }

    /// True when clients must authenticate.
    pub fn requires_auth(&self) -> bool {
        !self.inner.config.tokens.is_empty()
    }

    /// Checks an agent's token (constant time); `agent` `None` or `default` matches any
    /// agent with that token.
    pub fn authenticate(&self, agent: Option<&[u8]>, token: &[u8]) -> Result<Principal, AuthError> {
        auth::authenticate(
            &self.inner.config.tokens,
            &self.inner.config.agents,
            agent,
            token,
        )
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Process measurements (latencies, connection gauges).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// The streams of namespace 0 that `who` may consume, with their groups, from the last
    /// commit's catalog (no disk reads): the part of [`Broker::overview`] that most readers
    /// need. The one place a listing is filtered by permission: fronts show what this
    /// returns.
    pub fn streams(&self, who: &Principal) -> Vec<cortex_storage::StreamSummary> {
        let mut all = self.store().overview(0);
        all.retain(|s| who.may(Right::Consume, &s.name));
        all
    }

    /// Open client connections by protocol (`http_sse`: the live tails among the `http` ones).
    pub fn connections(&self) -> Vec<(&'static str, u64)> {
        let m = &self.inner.metrics;
        vec![
            ("resp", self.inner.stats.clients.load(Ordering::Relaxed)),
            ("quic", m.quic_connections.load(Ordering::Relaxed)),
            ("http", m.http_connections.load(Ordering::Relaxed)),
            ("http_sse", m.http_streams.load(Ordering::Relaxed)),
        ]
    }

    /// Tells waiters of [`Broker::wait_connections`] that a front closed a connection (call
    /// after its count went down).
    pub fn connection_closed(&self) {
        self.inner.connection_closed.notify_waiters();
    }

    /// The open connections once at most `at_most` of `protocol` remain (a drain before
    /// maintenance; tests), or `None` when `timeout` passes first. Woken by each close,
    /// never polling. `protocol` is one of [`Broker::connections`]' names.
    pub async fn wait_connections(
        &self,
        protocol: &str,
        at_most: u64,
        timeout: Duration,
    ) -> Option<Vec<(&'static str, u64)>> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let closed = self.inner.connection_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            let now = self.connections();
            if now.iter().any(|(p, n)| *p == protocol && *n <= at_most) {
                return Some(now);
            }
            tokio::time::timeout_at(until, closed).await.ok()?;
        }
    }

    /// Everything an operator looks at, from the last commit: the streams and dead-letter
    /// streams `who` may consume (with their groups), connections, storage and writer
    /// figures. `/metrics` (as the internal principal), the HTTP API and `cortex stat` all
    /// read this, so they agree.
    pub fn overview(&self, who: &Principal) -> metrics::Overview {
        let streams = self.streams(who);
        let s = &self.inner.stats;
        metrics::Overview {
            cluster: self.cluster().map(|n| n.status()),
            now_ms: self.now_ms(),
            uptime_s: self.now_ms().saturating_sub(self.inner.started_ms) / 1000,
            dlqs: metrics::Overview::dlqs_of(&streams)
                .into_iter()
                .filter(|(n, _)| who.may(Right::Consume, n))
                .collect(),
            streams,
            connections: self.connections(),
            storage_bytes: self.disk_bytes(),
            disk: self.inner.disk.state(),
            damaged: s.damaged.load(Ordering::Relaxed),
            clock_ahead_ms: self.inner.clock.ahead_ms(),
            writer_queue: (self.inner.submit.max_capacity() - self.inner.submit.capacity()) as u64,
            commits: s.commits.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
        }
    }

    /// Copies the store as of the last commit into `dir` (new or empty), with the TLS
    /// identity kept in the data dir, so the copy opens and serves as this broker does.
    /// Admin only. Writers go on meanwhile; the copy runs on the blocking pool.
    pub async fn backup(
        &self,
        who: &Principal,
        dir: std::path::PathBuf,
    ) -> Result<Result<cortex_storage::BackupReport, String>, BrokerError> {
        who.authorize_admin().map_err(BrokerError::NoPermission)?;
        let store = self.store();
        let tls = self.inner.config.data_dir.join("tls");
        tokio::task::spawn_blocking(move || {
            let report = store.backup_to(&dir).map_err(|e| e.to_string())?;
            if tls.is_dir() {
                let to = dir.join("tls");
                std::fs::create_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?;
                for f in std::fs::read_dir(&tls).map_err(|e| format!("{}: {e}", tls.display()))? {
                    let f = f.map_err(|e| e.to_string())?;
                    if f.file_type().is_ok_and(|t| t.is_file()) {
                        std::fs::copy(f.path(), to.join(f.file_name()))
                            .map_err(|e| format!("{}: {e}", f.path().display()))?;
                    }
                }
            }
            Ok(report)
        })
        .await
        .map_err(|e| BrokerError::Internal(format!("backup task failed: {e}")))
    }

    /// `/metrics`: the Prometheus text format, or OpenMetrics when `openmetrics`.
    pub fn render_metrics(&self, openmetrics: bool) -> String {
        let o = self.overview(&Principal::internal());
        metrics::render(
            &o,
            &self.inner.metrics,
            self.inner.config.metrics_streams_max,
            openmetrics,
        )
        .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }

    /// The broker's clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Unix ms as the broker sees them.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// When the broker started (Unix ms).
    pub fn started_ms(&self) -> u64 {
        self.inner.started_ms
    }

    /// Steps the system clock as the broker sees it, either way (servers started with
    /// `--test-clock` only), and lets the timer act on deadlines that passed. Returns the
    /// broker's time, which follows a step forward and absorbs a step back ([`Clock`]).
    pub fn step_clock(&self, ms: i64) -> Result<u64, String> {
        if !self.inner.config.test_clock {
            return Err("CX.CLOCK ADVANCE|STEP needs a server started with --test-clock".into());
        }
        self.inner.clock.step(ms);
        self.inner.timer_wake.notify_one();
        Ok(self.now_ms())
    }

    /// Makes the store's next `n` commits fail as an I/O error would (servers started with
    /// `--test-faults` only): the failed-commit path (refusal, reopen) on a healthy disk.
    pub fn inject_commit_failures(&self, n: u64) -> Result<(), String> {
        if !self.inner.config.test_faults {
            return Err("CX.FAULT needs a server started with --test-faults".into());
        }
        self.store().fail_next_commits(n);
        Ok(())
    }

    /// Redis radix-tree node sizes in effect (CONFIG stream-node-max-*).
    pub fn node_limits(&self) -> cortex_storage::nodes::NodeLimits {
        self.store().node_limits()
    }

    /// Number of streams in a namespace.
    pub fn stream_count(&self, ns: u16) -> usize {
        self.store().stream_count(ns)
    }

    /// Resolves when the store failed; the broker cannot go on and the process should exit
    /// (a restart recovers everything committed from the journal).
    pub async fn failure(&self) -> String {
        loop {
            let notified = self.inner.failed_notify.notified();
            if let Some(e) = self
                .inner
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

    /// True once shutdown began.
    pub fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// Applies `ops` in the next commit and returns each op's result once durable under the
    /// configured `--fsync` mode. The ops of one submission are applied one after the other
    /// with nothing in between, in one atomic batch.
    pub async fn submit(&self, who: &Principal, ops: Vec<Op>) -> Result<Replies, BrokerError> {
        self.submit_now(who, ops).await
    }

    /// [`Broker::submit`], queued before this returns: submissions made one after the other
    /// by one caller are applied in that order even when their replies are awaited later
    /// (or elsewhere: the future borrows nothing).
    pub fn submit_now(
        &self,
        who: &Principal,
        ops: Vec<Op>,
    ) -> impl std::future::Future<Output = Result<Replies, BrokerError>> + Send + 'static {
        let queued = if self.stopping() {
            Err(BrokerError::ShuttingDown)
        } else if let Err(e) = who.authorize_ops(&ops) {
            Err(BrokerError::NoPermission(e))
        } else if let Some(why) = self.inner.disk.refusal(&ops) {
            Err(BrokerError::DiskFull(why))
        } else {
            self.queue(ops)
        };
        let broker = self.clone();
        async move { broker.answer(queued?).await }
    }

    /// Submits the broker's own writes (alerts), which the disk watermark lets through: they
    /// are small, and an alert about the full disk must get out.
    pub(crate) async fn submit_system(&self, ops: Vec<Op>) -> Result<Replies, BrokerError> {
        if self.stopping() {
            return Err(BrokerError::ShuttingDown);
        }
        let queued = self.queue(ops)?;
        self.answer(queued).await
    }

    /// Puts a submission on the writer's queue.
    fn queue(&self, mut ops: Vec<Op>) -> Result<Queued, BrokerError> {
        self.prepare(&mut ops);
        let publish = ops.iter().any(|o| matches!(o, Op::Append { .. }));
        let started = std::time::Instant::now();
        let (tx, rx) = oneshot::channel();
        self.inner
            .submit
            .try_send(Submission {
                ops,
                reply: ReplyTo::Local(tx),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BrokerError::Busy,
                mpsc::error::TrySendError::Closed(_) => BrokerError::ShuttingDown,
            })?;
        Ok(Queued {
            rx,
            publish,
            started,
        })
    }

    /// A queued submission's replies, once committed.
    async fn answer(&self, q: Queued) -> Result<Replies, BrokerError> {
        let r = q.rx.await.unwrap_or(Err(BrokerError::ShuttingDown));
        if q.publish && r.is_ok() {
            self.inner
                .metrics
                .publish_durable
                .observe(q.started.elapsed());
        }
        r
    }

    /// A transaction (MULTI/EXEC): its ops, reads included ([`Op::Query`], which see the
    /// transaction's earlier writes), as one submission: one atomic batch that nothing else
    /// interleaves with, from any front or any of the broker's own tasks.
    pub async fn transaction(&self, who: &Principal, ops: Vec<Op>) -> Result<Replies, BrokerError> {
        self.submit(who, ops).await
    }

    /// Submits one op.
    pub async fn submit_one(
        &self,
        who: &Principal,
        op: Op,
    ) -> Result<cortex_storage::Result<Reply>, BrokerError> {
        let mut r = self.submit(who, vec![op]).await?;
        Ok(r.pop().unwrap_or(Ok(Reply::Ok)))
    }

    /// Broker-wide rules applied to ops before they are logged: a group created without a
    /// policy gets the configured default (so the op carries it, and a replica applying it
    /// needs no config of its own).
    fn prepare(&self, ops: &mut [Op]) {
        let Some(default) = &self.inner.config.default_policy else {
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

    /// Records the store's next deadline and wakes the timer when it moved.
    fn set_deadline(&self, next: Option<u64>) {
        let next = next.unwrap_or(u64::MAX);
        if self.inner.next_deadline_ms.swap(next, Ordering::AcqRel) != next {
            self.inner.timer_wake.notify_one();
        }
    }

    /// Begins shutdown: new submissions are refused; the writer finishes what is queued,
    /// closes the store cleanly and exits.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        // An empty submission wakes the writer so it notices.
        let (tx, _rx) = oneshot::channel();
        let _ = self.inner.submit.try_send(Submission {
            ops: Vec::new(),
            reply: ReplyTo::Local(tx),
        });
        self.inner.timer_wake.notify_one();
    }

    /// Takes the first waiting submission and whatever else waits, up to `batch_ops_max`
    /// ops (at least one submission, never split).
    fn drain(&self, first: Submission, rx: &mut mpsc::Receiver<Submission>) -> Vec<Submission> {
        let max = self.inner.config.batch_ops_max;
        let mut n = first.ops.len();
        let mut subs = vec![first];
        while n < max {
            match rx.try_recv() {
                Ok(s) => {
                    n += s.ops.len();
                    subs.push(s);
                }
                Err(_) => break,
            }
        }
        subs
    }

    /// What every commit does for the broker, on any node: metrics, counters, wake-ups,
    /// alerts, the timer's next deadline.
    fn after_commit(&self, out: &cortex_storage::BatchOutcome, ops: usize, took: Duration) {
        self.after_commit_events(
            &out.events,
            out.changes,
            out.next_deadline_ms,
            ops,
            took,
            Some(u64::MAX),
        );
    }

    /// Another node's leader's read for a mailbox here, applied: handed to the mailbox if
    /// it is still here (else the entries wait in the pending list, for the consumer's
    /// next subscription or another consumer after the ack wait).
    fn deliver_remote(&self, read: &RemoteRead, r: cortex_storage::Result<Reply>) {
        let mailbox = self
            .inner
            .notifier
            .mailboxes(&read.stream)
            .into_iter()
            .find(|m| m.group == read.group && m.consumer == read.consumer);
        if let Some(m) = mailbox {
            m.deliver(read.count, delivered(r), true);
        }
    }

    /// [`Broker::after_commit`] by parts. `covered`: see [`mailbox::Mailbox::wake`].
    fn after_commit_events(
        &self,
        events: &[Event],
        changes: u64,
        next_deadline_ms: Option<u64>,
        ops: usize,
        took: Duration,
        covered: Option<u64>,
    ) {
        self.inner.metrics.on_commit(events, took);
        self.inner.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.inner
            .stats
            .ops
            .fetch_add(ops as u64, Ordering::Relaxed);
        self.inner.stats.dirty.fetch_add(changes, Ordering::Relaxed);
        self.wake(events, covered);
        self.set_deadline(next_deadline_ms);
    }

    /// Records a store failure: the process must exit (a restart recovers what was
    /// committed).
    fn fail_store(&self, e: &str) {
        tracing::error!("storage failure, the broker stops: {e}");
        self.inner.stopping.store(true, Ordering::Relaxed);
        *self.inner.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        self.inner.failed_notify.notify_one();
    }

    fn writer_loop(self, mut rx: mpsc::Receiver<Submission>) {
        loop {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let subs = self.drain(first, &mut rx);
            if self.inner.disk.failed().is_some() && !self.reopen_store() {
                let why = self.inner.disk.failed().unwrap_or_default();
                for s in subs {
                    if s.ops.is_empty() {
                        if let ReplyTo::Local(tx) = s.reply {
                            let _ = tx.send(Ok(Vec::new()));
                        }
                    } else {
                        s.reply.fail(BrokerError::Storage(format!(
                            "the store failed ({why}); it is reopened once the data disk has room, and writes are refused until then"
                        )));
                    }
                }
                if self.stopping() && rx.is_empty() {
                    break;
                }
                continue;
            }
            let n: usize = subs.iter().map(|s| s.ops.len()).sum();
            let mut ops = Vec::with_capacity(n);
            let mut sizes = Vec::with_capacity(subs.len());
            let mut replies_to = Vec::with_capacity(subs.len());
            for s in subs {
                sizes.push(s.ops.len());
                ops.extend(s.ops);
                replies_to.push(s.reply);
            }
            // Waiting push consumers get this batch's new entries in its own commit.
            let mail = mailbox::plan(
                &mut ops,
                |k| self.inner.notifier.mailboxes(k),
                |_| Vec::new(),
                &[],
                &self.inner.remote_credit,
            )
            .local;
            if !ops.is_empty() {
                let now = self.now_ms();
                let started = std::time::Instant::now();
                let all = ops.len();
                match self.store().apply(ops, now) {
                    Ok(mut out) => {
                        let mut replies = std::mem::take(&mut out.replies).into_iter();
                        let mine: Vec<Replies> = sizes
                            .iter()
                            .map(|&size| replies.by_ref().take(size).collect())
                            .collect();
                        for (p, r) in mail.into_iter().zip(replies) {
                            p.mailbox.deliver(p.asked, delivered(r), false);
                        }
                        self.after_commit(&out, all, started.elapsed());
                        for (mine, to) in mine.into_iter().zip(replies_to) {
                            if let ReplyTo::Local(tx) = to {
                                let _ = tx.send(Ok(mine));
                            }
                        }
                    }
                    Err(e @ cortex_storage::Error::Unreadable(_)) => {
                        // A read met damage: nothing was written and the store is fine, so
                        // only this batch is refused (no reopen).
                        tracing::error!("a batch was refused: {e}");
                        for p in mail {
                            p.mailbox.deliver(p.asked, Err(None), false);
                        }
                        for to in replies_to {
                            to.fail(BrokerError::Storage(e.to_string()));
                        }
                    }
                    Err(e) => {
                        for p in mail {
                            p.mailbox.deliver(p.asked, Err(None), false);
                        }
                        // Nothing of the batch is acknowledged. fjall refuses every write
                        // after a failed persist (a full disk, an I/O error): the store is
                        // reopened, from what was committed, once the disk has room again
                        // (`reopen_store`); reads go on meanwhile.
                        for to in replies_to {
                            to.fail(BrokerError::Storage(e.to_string()));
                        }
                        tracing::error!(
                            "a commit failed, writes are refused until the store is reopened: {e}"
                        );
                        self.inner.disk.set_failed(Some(e.to_string()));
                    }
                }
            } else {
                for to in replies_to {
                    if let ReplyTo::Local(tx) = to {
                        let _ = tx.send(Ok(Vec::new()));
                    }
                }
            }
            if self.stopping() && rx.is_empty() {
                break;
            }
        }
        self.writer_stopped(rx);
    }

    /// Reopens a store whose commit failed, when the data disk has room again: drops it
    /// (fjall's lock goes with the last handle) and opens the same directory, which replays
    /// the journal: everything committed is back, the failed batch is not. Readers wait on
    /// the lock for the moment it takes. Returns true when the store works again. If it
    /// cannot be opened again, the broker stops (as before this existed): a restart replays
    /// the same journal.
    fn reopen_store(&self) -> bool {
        let disk = &self.inner.disk;
        if !disk.room_to_recover() {
            return false;
        }
        let mut slot = self.inner.store.write().unwrap_or_else(|p| p.into_inner());
        let Some(old) = slot.as_ref() else {
            return false;
        };
        // Readers hold the store for the length of one read; wait for them, bounded.
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(old) > 1 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        if Arc::strong_count(old) > 1 {
            return false;
        }
        let path = self.store_dir();
        let cfg = old.config().clone();
        *slot = None;
        let mut last = String::new();
        for attempt in 0..20 {
            if attempt > 0 {
                // The dropped database's worker threads let go of its lock file.
                std::thread::sleep(Duration::from_millis(50));
            }
            match Store::open(&path, cfg.clone()) {
                Ok(store) => {
                    let deadline = store.next_deadline_ms(self.now_ms());
                    *slot = Some(Arc::new(store));
                    drop(slot);
                    disk.set_failed(None);
                    disk.recoveries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "the store was reopened after a failed commit; writes are accepted again"
                    );
                    self.inner.notifier.notify_all();
                    self.set_deadline(deadline);
                    return true;
                }
                Err(e) => last = e.to_string(),
            }
        }
        // Keep the lock (readers must never see an empty slot) until the process exits.
        self.fail_store(&format!(
            "cannot reopen the store after a failed commit: {last}"
        ));
        let _held = slot;
        loop {
            std::thread::park();
        }
    }

    /// Samples the data disk's free space and writes an alert at each change of state:
    /// under the watermark (`disk_low`), above it again (`disk_ok`), a failed store reopened
    /// (`store_reopened`). While a failed store waits, it wakes the writer to reopen it.
    async fn disk_loop(self) {
        let mut every = tokio::time::interval(disk::SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut low, mut failed) = (false, false);
        while !self.stopping() {
            every.tick().await;
            self.inner.disk.sample();
            let d = self.inner.disk.state();
            let mut alerts = Vec::new();
            if d.failed.is_some() != failed {
                failed = d.failed.is_some();
                if !failed {
                    alerts.push(alerts::disk_alert(
                        "store_reopened",
                        "the store was reopened after a failed commit: writes are accepted again",
                    ));
                }
            }
            // A failed store cannot take an alert: the watermark's change is noticed (and
            // written) once the store is back.
            if !failed && d.low != low {
                low = d.low;
                alerts.push(if low {
                    alerts::disk_alert(
                        "disk_low",
                        &format!(
                            "the data disk has {} bytes free, under the minimum of {}: publishes are refused",
                            d.free, d.min_free
                        ),
                    )
                } else {
                    alerts::disk_alert(
                        "disk_ok",
                        &format!(
                            "the data disk has {} bytes free again: publishes are accepted",
                            d.free
                        ),
                    )
                });
            }
            if !alerts.is_empty() && self.is_leader() {
                if let Err(e) = self.submit_system(alerts).await {
                    tracing::warn!("could not write the disk alert: {e}");
                }
            }
            if failed {
                // An empty submission: the writer tries to reopen the store.
                let (tx, _rx) = oneshot::channel();
                let _ = self.inner.submit.try_send(Submission {
                    ops: Vec::new(),
                    reply: ReplyTo::Local(tx),
                });
            }
        }
    }

    /// Checks every record and index of the store after start, in the background (the
    /// same check as `cortex verify`): damage on the disk is logged with its stream and IDs,
    /// counted in `cortex_store_damaged` and written to the alert stream. Damaged entries
    /// are never served: a read that meets one fails with a storage error naming it.
    async fn scrub(self) {
        let store = self.store();
        let started = std::time::Instant::now();
        let report = match tokio::task::spawn_blocking(move || store.scrub()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!("the store check after start failed: {e}");
                return;
            }
            Err(e) => {
                tracing::error!("the store check after start did not finish: {e}");
                return;
            }
        };
        let n = report.damage.len() as u64;
        self.inner.stats.damaged.store(n, Ordering::Relaxed);
        for d in &report.damage {
            let ids: Vec<String> = d.ids.iter().map(ToString::to_string).collect();
            tracing::error!(
                stream = %String::from_utf8_lossy(&d.stream),
                ids = %ids.join(","),
                "store damage: {}",
                d.what
            );
        }
        tracing::info!(
            "store checked in {:?}: {} streams, {} entries, {} problems",
            started.elapsed(),
            report.streams,
            report.entries,
            n
        );
        if n > 0 && self.is_leader() {
            let first = &report.damage[0];
            let op = alerts::damage_alert(&format!(
                "the store check after start found {n} problems; first: stream '{}': {} (run `cortex verify` on a copy for the full list)",
                String::from_utf8_lossy(&first.stream),
                first.what
            ));
            if let Err(e) = self.submit_system(vec![op]).await {
                tracing::warn!("could not write the damage alert: {e}");
            }
        }
    }

    /// Where the single node's store lives.
    fn store_dir(&self) -> std::path::PathBuf {
        self.inner.config.data_dir.clone()
    }

    fn writer_stopped(&self, mut rx: mpsc::Receiver<Submission>) {
        rx.close();
        while let Ok(s) = rx.try_recv() {
            s.reply.fail(BrokerError::ShuttingDown);
        }
        // Everybody waiting must see the shutdown.
        self.inner.notifier.notify_all();
        tracing::info!("writer stopped");
    }

    /// Opens the Raft log, binds the cluster port, starts Raft and serves peers; a pristine
    /// node proposes the configured membership (every node may: the same list is safe).
    async fn start_cluster(
        &self,
        cc: cluster::ClusterConfig,
        dirs: cluster::sm::Dirs,
    ) -> Result<Arc<cluster::Node>, String> {
        let progress = cluster::sm::Progress::of(&self.store())?;
        let log = cluster::log::LogStore::open(&dirs.log())?;
        let net = Arc::new(cluster::net::Net::bind(
            cc.node_id, cc.listen, &cc.secret, &cc.nodes,
        )?);
        let sm = cluster::sm::StateMachine::new(self.clone(), dirs.clone(), progress.clone());
        let raft = cluster::Raft::new(
            cc.node_id,
            cluster::raft_config(&cc)?,
            cluster::net::Factory { net: net.clone() },
            log,
            sm,
        )
        .await
        .map_err(|e| format!("cannot start Raft: {e}"))?;
        let local = net.local_addr()?;
        let node = Arc::new(cluster::Node::new(
            raft.clone(),
            net.clone(),
            cc.clone(),
            progress.now_ms,
        ));
        let _ = self.inner.cluster.set(node.clone());
        // A (re)started node first listens for a leader before it campaigns: a node that
        // was down would otherwise start elections with a stale log and a higher term,
        // deposing a healthy leader or delaying the next election.
        raft.runtime_config().elect(false);
        {
            let raft = raft.clone();
            let quiet = Duration::from_millis(3 * cc.election_max_ms);
            tokio::spawn(async move {
                let mut m = raft.metrics();
                let _ =
                    tokio::time::timeout(quiet, m.wait_for(|m| m.current_leader.is_some())).await;
                raft.runtime_config().elect(true);
            });
        }
        tokio::spawn(net.clone().serve(raft.clone(), self.clone(), dirs));
        tokio::spawn(self.clone().announce(node.clone()));
        println!("cortex: cluster listening on {local}");
        if !cc.join {
            cluster::initialize(&raft, &cc).await?;
        }
        Ok(node)
    }

    /// The cluster writer: drains submissions like the single node's writer, and proposes
    /// each drain as one log entry (on the leader) or forwards it (on a follower).
    /// Proposals are pipelined; local submissions are answered when their entry is applied
    /// here (`apply_logged`).
    async fn cluster_writer(self, mut rx: mpsc::Receiver<Submission>, node: Arc<cluster::Node>) {
        loop {
            let Some(first) = rx.recv().await else {
                break;
            };
            let subs = self.drain(first, &mut rx);
            let mut ops = Vec::new();
            let mut origins = Vec::new();
            let mut done = Vec::new();
            for s in subs {
                match s.reply {
                    ReplyTo::Local(tx) if s.ops.is_empty() => {
                        let _ = tx.send(Ok(Vec::new()));
                    }
                    ReplyTo::Local(tx) => {
                        origins.push(node.register(tx, s.ops.len()));
                        ops.extend(s.ops);
                    }
                    ReplyTo::Forwarded {
                        origins: o,
                        done: d,
                    } => {
                        origins.extend(o);
                        ops.extend(s.ops);
                        done.push(d);
                    }
                }
            }
            if !ops.is_empty() {
                if node.is_leader() {
                    self.plan(&node, &mut ops, &mut origins);
                }
                node.propose(ops, origins, done, self.now_ms()).await;
            }
            if self.stopping() && rx.is_empty() {
                break;
            }
        }
        self.writer_stopped(rx);
    }

    /// The leader's writer: adds reads for the waiting mailboxes of this node and of the
    /// other nodes (as announced) to a batch it is about to propose, under origins of their
    /// own that go last in the entry, one per node (so when a node applies the entry it
    /// knows its mailboxes were considered for every append in it). If the proposal fails,
    /// this node's mailboxes get their credit back and read by themselves; another node's
    /// credit comes back with its next announcement.
    fn plan(
        &self,
        node: &Arc<cluster::Node>,
        ops: &mut Vec<Op>,
        origins: &mut Vec<cluster::Origin>,
    ) {
        let plan = mailbox::plan(
            ops,
            |k| self.inner.notifier.mailboxes(k),
            |k| node.presence.mailboxes(k.ns, &k.name),
            &node.presence.mailbox_nodes(),
            &self.inner.remote_credit,
        );
        if !plan.appends {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let origin = node.register_plan(tx, plan.local.len());
        origins.push(origin);
        for (peer, run, seq, n) in plan.remote {
            origins.push(cluster::Origin::plan_for(peer, run, seq, n as u32));
        }
        if plan.local.is_empty() {
            // Nothing reserved here: the origin only says the batch was planned.
            return;
        }
        self.plans().insert(origin.seq, plan.local);
        let me = self.clone();
        tokio::spawn(async move {
            // Applied: the apply took the plan. Failed or dropped: give the credit back.
            if !matches!(rx.await, Ok(Ok(_))) {
                if let Some(planned) = me.plans().remove(&origin.seq) {
                    for p in planned {
                        p.mailbox.deliver(p.asked, Err(None), false);
                    }
                }
            }
        });
    }

    fn plans(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<mailbox::Planned>>> {
        self.inner.plans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A follower's batch, on the leader: proposed with the follower's origins; `Ok` when
    /// committed.
    pub(crate) async fn submit_forwarded(
        &self,
        ops: Vec<Op>,
        origins: Vec<cluster::Origin>,
    ) -> Result<(), String> {
        if self.stopping() {
            return Err(BrokerError::ShuttingDown.to_string());
        }
        let (done, rx) = oneshot::channel();
        self.inner
            .submit
            .try_send(Submission {
                ops,
                reply: ReplyTo::Forwarded { origins, done },
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BrokerError::Busy.to_string(),
                mpsc::error::TrySendError::Closed(_) => BrokerError::ShuttingDown.to_string(),
            })?;
        rx.await
            .unwrap_or_else(|_| Err(BrokerError::ShuttingDown.to_string()))
    }

    /// Applies committed log entries to the store (the state machine, on every node), each
    /// with its recorded progress in the same commit; answers this node's submissions.
    pub(crate) fn apply_logged(&self, work: Vec<cluster::Applying>) -> Result<(), String> {
        let store = self.store();
        let node = self.cluster().cloned();
        for w in work {
            let n = w.ops.len();
            let reads = node
                .as_ref()
                .map(|n| remote_reads(n, &w))
                .unwrap_or_default();
            let started = std::time::Instant::now();
            let out = match store.apply_logged(w.ops, w.now_ms, &w.progress) {
                Ok(out) => out,
                Err(e) => {
                    self.fail_store(&e.to_string());
                    return Err(e.to_string());
                }
            };
            if let Some(node) = &node {
                node.applied_at(w.now_ms);
            }
            let mut replies = out.replies.into_iter();
            let mut mine = Vec::with_capacity(w.origins.len());
            // The entry's mailbox reads are its last origins; the ones for this node say
            // which appends its mailboxes were considered for.
            let plans_from = w
                .origins
                .iter()
                .rposition(|o| !o.is_plan())
                .map_or(0, |i| i + 1);
            let mut covered = None;
            for (i, o) in w.origins.iter().enumerate() {
                let r: Replies = replies.by_ref().take(o.ops as usize).collect();
                if !node.as_ref().is_some_and(|n| n.is_mine(o)) {
                    mine.push((o, r));
                    continue;
                }
                if let Some(seq) = o.planned_from() {
                    // Another node's leader planned these reads for mailboxes here.
                    if i >= plans_from {
                        covered = Some(seq);
                    }
                    for (read, r) in reads.get(&i).into_iter().flatten().zip(r) {
                        self.deliver_remote(read, r);
                    }
                    continue;
                }
                match self.plans().remove(&o.seq) {
                    Some(planned) => {
                        if i >= plans_from {
                            covered = Some(u64::MAX);
                        }
                        for (p, r) in planned.into_iter().zip(r) {
                            p.mailbox.deliver(p.asked, delivered(r), false);
                        }
                        mine.push((o, Vec::new()));
                    }
                    None => {
                        // A plan with no reads here (every mailbox without credit was
                        // marked `missed` when it was made) still covers the batch.
                        if o.is_plan() && o.ops == 0 && i >= plans_from {
                            covered = Some(u64::MAX);
                        }
                        mine.push((o, r));
                    }
                }
            }
            if n > 0 {
                self.after_commit_events(
                    &out.events,
                    out.changes,
                    out.next_deadline_ms,
                    n,
                    started.elapsed(),
                    covered,
                );
            }
            if let Some(node) = &node {
                for (o, r) in mine {
                    node.deliver(o, r);
                }
            }
        }
        Ok(())
    }

    /// Wakes the readers and mailboxes a commit concerns. `covered`: a leader planned the
    /// batch's mailbox reads (see [`mailbox::Mailbox::wake`]).
    fn wake(&self, events: &[Event], covered: Option<u64>) {
        let mut last: Option<&StreamKey> = None;
        for e in events {
            match e {
                // Runs of appends to one stream wake its readers once.
                Event::Appended { stream, .. } if last != Some(stream) => {
                    self.inner.notifier.notify(stream, covered);
                    last = Some(stream);
                }
                Event::Renamed { from, to } => {
                    self.inner.notifier.notify(from, None);
                    self.inner.notifier.notify(to, None);
                    last = None;
                }
                Event::RetryReady { stream, .. }
                | Event::StreamDeleted { stream }
                | Event::GroupDestroyed { stream, .. } => {
                    self.inner.notifier.notify(stream, None);
                    last = None;
                }
                Event::DeadLettered { .. } | Event::TrimmedUndelivered { .. }
                    if self.inner.alerts.try_send(e.clone()).is_err() =>
                {
                    tracing::warn!("alert queue full, an alert is summarised less precisely");
                }
                _ => {}
            }
        }
    }

    /// Submits [`Op::Tick`] when the store's next deadline passes; sleeps until that
    /// deadline (or until a commit or a clock change moves it), at most [`TIMER_RECHECK`],
    /// so a step of the system clock forward takes effect within it.
    async fn timer_loop(self) {
        let me = Principal::internal();
        while !self.stopping() {
            if let Some(node) = self.cluster().cloned() {
                if !node.is_leader() {
                    // Time-driven work is the leader's, as ops in the log.
                    tokio::select! {
                        _ = node.until_leader() => {}
                        _ = self.inner.timer_wake.notified() => {}
                    }
                    continue;
                }
            }
            let wake = self.inner.timer_wake.notified();
            let now = self.now_ms();
            let due = self.inner.next_deadline_ms.load(Ordering::Acquire);
            if due <= now {
                match self.submit_one(&me, Op::Tick).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!("tick failed: {e}"),
                    Err(BrokerError::Busy) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(_) => break,
                }
                continue;
            }
            if due == u64::MAX {
                wake.await;
            } else {
                let wait = Duration::from_millis(due - now).min(TIMER_RECHECK);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake => {}
                }
            }
        }
    }
}

/// A mailbox read's result as [`mailbox::Mailbox::deliver`] takes it.
fn delivered(
    r: cortex_storage::Result<Reply>,
) -> Result<Vec<cortex_storage::Delivery>, Option<cortex_storage::Error>> {
    match r {
        Ok(Reply::Delivered(v)) => Ok(v),
        Ok(_) => Err(None),
        Err(e) => Err(Some(e)),
    }
}

/// A read another node's leader planned for a mailbox on this node, as its op said.
struct RemoteRead {
    stream: StreamKey,
    group: Vec<u8>,
    consumer: Vec<u8>,
    count: u32,
}

/// The reads of an entry planned for this node's mailboxes by another node's leader, by
/// the index of their origin (taken before the ops go to the store).
fn remote_reads(node: &cluster::Node, w: &cluster::Applying) -> HashMap<usize, Vec<RemoteRead>> {
    let mut out = HashMap::new();
    let mut at = 0usize;
    for (i, o) in w.origins.iter().enumerate() {
        let n = o.ops as usize;
        if node.is_mine(o) && o.planned_from().is_some() {
            let reads = w
                .ops
                .get(at..at + n)
                .unwrap_or_default()
                .iter()
                .filter_map(|op| match op {
                    Op::Deliver {
                        stream,
                        group,
                        consumer,
                        count,
                        ..
                    } => Some(RemoteRead {
                        stream: stream.clone(),
                        group: group.clone(),
                        consumer: consumer.clone(),
                        count: (*count).min(u32::MAX as usize) as u32,
                    }),
                    _ => None,
                })
                .collect();
            out.insert(i, reads);
        }
        at += n;
    }
    out
}
