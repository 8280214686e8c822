//! The Rust client for agents: one QUIC connection behind a cloneable [`Client`], with no
//! lock around requests (each is its own QUIC stream).
//!
//! - [`Client::publish`] / [`Client::publish_batch`]: answered once durable.
//! - [`Client::subscribe`]: pushed [`Delivery`]s with [`Delivery::ack`], [`Delivery::nack`]
//!   and [`Delivery::in_progress`], under a credit window.
//! - [`Client::request`] / [`Client::request_parts`]: request/reply with one deadline,
//!   multi-part replies and an immediate "no responders".
//! - [`Client::serve`]: receive requests sent to this agent and answer them.
//!
//! When the connection or the server goes away the client reconnects with jittered
//! exponential backoff (2^n ms, at most 4 s), authenticates again and resumes every
//! subscription; what was delivered and not acknowledged comes back from the group's
//! pending list, so nothing is lost. A publish in flight when the connection dropped is
//! retried only if every message has an idempotency key; otherwise it fails with
//! [`ClientError::Lost`], because it may or may not have been stored.

mod conn;
mod sub;
mod task;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

pub use crate::tls::Trust;
use cortex_protocol::{names, Frame, Limits};
pub use cortex_protocol::{
    AdminAnswer, AdminRequest, DeadLetter, DlqSelect, Entry, ErrorCode, Id, Message, PartKind,
    PolicyChange, PublishResult, Published, Start, StreamStat, TaskCall, TaskChange, TaskInfo,
};
pub use sub::{Delivery, SubEvent, Subscription, Window};
pub use task::NewTask;

use conn::Link;
pub use conn::State;

/// Where and who.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Server address.
    pub server: SocketAddr,
    /// The cluster's other nodes: when the connection to one fails, the client reconnects
    /// to the next that answers (subscriptions resume there).
    pub also: Vec<SocketAddr>,
    /// Name the server's certificate must carry (with a CA file).
    pub server_name: String,
    /// Agent name.
    pub agent: String,
    /// Token (empty on a broker without tokens).
    pub token: String,
    /// How to trust the server.
    pub trust: Trust,
    /// How long a call waits for a connection before failing.
    pub connect_timeout: Duration,
}

impl ClientOptions {
    /// Every address to try, the preferred first.
    pub fn servers(&self) -> Vec<SocketAddr> {
        std::iter::once(self.server)
            .chain(self.also.iter().copied().filter(|a| *a != self.server))
            .collect()
    }

    /// Options for a local broker on its defaults: `127.0.0.1:7400`, the certificate in
    /// `./cortex-data`.
    pub fn local(agent: &str) -> ClientOptions {
        ClientOptions {
            server: SocketAddr::from(([127, 0, 0, 1], 7400)),
            also: Vec::new(),
            server_name: "localhost".into(),
            agent: agent.into(),
            token: String::new(),
            trust: Trust::local(&PathBuf::from("./cortex-data")),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The server answered with an error.
    Server {
        /// Code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// No connection could be made (or none within the connect timeout).
    Connect(String),
    /// The connection dropped while the call was in flight; its effect is unknown.
    Lost(String),
    /// The server sent something this client does not understand.
    Protocol(String),
    /// The client was set up wrongly (bad TLS files, ...).
    Config(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Server { code, message } => write!(f, "{code:?}: {message}"),
            ClientError::Connect(e) => write!(f, "cannot connect: {e}"),
            ClientError::Lost(e) => write!(f, "connection lost: {e}"),
            ClientError::Protocol(e) => write!(f, "protocol error: {e}"),
            ClientError::Config(e) => write!(f, "client configuration: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub(crate) fn from_frame(f: Frame) -> ClientError {
    match f {
        Frame::Error { code, message } | Frame::Failed { code, message, .. } => {
            ClientError::Server { code, message }
        }
        other => ClientError::Protocol(format!("unexpected frame {other:?}")),
    }
}

/// A subscription's settings.
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// Stream.
    pub stream: Vec<u8>,
    /// Group (`None`: the agent's name).
    pub group: Option<Vec<u8>>,
    /// Consumer (`None`: the agent's name).
    pub consumer: Option<Vec<u8>>,
    /// Where a new group starts.
    pub from: Start,
    /// Most unacknowledged deliveries in flight.
    pub window: u32,
    /// Heartbeat interval, ms (0: the server's default, 5 s).
    pub heartbeat_ms: u32,
    /// No acks.
    pub no_ack: bool,
}

impl SubscribeOptions {
    /// Defaults: group and consumer named after the agent, new entries only, window 100.
    pub fn new(stream: impl Into<Vec<u8>>) -> SubscribeOptions {
        SubscribeOptions {
            stream: stream.into(),
            group: None,
            consumer: None,
            from: Start::New,
            window: 100,
            heartbeat_ms: 0,
            no_ack: false,
        }
    }
}

/// One part of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyPart {
    /// Progress, final or error.
    pub kind: PartKind,
    /// The responding agent.
    pub from: Option<String>,
    /// Body.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A reply's parts as they arrive; ends after the final (or error) part.
pub struct ReplyStream {
    rx: mpsc::Receiver<Result<ReplyPart, ClientError>>,
}

impl ReplyStream {
    /// The next part; `None` after the last.
    pub async fn next(&mut self) -> Option<Result<ReplyPart, ClientError>> {
        self.rx.recv().await
    }
}

/// A connected client; clone it freely (clones share the connection).
#[derive(Clone)]
pub struct Client {
    link: Arc<Link>,
}

impl Client {
    /// Connects and authenticates; fails with a clear error if the first attempt does.
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        Ok(Client {
            link: Link::connect(opts).await?,
        })
    }

    /// Closes the connection (for every clone) and waits up to a second for the server to
    /// hear of it: a process about to exit calls this, or the server keeps its
    /// subscriptions (and hands them deliveries) until its idle timeout.
    pub async fn close(&self) {
        self.link.close().await;
    }

    /// The limits the server announced.
    pub fn limits(&self) -> Limits {
        self.link.limits()
    }

    /// The agent this client acts as.
    pub fn agent(&self) -> &str {
        &self.link.opts.agent
    }

    /// Current connection state (for tests and status output).
    pub fn state(&self) -> State {
        self.link.state()
    }

    /// Publishes one message; returns once it is durable.
    pub async fn publish(
        &self,
        stream: impl Into<Vec<u8>>,
        message: Message,
    ) -> Result<Published, ClientError> {
        let mut r = self.publish_batch(stream, vec![message]).await?;
        r.pop()
            .ok_or_else(|| ClientError::Protocol("empty publish answer".into()))?
    }

    /// Publishes messages in order, in one commit; returns once the stored ones are durable,
    /// with one result per message: its ID, or why that message alone was refused (an entry
    /// over the store's size limit, say) while the others were stored. The outer error is a
    /// refusal of the whole publish (permission, a full disk, the connection lost).
    pub async fn publish_batch(
        &self,
        stream: impl Into<Vec<u8>>,
        messages: Vec<Message>,
    ) -> Result<Vec<Result<Published, ClientError>>, ClientError> {
        let n = messages.len();
        let retry_safe = messages.iter().all(|m| m.key.is_some());
        let frame = Frame::Publish {
            stream: stream.into(),
            messages,
        };
        let mut attempt = 0;
        loop {
            match self.link.call(&frame).await {
                Ok(Frame::Published { results }) if results.len() == n => {
                    return Ok(results
                        .into_iter()
                        .map(|r| match r {
                            PublishResult::Stored(p) => Ok(p),
                            PublishResult::Refused { code, message } => {
                                Err(ClientError::Server { code, message })
                            }
                        })
                        .collect())
                }
                Ok(Frame::Published { results }) => {
                    return Err(ClientError::Protocol(format!(
                        "{} results for a publish of {n} messages",
                        results.len()
                    )))
                }
                Ok(other) => match from_frame(other) {
                    // Busy: the writer queue is full, or a cluster is changing leader (the
                    // outcome may be unknown): with keys, trying again is safe.
                    ClientError::Server {
                        code: ErrorCode::Busy,
                        message,
                    } if retry_safe && attempt < 5 => {
                        attempt += 1;
                        tracing::debug!("publish refused ({message}); retrying with its keys");
                        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    }
                    e => return Err(e),
                },
                Err(ClientError::Lost(e)) if retry_safe && attempt < 5 => {
                    attempt += 1;
                    tracing::debug!("publish lost ({e}); retrying with its idempotency keys");
                }
                Err(ClientError::Lost(e)) => {
                    return Err(ClientError::Lost(format!(
                        "{e}; the publish may or may not be stored (give messages an idempotency key to make retries safe)"
                    )))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens a subscription; deliveries are pushed as they arrive.
    pub async fn subscribe(&self, opts: SubscribeOptions) -> Result<Subscription, ClientError> {
        sub::open(self.link.clone(), opts).await
    }

    /// Sends a request to `agent` and returns its reply parts as they arrive. Fails at
    /// once with [`ErrorCode::NoResponders`] when nobody serves `agent`.
    pub async fn request_parts(
        &self,
        agent: &str,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<ReplyStream, ClientError> {
        self.request_with(agent, fields, Vec::new(), 1, timeout)
            .await
    }

    /// [`Client::request_parts`] with extra headers and the request's lane in the
    /// responder's inbox.
    pub async fn request_with(
        &self,
        agent: &str,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        lane: u8,
        timeout: Duration,
    ) -> Result<ReplyStream, ClientError> {
        let frame = Frame::Request {
            agent: agent.into(),
            fields,
            headers,
            timeout_ms: timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u32,
            lane,
        };
        let (mut send, mut recv) = self.link.open().await?;
        conn::write(&mut send, &frame).await?;
        let _ = send.finish();
        let limits = self.link.limits();
        let first = conn::read(&mut recv, &limits).await?;
        let (tx, rx) = mpsc::channel(16);
        let first = match first {
            Frame::ReplyPart { kind, from, fields } => ReplyPart { kind, from, fields },
            other => return Err(from_frame(other)),
        };
        let done = first.kind.ends();
        let _ = tx.send(Ok(first)).await;
        if !done {
            let guard = timeout + Duration::from_secs(1);
            tokio::spawn(async move {
                let _send = send; // keep our half open while reading parts
                let until = tokio::time::Instant::now() + guard;
                loop {
                    let next = tokio::time::timeout_at(until, conn::read(&mut recv, &limits)).await;
                    let item = match next {
                        Err(_) => Err(ClientError::Server {
                            code: ErrorCode::Timeout,
                            message: "no complete reply in time".into(),
                        }),
                        Ok(Ok(Frame::ReplyPart { kind, from, fields })) => {
                            Ok(ReplyPart { kind, from, fields })
                        }
                        Ok(Ok(other)) => Err(from_frame(other)),
                        Ok(Err(e)) => Err(e),
                    };
                    let end = !matches!(&item, Ok(p) if !p.kind.ends());
                    if tx.send(item).await.is_err() || end {
                        break;
                    }
                }
            });
        }
        Ok(ReplyStream { rx })
    }

    /// Sends a request and waits for its final part (progress parts are skipped). An error
    /// part from the responder is returned as `Ok` with kind [`PartKind::Error`].
    pub async fn request(
        &self,
        agent: &str,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<ReplyPart, ClientError> {
        let mut parts = self.request_parts(agent, fields, timeout).await?;
        while let Some(p) = parts.next().await {
            let p = p?;
            if p.kind.ends() {
                return Ok(p);
            }
        }
        Err(ClientError::Protocol(
            "reply ended without a final part".into(),
        ))
    }

    /// Answers a request (`correlation` from its `cortex-correlation-id` header).
    pub async fn respond(
        &self,
        correlation: &[u8],
        kind: PartKind,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), ClientError> {
        let frame = Frame::Respond {
            correlation: correlation.to_vec(),
            kind,
            fields,
        };
        match self.link.call(&frame).await? {
            Frame::Done { .. } => Ok(()),
            other => Err(from_frame(other)),
        }
    }

    /// Receives the requests sent to this agent (its inbox, shared by every instance of
    /// the agent through the group `cortex-responders`).
    pub async fn serve(&self, window: u32) -> Result<Requests, ClientError> {
        let mut opts = SubscribeOptions::new(names::inbox(self.agent()));
        opts.group = Some(names::RESPONDERS_GROUP.as_bytes().to_vec());
        opts.window = window.max(1);
        Ok(Requests {
            client: self.clone(),
            sub: self.subscribe(opts).await?,
        })
    }

    /// Entries with IDs in `[start, end]`, oldest first (newest first with `rev`).
    pub async fn range(
        &self,
        stream: impl Into<Vec<u8>>,
        start: Id,
        end: Id,
        count: u32,
        rev: bool,
    ) -> Result<Vec<Entry>, ClientError> {
        let frame = Frame::Range {
            stream: stream.into(),
            start,
            end,
            count,
            rev,
        };
        match self.link.call(&frame).await? {
            Frame::Entries { items } => Ok(items),
            other => Err(from_frame(other)),
        }
    }

    /// A bare stream on the live connection (protocol tests, extensions).
    pub async fn raw_stream(&self) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        self.link.open().await
    }

    /// Administration and inspection.
    pub async fn admin(&self, req: AdminRequest) -> Result<AdminAnswer, ClientError> {
        match self.link.call(&Frame::Admin(req)).await? {
            Frame::AdminAnswer(a) => Ok(a),
            other => Err(from_frame(other)),
        }
    }
}

/// Requests sent to this agent.
pub struct Requests {
    client: Client,
    sub: Subscription,
}

/// One request to answer.
pub struct IncomingRequest {
    client: Client,
    /// The delivery that carried it (acked once the final part is sent).
    pub delivery: Delivery,
    /// Its correlation ID.
    pub correlation: Vec<u8>,
}

impl Requests {
    /// The next request; `None` when the subscription ended.
    pub async fn next(&mut self) -> Option<Result<IncomingRequest, ClientError>> {
        loop {
            let d = match self.sub.next().await? {
                Ok(d) => d,
                Err(e) => return Some(Err(e)),
            };
            match d.header(names::CORRELATION) {
                Some(c) => {
                    return Some(Ok(IncomingRequest {
                        client: self.client.clone(),
                        correlation: c.to_vec(),
                        delivery: d,
                    }))
                }
                None => {
                    // Not a request (somebody published to the inbox directly): it cannot be
                    // answered, so it is rejected to the dead-letter queue.
                    let _ = d.nack_reject("not a request: no correlation id").await;
                }
            }
        }
    }
}

impl IncomingRequest {
    /// The request's body.
    pub fn fields(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.delivery.fields
    }

    /// The requesting agent.
    pub fn from(&self) -> Option<&[u8]> {
        self.delivery.producer.as_deref()
    }

    /// Sends a "working on it" part.
    pub async fn progress(&self, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), ClientError> {
        self.client
            .respond(&self.correlation, PartKind::Progress, fields)
            .await
    }

    /// Sends an "input required" part: the responder waits for more input (what it needs,
    /// in `fields`); its task is `input-required` until the next part.
    pub async fn input_required(&self, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), ClientError> {
        self.client
            .respond(&self.correlation, PartKind::InputRequired, fields)
            .await
    }

    /// Sends the final part and acknowledges the request.
    pub async fn reply(self, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), ClientError> {
        self.finish(PartKind::Final, fields).await
    }

    /// Sends an error part and acknowledges the request.
    pub async fn fail(self, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), ClientError> {
        self.finish(PartKind::Error, fields).await
    }

    async fn finish(
        self,
        kind: PartKind,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), ClientError> {
        let r = self.client.respond(&self.correlation, kind, fields).await;
        // Answered or not (the requester may have given up), the request is done.
        self.delivery.ack().await?;
        r
    }
}
