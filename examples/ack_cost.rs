//! Cost of XACK on a large pending list, for before/after comparisons under callgrind:
//!
//! ```text
//! cargo build --release --example ack_cost
//! valgrind --tool=callgrind --toggle-collect='*ack_phase*' \
//!     target/release/examples/ack_cost 200000 200 100
//! ```
//!
//! Arguments: pending entries (default 200,000), ack calls (200), IDs per call (100),
//! consumers of the group (1; the entries are read by each in turn). The
//! IDs are random among the pending ones, as in `benches/resp-vs-redis.sh`. Only
//! `ack_phase` is counted with `--toggle-collect`; the printed instructions per ID are
//! the callgrind total divided by calls × IDs per call. Buffered durability: the fsync is a
//! system call callgrind does not count, and the commit's other work is the same.
use std::time::Instant;

use cortex_storage::*;

mod support;
use support::{arg, create_group, fill, open_buffered};

/// The server's allocator, so that allocation costs count as they do in `cortex serve`
/// (the system allocator's were a tenth or more of the total).
#[global_allocator]
static GLOBAL: cortex::alloc::Allocator = cortex::alloc::Allocator;

/// xorshift64*: deterministic, so before and after ack the same IDs.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[inline(never)]
fn ack_phase(store: &Store, key: &StreamKey, batches: Vec<Vec<StreamId>>) -> u64 {
    let mut acked = 0;
    for ids in batches {
        let op = Op::Ack {
            stream: key.clone(),
            group: b"g".to_vec(),
            ids,
        };
        if let Ok(Reply::Count(n)) = store.apply_one(op, 3) {
            acked += n;
        }
    }
    acked
}

fn main() {
    let pending = arg(1, 200_000);
    let calls = arg(2, 200);
    let per_call = arg(3, 100);
    let consumers = arg(4, 1).max(1);
    let (_dir, store) = open_buffered();
    let key = StreamKey::new(0, b"bench".to_vec());
    let ids = fill(&store, &key, pending, b"payload", 93);
    create_group(&store, &key, b"g");
    for turn in 0.. {
        let read = store
            .apply_one(
                Op::ReadGroup {
                    streams: vec![(key.clone(), ReadFrom::New)],
                    group: b"g".to_vec(),
                    consumer: format!("c{}", turn % consumers).into_bytes(),
                    count: Some(1000),
                    noack: false,
                    retry: false,
                },
                2,
            )
            .expect("read");
        match read {
            Reply::GroupRead(r) if r.first().is_some_and(|s| !s.is_empty()) => {}
            _ => break,
        }
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let batches: Vec<Vec<StreamId>> = (0..calls)
        .map(|_| {
            (0..per_call)
                .map(|_| ids[(next(&mut rng) % ids.len() as u64) as usize])
                .collect()
        })
        .collect();
    let t = Instant::now();
    let acked = ack_phase(&store, &key, batches);
    let took = t.elapsed();
    println!(
        "pending {pending}: {calls} XACK calls of {per_call} IDs acked {acked} in {:.1} ms ({:.2} us per ID)",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / (calls * per_call) as f64
    );
}
