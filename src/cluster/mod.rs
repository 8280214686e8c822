//! Replication: three (or five) `cortex` nodes as one cluster, on openraft (pinned exactly,
//! used nowhere outside this module tree).
//!
//! - A Raft log entry is one writer batch: the leader's stamp and the ops of every
//!   submission the writer drained ([`LogBatch`]), with who submitted each run of ops
//!   ([`Origin`]). Every node applies every entry to its own store ([`sm`]); storage is
//!   deterministic, so every node computes the same replies, and a node answers its own
//!   clients' submissions when *it* applies the entry: a follower's client sees its write
//!   applied locally before the reply (read-your-writes on the node it talks to).
//! - A write is answered only after a majority has the entry fsynced in its log
//!   ([`log`]) and this node applied it.
//! - A follower forwards its writer's batch to the leader ([`net`]), which proposes it with
//!   the follower's origins.
//! - Time-driven work (the timer's ticks, retention, alerts) runs on the leader only, as
//!   ops in the log; followers never read their clock for state.

pub mod log;
pub mod net;
pub mod presence;
pub mod sm;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cortex_storage::Op;
use openraft::{BasicNode, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use crate::config::ClusterConfig;
use crate::config::Config;
pub use crate::core::seq::random_u64;
pub use crate::core::{Applying, Origin};
use crate::core::{BrokerError, Core, ReplyTo, Submission};

openraft::declare_raft_types!(
    /// The cluster's Raft types.
    pub TypeConfig:
        D = LogBatch,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = sm::SnapshotDir,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// One log entry's payload: a writer batch.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogBatch {
    /// `cortex_storage::encode_batch`: the leader's `now_ms` and the ops, in an envelope
    /// with its own CRC. (Bytes, not a sequence of `u8`: encoded and decoded in one copy.)
    #[serde(with = "serde_bytes")]
    pub ops: Vec<u8>,
    /// Who submitted the ops, run by run, in order.
    pub origins: Vec<Origin>,
}

impl std::fmt::Debug for LogBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LogBatch({} bytes, {} submissions)",
            self.ops.len(),
            self.origins.len()
        )
    }
}

/// How long a submission waits for a leader to exist before it is refused.
pub const LEADER_WAIT: Duration = Duration::from_secs(3);
/// How many maximal election timeouts a proposal may wait to commit before its submitters
/// hear that its outcome is unknown (a leader cut off from the majority never commits).
const COMMIT_WAIT_ELECTIONS: u64 = 10;
/// How long a follower's client waits for a committed write (or membership change) to be
/// applied on its node.
const APPLY_WAIT: Duration = Duration::from_secs(30);
/// Proposals in flight from one node's writer. Few: while they are in flight, submissions
/// gather in the writer's queue and the next entry takes them all, so under load there are
/// fewer, larger entries (measured: the leader's push p99 at 1,000/s fell from 0.56-0.67 s
/// with 256 to 0.11-0.17 s with 8, throughput with 16 batching publishers the same).
const IN_FLIGHT_MAX: usize = 8;

/// This node's side of the cluster.
pub struct Node {
    /// The Raft handle.
    pub raft: Raft,
    /// This node's ID.
    pub id: u64,
    /// The core this node replicates.
    core: Core,
    /// Peers.
    pub net: Arc<net::Net>,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Settings.
    pub config: ClusterConfig,
    /// Who serves which inbox on the other nodes.
    pub presence: presence::Presence,
    /// This run's announcements so far.
    announced: AtomicU64,
    /// Forwarded submissions the leader confirmed, oldest first, each with the time after
    /// which one still unanswered here fails (one sweeper for all, not a timer each).
    overdue: std::sync::Mutex<VecDeque<(Instant, Vec<Origin>)>>,
    overdue_added: Arc<tokio::sync::Notify>,
}

impl Node {
    pub(crate) fn new(raft: Raft, net: Arc<net::Net>, config: ClusterConfig, core: Core) -> Node {
        Node {
            raft,
            id: config.node_id,
            core,
            net,
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX)),
            config,
            presence: presence::Presence::default(),
            announced: AtomicU64::new(0),
            overdue: std::sync::Mutex::new(VecDeque::new()),
            overdue_added: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Fails the confirmed forwarded submissions not applied here within [`APPLY_WAIT`]
    /// (a node that cannot keep up, or has stopped applying), for as long as the node lives.
    async fn sweep_overdue(node: std::sync::Weak<Node>) {
        loop {
            let Some(me) = node.upgrade() else { return };
            let wake = me.overdue_added.clone();
            let added = wake.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let now = Instant::now();
            let next = me.overdue_queue().front().map(|(at, _)| *at);
            if next.is_some_and(|at| at <= now) {
                let mut expired = Vec::new();
                {
                    let mut q = me.overdue_queue();
                    while q.front().is_some_and(|(at, _)| *at <= now) {
                        expired.extend(q.pop_front().map(|(_, o)| o).unwrap_or_default());
                    }
                }
                me.fail(
                    &expired,
                    &BrokerError::Unavailable(format!(
                        "the write was committed but not applied here within {APPLY_WAIT:?}"
                    )),
                );
                continue;
            }
            drop(me);
            // Woken by the first addition to an empty queue; otherwise it sleeps until the
            // oldest is due, and at most APPLY_WAIT (a dropped node ends its sweeper then).
            let until = next.unwrap_or(now + APPLY_WAIT);
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = added => {}
            }
        }
    }

    fn overdue_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Vec<Origin>)>> {
        self.overdue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This process's run ID.
    pub fn run(&self) -> u64 {
        self.core.origins.run()
    }

    fn fail(&self, origins: &[Origin], e: &BrokerError) {
        self.core.origins.fail(origins, e);
    }

    /// Fails the submissions still waiting once their fate is settled: a proposal whose
    /// leader changed under it may yet be applied, until the new leader's first entry is
    /// applied here (a new leader commits what its predecessor replicated to a majority
    /// together with that entry), or at most the election timeout.
    /// `term`: the term when the proposal was made.
    fn fail_later(self: &Arc<Self>, origins: Vec<Origin>, e: BrokerError, term: u64) {
        let me = self.clone();
        let grace = Duration::from_millis(self.config.election_min_ms);
        tokio::spawn(async move {
            let mut m = me.raft.metrics();
            let settled = m.wait_for(move |m| {
                m.current_leader.is_some()
                    && m.last_applied.is_some_and(|a| {
                        a.leader_id.term > term && a.leader_id.term >= m.current_term
                    })
            });
            let _ = tokio::time::timeout(grace, settled).await;
            me.fail(&origins, &e);
        });
    }

    /// The leader, if one is known.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// True when this node is the leader.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.current_leader == Some(self.id) && m.state == ServerState::Leader
    }

    /// Resolves when this node is the leader.
    pub async fn until_leader(&self) {
        let mut m = self.raft.metrics();
        let id = self.id;
        let _ = m
            .wait_for(|m| m.current_leader == Some(id) && m.state == ServerState::Leader)
            .await;
    }

    /// Waits (up to [`LEADER_WAIT`]) for a leader to be known.
    async fn wait_leader(&self) -> Option<u64> {
        let mut m = self.raft.metrics();
        let got = tokio::time::timeout(LEADER_WAIT, m.wait_for(|m| m.current_leader.is_some()))
            .await
            .ok()?
            .ok()?
            .current_leader;
        got
    }

    /// Proposes a writer batch: on the leader, appends it to the log; on a follower,
    /// forwards it to the leader. `done` hears whether it was committed (forwarded
    /// batches); local submissions are answered at apply.
    pub(crate) async fn propose(
        self: &Arc<Self>,
        ops: Vec<Op>,
        origins: Vec<Origin>,
        done: Vec<oneshot::Sender<Result<(), String>>>,
        now_ms: u64,
    ) {
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            return;
        };
        let finish = move |r: Result<(), String>| {
            for d in done {
                let _ = d.send(r.clone());
            }
        };
        let Some(leader) = self.wait_leader().await else {
            let e = BrokerError::Unavailable("no cluster leader".into());
            self.fail(&origins, &e);
            finish(Err(e.to_string()));
            return;
        };
        let me = self.clone();
        let term = self.raft.metrics().borrow().current_term;
        if leader == self.id {
            let stamp = now_ms.max(self.core.applied_now.load(Ordering::Acquire));
            let batch = LogBatch {
                ops: cortex_storage::encode_batch(&ops, stamp),
                origins: origins.clone(),
            };
            let rx = match self.raft.client_write_ff(batch).await {
                Ok(rx) => rx,
                Err(e) => {
                    let e = BrokerError::Unavailable(format!("raft stopped: {e}"));
                    self.fail(&origins, &e);
                    finish(Err(e.to_string()));
                    return;
                }
            };
            let wait = Duration::from_millis(COMMIT_WAIT_ELECTIONS * self.config.election_max_ms);
            tokio::spawn(async move {
                // A leader cut off from the majority never commits: give up after a while.
                let r = match tokio::time::timeout(wait, rx).await {
                    Ok(r) => r,
                    Err(_) => Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(
                        openraft::error::ForwardToLeader::empty(),
                    ))),
                };
                drop(permit);
                match r {
                    Ok(Ok(_)) => finish(Ok(())),
                    Ok(Err(e)) => {
                        let e = unknown_outcome(e);
                        finish(Err(e.to_string()));
                        me.fail_later(origins, e, term);
                    }
                    Err(e) => {
                        let e = unknown_outcome(e);
                        finish(Err(e.to_string()));
                        me.fail_later(origins, e, term);
                    }
                }
            });
        } else {
            tokio::spawn(async move {
                // A leader that dies keeps its connection open until the idle timeout:
                // stop waiting as soon as another leader is known.
                let mut m = me.raft.metrics();
                let r = tokio::select! {
                    r = me.net.forward(leader, &ops, &origins) => r,
                    _ = m.wait_for(|m| m.current_leader.is_some_and(|l| l != leader)) => {
                        Err(format!("node {leader} stopped being the leader"))
                    }
                };
                drop(permit);
                match r {
                    // Committed; our own apply answers the local submissions.
                    Ok(()) => {
                        finish(Ok(()));
                        // It will be applied here; only a node that cannot keep up (or
                        // has stopped applying) leaves its clients waiting this long.
                        let at = Instant::now() + APPLY_WAIT;
                        let mut q = me.overdue_queue();
                        let first = q.is_empty();
                        q.push_back((at, origins));
                        drop(q);
                        if first {
                            me.overdue_added.notify_one();
                        }
                    }
                    Err(e) => {
                        let e = unknown_outcome(e);
                        finish(Err(e.to_string()));
                        me.fail_later(origins, e, term);
                    }
                }
            });
        }
    }

    /// The cluster as this node sees it.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics();
        let m = m.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let members: Vec<(u64, String)> = m
            .membership_config
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let voters: Vec<u64> = m.membership_config.voter_ids().collect();
        let followers = m.replication.as_ref().map(|r| {
            r.iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, matched)| {
                    let matched = matched.map_or(0, |l| l.index);
                    (*id, matched, last.saturating_sub(matched))
                })
                .collect()
        });
        Status {
            id: self.id,
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: last,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
            voters,
            followers,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
        }
    }
}

impl Node {
    /// Announces the inboxes this node's agents serve to every other member, each on its
    /// own task (a dead peer's timeout delays nobody else's announcement).
    /// `sessions` is `None` when they did not change since the last announcement that
    /// carried them. Returns the announcement's sequence number.
    pub fn announce(
        &self,
        mut inboxes: Vec<Vec<u8>>,
        mailboxes: Vec<presence::MailboxAd>,
        mut sessions: Option<Vec<presence::SessionAd>>,
    ) -> u64 {
        if inboxes.len() > presence::INBOXES_MAX {
            tracing::warn!(
                "{} inboxes are served here; the other nodes hear of the first {}",
                inboxes.len(),
                presence::INBOXES_MAX
            );
            inboxes.truncate(presence::INBOXES_MAX);
        }
        if let Some(s) = sessions
            .as_mut()
            .filter(|s| s.len() > presence::SESSIONS_MAX)
        {
            tracing::warn!(
                "{} agent sessions are open here; the other nodes hear of the first {}",
                s.len(),
                presence::SESSIONS_MAX
            );
            s.truncate(presence::SESSIONS_MAX);
        }
        let a = presence::Announcement {
            run: self.run(),
            seq: self.announced.fetch_add(1, Ordering::Relaxed) + 1,
            inboxes,
            mailboxes,
            sessions,
        };
        let seq = a.seq;
        let peers: Vec<u64> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| *id != self.id)
            .collect();
        for peer in peers {
            let net = self.net.clone();
            let a = a.clone();
            tokio::spawn(async move {
                if let Err(e) = net.announce(peer, &a).await {
                    tracing::debug!("announcing inboxes to node {peer}: {e}");
                }
            });
        }
        seq
    }
}

/// Readies a cluster node's data directory and returns where its store lives now (the
/// current generation under `<data>/cluster`).
pub fn prepare(config: &Config) -> Result<std::path::PathBuf, String> {
    // Every node must start from the same (empty) state: a single node's store in the data
    // dir would silently diverge from the others.
    if config.data_dir.join("version").exists() || config.data_dir.join("keyspaces").exists() {
        return Err(format!(
            "{} holds a single node's store; a cluster node starts from an empty data \
             directory (re-publish what must be kept, from `cortex replay`'s output, or keep \
             this directory for the single node)",
            config.data_dir.display()
        ));
    }
    let dirs = dirs_of(config);
    std::fs::create_dir_all(&dirs.root)
        .map_err(|e| format!("cannot create {}: {e}", dirs.root.display()))?;
    dirs.clean()?;
    Ok(dirs.current_state().0)
}

fn dirs_of(config: &Config) -> sm::Dirs {
    sm::Dirs {
        root: config.data_dir.join("cluster"),
    }
}

/// Opens the Raft log, binds the cluster port, starts Raft over `core`'s store and serves
/// peers; a pristine node proposes the configured membership (every node may: the same
/// list is safe).
pub async fn start(core: Core, cc: ClusterConfig) -> Result<Arc<Node>, String> {
    let dirs = dirs_of(&core.config);
    let progress = sm::Progress::of(&core.store())?;
    core.applied_now
        .fetch_max(progress.now_ms, Ordering::AcqRel);
    let log = log::LogStore::open(&dirs.log())?;
    let net = Arc::new(net::Net::bind(
        cc.node_id, cc.listen, &cc.secret, &cc.nodes,
    )?);
    let sm = sm::StateMachine::new(core.clone(), dirs.clone(), progress);
    let raft = Raft::new(
        cc.node_id,
        raft_config(&cc)?,
        net::Factory { net: net.clone() },
        log,
        sm,
    )
    .await
    .map_err(|e| format!("cannot start Raft: {e}"))?;
    let local = net.local_addr()?;
    let node = Arc::new(Node::new(
        raft.clone(),
        net.clone(),
        cc.clone(),
        core.clone(),
    ));
    tokio::spawn(Node::sweep_overdue(Arc::downgrade(&node)));
    // A (re)started node first listens for a leader before it campaigns: a node that was
    // down would otherwise start elections with a stale log and a higher term, deposing a
    // healthy leader or delaying the next election.
    raft.runtime_config().elect(false);
    {
        let raft = raft.clone();
        let quiet = Duration::from_millis(3 * cc.election_max_ms);
        tokio::spawn(async move {
            let mut m = raft.metrics();
            let _ = tokio::time::timeout(quiet, m.wait_for(|m| m.current_leader.is_some())).await;
            raft.runtime_config().elect(true);
        });
    }
    tokio::spawn(net.clone().serve(raft.clone(), core, node.clone(), dirs));
    println!("cortex: cluster listening on {local}");
    if !cc.join {
        initialize(&raft, &cc).await?;
    }
    Ok(node)
}

/// The cluster's [`crate::core::Sequencer`]: a batch becomes one Raft log entry, proposed
/// by the leader (which first adds the reads of every node's waiting mailboxes) or
/// forwarded to it by a follower; local submissions are answered when their entry is
/// applied here ([`Core::apply_logged`]).
pub struct Replicated(pub Arc<Node>);

impl crate::core::Sequencer for Replicated {
    fn sequence(&self, core: &Core, subs: Vec<Submission>) {
        let node = &self.0;
        let mut ops = Vec::new();
        let mut origins = Vec::new();
        let mut done = Vec::new();
        for s in subs {
            match s.reply {
                ReplyTo::Local(tx) if s.ops.is_empty() => {
                    let _ = tx.send(Ok(Vec::new()));
                }
                ReplyTo::Local(tx) => {
                    origins.push(core.origins.register(tx, s.ops.len()));
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
        if ops.is_empty() {
            return;
        }
        if node.is_leader() {
            core.plan(
                &mut ops,
                &mut origins,
                |k| node.presence.mailboxes(k.ns, &k.name),
                &node.presence.mailbox_nodes(),
            );
        }
        // The writer thread waits here only while the proposals in flight are at their
        // limit (or no leader is known yet): back-pressure, as the single node's commit.
        tokio::runtime::Handle::current().block_on(node.propose(ops, origins, done, core.now_ms()));
    }

    fn leads(&self) -> bool {
        self.0.is_leader()
    }

    fn until_leads(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let node = self.0.clone();
        Box::pin(async move { node.until_leader().await })
    }
}

/// Forms the cluster from the configured voters on a pristine node (every node may: the
/// same list is safe); a node that holds a log already is left as it is.
pub(crate) async fn initialize(raft: &Raft, cc: &ClusterConfig) -> Result<(), String> {
    if raft.is_initialized().await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    let members: std::collections::BTreeMap<u64, BasicNode> = cc
        .nodes
        .iter()
        .map(|(id, a)| (*id, BasicNode::new(a.to_string())))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!("cluster initialised with {} voters", cc.nodes.len()),
        Err(e) => tracing::info!("cluster already initialised: {e}"),
    }
    Ok(())
}

/// A state of the cluster to wait for (`GET /api/v1/cluster?…`): operators' scripts and
/// the tests wait for the server to report it instead of polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Nothing: the status now.
    Now,
    /// This node knows a leader (other than the given node, if any).
    Leader {
        /// A leader that does not count (one just killed or cut off).
        not: Option<u64>,
    },
    /// This node has applied the log up to this index.
    Applied(u64),
    /// This node has purged its log up to this index (behind a snapshot).
    Purged(u64),
}

impl Node {
    /// The status once `until` holds, or `None` when `timeout` passed first.
    pub async fn wait(&self, until: Until, timeout: Duration) -> Option<Status> {
        let mut m = self.raft.metrics();
        let holds = m.wait_for(move |m| match until {
            Until::Now => true,
            Until::Leader { not } => m.current_leader.is_some_and(|l| Some(l) != not),
            Until::Applied(i) => m.last_applied.is_some_and(|a| a.index >= i),
            Until::Purged(i) => m.purged.is_some_and(|p| p.index >= i),
        });
        let reached = matches!(tokio::time::timeout(timeout, holds).await, Ok(Ok(_)));
        reached.then(|| self.status())
    }
}

/// A membership change (`cortex cluster add|remove`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Membership {
    /// Add a voter: it catches up as a learner first, then joins the quorum.
    Add {
        /// Node ID.
        id: u64,
        /// Its cluster address.
        addr: SocketAddr,
    },
    /// Remove a voter.
    Remove {
        /// Node ID.
        id: u64,
    },
}

impl Node {
    /// Changes the membership on the leader (forwarded there from a follower), then waits
    /// until this node has applied the change, so a status read after it shows the new
    /// membership (a node that removes itself answers at once: it may never hear of the
    /// commit). Adding waits until the new node caught up; one change at a time, as Raft's
    /// joint consensus does.
    pub async fn change_membership(&self, change: Membership) -> Result<(), String> {
        let removes_self = change == Membership::Remove { id: self.id };
        let index = self.change_membership_on_leader(change).await?;
        if removes_self || self.wait(Until::Applied(index), APPLY_WAIT).await.is_some() {
            return Ok(());
        }
        Err(format!(
            "the change is committed (log index {index}) but node {} has not applied it within {} s",
            self.id,
            APPLY_WAIT.as_secs()
        ))
    }

    /// Changes the membership on the leader, forwarding it there from a follower; the log
    /// index of the committed change.
    pub(crate) async fn change_membership_on_leader(
        &self,
        change: Membership,
    ) -> Result<u64, String> {
        let Some(leader) = self.wait_leader().await else {
            return Err("no cluster leader".into());
        };
        if leader != self.id {
            return self.net.membership(leader, &change).await;
        }
        let mut voters: std::collections::BTreeSet<u64> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .voter_ids()
            .collect();
        match change {
            Membership::Add { id, addr } => {
                if id == 0 {
                    return Err("node IDs start at 1".into());
                }
                self.net.set_addr(id, addr);
                self.raft
                    .add_learner(id, BasicNode::new(addr.to_string()), true)
                    .await
                    .map_err(|e| format!("adding node {id} as a learner: {e}"))?;
                voters.insert(id);
            }
            Membership::Remove { id } => {
                if !voters.remove(&id) {
                    return Err(format!("node {id} is not a voter"));
                }
                if voters.is_empty() {
                    return Err("cannot remove the last voter".into());
                }
            }
        }
        self.raft
            .change_membership(voters, false)
            .await
            .map(|r| r.log_id.index)
            .map_err(|e| format!("changing the membership: {e}"))
    }
}

fn unknown_outcome(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!(
        "the leader changed before the write was confirmed, its outcome is unknown (retry with an idempotency key): {e}"
    ))
}

/// The cluster as one node sees it (`INFO replication`, `cortex cluster status`, metrics).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub id: u64,
    /// Leader, Follower, Candidate, Learner.
    pub state: String,
    /// The leader, if known.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// Last log index here.
    pub last_log_index: u64,
    /// Last applied index here.
    pub applied_index: u64,
    /// Last snapshot's index.
    pub snapshot_index: Option<u64>,
    /// Log purged up to.
    pub purged_index: Option<u64>,
    /// Members: ID and address.
    pub members: Vec<(u64, String)>,
    /// Voters' IDs.
    pub voters: Vec<u64>,
    /// On the leader: each follower's ID, matched index and lag in entries.
    pub followers: Option<Vec<(u64, u64, u64)>>,
    /// On the leader: time since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
}

/// openraft's settings from ours.
pub fn raft_config(c: &ClusterConfig) -> Result<Arc<openraft::Config>, String> {
    let cfg = openraft::Config {
        cluster_name: "cortex".into(),
        heartbeat_interval: c.heartbeat_ms,
        election_timeout_min: c.election_min_ms,
        election_timeout_max: c.election_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(c.snapshot_logs),
        max_in_snapshot_log_to_keep: c.logs_kept,
        // Snapshots move as whole directories: give big ones time.
        install_snapshot_timeout: 60_000,
        ..openraft::Config::default()
    };
    Ok(Arc::new(cfg.validate().map_err(|e| e.to_string())?))
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::log::LogStore;
    use super::sm::{Dirs, Progress, StateMachine};
    use super::TypeConfig;
    use crate::core::{Core, Local};

    /// Keeps a test's directory and core alive; stops the core's writer at the end.
    struct Guard {
        core: Core,
        _dir: tempfile::TempDir,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.core.shutdown();
        }
    }

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, Guard> for Builder {
        async fn build(&self) -> Result<(Guard, LogStore, StateMachine), StorageError<u64>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let flags = crate::config::ServeFlags {
                data_dir: Some(dir.path().join("data")),
                ..Default::default()
            };
            let config = crate::config::Config::build(Default::default(), &flags).expect("config");
            let store = config.data_dir.clone();
            let store_cfg = config.store.clone();
            let (core, queues) = Core::open(config, store, store_cfg).expect("core");
            let _writer = core
                .run(queues.submissions, std::sync::Arc::new(Local))
                .expect("writer");
            let log = LogStore::open(&dir.path().join("raft")).expect("log");
            let dirs = Dirs {
                root: dir.path().join("cluster"),
            };
            let progress = Progress::of(&core.store()).expect("progress");
            let sm = StateMachine::new(core.clone(), dirs, progress);
            Ok((Guard { core, _dir: dir }, log, sm))
        }
    }

    /// openraft's own storage test suite against our log store and state machine.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }
}
