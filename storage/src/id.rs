//! Stream entry IDs (`ms-seq`), priority lanes, and a stream's full name.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};

/// A stream entry ID: milliseconds and a sequence number, ordered as a pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct StreamId {
    /// Milliseconds part (normally the publish time).
    pub ms: u64,
    /// Sequence number inside one millisecond.
    pub seq: u64,
}

impl StreamId {
    /// The smallest ID, `0-0`.
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    /// The largest ID, `18446744073709551615-18446744073709551615`.
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// Builds an ID from its two parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The ID right after this one, or `None` for [`StreamId::MAX`].
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The ID right before this one, or `None` for [`StreamId::MIN`].
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    /// True for `0-0`.
    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// Writes the ID's text, `ms-seq`, into the end of `buf` and returns it: the same
    /// text as `Display`, without `core::fmt` (every ID in a reply is formatted through
    /// here; `write!` cost about 880 instructions per ID, this about 250).
    pub fn text(self, buf: &mut [u8; ID_TEXT_MAX]) -> &[u8] {
        let mut at = ID_TEXT_MAX;
        at = decimal_before(buf, at, self.seq);
        at -= 1;
        buf[at] = b'-';
        at = decimal_before(buf, at, self.ms);
        &buf[at..]
    }

    /// Big-endian bytes: byte order equals ID order.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.ms.to_be_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Inverse of [`StreamId::to_bytes`]; `None` unless exactly 16 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<StreamId> {
        let ms: [u8; 8] = b.get(..8)?.try_into().ok()?;
        let seq: [u8; 8] = b.get(8..16)?.try_into().ok()?;
        if b.len() != 16 {
            return None;
        }
        Some(StreamId::new(
            u64::from_be_bytes(ms),
            u64::from_be_bytes(seq),
        ))
    }
}

/// The longest text of an ID: two 20-digit numbers and the dash.
pub const ID_TEXT_MAX: usize = 41;

/// "00" to "99": two digits per division, half the divisions of one digit at a time (an ID's
/// text is in every entry of a read's reply).
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `n`'s decimal digits so that they end at `buf[end]` (exclusive); returns where
/// they start. `buf[..end]` must hold them (20 bytes hold any `u64`).
pub fn decimal_before(buf: &mut [u8], mut end: usize, mut n: u64) -> usize {
    fn pair(buf: &mut [u8], end: &mut usize, two: u64) {
        let at = two as usize * 2;
        *end -= 2;
        buf[*end..*end + 2].copy_from_slice(&PAIRS[at..at + 2]);
    }
    while n >= 100 {
        pair(buf, &mut end, n % 100);
        n /= 100;
    }
    if n >= 10 {
        pair(buf, &mut end, n);
    } else {
        end -= 1;
        buf[end] = b'0' + n as u8;
    }
    end
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_TEXT_MAX];
        // Digits and a dash only.
        f.write_str(std::str::from_utf8(self.text(&mut buf)).map_err(|_| fmt::Error)?)
    }
}

/// Error from parsing a [`StreamId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError;

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Invalid stream ID specified as stream command argument")
    }
}

impl std::error::Error for ParseIdError {}

impl FromStr for StreamId {
    type Err = ParseIdError;

    /// Parses `ms-seq` or `ms` (sequence 0). Plain decimal digits only.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fn num(s: &str) -> Result<u64, ParseIdError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseIdError);
            }
            s.parse().map_err(|_| ParseIdError)
        }
        match s.split_once('-') {
            Some((ms, seq)) => Ok(StreamId::new(num(ms)?, num(seq)?)),
            None => Ok(StreamId::new(num(s)?, 0)),
        }
    }
}

/// How an append chooses its ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum IdSpec {
    /// `*`: milliseconds from the clock (never going backwards), next sequence.
    Auto,
    /// `ms-*`: the given milliseconds, next sequence.
    AutoSeq(u64),
    /// `ms-seq`: exactly this ID; it must exceed the stream's last ID.
    Explicit(StreamId),
}

/// Priority lane of an entry. Lower discriminant = handed out first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Lane {
    /// Production down, security incidents.
    Critical = 0,
    /// Urgent work.
    High = 1,
    /// The default lane; plain `XADD` entries live here.
    #[default]
    Normal = 2,
    /// Background work.
    Low = 3,
    /// Health checks and status updates.
    Heartbeat = 4,
}

impl Lane {
    /// All lanes, highest priority first.
    pub const ALL: [Lane; 5] = [
        Lane::Critical,
        Lane::High,
        Lane::Normal,
        Lane::Low,
        Lane::Heartbeat,
    ];

    /// Index 0..5 (0 = critical).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lane from its index.
    pub fn from_index(i: usize) -> Option<Lane> {
        Lane::ALL.get(i).copied()
    }

    /// The lane's lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Critical => "critical",
            Lane::High => "high",
            Lane::Normal => "normal",
            Lane::Low => "low",
            Lane::Heartbeat => "heartbeat",
        }
    }

    /// Parses a lane name (case-insensitive).
    pub fn parse(s: &str) -> Option<Lane> {
        Lane::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s))
    }
}

/// A stream's full name: namespace (RESP database) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct StreamKey {
    /// Namespace; the RESP front maps database N to namespace N.
    pub ns: u16,
    /// Stream name.
    pub name: Vec<u8>,
}

impl StreamKey {
    /// Builds a key.
    pub fn new(ns: u16, name: impl Into<Vec<u8>>) -> Self {
        StreamKey {
            ns,
            name: name.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_order_matches_byte_order() {
        let ids = [
            StreamId::new(0, 1),
            StreamId::new(1, 0),
            StreamId::new(1, u64::MAX),
            StreamId::new(256, 0),
            StreamId::MAX,
        ];
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_bytes() < w[1].to_bytes());
            assert_eq!(StreamId::from_bytes(&w[0].to_bytes()), Some(w[0]));
        }
    }

    #[test]
    fn text_is_the_decimal_pair() {
        // Every length of number, each side of every power of ten, and both ends.
        let mut ns = vec![0, 1, 9, u64::MAX, u64::MAX - 1];
        let mut p: u64 = 10;
        loop {
            ns.extend([p - 1, p, p + 1]);
            match p.checked_mul(10) {
                Some(q) => p = q,
                None => break,
            }
        }
        let mut buf = [0u8; ID_TEXT_MAX];
        for &ms in &ns {
            for &seq in &ns {
                let id = StreamId::new(ms, seq);
                let want = format!("{ms}-{seq}");
                assert_eq!(id.text(&mut buf), want.as_bytes());
                assert_eq!(id.to_string(), want);
                assert_eq!(want.parse::<StreamId>(), Ok(id));
            }
        }
    }

    #[test]
    fn parse_and_display() {
        assert_eq!("5-3".parse::<StreamId>(), Ok(StreamId::new(5, 3)));
        assert_eq!("7".parse::<StreamId>(), Ok(StreamId::new(7, 0)));
        assert!("".parse::<StreamId>().is_err());
        assert!("-1".parse::<StreamId>().is_err());
        assert!("1-".parse::<StreamId>().is_err());
        assert!("1-2-3".parse::<StreamId>().is_err());
        assert!("+1".parse::<StreamId>().is_err());
        assert!("18446744073709551616".parse::<StreamId>().is_err());
        assert_eq!(StreamId::new(12, 9).to_string(), "12-9");
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(StreamId::MIN.prev(), None);
        assert_eq!(StreamId::new(1, u64::MAX).next(), Some(StreamId::new(2, 0)));
        assert_eq!(StreamId::new(2, 0).prev(), Some(StreamId::new(1, u64::MAX)));
    }

    #[test]
    fn lanes() {
        assert_eq!(Lane::parse("HIGH"), Some(Lane::High));
        assert_eq!(Lane::parse("urgent"), None);
        for (i, l) in Lane::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
            assert_eq!(Lane::from_index(i), Some(*l));
        }
    }
}
