//! What the callgrind cost examples (`ack_cost`, `xadd_cost`, `read_cost`) share: their
//! arguments, a store on a temporary directory, and filling a stream. None of it runs inside
//! the phases they count.
#![allow(dead_code)] // each example uses its own part

use cortex_storage::*;

/// The `n`th command-line argument as a number, or `default`.
pub fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A store with buffered durability (the fsync is a system call callgrind does not count)
/// on a temporary directory, which lives as long as the returned guard.
pub fn open_buffered() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        dir.path(),
        StoreConfig {
            durability: Durability::Buffered,
            ..StoreConfig::default()
        },
    )
    .expect("open");
    (dir, store)
}

/// Appends `n` entries of one field (`value_len` bytes) to `key`, 1,000 per commit; their
/// IDs.
pub fn fill(
    store: &Store,
    key: &StreamKey,
    n: usize,
    field: &[u8],
    value_len: usize,
) -> Vec<StreamId> {
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(1000) {
        let ops = (0..1000.min(n - chunk * 1000))
            .map(|_| Op::Append {
                stream: key.clone(),
                id: IdSpec::Auto,
                fields: vec![(field.to_vec(), vec![b'x'; value_len])],
                meta: Meta::default(),
                idempotency_key: None,
                no_mkstream: false,
                trim: None,
            })
            .collect();
        for r in store.apply(ops, 1).expect("append").replies {
            if let Ok(Reply::Appended { id, .. }) = r {
                ids.push(id);
            }
        }
    }
    ids
}

/// Creates group `group` of `key` reading from the start.
pub fn create_group(store: &Store, key: &StreamKey, group: &[u8]) {
    store
        .apply_one(
            Op::CreateGroup {
                stream: key.clone(),
                group: group.to_vec(),
                start: GroupStart::Id(StreamId::MIN),
                mkstream: true,
                entries_read: None,
                policy: None,
            },
            1,
        )
        .expect("group");
}
