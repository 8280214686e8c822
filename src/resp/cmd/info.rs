//! XINFO STREAM [FULL [COUNT n]] | GROUPS | CONSUMERS | HELP: each one consistent read.

use cortex_storage::{Answer, Entry, Error, PendingInfo, Query, StreamInfo};

use super::args::*;
use super::reply::{entries_frame, entry_frame, help};
use super::{Ctx, Plan};
use crate::resp::codec::Frame;

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Print this help.",
];

fn kv(k: &str, v: Frame) -> (Frame, Frame) {
    (Frame::bulk(k), v)
}

fn opt_int(v: Option<u64>) -> Frame {
    v.map_or(Frame::Null, |n| Frame::Integer(n as i64))
}

pub fn plan(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let sub = upper(&args[1]);
    let wrong = || {
        Frame::err(format!(
            "wrong number of arguments for 'xinfo|{}' command",
            sub.to_ascii_lowercase()
        ))
    };
    let no_key = || Frame::err("no such key");
    match sub.as_str() {
        "HELP" => Ok(Plan::Done(help(XINFO_HELP))),
        "CONSUMERS" => {
            if args.len() != 4 {
                return Err(wrong());
            }
            let (kname, g) = (args[2].clone(), args[3].clone());
            Ok(Plan::query(
                Query::Consumers {
                    stream: key(ctx.conn.db, &args[2]),
                    group: args[3].clone(),
                },
                move |r| match r {
                    Ok(Answer::Consumers(list)) => Frame::Array(
                        list.into_iter()
                            .map(|c| {
                                Frame::Map(vec![
                                    kv("name", Frame::Bulk(c.name)),
                                    kv("pending", Frame::Integer(c.pending as i64)),
                                    kv("idle", Frame::Integer(c.idle_ms as i64)),
                                    kv(
                                        "inactive",
                                        Frame::Integer(c.inactive_ms.map_or(-1, |i| i as i64)),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                    Ok(_) => Frame::Array(vec![]),
                    Err(Error::NoSuchStream { .. }) => no_key(),
                    Err(Error::NoSuchGroup { .. }) => Frame::Error(format!(
                        "NOGROUP No such consumer group '{}' for key name '{}'",
                        text(&g),
                        text(&kname)
                    )),
                    Err(e) => storage_error("XINFO", e),
                },
            ))
        }
        "GROUPS" => {
            if args.len() != 3 {
                return Err(wrong());
            }
            Ok(Plan::query(
                Query::Groups {
                    stream: key(ctx.conn.db, &args[2]),
                },
                move |r| match r {
                    Ok(Answer::Groups(groups)) => Frame::Array(
                        groups
                            .into_iter()
                            .map(|g| {
                                Frame::Map(vec![
                                    kv("name", Frame::Bulk(g.name)),
                                    kv("consumers", Frame::Integer(g.consumers as i64)),
                                    kv("pending", Frame::Integer(g.pending as i64)),
                                    kv("last-delivered-id", id_frame(g.last_delivered_id)),
                                    kv("entries-read", opt_int(g.entries_read)),
                                    kv("lag", g.lag.map_or(Frame::Null, Frame::Integer)),
                                ])
                            })
                            .collect(),
                    ),
                    Ok(_) => Frame::Array(vec![]),
                    Err(Error::NoSuchStream { .. }) => no_key(),
                    Err(e) => storage_error("XINFO", e),
                },
            ))
        }
        "STREAM" => {
            if args.len() < 3 {
                return Err(wrong());
            }
            let k = key(ctx.conn.db, &args[2]);
            let mut full = false;
            let mut count = 10usize;
            let mut i = 3;
            while i < args.len() {
                match upper(&args[i]).as_str() {
                    "FULL" => {
                        full = true;
                        i += 1;
                    }
                    "COUNT" if full && i + 1 < args.len() => {
                        let n = int(&args[i + 1])?;
                        count = if n <= 0 { usize::MAX } else { n as usize };
                        i += 2;
                    }
                    _ => return Err(syntax()),
                }
            }
            if !full {
                return Ok(Plan::query(Query::Stream { stream: k }, move |r| match r {
                    Ok(Answer::Stream(Some(info))) => {
                        let mut m = stream_fields(&info);
                        m.push(kv("groups", Frame::Integer(info.groups as i64)));
                        let ef = |e: Option<Entry>| {
                            e.map_or(Frame::Null, |e| entry_frame(e.id, Some(e.record)))
                        };
                        m.push(kv("first-entry", ef(info.first_entry)));
                        m.push(kv("last-entry", ef(info.last_entry)));
                        Frame::Map(m)
                    }
                    Ok(_) => no_key(),
                    Err(e) => storage_error("XINFO", e),
                }));
            }
            Ok(Plan::query(
                Query::StreamFull { stream: k, count },
                move |r| match r {
                    Ok(Answer::StreamFull(Some(f))) => full_frame(*f),
                    Ok(_) => no_key(),
                    Err(e) => storage_error("XINFO", e),
                },
            ))
        }
        _ => Err(Frame::err(format!(
            "unknown subcommand '{}'. Try XINFO HELP.",
            text(&args[1])
        ))),
    }
}

fn stream_fields(info: &StreamInfo) -> Vec<(Frame, Frame)> {
    // Streams written before node tracking have no node count: estimated at 100 per node.
    let nodes = match info.nodes {
        0 => info.length.div_ceil(100),
        n => n,
    } as i64;
    let mut m = vec![
        kv("length", Frame::Integer(info.length as i64)),
        kv("radix-tree-keys", Frame::Integer(nodes)),
        kv("radix-tree-nodes", Frame::Integer(nodes + 1)),
        kv("last-generated-id", id_frame(info.last_generated_id)),
        kv("max-deleted-entry-id", id_frame(info.max_deleted_entry_id)),
        kv("entries-added", Frame::Integer(info.entries_added as i64)),
        kv(
            "recorded-first-entry-id",
            id_frame(info.recorded_first_entry_id),
        ),
    ];
    // Redis 8.6's fields, on a stream that uses IDMP only: the port reports 7.4, and some
    // 7.4 clients refuse fields they do not know (go-redis up to 9.17).
    if let Some(i) = &info.idmp {
        let int = |n: u64| Frame::Integer(n as i64);
        m.extend([
            kv("idmp-duration", int(i.duration_s)),
            kv("idmp-maxsize", int(i.maxsize)),
            kv("pids-tracked", int(i.pids_tracked)),
            kv("iids-tracked", int(i.iids_tracked)),
            kv("iids-added", int(i.iids_added)),
            kv("iids-duplicates", int(i.iids_duplicates)),
        ]);
    }
    m
}

/// Absolute times are `now - idle` with the query's own `now` (a second clock read here
/// could differ by a millisecond from the one the idle times came from).
fn full_frame(f: cortex_storage::StreamFull) -> Frame {
    let now = f.now_ms;
    let mut m = stream_fields(&f.info);
    m.push(kv("entries", entries_frame(f.entries)));
    let seen = |idle: u64| Frame::Integer(now.saturating_sub(idle) as i64);
    let pel = |p: &PendingInfo, owner: bool| {
        let mut v = vec![id_frame(p.id)];
        if owner {
            v.push(Frame::Bulk(p.consumer.clone()));
        }
        v.push(seen(p.idle_ms));
        v.push(Frame::Integer(p.deliveries as i64));
        Frame::Array(v)
    };
    let groups = f
        .groups
        .into_iter()
        .map(|g| {
            let consumers = g
                .consumers
                .iter()
                .map(|(c, own)| {
                    Frame::Map(vec![
                        kv("name", Frame::Bulk(c.name.clone())),
                        kv("seen-time", seen(c.idle_ms)),
                        kv(
                            "active-time",
                            Frame::Integer(
                                c.inactive_ms.map_or(-1, |i| now.saturating_sub(i) as i64),
                            ),
                        ),
                        kv("pel-count", Frame::Integer(c.pending as i64)),
                        kv(
                            "pending",
                            Frame::Array(own.iter().map(|p| pel(p, false)).collect()),
                        ),
                    ])
                })
                .collect();
            Frame::Map(vec![
                kv("name", Frame::Bulk(g.info.name.clone())),
                kv("last-delivered-id", id_frame(g.info.last_delivered_id)),
                kv("entries-read", opt_int(g.info.entries_read)),
                kv("lag", g.info.lag.map_or(Frame::Null, Frame::Integer)),
                kv("pel-count", Frame::Integer(g.info.pending as i64)),
                kv(
                    "pending",
                    Frame::Array(g.pending.iter().map(|p| pel(p, true)).collect()),
                ),
                kv("consumers", Frame::Array(consumers)),
            ])
        })
        .collect();
    m.push(kv("groups", Frame::Array(groups)));
    Frame::Map(m)
}
