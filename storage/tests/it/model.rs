//! Model-based property test: random op sequences run against the store and against a plain
//! in-memory model (`model_core.rs`); every reply and the observable state are compared after
//! every op.

use proptest::prelude::*;

use cortex_storage::StoreConfig;

use crate::model_core::{run, MOp, CONSUMERS};

fn op_strategy() -> impl Strategy<Value = MOp> {
    // Stream 0 always has both groups: favour it, and the policy group.
    let s = prop_oneof![3 => Just(0usize), 1 => Just(1usize)];
    let g = prop_oneof![1 => Just(0usize), 2 => Just(1usize)];
    let c = 0..CONSUMERS.len();
    prop_oneof![
        6 => (s.clone(), 0..5usize, proptest::option::weighted(0.2, (0..400u64, 0..3u64)))
            .prop_map(|(s, lane, explicit)| MOp::Append { s, lane, explicit }),
        1 => (s.clone(), 0..8usize).prop_map(|(s, pick)| MOp::Delete { s, pick }),
        1 => (s.clone(), 0..6u64).prop_map(|(s, maxlen)| MOp::Trim { s, maxlen }),
        2 => (s.clone(), g.clone(), any::<bool>()).prop_map(|(s, g, at_end)| MOp::CreateGroup { s, g, at_end }),
        5 => (s.clone(), g.clone(), c.clone(), 1..5usize).prop_map(|(s, g, c, count)| MOp::Read { s, g, c, count }),
        1 => (s.clone(), g.clone(), c.clone()).prop_map(|(s, g, c)| MOp::History { s, g, c }),
        3 => (s.clone(), g.clone(), 0..8usize).prop_map(|(s, g, pick)| MOp::Ack { s, g, pick }),
        3 => (s.clone(), g.clone(), 0..8usize).prop_map(|(s, g, pick)| MOp::Nack { s, g, pick }),
        2 => (s.clone(), g.clone(), c, 0..8usize, (0..8u64).prop_map(|n| n * 25))
            .prop_map(|(s, g, c, pick, min_idle)| MOp::Claim { s, g, c, pick, min_idle }),
        3 => (0..7u64).prop_map(|n| MOp::Advance { ms: n * 25 }),
        1 => Just(MOp::Tick),
        1 => Just(MOp::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(generated in proptest::collection::vec(op_strategy(), 1..80)) {
        run(&generated, StoreConfig::default().pending_index_bytes);
    }

    #[test]
    fn store_matches_model_with_a_small_pending_index(generated in proptest::collection::vec(op_strategy(), 1..80)) {
        // Room for a handful of entries: groups move out of memory and back as they fill and
        // empty.
        run(&generated, 600);
    }
}
