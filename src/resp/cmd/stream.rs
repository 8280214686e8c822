//! Stream commands: XADD, XTRIM, XDEL, XLEN, XRANGE, XREVRANGE, XREAD, XREADGROUP, XACK,
//! XPENDING, XCLAIM, XAUTOCLAIM, XGROUP, XINFO, XSETID. Each parses Redis's syntax, asks the
//! broker, and formats Redis's reply.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use cortex_storage::{
    Entry, GroupStart, IdSpec, Meta, Op, PendingQuery, ReadFrom, Record, Reply, StreamId,
    StreamKey, Trim, TrimStrategy,
};
use tokio::sync::Notify;

use super::args::*;
use super::Ctx;
use crate::resp::codec::Frame;

/// Fields of a record as a flat array.
pub fn fields_frame(r: &Record) -> Frame {
    let mut v = Vec::with_capacity(r.fields.len() * 2);
    for (f, val) in &r.fields {
        v.push(Frame::Bulk(f.clone()));
        v.push(Frame::Bulk(val.clone()));
    }
    Frame::Array(v)
}

/// `[id, [field, value, ...]]`, or `[id, nil]` for an entry deleted while pending.
pub fn entry_frame(id: StreamId, r: Option<&Record>) -> Frame {
    Frame::Array(vec![id_frame(id), r.map_or(Frame::NullArray, fields_frame)])
}

fn entries_frame(e: &[Entry]) -> Frame {
    Frame::Array(
        e.iter()
            .map(|e| entry_frame(e.id, Some(&e.record)))
            .collect(),
    )
}

fn pairs_frame(e: &[(StreamId, Option<Record>)]) -> Frame {
    Frame::Array(
        e.iter()
            .map(|(id, r)| entry_frame(*id, r.as_ref()))
            .collect(),
    )
}

async fn one(ctx: &Ctx<'_>, op: Op) -> Result<Reply, Frame> {
    match ctx.broker.submit_one(op).await {
        Ok(r) => r.map_err(|e| storage_error(ctx.name, e)),
        Err(e) => Err(Frame::err(e)),
    }
}

/// Parses `MAXLEN|MINID [=|~] threshold [LIMIT n]` at `args[*i]`; returns false if the
/// argument there is not a trim option.
pub fn parse_trim_option(
    args: &[Vec<u8>],
    i: &mut usize,
    out: &mut Option<(bool, Trim)>,
    limit: &mut Option<u64>,
) -> Result<bool, Frame> {
    let opt = upper(&args[*i]);
    let more = args.len() - *i - 1;
    match opt.as_str() {
        "MAXLEN" | "MINID" if more >= 1 => {
            if out.is_some() {
                return Err(Frame::err(
                    "syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            let mut j = *i + 1;
            let mut approx = false;
            if args[j] == b"~" || args[j] == b"=" {
                approx = args[j] == b"~";
                j += 1;
            }
            let Some(threshold) = args.get(j) else {
                return Err(syntax());
            };
            let strategy = if opt == "MAXLEN" {
                let n = int(threshold)?;
                if n < 0 {
                    return Err(Frame::err("The MAXLEN argument must be >= 0."));
                }
                TrimStrategy::MaxLen(n as u64)
            } else {
                TrimStrategy::MinId(id(threshold)?)
            };
            *out = Some((
                approx,
                Trim {
                    strategy,
                    approx,
                    limit: None,
                },
            ));
            *i = j + 1;
            Ok(true)
        }
        "LIMIT" if more >= 1 => {
            let n = int(&args[*i + 1])?;
            if n < 0 {
                return Err(Frame::err("The LIMIT argument must be >= 0."));
            }
            *limit = Some(n as u64);
            *i += 2;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Combines a parsed trim and LIMIT, with Redis's rules.
pub fn finish_trim(t: Option<(bool, Trim)>, limit: Option<u64>) -> Result<Option<Trim>, Frame> {
    match (t, limit) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(syntax()),
        (Some((false, _)), Some(_)) => Err(Frame::err(
            "syntax error, LIMIT cannot be used without the special ~ option",
        )),
        (Some((_, mut t)), l) => {
            // LIMIT 0 means no limit, as in Redis.
            t.limit = l.filter(|n| *n > 0);
            Ok(Some(t))
        }
    }
}

/// XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT n]] *|id field value ...
pub async fn xadd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let op = xadd_op(ctx.conn.db, args)?;
    Ok(append_reply(
        "XADD",
        ctx.broker.submit_one(op).await.map_err(Frame::err)?,
    ))
}

/// Parses XADD into its op (also used when a pipeline is batched).
pub fn xadd_op(db: u16, args: &[Vec<u8>]) -> Result<Op, Frame> {
    let mut i = 2;
    let mut no_mkstream = false;
    let mut trim = None;
    let mut limit = None;
    while i < args.len() {
        if upper(&args[i]) == "NOMKSTREAM" {
            no_mkstream = true;
            i += 1;
            continue;
        }
        if parse_trim_option(args, &mut i, &mut trim, &mut limit)? {
            continue;
        }
        break;
    }
    let trim = finish_trim(trim, limit)?;
    let Some(id_arg) = args.get(i) else {
        return Err(arity("xadd"));
    };
    let fields = &args[i + 1..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return Err(arity("xadd"));
    }
    Ok(Op::Append {
        stream: key(db, &args[1]),
        id: parse_id_spec(id_arg)?,
        fields: fields
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect(),
        meta: Meta::default(),
        idempotency_key: None,
        no_mkstream,
        trim,
    })
}

/// The reply to an append: its ID, or nil with NOMKSTREAM on a missing stream.
pub fn append_reply(cmd: &str, r: cortex_storage::Result<Reply>) -> Frame {
    match r {
        Ok(Reply::Appended { id, .. }) => id_frame(id),
        Ok(_) => Frame::Null,
        Err(e) => storage_error(cmd, e),
    }
}

/// The reply to a counting op (XACK, XDEL, ...).
pub fn count_reply(cmd: &str, r: cortex_storage::Result<Reply>) -> Frame {
    match r {
        Ok(Reply::Count(n)) => Frame::Integer(n as i64),
        Ok(_) => Frame::Integer(0),
        Err(e) => storage_error(cmd, e),
    }
}

/// `*`, `ms-*` or an explicit ID.
pub fn parse_id_spec(a: &[u8]) -> Result<IdSpec, Frame> {
    if a == b"*" {
        return Ok(IdSpec::Auto);
    }
    if let Some(ms) = a.strip_suffix(b"-*") {
        let ms = std::str::from_utf8(ms)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(bad_id)?;
        return Ok(IdSpec::AutoSeq(ms));
    }
    Ok(IdSpec::Explicit(id(a)?))
}

/// XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT n]
pub async fn xtrim(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let mut i = 2;
    let mut trim = None;
    let mut limit = None;
    while i < args.len() {
        if !parse_trim_option(args, &mut i, &mut trim, &mut limit)? {
            return Err(syntax());
        }
    }
    let Some(trim) = finish_trim(trim, limit)? else {
        return Err(syntax());
    };
    match one(
        ctx,
        Op::Trim {
            stream: key(ctx.conn.db, &args[1]),
            trim,
        },
    )
    .await?
    {
        Reply::Count(n) => Ok(Frame::Integer(n as i64)),
        _ => Ok(Frame::Integer(0)),
    }
}

/// XDEL key id ...
pub async fn xdel(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let ids = args[2..]
        .iter()
        .map(|a| id(a))
        .collect::<Result<Vec<_>, _>>()?;
    match one(
        ctx,
        Op::Delete {
            stream: key(ctx.conn.db, &args[1]),
            ids,
        },
    )
    .await?
    {
        Reply::Count(n) => Ok(Frame::Integer(n as i64)),
        _ => Ok(Frame::Integer(0)),
    }
}

/// XLEN key
pub fn xlen(ctx: &Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    Ok(Frame::Integer(
        ctx.broker.store().len(&key(ctx.conn.db, &args[1])) as i64,
    ))
}

/// XRANGE key start end [COUNT n] / XREVRANGE key end start [COUNT n]
pub fn xrange(ctx: &Ctx<'_>, args: &[Vec<u8>], rev: bool) -> CmdResult {
    let (a, b) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let start = range_start(a)?;
    let end = range_end(b)?;
    let mut count = None;
    let mut i = 4;
    while i < args.len() {
        if upper(&args[i]) == "COUNT" && i + 1 < args.len() {
            count = Some(int(&args[i + 1])?.max(0) as usize);
            i += 2;
        } else {
            return Err(syntax());
        }
    }
    if count == Some(0) {
        return Ok(Frame::Array(vec![]));
    }
    let e = ctx
        .broker
        .store()
        .range(
            &key(ctx.conn.db, &args[1]),
            Bound::Included(start),
            Bound::Included(end),
            count,
            rev,
        )
        .map_err(|e| storage_error(ctx.name, e))?;
    Ok(entries_frame(&e))
}

struct ReadArgs {
    count: Option<usize>,
    block_ms: Option<u64>,
    noack: bool,
    group: Option<(Vec<u8>, Vec<u8>)>,
    keys: Vec<Vec<u8>>,
    ids: Vec<Vec<u8>>,
}

fn parse_read(args: &[Vec<u8>], group_cmd: bool) -> Result<ReadArgs, Frame> {
    let cmd = if group_cmd { "xreadgroup" } else { "xread" };
    let mut r = ReadArgs {
        count: None,
        block_ms: None,
        noack: false,
        group: None,
        keys: vec![],
        ids: vec![],
    };
    let mut i = 1;
    let mut streams_at = None;
    while i < args.len() {
        let more = args.len() - i - 1;
        match upper(&args[i]).as_str() {
            "COUNT" if more >= 1 => {
                let n = int(&args[i + 1])?;
                r.count = (n > 0).then_some(n as usize);
                i += 2;
            }
            "BLOCK" if more >= 1 => {
                let ms = int(&args[i + 1])
                    .map_err(|_| Frame::err("timeout is not an integer or out of range"))?;
                if ms < 0 {
                    return Err(Frame::err("timeout is negative"));
                }
                r.block_ms = Some(ms as u64);
                i += 2;
            }
            "GROUP" if group_cmd && more >= 2 => {
                r.group = Some((args[i + 1].clone(), args[i + 2].clone()));
                i += 3;
            }
            "NOACK" if group_cmd => {
                r.noack = true;
                i += 1;
            }
            "STREAMS" => {
                streams_at = Some(i + 1);
                break;
            }
            _ => return Err(syntax()),
        }
    }
    let Some(s) = streams_at else {
        return Err(syntax());
    };
    let rest = &args[s..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        let which = if group_cmd { ">" } else { "$" };
        return Err(Frame::err(format!(
            "Unbalanced '{cmd}' list of streams: for each stream key an ID or '{which}' must be specified."
        )));
    }
    let n = rest.len() / 2;
    r.keys = rest[..n].to_vec();
    r.ids = rest[n..].to_vec();
    if group_cmd && r.group.is_none() {
        return Err(Frame::err("Missing GROUP option for XREADGROUP"));
    }
    Ok(r)
}

fn read_reply(proto: u8, results: Vec<(Vec<u8>, Frame)>) -> Frame {
    if proto >= 3 {
        Frame::Map(
            results
                .into_iter()
                .map(|(k, v)| (Frame::Bulk(k), v))
                .collect(),
        )
    } else {
        Frame::Array(
            results
                .into_iter()
                .map(|(k, v)| Frame::Array(vec![Frame::Bulk(k), v]))
                .collect(),
        )
    }
}

/// The blocking part of XREAD/XREADGROUP: registered for wake-ups on every key before the
/// first attempt (so no append between an attempt and the wait is missed).
struct Blocker {
    notify: Arc<Notify>,
    /// `None`: do not block; `Some(None)`: block for ever; `Some(Some(t))`: until `t`.
    until: Option<Option<tokio::time::Instant>>,
}

impl Blocker {
    fn new(ctx: &Ctx<'_>, keys: &[StreamKey], block_ms: Option<u64>) -> Self {
        let until = block_ms
            .filter(|_| !ctx.in_exec)
            .map(|ms| (ms > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(ms)));
        let notify = Arc::new(Notify::new());
        if until.is_some() {
            for k in keys {
                ctx.broker.notifier().subscribe(k, &notify);
            }
        }
        Blocker { notify, until }
    }

    /// The MULTI gate for one attempt (EXEC already holds it exclusively).
    async fn gate<'a>(ctx: &'a Ctx<'_>) -> Option<tokio::sync::RwLockReadGuard<'a, ()>> {
        if ctx.in_exec {
            None
        } else {
            Some(ctx.clients.gate.read().await)
        }
    }

    /// Waits for a wake-up; false when the caller should reply nil (no blocking, timeout,
    /// shutdown).
    async fn wait(&self, ctx: &Ctx<'_>) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        let stats = ctx.broker.stats();
        stats
            .blocked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let woke = match until {
            Some(t) => tokio::time::timeout_at(t, self.notify.notified())
                .await
                .is_ok(),
            None => {
                self.notify.notified().await;
                true
            }
        };
        stats
            .blocked
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        woke && !ctx.broker.stopping()
    }
}

/// XREAD [COUNT n] [BLOCK ms] STREAMS key ... id ...
pub async fn xread(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let r = parse_read(args, false)?;
    let db = ctx.conn.db;
    let store = ctx.broker.store();
    let keys: Vec<StreamKey> = r.keys.iter().map(|k| key(db, k)).collect();
    let mut after = Vec::with_capacity(keys.len());
    for (k, a) in keys.iter().zip(&r.ids) {
        after.push(match a.as_slice() {
            b"$" => store.last_id(k).unwrap_or(StreamId::MIN),
            b">" => {
                return Err(Frame::err(
                    "The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ))
            }
            b"+" => store
                .range(k, Bound::Unbounded, Bound::Unbounded, Some(1), true)
                .map_err(|e| storage_error("XREAD", e))?
                .first()
                .and_then(|e| e.id.prev())
                .unwrap_or(StreamId::MAX),
            other => id(other)?,
        });
    }
    let blocker = Blocker::new(ctx, &keys, r.block_ms);
    loop {
        let gate = Blocker::gate(ctx).await;
        let mut results = Vec::new();
        for ((k, name), a) in keys.iter().zip(&r.keys).zip(&after) {
            let e = store
                .range(k, Bound::Excluded(*a), Bound::Unbounded, r.count, false)
                .map_err(|e| storage_error("XREAD", e))?;
            if !e.is_empty() {
                results.push((name.clone(), entries_frame(&e)));
            }
        }
        if !results.is_empty() {
            return Ok(read_reply(ctx.conn.proto, results));
        }
        drop(gate);
        if !blocker.wait(ctx).await {
            return Ok(Frame::NullArray);
        }
    }
}

/// XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS key ... id ...
pub async fn xreadgroup(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let r = parse_read(args, true)?;
    let (group, consumer) = r.group.clone().unwrap_or_default();
    let db = ctx.conn.db;
    let keys: Vec<StreamKey> = r.keys.iter().map(|k| key(db, k)).collect();
    let mut from = Vec::with_capacity(keys.len());
    for a in &r.ids {
        from.push(match a.as_slice() {
            b">" => ReadFrom::New,
            b"$" => {
                return Err(Frame::err(
                    "The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ))
            }
            other => ReadFrom::History(id(other)?),
        });
    }
    let nogroup = |k: &[u8]| {
        Frame::Error(format!(
            "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
            text(k),
            text(&group)
        ))
    };
    // A history read answers at once: BLOCK only applies to `>`.
    let history = from.iter().any(|f| matches!(f, ReadFrom::History(_)));
    let blocker = Blocker::new(ctx, &keys, r.block_ms.filter(|_| !history));
    loop {
        let gate = Blocker::gate(ctx).await;
        // Every key and group must exist before anything is read.
        for (k, name) in keys.iter().zip(&r.keys) {
            let ok = ctx.broker.store().group_policy(k, &group).is_ok();
            if !ok {
                return Err(nogroup(name));
            }
        }
        let ops: Vec<Op> = keys
            .iter()
            .zip(&from)
            .map(|(k, f)| Op::ReadGroup {
                stream: k.clone(),
                group: group.clone(),
                consumer: consumer.clone(),
                count: r.count,
                noack: r.noack,
                from: *f,
            })
            .collect();
        let replies = ctx.broker.submit(ops).await.map_err(Frame::err)?;
        let mut results = Vec::new();
        for ((reply, name), f) in replies.into_iter().zip(&r.keys).zip(&from) {
            match reply {
                Ok(Reply::Entries(e)) => {
                    if !e.is_empty() || matches!(f, ReadFrom::History(_)) {
                        results.push((name.clone(), pairs_frame(&e)));
                    }
                }
                Ok(_) => {}
                Err(
                    cortex_storage::Error::NoSuchGroup { .. }
                    | cortex_storage::Error::NoSuchStream { .. },
                ) => return Err(nogroup(name)),
                Err(e) => return Err(storage_error("XREADGROUP", e)),
            }
        }
        if !results.is_empty() {
            return Ok(read_reply(ctx.conn.proto, results));
        }
        drop(gate);
        if !blocker.wait(ctx).await {
            return Ok(Frame::NullArray);
        }
    }
}

/// XACK key group id ...
pub async fn xack(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let op = xack_op(ctx.conn.db, args)?;
    Ok(count_reply(
        "XACK",
        ctx.broker.submit_one(op).await.map_err(Frame::err)?,
    ))
}

/// Parses XACK into its op.
pub fn xack_op(db: u16, args: &[Vec<u8>]) -> Result<Op, Frame> {
    let ids = args[3..]
        .iter()
        .map(|a| id(a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Op::Ack {
        stream: key(db, &args[1]),
        group: args[2].clone(),
        ids,
    })
}

fn nogroup_plain(k: &[u8], g: &[u8]) -> Frame {
    Frame::Error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        text(k),
        text(g)
    ))
}

/// XPENDING key group [[IDLE ms] start end count [consumer]]
pub fn xpending(ctx: &Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let k = key(ctx.conn.db, &args[1]);
    let g = &args[2];
    let store = ctx.broker.store();
    if args.len() == 3 {
        let s = store
            .pending_summary(&k, g)
            .map_err(|_| nogroup_plain(&args[1], g))?;
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
                        Frame::Array(vec![Frame::Bulk(n.clone()), Frame::bulk(c.to_string())])
                    })
                    .collect(),
            )
        };
        return Ok(Frame::Array(vec![
            Frame::Integer(s.count as i64),
            lo,
            hi,
            consumers,
        ]));
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
    let start = range_start(&rest[0])?;
    let end = range_end(&rest[1])?;
    let count = int(&rest[2])?;
    let consumer = rest.get(3).cloned();
    let q = PendingQuery {
        start,
        end,
        count: count.max(0) as usize,
        consumer,
        min_idle_ms: min_idle,
    };
    let list = store
        .pending_range(&k, g, &q, ctx.broker.now_ms())
        .map_err(|_| nogroup_plain(&args[1], g))?;
    Ok(Frame::Array(
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
    ))
}

/// XCLAIM key group consumer min-idle id ... [IDLE ms] [TIME ms] [RETRYCOUNT n] [FORCE] [JUSTID] [LASTID id]
pub async fn xclaim(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
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
    if ctx.broker.store().group_policy(&k, &args[2]).is_err() {
        return Err(nogroup_plain(&args[1], &args[2]));
    }
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
    match one(ctx, op).await? {
        Reply::Entries(e) if justid => Ok(Frame::Array(
            e.iter().map(|(id, _)| id_frame(*id)).collect(),
        )),
        Reply::Entries(e) => Ok(pairs_frame(&e)),
        _ => Ok(Frame::Array(vec![])),
    }
}

/// XAUTOCLAIM key group consumer min-idle start [COUNT n] [JUSTID]
pub async fn xautoclaim(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
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
    if ctx.broker.store().group_policy(&k, &args[2]).is_err() {
        return Err(nogroup_plain(&args[1], &args[2]));
    }
    let op = Op::AutoClaim {
        stream: k,
        group: args[2].clone(),
        consumer: args[3].clone(),
        min_idle_ms: min_idle,
        start,
        count,
        justid,
    };
    match one(ctx, op).await? {
        Reply::AutoClaimed {
            next,
            claimed,
            deleted,
        } => {
            let claimed = if justid {
                Frame::Array(claimed.iter().map(|(id, _)| id_frame(*id)).collect())
            } else {
                pairs_frame(&claimed)
            };
            Ok(Frame::Array(vec![
                id_frame(next),
                claimed,
                Frame::Array(deleted.into_iter().map(id_frame).collect()),
            ]))
        }
        _ => Ok(Frame::Array(vec![])),
    }
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

/// Help lines as Redis replies them.
pub fn help(lines: &[&str]) -> Frame {
    Frame::Array(
        lines
            .iter()
            .map(|l| Frame::Simple((*l).to_string()))
            .collect(),
    )
}

fn entries_read_arg(a: &[u8]) -> Result<Option<u64>, Frame> {
    let n = int(a)?;
    if n < -1 {
        return Err(Frame::err("value for ENTRIESREAD must be positive or -1"));
    }
    Ok((n >= 0).then_some(n as u64))
}

/// XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER|HELP
pub async fn xgroup(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
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
        "HELP" => return Ok(help(XGROUP_HELP)),
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
    let store = ctx.broker.store();
    if !mkstream && !store.exists(&k) {
        return Err(Frame::err(
            "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
        ));
    }
    let no_group = store.group_policy(&k, &group).is_err();
    if no_group && matches!(sub.as_str(), "SETID" | "CREATECONSUMER" | "DELCONSUMER") {
        return Err(Frame::Error(format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            text(&group),
            text(&args[2])
        )));
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
    match sub.as_str() {
        "CREATE" => {
            let op = Op::CreateGroup {
                stream: k.clone(),
                group: group.clone(),
                start: start(&args[4])?,
                mkstream,
                entries_read,
            };
            let mut ops = vec![op];
            if let Some(p) = &ctx.broker.config().default_policy {
                ops.push(Op::SetPolicy {
                    stream: k,
                    group,
                    policy: Some(p.clone()),
                });
            }
            let mut r = ctx.broker.submit(ops).await.map_err(Frame::err)?;
            r.truncate(1);
            match r.pop() {
                Some(Ok(_)) => Ok(Frame::ok()),
                Some(Err(e)) => Err(storage_error("XGROUP", e)),
                None => Ok(Frame::ok()),
            }
        }
        "SETID" => {
            one(
                ctx,
                Op::SetGroupId {
                    stream: k,
                    group,
                    start: start(&args[4])?,
                    entries_read,
                },
            )
            .await?;
            Ok(Frame::ok())
        }
        "DESTROY" => match one(ctx, Op::DestroyGroup { stream: k, group }).await? {
            Reply::Count(n) => Ok(Frame::Integer(n as i64)),
            _ => Ok(Frame::Integer(0)),
        },
        "CREATECONSUMER" => match one(
            ctx,
            Op::CreateConsumer {
                stream: k,
                group,
                consumer: args[4].clone(),
            },
        )
        .await?
        {
            Reply::Count(n) => Ok(Frame::Integer(n as i64)),
            _ => Ok(Frame::Integer(0)),
        },
        _ => match one(
            ctx,
            Op::DeleteConsumer {
                stream: k,
                group,
                consumer: args[4].clone(),
            },
        )
        .await?
        {
            Reply::Count(n) => Ok(Frame::Integer(n as i64)),
            _ => Ok(Frame::Integer(0)),
        },
    }
}

fn kv(k: &str, v: Frame) -> (Frame, Frame) {
    (Frame::bulk(k), v)
}

fn opt_int(v: Option<u64>) -> Frame {
    v.map_or(Frame::Null, |n| Frame::Integer(n as i64))
}

/// XINFO STREAM|GROUPS|CONSUMERS|HELP
pub fn xinfo(ctx: &Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
    let sub = upper(&args[1]);
    let store = ctx.broker.store();
    let now = ctx.broker.now_ms();
    let wrong = || {
        Frame::err(format!(
            "wrong number of arguments for 'xinfo|{}' command",
            sub.to_ascii_lowercase()
        ))
    };
    let no_key = || Frame::err("no such key");
    match sub.as_str() {
        "HELP" => Ok(help(XINFO_HELP)),
        "CONSUMERS" => {
            if args.len() != 4 {
                return Err(wrong());
            }
            let k = key(ctx.conn.db, &args[2]);
            if !store.exists(&k) {
                return Err(no_key());
            }
            let list = store.consumers_info(&k, &args[3], now).map_err(|_| {
                Frame::Error(format!(
                    "NOGROUP No such consumer group '{}' for key name '{}'",
                    text(&args[3]),
                    text(&args[2])
                ))
            })?;
            Ok(Frame::Array(
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
            ))
        }
        "GROUPS" => {
            if args.len() != 3 {
                return Err(wrong());
            }
            let k = key(ctx.conn.db, &args[2]);
            let groups = store.groups_info(&k).map_err(|_| no_key())?;
            Ok(Frame::Array(
                groups
                    .into_iter()
                    .map(|g| {
                        Frame::Map(vec![
                            kv("name", Frame::Bulk(g.name)),
                            kv("consumers", Frame::Integer(g.consumers as i64)),
                            kv("pending", Frame::Integer(g.pending as i64)),
                            kv("last-delivered-id", id_frame(g.last_delivered_id)),
                            kv("entries-read", opt_int(g.entries_read)),
                            kv("lag", opt_int(g.lag)),
                        ])
                    })
                    .collect(),
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
            let info = store
                .stream_info(&k)
                .map_err(|e| storage_error("XINFO", e))?
                .ok_or_else(no_key)?;
            let nodes = info.length.div_ceil(100) as i64;
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
            if !full {
                m.push(kv("groups", Frame::Integer(info.groups as i64)));
                let ef = |e: Option<Entry>| {
                    e.map_or(Frame::Null, |e| entry_frame(e.id, Some(&e.record)))
                };
                m.push(kv("first-entry", ef(info.first_entry)));
                m.push(kv("last-entry", ef(info.last_entry)));
                return Ok(Frame::Map(m));
            }
            let entries = store
                .range(&k, Bound::Unbounded, Bound::Unbounded, Some(count), false)
                .map_err(|e| storage_error("XINFO", e))?;
            m.push(kv("entries", entries_frame(&entries)));
            let mut groups = Vec::new();
            for g in store.groups_info(&k).map_err(|_| no_key())? {
                let q = PendingQuery {
                    start: StreamId::MIN,
                    end: StreamId::MAX,
                    count,
                    consumer: None,
                    min_idle_ms: None,
                };
                let pel = store
                    .pending_range(&k, &g.name, &q, now)
                    .map_err(|e| storage_error("XINFO", e))?;
                let pending: Vec<Frame> = pel
                    .iter()
                    .map(|p| {
                        Frame::Array(vec![
                            id_frame(p.id),
                            Frame::Bulk(p.consumer.clone()),
                            Frame::Integer(now.saturating_sub(p.idle_ms) as i64),
                            Frame::Integer(p.deliveries as i64),
                        ])
                    })
                    .collect();
                let mut consumers = Vec::new();
                for c in store
                    .consumers_info(&k, &g.name, now)
                    .map_err(|e| storage_error("XINFO", e))?
                {
                    let q = PendingQuery {
                        consumer: Some(c.name.clone()),
                        ..q.clone()
                    };
                    let cp = store
                        .pending_range(&k, &g.name, &q, now)
                        .map_err(|e| storage_error("XINFO", e))?;
                    consumers.push(Frame::Map(vec![
                        kv("name", Frame::Bulk(c.name.clone())),
                        kv(
                            "seen-time",
                            Frame::Integer(now.saturating_sub(c.idle_ms) as i64),
                        ),
                        kv(
                            "active-time",
                            Frame::Integer(
                                c.inactive_ms.map_or(-1, |i| now.saturating_sub(i) as i64),
                            ),
                        ),
                        kv("pel-count", Frame::Integer(c.pending as i64)),
                        kv(
                            "pending",
                            Frame::Array(
                                cp.iter()
                                    .map(|p| {
                                        Frame::Array(vec![
                                            id_frame(p.id),
                                            Frame::Integer(now.saturating_sub(p.idle_ms) as i64),
                                            Frame::Integer(p.deliveries as i64),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ),
                    ]));
                }
                groups.push(Frame::Map(vec![
                    kv("name", Frame::Bulk(g.name.clone())),
                    kv("last-delivered-id", id_frame(g.last_delivered_id)),
                    kv("entries-read", opt_int(g.entries_read)),
                    kv("lag", opt_int(g.lag)),
                    kv("pel-count", Frame::Integer(g.pending as i64)),
                    kv("pending", Frame::Array(pending)),
                    kv("consumers", Frame::Array(consumers)),
                ]));
            }
            m.push(kv("groups", Frame::Array(groups)));
            Ok(Frame::Map(m))
        }
        _ => Err(Frame::err(format!(
            "unknown subcommand '{}'. Try XINFO HELP.",
            text(&args[1])
        ))),
    }
}

/// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id]
pub async fn xsetid(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> CmdResult {
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
    let k = key(ctx.conn.db, &args[1]);
    if !ctx.broker.store().exists(&k) {
        return Err(Frame::err("no such key"));
    }
    one(
        ctx,
        Op::SetId {
            stream: k,
            last_id: last,
            entries_added: added,
            max_deleted_id: maxdel,
        },
    )
    .await?;
    Ok(Frame::ok())
}
