//! Regression tests for what the one-core review found in storage: malformed keys, large ID
//! lists, multi-stream group reads, idle wake-ups, policy patches, the catalog/snapshot pair,
//! deadlines reported by `apply`, and the batch encoding.

use std::ops::Bound::Unbounded;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cortex_storage::*;

use crate::util::*;

fn read_op(streams: Vec<(StreamKey, ReadFrom)>, retry: bool) -> Op {
    Op::ReadGroup {
        streams,
        group: b"g".to_vec(),
        consumer: b"c".to_vec(),
        count: None,
        noack: false,
        retry,
    }
}

#[test]
fn a_malformed_key_on_disk_is_corruption_not_an_id() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        add(&s, "s", "a", 1);
        create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 1);
    }
    // A key with the stream's prefix but no room for an ID, holding a valid record.
    {
        let db = fjall::SingleWriterTxDatabase::builder(dir.path())
            .open()
            .unwrap();
        let entries = db
            .keyspace("entries", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let mut k = keys::prefix(0).to_vec();
        k.extend_from_slice(&[0xff; 5]);
        let v = codec::encode(codec::Kind::Entry, &Record::plain(fields("bogus")));
        entries.insert(k, v).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let s = open(dir.path());
    // The group read reaches the bad key after the good entry: an error, not an entry.
    let r = s.apply_one(read_op(vec![(key("s"), ReadFrom::New)], false), 2);
    match r {
        Err(Error::Corruption { what, stream, .. }) => {
            assert_eq!(what, "entry key");
            assert_eq!(stream, b"s");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(matches!(
        s.range(&key("s"), Unbounded, Unbounded, None, false),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn ack_with_100000_ids_and_duplicates_counts_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let mut ops = Vec::new();
    for i in 0..2000u64 {
        ops.push(append(
            "s",
            IdSpec::Explicit(StreamId::new(1, i + 1)),
            fields("v"),
            Meta::default(),
        ));
    }
    s.apply(ops, 1).unwrap();
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 1);
    let got = read(&s, "s", "g", "c", 1000, 2);
    assert_eq!(got.len(), 1000);
    // 100,000 IDs: the 1,000 delivered ones, each many times, plus IDs never delivered.
    let ids: Vec<StreamId> = (0..100_000u64)
        .map(|i| StreamId::new(1, i % 1500 + 1))
        .collect();
    let n = count(s.apply_one(
        Op::Ack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: ids.clone(),
        },
        3,
    ));
    assert_eq!(n, 1000);
    assert_eq!(s.pending_summary(&key("s"), b"g").unwrap().count, 0);
    // One more than the limit is refused before any work.
    let max = Limits::default().ids_per_op_max as u64;
    let too_many: Vec<StreamId> = (0..=max).map(|i| StreamId::new(2, i)).collect();
    assert!(matches!(
        s.apply_one(
            Op::Delete {
                stream: key("s"),
                ids: too_many,
            },
            4,
        ),
        Err(Error::TooLarge { .. })
    ));
    // XDEL counts each ID once.
    let n = count(s.apply_one(
        Op::Delete {
            stream: key("s"),
            ids: vec![
                StreamId::new(1, 5),
                StreamId::new(1, 5),
                StreamId::new(1, 6),
            ],
        },
        5,
    ));
    assert_eq!(n, 2);
}

#[test]
fn a_multi_stream_group_read_with_a_missing_group_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    add(&s, "a", "1", 1);
    add(&s, "b", "2", 1);
    create_group(&s, "a", "g", GroupStart::Id(StreamId::MIN), 1);
    // "b" has no group g: the read fails as a whole, "a"'s entry stays undelivered.
    let r = s.apply_one(
        read_op(
            vec![(key("a"), ReadFrom::New), (key("b"), ReadFrom::New)],
            false,
        ),
        2,
    );
    assert!(matches!(r, Err(Error::NoSuchGroup { .. })), "{r:?}");
    assert_eq!(s.pending_summary(&key("a"), b"g").unwrap().count, 0);
    assert!(s.consumers_info(&key("a"), b"g", 2).unwrap().is_empty());
    // With both groups, one op reads both.
    create_group(&s, "b", "g", GroupStart::Id(StreamId::MIN), 3);
    match s.apply_one(
        read_op(
            vec![(key("a"), ReadFrom::New), (key("b"), ReadFrom::New)],
            false,
        ),
        4,
    ) {
        Ok(Reply::GroupRead(v)) => {
            assert_eq!(v.len(), 2);
            assert_eq!(values(&v[0]), ["1"]);
            assert_eq!(values(&v[1]), ["2"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_idle_wake_up_writes_nothing_but_a_first_attempt_records_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    add(&s, "s", "1", 1);
    create_group(&s, "s", "g", GroupStart::Last, 1);
    // First attempt: nothing to read, but the consumer is created and seen at 10.
    s.apply_one(read_op(vec![(key("s"), ReadFrom::New)], false), 10)
        .unwrap();
    let seen = |now| s.consumers_info(&key("s"), b"g", now).unwrap()[0].idle_ms;
    assert_eq!(seen(10), 0);
    // A retry with nothing to hand out changes nothing: seen-time stays at 10.
    let r = s
        .apply_one(read_op(vec![(key("s"), ReadFrom::New)], true), 50)
        .unwrap();
    assert_eq!(r, Reply::GroupRead(vec![vec![]]));
    assert_eq!(seen(50), 40);
    // A retry after an append hands it out and records the consumer.
    add(&s, "s", "2", 60);
    match s
        .apply_one(read_op(vec![(key("s"), ReadFrom::New)], true), 70)
        .unwrap()
    {
        Reply::GroupRead(v) => assert_eq!(values(&v[0]), ["2"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen(70), 0);
}

#[test]
fn policy_patches_change_only_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    add(&s, "s", "1", 1);
    create_group(&s, "s", "g", GroupStart::Last, 1);
    let patch = |p: PolicyPatch| Op::PatchPolicy {
        stream: key("s"),
        group: b"g".to_vec(),
        patch: p,
    };
    // Two patches of different fields in one batch (as two concurrent CX.POLICY calls
    // would land): neither change is lost.
    let out = s
        .apply(
            vec![
                patch(PolicyPatch {
                    max_attempts: Some(7),
                    ..PolicyPatch::default()
                }),
                patch(PolicyPatch {
                    ack_wait_ms: Some(Some(1234)),
                    ..PolicyPatch::default()
                }),
            ],
            2,
        )
        .unwrap();
    assert!(out.replies.iter().all(|r| r.is_ok()));
    let p = s.group_policy(&key("s"), b"g").unwrap().expect("policy");
    assert_eq!(p.max_attempts, 7);
    assert_eq!(p.ack_wait_ms, Some(1234));
    assert_eq!(p.backoff_ms, DeliveryPolicy::default().backoff_ms);
    // An invalid patch is refused and changes nothing.
    assert!(s
        .apply_one(
            patch(PolicyPatch {
                max_attempts: Some(0),
                ..PolicyPatch::default()
            }),
            3
        )
        .is_err());
    assert_eq!(
        s.group_policy(&key("s"), b"g")
            .unwrap()
            .unwrap()
            .max_attempts,
        7
    );
}

#[test]
fn readers_never_pair_a_catalog_with_another_commits_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    add(&s, "s", "0", 1);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut checks = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // XINFO STREAM reads the length from the catalog and the last entry from the
                // snapshot: they must belong to the same commit.
                let info = s.stream_info(&key("s")).unwrap().unwrap();
                let last = info.last_entry.expect("not empty").id;
                assert_eq!(
                    last, info.last_generated_id,
                    "the catalog's last ID is not the snapshot's last entry"
                );
                checks += 1;
            }
            checks
        })
    };
    for i in 0..3000u64 {
        add(&s, "s", "v", 2 + i);
    }
    stop.store(true, Ordering::Relaxed);
    let checks = reader.join().expect("reader saw a mismatched pair");
    assert!(checks > 0);
}

#[test]
fn apply_reports_the_next_deadline_including_idempotency_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let window = StoreConfig::default().idempotency_window_ms;
    let out = s
        .apply(
            vec![Op::Append {
                stream: key("s"),
                id: IdSpec::Auto,
                fields: fields("v"),
                meta: Meta::default(),
                idempotency_key: Some(b"k".to_vec()),
                no_mkstream: false,
                trim: None,
            }],
            1000,
        )
        .unwrap();
    assert_eq!(out.next_deadline_ms, Some(1000 + window));
    // A group with an ack wait: its deadline comes first.
    let out = s
        .apply(
            vec![
                Op::CreateGroup {
                    stream: key("s"),
                    group: b"g".to_vec(),
                    start: GroupStart::Id(StreamId::MIN),
                    mkstream: false,
                    entries_read: None,
                    policy: Some(DeliveryPolicy {
                        ack_wait_ms: Some(500),
                        ..DeliveryPolicy::default()
                    }),
                },
                read_op(vec![(key("s"), ReadFrom::New)], false),
            ],
            2000,
        )
        .unwrap();
    assert_eq!(out.next_deadline_ms, Some(2500));
    assert_eq!(s.next_deadline_ms(2000), Some(2500));
    // Acking clears the ack deadline lazily; after the tick passes it, the idempotency
    // window is next.
    s.apply_one(
        Op::Ack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: vec![all(&s, "s")[0].id],
        },
        2100,
    )
    .unwrap();
    let out = s.apply(vec![Op::Tick], 2600).unwrap();
    assert_eq!(out.next_deadline_ms, Some(1000 + window));
}

#[test]
fn after_an_idempotency_sweep_the_next_deadline_is_the_oldest_keys_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let window = StoreConfig::default().idempotency_window_ms;
    let publish = |k: &str, now: u64| {
        let mut op = append("s", IdSpec::Auto, fields("v"), Meta::default());
        if let Op::Append {
            idempotency_key, ..
        } = &mut op
        {
            *idempotency_key = Some(k.as_bytes().to_vec());
        }
        s.apply_one(op, now).unwrap();
    };
    publish("k1", 1000);
    publish("k2", 1000 + window / 2);
    // k1's sweep leaves k2: the store is due again when k2 expires, not a millisecond
    // later (which ticked it every millisecond until then).
    let out = s.apply(vec![Op::Tick], 1000 + window + 1).unwrap();
    assert_eq!(out.next_deadline_ms, Some(1000 + window / 2 + window));
    let out = s.apply(vec![Op::Tick], 1000 + window / 2 + window).unwrap();
    assert_eq!(out.next_deadline_ms, None);
}

#[test]
fn a_batch_encodes_and_decodes_to_the_same_ops() {
    let ops = vec![
        append(
            "s",
            IdSpec::AutoSeq(5),
            fields("v"),
            Meta {
                lane: Lane::Critical,
                expires_at_ms: Some(9),
                producer: Some(b"harold".to_vec()),
                headers: vec![(b"h".to_vec(), b"v".to_vec())],
            },
        ),
        read_op(
            vec![(key("s"), ReadFrom::History(StreamId::new(1, 2)))],
            true,
        ),
        Op::PatchPolicy {
            stream: key("s"),
            group: b"g".to_vec(),
            patch: PolicyPatch {
                ack_wait_ms: Some(None),
                ..PolicyPatch::default()
            },
        },
        Op::Tick,
    ];
    let bytes = encode_batch(&ops, 42);
    assert_eq!(decode_batch(&bytes).unwrap(), (42, ops));
    // A flipped byte is caught by the CRC.
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(decode_batch(&bad).unwrap_err().contains("CRC"));
}

#[test]
fn a_query_inside_a_batch_sees_the_batch_and_the_committed_view_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    add(&s, "s", "1", 1);
    let range = Query::Range {
        stream: key("s"),
        start: StreamId::MIN,
        end: StreamId::MAX,
        count: None,
        rev: true,
    };
    let out = s
        .apply(
            vec![
                append("s", IdSpec::Auto, fields("2"), Meta::default()),
                Op::Query(range.clone()),
                Op::Delete {
                    stream: key("s"),
                    ids: vec![StreamId::new(1, 0)],
                },
                Op::Query(Query::Stream { stream: key("s") }),
            ],
            5,
        )
        .unwrap();
    match &out.replies[1] {
        Ok(Reply::Answer(Answer::Entries(e))) => {
            let v: Vec<_> = e.iter().map(|e| e.record.fields[0].1.clone()).collect();
            assert_eq!(
                v,
                [b"2".to_vec(), b"1".to_vec()],
                "newest first, with the batch's append"
            );
        }
        other => panic!("{other:?}"),
    }
    match &out.replies[3] {
        Ok(Reply::Answer(Answer::Stream(Some(info)))) => assert_eq!(info.length, 1),
        other => panic!("{other:?}"),
    }
    // XREAD starts: `$` reads nothing now and continues after the last ID; `+` is the last entry.
    let read = s
        .query(
            &Query::Read {
                streams: vec![
                    (key("s"), ReadStart::New),
                    (key("s"), ReadStart::LastEntry),
                    (key("s"), ReadStart::After(StreamId::MIN)),
                    (key("missing"), ReadStart::LastEntry),
                ],
                count: Some(10),
            },
            6,
        )
        .unwrap();
    match read {
        Answer::Read(v) => {
            let last = s.last_id(&key("s")).unwrap();
            assert_eq!(v[0], (vec![], last));
            assert_eq!(v[1].0.len(), 1);
            assert_eq!(v[1].1, last);
            assert_eq!(v[2].0.len(), 1);
            assert_eq!(v[3], (vec![], StreamId::MIN));
        }
        other => panic!("{other:?}"),
    }
}
