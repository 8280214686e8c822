//! Redis 8.6's idempotent production (`XADD ... IDMP producer iid`, `IDMPAUTO`) and its
//! per-stream settings (`XCFGSET key IDMP-DURATION s IDMP-MAXSIZE n`).
//!
//! An IDMP key reaches the store as an ordinary idempotency key in a reserved space
//! ([`idmp_key`]: a zero byte, `IDMP`, the producer's length and the producer, then the
//! idempotent ID); the store keeps it apart from the other idempotency keys:
//!
//! - each stream has its own window (`IDMP-DURATION`, else the store's
//!   `idempotency_window_ms`) and keeps at most `IDMP-MAXSIZE` IDs per producer (else
//!   `Limits::idmp_maxsize`), the oldest evicted first;
//! - XCFGSET that changes either setting forgets every producer's IDs at once, by starting a
//!   new generation: the old generation's keys are unreachable and leave with their expiry;
//! - XINFO STREAM reports the settings and the counters Redis does, on a stream that uses
//!   IDMP (Redis 8.6 shows them on every stream; a client of 7.4, the version the RESP port
//!   reports, may refuse fields it does not know, as go-redis up to 9.17 does).
//!
//! Its keys, all in `idem` after the stream's ID (the space `\0IDM` is reserved: any other
//! idempotency key starting so is refused):
//!
//! | key                                             | value                              |
//! |-------------------------------------------------|------------------------------------|
//! | `\0IDMS`                                        | [`IdmpStream`]: settings, counters |
//! | `\0IDMR` · gen u64 · len u32 · producer         | [`IdmpProducer`]: IDs kept, next seq |
//! | `\0IDMO` · gen · len · producer · seq u64       | the ID (oldest first, for eviction)|
//! | `\0IDMK` · gen · len · producer · iid           | [`IdmpRecord`]: the entry's ID     |
//!
//! Each `\0IDMK` key has one `idem_exp` key at `expires_ms - idempotency_window_ms`, so the
//! store-wide sweep, which removes keys a window after their time, removes it when it
//! expires; its record names that time, so a stale expiry key never removes a newer record.
//! Keys written before this existed (`\0IDMP` ..., an [`crate::meta::IdempotencyRecord`])
//! are still honoured within the store's window.

use bincode::{Decode, Encode};

use crate::codec::{self, Kind};
use crate::config::StoreConfig;
use crate::error::{corrupt, Error, Result};
use crate::id::StreamId;
use crate::kernel::Txn;
use crate::keys;
use crate::keyspaces::Keyspaces;
use crate::meta::IdempotencyRecord;
use crate::overlay::View;
use crate::query::IdmpInfo;

/// The reserved space of idempotency keys.
const RESERVED: &[u8] = b"\0IDM";
/// An XADD IDMP key as an op carries it.
const TAG_OP: &[u8] = b"\0IDMP";
const TAG_STREAM: &[u8] = b"\0IDMS";
const TAG_PRODUCER: &[u8] = b"\0IDMR";
const TAG_ORDER: &[u8] = b"\0IDMO";
const TAG_KEY: &[u8] = b"\0IDMK";

/// XCFGSET's IDMP-DURATION range, seconds (redis.io).
pub const DURATION_S_RANGE: std::ops::RangeInclusive<u64> = 1..=86_400;
/// XCFGSET's IDMP-MAXSIZE range (redis.io).
pub const MAXSIZE_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;

/// The idempotency key of `XADD ... IDMP producer iid` (for IDMPAUTO the caller passes an
/// ID made from the fields).
pub fn idmp_key(producer: &[u8], iid: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(TAG_OP.len() + 4 + producer.len() + iid.len());
    k.extend_from_slice(TAG_OP);
    k.extend_from_slice(&(producer.len() as u32).to_be_bytes());
    k.extend_from_slice(producer);
    k.extend_from_slice(iid);
    k
}

/// An IDMP key's producer and ID; `Ok(None)` for any other idempotency key; an error for a
/// key in the reserved space that is not an IDMP key.
pub(crate) fn parse(key: &[u8]) -> Result<Option<(&[u8], &[u8])>> {
    if !key.starts_with(RESERVED) {
        return Ok(None);
    }
    let bad = || {
        Error::InvalidArgument(
            "idempotency keys starting with a zero byte and IDM are reserved".into(),
        )
    };
    let rest = key.strip_prefix(TAG_OP).ok_or_else(bad)?;
    let len = u32::from_be_bytes(
        rest.get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let rest = &rest[4..];
    let len = len as usize;
    if rest.len() < len {
        return Err(bad());
    }
    Ok(Some(rest.split_at(len)))
}

/// A stream's IDMP settings (`None`: the store's default) and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct IdmpStream {
    /// Generation of the producers' keys; XCFGSET that changes a setting starts the next.
    gen: u64,
    /// IDMP-DURATION, ms.
    duration_ms: Option<u64>,
    /// IDMP-MAXSIZE.
    maxsize: Option<u64>,
    /// Producers with IDs kept (this generation).
    pids: u64,
    /// IDs kept (this generation).
    iids: u64,
    /// IDMP entries ever added.
    added: u64,
    /// Duplicates ever refused.
    duplicates: u64,
}

/// One producer's IDs of one generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct IdmpProducer {
    /// IDs kept.
    tracked: u64,
    /// The next ID's position in the producer's order.
    next_seq: u64,
}

/// One kept idempotent ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct IdmpRecord {
    /// The entry it added.
    id: StreamId,
    /// A repeat before this (Unix ms) is a duplicate.
    expires_ms: u64,
    /// The time of its `idem_exp` key.
    exp_t: u64,
    /// Its position in the producer's order.
    seq: u64,
}

fn stream_key(sid: u64) -> Vec<u8> {
    keys::idempotency(sid, TAG_STREAM)
}

/// `tag` · gen · len · producer (the shared head of the per-producer keys).
fn producer_part(tag: &[u8], gen: u64, pid: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(tag.len() + 12 + pid.len() + 16);
    k.extend_from_slice(tag);
    k.extend_from_slice(&gen.to_be_bytes());
    k.extend_from_slice(&(pid.len() as u32).to_be_bytes());
    k.extend_from_slice(pid);
    k
}

fn record_part(gen: u64, pid: &[u8], iid: &[u8]) -> Vec<u8> {
    let mut k = producer_part(TAG_KEY, gen, pid);
    k.extend_from_slice(iid);
    k
}

fn order_key(sid: u64, gen: u64, pid: &[u8], seq: u64) -> Vec<u8> {
    let mut k = producer_part(TAG_ORDER, gen, pid);
    k.extend_from_slice(&seq.to_be_bytes());
    keys::idempotency(sid, &k)
}

/// A `\0IDMK` key's generation and producer.
fn split_record_part(part: &[u8]) -> Option<(u64, &[u8])> {
    let rest = part.strip_prefix(TAG_KEY)?;
    let gen = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let len = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
    Some((gen, rest.get(12..12 + len)?))
}

fn decode<T: Decode<()>>(kind: Kind, v: &[u8], what: &'static str) -> Result<T> {
    codec::decode(kind, v).map_err(|r| corrupt(what, b"", None, r))
}

/// The stream's IDMP record, if it ever used IDMP.
fn stored_stream(view: &impl View, ks: &Keyspaces, sid: u64) -> Result<Option<IdmpStream>> {
    view.get(&ks.idem, stream_key(sid))?
        .map(|v| decode(Kind::IdmpStream, &v, "IDMP stream record"))
        .transpose()
}

fn read_stream(view: &impl View, ks: &Keyspaces, sid: u64) -> Result<IdmpStream> {
    Ok(stored_stream(view, ks, sid)?.unwrap_or_default())
}

fn effective(s: &IdmpStream, cfg: &StoreConfig) -> (u64, u64) {
    (
        s.duration_ms.unwrap_or(cfg.idempotency_window_ms),
        s.maxsize.unwrap_or(cfg.limits.idmp_maxsize),
    )
}

/// XINFO STREAM's IDMP fields of stream `sid`; `None` for a stream that never used IDMP
/// (no XCFGSET, no XADD IDMP), whose reply keeps Redis 7.4's shape.
pub(crate) fn info(
    view: &impl View,
    ks: &Keyspaces,
    cfg: &StoreConfig,
    sid: u64,
) -> Result<Option<IdmpInfo>> {
    let Some(s) = stored_stream(view, ks, sid)? else {
        return Ok(None);
    };
    let (duration_ms, maxsize) = effective(&s, cfg);
    Ok(Some(IdmpInfo {
        duration_s: duration_ms.div_ceil(1000),
        maxsize,
        pids_tracked: s.pids,
        iids_tracked: s.iids,
        iids_added: s.added,
        iids_duplicates: s.duplicates,
    }))
}

/// Checks a stored value in `idem` (the offline check): what it should decode as follows
/// from its key (after the stream's ID).
pub(crate) fn check_value(part: &[u8], v: &[u8]) -> std::result::Result<(), String> {
    if part.starts_with(TAG_STREAM) {
        codec::decode::<IdmpStream>(Kind::IdmpStream, v).map(drop)
    } else if part.starts_with(TAG_PRODUCER) {
        codec::decode::<IdmpProducer>(Kind::IdmpProducer, v).map(drop)
    } else if part.starts_with(TAG_ORDER) {
        codec::decode::<Vec<u8>>(Kind::IdmpOrder, v).map(drop)
    } else if part.starts_with(TAG_KEY) {
        codec::decode::<IdmpRecord>(Kind::IdmpRecord, v).map(drop)
    } else {
        codec::decode::<IdempotencyRecord>(Kind::Idempotency, v).map(drop)
    }
}

/// What the expiry sweep does with an `idem` key it reached.
pub(crate) enum Expiry {
    /// Not an IDMP key: the caller handles it.
    Other,
    /// Handled (removed if it was the key's own expiry).
    Done,
}

impl Txn<'_> {
    /// The entry a repeat of (producer, iid) on stream `sid` must answer, if it is one; a
    /// repeat is counted (`iids-duplicates`). `op_key` is the key as the op carried it (the
    /// layout written before per-stream settings existed, still honoured).
    pub(crate) fn idmp_repeat(
        &mut self,
        sid: u64,
        pid: &[u8],
        iid: &[u8],
        op_key: &[u8],
    ) -> Result<Option<StreamId>> {
        let mut s = read_stream(&self.tx, self.ks, sid)?;
        let rk = keys::idempotency(sid, &record_part(s.gen, pid, iid));
        let mut found = None;
        if let Some(v) = self.tx.get(&self.ks.idem, &rk)? {
            let r: IdmpRecord = decode(Kind::IdmpRecord, &v, "IDMP record")?;
            if r.expires_ms > self.now {
                found = Some(r.id);
            }
        } else if s.gen == 0 {
            if let Some(v) = self.tx.get(&self.ks.idem, keys::idempotency(sid, op_key))? {
                let r: IdempotencyRecord = decode(Kind::Idempotency, &v, "idempotency record")?;
                if r.seen_ms.saturating_add(self.cfg.idempotency_window_ms) > self.now {
                    found = Some(r.id);
                }
            }
        }
        if found.is_some() {
            s.duplicates += 1;
            self.idmp_write_stream(sid, &s);
        }
        Ok(found)
    }

    /// Keeps (producer, iid) of the entry `id` just appended to stream `sid`, for the
    /// stream's duration, evicting the producer's oldest ID past the stream's maxsize.
    pub(crate) fn idmp_keep(
        &mut self,
        sid: u64,
        pid: &[u8],
        iid: &[u8],
        id: StreamId,
    ) -> Result<()> {
        let mut s = read_stream(&self.tx, self.ks, sid)?;
        let (duration_ms, maxsize) = effective(&s, self.cfg);
        let part = record_part(s.gen, pid, iid);
        let rk = keys::idempotency(sid, &part);
        // A kept ID past its time, not yet swept: forgotten first, so its order and expiry
        // keys go with it.
        if let Some(v) = self.tx.get(&self.ks.idem, &rk)? {
            let old: IdmpRecord = decode(Kind::IdmpRecord, &v, "IDMP record")?;
            self.idmp_forget(sid, &mut s, &part, old, true)?;
        }
        let pk = keys::idempotency(sid, &producer_part(TAG_PRODUCER, s.gen, pid));
        let mut p = self.idmp_producer(&pk)?;
        if p.tracked == 0 {
            s.pids += 1;
        }
        let seq = p.next_seq;
        p.next_seq += 1;
        p.tracked += 1;
        s.iids += 1;
        s.added += 1;
        let expires_ms = self.now.saturating_add(duration_ms);
        // The sweep removes an expiry key one window after its time.
        let exp_t = expires_ms.saturating_sub(self.cfg.idempotency_window_ms);
        let rec = IdmpRecord {
            id,
            expires_ms,
            exp_t,
            seq,
        };
        self.tx
            .insert(&self.ks.idem, rk, codec::encode(Kind::IdmpRecord, &rec));
        self.tx.insert(
            &self.ks.idem,
            order_key(sid, s.gen, pid, seq),
            codec::encode(Kind::IdmpOrder, &iid),
        );
        self.tx.insert(
            &self.ks.idem_exp,
            keys::idempotency_expiry(exp_t, sid, &part),
            [],
        );
        // The floor is never above a key (this one may lie before the others).
        self.sys.idem_floor_ms = if self.sys.idem_keys == 0 {
            exp_t
        } else {
            self.sys.idem_floor_ms.min(exp_t)
        };
        self.sys.idem_keys += 1;
        let evict = p.tracked > maxsize;
        self.tx
            .insert(&self.ks.idem, pk, codec::encode(Kind::IdmpProducer, &p));
        if evict {
            let oldest = self
                .tx
                .prefix(
                    &self.ks.idem,
                    keys::idempotency(sid, &producer_part(TAG_ORDER, s.gen, pid)),
                )
                .next()
                .map(|i| i.into_inner())
                .transpose()?;
            if let Some((_, v)) = oldest {
                let old_iid: Vec<u8> = decode(Kind::IdmpOrder, &v, "IDMP order record")?;
                let old_part = record_part(s.gen, pid, &old_iid);
                let ok = keys::idempotency(sid, &old_part);
                if let Some(v) = self.tx.get(&self.ks.idem, &ok)? {
                    let old: IdmpRecord = decode(Kind::IdmpRecord, &v, "IDMP record")?;
                    self.idmp_forget(sid, &mut s, &old_part, old, true)?;
                }
            }
        }
        self.idmp_write_stream(sid, &s);
        Ok(())
    }

    fn idmp_producer(&self, pk: &[u8]) -> Result<IdmpProducer> {
        match self.tx.get(&self.ks.idem, pk)? {
            Some(v) => decode(Kind::IdmpProducer, &v, "IDMP producer record"),
            None => Ok(IdmpProducer::default()),
        }
    }

    fn idmp_write_stream(&mut self, sid: u64, s: &IdmpStream) {
        self.tx.insert(
            &self.ks.idem,
            stream_key(sid),
            codec::encode(Kind::IdmpStream, s),
        );
    }

    /// Forgets one kept ID: its keys (its expiry key too, `with_expiry`, unless the sweep
    /// removes that itself), its producer's count, and the stream's figures when it is of
    /// the stream's current generation.
    fn idmp_forget(
        &mut self,
        sid: u64,
        s: &mut IdmpStream,
        part: &[u8],
        rec: IdmpRecord,
        with_expiry: bool,
    ) -> Result<()> {
        let Some((gen, pid)) = split_record_part(part) else {
            return Ok(());
        };
        let pk = keys::idempotency(sid, &producer_part(TAG_PRODUCER, gen, pid));
        let mut p = self.idmp_producer(&pk)?;
        p.tracked = p.tracked.saturating_sub(1);
        if p.tracked == 0 {
            self.tx.remove(&self.ks.idem, pk);
        } else {
            self.tx
                .insert(&self.ks.idem, pk, codec::encode(Kind::IdmpProducer, &p));
        }
        self.tx.remove(&self.ks.idem, keys::idempotency(sid, part));
        self.tx
            .remove(&self.ks.idem, order_key(sid, gen, pid, rec.seq));
        if with_expiry {
            self.tx.remove(
                &self.ks.idem_exp,
                keys::idempotency_expiry(rec.exp_t, sid, part),
            );
            self.sys.idem_keys = self.sys.idem_keys.saturating_sub(1);
        }
        if gen == s.gen {
            s.iids = s.iids.saturating_sub(1);
            if p.tracked == 0 {
                s.pids = s.pids.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// The expiry sweep reached `idem` key `part` of stream `sid` through an expiry key at
    /// time `t` (which the sweep removes itself).
    pub(crate) fn idmp_expire(&mut self, sid: u64, part: &[u8], t: u64) -> Result<Expiry> {
        if !part.starts_with(TAG_KEY) {
            return Ok(Expiry::Other);
        }
        let rk = keys::idempotency(sid, part);
        let Some(v) = self.tx.get(&self.ks.idem, &rk)? else {
            return Ok(Expiry::Done);
        };
        match codec::decode::<IdmpRecord>(Kind::IdmpRecord, &v) {
            Ok(rec) if rec.exp_t == t => {
                let mut s = read_stream(&self.tx, self.ks, sid)?;
                self.idmp_forget(sid, &mut s, part, rec, false)?;
                self.idmp_write_stream(sid, &s);
            }
            Ok(_) => {}
            // Past its time either way; what it counted cannot be told.
            Err(_) => self.tx.remove(&self.ks.idem, rk),
        }
        Ok(Expiry::Done)
    }

    /// XCFGSET: sets the stream's IDMP duration (seconds) and/or maxsize. A setting that
    /// changes forgets every producer's IDs (a new generation); setting the values it has
    /// keeps them.
    pub(crate) fn idmp_configure(
        &mut self,
        sid: u64,
        name: &[u8],
        duration_s: Option<u64>,
        maxsize: Option<u64>,
    ) -> Result<()> {
        if duration_s.is_none() && maxsize.is_none() {
            return Err(Error::InvalidArgument(
                "XCFGSET needs IDMP-DURATION or IDMP-MAXSIZE".into(),
            ));
        }
        if let Some(d) = duration_s {
            if !DURATION_S_RANGE.contains(&d) {
                return Err(Error::InvalidArgument(format!(
                    "IDMP-DURATION must be between {} and {} seconds",
                    DURATION_S_RANGE.start(),
                    DURATION_S_RANGE.end()
                )));
            }
        }
        if let Some(m) = maxsize {
            if !MAXSIZE_RANGE.contains(&m) {
                return Err(Error::InvalidArgument(format!(
                    "IDMP-MAXSIZE must be between {} and {}",
                    MAXSIZE_RANGE.start(),
                    MAXSIZE_RANGE.end()
                )));
            }
        }
        let mut s = read_stream(&self.tx, self.ks, sid).map_err(|e| match e {
            Error::Corruption {
                what, id, reason, ..
            } => corrupt(what, name, id, reason),
            e => e,
        })?;
        let before = effective(&s, self.cfg);
        if let Some(d) = duration_s {
            s.duration_ms = Some(d * 1000);
        }
        if let Some(m) = maxsize {
            s.maxsize = Some(m);
        }
        if effective(&s, self.cfg) != before {
            s.gen += 1;
            s.pids = 0;
            s.iids = 0;
        }
        self.idmp_write_stream(sid, &s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_keys_parse_back_and_the_reserved_space_is_refused() {
        let k = idmp_key(b"p1", b"x");
        assert_eq!(parse(&k).unwrap(), Some((&b"p1"[..], &b"x"[..])));
        assert_eq!(parse(b"plain").unwrap(), None);
        assert!(parse(b"\0IDMS").is_err());
        assert!(parse(b"\0IDMP\0\0\0\x09ab").is_err());
        // Producers never share keys however the bytes split.
        assert_ne!(idmp_key(b"p1", b"x"), idmp_key(b"p", b"1x"));
    }

    #[test]
    fn record_keys_split_into_generation_and_producer() {
        let part = record_part(7, b"prod", b"iid");
        assert_eq!(split_record_part(&part), Some((7, &b"prod"[..])));
        assert_eq!(split_record_part(b"\0IDMKshort"), None);
    }
}
