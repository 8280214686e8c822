//! Key encodings. All integers are big-endian so byte order equals numeric order, and every
//! key of a stream or group starts with its fixed-width internal ID, so a stream's entries or a
//! group's pending list are one contiguous key range.
//!
//! | keyspace    | key                                             | value            |
//! |-------------|-------------------------------------------------|------------------|
//! | `streams`   | ns u16 · name                                   | StreamMeta       |
//! | `groups`    | stream_id u64 · group name                      | GroupMeta        |
//! | `consumers` | group_id u64 · consumer name                    | ConsumerMeta     |
//! | `entries`   | stream_id u64 · ms u64 · seq u64                | Record           |
//! | `lanes`     | stream_id u64 · lane u8 · ms · seq (not normal) | empty            |
//! | `pel`       | group_id u64 · ms · seq                         | PendingEntry     |
//! | `cpel`      | no longer written; emptied at open (see below)  |                  |
//! | `due`       | group_id u64 · due_ms u64 · ms · seq            | empty            |
//! | `ready`     | group_id u64 · ms · seq                         | empty            |
//! | `idem`      | stream_id u64 · idempotency key                 | IdempotencyRecord|
//! | `idem_exp`  | seen_ms u64 · stream_id u64 · idempotency key   | empty            |
//! | `sys`       | `system`, `gc` · kind u8 · id u64               | SystemMeta, empty|
//! | `nodes`     | stream_id u64 · first ms · first seq            | Node (closed)    |
//! | `sched`     | group_id u64 · deliver_at_ms u64 · ms · seq     | lane u8          |
//!
//! `cpel` held group_id u64 · consumer_id u64 · ms · seq for each pending entry, a
//! consumer's own pending list; that order is now kept in memory (`group::index`), and the
//! keyspace stays open (its `Ks::id` and the collector's progress records count it).

use crate::error::{corrupt, Result};
use crate::id::{Lane, StreamId};

/// Key of the store-wide counters in `sys`.
pub const SYSTEM_KEY: &[u8] = b"system";
/// Prefix of garbage records in `sys`.
pub const GC_PREFIX: &[u8] = b"gc";
/// `sys` key of a replicated log's progress (written with the batch it describes).
pub const PROGRESS_KEY: &[u8] = b"progress";
/// Garbage kind: all keys of a deleted stream.
pub const GC_STREAM: u8 = 1;
/// Garbage kind: all keys of a destroyed group.
pub const GC_GROUP: u8 = 2;

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

/// `streams` key.
pub fn stream(ns: u16, name: &[u8]) -> Vec<u8> {
    cat(&[&ns.to_be_bytes(), name])
}

/// Splits a `streams` key into namespace and name.
pub fn parse_stream(key: &[u8]) -> Option<(u16, &[u8])> {
    let ns = u16::from_be_bytes(key.get(..2)?.try_into().ok()?);
    Some((ns, &key[2..]))
}

/// Prefix of all `streams` keys of a namespace.
pub fn namespace(ns: u16) -> [u8; 2] {
    ns.to_be_bytes()
}

/// 8-byte prefix of an internal ID.
pub fn prefix(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// `groups` key.
pub fn group(stream_id: u64, name: &[u8]) -> Vec<u8> {
    cat(&[&stream_id.to_be_bytes(), name])
}

/// `consumers` key.
pub fn consumer(group_id: u64, name: &[u8]) -> Vec<u8> {
    cat(&[&group_id.to_be_bytes(), name])
}

/// Key with an 8-byte prefix followed by an entry ID: `entries`, `pel`, `ready`.
pub fn id_key(prefix_id: u64, id: StreamId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&prefix_id.to_be_bytes());
    k[8..].copy_from_slice(&id.to_bytes());
    k
}

/// The entry ID at the end of an `id_key`, `lanes`, `cpel` or `due` key.
pub fn trailing_id(key: &[u8]) -> Option<StreamId> {
    let start = key.len().checked_sub(16)?;
    StreamId::from_bytes(&key[start..])
}

/// `lanes` key.
pub fn lane(stream_id: u64, lane: Lane, id: StreamId) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..8].copy_from_slice(&stream_id.to_be_bytes());
    k[8] = lane as u8;
    k[9..].copy_from_slice(&id.to_bytes());
    k
}

/// A `due` or `sched` key: group ID, a 64-bit word, entry ID.
fn word_key(group_id: u64, word: u64, id: StreamId) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&group_id.to_be_bytes());
    k[8..16].copy_from_slice(&word.to_be_bytes());
    k[16..].copy_from_slice(&id.to_bytes());
    k
}

/// `due` key.
pub fn due(group_id: u64, due_ms: u64, id: StreamId) -> [u8; 32] {
    word_key(group_id, due_ms, id)
}

/// `sched` key: an entry the group's reads reached before its delivery time, set aside
/// until then (same layout as `due`).
pub fn sched(group_id: u64, deliver_at_ms: u64, id: StreamId) -> [u8; 32] {
    word_key(group_id, deliver_at_ms, id)
}

/// The due time in a `due` key.
pub fn due_time(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(8..16)?.try_into().ok()?))
}

/// `idem` key.
pub fn idempotency(stream_id: u64, key: &[u8]) -> Vec<u8> {
    cat(&[&stream_id.to_be_bytes(), key])
}

/// `idem_exp` key.
pub fn idempotency_expiry(seen_ms: u64, stream_id: u64, key: &[u8]) -> Vec<u8> {
    cat(&[&seen_ms.to_be_bytes(), &stream_id.to_be_bytes(), key])
}

/// Splits an `idem_exp` key into its time, stream and idempotency key.
pub fn parse_idempotency_expiry(key: &[u8]) -> Option<(u64, u64, &[u8])> {
    let t = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let s = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    Some((t, s, &key[16..]))
}

/// Garbage record key in `sys`.
pub fn garbage(kind: u8, id: u64) -> Vec<u8> {
    cat(&[GC_PREFIX, &[kind], &id.to_be_bytes()])
}

/// Splits a garbage key into kind and internal ID.
pub fn parse_garbage(key: &[u8]) -> Option<(u8, u64)> {
    let rest = key.strip_prefix(GC_PREFIX)?;
    let kind = *rest.first()?;
    let id = u64::from_be_bytes(rest.get(1..9)?.try_into().ok()?);
    Some((kind, id))
}

/// The entry ID at the end of a key read from disk; a malformed key is corruption, never an ID.
pub(crate) fn key_id(key: &[u8], what: &'static str, stream: &[u8]) -> Result<StreamId> {
    trailing_id(key).ok_or_else(|| {
        corrupt(
            what,
            stream,
            None,
            format!("malformed key of {} bytes", key.len()),
        )
    })
}

/// The due time and entry ID of a `due` key read from disk.
pub(crate) fn due_key(key: &[u8], stream: &[u8]) -> Result<(u64, StreamId)> {
    match (due_time(key), trailing_id(key)) {
        (Some(t), Some(id)) if key.len() == 32 => Ok((t, id)),
        _ => Err(corrupt(
            "due key",
            stream,
            None,
            format!("malformed key of {} bytes", key.len()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_id_within_prefix() {
        let a = id_key(7, StreamId::new(1, 2));
        let b = id_key(7, StreamId::new(1, 3));
        let c = id_key(8, StreamId::MIN);
        assert!(a < b && b < c);
        assert_eq!(trailing_id(&b), Some(StreamId::new(1, 3)));
        let d = due(3, 500, StreamId::new(9, 9));
        assert_eq!(due_time(&d), Some(500));
        assert_eq!(trailing_id(&d), Some(StreamId::new(9, 9)));
        assert!(due(3, 500, StreamId::MAX) < due(3, 501, StreamId::MIN));
        assert_eq!(parse_stream(&stream(3, b"s")), Some((3, &b"s"[..])));
        assert_eq!(parse_garbage(&garbage(GC_GROUP, 77)), Some((GC_GROUP, 77)));
        let e = idempotency_expiry(5, 6, b"k");
        assert_eq!(parse_idempotency_expiry(&e), Some((5, 6, &b"k"[..])));
        assert_eq!(lane(1, Lane::High, StreamId::new(2, 3))[8], 1);
    }
}
