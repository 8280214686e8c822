//! Redis's entries-read and lag estimates, and how a group's cursor and read counter move
//! when it consumes an entry.

use crate::id::{Lane, StreamId};
use crate::meta::{GroupMeta, StreamMeta};

/// Redis's `streamEstimateDistanceFromFirstEverEntry`: the logical read counter of `id`, if
/// it can be known.
pub(crate) fn estimate_distance(m: &StreamMeta, id: StreamId) -> Option<u64> {
    if m.entries_added == 0 {
        return Some(0);
    }
    if m.length == 0 && id <= m.last_id {
        return Some(m.entries_added);
    }
    if id == m.last_id {
        return Some(m.entries_added);
    }
    if id > m.last_id {
        return None;
    }
    if m.max_deleted_id.is_zero() || (id < m.first_id && m.max_deleted_id < m.first_id) {
        if id < m.first_id {
            return Some(m.entries_added - m.length);
        }
        if id == m.first_id {
            return Some(m.entries_added - m.length + 1);
        }
    }
    None
}

/// Redis's `streamRangeHasTombstones(s, start, NULL)`.
pub(crate) fn range_has_tombstones(m: &StreamMeta, start: StreamId) -> bool {
    if m.length == 0 || m.max_deleted_id.is_zero() || m.first_id > m.max_deleted_id {
        return false;
    }
    start <= m.max_deleted_id
}

/// Redis 7.4's consumer group lag (`streamReplyWithCGLag`), `None` when it cannot be known
/// (entries deleted after the group's position). Negative only when ENTRIESREAD was set above
/// the entries added, as Redis 7.4 answers then.
pub(crate) fn lag(m: &StreamMeta, g: &GroupMeta) -> Option<i64> {
    let added = i64::try_from(m.entries_added).unwrap_or(i64::MAX);
    if m.entries_added == 0 {
        return Some(0);
    }
    let read = match g.entries_read {
        Some(read) if !range_has_tombstones(m, g.last_id) => Some(read),
        _ => estimate_distance(m, g.last_id),
    }?;
    Some(added.saturating_sub(i64::try_from(read).unwrap_or(i64::MAX)))
}

/// Updates a group's cursor and read counter for an entry it has consumed (delivered,
/// delivered without ack, or dead-lettered on the way).
pub(crate) fn consume(m: &StreamMeta, g: &mut GroupMeta, id: StreamId, lane: Lane) {
    let c = &mut g.lane_cursor[lane.index()];
    if id > *c {
        *c = id;
    }
    if id > g.last_id {
        g.entries_read = match g.entries_read {
            Some(read) if !range_has_tombstones(m, id) => Some(read + 1),
            _ if m.entries_added > 0 => estimate_distance(m, id),
            other => other,
        };
        g.last_id = id;
    } else if let Some(read) = g.entries_read {
        // Handed out out of ID order (a lower lane after a higher one).
        g.entries_read = Some((read + 1).min(m.entries_added));
    }
}
