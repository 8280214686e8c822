use std::ops::Bound::Unbounded;

use cortex_storage::*;

use crate::util::*;

#[test]
fn reopen_many_times_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected_len = 0;
    let mut now = 1000;
    for round in 0..8u64 {
        let s = open(dir.path());
        assert_eq!(s.len(&key("s")), expected_len, "round {round}");
        if round == 0 {
            create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), now);
            s.apply_one(
                Op::SetPolicy {
                    stream: key("s"),
                    group: b"g".to_vec(),
                    policy: Some(DeliveryPolicy::default()),
                },
                now,
            )
            .unwrap();
        }
        let ops: Vec<Op> = (0..50)
            .map(|i| {
                append(
                    "s",
                    IdSpec::Auto,
                    fields(&format!("{round}-{i}")),
                    Meta {
                        lane: Lane::ALL[(i % 5) as usize],
                        ..Meta::default()
                    },
                )
            })
            .collect();
        let out = s.apply(ops, now).unwrap();
        assert!(out.replies.iter().all(|r| r.is_ok()));
        expected_len += 50;
        now += 10;
        let got = read(&s, "s", "g", &format!("c{round}"), 20, now);
        assert_eq!(got.len(), 20);
        let info = &s.groups_info(&key("s")).unwrap()[0];
        assert_eq!(info.pending, 20 * (round + 1));
        assert_eq!(info.counters.delivered, 20 * (round + 1));
        drop(s);
    }
    let s = open(dir.path());
    let info = s.stream_info(&key("s")).unwrap().unwrap();
    assert_eq!((info.length, info.entries_added), (400, 400));
    assert_eq!(info.lane_len, [80; 5]);
    let sum = s.pending_summary(&key("s"), b"g").unwrap();
    assert_eq!(sum.count, 160);
    assert_eq!(sum.consumers.len(), 8);
    // The ack deadlines survived: the tick after ack_wait fails them all.
    assert_eq!(s.due(now).next_deadline_ms, Some(1000 + 10 + 30_000));
    s.apply_one(Op::Tick, now + 31_000).unwrap();
    let q = PendingQuery {
        start: StreamId::MIN,
        end: StreamId::MAX,
        count: 1000,
        consumer: None,
        min_idle_ms: None,
    };
    assert!(s
        .pending_range(&key("s"), b"g", &q, now)
        .unwrap()
        .iter()
        .all(|p| p.failures == 1));
}

#[test]
fn a_flipped_byte_is_a_corruption_error_naming_stream_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let s = open(dir.path());
        add(&s, "s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1);
        id = add(&s, "s", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 2);
    }
    // Flip one byte of the second record through fjall directly (the value as stored).
    {
        let db = fjall::SingleWriterTxDatabase::builder(dir.path())
            .open()
            .unwrap();
        let entries = db
            .keyspace("entries", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let k = keys::id_key(0, id);
        let mut v = entries.get(k).unwrap().expect("stored").to_vec();
        let last = v.len() - 3;
        v[last] ^= 0x20;
        entries.insert(k, v).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let s = open(dir.path());
    let err = s
        .range(&key("s"), Unbounded, Unbounded, None, false)
        .unwrap_err();
    match &err {
        Error::Corruption {
            stream,
            id: Some(bad),
            reason,
            ..
        } => {
            assert_eq!(stream, b"s");
            assert_eq!(*bad, id);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(err.to_string().contains(&id.to_string()));
    // The good record is still readable; a group read stops at the bad one with the error.
    assert_eq!(
        s.range(&key("s"), Unbounded, Unbounded, Some(1), false)
            .unwrap()
            .len(),
        1
    );
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 3);
    let r = s.apply_one(
        Op::ReadGroup {
            streams: vec![(key("s"), ReadFrom::New)],
            group: b"g".to_vec(),
            consumer: b"c".to_vec(),
            count: None,
            noack: false,
            retry: false,
        },
        4,
    );
    assert!(matches!(r, Err(Error::Corruption { .. })));
    // Trimming removes the corrupt record like any other.
    assert_eq!(
        count(s.apply_one(
            Op::Trim {
                stream: key("s"),
                trim: Trim::new(TrimStrategy::MaxLen(0), false, None)
            },
            5
        )),
        2
    );
}

/// The on-disk format is pinned by a fixture made with format version 1. If this test fails,
/// the format changed: bump `codec::FORMAT_VERSION` and keep reading the old one.
#[test]
fn committed_fixture_still_reads() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let s = open(dir.path());
    let e = all(&s, "fixture");
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].id, StreamId::new(1_700_000_000_000, 0));
    assert_eq!(
        e[0].record.fields,
        vec![(b"task".to_vec(), b"build".to_vec())]
    );
    assert_eq!(e[1].record.meta.lane, Lane::Critical);
    assert_eq!(e[1].record.meta.expires_at_ms, Some(1_700_000_060_000));
    assert_eq!(e[2].record.meta.producer.as_deref(), Some(&b"harold"[..]));
    let sum = s.pending_summary(&key("fixture"), b"workers").unwrap();
    assert_eq!(sum.count, 2);
    assert_eq!(
        s.group_policy(&key("fixture"), b"workers").unwrap(),
        Some(DeliveryPolicy::default())
    );
    assert_eq!(
        s.dlq_list(&key("cortex:dlq"), &DlqFilter::default(), 10)
            .unwrap()
            .len(),
        1
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Writes the fixture. Run with `CORTEX_WRITE_FIXTURE=1 cargo test -p cortex-storage write_fixture`.
#[test]
fn write_fixture() {
    if std::env::var_os("CORTEX_WRITE_FIXTURE").is_none() {
        return;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let _ = std::fs::remove_dir_all(&path);
    let s = open(&path);
    let t = 1_700_000_000_000;
    s.apply_one(
        append(
            "fixture",
            IdSpec::Auto,
            vec![(b"task".to_vec(), b"build".to_vec())],
            Meta::default(),
        ),
        t,
    )
    .unwrap();
    s.apply_one(
        append(
            "fixture",
            IdSpec::Auto,
            fields("urgent"),
            Meta {
                lane: Lane::Critical,
                expires_at_ms: Some(t + 60_000),
                ..Meta::default()
            },
        ),
        t + 1,
    )
    .unwrap();
    s.apply_one(
        append(
            "fixture",
            IdSpec::Auto,
            fields("hb"),
            Meta {
                lane: Lane::Heartbeat,
                producer: Some(b"harold".to_vec()),
                ..Meta::default()
            },
        ),
        t + 2,
    )
    .unwrap();
    s.apply_one(
        Op::CreateGroup {
            stream: key("fixture"),
            group: b"workers".to_vec(),
            start: GroupStart::Id(StreamId::MIN),
            mkstream: false,
            entries_read: None,
            policy: None,
        },
        t,
    )
    .unwrap();
    s.apply_one(
        Op::SetPolicy {
            stream: key("fixture"),
            group: b"workers".to_vec(),
            policy: Some(DeliveryPolicy::default()),
        },
        t,
    )
    .unwrap();
    let got = read(&s, "fixture", "workers", "pink", 3, t + 10);
    assert_eq!(got.len(), 3);
    s.apply_one(
        Op::Nack {
            stream: key("fixture"),
            group: b"workers".to_vec(),
            ids: vec![got[0].0],
            error: Some(b"nope".to_vec()),
            reject: true,
        },
        t + 20,
    )
    .unwrap();
    s.persist().unwrap();
}

/// A commit writes only the metadata records that changed; one whose key an op of the batch
/// removed is written again even when its value is the same as before the batch.
#[test]
fn metadata_a_batch_leaves_as_it_was_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1000;
    {
        let s = open(dir.path());
        create_group(&s, "a", "g", GroupStart::Id(StreamId::MIN), now);
        for i in 0..4 {
            add(&s, "a", &i.to_string(), now);
        }
        let mine = read(&s, "a", "g", "c1", 2, now);
        read(&s, "a", "g", "c2", 2, now);
        // An ack changes the group and c1 only: the stream and c2 are not written again.
        let r = s.apply_one(
            Op::Ack {
                stream: key("a"),
                group: b"g".to_vec(),
                ids: vec![mine[0].0],
            },
            now + 1,
        );
        assert_eq!(r.unwrap(), Reply::Count(1));
        // Renamed away and back in one batch: the stream ends with the same record it had,
        // but its key was removed on the way.
        let there_and_back = vec![
            Op::RenameStream {
                from: key("a"),
                to: key("b"),
                replace: false,
            },
            Op::RenameStream {
                from: key("b"),
                to: key("a"),
                replace: false,
            },
        ];
        let out = s.apply(there_and_back, now + 2).unwrap();
        assert!(out.replies.iter().all(|r| r.is_ok()), "{:?}", out.replies);
        // A consumer deleted and created again in one batch is written again.
        let again = vec![
            Op::DeleteConsumer {
                stream: key("a"),
                group: b"g".to_vec(),
                consumer: b"c3".to_vec(),
            },
            Op::CreateConsumer {
                stream: key("a"),
                group: b"g".to_vec(),
                consumer: b"c3".to_vec(),
            },
        ];
        s.apply(again, now + 3).unwrap();
    }
    let s = open(dir.path());
    let info = s
        .stream_info(&key("a"))
        .unwrap()
        .expect("stream a after reopen");
    assert_eq!((info.length, info.entries_added), (4, 4));
    assert!(!s.exists(&key("b")));
    let g = &s.groups_info(&key("a")).unwrap()[0];
    assert_eq!((g.pending, g.consumers), (3, 3));
    let c = s.consumers_info(&key("a"), b"g", now + 4).unwrap();
    let pending: Vec<(Vec<u8>, u64)> = c.iter().map(|c| (c.name.clone(), c.pending)).collect();
    assert_eq!(
        pending,
        vec![
            (b"c1".to_vec(), 1),
            (b"c2".to_vec(), 2),
            (b"c3".to_vec(), 0)
        ]
    );
    let report = s.scrub().unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
}

/// XTRIM ... DELREF changes groups from inside a trim: the groups' records and counts it
/// leaves are the ones a reopen finds, and nothing dangles.
#[test]
fn a_delref_trim_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1000;
    {
        let s = open(dir.path());
        create_group(&s, "a", "g1", GroupStart::Id(StreamId::MIN), now);
        create_group(&s, "a", "g2", GroupStart::Id(StreamId::MIN), now);
        for i in 0..6 {
            add(&s, "a", &i.to_string(), now);
        }
        read(&s, "a", "g1", "c1", 3, now);
        read(&s, "a", "g1", "c2", 2, now);
        read(&s, "a", "g2", "c1", 1, now);
        let trim = Op::Trim {
            stream: key("a"),
            trim: Trim {
                refs: RefPolicy::DelRef,
                ..Trim::new(TrimStrategy::MaxLen(2), false, None)
            },
        };
        assert_eq!(s.apply_one(trim, now + 1).unwrap(), Reply::Count(4));
    }
    let s = open(dir.path());
    let g: Vec<(Vec<u8>, u64)> = s
        .groups_info(&key("a"))
        .unwrap()
        .iter()
        .map(|g| (g.name.clone(), g.pending))
        .collect();
    assert_eq!(g, vec![(b"g1".to_vec(), 1), (b"g2".to_vec(), 0)]);
    let c = s.consumers_info(&key("a"), b"g1", now + 2).unwrap();
    let pending: Vec<(Vec<u8>, u64)> = c.iter().map(|c| (c.name.clone(), c.pending)).collect();
    assert_eq!(pending, vec![(b"c1".to_vec(), 0), (b"c2".to_vec(), 1)]);
    let report = s.scrub().unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
}

/// XNACK ... FORCE's unowned pending entries are in the group's counts and lists, in no
/// consumer's, and a reopen and a scrub find them so.
#[test]
fn forced_unowned_pending_entries_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = 1000;
    {
        let s = open(dir.path());
        for i in 0..3 {
            add(&s, "a", &i.to_string(), now);
        }
        create_group(&s, "a", "g", GroupStart::Id(StreamId::MIN), now);
        let mine = read(&s, "a", "g", "c1", 1, now);
        let all: Vec<StreamId> = s
            .range(&key("a"), Unbounded, Unbounded, None, false)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        let force = Op::NackForce {
            stream: key("a"),
            group: b"g".to_vec(),
            ids: all.clone(),
            mode: NackMode::Fail,
            retry_count: None,
        };
        assert_eq!(s.apply_one(force, now + 1).unwrap(), Reply::Count(3));
        assert_eq!(mine[0].0, all[0]);
    }
    let s = open(dir.path());
    let g = &s.groups_info(&key("a")).unwrap()[0];
    assert_eq!(g.pending, 3);
    let c = s.consumers_info(&key("a"), b"g", now + 2).unwrap();
    let pending: Vec<(Vec<u8>, u64)> = c.iter().map(|c| (c.name.clone(), c.pending)).collect();
    assert_eq!(pending, vec![(b"c1".to_vec(), 1)]);
    let report = s.scrub().unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
}

/// A store written before the consumers' pending order moved into memory kept it in the
/// `cpel` keyspace: opening empties it, and the consumer's list comes from `pel`.
#[test]
fn an_older_stores_consumer_pending_keys_are_emptied_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let s = open(dir.path());
        let id = add(&s, "s", "a", 1);
        create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 1);
        assert_eq!(read(&s, "s", "g", "c", 10, 2).len(), 1);
        id
    };
    let cpel_len = |dir: &std::path::Path, put: bool| {
        let db = fjall::Database::builder(dir).open().unwrap();
        let cpel = db
            .keyspace("cpel", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        if put {
            cpel.insert([7u8; 32], []).unwrap();
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        cpel.len().unwrap()
    };
    assert_eq!(cpel_len(dir.path(), true), 1);
    {
        let s = open(dir.path());
        let history = Op::ReadGroup {
            streams: vec![(key("s"), ReadFrom::History(StreamId::MIN))],
            group: b"g".to_vec(),
            consumer: b"c".to_vec(),
            count: None,
            noack: false,
            retry: false,
        };
        match s.apply_one(history, 3) {
            Ok(Reply::GroupRead(v)) => {
                assert_eq!(v[0].iter().map(|e| e.0).collect::<Vec<_>>(), [id])
            }
            other => panic!("{other:?}"),
        }
        assert!(s.scrub().unwrap().damage.is_empty());
        s.close().unwrap();
    }
    assert_eq!(cpel_len(dir.path(), false), 0);
}

/// A batch applied without its sync (`apply_unsynced`) is visible at once, is covered by the
/// next `sync_journal`, and is in the store after a reopen without a clean close (the
/// journal replayed); a sync the test fails reports the failure and leaves later batches
/// working.
#[test]
fn unsynced_batches_are_visible_at_once_and_recovered_after_their_sync() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut ids = Vec::new();
    for i in 0..3 {
        let out = s
            .apply_unsynced(
                vec![append(
                    "s",
                    IdSpec::Auto,
                    fields(&i.to_string()),
                    Meta::default(),
                )],
                1000 + i,
            )
            .unwrap();
        match &out.replies[0] {
            Ok(Reply::Appended { id, .. }) => ids.push(*id),
            other => panic!("{other:?}"),
        }
        // Each batch sees the one before (its ID follows), before any sync.
        assert_eq!(s.len(&key("s")), ids.len() as u64);
    }
    s.sync_journal().unwrap();
    s.fail_next_syncs(1);
    let err = s.sync_journal().unwrap_err();
    assert!(err.to_string().contains("injected sync error"), "{err}");
    s.sync_journal().unwrap();
    drop(s);
    let s = open(dir.path());
    let got = s
        .range(&key("s"), Unbounded, Unbounded, None, false)
        .unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
}
