//! Extension commands for what Redis lacks: CX.PUBLISH, CX.POLICY, CX.NACK, CX.DLQ, CX.CLOCK,
//! and CX.FAULT (tests only).

use cortex_storage::{
    Answer, DeadReason, DeliveryPolicy, DlqFilter, IdSpec, Lane, Meta, Op, PolicyPatch, Query,
    DEFAULT_DLQ, DELAY_HEADER, DELIVER_AT_HEADER,
};

use super::args::*;
use super::reply::{append_reply, count_reply, entry_frame, help, ok_reply};
use super::{Ctx, Plan};
use crate::resp::codec::Frame;

const PUBLISH_HELP: &[&str] = &[
    "CX.PUBLISH <key> [PRIORITY <lane>] [TTL <ms>] [IDEMPOTENCY <key>] [PRODUCER <name>]",
    "    [DELAY <ms> | AT <unix-ms>] [HEADER <name> <value>]",
    "    [MAXLEN|MINID [=|~] <threshold> [LIMIT <count>]] <field> <value> ...",
    "    Appends an entry and returns its ID. <lane> is one of critical, high, normal, low,",
    "    heartbeat. A repeated IDEMPOTENCY key within the window returns the first ID.",
    "    DELAY or AT: stored now, handed to groups from that time on (TTL counts from then).",
    "HELP",
    "    Print this help.",
];
const POLICY_HELP: &[&str] = &[
    "CX.POLICY <key> <group>",
    "    Show the group's delivery policy (nil when it has none).",
    "CX.POLICY <key> <group> [MAXATTEMPTS <n>] [BACKOFF <ms>[,<ms>...]] [ACKWAIT <ms>|NONE]",
    "    [MAXAGE <ms>|NONE] [DLQ <key>]",
    "    Change the fields named, keeping the others.",
    "CX.POLICY <key> <group> RESET",
    "    Return the group to plain Redis semantics.",
    "HELP",
    "    Print this help.",
];
const NACK_HELP: &[&str] = &[
    "CX.NACK <key> <group> <id> [<id> ...] [ERROR <text>] [REJECT]",
    "    Report failed processing: retry after the backoff, or dead-letter when attempts",
    "    run out. REJECT dead-letters at once.",
    "HELP",
    "    Print this help.",
];
const DLQ_HELP: &[&str] = &[
    "CX.DLQ <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LIST [FROM <dlq>] [ID <id>] [STREAM <key>] [GROUP <group>] [REASON <reason>] [COUNT <n>]",
    "    Show dead letters with their origin, reason, error and attempts.",
    "REDRIVE [same filters]",
    "    Put dead letters back on their origin streams.",
    "PURGE [same filters]",
    "    Delete dead letters.",
    "HELP",
    "    Print this help.",
];
const CLOCK_HELP: &[&str] = &[
    "CX.CLOCK",
    "    Show the broker's clock (Unix ms).",
    "CX.CLOCK ADVANCE <ms>",
    "    Move the clock forward (test mode only).",
    "CX.CLOCK STEP <ms>",
    "    Step the system clock as the broker sees it, back when negative (test mode only);",
    "    broker time follows a step forward and absorbs a step back.",
    "HELP",
    "    Print this help.",
];

const FAULT_HELP: &[&str] = &[
    "CX.FAULT COMMIT <n>",
    "    Make the store's next n commits fail as an I/O error would (test mode only).",
    "CX.FAULT SYNC <n>",
    "    Make the journal's next n syncs fail as a failed fdatasync would (test mode only).",
    "HELP",
    "    Print this help.",
];

pub fn plan(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    if args.len() == 2 && args[1].eq_ignore_ascii_case(b"HELP") {
        return Ok(Plan::Done(help(match ctx.name {
            "CX.PUBLISH" => PUBLISH_HELP,
            "CX.POLICY" => POLICY_HELP,
            "CX.NACK" => NACK_HELP,
            "CX.DLQ" => DLQ_HELP,
            "CX.FAULT" => FAULT_HELP,
            _ => CLOCK_HELP,
        })));
    }
    match ctx.name {
        "CX.PUBLISH" => Ok(Plan::op(
            publish_op(ctx.conn.db, args, ctx.broker.now_ms())?,
            |r| append_reply("CX.PUBLISH", r),
        )),
        "CX.POLICY" => policy(ctx, args),
        "CX.NACK" => nack(ctx, args),
        "CX.DLQ" => dlq(ctx, args),
        "CX.FAULT" => fault(ctx, args),
        _ => clock(ctx, args),
    }
}

/// Parses CX.PUBLISH into its op (also used when a pipeline is batched).
pub fn publish_op(db: u16, args: &[Vec<u8>], now: u64) -> Result<Op, Frame> {
    let mut meta = Meta::default();
    let mut idem = None;
    let mut trim = TrimArgs::default();
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
            "DELAY" | "AT" => {
                let name = upper(&args[i]);
                let ms = int(&args[i + 1])
                    .ok()
                    .filter(|&ms| ms >= 0)
                    .ok_or_else(|| {
                        Frame::err(format!(
                            "{name} must be a whole number of milliseconds (AT: Unix ms)"
                        ))
                    })?;
                let header = match name.as_str() {
                    "DELAY" => DELAY_HEADER,
                    _ => DELIVER_AT_HEADER,
                };
                meta.headers
                    .push((header.to_vec(), ms.to_string().into_bytes()));
                i += 2;
            }
            "HEADER" if i + 3 < args.len() => {
                meta.headers
                    .push((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            }
            _ => {
                if !trim.parse(args, &mut i)? {
                    break;
                }
            }
        }
    }
    let trim = trim.finish()?;
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
/// Options change only the fields named, atomically in the writer (a patch), so two
/// concurrent calls never lose each other's change.
fn policy(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    if args.len() < 3 {
        return Err(arity("cx.policy"));
    }
    let k = key(ctx.conn.db, &args[1]);
    let group = args[2].clone();
    if args.len() == 3 {
        return Ok(Plan::query(
            Query::Policy { stream: k, group },
            |r| match r {
                Ok(Answer::Policy(p)) => p.as_ref().map_or(Frame::Null, policy_frame),
                Ok(_) => Frame::Null,
                Err(e) => storage_error("CX.POLICY", e),
            },
        ));
    }
    if args.len() == 4 && upper(&args[3]) == "RESET" {
        return Ok(Plan::op(
            Op::SetPolicy {
                stream: k,
                group,
                policy: None,
            },
            |r| ok_reply("CX.POLICY", r),
        ));
    }
    let mut p = PolicyPatch::default();
    let mut i = 3;
    while i < args.len() {
        let Some(v) = args.get(i + 1) else {
            return Err(syntax());
        };
        let none = upper(v) == "NONE";
        match upper(&args[i]).as_str() {
            "MAXATTEMPTS" => {
                p.max_attempts = Some(
                    u32::try_from(uint(v)?).map_err(|_| Frame::err("MAXATTEMPTS is too large"))?,
                )
            }
            "BACKOFF" => {
                let steps: Vec<u64> = text(v)
                    .split(',')
                    .map(|s| {
                        s.trim().parse::<u64>().map_err(|_| {
                            Frame::err("BACKOFF must be a comma-separated list of milliseconds")
                        })
                    })
                    .collect::<Result<_, _>>()?;
                if steps.len() > DeliveryPolicy::BACKOFF_STEPS_MAX {
                    return Err(Frame::err(format!(
                        "BACKOFF has at most {} steps",
                        DeliveryPolicy::BACKOFF_STEPS_MAX
                    )));
                }
                p.backoff_ms = Some(steps);
            }
            "ACKWAIT" => p.ack_wait_ms = Some(if none { None } else { Some(uint(v)?) }),
            "MAXAGE" => p.max_age_ms = Some(if none { None } else { Some(uint(v)?) }),
            "DLQ" => p.dead_letter = Some(v.clone()),
            _ => return Err(syntax()),
        }
        i += 2;
    }
    Ok(Plan::op(
        Op::PatchPolicy {
            stream: k,
            group,
            patch: p,
        },
        |r| ok_reply("CX.POLICY", r),
    ))
}

/// CX.NACK key group id [id ...] [ERROR text] [REJECT]
fn nack(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
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
    Ok(Plan::op(
        Op::Nack {
            stream: key(ctx.conn.db, &args[1]),
            group: args[2].clone(),
            ids,
            error,
            reject,
        },
        |r| count_reply("CX.NACK", r),
    ))
}

/// CX.DLQ LIST|REDRIVE|PURGE [FROM dlq] [ID id] [STREAM s] [GROUP g] [REASON r] [COUNT n].
/// LIST returns at most `dlq_list_max` entries; REDRIVE and PURGE move at most
/// `dlq_batch_max` (storage limits, reported with the storage's error when crossed).
fn dlq(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let sub = upper(&args[1]);
    let limits = &ctx.broker.config().store.limits;
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
                    Frame::err(
                        "REASON must be one of max_attempts, expired, stale, rejected, canceled",
                    )
                })?)
            }
            "COUNT" => count = usize::try_from(uint(v)?).unwrap_or(usize::MAX).max(1),
            _ => return Err(syntax()),
        }
        i += 2;
    }
    let dlq = key(ctx.conn.db, &from);
    match sub.as_str() {
        "LIST" => Ok(Plan::query(
            Query::DeadLetters {
                dlq,
                filter,
                count: count.min(limits.dlq_list_max),
            },
            |r| match r {
                Ok(Answer::DeadLetters(list)) => Frame::Array(
                    list.into_iter()
                        .map(|(e, _)| entry_frame(e.id, Some(e.record)))
                        .collect(),
                ),
                Ok(_) => Frame::Array(vec![]),
                Err(e) => storage_error("CX.DLQ", e),
            },
        )),
        "REDRIVE" | "PURGE" => {
            let limit = count.min(limits.dlq_batch_max);
            let op = if sub == "REDRIVE" {
                Op::DlqRedrive { dlq, filter, limit }
            } else {
                Op::DlqPurge { dlq, filter, limit }
            };
            Ok(Plan::op(op, |r| count_reply("CX.DLQ", r)))
        }
        _ => Err(Frame::err(format!(
            "unknown subcommand '{}'. Try LIST, REDRIVE or PURGE.",
            text(&args[1])
        ))),
    }
}

/// CX.FAULT COMMIT n: the store's next `n` commits fail as an I/O error would; CX.FAULT
/// SYNC n: the journal's next `n` syncs fail.
fn fault(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    if args.len() != 3 {
        return Err(syntax());
    }
    let fault = match upper(&args[1]).as_str() {
        "COMMIT" => crate::broker::Fault::Commit,
        "SYNC" => crate::broker::Fault::Sync,
        _ => return Err(syntax()),
    };
    let n = int(&args[2])?;
    if n < 0 {
        return Err(Frame::err("the count is negative"));
    }
    ctx.broker
        .inject_failures(fault, n as u64)
        .map_err(Frame::err)?;
    Ok(Plan::Done(Frame::Simple("OK".into())))
}

/// CX.CLOCK [ADVANCE ms | STEP ms]
fn clock(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    match args.len() {
        1 => Ok(Plan::Done(Frame::Integer(ctx.broker.now_ms() as i64))),
        3 if matches!(upper(&args[1]).as_str(), "ADVANCE" | "STEP") => {
            let ms = int(&args[2])?;
            if ms < 0 && upper(&args[1]) == "ADVANCE" {
                return Err(Frame::err(
                    "ADVANCE only moves the clock forward (STEP steps it either way)",
                ));
            }
            // The tick runs in this command's own commit, so when the reply arrives every
            // deadline the move passed has been acted on (tests wait on this, not on time).
            let now = ctx.broker.step_clock(ms).map_err(Frame::err)?;
            Ok(Plan::op(Op::Tick, move |r| match r {
                Ok(_) => Frame::Integer(now as i64),
                Err(e) => Frame::err(e),
            }))
        }
        _ => Err(syntax()),
    }
}
