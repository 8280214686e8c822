use std::ops::Bound::{Excluded, Included, Unbounded};

use cortex_storage::nodes::NodeLimits;
use cortex_storage::*;

use crate::util::*;

#[test]
fn auto_ids_grow_even_when_the_clock_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let a = add(&s, "s", "a", 1000);
    let b = add(&s, "s", "b", 1000);
    let c = add(&s, "s", "c", 900);
    let d = add(&s, "s", "d", 2000);
    assert_eq!(a, StreamId::new(1000, 0));
    assert_eq!(b, StreamId::new(1000, 1));
    assert_eq!(c, StreamId::new(1000, 2));
    assert_eq!(d, StreamId::new(2000, 0));
    assert_eq!(s.len(&key("s")), 4);
}

#[test]
fn explicit_ids_follow_redis_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ap = |id: IdSpec| s.apply_one(append("s", id, fields("x"), Meta::default()), 5);
    assert!(matches!(
        ap(IdSpec::Explicit(StreamId::MIN)),
        Err(Error::IdZero)
    ));
    assert_eq!(
        ap(IdSpec::AutoSeq(0)).unwrap(),
        Reply::Appended {
            id: StreamId::new(0, 1),
            duplicate: false
        }
    );
    assert_eq!(
        ap(IdSpec::Explicit(StreamId::new(5, 5))).unwrap(),
        Reply::Appended {
            id: StreamId::new(5, 5),
            duplicate: false
        }
    );
    assert!(matches!(
        ap(IdSpec::Explicit(StreamId::new(5, 5))),
        Err(Error::IdNotGreater { .. })
    ));
    assert!(matches!(
        ap(IdSpec::Explicit(StreamId::new(4, 9))),
        Err(Error::IdNotGreater { .. })
    ));
    assert!(matches!(
        ap(IdSpec::AutoSeq(4)),
        Err(Error::IdNotGreater { .. })
    ));
    assert_eq!(
        ap(IdSpec::AutoSeq(5)).unwrap(),
        Reply::Appended {
            id: StreamId::new(5, 6),
            duplicate: false
        }
    );
    assert_eq!(
        ap(IdSpec::AutoSeq(7)).unwrap(),
        Reply::Appended {
            id: StreamId::new(7, 0),
            duplicate: false
        }
    );
    ap(IdSpec::Explicit(StreamId::MAX)).unwrap();
    assert!(matches!(ap(IdSpec::Auto), Err(Error::IdExhausted)));
    assert!(matches!(
        ap(IdSpec::AutoSeq(u64::MAX)),
        Err(Error::IdNotGreater { .. })
    ));
    // Failed appends changed nothing.
    assert_eq!(s.len(&key("s")), 5);
}

#[test]
fn ranges_counts_and_exclusive_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ids: Vec<StreamId> = (0..10)
        .map(|i| add(&s, "s", &i.to_string(), 100 + i))
        .collect();
    let k = key("s");
    let r = s
        .range(&k, Included(ids[2]), Included(ids[5]), None, false)
        .unwrap();
    assert_eq!(r.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..=5]);
    let r = s
        .range(&k, Excluded(ids[2]), Unbounded, Some(3), false)
        .unwrap();
    assert_eq!(r.iter().map(|e| e.id).collect::<Vec<_>>(), ids[3..6]);
    let r = s
        .range(&k, Unbounded, Excluded(ids[8]), Some(2), true)
        .unwrap();
    assert_eq!(
        r.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[7], ids[6]]
    );
    assert!(s
        .range(&k, Included(ids[5]), Included(ids[2]), None, false)
        .unwrap()
        .is_empty());
    assert!(s
        .range(&key("nope"), Unbounded, Unbounded, None, false)
        .unwrap()
        .is_empty());
    assert!(s
        .range(&k, Excluded(StreamId::MAX), Unbounded, None, false)
        .unwrap()
        .is_empty());
}

#[test]
fn delete_trim_and_xinfo_counters() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let k = key("s");
    let ids: Vec<StreamId> = (0..10).map(|i| add(&s, "s", "v", 100 + i)).collect();
    assert_eq!(
        count(s.apply_one(
            Op::Delete {
                stream: k.clone(),
                ids: vec![ids[0], ids[3], ids[3], StreamId::new(1, 1)]
            },
            200
        )),
        2
    );
    let info = s.stream_info(&k).unwrap().unwrap();
    assert_eq!(info.length, 8);
    assert_eq!(info.entries_added, 10);
    assert_eq!(info.max_deleted_entry_id, ids[3]);
    assert_eq!(info.recorded_first_entry_id, ids[1]);
    assert_eq!(info.first_entry.unwrap().id, ids[1]);
    assert_eq!(info.last_entry.unwrap().id, ids[9]);
    let trim = |strategy| Op::Trim {
        stream: k.clone(),
        trim: Trim::new(strategy, false, None),
    };
    assert_eq!(count(s.apply_one(trim(TrimStrategy::MaxLen(5)), 200)), 3);
    assert_eq!(all(&s, "s").first().unwrap().id, ids[5]);
    assert_eq!(
        count(s.apply_one(trim(TrimStrategy::MinId(ids[7])), 200)),
        2
    );
    // Max age: entries with ms < now - age go.
    assert_eq!(
        count(s.apply_one(trim(TrimStrategy::MaxAgeMs(100)), 208)),
        1
    );
    assert_eq!(
        all(&s, "s").iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[8], ids[9]]
    );
    let info = s.stream_info(&k).unwrap().unwrap();
    assert_eq!(
        (info.length, info.entries_added, info.last_generated_id),
        (2, 10, ids[9])
    );
    assert_eq!(count(s.apply_one(trim(TrimStrategy::MaxLen(0)), 300)), 2);
    let info = s.stream_info(&k).unwrap().unwrap();
    assert_eq!(info.recorded_first_entry_id, StreamId::MIN);
    assert_eq!(info.length, 0);
    // Trim with a limit.
    for i in 0..10 {
        add(&s, "s", "v", 400 + i);
    }
    let limited = Op::Trim {
        stream: k.clone(),
        trim: Trim::new(TrimStrategy::MaxLen(0), true, Some(4)),
    };
    // `~` removes whole radix-tree nodes only: ten entries sit in one 100-entry node, and
    // removing it would exceed the limit, so nothing goes (as in Redis).
    assert_eq!(count(s.apply_one(limited.clone(), 500)), 0);
    assert_eq!(s.len(&k), 10);
    // With 2-entry nodes, LIMIT 4 removes two whole nodes.
    s.apply_one(Op::DeleteStream { stream: k.clone() }, 500)
        .unwrap();
    s.apply_one(
        Op::SetNodeLimits(NodeLimits {
            entries: 2,
            bytes: 4096,
        }),
        500,
    )
    .unwrap();
    for i in 0..10 {
        add(&s, "s", "v", 600 + i);
    }
    assert_eq!(s.stream_info(&k).unwrap().unwrap().nodes, 5);
    assert_eq!(count(s.apply_one(limited, 700)), 4);
    assert_eq!(s.len(&k), 6);
    assert_eq!(s.stream_info(&k).unwrap().unwrap().nodes, 3);
}

#[test]
fn xadd_with_trim_nomkstream_and_setid() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let k = key("s");
    let op = |trim| Op::Append {
        stream: k.clone(),
        id: IdSpec::Auto,
        fields: fields("x"),
        meta: Meta::default(),
        idempotency_key: None,
        no_mkstream: false,
        trim,
    };
    for i in 0..5 {
        s.apply_one(
            op(Some(Trim::new(TrimStrategy::MaxLen(3), false, None))),
            10 + i,
        )
        .unwrap();
    }
    assert_eq!(s.len(&k), 3);
    // MAXLEN 0 trims the new entry too, and still returns its ID.
    let r = s
        .apply_one(
            op(Some(Trim::new(TrimStrategy::MaxLen(0), false, None))),
            20,
        )
        .unwrap();
    assert!(matches!(r, Reply::Appended { .. }));
    assert_eq!(s.len(&k), 0);
    let nomk = Op::Append {
        stream: key("other"),
        id: IdSpec::Auto,
        fields: fields("x"),
        meta: Meta::default(),
        idempotency_key: None,
        no_mkstream: true,
        trim: None,
    };
    assert_eq!(s.apply_one(nomk, 30).unwrap(), Reply::Nil);
    assert!(!s.exists(&key("other")));
    // XSETID
    add(&s, "t", "a", 50);
    let top = add(&s, "t", "b", 60);
    let setid = |id, ea, md| Op::SetId {
        stream: key("t"),
        last_id: id,
        entries_added: ea,
        max_deleted_id: md,
    };
    assert!(matches!(
        s.apply_one(setid(StreamId::new(59, 0), None, None), 70),
        Err(Error::SetIdTooSmall)
    ));
    assert!(matches!(
        s.apply_one(setid(StreamId::new(100, 0), Some(1), None), 70),
        Err(Error::EntriesAddedTooSmall)
    ));
    assert!(matches!(
        s.apply_one(
            setid(StreamId::new(100, 0), None, Some(StreamId::new(200, 0))),
            70
        ),
        Err(Error::MaxDeletedTooLarge)
    ));
    assert!(matches!(
        s.apply_one(setid(top, None, None), 70),
        Ok(Reply::Ok)
    ));
    s.apply_one(
        setid(StreamId::new(100, 0), Some(7), Some(StreamId::new(90, 0))),
        70,
    )
    .unwrap();
    let info = s.stream_info(&key("t")).unwrap().unwrap();
    assert_eq!(
        (
            info.last_generated_id,
            info.entries_added,
            info.max_deleted_entry_id
        ),
        (StreamId::new(100, 0), 7, StreamId::new(90, 0))
    );
    assert!(matches!(
        s.apply_one(setid(StreamId::new(1, 0), None, None), 70),
        Err(Error::SetIdBelowMaxDeleted)
    ));
    assert!(matches!(
        s.apply_one(
            Op::SetId {
                stream: key("missing"),
                last_id: StreamId::new(1, 0),
                entries_added: None,
                max_deleted_id: None
            },
            70
        ),
        Err(Error::NoSuchStream { .. })
    ));
}

#[test]
fn limits_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let long = "x".repeat(2000);
    let r = s.apply_one(append(&long, IdSpec::Auto, fields("v"), Meta::default()), 1);
    assert!(matches!(
        r,
        Err(Error::BadName {
            what: "stream name",
            len: 2000,
            ..
        })
    ));
    let big = vec![(b"f".to_vec(), vec![0u8; (1 << 20) + 1])];
    assert!(matches!(
        s.apply_one(append("s", IdSpec::Auto, big, Meta::default()), 1),
        Err(Error::TooLarge {
            what: "entry size in bytes",
            ..
        })
    ));
    let many: Fields = (0..1025)
        .map(|i| (i.to_string().into_bytes(), vec![]))
        .collect();
    assert!(matches!(
        s.apply_one(append("s", IdSpec::Auto, many, Meta::default()), 1),
        Err(Error::TooLarge {
            what: "number of fields",
            ..
        })
    ));
    assert!(matches!(
        s.apply_one(append("s", IdSpec::Auto, vec![], Meta::default()), 1),
        Err(Error::InvalidArgument(_))
    ));
    let r = s.apply_one(
        Op::ReadGroup {
            streams: vec![(key("s"), ReadFrom::New)],
            group: b"g".to_vec(),
            consumer: b"c".to_vec(),
            count: None,
            noack: false,
            retry: false,
        },
        1,
    );
    assert!(matches!(r, Err(Error::NoSuchStream { .. })));
    add(&s, "s", "v", 1);
    let r = s.apply_one(
        Op::ReadGroup {
            streams: vec![(key("s"), ReadFrom::New)],
            group: b"g".to_vec(),
            consumer: b"c".to_vec(),
            count: None,
            noack: false,
            retry: false,
        },
        1,
    );
    assert!(matches!(r, Err(Error::NoSuchGroup { .. })));
    let long_group = vec![b'g'; 300];
    let r = s.apply_one(
        Op::CreateGroup {
            stream: key("s"),
            group: long_group,
            start: GroupStart::Last,
            mkstream: false,
            entries_read: None,
            policy: None,
        },
        1,
    );
    assert!(matches!(
        r,
        Err(Error::BadName {
            what: "group name",
            ..
        })
    ));
    // A failing op in a batch does not stop the others.
    let out = s
        .apply(
            vec![
                append(
                    "s",
                    IdSpec::Explicit(StreamId::MIN),
                    fields("a"),
                    Meta::default(),
                ),
                append("s", IdSpec::Auto, fields("b"), Meta::default()),
            ],
            2,
        )
        .unwrap();
    assert!(matches!(out.replies[0], Err(Error::IdZero)));
    assert!(matches!(out.replies[1], Ok(Reply::Appended { .. })));
    assert_eq!(s.len(&key("s")), 2);
}

#[test]
fn idempotent_publish_within_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let op = |k: &str| Op::Append {
        stream: key("s"),
        id: IdSpec::Auto,
        fields: fields("x"),
        meta: Meta::default(),
        idempotency_key: Some(k.as_bytes().to_vec()),
        no_mkstream: false,
        trim: None,
    };
    let first = s.apply_one(op("k1"), 1000).unwrap();
    let Reply::Appended {
        id,
        duplicate: false,
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(
        s.apply_one(op("k1"), 2000).unwrap(),
        Reply::Appended {
            id,
            duplicate: true
        }
    );
    // Same key twice in one batch: the second sees the first.
    let out = s.apply(vec![op("k2"), op("k2")], 3000).unwrap();
    let (
        Ok(Reply::Appended { id: a, .. }),
        Ok(Reply::Appended {
            id: b,
            duplicate: true,
        }),
    ) = (&out.replies[0], &out.replies[1])
    else {
        panic!("{out:?}")
    };
    assert_eq!(a, b);
    assert_eq!(s.len(&key("s")), 2);
    // After the window the key is forgotten (and the tick removes it).
    let window = s.config().idempotency_window_ms;
    s.apply_one(Op::Tick, 1000 + window + 1).unwrap();
    let again = s.apply_one(op("k1"), 1000 + window + 2).unwrap();
    assert!(matches!(
        again,
        Reply::Appended {
            duplicate: false,
            ..
        }
    ));
    assert_eq!(s.len(&key("s")), 3);
}

#[test]
fn delete_rename_flush_and_garbage_collection() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..50 {
        add(&s, "a", "v", 10 + i);
    }
    create_group(&s, "a", "g", GroupStart::Id(StreamId::MIN), 100);
    read(&s, "a", "g", "c", 10, 100);
    assert_eq!(
        count(s.apply_one(
            Op::RenameStream {
                from: key("a"),
                to: key("b"),
                replace: false
            },
            100
        )),
        1
    );
    assert!(!s.exists(&key("a")));
    assert_eq!(s.len(&key("b")), 50);
    assert_eq!(s.pending_summary(&key("b"), b"g").unwrap().count, 10);
    add(&s, "c", "v", 100);
    assert!(matches!(
        s.apply_one(
            Op::RenameStream {
                from: key("b"),
                to: key("c"),
                replace: false
            },
            100
        ),
        Err(Error::TargetExists)
    ));
    assert_eq!(
        count(s.apply_one(Op::DeleteStream { stream: key("b") }, 100)),
        1
    );
    assert_eq!(
        count(s.apply_one(Op::DeleteStream { stream: key("b") }, 100)),
        0
    );
    assert!(s.due(100).next_deadline_ms.is_some(), "garbage is pending");
    s.apply_one(Op::Tick, 101).unwrap();
    assert_eq!(s.due(101).next_deadline_ms, None);
    // A new stream with the old name starts empty.
    add(&s, "b", "new", 200);
    assert_eq!(s.len(&key("b")), 1);
    assert_eq!(s.list_streams(0), vec![b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(count(s.apply_one(Op::FlushNamespace { ns: 0 }, 300)), 2);
    assert_eq!(s.stream_count(0), 0);
}

#[test]
fn namespaces_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let k1 = StreamKey::new(1, b"s".to_vec());
    s.apply_one(
        Op::Append {
            stream: k1.clone(),
            id: IdSpec::Auto,
            fields: fields("x"),
            meta: Meta::default(),
            idempotency_key: None,
            no_mkstream: false,
            trim: None,
        },
        5,
    )
    .unwrap();
    assert_eq!(s.len(&k1), 1);
    assert_eq!(s.len(&key("s")), 0);
    assert_eq!(s.list_streams(1), vec![b"s".to_vec()]);
}

#[test]
fn trim_by_bytes_removes_the_oldest_until_under_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // Each entry: field "f" (1 byte) + 9-byte value = 10 bytes.
    for i in 0..10 {
        add(&s, "s", &format!("value{i:04}"), 100 + i);
    }
    assert_eq!(s.stream_info(&key("s")).unwrap().unwrap().bytes, 100);
    let trim = Op::Trim {
        stream: key("s"),
        trim: Trim::new(TrimStrategy::MaxBytes(35), false, None),
    };
    assert_eq!(count(s.apply_one(trim.clone(), 200)), 7);
    let info = s.stream_info(&key("s")).unwrap().unwrap();
    assert_eq!((info.length, info.bytes), (3, 30));
    assert_eq!(count(s.apply_one(trim, 200)), 0);
}

#[test]
fn an_exact_trim_inside_one_unbounded_node_stops_at_the_per_op_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::default();
    cfg.limits.trim_per_op_max = 7;
    let s = Store::open(dir.path(), cfg).unwrap();
    // Both node limits off: every entry lands in one node.
    s.apply_one(
        Op::SetNodeLimits(NodeLimits {
            entries: 0,
            bytes: 0,
        }),
        1,
    )
    .unwrap();
    for i in 0..20 {
        add(&s, "s", "v", 10 + i);
    }
    let k = key("s");
    assert_eq!(s.stream_info(&k).unwrap().unwrap().nodes, 1);
    let exact = Op::Trim {
        stream: k.clone(),
        trim: Trim::new(TrimStrategy::MaxLen(0), false, None),
    };
    assert_eq!(count(s.apply_one(exact.clone(), 100)), 7);
    assert_eq!(count(s.apply_one(exact, 100)), 7);
    assert_eq!(s.len(&k), 6);
}

#[test]
fn an_acked_trim_looks_at_no_more_entries_than_the_per_op_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::default();
    cfg.limits.trim_per_op_max = 5;
    let s = Store::open(dir.path(), cfg).unwrap();
    for i in 0..10 {
        add(&s, "s", "v", 10 + i);
    }
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 20);
    let got = read(&s, "s", "g", "c", 10, 21);
    // The first three stay pending; the other seven are done.
    let acked: Vec<StreamId> = ids(&got)[3..].to_vec();
    s.apply_one(
        Op::Ack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: acked,
        },
        22,
    )
    .unwrap();
    let acked_trim = Op::Trim {
        stream: key("s"),
        trim: Trim {
            refs: RefPolicy::Acked,
            ..Trim::new(TrimStrategy::MaxLen(0), false, None)
        },
    };
    // Five entries looked at: three kept (pending), two removed; the next call goes on.
    assert_eq!(count(s.apply_one(acked_trim.clone(), 23)), 2);
    assert_eq!(count(s.apply_one(acked_trim.clone(), 24)), 2);
    assert_eq!(count(s.apply_one(acked_trim, 25)), 2);
    assert_eq!(s.len(&key("s")), 4);
}

/// A batch hands its ops back unchanged after the commit (`BatchOutcome::spent`, for the
/// caller to free where it allocated them), and what was stored is what they held: the
/// store encodes an append's fields and metadata by reference instead of taking them.
#[test]
fn a_batch_hands_its_ops_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let meta = Meta {
        producer: Some(b"agent-1".to_vec()),
        headers: vec![(b"trace".to_vec(), b"t-1".to_vec())],
        ..Meta::default()
    };
    let (one, two) = (StreamId::new(1, 1), StreamId::new(1, 2));
    let ops = vec![
        append("s", IdSpec::Explicit(one), fields("one"), meta.clone()),
        append("s", IdSpec::Explicit(two), fields("two"), Meta::default()),
        Op::Delete {
            stream: key("s"),
            ids: vec![two],
        },
    ];
    let out = s.apply(ops.clone(), 5).unwrap();
    assert!(out.replies.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(out.spent, ops);
    let stored = all(&s, "s");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, one);
    assert_eq!(stored[0].record.fields, fields("one"));
    assert_eq!(stored[0].record.meta, meta);
}
