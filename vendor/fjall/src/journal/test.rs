use super::*;
use crate::batch::item::Item as BatchItem;
use entry::Entry;
use lsm_tree::ValueType;
use std::io::Write;
use tempfile::tempdir;
use test_log::test;

impl PartialEq<BatchItem> for crate::journal::batch_reader::ReadBatchItem {
    fn eq(&self, other: &BatchItem) -> bool {
        self.keyspace_id == other.keyspace.id
            && self.key == other.key
            && self.value == other.value
            && self.value_type == other.value_type
    }
}

impl PartialEq<crate::journal::batch_reader::ReadBatchItem> for BatchItem {
    fn eq(&self, other: &crate::journal::batch_reader::ReadBatchItem) -> bool {
        other.eq(self)
    }
}

#[test]
#[expect(clippy::redundant_clone)]
fn journal_rotation() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");

    {
        let journal = Journal::create_new(&path)?;
        let mut writer = journal.get_writer()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace.clone(), *b"a", *b"a", ValueType::Value),
                BatchItem::new(keyspace.clone(), *b"b", *b"b", ValueType::Value),
            ]
            .iter(),
            2,
            0,
        )?;
        writer.rotate()?;
    }

    assert!(path.try_exists()?);
    assert!(next_path.try_exists()?);

    Ok(())
}

#[test]
#[expect(clippy::redundant_clone)]
fn journal_recovery_active() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace0 = db.keyspace("default", Default::default)?;
    let keyspace1 = db.keyspace("default1", Default::default)?;
    let keyspace2 = db.keyspace("default2", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");
    let next_next_path = dir2.path().join("2.jnl");

    {
        let journal = Journal::create_new(&path)?;
        let mut writer = journal.get_writer()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace0.clone(), *b"a", *b"a", ValueType::Value),
                BatchItem::new(keyspace0.clone(), *b"b", *b"b", ValueType::Value),
            ]
            .iter(),
            2,
            0,
        )?;
        writer.rotate()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace1.clone(), *b"c", *b"c", ValueType::Value),
                BatchItem::new(keyspace1.clone(), *b"d", *b"d", ValueType::Value),
            ]
            .iter(),
            2,
            1,
        )?;
        writer.rotate()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace2.clone(), *b"c", *b"c", ValueType::Value),
                BatchItem::new(keyspace2.clone(), *b"d", *b"d", ValueType::Value),
            ]
            .iter(),
            2,
            1,
        )?;
    }

    assert!(path.try_exists()?);
    assert!(next_path.try_exists()?);
    assert!(next_next_path.try_exists()?);

    let journal_recovered = Journal::recover(dir2, CompressionType::None, 0)?;
    assert_eq!(journal_recovered.active.path()?, next_next_path);
    assert_eq!(journal_recovered.sealed, &[(0, path), (1, next_path)]);

    Ok(())
}

#[test]
#[cfg(feature = "lz4")]
#[expect(clippy::redundant_clone)]
fn journal_recovery_active_lz4() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace0 = db.keyspace("default", Default::default)?;
    let keyspace1 = db.keyspace("default1", Default::default)?;
    let keyspace2 = db.keyspace("default2", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");
    let next_next_path = dir2.path().join("2.jnl");

    {
        let journal = Journal::create_new(&path)?.with_compression(CompressionType::Lz4, 1);
        let mut writer = journal.get_writer()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace0.clone(), *b"a", *b"a", ValueType::Value),
                BatchItem::new(keyspace0.clone(), *b"b", *b"b", ValueType::Value),
            ]
            .iter(),
            2,
            0,
        )?;
        writer.rotate()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace1.clone(), *b"c", *b"c", ValueType::Value),
                BatchItem::new(keyspace1.clone(), *b"d", *b"d", ValueType::Value),
            ]
            .iter(),
            2,
            1,
        )?;
        writer.rotate()?;

        writer.write_batch(
            [
                BatchItem::new(keyspace2.clone(), *b"c", *b"c", ValueType::Value),
                BatchItem::new(keyspace2.clone(), *b"d", *b"d", ValueType::Value),
            ]
            .iter(),
            2,
            1,
        )?;
    }

    assert!(path.try_exists()?);
    assert!(next_path.try_exists()?);
    assert!(next_next_path.try_exists()?);

    let journal_recovered = Journal::recover(dir2, CompressionType::None, 0)?;
    assert_eq!(journal_recovered.active.path()?, next_next_path);
    assert_eq!(journal_recovered.sealed, &[(0, path), (1, next_path)]);

    Ok(())
}

#[test]
#[expect(clippy::redundant_clone)]
fn journal_recovery_no_active() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");

    {
        let journal = Journal::create_new(&path)?;

        {
            let mut writer = journal.get_writer()?;

            writer.write_batch(
                [
                    BatchItem::new(keyspace.clone(), *b"a", *b"a", ValueType::Value),
                    BatchItem::new(keyspace.clone(), *b"b", *b"b", ValueType::Value),
                ]
                .iter(),
                2,
                0,
            )?;
            writer.rotate()?;
        }

        // NOTE: Delete the new, active journal -> old journal will be
        // reused as active on next recovery
        std::fs::remove_file(&next_path)?;
    }

    assert!(path.try_exists()?);
    assert!(!next_path.try_exists()?);

    let journal_recovered = Journal::recover(dir2, CompressionType::None, 0)?;
    assert_eq!(journal_recovered.active.path()?, path);
    assert_eq!(journal_recovered.sealed, &[]);

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::redundant_clone)]
fn journal_truncation_corrupt_bytes() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let values = [
        BatchItem::new(keyspace.clone(), *b"abc", *b"def", ValueType::Value),
        BatchItem::new(keyspace.clone(), *b"yxc", *b"ghj", ValueType::Value),
    ];

    {
        let journal = Journal::create_new(&path)?;
        journal
            .get_writer()?
            .write_batch(values.iter(), values.len(), 0)?;
    }

    {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        file.write_all(b"09pmu35w3a9mp53bao9upw3ab5up")?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    for _ in 0..5 {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        file.write_all(b"09pmu35w3a9mp53bao9upw3ab5up")?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::redundant_clone)]
fn journal_truncation_repeating_start_marker() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let values = [
        BatchItem::new(keyspace.clone(), *b"abc", *b"def", ValueType::Value),
        BatchItem::new(keyspace.clone(), *b"yxc", *b"ghj", ValueType::Value),
    ];

    {
        let journal = Journal::create_new(&path)?;
        journal
            .get_writer()?
            .write_batch(values.iter(), values.len(), 0)?;
    }

    {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::Start {
            item_count: 2,
            seqno: 64,
        }
        .encode_into(&mut file)?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    for _ in 0..5 {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::Start {
            item_count: 2,
            seqno: 64,
        }
        .encode_into(&mut file)?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::redundant_clone)]
fn journal_truncation_repeating_end_marker() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let values = [
        BatchItem::new(keyspace.clone(), *b"abc", *b"def", ValueType::Value),
        BatchItem::new(keyspace.clone(), *b"yxc", *b"ghj", ValueType::Value),
    ];

    {
        let journal = Journal::create_new(&path)?;
        journal
            .get_writer()?
            .write_batch(values.iter(), values.len(), 0)?;
    }

    {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::End(5432).encode_into(&mut file)?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    for _ in 0..5 {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::End(5432).encode_into(&mut file)?;
        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    Ok(())
}

#[test]
#[expect(clippy::unwrap_used, clippy::redundant_clone)]
fn journal_truncation_repeating_item_marker() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let values = [
        BatchItem::new(keyspace.clone(), *b"abc", *b"def", ValueType::Value),
        BatchItem::new(keyspace.clone(), *b"yxc", *b"ghj", ValueType::Value),
    ];

    {
        let journal = Journal::create_new(&path)?;
        journal
            .get_writer()?
            .write_batch(values.iter(), values.len(), 0)?;
    }

    {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::Item {
            keyspace_id: 0,
            key: (*b"zzz").into(),
            value: (*b"").into(),
            value_type: ValueType::Tombstone,
            compression: lsm_tree::CompressionType::None,
        }
        .encode_into(&mut file)?;

        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    // Mangle journal
    for _ in 0..5 {
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Entry::Item {
            keyspace_id: 0,
            key: (*b"zzz").into(),
            value: (*b"").into(),
            value_type: ValueType::Tombstone,
            compression: lsm_tree::CompressionType::None,
        }
        .encode_into(&mut file)?;

        file.sync_all()?;
    }

    for _ in 0..10 {
        let journal = Journal::from_file(&path)?;
        let reader = journal.get_reader()?;
        let collected = reader.flatten().collect::<Vec<_>>();
        assert_eq!(values.to_vec(), collected.first().unwrap().items);
    }

    Ok(())
}

// cortex patch: the filler that writes a new journal's blocks ahead of the writer
// (`prefill.rs`). The writer syncs once (a journal never synced is never filled) and then
// keeps writing without syncing, which the filler takes for idle, so the two run at once
// and meet somewhere in the file; every batch must read back intact, and the rest of the
// file reads as zeros.
#[test]
#[expect(clippy::unwrap_used)]
fn journal_fill_ahead_never_overwrites_the_writer() -> crate::Result<()> {
    use std::os::unix::fs::MetadataExt;

    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");

    let value = |i: u64| format!("{i:08}").repeat(125).into_bytes();
    let mut written = 0u64;
    let (end, had_room) = {
        let journal = Journal::create_new(&path)?;
        let mut writer = journal.get_writer()?;
        let had_room = writer.journal_file().has_room();
        // Past the start, then on until the filler stops (it met us, or it is done), bounded
        // well inside the preallocated length.
        loop {
            let item = BatchItem::new(
                keyspace.clone(),
                written.to_be_bytes(),
                value(written),
                ValueType::Value,
            );
            writer.write_batch(std::iter::once(&item), 1, written)?;
            written += 1;
            // One sync past the start; after it, no sync stops the filler.
            if written == 2_048 {
                writer.persist(PersistMode::SyncData)?;
            }
            if writer.journal_file().fill_stopped() == Some(true) || written == 55_000 {
                break;
            }
        }
        writer.persist(PersistMode::SyncData)?;
        let end = writer.pos()?;
        // Let a filler still running finish before the file is read.
        while writer.journal_file().fill_stopped() == Some(false) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        (end, had_room)
    };
    assert!(end > prefill::START_AFTER);

    let meta = std::fs::metadata(&path)?;
    assert_eq!(meta.len(), writer::PRE_ALLOCATED_BYTES);
    if had_room {
        // The filler wrote the blocks: at most a chunk next to where it met the writer is
        // left a hole.
        assert!(
            meta.blocks() * 512 >= writer::PRE_ALLOCATED_BYTES - (1 << 20),
            "{} bytes allocated",
            meta.blocks() * 512
        );
    }
    let bytes = std::fs::read(&path)?;
    assert!(bytes[end as usize..].iter().all(|b| *b == 0));

    let journal = Journal::from_file(&path)?;
    let batches = journal.get_reader()?.collect::<crate::Result<Vec<_>>>()?;
    assert_eq!(batches.len() as u64, written);
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(batch.seqno, i as u64);
        assert_eq!(&*batch.items.first().unwrap().value, &value(i as u64)[..]);
    }
    // Recovery truncated the zeros.
    assert_eq!(std::fs::metadata(&path)?.len(), end);

    Ok(())
}

// cortex patch: the filler writes only while the writer is idle (`prefill.rs`): while
// commits are synced one after the other it leaves the file to them, and once they stop it
// fills the rest.
#[test]
fn journal_fill_ahead_waits_while_the_writer_syncs() -> crate::Result<()> {
    use std::os::unix::fs::MetadataExt;

    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let value = vec![7u8; 1000];
    let item = |i: u64| {
        BatchItem::new(
            keyspace.clone(),
            i.to_be_bytes(),
            value.clone(),
            ValueType::Value,
        )
    };
    let allocated = || -> crate::Result<u64> { Ok(std::fs::metadata(&path)?.blocks() * 512) };

    let journal = Journal::create_new(&path)?;
    let mut writer = journal.get_writer()?;
    // Commits of one 1 KB batch, each synced, for 300 ms once past the first MiB: the writer
    // is never idle, for long enough that a filler writing anyway (58 KB a millisecond)
    // would have written far past the bound below.
    let mut written = 0u64;
    let mut busy_since = None;
    loop {
        writer.write_batch(std::iter::once(&item(written)), 1, written)?;
        writer.persist(PersistMode::SyncData)?;
        written += 1;
        if writer.pos()? < prefill::START_AFTER {
            continue;
        }
        let since = *busy_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= std::time::Duration::from_millis(300) || written == 30_000 {
            break;
        }
    }
    let end = writer.pos()?;
    if !writer.journal_file().has_room() {
        // Short of room the filler stops at once; nothing more to see.
        return Ok(());
    }
    // The filler started (past the first MiB, a commit synced) and waited. A sync slower
    // than the filler's idle wait (a loaded machine) lets it write a few chunks: the bound
    // is far below the 60 MiB it would have written.
    assert_eq!(writer.journal_file().fill_stopped(), Some(false));
    assert!(
        allocated()? < end + (4 << 20),
        "{} bytes allocated for {end} written",
        allocated()?
    );
    let zeros = |w: &writer::Writer| w.ahead().written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        zeros(&writer) < 4 << 20,
        "{} bytes of zeros",
        zeros(&writer)
    );

    // Idle now: it fills the rest and stops (bounded, for a machine that stalls).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while writer.journal_file().fill_stopped() == Some(false) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(writer.journal_file().fill_stopped(), Some(true));
    assert!(
        allocated()? >= writer::PRE_ALLOCATED_BYTES - (1 << 20),
        "{} bytes allocated once idle",
        allocated()?
    );
    // Counted: all of it but the chunk next to where it met the writer.
    assert!(
        zeros(&writer) + end + (1 << 20) >= writer::PRE_ALLOCATED_BYTES,
        "{} bytes of zeros counted",
        zeros(&writer)
    );
    drop(writer);
    drop(journal);

    let journal = Journal::from_file(&path)?;
    let batches = journal.get_reader()?.collect::<crate::Result<Vec<_>>>()?;
    assert_eq!(batches.len() as u64, written);
    Ok(())
}

// cortex patch: the next journal written ahead (`spare.rs`). Past `SPARE_AFTER` a spare is
// started; the rotation renames it into place once it is ready; the new journal has its
// blocks and recovers what was written into it; no spare file is left behind.
#[test]
#[expect(clippy::unwrap_used)]
fn journal_rotation_takes_a_ready_spare() -> crate::Result<()> {
    use std::os::unix::fs::MetadataExt;

    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let next_path = dir2.path().join("1.jnl");
    let spare_path = dir2.path().join(spare::SPARE_NAME);
    let item = |i: u64| {
        BatchItem::new(
            keyspace.clone(),
            i.to_be_bytes(),
            vec![(i % 251) as u8; 1000],
            ValueType::Value,
        )
    };

    let journal = Journal::create_new(&path)?;
    let mut writer = journal.get_writer()?;
    let had_room = writer.journal_file().has_room();
    let mut i = 0u64;
    // Small synced commits (16 KB) until a spare is started.
    while writer.spare_state().is_none() {
        writer.write_batch(std::iter::once(&item(i)), 1, i)?;
        i += 1;
        if i % 16 == 0 {
            writer.persist(PersistMode::SyncData)?;
        }
        assert!(i < 10_000, "no spare past {} bytes", writer.pos()?);
    }
    assert!(writer.pos()? >= spare::SPARE_AFTER);
    if !had_room {
        // Short of room, the spare stops at once and the rotation creates a new file.
        return Ok(());
    }
    // The writer is idle: the spare is written at the disk's speed.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while writer.spare_state() != Some(true) {
        assert!(std::time::Instant::now() < until, "the spare is not ready");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Every block written (an extent tree's own blocks may count too).
    assert!(std::fs::metadata(&spare_path)?.blocks() * 512 >= writer::PRE_ALLOCATED_BYTES);
    writer.rotate()?;
    assert!(!spare_path.try_exists()?);
    assert_eq!(writer.spare_state(), None);
    // The spare's zeros are counted, and the count outlives the rotation.
    let zeros = writer
        .ahead()
        .written
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        zeros >= writer::PRE_ALLOCATED_BYTES,
        "{zeros} bytes of zeros"
    );
    let meta = std::fs::metadata(&next_path)?;
    assert_eq!(meta.len(), writer::PRE_ALLOCATED_BYTES);
    assert!(meta.blocks() * 512 >= writer::PRE_ALLOCATED_BYTES);

    // Written from its start, and read back whole.
    let first = i;
    for _ in 0..100 {
        writer.write_batch(std::iter::once(&item(i)), 1, i)?;
        i += 1;
    }
    writer.persist(PersistMode::SyncData)?;
    let end = writer.pos()?;
    drop(writer);
    drop(journal);
    let journal = Journal::from_file(&next_path)?;
    let batches = journal.get_reader()?.collect::<crate::Result<Vec<_>>>()?;
    assert_eq!(batches.len(), 100);
    for (k, batch) in batches.iter().enumerate() {
        let n = first + k as u64;
        assert_eq!(batch.seqno, n);
        assert_eq!(&*batch.items.first().unwrap().value, &item(n).value[..]);
    }
    assert_eq!(std::fs::metadata(&next_path)?.len(), end);
    Ok(())
}

// cortex patch: a spare that was not taken goes with its writer, and recovery removes one
// left behind by a process that stopped.
#[test]
fn journal_spare_is_removed_when_not_taken() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let spare_path = dir2.path().join(spare::SPARE_NAME);
    {
        let journal = Journal::create_new(&path)?;
        let mut writer = journal.get_writer()?;
        let mut i = 0u64;
        while writer.spare_state().is_none() {
            let item = BatchItem::new(
                keyspace.clone(),
                i.to_be_bytes(),
                vec![1; 1000],
                ValueType::Value,
            );
            writer.write_batch(std::iter::once(&item), 1, i)?;
            i += 1;
            if i % 16 == 0 {
                writer.persist(PersistMode::SyncData)?;
            }
            assert!(i < 10_000);
        }
    }
    assert!(!spare_path.try_exists()?);

    std::fs::write(&spare_path, [0u8; 4096])?;
    let _ = Journal::recover(dir2.path(), lsm_tree::CompressionType::None, 0)?;
    assert!(!spare_path.try_exists()?);
    Ok(())
}

// cortex patch: a sync made outside the writer's lock (`Writer::sync_handle`, the caller's
// `fdatasync` on the handle) counts as a sync: it starts the spare past `SPARE_AFTER` as a
// synced commit does, and the handle reaches the bytes the writer wrote, buffered ones too.
#[test]
#[expect(clippy::unwrap_used)]
fn a_sync_outside_the_lock_counts_and_covers_the_buffered_bytes() -> crate::Result<()> {
    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let item = |i: u64| {
        BatchItem::new(
            keyspace.clone(),
            i.to_be_bytes(),
            vec![(i % 251) as u8; 1000],
            ValueType::Value,
        )
    };
    let journal = Journal::create_new(&path)?;
    let mut i = 0u64;
    loop {
        let mut writer = journal.get_writer()?;
        writer.write_batch(std::iter::once(&item(i)), 1, i)?;
        i += 1;
        if writer.spare_state().is_some() {
            break;
        }
        if i % 16 == 0 {
            let handle = writer.sync_handle()?;
            let written = writer.pos()?;
            drop(writer);
            // Everything written is in the file the handle reaches (the buffer was handed
            // to the OS), and the sync happens without the lock.
            handle.sync_data()?;
            let mut head = vec![0; written as usize];
            std::os::unix::fs::FileExt::read_exact_at(&handle, &mut head, 0)?;
            assert!(head.iter().rev().take(16).any(|&b| b != 0), "bytes missing");
        }
        assert!(
            i < 10_000,
            "no spare past {} bytes",
            journal.get_writer()?.pos()?
        );
    }
    assert!(journal.get_writer()?.pos()? >= spare::SPARE_AFTER);
    drop(journal);
    assert!(!dir2.path().join(spare::SPARE_NAME).try_exists()?);
    Ok(())
}

// cortex patch: the journal's own syncs (its seal at rotation, here) are not the writer's:
// a writer that never syncs a commit (`--fsync no`) gets no spare at the rotation and no
// filler in the next journal, and writes no zeros; its first synced commit counts.
#[test]
fn the_journals_own_syncs_start_no_filler_and_no_spare() -> crate::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;

    let dir1 = tempdir()?;
    let db = crate::Database::builder(&dir1).open()?;
    let keyspace = db.keyspace("default", Default::default)?;

    let dir2 = tempdir()?;
    let path = dir2.path().join("0.jnl");
    let item = |i: u64| {
        BatchItem::new(
            keyspace.clone(),
            i.to_be_bytes(),
            vec![(i % 251) as u8; 1000],
            ValueType::Value,
        )
    };
    let journal = Journal::create_new(&path)?;
    let mut writer = journal.get_writer()?;
    let mut i = 0u64;
    // Unsynced commits past the point where a synced writer's journal gets a spare.
    while writer.pos()? < spare::SPARE_AFTER + (1 << 20) {
        writer.write_batch(std::iter::once(&item(i)), 1, i)?;
        i += 1;
    }
    writer.persist(PersistMode::Buffer)?;
    assert_eq!(writer.spare_state(), None);
    // The rotation syncs the journal it seals, itself.
    writer.rotate()?;
    assert_eq!(writer.ahead().syncs.load(Relaxed), 0);
    assert_eq!(writer.spare_state(), None, "a spare started by the seal");
    // Past the filler's start in the new journal, still unsynced.
    let start = writer.pos()?;
    while writer.pos()? < start + prefill::START_AFTER + (1 << 20) {
        writer.write_batch(std::iter::once(&item(i)), 1, i)?;
        i += 1;
    }
    assert_eq!(
        writer.journal_file().fill_stopped(),
        None,
        "a filler started for a writer that never synced"
    );
    assert_eq!(writer.ahead().written.load(Relaxed), 0);
    // A commit's sync is the writer's, and counts.
    writer.persist(PersistMode::SyncData)?;
    assert_eq!(writer.ahead().syncs.load(Relaxed), 1);
    Ok(())
}
