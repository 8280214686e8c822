//! Sequencing: the one trait a batch goes through to get its place in the order every copy
//! of the store applies, and what a sequenced batch carries.
//!
//! The single node's [`Local`] commits a batch on the writer thread; a cluster node's
//! sequencer (`cluster::Replicated`) proposes it to the Raft log, and each node applies the
//! entries in log order ([`super::Core::apply_logged`]), answering its own submissions
//! ([`Origins`]) as it does. This is the seam where streams sharded over several Raft
//! groups would plug in: one sequencer per group, picked per batch in [`super::Core::run`]'s
//! place.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use cortex_storage::Op;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{BrokerError, Core, Replies, Submission};

/// Puts the writer's batches in the order every copy of the store applies.
pub trait Sequencer: Send + Sync + 'static {
    /// Sequences one batch the writer drained (on the writer thread, in queue order, at
    /// least one submission). Answers every submission, now or when its entry is applied
    /// here; may block until there is room for it (back-pressure on the writer's queue).
    fn sequence(&self, core: &Core, subs: Vec<Submission>);

    /// True where time-driven work (ticks, alerts) runs and mailbox reads are planned: the
    /// single node, or the cluster's leader.
    fn leads(&self) -> bool;

    /// Resolves once this node leads.
    fn until_leads(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    /// True when a batch is committed to the store by [`Core::commit_here`] (the single
    /// node), so a caller may commit its own while the writer is idle.
    fn commits_here(&self) -> bool {
        false
    }
}

/// The single node's sequencer: the writer commits each batch to the store itself.
pub struct Local;

impl Sequencer for Local {
    fn sequence(&self, core: &Core, subs: Vec<Submission>) {
        core.commit_here(subs, true);
    }

    fn leads(&self) -> bool {
        true
    }

    fn until_leads(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(std::future::ready(()))
    }

    fn commits_here(&self) -> bool {
        true
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

type Waiter = oneshot::Sender<Result<Replies, BrokerError>>;

/// This node's submissions in replicated entries, waiting for their entry to be applied
/// here: who they are ([`Origin`]) and who waits for their replies.
pub struct Origins {
    /// This node's ID (0 on a single node, which sequences nothing through here).
    pub id: u64,
    run: u64,
    seq: AtomicU64,
    waiters: Mutex<HashMap<u64, Waiter>>,
}

impl Origins {
    /// The table of node `id`, for a new run.
    pub fn new(id: u64) -> Origins {
        Origins {
            id,
            run: random_u64(),
            seq: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This process's run ID.
    pub fn run(&self) -> u64 {
        self.run
    }

    /// Registers a local submission of `ops` ops; its replies come when the entry holding
    /// it is applied here.
    pub fn register(&self, reply: Waiter, ops: usize) -> Origin {
        self.register_as(reply, ops, 0)
    }

    /// Registers the leader's own mailbox reads of a batch (ops, in the entry's last run):
    /// an origin flagged [`Origin::PLAN`], answered like any submission.
    pub fn register_plan(&self, reply: Waiter, ops: usize) -> Origin {
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
    pub fn is_mine(&self, origin: &Origin) -> bool {
        origin.node == self.id && origin.run == self.run
    }

    /// Answers a local submission with its replies (called as its entry is applied).
    pub fn deliver(&self, origin: &Origin, replies: Replies) {
        if !self.is_mine(origin) {
            return;
        }
        if let Some(w) = self.waiters().remove(&origin.seq) {
            let _ = w.send(Ok(replies));
        }
    }

    /// Fails the submissions of this run among `origins` that still wait.
    pub fn fail(&self, origins: &[Origin], e: &BrokerError) {
        let mut w = self.waiters();
        for o in origins.iter().filter(|o| self.is_mine(o)) {
            if let Some(tx) = w.remove(&o.seq) {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}
