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

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cortex_storage::Op;
use openraft::{BasicNode, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::broker::{BrokerError, Replies};

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

/// A submission's place in a batch: the node (and its process run) that waits for its
/// replies, its number there, and how many ops it has.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Origin {
    /// Node ID.
    pub node: u64,
    /// Random per process start, so a restarted node never takes an old entry for a new
    /// submission.
    pub run: u64,
    /// Submission number within the run.
    pub seq: u64,
    /// Ops of the submission.
    pub ops: u32,
}

impl Origin {
    /// Set in `seq` on a leader's mailbox reads: the origins of a batch's mailbox reads go
    /// last in its entry, one per node with mailboxes (the leader's own registered like a
    /// submission; another node's with the sequence number of the announcement planned
    /// from, so that node knows which of its mailboxes were considered).
    pub const PLAN: u64 = 1 << 63;
    /// Set in `seq`, with [`Origin::PLAN`], on mailbox reads for another node.
    pub const REMOTE: u64 = 1 << 62;

    /// A leader's mailbox reads for `node` (another node), planned from its announcement
    /// `seq`.
    pub fn plan_for(node: u64, run: u64, seq: u64, ops: u32) -> Origin {
        Origin {
            node,
            run,
            seq: seq | Origin::PLAN | Origin::REMOTE,
            ops,
        }
    }

    /// True on a leader's mailbox reads.
    pub fn is_plan(&self) -> bool {
        self.seq & Origin::PLAN != 0
    }

    /// On mailbox reads for another node: the announcement they were planned from.
    pub fn planned_from(&self) -> Option<u64> {
        (self.seq & Origin::REMOTE != 0).then_some(self.seq & !(Origin::PLAN | Origin::REMOTE))
    }
}

/// One entry, ready for the store.
pub struct Applying {
    /// Its ops.
    pub ops: Vec<Op>,
    /// The time it is applied at (never behind an earlier entry's).
    pub now_ms: u64,
    /// The progress recorded with it.
    pub progress: Vec<u8>,
    /// Whose ops they are.
    pub origins: Vec<Origin>,
}

/// A random `u64` from the system's CSPRNG.
pub fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Only uniqueness matters here; the clock is a fallback.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(b)
}

/// `[cluster]`: this node and its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's ID.
    pub node_id: u64,
    /// Where this node listens for its peers (QUIC).
    pub listen: SocketAddr,
    /// Every voter: ID -> cluster address (this node included).
    pub nodes: BTreeMap<u64, SocketAddr>,
    /// The shared secret that authenticates nodes to each other.
    pub secret: String,
    /// Leader heartbeat.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound.
    pub election_min_ms: u64,
    /// Election timeout, upper bound.
    pub election_max_ms: u64,
    /// Log entries between snapshots.
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot (a follower further behind gets the snapshot).
    pub logs_kept: u64,
    /// Never form a cluster from the node list: wait to be added to an existing one.
    pub join: bool,
}

type Waiter = oneshot::Sender<Result<Replies, BrokerError>>;

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
    run: u64,
    seq: AtomicU64,
    waiters: Mutex<HashMap<u64, Waiter>>,
    /// Peers.
    pub net: Arc<net::Net>,
    /// The largest `now_ms` applied here (the leader stamps at least this).
    applied_now: AtomicU64,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Settings.
    pub config: ClusterConfig,
    /// Who serves which inbox on the other nodes.
    pub presence: presence::Presence,
    /// This run's announcements so far.
    announced: AtomicU64,
}

impl Node {
    pub(crate) fn new(raft: Raft, net: Arc<net::Net>, config: ClusterConfig, now: u64) -> Node {
        Node {
            raft,
            id: config.node_id,
            run: random_u64(),
            seq: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
            net,
            applied_now: AtomicU64::new(now),
            in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX)),
            config,
            presence: presence::Presence::default(),
            announced: AtomicU64::new(0),
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a local submission of `ops` ops; its replies come when the entry holding
    /// it is applied here.
    pub(crate) fn register(&self, reply: Waiter, ops: usize) -> Origin {
        self.register_as(reply, ops, 0)
    }

    /// This process's run ID.
    pub fn run(&self) -> u64 {
        self.run
    }

    /// Registers the leader's own mailbox reads of a batch (ops, in the entry's last run):
    /// an origin flagged [`Origin::PLAN`], answered like any submission.
    pub(crate) fn register_plan(&self, reply: Waiter, ops: usize) -> Origin {
        self.register_as(reply, ops, Origin::PLAN)
    }

    fn register_as(&self, reply: Waiter, ops: usize, flag: u64) -> Origin {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) | flag;
        self.waiters().insert(seq, reply);
        Origin {
            node: self.id,
            run: self.run,
            seq,
            ops: ops as u32,
        }
    }

    /// True when `origin` is a submission of this node's current run.
    pub(crate) fn is_mine(&self, origin: &Origin) -> bool {
        origin.node == self.id && origin.run == self.run
    }

    /// Answers a local submission with its replies (called as its entry is applied).
    pub(crate) fn deliver(&self, origin: &Origin, replies: Replies) {
        if origin.node != self.id || origin.run != self.run {
            return;
        }
        if let Some(w) = self.waiters().remove(&origin.seq) {
            let _ = w.send(Ok(replies));
        }
    }

    /// Records the time of an applied entry.
    pub(crate) fn applied_at(&self, now_ms: u64) {
        self.applied_now.fetch_max(now_ms, Ordering::AcqRel);
    }

    fn fail(&self, origins: &[Origin], e: &BrokerError) {
        let mut w = self.waiters();
        for o in origins
            .iter()
            .filter(|o| o.node == self.id && o.run == self.run)
        {
            if let Some(tx) = w.remove(&o.seq) {
                let _ = tx.send(Err(e.clone()));
            }
        }
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
            let stamp = now_ms.max(self.applied_now.load(Ordering::Acquire));
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
                        let me = me.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(APPLY_WAIT).await;
                            me.fail(
                                &origins,
                                &BrokerError::Unavailable(format!(
                                    "the write was committed but not applied here within {APPLY_WAIT:?}"
                                )),
                            );
                        });
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
    /// Returns the announcement's sequence number.
    pub fn announce(&self, mut inboxes: Vec<Vec<u8>>, mailboxes: Vec<presence::MailboxAd>) -> u64 {
        if inboxes.len() > presence::INBOXES_MAX {
            tracing::warn!(
                "{} inboxes are served here; the other nodes hear of the first {}",
                inboxes.len(),
                presence::INBOXES_MAX
            );
            inboxes.truncate(presence::INBOXES_MAX);
        }
        let a = presence::Announcement {
            run: self.run,
            seq: self.announced.fetch_add(1, Ordering::Relaxed) + 1,
            inboxes,
            mailboxes,
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
    use crate::broker::Broker;

    /// Keeps a test's directory and broker alive; stops the broker's writer at the end.
    struct Guard {
        broker: Broker,
        _dir: tempfile::TempDir,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.broker.shutdown();
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
            let (broker, _writer) = Broker::start(config).await.expect("broker");
            let log = LogStore::open(&dir.path().join("raft")).expect("log");
            let dirs = Dirs {
                root: dir.path().join("cluster"),
            };
            let progress = Progress::of(&broker.store()).expect("progress");
            let sm = StateMachine::new(broker.clone(), dirs, progress);
            Ok((Guard { broker, _dir: dir }, log, sm))
        }
    }

    /// openraft's own storage test suite against our log store and state machine.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }
}
