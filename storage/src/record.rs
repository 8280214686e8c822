//! What a stream entry holds: field/value pairs plus metadata.

use bincode::{Decode, Encode};

use crate::id::{Lane, StreamId};

/// An ordered list of field/value byte pairs, as in Redis.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Metadata carried by an entry, beside its fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Meta {
    /// Priority lane (plain `XADD`: normal).
    pub lane: Lane,
    /// Absolute expiry in Unix milliseconds: past it the entry is never handed out.
    pub expires_at_ms: Option<u64>,
    /// The producing agent, if it said.
    pub producer: Option<Vec<u8>>,
    /// Free-form headers (correlation id, reply-to, idempotency key, ...).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why an entry was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum DeadReason {
    /// Failed (nack or ack timeout) `max_attempts` times.
    MaxAttempts,
    /// Its TTL ran out before it was handed out.
    Expired,
    /// Older than the group's `max_age_ms` when it would have been handed out.
    Stale,
    /// A consumer rejected it outright (nack without retry).
    Rejected,
}

impl DeadReason {
    /// The reason's name as stored in the DLQ entry's `reason` field.
    pub fn name(self) -> &'static str {
        match self {
            DeadReason::MaxAttempts => "max_attempts",
            DeadReason::Expired => "expired",
            DeadReason::Stale => "stale",
            DeadReason::Rejected => "rejected",
        }
    }

    /// Parses a reason name.
    pub fn parse(s: &str) -> Option<DeadReason> {
        [
            DeadReason::MaxAttempts,
            DeadReason::Expired,
            DeadReason::Stale,
            DeadReason::Rejected,
        ]
        .into_iter()
        .find(|r| r.name().eq_ignore_ascii_case(s))
    }
}

/// What a dead-letter entry knows about its origin. The DLQ entry's fields are
/// `header_fields` descriptive pairs (origin-stream, reason, ...) followed by the original
/// fields, so it reads well in `XRANGE`; this struct keeps the exact data for a redrive.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DeadLetter {
    /// Namespace of the origin stream.
    pub origin_ns: u16,
    /// Origin stream name.
    pub origin_stream: Vec<u8>,
    /// Origin entry ID.
    pub origin_id: StreamId,
    /// Group that gave up on it.
    pub group: Vec<u8>,
    /// Consumer that last had it (empty if never delivered).
    pub consumer: Vec<u8>,
    /// Why.
    pub reason: DeadReason,
    /// Failed attempts (nacks and ack timeouts).
    pub failures: u32,
    /// Deliveries (including re-reads).
    pub deliveries: u64,
    /// The last error text a consumer gave.
    pub last_error: Option<Vec<u8>>,
    /// When it was dead-lettered (Unix ms).
    pub dead_at_ms: u64,
    /// The original metadata, restored on redrive.
    pub original_meta: Meta,
    /// How many leading fields of the DLQ entry are descriptive, not original.
    pub header_fields: u16,
}

/// A stored entry's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Record {
    /// Field/value pairs in the order given.
    pub fields: Fields,
    /// Lane, expiry, producer, headers.
    pub meta: Meta,
    /// Present on entries of a dead-letter stream.
    pub dead_letter: Option<Box<DeadLetter>>,
}

impl Record {
    /// A plain record with normal lane and no metadata, as `XADD` makes.
    pub fn plain(fields: Fields) -> Self {
        Record {
            fields,
            ..Record::default()
        }
    }

    /// Bytes of field names and values.
    pub fn payload_len(&self) -> usize {
        self.fields.iter().map(|(f, v)| f.len() + v.len()).sum()
    }

    /// True when the TTL has run out at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.meta.expires_at_ms.is_some_and(|t| t <= now_ms)
    }

    /// The original fields of a dead-letter entry (all fields for other entries).
    pub fn original_fields(&self) -> &[(Vec<u8>, Vec<u8>)] {
        let skip = self
            .dead_letter
            .as_ref()
            .map_or(0, |d| usize::from(d.header_fields));
        self.fields.get(skip..).unwrap_or(&[])
    }
}

/// One entry: its ID and its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's ID.
    pub id: StreamId,
    /// The entry's content.
    pub record: Record,
}
