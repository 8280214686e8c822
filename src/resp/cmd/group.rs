//! Consumer-group commands: XREADGROUP (blocking in the broker), XGROUP, XPENDING, XCLAIM,
//! XAUTOCLAIM.

use cortex_storage::{
    Answer, Error, GroupStart, Op, PendingQuery, Query, ReadFrom, Reply, StreamId,
};

use super::args::*;
use super::read::parse_read;
use super::reply::{fields_frame, help, pairs_frame, streams_reply};
use super::{Ctx, Plan};
use crate::broker::GroupRead;
use crate::resp::codec::Frame;

pub fn plan(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    match ctx.name {
        "XREADGROUP" => xreadgroup(ctx, args),
        "XGROUP" => xgroup(ctx, args),
        "XPENDING" => xpending(ctx, args),
        "XCLAIM" => xclaim(ctx, args),
        _ => xautoclaim(ctx, args),
    }
}

/// `NOGROUP No such key 'k' or consumer group 'g'` for a missing stream or group.
fn nogroup_plain(k: &[u8], g: &[u8]) -> Frame {
    Frame::Error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        text(k),
        text(g)
    ))
}

/// The error reply of a group command: NOGROUP for a missing stream or group.
fn group_error(cmd: &'static str, k: &[u8], g: &[u8], e: Error) -> Frame {
    match e {
        Error::NoSuchStream { .. } | Error::NoSuchGroup { .. } => nogroup_plain(k, g),
        e => storage_error(cmd, e),
    }
}

/// XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS key ... id ...
fn xreadgroup(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let r = parse_read(args, true)?;
    let (group, consumer) = r.group.clone().unwrap_or_default();
    let db = ctx.conn.db;
    let mut streams = Vec::with_capacity(r.keys.len());
    for (k, a) in r.keys.iter().zip(&r.ids) {
        let from = match a.as_slice() {
            b">" => ReadFrom::New,
            b"$" => {
                return Err(Frame::err(
                    "The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ))
            }
            other => ReadFrom::History(id(other)?),
        };
        streams.push((key(db, k), from));
    }
    ctx.conn
        .read_groups
        .extend(r.keys.iter().map(|k| (k.clone(), group.clone())));
    let proto = ctx.conn.proto;
    let names = r.keys.clone();
    let history: Vec<bool> = streams
        .iter()
        .map(|(_, f)| matches!(f, ReadFrom::History(_)))
        .collect();
    let req = GroupRead {
        streams,
        group: group.clone(),
        consumer,
        count: r.count,
        noack: r.noack,
        claim: r.claim,
        max_count: r.max_count,
        max_bytes: r.max_bytes,
    };
    if r.claim.is_some() && history.iter().any(|h| *h) {
        return Err(Frame::err("CLAIM can be used only with the > ID"));
    }
    let blocking = r.blocking();
    Ok(Plan::GroupRead(
        req,
        blocking,
        Box::new(move |mut res| {
            match res.pop().unwrap_or(Ok(Reply::Ok)) {
            Ok(Reply::GroupRead(v)) => {
                let results: Vec<(Vec<u8>, Frame)> = names
                    .into_iter()
                    .zip(v)
                    .zip(history)
                    .filter(|((_, e), hist)| *hist || !e.is_empty())
                    .map(|((n, e), _)| (n, pairs_frame(proto, e)))
                    .collect();
                streams_reply(proto, results)
            }
            // CLAIM: each entry with its idle time and earlier deliveries (0 and 0: new).
            Ok(Reply::ClaimRead(v)) => {
                let results: Vec<(Vec<u8>, Frame)> = names
                    .into_iter()
                    .zip(v)
                    .filter(|(_, e)| !e.is_empty())
                    .map(|(n, e)| {
                        let entries = e
                            .into_iter()
                            .map(|c| {
                                Frame::Array(vec![
                                    id_frame(c.id),
                                    fields_frame(c.record),
                                    Frame::Integer(c.idle_ms as i64),
                                    Frame::Integer(c.deliveries as i64),
                                ])
                            })
                            .collect();
                        (n, Frame::Array(entries))
                    })
                    .collect();
                streams_reply(proto, results)
            }
            Ok(_) => Frame::NullArray,
            Err(Error::NoSuchStream { stream } | Error::NoSuchGroup { stream, .. }) => {
                Frame::Error(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    text(&stream),
                    text(&group)
                ))
            }
            Err(e) => storage_error("XREADGROUP", e),
        }
        }),
    ))
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Print this help.",
];

fn entries_read_arg(a: &[u8]) -> Result<Option<u64>, Frame> {
    let n = int(a)?;
    if n < -1 {
        return Err(Frame::err("value for ENTRIESREAD must be positive or -1"));
    }
    Ok((n >= 0).then_some(n as u64))
}

/// XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER|HELP
fn xgroup(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let sub = upper(&args[1]);
    let want = |n: usize, exact: bool| -> Result<(), Frame> {
        let ok = if exact {
            args.len() == n
        } else {
            args.len() >= n
        };
        if ok {
            Ok(())
        } else {
            Err(Frame::err(format!(
                "wrong number of arguments for 'xgroup|{}' command",
                sub.to_ascii_lowercase()
            )))
        }
    };
    match sub.as_str() {
        "HELP" => return Ok(Plan::Done(help(XGROUP_HELP))),
        "CREATE" => want(5, false)?,
        "SETID" => want(5, false)?,
        "DESTROY" => want(4, true)?,
        "CREATECONSUMER" | "DELCONSUMER" => want(5, true)?,
        _ => {
            return Err(Frame::err(format!(
                "unknown subcommand '{}'. Try XGROUP HELP.",
                text(&args[1])
            )))
        }
    }
    let k = key(ctx.conn.db, &args[2]);
    let group = args[3].clone();
    let mut mkstream = false;
    let mut entries_read = None;
    if sub == "CREATE" || sub == "SETID" {
        let mut i = 5;
        while i < args.len() {
            match upper(&args[i]).as_str() {
                "MKSTREAM" if sub == "CREATE" => {
                    mkstream = true;
                    i += 1;
                }
                "ENTRIESREAD" if i + 1 < args.len() => {
                    entries_read = entries_read_arg(&args[i + 1])?;
                    i += 2;
                }
                _ => return Err(syntax()),
            }
        }
    }
    // Like Redis, `-` and `+` are the smallest and largest IDs here.
    let start = |a: &[u8]| -> Result<GroupStart, Frame> {
        match a {
            b"$" => Ok(GroupStart::Last),
            b"-" => Ok(GroupStart::Id(StreamId::MIN)),
            b"+" => Ok(GroupStart::Id(StreamId::MAX)),
            _ => Ok(GroupStart::Id(id(a)?)),
        }
    };
    let (kname, gname) = (args[2].clone(), group.clone());
    let fail = move |e: Error| {
        match e {
        Error::NoSuchStream { .. } => Frame::err(
            "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
        ),
        Error::NoSuchGroup { .. } => Frame::Error(format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            text(&gname),
            text(&kname)
        )),
        e => storage_error("XGROUP", e),
    }
    };
    let count = move |r: cortex_storage::Result<Reply>| match r {
        Ok(Reply::Count(n)) => Frame::Integer(n as i64),
        Ok(_) => Frame::Integer(0),
        Err(e) => fail(e),
    };
    let op = match sub.as_str() {
        // The broker gives a group created without a policy the configured default.
        "CREATE" => Op::CreateGroup {
            stream: k,
            group,
            start: start(&args[4])?,
            mkstream,
            entries_read,
            policy: None,
        },
        "SETID" => Op::SetGroupId {
            stream: k,
            group,
            start: start(&args[4])?,
            entries_read,
        },
        "DESTROY" => Op::DestroyGroup { stream: k, group },
        "CREATECONSUMER" => Op::CreateConsumer {
            stream: k,
            group,
            consumer: args[4].clone(),
        },
        _ => Op::DeleteConsumer {
            stream: k,
            group,
            consumer: args[4].clone(),
        },
    };
    if matches!(sub.as_str(), "CREATE" | "SETID") {
        return Ok(Plan::op(op, move |r| match r {
            Ok(_) => Frame::ok(),
            Err(e) => count(Err(e)),
        }));
    }
    Ok(Plan::op(op, count))
}

/// XPENDING key group [[IDLE ms] start end count [consumer]]
fn xpending(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let k = key(ctx.conn.db, &args[1]);
    let (kname, g) = (args[1].clone(), args[2].clone());
    if args.len() == 3 {
        return Ok(Plan::query(
            Query::PendingSummary {
                stream: k,
                group: g.clone(),
            },
            move |r| match r {
                Ok(Answer::PendingSummary(s)) => {
                    let (lo, hi) = match s.bounds {
                        Some((a, b)) => (id_frame(a), id_frame(b)),
                        None => (Frame::Null, Frame::Null),
                    };
                    let consumers = if s.consumers.is_empty() {
                        Frame::NullArray
                    } else {
                        Frame::Array(
                            s.consumers
                                .iter()
                                .map(|(n, c)| {
                                    Frame::Array(vec![
                                        Frame::Bulk(n.clone()),
                                        Frame::bulk(c.to_string()),
                                    ])
                                })
                                .collect(),
                        )
                    };
                    Frame::Array(vec![Frame::Integer(s.count as i64), lo, hi, consumers])
                }
                Ok(_) => Frame::NullArray,
                Err(e) => group_error("XPENDING", &kname, &g, e),
            },
        ));
    }
    let mut i = 3;
    let mut min_idle = None;
    if upper(&args[i]) == "IDLE" {
        let Some(v) = args.get(i + 1) else {
            return Err(syntax());
        };
        min_idle = Some(int(v)?.max(0) as u64);
        i += 2;
    }
    let rest = &args[i..];
    if rest.len() < 3 || rest.len() > 4 {
        return Err(syntax());
    }
    let q = PendingQuery {
        start: range_start(&rest[0])?,
        end: range_end(&rest[1])?,
        count: int(&rest[2])?.max(0) as usize,
        consumer: rest.get(3).cloned(),
        min_idle_ms: min_idle,
    };
    Ok(Plan::query(
        Query::Pending {
            stream: k,
            group: g.clone(),
            query: q,
        },
        move |r| match r {
            Ok(Answer::Pending(list)) => Frame::Array(
                list.into_iter()
                    .map(|p| {
                        Frame::Array(vec![
                            id_frame(p.id),
                            Frame::Bulk(p.consumer),
                            Frame::Integer(p.idle_ms as i64),
                            Frame::Integer(p.deliveries as i64),
                        ])
                    })
                    .collect(),
            ),
            Ok(_) => Frame::Array(vec![]),
            Err(e) => group_error("XPENDING", &kname, &g, e),
        },
    ))
}

/// XCLAIM key group consumer min-idle id ... [IDLE ms] [TIME ms] [RETRYCOUNT n] [FORCE] [JUSTID] [LASTID id]
fn xclaim(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let proto = ctx.conn.proto;
    let min_idle = int(&args[4])
        .map_err(|_| Frame::err("Invalid min-idle-time argument for XCLAIM"))?
        .max(0) as u64;
    let mut i = 5;
    let mut ids = Vec::new();
    while i < args.len() {
        match id(&args[i]) {
            Ok(x) => ids.push(x),
            Err(_) => break,
        }
        i += 1;
    }
    let now = ctx.broker.now_ms();
    let (mut delivery, mut retry, mut force, mut justid, mut last_id) =
        (None, None, false, false, None);
    while i < args.len() {
        let more = args.len() - i - 1;
        match upper(&args[i]).as_str() {
            "FORCE" => force = true,
            "JUSTID" => justid = true,
            "IDLE" if more >= 1 => {
                i += 1;
                let v = int(&args[i])
                    .map_err(|_| Frame::err("Invalid IDLE option argument for XCLAIM"))?;
                delivery = Some(now.saturating_sub(v.max(0) as u64));
            }
            "TIME" if more >= 1 => {
                i += 1;
                let v = int(&args[i])
                    .map_err(|_| Frame::err("Invalid TIME option argument for XCLAIM"))?;
                delivery = Some(if v < 0 || v as u64 > now {
                    now
                } else {
                    v as u64
                });
            }
            "RETRYCOUNT" if more >= 1 => {
                i += 1;
                let v = int(&args[i])
                    .map_err(|_| Frame::err("Invalid RETRYCOUNT option argument for XCLAIM"))?;
                retry = Some(v.max(0) as u64);
            }
            "LASTID" if more >= 1 => {
                i += 1;
                last_id = Some(id(&args[i])?);
            }
            _ => {
                return Err(Frame::err(format!(
                    "Unrecognized XCLAIM option '{}'",
                    text(&args[i])
                )))
            }
        }
        i += 1;
    }
    let k = key(ctx.conn.db, &args[1]);
    let (kname, g) = (args[1].clone(), args[2].clone());
    let op = Op::Claim {
        stream: k,
        group: args[2].clone(),
        consumer: args[3].clone(),
        min_idle_ms: min_idle,
        ids,
        delivery_time_ms: delivery,
        retry_count: retry,
        force,
        justid,
        last_id,
    };
    Ok(Plan::op(op, move |r| match r {
        Ok(Reply::Entries(e)) if justid => {
            Frame::Array(e.iter().map(|(id, _)| id_frame(*id)).collect())
        }
        Ok(Reply::Entries(e)) => pairs_frame(proto, e),
        Ok(_) => Frame::Array(vec![]),
        Err(e) => group_error("XCLAIM", &kname, &g, e),
    }))
}

/// XAUTOCLAIM key group consumer min-idle start [COUNT n] [JUSTID]
fn xautoclaim(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let proto = ctx.conn.proto;
    let min_idle = int(&args[4])
        .map_err(|_| Frame::err("Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0) as u64;
    let start = range_start(&args[5])?;
    let (mut count, mut justid) = (100usize, false);
    let mut i = 6;
    while i < args.len() {
        match upper(&args[i]).as_str() {
            "COUNT" if i + 1 < args.len() => {
                let n = int(&args[i + 1])?;
                let max = ctx.broker.config().store.limits.read_count_max as i64;
                if n < 1 {
                    return Err(Frame::err("COUNT must be > 0"));
                }
                if n > max {
                    return Err(Frame::err(format!("COUNT must be <= {max}")));
                }
                count = n as usize;
                i += 2;
            }
            "JUSTID" => {
                justid = true;
                i += 1;
            }
            _ => return Err(syntax()),
        }
    }
    let k = key(ctx.conn.db, &args[1]);
    let (kname, g) = (args[1].clone(), args[2].clone());
    let op = Op::AutoClaim {
        stream: k,
        group: args[2].clone(),
        consumer: args[3].clone(),
        min_idle_ms: min_idle,
        start,
        count,
        justid,
    };
    Ok(Plan::op(op, move |r| match r {
        Ok(Reply::AutoClaimed {
            next,
            claimed,
            deleted,
        }) => {
            let claimed = if justid {
                Frame::Array(claimed.iter().map(|(id, _)| id_frame(*id)).collect())
            } else {
                pairs_frame(proto, claimed)
            };
            Frame::Array(vec![
                id_frame(next),
                claimed,
                Frame::Array(deleted.into_iter().map(id_frame).collect()),
            ])
        }
        Ok(_) => Frame::Array(vec![]),
        Err(e) => group_error("XAUTOCLAIM", &kname, &g, e),
    }))
}
