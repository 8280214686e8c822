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

mod auth;
pub mod metrics;
pub mod presence;
pub mod publish;
pub mod push;
mod read;
pub mod reqrep;
mod retention;
mod slice;
pub mod task;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cortex_storage::{Op, Reply, Store};
use tokio::sync::Notify;

use crate::cluster;
/// The cluster types fronts show or pass on (fronts import the broker, never `cluster`).
pub use crate::cluster::{Membership, Status as ClusterStatus, Until};
use crate::config::Config;
pub use crate::core::{disk, mailbox, BrokerError, Clock, Core, Notifier, Replies, Stats, Writer};
pub use crate::perm;
pub use auth::{AuthError, Principal};
pub use perm::{Permissions, Refusal, Right};
pub use read::{cap_read, Blocking, GroupRead, INLINE_READ_MAX};

/// Handle to the broker; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    /// The writer, apply, the timer, the store.
    core: Core,
    /// This node's cluster side (`[cluster]` configured).
    cluster: OnceLock<Arc<cluster::Node>>,
    /// Woken whenever a client connection closes ([`Broker::wait_connections`]).
    connection_closed: Notify,
    /// Live requests and inbox subscribers.
    requests: reqrep::Requests,
    /// Woken when this node's mailboxes should be announced again.
    mail_announce: Arc<Notify>,
    /// The agents connected here (`presence.rs`).
    presence: presence::Presence,
}

/// What `CX.FAULT` makes fail ([`Broker::inject_failures`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The store's commits.
    Commit,
    /// The journal's syncs made beside the next commit.
    Sync,
}

impl Broker {
    /// Opens the store and starts the core (writer, timer, disk loop), the cluster side
    /// when `[cluster]` is configured, and the alert and retention tasks (on the current
    /// tokio runtime). Returns the broker and a handle that finishes when the writer has
    /// stopped.
    pub async fn start(config: Config) -> Result<(Broker, Writer), String> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
        let (store_dir, store_cfg) = match &config.cluster {
            Some(_) => (cluster::prepare(&config)?, config.store_for_cluster()),
            None => (config.data_dir.clone(), config.store.clone()),
        };
        let (core, queues) = Core::open(config, store_dir, store_cfg)?;
        let broker = Broker {
            inner: Arc::new(Inner {
                core: core.clone(),
                cluster: OnceLock::new(),
                connection_closed: Notify::new(),
                requests: reqrep::Requests::default(),
                mail_announce: Arc::new(Notify::new()),
                presence: presence::Presence::default(),
            }),
        };
        // The one place the sequencer is picked.
        let sequencer: Arc<dyn crate::core::Sequencer> = match core.config.cluster.clone() {
            Some(cc) => {
                let node = cluster::start(core.clone(), cc).await?;
                let _ = broker.inner.cluster.set(node.clone());
                tokio::spawn(broker.clone().announce(node.clone()));
                Arc::new(cluster::Replicated(node))
            }
            None => Arc::new(crate::core::Local),
        };
        let writer = core.run(queues.submissions, sequencer)?;
        tokio::spawn(crate::core::alerts::run(core.clone(), queues.alerts));
        tokio::spawn(broker.clone().watch_heartbeats());
        if !core.config.retention.is_empty() {
            tokio::spawn(retention::run(broker.clone()));
        }
        Ok((broker, writer))
    }

    /// The core under the broker.
    pub fn core(&self) -> &Core {
        &self.inner.core
    }

    /// The store (the broker's own tasks; fronts read through [`Broker::query`]).
    pub(crate) fn store(&self) -> Arc<Store> {
        self.inner.core.store()
    }

    /// The data disk's free space and the store's failure state.
    pub fn disk(&self) -> disk::DiskState {
        self.inner.core.disk.state()
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
        self.inner.core.leads()
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
            .core
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
        !self.inner.core.config.tokens.is_empty()
    }

    /// Checks an agent's token (constant time); `agent` `None` or `default` matches any
    /// agent with that token.
    pub fn authenticate(&self, agent: Option<&[u8]>, token: &[u8]) -> Result<Principal, AuthError> {
        auth::authenticate(
            &self.inner.core.config.tokens,
            &self.inner.core.config.agents,
            agent,
            token,
        )
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.inner.core.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.core.stats
    }

    /// Process measurements (latencies, connection gauges).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.core.metrics
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
        let m = &self.inner.core.metrics;
        vec![
            (
                "resp",
                self.inner.core.stats.clients.load(Ordering::Relaxed),
            ),
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
        let s = &self.inner.core.stats;
        metrics::Overview {
            cluster: self.cluster().map(|n| n.status()),
            now_ms: self.now_ms(),
            uptime_s: self.now_ms().saturating_sub(self.inner.core.started_ms) / 1000,
            dlqs: metrics::Overview::dlqs_of(&streams)
                .into_iter()
                .filter(|(n, _)| who.may(Right::Consume, n))
                .collect(),
            streams,
            connections: self.connections(),
            storage_bytes: self.disk_bytes(),
            journal_ahead_bytes: self.store().journal_written_ahead(),
            pending_index: self.store().pending_index(),
            disk: self.inner.core.disk.state(),
            damaged: s.damaged.load(Ordering::Relaxed),
            clock_ahead_ms: self.inner.core.clock.ahead_ms(),
            writer_queue: self.inner.core.queued(),
            commits: s.commits.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
        }
    }

    /// Copies the store as of the last commit into `dir` (new or empty), with the TLS
    /// identity kept in the data dir, so the copy opens and serves as this broker does.
    /// Admin only. Writers go on meanwhile; the copy runs on the blocking pool; answered
    /// once every commit it holds is durable here.
    pub async fn backup(
        &self,
        who: &Principal,
        dir: std::path::PathBuf,
    ) -> Result<Result<cortex_storage::BackupReport, String>, BrokerError> {
        who.authorize_admin().map_err(BrokerError::NoPermission)?;
        let store = self.store();
        let tls = self.inner.core.config.data_dir.join("tls");
        let ticket = self.inner.core.read_ticket();
        let copied = tokio::task::spawn_blocking(move || {
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
        .map_err(|e| BrokerError::Internal(format!("backup task failed: {e}")))?;
        // The copy may hold a commit still syncing: answered once it is durable here.
        self.inner.core.visible(ticket).await?;
        Ok(copied)
    }

    /// `/metrics`: the Prometheus text format, or OpenMetrics when `openmetrics`.
    pub fn render_metrics(&self, openmetrics: bool) -> String {
        let o = self.overview(&Principal::internal());
        metrics::render(
            &o,
            &self.inner.core.metrics,
            self.inner.core.config.metrics_streams_max,
            openmetrics,
        )
        .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }

    /// The broker's clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.core.clock
    }

    /// Unix ms as the broker sees them.
    pub fn now_ms(&self) -> u64 {
        self.inner.core.clock.now_ms()
    }

    /// When the broker started (Unix ms).
    pub fn started_ms(&self) -> u64 {
        self.inner.core.started_ms
    }

    /// Steps the system clock as the broker sees it, either way (servers started with
    /// `--test-clock` only), and lets the timer act on deadlines that passed. Returns the
    /// broker's time, which follows a step forward and absorbs a step back ([`Clock`]).
    pub fn step_clock(&self, ms: i64) -> Result<u64, String> {
        if !self.inner.core.config.test_clock {
            return Err("CX.CLOCK ADVANCE|STEP needs a server started with --test-clock".into());
        }
        self.inner.core.step_clock(ms);
        Ok(self.now_ms())
    }

    /// Makes the store's next `n` commits, or the journal's next `n` syncs, fail as an I/O
    /// error would (servers started with `--test-faults` only): the failure paths
    /// (refusal, reopen) on a healthy disk.
    pub fn inject_failures(&self, fault: Fault, n: u64) -> Result<(), String> {
        if !self.inner.core.config.test_faults {
            return Err("CX.FAULT needs a server started with --test-faults".into());
        }
        match fault {
            Fault::Commit => self.store().fail_next_commits(n),
            Fault::Sync => self.store().fail_next_syncs(n),
        }
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
        self.inner.core.failure().await
    }

    /// True once shutdown began.
    pub fn stopping(&self) -> bool {
        self.inner.core.stopping()
    }

    /// Applies `ops` in the next commit and returns each op's result once durable under the
    /// configured `--fsync` mode. The ops of one submission are applied one after the other
    /// with nothing in between, in one atomic batch; except that an ack or delete of more
    /// than [`slice::SLICE_IDS`] IDs is applied in slices, each queued when the one before
    /// it is durable, so other submissions interleave with them (`slice.rs`); its replies
    /// come back as one.
    pub async fn submit(&self, who: &Principal, ops: Vec<Op>) -> Result<Replies, BrokerError> {
        if !ops.iter().any(slice::big) {
            self.admit(who, &ops).map_err(BrokerError::NoPermission)?;
            // Awaited here: a lone caller's small write may commit on this thread.
            return self.inner.core.submit(ops).await;
        }
        let max_ids = self.store().config().limits.ids_per_op_max;
        let mut sliced = match slice::plan(ops, max_ids) {
            Err(ops) => return self.submit_now(who, ops).await,
            Ok(s) => s,
        };
        let mut replies = Vec::with_capacity(sliced.runs.len());
        for run in std::mem::take(&mut sliced.runs) {
            replies.push(self.submit_now(who, run).await?);
        }
        Ok(sliced.merge(replies))
    }

    /// [`Broker::submit`], queued before this returns (and never sliced): submissions made
    /// one after the other by one caller are applied in that order even when their replies
    /// are awaited later (or elsewhere: the future borrows nothing).
    pub fn submit_now(
        &self,
        who: &Principal,
        ops: Vec<Op>,
    ) -> impl std::future::Future<Output = Result<Replies, BrokerError>> + Send + 'static {
        let queued = self
            .admit(who, &ops)
            .map(|()| self.inner.core.submit_now(ops));
        async move { queued.map_err(BrokerError::NoPermission)?.await }
    }

    /// Checks `who` may run `ops`, and notes an agent's heartbeat among them.
    fn admit(&self, who: &Principal, ops: &[Op]) -> Result<(), crate::perm::Refusal> {
        who.authorize_ops(ops)?;
        if let Some(agent) = who.agent() {
            let beats = |op: &Op| matches!(op, Op::Append { meta, .. } if meta.lane == cortex_storage::Lane::Heartbeat);
            if ops.iter().any(beats) {
                self.heartbeat(agent);
            }
        }
        Ok(())
    }

    /// A transaction (MULTI/EXEC): its ops, reads included ([`Op::Query`], which see the
    /// transaction's earlier writes), as one submission: one atomic batch that nothing else
    /// interleaves with, from any front or any of the broker's own tasks (never sliced).
    pub async fn transaction(&self, who: &Principal, ops: Vec<Op>) -> Result<Replies, BrokerError> {
        self.submit_now(who, ops).await
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

    /// Begins shutdown: new submissions are refused; the writer finishes what is queued,
    /// closes the store cleanly and exits.
    pub fn shutdown(&self) {
        self.inner.core.shutdown();
    }
}

/// Locks `m`, taking it over from a holder that panicked (the state stays usable).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
