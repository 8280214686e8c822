//! Storage throughput (criterion). `cargo bench --bench storage`.
//!
//! Targets on a 2-core machine (issue 2): append of 100-byte entries in batches of 100 with
//! one fsync per batch >= 150k entries/s; buffered >= 400k/s; group read + ack >= 200k/s.

use std::time::{Duration, Instant};

use cortex_storage::{
    Durability, GroupStart, IdSpec, Meta, Op, ReadFrom, Reply, Store, StoreConfig, StreamId,
    StreamKey,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

// The allocator the `cortex` binary uses.
#[global_allocator]
static GLOBAL: cortex::alloc::Allocator = cortex::alloc::Allocator;

const BATCH: usize = 100;

fn key() -> StreamKey {
    StreamKey::new(0, b"bench".to_vec())
}

fn appends(n: usize) -> Vec<Op> {
    (0..n)
        .map(|_| Op::Append {
            stream: key(),
            id: IdSpec::Auto,
            fields: vec![(b"payload".to_vec(), vec![b'x'; 93])],
            meta: Meta::default(),
            idempotency_key: None,
            no_mkstream: false,
            trim: None,
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn open(durability: Durability) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig {
        durability,
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), cfg).expect("open");
    (dir, store)
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(10));
    for (name, d) in [
        ("batch100_fsync_each_commit", Durability::SyncEachCommit),
        ("batch100_buffered", Durability::Buffered),
    ] {
        let (_dir, store) = open(d);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ops = appends(BATCH);
                    let t = Instant::now();
                    let out = store.apply(ops, now_ms()).expect("apply");
                    total += t.elapsed();
                    assert!(out.replies.iter().all(|r| r.is_ok()));
                }
                total
            });
        });
    }
    g.finish();
}

fn read_op(count: usize) -> Op {
    Op::ReadGroup {
        streams: vec![(key(), ReadFrom::New)],
        group: b"g".to_vec(),
        consumer: b"c".to_vec(),
        count: Some(count),
        noack: false,
        retry: false,
    }
}

fn ack_op(ids: Vec<StreamId>) -> Op {
    Op::Ack {
        stream: key(),
        group: b"g".to_vec(),
        ids,
    }
}

fn entries(r: Option<cortex_storage::Result<Reply>>) -> Vec<StreamId> {
    match r {
        Some(Ok(Reply::GroupRead(mut e))) => e.remove(0).into_iter().map(|x| x.0).collect(),
        other => panic!("read failed: {other:?}"),
    }
}

/// Group read + ack of 100-entry batches. Three shapes:
/// - `separate_commits`: a read commit, then an ack commit (two fsyncs per 100 entries);
/// - `pipelined`: one commit acks the previous batch and reads the next, which is what the
///   broker's group commit does with a pipelining client or with several consumers;
/// - `buffered`: separate commits, durability `Buffered` (CPU cost alone).
fn read_ack(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_read_ack");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(10));
    for (name, d) in [
        (
            "separate_commits_fsync_each_commit",
            Durability::SyncEachCommit,
        ),
        ("pipelined_fsync_each_commit", Durability::SyncEachCommit),
        ("separate_commits_buffered", Durability::Buffered),
    ] {
        let (_dir, store) = open(d);
        store
            .apply_one(
                Op::CreateGroup {
                    stream: key(),
                    group: b"g".to_vec(),
                    start: GroupStart::Id(StreamId::MIN),
                    mkstream: true,
                    entries_read: None,
                    policy: None,
                },
                now_ms(),
            )
            .expect("group");
        let pipelined = name.starts_with("pipelined");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Untimed: enough undelivered backlog for this sample.
                for _ in 0..=iters {
                    store.apply(appends(BATCH), now_ms()).expect("prefill");
                }
                let t = Instant::now();
                if pipelined {
                    let mut prev = entries(
                        store
                            .apply(vec![read_op(BATCH)], now_ms())
                            .expect("read")
                            .replies
                            .pop(),
                    );
                    for _ in 0..iters {
                        let mut out = store
                            .apply(vec![ack_op(prev), read_op(BATCH)], now_ms())
                            .expect("apply");
                        prev = entries(out.replies.pop());
                        assert_eq!(prev.len(), BATCH);
                    }
                    store.apply_one(ack_op(prev), now_ms()).expect("ack");
                } else {
                    for _ in 0..iters {
                        let ids = entries(Some(store.apply_one(read_op(BATCH), now_ms())));
                        assert_eq!(ids.len(), BATCH);
                        store.apply_one(ack_op(ids), now_ms()).expect("ack");
                    }
                }
                t.elapsed()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, append, read_ack);
criterion_main!(benches);
