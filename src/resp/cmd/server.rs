//! Connection, server and keyspace commands that tools and client libraries send.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use cortex_storage::{Answer, Error, Op, Query, Reply, StreamKey};

use super::args::*;
use super::reply::help;
use super::table::{lookup, COMMANDS};
use super::{Ctx, Plan};
use crate::broker::AuthError;
use crate::config::Fsync;
use crate::glob::glob;
use crate::resp::codec::Frame;

/// Databases (namespaces) SELECT accepts.
pub const DATABASES: u16 = 16;
/// The Redis version we behave as.
pub const REDIS_VERSION: &str = "7.2.0";

/// The sum of the counts of several ops (DEL of many keys).
fn sum_counts(r: Vec<cortex_storage::Result<Reply>>) -> Frame {
    let n: u64 = r
        .into_iter()
        .map(|r| match r {
            Ok(Reply::Count(n)) => n,
            _ => 0,
        })
        .sum();
    Frame::Integer(n as i64)
}

/// The stream names of the connection's database, for KEYS, SCAN and DBSIZE.
fn names(db: u16, f: impl FnOnce(Vec<Vec<u8>>) -> Frame + Send + 'static) -> Plan {
    Plan::query(Query::Names { ns: db }, move |r| match r {
        Ok(Answer::Names(n)) => f(n),
        Ok(_) => f(Vec::new()),
        Err(e) => storage_error("KEYS", e),
    })
}

pub fn plan(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let db = ctx.conn.db;
    let done = |f: Frame| Ok(Plan::Done(f));
    match ctx.name {
        "PING" => match args.len() {
            1 => done(Frame::Simple("PONG".into())),
            2 => done(Frame::Bulk(args[1].clone())),
            _ => Err(arity("ping")),
        },
        "ECHO" => done(Frame::Bulk(args[1].clone())),
        "HELLO" => hello(ctx, args).map(Plan::Done),
        "AUTH" => {
            auth(ctx, &args[1..])?;
            done(Frame::ok())
        }
        "SELECT" => {
            let n = int(&args[1])?;
            if n < 0 || n >= i64::from(DATABASES) {
                return Err(Frame::err("DB index is out of range"));
            }
            ctx.conn.db = n as u16;
            done(Frame::ok())
        }
        "QUIT" => {
            ctx.conn.close = true;
            done(Frame::ok())
        }
        "RESET" => {
            let c = &mut *ctx.conn;
            c.db = 0;
            c.proto = 2;
            c.name.clear();
            c.multi = None;
            c.multi_failed = false;
            c.principal = ctx.broker.open_session();
            done(Frame::Simple("RESET".into()))
        }
        "CLIENT" => client(ctx, args).map(Plan::Done),
        "COMMAND" => command(args).map(Plan::Done),
        "INFO" => done(Frame::Verbatim(info(ctx, &args[1..]))),
        "CONFIG" => config(ctx, args).map(Plan::Done),
        "DBSIZE" => Ok(names(db, |n| Frame::Integer(n.len() as i64))),
        "DEL" | "UNLINK" => {
            let ops = args[1..]
                .iter()
                .map(|k| Op::DeleteStream { stream: key(db, k) })
                .collect();
            Ok(Plan::Ops(ops, Box::new(sum_counts)))
        }
        "EXISTS" | "TYPE" => {
            let streams: Vec<StreamKey> = args[1..].iter().map(|k| key(db, k)).collect();
            let is_type = ctx.name == "TYPE";
            Ok(Plan::query(Query::Exist { streams }, move |r| {
                let n = match r {
                    Ok(Answer::Count(n)) => n,
                    Ok(_) => 0,
                    Err(e) => return storage_error("EXISTS", e),
                };
                match (is_type, n) {
                    (false, n) => Frame::Integer(n as i64),
                    (true, 0) => Frame::Simple("none".into()),
                    (true, _) => Frame::Simple("stream".into()),
                }
            }))
        }
        "KEYS" => {
            let pattern = args[1].clone();
            Ok(names(db, move |n| {
                Frame::Array(
                    n.into_iter()
                        .filter(|n| glob(&pattern, n))
                        .map(Frame::Bulk)
                        .collect(),
                )
            }))
        }
        "SCAN" => scan(db, args),
        "RENAME" | "RENAMENX" => {
            let nx = ctx.name == "RENAMENX";
            let (from, to) = (key(db, &args[1]), key(db, &args[2]));
            Ok(Plan::op(
                Op::RenameStream {
                    from,
                    to,
                    replace: !nx,
                },
                move |r| match r {
                    Ok(_) if nx => Frame::Integer(1),
                    Ok(_) => Frame::ok(),
                    Err(Error::TargetExists) => Frame::Integer(0),
                    Err(Error::NoSuchStream { .. }) => Frame::err("no such key"),
                    Err(e) => storage_error("RENAME", e),
                },
            ))
        }
        "FLUSHDB" | "FLUSHALL" => {
            if args.len() > 2
                || (args.len() == 2 && !matches!(upper(&args[1]).as_str(), "ASYNC" | "SYNC"))
            {
                return Err(syntax());
            }
            let dbs: Vec<u16> = if ctx.name == "FLUSHDB" {
                vec![db]
            } else {
                (0..DATABASES).collect()
            };
            let ops = dbs
                .into_iter()
                .map(|ns| Op::FlushNamespace { ns })
                .collect();
            Ok(Plan::Ops(
                ops,
                Box::new(|r| match r.into_iter().find_map(Result::err) {
                    None => Frame::ok(),
                    Some(e) => storage_error("FLUSHDB", e),
                }),
            ))
        }
        "MULTI" => {
            if ctx.conn.multi.is_some() {
                return Err(Frame::err("MULTI calls can not be nested"));
            }
            ctx.conn.multi = Some(Vec::new());
            ctx.conn.multi_failed = false;
            done(Frame::ok())
        }
        "DISCARD" => {
            if ctx.conn.multi.take().is_none() {
                return Err(Frame::err("DISCARD without MULTI"));
            }
            ctx.conn.multi_failed = false;
            done(Frame::ok())
        }
        "FUNCTION" => match upper(&args[1]).as_str() {
            // There are no functions; FLUSH succeeds (test harnesses call it), LIST is empty.
            "FLUSH" if args.len() <= 3 => done(Frame::ok()),
            "LIST" => done(Frame::Array(vec![])),
            _ => Err(Frame::err(format!(
                "unknown subcommand '{}'. Try FUNCTION HELP.",
                text(&args[1])
            ))),
        },
        _ => Err(Frame::err(format!(
            "unknown command '{}'",
            ctx.name.to_ascii_lowercase()
        ))),
    }
}

fn auth(ctx: &mut Ctx<'_>, a: &[Vec<u8>]) -> Result<(), Frame> {
    let (agent, token) = match a {
        [t] => (None, t),
        [u, t] => (Some(&u[..]), t),
        _ => return Err(syntax()),
    };
    match ctx.broker.authenticate(agent, token) {
        Ok(p) => {
            ctx.conn.principal = Some(p);
            Ok(())
        }
        Err(AuthError::NotConfigured) => Err(Frame::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        )),
        Err(AuthError::Denied) => Err(Frame::Error(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        )),
    }
}

fn hello(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Frame, Frame> {
    let mut proto = ctx.conn.proto;
    let mut i = 1;
    if args.len() > 1 {
        let v = int(&args[1])
            .map_err(|_| Frame::err("Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&v) {
            return Err(Frame::Error("NOPROTO unsupported protocol version".into()));
        }
        proto = v as u8;
        i = 2;
    }
    while i < args.len() {
        let more = args.len() - i - 1;
        match upper(&args[i]).as_str() {
            "AUTH" if more >= 2 => {
                auth(ctx, &args[i + 1..i + 3])?;
                i += 3;
            }
            "SETNAME" if more >= 1 => {
                set_name(ctx, &args[i + 1])?;
                i += 2;
            }
            _ => {
                return Err(Frame::err(format!(
                    "Syntax error in HELLO option '{}'",
                    text(&args[i])
                )))
            }
        }
    }
    if ctx.conn.principal.is_none() {
        return Err(Frame::Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into()));
    }
    ctx.conn.proto = proto;
    Ok(Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (Frame::bulk("version"), Frame::bulk(REDIS_VERSION)),
        (Frame::bulk("proto"), Frame::Integer(i64::from(proto))),
        (Frame::bulk("id"), Frame::Integer(ctx.conn.id as i64)),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk("master")),
        (Frame::bulk("modules"), Frame::Array(vec![])),
    ]))
}

fn set_name(ctx: &mut Ctx<'_>, name: &[u8]) -> Result<(), Frame> {
    if name.iter().any(|&b| b <= b' ' || b > b'~') {
        return Err(Frame::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    ctx.conn.name = name.to_vec();
    Ok(())
}

fn client(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Frame, Frame> {
    let sub = upper(&args[1]);
    let wrong = || {
        Frame::err(format!(
            "wrong number of arguments for 'client|{}' command",
            sub.to_ascii_lowercase()
        ))
    };
    match sub.as_str() {
        "ID" => Ok(Frame::Integer(ctx.conn.id as i64)),
        "SETNAME" => {
            if args.len() != 3 {
                return Err(wrong());
            }
            set_name(ctx, &args[2])?;
            Ok(Frame::ok())
        }
        "GETNAME" => Ok(if ctx.conn.name.is_empty() {
            Frame::Null
        } else {
            Frame::Bulk(ctx.conn.name.clone())
        }),
        "SETINFO" => {
            if args.len() != 4 {
                return Err(wrong());
            }
            let v = args[3].clone();
            if v.iter().any(|&b| b <= b' ' || b > b'~') {
                return Err(Frame::err(
                    "lib-name and lib-ver cannot contain spaces, newlines or special characters.",
                ));
            }
            match upper(&args[2]).as_str() {
                "LIB-NAME" => ctx.conn.lib.0 = v,
                "LIB-VER" => ctx.conn.lib.1 = v,
                _ => {
                    return Err(Frame::err(format!(
                        "Unrecognized option '{}'",
                        text(&args[2])
                    )))
                }
            }
            Ok(Frame::ok())
        }
        "LIST" => {
            let now = ctx.broker.now_ms();
            ctx.conn.publish();
            let views: Vec<_> = {
                let list = ctx.shared.list.lock().unwrap_or_else(|p| p.into_inner());
                list.values().cloned().collect()
            };
            let mut s = String::new();
            for v in views {
                s.push_str(&v.lock().unwrap_or_else(|p| p.into_inner()).line(now));
                s.push('\n');
            }
            Ok(Frame::Verbatim(s))
        }
        "INFO" => Ok(Frame::Verbatim(format!(
            "{}\n",
            ctx.conn.info_line(ctx.broker.now_ms())
        ))),
        "NO-EVICT" | "NO-TOUCH" => Ok(Frame::ok()),
        "HELP" => Ok(help(&[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "ID",
            "INFO",
            "LIST",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "SETNAME <name>",
            "HELP",
        ])),
        _ => Err(Frame::err(format!(
            "unknown subcommand '{}'. Try CLIENT HELP.",
            text(&args[1])
        ))),
    }
}

fn command_info(s: &super::table::Spec) -> Frame {
    Frame::Array(vec![
        Frame::bulk(s.name.to_ascii_lowercase()),
        Frame::Integer(i64::from(s.arity)),
        Frame::Set(s.flags.iter().map(|f| Frame::Simple((*f).into())).collect()),
        Frame::Integer(i64::from(s.first_key)),
        Frame::Integer(i64::from(s.last_key)),
        Frame::Integer(i64::from(s.step)),
        Frame::Set(vec![Frame::Simple(format!("@{}", s.group))]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
    ])
}

fn command_docs(s: &super::table::Spec) -> Frame {
    Frame::Map(vec![
        (Frame::bulk("summary"), Frame::bulk(s.summary)),
        (
            Frame::bulk("since"),
            Frame::bulk(if s.group == "cortex" {
                "0.1.0"
            } else {
                "5.0.0"
            }),
        ),
        (Frame::bulk("group"), Frame::bulk(s.group)),
    ])
}

fn command(args: &[Vec<u8>]) -> Result<Frame, Frame> {
    if args.len() == 1 {
        return Ok(Frame::Array(COMMANDS.iter().map(command_info).collect()));
    }
    match upper(&args[1]).as_str() {
        "COUNT" => Ok(Frame::Integer(COMMANDS.len() as i64)),
        "INFO" => Ok(Frame::Array(
            args[2..]
                .iter()
                .map(|n| lookup(n).map_or(Frame::Null, command_info))
                .collect(),
        )),
        "DOCS" => {
            let specs: Vec<&super::table::Spec> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                args[2..].iter().filter_map(|n| lookup(n)).collect()
            };
            Ok(Frame::Map(
                specs
                    .into_iter()
                    .map(|s| (Frame::bulk(s.name.to_ascii_lowercase()), command_docs(s)))
                    .collect(),
            ))
        }
        "LIST" => Ok(Frame::Array(
            COMMANDS
                .iter()
                .map(|s| Frame::bulk(s.name.to_ascii_lowercase()))
                .collect(),
        )),
        _ => Err(Frame::err(format!(
            "unknown subcommand '{}'. Try COMMAND HELP.",
            text(&args[1])
        ))),
    }
}

fn info(ctx: &Ctx<'_>, sections: &[Vec<u8>]) -> String {
    let want: Vec<String> = sections
        .iter()
        .map(|s| text(s).to_ascii_lowercase())
        .collect();
    let all = want.is_empty()
        || want
            .iter()
            .any(|w| w == "all" || w == "everything" || w == "default");
    let show = |s: &str| all || want.iter().any(|w| w == s);
    let b = ctx.broker;
    let st = b.stats();
    let now = b.now_ms();
    let mut out = String::new();
    if show("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\ncortex_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nexecutable:cortex\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            b.config().resp.port(),
            now.saturating_sub(b.started_ms()) / 1000,
        );
    }
    if show("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\nrejected_connections:{}\r\n\r\n",
            st.clients.load(Ordering::Relaxed),
            b.config().clients_max,
            st.blocked.load(Ordering::Relaxed),
            ctx.shared.rejected.load(Ordering::Relaxed),
        );
    }
    if show("persistence") {
        let disk = b.disk_bytes();
        let _ = write!(
            out,
            "# Persistence\r\nloading:0\r\naof_enabled:1\r\ncortex_fsync:{}\r\ncortex_disk_bytes:{disk}\r\n\r\n",
            match b.config().fsync {
                Fsync::Always => "always",
                Fsync::Everysec => "everysec",
                Fsync::No => "no",
            }
        );
    }
    if show("stats") {
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_error_replies:{}\r\ncortex_commits:{}\r\ncortex_ops_applied:{}\r\ncortex_alerts:{}\r\n\r\n",
            st.connections.load(Ordering::Relaxed),
            st.commands.load(Ordering::Relaxed),
            ctx.shared
                .errorstats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .sum::<u64>(),
            st.commits.load(Ordering::Relaxed),
            st.ops.load(Ordering::Relaxed),
            st.alerts.load(Ordering::Relaxed),
        );
    }
    if show("commandstats") {
        out.push_str("# Commandstats\r\n");
        let stats = ctx
            .shared
            .cmdstats
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (name, (calls, errors, usec)) in stats.iter() {
            let per = if *calls > 0 {
                *usec as f64 / *calls as f64
            } else {
                0.0
            };
            let _ = write!(
                out,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls=0,failed_calls={errors}\r\n",
                name.to_ascii_lowercase()
            );
        }
        out.push_str("\r\n");
    }
    if show("errorstats") {
        out.push_str("# Errorstats\r\n");
        let stats = ctx
            .shared
            .errorstats
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (code, n) in stats.iter() {
            let _ = write!(out, "errorstat_{code}:count={n}\r\n");
        }
        out.push_str("\r\n");
    }
    if show("keyspace") {
        out.push_str("# Keyspace\r\n");
        for db in 0..DATABASES {
            let n = b.stream_count(db);
            if n > 0 {
                let _ = write!(out, "db{db}:keys={n},expires=0,avg_ttl=0\r\n");
            }
        }
        out.push_str("\r\n");
    }
    out
}

fn config(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Frame, Frame> {
    let c = ctx.broker.config();
    let node = *ctx
        .shared
        .stream_node
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let settings: Vec<(&str, String)> = vec![
        ("databases", DATABASES.to_string()),
        ("stream-node-max-entries", node[0].to_string()),
        ("stream-node-max-bytes", node[1].to_string()),
        ("appendonly", "yes".into()),
        (
            "appendfsync",
            match c.fsync {
                Fsync::Always => "always",
                Fsync::Everysec => "everysec",
                Fsync::No => "no",
            }
            .into(),
        ),
        ("save", String::new()),
        ("maxclients", c.clients_max.to_string()),
        ("port", c.resp.port().to_string()),
        ("bind", c.resp.ip().to_string()),
        ("dir", c.data_dir.display().to_string()),
        (
            "proto-max-bulk-len",
            c.resp_limits.bulk_bytes_max.to_string(),
        ),
        (
            "client-query-buffer-limit",
            c.resp_limits.buffer_bytes_max.to_string(),
        ),
        ("requirepass", String::new()),
    ];
    match upper(&args[1]).as_str() {
        "GET" => {
            if args.len() < 3 {
                return Err(Frame::err(
                    "wrong number of arguments for 'config|get' command",
                ));
            }
            let mut pairs = Vec::new();
            for (k, v) in &settings {
                if args[2..]
                    .iter()
                    .any(|p| glob(&p.to_ascii_lowercase(), k.as_bytes()))
                {
                    pairs.push((Frame::bulk(k), Frame::bulk(v)));
                }
            }
            Ok(Frame::Map(pairs))
        }
        "SET" => {
            if args.len() < 4 || !args.len().is_multiple_of(2) {
                return Err(Frame::err(
                    "wrong number of arguments for 'config|set' command",
                ));
            }
            // Settings are fixed at start-up (config file and flags), except Redis's radix-tree
            // node sizes, which tools and Redis's own tests set: they are accepted and shown,
            // and change nothing here (cortex has no such nodes; `~` trimming is exact).
            let mut node = ctx
                .shared
                .stream_node
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mut new = *node;
            for pair in args[2..].chunks(2) {
                let slot = match text(&pair[0]).to_ascii_lowercase().as_str() {
                    "stream-node-max-entries" => 0,
                    "stream-node-max-bytes" => 1,
                    _ => {
                        return Err(Frame::err(format!(
                            "Unknown option or number of arguments for CONFIG SET - '{}'",
                            text(&pair[0])
                        )))
                    }
                };
                let v = int(&pair[1]).ok().filter(|v| *v >= 0).ok_or_else(|| {
                    Frame::err(format!(
                        "CONFIG SET failed (possibly related to argument '{}') - argument couldn't be parsed into an integer",
                        text(&pair[0])
                    ))
                })?;
                new[slot] = v;
            }
            *node = new;
            Ok(Frame::ok())
        }
        "RESETSTAT" => {
            ctx.shared
                .cmdstats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            ctx.shared
                .errorstats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            Ok(Frame::ok())
        }
        "HELP" => Ok(help(&[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "SET <directive> <value>",
            "RESETSTAT",
            "HELP",
        ])),
        _ => Err(Frame::err(format!(
            "unknown subcommand '{}'. Try CONFIG HELP.",
            text(&args[1])
        ))),
    }
}

fn fnv(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// SCAN cursor [MATCH p] [COUNT n] [TYPE t]. The cursor is a position in hash order, so keys
/// added or removed between calls never shift the others.
fn scan(db: u16, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let cursor: u64 = text(&args[1])
        .parse()
        .map_err(|_| Frame::err("invalid cursor"))?;
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            return Err(syntax());
        }
        match upper(&args[i]).as_str() {
            "MATCH" => pattern = Some(args[i + 1].clone()),
            "COUNT" => {
                let n = int(&args[i + 1])?;
                if n < 1 {
                    return Err(syntax());
                }
                count = n as usize;
            }
            "TYPE" => kind = Some(text(&args[i + 1]).to_ascii_lowercase()),
            _ => return Err(syntax()),
        }
        i += 2;
    }
    Ok(names(db, move |all| {
        let mut names: Vec<(u64, Vec<u8>)> = all
            .into_iter()
            .map(|n| (fnv(&n), n))
            .filter(|(h, _)| *h >= cursor)
            .collect();
        names.sort();
        let page: Vec<&(u64, Vec<u8>)> = names.iter().take(count).collect();
        let next = names.get(count).map_or(0, |(h, _)| *h);
        let keys = page
            .into_iter()
            .filter(|(_, n)| pattern.as_ref().is_none_or(|p| glob(p, n)))
            .filter(|_| kind.as_deref().is_none_or(|k| k == "stream"))
            .map(|(_, n)| Frame::Bulk(n.clone()))
            .collect();
        Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(keys)])
    }))
}
