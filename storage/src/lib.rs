//! # cortex-storage
//!
//! All durable state of the Cortex Bus broker, as a deterministic state machine over the
//! embedded LSM store fjall: streams with Redis-style IDs, consumer groups with Redis 7
//! semantics, five priority lanes, per-entry TTL, per-group delivery policies (ack timeout,
//! retries with backoff, freshness), dead letters, idempotent publish.
//!
//! No async runtime, no sockets, no clock: every operation that depends on time takes
//! `now_ms`. Given the same operations and the same times, the store reaches the same state.
//!
//! ## Layout
//! - [`store`]: open, [`Store::apply`] (a batch of [`Op`]s = one atomic commit), concurrent reads.
//! - [`stream`]: append, trim, delete, XSETID, range reads, XINFO STREAM.
//! - [`group`]: groups, consumers, pending entries, lanes, claim; XPENDING/XINFO reads.
//! - [`policy`]: ack timeouts, nack, backoff, retries, the tick, [`Store::due`].
//! - [`dlq`]: dead-letter moves, redrive, purge, garbage collection.
//! - [`read`]: the one read API: [`Query`] -> [`Answer`], from the last commit
//!   ([`Store::query`]) or inside a batch ([`Op::Query`], read-your-writes).
//! - [`codec`]: the one record encoding (version byte, bincode 2, CRC32).
//! - [`keys`]: big-endian key encodings of every keyspace.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod codec;
mod config;
pub mod dlq;
mod error;
pub mod group;
mod id;
pub mod keys;
pub mod maintenance;
mod meta;
pub mod nodes;
mod ops;
mod overlay;
pub mod policy;
pub mod read;
mod record;
pub mod store;
pub mod stream;
pub mod task;

pub use config::{Durability, Limits, StoreConfig};
pub use error::{Error, Result};
pub use group::PendingIndexFigures;
pub use id::{IdSpec, Lane, ParseIdError, StreamId};
pub use maintenance::{damaged_table_files, verify, BackupReport, Damage, VerifyReport};
pub use meta::{
    ConsumerMeta, DeliveryPolicy, GroupCounters, GroupMeta, IdempotencyRecord, PendingEntry,
    PendingState, StreamMeta, SystemMeta, DEFAULT_DLQ,
};
pub use ops::{
    decode_batch, encode_batch, reply_bytes, BatchOutcome, ClaimedEntry, Deletion, Delivery,
    DlqFilter, Event, GroupStart, NackMode, Op, PolicyPatch, ReadFrom, RefPolicy, Reply, StreamKey,
    Trim, TrimStrategy,
};
pub use policy::DueReport;
pub use read::{
    Answer, ConsumerInfo, GroupFull, GroupInfo, PendingInfo, PendingQuery, PendingSummary, Query,
    ReadStart, StreamFull, StreamInfo, StreamSummary,
};
pub use record::{
    DeadLetter, DeadReason, Entry, Fields, Meta, Record, DELAY_HEADER, DELIVER_AT_HEADER,
};
pub use store::Store;
pub use task::{
    TaskChange, TaskEvent, TaskFilter, TaskRecord, TaskState, CORRELATION_HEADER, KEEP_HEADER,
    ON_CANCEL_HEADER, PART_HEADER, TASK_HEADER, TASK_ID_MAX,
};
