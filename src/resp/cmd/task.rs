//! CX.TASK (SUBMIT, STATUS, LIST, WATCH) and CX.CANCEL: tasks over RESP. Each is a broker
//! call ([`super::Plan::Call`]); the broker checks who may see or cancel the task.
//! CX.AGENTS: who is connected to this node (presence), answered at once.

use std::time::Duration;

use cortex_storage::{Lane, TaskRecord, TaskState, DELAY_HEADER, DELIVER_AT_HEADER};

use super::args::*;
use super::reply::help;
use super::{Ctx, Plan};
use crate::broker::task::{event_text, NewTask, TaskError, TaskQuery};
use crate::resp::codec::Frame;

const TASK_HELP: &[&str] = &[
    "CX.TASK <subcommand> [<arg> ...]. Subcommands are:",
    "SUBMIT <agent> [ID <id>] [PRIORITY <lane>] [DEADLINE <ms>] [DELAY <ms> | AT <unix-ms>]",
    "    [ON-CANCEL DLQ|DROP] <field> <value> ...",
    "    Submit a task to the agent's inbox; returns its ID. The worker answers it as a",
    "    request; DEADLINE (default 1 hour) bounds the wait for a worker. ON-CANCEL DLQ:",
    "    canceled before a worker took it, it goes to the dead-letter stream (reason",
    "    canceled) instead of being dropped.",
    "STATUS <id>",
    "    The task: state (A2A's), stream and entry, holder, times and its history.",
    "LIST [AGENT <agent> | STREAM <key>] [STATE <state>] [AFTER <id>] [COUNT <n>]",
    "    Tasks in ID order: [next, [[task, state, stream, entry, holder], ...]]; next is",
    "    empty when the listing is complete.",
    "WATCH <id> [FROM <seq>] [BLOCK <ms>]",
    "    As STATUS with the changes from position FROM on; waits up to BLOCK ms (at most",
    "    60000) for one when there is none yet. Resume with FROM = last seq + 1.",
    "HELP",
    "    Print this help.",
];

const CANCEL_HELP: &[&str] = &[
    "CX.CANCEL <id>",
    "    Cancel a task: if no worker has it, none ever will; if one holds it, its",
    "    subscription is told before any other message. Returns the task (as STATUS).",
    "HELP",
    "    Print this help.",
];

/// CX.AGENTS: one map per agent (`agent`, `last-heard-ms`, `sessions`: maps of `node`, `front`,
/// `client`, `connected-ms`, `last-heard-ms`, `serves` as [stream, group] pairs).
pub fn agents(ctx: &mut Ctx<'_>) -> Frame {
    let kv = |k: &str, v: Frame| (Frame::bulk(k), v);
    let ms = |t: u64| Frame::Integer(t as i64);
    Frame::Array(
        ctx.broker
            .agents()
            .into_iter()
            .map(|a| {
                let sessions = a
                    .sessions
                    .iter()
                    .map(|s| {
                        let serves = s
                            .serves
                            .iter()
                            .map(|(st, g)| {
                                Frame::Array(vec![
                                    Frame::bulk(st.as_slice()),
                                    Frame::bulk(g.as_slice()),
                                ])
                            })
                            .collect();
                        Frame::Map(vec![
                            kv("node", Frame::Integer(s.node as i64)),
                            kv("front", Frame::bulk(s.front.as_str())),
                            kv("client", Frame::bulk(s.client.as_str())),
                            kv("connected-ms", ms(s.connected_ms)),
                            kv("last-heard-ms", ms(s.last_heard_ms)),
                            kv("serves", Frame::Array(serves)),
                        ])
                    })
                    .collect();
                Frame::Map(vec![
                    kv("agent", Frame::bulk(a.agent.as_str())),
                    kv("last-heard-ms", ms(a.last_heard_ms)),
                    kv("sessions", Frame::Array(sessions)),
                ])
            })
            .collect(),
    )
}

pub fn plan(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let is_help = args.len() == 2 && args[1].eq_ignore_ascii_case(b"HELP");
    if ctx.name == "CX.CANCEL" {
        if is_help {
            return Ok(Plan::Done(help(CANCEL_HELP)));
        }
        let task = args[1].clone();
        return Ok(call(move |b, who| async move {
            reply(b.cancel_task(&who, &task).await)
        }));
    }
    if is_help {
        return Ok(Plan::Done(help(TASK_HELP)));
    }
    let sub = upper(&args[1]);
    match sub.as_str() {
        "SUBMIT" if args.len() >= 5 => submit(ctx, args),
        "STATUS" if args.len() == 3 => {
            let task = args[2].clone();
            Ok(call(move |b, who| async move {
                reply(b.task(&who, &task).await)
            }))
        }
        "LIST" => list(args),
        "WATCH" if args.len() >= 3 => watch(args),
        "SUBMIT" | "STATUS" | "WATCH" => Err(arity(&format!("cx.task|{}", sub.to_lowercase()))),
        _ => Err(Frame::err(format!(
            "unknown subcommand '{}'. Try CX.TASK HELP.",
            text(&args[1])
        ))),
    }
}

fn call<F>(
    f: impl FnOnce(crate::broker::Broker, crate::broker::Principal) -> F + Send + 'static,
) -> Plan
where
    F: std::future::Future<Output = Frame> + Send + 'static,
{
    Plan::Call(Box::new(move |b, who| Box::pin(f(b, who))))
}

fn submit(ctx: &Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let agent = text(&args[2]);
    let mut task = NewTask::default();
    let mut i = 3;
    let mut scheduled = false;
    while i + 2 < args.len() {
        match upper(&args[i]).as_str() {
            "ID" => task.id = Some(args[i + 1].clone()),
            "PRIORITY" => {
                task.lane = Lane::parse(&text(&args[i + 1])).ok_or_else(|| {
                    Frame::err("PRIORITY must be one of critical, high, normal, low, heartbeat")
                })?
            }
            "DEADLINE" => {
                let ms = int(&args[i + 1])?;
                if ms <= 0 {
                    return Err(Frame::err(
                        "DEADLINE must be a positive number of milliseconds",
                    ));
                }
                task.deadline_ms = Some(ms as u64);
            }
            w @ ("DELAY" | "AT") => {
                if scheduled {
                    return Err(Frame::err("give one of DELAY or AT, once"));
                }
                scheduled = true;
                let name = if w == "DELAY" {
                    DELAY_HEADER
                } else {
                    DELIVER_AT_HEADER
                };
                task.headers.push((name.to_vec(), args[i + 1].clone()));
            }
            "ON-CANCEL" => {
                let v = args[i + 1].to_ascii_lowercase();
                if v != b"dlq" && v != b"drop" {
                    return Err(Frame::err("ON-CANCEL must be DLQ or DROP"));
                }
                task.headers
                    .push((cortex_storage::ON_CANCEL_HEADER.to_vec(), v));
            }
            _ => break,
        }
        i += 2;
    }
    let rest = &args[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(arity("cx.task|submit"));
    }
    task.fields = rest
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    let _ = ctx;
    Ok(call(move |b, who| async move {
        match b.submit_task(&who, &agent, task).await {
            Ok((id, _)) => Frame::Bulk(id),
            Err(e) => error(e),
        }
    }))
}

fn list(args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let mut q = TaskQuery {
        count: 100,
        ..TaskQuery::default()
    };
    let mut i = 2;
    while i < args.len() {
        let Some(v) = args.get(i + 1) else {
            return Err(syntax());
        };
        match upper(&args[i]).as_str() {
            "AGENT" => q.agent = Some(text(v)),
            "STREAM" => q.stream = Some(v.clone()),
            "STATE" => {
                q.state = Some(TaskState::parse(&text(v)).ok_or_else(|| {
                    Frame::err("STATE must be one of submitted, working, input-required, completed, failed, canceled, rejected")
                })?)
            }
            "AFTER" => q.after = v.clone(),
            "COUNT" => q.count = uint(v)?.min(usize::MAX as u64) as usize,
            _ => return Err(syntax()),
        }
        i += 2;
    }
    Ok(call(move |b, who| async move {
        match b.tasks(&who, q).await {
            Ok((tasks, next)) => Frame::Array(vec![
                Frame::Bulk(next.unwrap_or_default()),
                Frame::Array(
                    tasks
                        .iter()
                        .map(|t| {
                            Frame::Array(vec![
                                Frame::Bulk(t.task.clone()),
                                Frame::bulk(t.state.name()),
                                Frame::Bulk(t.stream.clone()),
                                id_frame(t.id),
                                t.holder
                                    .as_ref()
                                    .map_or(Frame::Null, |(_, c)| Frame::Bulk(c.clone())),
                            ])
                        })
                        .collect(),
                ),
            ]),
            Err(e) => error(e),
        }
    }))
}

fn watch(args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let task = args[2].clone();
    let (mut from, mut block) = (0, 0);
    let mut i = 3;
    while i < args.len() {
        let Some(v) = args.get(i + 1) else {
            return Err(syntax());
        };
        match upper(&args[i]).as_str() {
            "FROM" => from = uint(v)?,
            "BLOCK" => block = uint(v)?,
            _ => return Err(syntax()),
        }
        i += 2;
    }
    Ok(call(move |b, who| async move {
        reply(
            b.watch_task(&who, &task, from, Duration::from_millis(block))
                .await,
        )
    }))
}

fn reply(r: Result<TaskRecord, TaskError>) -> Frame {
    match r {
        Ok(t) => task_frame(&t),
        Err(e) => error(e),
    }
}

fn error(e: TaskError) -> Frame {
    match e {
        TaskError::Broker(e) => super::broker_error(&e),
        TaskError::Store(e) => Frame::err(e),
    }
}

fn opt(b: Option<&[u8]>) -> Frame {
    b.map_or(Frame::Null, Frame::bulk)
}

/// A task as a map (a flat array in RESP2).
pub fn task_frame(t: &TaskRecord) -> Frame {
    let kv = |k: &str, v: Frame| (Frame::bulk(k), v);
    let history = t
        .history
        .iter()
        .map(|c| {
            let (event, detail) = event_text(&c.event);
            Frame::Map(vec![
                kv("seq", Frame::Integer(c.seq as i64)),
                kv("at-ms", Frame::Integer(c.at_ms as i64)),
                kv("state", Frame::bulk(c.state.name())),
                kv("event", Frame::bulk(event)),
                kv("detail", Frame::bulk(detail)),
                kv("late", Frame::Integer(i64::from(c.late))),
            ])
        })
        .collect();
    let (group, consumer) = match &t.holder {
        Some((g, c)) => (Some(g.as_slice()), Some(c.as_slice())),
        None => (None, None),
    };
    Frame::Map(vec![
        kv("task", Frame::Bulk(t.task.clone())),
        kv("state", Frame::bulk(t.state.name())),
        kv("stream", Frame::Bulk(t.stream.clone())),
        kv("entry", id_frame(t.id)),
        kv("submitter", opt(t.submitter.as_deref())),
        kv("group", opt(group)),
        kv("consumer", opt(consumer)),
        kv("created-ms", Frame::Integer(t.created_ms as i64)),
        kv("updated-ms", Frame::Integer(t.updated_ms as i64)),
        kv(
            "finished-ms",
            t.finished_ms
                .map_or(Frame::Null, |f| Frame::Integer(f as i64)),
        ),
        kv("changes", Frame::Integer(t.changes as i64)),
        kv("history", Frame::Array(history)),
    ])
}
