//! Extension commands for what Redis lacks: CX.PUBLISH, CX.POLICY, CX.NACK, CX.DLQ, CX.CLOCK.

use cortex_storage::{
    DeadReason, DeliveryPolicy, DlqFilter, IdSpec, Lane, Meta, Op, Reply, DEFAULT_DLQ,
};

use super::args::*;
use super::stream::{append_reply, entry_frame, finish_trim, parse_trim_option};
use super::Ctx;
use crate::resp::codec::Frame;

/// CX.PUBLISH key [PRIORITY lane] [TTL ms] [IDEMPOTENCY key] [PRODUCER name]
///   [HEADER name value] [MAXLEN|MINID [=|~] n [LIMIT n]] field value [field value ...]
pub async fn publish(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let op = publish_op(ctx.conn.db, args, ctx.broker.now_ms())?;
    Ok(append_reply(
        "CX.PUBLISH",
        ctx.broker.submit_one(op).await.map_err(Frame::err)?,
    ))
}

/// Parses CX.PUBLISH into its op (also used when a pipeline is batched).
pub fn publish_op(db: u16, args: &[Vec<u8>], now: u64) -> Result<Op, Frame> {
    let mut meta = Meta::default();
    let mut idem = None;
    let (mut trim, mut limit) = (None, None);
    let mut i = 2;
    // Options come first; the first word that is not an option starts the fields.
    while i + 2 < args.len() {
        match upper(&args[i]).as_str() {
            "PRIORITY" => {
                meta.lane = Lane::parse(&text(&args[i + 1])).ok_or_else(|| {
                    Frame::err("PRIORITY must be one of critical, high, normal, low, heartbeat")
                })?;
                i += 2;
            }
            "TTL" => {
                let ms = int(&args[i + 1])?;
                if ms <= 0 {
                    return Err(Frame::err("TTL must be a positive number of milliseconds"));
                }
                meta.expires_at_ms = Some(now.saturating_add(ms as u64));
                i += 2;
            }
            "IDEMPOTENCY" => {
                idem = Some(args[i + 1].clone());
                i += 2;
            }
            "PRODUCER" => {
                meta.producer = Some(args[i + 1].clone());
                i += 2;
            }
            "HEADER" if i + 3 < args.len() => {
                meta.headers
                    .push((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            }
            _ => {
                if !parse_trim_option(args, &mut i, &mut trim, &mut limit)? {
                    break;
                }
            }
        }
    }
    let trim = finish_trim(trim, limit)?;
    let fields = &args[i..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return Err(arity("cx.publish"));
    }
    Ok(Op::Append {
        stream: key(db, &args[1]),
        id: IdSpec::Auto,
        fields: fields
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect(),
        meta,
        idempotency_key: idem,
        no_mkstream: false,
        trim,
    })
}

fn policy_frame(p: &DeliveryPolicy) -> Frame {
    let b = |k: &str| Frame::bulk(k);
    Frame::Map(vec![
        (b("max-attempts"), Frame::Integer(i64::from(p.max_attempts))),
        (
            b("backoff-ms"),
            Frame::Array(
                p.backoff_ms
                    .iter()
                    .map(|v| Frame::Integer(*v as i64))
                    .collect(),
            ),
        ),
        (
            b("ack-wait-ms"),
            p.ack_wait_ms
                .map_or(Frame::Null, |v| Frame::Integer(v as i64)),
        ),
        (
            b("max-age-ms"),
            p.max_age_ms
                .map_or(Frame::Null, |v| Frame::Integer(v as i64)),
        ),
        (b("dlq"), Frame::Bulk(p.dead_letter.clone())),
    ])
}

/// CX.POLICY key group [MAXATTEMPTS n] [BACKOFF ms[,ms...]] [ACKWAIT ms|NONE] [MAXAGE ms|NONE]
///   [DLQ key] | CX.POLICY key group RESET. Without options: shows the policy (nil if none).
pub async fn policy(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    if args.len() < 3 {
        return Err(arity("cx.policy"));
    }
    let k = key(ctx.conn.db, &args[1]);
    let group = args[2].clone();
    let current = ctx
        .broker
        .store()
        .group_policy(&k, &group)
        .map_err(|e| storage_error("CX.POLICY", e))?;
    if args.len() == 3 {
        return Ok(current.as_ref().map_or(Frame::Null, policy_frame));
    }
    let new = if args.len() == 4 && upper(&args[3]) == "RESET" {
        None
    } else {
        let mut p = current.unwrap_or_default();
        let mut i = 3;
        while i < args.len() {
            let Some(v) = args.get(i + 1) else {
                return Err(syntax());
            };
            let none = upper(v) == "NONE";
            match upper(&args[i]).as_str() {
                "MAXATTEMPTS" => {
                    p.max_attempts = u32::try_from(uint(v)?)
                        .map_err(|_| Frame::err("MAXATTEMPTS is too large"))?
                }
                "BACKOFF" => {
                    p.backoff_ms = text(v)
                        .split(',')
                        .map(|s| {
                            s.trim().parse::<u64>().map_err(|_| {
                                Frame::err("BACKOFF must be a comma-separated list of milliseconds")
                            })
                        })
                        .collect::<Result<_, _>>()?;
                }
                "ACKWAIT" => p.ack_wait_ms = if none { None } else { Some(uint(v)?) },
                "MAXAGE" => p.max_age_ms = if none { None } else { Some(uint(v)?) },
                "DLQ" => p.dead_letter = v.clone(),
                _ => return Err(syntax()),
            }
            i += 2;
        }
        Some(p)
    };
    match ctx
        .broker
        .submit_one(Op::SetPolicy {
            stream: k,
            group,
            policy: new,
        })
        .await
        .map_err(Frame::err)?
    {
        Ok(_) => Ok(Frame::ok()),
        Err(e) => Err(storage_error("CX.POLICY", e)),
    }
}

/// CX.NACK key group id [id ...] [ERROR text] [REJECT]
pub async fn nack(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let mut ids = Vec::new();
    let (mut error, mut reject) = (None, false);
    let mut i = 3;
    while i < args.len() {
        match upper(&args[i]).as_str() {
            "ERROR" if i + 1 < args.len() => {
                error = Some(args[i + 1].clone());
                i += 2;
            }
            "REJECT" => {
                reject = true;
                i += 1;
            }
            _ => {
                ids.push(id(&args[i])?);
                i += 1;
            }
        }
    }
    if ids.is_empty() {
        return Err(arity("cx.nack"));
    }
    let op = Op::Nack {
        stream: key(ctx.conn.db, &args[1]),
        group: args[2].clone(),
        ids,
        error,
        reject,
    };
    match ctx.broker.submit_one(op).await.map_err(Frame::err)? {
        Ok(Reply::Count(n)) => Ok(Frame::Integer(n as i64)),
        Ok(_) => Ok(Frame::Integer(0)),
        Err(e) => Err(storage_error("CX.NACK", e)),
    }
}

/// CX.DLQ LIST|REDRIVE|PURGE [FROM dlq] [ID id] [STREAM s] [GROUP g] [REASON r] [COUNT n]
pub async fn dlq(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let sub = upper(&args[1]);
    let mut from = DEFAULT_DLQ.to_vec();
    let mut filter = DlqFilter::default();
    let mut count = if sub == "LIST" { 100 } else { usize::MAX };
    let mut i = 2;
    while i < args.len() {
        let Some(v) = args.get(i + 1) else {
            return Err(syntax());
        };
        match upper(&args[i]).as_str() {
            "FROM" => from = v.clone(),
            "ID" => filter.id = Some(id(v)?),
            "STREAM" => filter.origin_stream = Some(v.clone()),
            "GROUP" => filter.group = Some(v.clone()),
            "REASON" => {
                filter.reason = Some(DeadReason::parse(&text(v)).ok_or_else(|| {
                    Frame::err("REASON must be one of max_attempts, expired, stale, rejected")
                })?)
            }
            "COUNT" => count = usize::try_from(uint(v)?).unwrap_or(usize::MAX).max(1),
            _ => return Err(syntax()),
        }
        i += 2;
    }
    let dlq = key(ctx.conn.db, &from);
    match sub.as_str() {
        "LIST" => {
            let list = ctx
                .broker
                .store()
                .dlq_list(&dlq, &filter, count.min(10_000))
                .map_err(|e| storage_error("CX.DLQ", e))?;
            Ok(Frame::Array(
                list.iter()
                    .map(|(e, _)| entry_frame(e.id, Some(&e.record)))
                    .collect(),
            ))
        }
        "REDRIVE" | "PURGE" => {
            let limit = count.min(100_000);
            let op = if sub == "REDRIVE" {
                Op::DlqRedrive { dlq, filter, limit }
            } else {
                Op::DlqPurge { dlq, filter, limit }
            };
            match ctx.broker.submit_one(op).await.map_err(Frame::err)? {
                Ok(Reply::Count(n)) => Ok(Frame::Integer(n as i64)),
                Ok(_) => Ok(Frame::Integer(0)),
                Err(e) => Err(storage_error("CX.DLQ", e)),
            }
        }
        _ => Err(Frame::err(format!(
            "unknown subcommand '{}'. Try LIST, REDRIVE or PURGE.",
            text(&args[1])
        ))),
    }
}

/// CX.CLOCK [ADVANCE ms]
pub fn clock(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    match args.len() {
        1 => Ok(Frame::Integer(ctx.broker.now_ms() as i64)),
        3 if upper(&args[1]) == "ADVANCE" => {
            if !ctx.broker.config().test_clock {
                return Err(Frame::err(
                    "CX.CLOCK ADVANCE needs a server started with --test-clock",
                ));
            }
            let ms = int(&args[2])?;
            if ms < 0 {
                return Err(Frame::err("the clock only moves forward"));
            }
            ctx.broker.clock().advance(ms);
            ctx.broker.wake_timer();
            Ok(Frame::Integer(ctx.broker.now_ms() as i64))
        }
        _ => Err(syntax()),
    }
}
