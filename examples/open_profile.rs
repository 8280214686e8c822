//! Profiling aid: how long open takes on an existing data dir. `cargo run --release --example open_profile -- DIR`.
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("dir");
    for _ in 0..3 {
        let t = Instant::now();
        let db = fjall::Database::builder(&dir).open().expect("open");
        let raw = t.elapsed();
        drop(db);
        let t = Instant::now();
        let s = cortex_storage::Store::open(&dir, cortex_storage::StoreConfig::default())
            .expect("open");
        let full = t.elapsed();
        s.close().expect("close");
        println!("fjall open {:?}, store open {:?}", raw, full);
    }
}
