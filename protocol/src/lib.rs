//! The agent wire protocol (`cortex/1`): frames, their codec, and every protocol fact a
//! client needs (header names, inbox and reply-stream naming, heartbeat bounds, close codes,
//! limits). Pure: no clock, and no I/O except [`io`] (frames over quinn streams, behind the
//! `quinn` feature). `docs/PROTOCOL.md` describes the bytes for implementers in other
//! languages; `protocol/golden/` holds one encoded example of every frame variant, checked
//! by this crate's tests and decoded by every client's.
//!
//! A frame on a QUIC stream is `[u32 little-endian body length][body]`; the body is one
//! [`Frame`] in bincode 2's *fixed-int, little-endian* encoding (integers at their full
//! width, enum tags and lengths as `u32` / `u64`). Every size is bounded twice: the body by
//! [`FRAME_BYTES_MAX`] before any byte of it is decoded (and the decoder never claims more
//! memory than that), and every count and name by [`Limits`] after decoding.

mod frame;
#[cfg(feature = "quinn")]
pub mod io;
pub mod names;

pub use frame::*;

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};

/// The protocol version this build speaks; [`Frame::Hello`] carries the client's.
pub const PROTOCOL: u16 = 1;

/// The TLS ALPN identifier.
pub const ALPN: &[u8] = b"cortex/1";

/// The largest frame body, both ways.
pub const FRAME_BYTES_MAX: usize = 4 << 20;

/// Bytes of the length prefix.
pub const HEADER_BYTES: usize = 4;

type Cfg = Configuration<LittleEndian, Fixint, Limit<FRAME_BYTES_MAX>>;

fn cfg() -> Cfg {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<FRAME_BYTES_MAX>()
}

/// Bounds checked on every decoded frame. The server tells its client these in
/// [`Frame::Welcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Limits {
    /// Largest frame body.
    pub frame_bytes: u32,
    /// Most messages in one publish.
    pub batch: u32,
    /// Most field/value pairs in one message.
    pub fields: u32,
    /// Most headers in one message.
    pub headers: u32,
    /// Longest stream, group, consumer or agent name.
    pub name_bytes: u32,
    /// Most IDs in one ack, nack or in-progress.
    pub ids: u32,
    /// Largest subscription window (unacknowledged deliveries in flight).
    pub window: u32,
    /// Longest error or other free text.
    pub text_bytes: u32,
    /// Longest token.
    pub token_bytes: u32,
    /// Longest request timeout, ms.
    pub request_timeout_ms: u32,
    /// Most entries in one range read.
    pub range_count: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes: FRAME_BYTES_MAX as u32,
            batch: 1_000,
            fields: 1_024,
            headers: 64,
            name_bytes: 1_024,
            ids: 10_000,
            window: 10_000,
            text_bytes: 4_096,
            token_bytes: 1_024,
            request_timeout_ms: 3_600_000,
            range_count: 10_000,
        }
    }
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The length prefix announces more than [`FRAME_BYTES_MAX`].
    TooLarge(usize),
    /// The body is not a frame of this protocol (or has bytes left over).
    Malformed(String),
    /// A frame, but some count or name is over its limit.
    OverLimit(String),
    /// A frame, but a value in it is not allowed (an empty name, a zero timeout, a lane
    /// that does not exist).
    Invalid(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge(n) => write!(
                f,
                "frame of {n} bytes is larger than the limit of {FRAME_BYTES_MAX}"
            ),
            DecodeError::Malformed(e) => write!(f, "malformed frame: {e}"),
            DecodeError::OverLimit(e) => write!(f, "frame over a limit: {e}"),
            DecodeError::Invalid(e) => write!(f, "invalid frame: {e}"),
        }
    }
}

impl DecodeError {
    /// The error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge(_) | DecodeError::OverLimit(_) => ErrorCode::TooLarge,
            DecodeError::Malformed(_) => ErrorCode::BadFrame,
            DecodeError::Invalid(_) => ErrorCode::InvalidArgument,
        }
    }
}

/// Encodes a frame with its length prefix, appending to `out`.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    // Writing into a Vec cannot fail; a frame over the limit is the sender's bug and is
    // caught by the peer's check (and by `encode`'s debug assertion).
    let _ = bincode::encode_into_std_write(frame, out, cfg());
    let len = (out.len() - start - HEADER_BYTES) as u32;
    out[start..start + HEADER_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// Encodes a frame with its length prefix.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(frame, &mut out);
    debug_assert!(
        out.len() - HEADER_BYTES <= FRAME_BYTES_MAX,
        "frame too large"
    );
    out
}

/// Reads a length prefix; an oversized announcement is refused before the body is read.
pub fn body_len(header: [u8; HEADER_BYTES]) -> Result<usize, DecodeError> {
    let n = u32::from_le_bytes(header) as usize;
    if n > FRAME_BYTES_MAX {
        return Err(DecodeError::TooLarge(n));
    }
    Ok(n)
}

/// Decodes one frame body and checks it against `limits`.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Frame, DecodeError> {
    if body.len() > FRAME_BYTES_MAX {
        return Err(DecodeError::TooLarge(body.len()));
    }
    let (frame, used): (Frame, usize) = bincode::decode_from_slice(body, cfg())
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(DecodeError::Malformed(format!(
            "{} bytes after the frame",
            body.len() - used
        )));
    }
    frame.check(limits).map_err(|v| match v {
        Violation::OverLimit(e) => DecodeError::OverLimit(e),
        Violation::Invalid(e) => DecodeError::Invalid(e),
    })?;
    Ok(frame)
}

/// Splits one whole frame off the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn split(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some(header) = buf.get(..HEADER_BYTES) else {
        return Ok(None);
    };
    let mut h = [0; HEADER_BYTES];
    h.copy_from_slice(header);
    let n = body_len(h)?;
    match buf.get(HEADER_BYTES..HEADER_BYTES + n) {
        None => Ok(None),
        Some(body) => Ok(Some((decode(body, limits)?, HEADER_BYTES + n))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) {
        let bytes = encode(&f);
        let (g, used) = split(&bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(f, g);
        for cut in 0..bytes.len() {
            assert_eq!(split(&bytes[..cut], &Limits::default()).unwrap(), None);
        }
    }

    #[test]
    fn frames_roundtrip() {
        roundtrip(Frame::Hello {
            protocol: PROTOCOL,
            agent: "pink".into(),
            token: "t".into(),
            client: "test".into(),
        });
        roundtrip(Frame::Publish {
            stream: b"tasks".to_vec(),
            messages: vec![Message {
                fields: vec![(b"f".to_vec(), b"v".to_vec())],
                lane: 1,
                ttl_ms: Some(5),
                key: Some(b"k".to_vec()),
                headers: vec![(b"h".to_vec(), b"x".to_vec())],
            }],
        });
        roundtrip(Frame::Error {
            code: ErrorCode::NoResponders,
            message: "nobody".into(),
        });
        roundtrip(Frame::Ack {
            seq: 7,
            ids: vec![Id { ms: 1, seq: 2 }],
        });
    }

    #[test]
    fn layout_is_fixed_int_little_endian() {
        // Credit { window: 5 }: tag 6 as u32, then the u32 window.
        let bytes = encode(&Frame::Credit { window: 5 });
        assert_eq!(bytes, vec![8, 0, 0, 0, 6, 0, 0, 0, 5, 0, 0, 0]);
    }

    #[test]
    fn bad_input_is_refused_without_allocating() {
        let l = Limits::default();
        assert!(matches!(
            split(&[0xff, 0xff, 0xff, 0xff], &l),
            Err(DecodeError::TooLarge(_))
        ));
        // An unknown tag.
        assert!(matches!(
            decode(&[0xee, 0, 0, 0], &l),
            Err(DecodeError::Malformed(_))
        ));
        // Publish with a stream name claiming 2^60 bytes: refused by the decode limit.
        let mut body = vec![];
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(decode(&body, &l), Err(DecodeError::Malformed(_))));
        // Trailing bytes.
        let mut b = encode(&Frame::Credit { window: 1 });
        b.push(0);
        assert!(decode(&b[HEADER_BYTES..], &l).is_err());
        // Over a count limit.
        let f = Frame::Ack {
            seq: 1,
            ids: vec![Id { ms: 1, seq: 1 }; 3],
        };
        let tight = Limits { ids: 2, ..l };
        assert!(matches!(
            decode(&encode(&f)[HEADER_BYTES..], &tight),
            Err(DecodeError::OverLimit(_))
        ));
        // A value too small is invalid, not too large.
        let e = decode(
            &encode(&Frame::Range {
                stream: Vec::new(),
                start: Id { ms: 0, seq: 0 },
                end: Id { ms: 1, seq: 0 },
                count: 1,
                rev: false,
            })[HEADER_BYTES..],
            &l,
        )
        .unwrap_err();
        assert!(matches!(e, DecodeError::Invalid(_)), "{e:?}");
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        let e = decode(&encode(&f)[HEADER_BYTES..], &tight).unwrap_err();
        assert_eq!(e.code(), ErrorCode::TooLarge);
    }
}
