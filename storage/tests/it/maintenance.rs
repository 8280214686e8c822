use cortex_storage::*;

use crate::util::*;

/// A store with two streams, priority entries, a group with pending entries of two consumers.
fn populate(s: &Store) -> Vec<StreamId> {
    let mut ids = Vec::new();
    for i in 0..30u64 {
        ids.push(add_lane(
            s,
            "jobs",
            &format!("v{i}"),
            Lane::ALL[(i % 5) as usize],
            1_000 + i,
        ));
    }
    add(s, "other", "x", 2_000);
    create_group(s, "jobs", "g", GroupStart::Id(StreamId::MIN), 2_001);
    assert_eq!(read(s, "jobs", "g", "a", 7, 2_002).len(), 7);
    assert_eq!(read(s, "jobs", "g", "b", 5, 2_003).len(), 5);
    ids
}

#[test]
fn a_backup_is_the_store_as_of_one_commit_and_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir.path().join("live"));
    populate(&s);
    let target = dir.path().join("copy");
    let report = s.backup_to(&target).unwrap();
    assert_eq!(report.streams, 2);
    assert!(report.keys > 30, "{report:?}");
    // The copy is its tables only: no preallocated journal is carried along.
    let size = tree_bytes(&target);
    assert!(size < 4 << 20, "the backup is {size} bytes");
    // Writes after the backup are not in it.
    add(&s, "jobs", "late", 3_000);
    let copy = open(&target);
    let live = s.overview(0);
    let backed = copy.overview(0);
    assert_eq!(backed.len(), 2);
    assert_eq!(backed[0].name, b"jobs");
    assert_eq!(backed[0].length, 30);
    assert_eq!(live[0].length, 31);
    assert_eq!(backed[0].groups, {
        let mut g = live[0].groups.clone();
        g[0].lag = Some(g[0].lag.unwrap() - 1);
        g
    });
    assert_eq!(all(&copy, "jobs").len(), 30);
    drop(copy);
    let r = verify(&target, &StoreConfig::default()).unwrap();
    assert!(r.damage.is_empty(), "{:?}", r.damage);
    assert_eq!((r.streams, r.entries, r.groups, r.pending), (2, 31, 1, 12));
    // A non-empty target is refused.
    assert!(s.backup_to(&target).is_err());
    // The copy (its journal trimmed) takes writes, and they survive a crash.
    let copy = open(&target);
    add(&copy, "jobs", "after", 4_000);
    drop(copy);
    assert_eq!(all(&open(&target), "jobs").len(), 31);
}

#[test]
fn verify_names_the_stream_and_ids_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let ids;
    {
        let s = open(dir.path());
        ids = populate(&s);
    }
    {
        let db = fjall::SingleWriterTxDatabase::builder(dir.path())
            .open()
            .unwrap();
        let entries = db
            .keyspace("entries", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        // The "jobs" stream has internal ID 0. Flip a byte of one record; drop another.
        let k = keys::id_key(0, ids[3]);
        let mut v = entries.get(k).unwrap().expect("stored").to_vec();
        let last = v.len() - 2;
        v[last] ^= 0x01;
        entries.insert(k, v).unwrap();
        entries.remove(keys::id_key(0, ids[9])).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let r = verify(dir.path(), &StoreConfig::default()).unwrap();
    let text: Vec<String> = r.damage.iter().map(|d| d.what.clone()).collect();
    assert!(r.damage.iter().all(|d| d.stream == b"jobs"), "{text:?}");
    let crc = r
        .damage
        .iter()
        .find(|d| d.what.contains("CRC"))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert_eq!(crc.ids, vec![ids[3]]);
    assert!(
        text.iter()
            .any(|t| t.contains("says 30 entries, 29 are stored")),
        "{text:?}"
    );
    // ids[9] is in the heartbeat lane (9 % 5 = 4): its lane key now points nowhere.
    let orphan = r
        .damage
        .iter()
        .find(|d| d.what.contains("lane index"))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert_eq!(orphan.ids, vec![ids[9]]);
    assert!(verify(&dir.path().join("nothing"), &StoreConfig::default()).is_err());
}

/// A pending entry whose owner is no consumer of its group (nor the unowned marker of
/// XNACK FORCE) is damage, and its consumer's count no longer matches what it owns.
#[test]
fn verify_reports_a_pending_entry_owned_by_no_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let ids;
    {
        let s = open(dir.path());
        ids = populate(&s);
    }
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let pel = db
            .keyspace("pel", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        // The group is the store's first (internal ID 0); ids[0] went to consumer "a".
        let k = keys::id_key(0, ids[0]);
        let v = pel.get(k).unwrap().expect("pending");
        let mut p: PendingEntry = codec::decode(codec::Kind::Pending, &v).unwrap();
        p.consumer_id = 999;
        pel.insert(k, codec::encode(codec::Kind::Pending, &p))
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let r = verify(dir.path(), &StoreConfig::default()).unwrap();
    let text: Vec<String> = r.damage.iter().map(|d| d.what.clone()).collect();
    let orphan = r
        .damage
        .iter()
        .find(|d| d.what.contains("owned by no consumer"))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert_eq!(
        (orphan.stream.as_slice(), orphan.ids.as_slice()),
        (&b"jobs"[..], &ids[..1])
    );
    assert!(
        text.iter()
            .any(|t| t.contains("consumer 'a' metadata says 7 pending, it owns 6")),
        "{text:?}"
    );
}

/// A replicated log's progress is written in the same commit as its ops: it survives a
/// reopen with them, a failed op does not lose it, and a backup carries the progress of
/// the commit it copied.
#[test]
fn log_progress_is_committed_with_its_batch_and_copied_by_backups() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(s.progress().unwrap(), None);
    let out = s
        .apply_logged(
            vec![append("jobs", IdSpec::Auto, fields("a"), Meta::default())],
            1_000,
            b"index 1",
        )
        .unwrap();
    assert!(out.replies[0].is_ok());
    // An entry with no ops still moves the progress; a failing op does not stop it.
    s.apply_logged(Vec::new(), 1_000, b"index 2").unwrap();
    let out = s
        .apply_logged(
            vec![Op::DeleteConsumer {
                stream: key("nope"),
                group: b"g".to_vec(),
                consumer: b"c".to_vec(),
            }],
            1_001,
            b"index 3",
        )
        .unwrap();
    assert!(out.replies[0].is_err());
    assert_eq!(s.progress().unwrap().as_deref(), Some(&b"index 3"[..]));
    let copy = tempfile::tempdir().unwrap();
    let report = s.backup_to(&copy.path().join("b")).unwrap();
    assert_eq!(report.progress.as_deref(), Some(&b"index 3"[..]));
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.progress().unwrap().as_deref(), Some(&b"index 3"[..]));
    assert_eq!(s.stream_info(&key("jobs")).unwrap().unwrap().length, 1);
    let b = open(&copy.path().join("b"));
    assert_eq!(b.progress().unwrap().as_deref(), Some(&b"index 3"[..]));
}

/// Bytes of the files under `dir` (their lengths, holes included).
fn tree_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                tree_bytes(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

/// A damaged block of another keyspace than the entries (here the pending lists) no longer
/// stops the check: it is reported with its stream and group, and the rest is checked.
#[test]
fn a_damaged_pending_list_block_is_reported_and_the_check_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        let ops: Vec<Op> = (0..5000)
            .map(|i| {
                append(
                    "jobs",
                    IdSpec::Auto,
                    fields(&format!("v{i}")),
                    Meta::default(),
                )
            })
            .collect();
        s.apply(ops, 1_000).unwrap();
        add(&s, "other", "x", 1_001);
        create_group(&s, "jobs", "g", GroupStart::Id(StreamId::MIN), 1_002);
        assert_eq!(read(&s, "jobs", "g", "a", 5000, 1_003).len(), 5000);
        s.close().unwrap();
    }
    // fjall numbers keyspaces in creation order after its own (0): the pending lists
    // ("pel", the sixth the store creates) are keyspaces/6.
    let tables = dir.path().join("keyspaces/6/tables");
    let mut damaged = 0;
    for t in std::fs::read_dir(&tables).unwrap() {
        let path = t.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        if bytes.len() < 64 << 10 {
            continue;
        }
        let mid = bytes.len() / 3;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes).unwrap();
        damaged += 1;
    }
    assert!(
        damaged > 0,
        "no pending-list table to damage in {}",
        tables.display()
    );
    let r = verify(dir.path(), &StoreConfig::default()).expect("the check completes");
    let text: Vec<String> = r.damage.iter().map(|d| d.what.clone()).collect();
    let pel = r
        .damage
        .iter()
        .find(|d| d.what.contains("group 'g': pending entries cannot be read"))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert_eq!(pel.stream, b"jobs");
    // Everything else was still checked.
    assert_eq!((r.streams, r.entries, r.groups), (2, 5001, 1), "{text:?}");
}
