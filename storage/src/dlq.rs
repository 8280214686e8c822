//! Dead letters: moving entries to a dead-letter stream, listing, redriving and purging.

use crate::overlay::View;

use crate::error::Result;
use crate::id::{IdSpec, Lane, StreamId, StreamKey};
use crate::kernel::{GroupState, PendingDeadLetter, Txn};
use crate::keys;
use crate::meta::PendingEntry;
use crate::ops::{Event, Reply};
use crate::query::DlqFilter;
use crate::record::{DeadLetter, DeadReason, Entry, Meta, Record};
use crate::stream::next_id;

impl Txn<'_> {
    /// Moves an entry to a dead-letter stream: leaves the pending list now, and is appended
    /// to `dlq_name` (in the origin's namespace) at the end of the op, in the same batch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn dead_letter(
        &mut self,
        origin: &StreamKey,
        group: &[u8],
        g: &mut GroupState,
        dlq_name: &[u8],
        id: StreamId,
        record: Record,
        pel: Option<&PendingEntry>,
        reason: DeadReason,
    ) {
        if let Some(p) = pel {
            self.remove_pending(g, id, p);
        }
        g.meta.counters.dead_lettered += 1;
        let consumer = pel.map_or_else(Vec::new, |p| g.consumer_name(p.consumer_id).to_vec());
        let failures = pel.map_or(0, |p| p.failures);
        let deliveries = pel.map_or(0, |p| p.deliveries);
        let last_error = pel.and_then(|p| p.last_error.clone());
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"origin-stream".to_vec(), origin.name.clone()),
            (b"origin-id".to_vec(), id.to_string().into_bytes()),
            (b"group".to_vec(), group.to_vec()),
            (b"consumer".to_vec(), consumer.clone()),
            (b"reason".to_vec(), reason.name().as_bytes().to_vec()),
            (b"attempts".to_vec(), failures.to_string().into_bytes()),
            (b"deliveries".to_vec(), deliveries.to_string().into_bytes()),
            (
                b"last-error".to_vec(),
                last_error.clone().unwrap_or_default(),
            ),
            (b"dead-at-ms".to_vec(), self.now.to_string().into_bytes()),
        ];
        let header_fields = fields.len() as u16;
        let original_meta = record.meta;
        // A canceled task's entry keeps its task `canceled`.
        let task = crate::task::task_of(&original_meta).filter(|_| reason != DeadReason::Canceled);
        if let Some(task) = task {
            let event = match reason {
                DeadReason::Rejected => crate::task::TaskEvent::Rejected {
                    error: last_error.clone(),
                },
                r => crate::task::TaskEvent::DeadLettered {
                    reason: r.name().to_string(),
                },
            };
            self.task_touch(crate::task::TaskRef::Id(task.to_vec()), event);
        }
        fields.extend(record.fields);
        let dl = DeadLetter {
            origin_ns: origin.ns,
            origin_stream: origin.name.clone(),
            origin_id: id,
            group: group.to_vec(),
            consumer: consumer.clone(),
            reason,
            failures,
            deliveries,
            last_error,
            dead_at_ms: self.now,
            original_meta,
            header_fields,
        };
        let dlq = StreamKey::new(origin.ns, dlq_name.to_vec());
        self.dead_letters.push(PendingDeadLetter {
            dlq: dlq.clone(),
            record: Record {
                fields,
                meta: Meta::default(),
                dead_letter: Some(Box::new(dl)),
            },
            event: Event::DeadLettered {
                stream: origin.clone(),
                id,
                group: group.to_vec(),
                consumer,
                reason,
                dlq,
                dlq_id: None,
            },
        });
    }

    /// Appends the dead letters queued by the current op.
    pub(crate) fn flush_dead_letters(&mut self) {
        for d in std::mem::take(&mut self.dead_letters) {
            if self.stream(&d.dlq).is_none() {
                self.create_stream(&d.dlq);
            }
            let now = self.now;
            let stored = self
                .with_stream(&d.dlq, |txn, st| {
                    let id = next_id(st.meta.last_id, IdSpec::Auto, now).ok()?;
                    txn.insert_entry(&d.dlq, st, id, d.record.borrowed());
                    Some(id)
                })
                .flatten();
            let mut event = d.event;
            if let Event::DeadLettered { dlq_id, .. } = &mut event {
                *dlq_id = stored;
            }
            self.events.push(event);
        }
    }

    /// Dead letters of `dlq` matching the filter (at most `limit`).
    fn dlq_matching(
        &self,
        dlq: &StreamKey,
        filter: &DlqFilter,
        limit: usize,
    ) -> Result<Vec<(Entry, DeadLetter)>> {
        let Some(st) = self.stream(dlq) else {
            return Ok(Vec::new());
        };
        let (lo, hi) = match filter.id {
            Some(id) => (id, id),
            None => (st.meta.first_id, StreamId::MAX),
        };
        let mut out = Vec::new();
        if st.meta.length == 0 {
            return Ok(out);
        }
        let entries = crate::kernel::scan_entries(
            &self.tx,
            self.ks,
            &dlq.name,
            st.meta.stream_id,
            lo.max(st.meta.first_id)..=hi,
            self.cfg.limits.dlq_scan_max,
            false,
        )?;
        for e in entries {
            if out.len() >= limit {
                break;
            }
            if let Some(d) = e.record.dead_letter.clone() {
                if filter.matches(e.id, &d) {
                    out.push((e, *d));
                }
            }
        }
        Ok(out)
    }

    fn remove_dead_letters(&mut self, dlq: &StreamKey, gone: &[(Entry, DeadLetter)]) -> Result<()> {
        let list: Vec<(StreamId, Lane, u64)> = gone
            .iter()
            .map(|(e, _)| (e.id, e.record.meta.lane, e.record.payload_len() as u64))
            .collect();
        self.with_stream(dlq, |txn, st| txn.remove_entries(dlq, st, &list))
            .unwrap_or(Ok(()))
    }

    pub(crate) fn dlq_redrive(
        &mut self,
        dlq: &StreamKey,
        filter: &DlqFilter,
        limit: usize,
    ) -> Result<Reply> {
        let found = self.dlq_matching(dlq, filter, limit.min(self.cfg.limits.dlq_batch_max))?;
        let now = self.now;
        let mut moved = Vec::new();
        for (e, d) in found {
            let origin = StreamKey::new(d.origin_ns, d.origin_stream.clone());
            if self.stream(&origin).is_none() {
                self.create_stream(&origin);
            }
            let mut meta = d.original_meta.clone();
            if d.reason == DeadReason::Expired {
                // It would expire again at once: a redrive of an expired entry drops its TTL.
                meta.expires_at_ms = None;
            }
            if d.reason == DeadReason::Canceled {
                // Its task stays canceled; redriven, the entry is a plain message again
                // (with its task header, reads would pass over it forever).
                meta.headers.retain(|(k, _)| {
                    k != crate::task::TASK_HEADER && k != crate::task::ON_CANCEL_HEADER
                });
            }
            let record = Record {
                fields: e.record.original_fields().to_vec(),
                meta,
                dead_letter: None,
            };
            let at = self
                .with_stream(&origin, |txn, st| {
                    let id = next_id(st.meta.last_id, IdSpec::Auto, now).ok()?;
                    txn.insert_entry(&origin, st, id, record.borrowed());
                    Some((st.meta.stream_id, id))
                })
                .flatten();
            if let Some((sid, id)) = at {
                self.task_redriven(&origin, sid, id, &record.meta)?;
                moved.push((e, d));
            }
        }
        self.remove_dead_letters(dlq, &moved)?;
        Ok(Reply::Count(moved.len() as u64))
    }

    pub(crate) fn dlq_purge(
        &mut self,
        dlq: &StreamKey,
        filter: &DlqFilter,
        limit: usize,
    ) -> Result<Reply> {
        let found = self.dlq_matching(dlq, filter, limit.min(self.cfg.limits.dlq_batch_max))?;
        self.remove_dead_letters(dlq, &found)?;
        Ok(Reply::Count(found.len() as u64))
    }

    /// Deletes keys of deleted streams and groups, resuming where the last tick stopped.
    pub(crate) fn collect_garbage(&mut self) -> Result<()> {
        if !self.sys.garbage_pending {
            return Ok(());
        }
        let mut budget = self.cfg.limits.gc_keys_per_tick_max;
        let records: Vec<(Vec<u8>, Vec<u8>)> = self
            .tx
            .prefix(&self.ks.sys, keys::GC_PREFIX)
            .map(|g| g.into_inner().map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()?;
        let mut remaining = false;
        for (gk, progress) in records {
            let Some((kind, id)) = keys::parse_garbage(&gk) else {
                self.tx.remove(&self.ks.sys, gk);
                continue;
            };
            let spaces = match kind {
                keys::GC_STREAM => vec![
                    &self.ks.entries,
                    &self.ks.lanes,
                    &self.ks.idem,
                    &self.ks.nodes,
                ],
                _ => vec![
                    &self.ks.pel,
                    &self.ks.cpel,
                    &self.ks.due,
                    &self.ks.ready,
                    &self.ks.consumers,
                    &self.ks.sched,
                ],
            };
            // progress: [keyspace index][last deleted key]
            let mut idx = progress.first().map_or(0, |&i| usize::from(i));
            let mut after: Option<Vec<u8>> = progress
                .get(1..)
                .filter(|k| !k.is_empty())
                .map(<[u8]>::to_vec);
            let mut done = true;
            while idx < spaces.len() {
                let ks = spaces[idx];
                let prefix = keys::prefix(id);
                let mut end = prefix.to_vec();
                end.extend_from_slice(&[0xff; 64]);
                let start = after.clone().unwrap_or_else(|| prefix.to_vec());
                let mut batch = Vec::new();
                for item in self.tx.range(
                    ks,
                    (
                        std::ops::Bound::Included(start.clone()),
                        std::ops::Bound::Included(end),
                    ),
                ) {
                    let k = item.key()?;
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    if after.as_deref() == Some(&k[..]) {
                        continue;
                    }
                    batch.push(k.to_vec());
                    if batch.len() >= budget {
                        break;
                    }
                }
                budget -= batch.len();
                let full = budget == 0;
                let last = batch.last().cloned();
                for k in batch {
                    if idx <= 1 && kind == keys::GC_STREAM {
                        self.tx.remove_weak(ks, k);
                    } else {
                        self.tx.remove(ks, k);
                    }
                }
                if full {
                    after = last;
                    done = false;
                    break;
                }
                idx += 1;
                after = None;
            }
            if done {
                self.tx.remove(&self.ks.sys, gk);
            } else {
                let mut v = vec![idx as u8];
                v.extend(after.unwrap_or_default());
                self.tx.insert(&self.ks.sys, gk, v);
                remaining = true;
                break;
            }
        }
        self.sys.garbage_pending = remaining;
        Ok(())
    }
}
