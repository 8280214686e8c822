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
//!
//! A request is a task (one model, not two): its correlation ID is its task ID (the
//! requester may choose it with the header `cortex-task-id`), its deadline is its task's,
//! and the store moves it as it moves any task: `submitted`, `working` when handed out,
//! `completed` or `failed` with the last part, `failed` (`deadline`) when the deadline
//! passes first, the responder then told to stop as on a cancel. The requester can read,
//! watch, list and cancel it as a task; it is kept [`REQUEST_KEEP_MS`] once finished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cortex_storage::{
    Answer, IdSpec, Lane, Meta, Op, Query, ReadStart, Record, Reply, StreamId, StreamKey, Trim,
    TrimStrategy, KEEP_HEADER, TASK_HEADER, TASK_ID_MAX,
};
use tokio::sync::{mpsc, watch, Notify};

use super::perm::{inbox, replies, Right, REPLIES_PREFIX};
use super::{lock, Broker, BrokerError, Principal};

/// Header names a request and its reply parts carry (the protocol's).
pub use cortex_protocol::names::{CORRELATION, DEADLINE, PART, REPLY_TO};

/// Most requests waiting for replies, broker-wide.
pub const REQUESTS_MAX: usize = 100_000;
/// Most parts one request's reply may have.
pub const PARTS_MAX: u32 = 1_000;
/// Reply streams keep this many entries.
pub const REPLIES_KEPT: u64 = 10_000;
/// How long a request's task is kept once finished, ms, unless the request says
/// (`cortex-task-keep-ms`): long enough to ask what became of it, short enough that a
/// busy pair of agents does not keep a day of round trips.
pub const REQUEST_KEEP_MS: u64 = 600_000;
/// Most reply parts one read of a watched reply stream takes.
const WATCH_READ_MAX: usize = 256;

/// A reply part's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartKind {
    /// More follows.
    Progress,
    /// The result.
    Final,
    /// The responder failed.
    Error,
    /// The responder needs more input; more follows.
    InputRequired,
}

impl PartKind {
    /// Its header value.
    pub fn name(self) -> &'static str {
        match self {
            PartKind::Progress => "progress",
            PartKind::Final => "final",
            PartKind::Error => "error",
            PartKind::InputRequired => "input-required",
        }
    }

    pub(crate) fn ends(self) -> bool {
        matches!(self, PartKind::Final | PartKind::Error)
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

/// A request made on this node, waiting for its parts.
struct Waiting {
    reply_stream: StreamKey,
    tx: mpsc::Sender<Part>,
    /// Parts answered through this node's own table (a responder that did not get the
    /// request from a push subscription here).
    parts: u32,
}

/// A request handed to a responder on this node (its requester may be on any node): what
/// makes its correlation ID a capability here.
struct Delivered {
    reply_stream: StreamKey,
    deadline_ms: u64,
    parts: u32,
    /// Where the request was handed out: its last part acknowledges it there, in the
    /// part's own commit.
    handed: Handed,
}

/// A request as a push subscription handed it to a responder: the inbox, the group, its
/// ID, and the subscription's record of requests their last part acknowledged (so the
/// responder's own ack that follows needs no commit).
#[derive(Clone)]
pub(crate) struct Handed {
    pub stream: StreamKey,
    pub group: Vec<u8>,
    pub id: StreamId,
    pub answered: Answered,
}

/// IDs of a subscription's deliveries that a responder's last reply part acknowledged
/// (at most the subscription's window: each stays in flight until its own ack comes).
#[derive(Clone, Default)]
pub(crate) struct Answered(Arc<Mutex<std::collections::HashSet<StreamId>>>);

impl Answered {
    /// Most IDs kept: a responder that never acks after answering cannot grow it further
    /// (its later acks then commit as usual).
    const MAX: usize = 65_536;

    fn insert(&self, id: StreamId) {
        let mut s = lock(&self.0);
        if s.len() < Self::MAX {
            s.insert(id);
        }
    }

    /// Takes the IDs that were acknowledged by a reply out of `ids`; returns how many.
    pub(crate) fn take(&self, ids: &mut Vec<StreamId>) -> u64 {
        let mut s = lock(&self.0);
        if s.is_empty() {
            return 0;
        }
        let before = ids.len();
        ids.retain(|id| !s.remove(id));
        (before - ids.len()) as u64
    }
}

/// A reply stream this node watches for the parts of its waiting requests.
struct Watched {
    /// Waiting requests whose parts arrive on it.
    requests: usize,
    /// Wakes its watcher (appends to the stream, and the last request leaving).
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    waiting: HashMap<Vec<u8>, Waiting>,
    watched: HashMap<StreamKey, Watched>,
}

impl Table {
    fn remove(&mut self, correlation: &[u8]) {
        let Some(w) = self.waiting.remove(correlation) else {
            return;
        };
        if let Some(watch) = self.watched.get_mut(&w.reply_stream) {
            watch.requests -= 1;
            if watch.requests == 0 {
                watch.wake.notify_one();
            }
        }
    }
}

/// The inboxes served by this node's subscribers.
struct Serving {
    count: Mutex<HashMap<StreamKey, usize>>,
    /// Bumped when an inbox gains its first or loses its last subscriber.
    changed: watch::Sender<u64>,
}

/// The broker's table of live requests and inbox subscribers.
pub struct Requests {
    table: Mutex<Table>,
    delivered: Mutex<HashMap<Vec<u8>, Delivered>>,
    responders: Arc<Serving>,
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            table: Mutex::new(Table::default()),
            delivered: Mutex::new(HashMap::new()),
            responders: Arc::new(Serving {
                count: Mutex::new(HashMap::new()),
                changed: watch::Sender::new(0),
            }),
        }
    }
}

/// Counts a subscriber of an inbox while alive.
pub struct Responder {
    key: StreamKey,
    responders: Arc<Serving>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        let mut m = lock(&self.responders.count);
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
                drop(m);
                self.responders.changed.send_modify(|v| *v += 1);
            }
        }
    }
}

fn header<'a>(record: &'a Record, name: &str) -> Option<&'a [u8]> {
    header_of(&record.meta.headers, name.as_bytes())
}

impl Requests {
    /// Registers a subscriber of `inbox`.
    pub fn responder(&self, inbox: &StreamKey) -> Responder {
        let first = {
            let mut m = lock(&self.responders.count);
            let n = m.entry(inbox.clone()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            self.responders.changed.send_modify(|v| *v += 1);
        }
        Responder {
            key: inbox.clone(),
            responders: self.responders.clone(),
        }
    }

    fn served_here(&self, inbox: &StreamKey) -> usize {
        lock(&self.responders.count)
            .get(inbox)
            .copied()
            .unwrap_or(0)
    }

    /// The inbox streams this node's subscribers serve.
    pub fn local_inboxes(&self) -> Vec<Vec<u8>> {
        lock(&self.responders.count)
            .keys()
            .filter(|k| k.ns == 0)
            .map(|k| k.name.clone())
            .collect()
    }

    /// Changes whenever an inbox gains its first or loses its last subscriber here.
    pub fn local_changes(&self) -> watch::Receiver<u64> {
        self.responders.changed.subscribe()
    }

    fn forget(&self, correlation: &[u8]) {
        lock(&self.table).remove(correlation);
        // A request made and answered on this node leaves no capability behind.
        lock(&self.delivered).remove(correlation);
    }

    /// Live requests (INFO).
    pub fn live(&self) -> usize {
        lock(&self.table).waiting.len()
    }

    /// Records requests a subscription hands to a responder here: their correlation IDs
    /// may then be answered from this node, wherever the requester is. An entry that is
    /// not a well-formed request (no correlation, a reply stream outside
    /// `cortex:replies:`, no deadline) is not recorded, so nothing can be written on its
    /// behalf.
    pub(crate) fn handed_to_responder(
        &self,
        records: &[(StreamId, &Record)],
        (stream, group, answered): (&StreamKey, &[u8], &Answered),
        now_ms: u64,
    ) {
        let mut d = lock(&self.delivered);
        for &(id, record) in records {
            let (Some(correlation), Some(reply_to), Some(deadline)) = (
                header(record, CORRELATION),
                header(record, REPLY_TO),
                header(record, DEADLINE),
            ) else {
                continue;
            };
            let Some(deadline_ms) = std::str::from_utf8(deadline)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if !reply_to.starts_with(REPLIES_PREFIX.as_bytes()) || deadline_ms <= now_ms {
                continue;
            }
            if d.len() >= REQUESTS_MAX {
                d.retain(|_, r| r.deadline_ms > now_ms);
                if d.len() >= REQUESTS_MAX {
                    tracing::warn!(
                        "{REQUESTS_MAX} requests handed to responders here are live; this one cannot be answered from here"
                    );
                    continue;
                }
            }
            d.entry(correlation.to_vec()).or_insert(Delivered {
                reply_stream: StreamKey::new(0, reply_to.to_vec()),
                deadline_ms,
                parts: 0,
                handed: Handed {
                    stream: stream.clone(),
                    group: group.to_vec(),
                    id,
                    answered: answered.clone(),
                },
            });
        }
    }

    /// Hands a part read from a watched reply stream to its waiting requester, if it waits
    /// here; the last part, or one the requester has no room for, ends the request.
    fn dispatch(&self, record: Record) {
        let Some(correlation) = header(&record, CORRELATION).map(<[u8]>::to_vec) else {
            return;
        };
        let kind = match header(&record, PART) {
            Some(b"progress") => PartKind::Progress,
            Some(b"error") => PartKind::Error,
            Some(b"input-required") => PartKind::InputRequired,
            _ => PartKind::Final,
        };
        let mut t = lock(&self.table);
        let Some(w) = t.waiting.get(&correlation) else {
            return;
        };
        let part = Part {
            kind,
            from: record
                .meta
                .producer
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            fields: record.fields,
        };
        // The requester reads its parts as they come; a full queue means it stopped
        // reading, and the part stays in its reply stream.
        let sent = w.tx.try_send(part).is_ok();
        if kind.ends() || !sent {
            t.remove(&correlation);
        }
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

/// An append's ID from its reply.
fn appended(r: Option<cortex_storage::Result<Reply>>) -> Result<StreamId, ReqError> {
    match r {
        Some(Ok(Reply::Appended { id, .. })) => Ok(id),
        Some(Err(e)) => Err(ReqError::Store(e)),
        other => Err(ReqError::Broker(BrokerError::Internal(format!(
            "unexpected reply to an append: {other:?}"
        )))),
    }
}

/// A header's value in a list of headers.
fn header_of<'a>(headers: &'a [(Vec<u8>, Vec<u8>)], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// The task ID a requester chose for its request (header `cortex-task-id`), if it chose
/// one: 1 to [`TASK_ID_MAX`] bytes. It is also the request's correlation ID, which the
/// responder's parts name: a requester that wants its replies unforgeable chooses one
/// nobody can guess.
fn requested_task_id(headers: &[(Vec<u8>, Vec<u8>)]) -> Result<Option<Vec<u8>>, ReqError> {
    match header_of(headers, TASK_HEADER) {
        None => Ok(None),
        Some(id) if !id.is_empty() && id.len() <= TASK_ID_MAX => Ok(Some(id.to_vec())),
        Some(id) => Err(ReqError::Store(cortex_storage::Error::BadName {
            what: "task ID (header cortex-task-id)",
            len: id.len(),
            max: TASK_ID_MAX,
        })),
    }
}

pub(crate) fn correlation_id() -> Vec<u8> {
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
        if !self.served_anywhere(&target) {
            return Err(ReqError::NoResponders(agent.to_string()));
        }
        let me = who.agent().unwrap_or("anonymous");
        let reply_stream = StreamKey::new(0, replies(me));
        // Where a new watcher of the reply stream starts: no part of this request can be
        // there yet.
        let cursor = self.stream_end(&reply_stream).await?;
        let correlation = requested_task_id(&headers)?.unwrap_or_else(correlation_id);
        let deadline = self
            .now_ms()
            .saturating_add(timeout.as_millis().min(u128::from(u64::MAX)) as u64);
        let keep = header_of(&headers, KEEP_HEADER)
            .map_or_else(|| REQUEST_KEEP_MS.to_string().into_bytes(), <[u8]>::to_vec);
        headers.retain(|(k, _)| !k.starts_with(b"cortex-"));
        headers.push((TASK_HEADER.to_vec(), correlation.clone()));
        headers.push((KEEP_HEADER.to_vec(), keep));
        let envelope = Envelope {
            correlation: &correlation,
            reply_to: &reply_stream.name,
            deadline_ms: deadline,
        };
        let op = request_append(who, target, fields, lane, headers, &envelope);
        let (tx, rx) = mpsc::channel(64);
        {
            let mut t = lock(&self.inner.requests.table);
            if t.waiting.len() >= REQUESTS_MAX {
                return Err(ReqError::Busy);
            }
            if t.waiting.contains_key(&correlation) {
                return Err(ReqError::Store(cortex_storage::Error::TaskExists {
                    task: correlation,
                }));
            }
            t.waiting.insert(
                correlation.clone(),
                Waiting {
                    reply_stream: reply_stream.clone(),
                    tx,
                    parts: 0,
                },
            );
            match t.watched.get_mut(&reply_stream) {
                Some(w) => w.requests += 1,
                None => {
                    let wake = Arc::new(Notify::new());
                    t.watched.insert(
                        reply_stream.clone(),
                        Watched {
                            requests: 1,
                            wake: wake.clone(),
                        },
                    );
                    tokio::spawn(self.clone().watch_replies(reply_stream, cursor, wake));
                }
            }
        }
        let mut pending = PendingRequest {
            broker: self.clone(),
            correlation,
            id: StreamId::MIN,
            parts: rx,
        };
        pending.id = self.append(who, op).await?;
        Ok(pending)
    }

    async fn append(&self, who: &Principal, op: Op) -> Result<StreamId, ReqError> {
        let r = self.submit_one(who, op).await.map_err(ReqError::Broker)?;
        appended(Some(r))
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
        let (reply_stream, handed) = self.capability(correlation)?;
        let fields = if fields.is_empty() {
            vec![(b"part".to_vec(), kind.name().as_bytes().to_vec())]
        } else {
            fields
        };
        let op = Op::Append {
            stream: reply_stream,
            id: IdSpec::Auto,
            fields,
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
            trim: Some(Trim::new(
                TrimStrategy::MaxLen(REPLIES_KEPT),
                true,
                Some(100),
            )),
        };
        // The capability was checked above; the append itself is the broker's. The part
        // reaches its requester when its node applies the append (`watch_replies`). The
        // last part acknowledges the request it answers in the same commit, where a
        // subscription here handed it out: request and reply cost one commit each.
        let handed = handed.filter(|_| kind.ends());
        let mut ops = vec![op];
        if let Some(h) = &handed {
            ops.push(Op::Ack {
                stream: h.stream.clone(),
                group: h.group.clone(),
                ids: vec![h.id],
            });
        }
        let mut replies = self
            .submit(&Principal::internal(), ops)
            .await
            .map_err(ReqError::Broker)?
            .into_iter();
        let id = appended(replies.next())?;
        if let (Some(h), Some(Ok(Reply::Count(1)))) = (&handed, replies.next()) {
            h.answered.insert(h.id);
        }
        if kind.ends() {
            lock(&self.inner.requests.delivered).remove(correlation);
        }
        Ok(id)
    }

    /// The reply stream a part for `correlation` goes to, counting the part: a request
    /// handed to a responder here and not past its deadline, or one waiting here.
    /// With it, where the request was handed out here (if it was).
    fn capability(&self, correlation: &[u8]) -> Result<(StreamKey, Option<Handed>), ReqError> {
        let now = self.now_ms();
        let r = &self.inner.requests;
        if let Some(d) = lock(&r.delivered).get_mut(correlation) {
            if d.deadline_ms > now {
                if d.parts >= PARTS_MAX {
                    return Err(ReqError::TooManyParts);
                }
                d.parts += 1;
                return Ok((d.reply_stream.clone(), Some(d.handed.clone())));
            }
        }
        let mut t = lock(&r.table);
        let w = t
            .waiting
            .get_mut(correlation)
            .ok_or(ReqError::UnknownRequest)?;
        if w.parts >= PARTS_MAX {
            return Err(ReqError::TooManyParts);
        }
        w.parts += 1;
        Ok((w.reply_stream.clone(), None))
    }

    /// True when a subscriber serves `inbox` on this node or, in a cluster, on a node
    /// whose announcement is live.
    fn served_anywhere(&self, inbox: &StreamKey) -> bool {
        self.inner.requests.served_here(inbox) > 0
            || self
                .cluster()
                .is_some_and(|n| n.presence.serves(&inbox.name))
    }

    /// The ID a read of `stream` continues after to see only what is appended from now on.
    async fn stream_end(&self, stream: &StreamKey) -> Result<StreamId, ReqError> {
        let q = Query::Read {
            streams: vec![(stream.clone(), ReadStart::New)],
            count: Some(1),
        };
        match self.query(&Principal::internal(), q).await {
            Ok(Ok(Answer::Read(v))) => Ok(v.first().map_or(StreamId::MIN, |(_, after)| *after)),
            Ok(Ok(other)) => Err(ReqError::Broker(BrokerError::Internal(format!(
                "unexpected answer to a read: {other:?}"
            )))),
            Ok(Err(e)) => Err(ReqError::Store(e)),
            Err(e) => Err(ReqError::Broker(e)),
        }
    }

    /// Hands the parts appended to `stream` (on any node: this node applies every append)
    /// to the requests waiting here, in order, until none waits on it. Woken by appends;
    /// rereads at least every second, so a read that failed (a store being reopened) is
    /// tried again.
    async fn watch_replies(self, stream: StreamKey, mut cursor: StreamId, wake: Arc<Notify>) {
        self.inner.core.notifier.subscribe(&stream, &wake);
        loop {
            loop {
                let q = Query::Read {
                    streams: vec![(stream.clone(), ReadStart::After(cursor))],
                    count: Some(WATCH_READ_MAX),
                };
                let entries = match self.query(&Principal::internal(), q).await {
                    Ok(Ok(Answer::Read(mut v))) if !v.is_empty() => v.swap_remove(0).0,
                    Ok(Ok(_)) => Vec::new(),
                    Ok(Err(e)) => {
                        tracing::warn!("reading reply stream for waiting requests: {e}");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::debug!("reading reply stream for waiting requests: {e}");
                        Vec::new()
                    }
                };
                let full = entries.len() == WATCH_READ_MAX;
                for e in entries {
                    cursor = e.id;
                    self.inner.requests.dispatch(e.record);
                }
                if !full {
                    break;
                }
            }
            {
                let mut t = lock(&self.inner.requests.table);
                if t.watched.get(&stream).is_none_or(|w| w.requests == 0) {
                    t.watched.remove(&stream);
                    return;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
        }
    }

    /// Tells the other nodes which inboxes this node serves and which push mailboxes wait
    /// here, with their room: when the inboxes change (a burst of changes within 10 ms is
    /// one announcement), when a mailbox is armed or its room came back (within 2 ms), and
    /// every second. The agents' sessions ride along on the first announcement after they
    /// changed (a burst within 10 ms wakes one) and once a second; unchanged, they are left
    /// out of the frequent mailbox announcements.
    pub(crate) async fn announce(self, node: Arc<crate::cluster::Node>) {
        let mut changes = self.inner.requests.local_changes();
        let mail = self.inner.mail_announce.clone();
        let mut sessions_changed = self.sessions_changed();
        let every = crate::cluster::presence::ANNOUNCE_EVERY;
        let mut with_sessions = true;
        let mut sessions_sent = tokio::time::Instant::now();
        while !self.stopping() {
            if sessions_sent.elapsed() >= every {
                with_sessions = true;
            }
            // Sessions that changed ride along whichever change woke this announcement, so
            // an announcement made after a session started serving an inbox carries that
            // session's `serves` whenever it carries the inbox.
            if sessions_changed.has_changed().unwrap_or(false) {
                sessions_changed.mark_unchanged();
                with_sessions = true;
            }
            let sessions = with_sessions.then(|| self.session_ads());
            if with_sessions {
                sessions_sent = tokio::time::Instant::now();
                with_sessions = false;
            }
            let mailboxes = self.inner.core.notifier.all_mailboxes();
            let ads: Vec<_> = mailboxes
                .iter()
                .filter_map(|m| m.ad().map(|a| (m, a)))
                .take(crate::cluster::presence::MAILBOXES_MAX)
                .collect();
            let seq = node.announce(
                self.inner.requests.local_inboxes(),
                ads.iter().map(|(_, a)| a.clone()).collect(),
                sessions,
            );
            for (m, _) in &ads {
                m.announced(seq);
            }
            // The leader's credit for mailboxes that are gone is forgotten.
            self.inner
                .core
                .remote_credit
                .retain(|n, run, id| node.presence.has_mailbox(n, run, id));
            tokio::select! {
                r = tokio::time::timeout(every, changes.changed()) => {
                    if let Ok(Ok(())) = r {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                // An agent connected, left, or started or stopped serving something.
                _ = sessions_changed.changed() => {
                    with_sessions = true;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // A mailbox armed, or its room came back: the leader plans from what it
                // heard last, so tell it soon (a few changes share one announcement).
                _ = mail.notified() => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }

    /// Who serves `agent`: subscribers here and the other nodes whose announcement is live;
    /// once `served` holds (when given), or `None` when `timeout` passed first.
    pub async fn wait_responders(
        &self,
        who: &Principal,
        agent: &str,
        served: Option<bool>,
        timeout: Duration,
    ) -> Result<Option<Responders>, BrokerError> {
        // Whoever may send the agent requests may know whether anybody serves it.
        let key = StreamKey::new(0, inbox(agent));
        who.need(Right::Publish, Some(&key))
            .map_err(BrokerError::NoPermission)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut local = self.inner.requests.local_changes();
        let mut remote = self.cluster().map(|n| n.presence.changes());
        loop {
            local.mark_unchanged();
            if let Some(r) = remote.as_mut() {
                r.mark_unchanged();
            }
            let view = Responders {
                agent: agent.to_string(),
                here: self.inner.requests.served_here(&key),
                nodes: self
                    .cluster()
                    .map(|n| n.presence.serving(&key.name))
                    .unwrap_or_default(),
            };
            let is_served = view.here > 0 || !view.nodes.is_empty();
            if served.is_none_or(|want| want == is_served) {
                return Ok(Some(view));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            super::presence::next_change(&mut local, remote.as_mut(), deadline - now).await;
        }
    }
}

/// Who serves an agent (`GET /api/v1/responders`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Responders {
    /// The agent.
    pub agent: String,
    /// Subscribers of its inbox on this node.
    pub here: usize,
    /// Other nodes with subscribers of its inbox (live announcements).
    pub nodes: Vec<u64>,
}

/// What makes an entry a request: who answers it where, and until when.
pub(crate) struct Envelope<'a> {
    /// The correlation ID the parts echo.
    pub correlation: &'a [u8],
    /// The stream the parts go to.
    pub reply_to: &'a [u8],
    /// Unix ms; also the entry's TTL.
    pub deadline_ms: u64,
}

/// The append of a request (a task is one) to `target`: `headers` then the request's own,
/// the deadline as its TTL, `who` as its producer.
pub(crate) fn request_append(
    who: &Principal,
    target: StreamKey,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    lane: Lane,
    mut headers: Vec<(Vec<u8>, Vec<u8>)>,
    e: &Envelope<'_>,
) -> Op {
    headers.push((CORRELATION.into(), e.correlation.to_vec()));
    headers.push((REPLY_TO.into(), e.reply_to.to_vec()));
    headers.push((DEADLINE.into(), e.deadline_ms.to_string().into_bytes()));
    Op::Append {
        stream: target,
        id: IdSpec::Auto,
        fields,
        meta: Meta {
            lane,
            expires_at_ms: Some(e.deadline_ms),
            producer: who.agent().map(|a| a.as_bytes().to_vec()),
            headers,
        },
        idempotency_key: None,
        no_mkstream: false,
        trim: None,
    }
}
