//! The journal's sync beside the next commit: a commit gathered on the runtime's thread is
//! applied and written to the journal ([`cortex_storage::Store::apply_unsynced`]), and its
//! `fdatasync` runs here, on one of two syncer threads, while the runtime's thread reads,
//! parses and applies the next one. What the commit hands out (its submitters' answers,
//! its push deliveries, its cancel signals) waits in the [`Handover`] until a sync that
//! began after the commit returned, then goes through the relay; every read answered
//! meanwhile waits for the same sync ([`Durable::visible`]). So nothing a client is told,
//! by a reply or a read, is lost by a crash, as before; what changes is that one commit's
//! sync no longer holds up the next commit's work.
//!
//! Why: on these machines an `fdatasync` issued within about 100 µs of the previous one
//! completes in about 60 µs, and one issued after a longer pause often takes 0.5-1 ms
//! (README, twentieth session). Inline, every sync followed a pass over the clients and
//! their replies; here a sync starts as soon as something was committed and a syncer is
//! free, and with two syncers one sync need not wait for the other to return.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use tokio::sync::Notify;

use super::relay::Handover;
use super::{BrokerError, Core};
use crate::config::Fsync;

/// How far the commits applied ahead of their sync are durable, for reads.
#[derive(Default)]
pub(super) struct Durable {
    /// Commits applied ahead of their sync, counted; a commit takes its number before any
    /// of it is visible.
    applied: AtomicU64,
    /// Every such commit up to this one is durable (or failed: see `failures`).
    synced: AtomicU64,
    /// Failed syncs, counted. A read that may have seen a commit whose sync failed is
    /// refused.
    failures: AtomicU64,
    /// Set from a failed sync until the store is reopened: the failed commits are still
    /// visible in the store, so reads are refused.
    broken: AtomicBool,
    /// Woken when `synced` moves.
    moved: Notify,
}

/// Taken before a read ([`Durable::ticket`]), checked after it ([`Durable::visible`]).
#[derive(Clone, Copy)]
pub struct Ticket {
    failures: u64,
}

impl Durable {
    /// The number of the commit about to be applied ahead of its sync.
    pub(super) fn begin(&self) -> u64 {
        self.applied.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Every commit up to `through` is durable (called on the runtime's thread, as the
    /// commits' answers are handed out).
    pub(super) fn synced(&self, through: u64) {
        if self.synced.fetch_max(through, Ordering::SeqCst) < through {
            self.moved.notify_waiters();
        }
    }

    /// The sync of the commits up to `through` failed: the reads waiting for them are
    /// refused, and so is every read until [`Durable::recovered`].
    fn failed(&self, through: u64) {
        self.broken.store(true, Ordering::SeqCst);
        // Before `synced` moves: a read that sees it move sees the failure too.
        self.failures.fetch_add(1, Ordering::SeqCst);
        self.synced(through);
    }

    /// The store was reopened from its journal: reads are answered again.
    pub(super) fn recovered(&self) {
        self.broken.store(false, Ordering::SeqCst);
    }

    /// Taken before a read whose answer goes to a client.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            failures: self.failures.load(Ordering::SeqCst),
        }
    }

    /// After the read: waits until every commit it may have seen is durable (at once when
    /// none waits for its sync). Refused when the sync of one of them failed.
    pub async fn visible(&self, t: Ticket) -> Result<(), BrokerError> {
        let seen = self.applied.load(Ordering::SeqCst);
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            // `synced` first: a failure moves it after counting itself.
            let synced = self.synced.load(Ordering::SeqCst);
            if self.broken.load(Ordering::SeqCst)
                || self.failures.load(Ordering::SeqCst) != t.failures
            {
                return Err(BrokerError::Storage(
                    "the journal's sync failed; reads are answered again once the store is reopened from its journal".into(),
                ));
            }
            if synced >= seen {
                return Ok(());
            }
            moved.await;
        }
    }
}

/// Syncer threads. `fdatasync`s of one file from two threads overlap on these disks (one
/// thread: 13,566 syncs/s at 73 µs each; two: 21,597/s at 92 µs; `benches/fsync-gap.py`,
/// README, twentieth session), so a commit applied while one sync is under way starts its
/// own at once instead of waiting for that one to return. Under `-c 50 -P 1` such a sync
/// takes about twice as long as one begun alone (the disk finishes the other first:
/// `benches/sync-overlap.sh`), and is still done sooner: with one syncer the row ran 20-25 %
/// slower, and with four 5-10 % (README, twenty-first session).
const SYNCERS: usize = 2;

/// Commits waiting for a sync, and the syncer threads' state.
#[derive(Default)]
pub(super) struct Syncer {
    queue: Mutex<Queue>,
    /// Syncer threads wait here while nothing waits for a sync.
    work: Condvar,
}

/// A commit waiting for the sync.
pub(super) struct Waiting {
    /// Its number ([`Durable::begin`]).
    pub commit: u64,
    /// False for a commit that failed before anything of it was written or seen: it only
    /// keeps its place in the order.
    pub written: bool,
    pub handover: Handover,
}

#[derive(Default)]
struct Queue {
    /// Commits applied and not yet taken for a sync, in commit order.
    waiting: Vec<Waiting>,
    /// Commits taken by a sync under way and not yet handed over, in commit order. A sync
    /// that returns hands over every one up to the last it took (all were written before
    /// it took them), those another sync took too: so hand-overs stay in commit order.
    syncing: Vec<Waiting>,
    /// Syncs under way.
    under_way: usize,
    /// Syncer threads waiting on `work`, and whether one was notified since.
    sleeping: usize,
    notified: bool,
    /// Syncer threads running; a commit handed over while none runs syncs where it was
    /// made.
    running: usize,
    /// Asked to stop (shutdown): the syncers sync what waits, hand it over and exit.
    stop: bool,
}

impl Core {
    /// Starts the syncer threads (on a node whose commits sync one by one and can commit on
    /// the runtime's thread: the single node with `fsync always`).
    pub(super) fn start_syncers(&self) -> Result<Vec<std::thread::JoinHandle<()>>, String> {
        let mut threads = Vec::with_capacity(SYNCERS);
        for i in 0..SYNCERS {
            let me = self.clone();
            self.syncer.queue().running += 1;
            let spawned = std::thread::Builder::new()
                .name(format!("cortex-syncer-{i}"))
                .spawn(move || me.syncer_loop());
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    self.syncer.queue().running -= 1;
                    self.stop_syncers(threads);
                    return Err(format!("cannot start a syncer thread: {e}"));
                }
            }
        }
        Ok(threads)
    }

    /// Whether commits made on the runtime's thread sync on the syncer threads: the single
    /// node with `fsync always` (the cluster's store does not sync: its log does).
    pub(super) fn syncs_ahead(&self) -> bool {
        self.config.fsync == Fsync::Always && self.config.cluster.is_none()
    }

    /// Whether no sync is under way and none waits.
    pub(super) fn syncer_idle(&self) -> bool {
        let q = self.syncer.queue();
        q.under_way == 0 && q.waiting.is_empty()
    }

    /// Hands a commit applied ahead of its sync to the syncers. With none running (not
    /// started, or stopped at shutdown) the sync is made here, and the hand-over completed.
    pub(super) fn queue_for_sync(&self, w: Waiting) {
        let mut q = self.syncer.queue();
        if q.running > 0 {
            q.waiting.push(w);
            let wake = q.sleeping > 0 && !q.notified;
            q.notified |= wake;
            drop(q);
            if wake {
                self.syncer.work.notify_one();
            }
            return;
        }
        drop(q);
        let through = w.commit;
        let synced = if w.written {
            self.store().sync_journal().map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        self.hand_synced(vec![w], through, synced);
    }

    /// A syncer thread: takes every commit that waits, makes one sync for all of them
    /// (outside fjall's journal lock: the runtime's thread commits meanwhile, and the other
    /// syncer may be syncing), and hands over every commit up to the last it took; until
    /// asked to stop with nothing waiting.
    fn syncer_loop(self) {
        loop {
            let (through, written) = {
                let mut q = self.syncer.queue();
                while q.waiting.is_empty() && !q.stop {
                    q.sleeping += 1;
                    q = self.syncer.work.wait(q).unwrap_or_else(|p| p.into_inner());
                    q.sleeping -= 1;
                    q.notified = false;
                }
                let Some(last) = q.waiting.last() else {
                    q.running -= 1;
                    return;
                };
                let through = last.commit;
                let taken = std::mem::take(&mut q.waiting);
                q.syncing.extend(taken);
                // A sync is needed if anything up to `through` was written, this take's or
                // one another sync under way holds.
                let written = q.syncing.iter().any(|w| w.written);
                q.under_way += 1;
                (through, written)
            };
            let synced = if !written {
                Ok(())
            } else if self.durable.broken.load(Ordering::SeqCst) {
                // Applied to a store whose sync failed: refused with the rest of it.
                Err("an earlier sync of the journal failed".to_string())
            } else {
                let started = std::time::Instant::now();
                let synced = self.store().sync_journal().map_err(|e| e.to_string());
                self.metrics.journal_sync.observe(started.elapsed());
                synced
            };
            let mut q = self.syncer.queue();
            q.under_way -= 1;
            let n = q.syncing.partition_point(|w| w.commit <= through);
            let done: Vec<Waiting> = q.syncing.drain(..n).collect();
            // Under the queue's lock: the hand-overs reach the relay in commit order.
            if !done.is_empty() {
                self.hand_synced(done, through, synced);
            }
        }
    }

    /// Hands commits synced through `through` to the runtime's thread; after a failed sync
    /// (or behind one), their answers become storage errors, their deliveries go back to
    /// their mailboxes unread, and the store is marked failed (to be reopened).
    fn hand_synced(&self, commits: Vec<Waiting>, through: u64, synced: Result<(), String>) {
        let mut all = Handover::default();
        for w in commits {
            all.absorb(w.handover);
        }
        all.through = through;
        let synced = match synced {
            Ok(()) if self.durable.broken.load(Ordering::SeqCst) => {
                Err("an earlier sync of the journal failed".to_string())
            }
            other => other,
        };
        if let Err(e) = synced {
            if !self.durable.broken.load(Ordering::SeqCst) {
                tracing::error!(
                    "the journal's sync failed, writes are refused until the store is reopened: {e}"
                );
            }
            self.durable.failed(through);
            all.fail(&BrokerError::Storage(e.clone()));
            // The disk loop sees it, alerts, and wakes the writer to reopen the store, as
            // after a failed commit.
            self.disk.set_failed(Some(e));
        }
        self.relay.hand(all);
    }

    /// Asks the syncers to stop once what waits is synced and handed over, and waits for
    /// them.
    pub(super) fn stop_syncers(&self, threads: Vec<std::thread::JoinHandle<()>>) {
        self.syncer.queue().stop = true;
        self.syncer.work.notify_all();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Syncer {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A read waits for the sync of every commit applied before it finished, and not for a
    /// later one; a failed sync refuses the reads that waited for it and every read until
    /// the store is reopened.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_wait_for_the_commits_they_may_have_seen() {
        let d = Arc::new(Durable::default());
        // Nothing ahead of its sync: at once.
        d.visible(d.ticket()).await.expect("idle");
        let first = d.begin();
        let t = d.ticket();
        let waiting = tokio::spawn({
            let d = d.clone();
            async move { d.visible(t).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "answered before its commit's sync");
        // A later commit applied meanwhile does not hold it.
        let second = d.begin();
        d.synced(first);
        waiting.await.expect("task").expect("synced");
        // A read after the second commit waits for it; its sync fails.
        let t = d.ticket();
        let waiting = tokio::spawn({
            let d = d.clone();
            async move { d.visible(t).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        d.failed(second);
        assert!(matches!(
            waiting.await.expect("task"),
            Err(BrokerError::Storage(_))
        ));
        // Until the store is reopened, even a read with nothing to wait for is refused.
        assert!(d.visible(d.ticket()).await.is_err());
        d.recovered();
        d.visible(d.ticket()).await.expect("recovered");
    }
}
