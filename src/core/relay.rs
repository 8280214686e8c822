//! What the writer thread hands to the runtime's thread after a commit, with one wake-up:
//! the wake-ups of the mailboxes the commit delivered to, and the submitters' answers.
//!
//! A task that another thread wakes (a oneshot completed, a `Notify` notified) is scheduled
//! from outside its runtime, and tokio then wakes the runtime's driver: one `write` to its
//! eventfd per task. A commit that answered 20 submitters and fed 10 push subscriptions made
//! 30 of those system calls, on the writer's path from one fsync to the next. The writer
//! instead hands the whole commit to the [`Relay`] and wakes its task once; the task, on the
//! runtime's thread, wakes the mailboxes and completes the oneshots there, where waking a
//! task only queues it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cortex_storage::{Delivery, Op, StreamId};
use tokio::sync::{oneshot, Notify};

use super::mailbox::Mailbox;
use super::syncer::Durable;
use super::{BrokerError, Replies};

/// One answer: the waiter's sender and what it gets.
pub(super) type Answer = (
    oneshot::Sender<Result<Replies, BrokerError>>,
    Result<Replies, BrokerError>,
);

/// A mailbox's read in a commit, held until the commit's sync: what it asked for and what
/// it got ([`Mailbox::deliver_unwoken`]).
pub(super) type Held = (
    Arc<Mailbox>,
    u32,
    Result<Vec<Delivery>, Option<cortex_storage::Error>>,
);

/// One commit's hand-over (or several, gathered while the task was busy).
#[derive(Default)]
pub(super) struct Handover {
    /// Mailboxes the commit delivered to ([`Mailbox::deliver_unwoken`]), woken first:
    /// their subscriptions have their deliveries before the submitters hear.
    pub wakes: Vec<Arc<Mailbox>>,
    /// A commit applied ahead of its sync (`syncer.rs`): its mailboxes' reads, given to
    /// them only now (then woken with `wakes`), so no subscription sends an entry before it
    /// is durable.
    pub held: Vec<Held>,
    /// The same commit's cancel signals ([`Mailbox::cancel`]): mailbox, task, entry.
    pub cancels: Vec<(Arc<Mailbox>, Vec<u8>, StreamId)>,
    /// The highest commit applied ahead of its sync that this hand-over makes durable
    /// (0: none); reads waiting for it are let go ([`Durable::synced`]).
    pub through: u64,
    /// The submitters' answers.
    pub answers: Vec<Answer>,
    /// The committed ops ([`cortex_storage::BatchOutcome::spent`]), freed here on the
    /// runtime's thread that parsed them. Freed on the writer, each of their blocks went
    /// back to its owner through mimalloc's cross-thread list, and the two threads' share
    /// of that was 7 % of the server's CPU under -P 16 XADDs (README, eighteenth session).
    pub spent: Vec<Op>,
}

impl Handover {
    fn is_empty(&self) -> bool {
        self.wakes.is_empty()
            && self.answers.is_empty()
            && self.held.is_empty()
            && self.cancels.is_empty()
            && self.through == 0
    }

    /// Adds a later commit's hand-over to this one.
    pub(super) fn absorb(&mut self, mut later: Handover) {
        self.wakes.append(&mut later.wakes);
        self.held.append(&mut later.held);
        self.cancels.append(&mut later.cancels);
        self.answers.append(&mut later.answers);
        self.spent.append(&mut later.spent);
        self.through = self.through.max(later.through);
    }

    /// The commit's sync failed: its answers become `why`, its mailboxes' reads go back
    /// unread (the mailbox reads again once the store works), its cancel signals are not
    /// given.
    pub(super) fn fail(&mut self, why: &BrokerError) {
        for a in &mut self.answers {
            a.1 = Err(why.clone());
        }
        for h in &mut self.held {
            h.2 = Err(None);
        }
        self.cancels.clear();
    }

    /// Marks what it makes durable, gives the cancel signals and the held reads to their
    /// mailboxes, wakes the mailboxes, then answers the submitters (on the runtime's
    /// thread: the relay task, or a caller that committed there).
    pub(super) fn complete(&mut self, durable: &Durable) {
        if self.through > 0 {
            durable.synced(self.through);
            self.through = 0;
        }
        // A cancel overtakes the deliveries, as when the writer signals it at its commit.
        for (m, task, id) in self.cancels.drain(..) {
            m.cancel(task, id);
        }
        for (m, asked, got) in self.held.drain(..) {
            m.deliver_unwoken(asked, got, false);
            self.wakes.push(m);
        }
        for m in self.wakes.drain(..) {
            m.notify.notify_one();
        }
        for (tx, r) in self.answers.drain(..) {
            let _ = tx.send(r);
        }
        self.spent.clear();
    }
}

/// What waits for the relay task, and its wake-up.
#[derive(Default)]
pub(super) struct Relay {
    /// Handed over and not yet taken by the task.
    pending: Mutex<Handover>,
    /// Woken when `pending` stops being empty.
    wake: Notify,
    /// The task was spawned ([`Relay::run`]); until then answers are sent directly.
    running: AtomicBool,
    /// How far the commits applied ahead of their sync are durable (shared with the core).
    pub(super) durable: Arc<Durable>,
}

impl Relay {
    /// A relay whose hand-overs mark their commits durable in `durable`.
    pub(super) fn new(durable: Arc<Durable>) -> Relay {
        Relay {
            durable,
            ..Relay::default()
        }
    }

    /// Marks the relay as served by a task on the current runtime and spawns it.
    pub(super) fn start(self: &Arc<Self>) {
        self.running.store(true, Ordering::Release);
        tokio::spawn(Arc::clone(self).run());
    }

    /// Hands a commit over: one wake-up of the relay task, none if it has not yet taken
    /// the previous hand-over (it takes this one with it). Called off the runtime's
    /// thread; a caller on it wakes and answers directly.
    pub(super) fn hand(&self, mut h: Handover) {
        if h.is_empty() {
            return;
        }
        if !self.running.load(Ordering::Acquire) {
            h.complete(&self.durable);
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = pending.is_empty();
        if was_empty {
            *pending = h;
        } else {
            pending.absorb(h);
        }
        drop(pending);
        // Each hand-over to an empty list notifies; the task takes the whole list after
        // each notification, so nothing handed over waits for a later commit.
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// The task: takes what was handed over, wakes the mailboxes and completes each
    /// oneshot, on the runtime's thread. It runs as long as the runtime: a runtime that
    /// stops drops it, and with it the senders still pending (their waiters see the
    /// shutdown).
    async fn run(self: Arc<Self>) {
        let mut batch = Handover::default();
        loop {
            self.wake.notified().await;
            std::mem::swap(
                &mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()),
                &mut batch,
            );
            batch.complete(&self.durable);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every answer handed over reaches its waiter, whatever the interleaving of hand-overs
    /// with the task's taking them: after every other hand-over the writer waits until its
    /// answers arrived (the relay is then empty), otherwise it hands over at once.
    #[tokio::test(flavor = "current_thread")]
    async fn every_answer_handed_over_arrives() {
        let relay = Arc::new(Relay::default());
        relay.start();
        let mut waiters = Vec::new();
        let mut batches = Vec::new();
        for commit in 0..200 {
            let mut answers = Vec::new();
            let mut rxs = Vec::new();
            for _ in 0..(commit % 7) {
                let (tx, rx) = oneshot::channel();
                answers.push((tx, Ok(Vec::new())));
                rxs.push(rx);
            }
            batches.push(answers);
            waiters.push(rxs);
        }
        let (arrived, wait) = std::sync::mpsc::channel();
        let from = Arc::clone(&relay);
        let writer = std::thread::spawn(move || {
            for (i, answers) in batches.into_iter().enumerate() {
                from.hand(Handover {
                    answers,
                    ..Handover::default()
                });
                if i % 2 == 0 {
                    wait.recv().expect("the test runs");
                }
            }
        });
        for (i, rxs) in waiters.into_iter().enumerate() {
            for rx in rxs {
                let got = tokio::time::timeout(std::time::Duration::from_secs(30), rx)
                    .await
                    .expect("an answer handed over was left with the relay");
                assert!(got.expect("answered").is_ok());
            }
            if i % 2 == 0 {
                arrived.send(()).expect("the writer runs");
            }
        }
        writer.join().expect("writer thread");
    }

    /// Before the task runs, answers go straight to their waiters.
    #[test]
    fn without_a_task_answers_are_sent_directly() {
        let relay = Relay::default();
        let (tx, mut rx) = oneshot::channel();
        relay.hand(Handover {
            answers: vec![(tx, Ok(Vec::new()))],
            ..Handover::default()
        });
        assert!(rx.try_recv().expect("answered").is_ok());
    }
}
