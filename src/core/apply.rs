//! Apply: what every commit does on any node (metrics, wake-ups, alerts, the next
//! deadline), replicated entries applied in log order, and the leader's planning of every
//! node's mailbox reads into the batches it proposes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cortex_storage::{Event, Op, Reply, StreamId, StreamKey};
use tokio::sync::oneshot;

use super::mailbox::{self, Mailbox, RemoteMailbox};
use super::{Applying, Core, Origin, Replies};

impl Core {
    /// The leader's writer: adds reads for the waiting mailboxes of this node and of the
    /// other nodes (as announced) to a batch it is about to propose, under origins of their
    /// own that go last in the entry, one per node (so when a node applies the entry it
    /// knows its mailboxes were considered for every append in it). If the proposal fails,
    /// this node's mailboxes get their credit back and read by themselves; another node's
    /// credit comes back with its next announcement.
    /// `remote`: the other nodes' live mailboxes on a stream; `nodes`: the latest live
    /// announcement (node, run, sequence number) of each node with mailboxes.
    pub fn plan(
        &self,
        ops: &mut Vec<Op>,
        origins: &mut Vec<Origin>,
        remote: impl Fn(&StreamKey) -> Vec<RemoteMailbox>,
        nodes: &[(u64, u64, u64)],
    ) {
        let plan = mailbox::plan(
            ops,
            |k| self.notifier.mailboxes(k),
            remote,
            nodes,
            &self.remote_credit,
        );
        if !plan.appends {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let origin = self.origins.register_plan(tx, plan.local.len());
        origins.push(origin);
        for (peer, run, seq, n) in plan.remote {
            origins.push(Origin::plan_for(peer, run, seq, n as u32));
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

    /// Applies committed log entries to the store (the state machine, on every node), each
    /// with its recorded progress in the same commit; answers this node's submissions.
    pub fn apply_logged(&self, work: Vec<Applying>) -> Result<(), String> {
        let store = self.store();
        let node = &self.origins;
        for w in work {
            let n = w.ops.len();
            let reads = remote_reads(node, &w);
            let started = std::time::Instant::now();
            let out = match store.apply_logged(w.ops, w.now_ms, &w.progress) {
                Ok(out) => out,
                Err(e) => {
                    self.fail_store(&e.to_string());
                    return Err(e.to_string());
                }
            };
            self.applied_now.fetch_max(w.now_ms, Ordering::AcqRel);
            self.signal_cancels(&out.events);
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
                if !node.is_mine(o) {
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
            for (o, r) in mine {
                node.deliver(o, r);
            }
        }
        Ok(())
    }

    /// Wakes the readers and mailboxes a commit concerns. `covered`: a leader planned the
    /// batch's mailbox reads (see [`mailbox::Mailbox::wake`]).
    pub(super) fn wake(&self, events: &[Event], covered: Option<u64>) {
        let mut last: Option<&StreamKey> = None;
        for e in events {
            match e {
                // Runs of appends to one stream wake its readers once.
                Event::Appended { stream, .. } if last != Some(stream) => {
                    self.notifier.notify(stream, covered);
                    last = Some(stream);
                }
                Event::Renamed { from, to } => {
                    self.notifier.notify(from, None);
                    self.notifier.notify(to, None);
                    last = None;
                }
                Event::RetryReady { stream, .. }
                | Event::StreamDeleted { stream }
                | Event::GroupDestroyed { stream, .. } => {
                    self.notifier.notify(stream, None);
                    last = None;
                }
                Event::Task { task, .. } => {
                    // Nobody watching is no error.
                    let _ = self.task_news.send(Arc::from(task.as_slice()));
                }
                Event::DeadLettered { .. } | Event::TrimmedUndelivered { .. }
                    if self.alerts.try_send(e.clone()).is_err() =>
                {
                    tracing::warn!("alert queue full, an alert is summarised less precisely");
                }
                _ => {}
            }
        }
    }

    /// Tells the mailboxes here of tasks canceled in a commit while their consumer held
    /// them, before the commit's own deliveries are handed over: a cancel overtakes
    /// everything committed after it.
    pub(super) fn signal_cancels(&self, events: &[Event]) {
        for (m, task, id) in self.cancels(events) {
            m.cancel(task, id);
        }
    }

    /// The cancel signals a commit's events make: each canceled task's holder's mailboxes
    /// ([`Mailbox::cancel`]), with the task and its entry.
    pub(super) fn cancels(&self, events: &[Event]) -> Vec<(Arc<Mailbox>, Vec<u8>, StreamId)> {
        let mut out = Vec::new();
        for e in events {
            if let Event::TaskCanceled {
                task,
                stream,
                group,
                consumer,
                id,
            } = e
            {
                for m in self.inner.notifier.mailboxes(stream) {
                    if &m.group == group && &m.consumer == consumer {
                        out.push((m, task.clone(), *id));
                    }
                }
            }
        }
        out
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

    /// What every commit does for the broker, on any node: metrics, counters, wake-ups,
    /// alerts, the timer's next deadline. `covered`: see [`mailbox::Mailbox::wake`].
    pub(super) fn after_commit_events(
        &self,
        events: &[Event],
        changes: u64,
        next_deadline_ms: Option<u64>,
        ops: usize,
        took: Duration,
        covered: Option<u64>,
    ) {
        self.metrics.on_commit(events, took);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.inner
            .stats
            .ops
            .fetch_add(ops as u64, Ordering::Relaxed);
        self.stats.dirty.fetch_add(changes, Ordering::Relaxed);
        self.wake(events, covered);
        self.set_deadline(next_deadline_ms);
    }
}

/// A mailbox read's result as [`mailbox::Mailbox::deliver`] takes it.
pub(super) fn delivered(
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
fn remote_reads(node: &super::Origins, w: &Applying) -> HashMap<usize, Vec<RemoteRead>> {
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
