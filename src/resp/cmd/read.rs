//! Stream reads: XLEN, XRANGE, XREVRANGE, XREAD (blocking in the broker).

use std::time::Duration;

use cortex_storage::{Answer, Query, ReadStart};

use super::args::*;
use super::reply::{entries_frame, streams_reply};
use super::{Ctx, Plan};
use crate::broker::Blocking;
use crate::resp::codec::Frame;

pub fn plan(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let db = ctx.conn.db;
    match ctx.name {
        "XLEN" => Ok(Plan::query(
            Query::Stream {
                stream: key(db, &args[1]),
            },
            |r| match r {
                Ok(Answer::Stream(s)) => Frame::Integer(s.map_or(0, |s| s.length as i64)),
                Ok(_) => Frame::Integer(0),
                Err(e) => storage_error("XLEN", e),
            },
        )),
        "XRANGE" => xrange(db, args, false),
        "XREVRANGE" => xrange(db, args, true),
        _ => xread(ctx, args),
    }
}

/// XRANGE key start end [COUNT n] / XREVRANGE key end start [COUNT n]
fn xrange(db: u16, args: &[Vec<u8>], rev: bool) -> Result<Plan, Frame> {
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
        return Ok(Plan::Done(Frame::Array(vec![])));
    }
    let name = if rev { "XREVRANGE" } else { "XRANGE" };
    Ok(Plan::query(
        Query::Range {
            stream: key(db, &args[1]),
            start,
            end,
            count,
            rev,
        },
        move |r| match r {
            Ok(Answer::Entries(e)) => entries_frame(e),
            Ok(_) => Frame::Array(vec![]),
            Err(e) => storage_error(name, e),
        },
    ))
}

/// The options of XREAD and XREADGROUP.
pub struct ReadArgs {
    /// COUNT.
    pub count: Option<usize>,
    /// BLOCK.
    pub block_ms: Option<u64>,
    /// NOACK.
    pub noack: bool,
    /// CLAIM min-idle-time (XREADGROUP).
    pub claim: Option<u64>,
    /// MAXCOUNT: entries over all streams.
    pub max_count: Option<usize>,
    /// MAXSIZE: a soft cap on the reply's bytes.
    pub max_bytes: Option<usize>,
    /// GROUP group consumer.
    pub group: Option<(Vec<u8>, Vec<u8>)>,
    /// Stream names.
    pub keys: Vec<Vec<u8>>,
    /// One ID per stream.
    pub ids: Vec<Vec<u8>>,
}

impl ReadArgs {
    /// BLOCK as the broker takes it (`BLOCK 0` waits for ever).
    pub fn blocking(&self) -> Blocking {
        match self.block_ms {
            None => Blocking::No,
            Some(0) => Blocking::Forever,
            Some(ms) => Blocking::For(Duration::from_millis(ms)),
        }
    }
}

/// Parses XREAD / XREADGROUP options.
pub fn parse_read(args: &[Vec<u8>], group_cmd: bool) -> Result<ReadArgs, Frame> {
    let cmd = if group_cmd { "xreadgroup" } else { "xread" };
    let mut r = ReadArgs {
        count: None,
        block_ms: None,
        noack: false,
        claim: None,
        max_count: None,
        max_bytes: None,
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
            w @ ("MAXCOUNT" | "MAXSIZE") if more >= 1 => {
                let n = int(&args[i + 1])
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Frame::err(format!("{w} must be a positive integer")))?
                    as usize;
                if w == "MAXCOUNT" {
                    r.max_count = Some(n);
                } else {
                    r.max_bytes = Some(n);
                }
                i += 2;
            }
            "CLAIM" if group_cmd && more >= 1 => {
                let ms = int(&args[i + 1])
                    .ok()
                    .filter(|ms| *ms >= 0)
                    .ok_or_else(|| Frame::err("min-idle-time must be a non-negative integer"))?;
                r.claim = Some(ms as u64);
                i += 2;
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
    if let (Some(max), Some(count)) = (r.max_count, r.count) {
        if max < count {
            return Err(Frame::err(
                "MAXCOUNT must be greater than or equal to COUNT",
            ));
        }
    }
    Ok(r)
}

/// XREAD [COUNT n] [MAXCOUNT n] [MAXSIZE bytes] [BLOCK ms] STREAMS key ... id ...
fn xread(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Plan, Frame> {
    let r = parse_read(args, false)?;
    let db = ctx.conn.db;
    let mut streams = Vec::with_capacity(r.keys.len());
    for (k, a) in r.keys.iter().zip(&r.ids) {
        let start = match a.as_slice() {
            b"$" => ReadStart::New,
            b"+" => ReadStart::LastEntry,
            b">" => {
                return Err(Frame::err(
                    "The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ))
            }
            other => ReadStart::After(id(other)?),
        };
        streams.push((key(db, k), start));
    }
    let proto = ctx.conn.proto;
    let names = r.keys.clone();
    let blocking = r.blocking();
    let (max_count, max_bytes) = (r.max_count, r.max_bytes);
    Ok(Plan::StreamRead(
        streams,
        r.count,
        blocking,
        Box::new(move |res| match super::answer(res) {
            Ok(Answer::Read(mut v)) => {
                crate::broker::cap_read(&mut v, max_count, max_bytes);
                let results: Vec<(Vec<u8>, Frame)> = names
                    .into_iter()
                    .zip(v)
                    .filter(|(_, (e, _))| !e.is_empty())
                    .map(|(n, (e, _))| (n, entries_frame(e)))
                    .collect();
                streams_reply(proto, results)
            }
            Ok(_) => Frame::NullArray,
            Err(e) => storage_error("XREAD", e),
        }),
    ))
}
