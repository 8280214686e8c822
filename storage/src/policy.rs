//! Delivery policy: ack timeouts, nacks, backoff, retries becoming due, and the tick that
//! drives time.

use crate::overlay::View;

use crate::codec::{self, Kind};
use crate::error::{Error, Result};
use crate::id::{StreamId, StreamKey};
use crate::kernel::{unique_ids, GroupState, Txn};
use crate::keys::{self, due_key};
use crate::meta::{
    DeliveryPolicy, IdempotencyRecord, PendingEntry, PendingState, UNOWNED_CONSUMER,
};
use crate::ops::{Event, NackMode, Reply};
use crate::record::{DeadReason, Record};
use crate::task::{TaskEvent, TaskRef};
use crate::Store;

/// What [`Store::due`] finds: when the broker must next tick, and which groups have retries
/// waiting for a consumer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DueReport {
    /// The earliest moment a tick has work (may be in the past: tick now). `None`: no
    /// deadline is pending.
    pub next_deadline_ms: Option<u64>,
    /// Groups with retries ready to hand out, and how many.
    pub ready: Vec<(StreamKey, Vec<u8>, u64)>,
}

/// A failure to record against a pending entry.
struct Failure {
    id: StreamId,
    prev: PendingEntry,
    /// The record, fetched only when the failure dead-letters the entry (`None` then means the
    /// entry is gone from the stream).
    record: Option<Record>,
    dead: Option<DeadReason>,
}

impl Txn<'_> {
    /// One failed attempt at a pending entry: dead-lettered when `reject`ed or out of
    /// attempts (its record fetched for the DLQ), else a retry its task hears of.
    #[allow(clippy::too_many_arguments)]
    fn failure(
        &mut self,
        key: &StreamKey,
        sid: u64,
        id: StreamId,
        prev: PendingEntry,
        policy: &DeliveryPolicy,
        reject: bool,
        error: Option<&[u8]>,
    ) -> Result<Failure> {
        let dead = if reject {
            Some(DeadReason::Rejected)
        } else {
            (prev.failures.saturating_add(1) >= policy.max_attempts)
                .then_some(DeadReason::MaxAttempts)
        };
        let record = match dead {
            Some(_) => self.get_record(key, sid, id)?,
            None => {
                let error = error.map(<[u8]>::to_vec);
                self.task_touch(TaskRef::Entry(sid, id), TaskEvent::Retry { error });
                None
            }
        };
        Ok(Failure {
            id,
            prev,
            record,
            dead,
        })
    }

    /// [`crate::Op::NackMode`] (XNACK).
    pub(crate) fn nack_mode(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        ids: &[StreamId],
        mode: NackMode,
        retry_count: Option<u64>,
        force: bool,
    ) -> Result<Reply> {
        let ids = unique_ids(ids, self.cfg.limits.ids_per_op_max)?;
        let g = self.group(key, group)?;
        let policy = g.meta.policy.clone();
        let gid = g.meta.group_id;
        let sid = self.existing(key)?.meta.stream_id;
        if force {
            self.force_pending(key, group, sid, gid, &ids)?;
        }
        let found = self.pending_of(key, gid, &ids)?;
        let n = found.len() as u64;
        let error = match mode {
            NackMode::Silent => None,
            NackMode::Fail => Some(&b"nacked (FAIL)"[..]),
            NackMode::Fatal => Some(&b"nacked (FATAL)"[..]),
        };
        let mut failures = Vec::new();
        let mut given_back = Vec::new();
        // FAIL goes through the policy only when the group has one.
        let has_policy = policy.is_some();
        let policy = policy.unwrap_or_default();
        for (id, prev) in found {
            match mode {
                NackMode::Fatal => {
                    failures.push(self.failure(key, sid, id, prev, &policy, true, error)?);
                }
                NackMode::Fail if has_policy => {
                    failures.push(self.failure(key, sid, id, prev, &policy, false, error)?);
                }
                NackMode::Fail | NackMode::Silent => {
                    let mut pel = prev.clone();
                    if mode == NackMode::Silent {
                        pel.deliveries = pel.deliveries.saturating_sub(1);
                    } else {
                        pel.failures = pel.failures.saturating_add(1);
                        pel.last_error = error.map(<[u8]>::to_vec);
                    }
                    pel.state = PendingState::Ready;
                    given_back.push((id, prev, pel));
                }
            }
        }
        let ready = !given_back.is_empty();
        self.with_group(key, group, |txn, _, g| {
            txn.apply_failures(key, group, g, &policy, failures, error);
            for (id, prev, mut pel) in given_back {
                if let Some(c) = retry_count {
                    pel.deliveries = c;
                }
                if mode == NackMode::Fail {
                    g.meta.counters.failures += 1;
                }
                txn.put_pending(g, id, &pel, Some(&prev));
            }
        });
        if let Some(c) = retry_count {
            // Entries the policy kept pending (waiting out a backoff) take the count too.
            let again = self.pending_of(key, gid, &ids)?;
            self.with_group(key, group, |txn, _, g| {
                for (id, prev) in again {
                    if prev.deliveries != c {
                        let mut pel = prev.clone();
                        pel.deliveries = c;
                        txn.put_pending(g, id, &pel, Some(&prev));
                    }
                }
            });
        }
        if ready {
            self.events.push(Event::RetryReady {
                stream: key.clone(),
                group: group.to_vec(),
            });
        }
        if n > 0 {
            self.events.push(Event::Nacked {
                stream: key.clone(),
                group: group.to_vec(),
                count: n,
            });
        }
        Ok(Reply::Count(n))
    }

    /// XNACK's FORCE: each of `ids` that is in the stream and not pending in the group
    /// becomes pending, owned by no consumer and never delivered, so the nack that follows
    /// treats it as any other pending entry.
    fn force_pending(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        sid: u64,
        gid: u64,
        ids: &[StreamId],
    ) -> Result<()> {
        let mut new = Vec::new();
        for &id in ids {
            if self.held(&key.name, gid, id)?.is_none()
                && self
                    .tx
                    .contains_key(&self.ks.entries, keys::id_key(sid, id))?
            {
                new.push(id);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        self.with_group(key, group, |txn, _, g| {
            for id in new {
                let pel = PendingEntry {
                    consumer_id: UNOWNED_CONSUMER,
                    delivered_ms: 0,
                    deliveries: 0,
                    failures: 0,
                    state: PendingState::Delivered { deadline_ms: None },
                    last_error: None,
                };
                txn.put_pending(g, id, &pel, None);
            }
        });
        Ok(())
    }

    /// Records failed attempts: retry after the backoff, or dead-letter.
    fn apply_failures(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        g: &mut GroupState,
        policy: &DeliveryPolicy,
        failures: Vec<Failure>,
        error: Option<&[u8]>,
    ) {
        let now = self.now;
        let mut ready = false;
        for f in failures {
            let mut pel = f.prev.clone();
            pel.failures = pel.failures.saturating_add(1);
            g.meta.counters.failures += 1;
            match error {
                Some(e) => pel.last_error = Some(e.to_vec()),
                None if pel.last_error.is_none() => pel.last_error = Some(b"ack timeout".to_vec()),
                None => {}
            }
            if let Some(reason) = f.dead {
                match f.record {
                    Some(record) => self.dead_letter(
                        key,
                        group,
                        g,
                        &policy.dead_letter,
                        f.id,
                        record,
                        Some(&pel),
                        reason,
                    ),
                    None => self.remove_pending(g, f.id, &f.prev),
                }
                continue;
            }
            let wait = policy.backoff_after(pel.failures);
            pel.state = if wait == 0 {
                ready = true;
                PendingState::Ready
            } else {
                PendingState::RetryWait {
                    due_ms: now.saturating_add(wait),
                }
            };
            self.put_pending(g, f.id, &pel, Some(&f.prev));
        }
        if ready {
            self.events.push(Event::RetryReady {
                stream: key.clone(),
                group: group.to_vec(),
            });
        }
    }

    /// Processes the group's due index up to now: ack deadlines that passed become failures,
    /// retries whose backoff passed become ready.
    pub(crate) fn process_due(&mut self, key: &StreamKey, group: &[u8]) -> Result<()> {
        let now = self.now;
        let st = self.existing(key)?;
        let sid = st.meta.stream_id;
        let g = self.group(key, group)?;
        let Some(policy) = g.meta.policy.clone() else {
            return Ok(());
        };
        if g.due_floor_ms > now {
            return Ok(());
        }
        let gid = g.meta.group_id;
        let budget = self.cfg.limits.due_per_tick_max;
        let from = keys::due(gid, g.due_floor_ms, StreamId::MIN);
        let to = keys::due(gid, now, StreamId::MAX);
        let mut seen = Vec::new();
        let mut complete = true;
        for item in self.tx.range(&self.ks.due, from..=to) {
            if seen.len() >= budget {
                complete = false;
                break;
            }
            seen.push(due_key(&item.key()?, &key.name)?);
        }
        let mut failures = Vec::new();
        let mut now_ready = Vec::new();
        for &(t, id) in &seen {
            let Some(prev) = self.pending_entry(&key.name, gid, id)? else {
                continue;
            };
            if prev.due_ms() != Some(t) {
                continue; // stale key: the entry moved on
            }
            match prev.state {
                PendingState::Delivered { .. } => {
                    let dead = (prev.failures.saturating_add(1) >= policy.max_attempts)
                        .then_some(DeadReason::MaxAttempts);
                    let record = match dead {
                        Some(_) => self.get_record(key, sid, id)?,
                        None => None,
                    };
                    failures.push(Failure {
                        id,
                        prev,
                        record,
                        dead,
                    });
                }
                PendingState::RetryWait { .. } => now_ready.push((id, prev)),
                PendingState::Ready => {}
            }
        }
        let last_seen = seen.last().map(|s| s.0);
        self.with_group(key, group, |txn, _, g| {
            for &(t, id) in &seen {
                txn.tx.remove(&txn.ks.due, keys::due(gid, t, id));
            }
            if !now_ready.is_empty() {
                for (id, prev) in &now_ready {
                    let mut pel = prev.clone();
                    pel.state = PendingState::Ready;
                    txn.put_pending(g, *id, &pel, Some(prev));
                }
                txn.events.push(Event::RetryReady {
                    stream: key.clone(),
                    group: group.to_vec(),
                });
            }
            txn.apply_failures(key, group, g, &policy, failures, None);
            g.due_floor_ms = if complete {
                u64::MAX
            } else {
                last_seen.unwrap_or(now)
            };
        });
        if complete {
            // The next deadline: the first key after now (includes keys this call wrote).
            let from = keys::due(gid, now.saturating_add(1), StreamId::MIN);
            let to = keys::due(gid, u64::MAX, StreamId::MAX);
            let next = match self.tx.range(&self.ks.due, from..=to).next() {
                Some(item) => Some(due_key(&item.key()?, &key.name)?.0),
                None => None,
            };
            self.with_group(key, group, |_, _, g| {
                g.due_floor_ms = g.due_floor_ms.min(next.unwrap_or(u64::MAX));
            });
        }
        Ok(())
    }

    pub(crate) fn nack(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        ids: &[StreamId],
        error: Option<&[u8]>,
        reject: bool,
    ) -> Result<Reply> {
        let ids = unique_ids(ids, self.cfg.limits.ids_per_op_max)?;
        let g = self.group(key, group)?;
        let policy =
            match (&g.meta.policy, reject) {
                (Some(p), _) => p.clone(),
                (None, true) => DeliveryPolicy::default(),
                (None, false) => return Err(Error::InvalidArgument(
                    "the group has no delivery policy: set one with CX.POLICY to retry, or reject"
                        .into(),
                )),
            };
        let gid = g.meta.group_id;
        let sid = self.existing(key)?.meta.stream_id;
        let max = self.cfg.limits.error_text_max;
        let error = error.map(|e| &e[..e.len().min(max)]);
        let mut failures = Vec::new();
        for (id, prev) in self.pending_of(key, gid, &ids)? {
            let f = self.failure(key, sid, id, prev, &policy, reject, error)?;
            failures.push(f);
        }
        let n = failures.len() as u64;
        self.with_group(key, group, |txn, _, g| {
            txn.apply_failures(key, group, g, &policy, failures, error);
        });
        if n > 0 {
            self.events.push(crate::ops::Event::Nacked {
                stream: key.clone(),
                group: group.to_vec(),
                count: n,
            });
        }
        Ok(Reply::Count(n))
    }

    /// Drives time for every group whose deadline passed, expires idempotency keys and
    /// collects garbage. Returns the number of groups processed.
    pub(crate) fn tick(&mut self) -> Result<Reply> {
        let now = self.now;
        let mut keys_: Vec<StreamKey> = self.base.streams.keys().cloned().collect();
        keys_.extend(self.staged.keys().cloned());
        keys_.sort();
        keys_.dedup();
        let mut targets = Vec::new();
        let mut scheduled = Vec::new();
        for k in keys_ {
            if let Some(st) = self.stream(&k) {
                for (name, g) in &st.groups {
                    if g.meta.policy.is_some() && g.due_floor_ms <= now {
                        targets.push((k.clone(), name.clone()));
                    }
                    if !g.sched_due && g.sched_floor_ms <= now {
                        scheduled.push((k.clone(), name.clone()));
                    }
                }
            }
        }
        let n = (targets.len() + scheduled.len()) as u64;
        for (k, g) in targets {
            self.process_due(&k, &g)?;
            self.flush_dead_letters();
        }
        for (k, g) in scheduled {
            self.release_scheduled(&k, &g)?;
        }
        self.expire_idempotency()?;
        self.fail_overdue_tasks()?;
        self.expire_tasks()?;
        self.collect_garbage()?;
        Ok(Reply::Count(n))
    }

    fn expire_idempotency(&mut self) -> Result<()> {
        let window = self.cfg.idempotency_window_ms;
        let Some(cutoff) = self.now.checked_sub(window) else {
            return Ok(());
        };
        if self.sys.idem_floor_ms > cutoff {
            return Ok(());
        }
        let from = keys::idempotency_expiry(self.sys.idem_floor_ms, 0, b"");
        let to = keys::idempotency_expiry(cutoff.saturating_add(1), 0, b"");
        let budget = self.cfg.limits.gc_keys_per_tick_max;
        let mut expired = Vec::new();
        let mut complete = true;
        for item in self.tx.range(&self.ks.idem_exp, from..to) {
            if expired.len() >= budget {
                complete = false;
                break;
            }
            expired.push(item.key()?);
        }
        let mut floor = cutoff.saturating_add(1);
        for k in &expired {
            let Some((t, sid, ikey)) = keys::parse_idempotency_expiry(k) else {
                continue;
            };
            if let crate::idmp::Expiry::Done = self.idmp_expire(sid, ikey, t)? {
                if !complete {
                    floor = t;
                }
                continue;
            }
            let ik = keys::idempotency(sid, ikey);
            if let Some(v) = self.tx.get(&self.ks.idem, &ik)? {
                // A record that does not decode is removed too: it is past its window either way.
                let same = codec::decode::<IdempotencyRecord>(Kind::Idempotency, &v)
                    .map_or(true, |r| r.seen_ms == t);
                if same {
                    self.tx.remove(&self.ks.idem, ik);
                }
            }
            if !complete {
                floor = t;
            }
        }
        debug_assert!(
            self.sys.idem_keys >= expired.len() as u64,
            "idempotency key count underflow"
        );
        self.sys.idem_keys = self.sys.idem_keys.saturating_sub(expired.len() as u64);
        for k in expired {
            self.tx.remove(&self.ks.idem_exp, k);
        }
        if complete && self.sys.idem_keys > 0 {
            // Exact: the next sweep is due when the oldest key left expires, not a
            // millisecond from now (which ticked the store every millisecond while any key
            // was younger than the window).
            let from = keys::idempotency_expiry(floor, 0, b"");
            if let Some(first) = self.tx.range(&self.ks.idem_exp, from..).next() {
                if let Some((t, _, _)) = keys::parse_idempotency_expiry(&first.key()?) {
                    floor = t;
                }
            }
        }
        self.sys.idem_floor_ms = floor;
        Ok(())
    }
}

impl Store {
    /// When the broker must tick next, and which groups have retries waiting.
    pub fn due(&self, now_ms: u64) -> DueReport {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        let mut report = DueReport {
            next_deadline_ms: cat.next_deadline_ms(
                now_ms,
                self.cfg.idempotency_window_ms,
                self.cfg.limits.task_keep_ms,
            ),
            ready: Vec::new(),
        };
        for (k, st) in &cat.streams {
            for (name, g) in &st.groups {
                if g.meta.policy.is_some() && g.meta.ready > 0 {
                    report.ready.push((k.clone(), name.clone(), g.meta.ready));
                }
            }
        }
        report.ready.sort();
        report
    }
}
