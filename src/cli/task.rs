//! `cortex task submit|status|watch|cancel|list` and `cortex agents`: tasks and presence
//! over QUIC, printed as JSON lines.

use std::time::Duration;

use serde_json::{json, Value};

use super::{lane, pairs, print, scheduled, text, usage, ConnFlags, Exit};
use crate::client::{AdminAnswer, AdminRequest, Client, ClientError, Message, NewTask, TaskInfo};
use crate::wire::TaskChange;

/// `cortex task`.
#[derive(Clone, Debug, clap::Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub action: TaskAction,
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// What `cortex task` does.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum TaskAction {
    /// Submit a task to an agent; prints it once durable (`submitted`).
    Submit {
        /// The agent to do it.
        #[arg(value_name = "AGENT")]
        to: String,
        /// FIELD=VALUE pairs.
        #[arg(required = true)]
        fields: Vec<String>,
        /// Its ID [default: 32 random hex digits].
        #[arg(long)]
        id: Option<String>,
        /// Priority lane: critical, high, normal, low, heartbeat.
        #[arg(long, default_value = "normal")]
        priority: String,
        /// How long it may wait for a worker and run: 500ms, 30s, 10m, 2h [default: 1h].
        #[arg(long)]
        deadline: Option<String>,
        /// Header NAME=VALUE (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Hand it out from this time on: 2026-11-25T09:00:00Z (UTC) or @UNIX_MS.
        #[arg(long, conflicts_with = "delay")]
        at: Option<String>,
        /// Hand it out after this delay: 500ms, 30s, 10m, 2h, 1d.
        #[arg(long)]
        delay: Option<String>,
        /// Canceled before a worker took it: `dlq` keeps it in the dead-letter stream
        /// (reason canceled), `drop` (the default) drops it.
        #[arg(long, value_parser = ["dlq", "drop"])]
        on_cancel: Option<String>,
    },
    /// A task's state and history.
    Status {
        /// Task ID.
        task: String,
    },
    /// Print each state change as a JSON line until the task is final; resumes from its
    /// position after a lost connection (on the next server of --server when one is down).
    Watch {
        /// Task ID.
        task: String,
        /// Start at this change (0: the whole history).
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
    /// Cancel a task: never delivered if not yet taken, else its holder is told first.
    Cancel {
        /// Task ID.
        task: String,
    },
    /// Tasks in ID order, one JSON line each.
    List {
        /// Only those addressed to this agent.
        #[arg(long = "for", value_name = "AGENT")]
        for_agent: Option<String>,
        /// Only in this state: submitted, working, input-required, completed, failed,
        /// canceled, rejected.
        #[arg(long)]
        state: Option<String>,
        /// After this task ID.
        #[arg(long, default_value = "")]
        after: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        count: u32,
    },
}

/// A task as the CLI prints it.
pub fn task_json(t: &TaskInfo) -> Value {
    json!({
        "task": text(&t.task),
        "state": t.state,
        "stream": text(&t.stream),
        "id": t.id.to_string(),
        "submitter": t.submitter.as_deref().map(text),
        "group": t.group.as_deref().map(text),
        "consumer": t.consumer.as_deref().map(text),
        "created_ms": t.created_ms,
        "updated_ms": t.updated_ms,
        "finished_ms": t.finished_ms,
        "changes": t.changes,
        "history": t.history.iter().map(change_json).collect::<Vec<_>>(),
    })
}

fn change_json(c: &TaskChange) -> Value {
    json!({
        "seq": c.seq,
        "at_ms": c.at_ms,
        "state": c.state,
        "event": c.event,
        "detail": c.detail,
        "late": c.late,
    })
}

fn is_final(state: &str) -> bool {
    matches!(state, "completed" | "failed" | "canceled" | "rejected")
}

/// Runs `cortex task`; closes its connection at the end, so the server does not wait out
/// an idle timeout to drop the session.
pub async fn task(a: TaskArgs) -> Result<(), Exit> {
    if let TaskAction::Watch { task, from } = &a.action {
        return watch(&a.conn, task.as_bytes(), *from).await;
    }
    let c = a.conn.connect("cli").await?;
    let r = run(&c, a.action).await;
    c.close().await;
    r
}

async fn run(c: &Client, action: TaskAction) -> Result<(), Exit> {
    match action {
        TaskAction::Submit {
            to,
            fields,
            id,
            priority,
            deadline,
            headers,
            at,
            delay,
            on_cancel,
        } => {
            let deadline = match &deadline {
                None => None,
                Some(d) => Some(Duration::from_millis(
                    crate::timespec::parse_duration(d).ok_or_else(|| {
                        usage(format!(
                            "--deadline '{d}' is not a duration (500ms, 30s, 10m, 2h)"
                        ))
                    })?,
                )),
            };
            let mut headers = pairs(&headers)?;
            if let Some(v) = on_cancel {
                headers.push((
                    crate::wire::names::ON_CANCEL.as_bytes().to_vec(),
                    v.into_bytes(),
                ));
            }
            let m = Message {
                headers,
                ..Message::default()
            };
            let m = scheduled(m, at.as_deref(), delay.as_deref())?;
            let t = NewTask {
                id: id.map(String::into_bytes),
                fields: pairs(&fields)?,
                headers: m.headers,
                lane: lane(&priority)?,
                deadline,
            };
            print(task_json(&c.submit_task(&to, t).await?));
        }
        TaskAction::Status { task } => print(task_json(&c.task(task.as_bytes()).await?)),
        TaskAction::Cancel { task } => print(task_json(&c.cancel_task(task.as_bytes()).await?)),
        TaskAction::Watch { .. } => unreachable!("run by task() itself"),
        TaskAction::List {
            for_agent,
            state,
            after,
            count,
        } => {
            let mut after = after.into_bytes();
            let mut left = count;
            while left > 0 {
                let (tasks, next) = c
                    .tasks(
                        for_agent.as_deref(),
                        state.as_deref(),
                        &after,
                        left.min(1_000),
                    )
                    .await?;
                left = left.saturating_sub(tasks.len() as u32);
                for t in &tasks {
                    print(task_json(t));
                }
                match next {
                    Some(n) if !tasks.is_empty() || n != after => after = n,
                    _ => break,
                }
            }
        }
    }
    Ok(())
}

/// Most reconnects a watch makes in a row before it gives up.
const RECONNECTS_MAX: u32 = 30;

/// Prints each change from `from` on until the task is final. A lost connection is
/// reconnected (each attempt waits up to the connect timeout) and the watch resumes from
/// one past the last change printed, so none is missed or printed twice.
async fn watch(conn: &ConnFlags, task: &[u8], mut from: u64) -> Result<(), Exit> {
    let mut client: Option<Client> = None;
    let mut failures = 0;
    loop {
        let c = match &client {
            Some(c) => c.clone(),
            None => match conn.connect("cli").await {
                Ok(c) => {
                    client = Some(c.clone());
                    c
                }
                Err(e) if failures < RECONNECTS_MAX => {
                    failures += 1;
                    eprintln!("cortex: {} (retrying)", e.message);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        match c.watch_task(task, from, Duration::from_secs(60)).await {
            Ok(t) => {
                failures = 0;
                for ch in &t.history {
                    print(json!({"task": text(task), "change": change_json(ch)}));
                    from = ch.seq + 1;
                }
                if is_final(&t.state) && from >= t.changes {
                    c.close().await;
                    return Ok(());
                }
            }
            Err(ClientError::Lost(_) | ClientError::Connect(_)) if failures < RECONNECTS_MAX => {
                failures += 1;
                client = None;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `cortex agents`.
#[derive(Clone, Debug, clap::Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// Runs `cortex agents`: one JSON line per agent connected to the node, with its sessions.
pub async fn agents(a: AgentsArgs) -> Result<(), Exit> {
    let c = a.conn.connect("cli").await?;
    let answer = c.admin(AdminRequest::Agents).await;
    // Said goodbye, so the server does not wait out an idle timeout to drop the session.
    c.close().await;
    let AdminAnswer::Agents(list) = answer? else {
        return Err(usage("unexpected answer"));
    };
    for a in list {
        print(json!({
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
        }));
    }
    Ok(())
}
