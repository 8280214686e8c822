//! Consumer groups with Redis 7 semantics, plus priority lanes.
//!
//! - `mod.rs`: groups and consumers (create, move, destroy), delivery policies.
//! - [`lag`]: Redis's entries-read and lag estimates.
//! - `lanes`: reading one lane's next entries after a cursor.
//! - `pending`: the pending-entries list and its indexes.
//! - `read`: group reads (XREADGROUP), one op over several streams.
//! - `claim`: XACK, XCLAIM, XAUTOCLAIM.
//! - [`index`]: the pending lists in memory, for the ack path.

mod claim;
mod delete;
pub(crate) mod index;
pub(crate) mod lag;
mod lanes;
mod pending;
mod read;

pub(crate) use claim::ReadLimits;
pub use index::PendingIndexFigures;
pub(crate) use index::{IndexDelta, PendingIndex, PendingIndexStats};
pub(crate) use lag::lag;

use crate::error::{Error, Result};
use crate::id::{Lane, StreamId, StreamKey};
use crate::kernel::{GroupState, Txn};
use crate::keys;
use crate::meta::{ConsumerMeta, DeliveryPolicy, GroupMeta, PendingEntry, StreamMeta};
use crate::ops::{GroupStart, Reply};
use crate::record::{DeadReason, Record};
use crate::stream::check_name;

fn resolve_start(m: &StreamMeta, start: GroupStart) -> StreamId {
    match start {
        GroupStart::Last => m.last_id,
        GroupStart::Id(id) => id,
    }
}

/// One planned change of a group read, claim or nack (planned while reading, applied after).
pub(crate) enum Action {
    /// Hand a new entry to the consumer (`parked`: set aside earlier, its time has come).
    Deliver {
        id: StreamId,
        lane: Lane,
        record: Record,
        existing: Option<PendingEntry>,
        parked: bool,
    },
    /// Set a scheduled entry aside until its delivery time.
    Park { id: StreamId, lane: Lane, at: u64 },
    /// Pass over a new entry that is never to be handed out (a canceled task).
    Pass { id: StreamId, lane: Lane },
    /// Take an entry out of the set-aside index (handed out, dead-lettered or gone).
    Unpark { id: StreamId, at: u64 },
    /// Hand a pending entry (again) to the consumer.
    Redeliver {
        id: StreamId,
        pel: PendingEntry,
        record: Record,
    },
    /// Remove a pending entry whose stream entry is gone.
    Drop { id: StreamId, pel: PendingEntry },
    /// Move to the dead-letter stream (`pel` when it was pending, `parked` when it was set
    /// aside: either way the group's cursor passed it already).
    DeadLetter {
        id: StreamId,
        lane: Lane,
        record: Record,
        pel: Option<PendingEntry>,
        reason: DeadReason,
        parked: bool,
    },
}

impl Txn<'_> {
    fn group_names(&self, key: &StreamKey, group: &[u8]) -> Result<()> {
        let max = self.cfg.limits.group_name_max;
        check_name("stream name", &key.name, self.cfg.limits.stream_name_max)?;
        check_name("group name", group, max)
    }

    pub(crate) fn create_group(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        start: GroupStart,
        mkstream: bool,
        entries_read: Option<u64>,
        policy: Option<DeliveryPolicy>,
    ) -> Result<Reply> {
        self.group_names(key, group)?;
        if let Some(p) = &policy {
            self.validate_policy(p)?;
        }
        match self.stream(key) {
            None if !mkstream => {
                return Err(Error::NoSuchStream {
                    stream: key.name.clone(),
                })
            }
            None => self.create_stream(key),
            Some(st) if st.groups.contains_key(group) => {
                return Err(Error::GroupExists {
                    group: group.to_vec(),
                })
            }
            Some(_) => {}
        }
        let gid = self.next_group_id();
        self.with_stream(key, |txn, st| {
            // As in Redis 7.4, ENTRIESREAD is taken as given (Redis 8 caps it).
            let mut meta = GroupMeta {
                group_id: gid,
                entries_read,
                ..GroupMeta::default()
            };
            meta.set_cursor(resolve_start(&st.meta, start));
            meta.policy = policy;
            st.groups
                .insert(group.to_vec(), std::sync::Arc::new(GroupState::new(meta)));
            txn.touched_groups
                .insert((st.meta.stream_id, group.to_vec()));
        });
        Ok(Reply::Ok)
    }

    pub(crate) fn set_group_id(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        start: GroupStart,
        entries_read: Option<u64>,
    ) -> Result<Reply> {
        self.group(key, group)?;
        self.with_group(key, group, |_, m, g| {
            let id = resolve_start(m, start);
            let high = g
                .meta
                .lane_cursor
                .iter()
                .copied()
                .chain([g.meta.last_id, g.meta.rewound_below])
                .max()
                .unwrap_or(StreamId::MIN);
            g.meta.rewound_below = high;
            g.meta.set_cursor(id);
            g.meta.entries_read = entries_read;
        });
        Ok(Reply::Ok)
    }

    pub(crate) fn destroy_group(&mut self, key: &StreamKey, group: &[u8]) -> Result<Reply> {
        let Some(st) = self.stream(key) else {
            return Err(Error::NoSuchStream {
                stream: key.name.clone(),
            });
        };
        let Some(g) = st.groups.get(group) else {
            return Ok(Reply::Count(0));
        };
        let gid = g.meta.group_id;
        let sid = st.meta.stream_id;
        self.tx.remove(&self.ks.groups, keys::group(sid, group));
        self.tx
            .insert(&self.ks.sys, keys::garbage(keys::GC_GROUP, gid), []);
        self.sys.garbage_pending = true;
        self.pending_delta.drop_group(gid);
        self.with_stream(key, |_, st| st.groups.remove(group));
        self.touched_groups.remove(&(sid, group.to_vec()));
        self.events.push(crate::ops::Event::GroupDestroyed {
            stream: key.clone(),
            group: group.to_vec(),
        });
        Ok(Reply::Count(1))
    }

    /// Finds or creates a consumer, marking it seen now. Returns its internal ID.
    pub(crate) fn ensure_consumer(g: &mut GroupState, name: &[u8], now: u64) -> u64 {
        if let Some(c) = g.consumers.get_mut(name) {
            c.seen_ms = now;
            return c.consumer_id;
        }
        let id = g.meta.next_consumer_id;
        g.meta.next_consumer_id += 1;
        g.consumers.insert(
            name.to_vec(),
            ConsumerMeta {
                consumer_id: id,
                seen_ms: now,
                active_ms: None,
                pending: 0,
            },
        );
        g.names.insert(id, name.to_vec());
        id
    }

    pub(crate) fn create_consumer(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
    ) -> Result<Reply> {
        check_name("consumer name", consumer, self.cfg.limits.group_name_max)?;
        let g = self.group(key, group)?;
        if g.consumers.contains_key(consumer) {
            return Ok(Reply::Count(0));
        }
        let now = self.now;
        self.with_group(key, group, |_, _, g| {
            Self::ensure_consumer(g, consumer, now)
        });
        Ok(Reply::Count(1))
    }

    pub(crate) fn delete_consumer(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        consumer: &[u8],
    ) -> Result<Reply> {
        let g = self.group(key, group)?;
        let Some(c) = g.consumers.get(consumer) else {
            return Ok(Reply::Count(0));
        };
        let (gid, cid) = (g.meta.group_id, c.consumer_id);
        let mut owned = Vec::new();
        for id in self.owned_ids(&key.name, gid, cid, StreamId::MIN, usize::MAX)? {
            owned.push((id, self.held(&key.name, gid, id)?));
        }
        let n = owned.len() as u64;
        self.with_group(key, group, |txn, _, g| {
            for (id, held) in owned {
                if let Some(held) = held {
                    txn.remove_held(g, id, held);
                }
            }
            g.consumers.remove(consumer);
            g.names.remove(&cid);
        });
        self.tx
            .remove(&self.ks.consumers, keys::consumer(gid, consumer));
        Ok(Reply::Count(n))
    }

    fn validate_policy(&self, p: &DeliveryPolicy) -> Result<()> {
        {
            if p.max_attempts == 0 || p.max_attempts > DeliveryPolicy::MAX_ATTEMPTS_MAX {
                return Err(Error::InvalidArgument(format!(
                    "max_attempts must be 1 to {}",
                    DeliveryPolicy::MAX_ATTEMPTS_MAX
                )));
            }
            if p.backoff_ms.len() > DeliveryPolicy::BACKOFF_STEPS_MAX {
                return Err(Error::TooLarge {
                    what: "backoff steps",
                    len: p.backoff_ms.len(),
                    max: DeliveryPolicy::BACKOFF_STEPS_MAX,
                });
            }
            if p.ack_wait_ms == Some(0) || p.max_age_ms == Some(0) {
                return Err(Error::InvalidArgument(
                    "ack_wait_ms and max_age_ms must be positive".into(),
                ));
            }
            check_name(
                "dead-letter stream name",
                &p.dead_letter,
                self.cfg.limits.stream_name_max,
            )?;
        }
        Ok(())
    }

    pub(crate) fn set_policy(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        policy: Option<DeliveryPolicy>,
    ) -> Result<Reply> {
        if let Some(p) = &policy {
            self.validate_policy(p)?;
        }
        self.group(key, group)?;
        self.with_group(key, group, |_, _, g| g.meta.policy = policy);
        Ok(Reply::Ok)
    }

    /// Changes some fields of the policy, reading the current one inside the batch.
    pub(crate) fn patch_policy(
        &mut self,
        key: &StreamKey,
        group: &[u8],
        patch: &crate::ops::PolicyPatch,
    ) -> Result<Reply> {
        let current = self.group(key, group)?.meta.policy.clone();
        self.set_policy(key, group, Some(patch.apply(current)))
    }
}
