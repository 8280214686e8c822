//! Scale check: store N entries (default 10 million), then measure heap per stored entry and
//! reopen time. `cargo bench --bench storage_scale` (N from `CORTEX_SCALE_ENTRIES`).
//!
//! Heap is counted exactly by a wrapper around the allocator the `cortex` binary uses; RSS is
//! read from /proc for comparison (it includes fjall's block cache and memtables).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use cortex_storage::{
    Durability, GroupStart, IdSpec, Meta, Op, ReadFrom, Reply, Store, StoreConfig, StreamId,
    StreamKey,
};

struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the real allocator.
        unsafe { cortex::alloc::Allocator.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the real allocator.
        unsafe { cortex::alloc::Allocator.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the real allocator.
        unsafe { cortex::alloc::Allocator.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap() -> f64 {
    HEAP.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
}

fn rss() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1 << 20) as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for a list; there is nothing to list.
    }
    let n: u64 = std::env::var("CORTEX_SCALE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = std::env::var_os("CORTEX_SCALE_KEEP").is_some();
    let cfg = || StoreConfig {
        durability: Durability::Buffered,
        ..StoreConfig::default()
    };
    let key = StreamKey::new(0, b"scale".to_vec());
    let store = Store::open(dir.path(), cfg()).expect("open");
    store
        .apply_one(
            Op::CreateGroup {
                stream: key.clone(),
                group: b"g".to_vec(),
                start: GroupStart::Id(StreamId::MIN),
                mkstream: true,
                entries_read: None,
                policy: None,
            },
            1,
        )
        .expect("group");
    let heap_empty = heap();
    println!("entries,heap_mib,rss_mib,append_per_s");
    let batch = 1000u64;
    let report_every = (n / 10).max(batch);
    let mut written = 0u64;
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut heap_at_first_report = None;
    while written < n {
        let ops = (0..batch)
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
        store
            .apply(ops, 1_700_000_000_000 + written / 1000)
            .expect("append");
        written += batch;
        if written.is_multiple_of(report_every) {
            let rate = (written - last.1) as f64 / last.0.elapsed().as_secs_f64();
            println!("{written},{:.1},{:.1},{:.0}", heap(), rss(), rate);
            heap_at_first_report.get_or_insert((written, heap()));
            last = (Instant::now(), written);
        }
    }
    store.persist().expect("persist");
    let fill_s = start.elapsed().as_secs_f64();
    let heap_full = heap();
    let (first_n, first_heap) = heap_at_first_report.unwrap_or((0, heap_empty));
    // Reopen after a crash-like drop: the journal (at most `journal_bytes_max`) is replayed.
    drop(store);
    let t = Instant::now();
    let store = Store::open(dir.path(), cfg()).expect("reopen after drop");
    let reopen_dirty_ms = t.elapsed().as_secs_f64() * 1000.0;
    // Reopen after a clean close: nothing to replay.
    store.close().expect("close");
    let heap_closed = heap();
    let t = Instant::now();
    let store = Store::open(dir.path(), cfg()).expect("reopen");
    let reopen_ms = t.elapsed().as_secs_f64() * 1000.0;
    let heap_reopened = heap() - heap_closed;
    assert_eq!(store.len(&key), n);
    // The reopened store works: read from the middle and hand out a batch to a group.
    let t = Instant::now();
    let mid = StreamId::new(1_700_000_000_000 + n / 2000, 0);
    let got = store
        .range(
            &key,
            std::ops::Bound::Included(mid),
            std::ops::Bound::Unbounded,
            Some(100),
            false,
        )
        .expect("range");
    assert_eq!(got.len(), 100);
    let read = store
        .apply_one(
            Op::ReadGroup {
                streams: vec![(key.clone(), ReadFrom::New)],
                group: b"g".to_vec(),
                consumer: b"c".to_vec(),
                count: Some(100),
                noack: false,
                retry: false,
            },
            2,
        )
        .expect("read");
    assert!(matches!(read, Reply::GroupRead(ref e) if e[0].len() == 100));
    let first_reads_ms = t.elapsed().as_secs_f64() * 1000.0;
    let disk = store.disk_space().unwrap_or(0) as f64 / (1 << 20) as f64;

    let per_entry = (heap_full - first_heap) * (1 << 20) as f64 / (n - first_n).max(1) as f64;
    println!();
    println!("entries stored:                 {n}");
    println!(
        "fill (buffered, 1000/batch):    {:.1} s, {:.0} entries/s",
        fill_s,
        n as f64 / fill_s
    );
    println!("disk:                           {disk:.0} MiB");
    println!(
        "heap while writing:             {heap_empty:.1} MiB empty -> {heap_full:.1} MiB at {n}"
    );
    println!(
        "heap growth per stored entry:   {per_entry:.2} bytes (from {first_n} to {n} entries)"
    );
    println!("reopen after clean close:       {reopen_ms:.0} ms");
    println!("reopen after drop (replay):     {reopen_dirty_ms:.0} ms");
    println!(
        "heap after reopen:              {heap_reopened:.1} MiB, RSS {:.0} MiB",
        rss()
    );
    println!("first range + group read:       {first_reads_ms:.1} ms");
    if keep {
        store.close().expect("close");
        println!("kept data dir: {}", dir.keep().display());
    }
}
