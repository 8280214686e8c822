//! A task's life in the store: its keys in the `tasks` keyspace, reading and listing task
//! records, and the changes the ops of a batch make to them (`Txn` methods).

use super::{
    header, part_of, task_of, TaskChange, TaskEvent, TaskFilter, TaskRecord, TaskRef, TaskState,
    TaskSys, KEEP_HEADER, ON_CANCEL_HEADER, TASK_ID_MAX, TASK_SYS_KEY,
};
use crate::codec::{self, Kind};
use crate::error::{corrupt, Error, Result};
use crate::id::{StreamId, StreamKey};
use crate::kernel::Txn;
use crate::keyspaces::Keyspaces;
use crate::ops::{Event, Reply};
use crate::overlay::{Ks, View};
use crate::record::Meta;

pub(super) fn record_key(task: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + task.len());
    k.push(b'T');
    k.extend_from_slice(task);
    k
}

pub(super) fn entry_key(stream_id: u64, id: StreamId) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = b'E';
    k[1..9].copy_from_slice(&stream_id.to_be_bytes());
    k[9..].copy_from_slice(&id.to_bytes());
    k
}

fn open_key(stream_id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'O';
    k[1..].copy_from_slice(&stream_id.to_be_bytes());
    k
}

/// A key of one of the time indexes (`X` finished, `Y` removal, `D` deadline).
pub(super) fn time_key(prefix: u8, at_ms: u64, task: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + task.len());
    k.push(prefix);
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(task);
    k
}

/// Index of tasks finished under the first record layout, by finish time.
pub(super) const FINISHED: u8 = b'X';
/// Index of finished tasks, by removal time.
pub(super) const REMOVAL: u8 = b'Y';
/// Index of open tasks with a deadline, by deadline.
pub(super) const DEADLINE: u8 = b'D';

/// Reads a task record.
pub(crate) fn get_task(v: &impl View, ks: &Keyspaces, task: &[u8]) -> Result<Option<TaskRecord>> {
    match v.get(&ks.tasks, record_key(task))? {
        None => Ok(None),
        Some(b) => TaskRecord::decode(&b)
            .map(Some)
            .map_err(|r| corrupt("task", task, None, r)),
    }
}

fn read_u64(v: &impl View, ks: &Ks, key: &[u8]) -> Result<u64> {
    match v.get(ks, key)? {
        None => Ok(0),
        Some(b) => {
            codec::decode(Kind::TaskCount, &b).map_err(|r| corrupt("task count", b"", None, r))
        }
    }
}

/// Lists tasks after `after` (task ID order), of one stream and one state when given:
/// at most `count`, examining at most `scan_max` records. Returns the tasks and, when the
/// scan stopped early, the ID to continue after.
pub(crate) fn list_tasks(
    v: &impl View,
    ks: &Keyspaces,
    filter: &TaskFilter,
    after: &[u8],
    count: usize,
    scan_max: usize,
) -> Result<(Vec<TaskRecord>, Option<Vec<u8>>)> {
    let from = {
        let mut k = record_key(after);
        if !after.is_empty() {
            k.push(0);
        }
        k
    };
    let to = vec![b'U'];
    let mut out = Vec::new();
    let mut last = None;
    for (scanned, item) in v.range(&ks.tasks, from..to).enumerate() {
        if out.len() >= count || scanned >= scan_max {
            return Ok((out, last));
        }
        let (k, b) = item.into_inner()?;
        let rec = TaskRecord::decode(&b).map_err(|r| corrupt("task", &k[1..], None, r))?;
        last = Some(rec.task.clone());
        if filter.matches(&rec) {
            out.push(rec);
        }
    }
    Ok((out, None))
}

/// What a new entry brings to tasks, checked before anything is written.
pub(crate) enum Admit {
    /// A new task.
    New(NewTask),
    /// A reply part of a task (kind, task).
    Part(Vec<u8>, Vec<u8>),
}

/// A new task as its entry describes it.
pub(crate) struct NewTask {
    task: Vec<u8>,
    deadline_ms: Option<u64>,
    keep_ms: Option<u64>,
}

/// The keep time an entry asks for ([`KEEP_HEADER`]), within `max`.
fn keep_of(meta: &Meta, max: u64) -> Result<Option<u64>> {
    let Some(v) = header(meta, KEEP_HEADER) else {
        return Ok(None);
    };
    match std::str::from_utf8(v)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
    {
        Some(ms) => Ok((ms < max).then_some(ms)),
        None => Err(Error::InvalidArgument(format!(
            "header cortex-task-keep-ms must be a whole number of milliseconds, not '{}'",
            String::from_utf8_lossy(v)
        ))),
    }
}

impl Txn<'_> {
    /// Checks what a new entry of stream `stream_id` (`None`: the stream is new) does to
    /// tasks: a new task must have a fresh ID and room among its stream's open tasks; a
    /// progress part must have room in its task's history.
    pub(crate) fn admit_task(&self, stream_id: Option<u64>, meta: &Meta) -> Result<Option<Admit>> {
        let l = &self.cfg.limits;
        if let Some(task) = task_of(meta) {
            if task.is_empty() || task.len() > TASK_ID_MAX {
                return Err(Error::BadName {
                    what: "task ID (header cortex-task-id)",
                    len: task.len(),
                    max: TASK_ID_MAX,
                });
            }
            if self.task_sys.records > 0 && get_task(&self.tx, self.ks, task)?.is_some() {
                return Err(Error::TaskExists {
                    task: task.to_vec(),
                });
            }
            if let Some(sid) = stream_id {
                let open = self.open_tasks(sid)?;
                if open >= l.open_tasks_max {
                    return Err(Error::TooLarge {
                        what: "number of open tasks in the stream",
                        len: open as usize + 1,
                        max: l.open_tasks_max as usize,
                    });
                }
            }
            return Ok(Some(Admit::New(NewTask {
                task: task.to_vec(),
                deadline_ms: meta.expires_at_ms,
                keep_ms: keep_of(meta, l.task_keep_ms)?,
            })));
        }
        if self.task_sys.records == 0 {
            return Ok(None);
        }
        let Some((task, kind)) = part_of(meta) else {
            return Ok(None);
        };
        let Some(rec) = get_task(&self.tx, self.ks, task)? else {
            return Ok(None);
        };
        if (kind == b"progress" || kind == b"input-required")
            && rec.history.len() + 2 > l.task_history_max
        {
            return Err(Error::TooLarge {
                what: "number of changes in the task's history",
                len: rec.history.len() + 1,
                max: l.task_history_max,
            });
        }
        Ok(Some(Admit::Part(kind.to_vec(), task.to_vec())))
    }

    /// Writes what [`Txn::admit_task`] admitted, for the entry `id` of `key` just written.
    pub(crate) fn task_appended(
        &mut self,
        key: &StreamKey,
        stream_id: u64,
        id: StreamId,
        producer: Option<&[u8]>,
        admit: Admit,
    ) -> Result<()> {
        match admit {
            Admit::New(NewTask {
                task,
                deadline_ms,
                keep_ms,
            }) => {
                let change = TaskChange {
                    seq: 0,
                    at_ms: self.now,
                    state: TaskState::Submitted,
                    event: TaskEvent::Submitted,
                    late: false,
                };
                let rec = TaskRecord {
                    task: task.clone(),
                    ns: key.ns,
                    stream: key.name.clone(),
                    stream_id,
                    id,
                    state: TaskState::Submitted,
                    submitter: producer.map(<[u8]>::to_vec),
                    holder: None,
                    created_ms: self.now,
                    updated_ms: self.now,
                    finished_ms: None,
                    history: vec![change.clone()],
                    changes: 1,
                    deadline_ms,
                    keep_ms,
                    remove_at_ms: None,
                };
                self.tx
                    .insert(&self.ks.tasks, record_key(&task), rec.encode());
                if let Some(at) = deadline_ms {
                    self.add_deadline(at, &task);
                }
                self.tx
                    .insert(&self.ks.tasks, entry_key(stream_id, id), task.clone());
                self.add_open(stream_id, 1)?;
                self.task_sys.records += 1;
                self.events.push(Event::Task {
                    task,
                    change,
                    stream: key.clone(),
                    entry: id,
                });
                Ok(())
            }
            Admit::Part(kind, task) => {
                let event = TaskEvent::Part {
                    kind,
                    stream: key.name.clone(),
                    id,
                };
                self.task_changes.push((TaskRef::Id(task), event));
                Ok(())
            }
        }
    }

    /// Unfinished tasks of a stream.
    pub(crate) fn open_tasks(&self, stream_id: u64) -> Result<u64> {
        read_u64(&self.tx, &self.ks.tasks, &open_key(stream_id))
    }

    fn add_open(&mut self, stream_id: u64, delta: i64) -> Result<()> {
        let k = open_key(stream_id);
        let n = read_u64(&self.tx, &self.ks.tasks, &k)?.saturating_add_signed(delta);
        if n == 0 {
            self.tx.remove(&self.ks.tasks, k);
        } else {
            self.tx
                .insert(&self.ks.tasks, k, codec::encode(Kind::TaskCount, &n));
        }
        Ok(())
    }

    /// Queues a change of the task an entry is, if it is one (cheap when no task exists).
    pub(crate) fn task_touch(&mut self, r: TaskRef, event: TaskEvent) {
        if self.task_sys.records > 0 {
            self.task_changes.push((r, event));
        }
    }

    /// The task an entry of a read is, if it is one and has been canceled: reads pass over it.
    pub(crate) fn task_canceled(&self, meta: &Meta) -> Result<bool> {
        if self.task_sys.records == 0 {
            return Ok(false);
        }
        let Some(task) = task_of(meta) else {
            return Ok(false);
        };
        Ok(get_task(&self.tx, self.ks, task)?.is_some_and(|t| t.state == TaskState::Canceled))
    }

    /// Applies the changes the op queued (after the op, so closures that cannot fail can
    /// queue them).
    pub(crate) fn flush_task_changes(&mut self) -> Result<()> {
        for (r, event) in std::mem::take(&mut self.task_changes) {
            let task = match r {
                TaskRef::Id(t) => t,
                TaskRef::Entry(sid, id) => match self.tx.get(&self.ks.tasks, entry_key(sid, id))? {
                    Some(t) => t.to_vec(),
                    None => continue,
                },
            };
            let Some(mut rec) = get_task(&self.tx, self.ks, &task)? else {
                continue;
            };
            self.change_task(&mut rec, event);
        }
        Ok(())
    }

    /// Moves a task by one event, records it, and queues the event for the broker.
    pub(super) fn change_task(&mut self, rec: &mut TaskRecord, event: TaskEvent) {
        let was = rec.state;
        let next = match &event {
            TaskEvent::Submitted => TaskState::Submitted,
            TaskEvent::Delivered { .. } => TaskState::Working,
            TaskEvent::Part { kind, .. } => match kind.as_slice() {
                b"final" => TaskState::Completed,
                b"error" => TaskState::Failed,
                b"input-required" => TaskState::InputRequired,
                _ => TaskState::Working,
            },
            TaskEvent::Acked => TaskState::Completed,
            TaskEvent::Retry { .. } => TaskState::Submitted,
            TaskEvent::Rejected { .. } => TaskState::Rejected,
            TaskEvent::DeadLettered { .. } => TaskState::Failed,
            TaskEvent::Canceled => TaskState::Canceled,
            TaskEvent::Removed => TaskState::Failed,
            TaskEvent::Redriven => TaskState::Submitted,
            TaskEvent::DeadlinePassed => TaskState::Failed,
        };
        // An ack after the final part (the responder's own ack) changes nothing, nor does a
        // finished task's entry leaving its stream (trimmed by retention, say).
        if was.is_final() && matches!(event, TaskEvent::Acked | TaskEvent::Removed) {
            return;
        }
        if let TaskEvent::Delivered {
            group, consumer, ..
        } = &event
        {
            rec.holder = Some((group.clone(), consumer.clone()));
        }
        let late = was.is_final();
        let state = if late { was } else { next };
        let change = TaskChange {
            seq: rec.changes,
            at_ms: self.now,
            state,
            event,
            late,
        };
        rec.changes += 1;
        rec.updated_ms = self.now;
        self.keep_change(rec, change.clone());
        rec.state = state;
        if !was.is_final() && state.is_final() {
            rec.finished_ms = Some(self.now);
            if let Err(e) = self.add_open(rec.stream_id, -1) {
                // Only a read of the counter can fail here; the batch fails with it below.
                self.task_error = Some(e);
            }
            if let Some(at) = rec.deadline_ms.take() {
                self.drop_deadline(at, &rec.task);
            }
            self.keep_finished(rec);
        }
        self.tx
            .insert(&self.ks.tasks, record_key(&rec.task), rec.encode());
        self.events.push(Event::Task {
            task: rec.task.clone(),
            change,
            stream: rec.stream_key(),
            entry: rec.id,
        });
    }

    /// [`crate::Op::CancelTask`]: an unfinished task ends `canceled`. Not yet handed out, it
    /// never will be; held by consumers, it leaves their pending lists and
    /// [`Event::TaskCanceled`] names each holder.
    pub(crate) fn cancel_task(&mut self, task: &[u8]) -> Result<Reply> {
        let rec = match self.task_sys.records {
            0 => None,
            _ => get_task(&self.tx, self.ks, task)?,
        };
        let Some(mut rec) = rec else {
            return Err(Error::NoSuchTask {
                task: task.to_vec(),
            });
        };
        if rec.state.is_final() {
            return Err(Error::TaskFinished {
                task: task.to_vec(),
                state: rec.state.name(),
            });
        }
        if self.take_from_holders(&rec)? == 0 {
            self.dead_letter_canceled(&rec.stream_key(), &rec)?;
        }
        self.change_task(&mut rec, TaskEvent::Canceled);
        if let Some(e) = self.task_error.take() {
            return Err(e);
        }
        Ok(Reply::Task(Box::new(rec)))
    }

    /// Takes a task's entry out of every pending list holding it, each holder named by an
    /// [`Event::TaskCanceled`] (so it is told to stop); returns how many held it.
    pub(super) fn take_from_holders(&mut self, rec: &TaskRecord) -> Result<usize> {
        let key = rec.stream_key();
        let mut held = Vec::new();
        if let Some(st) = self
            .stream(&key)
            .filter(|s| s.meta.stream_id == rec.stream_id)
        {
            for (name, gid) in st.group_ids() {
                if let Some(pel) = self.pending_entry(&key.name, gid, rec.id)? {
                    held.push((name, pel));
                }
            }
        }
        let n = held.len();
        for (group, pel) in held {
            let id = rec.id;
            let consumer = self
                .with_group(&key, &group, |txn, _, g| {
                    txn.remove_pending(g, id, &pel);
                    g.consumer_name(pel.consumer_id).to_vec()
                })
                .unwrap_or_default();
            self.events.push(Event::TaskCanceled {
                task: rec.task.clone(),
                stream: key.clone(),
                group,
                consumer,
                id,
            });
        }
        Ok(n)
    }

    /// Adds a change to a task's history, within its bound: the first (submitted) and the
    /// newest are kept.
    fn keep_change(&self, rec: &mut TaskRecord, change: TaskChange) {
        let max = self.cfg.limits.task_history_max.max(2);
        if rec.history.len() >= max {
            rec.history.remove(1);
        }
        rec.history.push(change);
    }

    /// A dead-lettered task's entry, redriven to `key` as entry `id`: its task (failed or
    /// rejected) waits again, `submitted` with a `redriven` change, linked to the new entry
    /// and open again, so the worker's calls move it as before. A task that expired, one
    /// that is not finished, or one past the stream's open-task bound is left as it is (the
    /// redriven entry is then a plain message).
    pub(crate) fn task_redriven(
        &mut self,
        key: &StreamKey,
        stream_id: u64,
        id: StreamId,
        meta: &Meta,
    ) -> Result<()> {
        if self.task_sys.records == 0 {
            return Ok(());
        }
        let Some(task) = task_of(meta) else {
            return Ok(());
        };
        let Some(mut rec) = get_task(&self.tx, self.ks, task)? else {
            return Ok(());
        };
        let open = self.open_tasks(stream_id)?;
        if !rec.state.is_final() || open >= self.cfg.limits.open_tasks_max {
            return Ok(());
        }
        self.unkeep_finished(&mut rec);
        // A redriven entry has no TTL (dlq.rs): nor has its task a deadline any more.
        rec.deadline_ms = None;
        self.tx
            .remove(&self.ks.tasks, entry_key(rec.stream_id, rec.id));
        rec.ns = key.ns;
        rec.stream = key.name.clone();
        rec.stream_id = stream_id;
        rec.id = id;
        rec.holder = None;
        rec.state = TaskState::Submitted;
        let change = TaskChange {
            seq: rec.changes,
            at_ms: self.now,
            state: TaskState::Submitted,
            event: TaskEvent::Redriven,
            late: false,
        };
        rec.changes += 1;
        rec.updated_ms = self.now;
        self.keep_change(&mut rec, change.clone());
        self.tx
            .insert(&self.ks.tasks, record_key(&rec.task), rec.encode());
        self.tx
            .insert(&self.ks.tasks, entry_key(stream_id, id), rec.task.clone());
        self.add_open(stream_id, 1)?;
        self.events.push(Event::Task {
            task: rec.task,
            change,
            stream: key.clone(),
            entry: id,
        });
        Ok(())
    }

    /// Every unfinished task of a stream being deleted fails as `removed` (its entries go
    /// with the stream). Reads the stream's task index: its open tasks and the finished ones
    /// not yet expired.
    pub(crate) fn tasks_of_deleted_stream(&mut self, stream_id: u64) -> Result<()> {
        if self.task_sys.records == 0 || self.open_tasks(stream_id)? == 0 {
            return Ok(());
        }
        let from = entry_key(stream_id, StreamId::MIN);
        let to = entry_key(stream_id, StreamId::MAX);
        let mut ids = Vec::new();
        for item in self.tx.range(&self.ks.tasks, from..=to) {
            ids.push(item.into_inner()?.1.to_vec());
        }
        for task in ids {
            self.task_touch(TaskRef::Id(task), TaskEvent::Removed);
        }
        Ok(())
    }

    /// A task canceled before any group handed it out, whose entry asks for it
    /// ([`ON_CANCEL_HEADER`] `dlq`): to the dead-letter stream of its stream's first group,
    /// with reason `canceled`.
    fn dead_letter_canceled(&mut self, key: &StreamKey, rec: &TaskRecord) -> Result<()> {
        let Some(first) = self
            .stream(key)
            .filter(|s| s.meta.stream_id == rec.stream_id)
            .and_then(|s| s.group_ids().into_iter().next())
        else {
            return Ok(());
        };
        let Some(record) = self.get_record(key, rec.stream_id, rec.id)? else {
            return Ok(());
        };
        if header(&record.meta, ON_CANCEL_HEADER) != Some(b"dlq".as_slice()) {
            return Ok(());
        }
        let (group, _) = first;
        let id = rec.id;
        self.with_group(key, &group, |txn, _, g| {
            let dlq = g
                .meta
                .policy
                .as_ref()
                .map_or(crate::meta::DEFAULT_DLQ.to_vec(), |p| p.dead_letter.clone());
            txn.dead_letter(
                key,
                &group,
                g,
                &dlq,
                id,
                record,
                None,
                crate::record::DeadReason::Canceled,
            );
        });
        Ok(())
    }
}

/// Reads [`TaskSys`] from a snapshot.
pub(crate) fn read_task_sys(snap: &fjall::Snapshot, ks: &Keyspaces) -> Result<TaskSys> {
    match fjall::Readable::get(snap, ks.sys.inner(), TASK_SYS_KEY)? {
        None => Ok(TaskSys::default()),
        Some(v) => TaskSys::decode(&v).map_err(|r| corrupt("task counters", b"", None, r)),
    }
}
