//! Argument parsing shared by the command families, with Redis's error texts.

use cortex_storage::{Error, IdSpec, RefPolicy, StreamId, StreamKey, Trim, TrimStrategy};

use crate::resp::codec::Frame;

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
    Frame::Bulk(id.text(&mut [0; cortex_storage::ID_TEXT_MAX]).to_vec())
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
        Error::SetIdBelowMaxDeleted => {
            Frame::err("The ID specified in XSETID is smaller than current max_deleted_entry_id")
        }
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

/// The trimming options of XADD, XTRIM and CX.PUBLISH as parsed so far:
/// `MAXLEN|MINID [=|~] threshold`, `LIMIT n`, and Redis 8.2's `KEEPREF|DELREF|ACKED`.
#[derive(Default)]
pub struct TrimArgs {
    trim: Option<Trim>,
    limit: Option<u64>,
    refs: RefPolicy,
    /// KEEPREF, DELREF and ACKED are options here (not where they could be a field name).
    with_refs: bool,
}

impl TrimArgs {
    /// XADD's and XTRIM's options, Redis 8.2's reference policies included.
    pub fn with_refs() -> TrimArgs {
        TrimArgs {
            with_refs: true,
            ..TrimArgs::default()
        }
    }

    /// Takes the trim option at `args[*i]`, if it is one (and moves `*i` past it); false if
    /// the argument there is not a trim option.
    pub fn parse(&mut self, args: &[Vec<u8>], i: &mut usize) -> Result<bool, Frame> {
        let opt = upper(&args[*i]);
        let more = args.len() - *i - 1;
        match opt.as_str() {
            "MAXLEN" | "MINID" if more >= 1 => {
                if self.trim.is_some() {
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
                self.trim = Some(Trim::new(strategy, approx, None));
                *i = j + 1;
                Ok(true)
            }
            "LIMIT" if more >= 1 => {
                let n = int(&args[*i + 1])?;
                if n < 0 {
                    return Err(Frame::err("The LIMIT argument must be >= 0."));
                }
                self.limit = Some(n as u64);
                *i += 2;
                Ok(true)
            }
            // The last one given counts, as in Redis; without a strategy they do nothing.
            "KEEPREF" | "DELREF" | "ACKED" if self.with_refs => {
                self.refs = match opt.as_str() {
                    "KEEPREF" => RefPolicy::KeepRef,
                    "DELREF" => RefPolicy::DelRef,
                    _ => RefPolicy::Acked,
                };
                *i += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The trim asked for, if any, with Redis's errors for a LIMIT that does not fit.
    pub fn finish(self) -> Result<Option<Trim>, Frame> {
        match (self.trim, self.limit) {
            (None, None) => Ok(None),
            (None, Some(n)) if n > 0 => Err(Frame::err(
                "syntax error, LIMIT cannot be used without specifying a trimming strategy",
            )),
            (None | Some(Trim { approx: false, .. }), Some(_)) => Err(Frame::err(
                "syntax error, LIMIT cannot be used without the special ~ option",
            )),
            (Some(mut t), l) => {
                // LIMIT 0 means no limit, as in Redis; none means 100 nodes' worth for `~`.
                t.limit = l;
                t.refs = self.refs;
                Ok(Some(t))
            }
        }
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
