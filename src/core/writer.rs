//! The writer thread: drains the queue into batches, hands each to the sequencer; the single
//! node's commit (group commit, one fsync, mailbox reads in the same batch) and the reopening
//! of a store whose commit failed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cortex_storage::Store;
use tokio::sync::mpsc;

use super::{mailbox, relay, syncer, BrokerError, Core, Replies, ReplyTo, Submission};

/// Fewest submissions in a commit on the runtime's thread that syncs beside the next commit
/// while no sync is under way (with one under way, every such commit does). Measured on
/// these 2 cores: a lone client (`-c 1`) and a request/reply pair lost 0.1-0.4 ms per call to
/// the hops with fewer; 50 clients gather 6-8 a commit (README, twentieth session).
const BESIDE_SUBS_MIN: usize = 4;

impl Core {
    /// The one writer: takes the first waiting submission and whatever else waits (up to
    /// `batch_ops_max` ops, never splitting a submission) and hands them to the sequencer,
    /// until shutdown empties the queue.
    pub(super) fn writer_loop(self, mut rx: mpsc::Receiver<Submission>) {
        let seq = self.sequencer().clone();
        loop {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            // The runtime's thread committing gathered submissions holds the gate
            // (`commit_gathered`); it never does while anything sent here is unsequenced, so
            // this waits at most for one commit that began before `first` was sent.
            let gate = self.commit_gate.lock().unwrap_or_else(|p| p.into_inner());
            let subs = self.drain(first, &mut rx);
            let n = subs.len();
            seq.sequence(&self, subs);
            self.sequenced(n);
            drop(gate);
            if self.stopping() && rx.is_empty() {
                break;
            }
        }
        self.writer_stopped(rx);
    }

    /// Takes the first waiting submission and whatever else waits, up to `batch_ops_max`
    /// ops (at least one submission, never split).
    fn drain(&self, first: Submission, rx: &mut mpsc::Receiver<Submission>) -> Vec<Submission> {
        let max = self.config.batch_ops_max;
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

    /// The single node's sequencing: one `Store::apply` of the whole batch (plus the reads
    /// of the mailboxes waiting on what it appends), answered after the commit: through the
    /// relay from the writer thread (`relayed`, one wake-up of the runtime for the whole
    /// commit). A caller committing on the runtime's own thread applies it ahead of its sync
    /// when the syncer runs (`syncer.rs`: answered through the relay once synced), else
    /// answers directly.
    pub(super) fn commit_here(&self, subs: Vec<Submission>, relayed: bool) {
        if self.disk.failed().is_some() && !self.reopen_store() {
            let why = self.disk.failed().unwrap_or_default();
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
            return;
        }
        let n: usize = subs.iter().map(|s| s.ops.len()).sum();
        let few = subs.len() < BESIDE_SUBS_MIN;
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
            |k| self.notifier.mailboxes(k),
            |_| Vec::new(),
            &[],
            &self.remote_credit,
        )
        .local;
        if ops.is_empty() {
            for to in replies_to {
                if let ReplyTo::Local(tx) = to {
                    let _ = tx.send(Ok(Vec::new()));
                }
            }
            return;
        }
        let now = self.now_ms();
        let started = std::time::Instant::now();
        let all = ops.len();
        // Numbered before any of it can be seen: reads wait for its sync. A commit of a few
        // clients' writes with no sync under way syncs here, as before: there is little
        // else to do meanwhile, and the syncer's two thread hops would only add to its
        // clients' wait.
        let ahead = (!relayed && self.syncs_ahead() && !(few && self.syncer_idle()))
            .then(|| self.durable.begin());
        let applied = match ahead {
            Some(_) => self.store().apply_unsynced(ops, now),
            None => self.store().apply(ops, now),
        };
        if let (Some(commit), Err(_)) = (ahead, &applied) {
            // Nothing of it was written: it only keeps its place in the order of syncs.
            self.queue_for_sync(syncer::Waiting {
                commit,
                written: false,
                handover: relay::Handover::default(),
            });
        }
        match applied {
            Ok(mut out) => {
                let mut replies = std::mem::take(&mut out.replies).into_iter();
                let mine: Vec<Replies> = sizes
                    .iter()
                    .map(|&size| replies.by_ref().take(size).collect())
                    .collect();
                let mut handover = relay::Handover {
                    spent: std::mem::take(&mut out.spent),
                    ..relay::Handover::default()
                };
                if ahead.is_some() {
                    // Held until the sync: no subscription sends what is not yet durable.
                    handover.cancels = self.cancels(&out.events);
                    for (p, r) in mail.into_iter().zip(replies) {
                        let got = super::apply::delivered(r);
                        handover.held.push((p.mailbox, p.asked, got));
                    }
                } else {
                    self.signal_cancels(&out.events);
                    for (p, r) in mail.into_iter().zip(replies) {
                        p.mailbox
                            .deliver_unwoken(p.asked, super::apply::delivered(r), false);
                        handover.wakes.push(p.mailbox);
                    }
                }
                self.after_commit_events(
                    &out.events,
                    out.changes,
                    out.next_deadline_ms,
                    all,
                    started.elapsed(),
                    Some(u64::MAX),
                );
                handover.answers = mine
                    .into_iter()
                    .zip(replies_to)
                    .filter_map(|(mine, to)| match to {
                        ReplyTo::Local(tx) => Some((tx, Ok(mine))),
                        ReplyTo::Forwarded { .. } => None,
                    })
                    .collect();
                if let Some(commit) = ahead {
                    self.queue_for_sync(syncer::Waiting {
                        commit,
                        written: true,
                        handover,
                    });
                } else if relayed {
                    self.relay.hand(handover);
                } else {
                    handover.complete(&self.durable);
                }
            }
            Err(e @ cortex_storage::Error::Unreadable(_)) => {
                // A read met damage: nothing was written and the store is fine, so only
                // this batch is refused (no reopen).
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
                // Nothing of the batch is acknowledged. fjall refuses every write after a
                // failed persist (a full disk, an I/O error): the store is reopened, from
                // what was committed, once the disk has room again (`reopen_store`); reads
                // go on meanwhile.
                for to in replies_to {
                    to.fail(BrokerError::Storage(e.to_string()));
                }
                tracing::error!(
                    "a commit failed, writes are refused until the store is reopened: {e}"
                );
                self.disk.set_failed(Some(e.to_string()));
            }
        }
    }

    /// Reopens a store whose commit failed, when the data disk has room again: drops it
    /// (fjall's lock goes with the last handle) and opens the same directory, which replays
    /// the journal: everything committed is back, the failed batch is not. Readers wait on
    /// the lock for the moment it takes. Returns true when the store works again. If it
    /// cannot be opened again, the broker stops (as before this existed): a restart replays
    /// the same journal.
    fn reopen_store(&self) -> bool {
        let disk = &self.disk;
        if !disk.room_to_recover() {
            return false;
        }
        let mut slot = self.store.write().unwrap_or_else(|p| p.into_inner());
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
        let path = self.store_dir.clone();
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
                    self.durable.recovered();
                    disk.recoveries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "the store was reopened after a failed commit; writes are accepted again"
                    );
                    self.notifier.notify_all();
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

    fn writer_stopped(&self, mut rx: mpsc::Receiver<Submission>) {
        // What the runtime's thread committed ahead of its sync is synced and answered.
        let syncers = std::mem::take(
            &mut *self
                .syncer_threads
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        self.stop_syncers(syncers);
        rx.close();
        while let Ok(s) = rx.try_recv() {
            s.reply.fail(BrokerError::ShuttingDown);
            self.sequenced(1);
        }
        // Everybody waiting must see the shutdown.
        self.notifier.notify_all();
        tracing::info!("writer stopped");
    }
}
