//! Push subscriptions: a consumer of a group that the broker hands entries to as they
//! arrive, with **credits**: the subscriber's window bounds how many deliveries are in
//! flight (handed out, not yet acked or nacked), so a slow agent never grows server memory.
//!
//! A front drives a [`Subscription`]: [`Subscription::fetch`] hands out what the window
//! allows; [`Subscription::wait`] resolves when the stream or its retries changed. A new
//! subscription first replays the consumer's own pending entries (what a previous
//! connection was handed and never acknowledged), then reads new entries and due retries.
//! Everything goes through ops, so permissions, durability and the log are the same as for
//! any other front.

use std::collections::HashSet;
use std::sync::Arc;

use cortex_storage::{
    Answer, DeliveryPolicy, Error as StoreError, GroupStart, Op, PendingQuery, Query, ReadFrom,
    Record, Reply, StreamId, StreamKey,
};
use tokio::sync::Notify;

use super::perm::INBOX_PREFIX;
use super::reqrep::Responder;
use super::{Broker, BrokerError, Principal};

/// Most entries one fetch hands out.
pub const FETCH_MAX: usize = 256;

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
    notify: Arc<Notify>,
    in_flight: HashSet<StreamId>,
    window: u32,
    /// `Some(after)` while replaying the consumer's own pending entries.
    history: Option<StreamId>,
    /// False until the first `>` read (which records the consumer as seen).
    read_once: bool,
    _responder: Option<Responder>,
}

impl Broker {
    /// Opens a subscription: creates the group (with `spec.policy`) if it does not exist,
    /// registers for wake-ups, and, on an inbox, counts the subscriber as a responder.
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
        match self.submit_one(who, create).await? {
            Ok(_) | Err(StoreError::GroupExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let notify = Arc::new(Notify::new());
        self.inner.notifier.subscribe(&spec.stream, &notify);
        let responder = spec
            .stream
            .name
            .starts_with(INBOX_PREFIX.as_bytes())
            .then(|| self.inner.requests.responder(&spec.stream));
        Ok(Subscription {
            broker: self.clone(),
            who: who.clone(),
            window: spec.window,
            history: (!spec.no_ack).then_some(StreamId::MIN),
            spec,
            notify,
            in_flight: HashSet::new(),
            read_once: false,
            _responder: responder,
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
        self.in_flight.len() as u32
    }

    /// The window.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Sets the window (0 pauses delivery).
    pub fn set_window(&mut self, window: u32) {
        self.window = window;
        // Let the front's loop fetch again with the new room.
        self.notify.notify_one();
    }

    /// Room in the window.
    pub fn room(&self) -> usize {
        (self.window as usize).saturating_sub(self.in_flight.len())
    }

    /// Resolves when the stream changed (an append, a retry became due) or the window
    /// grew; cancel-safe (a wake-up that came while nobody waited is kept).
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Hands out up to the window's room: first the consumer's own pending entries from
    /// earlier connections, then due retries and new entries. Empty when there is no room
    /// or nothing to hand out.
    pub async fn fetch(&mut self) -> Result<Vec<Pushed>, SubError> {
        let room = self.room().min(FETCH_MAX);
        if room == 0 || self.broker.stopping() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if let Some(after) = self.history {
            let handed = self.read(ReadFrom::History(after), room, false).await?;
            match handed.last() {
                None => self.history = None,
                Some((last, _)) => self.history = Some(*last),
            }
            // Entries deleted from the stream while pending are dropped from the list.
            let gone: Vec<StreamId> = handed
                .iter()
                .filter(|(_, r)| r.is_none())
                .map(|(id, _)| *id)
                .collect();
            if !gone.is_empty() {
                self.ack(&gone).await?;
            }
            out.extend(handed.into_iter().filter_map(|(id, r)| r.map(|r| (id, r))));
            if self.history.is_some() {
                return self.finish(out).await;
            }
        }
        let room = room - out.len();
        if room > 0 {
            let retry = self.read_once;
            let handed = self.read(ReadFrom::New, room, retry).await?;
            self.read_once = true;
            out.extend(handed.into_iter().filter_map(|(id, r)| r.map(|r| (id, r))));
        }
        self.finish(out).await
    }

    async fn read(
        &self,
        from: ReadFrom,
        count: usize,
        retry: bool,
    ) -> Result<Vec<(StreamId, Option<Record>)>, SubError> {
        let op = Op::ReadGroup {
            streams: vec![(self.spec.stream.clone(), from)],
            group: self.spec.group.clone(),
            consumer: self.spec.consumer.clone(),
            count: Some(count),
            noack: self.spec.no_ack,
            retry,
        };
        match self.broker.submit_one(&self.who, op).await?? {
            Reply::GroupRead(mut v) if v.len() == 1 => Ok(v.remove(0)),
            other => Err(SubError::Broker(BrokerError::Internal(format!(
                "unexpected reply to a group read: {other:?}"
            )))),
        }
    }

    /// Adds attempt numbers (from the pending list) and records the deliveries in flight.
    async fn finish(&mut self, handed: Vec<(StreamId, Record)>) -> Result<Vec<Pushed>, SubError> {
        if handed.is_empty() {
            return Ok(Vec::new());
        }
        let mut attempts = std::collections::HashMap::new();
        if !self.spec.no_ack {
            let (first, last) = handed
                .iter()
                .fold((StreamId::MAX, StreamId::MIN), |(a, b), (id, _)| {
                    (a.min(*id), b.max(*id))
                });
            // Few pending entries of this consumer fall in the range besides these (at most
            // the window), so this read is bounded by the window.
            let q = Query::Pending {
                stream: self.spec.stream.clone(),
                group: self.spec.group.clone(),
                query: PendingQuery {
                    start: first,
                    end: last,
                    count: self.window.max(1) as usize + handed.len(),
                    consumer: Some(self.spec.consumer.clone()),
                    min_idle_ms: None,
                },
            };
            if let Ok(Answer::Pending(p)) = self.broker.query(&self.who, q).await? {
                for p in p {
                    attempts.insert(p.id, p.deliveries.min(u64::from(u32::MAX)) as u32);
                }
            }
            for (id, _) in &handed {
                self.in_flight.insert(*id);
            }
        }
        if self._responder.is_some() {
            let records: Vec<&Record> = handed.iter().map(|(_, r)| r).collect();
            self.broker
                .inner
                .requests
                .handed_to_responder(&records, self.broker.now_ms());
        }
        Ok(handed
            .into_iter()
            .map(|(id, record)| Pushed {
                attempt: attempts.get(&id).copied().unwrap_or(1),
                id,
                record,
            })
            .collect())
    }

    /// Acknowledges deliveries; they leave the window whatever the store says.
    pub async fn ack(&mut self, ids: &[StreamId]) -> Result<u64, SubError> {
        self.settle(ids);
        let op = Op::Ack {
            stream: self.spec.stream.clone(),
            group: self.spec.group.clone(),
            ids: ids.to_vec(),
        };
        count(self.broker.submit_one(&self.who, op).await??)
    }

    /// Several acks in one submission (one commit); one result each.
    pub async fn ack_many(&mut self, batches: Vec<Vec<StreamId>>) -> Vec<Result<u64, SubError>> {
        for ids in &batches {
            self.settle(ids);
        }
        let n = batches.len();
        let ops = batches
            .into_iter()
            .map(|ids| Op::Ack {
                stream: self.spec.stream.clone(),
                group: self.spec.group.clone(),
                ids,
            })
            .collect();
        match self.broker.submit(&self.who, ops).await {
            Ok(replies) => replies
                .into_iter()
                .map(|r| r.map_err(SubError::from).and_then(count))
                .collect(),
            Err(e) => (0..n).map(|_| Err(SubError::Broker(e.clone()))).collect(),
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
        self.settle(ids);
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

    fn settle(&mut self, ids: &[StreamId]) {
        let before = self.room();
        for id in ids {
            self.in_flight.remove(id);
        }
        if before == 0 && self.room() > 0 {
            self.notify.notify_one();
        }
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
