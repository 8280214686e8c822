//! Request/reply between agents, both hops durable.
//!
//! A request is an entry appended to the target's inbox (`cortex:inbox:<agent>`) with
//! headers `cortex-correlation-id`, `cortex-reply-to` and `cortex-deadline-ms`, and a TTL
//! equal to the request's deadline, so a responder never gets a request whose asker gave
//! up. With nobody subscribed to that inbox the request fails at once with
//! [`ReqError::NoResponders`] and nothing is stored.
//!
//! A reply part is appended to the requester's reply stream (`cortex:replies:<agent>`,
//! trimmed to its last 10,000 entries) and, once durable, handed to the waiting
//! requester. The correlation ID (128 random bits) is the responder's capability: only a
//! live request's ID is accepted, so an agent cannot write into another's reply stream
//! otherwise. Parts: any number of `Progress` ("working on it"), then one `Final` or
//! `Error`, all within the one deadline the requester set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cortex_storage::{IdSpec, Lane, Meta, Op, Reply, StreamId, StreamKey, Trim, TrimStrategy};
use tokio::sync::mpsc;

use super::perm::{inbox, replies};
use super::{Broker, BrokerError, Principal};

/// Header names a request carries.
pub const CORRELATION: &str = "cortex-correlation-id";
/// The stream the reply goes to.
pub const REPLY_TO: &str = "cortex-reply-to";
/// The request's deadline (Unix ms).
pub const DEADLINE: &str = "cortex-deadline-ms";
/// A reply part's kind (`progress`, `final`, `error`).
pub const PART: &str = "cortex-part";

/// Most requests waiting for replies, broker-wide.
pub const REQUESTS_MAX: usize = 100_000;
/// Most parts one request's reply may have.
pub const PARTS_MAX: u32 = 1_000;
/// Reply streams keep this many entries.
pub const REPLIES_KEPT: u64 = 10_000;

/// A reply part's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartKind {
    /// More follows.
    Progress,
    /// The result.
    Final,
    /// The responder failed.
    Error,
}

impl PartKind {
    /// Its header value.
    pub fn name(self) -> &'static str {
        match self {
            PartKind::Progress => "progress",
            PartKind::Final => "final",
            PartKind::Error => "error",
        }
    }

    fn ends(self) -> bool {
        self != PartKind::Progress
    }
}

/// One part of a reply.
#[derive(Clone, Debug)]
pub struct Part {
    /// Kind.
    pub kind: PartKind,
    /// The responding agent.
    pub from: Option<String>,
    /// Body.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a request or a reply failed.
#[derive(Debug)]
pub enum ReqError {
    /// Nobody subscribes to the target's inbox.
    NoResponders(String),
    /// No live request has this correlation ID (it completed, timed out, or its requester
    /// left).
    UnknownRequest,
    /// The request already has [`PARTS_MAX`] parts.
    TooManyParts,
    /// Too many requests are waiting broker-wide.
    Busy,
    /// The broker refused the append.
    Broker(BrokerError),
    /// The store refused the append.
    Store(cortex_storage::Error),
}

impl std::fmt::Display for ReqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReqError::NoResponders(a) => write!(f, "no responders: nobody serves agent '{a}'"),
            ReqError::UnknownRequest => f.write_str(
                "no request with this correlation ID is waiting (it completed, timed out, or its requester left)",
            ),
            ReqError::TooManyParts => write!(f, "a reply may have at most {PARTS_MAX} parts"),
            ReqError::Busy => write!(f, "too many requests are waiting ({REQUESTS_MAX})"),
            ReqError::Broker(e) => e.fmt(f),
            ReqError::Store(e) => e.fmt(f),
        }
    }
}

struct Waiting {
    reply_stream: StreamKey,
    tx: mpsc::Sender<Part>,
    parts: u32,
}

/// The broker's table of live requests and inbox subscribers.
#[derive(Default)]
pub struct Requests {
    waiting: Mutex<HashMap<Vec<u8>, Waiting>>,
    responders: Arc<Mutex<HashMap<StreamKey, usize>>>,
}

/// Counts a subscriber of an inbox while alive.
pub struct Responder {
    key: StreamKey,
    map: Arc<Mutex<HashMap<StreamKey, usize>>>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

impl Requests {
    /// Registers a subscriber of `inbox`.
    pub fn responder(&self, inbox: &StreamKey) -> Responder {
        *self
            .responders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(inbox.clone())
            .or_default() += 1;
        Responder {
            key: inbox.clone(),
            map: self.responders.clone(),
        }
    }

    fn served(&self, inbox: &StreamKey) -> bool {
        self.responders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(inbox)
    }

    fn forget(&self, correlation: &[u8]) {
        self.table().remove(correlation);
    }

    /// Live requests (INFO).
    pub fn live(&self) -> usize {
        self.table().len()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request in flight: its reply parts arrive on `parts`; dropping it forgets the request
/// (later replies are refused).
pub struct PendingRequest {
    broker: Broker,
    /// The correlation ID.
    pub correlation: Vec<u8>,
    /// The request entry's ID in the target's inbox.
    pub id: StreamId,
    /// Reply parts, in order.
    pub parts: mpsc::Receiver<Part>,
}

impl Drop for PendingRequest {
    fn drop(&mut self) {
        self.broker.inner.requests.forget(&self.correlation);
    }
}

fn correlation_id() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // The system RNG does not fail on Linux; a failure would leave zeros, still unique
    // enough with the counter mixed in below.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for (i, x) in n.to_le_bytes().iter().enumerate() {
        b[i] ^= x;
    }
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
        .into_bytes()
}

impl Broker {
    /// Sends a request to `agent`'s inbox; the answer's parts arrive on the returned
    /// handle. Fails at once when nobody serves that inbox.
    pub async fn request(
        &self,
        who: &Principal,
        agent: &str,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        mut headers: Vec<(Vec<u8>, Vec<u8>)>,
        lane: Lane,
        timeout: Duration,
    ) -> Result<PendingRequest, ReqError> {
        let target = StreamKey::new(0, inbox(agent));
        if !self.inner.requests.served(&target) {
            return Err(ReqError::NoResponders(agent.to_string()));
        }
        let me = who.agent().unwrap_or("anonymous");
        let reply_stream = StreamKey::new(0, replies(me));
        let correlation = correlation_id();
        let deadline = self
            .now_ms()
            .saturating_add(timeout.as_millis().min(u128::from(u64::MAX)) as u64);
        headers.retain(|(k, _)| !k.starts_with(b"cortex-"));
        headers.push((CORRELATION.into(), correlation.clone()));
        headers.push((REPLY_TO.into(), reply_stream.name.clone()));
        headers.push((DEADLINE.into(), deadline.to_string().into_bytes()));
        let (tx, rx) = mpsc::channel(64);
        {
            let mut w = self.inner.requests.table();
            if w.len() >= REQUESTS_MAX {
                return Err(ReqError::Busy);
            }
            w.insert(
                correlation.clone(),
                Waiting {
                    reply_stream,
                    tx,
                    parts: 0,
                },
            );
        }
        let mut pending = PendingRequest {
            broker: self.clone(),
            correlation,
            id: StreamId::MIN,
            parts: rx,
        };
        let op = Op::Append {
            stream: target,
            id: IdSpec::Auto,
            fields,
            meta: Meta {
                lane,
                expires_at_ms: Some(deadline),
                producer: who.agent().map(|a| a.as_bytes().to_vec()),
                headers,
            },
            idempotency_key: None,
            no_mkstream: false,
            trim: None,
        };
        pending.id = self.append(who, op).await?;
        Ok(pending)
    }

    async fn append(&self, who: &Principal, op: Op) -> Result<StreamId, ReqError> {
        match self.submit_one(who, op).await {
            Ok(Ok(Reply::Appended { id, .. })) => Ok(id),
            Ok(Ok(other)) => Err(ReqError::Broker(BrokerError::Internal(format!(
                "unexpected reply to an append: {other:?}"
            )))),
            Ok(Err(e)) => Err(ReqError::Store(e)),
            Err(e) => Err(ReqError::Broker(e)),
        }
    }

    /// Answers a live request: the part is appended to the requester's reply stream and,
    /// once durable, handed to the requester.
    pub async fn respond(
        &self,
        who: &Principal,
        correlation: &[u8],
        kind: PartKind,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<StreamId, ReqError> {
        let reply_stream = {
            let mut w = self.inner.requests.table();
            let Some(req) = w.get_mut(correlation) else {
                return Err(ReqError::UnknownRequest);
            };
            if req.parts >= PARTS_MAX {
                return Err(ReqError::TooManyParts);
            }
            req.parts += 1;
            req.reply_stream.clone()
        };
        let fields = if fields.is_empty() {
            vec![(b"part".to_vec(), kind.name().as_bytes().to_vec())]
        } else {
            fields
        };
        let op = Op::Append {
            stream: reply_stream,
            id: IdSpec::Auto,
            fields: fields.clone(),
            meta: Meta {
                producer: who.agent().map(|a| a.as_bytes().to_vec()),
                headers: vec![
                    (CORRELATION.into(), correlation.to_vec()),
                    (PART.into(), kind.name().into()),
                ],
                ..Meta::default()
            },
            idempotency_key: None,
            no_mkstream: false,
            trim: Some(Trim {
                strategy: TrimStrategy::MaxLen(REPLIES_KEPT),
                approx: true,
                limit: Some(100),
            }),
        };
        // The capability was checked above; the append itself is the broker's.
        let id = self.append(&Principal::internal(), op).await?;
        let tx = {
            let mut w = self.inner.requests.table();
            let tx = w.get(correlation).map(|r| r.tx.clone());
            if kind.ends() {
                w.remove(correlation);
            }
            tx
        };
        let Some(tx) = tx else {
            return Err(ReqError::UnknownRequest);
        };
        let part = Part {
            kind,
            from: who.agent().map(str::to_string),
            fields,
        };
        // The requester reads its parts as they come; a full queue means it stopped
        // reading, and the part stays in its reply stream.
        tx.try_send(part).map_err(|_| ReqError::UnknownRequest)?;
        Ok(id)
    }
}
