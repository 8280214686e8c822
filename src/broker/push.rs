//! Push subscriptions: a consumer of a group that the broker hands entries to as they
//! arrive, with **credits**: the subscriber's window bounds how many deliveries are in
//! flight (handed out, not yet acked or nacked), so a slow agent never grows server memory.
//!
//! A front drives a [`Subscription`]: [`Subscription::fetch`] hands out what the window
//! allows; [`Subscription::wait`] resolves when the stream or its retries changed. A new
//! subscription first replays the consumer's own pending entries (what a previous
//! connection was handed and never acknowledged), then reads new entries and due retries.
//! Once replayed, its [`Mailbox`] is armed: new entries reach it in the
//! commit that appended them, and it reads by itself only for what an append does not
//! cover (due retries, entries left while the window was full). Everything goes through ops, so permissions, durability and the log are the same as for
//! any other front.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cortex_storage::{
    Delivery, DeliveryPolicy, Error as StoreError, GroupStart, Op, ReadFrom, Record, Reply,
    StreamId, StreamKey,
};

use super::mailbox::Mailbox;
use super::perm::INBOX_PREFIX;
use super::reqrep::{Answered, Responder};
use super::{Broker, BrokerError, Principal};

/// Most entries one fetch reads.
pub const FETCH_MAX: usize = super::mailbox::READ_MAX as usize;

/// What a subscription reads.
#[derive(Clone, Debug)]
pub struct SubscribeSpec {
    /// Stream.
    pub stream: StreamKey,
    /// Group.
    pub group: Vec<u8>,
    /// Consumer.
    pub consumer: Vec<u8>,
    /// Where the group starts if the subscription creates it.
    pub start: GroupStart,
    /// Most deliveries in flight.
    pub window: u32,
    /// Deliveries need no ack.
    pub no_ack: bool,
    /// The policy a group created by the subscription gets.
    pub policy: Option<DeliveryPolicy>,
}

/// One delivery.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// ID.
    pub id: StreamId,
    /// Content.
    pub record: Record,
    /// How many times the group handed it out (1: first delivery).
    pub attempt: u32,
}

/// A task the consumer holds was canceled: tell it before any delivery taken with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canceled {
    /// Task ID.
    pub task: Vec<u8>,
    /// The entry the consumer holds (it left the pending list; an ack of it is harmless).
    pub id: StreamId,
}

/// Why a subscription call failed.
#[derive(Debug)]
pub enum SubError {
    /// The broker refused (permission, shutdown, overload).
    Broker(BrokerError),
    /// The store refused (no such group any more, bad argument).
    Store(StoreError),
}

impl std::fmt::Display for SubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubError::Broker(e) => e.fmt(f),
            SubError::Store(e) => e.fmt(f),
        }
    }
}

impl From<BrokerError> for SubError {
    fn from(e: BrokerError) -> Self {
        SubError::Broker(e)
    }
}

impl From<StoreError> for SubError {
    fn from(e: StoreError) -> Self {
        SubError::Store(e)
    }
}

/// A live push subscription.
pub struct Subscription {
    broker: Broker,
    who: Principal,
    spec: SubscribeSpec,
    mailbox: Arc<Mailbox>,
    /// `Some(after)` while replaying the consumer's own pending entries.
    history: Option<StreamId>,
    _responder: Option<Responder>,
    /// An inbox's deliveries that a responder's last reply part acknowledged.
    answered: Answered,
    /// Cancel signals taken by the last fetch, to be told before its deliveries.
    canceled: Vec<Canceled>,
}

impl Broker {
    /// Opens a subscription: creates the group (with `spec.policy`) and the consumer if
    /// they do not exist, registers its mailbox, and, on an inbox, counts the subscriber as
    /// a responder.
    pub async fn subscribe(
        &self,
        who: &Principal,
        spec: SubscribeSpec,
    ) -> Result<Subscription, SubError> {
        let create = Op::CreateGroup {
            stream: spec.stream.clone(),
            group: spec.group.clone(),
            start: spec.start,
            mkstream: true,
            entries_read: None,
            policy: spec.policy.clone(),
        };
        let consumer = Op::CreateConsumer {
            stream: spec.stream.clone(),
            group: spec.group.clone(),
            consumer: spec.consumer.clone(),
        };
        let mailbox = Arc::new(Mailbox::new(
            spec.stream.clone(),
            spec.group.clone(),
            spec.consumer.clone(),
            spec.no_ack,
            spec.window,
            self.cluster().map(|_| self.inner.mail_announce.clone()),
        ));
        who.authorize_op(&mailbox.op(ReadFrom::New, 1))
            .map_err(BrokerError::NoPermission)?;
        let mut replies = self.submit(who, vec![create, consumer]).await?.into_iter();
        match replies.next() {
            Some(Ok(_)) | Some(Err(StoreError::GroupExists { .. })) | None => {}
            Some(Err(e)) => return Err(e.into()),
        }
        if let Some(Err(e)) = replies.next() {
            return Err(e.into());
        }
        self.inner.core.notifier.subscribe_mailbox(&mailbox);
        let responder = spec
            .stream
            .name
            .starts_with(INBOX_PREFIX.as_bytes())
            .then(|| self.inner.requests.responder(&spec.stream));
        Ok(Subscription {
            broker: self.clone(),
            who: who.clone(),
            history: (!spec.no_ack).then_some(StreamId::MIN),
            spec,
            mailbox,
            _responder: responder,
            answered: Answered::default(),
            canceled: Vec::new(),
        })
    }
}

impl Subscription {
    /// The group.
    pub fn group(&self) -> &[u8] {
        &self.spec.group
    }

    /// The stream's name.
    pub fn stream(&self) -> &[u8] {
        &self.spec.stream.name
    }

    /// The consumer.
    pub fn consumer(&self) -> &[u8] {
        &self.spec.consumer
    }

    /// Deliveries in flight.
    pub fn in_flight(&self) -> u32 {
        self.mailbox.in_flight()
    }

    /// The window.
    pub fn window(&self) -> u32 {
        self.mailbox.window()
    }

    /// Sets the window (0 pauses delivery).
    pub fn set_window(&mut self, window: u32) {
        self.mailbox.set_window(window);
    }

    /// Room in the window.
    pub fn room(&self) -> usize {
        self.mailbox.room() as usize
    }

    /// Resolves when there may be something to fetch: deliveries arrived in the mailbox,
    /// the stream changed in a way the mailbox does not cover, or the window grew;
    /// cancel-safe (a wake-up that came while nobody waited is kept).
    pub async fn wait(&self) {
        self.mailbox.notify.notified().await;
    }

    /// Hands out what is due: the deliveries the writer put in the mailbox, the consumer's
    /// own pending entries from earlier connections (first), and, when the mailbox cannot
    /// be sure it has everything, due retries and new entries read by itself; never more
    /// than the window allows. Empty when there is nothing to hand out.
    pub async fn fetch(&mut self) -> Result<Vec<Pushed>, SubError> {
        let r = self.fetch_inner().await;
        // Taken after the deliveries: every cancel committed before one of them is here.
        self.canceled.extend(
            self.mailbox
                .take_canceled()
                .into_iter()
                .map(|(task, id)| Canceled { task, id }),
        );
        r
    }

    /// The cancel signals the last [`Subscription::fetch`] took: a front tells them before
    /// that fetch's deliveries.
    pub fn take_canceled(&mut self) -> Vec<Canceled> {
        std::mem::take(&mut self.canceled)
    }

    async fn fetch_inner(&mut self) -> Result<Vec<Pushed>, SubError> {
        let (mut out, failed) = self.mailbox.take();
        if let Some(e) = failed {
            if out.is_empty() {
                return Err(e.into());
            }
        }
        let broker = self.broker.clone();
        let metrics = &broker.inner.core.metrics;
        metrics
            .pushed_in_commit
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        if self.broker.stopping() {
            return Ok(self.finish(out));
        }
        if let Some(after) = self.history {
            let asked = self.mailbox.reserve();
            if asked == 0 {
                return Ok(self.finish(out));
            }
            let handed = self.read(ReadFrom::History(after), asked).await?;
            metrics
                .pushed_read
                .fetch_add(handed.len() as u64, Ordering::Relaxed);
            match handed.last() {
                None => {
                    self.history = None;
                    // From here on, this node's writer serves the mailbox.
                    self.mailbox.arm();
                }
                Some(d) => self.history = Some(d.id),
            }
            // Entries deleted from the stream while pending are dropped from the list.
            let gone: Vec<StreamId> = handed
                .iter()
                .filter(|d| d.record.is_none())
                .map(|d| d.id)
                .collect();
            if !gone.is_empty() {
                self.ack(&gone).await?;
            }
            out.extend(handed.into_iter().filter(|d| d.record.is_some()));
            if self.history.is_some() {
                return Ok(self.finish(out));
            }
        }
        if let Some(asked) = self.mailbox.own_read() {
            let handed = self.read(ReadFrom::New, asked).await?;
            metrics
                .pushed_read
                .fetch_add(handed.len() as u64, Ordering::Relaxed);
            out.extend(handed);
        }
        Ok(self.finish(out))
    }

    /// The subscription's own read, for `asked` entries of reserved room.
    async fn read(&self, from: ReadFrom, asked: u32) -> Result<Vec<Delivery>, SubError> {
        let op = self.mailbox.op(from, asked);
        let r = match self.broker.submit_one(&self.who, op).await {
            Ok(Ok(Reply::Delivered(v))) => Ok(v),
            Ok(Ok(other)) => Err(SubError::Broker(BrokerError::Internal(format!(
                "unexpected reply to a delivery: {other:?}"
            )))),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
        };
        self.mailbox
            .settle_read(asked, r.as_deref().map_err(|_| ()));
        r
    }

    /// Deliveries as pushed; an inbox's are recorded as handed to a responder.
    fn finish(&self, handed: Vec<Delivery>) -> Vec<Pushed> {
        if handed.is_empty() {
            return Vec::new();
        }
        if self._responder.is_some() {
            let records: Vec<(StreamId, &Record)> = handed
                .iter()
                .filter_map(|d| Some((d.id, d.record.as_ref()?)))
                .collect();
            self.broker.inner.requests.handed_to_responder(
                &records,
                (&self.spec.stream, &self.spec.group, &self.answered),
                self.broker.now_ms(),
            );
        }
        handed
            .into_iter()
            .filter_map(|d| {
                Some(Pushed {
                    attempt: d.attempt.max(1),
                    id: d.id,
                    record: d.record?,
                })
            })
            .collect()
    }

    /// Acknowledges deliveries; they leave the window whatever the store says.
    pub async fn ack(&mut self, ids: &[StreamId]) -> Result<u64, SubError> {
        let mut r = self.ack_many(vec![ids.to_vec()]).await;
        r.pop().unwrap_or(Ok(0))
    }

    /// Several acks in one submission (one commit); one result each. The deliveries leave
    /// the window at once; the returned future (which borrows nothing) commits the acks,
    /// so a front can go on pushing while they commit.
    pub fn ack_many(
        &mut self,
        batches: Vec<Vec<StreamId>>,
    ) -> impl std::future::Future<Output = Vec<Result<u64, SubError>>> + Send + 'static {
        // Deliveries a responder's last reply part already acknowledged count as acked
        // here and need no commit of their own.
        let mut answered = Vec::with_capacity(batches.len());
        let mut ops = Vec::new();
        for mut ids in batches {
            self.mailbox.settle(&ids);
            let n = self.answered.take(&mut ids);
            answered.push((n, !ids.is_empty()));
            if !ids.is_empty() {
                ops.push(Op::Ack {
                    stream: self.spec.stream.clone(),
                    group: self.spec.group.clone(),
                    ids,
                });
            }
        }
        let committed = (!ops.is_empty()).then(|| self.broker.submit_now(&self.who, ops));
        async move {
            let mut replies = match committed {
                Some(c) => c.await.map(Vec::into_iter),
                None => Ok(Vec::new().into_iter()),
            };
            answered
                .into_iter()
                .map(|(n, committed)| {
                    if !committed {
                        return Ok(n);
                    }
                    match &mut replies {
                        Ok(r) => match r.next() {
                            Some(r) => r.map_err(SubError::from).and_then(count).map(|c| c + n),
                            None => Err(SubError::Broker(BrokerError::Internal(
                                "an ack got no reply".into(),
                            ))),
                        },
                        Err(e) => Err(SubError::Broker(e.clone())),
                    }
                })
                .collect()
        }
    }

    /// Fails deliveries: retried after the group's backoff, or dead-lettered (`reject`: at
    /// once, reason `rejected`).
    pub async fn nack(
        &mut self,
        ids: &[StreamId],
        error: Option<Vec<u8>>,
        reject: bool,
    ) -> Result<u64, SubError> {
        self.mailbox.settle(ids);
        let op = Op::Nack {
            stream: self.spec.stream.clone(),
            group: self.spec.group.clone(),
            ids: ids.to_vec(),
            error,
            reject,
        };
        count(self.broker.submit_one(&self.who, op).await??)
    }

    /// Still working: fresh ack deadlines for these deliveries.
    pub async fn progress(&mut self, ids: &[StreamId]) -> Result<u64, SubError> {
        let op = Op::Progress {
            stream: self.spec.stream.clone(),
            group: self.spec.group.clone(),
            consumer: self.spec.consumer.clone(),
            ids: ids.to_vec(),
        };
        count(self.broker.submit_one(&self.who, op).await??)
    }
}

fn count(r: Reply) -> Result<u64, SubError> {
    match r {
        Reply::Count(n) => Ok(n),
        other => Err(SubError::Broker(BrokerError::Internal(format!(
            "unexpected reply: {other:?}"
        )))),
    }
}
