//! Cost of XREADGROUP ... COUNT n STREAMS key > in the store, for before/after comparisons
//! under callgrind:
//!
//! ```text
//! cargo build --release --example read_cost
//! valgrind --tool=callgrind --toggle-collect='*read_phase*' \
//!     target/release/examples/read_cost 100000 500 100
//! ```
//!
//! Arguments: entries stored first (default 100,000), group reads (500), COUNT per read
//! (100). Only `read_phase` is counted with `--toggle-collect`; instructions per read are
//! the callgrind total divided by the reads. Buffered durability: the fsync is a system call
//! callgrind does not count. Without valgrind it prints the wall time.
use std::time::Instant;

use cortex_storage::*;

mod support;
use support::{arg, create_group, fill, open_buffered};

/// The server's allocator, so that allocation costs count as they do in `cortex serve`
/// (the system allocator's were a tenth or more of the total).
#[global_allocator]
static GLOBAL: cortex::alloc::Allocator = cortex::alloc::Allocator;

#[inline(never)]
fn read_phase(store: &Store, key: &StreamKey, reads: usize, count: usize) -> usize {
    let mut got = 0;
    for i in 0..reads {
        let op = Op::ReadGroup {
            streams: vec![(key.clone(), ReadFrom::New)],
            group: b"g".to_vec(),
            consumer: b"c".to_vec(),
            count: Some(count),
            noack: false,
            retry: false,
        };
        match store.apply_one(op, 10_000 + i as u64) {
            Ok(Reply::GroupRead(per)) => got += per.iter().map(Vec::len).sum::<usize>(),
            other => panic!("read: {other:?}"),
        }
    }
    got
}

fn main() {
    let entries = arg(1, 100_000);
    let reads = arg(2, 500);
    let count = arg(3, 100);
    let (_dir, store) = open_buffered();
    let key = StreamKey::new(0, b"bench".to_vec());
    fill(&store, &key, entries, b"f", 100);
    create_group(&store, &key, b"g");
    let started = Instant::now();
    let got = read_phase(&store, &key, reads, count);
    let took = started.elapsed();
    println!(
        "{reads} reads of COUNT {count} ({got} entries): {:.1} µs per read",
        took.as_secs_f64() * 1e6 / reads as f64
    );
}
