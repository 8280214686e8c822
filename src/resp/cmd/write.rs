//! Stream writes: XADD, XTRIM, XDEL, XSETID, XACK, Redis 8.2's XDELEX and XACKDEL, 8.6's
//! XCFGSET and 8.8's XNACK.
//! Each parses Redis's syntax into one op and formats Redis's reply.

use cortex_storage::{Error, Meta, NackMode, Op, RefPolicy, Reply, StreamKey};

use super::args::*;
use super::reply::{append_reply, count_reply, ok_reply};
use super::{Ctx, Plan};
use crate::resp::codec::Frame;

/// XADD, planned from its arguments by value (see [`xadd_op`]).
pub fn xadd(db: u16, args: Vec<Vec<u8>>) -> Result<Plan, Frame> {
    Ok(Plan::op(xadd_op(db, args)?, |r| append_reply("XADD", r)))
}

/// The other stream writes (XADD is [`xadd`]).
pub fn plan(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let db = ctx.conn.db;
    match ctx.name {
        "XTRIM" => xtrim(db, args),
        "XDEL" => {
            let ids = ids(&args[2..])?;
            Ok(Plan::op(
                Op::Delete {
                    stream: key(db, &args[1]),
                    ids,
                },
                |r| count_reply("XDEL", r),
            ))
        }
        "XSETID" => xsetid(db, args),
        "XDELEX" => delete_ex(db, args, false),
        "XACKDEL" => delete_ex(db, args, true),
        "XNACK" => xnack(db, args),
        "XCFGSET" => xcfgset(db, args),
        _ => Ok(Plan::op(xack_op(db, args)?, |r| count_reply("XACK", r))),
    }
}

/// XNACK key group SILENT|FAIL|FATAL IDS numids id ... [RETRYCOUNT count] [FORCE]: gives
/// pending entries back, mapped onto the group's delivery policy (see [`NackMode`]); with
/// FORCE, an entry of the stream not pending in the group is made pending first, owned by
/// no consumer ([`Op::NackForce`]).
fn xnack(db: u16, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let mode = match upper(&args[3]).as_str() {
        "SILENT" => NackMode::Silent,
        "FAIL" => NackMode::Fail,
        "FATAL" => NackMode::Fatal,
        _ => return Err(Frame::err("mode must be one of SILENT, FAIL or FATAL")),
    };
    let mut ids = None;
    let mut retry_count = None;
    let mut force = false;
    let mut i = 4;
    while i < args.len() {
        match upper(&args[i]).as_str() {
            "IDS" if ids.is_none() => {
                let (list, next) = ids_block(args, i)?;
                ids = Some(list);
                i = next;
            }
            "RETRYCOUNT" if retry_count.is_none() => {
                let n = int(args.get(i + 1).ok_or_else(syntax)?)?;
                retry_count = Some(
                    u64::try_from(n)
                        .map_err(|_| Frame::err("RETRYCOUNT must be a non-negative integer"))?,
                );
                i += 2;
            }
            "FORCE" if !force => {
                force = true;
                i += 1;
            }
            _ => return Err(syntax()),
        }
    }
    let (stream, group, ids) = (key(db, &args[1]), args[2].clone(), ids.ok_or_else(syntax)?);
    let op = if force {
        Op::NackForce {
            stream,
            group,
            ids,
            mode,
            retry_count,
        }
    } else {
        Op::NackMode {
            stream,
            group,
            ids,
            mode,
            retry_count,
        }
    };
    Ok(Plan::op(op, |r| count_reply("XNACK", r)))
}

/// XCFGSET key [IDMP-DURATION seconds] [IDMP-MAXSIZE n] (Redis 8.6): the stream's
/// idempotent-production settings ([`Op::ConfigureIdmp`]; the store checks the ranges).
fn xcfgset(db: u16, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let mut duration_s = None;
    let mut maxsize = None;
    let mut i = 2;
    while i < args.len() {
        let slot = match upper(&args[i]).as_str() {
            "IDMP-DURATION" if duration_s.is_none() => &mut duration_s,
            "IDMP-MAXSIZE" if maxsize.is_none() => &mut maxsize,
            _ => return Err(syntax()),
        };
        let n = int(args.get(i + 1).ok_or_else(syntax)?)?;
        *slot = Some(u64::try_from(n).unwrap_or(0));
        i += 2;
    }
    if duration_s.is_none() && maxsize.is_none() {
        return Err(syntax());
    }
    let op = Op::ConfigureIdmp {
        stream: key(db, &args[1]),
        duration_s,
        maxsize,
    };
    Ok(Plan::op(op, |r| match r {
        Err(Error::NoSuchStream { .. }) => Frame::err("no such key"),
        r => ok_reply("XCFGSET", r),
    }))
}

/// `IDS numids id ...` at `args[i]`: the IDs and the index after them.
fn ids_block(args: &[Vec<u8>], i: usize) -> Result<(Vec<cortex_storage::StreamId>, usize), Frame> {
    let n = args.get(i + 1).ok_or_else(syntax)?;
    let n = int(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Frame::err("Number of IDs must be a positive integer"))?
        as usize;
    let list = args
        .get(i + 2..i + 2 + n)
        .ok_or_else(|| Frame::err("The `numids` parameter must match the number of arguments"))?;
    Ok((self::ids(list)?, i + 2 + n))
}

/// XDELEX key [KEEPREF | DELREF | ACKED] IDS numids id ... and XACKDEL key group [...]:
/// the policy and the IDS block in either order; one reply code per ID.
fn delete_ex(db: u16, args: &[Vec<u8>], with_group: bool) -> Result<Plan, Frame> {
    let name = if with_group { "XACKDEL" } else { "XDELEX" };
    let first = if with_group { 3 } else { 2 };
    let mut refs = None;
    let mut ids = None;
    let mut i = first;
    while i < args.len() {
        match upper(&args[i]).as_str() {
            p @ ("KEEPREF" | "DELREF" | "ACKED") if refs.is_none() => {
                refs = Some(match p {
                    "KEEPREF" => RefPolicy::KeepRef,
                    "DELREF" => RefPolicy::DelRef,
                    _ => RefPolicy::Acked,
                });
                i += 1;
            }
            "IDS" if ids.is_none() => {
                let (list, next) = ids_block(args, i)?;
                ids = Some(list);
                i = next;
            }
            _ => return Err(syntax()),
        }
    }
    let ids = ids.ok_or_else(syntax)?;
    let op = Op::DeleteEx {
        stream: key(db, &args[1]),
        ack: with_group.then(|| args[2].clone()),
        ids,
        refs: refs.unwrap_or_default(),
    };
    Ok(Plan::op(op, move |r| match r {
        Ok(Reply::Deletions { each, .. }) => {
            Frame::Array(each.iter().map(|d| Frame::Integer(d.code())).collect())
        }
        Ok(_) => Frame::Array(Vec::new()),
        Err(e) => storage_error(name, e),
    }))
}

fn ids(a: &[Vec<u8>]) -> Result<Vec<cortex_storage::StreamId>, Frame> {
    a.iter().map(|a| id(a)).collect()
}

/// XADD key [NOMKSTREAM] [KEEPREF|DELREF|ACKED] [IDMPAUTO producer | IDMP producer iid]
/// [MAXLEN|MINID [=|~] threshold [LIMIT n]] *|id field value ...
/// The key and the fields move out of `args` into the op.
pub fn xadd_op(db: u16, mut args: Vec<Vec<u8>>) -> Result<Op, Frame> {
    let mut i = 2;
    let mut no_mkstream = false;
    let mut trim = TrimArgs::with_refs();
    // (producer, idempotent ID; None: from the content).
    let mut idmp: Option<(Vec<u8>, Option<Vec<u8>>)> = None;
    while i < args.len() {
        // The ID (`*` or digits) ends the options, none of which starts so; most XADDs
        // have no options, and this skips upper-casing the ID twice.
        if matches!(args[i].first(), Some(b'*' | b'0'..=b'9')) {
            break;
        }
        match upper(&args[i]).as_str() {
            "NOMKSTREAM" => {
                no_mkstream = true;
                i += 1;
                continue;
            }
            "IDMPAUTO" if idmp.is_none() => {
                let producer = args.get(i + 1).ok_or_else(syntax)?;
                idmp = Some((producer.clone(), None));
                i += 2;
                continue;
            }
            "IDMP" if idmp.is_none() => {
                let (Some(producer), Some(iid)) = (args.get(i + 1), args.get(i + 2)) else {
                    return Err(syntax());
                };
                idmp = Some((producer.clone(), Some(iid.clone())));
                i += 3;
                continue;
            }
            _ => {}
        }
        if trim.parse(&args, &mut i)? {
            continue;
        }
        break;
    }
    let trim = trim.finish()?;
    let Some(id_arg) = args.get(i) else {
        return Err(arity("xadd"));
    };
    let fields = &args[i + 1..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return Err(arity("xadd"));
    }
    if idmp.is_some() && id_arg.as_slice() != b"*" {
        return Err(Frame::err(
            "IDMP and IDMPAUTO can only be used with the * ID",
        ));
    }
    let id = parse_id_spec(id_arg)?;
    let mut taken = args.drain(i + 1..);
    let mut fields = Vec::with_capacity(taken.len() / 2);
    while let (Some(f), Some(v)) = (taken.next(), taken.next()) {
        fields.push((f, v));
    }
    drop(taken);
    let idempotency_key = idmp.map(|(producer, iid)| {
        crate::broker::publish::idmp_key(&producer, iid.as_deref(), &fields)
    });
    Ok(Op::Append {
        stream: StreamKey::new(db, std::mem::take(&mut args[1])),
        id,
        fields,
        meta: Meta::default(),
        idempotency_key,
        no_mkstream,
        trim,
    })
}

/// XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT n] [KEEPREF|DELREF|ACKED]
fn xtrim(db: u16, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let mut i = 2;
    let mut trim = TrimArgs::with_refs();
    while i < args.len() {
        if !trim.parse(args, &mut i)? {
            return Err(syntax());
        }
    }
    let Some(trim) = trim.finish()? else {
        return Err(Frame::err(
            "syntax error, XTRIM must be called with a trimming strategy",
        ));
    };
    Ok(Plan::op(
        Op::Trim {
            stream: key(db, &args[1]),
            trim,
        },
        |r| count_reply("XTRIM", r),
    ))
}

/// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id]
fn xsetid(db: u16, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let last = id(&args[2])?;
    let (mut added, mut maxdel) = (None, None);
    let mut i = 3;
    while i < args.len() {
        match upper(&args[i]).as_str() {
            "ENTRIESADDED" if i + 1 < args.len() => {
                let n = int(&args[i + 1])?;
                if n < 0 {
                    return Err(Frame::err("entries_added must be positive"));
                }
                added = Some(n as u64);
                i += 2;
            }
            "MAXDELETEDID" if i + 1 < args.len() => {
                maxdel = Some(id(&args[i + 1])?);
                i += 2;
            }
            _ => return Err(syntax()),
        }
    }
    Ok(Plan::op(
        Op::SetId {
            stream: key(db, &args[1]),
            last_id: last,
            entries_added: added,
            max_deleted_id: maxdel,
        },
        |r| match r {
            Ok(_) => Frame::ok(),
            Err(Error::NoSuchStream { .. }) => Frame::err("no such key"),
            Err(e) => storage_error("XSETID", e),
        },
    ))
}

/// XACK key group id ...
pub fn xack_op(db: u16, args: &[Vec<u8>]) -> Result<Op, Frame> {
    Ok(Op::Ack {
        stream: key(db, &args[1]),
        group: args[2].clone(),
        ids: ids(&args[3..])?,
    })
}
