//! The storage error type.

use std::fmt;

use crate::id::StreamId;

/// Result alias for storage operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store. Argument errors are raised before an operation
/// writes anything, so a failed operation in a batch leaves no trace.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The explicit ID is `0-0`.
    IdZero,
    /// The explicit ID is not greater than the stream's last ID.
    IdNotGreater {
        /// The stream's last generated ID.
        last: StreamId,
    },
    /// The stream's last ID is `MAX`: no ID can follow it.
    IdExhausted,
    /// XSETID below the stream's top entry.
    SetIdTooSmall,
    /// XSETID `entries_added` smaller than the stream's length.
    EntriesAddedTooSmall,
    /// XSETID `max_deleted_entry_id` greater than the ID being set.
    MaxDeletedTooLarge,
    /// XSETID below the stream's current max-deleted-entry-id.
    SetIdBelowMaxDeleted,
    /// The stream does not exist.
    NoSuchStream {
        /// Stream name.
        stream: Vec<u8>,
    },
    /// The consumer group does not exist.
    NoSuchGroup {
        /// Stream name.
        stream: Vec<u8>,
        /// Group name.
        group: Vec<u8>,
    },
    /// The group already exists (`BUSYGROUP`).
    GroupExists {
        /// Group name.
        group: Vec<u8>,
    },
    /// The target of a rename exists and replacing was not asked for.
    TargetExists,
    /// A name (stream, group, consumer, key) is empty or longer than its limit.
    BadName {
        /// What was named.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value or entry exceeds a size or count limit.
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The size given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Any other bad argument; the text says which.
    InvalidArgument(String),
    /// No task has this ID (never made, or finished and expired).
    NoSuchTask {
        /// Task ID.
        task: Vec<u8>,
    },
    /// The task has already finished.
    TaskFinished {
        /// Task ID.
        task: Vec<u8>,
        /// Its final state.
        state: &'static str,
    },
    /// A task with this ID exists.
    TaskExists {
        /// Task ID.
        task: Vec<u8>,
    },
    /// A stored record failed its check (CRC, version, decoding). Never returned as data.
    Corruption {
        /// What was being read: `entry`, `stream meta`, ...
        what: &'static str,
        /// Stream name, where known.
        stream: Vec<u8>,
        /// Entry ID, where the record is an entry.
        id: Option<StreamId>,
        /// What check failed.
        reason: String,
    },
    /// The embedded store failed (I/O, poisoned after a failed fsync, locked by another process).
    Storage(fjall::Error),
    /// A read the batch needed failed (a damaged disk block, an I/O error while reading):
    /// the batch is refused and nothing of it was written. Unlike [`Error::Storage`] from a
    /// commit, the store itself is fine and takes the next batch.
    Unreadable(fjall::Error),
}

impl Error {
    /// True for errors after which the store must not be written again (I/O or corruption
    /// found during a write batch): the broker should stop and restart.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Storage(_) | Error::Unreadable(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::IdZero => f.write_str("the ID must be greater than 0-0"),
            Error::IdNotGreater { last } => {
                write!(
                    f,
                    "the ID is equal or smaller than the stream's last ID {last}"
                )
            }
            Error::IdExhausted => f.write_str("the stream has exhausted the last possible ID"),
            Error::SetIdTooSmall => f.write_str("the ID is smaller than the stream's top item"),
            Error::EntriesAddedTooSmall => {
                f.write_str("entries_added is smaller than the stream length")
            }
            Error::SetIdBelowMaxDeleted => {
                f.write_str("the ID is smaller than the stream's max_deleted_entry_id")
            }
            Error::MaxDeletedTooLarge => {
                f.write_str("the ID is smaller than the provided max_deleted_entry_id")
            }
            Error::NoSuchStream { stream } => {
                write!(f, "no such stream '{}'", String::from_utf8_lossy(stream))
            }
            Error::NoSuchGroup { stream, group } => write!(
                f,
                "no such consumer group '{}' for stream '{}'",
                String::from_utf8_lossy(group),
                String::from_utf8_lossy(stream)
            ),
            Error::GroupExists { group } => write!(
                f,
                "consumer group '{}' already exists",
                String::from_utf8_lossy(group)
            ),
            Error::TargetExists => f.write_str("the target name exists"),
            Error::BadName { what, len, max } => {
                write!(f, "{what} must be 1 to {max} bytes, got {len}")
            }
            Error::TooLarge { what, len, max } => write!(f, "{what} is {len}, the limit is {max}"),
            Error::InvalidArgument(s) => f.write_str(s),
            Error::NoSuchTask { task } => write!(
                f,
                "no task '{}' (never submitted, or finished and expired)",
                String::from_utf8_lossy(task)
            ),
            Error::TaskFinished { task, state } => write!(
                f,
                "task '{}' has already finished: {state}",
                String::from_utf8_lossy(task)
            ),
            Error::TaskExists { task } => write!(
                f,
                "a task '{}' exists: task IDs are unique",
                String::from_utf8_lossy(task)
            ),
            Error::Corruption {
                what,
                stream,
                id,
                reason,
            } => {
                write!(f, "corrupt {what}")?;
                if !stream.is_empty() {
                    write!(f, " in stream '{}'", String::from_utf8_lossy(stream))?;
                }
                if let Some(id) = id {
                    write!(f, " at {id}")?;
                }
                write!(f, ": {reason}")
            }
            Error::Storage(e) => write!(f, "storage failure: {e}"),
            Error::Unreadable(e) => write!(
                f,
                "a read this batch needed failed, so nothing of it was written (a damaged disk block? the store check reports where): {e}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(e) | Error::Unreadable(e) => Some(e),
            _ => None,
        }
    }
}

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Self {
        Error::Storage(e)
    }
}

/// Damage found in stored data: what, in which stream, at which entry, and why.
pub(crate) fn corrupt(
    what: &'static str,
    stream: &[u8],
    id: Option<StreamId>,
    reason: String,
) -> Error {
    Error::Corruption {
        what,
        stream: stream.to_vec(),
        id,
        reason,
    }
}
