//! `/api/v1/tasks`: submit a task to an agent, read one (its state and history), watch it
//! (a long poll from a position in its history), cancel it, list them. Behaviour is the
//! broker's ([`crate::broker::task`]); here only the JSON shapes.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cortex_storage::{TaskRecord, TaskState};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{message, Outgoing};
use super::extract::{Body, Query as Q};
use super::json::text;
use super::{principal, ApiError, App};
use crate::broker::task::{event_text, NewTask, TaskError, TaskQuery, WATCH_WAIT_MAX_MS};

type ApiResult = Result<Response, ApiError>;

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Broker(e) => e.into(),
            TaskError::Store(e) => e.into(),
        }
    }
}

/// A task as the API shows it.
pub(super) fn task_json(t: &TaskRecord) -> Value {
    let history: Vec<Value> = t
        .history
        .iter()
        .map(|c| {
            let (event, detail) = event_text(&c.event);
            json!({
                "seq": c.seq,
                "at_ms": c.at_ms,
                "state": c.state.name(),
                "event": event,
                "detail": detail,
                "late": c.late,
            })
        })
        .collect();
    json!({
        "task": text(&t.task),
        "state": t.state.name(),
        "final": t.state.is_final(),
        "stream": text(&t.stream),
        "id": t.id.to_string(),
        "submitter": t.submitter.as_deref().map(text),
        "group": t.holder.as_ref().map(|(g, _)| text(g)),
        "consumer": t.holder.as_ref().map(|(_, c)| text(c)),
        "created_ms": t.created_ms,
        "updated_ms": t.updated_ms,
        "finished_ms": t.finished_ms,
        "deadline_ms": t.deadline_ms,
        "remove_at_ms": t.remove_at_ms,
        "changes": t.changes,
        "history": history,
    })
}

/// `POST /tasks`: `{"agent": "pink", "fields": {...}}`, with optional `id`, `priority`,
/// `headers`, `deadline_ms` (default one hour), `deliver_at` or `delay_ms`, `on_cancel`
/// (`dlq`: canceled before a worker took it, it goes to the dead-letter stream; `drop`, the
/// default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskBody {
    agent: String,
    id: Option<String>,
    fields: BTreeMap<String, String>,
    priority: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    deadline_ms: Option<u64>,
    deliver_at: Option<Value>,
    delay_ms: Option<Value>,
    on_cancel: Option<String>,
}

/// Submits a task to an agent's inbox; 201 with its ID and entry once durable.
pub(super) async fn submit(
    State(app): State<App>,
    h: HeaderMap,
    Body(b): Body<TaskBody>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let mut headers = b.headers;
    if let Some(v) = b.on_cancel {
        headers.insert("cortex-on-cancel".into(), v);
    }
    let m = message(Outgoing {
        fields: b.fields,
        priority: b.priority,
        ttl_ms: None,
        key: None,
        headers,
        deliver_at: b.deliver_at,
        delay_ms: b.delay_ms,
    })?;
    let task = NewTask {
        id: b.id.map(String::into_bytes),
        fields: m.fields,
        lane: m.lane,
        deadline_ms: b.deadline_ms,
        headers: m.headers,
    };
    let (task, entry) = app.broker.submit_task(&who, &b.agent, task).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "task": text(&task),
            "agent": b.agent,
            "id": entry.to_string(),
        })),
    )
        .into_response())
}

/// `GET /tasks/{task}[?from=N][&timeout_ms=T]`: the task. With `from`, a watch: it answers
/// once the task has changes at or past position `from` (history holds only those), or
/// after `timeout_ms` (default and at most 60 s) with none; resume with `from` = the last
/// `seq` seen + 1.
#[derive(Deserialize)]
pub(super) struct WatchQ {
    from: Option<u64>,
    timeout_ms: Option<u64>,
}

pub(super) async fn status(
    State(app): State<App>,
    h: HeaderMap,
    Path(task): Path<String>,
    Q(w): Q<WatchQ>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let rec = match w.from {
        None => app.broker.task(&who, task.as_bytes()).await?,
        Some(from) => {
            let wait = Duration::from_millis(w.timeout_ms.unwrap_or(WATCH_WAIT_MAX_MS));
            app.broker
                .watch_task(&who, task.as_bytes(), from, wait)
                .await?
        }
    };
    Ok(Json(task_json(&rec)).into_response())
}

/// `POST /tasks/{task}/cancel`: cancels it; the task, now `canceled`. 404 for an unknown
/// task, 409 for a finished one (the message names its state).
pub(super) async fn cancel(
    State(app): State<App>,
    h: HeaderMap,
    Path(task): Path<String>,
) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    let rec = app.broker.cancel_task(&who, task.as_bytes()).await?;
    Ok(Json(task_json(&rec)).into_response())
}

/// `GET /tasks[?agent=A|stream=S][&state=working][&after=ID][&count=N]`: tasks in ID order,
/// with `next` to continue after when there may be more.
#[derive(Deserialize)]
pub(super) struct ListQ {
    agent: Option<String>,
    stream: Option<String>,
    state: Option<String>,
    #[serde(default)]
    after: String,
    count: Option<usize>,
}

pub(super) async fn list(State(app): State<App>, h: HeaderMap, Q(q): Q<ListQ>) -> ApiResult {
    let who = principal(&app.broker, &h)?;
    if q.agent.is_some() && q.stream.is_some() {
        return Err(ApiError::bad("give agent or stream, not both"));
    }
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            let names: Vec<&str> = TaskState::ALL.iter().map(|s| s.name()).collect();
            ApiError::bad(format!("unknown state '{s}' (one of {})", names.join(", ")))
        })?),
    };
    let (tasks, next) = app
        .broker
        .tasks(
            &who,
            TaskQuery {
                agent: q.agent,
                stream: q.stream.map(String::into_bytes),
                state,
                after: q.after.into_bytes(),
                count: q.count.unwrap_or(100),
            },
        )
        .await?;
    let tasks: Vec<Value> = tasks.iter().map(task_json).collect();
    Ok(Json(json!({ "tasks": tasks, "next": next.as_deref().map(text) })).into_response())
}
