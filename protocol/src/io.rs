//! Frames over quinn streams: the codec's bounds applied as bytes arrive.

use quinn::{ReadExactError, RecvStream, SendStream};

use crate::{self as wire, DecodeError, Frame, Limits, HEADER_BYTES};

/// Why no frame was read.
#[derive(Debug)]
pub enum ReadError {
    /// Not a valid frame (or over a limit): answer with an error.
    Decode(DecodeError),
    /// The stream or connection failed.
    Stream(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Decode(e) => e.fmt(f),
            ReadError::Stream(e) => write!(f, "stream failed: {e}"),
        }
    }
}

/// Most bytes reserved for a frame body before they arrive.
const BODY_PREALLOC_MAX: usize = 64 << 10;

/// Reads one frame; `Ok(None)` when the peer finished the stream cleanly between frames.
/// An oversized length prefix is refused before the body is read.
pub async fn read_frame(
    recv: &mut RecvStream,
    limits: &Limits,
) -> Result<Option<Frame>, ReadError> {
    let mut header = [0u8; HEADER_BYTES];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(n)) => {
            return Err(ReadError::Decode(DecodeError::Malformed(format!(
                "stream ended {n} bytes into a frame header"
            ))))
        }
        Err(ReadExactError::ReadError(e)) => return Err(ReadError::Stream(e.to_string())),
    }
    let n = wire::body_len(header).map_err(ReadError::Decode)?;
    // Grown with what arrives: a header claiming a large body costs nothing until its bytes
    // do (QUIC flow control paces them).
    let mut body = Vec::with_capacity(n.min(BODY_PREALLOC_MAX));
    while body.len() < n {
        match recv.read_chunk(n - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(ReadError::Decode(DecodeError::Malformed(format!(
                    "stream ended {} bytes into a {n}-byte frame",
                    body.len()
                ))))
            }
            Err(e) => return Err(ReadError::Stream(e.to_string())),
        }
    }
    wire::decode(&body, limits)
        .map(Some)
        .map_err(ReadError::Decode)
}

/// Writes one frame.
pub async fn write_frame(send: &mut SendStream, frame: &Frame) -> Result<(), String> {
    send.write_all(&wire::encode(frame))
        .await
        .map_err(|e| e.to_string())
}
