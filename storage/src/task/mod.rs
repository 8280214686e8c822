//! Tasks: a durable state beside an entry that carries [`TASK_HEADER`].
//!
//! A task is an entry like any other (any stream, any group, any front) whose header
//! `cortex-task-id` names it. Appending it creates the task (`submitted`); from then on the
//! calls a worker already makes move its state, each in the commit that makes the call:
//!
//! | what happens                                     | state after                 |
//! |--------------------------------------------------|-----------------------------|
//! | a group hands the entry out                      | `working`                   |
//! | a reply part `progress` (correlation = task)     | `working`                   |
//! | a reply part `input-required`                    | `input-required`            |
//! | a reply part `final`, or the entry acked         | `completed`                 |
//! | a reply part `error`, or dead-lettered           | `failed`                    |
//! | nacked with a retry to come                      | `submitted` (waiting again) |
//! | rejected (nack without retry)                    | `rejected`                  |
//! | [`crate::Op::CancelTask`]                        | `canceled`                  |
//! | its entry leaves the stream unfinished           | `failed` (`removed`)        |
//! | its dead-lettered entry redriven                 | `submitted` (`redriven`)    |
//! | its deadline (its entry's TTL) passes unfinished | `failed` (`deadline`)       |
//!
//! The last four states and `completed` are final: a change after one is kept in the
//! history marked `late` (a worker's reply after a cancel), and the state stays. A canceled
//! task no group has handed out is never handed out (reads pass over it); one a consumer
//! holds leaves the pending list at once and [`Event::TaskCanceled`] names the holder, so
//! the broker can tell it ahead of anything else. A task canceled before any group handed it
//! out whose entry asks for it ([`ON_CANCEL_HEADER`] `dlq`) also goes to the dead-letter
//! stream of the stream's first group, with reason `canceled`.
//!
//! A task's deadline is its entry's TTL (a request's is the requester's timeout): past it,
//! an unfinished task fails with a `deadline` change, and a consumer holding it is told as
//! for a cancel (its pending entry goes, [`Event::TaskCanceled`] names it), so a worker
//! stops a task whose submitter gave up and a task nobody took does not stay open. A
//! finished task is kept [`crate::Limits::task_keep_ms`], or less when its entry says so
//! ([`KEEP_HEADER`]: a request's record need not outlive its requester's interest by a day).
//!
//! Keys (keyspace `tasks`): `T`·task ID -> [`TaskRecord`]; `E`·stream_id·entry ID -> task
//! ID; `O`·stream_id -> open tasks of the stream (u64); `D`·deadline_ms·task ID -> empty
//! (open tasks with a deadline); `Y`·remove_at_ms·task ID -> empty (finished tasks, in the
//! order they are removed); `X`·finished_ms·task ID -> empty (tasks finished under the
//! first record layout, removed `task_keep_ms` after they finished).

//!
//! This file holds the task types and the headers that make an entry a task; [`life`] has
//! the keys, the reads and the changes ops make (as `Txn` methods), [`expiry`] the time
//! indexes, [`format`] the stored layouts.

mod expiry;
mod format;
pub(crate) mod life;

use bincode::{Decode, Encode};

use crate::id::{StreamId, StreamKey};
use crate::record::Meta;

/// Header naming the task an entry is (1 to [`TASK_ID_MAX`] bytes).
pub const TASK_HEADER: &[u8] = b"cortex-task-id";
/// Header of a task entry: what becomes of it when it is canceled before any group handed
/// it out. `dlq`: it goes to its group's dead-letter stream with reason `canceled` (its
/// task stays `canceled`); absent (or anything else): it is dropped.
pub const ON_CANCEL_HEADER: &[u8] = b"cortex-on-cancel";
/// Header of a reply part: the request (or task) it answers.
pub const CORRELATION_HEADER: &[u8] = b"cortex-correlation-id";
/// Header of a reply part: its kind (`progress`, `input-required`, `final`, `error`).
pub const PART_HEADER: &[u8] = b"cortex-part";
/// Longest task ID, bytes (a task ID may be a correlation ID).
pub const TASK_ID_MAX: usize = 64;
/// Header of a task entry: how long its task is kept once finished, ms (decimal; at most
/// [`crate::Limits::task_keep_ms`], which applies without it).
pub const KEEP_HEADER: &[u8] = b"cortex-task-keep-ms";

/// A task's state: A2A's task states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum TaskState {
    /// Stored, waiting for a worker.
    Submitted,
    /// Handed to a worker, which is on it.
    Working,
    /// The worker waits for more input.
    InputRequired,
    /// Done (final reply or ack).
    Completed,
    /// The worker failed (error reply) or the task was dead-lettered.
    Failed,
    /// Canceled by its submitter (or anyone allowed to).
    Canceled,
    /// The worker rejected it.
    Rejected,
}

impl TaskState {
    /// Every state, in order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Submitted,
        TaskState::Working,
        TaskState::InputRequired,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::Rejected,
    ];

    /// A2A's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input-required",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Rejected => "rejected",
        }
    }

    /// The state named `s` (A2A's names).
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.name() == s)
    }

    /// No change moves a task out of a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }
}

/// What moved a task.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum TaskEvent {
    /// The entry was appended.
    Submitted,
    /// A group handed the entry to a consumer (attempt counts from 1).
    Delivered {
        /// Group.
        group: Vec<u8>,
        /// Consumer.
        consumer: Vec<u8>,
        /// Attempt number.
        attempt: u32,
    },
    /// A reply part was stored: its kind and where it is.
    Part {
        /// `progress`, `input-required`, `final` or `error`.
        kind: Vec<u8>,
        /// The stream holding the part.
        stream: Vec<u8>,
        /// The part's entry ID.
        id: StreamId,
    },
    /// The holder acknowledged the entry.
    Acked,
    /// The holder nacked it; a retry follows.
    Retry {
        /// The nack's error text.
        error: Option<Vec<u8>>,
    },
    /// The holder rejected it.
    Rejected {
        /// The nack's error text.
        error: Option<Vec<u8>>,
    },
    /// It went to a dead-letter stream (`reason`: expired, stale, max-attempts, ...).
    DeadLettered {
        /// Why.
        reason: String,
    },
    /// Canceled.
    Canceled,
    /// Its entry left the stream before the task finished (deleted, trimmed, the stream
    /// deleted): nothing can hand it out any more. New variants go last: the index is stored.
    Removed,
    /// Its dead-lettered entry was redriven: the task waits again, for the new entry.
    Redriven,
    /// Its deadline (its entry's TTL) passed before it finished.
    DeadlinePassed,
}

/// One change of a task, as its history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TaskChange {
    /// Position in the task's history (0: submitted); a watcher resumes after one.
    pub seq: u64,
    /// Commit time, Unix ms.
    pub at_ms: u64,
    /// The state after the change.
    pub state: TaskState,
    /// What happened.
    pub event: TaskEvent,
    /// It happened after the task had finished (a reply after a cancel): kept, state
    /// unchanged.
    pub late: bool,
}

/// A task.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TaskRecord {
    /// Task ID.
    pub task: Vec<u8>,
    /// The stream's namespace.
    pub ns: u16,
    /// The stream holding the task's entry.
    pub stream: Vec<u8>,
    /// The stream's internal ID.
    pub stream_id: u64,
    /// The entry.
    pub id: StreamId,
    /// Current state.
    pub state: TaskState,
    /// Who published it, if it said.
    pub submitter: Option<Vec<u8>>,
    /// The group and consumer that last had it handed out.
    pub holder: Option<(Vec<u8>, Vec<u8>)>,
    /// Created, Unix ms.
    pub created_ms: u64,
    /// Last change, Unix ms.
    pub updated_ms: u64,
    /// When it reached a final state.
    pub finished_ms: Option<u64>,
    /// Changes kept, oldest first (the first, `submitted`, is always kept).
    pub history: Vec<TaskChange>,
    /// Changes ever made (`history` may have dropped middle ones past its bound).
    pub changes: u64,
    /// While it is open: when it fails unless finished first, Unix ms (its entry's TTL).
    pub deadline_ms: Option<u64>,
    /// How long it is kept once finished, ms, when its entry asked for less than
    /// [`crate::Limits::task_keep_ms`] ([`KEEP_HEADER`]).
    pub keep_ms: Option<u64>,
    /// Once finished: when it is removed, Unix ms.
    pub remove_at_ms: Option<u64>,
}

impl TaskRecord {
    /// The stream as a key.
    pub fn stream_key(&self) -> StreamKey {
        StreamKey::new(self.ns, self.stream.clone())
    }
}

/// Store-wide task counters (in `sys`, key `tasks`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct TaskSys {
    /// Task records stored.
    pub(crate) records: u64,
    /// Tasks finished under the first record layout, waiting to expire (`X` keys).
    pub(crate) finished: u64,
    /// No such task finished before this (their expiry starts its scan here).
    pub(crate) finished_floor_ms: u64,
    /// Finished tasks waiting to be removed (`Y` keys).
    pub(crate) kept: u64,
    /// None of them is removed before this.
    pub(crate) kept_floor_ms: u64,
    /// Open tasks with a deadline (`D` keys).
    pub(crate) deadlines: u64,
    /// No deadline is before this.
    pub(crate) deadline_floor_ms: u64,
}

impl TaskSys {
    /// The earliest moment a task deadline passes or a finished task is due for removal.
    pub(crate) fn next_due_ms(&self, task_keep_ms: u64) -> Option<u64> {
        let legacy =
            (self.finished > 0).then(|| self.finished_floor_ms.saturating_add(task_keep_ms));
        let kept = (self.kept > 0).then_some(self.kept_floor_ms);
        let deadline = (self.deadlines > 0).then_some(self.deadline_floor_ms);
        [legacy, kept, deadline].into_iter().flatten().min()
    }
}

/// `sys` key of [`TaskSys`].
pub(crate) const TASK_SYS_KEY: &[u8] = b"tasks";

/// Which tasks a listing shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct TaskFilter {
    /// Only tasks of this stream.
    pub stream: Option<StreamKey>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks held (last handed) to this consumer.
    pub consumer: Option<Vec<u8>>,
}

impl TaskFilter {
    pub(crate) fn matches(&self, t: &TaskRecord) -> bool {
        self.stream
            .as_ref()
            .is_none_or(|s| s.ns == t.ns && s.name == t.stream)
            && self.state.is_none_or(|s| s == t.state)
            && self
                .consumer
                .as_ref()
                .is_none_or(|c| t.holder.as_ref().is_some_and(|(_, h)| h == c))
    }
}

/// Which task a change is about.
#[derive(Clone, Debug)]
pub(crate) enum TaskRef {
    /// By ID (a header in hand).
    Id(Vec<u8>),
    /// By entry (an ack or nack, which has only the ID).
    Entry(u64, StreamId),
}

/// The task header of an entry's metadata.
pub(crate) fn task_of(meta: &Meta) -> Option<&[u8]> {
    header(meta, TASK_HEADER)
}

pub(crate) fn header<'m>(meta: &'m Meta, name: &[u8]) -> Option<&'m [u8]> {
    meta.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// The task a reply part answers and its kind, if the entry is a reply part.
pub(crate) fn part_of(meta: &Meta) -> Option<(&[u8], &[u8])> {
    Some((
        header(meta, CORRELATION_HEADER)?,
        header(meta, PART_HEADER)?,
    ))
}
