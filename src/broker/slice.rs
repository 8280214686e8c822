//! Big per-ID writes in slices, so one client's 100,000-ID XACK or XDEL does not hold the
//! single writer while every other client's write waits behind it.
//!
//! An [`Op::Ack`] or [`Op::Delete`] naming more than [`SLICE_IDS`] IDs (and no more than the
//! store's `ids_per_op_max`, which the store still enforces on the whole) is queued as
//! several ops of at most [`SLICE_IDS`] IDs each, one submission each, in order, each
//! queued once the one before it is durable: other clients' commands queued meanwhile go
//! between them. To its own client the command is as before:
//! its replies come back as one (the counts summed), and nothing the client sends after it
//! runs before its last slice. Each ID's outcome does not depend on the others (a repeated
//! ID counts once either way), so the sum is the count the whole op would have given. A
//! transaction ([`super::Broker::transaction`]) is never sliced.

use cortex_storage::{Op, Reply};

use crate::core::Replies;

/// Most IDs one slice carries.
pub const SLICE_IDS: usize = 1_000;

/// A submission cut into runs to queue one after the other, and for each original op the
/// number of replies (in the runs' order) that make its own.
pub(crate) struct Sliced {
    pub runs: Vec<Vec<Op>>,
    shape: Vec<usize>,
}

fn ids(op: &Op) -> usize {
    match op {
        Op::Ack { ids, .. } | Op::Delete { ids, .. } => ids.len(),
        _ => 0,
    }
}

/// An op that may be sliced: more than [`SLICE_IDS`] IDs (cheap: the common submission
/// has none and looks no further).
pub(crate) fn big(op: &Op) -> bool {
    ids(op) > SLICE_IDS
}

fn sliceable(op: &Op, max_ids: usize) -> bool {
    big(op) && ids(op) <= max_ids
}

/// The op's slices.
fn slices(op: Op) -> Vec<Op> {
    match op {
        Op::Ack { stream, group, ids } => ids
            .chunks(SLICE_IDS)
            .map(|c| Op::Ack {
                stream: stream.clone(),
                group: group.clone(),
                ids: c.to_vec(),
            })
            .collect(),
        Op::Delete { stream, ids } => ids
            .chunks(SLICE_IDS)
            .map(|c| Op::Delete {
                stream: stream.clone(),
                ids: c.to_vec(),
            })
            .collect(),
        other => vec![other],
    }
}

/// Cuts `ops` where an op is to be sliced; `Err(ops)` (unchanged) when none is.
pub(crate) fn plan(ops: Vec<Op>, max_ids: usize) -> Result<Sliced, Vec<Op>> {
    if !ops.iter().any(|op| sliceable(op, max_ids)) {
        return Err(ops);
    }
    let mut runs = Vec::new();
    let mut shape = Vec::with_capacity(ops.len());
    let mut run = Vec::new();
    for op in ops {
        if sliceable(&op, max_ids) {
            if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
            let parts = slices(op);
            shape.push(parts.len());
            runs.extend(parts.into_iter().map(|p| vec![p]));
        } else {
            shape.push(1);
            run.push(op);
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    Ok(Sliced { runs, shape })
}

impl Sliced {
    /// The replies of the original ops, from the runs' replies in order: a sliced op's
    /// counts summed; its first refusal, if a slice was refused, instead (a refusal of the
    /// whole op, such as a wrong type or a missing group, refuses the first slice, before
    /// anything was applied).
    pub(crate) fn merge(&self, runs: Vec<Replies>) -> Replies {
        let mut flat = runs.into_iter().flatten();
        let mut out = Vec::with_capacity(self.shape.len());
        for &n in &self.shape {
            if n == 1 {
                out.extend(flat.next());
                continue;
            }
            let mut sum: cortex_storage::Result<u64> = Ok(0);
            for r in flat.by_ref().take(n) {
                sum = match (sum, r) {
                    (Ok(a), Ok(Reply::Count(b))) => Ok(a + b),
                    (Ok(_), Err(e)) => Err(e),
                    (Ok(a), Ok(_)) => Ok(a),
                    (Err(e), _) => Err(e),
                };
            }
            out.push(sum.map(Reply::Count));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_storage::{StreamId, StreamKey};

    fn ack(n: u64) -> Op {
        Op::Ack {
            stream: StreamKey::new(0, b"s".to_vec()),
            group: b"g".to_vec(),
            ids: (0..n).map(|i| StreamId::new(i + 1, 0)).collect(),
        }
    }

    fn no_group() -> cortex_storage::Error {
        cortex_storage::Error::NoSuchGroup {
            stream: b"s".to_vec(),
            group: b"g".to_vec(),
        }
    }

    #[test]
    fn only_big_id_lists_are_sliced_and_replies_fold_back_in_order() {
        assert!(plan(vec![ack(1_000), Op::Tick], 100_000).is_err());
        assert!(
            plan(vec![ack(2_500)], 2_000).is_err(),
            "over the limit: the store refuses it whole"
        );
        let s = plan(vec![Op::Tick, ack(2_500), Op::Tick], 100_000).unwrap();
        let sizes: Vec<usize> = s
            .runs
            .iter()
            .map(|r| match &r[..] {
                [Op::Ack { ids, .. }] => ids.len(),
                other => other.len() * 1_000_000,
            })
            .collect();
        assert_eq!(sizes, [1_000_000, 1_000, 1_000, 500, 1_000_000]);
        let replies = vec![
            vec![Ok(Reply::Ok)],
            vec![Ok(Reply::Count(1_000))],
            vec![Ok(Reply::Count(7))],
            vec![Ok(Reply::Count(0))],
            vec![Ok(Reply::Count(3))],
        ];
        assert!(matches!(
            &s.merge(replies)[..],
            [Ok(Reply::Ok), Ok(Reply::Count(1_007)), Ok(Reply::Count(3))]
        ));
        let refused = vec![
            vec![Ok(Reply::Ok)],
            vec![Err(no_group())],
            vec![Err(no_group())],
            vec![Err(no_group())],
            vec![Ok(Reply::Ok)],
        ];
        assert!(matches!(
            &s.merge(refused)[..],
            [
                Ok(Reply::Ok),
                Err(cortex_storage::Error::NoSuchGroup { .. }),
                Ok(Reply::Ok)
            ]
        ));
    }
}
