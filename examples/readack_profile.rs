//! Profiling aid: group read + ack in a loop. `cargo run --release --example readack_profile -- sync|buffered`.
use std::time::Instant;

use cortex_storage::*;

#[global_allocator]
static GLOBAL: cortex::alloc::Allocator = cortex::alloc::Allocator;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "sync".into());
    let durability = if mode == "sync" {
        Durability::SyncEachCommit
    } else {
        Durability::Buffered
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreConfig {
            durability,
            ..StoreConfig::default()
        },
    )
    .expect("open");
    let key = StreamKey::new(0, b"bench".to_vec());
    let rounds = 3000;
    for _ in 0..rounds {
        let ops = (0..100)
            .map(|_| Op::Append {
                stream: key.clone(),
                id: IdSpec::Auto,
                fields: vec![(b"payload".to_vec(), vec![b'x'; 93])],
                meta: Meta::default(),
                idempotency_key: None,
                no_mkstream: false,
                trim: None,
            })
            .collect();
        store.apply(ops, 1).expect("append");
    }
    store
        .apply_one(
            Op::CreateGroup {
                stream: key.clone(),
                group: b"g".to_vec(),
                start: GroupStart::Id(StreamId::MIN),
                mkstream: false,
                entries_read: None,
                policy: None,
            },
            1,
        )
        .expect("group");
    let (mut tr, mut ta) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for _ in 0..rounds {
        let t = Instant::now();
        let Ok(Reply::GroupRead(mut e)) = store.apply_one(
            Op::ReadGroup {
                streams: vec![(key.clone(), ReadFrom::New)],
                group: b"g".to_vec(),
                consumer: b"c".to_vec(),
                count: Some(100),
                noack: false,
                retry: false,
            },
            2,
        ) else {
            panic!()
        };
        let e = e.remove(0);
        tr += t.elapsed();
        let t = Instant::now();
        store
            .apply_one(
                Op::Ack {
                    stream: key.clone(),
                    group: b"g".to_vec(),
                    ids: e.iter().map(|x| x.0).collect(),
                },
                3,
            )
            .expect("ack");
        ta += t.elapsed();
    }
    let n = (rounds * 100) as f64;
    println!(
        "{mode}: read {:.1} us/100, ack {:.1} us/100, {:.0} entries/s",
        tr.as_micros() as f64 / rounds as f64,
        ta.as_micros() as f64 / rounds as f64,
        n / (tr + ta).as_secs_f64()
    );
}
