//! Reads and blocking reads, for every front.
//!
//! - [`Broker::query`]: a read from the last commit. Small ones run inline; one whose answer
//!   may be large (no `COUNT`, or a big one) runs on the blocking pool, so one client's huge
//!   read never stalls the thread that serves everybody else.
//! - [`Broker::read_group`] and [`Broker::read_streams`]: `XREADGROUP` / `XREAD`, blocking
//!   until something arrives, the deadline passes or the broker stops. A blocked reader
//!   registers for wake-ups on its streams before its first attempt, so an append between
//!   an attempt and the wait is never missed; the writer's events wake it, nothing polls.
//!   A group read's wake-up attempts are marked `retry`, so idle wake-ups write nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cortex_storage::{Answer, Delivery, Op, Query, ReadFrom, ReadStart, Reply, StreamKey};
use tokio::sync::Notify;

use super::mailbox::{Mailbox, READ_MAX};
use super::{Broker, BrokerError, Principal};

/// Answers up to this many items are read on the caller's thread; larger ones on the
/// blocking pool.
pub const INLINE_READ_MAX: usize = 1_000;

/// How long a read may wait for data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// Answer at once.
    No,
    /// Wait at most this long.
    For(Duration),
    /// Wait until something arrives (or the broker stops).
    Forever,
}

/// An `XREADGROUP`.
#[derive(Clone, Debug)]
pub struct GroupRead {
    /// Streams and where to read each from.
    pub streams: Vec<(StreamKey, ReadFrom)>,
    /// Group.
    pub group: Vec<u8>,
    /// Consumer.
    pub consumer: Vec<u8>,
    /// COUNT per stream.
    pub count: Option<usize>,
    /// NOACK.
    pub noack: bool,
    /// CLAIM min-idle-time (Redis 8.4; every stream read as `>`): idle deliveries of the
    /// group first, each with its idle time and deliveries.
    pub claim: Option<u64>,
    /// MAXCOUNT (Redis 8.10): entries over all streams.
    pub max_count: Option<usize>,
    /// MAXSIZE (Redis 8.10): a soft cap on the reply's bytes over all streams.
    pub max_bytes: Option<usize>,
}

impl GroupRead {
    /// True with any of Redis 8's options (CLAIM, MAXCOUNT, MAXSIZE).
    fn extended(&self) -> bool {
        self.claim.is_some() || self.max_count.is_some() || self.max_bytes.is_some()
    }

    /// The op for one attempt.
    pub fn op(&self, retry: bool) -> Op {
        if self.extended() {
            return Op::ReadGroupEx {
                streams: self.streams.clone(),
                group: self.group.clone(),
                consumer: self.consumer.clone(),
                count: self.count,
                noack: self.noack,
                claim: self.claim,
                max_count: self.max_count,
                max_bytes: self.max_bytes,
            };
        }
        Op::ReadGroup {
            streams: self.streams.clone(),
            group: self.group.clone(),
            consumer: self.consumer.clone(),
            count: self.count,
            noack: self.noack,
            retry,
        }
    }
}

/// XREAD's MAXCOUNT and MAXSIZE (Redis 8.10) over a read's results, in stream order: at
/// most `max_count` entries in all, and no entry after the ones so far reach `max_bytes`
/// (a soft cap, as [`cortex_storage::reply_bytes`] counts them: the entry that crosses it
/// is the last one kept, so one entry always is).
pub fn cap_read(
    results: &mut [(Vec<cortex_storage::Entry>, cortex_storage::StreamId)],
    max_count: Option<usize>,
    max_bytes: Option<usize>,
) {
    let mut left = max_count.unwrap_or(usize::MAX);
    let mut bytes = max_bytes;
    for (entries, _) in results.iter_mut() {
        let mut keep = 0;
        for e in entries.iter() {
            if left == 0 || bytes == Some(0) {
                break;
            }
            left -= 1;
            keep += 1;
            if let Some(b) = bytes.as_mut() {
                *b = b.saturating_sub(cortex_storage::reply_bytes(&e.record));
            }
        }
        entries.truncate(keep);
    }
}

/// A registration for wake-ups on some streams, made before the first attempt.
struct Waiter {
    notify: Arc<Notify>,
    until: Option<tokio::time::Instant>,
    blocks: bool,
}

impl Waiter {
    fn new(broker: &Broker, keys: impl Iterator<Item = StreamKey>, blocking: Blocking) -> Self {
        let notify = Arc::new(Notify::new());
        let (blocks, until) = match blocking {
            Blocking::No => (false, None),
            Blocking::Forever => (true, None),
            Blocking::For(d) => (true, Some(tokio::time::Instant::now() + d)),
        };
        if blocks {
            for k in keys {
                broker.inner.core.notifier.subscribe(&k, &notify);
            }
        }
        Waiter {
            notify,
            until,
            blocks,
        }
    }

    /// Waits for a wake-up; false when the read should answer empty (not blocking, timed
    /// out, shutting down).
    async fn wait(&self, broker: &Broker) -> bool {
        if !self.blocks || broker.stopping() {
            return false;
        }
        let stats = broker.stats();
        stats.blocked.fetch_add(1, Ordering::Relaxed);
        let woke = match self.until {
            Some(t) => tokio::time::timeout_at(t, self.notify.notified())
                .await
                .is_ok(),
            None => {
                self.notify.notified().await;
                true
            }
        };
        stats.blocked.fetch_sub(1, Ordering::Relaxed);
        woke && !broker.stopping()
    }
}

impl Broker {
    /// Answers a read from the last commit (never waits for the writer; a commit that may
    /// be in the answer and is still syncing is waited for). Reads whose answer may hold
    /// more than [`INLINE_READ_MAX`] items (their count, capped by what the streams hold
    /// now) run on the blocking pool.
    pub async fn query(
        &self,
        who: &Principal,
        q: Query,
    ) -> Result<cortex_storage::Result<Answer>, BrokerError> {
        who.authorize_query(&q).map_err(BrokerError::NoPermission)?;
        let now = self.now_ms();
        let store = self.store();
        let ticket = self.core().read_ticket();
        let answer = if store.answer_bound(&q) <= INLINE_READ_MAX {
            store.query(&q, now)
        } else {
            tokio::task::spawn_blocking(move || store.query(&q, now))
                .await
                .map_err(|e| BrokerError::Internal(format!("read task failed: {e}")))?
        };
        // Nothing a client reads is lost by a crash: a commit still syncing is waited for.
        self.core().visible(ticket).await?;
        Ok(answer)
    }

    /// `XREADGROUP`: one op per attempt over every stream (validated together); blocks
    /// (for `>` reads only) until an attempt hands something out. An attempt that found
    /// nothing answers `GroupRead` with every list empty.
    pub async fn read_group(
        &self,
        who: &Principal,
        req: &GroupRead,
        blocking: Blocking,
    ) -> Result<cortex_storage::Result<Reply>, BrokerError> {
        // A history read answers at once: BLOCK applies to `>` only, as in Redis.
        let history = req
            .streams
            .iter()
            .any(|(_, f)| matches!(f, ReadFrom::History(_)));
        let blocking = if history { Blocking::No } else { blocking };
        if blocking != Blocking::No && req.streams.len() == 1 && !req.extended() {
            return self.read_group_mailbox(who, req, blocking).await;
        }
        let waiter = Waiter::new(self, req.streams.iter().map(|s| s.0.clone()), blocking);
        let mut retry = false;
        loop {
            let r = self.submit_one(who, req.op(retry)).await?;
            let empty = match &r {
                Ok(Reply::GroupRead(v)) => v.iter().all(Vec::is_empty),
                Ok(Reply::ClaimRead(v)) => v.iter().all(Vec::is_empty),
                _ => false,
            };
            if !empty || history || !waiter.wait(self).await {
                return Ok(r);
            }
            retry = true;
        }
    }

    /// A blocking `XREADGROUP ... >` of one stream, as a mailbox: after a first attempt
    /// that found nothing, the reader's mailbox is armed, and an entry appended later is
    /// handed to it by the commit that stores it (as to a push subscriber). Its COUNT is the
    /// mailbox's window, so the writer's reads and the reader's own never hand out more.
    /// On timeout the mailbox is disarmed; a read already in a commit still counts (its
    /// entries are this reader's, and are returned rather than left pending unseen).
    async fn read_group_mailbox(
        &self,
        who: &Principal,
        req: &GroupRead,
        blocking: Blocking,
    ) -> Result<cortex_storage::Result<Reply>, BrokerError> {
        let stream = req.streams[0].0.clone();
        let window = req
            .count
            .map_or(READ_MAX, |c| c.min(u32::MAX as usize) as u32);
        let mailbox = Arc::new(Mailbox::new(
            stream.clone(),
            req.group.clone(),
            req.consumer.clone(),
            req.noack,
            window,
            None,
        ));
        // Armed and registered before the first attempt, which holds all the credit: an
        // append meanwhile finds none and is read after it, so nothing goes unnoticed and
        // nothing is handed out twice.
        self.inner.core.notifier.subscribe_mailbox(&mailbox);
        mailbox.arm();
        let asked = mailbox.reserve_all();
        let until = match blocking {
            Blocking::For(d) => Some(tokio::time::Instant::now() + d),
            _ => None,
        };
        let r = match self.submit_one(who, req.op(false)).await {
            Ok(r) => r,
            Err(e) => {
                mailbox.disarm();
                return Err(e);
            }
        };
        let empty = matches!(&r, Ok(Reply::GroupRead(v)) if v.iter().all(Vec::is_empty));
        if !empty || self.stopping() {
            // Disarmed while it still holds all the credit: the writer planned nothing.
            mailbox.disarm();
            return Ok(r);
        }
        mailbox.settle_read(asked, Ok(&[]));
        let stats = self.stats();
        stats.blocked.fetch_add(1, Ordering::Relaxed);
        let got = self.wait_mailbox(who, &mailbox, until).await;
        stats.blocked.fetch_sub(1, Ordering::Relaxed);
        let got = match got {
            Ok(got) => got,
            Err(e) => return Ok(Err(e)),
        };
        let entries = got
            .into_iter()
            .filter_map(|d| Some((d.id, Some(d.record?))))
            .collect();
        Ok(Ok(Reply::GroupRead(vec![entries])))
    }

    /// Waits until an armed mailbox has entries (the writer's, or its own read's when it
    /// is stale), the deadline passes or the broker stops; then disarms it and returns what
    /// it got, the reads still in their commits included.
    async fn wait_mailbox(
        &self,
        who: &Principal,
        mailbox: &Mailbox,
        until: Option<tokio::time::Instant>,
    ) -> Result<Vec<Delivery>, cortex_storage::Error> {
        let mut got = Vec::new();
        loop {
            let (mine, failed) = mailbox.take();
            got.extend(mine);
            if let Some(e) = failed {
                if got.is_empty() {
                    mailbox.disarm();
                    return Err(e);
                }
            }
            if got.is_empty() && !self.stopping() {
                if let Some(asked) = mailbox.own_read() {
                    let r = match self.submit_one(who, mailbox.op(ReadFrom::New, asked)).await {
                        Ok(Ok(Reply::Delivered(v))) => Ok(v),
                        Ok(Err(e)) => Err(e),
                        Ok(Ok(_)) | Err(_) => Ok(Vec::new()),
                    };
                    mailbox.settle_read(asked, r.as_deref().map_err(|_| ()));
                    got.extend(r?);
                    continue;
                }
            }
            let notified = mailbox.notify.notified();
            let done = !got.is_empty() || self.stopping();
            let woke = done
                || match until {
                    Some(t) => tokio::time::timeout_at(t, notified).await.is_ok(),
                    None => {
                        notified.await;
                        true
                    }
                };
            if done || !woke {
                break;
            }
        }
        // Reads already in a commit hand their entries over (and wake it) when it is done.
        while mailbox.disarm() > 0 {
            mailbox.notify.notified().await;
        }
        got.extend(mailbox.take().0);
        Ok(got)
    }

    /// `XREAD`: reads every stream from one view; blocks until some stream has entries.
    /// `$` and `+` are resolved on the first attempt (to the stream's last ID at that
    /// moment), so later attempts return only what was added after it.
    pub async fn read_streams(
        &self,
        who: &Principal,
        mut streams: Vec<(StreamKey, ReadStart)>,
        count: Option<usize>,
        blocking: Blocking,
    ) -> Result<cortex_storage::Result<Answer>, BrokerError> {
        let waiter = Waiter::new(self, streams.iter().map(|s| s.0.clone()), blocking);
        loop {
            let q = Query::Read {
                streams: streams.clone(),
                count,
            };
            let a = match self.query(who, q).await? {
                Ok(Answer::Read(v)) => v,
                other => return Ok(other),
            };
            if a.iter().any(|(e, _)| !e.is_empty()) || !waiter.wait(self).await {
                return Ok(Ok(Answer::Read(a)));
            }
            for ((_, start), (_, after)) in streams.iter_mut().zip(&a) {
                *start = ReadStart::After(*after);
            }
        }
    }
}
