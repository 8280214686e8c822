//! Time in the life of tasks: deadlines that fail open tasks, and the removal of finished
//! ones after their keep time. Both are indexes ordered by time (`D`, `Y`; `X` for tasks
//! finished under the first record layout), scanned by the tick from a floor below which
//! nothing waits, at most the GC budget of keys per tick.

use super::life::{get_task, record_key, time_key, DEADLINE, FINISHED, REMOVAL};
use super::{TaskEvent, TaskRecord};
use crate::error::Result;
use crate::kernel::Txn;
use crate::overlay::View;

/// Lowers a floor for a new key at `at` (the floor of an empty index is the new key's).
fn lower(floor: &mut u64, count: u64, at: u64) {
    *floor = if count == 0 { at } else { (*floor).min(at) };
}

impl Txn<'_> {
    /// Indexes an open task's deadline.
    pub(super) fn add_deadline(&mut self, at: u64, task: &[u8]) {
        self.tx
            .insert(&self.ks.tasks, time_key(DEADLINE, at, task), []);
        let s = &mut self.task_sys;
        lower(&mut s.deadline_floor_ms, s.deadlines, at);
        s.deadlines += 1;
    }

    /// Forgets a task's deadline (it finished first, or it passed).
    pub(super) fn drop_deadline(&mut self, at: u64, task: &[u8]) {
        self.tx.remove(&self.ks.tasks, time_key(DEADLINE, at, task));
        self.task_sys.deadlines = self.task_sys.deadlines.saturating_sub(1);
    }

    /// A task just finished: it is removed after its keep time.
    pub(super) fn keep_finished(&mut self, rec: &mut TaskRecord) {
        let keep = self.cfg.limits.task_keep_ms;
        let at = self
            .now
            .saturating_add(rec.keep_ms.map_or(keep, |k| k.min(keep)));
        rec.remove_at_ms = Some(at);
        self.tx
            .insert(&self.ks.tasks, time_key(REMOVAL, at, &rec.task), []);
        let s = &mut self.task_sys;
        lower(&mut s.kept_floor_ms, s.kept, at);
        s.kept += 1;
    }

    /// A finished task opens again (redriven): out of the index of removals.
    pub(super) fn unkeep_finished(&mut self, rec: &mut TaskRecord) {
        let finished = rec.finished_ms.take();
        if let Some(at) = rec.remove_at_ms.take() {
            self.tx
                .remove(&self.ks.tasks, time_key(REMOVAL, at, &rec.task));
            self.task_sys.kept = self.task_sys.kept.saturating_sub(1);
        } else if let Some(at) = finished {
            self.tx
                .remove(&self.ks.tasks, time_key(FINISHED, at, &rec.task));
            self.task_sys.finished = self.task_sys.finished.saturating_sub(1);
        }
    }

    /// Keys of one time index from `floor` through `through`, at most the GC budget; and
    /// whether that was all of them.
    fn due_keys(&self, prefix: u8, floor: u64, through: u64) -> Result<(Vec<Vec<u8>>, bool)> {
        let from = time_key(prefix, floor, b"");
        let to = time_key(prefix, through.saturating_add(1), b"");
        let budget = self.cfg.limits.gc_keys_per_tick_max;
        let mut keys = Vec::new();
        for item in self.tx.range(&self.ks.tasks, from..to) {
            if keys.len() >= budget {
                return Ok((keys, false));
            }
            keys.push(item.key()?.to_vec());
        }
        Ok((keys, true))
    }

    /// Fails every open task whose deadline has passed (`deadline`), taking its entry from
    /// whoever holds it, who is told as for a cancel.
    pub(crate) fn fail_overdue_tasks(&mut self) -> Result<()> {
        let s = self.task_sys;
        if s.deadlines == 0 || s.deadline_floor_ms > self.now {
            return Ok(());
        }
        let (due, complete) = self.due_keys(DEADLINE, s.deadline_floor_ms, self.now)?;
        for k in due {
            let task = &k[9..];
            self.tx.remove(&self.ks.tasks, k.clone());
            self.task_sys.deadlines = self.task_sys.deadlines.saturating_sub(1);
            let Some(mut rec) = get_task(&self.tx, self.ks, task)? else {
                continue;
            };
            rec.deadline_ms = None;
            if rec.state.is_final() {
                continue;
            }
            self.take_from_holders(&rec)?;
            self.change_task(&mut rec, TaskEvent::DeadlinePassed);
            if let Some(e) = self.task_error.take() {
                return Err(e);
            }
        }
        if complete {
            self.task_sys.deadline_floor_ms = self.now.saturating_add(1);
        }
        Ok(())
    }

    /// Removes finished tasks whose keep time is over (at most the GC budget per tick).
    pub(crate) fn expire_tasks(&mut self) -> Result<()> {
        let s = self.task_sys;
        if s.kept > 0 && s.kept_floor_ms <= self.now {
            let (due, complete) = self.due_keys(REMOVAL, s.kept_floor_ms, self.now)?;
            for k in due {
                self.remove_task_record(&k[9..])?;
                self.tx.remove(&self.ks.tasks, k.clone());
                self.task_sys.kept = self.task_sys.kept.saturating_sub(1);
            }
            if complete {
                self.task_sys.kept_floor_ms = self.now.saturating_add(1);
            }
        }
        // Tasks finished under the first record layout: `task_keep_ms` after they finished.
        let keep = self.cfg.limits.task_keep_ms;
        let Some(cutoff) = self.now.checked_sub(keep) else {
            return Ok(());
        };
        if s.finished == 0 || s.finished_floor_ms > cutoff {
            return Ok(());
        }
        let (due, complete) = self.due_keys(FINISHED, s.finished_floor_ms, cutoff)?;
        for k in due {
            self.remove_task_record(&k[9..])?;
            self.tx.remove(&self.ks.tasks, k.clone());
            self.task_sys.finished = self.task_sys.finished.saturating_sub(1);
        }
        if self.task_sys.finished == 0 {
            self.task_sys.finished_floor_ms = 0;
        } else if complete {
            self.task_sys.finished_floor_ms = cutoff.saturating_add(1);
        }
        Ok(())
    }

    fn remove_task_record(&mut self, task: &[u8]) -> Result<()> {
        if let Some(rec) = get_task(&self.tx, self.ks, task)? {
            self.tx.remove(
                &self.ks.tasks,
                super::life::entry_key(rec.stream_id, rec.id),
            );
            self.tx.remove(&self.ks.tasks, record_key(task));
            self.task_sys.records = self.task_sys.records.saturating_sub(1);
        }
        Ok(())
    }
}
