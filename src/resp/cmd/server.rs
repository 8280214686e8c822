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
pub const REDIS_VERSION: &str = "7.4.1";

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
            c.set_name(Vec::new());
            c.multi = None;
            c.multi_failed = false;
            c.set_principal(ctx.broker.open_session());
            done(Frame::Simple("RESET".into()))
        }
        "CLIENT" => client(ctx, args).map(Plan::Done),
        "COMMAND" => command(args).map(Plan::Done),
        "INFO" => done(Frame::Verbatim(info(ctx, &args[1..]))),
        "CONFIG" => config(ctx, args),
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
        "SWAPDB" => {
            let ix = |a: &[u8], what: &str| {
                int(a).map_err(|_| Frame::err(format!("invalid {what} DB index")))
            };
            let (a, b) = (ix(&args[1], "first")?, ix(&args[2], "second")?);
            let range = 0..i64::from(DATABASES);
            if !range.contains(&a) || !range.contains(&b) {
                return Err(Frame::err("DB index is out of range"));
            }
            Ok(Plan::op(
                Op::SwapNamespaces {
                    a: a as u16,
                    b: b as u16,
                },
                |r| match r {
                    Ok(_) => Frame::ok(),
                    Err(e) => storage_error("SWAPDB", e),
                },
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
            ctx.conn.set_principal(Some(p));
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
    if ctx.conn.principal().is_none() {
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
    ctx.conn.set_name(name.to_vec());
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
        "GETNAME" => Ok(if ctx.conn.name().is_empty() {
            Frame::Null
        } else {
            Frame::Bulk(ctx.conn.name().to_vec())
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
                "LIB-NAME" => ctx.conn.set_lib_name(v),
                "LIB-VER" => ctx.conn.set_lib_ver(v),
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

/// INFO's sections, in Redis 7.4's order; `default` and an empty argument list mean the
/// first eleven, `all` adds commandstats, `everything` is the same here (no modules).
const INFO_DEFAULT: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
];

/// Resident set size in bytes, from /proc (0 where there is none).
fn rss_bytes() -> u64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |p| p * page)
}

/// Total memory of the machine in bytes, from /proc (0 where there is none).
fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// (system, user) CPU seconds of the process, from /proc (Linux's 100 ticks a second).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    (tick(12), tick(11))
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

/// INFO's replication section for a cluster node, in Redis's words: the leader is
/// `role:master` with one `slaveN` line per follower (matched log index and lag in
/// entries), a follower `role:slave` with its leader's address and link state.
fn cluster_replication(st: &crate::broker::ClusterStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let leader_addr = st
        .leader
        .and_then(|l| st.members.iter().find(|(id, _)| *id == l))
        .map(|(_, a)| a.clone());
    let is_leader = st.leader == Some(st.id) && st.state == "Leader";
    let _ = write!(
        out,
        "role:{}\r\ncluster_node_id:{}\r\ncluster_state:{}\r\ncluster_leader_id:{}\r\ncluster_term:{}\r\ncluster_voters:{}\r\n",
        if is_leader { "master" } else { "slave" },
        st.id,
        st.state.to_ascii_lowercase(),
        st.leader.map_or("none".into(), |l| l.to_string()),
        st.term,
        st.voters.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
    );
    if is_leader {
        let followers = st.followers.clone().unwrap_or_default();
        let _ = write!(out, "connected_slaves:{}\r\n", followers.len());
        for (i, (id, matched, lag)) in followers.iter().enumerate() {
            let addr = st
                .members
                .iter()
                .find(|(m, _)| m == id)
                .map_or("", |(_, a)| a.as_str());
            let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
            let _ = write!(
                out,
                "slave{i}:id={id},ip={ip},port={port},state=online,offset={matched},lag={lag}\r\n"
            );
        }
    } else {
        let addr = leader_addr.unwrap_or_default();
        let (ip, port) = addr.rsplit_once(':').unwrap_or(("", "0"));
        let _ = write!(
            out,
            "master_host:{ip}\r\nmaster_port:{port}\r\nmaster_link_status:{}\r\nslave_repl_offset:{}\r\nslave_lag:{}\r\nconnected_slaves:0\r\n",
            if st.leader.is_some() { "up" } else { "down" },
            st.applied_index,
            st.last_log_index.saturating_sub(st.applied_index),
        );
    }
    let _ = write!(
        out,
        "master_repl_offset:{}\r\ncluster_applied_index:{}\r\ncluster_snapshot_index:{}\r\ncluster_purged_index:{}\r\n",
        st.last_log_index,
        st.applied_index,
        st.snapshot_index.map_or(-1, |i| i as i64),
        st.purged_index.map_or(-1, |i| i as i64),
    );
    out
}

fn info(ctx: &Ctx<'_>, sections: &[Vec<u8>]) -> String {
    let want: Vec<String> = sections
        .iter()
        .map(|s| text(s).to_ascii_lowercase())
        .collect();
    let every = want.iter().any(|w| w == "all" || w == "everything");
    let default = want.is_empty() || want.iter().any(|w| w == "default");
    let show =
        |s: &str| every || (default && INFO_DEFAULT.contains(&s)) || want.iter().any(|w| w == s);
    let b = ctx.broker;
    let st = b.stats();
    let now = b.now_ms();
    let c = b.config();
    let uptime = now.saturating_sub(b.started_ms()) / 1000;
    let mut out = String::new();
    let section = |out: &mut String, title: &str, body: String| {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let _ = write!(out, "# {title}\r\n{body}");
    };
    if show("server") {
        let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| format!("Linux {} {}", r.trim(), std::env::consts::ARCH))
            .unwrap_or_else(|_| std::env::consts::OS.to_string());
        section(
            &mut out,
            "Server",
            format!(
                "redis_version:{REDIS_VERSION}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\n\
                 redis_build_id:0\r\nredis_mode:standalone\r\nos:{os}\r\narch_bits:{}\r\n\
                 monotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\n\
                 atomicvar_api:c11-builtin\r\ngcc_version:0.0.0\r\nprocess_id:{}\r\n\
                 process_supervised:no\r\nrun_id:{:040x}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\n\
                 uptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:10\r\nconfigured_hz:10\r\n\
                 lru_clock:{}\r\nexecutable:{}\r\nconfig_file:\r\nio_threads_active:0\r\n\
                 listener0:name=tcp,bind={},port={}\r\ncortex_version:{}\r\n",
                usize::BITS,
                std::process::id(),
                u128::from(b.started_ms()) << 64 | u128::from(std::process::id()),
                c.resp.port(),
                now * 1000,
                uptime / 86_400,
                (now / 1000) & ((1 << 24) - 1),
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                c.resp.ip(),
                c.resp.port(),
                env!("CARGO_PKG_VERSION"),
            ),
        );
    }
    if show("clients") {
        section(
            &mut out,
            "Clients",
            format!(
                "connected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\n\
                 blocked_clients:{}\r\ntracking_clients:0\r\npubsub_clients:0\r\n\
                 watching_clients:0\r\nclients_in_timeout_table:0\r\ntotal_watched_keys:0\r\n\
                 total_blocking_keys:0\r\ntotal_blocking_keys_on_nokey:0\r\n",
                st.clients.load(Ordering::Relaxed),
                c.clients_max,
                st.blocked.load(Ordering::Relaxed),
            ),
        );
    }
    if show("memory") {
        // No allocator statistics here: used memory is the resident set.
        let rss = rss_bytes();
        let total = total_memory();
        section(
            &mut out,
            "Memory",
            format!(
                "used_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
                 used_memory_rss_human:{}\r\nused_memory_peak:{rss}\r\nused_memory_peak_human:{}\r\n\
                 total_system_memory:{total}\r\ntotal_system_memory_human:{}\r\n\
                 used_memory_lua:0\r\nused_memory_scripts:0\r\nmaxmemory:0\r\n\
                 maxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n\
                 mem_fragmentation_ratio:1.00\r\nmem_allocator:libc\r\n\
                 lazyfree_pending_objects:0\r\nmem_clients_normal:{}\r\ncortex_disk_bytes:{}\r\n",
                human(rss),
                human(rss),
                human(rss),
                human(total),
                ctx.shared.buffer_bytes.load(Ordering::Relaxed),
                b.disk_bytes(),
            ),
        );
    }
    if show("persistence") {
        let fsync = match c.fsync {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
            Fsync::No => "no",
        };
        section(
            &mut out,
            "Persistence",
            format!(
                "loading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\n\
                 current_fork_perc:0.00\r\nrdb_changes_since_last_save:{}\r\n\
                 rdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\n\
                 rdb_last_bgsave_status:ok\r\nrdb_saves:0\r\naof_enabled:1\r\n\
                 aof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n\
                 aof_last_write_status:ok\r\naof_rewrites:0\r\ncortex_fsync:{fsync}\r\n",
                st.dirty.load(Ordering::Relaxed),
                b.started_ms() / 1000,
            ),
        );
    }
    let errors: u64 = ctx
        .shared
        .errorstats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .sum();
    if show("stats") {
        section(
            &mut out,
            "Stats",
            format!(
                "total_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 rejected_connections:{}\r\nexpired_keys:0\r\nevicted_keys:0\r\n\
                 keyspace_hits:0\r\nkeyspace_misses:0\r\npubsub_channels:0\r\n\
                 pubsub_patterns:0\r\ntotal_forks:0\r\nunexpected_error_replies:0\r\n\
                 total_error_replies:{errors}\r\ncortex_commits:{}\r\ncortex_ops_applied:{}\r\n\
                 cortex_alerts:{}\r\n",
                st.connections.load(Ordering::Relaxed),
                st.commands.load(Ordering::Relaxed),
                ctx.shared.rejected.load(Ordering::Relaxed),
                st.commits.load(Ordering::Relaxed),
                st.ops.load(Ordering::Relaxed),
                st.alerts.load(Ordering::Relaxed),
            ),
        );
    }
    if show("replication") {
        if let Some(node) = b.cluster() {
            section(&mut out, "Replication", cluster_replication(&node.status()));
        } else {
            section(
                &mut out,
                "Replication",
                "role:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n\
             master_replid:0000000000000000000000000000000000000000\r\n\
             master_replid2:0000000000000000000000000000000000000000\r\n\
             master_repl_offset:0\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\n\
             repl_backlog_size:0\r\nrepl_backlog_first_byte_offset:0\r\n\
             repl_backlog_histlen:0\r\n"
                    .to_string(),
            );
        }
    }
    if show("cpu") {
        let (sys, user) = cpu_seconds();
        section(
            &mut out,
            "CPU",
            format!(
                "used_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\n\
                 used_cpu_user_children:0.000000\r\n"
            ),
        );
    }
    if show("modules") {
        section(&mut out, "Modules", String::new());
    }
    if show("commandstats") {
        let mut body = String::new();
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
                body,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls=0,failed_calls={errors}\r\n",
                name.to_ascii_lowercase()
            );
        }
        section(&mut out, "Commandstats", body);
    }
    if show("errorstats") {
        let mut body = String::new();
        let stats = ctx
            .shared
            .errorstats
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (code, n) in stats.iter() {
            let _ = write!(body, "errorstat_{code}:count={n}\r\n");
        }
        section(&mut out, "Errorstats", body);
    }
    if show("cluster") {
        section(&mut out, "Cluster", "cluster_enabled:0\r\n".to_string());
    }
    if show("keyspace") {
        let mut body = String::new();
        for db in 0..DATABASES {
            let n = b.stream_count(db);
            if n > 0 {
                let _ = write!(body, "db{db}:keys={n},expires=0,avg_ttl=0,subexpiry=0\r\n");
            }
        }
        section(&mut out, "Keyspace", body);
    }
    out
}

fn config(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let c = ctx.broker.config();
    let node = ctx.broker.node_limits();
    let settings: Vec<(&str, String)> = vec![
        ("databases", DATABASES.to_string()),
        ("stream-node-max-entries", node.entries.to_string()),
        ("stream-node-max-bytes", node.bytes.to_string()),
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
            Ok(Plan::Done(Frame::Map(pairs)))
        }
        "SET" => {
            if args.len() < 4 || !args.len().is_multiple_of(2) {
                return Err(Frame::err(
                    "wrong number of arguments for 'config|set' command",
                ));
            }
            // Settings are fixed at start-up (config file and flags), except Redis's radix-tree
            // node sizes, which tools and Redis's own tests set: they decide where `~` trims
            // may cut from then on (storage's `nodes`), in memory only, as in Redis.
            let mut new = node;
            for pair in args[2..].chunks(2) {
                let name = text(&pair[0]).to_ascii_lowercase();
                if name != "stream-node-max-entries" && name != "stream-node-max-bytes" {
                    return Err(Frame::err(format!(
                        "Unknown option or number of arguments for CONFIG SET - '{}'",
                        text(&pair[0])
                    )));
                }
                let v = int(&pair[1]).ok().filter(|v| *v >= 0).ok_or_else(|| {
                    Frame::err(format!(
                        "CONFIG SET failed (possibly related to argument '{}') - argument couldn't be parsed into an integer",
                        text(&pair[0])
                    ))
                })? as u64;
                if name == "stream-node-max-entries" {
                    new.entries = v;
                } else {
                    new.bytes = v;
                }
            }
            Ok(Plan::op(Op::SetNodeLimits(new), |r| match r {
                Ok(_) => Frame::ok(),
                Err(e) => storage_error("CONFIG", e),
            }))
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
            Ok(Plan::Done(Frame::ok()))
        }
        "HELP" => Ok(Plan::Done(help(&[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "SET <directive> <value>",
            "RESETSTAT",
            "HELP",
        ]))),
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
