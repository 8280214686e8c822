//! Redis's radix-tree nodes, emulated so that `~` trimming removes what Redis would.
//!
//! Redis keeps a stream's entries in listpacks ("nodes") of at most `stream-node-max-entries`
//! entries (live and deleted) and `stream-node-max-bytes` bytes. `MAXLEN ~` and `MINID ~`
//! remove whole nodes only, so clients observe the node boundaries (`XADD ... MAXLEN ~ 555` on
//! 1,000 entries in 100-entry nodes leaves 600). We store no listpacks, but we keep, per
//! stream, where each node starts and how many entries it holds, and we estimate its byte size
//! with listpack's encoding rules. The open (tail) node lives in the stream's metadata, so an
//! append writes nothing extra; a node is written to the `nodes` keyspace when it is closed.
//!
//! Entries from before this tracking existed (a store written by an older version) are
//! "untracked": they are trimmed exactly, as they were then.

use bincode::{Decode, Encode};

use crate::id::StreamId;
use crate::record::Fields;

/// Largest listpack Redis builds (`STREAM_LISTPACK_MAX_SIZE`).
const LISTPACK_MAX_BYTES: u64 = 1 << 30;
/// Listpack header (total bytes u32, element count u16) plus its end byte.
const LISTPACK_FIXED_BYTES: u64 = 7;
/// Entry flags (`STREAM_ITEM_FLAG_SAMEFIELDS`).
const FLAG_SAMEFIELDS: i64 = 2;

/// `stream-node-max-entries` and `stream-node-max-bytes` (CONFIG SET changes them at run
/// time; they are not persisted, as in Redis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct NodeLimits {
    /// Entries (live and deleted) per node; 0 = no limit.
    pub entries: u64,
    /// Bytes per node; 0 = the listpack maximum.
    pub bytes: u64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            entries: 100,
            bytes: 4096,
        }
    }
}

impl NodeLimits {
    /// Redis's default work limit of a `~` trim without LIMIT: 100 nodes' worth of entries.
    pub fn approx_trim_limit(&self) -> u64 {
        match self.entries.saturating_mul(100) {
            0 => 10_000,
            n => n.min(1_000_000),
        }
    }
}

/// One node: its first (master) ID, its last ID and its counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Node {
    /// Master ID: the first entry ever put in the node (the node's key).
    pub first: StreamId,
    /// The last entry put in the node (deleted or not).
    pub last: StreamId,
    /// Entries not deleted.
    pub live: u64,
    /// Entries marked deleted (XDEL, exact trims inside the node).
    pub deleted: u64,
    /// Listpack bytes but for the header and the live/deleted counters.
    pub body_bytes: u64,
    /// Hash of the master entry's field names (entries with the same names are smaller).
    pub master_fields: u64,
}

fn backlen(encoded: u64) -> u64 {
    match encoded {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// Bytes of an integer element.
fn int_bytes(v: i64) -> u64 {
    let enc = match v {
        0..=127 => 1,
        -4096..=4095 => 2,
        -32_768..=32_767 => 3,
        -8_388_608..=8_388_607 => 4,
        -2_147_483_648..=2_147_483_647 => 5,
        _ => 9,
    };
    enc + backlen(enc)
}

fn uint_bytes(v: u64) -> u64 {
    int_bytes(i64::try_from(v).unwrap_or(i64::MAX))
}

/// listpack's `lpStringToInt64`: strict decimal that fits an i64, no leading zeros or '+'.
fn as_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits[0] == b'0' && (digits.len() > 1 || s.len() > 1))
    {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Bytes of a string element (listpack stores integer-looking strings as integers).
fn str_bytes(s: &[u8]) -> u64 {
    if let Some(v) = as_int(s) {
        return int_bytes(v);
    }
    let n = s.len() as u64;
    let enc = match n {
        0..=63 => 1 + n,
        64..=4095 => 2 + n,
        _ => 5 + n,
    };
    enc + backlen(enc)
}

/// A stable hash of an entry's field names (FNV-1a over length-prefixed names).
fn names_hash(fields: &Fields) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for (f, _) in fields {
        for b in (f.len() as u64).to_le_bytes() {
            eat(b);
        }
        for &b in f {
            eat(b);
        }
    }
    h
}

fn delta(a: u64, b: u64) -> i64 {
    i64::try_from(a.wrapping_sub(b)).unwrap_or(i64::MAX)
}

impl Node {
    /// A new node holding one entry.
    pub(crate) fn new(id: StreamId, fields: &Fields) -> Node {
        let master: u64 = uint_bytes(fields.len() as u64)
            + fields.iter().map(|(f, _)| str_bytes(f)).sum::<u64>()
            + int_bytes(0);
        let mut n = Node {
            first: id,
            last: id,
            live: 0,
            deleted: 0,
            body_bytes: master,
            master_fields: names_hash(fields),
        };
        n.push(id, fields);
        n
    }

    /// The listpack's size in bytes.
    pub fn bytes(&self) -> u64 {
        LISTPACK_FIXED_BYTES + uint_bytes(self.live) + uint_bytes(self.deleted) + self.body_bytes
    }

    /// Redis's test in `streamAppendItem`: must an entry of these fields start a new node?
    pub(crate) fn is_full_for(&self, fields: &Fields, lim: NodeLimits) -> bool {
        let max_bytes = match lim.bytes {
            0 => LISTPACK_MAX_BYTES,
            b => b.min(LISTPACK_MAX_BYTES),
        };
        let incoming: u64 = fields.iter().map(|(f, v)| (f.len() + v.len()) as u64).sum();
        if self.bytes() + incoming >= max_bytes {
            return true;
        }
        lim.entries != 0 && self.live + self.deleted >= lim.entries
    }

    /// Adds an entry (its ID above every ID in the node).
    pub(crate) fn push(&mut self, id: StreamId, fields: &Fields) {
        let same = names_hash(fields) == self.master_fields;
        let n = fields.len() as u64;
        let mut b = int_bytes(if same { FLAG_SAMEFIELDS } else { 0 })
            + int_bytes(delta(id.ms, self.first.ms))
            + int_bytes(delta(id.seq, self.first.seq));
        if !same {
            b += uint_bytes(n) + fields.iter().map(|(f, _)| str_bytes(f)).sum::<u64>();
        }
        b += fields.iter().map(|(_, v)| str_bytes(v)).sum::<u64>();
        b += uint_bytes(if same { n + 3 } else { 2 * n + 4 });
        self.body_bytes += b;
        self.live += 1;
        self.last = id;
    }

    /// Marks one live entry deleted.
    pub(crate) fn mark_deleted(&mut self) {
        debug_assert!(self.live > 0, "node live count underflow");
        self.live = self.live.saturating_sub(1);
        self.deleted += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, value: &str) -> Fields {
        vec![(name.as_bytes().to_vec(), value.as_bytes().to_vec())]
    }

    #[test]
    fn integers_and_strings_are_sized_as_listpack_does() {
        assert_eq!(str_bytes(b"5"), 2);
        assert_eq!(str_bytes(b"05"), 4);
        assert_eq!(str_bytes(b"1000"), 3);
        assert_eq!(str_bytes(b"xitem"), 7);
        assert_eq!(str_bytes(&[b'x'; 100]), 2 + 100 + 1);
        assert_eq!(int_bytes(-1), 3);
        assert_eq!(int_bytes(1 << 40), 10);
    }

    #[test]
    fn hundred_small_entries_fill_one_node_by_count() {
        let lim = NodeLimits::default();
        let mut n = Node::new(StreamId::new(1, 0), &f("xitem", "0"));
        for i in 1..100u64 {
            assert!(!n.is_full_for(&f("xitem", &i.to_string()), lim));
            n.push(StreamId::new(1, i), &f("xitem", &i.to_string()));
        }
        assert!(n.is_full_for(&f("xitem", "100"), lim));
        assert!(n.bytes() < 4096, "{}", n.bytes());
    }

    #[test]
    fn big_entries_fill_a_node_by_bytes() {
        let lim = NodeLimits::default();
        let v = "v".repeat(1000);
        let mut n = Node::new(StreamId::new(1, 0), &f("f", &v));
        let mut i = 1;
        while !n.is_full_for(&f("f", &v), lim) {
            n.push(StreamId::new(1, i), &f("f", &v));
            i += 1;
        }
        assert_eq!(n.live, 4, "a fifth 1000-byte entry would reach 4096 bytes");
    }
}
