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
use std::sync::{Arc, Mutex, MutexGuard};

use cortex_storage::{Delivery, Error as StoreError, Op, ReadFrom, StreamId, StreamKey};
use tokio::sync::Notify;

/// Most entries one read (the writer's or the subscription's) hands a mailbox.
pub const READ_MAX: u32 = 256;

/// One push consumer's mailbox.
pub struct Mailbox {
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
    ) -> Mailbox {
        Mailbox {
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
    }

    /// Takes the deliveries the writer handed over, and its failure if it had one.
    pub fn take(&self) -> (Vec<Delivery>, Option<StoreError>) {
        let mut s = self.state();
        (std::mem::take(&mut s.got), s.failed.take())
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

    /// Reserves room for a history read (the subscription replays its pending entries).
    pub fn reserve(&self) -> u32 {
        let mut s = self.state();
        let n = s.room().min(READ_MAX);
        s.reserved += n;
        n
    }

    /// The answer to the subscription's own read that reserved `asked` (it pushes what the
    /// read returned itself). A read that filled what it asked for may have left more
    /// behind: the mailbox reads again when it has room.
    pub fn settle_read(&self, asked: u32, got: Result<&[Delivery], ()>) {
        let mut s = self.state();
        match got {
            Ok(got) => s.answered(asked, got),
            Err(()) => {
                s.reserved = s.reserved.saturating_sub(asked);
                s.stale = true;
            }
        }
        s.recheck();
    }

    /// The writer's read, answered by its commit: the deliveries wait here for the
    /// subscription, which is woken. A failed commit hands nothing out: the subscription
    /// reads by itself.
    pub fn deliver(&self, asked: u32, got: Result<Vec<Delivery>, Option<StoreError>>) {
        let mut s = self.state();
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
        drop(s);
        self.notify.notify_one();
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
        drop(s);
        if wake {
            self.notify.notify_one();
        }
    }

    /// A wake-up from the notifier. Appends this node's writer planned reads for
    /// (`covered`) do not concern an armed mailbox (the writer served it, or marked it
    /// `missed`); everything else makes it read by itself.
    pub fn wake(&self, covered: bool) {
        let mut s = self.state();
        if covered && s.armed {
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

/// The writer's part: for a batch's ops, the mailboxes to serve in the same commit and
/// their reads (appended to `ops`, after everything else). `mailboxes(stream)` lists the
/// live mailboxes of a stream. Within one group, the batch's appends are shared out among
/// its mailboxes in turn, so each new entry is asked for by one consumer.
pub fn plan(
    ops: &mut Vec<Op>,
    mailboxes: impl Fn(&StreamKey) -> Vec<Arc<Mailbox>>,
) -> Vec<Planned> {
    let mut appended: HashMap<&StreamKey, u32> = HashMap::new();
    for op in ops.iter() {
        if let Op::Append { stream, .. } = op {
            *appended.entry(stream).or_default() += 1;
        }
    }
    if appended.is_empty() {
        return Vec::new();
    }
    let mut planned = Vec::new();
    for (stream, n) in appended {
        let mut left: HashMap<Vec<u8>, u32> = HashMap::new();
        for mb in mailboxes(stream) {
            let left = left.entry(mb.group.clone()).or_insert(n);
            if *left == 0 {
                // Its group's other mailboxes asked for every entry of the batch.
                continue;
            }
            if let Some(asked) = mb.reserve_for(*left) {
                *left = left.saturating_sub(asked);
                planned.push(Planned { mailbox: mb, asked });
            }
        }
    }
    for p in &planned {
        ops.push(p.mailbox.op(ReadFrom::New, p.asked));
    }
    planned
}
