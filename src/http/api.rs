//! `/api/v1/`: read the broker's state, publish, consume with groups, manage dead letters,
//! and tail streams live (server-sent events). Reference: `docs/HTTP.md`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cortex_storage::{
    Answer, DeadReason, DlqFilter, GroupStart, Lane, Op, PendingQuery, PolicyPatch, Query,
    ReadFrom, ReadStart, Reply, StreamId, StreamKey, DEFAULT_DLQ,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{Body, Query as Q};
use super::json::{self as js, text};
use super::{principal, ApiError, App, BLOCK_MS_MAX, TAIL_WAIT};
use crate::broker::publish::Message;
use crate::broker::{Blocking, GroupRead, Principal, Right};

/// Most items one list answer holds.
const LIST_MAX: usize = 1_000;
/// Most messages in one publish request.
const PUBLISH_MAX: usize = 1_000;
/// Most streams a timeline or tail looks at.
const STREAMS_MAX: usize = 256;

type ApiResult = Result<Response, ApiError>;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/overview", get(overview))
        .route("/streams", get(streams))
        .route("/streams/{stream}", get(stream))
        .route("/streams/{stream}/messages", get(messages).post(publish))
        .route("/streams/{stream}/groups", post(create_group))
        .route("/streams/{stream}/groups/{group}/consumers", get(consumers))
        .route("/streams/{stream}/groups/{group}/pending", get(pending))
        .route("/streams/{stream}/groups/{group}/read", post(read))
        .route("/streams/{stream}/groups/{group}/ack", post(ack))
        .route("/streams/{stream}/groups/{group}/nack", post(nack))
        .route("/dlq", get(dlq_list))
        .route("/dlq/redrive", post(dlq_redrive))
        .route("/dlq/purge", post(dlq_purge))
        .route("/timeline", get(timeline))
        .route("/tail", get(tail))
        .route("/cluster", get(cluster))
        .route("/connections", get(connections))
        .route("/responders", get(responders))
        .route("/agents", get(agents))
        .route("/tasks", get(super::task::list).post(super::task::submit))
        .route("/tasks/{task}", get(super::task::status))
        .route("/tasks/{task}/cancel", post(super::task::cancel))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
        })
}

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

fn key(stream: &str) -> StreamKey {
    StreamKey::new(0, stream.as_bytes().to_vec())
}

fn id(s: &str) -> Result<StreamId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad(format!("'{s}' is not a stream ID (ms-seq)")))
}

fn ids(v: &[String]) -> Result<Vec<StreamId>, ApiError> {
    if v.is_empty() || v.len() > LIST_MAX {
        return Err(ApiError::bad(format!("give 1 to {LIST_MAX} ids")));
    }
    v.iter().map(|s| id(s)).collect()
}

async fn answer(app: &App, who: &Principal, q: Query) -> Result<Answer, ApiError> {
    Ok(app.broker.query(who, q).await??)
}

async fn reply(app: &App, who: &Principal, op: Op) -> Result<Reply, ApiError> {
    Ok(app.broker.submit_one(who, op).await??)
}

fn unexpected() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "unexpected answer from the broker",
    )
}

// ---- state -------------------------------------------------------------------------------

/// `GET /cluster[?leader=1|leader_not=ID|applied=N|purged=N][&timeout_ms=T]`: the node's view
/// of the cluster, once this node knows a leader (other than ID), has applied the log up to
/// N, or has purged it up to N behind a snapshot;
/// 504 when `timeout_ms` (at most [`BLOCK_MS_MAX`], default 10 s) passes first.
#[derive(Deserialize)]
struct ClusterWait {
    leader: Option<u8>,
    leader_not: Option<u64>,
    applied: Option<u64>,
    purged: Option<u64>,
    timeout_ms: Option<u64>,
}

async fn cluster(State(app): State<App>, h: HeaderMap, Q(w): Q<ClusterWait>) -> ApiResult {
    use crate::broker::Until;
    let who = principal(&app.broker, &h)?;
    let until = match (w.leader, w.leader_not, w.applied, w.purged) {
        (None, None, None, None) => Until::Now,
        (Some(_), None, None, None) => Until::Leader { not: None },
        (None, Some(id), None, None) => Until::Leader { not: Some(id) },
        (None, None, Some(i), None) => Until::Applied(i),
        (None, None, None, Some(i)) => Until::Purged(i),
        _ => {
            return Err(ApiError::bad(
                "give at most one of leader, leader_not, applied, purged",
            ))
        }
    };
    let timeout = Duration::from_millis(w.timeout_ms.unwrap_or(10_000).min(BLOCK_MS_MAX));
    match app.broker.cluster_wait(&who, until, timeout).await? {
        Some(st) => ok(serde_json::to_value(st).map_err(|e| ApiError::bad(e.to_string()))?),
        None => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!("the cluster did not reach {until:?} within {timeout:?}"),
        )),
    }
}

/// `GET /responders?agent=A[&served=true|false][&timeout_ms=T]`: who serves agent A's
/// inbox: subscribers on this node (`here`) and the other nodes with subscribers (`nodes`,
/// from their live announcements); once it is served (or not) when `served` is given; 504
/// when `timeout_ms` (at most [`BLOCK_MS_MAX`], default 10 s) passes first. Needs the
/// right to publish to the agent's inbox (to send it requests).
#[derive(Deserialize)]
struct RespondersWait {
    agent: String,
    served: Option<bool>,
    timeout_ms: Option<u64>,
}

async fn responders(State(app): State<App>, h: HeaderMap, Q(w): Q<RespondersWait>) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let timeout = Duration::from_millis(w.timeout_ms.unwrap_or(10_000).min(BLOCK_MS_MAX));
    match app
        .broker
        .wait_responders(&who, &w.agent, w.served, timeout)
        .await?
    {
        Some(r) => ok(serde_json::to_value(r).map_err(|e| ApiError::bad(e.to_string()))?),
        None => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "agent '{}' was not {} within {timeout:?}",
                w.agent,
                if w.served == Some(false) {
                    "left unserved"
                } else {
                    "served"
                }
            ),
        )),
    }
}

/// `GET /agents[?agent=A[&sessions=N][&timeout_ms=T]]`: the agents connected to this node
/// and, in a cluster, to the others, each with its sessions (node, front, client,
/// connected and last-heard times, what it serves). With `agent`, once A has N sessions
/// (at least one without `sessions`; 0 waits for it to leave); 504 when `timeout_ms` (at
/// most [`BLOCK_MS_MAX`], default 10 s) passes first.
#[derive(Deserialize)]
struct AgentsWait {
    agent: Option<String>,
    sessions: Option<usize>,
    timeout_ms: Option<u64>,
}

async fn agents(State(app): State<App>, h: HeaderMap, Q(w): Q<AgentsWait>) -> ApiResult {
    principal(&app.broker, &h)?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let view = match &w.agent {
        None => app.broker.agents(),
        Some(agent) => {
            let timeout = Duration::from_millis(w.timeout_ms.unwrap_or(10_000).min(BLOCK_MS_MAX));
            app.broker
                .wait_agents(agent, w.sessions, timeout)
                .await
                .ok_or_else(|| {
                    let want = w.sessions.map_or("any".to_string(), |n| n.to_string());
                    ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout",
                        format!("agent '{agent}' did not have {want} sessions within {timeout:?}"),
                    )
                })?
        }
    };
    let list: Vec<Value> = view
        .into_iter()
        .map(|a| {
            json!({
                "agent": a.agent,
                "last_heard_ms": a.last_heard_ms,
                "sessions": a.sessions.iter().map(|s| json!({
                    "node": s.node,
                    "front": s.front,
                    "client": s.client,
                    "connected_ms": s.connected_ms,
                    "last_heard_ms": s.last_heard_ms,
                    "serves": s.serves.iter().map(|(st, g)| json!({"stream": text(st), "group": text(g)})).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    ok(json!({ "now_ms": app.broker.now_ms(), "agents": list }))
}

/// `GET /connections[?protocol=P&at_most=N][&timeout_ms=T]`: open connections by protocol
/// (`resp`, `quic`, `http`, `http_sse`), once at most `N` of protocol `P` remain (a drain
/// before maintenance, without polling); 504 when `timeout_ms` (at most [`BLOCK_MS_MAX`],
/// default 10 s) passes first. This request is one of the `http` connections.
#[derive(Deserialize)]
struct ConnectionsWait {
    protocol: Option<String>,
    at_most: Option<u64>,
    timeout_ms: Option<u64>,
}

async fn connections(State(app): State<App>, h: HeaderMap, Q(w): Q<ConnectionsWait>) -> ApiResult {
    principal(&app.broker, &h)?;
    let counts = match (w.protocol, w.at_most) {
        (None, None) => app.broker.connections(),
        (Some(p), Some(n)) => {
            if !app.broker.connections().iter().any(|(name, _)| *name == p) {
                return Err(ApiError::bad(format!(
                    "unknown protocol '{p}': one of resp, quic, http, http_sse"
                )));
            }
            let timeout = Duration::from_millis(w.timeout_ms.unwrap_or(10_000).min(BLOCK_MS_MAX));
            app.broker
                .wait_connections(&p, n, timeout)
                .await
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout",
                        format!("more than {n} {p} connections after {timeout:?}"),
                    )
                })?
        }
        _ => return Err(ApiError::bad("give protocol and at_most together")),
    };
    let body: serde_json::Map<String, Value> = counts
        .into_iter()
        .map(|(p, n)| (p.to_string(), json!(n)))
        .collect();
    ok(Value::Object(body))
}

async fn overview(State(app): State<App>, h: HeaderMap) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    ok(js::overview(&app.broker, &app.broker.overview(&who)))
}

async fn streams(State(app): State<App>, h: HeaderMap) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let v: Vec<Value> = app
        .broker
        .streams(&who)
        .iter()
        .map(|s| js::stream(&app.broker, s))
        .collect();
    ok(json!({ "streams": v }))
}

async fn stream(State(app): State<App>, h: HeaderMap, Path(name): Path<String>) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    who.authorize_query(&Query::Stream { stream: key(&name) })
        .map_err(crate::broker::BrokerError::NoPermission)?;
    let s = app
        .broker
        .streams(&who)
        .into_iter()
        .find(|s| s.name == name.as_bytes())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no stream '{name}'"),
            )
        })?;
    ok(js::stream(&app.broker, &s))
}

#[derive(Deserialize)]
struct Browse {
    /// First ID or time (default `-`: the oldest).
    from: Option<String>,
    /// Last ID or time (default `+`: the newest).
    to: Option<String>,
    /// At most this many (default 100).
    count: Option<usize>,
    /// Newest first.
    #[serde(default)]
    rev: bool,
}

/// Browses a stream by ID or time without consuming anything.
async fn messages(
    State(app): State<App>,
    h: HeaderMap,
    Path(name): Path<String>,
    Q(b): Q<Browse>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let now = app.broker.now_ms();
    let bound = |s: Option<&String>, d: &str, end: bool| {
        let s = s.map_or(d, String::as_str);
        js::id_or_time(s, now, end)
            .ok_or_else(|| ApiError::bad(format!("'{s}' is neither an ID nor a time")))
    };
    let start = bound(b.from.as_ref(), "-", false)?;
    let end = bound(b.to.as_ref(), "+", true)?;
    let count = b.count.unwrap_or(100).clamp(1, LIST_MAX);
    let q = Query::Range {
        stream: key(&name),
        start,
        end,
        count: Some(count),
        rev: b.rev,
    };
    let Answer::Entries(e) = answer(&app, &who, q).await? else {
        return Err(unexpected());
    };
    let items: Vec<Value> = e.iter().map(|e| js::entry(name.as_bytes(), e)).collect();
    ok(json!({ "stream": name, "messages": items }))
}

#[derive(Deserialize)]
struct ConsumersQ {
    count: Option<usize>,
    consumer: Option<String>,
}

async fn consumers(
    State(app): State<App>,
    h: HeaderMap,
    Path((name, group)): Path<(String, String)>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let q = Query::Consumers {
        stream: key(&name),
        group: group.into_bytes(),
    };
    let Answer::Consumers(c) = answer(&app, &who, q).await? else {
        return Err(unexpected());
    };
    ok(json!({ "consumers": c.iter().map(js::consumer).collect::<Vec<_>>() }))
}

async fn pending(
    State(app): State<App>,
    h: HeaderMap,
    Path((name, group)): Path<(String, String)>,
    Q(p): Q<ConsumersQ>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let q = Query::Pending {
        stream: key(&name),
        group: group.into_bytes(),
        query: PendingQuery {
            start: StreamId::MIN,
            end: StreamId::MAX,
            count: p.count.unwrap_or(100).clamp(1, LIST_MAX),
            consumer: p.consumer.map(String::into_bytes),
            min_idle_ms: None,
        },
    };
    let Answer::Pending(items) = answer(&app, &who, q).await? else {
        return Err(unexpected());
    };
    ok(json!({ "pending": items.iter().map(js::pending).collect::<Vec<_>>() }))
}

// ---- publish and consume ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Outgoing {
    pub(super) fields: BTreeMap<String, String>,
    /// Lane name (`critical`, `high`, `normal`, `low`, `heartbeat`).
    pub(super) priority: Option<String>,
    pub(super) ttl_ms: Option<u64>,
    /// Idempotency key.
    pub(super) key: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    /// Hand it to groups from this time on: Unix ms, or `"2026-11-25T09:00:00Z"` (UTC).
    pub(super) deliver_at: Option<Value>,
    /// Hand it to groups this many ms after it is stored.
    pub(super) delay_ms: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PublishBody {
    Batch { messages: Vec<Outgoing> },
    One(Outgoing),
}

pub(super) fn message(o: Outgoing) -> Result<Message, ApiError> {
    if o.fields.is_empty() {
        return Err(ApiError::bad("a message needs at least one field"));
    }
    let lane = match o.priority.as_deref() {
        None => Lane::Normal,
        Some(p) => Lane::parse(p).ok_or_else(|| {
            ApiError::bad(format!(
                "unknown priority '{p}' (critical, high, normal, low, heartbeat)"
            ))
        })?,
    };
    let bytes = |m: BTreeMap<String, String>| {
        m.into_iter()
            .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
            .collect()
    };
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = bytes(o.headers);
    let schedule = match (o.deliver_at, o.delay_ms) {
        (Some(_), Some(_)) => return Err(ApiError::bad("give deliver_at or delay_ms, not both")),
        (Some(at), None) => {
            let t = match &at {
                Value::Number(n) => n.as_u64(),
                Value::String(s) if !s.starts_with('-') => crate::timespec::parse_time(s, 0),
                _ => None,
            };
            let t = t.ok_or_else(|| {
                ApiError::bad(format!(
                    "deliver_at must be Unix ms or a UTC time like \"2026-11-25T09:00:00Z\", not {at}"
                ))
            })?;
            Some((crate::wire::names::DELIVER_AT, t))
        }
        (None, Some(d)) => {
            let ms = d.as_u64().ok_or_else(|| {
                ApiError::bad(format!(
                    "delay_ms must be a whole number of milliseconds, not {d}"
                ))
            })?;
            Some((crate::wire::names::DELAY, ms))
        }
        (None, None) => None,
    };
    if let Some((name, ms)) = schedule {
        headers.push((name.as_bytes().to_vec(), ms.to_string().into_bytes()));
    }
    Ok(Message {
        fields: bytes(o.fields),
        lane,
        ttl_ms: o.ttl_ms,
        key: o.key.map(String::into_bytes),
        headers,
    })
}

/// Publishes one message (`{"fields": {...}}`) or a batch (`{"messages": [...]}`) in one
/// commit; answers once durable. A batch answers one result per message, in order: its
/// `id`, or the `error` that refused that message alone (the others are stored); 201 when
/// every message was stored, 207 when some were refused. A malformed batch is refused whole.
async fn publish(
    State(app): State<App>,
    h: HeaderMap,
    Path(name): Path<String>,
    Body(body): Body<PublishBody>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let (list, one) = match body {
        PublishBody::Batch { messages } => (messages, false),
        PublishBody::One(m) => (vec![m], true),
    };
    if list.is_empty() || list.len() > PUBLISH_MAX {
        return Err(ApiError::bad(format!(
            "publish 1 to {PUBLISH_MAX} messages"
        )));
    }
    let msgs = list.into_iter().map(message).collect::<Result<_, _>>()?;
    let replies = app
        .broker
        .publish(&who, name.clone().into_bytes(), msgs)
        .await?;
    let mut out = Vec::with_capacity(replies.len());
    let mut refused = 0;
    for r in replies {
        let result = match r {
            Ok(Reply::Appended { id, duplicate }) => Ok((id, duplicate)),
            Ok(_) => Err(unexpected()),
            Err(e) => Err(ApiError::from(e)),
        };
        match result {
            Ok((id, duplicate)) => out.push(json!({"id": id.to_string(), "duplicate": duplicate})),
            // A single message's refusal is the answer's own status.
            Err(e) if one => return Err(e),
            Err(e) => {
                refused += 1;
                out.push(json!({ "error": e.json() }));
            }
        }
    }
    if one {
        let body = out.pop().unwrap_or(Value::Null);
        return Ok((StatusCode::CREATED, Json(body)).into_response());
    }
    let status = if refused == 0 {
        StatusCode::CREATED
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((
        status,
        Json(json!({ "published": out, "refused": refused })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    group: String,
    /// `$` (only new entries, the default), `0` (everything) or an ID.
    start: Option<String>,
    /// Create the stream when missing (default true).
    mkstream: Option<bool>,
    /// A delivery policy: retries, backoff, ack wait, freshness, DLQ.
    policy: Option<PolicyBody>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    max_attempts: Option<u32>,
    backoff_ms: Option<Vec<u64>>,
    ack_wait_ms: Option<u64>,
    max_age_ms: Option<u64>,
    dead_letter: Option<String>,
}

async fn create_group(
    State(app): State<App>,
    h: HeaderMap,
    Path(name): Path<String>,
    Body(g): Body<NewGroup>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let start = match g.start.as_deref().unwrap_or("$") {
        "$" => GroupStart::Last,
        s => GroupStart::Id(id(s)?),
    };
    let mut ops = vec![Op::CreateGroup {
        stream: key(&name),
        group: g.group.clone().into_bytes(),
        start,
        mkstream: g.mkstream.unwrap_or(true),
        entries_read: None,
        policy: None,
    }];
    if let Some(p) = g.policy {
        ops.push(Op::PatchPolicy {
            stream: key(&name),
            group: g.group.clone().into_bytes(),
            patch: PolicyPatch {
                max_attempts: p.max_attempts,
                backoff_ms: p.backoff_ms,
                ack_wait_ms: p.ack_wait_ms.map(Some),
                max_age_ms: p.max_age_ms.map(Some),
                dead_letter: p.dead_letter.map(String::into_bytes),
            },
        });
    }
    // One transaction: the group never exists without its policy.
    for r in app.broker.transaction(&who, ops).await? {
        r?;
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"stream": name, "group": g.group})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    consumer: String,
    /// At most this many (default 10).
    count: Option<usize>,
    /// Wait up to this long for new entries (default 0, at most 60 s).
    block_ms: Option<u64>,
    /// `>` (new and due retries, the default) or an ID: this consumer's own pending
    /// entries after it.
    from: Option<String>,
}

/// A group read: hands entries to `consumer`; they stay pending until acked or nacked.
async fn read(
    State(app): State<App>,
    h: HeaderMap,
    Path((name, group)): Path<(String, String)>,
    Body(r): Body<ReadBody>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let from = match r.from.as_deref().unwrap_or(">") {
        ">" => ReadFrom::New,
        s => ReadFrom::History(id(s)?),
    };
    let req = GroupRead {
        streams: vec![(key(&name), from)],
        group: group.into_bytes(),
        consumer: r.consumer.into_bytes(),
        count: Some(r.count.unwrap_or(10).clamp(1, LIST_MAX)),
        noack: false,
        claim: None,
        max_count: None,
        max_bytes: None,
    };
    let blocking = match r.block_ms.unwrap_or(0) {
        0 => Blocking::No,
        ms => Blocking::For(Duration::from_millis(ms.min(BLOCK_MS_MAX))),
    };
    let Reply::GroupRead(mut v) = app.broker.read_group(&who, &req, blocking).await?? else {
        return Err(unexpected());
    };
    let handed = v.pop().unwrap_or_default();
    let items: Vec<Value> = handed
        .into_iter()
        .map(|(id, rec)| match rec {
            Some(record) => js::entry(name.as_bytes(), &cortex_storage::Entry { id, record }),
            None => json!({"stream": name, "id": id.to_string(), "deleted": true}),
        })
        .collect();
    ok(json!({ "messages": items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    ids: Vec<String>,
}

async fn ack(
    State(app): State<App>,
    h: HeaderMap,
    Path((name, group)): Path<(String, String)>,
    Body(a): Body<AckBody>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let op = Op::Ack {
        stream: key(&name),
        group: group.into_bytes(),
        ids: ids(&a.ids)?,
    };
    match reply(&app, &who, op).await? {
        Reply::Count(n) => ok(json!({ "acked": n })),
        _ => Err(unexpected()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NackBody {
    ids: Vec<String>,
    error: Option<String>,
    /// Dead-letter at once (reason `rejected`) instead of retrying.
    #[serde(default)]
    reject: bool,
}

async fn nack(
    State(app): State<App>,
    h: HeaderMap,
    Path((name, group)): Path<(String, String)>,
    Body(n): Body<NackBody>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let op = Op::Nack {
        stream: key(&name),
        group: group.into_bytes(),
        ids: ids(&n.ids)?,
        error: n.error.map(String::into_bytes),
        reject: n.reject,
    };
    match reply(&app, &who, op).await? {
        Reply::Count(c) => ok(json!({ "nacked": c })),
        _ => Err(unexpected()),
    }
}

// ---- dead letters ----------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DlqSelect {
    /// The dead-letter stream (default `cortex:dlq`).
    dlq: Option<String>,
    /// Only this dead letter (its ID in the DLQ).
    id: Option<String>,
    /// Only those from this origin stream.
    stream: Option<String>,
    group: Option<String>,
    /// `max_attempts`, `expired`, `stale` or `rejected`.
    reason: Option<String>,
    /// At most this many (default 100).
    count: Option<usize>,
}

fn select(s: DlqSelect) -> Result<(StreamKey, DlqFilter, usize), ApiError> {
    let reason = match s.reason.as_deref() {
        None | Some("") => None,
        Some(r) => Some(DeadReason::parse(r).ok_or_else(|| {
            ApiError::bad(format!(
                "unknown reason '{r}' (max_attempts, expired, stale, rejected, canceled)"
            ))
        })?),
    };
    let dlq = s
        .dlq
        .filter(|d| !d.is_empty())
        .map_or(DEFAULT_DLQ.to_vec(), String::into_bytes);
    Ok((
        StreamKey::new(0, dlq),
        DlqFilter {
            id: s.id.as_deref().map(id).transpose()?,
            origin_stream: s.stream.filter(|s| !s.is_empty()).map(String::into_bytes),
            group: s.group.filter(|s| !s.is_empty()).map(String::into_bytes),
            reason,
        },
        s.count.unwrap_or(100).clamp(1, LIST_MAX),
    ))
}

async fn dlq_list(State(app): State<App>, h: HeaderMap, Q(s): Q<DlqSelect>) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let (dlq, filter, count) = select(s)?;
    let name = dlq.name.clone();
    let Answer::DeadLetters(d) =
        answer(&app, &who, Query::DeadLetters { dlq, filter, count }).await?
    else {
        return Err(unexpected());
    };
    let items: Vec<Value> = d
        .iter()
        .map(|(e, d)| js::dead_letter(&name, e, d))
        .collect();
    ok(json!({ "dlq": text(&name), "dead_letters": items }))
}

/// Puts dead letters back on their origin streams (admin).
async fn dlq_redrive(State(app): State<App>, h: HeaderMap, Body(s): Body<DlqSelect>) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let (dlq, filter, limit) = select(s)?;
    match reply(&app, &who, Op::DlqRedrive { dlq, filter, limit }).await? {
        Reply::Count(n) => ok(json!({ "redriven": n })),
        _ => Err(unexpected()),
    }
}

/// Deletes dead letters (admin).
async fn dlq_purge(State(app): State<App>, h: HeaderMap, Body(s): Body<DlqSelect>) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let (dlq, filter, limit) = select(s)?;
    match reply(&app, &who, Op::DlqPurge { dlq, filter, limit }).await? {
        Reply::Count(n) => ok(json!({ "purged": n })),
        _ => Err(unexpected()),
    }
}

// ---- timeline and live tail ------------------------------------------------------------------

#[derive(Deserialize)]
struct TimelineQ {
    /// At most this many (default 100).
    count: Option<usize>,
    /// Only entries at or after this time or ID.
    since: Option<String>,
    /// Only these streams (comma-separated; default: every stream the caller may read,
    /// dead-letter and reply streams included).
    streams: Option<String>,
}

/// The streams a caller may read, or the ones it named (at most [`STREAMS_MAX`]), each with
/// its last ID as of now (`0-0` for a stream that does not exist yet).
fn chosen(app: &App, who: &Principal, named: Option<&str>) -> Vec<(Vec<u8>, StreamId)> {
    let all: Vec<(Vec<u8>, StreamId)> = app
        .broker
        .streams(who)
        .into_iter()
        .map(|s| (s.name, s.last_id))
        .collect();
    let picked: Vec<(Vec<u8>, StreamId)> = match named {
        Some(list) => list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|n| {
                let n = n.as_bytes();
                let last = all
                    .binary_search_by(|(a, _)| a.as_slice().cmp(n))
                    .map_or(StreamId::MIN, |i| all[i].1);
                (n.to_vec(), last)
            })
            .collect(),
        None => all,
    };
    // Named streams may not exist yet, so the broker's listing did not check them.
    picked
        .into_iter()
        .filter(|(s, _)| who.may(Right::Consume, s))
        .take(STREAMS_MAX)
        .collect()
}

/// Recent traffic across streams, newest first: who published what, on which lane.
async fn timeline(State(app): State<App>, h: HeaderMap, Q(t): Q<TimelineQ>) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let count = t.count.unwrap_or(100).clamp(1, LIST_MAX);
    let now = app.broker.now_ms();
    let since = match &t.since {
        Some(s) => js::id_or_time(s, now, false)
            .ok_or_else(|| ApiError::bad(format!("'{s}' is neither an ID nor a time")))?,
        None => StreamId::MIN,
    };
    let mut all = Vec::new();
    for (name, _) in chosen(&app, &who, t.streams.as_deref()) {
        let q = Query::Range {
            stream: StreamKey::new(0, name.clone()),
            start: since,
            end: StreamId::MAX,
            count: Some(count),
            rev: true,
        };
        if let Answer::Entries(e) = answer(&app, &who, q).await? {
            all.extend(e.into_iter().map(|e| (name.clone(), e)));
        }
    }
    all.sort_by_key(|e| std::cmp::Reverse(e.1.id));
    all.truncate(count);
    let items: Vec<Value> = all.iter().map(|(s, e)| js::entry(s, e)).collect();
    ok(json!({ "messages": items }))
}

#[derive(Deserialize)]
struct TailQ {
    /// Comma-separated streams (default: all the caller may read, as of the start).
    streams: Option<String>,
}

/// Server-sent events: one `message` event per entry added to the streams after the
/// request, as JSON; a comment every [`TAIL_WAIT`] keeps idle connections open. Consumes
/// nothing.
async fn tail(State(app): State<App>, h: HeaderMap, Q(t): Q<TailQ>) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let names = chosen(&app, &who, t.streams.as_deref());
    if names.is_empty() {
        return Err(ApiError::bad("no stream to tail"));
    }
    // Start after each stream's last ID as of this request, not of the first read: an entry
    // published once the response head has arrived is certain to be sent.
    let starts: Vec<(StreamKey, ReadStart)> = names
        .into_iter()
        .map(|(n, last)| (StreamKey::new(0, n), ReadStart::After(last)))
        .collect();
    let gauge = TailGauge::new(&app);
    let state = (app, who, starts, gauge);
    let events = futures_util::stream::unfold(state, |(app, who, mut starts, gauge)| async move {
        let mut stop = app.stop.clone();
        let read = app.broker.read_streams(
            &who,
            starts.clone(),
            Some(LIST_MAX),
            Blocking::For(TAIL_WAIT),
        );
        let got = tokio::select! {
            r = read => r,
            _ = stop.wait_for(|s| *s) => return None,
        };
        let batch = match got {
            Ok(Ok(Answer::Read(v))) => v,
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => {
                let ev = SseEvent::default().event("error").data(e.to_string());
                return Some((vec![ev], (app, who, starts, gauge)));
            }
            Err(_) => return None,
        };
        let mut out = Vec::new();
        for ((key, start), (entries, after)) in starts.iter_mut().zip(batch) {
            for e in &entries {
                out.push(
                    SseEvent::default()
                        .event("message")
                        .id(e.id.to_string())
                        .data(js::entry(&key.name, e).to_string()),
                );
            }
            *start = ReadStart::After(after);
        }
        if out.is_empty() {
            out.push(SseEvent::default().comment("idle"));
        }
        Some((out, (app, who, starts, gauge)))
    });
    use futures_util::StreamExt;
    let flat = events.flat_map(|v| {
        futures_util::stream::iter(v.into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Sse::new(flat)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Counts open tails for the `connections{protocol="http_sse"}` gauge.
struct TailGauge(App);

impl TailGauge {
    fn new(app: &App) -> Self {
        app.broker
            .metrics()
            .http_streams
            .fetch_add(1, Ordering::Relaxed);
        TailGauge(app.clone())
    }
}

impl Drop for TailGauge {
    fn drop(&mut self) {
        self.0
            .broker
            .metrics()
            .http_streams
            .fetch_sub(1, Ordering::Relaxed);
        self.0.broker.connection_closed();
    }
}
