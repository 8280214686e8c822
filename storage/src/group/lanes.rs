//! Reading one lane's next entries after a cursor, lazily, in ID order.

use std::collections::VecDeque;

use crate::codec::{self, Kind};
use crate::error::{corrupt, Result};
use crate::id::{Lane, StreamId};
use crate::kernel::get_record;
use crate::keys::{self, key_id};
use crate::keyspaces::Keyspaces;
use crate::overlay::View;
use crate::record::Record;

/// Reads the next entries of one lane after a cursor, lazily, in ID order.
pub(super) struct LaneReader {
    pub(super) lane: Lane,
    /// Buffered (id, record, last skipped non-normal ID before it).
    pub(super) buf: VecDeque<(StreamId, Record, Option<StreamId>)>,
    next_after: StreamId,
    done: bool,
    /// The normal lane scans all entries and skips other lanes; this is the last skipped.
    skipped_to: Option<StreamId>,
    scan_budget: usize,
}

impl LaneReader {
    pub(super) fn new(lane: Lane, cursor: StreamId, last: StreamId, scan_budget: usize) -> Self {
        LaneReader {
            lane,
            buf: VecDeque::new(),
            next_after: cursor,
            done: cursor >= last,
            skipped_to: None,
            scan_budget,
        }
    }

    pub(super) fn peek(
        &mut self,
        r: &impl View,
        ks: &Keyspaces,
        name: &[u8],
        sid: u64,
        want: usize,
    ) -> Result<Option<StreamId>> {
        if self.buf.is_empty() && !self.done {
            self.fill(r, ks, name, sid, want.clamp(1, 512))?;
        }
        Ok(self.buf.front().map(|e| e.0))
    }

    fn fill(
        &mut self,
        r: &impl View,
        ks: &Keyspaces,
        name: &[u8],
        sid: u64,
        want: usize,
    ) -> Result<()> {
        let Some(from_id) = self.next_after.next() else {
            self.done = true;
            return Ok(());
        };
        let mut got = 0;
        if self.lane == Lane::Normal {
            let from = keys::id_key(sid, from_id);
            let to = keys::id_key(sid, StreamId::MAX);
            let mut exhausted = true;
            for g in r.range(&ks.entries, from..=to) {
                if got >= want || self.scan_budget == 0 {
                    exhausted = false;
                    break;
                }
                self.scan_budget -= 1;
                let (k, v) = g.into_inner()?;
                let id = key_id(&k, "entry key", name)?;
                let rec: Record = codec::decode(Kind::Entry, &v)
                    .map_err(|reason| corrupt("entry", name, Some(id), reason))?;
                self.next_after = id;
                if rec.meta.lane == Lane::Normal {
                    if got == 0 {
                        // Sized once for the batch (`want` is at most 512), and only for a
                        // lane that has entries: most of a read's five lanes have none.
                        self.buf.reserve(want);
                    }
                    self.buf.push_back((id, rec, self.skipped_to.take()));
                    got += 1;
                } else {
                    self.skipped_to = Some(id);
                }
            }
            self.done = exhausted || self.scan_budget == 0;
        } else {
            let from = keys::lane(sid, self.lane, from_id);
            let to = keys::lane(sid, self.lane, StreamId::MAX);
            let mut exhausted = true;
            for g in r.range(&ks.lanes, from..=to) {
                if got >= want {
                    exhausted = false;
                    break;
                }
                let k = g.key()?;
                let id = key_id(&k, "lane key", name)?;
                self.next_after = id;
                if let Some(rec) = get_record(r, ks, name, sid, id)? {
                    if got == 0 {
                        self.buf.reserve(want);
                    }
                    self.buf.push_back((id, rec, None));
                    got += 1;
                }
            }
            self.done = exhausted;
        }
        Ok(())
    }

    /// The normal lane's cursor may move over skipped entries of other lanes up to the next
    /// entry not taken.
    pub(super) fn consumed_to(&self) -> Option<StreamId> {
        match self.buf.front() {
            Some((_, _, skipped)) => *skipped,
            None => self.skipped_to,
        }
    }
}
