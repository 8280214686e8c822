//! Operations that change state, their replies, and the events they raise.
//!
//! Every state change is an [`Op`] applied through [`crate::Store::apply`]; a batch of ops is
//! one atomic fjall commit with one fsync. A batch has a stable, versioned encoding
//! ([`encode_batch`] / [`decode_batch`], through [`crate::codec`]), so it can be written to a
//! replicated log and applied on another node with the same result.

use bincode::{Decode, Encode};

use crate::codec::{self, Kind};
use crate::id::{IdSpec, Lane, StreamId, StreamKey};
use crate::meta::DeliveryPolicy;
use crate::query::DlqFilter;
use crate::record::{DeadReason, Fields, Meta, Record};

/// How to trim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum TrimStrategy {
    /// Keep at most this many entries.
    MaxLen(u64),
    /// Remove entries with an ID below this one.
    MinId(StreamId),
    /// Remove entries older than this many ms (by ID time) at the op's `now_ms`.
    MaxAgeMs(u64),
    /// Remove the oldest entries until fields and values take at most this many bytes.
    MaxBytes(u64),
}

/// A trim request.
///
/// Encoded as the strategy, one flags byte, then the limit. The flags byte was `approx`
/// alone (a bool: 0 or 1) before `refs` existed, so every batch written then decodes
/// unchanged: bit 0 is `approx`, bits 1-2 the [`RefPolicy`] (0 `KeepRef`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trim {
    /// What to keep.
    pub strategy: TrimStrategy,
    /// `~`: the store may leave more entries than asked (it trims exactly, up to `limit`).
    pub approx: bool,
    /// At most this many entries removed by this trim.
    pub limit: Option<u64>,
    /// What trimming does about the groups' references to the entries it removes (Redis
    /// 8.2's XTRIM/XADD KEEPREF, DELREF, ACKED).
    pub refs: RefPolicy,
}

impl Trim {
    /// A trim that keeps the groups' references (XTRIM's default).
    pub fn new(strategy: TrimStrategy, approx: bool, limit: Option<u64>) -> Trim {
        Trim {
            strategy,
            approx,
            limit,
            refs: RefPolicy::KeepRef,
        }
    }
}

impl Encode for Trim {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        e: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.strategy.encode(e)?;
        let refs: u8 = match self.refs {
            RefPolicy::KeepRef => 0,
            RefPolicy::DelRef => 1,
            RefPolicy::Acked => 2,
        };
        (u8::from(self.approx) | refs << 1).encode(e)?;
        self.limit.encode(e)
    }
}

impl<C> Decode<C> for Trim {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        d: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let strategy = TrimStrategy::decode(d)?;
        let flags = u8::decode(d)?;
        let refs = match flags >> 1 {
            0 => RefPolicy::KeepRef,
            1 => RefPolicy::DelRef,
            2 => RefPolicy::Acked,
            _ => {
                return Err(bincode::error::DecodeError::Other(
                    "trim flags out of range",
                ))
            }
        };
        Ok(Trim {
            strategy,
            approx: flags & 1 == 1,
            limit: Option::<u64>::decode(d)?,
            refs,
        })
    }
}

bincode::impl_borrow_decode!(Trim);

/// What a deletion does about the groups' references to an entry (Redis 8.2's XDELEX,
/// XACKDEL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub enum RefPolicy {
    /// Delete the entry; the groups' pending lists keep their references (as XDEL).
    #[default]
    KeepRef,
    /// Delete the entry and every group's pending reference to it.
    DelRef,
    /// Delete the entry only once every group has read and acknowledged it.
    Acked,
}

/// Why a consumer gives entries back (Redis 8.8's XNACK modes), and what the group's
/// delivery policy makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum NackMode {
    /// The consumer is shutting down, no fault of the entry's: ready for the next read at
    /// once, its delivery count one lower, no failed attempt counted.
    Silent,
    /// The consumer could not process it: a failed attempt. With a delivery policy, retry
    /// after the backoff or dead-letter at `max_attempts` (as `CX.NACK`); without one, ready
    /// for the next read at once. The delivery count stays.
    Fail,
    /// The entry is bad: dead-lettered at once with reason `rejected` (as `CX.NACK ...
    /// REJECT`).
    Fatal,
}

/// What a deletion did to one entry ([`Reply::Deletions`]); Redis 8.2's reply codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// No such entry (-1).
    NotFound,
    /// Deleted (1).
    Deleted,
    /// Kept: a group has not read or not acknowledged it yet ([`RefPolicy::Acked`], 2).
    Referenced,
}

impl Deletion {
    /// Redis's reply code.
    pub fn code(self) -> i64 {
        match self {
            Deletion::NotFound => -1,
            Deletion::Deleted => 1,
            Deletion::Referenced => 2,
        }
    }
}

/// Where a group starts or is moved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum GroupStart {
    /// `$`: the stream's last ID.
    Last,
    /// An explicit ID (`0` = from the beginning).
    Id(StreamId),
}

/// What a group read returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ReadFrom {
    /// `>`: due retries, then entries never delivered to the group.
    New,
    /// An explicit ID: the consumer's own pending entries after it.
    History(StreamId),
}

/// Changes to some fields of a group's delivery policy; the others keep their value (or
/// the default, for a group without a policy). Applied by the writer, so concurrent
/// changes of different fields never lose one another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct PolicyPatch {
    /// New `max_attempts`.
    pub max_attempts: Option<u32>,
    /// New backoff steps.
    pub backoff_ms: Option<Vec<u64>>,
    /// New ack wait (`Some(None)`: none).
    pub ack_wait_ms: Option<Option<u64>>,
    /// New maximum age (`Some(None)`: none).
    pub max_age_ms: Option<Option<u64>>,
    /// New dead-letter stream.
    pub dead_letter: Option<Vec<u8>>,
}

impl PolicyPatch {
    /// The policy after the patch.
    pub fn apply(&self, current: Option<DeliveryPolicy>) -> DeliveryPolicy {
        let mut p = current.unwrap_or_default();
        if let Some(v) = self.max_attempts {
            p.max_attempts = v;
        }
        if let Some(v) = &self.backoff_ms {
            p.backoff_ms = v.clone();
        }
        if let Some(v) = self.ack_wait_ms {
            p.ack_wait_ms = v;
        }
        if let Some(v) = self.max_age_ms {
            p.max_age_ms = v;
        }
        if let Some(v) = &self.dead_letter {
            p.dead_letter = v.clone();
        }
        p
    }
}

/// A state change.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[non_exhaustive]
pub enum Op {
    /// XADD / CX.PUBLISH.
    Append {
        /// Target stream.
        stream: StreamKey,
        /// ID choice.
        id: IdSpec,
        /// Field/value pairs (at least one).
        fields: Fields,
        /// Lane, TTL, producer, headers.
        meta: Meta,
        /// A repeat within the window returns the first ID and stores nothing.
        idempotency_key: Option<Vec<u8>>,
        /// Do not create a missing stream (reply `Nil`).
        no_mkstream: bool,
        /// Trim after appending.
        trim: Option<Trim>,
    },
    /// XDEL.
    Delete {
        /// Stream.
        stream: StreamKey,
        /// IDs to delete.
        ids: Vec<StreamId>,
    },
    /// XTRIM.
    Trim {
        /// Stream.
        stream: StreamKey,
        /// How.
        trim: Trim,
    },
    /// XSETID.
    SetId {
        /// Stream.
        stream: StreamKey,
        /// New last ID.
        last_id: StreamId,
        /// New entries-added counter.
        entries_added: Option<u64>,
        /// New max-deleted-entry-id.
        max_deleted_id: Option<StreamId>,
    },
    /// DEL / UNLINK of a stream.
    DeleteStream {
        /// Stream.
        stream: StreamKey,
    },
    /// RENAME: moves a stream with its groups. `replace` overwrites an existing target.
    RenameStream {
        /// Source.
        from: StreamKey,
        /// Target.
        to: StreamKey,
        /// Replace an existing target (RENAME) or fail (RENAMENX).
        replace: bool,
    },
    /// FLUSHDB: deletes every stream of a namespace.
    FlushNamespace {
        /// Namespace.
        ns: u16,
    },
    /// XGROUP CREATE.
    CreateGroup {
        /// Stream.
        stream: StreamKey,
        /// Group name.
        group: Vec<u8>,
        /// Start position.
        start: GroupStart,
        /// Create the stream if missing.
        mkstream: bool,
        /// ENTRIESREAD.
        entries_read: Option<u64>,
        /// The group's delivery policy from the start (`None`: Redis semantics).
        policy: Option<DeliveryPolicy>,
    },
    /// XGROUP SETID.
    SetGroupId {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// New position.
        start: GroupStart,
        /// ENTRIESREAD.
        entries_read: Option<u64>,
    },
    /// XGROUP DESTROY.
    DestroyGroup {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
    },
    /// XGROUP CREATECONSUMER.
    CreateConsumer {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// Consumer.
        consumer: Vec<u8>,
    },
    /// XGROUP DELCONSUMER.
    DeleteConsumer {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// Consumer.
        consumer: Vec<u8>,
    },
    /// CX.POLICY: sets or clears a group's delivery policy.
    SetPolicy {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// `None` returns the group to plain Redis semantics.
        policy: Option<DeliveryPolicy>,
    },
    /// CX.POLICY with options: changes some fields of a group's policy, atomically.
    PatchPolicy {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// The fields to change.
        patch: PolicyPatch,
    },
    /// XREADGROUP over one or more streams, as one op: every stream's group is checked
    /// before anything is handed out, so a missing group leaves no trace on the others.
    ReadGroup {
        /// Streams and where to read each from.
        streams: Vec<(StreamKey, ReadFrom)>,
        /// Group.
        group: Vec<u8>,
        /// Consumer (created if missing).
        consumer: Vec<u8>,
        /// COUNT per stream (`None`: no limit for history; the store's read limit for new
        /// entries).
        count: Option<usize>,
        /// NOACK: do not add to the pending list.
        noack: bool,
        /// A blocked reader's attempt after a wake-up: when no stream can hand anything out
        /// it changes nothing (not even the consumer's seen-time), so idle wake-ups write no
        /// log entries. A first attempt always records that the consumer was seen.
        retry: bool,
    },
    /// XACK.
    Ack {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// IDs.
        ids: Vec<StreamId>,
    },
    /// CX.NACK: counts a failed attempt; retries after the backoff or dead-letters.
    Nack {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// IDs.
        ids: Vec<StreamId>,
        /// The consumer's error text.
        error: Option<Vec<u8>>,
        /// Dead-letter at once with reason `rejected`.
        reject: bool,
    },
    /// XCLAIM.
    Claim {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// New owner.
        consumer: Vec<u8>,
        /// Only entries idle at least this long.
        min_idle_ms: u64,
        /// IDs.
        ids: Vec<StreamId>,
        /// IDLE / TIME: the delivery time to record (default now).
        delivery_time_ms: Option<u64>,
        /// RETRYCOUNT.
        retry_count: Option<u64>,
        /// FORCE.
        force: bool,
        /// JUSTID.
        justid: bool,
        /// LASTID.
        last_id: Option<StreamId>,
    },
    /// XAUTOCLAIM.
    AutoClaim {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// New owner.
        consumer: Vec<u8>,
        /// Only entries idle at least this long.
        min_idle_ms: u64,
        /// Scan start.
        start: StreamId,
        /// COUNT.
        count: usize,
        /// JUSTID.
        justid: bool,
    },
    /// Drives time: ack timeouts, due retries, idempotency-key expiry, garbage collection.
    Tick,
    /// Puts dead letters back on their origin streams.
    DlqRedrive {
        /// The dead-letter stream.
        dlq: StreamKey,
        /// Which entries.
        filter: DlqFilter,
        /// At most this many.
        limit: usize,
    },
    /// A read inside a batch: sees the batch's earlier writes and changes nothing (so a
    /// transaction's reads and writes are one atomic batch).
    Query(crate::query::Query),
    /// Deletes dead letters.
    DlqPurge {
        /// The dead-letter stream.
        dlq: StreamKey,
        /// Which entries.
        filter: DlqFilter,
        /// At most this many.
        limit: usize,
    },
    /// "In progress": the consumer still works on these deliveries. Each one it still owns
    /// (delivered, not failed since) gets a fresh ack deadline (`now + ack_wait`) and its
    /// idle time restarts; the delivery count does not change. Replies with how many were
    /// extended, so a consumer learns when one was taken from it.
    Progress {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// The consumer that holds them.
        consumer: Vec<u8>,
        /// IDs.
        ids: Vec<StreamId>,
    },
    // New variants go last: the bincode encoding of a batch numbers them in order.
    /// CONFIG SET stream-node-max-entries / stream-node-max-bytes: the node sizes later
    /// appends are placed by (in memory only, as in Redis; see [`crate::nodes`]).
    SetNodeLimits(crate::nodes::NodeLimits),
    /// SWAPDB: every stream of one namespace moves to the other, and back.
    SwapNamespaces {
        /// One namespace.
        a: u16,
        /// The other.
        b: u16,
    },
    /// A push delivery to one consumer: a group read of one stream whose reply carries each
    /// entry's attempt number ([`Reply::Delivered`]). When nothing can be handed out it
    /// changes nothing (as [`Op::ReadGroup`] with `retry`), so a mailbox's read that finds
    /// nothing writes nothing.
    Deliver {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// Consumer (created if missing).
        consumer: Vec<u8>,
        /// `New`: due retries, then new entries; `History(after)`: the consumer's own
        /// pending entries after `after`.
        from: ReadFrom,
        /// At most this many (at most the store's read limit).
        count: usize,
        /// Do not add to the pending list.
        noack: bool,
    },
    /// Cancels a task ([`crate::task`]): an unfinished task ends `canceled`; not yet handed
    /// out, it never is; held, it leaves the holders' pending lists and
    /// [`Event::TaskCanceled`] names each. Replies [`Reply::Task`]; an unknown task is
    /// [`crate::Error::NoSuchTask`], a finished one [`crate::Error::TaskFinished`].
    CancelTask {
        /// Task ID.
        task: Vec<u8>,
    },
    /// XNACK: gives pending entries back as `mode` says; `retry_count` then sets their
    /// delivery count. Entries not pending in the group are left alone. Replies
    /// [`Reply::Count`], the entries given back.
    NackMode {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// IDs.
        ids: Vec<StreamId>,
        /// Why.
        mode: NackMode,
        /// The delivery count to set (XNACK's RETRYCOUNT).
        retry_count: Option<u64>,
    },
    /// XREADGROUP with Redis 8's options, as [`Op::ReadGroup`] otherwise.
    /// - `claim` (8.4's `CLAIM min-idle-time`, every stream read as `>`): per stream, first
    ///   the group's entries handed out and idle at least that long (in ID order, from any
    ///   consumer), claimed by `consumer`, then new entries, `count` bounding both; with
    ///   `noack` claimed entries leave the pending list. Replies [`Reply::ClaimRead`].
    /// - `max_count` (8.10's `MAXCOUNT`): at most this many entries over all streams, the
    ///   first streams served first.
    /// - `max_bytes` (8.10's `MAXSIZE`): a soft cap on the reply's size ([`reply_bytes`] per
    ///   entry): no entry is handed out once the entries so far reach it (so the entry that
    ///   crosses it is the last, and one entry is always possible).
    ///
    /// Without `claim` it replies [`Reply::GroupRead`].
    ReadGroupEx {
        /// Streams and where to read each from.
        streams: Vec<(StreamKey, ReadFrom)>,
        /// Group.
        group: Vec<u8>,
        /// Consumer (created if missing).
        consumer: Vec<u8>,
        /// COUNT per stream.
        count: Option<usize>,
        /// NOACK.
        noack: bool,
        /// CLAIM: claim deliveries idle at least this many ms.
        claim: Option<u64>,
        /// MAXCOUNT.
        max_count: Option<usize>,
        /// MAXSIZE, bytes.
        max_bytes: Option<usize>,
    },
    /// XDELEX (and, with `ack`, XACKDEL): deletes entries, first acknowledging them in
    /// group `ack`, doing about the groups' references what `refs` says. Replies
    /// [`Reply::Deletions`], one per ID in order; a missing stream (or `ack` group) is
    /// [`Deletion::NotFound`] for each.
    DeleteEx {
        /// Stream.
        stream: StreamKey,
        /// Acknowledge in this group first (XACKDEL).
        ack: Option<Vec<u8>>,
        /// IDs, in the reply's order (a repeated ID is [`Deletion::NotFound`] the second
        /// time, as it is gone by then).
        ids: Vec<StreamId>,
        /// The groups' references.
        refs: RefPolicy,
    },
    /// XNACK ... FORCE (Redis 8.8): as [`Op::NackMode`], after making each ID that is in the
    /// stream but not pending in the group a pending entry owned by no consumer
    /// ([`crate::UNOWNED_CONSUMER`], shown with an empty name), never delivered (count 0,
    /// last delivery at time 0). Replies the count of entries given back, forced ones
    /// included.
    NackForce {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// IDs.
        ids: Vec<StreamId>,
        /// Why.
        mode: NackMode,
        /// The delivery count to set (XNACK's RETRYCOUNT).
        retry_count: Option<u64>,
    },
    /// XCFGSET (Redis 8.6): the stream's IDMP settings ([`crate::idmp`]); replies `Ok`.
    /// Changing either forgets the IDs every producer has kept.
    ConfigureIdmp {
        /// Stream (must exist).
        stream: StreamKey,
        /// IDMP-DURATION, seconds (1-86,400).
        duration_s: Option<u64>,
        /// IDMP-MAXSIZE, IDs per producer (1-10,000).
        maxsize: Option<u64>,
    },
}

/// One entry handed out by [`Op::Deliver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// ID.
    pub id: StreamId,
    /// Content (`None`: deleted from the stream while pending; history reads only).
    pub record: Option<Record>,
    /// How many times the group has handed it out, this time included (1: first delivery).
    pub attempt: u32,
}

/// An entry's size in a reply, as MAXSIZE counts it: its fields and values, and RESP's
/// framing of them and of the ID (an estimate of the encoded bytes, within a few percent
/// for small values).
pub fn reply_bytes(record: &Record) -> usize {
    // The entry's array, the ID's bulk string (up to 41 bytes) and the fields' array.
    let framing = 4 + 48 + 8;
    framing
        + record
            .fields
            .iter()
            .map(|(f, v)| f.len() + v.len() + 2 * 8)
            .sum::<usize>()
}

/// One entry of [`Reply::ClaimRead`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedEntry {
    /// ID.
    pub id: StreamId,
    /// Content.
    pub record: Record,
    /// Ms since its previous delivery (0: a new entry).
    pub idle_ms: u64,
    /// Its deliveries before this one (0: a new entry).
    pub deliveries: u64,
}

/// The reply to one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Done, nothing to report.
    Ok,
    /// `NOMKSTREAM` on a missing stream.
    Nil,
    /// A count (deleted, trimmed, acked, created ...).
    Count(u64),
    /// An appended entry's ID; `duplicate` when an idempotency key matched.
    Appended {
        /// The ID.
        id: StreamId,
        /// True when nothing was stored because the key was seen in the window.
        duplicate: bool,
    },
    /// Entries from a claim. `None` records are entries deleted from the stream while pending
    /// or claimed IDs (JUSTID).
    Entries(Vec<(StreamId, Option<Record>)>),
    /// A group read: per stream, in the op's order, the entries handed out (`None` records:
    /// entries deleted from the stream while pending, in history reads).
    GroupRead(Vec<Vec<(StreamId, Option<Record>)>>),
    /// A [`Op::Query`]'s answer.
    Answer(crate::query::Answer),
    /// [`Op::Deliver`]'s entries, in the order handed out.
    Delivered(Vec<Delivery>),
    /// XAUTOCLAIM's answer.
    AutoClaimed {
        /// Cursor for the next call (`0-0` when the scan is complete).
        next: StreamId,
        /// Claimed entries (records `None` with JUSTID).
        claimed: Vec<(StreamId, Option<Record>)>,
        /// IDs removed from the pending list because their entries were deleted.
        deleted: Vec<StreamId>,
    },
    /// A task after the op ([`Op::CancelTask`]).
    Task(Box<crate::task::TaskRecord>),
    /// [`Op::ReadGroupEx`] with `claim`: per stream, claimed entries then new ones.
    ClaimRead(Vec<Vec<ClaimedEntry>>),
    /// [`Op::DeleteEx`]: per ID, what became of it; `changes`: entries deleted, pending
    /// references removed and acknowledgements made (Redis counts each).
    Deletions {
        /// Per ID, in the op's order.
        each: Vec<Deletion>,
        /// Changes made.
        changes: u64,
    },
}

/// Something the broker may want to react to (wake readers, push, alert).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An entry was appended.
    Appended {
        /// Stream.
        stream: StreamKey,
        /// ID.
        id: StreamId,
        /// Lane.
        lane: Lane,
    },
    /// An entry was moved to a dead-letter stream.
    DeadLettered {
        /// Origin stream.
        stream: StreamKey,
        /// Origin ID.
        id: StreamId,
        /// Group.
        group: Vec<u8>,
        /// Consumer that last had it (may be empty).
        consumer: Vec<u8>,
        /// Why.
        reason: DeadReason,
        /// The dead-letter stream.
        dlq: StreamKey,
        /// The ID in the dead-letter stream (`None`: that stream's IDs are exhausted and the
        /// entry could not be stored).
        dlq_id: Option<StreamId>,
    },
    /// Trimming removed entries a group had not been handed yet.
    TrimmedUndelivered {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// How many.
        count: u64,
    },
    /// A pending retry became due: a consumer of the group should be given it.
    RetryReady {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
    },
    /// A stream was deleted (blocked readers must be released).
    StreamDeleted {
        /// Stream.
        stream: StreamKey,
    },
    /// A stream was renamed onto `to` (readers blocked on either key must re-check).
    Renamed {
        /// Old name.
        from: StreamKey,
        /// New name.
        to: StreamKey,
    },
    /// A group was destroyed (blocked readers must be released).
    GroupDestroyed {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
    },
    /// A group read handed out entries for the first time (for metrics: publish-to-delivery
    /// latency). Redeliveries are not included.
    Delivered {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// For each entry, the batch's clock minus the entry ID's milliseconds (its age).
        ages_ms: Vec<u64>,
    },
    /// A consumer reported failed attempts (CX.NACK, reject included).
    Nacked {
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// How many pending entries it failed.
        count: u64,
    },
    /// A task changed ([`crate::task`]): every change, in order, with its place in the
    /// task's history.
    Task {
        /// Task ID.
        task: Vec<u8>,
        /// The change.
        change: crate::task::TaskChange,
        /// The task's stream.
        stream: StreamKey,
        /// The task's entry.
        entry: StreamId,
    },
    /// A canceled task was held by a consumer: the holder should hear of it first.
    TaskCanceled {
        /// Task ID.
        task: Vec<u8>,
        /// Stream.
        stream: StreamKey,
        /// Group.
        group: Vec<u8>,
        /// The consumer that held it.
        consumer: Vec<u8>,
        /// The entry.
        id: StreamId,
    },
}

/// How an op counts toward Redis's "dirty" counter (changes since the last save), known
/// before the op is applied and completed by its reply.
pub(crate) enum Changes {
    /// Never a change (reads, ticks).
    None,
    /// One change when it succeeds.
    One,
    /// As many as the reply's count.
    Count,
    /// A group read: one per stream read with `>` that handed something out (Redis counts a
    /// read of many entries once, and a read of the consumer's own pending list not at all).
    GroupRead(Vec<bool>),
    /// Claims: one per claimed or dropped entry.
    Claimed,
}

impl Changes {
    pub(crate) fn of(op: &Op) -> Changes {
        match op {
            Op::Append { .. }
            | Op::SetId { .. }
            | Op::RenameStream { .. }
            | Op::SwapNamespaces { .. }
            | Op::CreateGroup { .. }
            | Op::SetGroupId { .. }
            | Op::DeleteConsumer { .. }
            | Op::SetPolicy { .. }
            | Op::PatchPolicy { .. }
            | Op::CancelTask { .. }
            | Op::ConfigureIdmp { .. } => Changes::One,
            Op::Delete { .. }
            | Op::Trim { .. }
            | Op::DeleteStream { .. }
            | Op::FlushNamespace { .. }
            | Op::DestroyGroup { .. }
            | Op::CreateConsumer { .. }
            | Op::Ack { .. }
            | Op::Nack { .. }
            | Op::DlqRedrive { .. }
            | Op::DlqPurge { .. }
            | Op::Progress { .. } => Changes::Count,
            Op::ReadGroup { streams, .. } => Changes::GroupRead(
                streams
                    .iter()
                    .map(|(_, from)| matches!(from, ReadFrom::New))
                    .collect(),
            ),
            Op::Deliver { from, .. } => Changes::GroupRead(vec![matches!(from, ReadFrom::New)]),
            Op::ReadGroupEx { streams, .. } => Changes::GroupRead(
                streams
                    .iter()
                    .map(|(_, from)| matches!(from, ReadFrom::New))
                    .collect(),
            ),
            Op::Claim { .. } | Op::AutoClaim { .. } => Changes::Claimed,
            Op::DeleteEx { .. } | Op::NackMode { .. } | Op::NackForce { .. } => Changes::Count,
            Op::Tick | Op::Query(_) | Op::SetNodeLimits(_) => Changes::None,
        }
    }

    pub(crate) fn count(&self, r: &crate::Result<Reply>) -> u64 {
        let Ok(r) = r else { return 0 };
        match (self, r) {
            (Changes::None, _) | (_, Reply::Nil) => 0,
            (_, Reply::Appended { duplicate, .. }) => u64::from(!duplicate),
            (Changes::One, _) => 1,
            (Changes::Count, Reply::Count(n)) => *n,
            (Changes::Count, Reply::Deletions { changes, .. }) => *changes,
            (Changes::Count, _) => 1,
            (Changes::GroupRead(new), Reply::GroupRead(per)) => new
                .iter()
                .zip(per)
                .filter(|(new, got)| **new && !got.is_empty())
                .count() as u64,
            (Changes::GroupRead(new), Reply::ClaimRead(per)) => new
                .iter()
                .zip(per)
                .filter(|(new, got)| **new && !got.is_empty())
                .count() as u64,
            (Changes::GroupRead(new), Reply::Delivered(got)) => {
                u64::from(new.first() == Some(&true) && !got.is_empty())
            }
            (Changes::Claimed, Reply::Entries(e)) => e.len() as u64,
            (
                Changes::Claimed,
                Reply::AutoClaimed {
                    claimed, deleted, ..
                },
            ) => (claimed.len() + deleted.len()) as u64,
            _ => 0,
        }
    }
}

/// What a batch did.
#[derive(Debug)]
pub struct BatchOutcome {
    /// One result per op, in order.
    pub replies: Vec<crate::Result<Reply>>,
    /// Events raised by the batch, in order.
    pub events: Vec<Event>,
    /// After this batch, the earliest moment [`Op::Tick`] has work (may be in the past:
    /// tick now); `None` when nothing time-driven is pending. The broker's timer sleeps
    /// until exactly this, as quinn-proto's `poll_timeout` tells its caller.
    pub next_deadline_ms: Option<u64>,
    /// Redis's "dirty" count of the batch: changes made, counted as Redis 7.4 counts them
    /// (INFO's `rdb_changes_since_last_save`).
    pub changes: u64,
    /// The batch's ops, handed back after the commit (the store reads them and keeps
    /// nothing of theirs), so that the caller frees their names, fields and IDs where it
    /// likes: on the thread that allocated them, where a free is cheapest.
    pub spent: Vec<Op>,
}

/// Encodes a writer batch (its ops and the leader's clock) for a replicated log: the
/// codec's envelope (version, kind, CRC) around a bincode 2 payload.
pub fn encode_batch(ops: &[Op], now_ms: u64) -> Vec<u8> {
    codec::encode(Kind::Batch, &(now_ms, ops))
}

/// Decodes [`encode_batch`]'s bytes; a failed check is an error, never a batch.
pub fn decode_batch(bytes: &[u8]) -> Result<(u64, Vec<Op>), String> {
    codec::decode(Kind::Batch, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`Trim`] as batches encoded it before it had `refs`.
    #[derive(Encode)]
    struct TrimBeforeRefs {
        strategy: TrimStrategy,
        approx: bool,
        limit: Option<u64>,
    }

    fn decode(bytes: &[u8]) -> Result<Trim, bincode::error::DecodeError> {
        bincode::decode_from_slice(bytes, bincode::config::standard()).map(|(t, _)| t)
    }

    #[test]
    fn a_trim_encoded_before_refs_decodes_as_keepref() {
        for (approx, limit) in [(false, None), (true, Some(7)), (true, None)] {
            let old = TrimBeforeRefs {
                strategy: TrimStrategy::MinId(StreamId::new(5, 1)),
                approx,
                limit,
            };
            let bytes = bincode::encode_to_vec(&old, bincode::config::standard()).unwrap();
            let want = Trim::new(TrimStrategy::MinId(StreamId::new(5, 1)), approx, limit);
            assert_eq!(decode(&bytes).unwrap(), want);
            // And a KEEPREF trim encodes exactly as before.
            let now = bincode::encode_to_vec(want, bincode::config::standard()).unwrap();
            assert_eq!(now, bytes);
        }
    }

    #[test]
    fn a_trim_round_trips_with_each_ref_policy() {
        for refs in [RefPolicy::KeepRef, RefPolicy::DelRef, RefPolicy::Acked] {
            for approx in [false, true] {
                let t = Trim {
                    refs,
                    ..Trim::new(TrimStrategy::MaxLen(3), approx, Some(2))
                };
                let bytes = bincode::encode_to_vec(t, bincode::config::standard()).unwrap();
                assert_eq!(decode(&bytes).unwrap(), t);
            }
        }
        // A flags byte no build wrote is refused, not misread.
        let mut bytes = bincode::encode_to_vec(
            Trim::new(TrimStrategy::MaxLen(3), false, None),
            bincode::config::standard(),
        )
        .unwrap();
        bytes[2] = 7 << 1;
        assert!(decode(&bytes).is_err());
    }
}
