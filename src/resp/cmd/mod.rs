//! Commands. Each command is a `parse -> Plan` (in its family's file) and the plan's
//! formatter `replies -> Frame`; this module checks a command (known, arity, NOAUTH gate),
//! queues it inside MULTI, runs plans through the broker and keeps statistics. Nothing here
//! decides broker behaviour: a plan is ops, a query or a (blocking) read that the broker
//! carries out.
//!
//! - Outside MULTI, runs of pipelined `Plan::Ops` share one submission (one commit).
//! - EXEC plans every queued command in order, turns every plan into ops (reads become
//!   `Op::Query`, blocking reads do not block) and submits them as ONE broker transaction:
//!   one atomic batch that no other client and none of the broker's own tasks interleave
//!   with.

pub mod args;
mod cx;
mod group;
mod info;
mod read;
pub mod reply;
mod server;
mod table;
mod task;
mod write;

use std::sync::atomic::Ordering;
use std::time::Instant;

use cortex_storage::{Answer, Op, Query, ReadStart, Reply, StreamKey};

use self::args::text;
use crate::broker::{Blocking, Broker, GroupRead};
use crate::resp::codec::{Args, Frame};
use crate::resp::conn::{Conn, Shared};

/// Most commands one MULTI may queue.
pub const MULTI_QUEUE_MAX: usize = 10_000;
/// Most ops one pipelined run shares in one submission.
pub const PIPELINE_OPS_MAX: usize = 1024;

/// Turns a command's results (one per op) into its reply.
pub type Format = Box<dyn FnOnce(Vec<cortex_storage::Result<Reply>>) -> Frame + Send>;

/// A broker call that is neither ops nor a read (tasks: the broker checks rights on the
/// task it finds, and a watch waits for the task's next change).
pub type Call = Box<
    dyn FnOnce(
            Broker,
            crate::broker::Principal,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Frame> + Send>>
        + Send,
>;

/// What running a command takes.
pub enum Plan {
    /// Answered already (connection commands, errors found while parsing).
    Done(Frame),
    /// Ops for the writer (writes, and reads that belong in a transaction).
    Ops(Vec<Op>, Format),
    /// A read from the last commit.
    Query(Query, Format),
    /// XREADGROUP, possibly blocking.
    GroupRead(GroupRead, Blocking, Format),
    /// XREAD, possibly blocking.
    StreamRead(Vec<(StreamKey, ReadStart)>, Option<usize>, Blocking, Format),
    /// EXEC (needs the queued commands).
    Exec,
    /// A broker call, formatted by itself.
    Call(Call),
}

impl Plan {
    /// One op, its one result formatted by `f`.
    pub fn op(
        op: Op,
        f: impl FnOnce(cortex_storage::Result<Reply>) -> Frame + Send + 'static,
    ) -> Plan {
        Plan::Ops(
            vec![op],
            Box::new(move |mut r| f(r.pop().unwrap_or(Ok(Reply::Ok)))),
        )
    }

    /// A read, its answer formatted by `f`.
    pub fn query(
        q: Query,
        f: impl FnOnce(cortex_storage::Result<Answer>) -> Frame + Send + 'static,
    ) -> Plan {
        Plan::Query(q, Box::new(move |r| f(answer(r))))
    }

    /// The ops this plan is inside a transaction, and its formatter.
    fn into_tx(self) -> Result<(Vec<Op>, Format), Frame> {
        match self {
            Plan::Done(f) => Err(f),
            Plan::Ops(ops, fmt) => Ok((ops, fmt)),
            Plan::Query(q, fmt) => Ok((vec![Op::Query(q)], fmt)),
            Plan::GroupRead(req, _, fmt) => Ok((vec![req.op(false)], fmt)),
            Plan::StreamRead(streams, count, _, fmt) => {
                Ok((vec![Op::Query(Query::Read { streams, count })], fmt))
            }
            Plan::Exec => Err(Frame::err("EXEC inside MULTI is not allowed")),
            Plan::Call(_) => Err(Frame::err("CX.TASK and CX.CANCEL cannot run inside MULTI")),
        }
    }
}

/// The one result of a read plan as an answer.
pub fn answer(mut r: Vec<cortex_storage::Result<Reply>>) -> cortex_storage::Result<Answer> {
    match r.pop() {
        Some(Ok(Reply::Answer(a))) => Ok(a),
        Some(Err(e)) => Err(e),
        other => Err(cortex_storage::Error::InvalidArgument(format!(
            "internal error: a read got {other:?}"
        ))),
    }
}

/// What a command's parser gets.
pub struct Ctx<'a> {
    /// The connection.
    pub conn: &'a mut Conn,
    /// The broker.
    pub broker: &'a Broker,
    /// Shared client state.
    pub shared: &'a Shared,
    /// Upper-case command name.
    pub name: &'static str,
}

fn unknown(args: &Args) -> Frame {
    let mut s = format!(
        "unknown command '{}', with args beginning with: ",
        text(&args[0])
    );
    for a in args.iter().skip(1).take(20) {
        s.push_str(&format!("'{}' ", text(a)));
    }
    Frame::err(s)
}

/// Checks a command before it runs: known, right arity, authenticated. Inside MULTI, a
/// failure also dooms the transaction.
fn admit(conn: &mut Conn, args: &Args) -> Result<&'static table::Spec, Frame> {
    let r = match table::lookup(&args[0]) {
        None => Err(unknown(args)),
        // `<container> HELP extra`: Redis's arity error of the HELP subcommand.
        Some(spec)
            if spec.is_container() && args.len() > 2 && args[1].eq_ignore_ascii_case(b"HELP") =>
        {
            Err(args::arity(&format!("{}|help", spec.name)))
        }
        // Every CX.* command answers HELP, whatever its arity.
        Some(spec)
            if spec.name.starts_with("CX.")
                && args.len() == 2
                && args[1].eq_ignore_ascii_case(b"HELP")
                && conn.principal().is_some() =>
        {
            Ok(spec)
        }
        Some(spec) if !spec.arity_ok(args.len()) => Err(args::arity(spec.name)),
        Some(spec)
            if conn.principal().is_none()
                && !matches!(spec.name, "AUTH" | "HELLO" | "PING" | "QUIT") =>
        {
            Err(Frame::Error("NOAUTH Authentication required.".into()))
        }
        Some(spec) => Ok(spec),
    };
    if r.is_err() && conn.multi.is_some() {
        conn.multi_failed = true;
    }
    r
}

/// Counts a finished command for INFO commandstats/errorstats.
fn record(shared: &Shared, name: &'static str, micros: u64, reply: &Frame) {
    {
        let mut stats = shared.cmdstats.lock().unwrap_or_else(|p| p.into_inner());
        let e = stats.entry(name).or_default();
        e.0 += 1;
        e.2 += micros;
        if reply.is_error() {
            e.1 += 1;
        }
    }
    if let Frame::Error(e) = reply {
        let code = e.split_whitespace().next().unwrap_or("ERR").to_string();
        *shared
            .errorstats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }
}

fn touch(conn: &mut Conn, broker: &Broker, now: Stamp, name: &'static str) {
    conn.last_ms = now.ms;
    conn.last_cmd = name;
    broker.stats().commands.fetch_add(1, Ordering::Relaxed);
}

/// Parses one admitted command into its plan.
/// XADD takes its arguments by value: the entry's fields and the key move into the op
/// instead of being copied.
fn plan(ctx: &mut Ctx<'_>, args: Args) -> Plan {
    let r = match ctx.name {
        "XADD" => write::xadd(ctx.conn.db, args),
        "XTRIM" | "XDEL" | "XSETID" | "XACK" | "XDELEX" | "XACKDEL" | "XNACK" | "XCFGSET" => {
            write::plan(ctx, &args)
        }
        "XLEN" | "XRANGE" | "XREVRANGE" | "XREAD" => read::plan(ctx, &args),
        "XREADGROUP" | "XGROUP" | "XPENDING" | "XCLAIM" | "XAUTOCLAIM" => group::plan(ctx, &args),
        "XINFO" => info::plan(ctx, &args),
        "CX.PUBLISH" | "CX.POLICY" | "CX.NACK" | "CX.DLQ" | "CX.CLOCK" | "CX.FAULT" => {
            cx::plan(ctx, &args)
        }
        "CX.TASK" | "CX.CANCEL" => task::plan(ctx, &args),
        "CX.AGENTS" => Ok(Plan::Done(task::agents(ctx))),
        "EXEC" => Ok(Plan::Exec),
        _ => server::plan(ctx, &args),
    };
    let plan = r.unwrap_or_else(Plan::Done);
    match ctx.conn.principal() {
        Some(who) => authorize(who, plan),
        None => plan,
    }
}

/// Refuses a plan the principal may not run, with its own `-NOPERM` (so one forbidden
/// command in a pipeline does not fail its neighbours). The broker checks again on submit.
fn authorize(who: &crate::broker::Principal, plan: Plan) -> Plan {
    let r = match &plan {
        // A call checks rights in the broker, on what it finds.
        Plan::Done(_) | Plan::Exec | Plan::Call(_) => Ok(()),
        Plan::Ops(ops, _) => who.authorize_ops(ops),
        Plan::Query(q, _) => who.authorize_query(q),
        Plan::GroupRead(req, _, _) => who.authorize_op(&req.op(false)),
        Plan::StreamRead(streams, _, _, _) => who.authorize_query(&Query::Read {
            streams: streams.clone(),
            count: None,
        }),
    };
    match r {
        Ok(()) => plan,
        Err(refusal) => Plan::Done(Frame::Error(format!("NOPERM {refusal}"))),
    }
}

/// A broker error as a reply: a refusal is `-NOPERM`, a cluster without a leader (or a
/// write whose leader changed under it) `-CLUSTERDOWN`, new data on a disk under its
/// free-space watermark `-DISKFULL`, anything else `-ERR`.
fn broker_error(e: &crate::broker::BrokerError) -> Frame {
    match e {
        crate::broker::BrokerError::NoPermission(r) => Frame::Error(format!("NOPERM {r}")),
        crate::broker::BrokerError::Unavailable(m) => Frame::Error(format!("CLUSTERDOWN {m}")),
        crate::broker::BrokerError::DiskFull(m) => Frame::Error(format!("DISKFULL {m}")),
        e => Frame::err(e),
    }
}

/// A command admitted and planned, waiting to run (pipelines run several together).
pub struct Planned {
    name: &'static str,
    plan: Plan,
    started: Instant,
}

/// When a run of commands was read: both clocks, read once for all the commands parsed
/// from one read (a clock reading per command and per clock was 3.5 % of the server's CPU
/// under -P 16 XADDs). Read again after anything that waited.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    /// The monotonic clock: where a command's time in INFO commandstats starts.
    pub at: Instant,
    /// Broker time in Unix ms: the connection's last command (CLIENT LIST's idle).
    pub ms: u64,
}

impl Stamp {
    /// Both clocks now.
    pub fn now(broker: &Broker) -> Self {
        Stamp {
            at: Instant::now(),
            ms: broker.now_ms(),
        }
    }
}

/// Checks and plans one command; inside MULTI, queues it (the reply is `QUEUED`). `now`:
/// when it was read ([`Stamp`]).
pub fn prepare(
    conn: &mut Conn,
    broker: &Broker,
    shared: &Shared,
    args: Args,
    now: Stamp,
) -> Planned {
    let started = now.at;
    let spec = match admit(conn, &args) {
        Ok(s) => s,
        Err(f) => {
            return Planned {
                name: "",
                plan: Plan::Done(f),
                started,
            }
        }
    };
    let name = spec.name;
    touch(conn, broker, now, name);
    if let Some(q) = conn.multi.as_mut() {
        if !matches!(name, "EXEC" | "DISCARD" | "MULTI" | "QUIT" | "RESET") {
            let reply = if q.len() >= MULTI_QUEUE_MAX {
                conn.multi_failed = true;
                Frame::err(format!(
                    "MULTI queue is full ({MULTI_QUEUE_MAX} commands); the transaction is discarded at EXEC"
                ))
            } else {
                q.push(args);
                Frame::Simple("QUEUED".into())
            };
            return Planned {
                name,
                plan: Plan::Done(reply),
                started,
            };
        }
    }
    let mut ctx = Ctx {
        conn,
        broker,
        shared,
        name,
    };
    let plan = plan(&mut ctx, args);
    Planned {
        name,
        plan,
        started,
    }
}

impl Planned {
    /// True for plans that may share one submission with their neighbours.
    pub fn batchable(&self) -> Option<usize> {
        match &self.plan {
            Plan::Ops(ops, _) => Some(ops.len()),
            _ => None,
        }
    }
}

/// Records a finished command in INFO commandstats (its time: from `started` to `done`).
fn timed(shared: &Shared, name: &'static str, started: Instant, done: Instant, reply: &Frame) {
    if !name.is_empty() {
        let took = done.saturating_duration_since(started);
        record(shared, name, took.as_micros() as u64, reply);
    }
}

/// [`timed`], for a command finished now.
fn finish(shared: &Shared, name: &'static str, started: Instant, reply: Frame) -> Frame {
    timed(shared, name, started, Instant::now(), &reply);
    reply
}

/// Runs planned commands: a run of `Ops` plans as one submission, anything else alone.
/// Returns the replies in order.
pub async fn run(
    conn: &mut Conn,
    broker: &Broker,
    shared: &Shared,
    planned: Vec<Planned>,
) -> Vec<Frame> {
    let mut out = Vec::with_capacity(planned.len());
    let mut batch: Vec<Batched> = Vec::new();
    let mut ops = Vec::new();
    for p in planned {
        match p.plan {
            Plan::Ops(mut o, fmt) => {
                batch.push(Batched {
                    name: p.name,
                    started: p.started,
                    fmt: Some(fmt),
                    ops: o.len(),
                });
                ops.append(&mut o);
            }
            plan => {
                flush(conn, broker, shared, &mut batch, &mut ops, &mut out).await;
                let reply = run_one(conn, broker, shared, plan).await;
                out.push(finish(shared, p.name, p.started, reply));
            }
        }
    }
    flush(conn, broker, shared, &mut batch, &mut ops, &mut out).await;
    conn.publish();
    out
}

/// A command whose ops wait in a shared submission.
struct Batched {
    name: &'static str,
    started: Instant,
    /// Taken when the reply is formatted.
    fmt: Option<Format>,
    ops: usize,
}

async fn flush(
    conn: &Conn,
    broker: &Broker,
    shared: &Shared,
    batch: &mut Vec<Batched>,
    ops: &mut Vec<Op>,
    out: &mut Vec<Frame>,
) {
    if batch.is_empty() {
        return;
    }
    let ops = std::mem::take(ops);
    let replies = match conn.principal() {
        Some(who) => broker.submit(who, ops).await,
        None => Err(crate::broker::BrokerError::Internal("no principal".into())),
    };
    let mut replies = replies.map(Vec::into_iter);
    let first = out.len();
    for b in batch.iter_mut() {
        out.push(match (&mut replies, b.fmt.take()) {
            (Ok(it), Some(fmt)) => format(conn.proto, fmt, it.by_ref().take(b.ops).collect()).await,
            (Err(e), _) => broker_error(e),
            (Ok(_), None) => Frame::err("ERR internal error: a reply formatted twice"),
        });
    }
    // One reading for the submission: its commands were committed together, and their
    // replies are all ready now.
    let done = Instant::now();
    for (b, frame) in batch.drain(..).zip(&out[first..]) {
        timed(shared, b.name, b.started, done, frame);
    }
}

/// Items in a command's results (entries, pending entries, names ...), to decide where the
/// reply is built.
fn reply_items(r: &[cortex_storage::Result<Reply>]) -> usize {
    r.iter()
        .map(|r| match r {
            Ok(Reply::GroupRead(v)) => v.iter().map(Vec::len).sum(),
            Ok(Reply::Entries(e)) => e.len(),
            Ok(Reply::AutoClaimed { claimed, .. }) => claimed.len(),
            Ok(Reply::Answer(a)) => match a {
                Answer::Entries(e) => e.len(),
                Answer::Read(v) => v.iter().map(|(e, _)| e.len()).sum(),
                Answer::Names(n) => n.len(),
                Answer::Pending(p) => p.len(),
                Answer::DeadLetters(d) => d.len(),
                Answer::StreamFull(Some(f)) => {
                    f.entries.len()
                        + f.groups
                            .iter()
                            .map(|g| g.pending.len() * 2 + g.consumers.len())
                            .sum::<usize>()
                }
                _ => 1,
            },
            _ => 1,
        })
        .sum()
}

/// Formats a command's reply; a large one is built and encoded on the blocking pool, so one
/// client's huge reply never stalls the thread that serves every connection.
async fn format(proto: u8, fmt: Format, r: Vec<cortex_storage::Result<Reply>>) -> Frame {
    if reply_items(&r) <= crate::broker::INLINE_READ_MAX {
        return fmt(r);
    }
    tokio::task::spawn_blocking(move || {
        let frame = fmt(r);
        if let Frame::Encoded(_) = frame {
            // Already bytes (a list of entries): not copied again.
            return frame;
        }
        let mut out = Vec::with_capacity(frame.encoded_len(proto));
        frame.encode(proto, &mut out);
        Frame::Encoded(out)
    })
    .await
    .unwrap_or_else(|e| Frame::err(format!("internal error: reply task failed: {e}")))
}

async fn run_one(conn: &mut Conn, broker: &Broker, shared: &Shared, plan: Plan) -> Frame {
    if let Plan::Done(f) = plan {
        return f;
    }
    if let Plan::Exec = plan {
        return exec(conn, broker, shared).await;
    }
    // Every plan but Done passed the NOAUTH gate, so there is a principal.
    let Some(who) = conn.principal().cloned() else {
        return Frame::Error("NOAUTH Authentication required.".into());
    };
    let proto = conn.proto;
    let r = match plan {
        Plan::Call(call) => return call(broker.clone(), who).await,
        Plan::Ops(ops, fmt) => broker.submit(&who, ops).await.map(|r| (fmt, r)),
        Plan::Query(q, fmt) => broker
            .query(&who, q)
            .await
            .map(|a| (fmt, vec![a.map(Reply::Answer)])),
        Plan::GroupRead(req, block, fmt) => broker
            .read_group(&who, &req, block)
            .await
            .map(|r| (fmt, vec![r])),
        Plan::StreamRead(streams, count, block, fmt) => broker
            .read_streams(&who, streams, count, block)
            .await
            .map(|a| (fmt, vec![a.map(Reply::Answer)])),
        Plan::Done(f) => return f,
        Plan::Exec => return Frame::err("EXEC without MULTI"),
    };
    match r {
        Ok((fmt, r)) => format(proto, fmt, r).await,
        Err(e) => broker_error(&e),
    }
}

/// EXEC: plans the queued commands in order and submits all their ops as one transaction.
async fn exec(conn: &mut Conn, broker: &Broker, shared: &Shared) -> Frame {
    let Some(queued) = conn.multi.take() else {
        return Frame::err("EXEC without MULTI");
    };
    if std::mem::take(&mut conn.multi_failed) {
        return Frame::Error("EXECABORT Transaction discarded because of previous errors.".into());
    }
    let Some(who) = conn.principal().cloned() else {
        return Frame::Error("NOAUTH Authentication required.".into());
    };
    // Each queued command: its reply already (connection commands), or its ops' range.
    type Slot = Result<(usize, usize, Format), Frame>;
    let mut slots: Vec<(&'static str, Slot)> = Vec::with_capacity(queued.len());
    let mut ops = Vec::new();
    for args in queued {
        let name = table::lookup(&args[0]).map_or("", |s| s.name);
        let mut ctx = Ctx {
            conn: &mut *conn,
            broker,
            shared,
            name,
        };
        let slot = plan(&mut ctx, args).into_tx().map(|(mut o, fmt)| {
            let start = ops.len();
            ops.append(&mut o);
            (start, ops.len(), fmt)
        });
        slots.push((name, slot));
    }
    let replies = if ops.is_empty() {
        Ok(Vec::new())
    } else {
        broker.transaction(&who, ops).await
    };
    let mut replies = match replies {
        Ok(r) => r.into_iter().map(Some).collect::<Vec<_>>(),
        Err(e) => return Frame::err(format!("EXECABORT {e}")),
    };
    let started = Instant::now();
    let out = slots
        .into_iter()
        .map(|(name, slot)| {
            let f = match slot {
                Err(f) => f,
                Ok((a, b, fmt)) => fmt(replies[a..b].iter_mut().filter_map(Option::take).collect()),
            };
            finish(shared, name, started, f)
        })
        .collect();
    Frame::Array(out)
}
