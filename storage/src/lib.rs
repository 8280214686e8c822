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
//! ## Layout, bottom to top (each file imports only the floors below it; `scripts/layers`
//! checks that no import goes up)
//! - stored types and encodings: `id` (IDs, lanes, [`StreamKey`]), `error`, [`codec`] (the
//!   one record encoding: version byte, bincode 2, CRC32), [`keys`] (big-endian key
//!   encodings of every keyspace), `record`, `meta`, [`nodes`], [`task`]'s types, `overlay`
//!   (a batch's read-your-writes view), `keyspaces`;
//! - what a batch is: `ops` ([`Op`], [`Reply`], [`Event`]) and `query` ([`Query`] ->
//!   [`Answer`]);
//! - the kernel: `kernel` (the catalog, the batch's write context `Txn`, shared helpers)
//!   and [`group`]'s pending index;
//! - the domain files, each adding its ops as `Txn` methods: [`stream`] (append, trim,
//!   delete, XSETID), [`group`] (groups, consumers, pending entries, lanes, claim),
//!   [`task`]'s life, [`dlq`] (dead-letter moves, redrive, purge, garbage collection),
//!   [`policy`] (ack timeouts, nack, backoff, retries, the tick, [`Store::due`]);
//! - `read`: a [`Query`] evaluated against any consistent view;
//! - [`store`]: the facade: open, [`Store::apply`] (a batch of [`Op`]s = one atomic commit,
//!   each op dispatched to its domain file), [`Store::query`] (from the last commit; inside a
//!   batch it is [`Op::Query`], read-your-writes);
//! - [`maintenance`]: backup and the offline check, over the facade.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod codec;
mod config;
mod damage;
pub mod dlq;
mod error;
pub mod group;
mod id;
pub mod idmp;
mod kernel;
pub mod keys;
mod keyspaces;
pub mod maintenance;
mod meta;
pub mod nodes;
mod ops;
mod overlay;
pub mod policy;
mod query;
mod read;
mod record;
pub mod store;
pub mod stream;
pub mod task;

pub use config::{Durability, Limits, StoreConfig};
pub use damage::damaged_table_files;
pub use error::{Error, Result};
pub use group::PendingIndexFigures;
pub use id::{decimal_before, IdSpec, Lane, ParseIdError, StreamId, StreamKey, ID_TEXT_MAX};
pub use maintenance::{verify, BackupReport, Damage, VerifyReport};
pub use meta::{
    ConsumerMeta, DeliveryPolicy, GroupCounters, GroupMeta, IdempotencyRecord, PendingEntry,
    PendingState, StreamMeta, SystemMeta, DEFAULT_DLQ, UNOWNED_CONSUMER,
};
pub use ops::{
    decode_batch, encode_batch, reply_bytes, BatchOutcome, ClaimedEntry, Deletion, Delivery, Event,
    GroupStart, NackMode, Op, PolicyPatch, ReadFrom, RefPolicy, Reply, Trim, TrimStrategy,
};
pub use policy::DueReport;
pub use query::{
    Answer, ConsumerInfo, DlqFilter, GroupFull, GroupInfo, IdmpInfo, PendingInfo, PendingQuery,
    PendingSummary, Query, ReadStart, StreamFull, StreamInfo, StreamSummary,
};
pub use record::{
    DeadLetter, DeadReason, Entry, Fields, Meta, Record, DELAY_HEADER, DELIVER_AT_HEADER,
};
pub use store::Store;
pub use task::{
    TaskChange, TaskEvent, TaskFilter, TaskRecord, TaskState, CORRELATION_HEADER, KEEP_HEADER,
    ON_CANCEL_HEADER, PART_HEADER, TASK_HEADER, TASK_ID_MAX,
};
