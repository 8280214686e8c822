//! Persisted metadata records: streams, groups, consumers, pending entries, policies.

use bincode::{Decode, Encode};

use crate::codec::{self, Kind};
use crate::id::{Lane, StreamId};
use crate::nodes::Node;

/// Delivery policy of a consumer group. A group without one behaves exactly as in Redis 7.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DeliveryPolicy {
    /// A delivery not acked within this many ms counts as a failed attempt.
    pub ack_wait_ms: Option<u64>,
    /// Failed attempts before the entry is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Wait before retry N (1-based) is `backoff_ms[N-1]`, the last value repeating.
    pub backoff_ms: Vec<u64>,
    /// Entries older than this (by ID time) when they would be handed out go to the DLQ as
    /// `stale`.
    pub max_age_ms: Option<u64>,
    /// Dead-letter stream in the group's namespace.
    pub dead_letter: Vec<u8>,
}

/// Default dead-letter stream.
pub const DEFAULT_DLQ: &[u8] = b"cortex:dlq";

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            ack_wait_ms: Some(30_000),
            max_attempts: 3,
            backoff_ms: vec![5_000, 15_000],
            max_age_ms: None,
            dead_letter: DEFAULT_DLQ.to_vec(),
        }
    }
}

impl DeliveryPolicy {
    /// Most backoff steps a policy may list.
    pub const BACKOFF_STEPS_MAX: usize = 32;
    /// Largest `max_attempts`.
    pub const MAX_ATTEMPTS_MAX: u32 = 1_000;

    /// Backoff before the retry that follows failure number `failures` (1-based).
    pub fn backoff_after(&self, failures: u32) -> u64 {
        let i = (failures.max(1) - 1) as usize;
        self.backoff_ms
            .get(i)
            .or(self.backoff_ms.last())
            .copied()
            .unwrap_or(0)
    }
}

/// Per-stream metadata, rewritten in the same batch as every change to the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct StreamMeta {
    /// Internal ID: prefix of every key belonging to the stream (survives renames).
    pub stream_id: u64,
    /// Last generated ID (`last-generated-id`).
    pub last_id: StreamId,
    /// First entry's ID, `0-0` when empty (`recorded-first-entry-id`).
    pub first_id: StreamId,
    /// Entries stored.
    pub length: u64,
    /// Entries ever added (`entries-added`).
    pub entries_added: u64,
    /// Largest ID removed by XDEL (`max-deleted-entry-id`).
    pub max_deleted_id: StreamId,
    /// Entries stored per lane.
    pub lane_len: [u64; 5],
    /// Largest ID ever appended per lane (a group's lane is empty when its cursor is here).
    pub lane_last: [StreamId; 5],
    /// Field and value bytes stored.
    pub bytes: u64,
    /// Creation time (Unix ms).
    pub created_ms: u64,
    /// Entries trimmed before at least one group had them delivered.
    pub trimmed_undelivered: u64,
    /// Redis's last radix-tree node, the one appends go to ([`crate::nodes`]).
    pub tail: Option<Node>,
    /// Radix-tree nodes, the tail included.
    pub nodes: u64,
    /// Entries up to this ID were written before nodes were tracked (trimmed exactly).
    pub untracked_through: StreamId,
}

/// [`StreamMeta`] as format 1 stored it, before radix-tree nodes were tracked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct StreamMetaV1 {
    stream_id: u64,
    last_id: StreamId,
    first_id: StreamId,
    length: u64,
    entries_added: u64,
    max_deleted_id: StreamId,
    lane_len: [u64; 5],
    lane_last: [StreamId; 5],
    bytes: u64,
    created_ms: u64,
    trimmed_undelivered: u64,
}

impl StreamMeta {
    /// Decodes a stream's metadata in either layout.
    pub(crate) fn decode(bytes: &[u8]) -> Result<StreamMeta, String> {
        if bytes.get(1) == Some(&(Kind::StreamMeta as u8)) {
            let v: StreamMetaV1 = codec::decode(Kind::StreamMeta, bytes)?;
            return Ok(StreamMeta {
                stream_id: v.stream_id,
                last_id: v.last_id,
                first_id: v.first_id,
                length: v.length,
                entries_added: v.entries_added,
                max_deleted_id: v.max_deleted_id,
                lane_len: v.lane_len,
                lane_last: v.lane_last,
                bytes: v.bytes,
                created_ms: v.created_ms,
                trimmed_undelivered: v.trimmed_undelivered,
                tail: None,
                nodes: 0,
                untracked_through: if v.length > 0 {
                    v.last_id
                } else {
                    StreamId::MIN
                },
            });
        }
        codec::decode(Kind::StreamMetaNodes, bytes)
    }

    /// Encodes the metadata (current layout).
    pub(crate) fn encode(&self) -> Vec<u8> {
        codec::encode(Kind::StreamMetaNodes, self)
    }
}

/// Counters of a group, for INFO, metrics and the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct GroupCounters {
    /// Deliveries of new entries.
    pub delivered: u64,
    /// Re-deliveries (history reads, claims, retries).
    pub redelivered: u64,
    /// Acknowledged entries.
    pub acked: u64,
    /// Failed attempts (nacks plus ack timeouts).
    pub failures: u64,
    /// Entries sent to the dead-letter stream.
    pub dead_lettered: u64,
}

/// Per-group metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct GroupMeta {
    /// Internal ID: prefix of the group's pending, consumer and due keys.
    pub group_id: u64,
    /// Redis's `last-delivered-id`: the largest ID handed out.
    pub last_id: StreamId,
    /// Redis's `entries-read`; `None` when unknown.
    pub entries_read: Option<u64>,
    /// Per lane, the last ID handed out from it.
    pub lane_cursor: [StreamId; 5],
    /// Delivery policy; `None` = plain Redis semantics.
    pub policy: Option<DeliveryPolicy>,
    /// Consecutive hand-outs from a higher lane while a lower lane waited.
    pub streak: u32,
    /// Next consumer's internal ID.
    pub next_consumer_id: u64,
    /// Entries in the pending list.
    pub pending: u64,
    /// Pending entries whose retry is due and waiting for a consumer.
    pub ready: u64,
    /// Counters.
    pub counters: GroupCounters,
    /// After SETID moved the group back, IDs up to here may already be pending and need a
    /// look-up before they are handed out again.
    pub rewound_below: StreamId,
}

impl GroupMeta {
    /// Sets every lane cursor and the last ID to `id` (create and SETID).
    pub fn set_cursor(&mut self, id: StreamId) {
        self.last_id = id;
        self.lane_cursor = [id; 5];
    }

    /// The cursor of a lane.
    pub fn cursor(&self, lane: Lane) -> StreamId {
        self.lane_cursor[lane.index()]
    }
}

/// Per-consumer metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct ConsumerMeta {
    /// Internal ID: prefix of the consumer's own pending index.
    pub consumer_id: u64,
    /// Last time the consumer was seen (any read, claim or ack attempt).
    pub seen_ms: u64,
    /// Last time the consumer successfully got or claimed entries.
    pub active_ms: Option<u64>,
    /// Its pending entries.
    pub pending: u64,
}

/// Where a pending entry stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum PendingState {
    /// Handed to its consumer; with a policy's `ack_wait`, the deadline.
    Delivered {
        /// When it counts as failed if not acked.
        deadline_ms: Option<u64>,
    },
    /// Failed; waiting for its backoff to pass.
    RetryWait {
        /// When it may be handed out again.
        due_ms: u64,
    },
    /// Retry due; the next read of any consumer of the group gets it first.
    Ready,
}

/// The owner of a pending entry no consumer holds: one XNACK ... FORCE made pending
/// without a delivery. Consumer IDs count up from 0 and never reach it; its name is empty
/// (as Redis shows an unowned entry), and no consumer's counts include its entries.
pub const UNOWNED_CONSUMER: u64 = (1 << 63) - 1;

/// A pending entry (Redis's NACK): delivered, not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PendingEntry {
    /// Owning consumer's internal ID.
    pub consumer_id: u64,
    /// Last delivery time (Unix ms); idle time is measured from here.
    pub delivered_ms: u64,
    /// Redis's delivery count.
    pub deliveries: u64,
    /// Failed attempts.
    pub failures: u32,
    /// Retry state.
    pub state: PendingState,
    /// Last error text from a nack.
    pub last_error: Option<Vec<u8>>,
}

impl PendingEntry {
    /// The time at which the due index must look at this entry, if any.
    pub fn due_ms(&self) -> Option<u64> {
        match self.state {
            PendingState::Delivered { deadline_ms } => deadline_ms,
            PendingState::RetryWait { due_ms } => Some(due_ms),
            PendingState::Ready => None,
        }
    }
}

/// Stored value of an idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct IdempotencyRecord {
    /// The ID the first publish got.
    pub id: StreamId,
    /// When it was first seen (Unix ms).
    pub seen_ms: u64,
}

/// Store-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct SystemMeta {
    /// Next stream's internal ID.
    pub next_stream_id: u64,
    /// Next group's internal ID.
    pub next_group_id: u64,
    /// No idempotency-expiry key is older than this.
    pub idem_floor_ms: u64,
    /// Idempotency-expiry keys stored (so `due` never scans that keyspace).
    pub idem_keys: u64,
    /// Deleted streams or groups still have keys to remove.
    pub garbage_pending: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_stream_metadata_still_reads_with_its_entries_untracked() {
        let v1 = StreamMetaV1 {
            stream_id: 7,
            last_id: StreamId::new(5, 1),
            first_id: StreamId::new(1, 0),
            length: 3,
            entries_added: 4,
            bytes: 30,
            ..StreamMetaV1::default()
        };
        let m = StreamMeta::decode(&codec::encode(Kind::StreamMeta, &v1)).unwrap();
        assert_eq!((m.stream_id, m.length, m.entries_added), (7, 3, 4));
        assert_eq!((&m.tail, m.nodes), (&None, 0));
        assert_eq!(m.untracked_through, StreamId::new(5, 1));
        assert_eq!(StreamMeta::decode(&m.encode()), Ok(m));
    }
}
