//! Tasks, as every front offers them: submit, status, list, watch, cancel.
//!
//! The state machine is the store's ([`cortex_storage::task`]): a task is an entry with the
//! header `cortex-task-id`, moved by the calls a worker already makes, in their commits.
//! Here: who may see or cancel a task, a submission to an agent (its inbox, with the
//! headers of a request, so the worker answers it as one: request/reply and tasks are one
//! model), and watching (every change, from any position, woken by the commits this node
//! applies, whichever node made them).

use std::time::Duration;

use cortex_storage::{
    Answer, GroupStart, Lane, Op, Query, Reply, StreamId, StreamKey, TaskFilter, TaskRecord,
    TASK_HEADER, TASK_ID_MAX,
};
use tokio::sync::broadcast::error::RecvError;

use super::perm::{inbox, replies, Right};
use super::reqrep::{request_append, Envelope};
use super::{Broker, BrokerError, Principal};
use crate::wire::names::RESPONDERS_GROUP;

/// A task's deadline when its submitter gives none (its entry's TTL: a task not finished
/// by then fails with a `deadline` change, its worker told to stop as on a cancel).
pub const TASK_DEADLINE_MS: u64 = 3_600_000;
/// Longest a watch waits for a change.
pub const WATCH_WAIT_MAX_MS: u64 = 60_000;
/// Most tasks one listing returns.
pub const LIST_MAX: usize = 1_000;

/// Why a task call failed.
#[derive(Debug)]
pub enum TaskError {
    /// The broker refused (permission, shutdown, overload).
    Broker(BrokerError),
    /// The store refused (unknown task, finished task, a limit, bad input).
    Store(cortex_storage::Error),
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::Broker(e) => e.fmt(f),
            TaskError::Store(e) => e.fmt(f),
        }
    }
}

impl From<BrokerError> for TaskError {
    fn from(e: BrokerError) -> Self {
        TaskError::Broker(e)
    }
}

impl From<cortex_storage::Error> for TaskError {
    fn from(e: cortex_storage::Error) -> Self {
        TaskError::Store(e)
    }
}

/// A task to submit.
#[derive(Clone, Debug, Default)]
pub struct NewTask {
    /// Its ID (`None`: 32 random hex digits).
    pub id: Option<Vec<u8>>,
    /// Body.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Lane.
    pub lane: Lane,
    /// How long it may wait for a worker and run, ms ([`TASK_DEADLINE_MS`] when `None`).
    pub deadline_ms: Option<u64>,
    /// Further headers (a schedule, say, or `cortex-on-cancel: dlq`); other `cortex-`
    /// headers are dropped.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where a listing looks.
#[derive(Clone, Debug, Default)]
pub struct TaskQuery {
    /// Tasks addressed to this agent (its inbox).
    pub agent: Option<String>,
    /// Tasks of this stream.
    pub stream: Option<Vec<u8>>,
    /// In this state.
    pub state: Option<cortex_storage::TaskState>,
    /// After this task ID.
    pub after: Vec<u8>,
    /// At most this many ([`LIST_MAX`]).
    pub count: usize,
}

impl Broker {
    /// Submits a task to `agent`: appended to its inbox with a task ID that is also its
    /// correlation ID, the submitter's reply stream and a deadline, so the worker answers
    /// it as a request (progress, final, error), each part moving the task. Durable at
    /// once; nobody need be serving yet. Returns the task ID and its entry.
    pub async fn submit_task(
        &self,
        who: &Principal,
        agent: &str,
        task: NewTask,
    ) -> Result<(Vec<u8>, StreamId), TaskError> {
        let id = match task.id {
            Some(id) => id,
            None => super::reqrep::correlation_id(),
        };
        if id.is_empty() || id.len() > TASK_ID_MAX {
            return Err(cortex_storage::Error::BadName {
                what: "task ID",
                len: id.len(),
                max: TASK_ID_MAX,
            }
            .into());
        }
        let deadline = self
            .now_ms()
            .saturating_add(task.deadline_ms.unwrap_or(TASK_DEADLINE_MS));
        let me = who.agent().unwrap_or("anonymous");
        let mut headers = task.headers;
        headers.retain(|(k, _)| {
            !k.starts_with(b"cortex-")
                || k == cortex_storage::DELIVER_AT_HEADER
                || k == cortex_storage::DELAY_HEADER
                || k == cortex_storage::ON_CANCEL_HEADER
                || k == cortex_storage::KEEP_HEADER
        });
        if let Some((_, v)) = headers
            .iter()
            .find(|(k, v)| k == cortex_storage::ON_CANCEL_HEADER && v != b"dlq" && v != b"drop")
        {
            return Err(cortex_storage::Error::InvalidArgument(format!(
                "cortex-on-cancel must be dlq or drop, not '{}'",
                String::from_utf8_lossy(v)
            ))
            .into());
        }
        headers.push((TASK_HEADER.to_vec(), id.clone()));
        let reply_to = replies(me);
        let envelope = Envelope {
            correlation: &id,
            reply_to: &reply_to,
            deadline_ms: deadline,
        };
        let target = StreamKey::new(0, inbox(agent));
        let op = request_append(who, target, task.fields, task.lane, headers, &envelope);
        who.authorize_op(&op).map_err(BrokerError::NoPermission)?;
        // The agent's workers' group is made here if it is new, before the task: a task
        // waits for a worker that has never subscribed yet (an error when it exists).
        let group = Op::CreateGroup {
            stream: StreamKey::new(0, inbox(agent)),
            group: RESPONDERS_GROUP.as_bytes().to_vec(),
            start: GroupStart::Last,
            mkstream: true,
            entries_read: None,
            policy: None,
        };
        let mut r = self.submit(&Principal::internal(), vec![group, op]).await?;
        match r.pop().unwrap_or(Ok(Reply::Ok)) {
            Ok(Reply::Appended { id: entry, .. }) => Ok((id, entry)),
            Ok(other) => Err(BrokerError::Internal(format!(
                "unexpected reply to an append: {other:?}"
            ))
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    /// A task as of the last commit. Visible to its submitter and to whoever may publish
    /// to or consume its stream; to anyone else it does not exist.
    pub async fn task(&self, who: &Principal, task: &[u8]) -> Result<TaskRecord, TaskError> {
        let q = Query::Task {
            task: task.to_vec(),
        };
        let rec = match self.query(&Principal::internal(), q).await?? {
            Answer::Task(Some(t)) if may_see(who, &t) => *t,
            _ => {
                return Err(cortex_storage::Error::NoSuchTask {
                    task: task.to_vec(),
                }
                .into())
            }
        };
        Ok(rec)
    }

    /// Tasks in ID order after `q.after`, of one agent or stream and one state when asked,
    /// that `who` may see. Returns them and the ID to continue after, if there may be more.
    pub async fn tasks(
        &self,
        who: &Principal,
        q: TaskQuery,
    ) -> Result<(Vec<TaskRecord>, Option<Vec<u8>>), TaskError> {
        let stream = match (&q.agent, q.stream) {
            (Some(a), _) => Some(inbox(a)),
            (None, s) => s,
        };
        let count = q.count.clamp(1, LIST_MAX);
        let query = Query::Tasks {
            filter: TaskFilter {
                stream: stream.map(|s| StreamKey::new(0, s)),
                state: q.state,
                consumer: None,
            },
            after: q.after,
            count,
        };
        match self.query(&Principal::internal(), query).await?? {
            Answer::Tasks(tasks, next) => Ok((
                tasks.into_iter().filter(|t| may_see(who, t)).collect(),
                next,
            )),
            other => Err(BrokerError::Internal(format!("unexpected answer: {other:?}")).into()),
        }
    }

    /// Cancels a task: allowed to its submitter and to whoever may publish to its stream.
    /// Not handed out yet, it never will be; held, the holder's subscription is told before
    /// anything else it receives. Returns the task, now `canceled`.
    pub async fn cancel_task(&self, who: &Principal, task: &[u8]) -> Result<TaskRecord, TaskError> {
        let rec = self.task(who, task).await?;
        let mine =
            rec.submitter.is_some() && rec.submitter.as_deref() == who.agent().map(str::as_bytes);
        if !mine && !who.may(Right::Publish, &rec.stream) {
            who.need(Right::Publish, Some(&rec.stream_key()))
                .map_err(BrokerError::NoPermission)?;
        }
        let op = Op::CancelTask {
            task: task.to_vec(),
        };
        match self.submit_one(&Principal::internal(), op).await? {
            Ok(Reply::Task(t)) => Ok(*t),
            Ok(other) => Err(BrokerError::Internal(format!(
                "unexpected reply to a cancel: {other:?}"
            ))
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    /// The task with its changes from position `from` on: at once when there are some,
    /// else when the next one is applied here, or after `wait`
    /// (at most [`WATCH_WAIT_MAX_MS`]) with none. A watcher resumes after a reconnect by
    /// asking from one past the last change it saw.
    pub async fn watch_task(
        &self,
        who: &Principal,
        task: &[u8],
        from: u64,
        wait: Duration,
    ) -> Result<TaskRecord, TaskError> {
        let wait = wait.min(Duration::from_millis(WATCH_WAIT_MAX_MS));
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before the first read: no change can fall between the two.
        let mut news = self.inner.core.task_news.subscribe();
        loop {
            let mut rec = self.task(who, task).await?;
            if rec.changes > from {
                rec.history.retain(|c| c.seq >= from);
                return Ok(rec);
            }
            loop {
                tokio::select! {
                    r = news.recv() => match r {
                        Ok(t) if &*t == task => break,
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return Err(BrokerError::ShuttingDown.into()),
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        rec.history.retain(|c| c.seq >= from);
                        return Ok(rec);
                    }
                }
            }
        }
    }
}

fn may_see(who: &Principal, t: &TaskRecord) -> bool {
    let mine = t.submitter.is_some() && t.submitter.as_deref() == who.agent().map(str::as_bytes);
    mine || who.may(Right::Publish, &t.stream) || who.may(Right::Consume, &t.stream)
}

/// What a change did, as fronts show it: a word and its details (`""` when none).
pub fn event_text(e: &cortex_storage::TaskEvent) -> (&'static str, String) {
    use cortex_storage::TaskEvent as E;
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match e {
        E::Submitted => ("submitted", String::new()),
        E::Delivered {
            group,
            consumer,
            attempt,
        } => (
            "delivered",
            format!(
                "to {} in {}, attempt {attempt}",
                lossy(consumer),
                lossy(group)
            ),
        ),
        E::Part { kind, stream, id } => (
            "part",
            format!("{} at {id} in {}", lossy(kind), lossy(stream)),
        ),
        E::Acked => ("acked", String::new()),
        E::Retry { error } => ("retry", error.as_deref().map(lossy).unwrap_or_default()),
        E::Rejected { error } => ("rejected", error.as_deref().map(lossy).unwrap_or_default()),
        E::DeadLettered { reason } => ("dead-lettered", reason.clone()),
        E::Canceled => ("canceled", String::new()),
        E::Removed => ("removed", String::new()),
        E::Redriven => ("redriven", String::new()),
        E::DeadlinePassed => ("deadline", String::new()),
    }
}
