//! Connection, server and keyspace commands that tools and client libraries send.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use cortex_storage::{Op, Reply};

use super::args::*;
use super::table::{lookup, COMMANDS};
use super::Ctx;
use crate::config::Fsync;
use crate::resp::codec::Frame;

/// Databases (namespaces) SELECT accepts.
pub const DATABASES: u16 = 16;
/// The Redis version we behave as.
pub const REDIS_VERSION: &str = "7.2.0";

pub async fn run(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    match ctx.name {
        "PING" => match args.len() {
            1 => Ok(Frame::Simple("PONG".into())),
            2 => Ok(Frame::Bulk(args[1].clone())),
            _ => Err(arity("ping")),
        },
        "ECHO" => Ok(Frame::Bulk(args[1].clone())),
        "HELLO" => hello(ctx, args),
        "AUTH" => auth(ctx, &args[1..]).map(|_| Frame::ok()),
        "SELECT" => {
            let n = int(&args[1])?;
            if n < 0 || n >= i64::from(DATABASES) {
                return Err(Frame::err("DB index is out of range"));
            }
            ctx.conn.db = n as u16;
            Ok(Frame::ok())
        }
        "QUIT" => {
            ctx.conn.close = true;
            Ok(Frame::ok())
        }
        "RESET" => {
            let c = &mut *ctx.conn;
            c.db = 0;
            c.proto = 2;
            c.name.clear();
            c.multi = None;
            c.multi_failed = false;
            c.authed = ctx.broker.config().tokens.is_empty();
            c.agent = None;
            Ok(Frame::Simple("RESET".into()))
        }
        "CLIENT" => client(ctx, args),
        "COMMAND" => command(args),
        "INFO" => Ok(Frame::Verbatim(info(ctx, &args[1..]))),
        "CONFIG" => config(ctx, args),
        "DBSIZE" => Ok(Frame::Integer(
            ctx.broker.store().stream_count(ctx.conn.db) as i64
        )),
        "DEL" | "UNLINK" => {
            let ops = args[1..]
                .iter()
                .map(|k| Op::DeleteStream {
                    stream: key(ctx.conn.db, k),
                })
                .collect();
            let replies = ctx.broker.submit(ops).await.map_err(Frame::err)?;
            let n: u64 = replies
                .into_iter()
                .map(|r| match r {
                    Ok(Reply::Count(n)) => n,
                    _ => 0,
                })
                .sum();
            Ok(Frame::Integer(n as i64))
        }
        "EXISTS" => {
            let store = ctx.broker.store();
            let n = args[1..]
                .iter()
                .filter(|k| store.exists(&key(ctx.conn.db, k)))
                .count();
            Ok(Frame::Integer(n as i64))
        }
        "TYPE" => {
            let t = if ctx.broker.store().exists(&key(ctx.conn.db, &args[1])) {
                "stream"
            } else {
                "none"
            };
            Ok(Frame::Simple(t.into()))
        }
        "KEYS" => {
            let names = ctx.broker.store().list_streams(ctx.conn.db);
            Ok(Frame::Array(
                names
                    .into_iter()
                    .filter(|n| glob(&args[1], n))
                    .map(Frame::Bulk)
                    .collect(),
            ))
        }
        "SCAN" => scan(ctx, args),
        "RENAME" | "RENAMENX" => {
            let nx = ctx.name == "RENAMENX";
            let (from, to) = (key(ctx.conn.db, &args[1]), key(ctx.conn.db, &args[2]));
            if !ctx.broker.store().exists(&from) {
                return Err(Frame::err("no such key"));
            }
            let r = ctx
                .broker
                .submit_one(Op::RenameStream {
                    from,
                    to,
                    replace: !nx,
                })
                .await
                .map_err(Frame::err)?;
            match r {
                Ok(_) if nx => Ok(Frame::Integer(1)),
                Ok(_) => Ok(Frame::ok()),
                Err(cortex_storage::Error::TargetExists) => Ok(Frame::Integer(0)),
                Err(cortex_storage::Error::NoSuchStream { .. }) => Err(Frame::err("no such key")),
                Err(e) => Err(storage_error("RENAME", e)),
            }
        }
        "FLUSHDB" | "FLUSHALL" => {
            if args.len() > 2
                || (args.len() == 2 && !matches!(upper(&args[1]).as_str(), "ASYNC" | "SYNC"))
            {
                return Err(syntax());
            }
            let dbs: Vec<u16> = if ctx.name == "FLUSHDB" {
                vec![ctx.conn.db]
            } else {
                (0..DATABASES).collect()
            };
            let ops = dbs
                .into_iter()
                .map(|ns| Op::FlushNamespace { ns })
                .collect();
            ctx.broker.submit(ops).await.map_err(Frame::err)?;
            Ok(Frame::ok())
        }
        "MULTI" => {
            if ctx.conn.multi.is_some() {
                return Err(Frame::err("MULTI calls can not be nested"));
            }
            ctx.conn.multi = Some(Vec::new());
            ctx.conn.multi_failed = false;
            Ok(Frame::ok())
        }
        "DISCARD" => {
            if ctx.conn.multi.take().is_none() {
                return Err(Frame::err("DISCARD without MULTI"));
            }
            ctx.conn.multi_failed = false;
            Ok(Frame::ok())
        }
        "FUNCTION" => match upper(&args[1]).as_str() {
            // There are no functions; FLUSH succeeds (test harnesses call it), LIST is empty.
            "FLUSH" if args.len() <= 3 => Ok(Frame::ok()),
            "LIST" => Ok(Frame::Array(vec![])),
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
    let tokens = &ctx.broker.config().tokens;
    if tokens.is_empty() {
        return Err(Frame::err(
            "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    }
    let (agent, token) = match a {
        [t] => (None, t),
        [u, t] => (Some(text(u)), t),
        _ => return Err(syntax()),
    };
    let token = text(token);
    let found = tokens.iter().find(|(name, t)| {
        **t == token && agent.as_ref().is_none_or(|a| a == *name || a == "default")
    });
    match found {
        Some((name, _)) => {
            ctx.conn.authed = true;
            ctx.conn.agent = Some(name.clone());
            Ok(())
        }
        None => Err(Frame::Error(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        )),
    }
}

fn hello(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
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
    if !ctx.conn.authed {
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

fn client(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
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
                let list = ctx.clients.list.lock().unwrap_or_else(|p| p.into_inner());
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
        "HELP" => Ok(super::stream::help(&[
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

fn command(args: &[Vec<u8>]) -> CmdResult {
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
            ctx.clients.rejected.load(Ordering::Relaxed),
        );
    }
    if show("persistence") {
        let disk = b.store().disk_space().unwrap_or(0);
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
            ctx.clients
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
            .clients
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
            .clients
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
            let n = b.store().stream_count(db);
            if n > 0 {
                let _ = write!(out, "db{db}:keys={n},expires=0,avg_ttl=0\r\n");
            }
        }
        out.push_str("\r\n");
    }
    out
}

fn config(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let c = ctx.broker.config();
    let node = *ctx
        .clients
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
                .clients
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
            ctx.clients
                .cmdstats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            ctx.clients
                .errorstats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            Ok(Frame::ok())
        }
        "HELP" => Ok(super::stream::help(&[
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

/// Redis-style glob: `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`. Linear backtracking to the
/// last `*` only, so no pattern takes more than O(pattern x text) steps.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    // Matches one pattern element at p[pi] against byte c; returns the element's length.
    fn one(p: &[u8], pi: usize, c: u8) -> (bool, usize) {
        match p[pi] {
            b'?' => (true, 1),
            b'\\' if pi + 1 < p.len() => (p[pi + 1] == c, 2),
            b'[' => {
                let mut j = pi + 1;
                let neg = j < p.len() && p[j] == b'^';
                if neg {
                    j += 1;
                }
                let mut hit = false;
                while j < p.len() && p[j] != b']' {
                    if p[j] == b'\\' && j + 1 < p.len() {
                        hit |= p[j + 1] == c;
                        j += 2;
                    } else if j + 2 < p.len() && p[j + 1] == b'-' && p[j + 2] != b']' {
                        let (lo, hi) = (p[j].min(p[j + 2]), p[j].max(p[j + 2]));
                        hit |= (lo..=hi).contains(&c);
                        j += 3;
                    } else {
                        hit |= p[j] == c;
                        j += 1;
                    }
                }
                (hit != neg, (j + 1).min(p.len()) - pi)
            }
            other => (other == c, 1),
        }
    }
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, si));
            continue;
        }
        if pi < p.len() {
            let (ok, len) = one(p, pi, s[si]);
            if ok {
                pi += len;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
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
fn scan(ctx: &Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
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
    let mut names: Vec<(u64, Vec<u8>)> = ctx
        .broker
        .store()
        .list_streams(ctx.conn.db)
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
    Ok(Frame::Array(vec![
        Frame::bulk(next.to_string()),
        Frame::Array(keys),
    ]))
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_patterns() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"cortex:*", b"cortex:dlq"));
        assert!(!glob(b"cortex:*", b"other"));
        assert!(glob(b"h?llo", b"hello"));
        assert!(glob(b"h[ae]llo", b"hallo"));
        assert!(!glob(b"h[^e]llo", b"hello"));
        assert!(glob(b"h[a-c]llo", b"hbllo"));
        assert!(glob(b"a\\*b", b"a*b"));
        assert!(!glob(b"a\\*b", b"axb"));
        assert!(glob(&[b'*'; 200], b"short"));
        assert!(glob(b"*a*b", b"xxaxxb"));
        assert!(!glob(b"*a*b", b"xxaxx"));
        assert!(glob(b"h*", b"h"));
        assert!(!glob(b"h?", b"h"));
        // A pathological pattern is linear, not exponential (this returned only after the
        // heat death of the universe with a naive recursive matcher).
        let p: Vec<u8> = b"a*".repeat(1000).into_iter().chain(*b"b").collect();
        assert!(!glob(&p, &[b'a'; 5000]));
    }
}
