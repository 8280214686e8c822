//! Cost of XADD in the store, for before/after comparisons under callgrind:
//!
//! ```text
//! cargo build --release --example xadd_cost
//! valgrind --tool=callgrind --toggle-collect='*append_phase*' \
//!     target/release/examples/xadd_cost 20000 1 100 2
//! ```
//!
//! Arguments: XADD calls (default 20,000), entries per call (1: one unpipelined client's
//! commits; 16: a P16 pipeline's), payload bytes (100), groups reading the stream (0).
//! Only `append_phase` is counted with `--toggle-collect`; instructions per XADD are the
//! callgrind total divided by calls × entries per call. Buffered durability: the fsync is
//! a system call callgrind does not count. Without valgrind it prints the wall time.
use std::time::Instant;

use cortex_storage::*;

mod support;
use support::{arg, create_group, open_buffered};

/// The server's allocator, so that allocation costs count as they do in `cortex serve`
/// (the system allocator's were a tenth or more of the total).
#[global_allocator]
static GLOBAL: cortex::alloc::Allocator = cortex::alloc::Allocator;

#[inline(never)]
fn append_phase(store: &Store, key: &StreamKey, calls: usize, per_call: usize, payload: &[u8]) {
    for i in 0..calls {
        let ops = (0..per_call)
            .map(|_| Op::Append {
                stream: key.clone(),
                id: IdSpec::Auto,
                fields: vec![(b"f".to_vec(), payload.to_vec())],
                meta: Meta::default(),
                idempotency_key: None,
                no_mkstream: false,
                trim: None,
            })
            .collect();
        let out = store.apply(ops, 1_000 + i as u64).expect("append");
        assert!(out.replies.iter().all(|r| r.is_ok()));
    }
}

fn main() {
    let calls = arg(1, 20_000);
    let per_call = arg(2, 1).max(1);
    let payload = vec![b'x'; arg(3, 100)];
    let groups = arg(4, 0);
    let (_dir, store) = open_buffered();
    let key = StreamKey::new(0, b"bench".to_vec());
    for g in 0..groups {
        create_group(&store, &key, format!("g{g}").as_bytes());
    }
    let started = Instant::now();
    append_phase(&store, &key, calls, per_call, &payload);
    let took = started.elapsed();
    println!(
        "{calls} XADD calls of {per_call} ({} B payload, {groups} groups): {:.2} µs per entry",
        payload.len(),
        took.as_secs_f64() * 1e6 / (calls * per_call) as f64
    );
}
