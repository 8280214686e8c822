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

/// Header: the moment a scheduled entry may first be handed to a group (Unix ms, decimal).
/// The entry is stored at once (range reads show it); a group read that reaches it earlier
/// sets it aside for that group, and hands it out once the time has come.
pub const DELIVER_AT_HEADER: &[u8] = b"cortex-deliver-at-ms";
/// Header a publisher may give instead of [`DELIVER_AT_HEADER`]: a delay after the commit's
/// time, ms. The store replaces it with the absolute time, so every node and every restart
/// agrees on the moment.
pub const DELAY_HEADER: &[u8] = b"cortex-delay-ms";

impl Meta {
    /// When the entry may first be handed to a group, if it is scheduled.
    pub fn deliver_at_ms(&self) -> Option<u64> {
        self.headers
            .iter()
            .find(|(k, _)| k == DELIVER_AT_HEADER)
            .and_then(|(_, v)| parse_ms(v))
    }

    /// True when a header asks for a schedule ([`DELAY_HEADER`], [`DELIVER_AT_HEADER`]):
    /// only then has [`Meta::settle_schedule`] anything to do.
    pub(crate) fn has_schedule(&self) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k == DELAY_HEADER || k == DELIVER_AT_HEADER)
    }

    /// Checks and settles a new entry's schedule at `now_ms`: a delay becomes an absolute
    /// time; a time in the past (or now) is no schedule at all and the header goes; a TTL
    /// counts from the delivery time, not the publish time. `Err` names the header at fault.
    pub(crate) fn settle_schedule(&mut self, now_ms: u64, ahead_max_ms: u64) -> Result<(), String> {
        let mut at = None;
        let mut seen = 0;
        for (k, v) in &self.headers {
            let delay = k == DELAY_HEADER;
            if !delay && k != DELIVER_AT_HEADER {
                continue;
            }
            seen += 1;
            let name = String::from_utf8_lossy(k);
            let Some(ms) = parse_ms(v) else {
                return Err(format!(
                    "{name} must be a whole number of milliseconds, not {:?}",
                    String::from_utf8_lossy(&v[..v.len().min(40)])
                ));
            };
            let t = if delay { now_ms.saturating_add(ms) } else { ms };
            if t.saturating_sub(now_ms) > ahead_max_ms {
                return Err(format!(
                    "{name} reaches {} ms ahead, more than the {ahead_max_ms} ms a schedule may",
                    t - now_ms
                ));
            }
            at = Some(t);
        }
        if seen == 0 {
            return Ok(());
        }
        if seen > 1 {
            return Err(format!(
                "give one of {} or {}, once",
                String::from_utf8_lossy(DELIVER_AT_HEADER),
                String::from_utf8_lossy(DELAY_HEADER)
            ));
        }
        self.headers
            .retain(|(k, _)| k != DELAY_HEADER && k != DELIVER_AT_HEADER);
        let Some(t) = at.filter(|&t| t > now_ms) else {
            return Ok(());
        };
        if let Some(exp) = &mut self.expires_at_ms {
            *exp = exp.saturating_add(t - now_ms);
        }
        self.headers
            .push((DELIVER_AT_HEADER.to_vec(), t.to_string().into_bytes()));
        Ok(())
    }
}

/// A decimal u64 of at most 20 digits, nothing else.
fn parse_ms(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
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
    /// A task canceled before anyone took it, whose entry asked to be kept
    /// (`cortex-on-cancel: dlq`). New variants go last: the index is stored.
    Canceled,
}

impl DeadReason {
    /// The reason's name as stored in the DLQ entry's `reason` field.
    pub fn name(self) -> &'static str {
        match self {
            DeadReason::MaxAttempts => "max_attempts",
            DeadReason::Expired => "expired",
            DeadReason::Stale => "stale",
            DeadReason::Rejected => "rejected",
            DeadReason::Canceled => "canceled",
        }
    }

    /// Parses a reason name.
    pub fn parse(s: &str) -> Option<DeadReason> {
        [
            DeadReason::MaxAttempts,
            DeadReason::Expired,
            DeadReason::Stale,
            DeadReason::Rejected,
            DeadReason::Canceled,
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

/// A [`Record`] by reference: what an append encodes without taking the op's fields, so
/// the op keeps them and whoever built it frees them (`BatchOutcome::spent`). bincode writes
/// it byte for byte as the `Record` it stands for (a test checks).
#[derive(Clone, Copy, Debug, Encode)]
pub struct RecordRef<'a> {
    /// Field/value pairs in the order given.
    pub fields: &'a Fields,
    /// Lane, expiry, producer, headers.
    pub meta: &'a Meta,
    /// Present on entries of a dead-letter stream.
    pub dead_letter: Option<&'a DeadLetter>,
}

impl RecordRef<'_> {
    /// Bytes of field names and values.
    pub fn payload_len(&self) -> usize {
        self.fields.iter().map(|(f, v)| f.len() + v.len()).sum()
    }
}

impl Record {
    /// This record by reference.
    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            fields: &self.fields,
            meta: &self.meta,
            dead_letter: self.dead_letter.as_deref(),
        }
    }

    /// A plain record with normal lane and no metadata, as `XADD` makes.
    pub fn plain(fields: Fields) -> Self {
        Record {
            fields,
            ..Record::default()
        }
    }

    /// Bytes of field names and values.
    pub fn payload_len(&self) -> usize {
        self.borrowed().payload_len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, Kind};

    /// An entry encoded from a `RecordRef` is the same bytes as from the `Record` it
    /// borrows, with and without metadata and a dead letter, and decodes back to it.
    #[test]
    fn a_borrowed_record_encodes_as_the_record() {
        let meta = Meta {
            lane: Lane::High,
            expires_at_ms: Some(7),
            producer: Some(b"agent-7".to_vec()),
            headers: vec![(b"h".to_vec(), b"v".to_vec())],
        };
        let plain = Record::plain(vec![(b"f".to_vec(), b"v".to_vec())]);
        let dead = Record {
            fields: vec![(b"a".to_vec(), vec![0; 300]), (Vec::new(), b"x".to_vec())],
            meta: meta.clone(),
            dead_letter: Some(Box::new(DeadLetter {
                origin_ns: 3,
                origin_stream: b"s".to_vec(),
                origin_id: StreamId::new(5, 1),
                group: b"g".to_vec(),
                consumer: b"c".to_vec(),
                reason: DeadReason::Expired,
                failures: 2,
                deliveries: 4,
                last_error: Some(b"boom".to_vec()),
                dead_at_ms: 9,
                original_meta: meta,
                header_fields: 1,
            })),
        };
        for rec in [plain, dead] {
            let owned = codec::encode(Kind::Entry, &rec);
            assert_eq!(codec::encode(Kind::Entry, &rec.borrowed()), owned);
            let back: Record = codec::decode(Kind::Entry, &owned).expect("decodes");
            assert_eq!(back, rec);
            assert_eq!(rec.borrowed().payload_len(), rec.payload_len());
        }
    }
}
