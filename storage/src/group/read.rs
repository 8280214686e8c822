//! Group reads (XREADGROUP): history reads, and new entries handed out by lane with the
//! starvation guard, due retries first, expired and stale entries dead-lettered on the way.

use crate::error::{Error, Result};
use crate::id::{Lane, StreamId, StreamKey};
use crate::kernel::Txn;
use crate::keys::{self, due_key, key_id};
use crate::meta::{DeliveryPolicy, PendingEntry, DEFAULT_DLQ};
use crate::ops::{Delivery, ReadFrom, Reply};
use crate::overlay::View;
use crate::record::{DeadReason, Record};
use crate::stream::check_name;
use crate::task::{task_of, TaskEvent, TaskRef};

use super::lag::consume;
use super::lanes::LaneReader;
use super::Action;

/// The most a read reserves for its plan before it knows how much it hands out.
const PLAN_RESERVE_MAX: usize = 1024;

impl Txn<'_> {
    /// XREADGROUP over every stream of the op: validates all of them, then reads each.
    /// Checks a group read before anything is read: the consumer's name, how many streams,
    /// and that each has the group.
    pub(super) fn check_group_read<'k>(
        &self,
        streams: impl ExactSizeIterator<Item = &'k StreamKey>,
        group: &[u8],
        consumer: &[u8],
    ) -> Result<()> {
        check_name("consumer name", consumer, self.cfg.limits.group_name_max)?;
        let max = self.cfg.limits.streams_per_read_max;
        let n = streams.len();
        if n == 0 || n > max {
            return Err(Error::TooLarge {
                what: "number of streams in one read",
                len: n,
                max,
            });
        }
        for key in streams {
            self.group(key, group)?;
        }
        Ok(())
    }

    pub(crate) fn read_groups(
        &mut self,
        streams: &[(StreamKey, ReadFrom)],
        group: &[u8],
        consumer: &[u8],
        count: Option<usize>,
        noack: bool,
        retry: bool,
    ) -> Result<Reply> {
        self.check_group_read(streams.iter().map(|(k, _)| k), group, consumer)?;
        if retry
            && !streams
                .iter()
                .any(|(k, f)| self.may_hand_out(k, group, consumer, *f))
        {
            return Ok(Reply::GroupRead(vec![Vec::new(); streams.len()]));
        }
        let mut out = Vec::with_capacity(streams.len());
        for (key, from) in streams {
            let handed = self.read_group(key, group, consumer, count, noack, *from)?;
            out.push(handed.into_iter().map(|d| (d.id, d.record)).collect());
        }
        Ok(Reply::GroupRead(out))
    }

    /// [`crate::Op::Deliver`]: one stream's group read for a push consumer, with attempt
    /// numbers; writes nothing when nothing can be handed out.
    pub(crate) fn deliver(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
        from: ReadFrom,
        count: usize,
        noack: bool,
    ) -> Result<Reply> {
        check_name("consumer name", consumer, self.cfg.limits.group_name_max)?;
        self.group(key, group)?;
        if count == 0 || !self.may_hand_out(key, group, consumer, from) {
            return Ok(Reply::Delivered(Vec::new()));
        }
        let handed = self.read_group(key, group, consumer, Some(count), noack, from)?;
        Ok(Reply::Delivered(handed))
    }

    /// False when a read of the group certainly hands out nothing and changes nothing
    /// (judged from metadata alone: no retry ready or due, no lane with unread entries).
    fn may_hand_out(&self, key: &StreamKey, group: &[u8], consumer: &[u8], from: ReadFrom) -> bool {
        let Some(st) = self.stream(key) else {
            return true;
        };
        let Some(g) = st.groups.get(group) else {
            return true;
        };
        let Some(c) = g.consumers.get(consumer) else {
            return true;
        };
        match from {
            ReadFrom::History(_) => c.pending > 0,
            ReadFrom::New => {
                g.meta.ready > 0
                    || (g.meta.policy.is_some() && g.due_floor_ms <= self.now)
                    || g.sched_due
                    || g.sched_floor_ms <= self.now
                    || Lane::ALL
                        .iter()
                        .any(|&l| g.meta.cursor(l) < st.meta.lane_last[l.index()])
            }
        }
    }

    pub(super) fn read_group(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
        count: Option<usize>,
        noack: bool,
        from: ReadFrom,
    ) -> Result<Vec<Delivery>> {
        let max = self.cfg.limits.read_count_max;
        let count = count.unwrap_or(max).min(max);
        let now = self.now;
        let cid = self
            .with_group(key, group, |txn, _, g| {
                let known = g.consumers.contains_key(consumer);
                txn.consumers_created += u64::from(!known);
                Self::ensure_consumer(g, consumer, now)
            })
            .unwrap_or(0);
        match from {
            ReadFrom::History(after) => self.read_history(key, group, cid, after, count),
            ReadFrom::New => {
                self.process_due(key, group)?;
                self.read_new(key, group, cid, count, noack)
            }
        }
    }

    fn read_history(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        cid: u64,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<Delivery>> {
        let (sid, gid) = {
            let st = self.existing(key)?;
            (
                st.meta.stream_id,
                st.groups.get(group).map_or(0, |g| g.meta.group_id),
            )
        };
        let mut out = Vec::new();
        let mut plan = Vec::new();
        if let Some(start) = after.next() {
            for id in self.owned_ids(&key.name, gid, cid, start, count)? {
                let record = self.get_record(key, sid, id)?;
                let mut attempt = 0;
                if record.is_some() {
                    if let Some(pel) = self.pending_entry(&key.name, gid, id)? {
                        attempt = attempt_of(pel.deliveries + 1);
                        plan.push((id, pel));
                    }
                }
                out.push(Delivery {
                    id,
                    record,
                    attempt,
                });
            }
        }
        let now = self.now;
        self.with_group(key, group, |txn, _, g| {
            if !out.is_empty() {
                if let Some(c) = g.consumer_by_id_mut(cid) {
                    c.active_ms = Some(now);
                }
            }
            let state = txn.delivered_state(g.meta.policy.as_ref());
            for (id, prev) in plan {
                let mut pel = prev.clone();
                pel.deliveries += 1;
                pel.delivered_ms = now;
                pel.state = state;
                g.meta.counters.redelivered += 1;
                txn.put_pending(g, id, &pel, Some(&prev));
            }
        });
        Ok(out)
    }

    /// Why an entry may no longer be handed out, if it may not. A scheduled entry's age
    /// counts from its delivery time.
    fn freshness(
        policy: Option<&DeliveryPolicy>,
        id: StreamId,
        record: &Record,
        now: u64,
    ) -> Option<DeadReason> {
        if record.is_expired(now) {
            return Some(DeadReason::Expired);
        }
        let max_age = policy.and_then(|p| p.max_age_ms)?;
        (now.saturating_sub(born_ms(id, record)) > max_age).then_some(DeadReason::Stale)
    }

    fn read_new(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        cid: u64,
        count: usize,
        noack: bool,
    ) -> Result<Vec<Delivery>> {
        let now = self.now;
        let limits = &self.cfg.limits;
        let dl_max = limits.dead_letters_per_read_max;
        let guard = self.cfg.starvation_guard;
        let st = self.existing(key)?;
        let sid = st.meta.stream_id;
        let g = st.groups.get(group).ok_or_else(|| Error::NoSuchGroup {
            stream: key.name.clone(),
            group: group.to_vec(),
        })?;
        let gid = g.meta.group_id;
        let policy = g.meta.policy.clone();
        let mut streak = g.meta.streak;
        let rewound_below = g.meta.rewound_below;
        // Sized for a usual read up front (it grew a dozen times, copying, for 100 entries);
        // `count` itself is the client's and may be large.
        let mut plan: Vec<Action> = Vec::with_capacity(count.min(PLAN_RESERVE_MAX));
        let mut handed = 0usize;
        let mut dead = 0usize;

        // 1. Retries that are due (only groups with a policy have any).
        if g.meta.ready > 0 && count > 0 {
            let from = keys::id_key(gid, g.ready_floor);
            let to = keys::id_key(gid, StreamId::MAX);
            let ids: Vec<StreamId> = self
                .tx
                .range(&self.ks.ready, from..=to)
                .take(count)
                .map(|g| key_id(&g.key()?, "ready key", &key.name))
                .collect::<Result<_>>()?;
            for id in ids {
                let Some(pel) = self.pending_entry(&key.name, gid, id)? else {
                    continue;
                };
                match self.get_record(key, sid, id)? {
                    None => plan.push(Action::Drop { id, pel }),
                    Some(record) => match Self::freshness(policy.as_ref(), id, &record, now) {
                        Some(reason) if dead < dl_max => {
                            dead += 1;
                            plan.push(Action::DeadLetter {
                                id,
                                lane: record.meta.lane,
                                record,
                                pel: Some(pel),
                                reason,
                                parked: false,
                            });
                        }
                        Some(_) => {}
                        None => {
                            handed += 1;
                            plan.push(Action::Redeliver { id, pel, record });
                        }
                    },
                }
            }
        }

        // 2. Entries set aside until their delivery time, now due (the first SCHED_SCAN_MAX
        //    by time), highest lane first: merged with the new entries below by lane.
        let mut parked = std::collections::VecDeque::new();
        if g.sched_due || g.sched_floor_ms <= now {
            let from = keys::sched(gid, g.sched_floor_ms, StreamId::MIN);
            let to = keys::sched(gid, now, StreamId::MAX);
            let mut due = Vec::new();
            for item in self
                .tx
                .range(&self.ks.sched, from..=to)
                .take(SCHED_SCAN_MAX)
            {
                let (k, v) = item.into_inner()?;
                let (at, id) = due_key(&k, &key.name)?;
                let lane = v
                    .first()
                    .and_then(|&l| Lane::from_index(usize::from(l)))
                    .unwrap_or_default();
                due.push((lane.index(), at, id));
            }
            due.sort_unstable();
            parked.extend(due);
        }

        // 3. New entries, highest lane first, with the starvation guard.
        let scan_budget = count.saturating_add(10_000);
        let mut readers: Vec<LaneReader> = Lane::ALL
            .iter()
            .map(|&l| {
                LaneReader::new(
                    l,
                    g.meta.cursor(l),
                    st.meta.lane_last[l.index()],
                    scan_budget,
                )
            })
            .collect();
        while handed < count && dead < dl_max {
            let want = count - handed;
            let mut heads = [None; 5];
            for (i, r) in readers.iter_mut().enumerate() {
                heads[i] = r.peek(&self.tx, self.ks, &key.name, sid, want)?;
            }
            let top = heads.iter().position(Option::is_some);
            // A due set-aside entry goes before new entries of its own lane or lower ones.
            if let Some(&(pl, at, id)) = parked.front() {
                if top.is_none_or(|t| pl <= t) {
                    parked.pop_front();
                    plan.push(Action::Unpark { id, at });
                    let Some(record) = self.get_record(key, sid, id)? else {
                        continue;
                    };
                    let lane = record.meta.lane;
                    if self.task_canceled(&record.meta)? {
                        continue;
                    }
                    if let Some(reason) = Self::freshness(policy.as_ref(), id, &record, now) {
                        dead += 1;
                        plan.push(Action::DeadLetter {
                            id,
                            lane,
                            record,
                            pel: None,
                            reason,
                            parked: true,
                        });
                        continue;
                    }
                    handed += 1;
                    plan.push(Action::Deliver {
                        id,
                        lane,
                        record,
                        existing: None,
                        parked: true,
                    });
                    continue;
                }
            }
            let Some(top) = top else {
                break;
            };
            let oldest_lower = (top + 1..5)
                .filter_map(|i| heads[i].map(|id| (id, i)))
                .min()
                .map(|(_, i)| i);
            let pick = match oldest_lower {
                Some(lower) if guard > 0 && streak >= guard => {
                    streak = 0;
                    lower
                }
                Some(_) => {
                    streak += 1;
                    top
                }
                None => {
                    streak = 0;
                    top
                }
            };
            let Some((id, record, _)) = readers[pick].buf.pop_front() else {
                break;
            };
            let lane = readers[pick].lane;
            if let Some(at) = record.meta.deliver_at_ms().filter(|&t| t > now) {
                plan.push(Action::Park { id, lane, at });
                continue;
            }
            if self.task_canceled(&record.meta)? {
                plan.push(Action::Pass { id, lane });
                continue;
            }
            if let Some(reason) = Self::freshness(policy.as_ref(), id, &record, now) {
                dead += 1;
                plan.push(Action::DeadLetter {
                    id,
                    lane,
                    record,
                    pel: None,
                    reason,
                    parked: false,
                });
                continue;
            }
            let existing = if !noack && id <= rewound_below {
                self.pending_entry(&key.name, gid, id)?
            } else {
                None
            };
            handed += 1;
            plan.push(Action::Deliver {
                id,
                lane,
                record,
                existing,
                parked: false,
            });
        }
        let normal_skip = readers[Lane::Normal.index()].consumed_to();

        // 4. Apply the plan.
        let mut out = Vec::with_capacity(handed);
        let mut ages_ms = Vec::new();
        let mut unparked = false;
        let mut holder_changes: Vec<(Vec<u8>, u32)> = Vec::new();
        self.with_group(key, group, |txn, m, g| {
            let state = txn.delivered_state(g.meta.policy.as_ref());
            let dlq = policy
                .as_ref()
                .map_or(DEFAULT_DLQ.to_vec(), |p| p.dead_letter.clone());
            for action in plan {
                match action {
                    Action::Deliver {
                        id,
                        lane,
                        record,
                        existing,
                        parked,
                    } => {
                        if !parked {
                            consume(m, &mut g.meta, id, lane);
                        }
                        g.meta.counters.delivered += 1;
                        ages_ms.push(now.saturating_sub(born_ms(id, &record)));
                        if !noack {
                            let pel = PendingEntry {
                                consumer_id: cid,
                                delivered_ms: now,
                                deliveries: 1,
                                failures: 0,
                                state,
                                last_error: None,
                            };
                            txn.put_pending(g, id, &pel, existing.as_ref());
                        }
                        if let Some(t) = task_of(&record.meta) {
                            holder_changes.push((t.to_vec(), 1));
                        }
                        out.push(Delivery {
                            id,
                            record: Some(record),
                            attempt: 1,
                        });
                    }
                    Action::Redeliver {
                        id,
                        pel: prev,
                        record,
                    } => {
                        let mut pel = prev.clone();
                        pel.consumer_id = cid;
                        pel.deliveries += 1;
                        pel.delivered_ms = now;
                        pel.state = state;
                        g.meta.counters.redelivered += 1;
                        txn.put_pending(g, id, &pel, Some(&prev));
                        if let Some(t) = task_of(&record.meta) {
                            holder_changes.push((t.to_vec(), attempt_of(pel.deliveries)));
                        }
                        out.push(Delivery {
                            id,
                            record: Some(record),
                            attempt: attempt_of(pel.deliveries),
                        });
                    }
                    Action::Drop { id, pel } => txn.remove_pending(g, id, &pel),
                    Action::Pass { id, lane } => consume(m, &mut g.meta, id, lane),
                    Action::Park { id, lane, at } => {
                        consume(m, &mut g.meta, id, lane);
                        let gid = g.meta.group_id;
                        let lane_byte = [lane.index() as u8];
                        txn.tx
                            .insert(&txn.ks.sched, keys::sched(gid, at, id), lane_byte);
                        g.sched_floor_ms = g.sched_floor_ms.min(at);
                    }
                    Action::Unpark { id, at } => {
                        let gid = g.meta.group_id;
                        txn.tx.remove(&txn.ks.sched, keys::sched(gid, at, id));
                        unparked = true;
                    }
                    Action::DeadLetter {
                        id,
                        lane,
                        record,
                        pel,
                        reason,
                        parked,
                    } => {
                        if pel.is_none() && !parked {
                            consume(m, &mut g.meta, id, lane);
                        }
                        txn.dead_letter(key, group, g, &dlq, id, record, pel.as_ref(), reason);
                    }
                }
            }
            if let Some(skip) = normal_skip {
                let c = &mut g.meta.lane_cursor[Lane::Normal.index()];
                if skip > *c {
                    *c = skip;
                }
            }
            g.meta.streak = streak;
            if !out.is_empty() {
                if let Some(c) = g.consumer_by_id_mut(cid) {
                    c.active_ms = Some(now);
                }
            }
        });
        if unparked {
            self.settle_sched_floor(key, group, gid)?;
        }
        if !holder_changes.is_empty() {
            let consumer = self
                .group(key, group)?
                .names
                .get(&cid)
                .cloned()
                .unwrap_or_default();
            for (task, attempt) in holder_changes {
                self.task_touch(
                    TaskRef::Id(task),
                    TaskEvent::Delivered {
                        group: group.to_vec(),
                        consumer: consumer.clone(),
                        attempt,
                    },
                );
            }
        }
        if !ages_ms.is_empty() {
            self.events.push(crate::ops::Event::Delivered {
                stream: key.clone(),
                group: group.to_vec(),
                ages_ms,
            });
        }
        Ok(out)
    }
}

/// Most due set-aside entries one group read looks at to pick the highest lanes.
const SCHED_SCAN_MAX: usize = 4096;

/// When an entry became deliverable: its delivery time if it was scheduled, else its ID's.
fn born_ms(id: StreamId, record: &Record) -> u64 {
    record.meta.deliver_at_ms().map_or(id.ms, |t| t.max(id.ms))
}

impl Txn<'_> {
    /// After set-aside entries left the index: the floor becomes the first one left (the
    /// tick comes at once if that one is due already), and nothing is marked due.
    fn settle_sched_floor(&mut self, key: &StreamKey, group: &[u8], gid: u64) -> Result<()> {
        let floor = self.group(key, group)?.sched_floor_ms;
        let from = keys::sched(gid, floor, StreamId::MIN);
        let to = keys::sched(gid, u64::MAX, StreamId::MAX);
        let first = match self.tx.range(&self.ks.sched, from..=to).next() {
            Some(item) => Some(due_key(&item.key()?, &key.name)?.0),
            None => None,
        };
        self.with_group(key, group, |_, _, g| {
            g.sched_floor_ms = first.unwrap_or(u64::MAX);
            g.sched_due = false;
        });
        Ok(())
    }

    /// The tick's part: a group whose first set-aside entry is due is marked so (no more
    /// ticks for it until a read takes them) and its readers are woken.
    pub(crate) fn release_scheduled(&mut self, key: &StreamKey, group: &[u8]) -> Result<()> {
        let now = self.now;
        let g = self.group(key, group)?;
        if g.sched_due || g.sched_floor_ms > now {
            return Ok(());
        }
        let gid = g.meta.group_id;
        let from = keys::sched(gid, g.sched_floor_ms, StreamId::MIN);
        let to = keys::sched(gid, now, StreamId::MAX);
        let first = match self.tx.range(&self.ks.sched, from..=to).next() {
            Some(item) => Some(due_key(&item.key()?, &key.name)?.0),
            None => None,
        };
        self.with_group(key, group, |txn, _, g| match first {
            Some(t) => {
                g.sched_floor_ms = t;
                g.sched_due = true;
                txn.events.push(crate::ops::Event::RetryReady {
                    stream: key.clone(),
                    group: group.to_vec(),
                });
            }
            // Nothing due after all (cannot happen while the floor is exact): move on.
            None => g.sched_floor_ms = now.saturating_add(1),
        });
        Ok(())
    }
}

/// A pending entry's delivery count as an attempt number (saturating).
fn attempt_of(deliveries: u64) -> u32 {
    u32::try_from(deliveries).unwrap_or(u32::MAX)
}
