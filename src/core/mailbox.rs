//! Mailboxes: delivery inside the commit.
//!
//! A push subscription registers a [`Mailbox`] (stream, group, consumer, credit). When the
//! writer builds a batch that appends to a stream with armed mailboxes that have credit, it
//! adds an [`Op::Deliver`] for each to the same batch ([`plan`]): the new entries are
//! recorded as pending and handed out by the commit, and the one fsync, that made them
//! durable. After the commit the writer hands each mailbox its deliveries ([`Mailbox::
//! settle_read`]); the subscription pushes them without another round through the writer.
//!
//! Credit is counted here, under one lock, for both kinds of reads (the writer's and the
//! subscription's own): `window - in flight - reserved`, where `reserved` is what reads
//! not yet answered may hand out. So a window is never overrun, whoever reads.
//!
//! A mailbox is *armed* once its subscription has replayed the consumer's own pending
//! entries. An armed mailbox ignores wake-ups for appends its node's writer planned reads
//! for (every batch on a single node; in a cluster, the entries this node proposed as
//! leader, whose mailbox reads go last): an append either reached it in its commit, or
//! found it without credit (`missed`, read when credit comes back). Everything else (an
//! entry another node built, due retries, a deleted stream or group, a rename, a failed
//! commit) marks it `stale`: the subscription reads by itself, as a blocked reader would.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cortex_storage::{Delivery, Error as StoreError, Op, ReadFrom, StreamId, StreamKey};
use tokio::sync::Notify;

use serde::{Deserialize, Serialize};

/// Numbers mailboxes within a process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// `known_from` of a mailbox no announcement listed yet.
const NOT_ANNOUNCED: u64 = u64::MAX;

/// Most entries one read (the writer's or the subscription's) hands a mailbox.
pub const READ_MAX: u32 = 256;

/// One push consumer's mailbox.
pub struct Mailbox {
    /// Its number in this process (announcements name it by this).
    pub id: u64,
    /// The first announcement that listed it armed ([`NOT_ANNOUNCED`]: none yet).
    known_from: AtomicU64,
    /// Woken when the other nodes should hear of it again (armed, or room came back);
    /// `None` on a single node.
    announce: Option<Arc<Notify>>,
    /// Stream.
    pub stream: StreamKey,
    /// Group.
    pub group: Vec<u8>,
    /// Consumer.
    pub consumer: Vec<u8>,
    /// Deliveries need no ack (nothing is in flight).
    pub noack: bool,
    /// Woken when deliveries arrived, the mailbox became stale, or credit came back.
    pub notify: Notify,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    window: u32,
    noack: bool,
    in_flight: HashSet<StreamId>,
    /// Credit taken by reads not answered yet.
    reserved: u32,
    armed: bool,
    /// Read by yourself: something besides an append happened, or an earlier read failed.
    stale: bool,
    /// Entries may wait that no read took (an append found no credit, or a read filled
    /// what it asked for): read once there is room.
    missed: bool,
    /// Handed out by the writer, not yet taken by the subscription.
    got: Vec<Delivery>,
    /// The writer's read was refused (the group is gone).
    failed: Option<StoreError>,
    /// The entries other nodes' leaders asked for it that were applied here (a running
    /// total: see [`MailboxAd::applied`]).
    applied: u64,
    /// The room the last announcement showed.
    announced_room: u32,
    /// Tasks canceled while the consumer held them (task ID, entry), for the subscription
    /// to tell before anything else.
    canceled: Vec<(Vec<u8>, StreamId)>,
}

impl State {
    fn room(&self) -> u32 {
        // With NOACK nothing is in flight: the buffer is what bounds memory.
        let used = if self.noack {
            self.got.len()
        } else {
            self.in_flight.len()
        };
        self.window
            .saturating_sub(used.min(u32::MAX as usize) as u32)
            .saturating_sub(self.reserved)
    }

    /// Entries that may wait are read once there is room; true when the owner must be
    /// woken for that.
    fn recheck(&mut self) -> bool {
        if self.missed && self.room() > 0 {
            self.missed = false;
            self.stale = true;
            return true;
        }
        false
    }

    /// A read that reserved `asked` answered.
    fn answered(&mut self, asked: u32, got: &[Delivery]) {
        self.reserved = self.reserved.saturating_sub(asked);
        if !self.noack {
            self.in_flight
                .extend(got.iter().filter(|d| d.record.is_some()).map(|d| d.id));
        }
        if asked > 0 && got.len() as u32 >= asked {
            self.missed = true;
        }
    }
}

impl Mailbox {
    /// A mailbox with a window; not armed yet.
    pub fn new(
        stream: StreamKey,
        group: Vec<u8>,
        consumer: Vec<u8>,
        noack: bool,
        window: u32,
        announce: Option<Arc<Notify>>,
    ) -> Mailbox {
        Mailbox {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            known_from: AtomicU64::new(NOT_ANNOUNCED),
            announce,
            stream,
            group,
            consumer,
            noack,
            notify: Notify::new(),
            state: Mutex::new(State {
                window,
                noack,
                stale: true,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The op that reads for this mailbox.
    pub fn op(&self, from: ReadFrom, count: u32) -> Op {
        Op::Deliver {
            stream: self.stream.clone(),
            group: self.group.clone(),
            consumer: self.consumer.clone(),
            from,
            count: count as usize,
            noack: self.noack,
        }
    }

    /// Room in the window (reads in progress count as used).
    pub fn room(&self) -> u32 {
        self.state().room()
    }

    /// Deliveries in flight.
    pub fn in_flight(&self) -> u32 {
        self.state().in_flight.len().min(u32::MAX as usize) as u32
    }

    /// The window.
    pub fn window(&self) -> u32 {
        self.state().window
    }

    /// Sets the window (0 pauses delivery).
    pub fn set_window(&self, window: u32) {
        let mut s = self.state();
        s.window = window;
        s.missed = true;
        s.recheck();
        drop(s);
        self.notify.notify_one();
    }

    /// The writer may serve this mailbox from now on.
    pub fn arm(&self) {
        self.state().armed = true;
        if let Some(a) = &self.announce {
            a.notify_one();
        }
    }

    /// The writer no longer serves this mailbox. Returns the credit still reserved by reads
    /// in progress (their commits hand their entries over here).
    pub fn disarm(&self) -> u32 {
        let mut s = self.state();
        s.armed = false;
        s.reserved
    }

    /// Takes the deliveries the writer handed over, as many as the window has room for
    /// (another node's leader may have planned from a room that was already taken: the
    /// rest wait here, pending, for acks), and its failure if it had one.
    pub fn take(&self) -> (Vec<Delivery>, Option<StoreError>) {
        let mut s = self.state();
        let failed = s.failed.take();
        if s.noack {
            return (std::mem::take(&mut s.got), failed);
        }
        let pushed = s.in_flight.len().saturating_sub(s.got.len());
        let free = (s.window as usize).saturating_sub(pushed);
        if free >= s.got.len() {
            return (std::mem::take(&mut s.got), failed);
        }
        let rest = s.got.split_off(free);
        (std::mem::replace(&mut s.got, rest), failed)
    }

    /// A task the consumer holds was canceled (its commit is being applied): the entry left
    /// the pending list, so it leaves the window; a delivery of it not yet taken is dropped;
    /// the subscription is woken to tell the consumer before anything else it takes.
    pub fn cancel(&self, task: Vec<u8>, id: StreamId) {
        let mut s = self.state();
        s.in_flight.remove(&id);
        s.got.retain(|d| d.id != id);
        s.canceled.push((task, id));
        drop(s);
        self.notify.notify_one();
    }

    /// Takes the cancel signals that came (see [`Mailbox::cancel`]).
    pub fn take_canceled(&self) -> Vec<(Vec<u8>, StreamId)> {
        std::mem::take(&mut self.state().canceled)
    }

    /// What the other nodes hear of it: `None` unless armed. Remembers the room it told,
    /// so [`Mailbox::settle`] knows when to tell again.
    pub fn ad(&self) -> Option<MailboxAd> {
        let mut s = self.state();
        if !s.armed {
            return None;
        }
        s.announced_room = s.room();
        Some(MailboxAd {
            id: self.id,
            ns: self.stream.ns,
            stream: self.stream.name.clone(),
            group: self.group.clone(),
            consumer: self.consumer.clone(),
            noack: self.noack,
            room: s.announced_room,
            applied: s.applied,
        })
    }

    /// Records that announcement `seq` listed it (the first one counts).
    pub fn announced(&self, seq: u64) {
        let _ = self.known_from.compare_exchange(
            NOT_ANNOUNCED,
            seq,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Takes "read by yourself" and, when set, reserves room for the read. `None`: no read
    /// is due (or no room for one).
    pub fn own_read(&self) -> Option<u32> {
        let mut s = self.state();
        let n = s.room().min(READ_MAX);
        if !s.stale || n == 0 {
            return None;
        }
        s.stale = false;
        s.reserved += n;
        Some(n)
    }

    /// Reserves all the room for a read that stands for "read by yourself" (a blocked
    /// reader's first attempt): an append meanwhile finds no credit and is read after it.
    pub fn reserve_all(&self) -> u32 {
        let mut s = self.state();
        let n = s.room();
        s.stale = false;
        s.reserved += n;
        n
    }

    /// Reserves room for a history read (the subscription replays its pending entries).
    pub fn reserve(&self) -> u32 {
        let mut s = self.state();
        let n = s.room().min(READ_MAX);
        s.reserved += n;
        n
    }

    /// The answer to the subscription's own read that reserved `asked` (it pushes what the
    /// read returned itself). A read that filled what it asked for may have left more
    /// behind, and an append committed while the read held the credit found none (both
    /// `missed`): the mailbox reads again when it has room, and its subscription is woken
    /// for that (it waits next, having pushed what this read returned).
    pub fn settle_read(&self, asked: u32, got: Result<&[Delivery], ()>) {
        let mut s = self.state();
        match got {
            Ok(got) => s.answered(asked, got),
            Err(()) => {
                s.reserved = s.reserved.saturating_sub(asked);
                s.stale = true;
            }
        }
        let wake = s.recheck();
        drop(s);
        if wake {
            self.notify.notify_one();
        }
    }

    /// The writer's read, answered by its commit: the deliveries wait here for the
    /// subscription, which is woken. A failed commit hands nothing out: the subscription
    /// reads by itself. `remote`: another node's leader planned it (`asked` 0: it had no
    /// credit for this mailbox, which reads by itself once it has room).
    pub fn deliver(
        &self,
        asked: u32,
        got: Result<Vec<Delivery>, Option<StoreError>>,
        remote: bool,
    ) {
        self.deliver_unwoken(asked, got, remote);
        self.notify.notify_one();
    }

    /// [`Mailbox::deliver`] without waking the subscription: the caller wakes it (the
    /// writer thread, through the relay, once it has handed over the whole commit).
    pub fn deliver_unwoken(
        &self,
        asked: u32,
        got: Result<Vec<Delivery>, Option<StoreError>>,
        remote: bool,
    ) {
        let mut s = self.state();
        if remote {
            s.applied += u64::from(asked);
            if asked == 0 {
                s.missed = true;
            }
        }
        match got {
            Ok(got) => {
                s.answered(asked, &got);
                s.got.extend(got);
            }
            Err(e) => {
                s.reserved = s.reserved.saturating_sub(asked);
                s.stale = true;
                if e.is_some() {
                    s.failed = e;
                }
            }
        }
        s.recheck();
    }

    /// Deliveries acked or failed leave the window; the owner is woken when a read is due
    /// now that there is room.
    pub fn settle(&self, ids: &[StreamId]) {
        let mut s = self.state();
        let before = s.room();
        for id in ids {
            s.in_flight.remove(id);
        }
        let wake = s.recheck() || (before == 0 && s.room() > 0 && s.stale);
        let tell = s.armed && s.room() >= s.announced_room + (s.window / 4).max(1);
        drop(s);
        if wake {
            self.notify.notify_one();
        }
        if tell {
            if let Some(a) = &self.announce {
                a.notify_one();
            }
        }
    }

    /// A wake-up from the notifier. Appends a leader planned this mailbox's reads for do
    /// not concern it once armed (the commit served it, or marked it `missed`):
    /// `covered` is `Some(u64::MAX)` when this node's writer planned the batch, `Some(seq)`
    /// when another node's leader planned it from this node's announcement `seq` (so it
    /// knew this mailbox if an announcement up to `seq` listed it). Everything else makes
    /// it read by itself.
    pub fn wake(&self, covered: Option<u64>) {
        let known =
            covered.is_some_and(|c| c == u64::MAX || self.known_from.load(Ordering::Acquire) <= c);
        let mut s = self.state();
        if known && s.armed {
            return;
        }
        s.stale = true;
        drop(s);
        self.notify.notify_one();
    }

    /// Reserves credit for the writer's read of up to `appended + 1` entries (one more
    /// than the batch appends, so a read that returns less than it asked for proves there
    /// is nothing left). `None` when not armed; marks an armed mailbox without room as
    /// having missed the append.
    fn reserve_for(&self, appended: u32) -> Option<u32> {
        let mut s = self.state();
        if !s.armed {
            return None;
        }
        let n = s.room().min(appended.saturating_add(1)).min(READ_MAX);
        if n == 0 {
            s.missed = true;
            return None;
        }
        s.reserved += n;
        Some(n)
    }
}

/// A read the writer added to a batch for a mailbox.
pub struct Planned {
    /// Whose.
    pub mailbox: Arc<Mailbox>,
    /// The credit it reserved.
    pub asked: u32,
}

/// The leader's credit for other nodes' mailboxes: per mailbox, the running total of
/// entries its reads asked for. A mailbox's credit is the room it announced less what was
/// asked since (the asks it had not applied when it announced).
#[derive(Default)]
pub struct RemoteCredit {
    asked: Mutex<HashMap<(u64, u64, u64), u64>>,
}

impl RemoteCredit {
    /// Reserves up to `want` of a remote mailbox's credit; returns what it got.
    fn reserve(&self, m: &RemoteMailbox, want: u32) -> u32 {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        let total = asked
            .entry((m.node, m.run, m.ad.id))
            .or_insert(m.ad.applied);
        if *total < m.ad.applied {
            *total = m.ad.applied;
        }
        let outstanding = (*total - m.ad.applied).min(u64::from(u32::MAX)) as u32;
        let n = m.ad.room.saturating_sub(outstanding).min(want);
        *total += u64::from(n);
        n
    }
}

impl RemoteCredit {
    /// Forgets the mailboxes `live` no longer lists (so the map holds at most the live
    /// announcements' mailboxes).
    pub fn retain(&self, live: impl Fn(u64, u64, u64) -> bool) {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        asked.retain(|&(node, run, id), _| live(node, run, id));
    }
}

/// The mailbox reads a leader added to one batch.
#[derive(Default)]
pub struct Plan {
    /// The batch appends (without appends there is nothing to plan or to mark).
    pub appends: bool,
    /// For this node's mailboxes.
    pub local: Vec<Planned>,
    /// For other nodes' mailboxes, per node: (node, run, announcement, ops), the ops
    /// already at the end of the batch in this order, after the local ones.
    pub remote: Vec<(u64, u64, u64, usize)>,
}

/// A mailbox a plan may serve: this node's, or another node's as announced.
enum Target {
    Local(Arc<Mailbox>),
    Remote(RemoteMailbox),
}

impl Target {
    fn group(&self) -> &[u8] {
        match self {
            Target::Local(m) => &m.group,
            Target::Remote(r) => &r.ad.group,
        }
    }
}

/// The writer's part: for a batch's ops, the mailboxes to serve in the same commit and
/// their reads (appended to `ops`, after everything else: this node's first, then each
/// other node's). `local(stream)` lists this node's live mailboxes of a stream,
/// `remote(stream)` the other nodes' (a cluster leader; `nodes` lists every node with
/// mailboxes, so each gets its run of ops, empty or not, and knows it was considered).
/// Within one group, the batch's appends are shared out among its mailboxes in turn, so
/// each new entry is asked for by one consumer. Another node's mailbox without credit gets
/// a read of 0 entries, which tells it to read by itself once it has room.
pub fn plan(
    ops: &mut Vec<Op>,
    local: impl Fn(&StreamKey) -> Vec<Arc<Mailbox>>,
    remote: impl Fn(&StreamKey) -> Vec<RemoteMailbox>,
    nodes: &[(u64, u64, u64)],
    credit: &RemoteCredit,
) -> Plan {
    // Appends per stream: runs counted as they come (a batch's appends are mostly to one
    // stream, which then costs no hashing or sorting), then sorted and merged. Callgrind:
    // a hash map here was 350 instructions per unpipelined XADD.
    let mut appended: Vec<(&StreamKey, u32)> = Vec::new();
    for op in ops.iter() {
        if let Op::Append { stream, .. } = op {
            match appended.last_mut() {
                Some((s, n)) if *s == stream => *n += 1,
                _ => appended.push((stream, 1)),
            }
        }
    }
    if appended.len() > 1 {
        appended.sort_unstable_by(|a, b| a.0.cmp(b.0));
        appended.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
    }
    let mut plan = Plan {
        appends: !appended.is_empty(),
        ..Plan::default()
    };
    if !plan.appends {
        return plan;
    }
    // Per node: its run, the oldest announcement planned from, its reads.
    let mut remote_ops: HashMap<u64, (u64, u64, Vec<Op>)> = HashMap::new();
    for &(node, run, seq) in nodes {
        remote_ops.insert(node, (run, seq, Vec::new()));
    }
    for (stream, n) in appended {
        let mut left: HashMap<Vec<u8>, u32> = HashMap::new();
        let targets = local(stream)
            .into_iter()
            .map(Target::Local)
            .chain(remote(stream).into_iter().map(Target::Remote));
        for t in targets {
            let left = left.entry(t.group().to_vec()).or_insert(n);
            match t {
                Target::Local(mb) => {
                    if *left == 0 {
                        // Its group's other mailboxes asked for every entry of the batch.
                        continue;
                    }
                    if let Some(asked) = mb.reserve_for(*left) {
                        *left = left.saturating_sub(asked);
                        plan.local.push(Planned { mailbox: mb, asked });
                    }
                }
                Target::Remote(r) => {
                    let e = remote_ops
                        .entry(r.node)
                        .or_insert((r.run, r.seq, Vec::new()));
                    if e.0 != r.run {
                        // The node restarted between the two looks: plan nothing for it.
                        continue;
                    }
                    let want = if *left == 0 {
                        // Its group's other mailboxes asked for every entry of the batch.
                        continue;
                    } else {
                        left.saturating_add(1).min(READ_MAX)
                    };
                    let asked = credit.reserve(&r, want);
                    *left = left.saturating_sub(asked);
                    e.1 = e.1.min(r.seq);
                    e.2.push(Op::Deliver {
                        stream: StreamKey::new(r.ad.ns, r.ad.stream.clone()),
                        group: r.ad.group,
                        consumer: r.ad.consumer,
                        from: ReadFrom::New,
                        count: asked as usize,
                        noack: r.ad.noack,
                    });
                }
            }
        }
    }
    for p in &plan.local {
        ops.push(p.mailbox.op(ReadFrom::New, p.asked));
    }
    let mut remote_ops: Vec<_> = remote_ops.into_iter().collect();
    remote_ops.sort_unstable_by_key(|(node, _)| *node);
    for (node, (run, seq, mine)) in remote_ops {
        plan.remote.push((node, run, seq, mine.len()));
        ops.extend(mine);
    }
    plan
}

/// An armed push mailbox on the announcing node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MailboxAd {
    /// Its number on that node (within the run).
    pub id: u64,
    /// Stream namespace.
    pub ns: u16,
    /// Stream name.
    pub stream: Vec<u8>,
    /// Group.
    pub group: Vec<u8>,
    /// Consumer.
    pub consumer: Vec<u8>,
    /// Deliveries need no ack.
    pub noack: bool,
    /// Room in its window when announced.
    pub room: u32,
    /// The entries the leaders' planned reads asked for it that it had applied when
    /// announced (a running total).
    pub applied: u64,
}

/// A mailbox on another node, as its latest live announcement shows it.
#[derive(Clone, Debug)]
pub struct RemoteMailbox {
    /// The node.
    pub node: u64,
    /// Its run.
    pub run: u64,
    /// The announcement's sequence number.
    pub seq: u64,
    /// The mailbox.
    pub ad: MailboxAd,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An armed mailbox with a window of 4, as a new subscription's after its replay.
    fn armed() -> Mailbox {
        armed_on("s", 4)
    }

    /// An armed mailbox of stream `stream` with a window of `window`.
    fn armed_on(stream: &str, window: u32) -> Mailbox {
        let m = Mailbox::new(
            StreamKey::new(0, stream),
            b"g".to_vec(),
            b"c".to_vec(),
            false,
            window,
            None,
        );
        m.arm();
        m
    }

    /// A batch's appends are counted per stream, wherever in the batch they are: each
    /// stream's mailbox asks for what its stream got, and a stream with none for nothing.
    #[test]
    fn a_batch_asks_each_stream_for_its_own_appends() {
        let boxes: Vec<Arc<Mailbox>> = [("a", 8), ("b", 8), ("c", 8)]
            .into_iter()
            .map(|(s, w)| {
                let m = armed_on(s, w);
                // Its own first read, answered: idle, with its whole window of credit.
                assert_eq!(m.own_read(), Some(w));
                m.settle_read(w, Ok(&[]));
                Arc::new(m)
            })
            .collect();
        let mut ops: Vec<Op> = ["a", "b", "a", "a", "b", "a"]
            .into_iter()
            .map(|s| crate::core::tests::append_to(s, 0))
            .collect();
        let plan = plan(
            &mut ops,
            |k| boxes.iter().filter(|m| &m.stream == k).cloned().collect(),
            |_| Vec::new(),
            &[],
            &RemoteCredit::default(),
        );
        let mut asked: Vec<(String, u32)> = plan
            .local
            .iter()
            .map(|p| {
                (
                    String::from_utf8_lossy(&p.mailbox.stream.name).into_owned(),
                    p.asked,
                )
            })
            .collect();
        asked.sort();
        // One more than the stream's appends (`reserve_for`): 4 + 1 and 2 + 1.
        assert_eq!(asked, [("a".to_string(), 5), ("b".to_string(), 3)]);
        assert_eq!(
            ops.len(),
            6 + 2,
            "one read per mailbox served, after the appends"
        );
    }

    /// The subscription is woken (now or already) when it waits next.
    async fn woken(m: &Mailbox) -> bool {
        tokio::time::timeout(Duration::ZERO, m.notify.notified())
            .await
            .is_ok()
    }

    /// An append committed while the subscription's own read held all the credit finds
    /// none (`missed`); when that read is answered, the subscription is woken and reads
    /// again, instead of waiting for its next heartbeat (it waited up to one before).
    #[tokio::test]
    async fn an_append_that_found_no_credit_during_an_own_read_wakes_the_subscription() {
        let m = armed();
        assert_eq!(m.own_read(), Some(4), "a new mailbox reads by itself");
        assert_eq!(
            m.reserve_for(1),
            None,
            "the read in progress holds the credit"
        );
        assert!(!woken(&m).await);
        m.settle_read(4, Ok(&[]));
        assert!(woken(&m).await, "the subscription must read again");
        assert_eq!(m.own_read(), Some(4));
    }

    /// An own read answered with nothing missed leaves the subscription waiting.
    #[tokio::test]
    async fn an_own_read_with_nothing_missed_does_not_wake() {
        let m = armed();
        assert_eq!(m.own_read(), Some(4));
        m.settle_read(4, Ok(&[]));
        assert!(!woken(&m).await);
        assert_eq!(m.own_read(), None);
    }
}
