//! Reply builders shared by the command families: entries, ID lists, counts, help.

use cortex_storage::{Entry, Record, Reply, StreamId};

use super::args::{id_frame, storage_error};
use crate::resp::codec::Frame;

/// `[field, value, ...]` of a record; its fields move into the frame, uncopied.
pub fn fields_frame(r: Record) -> Frame {
    let mut v = Vec::with_capacity(r.fields.len() * 2);
    for (f, val) in r.fields {
        v.push(Frame::Bulk(f));
        v.push(Frame::Bulk(val));
    }
    Frame::Array(v)
}

/// `[id, [field, value, ...]]`, or `[id, nil]` for an entry deleted while pending.
pub fn entry_frame(id: StreamId, r: Option<Record>) -> Frame {
    Frame::Array(vec![id_frame(id), r.map_or(Frame::NullArray, fields_frame)])
}

/// Entries as XRANGE replies them (the entries move into the frame: a large reply is not
/// copied twice).
pub fn entries_frame(e: Vec<Entry>) -> Frame {
    Frame::Array(
        e.into_iter()
            .map(|e| entry_frame(e.id, Some(e.record)))
            .collect(),
    )
}

/// Entries of a group read or claim (`None`: deleted while pending).
pub fn pairs_frame(e: Vec<(StreamId, Option<Record>)>) -> Frame {
    Frame::Array(e.into_iter().map(|(id, r)| entry_frame(id, r)).collect())
}

/// XREAD / XREADGROUP's reply: a map in RESP3, pairs in RESP2.
pub fn read_reply(proto: u8, results: Vec<(Vec<u8>, Frame)>) -> Frame {
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

/// XREAD / XREADGROUP's reply for the streams that have something, nil when none has.
pub fn streams_reply(proto: u8, results: Vec<(Vec<u8>, Frame)>) -> Frame {
    if results.is_empty() {
        Frame::NullArray
    } else {
        read_reply(proto, results)
    }
}

/// Help lines as Redis replies them.
pub fn help(lines: &[&str]) -> Frame {
    Frame::Array(
        lines
            .iter()
            .map(|l| Frame::Simple((*l).to_string()))
            .collect(),
    )
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

/// `+OK`, or the error.
pub fn ok_reply(cmd: &str, r: cortex_storage::Result<Reply>) -> Frame {
    match r {
        Ok(_) => Frame::ok(),
        Err(e) => storage_error(cmd, e),
    }
}
