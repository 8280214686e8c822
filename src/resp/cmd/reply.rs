//! Reply builders shared by the command families: entries, ID lists, counts, help.

use cortex_storage::{Entry, Record, Reply, StreamId};

use super::args::{id_frame, storage_error};
use crate::resp::codec::{put_array, put_bulk, put_null_array, Frame};

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

/// Entries as XRANGE replies them, encoded straight into RESP: an entry is written once,
/// with no frame per field to build, encode and drop (for a group read of 100 entries that
/// was an eighth of the server's instructions).
pub fn entries_frame(e: Vec<Entry>) -> Frame {
    // Every entry has its record: no nil, so the bytes are the same in either protocol.
    put_entries(2, e.iter().map(|e| (e.id, Some(&e.record))))
}

/// Entries of a group read or claim (`None`: deleted while pending, a nil that depends on
/// the protocol), encoded as [`entries_frame`] does.
pub fn pairs_frame(proto: u8, e: Vec<(StreamId, Option<Record>)>) -> Frame {
    put_entries(proto, e.iter().map(|(id, r)| (*id, r.as_ref())))
}

/// A list of entries as one buffer, sized once.
fn put_entries<'a, I>(proto: u8, entries: I) -> Frame
where
    I: ExactSizeIterator<Item = (StreamId, Option<&'a Record>)> + Clone,
{
    let mut out = Vec::with_capacity(entries_bytes(entries.clone().map(|(_, r)| r)));
    put_array(&mut out, entries.len());
    for (id, r) in entries {
        put_entry(&mut out, proto, id, r);
    }
    Frame::Encoded(out)
}

/// `[id, [field, value, ...]]`, or `[id, nil]`: the bytes [`entry_frame`] encodes to.
fn put_entry(out: &mut Vec<u8>, proto: u8, id: StreamId, r: Option<&Record>) {
    put_array(out, 2);
    put_bulk(out, id.text(&mut [0; cortex_storage::ID_TEXT_MAX]));
    match r {
        Some(r) => {
            put_array(out, r.fields.len() * 2);
            for (f, v) in &r.fields {
                put_bulk(out, f);
                put_bulk(out, v);
            }
        }
        None => put_null_array(out, proto),
    }
}

/// A close upper bound of the entries' encoded size (headers of up to 8 digits).
fn entries_bytes<'a>(records: impl Iterator<Item = Option<&'a Record>>) -> usize {
    const HEADER: usize = 11;
    records
        .map(|r| {
            // `*2`, the ID's bulk, the fields' array header.
            3 * HEADER
                + cortex_storage::ID_TEXT_MAX
                + r.map_or(0, |r| {
                    r.fields
                        .iter()
                        .map(|(f, v)| f.len() + v.len() + 4 + 2 * HEADER)
                        .sum()
                })
        })
        .sum::<usize>()
        + HEADER
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[(&str, &str)]) -> Record {
        Record::plain(
            fields
                .iter()
                .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn bytes(f: &Frame, proto: u8) -> Vec<u8> {
        let mut out = Vec::new();
        f.encode(proto, &mut out);
        out
    }

    /// The entries written straight into bytes are what the frames of each entry encode
    /// to, in both protocols, with a deleted entry's nil, empty and long values, and none.
    #[test]
    fn encoded_entries_are_the_frames_bytes() {
        let long = "v".repeat(100_000);
        let pairs = vec![
            (StreamId::new(1, 0), Some(record(&[("f", "v")]))),
            (StreamId::new(u64::MAX, u64::MAX), None),
            (
                StreamId::new(7, 12),
                Some(record(&[("a", ""), ("", &long)])),
            ),
            (StreamId::new(8, 0), Some(record(&[]))),
        ];
        for proto in [2, 3] {
            let frames = Frame::Array(
                pairs
                    .iter()
                    .map(|(id, r)| entry_frame(*id, r.clone()))
                    .collect(),
            );
            let direct = pairs_frame(proto, pairs.clone());
            assert_eq!(bytes(&direct, proto), bytes(&frames, proto), "RESP{proto}");
            assert_eq!(direct.encoded_len(proto), bytes(&frames, proto).len());
            assert_eq!(bytes(&pairs_frame(proto, vec![]), proto), b"*0\r\n");
        }
        let entries: Vec<Entry> = pairs
            .iter()
            .filter_map(|(id, r)| r.clone().map(|record| Entry { id: *id, record }))
            .collect();
        let frames = Frame::Array(
            entries
                .iter()
                .map(|e| entry_frame(e.id, Some(e.record.clone())))
                .collect(),
        );
        for proto in [2, 3] {
            assert_eq!(
                bytes(&entries_frame(entries.clone()), proto),
                bytes(&frames, proto)
            );
        }
    }
}
