//! The one place that turns stored values into bytes and back.
//!
//! Every value in every keyspace is an envelope:
//!
//! ```text
//! [format version: u8][kind: u8][crc32 of everything else: u32 LE][bincode 2 payload]
//! ```
//!
//! The CRC (crc32fast) covers the version, the kind and the payload. It is checked on every
//! read; a mismatch, an unknown version or kind, trailing bytes or a payload that does not
//! decode is a corruption error and never data. Changing a payload layout means bumping
//! [`FORMAT_VERSION`] and teaching [`decode`] the old one.

use bincode::{Decode, Encode};

/// The current format version, written into every value.
pub const FORMAT_VERSION: u8 = 1;

/// Header length: version, kind, CRC.
pub const HEADER_LEN: usize = 6;

/// Upper bound on any one decoded value; bounds allocation from a corrupt length prefix.
pub const DECODE_LIMIT_BYTES: usize = 64 << 20;

/// What a value is. Stored in the envelope so a value read from the wrong place is caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A stream entry ([`crate::Record`]).
    Entry = 1,
    /// Stream metadata.
    StreamMeta = 2,
    /// Consumer group metadata.
    GroupMeta = 3,
    /// Consumer metadata.
    ConsumerMeta = 4,
    /// A pending entry (delivered, not yet acknowledged).
    Pending = 5,
    /// An idempotency key's original ID.
    Idempotency = 6,
    /// Store-wide counters.
    System = 7,
    /// Garbage awaiting collection.
    Garbage = 8,
    /// A writer batch: the leader's `now_ms` and its ops ([`crate::ops::encode_batch`]).
    Batch = 9,
    /// Stream metadata with radix-tree node tracking (replaces `StreamMeta`, still read).
    StreamMetaNodes = 10,
    /// A closed radix-tree node ([`crate::nodes::Node`]).
    Node = 11,
    /// A replicated log's progress, opaque to storage ([`crate::Store::apply_logged`]).
    Progress = 12,
    /// A task ([`crate::task::TaskRecord`]).
    Task = 13,
    /// A task counter (open tasks of a stream).
    TaskCount = 14,
    /// Store-wide task counters.
    TaskSys = 15,
    /// A task with its deadline and keep time (replaces `Task`, still read).
    TaskV2 = 16,
    /// Store-wide task counters with the deadline and keep indexes' (replaces `TaskSys`,
    /// still read).
    TaskSysV2 = 17,
    /// A stream's IDMP settings and counters ([`crate::idmp`]).
    IdmpStream = 18,
    /// One producer's kept IDMP IDs.
    IdmpProducer = 19,
    /// An IDMP ID in its producer's order.
    IdmpOrder = 20,
    /// A kept IDMP ID's entry and expiry.
    IdmpRecord = 21,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>()
}

/// Encodes `value` as an envelope of the given kind.
pub fn encode<T: Encode>(kind: Kind, value: &T) -> Vec<u8> {
    // Sized first (a pass that only adds lengths), so the buffer is allocated once: grown
    // from the header's 6 bytes as bincode writes, an entry's record was reallocated five
    // times (3-6 % of an XADD's instructions on mimalloc, README seventh session).
    let mut sizer =
        bincode::enc::EncoderImpl::new(bincode::enc::write::SizeWriter::default(), config());
    let size = match value.encode(&mut sizer) {
        Ok(()) => sizer.into_writer().bytes_written,
        Err(_) => 0,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + size);
    out.extend_from_slice(&[FORMAT_VERSION, kind as u8, 0, 0, 0, 0]);
    // Encoding into a Vec cannot fail for our types (no custom encoders, no size limit hit on
    // the write side: sizes are validated before a record is built).
    if let Err(e) = bincode::encode_into_std_write(value, &mut out, config()) {
        unreachable!("encoding into a Vec failed: {e}");
    }
    let crc = checksum(&out);
    out[2..6].copy_from_slice(&crc.to_le_bytes());
    out
}

fn checksum(envelope: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&envelope[..2]);
    h.update(&envelope[HEADER_LEN..]);
    h.finalize()
}

/// Checks the envelope and decodes its payload. The error text says what failed.
pub fn decode<T: Decode<()>>(kind: Kind, bytes: &[u8]) -> Result<T, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "value is {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(format!("unknown format version {}", bytes[0]));
    }
    if bytes[1] != kind as u8 {
        return Err(format!("expected kind {}, found {}", kind as u8, bytes[1]));
    }
    let stored = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let actual = checksum(bytes);
    if stored != actual {
        return Err(format!(
            "CRC mismatch: stored {stored:08x}, computed {actual:08x}"
        ));
    }
    let (value, used) = bincode::decode_from_slice(&bytes[HEADER_LEN..], config())
        .map_err(|e| format!("payload does not decode: {e}"))?;
    if used != bytes.len() - HEADER_LEN {
        return Err(format!(
            "{} trailing bytes after the payload",
            bytes.len() - HEADER_LEN - used
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Meta, Record};
    use crate::Lane;

    fn sample() -> Record {
        Record {
            fields: vec![(b"f".to_vec(), b"v".to_vec())],
            meta: Meta {
                lane: Lane::High,
                expires_at_ms: Some(99),
                producer: Some(b"harold".to_vec()),
                headers: vec![(b"correlation-id".to_vec(), b"42".to_vec())],
            },
            dead_letter: None,
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let bytes = encode(Kind::Entry, &r);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Record>(Kind::Entry, &bytes), Ok(r));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let bytes = encode(Kind::Entry, &sample());
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode::<Record>(Kind::Entry, &b).is_err(), "flip {i}:{bit}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode::<Record>(Kind::Entry, &data);
            // With a valid envelope around random bytes, the payload decoder must cope too.
            let mut env = vec![FORMAT_VERSION, Kind::Entry as u8, 0, 0, 0, 0];
            env.extend_from_slice(&data);
            let crc = checksum(&env);
            env[2..6].copy_from_slice(&crc.to_le_bytes());
            if let Ok(r) = decode::<Record>(Kind::Entry, &env) {
                proptest::prop_assert_eq!(decode::<Record>(Kind::Entry, &encode(Kind::Entry, &r)), Ok(r));
            }
        }

        #[test]
        fn records_round_trip(
            fields in proptest::collection::vec((proptest::collection::vec(proptest::num::u8::ANY, 0..16), proptest::collection::vec(proptest::num::u8::ANY, 0..64)), 1..8),
            lane in 0usize..5,
            expiry in proptest::option::of(proptest::num::u64::ANY),
        ) {
            let r = Record {
                fields,
                meta: Meta { lane: Lane::from_index(lane).unwrap_or_default(), expires_at_ms: expiry, ..Meta::default() },
                dead_letter: None,
            };
            proptest::prop_assert_eq!(decode::<Record>(Kind::Entry, &encode(Kind::Entry, &r)), Ok(r));
        }
    }

    #[test]
    fn wrong_kind_truncation_and_trailing_bytes() {
        let bytes = encode(Kind::Entry, &sample());
        assert!(decode::<Record>(Kind::Pending, &bytes).is_err());
        assert!(decode::<Record>(Kind::Entry, &bytes[..bytes.len() - 1]).is_err());
        assert!(decode::<Record>(Kind::Entry, &bytes[..3]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        // Recompute the CRC so only the trailing byte is wrong.
        let crc = checksum(&longer);
        longer[2..6].copy_from_slice(&crc.to_le_bytes());
        let err = decode::<Record>(Kind::Entry, &longer).unwrap_err();
        assert!(err.contains("trailing"), "{err}");
    }
}
