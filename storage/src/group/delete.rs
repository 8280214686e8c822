//! Redis 8.2's XDELEX and XACKDEL: deleting entries with a say over the consumer groups'
//! references to them ([`RefPolicy`]), optionally acknowledging them in one group first;
//! and the same say for trimming (XTRIM and XADD with DELREF or ACKED).

use std::sync::Arc;

use crate::codec::{self, Kind};
use crate::error::{corrupt, Result};
use crate::id::{Lane, StreamId, StreamKey};
use crate::kernel::{StreamState, Txn};
use crate::keys;
use crate::ops::{Deletion, RefPolicy, Reply};
use crate::overlay::View;
use crate::record::Record;
use crate::task::{TaskEvent, TaskRef};

/// A group as a deletion looks at it: name, internal ID, lane cursors.
struct GroupView {
    name: Vec<u8>,
    gid: u64,
    cursors: [StreamId; 5],
}

impl Txn<'_> {
    /// [`crate::Op::DeleteEx`].
    pub(crate) fn delete_ex(
        &mut self,
        key: &StreamKey,
        ack: Option<&[u8]>,
        ids: &[StreamId],
        refs: RefPolicy,
    ) -> Result<Reply> {
        let max = self.cfg.limits.ids_per_op_max;
        if ids.len() > max {
            return Err(crate::error::Error::TooLarge {
                what: "number of IDs",
                len: ids.len(),
                max,
            });
        }
        let none = || Reply::Deletions {
            each: vec![Deletion::NotFound; ids.len()],
            changes: 0,
        };
        let Some(st) = self.stream(key) else {
            return Ok(none());
        };
        if ack.is_some_and(|g| !st.groups.contains_key(g)) {
            return Ok(none());
        }
        let sid = st.meta.stream_id;
        let groups: Vec<GroupView> = st
            .groups
            .iter()
            .map(|(name, g)| GroupView {
                name: name.clone(),
                gid: g.meta.group_id,
                cursors: g.meta.lane_cursor,
            })
            .collect();
        let ack = ack.and_then(|a| groups.iter().find(|g| g.name == a));
        let mut each = Vec::with_capacity(ids.len());
        let mut changes = 0;
        for &id in ids {
            if let Some(g) = ack {
                if self.unreference(key, sid, g, id, true)? {
                    changes += 1;
                }
            }
            let Some(v) = self.tx.get(&self.ks.entries, keys::id_key(sid, id))? else {
                each.push(Deletion::NotFound);
                continue;
            };
            match refs {
                RefPolicy::KeepRef => {}
                RefPolicy::DelRef => {
                    for g in &groups {
                        if self.unreference(key, sid, g, id, false)? {
                            changes += 1;
                        }
                    }
                }
                RefPolicy::Acked => {
                    let record: Record = codec::decode(Kind::Entry, &v)
                        .map_err(|r| corrupt("entry", &key.name, Some(id), r))?;
                    if self.referenced(key, &groups, id, record.meta.lane)? {
                        each.push(Deletion::Referenced);
                        continue;
                    }
                }
            }
            self.delete_entries(key, &[id])?;
            changes += 1;
            each.push(Deletion::Deleted);
        }
        Ok(Reply::Deletions { each, changes })
    }

    /// Takes `id` out of group `g`'s pending list, if it is there; `acked` counts it as
    /// acknowledged (its task completes) rather than dropped. True when it was there.
    fn unreference(
        &mut self,
        key: &StreamKey,
        sid: u64,
        g: &GroupView,
        id: StreamId,
        acked: bool,
    ) -> Result<bool> {
        let Some(held) = self.held(&key.name, g.gid, id)? else {
            return Ok(false);
        };
        self.with_group(key, &g.name, |txn, _, state| {
            txn.remove_held(state, id, held);
            if acked {
                state.meta.counters.acked += 1;
                txn.task_touch(TaskRef::Entry(sid, id), TaskEvent::Acked);
            }
        });
        Ok(true)
    }

    /// True while a group still needs `id`: pending there, or not yet read (past the
    /// group's cursor of the entry's lane).
    fn referenced(
        &self,
        key: &StreamKey,
        groups: &[GroupView],
        id: StreamId,
        lane: Lane,
    ) -> Result<bool> {
        self.needed(
            &key.name,
            groups.iter().map(|g| (g.gid, &g.cursors)),
            id,
            lane,
        )
    }

    /// [`Txn::referenced`] over a stream's groups as they stand (for trimming with
    /// [`RefPolicy::Acked`]).
    pub(crate) fn needed_by_group(
        &self,
        name: &[u8],
        st: &StreamState,
        id: StreamId,
        lane: Lane,
    ) -> Result<bool> {
        let groups = st
            .groups
            .values()
            .map(|g| (g.meta.group_id, &g.meta.lane_cursor));
        self.needed(name, groups, id, lane)
    }

    fn needed<'g>(
        &self,
        name: &[u8],
        groups: impl Iterator<Item = (u64, &'g [StreamId; 5])>,
        id: StreamId,
        lane: Lane,
    ) -> Result<bool> {
        for (gid, cursors) in groups {
            if id > cursors[lane.index()] || self.held(name, gid, id)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Trimming with [`RefPolicy::DelRef`]: takes the trimmed entries out of every group's
    /// pending list (the stream's state is the caller's, out of the catalog).
    pub(crate) fn drop_trimmed_refs(
        &mut self,
        name: &[u8],
        st: &mut StreamState,
        gone: &[StreamId],
    ) -> Result<()> {
        let sid = st.meta.stream_id;
        for (gname, g) in st.groups.iter_mut() {
            let gid = g.meta.group_id;
            let mut touched = false;
            for &id in gone {
                if let Some(held) = self.held(name, gid, id)? {
                    self.remove_held(Arc::make_mut(g), id, held);
                    touched = true;
                }
            }
            if touched {
                self.touched_groups.insert((sid, gname.clone()));
            }
        }
        Ok(())
    }
}
