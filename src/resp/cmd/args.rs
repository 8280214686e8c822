//! Argument parsing shared by the command families, with Redis's error texts.

use cortex_storage::{Error, StreamId, StreamKey};

use crate::resp::codec::Frame;

/// A command's result: a reply, or an error reply.
pub type CmdResult = Result<Frame, Frame>;

/// Upper-cased text of an argument.
pub fn upper(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_uppercase()
}

/// Lossy text of an argument (for messages).
pub fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

/// `ERR syntax error`.
pub fn syntax() -> Frame {
    Frame::err("syntax error")
}

/// `ERR wrong number of arguments for 'cmd' command`.
pub fn arity(cmd: &str) -> Frame {
    Frame::err(format!(
        "wrong number of arguments for '{}' command",
        cmd.to_ascii_lowercase()
    ))
}

/// A signed integer argument.
pub fn int(a: &[u8]) -> Result<i64, Frame> {
    std::str::from_utf8(a)
        .ok()
        .filter(|s| !s.is_empty() && !s.starts_with('+') && s.len() <= 20)
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Frame::err("value is not an integer or out of range"))
}

/// A non-negative integer argument.
pub fn uint(a: &[u8]) -> Result<u64, Frame> {
    let v = int(a)?;
    u64::try_from(v).map_err(|_| Frame::err("value is out of range, must be positive"))
}

/// `ERR Invalid stream ID specified as stream command argument`.
pub fn bad_id() -> Frame {
    Frame::err("Invalid stream ID specified as stream command argument")
}

/// A complete or incomplete stream ID (`ms` means `ms-<missing_seq>`).
pub fn id_with(a: &[u8], missing_seq: u64) -> Result<StreamId, Frame> {
    let s = std::str::from_utf8(a).map_err(|_| bad_id())?;
    match s.split_once('-') {
        Some(_) => s.parse().map_err(|_| bad_id()),
        None => {
            let ms: StreamId = s.parse().map_err(|_| bad_id())?;
            Ok(StreamId::new(ms.ms, missing_seq))
        }
    }
}

/// A stream ID argument (`ms` means `ms-0`).
pub fn id(a: &[u8]) -> Result<StreamId, Frame> {
    id_with(a, 0)
}

/// Start of an XRANGE interval: `-`, an ID, or `(ID` (exclusive).
pub fn range_start(a: &[u8]) -> Result<StreamId, Frame> {
    match a {
        b"-" => Ok(StreamId::MIN),
        b"+" => Ok(StreamId::MAX),
        [b'(', rest @ ..] => {
            let id = id_with(rest, 0)?;
            id.next()
                .ok_or_else(|| Frame::err("invalid start ID for the interval"))
        }
        _ => id_with(a, 0),
    }
}

/// End of an XRANGE interval: `+`, an ID (`ms` = `ms-MAX`), or `(ID` (exclusive).
pub fn range_end(a: &[u8]) -> Result<StreamId, Frame> {
    match a {
        b"+" => Ok(StreamId::MAX),
        b"-" => Ok(StreamId::MIN),
        [b'(', rest @ ..] => {
            let id = id_with(rest, u64::MAX)?;
            id.prev()
                .ok_or_else(|| Frame::err("invalid end ID for the interval"))
        }
        _ => id_with(a, u64::MAX),
    }
}

/// A stream key in the connection's database.
pub fn key(db: u16, name: &[u8]) -> StreamKey {
    StreamKey::new(db, name.to_vec())
}

/// A stream ID as a bulk string.
pub fn id_frame(id: StreamId) -> Frame {
    Frame::Bulk(id.to_string().into_bytes())
}

/// Maps a storage error to Redis's reply for `cmd` (upper case) on `key`/`group`.
pub fn storage_error(cmd: &str, e: Error) -> Frame {
    match e {
        Error::IdZero => Frame::err(format!(
            "The ID specified in {cmd} must be greater than 0-0"
        )),
        Error::IdNotGreater { .. } => Frame::err(format!(
            "The ID specified in {cmd} is equal or smaller than the target stream top item"
        )),
        Error::IdExhausted => {
            Frame::err("The stream has exhausted the last possible ID, unable to add more items")
        }
        Error::SetIdTooSmall => {
            Frame::err("The ID specified in XSETID is smaller than the target stream top item")
        }
        Error::EntriesAddedTooSmall => Frame::err(
            "The entries_added specified in XSETID is smaller than the target stream length",
        ),
        Error::MaxDeletedTooLarge => Frame::err(
            "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
        ),
        Error::NoSuchStream { stream } => Frame::Error(format!(
            "NOGROUP No such key '{}' or consumer group",
            text(&stream)
        )),
        Error::NoSuchGroup { stream, group } => Frame::Error(format!(
            "NOGROUP No such key '{}' or consumer group '{}'",
            text(&stream),
            text(&group)
        )),
        Error::GroupExists { .. } => {
            Frame::Error("BUSYGROUP Consumer Group name already exists".into())
        }
        Error::TargetExists => Frame::err("target key exists"),
        other => Frame::err(other),
    }
}
