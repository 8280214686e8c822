//! The frames of `cortex/1`. Variant order is the wire tag: append new variants at the end,
//! never reorder (see `docs/PROTOCOL.md`).

use bincode::{Decode, Encode};

use super::Limits;

/// Bytes (names, field names and values): binary-safe.
pub type Bytes = Vec<u8>;
/// Ordered field/value pairs (message body) or headers.
pub type Pairs = Vec<(Bytes, Bytes)>;

/// A stream entry ID: milliseconds and sequence, as Redis's `ms-seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct Id {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Typed error codes (an enum: a `u32` tag on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum ErrorCode {
    /// Not a frame of this protocol, or not valid here.
    BadFrame,
    /// The client's protocol version is not spoken.
    UnsupportedVersion,
    /// A request before a successful `Hello`.
    NotAuthenticated,
    /// Unknown agent or wrong token.
    AuthFailed,
    /// The agent lacks a permission (the message names it).
    NoPermission,
    /// A bad argument (the message says which).
    InvalidArgument,
    /// No such stream or group.
    NotFound,
    /// A size or count over its limit.
    TooLarge,
    /// The server is overloaded; retry later.
    Busy,
    /// The server is shutting down.
    ShuttingDown,
    /// Nobody serves the agent a request was sent to.
    NoResponders,
    /// A request's deadline passed.
    Timeout,
    /// Something exists already (a group).
    Conflict,
    /// The server failed; the message says how.
    Internal,
    /// The server's data disk is below its free-space watermark: new data is refused until
    /// space is freed (acks and reads still work). Retry later.
    InsufficientStorage,
}

/// A message to publish.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Message {
    /// Field/value pairs (at least one).
    pub fields: Pairs,
    /// Priority lane: 0 critical, 1 high, 2 normal, 3 low, 4 heartbeat.
    pub lane: u8,
    /// Time to live from now, ms.
    pub ttl_ms: Option<u64>,
    /// Idempotency key: a repeat within the server's window returns the first ID.
    pub key: Option<Bytes>,
    /// Free-form headers.
    pub headers: Pairs,
}

impl Message {
    /// Schedules the message: groups receive it from `unix_ms` on ([`crate::names::DELIVER_AT`]).
    pub fn deliver_at(mut self, unix_ms: u64) -> Message {
        self.headers.push((
            crate::names::DELIVER_AT.as_bytes().to_vec(),
            unix_ms.to_string().into_bytes(),
        ));
        self
    }

    /// Schedules the message `ms` after the server stores it ([`crate::names::DELAY`]).
    pub fn delay(mut self, ms: u64) -> Message {
        self.headers.push((
            crate::names::DELAY.as_bytes().to_vec(),
            ms.to_string().into_bytes(),
        ));
        self
    }
}

/// A stored message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Published {
    /// Its ID.
    pub id: Id,
    /// True when the idempotency key matched an earlier publish (nothing new stored).
    pub duplicate: bool,
}

/// The outcome of one message of a publish: every message of an accepted publish gets one,
/// in order, whether or not the others were stored.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum PublishResult {
    /// Stored (or a duplicate of a stored one).
    Stored(Published),
    /// Not stored; the other messages are unaffected.
    Refused {
        /// Code (`TooLarge` for an entry over the store's limit, ...).
        code: ErrorCode,
        /// Why.
        message: String,
    },
}

impl PublishResult {
    /// The stored message, or the refusal.
    pub fn stored(&self) -> Option<&Published> {
        match self {
            PublishResult::Stored(p) => Some(p),
            PublishResult::Refused { .. } => None,
        }
    }
}

/// Where a subscription's group starts when the subscription creates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Start {
    /// Only entries published from now on.
    New,
    /// Every entry in the stream.
    All,
    /// Entries after this ID.
    After(Id),
    /// Entries published at or after this Unix time, ms.
    Time(u64),
}

/// One pushed delivery.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Delivery {
    /// Stream.
    pub stream: Bytes,
    /// Entry ID.
    pub id: Id,
    /// Field/value pairs.
    pub fields: Pairs,
    /// Lane (0 critical ... 4 heartbeat).
    pub lane: u8,
    /// How many times the group has handed this entry out (1 on the first delivery).
    pub attempt: u32,
    /// Headers (a request's `cortex-correlation-id`, `cortex-reply-to`, ...).
    pub headers: Pairs,
    /// The publishing agent, if known.
    pub producer: Option<Bytes>,
}

/// An entry of a range read.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Entry {
    /// ID.
    pub id: Id,
    /// Field/value pairs.
    pub fields: Pairs,
    /// Lane.
    pub lane: u8,
    /// Headers.
    pub headers: Pairs,
    /// Publishing agent.
    pub producer: Option<Bytes>,
    /// Expiry, Unix ms.
    pub expires_at_ms: Option<u64>,
}

/// A part of a reply to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum PartKind {
    /// "Working on it": more parts follow.
    Progress,
    /// The result; the request is complete.
    Final,
    /// The responder failed; the request is complete.
    Error,
    /// The responder needs more input before it can go on: more parts follow (its task
    /// is `input-required` until the next part).
    InputRequired,
}

impl PartKind {
    /// The last part of a reply: `Final` or `Error`.
    pub fn ends(self) -> bool {
        matches!(self, PartKind::Final | PartKind::Error)
    }
}

/// Which dead letters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct DlqSelect {
    /// Dead-letter stream (`None`: `cortex:dlq`).
    pub dlq: Option<Bytes>,
    /// Only this DLQ entry.
    pub id: Option<Id>,
    /// Only from this origin stream.
    pub origin: Option<Bytes>,
    /// Only dead-lettered by this group.
    pub group: Option<Bytes>,
    /// Only with this reason (`max_attempts`, `expired`, `stale`, `rejected`, `canceled`).
    pub reason: Option<String>,
    /// At most this many.
    pub count: u32,
}

/// A delivery-policy change: `None` fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct PolicyChange {
    /// Failed attempts before dead-lettering.
    pub max_attempts: Option<u32>,
    /// Backoff steps, ms.
    pub backoff_ms: Option<Vec<u64>>,
    /// Ack deadline (`Some(None)`: none).
    pub ack_wait_ms: Option<Option<u64>>,
    /// Freshness limit (`Some(None)`: none).
    pub max_age_ms: Option<Option<u64>>,
    /// Dead-letter stream.
    pub dead_letter: Option<Bytes>,
}

/// A group's delivery policy.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Policy {
    /// Ack deadline, ms.
    pub ack_wait_ms: Option<u64>,
    /// Failed attempts before dead-lettering.
    pub max_attempts: u32,
    /// Backoff steps, ms.
    pub backoff_ms: Vec<u64>,
    /// Freshness limit, ms.
    pub max_age_ms: Option<u64>,
    /// Dead-letter stream.
    pub dead_letter: Bytes,
}

/// Administration and inspection.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum AdminRequest {
    /// Streams with their groups (`None`: every stream, up to 1,000).
    Stat {
        /// One stream only.
        stream: Option<Bytes>,
    },
    /// A group's policy, changed first when `change` is given (admin).
    Policy {
        /// Stream.
        stream: Bytes,
        /// Group.
        group: Bytes,
        /// The change.
        change: Option<PolicyChange>,
    },
    /// List dead letters (admin).
    DlqList(DlqSelect),
    /// Put dead letters back on their origin streams (admin).
    DlqRedrive(DlqSelect),
    /// Delete dead letters (admin).
    DlqPurge(DlqSelect),
    /// Copy the store as of the last commit into a directory on the broker's machine
    /// (admin). Answered with [`AdminAnswer::Backup`].
    Backup {
        /// Target directory (absent or empty).
        dir: String,
    },
    /// The cluster as the node sees it; with a change, the membership is changed first (on
    /// the leader, forwarded there when needed; admin). Answered with
    /// [`AdminAnswer::Cluster`].
    Cluster {
        /// A membership change, or none to only read.
        change: Option<ClusterChange>,
    },
    /// Tasks (any agent; the server checks rights on the task it finds). Answered with
    /// [`AdminAnswer::Task`] or, for a listing, [`AdminAnswer::Tasks`].
    Task(TaskCall),
    /// The agents connected to the node, with their sessions (any agent). Answered with
    /// [`AdminAnswer::Agents`].
    Agents,
}

/// A task call.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum TaskCall {
    /// Submits a task to an agent's inbox, with a correlation ID equal to the task ID, so
    /// the worker answers it as a request (`Respond`): its parts move the task.
    Submit {
        /// The agent.
        agent: String,
        /// The task ID (`None`: the server makes one, 32 hex digits).
        task: Option<Bytes>,
        /// Body.
        fields: Pairs,
        /// Headers (the schedule's, `cortex-deliver-at-ms` or `cortex-delay-ms`, apply).
        headers: Pairs,
        /// Lane.
        lane: u8,
        /// How long it may wait for a worker, ms (0: the server's default, 1 hour).
        deadline_ms: u64,
    },
    /// A task with its history.
    Status {
        /// Task ID.
        task: Bytes,
    },
    /// Cancels a task.
    Cancel {
        /// Task ID.
        task: Bytes,
    },
    /// Tasks in ID order after `after`.
    List {
        /// Tasks addressed to this agent.
        agent: Option<String>,
        /// Tasks of this stream.
        stream: Option<Bytes>,
        /// In this state (A2A's name).
        state: Option<String>,
        /// After this task ID (empty: from the first).
        after: Bytes,
        /// At most this many.
        count: u32,
    },
    /// The task with its changes from position `from` on; waits up to `wait_ms` for one
    /// when there is none yet.
    Watch {
        /// Task ID.
        task: Bytes,
        /// First change wanted.
        from: u64,
        /// Longest wait, ms (at most 60,000).
        wait_ms: u32,
    },
}

/// One change of a task.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TaskChange {
    /// Position in the task's history.
    pub seq: u64,
    /// When, Unix ms.
    pub at_ms: u64,
    /// The state after it.
    pub state: String,
    /// What happened: `submitted`, `delivered`, `part`, `acked`, `retry`, `rejected`,
    /// `dead-lettered`, `canceled`, `removed`, `redriven`, `deadline`.
    pub event: String,
    /// Its details.
    pub detail: String,
    /// It came after the task had finished (a reply after a cancel).
    pub late: bool,
}

/// A task.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TaskInfo {
    /// Task ID.
    pub task: Bytes,
    /// State (A2A's name).
    pub state: String,
    /// Its stream.
    pub stream: Bytes,
    /// Its entry.
    pub id: Id,
    /// Who submitted it.
    pub submitter: Option<Bytes>,
    /// The group that last handed it out.
    pub group: Option<Bytes>,
    /// The consumer it was last handed to.
    pub consumer: Option<Bytes>,
    /// Created, Unix ms.
    pub created_ms: u64,
    /// Last change, Unix ms.
    pub updated_ms: u64,
    /// Finished, Unix ms.
    pub finished_ms: Option<u64>,
    /// Changes ever made.
    pub changes: u64,
    /// The changes asked for (all kept ones, or from a watch's position).
    pub history: Vec<TaskChange>,
}

/// A membership change.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ClusterChange {
    /// Adds a voter: it first catches up as a learner, then joins the quorum.
    Add {
        /// Node ID.
        id: u64,
        /// Its cluster address (`host:port`).
        addr: String,
    },
    /// Removes a voter (a dead node, or one being replaced).
    Remove {
        /// Node ID.
        id: u64,
    },
}

/// A group in [`StreamStat`].
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct GroupStat {
    /// Name.
    pub name: Bytes,
    /// Consumers.
    pub consumers: u64,
    /// Delivered, not acknowledged.
    pub pending: u64,
    /// Entries not yet handed out (`None`: unknown).
    pub lag: Option<u64>,
    /// Last ID handed out.
    pub last_delivered: Id,
    /// Has a delivery policy.
    pub policy: bool,
}

/// A stream in an [`AdminAnswer::Stat`].
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StreamStat {
    /// Name.
    pub name: Bytes,
    /// Entries.
    pub length: u64,
    /// Last ID.
    pub last_id: Id,
    /// Entries per lane, critical first.
    pub lanes: Vec<u64>,
    /// Groups.
    pub groups: Vec<GroupStat>,
}

/// A dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DeadLetter {
    /// Its ID in the dead-letter stream.
    pub id: Id,
    /// Origin stream.
    pub origin: Bytes,
    /// Origin ID.
    pub origin_id: Id,
    /// Group.
    pub group: Bytes,
    /// Consumer that last had it.
    pub consumer: Bytes,
    /// Reason.
    pub reason: String,
    /// Failed attempts.
    pub failures: u32,
    /// Last error text.
    pub last_error: Option<Bytes>,
    /// When, Unix ms.
    pub dead_at_ms: u64,
    /// The original fields.
    pub fields: Pairs,
}

/// Answers to [`AdminRequest`]s.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum AdminAnswer {
    /// Stat.
    Stat(Vec<StreamStat>),
    /// Policy (`None`: plain Redis semantics).
    Policy(Option<Policy>),
    /// DlqList.
    DeadLetters(Vec<DeadLetter>),
    /// DlqRedrive / DlqPurge: how many.
    Count(u64),
    /// Backup: what was copied.
    Backup {
        /// Streams.
        streams: u64,
        /// Keys.
        keys: u64,
        /// Bytes of keys and values.
        bytes: u64,
    },
    /// Cluster: the node's view as JSON (`cortex cluster status` prints it).
    Cluster(String),
    /// A task.
    Task(TaskInfo),
    /// Tasks, and the task ID to continue after when there may be more.
    Tasks {
        /// Tasks.
        tasks: Vec<TaskInfo>,
        /// Continue after this.
        next: Option<Bytes>,
    },
    /// Agents connected to the node, by name.
    Agents(Vec<AgentInfo>),
}

/// An agent connected to a node.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AgentInfo {
    /// Its name (empty: the anonymous agent of a broker without tokens).
    pub agent: String,
    /// The latest `last_heard_ms` of its sessions.
    pub last_heard_ms: u64,
    /// Its connections.
    pub sessions: Vec<SessionInfo>,
}

/// One connection of an agent.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SessionInfo {
    /// The front (`quic`).
    pub front: String,
    /// The client library's name and version (from `Hello`).
    pub client: String,
    /// When it authenticated, Unix ms.
    pub connected_ms: u64,
    /// When the agent last sent anything on it, Unix ms.
    pub last_heard_ms: u64,
    /// (stream, group) of each open subscription.
    pub serves: Vec<(Bytes, Bytes)>,
    /// The node the connection is to: its cluster ID (0 on a single node).
    pub node: u64,
}

/// A frame. The tag (variant index) is its type on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Frame {
    /// 0, client: first frame of a connection, on its first stream.
    Hello {
        /// [`super::PROTOCOL`].
        protocol: u16,
        /// Agent name (empty on a broker without tokens).
        agent: String,
        /// Token.
        token: String,
        /// Free text naming the client library.
        client: String,
    },
    /// 1, server: authentication succeeded.
    Welcome {
        /// The server's protocol version.
        protocol: u16,
        /// Server name and version.
        server: String,
        /// The agent the connection acts as.
        agent: String,
        /// Limits the server enforces.
        limits: Limits,
    },
    /// 2, server: a request failed.
    Error {
        /// Code.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
    },
    /// 3, client: publish one or more messages to a stream; answered once durable.
    Publish {
        /// Stream.
        stream: Bytes,
        /// Messages, in order.
        messages: Vec<Message>,
    },
    /// 4, server: one result per published message, in order.
    Published {
        /// Results.
        results: Vec<PublishResult>,
    },
    /// 5, client: opens a subscription on this stream.
    Subscribe {
        /// Stream.
        stream: Bytes,
        /// Group (`None`: the agent's name, so each agent sees everything: broadcast).
        group: Option<Bytes>,
        /// Consumer (`None`: the agent's name).
        consumer: Option<Bytes>,
        /// Where a new group starts.
        from: Start,
        /// Most unacknowledged deliveries in flight (at least 1).
        window: u32,
        /// Heartbeat interval on a quiet subscription, ms (0: the server's default).
        heartbeat_ms: u32,
        /// Deliveries need no ack (nothing pending, nothing retried).
        no_ack: bool,
    },
    /// 6, client: sets the subscription's window (0 pauses delivery).
    Credit {
        /// New window.
        window: u32,
    },
    /// 7, server: the subscription is open.
    Subscribed {
        /// Group.
        group: Bytes,
        /// Consumer.
        consumer: Bytes,
    },
    /// 8, server: pushed deliveries.
    Deliveries {
        /// Deliveries, in hand-out order.
        items: Vec<Delivery>,
    },
    /// 9, server: the subscription is alive and has nothing to deliver.
    Heartbeat {
        /// Deliveries in flight.
        in_flight: u32,
        /// The window.
        window: u32,
    },
    /// 10, client: acknowledge deliveries.
    Ack {
        /// Echoed in [`Frame::Done`] / [`Frame::Failed`].
        seq: u64,
        /// IDs.
        ids: Vec<Id>,
    },
    /// 11, client: deliveries failed; retried after the backoff or dead-lettered.
    Nack {
        /// Echoed.
        seq: u64,
        /// IDs.
        ids: Vec<Id>,
        /// Error text, kept with the entry.
        error: Option<String>,
        /// Dead-letter at once (reason `rejected`).
        reject: bool,
    },
    /// 12, client: still working on these; extends their ack deadlines.
    Progress {
        /// Echoed.
        seq: u64,
        /// IDs.
        ids: Vec<Id>,
    },
    /// 13, server: an ack, nack or in-progress was applied.
    Done {
        /// The request's `seq`.
        seq: u64,
        /// How many IDs it applied to.
        count: u64,
    },
    /// 14, server: an ack, nack or in-progress failed.
    Failed {
        /// The request's `seq`.
        seq: u64,
        /// Code.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// 15, client: a request to an agent; answered with [`Frame::ReplyPart`]s.
    Request {
        /// The agent whose inbox gets it.
        agent: String,
        /// Body.
        fields: Pairs,
        /// Extra headers.
        headers: Pairs,
        /// Deadline for the whole request, ms from now.
        timeout_ms: u32,
        /// Lane.
        lane: u8,
    },
    /// 16, server: a part of a reply.
    ReplyPart {
        /// Progress, final or error.
        kind: PartKind,
        /// The responding agent.
        from: Option<String>,
        /// Body.
        fields: Pairs,
    },
    /// 17, client: a responder answers a request it was delivered.
    Respond {
        /// The request's `cortex-correlation-id` header.
        correlation: Bytes,
        /// Progress, final or error.
        kind: PartKind,
        /// Body.
        fields: Pairs,
    },
    /// 18, client: read entries with IDs in `[start, end]`.
    Range {
        /// Stream.
        stream: Bytes,
        /// Lowest ID.
        start: Id,
        /// Highest ID.
        end: Id,
        /// At most this many.
        count: u32,
        /// Newest first.
        rev: bool,
    },
    /// 19, server: entries.
    Entries {
        /// Entries.
        items: Vec<Entry>,
    },
    /// 20, client: administration.
    Admin(AdminRequest),
    /// 21, server: its answer.
    AdminAnswer(AdminAnswer),
    /// 22, server, on a subscription: a task the consumer holds was canceled. Sent before
    /// any delivery committed after the cancel; the entry left the pending list (an ack of
    /// it is harmless, a reply is kept, marked late).
    Canceled {
        /// Task ID.
        task: Bytes,
        /// The entry.
        id: Id,
    },
}

/// Why a decoded frame is refused: a count or size over its limit (`TooLarge`), or a value
/// that is not allowed at all, such as an empty name or a zero timeout (`InvalidArgument`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Over a limit.
    OverLimit(String),
    /// Not a valid value (too small, empty, out of range).
    Invalid(String),
}

fn name(what: &str, n: &[u8], l: &Limits) -> Result<(), Violation> {
    // The text is made only for a refusal: names are checked on every frame.
    let why = || {
        format!(
            "{what} must be 1 to {} bytes, got {}",
            l.name_bytes,
            n.len()
        )
    };
    if n.is_empty() {
        return Err(Violation::Invalid(why()));
    }
    if n.len() > l.name_bytes as usize {
        return Err(Violation::OverLimit(why()));
    }
    Ok(())
}

fn count(what: &str, n: usize, max: u32) -> Result<(), Violation> {
    if n > max as usize {
        return Err(Violation::OverLimit(format!(
            "{n} {what}, the limit is {max}"
        )));
    }
    Ok(())
}

fn body(fields: &Pairs, headers: &Pairs, lane: u8, l: &Limits) -> Result<(), Violation> {
    count("fields", fields.len(), l.fields)?;
    count("headers", headers.len(), l.headers)?;
    if fields.is_empty() {
        return Err(Violation::Invalid(
            "a message needs at least one field".into(),
        ));
    }
    if lane > 4 {
        return Err(Violation::Invalid(format!(
            "lane {lane} does not exist (0..=4)"
        )));
    }
    Ok(())
}

/// Bytes a body's pairs take on the wire (to keep answers under the frame limit).
pub fn pairs_bytes(p: &Pairs) -> usize {
    p.iter().map(|(k, v)| 16 + k.len() + v.len()).sum()
}

impl Frame {
    /// Checks counts and names against `l` (frame size was checked before decoding).
    pub fn check(&self, l: &Limits) -> Result<(), Violation> {
        match self {
            Frame::Hello { agent, token, .. } => {
                count("agent name bytes", agent.len(), l.name_bytes)?;
                count("token bytes", token.len(), l.token_bytes)
            }
            Frame::Publish { stream, messages } => {
                name("stream name", stream, l)?;
                if messages.is_empty() {
                    return Err(Violation::Invalid(
                        "a publish needs at least one message".into(),
                    ));
                }
                count("messages", messages.len(), l.batch)?;
                messages
                    .iter()
                    .try_for_each(|m| body(&m.fields, &m.headers, m.lane, l))
            }
            Frame::Subscribe {
                stream,
                group,
                consumer,
                window,
                ..
            } => {
                name("stream name", stream, l)?;
                if let Some(g) = group {
                    name("group name", g, l)?;
                }
                if let Some(c) = consumer {
                    name("consumer name", c, l)?;
                }
                count("window", *window as usize, l.window)
            }
            Frame::Credit { window } => count("window", *window as usize, l.window),
            Frame::Ack { ids, .. } | Frame::Progress { ids, .. } => count("ids", ids.len(), l.ids),
            Frame::Nack { ids, error, .. } => {
                count("ids", ids.len(), l.ids)?;
                count(
                    "error bytes",
                    error.as_ref().map_or(0, String::len),
                    l.text_bytes,
                )
            }
            Frame::Request {
                agent,
                fields,
                headers,
                timeout_ms,
                lane,
            } => {
                name("agent name", agent.as_bytes(), l)?;
                body(fields, headers, *lane, l)?;
                if *timeout_ms == 0 {
                    return Err(Violation::Invalid(
                        "a request needs a timeout of at least 1 ms".into(),
                    ));
                }
                count("ms of timeout", *timeout_ms as usize, l.request_timeout_ms)
            }
            Frame::Respond {
                correlation,
                fields,
                ..
            } => {
                count(
                    "correlation bytes",
                    correlation.len(),
                    crate::names::CORRELATION_BYTES_MAX as u32,
                )?;
                count("fields", fields.len(), l.fields)
            }
            Frame::Range {
                stream, count: n, ..
            } => {
                name("stream name", stream, l)?;
                count("entries", *n as usize, l.range_count)
            }
            Frame::Admin(a) => match a {
                AdminRequest::Stat { stream } => match stream {
                    Some(s) => name("stream name", s, l),
                    None => Ok(()),
                },
                AdminRequest::Policy { stream, group, .. } => {
                    name("stream name", stream, l)?;
                    name("group name", group, l)
                }
                AdminRequest::DlqList(s)
                | AdminRequest::DlqRedrive(s)
                | AdminRequest::DlqPurge(s) => {
                    count("dead letters", s.count as usize, l.range_count)
                }
                AdminRequest::Backup { dir } => count("directory bytes", dir.len(), 4096),
                AdminRequest::Cluster {
                    change: Some(ClusterChange::Add { addr, .. }),
                } => count("address bytes", addr.len(), 256),
                AdminRequest::Cluster { .. } | AdminRequest::Agents => Ok(()),
                AdminRequest::Task(t) => {
                    let task_id = |t: &[u8]| {
                        if t.is_empty() {
                            return Err(Violation::Invalid("a task ID is 1 or more bytes".into()));
                        }
                        count(
                            "task ID bytes",
                            t.len(),
                            crate::names::CORRELATION_BYTES_MAX as u32,
                        )
                    };
                    match t {
                        TaskCall::Submit {
                            agent,
                            task,
                            fields,
                            headers,
                            lane,
                            ..
                        } => {
                            name("agent name", agent.as_bytes(), l)?;
                            if let Some(t) = task {
                                task_id(t)?;
                            }
                            body(fields, headers, *lane, l)
                        }
                        TaskCall::Status { task } | TaskCall::Cancel { task } => task_id(task),
                        TaskCall::Watch { task, wait_ms, .. } => {
                            task_id(task)?;
                            count("ms of wait", *wait_ms as usize, 60_000)
                        }
                        TaskCall::List {
                            agent,
                            stream,
                            state,
                            after,
                            count: n,
                        } => {
                            if let Some(a) = agent {
                                name("agent name", a.as_bytes(), l)?;
                            }
                            if let Some(s) = stream {
                                name("stream name", s, l)?;
                            }
                            count("state bytes", state.as_ref().map_or(0, String::len), 64)?;
                            count("after bytes", after.len(), 64)?;
                            count("tasks", *n as usize, l.range_count)
                        }
                    }
                }
            },
            _ => Ok(()),
        }
    }
}

impl Frame {
    /// The variant's name, as `docs/PROTOCOL.md` and the golden vectors spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Welcome { .. } => "Welcome",
            Frame::Error { .. } => "Error",
            Frame::Publish { .. } => "Publish",
            Frame::Published { .. } => "Published",
            Frame::Subscribe { .. } => "Subscribe",
            Frame::Credit { .. } => "Credit",
            Frame::Subscribed { .. } => "Subscribed",
            Frame::Deliveries { .. } => "Deliveries",
            Frame::Heartbeat { .. } => "Heartbeat",
            Frame::Ack { .. } => "Ack",
            Frame::Nack { .. } => "Nack",
            Frame::Progress { .. } => "Progress",
            Frame::Done { .. } => "Done",
            Frame::Failed { .. } => "Failed",
            Frame::Request { .. } => "Request",
            Frame::ReplyPart { .. } => "ReplyPart",
            Frame::Respond { .. } => "Respond",
            Frame::Range { .. } => "Range",
            Frame::Entries { .. } => "Entries",
            Frame::Admin(_) => "Admin",
            Frame::AdminAnswer(_) => "AdminAnswer",
            Frame::Canceled { .. } => "Canceled",
        }
    }
}
