//! How task records and counters are stored, in today's layout and the first one (still
//! read: a store written before tasks had deadlines and keep times opens as it was).

use bincode::{Decode, Encode};

use super::{TaskChange, TaskRecord, TaskState, TaskSys};
use crate::codec::{self, Kind};
use crate::id::StreamId;

/// [`TaskRecord`] as the first layout stored it (kind [`Kind::Task`]).
#[derive(Encode, Decode)]
pub(crate) struct TaskRecordV1 {
    pub(crate) task: Vec<u8>,
    pub(crate) ns: u16,
    pub(crate) stream: Vec<u8>,
    pub(crate) stream_id: u64,
    pub(crate) id: StreamId,
    pub(crate) state: TaskState,
    pub(crate) submitter: Option<Vec<u8>>,
    pub(crate) holder: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
    pub(crate) finished_ms: Option<u64>,
    pub(crate) history: Vec<TaskChange>,
    pub(crate) changes: u64,
}

/// [`TaskSys`] as the first layout stored it (kind [`Kind::TaskSys`]).
#[derive(Encode, Decode)]
pub(crate) struct TaskSysV1 {
    pub(crate) records: u64,
    pub(crate) finished: u64,
    pub(crate) finished_floor_ms: u64,
}

impl TaskRecord {
    /// Decodes a task record in either layout. A first-layout record has no deadline or
    /// keep time of its own; finished, it waits in the first layout's expiry index.
    pub(crate) fn decode(bytes: &[u8]) -> Result<TaskRecord, String> {
        if bytes.get(1) == Some(&(Kind::Task as u8)) {
            let v: TaskRecordV1 = codec::decode(Kind::Task, bytes)?;
            return Ok(TaskRecord {
                task: v.task,
                ns: v.ns,
                stream: v.stream,
                stream_id: v.stream_id,
                id: v.id,
                state: v.state,
                submitter: v.submitter,
                holder: v.holder,
                created_ms: v.created_ms,
                updated_ms: v.updated_ms,
                finished_ms: v.finished_ms,
                history: v.history,
                changes: v.changes,
                deadline_ms: None,
                keep_ms: None,
                remove_at_ms: None,
            });
        }
        codec::decode(Kind::TaskV2, bytes)
    }

    /// Encodes the record (today's layout).
    pub(crate) fn encode(&self) -> Vec<u8> {
        codec::encode(Kind::TaskV2, self)
    }
}

impl TaskSys {
    /// Decodes the counters in either layout.
    pub(crate) fn decode(bytes: &[u8]) -> Result<TaskSys, String> {
        if bytes.get(1) == Some(&(Kind::TaskSys as u8)) {
            let v: TaskSysV1 = codec::decode(Kind::TaskSys, bytes)?;
            return Ok(TaskSys {
                records: v.records,
                finished: v.finished,
                finished_floor_ms: v.finished_floor_ms,
                ..TaskSys::default()
            });
        }
        codec::decode(Kind::TaskSysV2, bytes)
    }

    /// Encodes the counters (today's layout).
    pub(crate) fn encode(&self) -> Vec<u8> {
        codec::encode(Kind::TaskSysV2, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskEvent;

    #[test]
    fn first_layout_records_and_counters_still_decode() {
        let change = TaskChange {
            seq: 0,
            at_ms: 5,
            state: TaskState::Completed,
            event: TaskEvent::Acked,
            late: false,
        };
        let v1 = TaskRecordV1 {
            task: b"t1".to_vec(),
            ns: 0,
            stream: b"s".to_vec(),
            stream_id: 7,
            id: StreamId::new(1, 2),
            state: TaskState::Completed,
            submitter: Some(b"harold".to_vec()),
            holder: None,
            created_ms: 1,
            updated_ms: 5,
            finished_ms: Some(5),
            history: vec![change.clone()],
            changes: 1,
        };
        let rec = TaskRecord::decode(&codec::encode(Kind::Task, &v1)).unwrap();
        assert_eq!(rec.task, b"t1");
        assert_eq!(rec.finished_ms, Some(5));
        assert_eq!(rec.history, vec![change]);
        assert_eq!(
            (rec.deadline_ms, rec.keep_ms, rec.remove_at_ms),
            (None, None, None)
        );
        assert_eq!(TaskRecord::decode(&rec.encode()).unwrap(), rec);

        let sys = TaskSys::decode(&codec::encode(
            Kind::TaskSys,
            &TaskSysV1 {
                records: 3,
                finished: 2,
                finished_floor_ms: 9,
            },
        ))
        .unwrap();
        assert_eq!(
            (sys.records, sys.finished, sys.finished_floor_ms),
            (3, 2, 9)
        );
        assert_eq!((sys.kept, sys.deadlines), (0, 0));
        assert_eq!(TaskSys::decode(&sys.encode()).unwrap(), sys);
        // A value of another kind is refused, not misread.
        assert!(TaskRecord::decode(&sys.encode()).is_err());
    }
}
