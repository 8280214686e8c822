//! Command dispatch: arity, authentication, MULTI queueing, statistics, then one handler per
//! command family.

pub mod args;
mod cx;
mod server;
pub mod stream;
mod table;

pub use server::glob;

use std::sync::atomic::Ordering;
use std::time::Instant;

use self::args::{text, CmdResult};
use crate::broker::Broker;
use crate::resp::codec::{Args, Frame};
use crate::resp::conn::Conn;
use crate::resp::server::Clients;

/// What a handler gets.
pub struct Ctx<'a> {
    /// The connection.
    pub conn: &'a mut Conn,
    /// The broker.
    pub broker: &'a Broker,
    /// Shared client state.
    pub clients: &'a Clients,
    /// Upper-case command name.
    pub name: &'static str,
    /// Running inside EXEC: never block.
    pub in_exec: bool,
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
        Some(spec) if !spec.arity_ok(args.len()) => Err(args::arity(spec.name)),
        Some(spec) if !conn.authed && !matches!(spec.name, "AUTH" | "HELLO" | "PING" | "QUIT") => {
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
fn record(clients: &Clients, name: &'static str, micros: u64, reply: &Frame) {
    let mut stats = clients.cmdstats.lock().unwrap_or_else(|p| p.into_inner());
    let e = stats.entry(name).or_default();
    e.0 += 1;
    e.2 += micros;
    if reply.is_error() {
        e.1 += 1;
    }
}

fn touch(conn: &mut Conn, broker: &Broker, name: &'static str) -> u64 {
    let now = broker.now_ms();
    conn.last_ms = now;
    conn.last_cmd = name;
    broker.stats().commands.fetch_add(1, Ordering::Relaxed);
    now
}

/// Runs one command and returns its reply.
pub async fn dispatch(conn: &mut Conn, broker: &Broker, clients: &Clients, args: Args) -> Frame {
    let spec = match admit(conn, &args) {
        Ok(s) => s,
        Err(f) => return count_error(clients, f),
    };
    let name = spec.name;
    touch(conn, broker, name);
    if conn.multi.is_some() && !matches!(name, "EXEC" | "DISCARD" | "MULTI" | "QUIT" | "RESET") {
        if let Some(q) = conn.multi.as_mut() {
            q.push(args);
        }
        return Frame::Simple("QUEUED".into());
    }
    let started = Instant::now();
    let ctx = Ctx {
        conn,
        broker,
        clients,
        name,
        in_exec: false,
    };
    let reply = if name == "EXEC" {
        exec(ctx.conn, broker, clients).await
    } else if spec.blocking {
        // Blocking reads take the MULTI gate for each attempt and release it while waiting.
        run(ctx, &args).await
    } else {
        let _gate = clients.gate.read().await;
        run(ctx, &args).await
    };
    record(clients, name, started.elapsed().as_micros() as u64, &reply);
    conn.publish();
    count_error(clients, reply)
}

/// Commands that map to exactly one op and may share one submission with their neighbours
/// in a pipeline (their replies stay in order; later commands wait for the batch).
pub fn batchable(name: &[u8]) -> bool {
    [&b"XADD"[..], b"XACK", b"CX.PUBLISH"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Runs a run of pipelined batchable commands as one submission (one commit).
pub async fn dispatch_batch(
    conn: &mut Conn,
    broker: &Broker,
    clients: &Clients,
    cmds: Vec<Args>,
) -> Vec<Frame> {
    let _gate = clients.gate.read().await;
    batch(conn, broker, clients, cmds).await
}

/// The batch itself; the caller holds the MULTI gate (shared, or exclusive in EXEC).
async fn batch(conn: &mut Conn, broker: &Broker, clients: &Clients, cmds: Vec<Args>) -> Vec<Frame> {
    let started = Instant::now();
    let mut names = Vec::with_capacity(cmds.len());
    let mut slots: Vec<Result<usize, Frame>> = Vec::with_capacity(cmds.len());
    let mut ops = Vec::with_capacity(cmds.len());
    for args in &cmds {
        let (name, op) = match admit(conn, args) {
            Err(f) => ("", Err(f)),
            Ok(spec) => {
                let now = touch(conn, broker, spec.name);
                let op = match spec.name {
                    "XADD" => stream::xadd_op(conn.db, args),
                    "XACK" => stream::xack_op(conn.db, args),
                    _ => cx::publish_op(conn.db, args, now),
                };
                (spec.name, op)
            }
        };
        slots.push(op.map(|op| {
            ops.push(op);
            ops.len() - 1
        }));
        names.push(name);
    }
    let replies = if ops.is_empty() {
        Ok(Vec::new())
    } else {
        broker.submit(ops).await
    };
    let micros = started.elapsed().as_micros() as u64 / cmds.len().max(1) as u64;
    let mut replies = replies.map(|r| r.into_iter().map(Some).collect::<Vec<_>>());
    let mut out = Vec::with_capacity(cmds.len());
    for (&name, slot) in names.iter().zip(slots) {
        let f = match (slot, &mut replies) {
            (Err(f), _) => f,
            (Ok(i), Ok(r)) => match r.get_mut(i).and_then(Option::take) {
                Some(reply) if name == "XACK" => stream::count_reply(name, reply),
                Some(reply) => stream::append_reply(name, reply),
                None => Frame::err("internal error: missing reply"),
            },
            (Ok(_), Err(e)) => Frame::err(e.clone()),
        };
        if !name.is_empty() {
            record(clients, name, micros, &f);
        }
        out.push(count_error(clients, f));
    }
    conn.publish();
    out
}

fn count_error(clients: &Clients, f: Frame) -> Frame {
    if let Frame::Error(e) = &f {
        let code = e.split_whitespace().next().unwrap_or("ERR").to_string();
        *clients
            .errorstats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }
    f
}

async fn exec(conn: &mut Conn, broker: &Broker, clients: &Clients) -> Frame {
    let Some(queued) = conn.multi.take() else {
        return Frame::err("EXEC without MULTI");
    };
    if std::mem::take(&mut conn.multi_failed) {
        return Frame::Error("EXECABORT Transaction discarded because of previous errors.".into());
    }
    let _exclusive = clients.gate.write().await;
    let mut out = Vec::with_capacity(queued.len());
    let mut queued = queued.into_iter().peekable();
    while let Some(args) = queued.next() {
        if batchable(&args[0]) {
            // A run of simple writes goes in one commit.
            let mut run = vec![args];
            while queued.peek().is_some_and(|a| batchable(&a[0])) {
                run.extend(queued.next());
            }
            out.extend(batch(conn, broker, clients, run).await);
            continue;
        }
        // Queued commands passed `admit`, so they are in the table.
        let name = table::lookup(&args[0]).map_or("", |s| s.name);
        out.push(
            run(
                Ctx {
                    conn: &mut *conn,
                    broker,
                    clients,
                    name,
                    in_exec: true,
                },
                &args,
            )
            .await,
        );
    }
    Frame::Array(out)
}

async fn run(mut ctx: Ctx<'_>, args: &Args) -> Frame {
    let r: CmdResult = match ctx.name {
        "XADD" => stream::xadd(&mut ctx, args).await,
        "XTRIM" => stream::xtrim(&mut ctx, args).await,
        "XDEL" => stream::xdel(&mut ctx, args).await,
        "XLEN" => stream::xlen(&ctx, args),
        "XRANGE" => stream::xrange(&ctx, args, false),
        "XREVRANGE" => stream::xrange(&ctx, args, true),
        "XREAD" => stream::xread(&mut ctx, args).await,
        "XREADGROUP" => stream::xreadgroup(&mut ctx, args).await,
        "XACK" => stream::xack(&mut ctx, args).await,
        "XPENDING" => stream::xpending(&ctx, args),
        "XCLAIM" => stream::xclaim(&mut ctx, args).await,
        "XAUTOCLAIM" => stream::xautoclaim(&mut ctx, args).await,
        "XGROUP" => stream::xgroup(&mut ctx, args).await,
        "XINFO" => stream::xinfo(&ctx, args),
        "XSETID" => stream::xsetid(&mut ctx, args).await,
        "CX.PUBLISH" => cx::publish(&mut ctx, args).await,
        "CX.POLICY" => cx::policy(&mut ctx, args).await,
        "CX.NACK" => cx::nack(&mut ctx, args).await,
        "CX.DLQ" => cx::dlq(&mut ctx, args).await,
        "CX.CLOCK" => cx::clock(&mut ctx, args),
        _ => server::run(&mut ctx, args).await,
    };
    r.unwrap_or_else(|e| e)
}
