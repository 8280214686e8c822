//! Tasks from an agent: submit, status, list, watch, cancel (one stream per call).

use std::time::Duration;

use cortex_protocol::{AdminAnswer, AdminRequest, Bytes, Pairs, TaskCall, TaskInfo};

use super::{Client, ClientError};

/// A task to submit.
#[derive(Clone, Debug, Default)]
pub struct NewTask {
    /// Its ID (`None`: the server makes one).
    pub id: Option<Vec<u8>>,
    /// Body.
    pub fields: Pairs,
    /// Headers (a schedule: `cortex-deliver-at-ms` or `cortex-delay-ms`).
    pub headers: Pairs,
    /// Lane (0 critical ... 4 heartbeat).
    pub lane: u8,
    /// How long it may wait for a worker (`None`: the server's default, 1 hour).
    pub deadline: Option<Duration>,
}

impl NewTask {
    /// A task with this body, on the normal lane.
    pub fn new(fields: Pairs) -> NewTask {
        NewTask {
            fields,
            lane: 2,
            ..NewTask::default()
        }
    }
}

fn one(a: Result<AdminAnswer, ClientError>) -> Result<TaskInfo, ClientError> {
    match a? {
        AdminAnswer::Task(t) => Ok(t),
        other => Err(ClientError::Protocol(format!(
            "unexpected answer to a task call: {other:?}"
        ))),
    }
}

impl Client {
    /// Submits a task to `agent` (durable when this returns); its worker answers it as a
    /// request. Returns the task as stored (`submitted`).
    pub async fn submit_task(&self, agent: &str, task: NewTask) -> Result<TaskInfo, ClientError> {
        one(self
            .admin(AdminRequest::Task(TaskCall::Submit {
                agent: agent.into(),
                task: task.id,
                fields: task.fields,
                headers: task.headers,
                lane: task.lane,
                deadline_ms: task.deadline.map_or(0, |d| d.as_millis() as u64),
            }))
            .await)
    }

    /// A task with its history.
    pub async fn task(&self, task: &[u8]) -> Result<TaskInfo, ClientError> {
        one(self
            .admin(AdminRequest::Task(TaskCall::Status {
                task: task.to_vec(),
            }))
            .await)
    }

    /// Cancels a task; returns it, `canceled`. An unknown task fails with `NotFound`, a
    /// finished one with `Conflict` (the message says how it ended).
    pub async fn cancel_task(&self, task: &[u8]) -> Result<TaskInfo, ClientError> {
        one(self
            .admin(AdminRequest::Task(TaskCall::Cancel {
                task: task.to_vec(),
            }))
            .await)
    }

    /// The task with its changes from position `from` on, waiting up to `wait` for one.
    /// Resume after a reconnect with `from` = the last change's `seq` + 1.
    pub async fn watch_task(
        &self,
        task: &[u8],
        from: u64,
        wait: Duration,
    ) -> Result<TaskInfo, ClientError> {
        one(self
            .admin(AdminRequest::Task(TaskCall::Watch {
                task: task.to_vec(),
                from,
                wait_ms: wait.as_millis().min(60_000) as u32,
            }))
            .await)
    }

    /// Tasks in ID order after `after`, of one agent and one state when given. Returns
    /// them and the ID to continue after when there may be more.
    pub async fn tasks(
        &self,
        agent: Option<&str>,
        state: Option<&str>,
        after: &[u8],
        count: u32,
    ) -> Result<(Vec<TaskInfo>, Option<Bytes>), ClientError> {
        let a = self
            .admin(AdminRequest::Task(TaskCall::List {
                agent: agent.map(str::to_string),
                stream: None,
                state: state.map(str::to_string),
                after: after.to_vec(),
                count,
            }))
            .await?;
        match a {
            AdminAnswer::Tasks { tasks, next } => Ok((tasks, next)),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to a task listing: {other:?}"
            ))),
        }
    }
}
