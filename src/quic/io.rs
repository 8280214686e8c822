//! Frames over quinn streams: the codec's bounds applied as bytes arrive.

use quinn::{ReadExactError, RecvStream, SendStream};

use crate::wire::{self, DecodeError, Frame, Limits, HEADER_BYTES};

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
    let mut body = vec![0u8; n];
    match recv.read_exact(&mut body).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(got)) => {
            return Err(ReadError::Decode(DecodeError::Malformed(format!(
                "stream ended {got} bytes into a {n}-byte frame"
            ))))
        }
        Err(ReadExactError::ReadError(e)) => return Err(ReadError::Stream(e.to_string())),
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
