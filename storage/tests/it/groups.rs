use cortex_storage::*;

use crate::util::*;

fn ack(s: &Store, stream: &str, group: &str, ids: &[StreamId]) -> u64 {
    count(s.apply_one(
        Op::Ack {
            stream: key(stream),
            group: group.into(),
            ids: ids.to_vec(),
        },
        0,
    ))
}

#[test]
fn read_ack_pending_like_redis() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ids: Vec<StreamId> = (0..5)
        .map(|i| add(&s, "s", &format!("v{i}"), 100 + i))
        .collect();
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 200);
    assert!(matches!(
        s.apply_one(
            Op::CreateGroup {
                stream: key("s"),
                group: b"g".to_vec(),
                start: GroupStart::Last,
                mkstream: false,
                entries_read: None,
                policy: None,
            },
            200
        ),
        Err(Error::GroupExists { .. })
    ));
    let got = read(&s, "s", "g", "alice", 2, 300);
    assert_eq!(ids_of(&got), ids[..2]);
    assert_eq!(values(&got), vec!["v0", "v1"]);
    let got = read(&s, "s", "g", "bob", 10, 400);
    assert_eq!(ids_of(&got), ids[2..]);
    assert!(read(&s, "s", "g", "bob", 10, 400).is_empty());

    let sum = s.pending_summary(&key("s"), b"g").unwrap();
    assert_eq!(sum.count, 5);
    assert_eq!(sum.bounds, Some((ids[0], ids[4])));
    assert_eq!(
        sum.consumers,
        vec![(b"alice".to_vec(), 2), (b"bob".to_vec(), 3)]
    );

    assert_eq!(
        ack(&s, "s", "g", &[ids[0], ids[0], ids[3], StreamId::new(1, 1)]),
        2
    );
    let q = PendingQuery {
        start: StreamId::MIN,
        end: StreamId::MAX,
        count: 10,
        consumer: None,
        min_idle_ms: None,
    };
    let p = s.pending_range(&key("s"), b"g", &q, 1000).unwrap();
    assert_eq!(
        p.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![ids[1], ids[2], ids[4]]
    );
    assert_eq!(p[0].consumer, b"alice");
    assert_eq!(p[0].idle_ms, 700);
    assert_eq!(p[0].deliveries, 1);
    let q = PendingQuery {
        consumer: Some(b"bob".to_vec()),
        min_idle_ms: Some(100),
        ..q
    };
    let p = s.pending_range(&key("s"), b"g", &q, 1000).unwrap();
    assert_eq!(
        p.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![ids[2], ids[4]]
    );

    let info = s.groups_info(&key("s")).unwrap();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].pending, 3);
    assert_eq!(info[0].last_delivered_id, ids[4]);
    assert_eq!(info[0].entries_read, Some(5));
    assert_eq!(info[0].lag, Some(0));
    let cons = s.consumers_info(&key("s"), b"g", 1000).unwrap();
    assert_eq!(
        cons.iter()
            .map(|c| (c.name.clone(), c.pending, c.idle_ms))
            .collect::<Vec<_>>(),
        vec![(b"alice".to_vec(), 1, 700), (b"bob".to_vec(), 2, 600)]
    );
}

#[test]
fn history_reads_count_deliveries_and_show_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ids: Vec<StreamId> = (0..3).map(|i| add(&s, "s", "v", 100 + i)).collect();
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 200);
    read(&s, "s", "g", "c", 10, 200);
    s.apply_one(
        Op::Delete {
            stream: key("s"),
            ids: vec![ids[1]],
        },
        250,
    )
    .unwrap();
    let hist = |after| match s
        .apply_one(
            Op::ReadGroup {
                streams: vec![(key("s"), ReadFrom::History(after))],
                group: b"g".to_vec(),
                consumer: b"c".to_vec(),
                count: None,
                noack: false,
                retry: false,
            },
            300,
        )
        .unwrap()
    {
        Reply::GroupRead(mut e) => e.remove(0),
        r => panic!("{r:?}"),
    };
    let h = hist(StreamId::MIN);
    assert_eq!(ids_of(&h), ids);
    assert!(h[1].1.is_none(), "deleted entry comes back without fields");
    assert!(h[0].1.is_some());
    let h = hist(ids[0]);
    assert_eq!(ids_of(&h), ids[1..]);
    let q = PendingQuery {
        start: StreamId::MIN,
        end: StreamId::MAX,
        count: 10,
        consumer: None,
        min_idle_ms: None,
    };
    let p = s.pending_range(&key("s"), b"g", &q, 300).unwrap();
    assert_eq!(
        p.iter().map(|p| p.deliveries).collect::<Vec<_>>(),
        vec![2, 1, 3]
    );
}

fn ids_of(e: &[(StreamId, Option<Record>)]) -> Vec<StreamId> {
    e.iter().map(|x| x.0).collect()
}

#[test]
fn claim_and_autoclaim() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ids: Vec<StreamId> = (0..6)
        .map(|i| add(&s, "s", &format!("v{i}"), 100 + i))
        .collect();
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 100);
    read(&s, "s", "g", "a", 6, 1000);
    let claim = |consumer: &str, min_idle, ids: Vec<StreamId>, justid, force, now| match s
        .apply_one(
            Op::Claim {
                stream: key("s"),
                group: b"g".to_vec(),
                consumer: consumer.into(),
                min_idle_ms: min_idle,
                ids,
                delivery_time_ms: None,
                retry_count: None,
                force,
                justid,
                last_id: None,
            },
            now,
        )
        .unwrap()
    {
        Reply::Entries(e) => e,
        r => panic!("{r:?}"),
    };
    // Not idle enough.
    assert!(claim("b", 500, vec![ids[0]], false, false, 1100).is_empty());
    let got = claim("b", 500, vec![ids[0], ids[1]], false, false, 2000);
    assert_eq!(values(&got), vec!["v0", "v1"]);
    let sum = s.pending_summary(&key("s"), b"g").unwrap();
    assert_eq!(sum.consumers, vec![(b"a".to_vec(), 4), (b"b".to_vec(), 2)]);
    // Deleted entries are dropped from the PEL on claim.
    s.apply_one(
        Op::Delete {
            stream: key("s"),
            ids: vec![ids[2]],
        },
        2000,
    )
    .unwrap();
    assert!(claim("b", 0, vec![ids[2]], true, false, 2100).is_empty());
    assert_eq!(s.pending_summary(&key("s"), b"g").unwrap().count, 5);
    // FORCE creates a pending entry for an existing entry.
    s.apply_one(
        Op::Ack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: vec![ids[3]],
        },
        2100,
    )
    .unwrap();
    assert_eq!(
        ids_of(&claim("c", 0, vec![ids[3]], true, true, 2200)),
        vec![ids[3]]
    );
    // AUTOCLAIM scans from a cursor, claims idle entries.
    let ac = s
        .apply_one(
            Op::AutoClaim {
                stream: key("s"),
                group: b"g".to_vec(),
                consumer: b"d".to_vec(),
                min_idle_ms: 1500,
                start: StreamId::MIN,
                count: 1,
                justid: false,
            },
            3000,
        )
        .unwrap();
    let Reply::AutoClaimed {
        next,
        claimed,
        deleted,
    } = ac
    else {
        panic!("{ac:?}")
    };
    assert_eq!(ids_of(&claimed), vec![ids[4]]);
    assert_eq!(next, ids[5]);
    assert!(deleted.is_empty());
    let ac = s
        .apply_one(
            Op::AutoClaim {
                stream: key("s"),
                group: b"g".to_vec(),
                consumer: b"d".to_vec(),
                min_idle_ms: 1500,
                start: next,
                count: 10,
                justid: true,
            },
            3000,
        )
        .unwrap();
    let Reply::AutoClaimed { next, claimed, .. } = ac else {
        panic!("{ac:?}")
    };
    assert_eq!(ids_of(&claimed), vec![ids[5]]);
    assert_eq!(next, StreamId::MIN);
    let q = PendingQuery {
        start: StreamId::MIN,
        end: StreamId::MAX,
        count: 10,
        consumer: None,
        min_idle_ms: None,
    };
    let p = s.pending_range(&key("s"), b"g", &q, 3000).unwrap();
    let d: Vec<_> = p
        .iter()
        .map(|p| (p.id, p.consumer.clone(), p.deliveries))
        .collect();
    assert_eq!(
        d,
        vec![
            (ids[0], b"b".to_vec(), 2),
            (ids[1], b"b".to_vec(), 2),
            (ids[3], b"c".to_vec(), 0),
            (ids[4], b"d".to_vec(), 2),
            (ids[5], b"d".to_vec(), 1)
        ]
    );
}

#[test]
fn setid_destroy_consumers_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let ids: Vec<StreamId> = (0..4).map(|i| add(&s, "s", "v", 100 + i)).collect();
    create_group(&s, "s", "g", GroupStart::Last, 100);
    let info = &s.groups_info(&key("s")).unwrap()[0];
    assert_eq!((info.entries_read, info.lag), (None, Some(0)));
    assert!(read(&s, "s", "g", "c", 10, 200).is_empty());
    s.apply_one(
        Op::SetGroupId {
            stream: key("s"),
            group: b"g".to_vec(),
            start: GroupStart::Id(ids[1]),
            entries_read: None,
        },
        200,
    )
    .unwrap();
    // Like Redis: a mid-stream SETID without ENTRIESREAD makes the lag unknown...
    let info = &s.groups_info(&key("s")).unwrap()[0];
    assert_eq!(info.lag, None);
    assert_eq!(ids_of(&read(&s, "s", "g", "c", 10, 300)), ids[2..]);
    // ...until the group reaches the last entry.
    let info = &s.groups_info(&key("s")).unwrap()[0];
    assert_eq!((info.lag, info.entries_read), (Some(0), Some(4)));
    s.apply_one(
        Op::SetGroupId {
            stream: key("s"),
            group: b"g".to_vec(),
            start: GroupStart::Id(StreamId::MIN),
            entries_read: None,
        },
        300,
    )
    .unwrap();
    s.apply_one(
        Op::Delete {
            stream: key("s"),
            ids: vec![ids[2]],
        },
        300,
    )
    .unwrap();
    // The group is back before the first entry and a tombstone lies ahead: Redis 7.4 answers
    // nil (Redis 8 counts every remaining entry).
    let info = &s.groups_info(&key("s")).unwrap()[0];
    assert_eq!(info.lag, None);
    // Re-reading an entry that is already pending reassigns it (delivery count back to 1).
    let got = read(&s, "s", "g", "d", 10, 400);
    assert_eq!(ids_of(&got), vec![ids[0], ids[1], ids[3]]);
    let sum = s.pending_summary(&key("s"), b"g").unwrap();
    assert_eq!(sum.count, 4);
    assert_eq!(sum.consumers, vec![(b"c".to_vec(), 1), (b"d".to_vec(), 3)]);
    // Consumers.
    assert_eq!(
        count(s.apply_one(
            Op::CreateConsumer {
                stream: key("s"),
                group: b"g".to_vec(),
                consumer: b"e".to_vec()
            },
            400
        )),
        1
    );
    assert_eq!(
        count(s.apply_one(
            Op::CreateConsumer {
                stream: key("s"),
                group: b"g".to_vec(),
                consumer: b"e".to_vec()
            },
            400
        )),
        0
    );
    assert_eq!(
        count(s.apply_one(
            Op::DeleteConsumer {
                stream: key("s"),
                group: b"g".to_vec(),
                consumer: b"d".to_vec()
            },
            400
        )),
        3
    );
    assert_eq!(s.pending_summary(&key("s"), b"g").unwrap().count, 1);
    assert_eq!(s.consumers_info(&key("s"), b"g", 400).unwrap().len(), 2);
    assert_eq!(
        count(s.apply_one(
            Op::DestroyGroup {
                stream: key("s"),
                group: b"g".to_vec()
            },
            400
        )),
        1
    );
    assert_eq!(
        count(s.apply_one(
            Op::DestroyGroup {
                stream: key("s"),
                group: b"g".to_vec()
            },
            400
        )),
        0
    );
    assert!(s.groups_info(&key("s")).unwrap().is_empty());
}

#[test]
fn noack_reads_move_the_cursor_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    add(&s, "s", "a", 1);
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 1);
    let r = s
        .apply_one(
            Op::ReadGroup {
                streams: vec![(key("s"), ReadFrom::New)],
                group: b"g".to_vec(),
                consumer: b"c".to_vec(),
                count: None,
                noack: true,
                retry: false,
            },
            2,
        )
        .unwrap();
    assert!(matches!(r, Reply::GroupRead(ref e) if e[0].len() == 1));
    assert_eq!(s.pending_summary(&key("s"), b"g").unwrap().count, 0);
    assert!(read(&s, "s", "g", "c", 10, 3).is_empty());
}

#[test]
fn lanes_hand_out_highest_first_with_a_starvation_guard() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 1);
    add_lane(&s, "s", "hb1", Lane::Heartbeat, 10);
    add_lane(&s, "s", "n1", Lane::Normal, 11);
    add_lane(&s, "s", "hb2", Lane::Heartbeat, 12);
    add_lane(&s, "s", "crit", Lane::Critical, 13);
    add_lane(&s, "s", "low", Lane::Low, 14);
    add_lane(&s, "s", "high", Lane::High, 15);
    let got = read(&s, "s", "g", "c", 100, 20);
    assert_eq!(
        values(&got),
        vec!["crit", "high", "n1", "low", "hb1", "hb2"]
    );
    // The log keeps global order.
    let log: Vec<String> = all(&s, "s")
        .iter()
        .map(|e| String::from_utf8_lossy(&e.record.fields[0].1).into_owned())
        .collect();
    assert_eq!(log, vec!["hb1", "n1", "hb2", "crit", "low", "high"]);
    // A flood of critical entries: every 9th hand-out (guard 8) is the oldest lower entry.
    for i in 0..40 {
        add_lane(&s, "s", &format!("c{i}"), Lane::Critical, 100 + i);
    }
    add_lane(&s, "s", "n2", Lane::Normal, 200);
    add_lane(&s, "s", "hb3", Lane::Heartbeat, 201);
    let got = values(&read(&s, "s", "g", "c", 20, 300));
    let pos_n2 = got
        .iter()
        .position(|v| v == "n2")
        .expect("normal entry moves under the flood");
    let pos_hb3 = got
        .iter()
        .position(|v| v == "hb3")
        .expect("heartbeat moves under the flood");
    assert_eq!((pos_n2, pos_hb3), (8, 17));
    assert_eq!(got.iter().filter(|v| v.starts_with('c')).count(), 18);
    // Reading one at a time keeps the same order (the streak is persisted).
    let rest: Vec<String> = (0..30)
        .flat_map(|i| values(&read(&s, "s", "g", "c", 1, 400 + i)))
        .collect();
    assert_eq!(rest.len(), 22);
    assert!(rest.iter().all(|v| v.starts_with('c')));
    let info = &s.groups_info(&key("s")).unwrap()[0];
    assert_eq!(info.lag, Some(0));
    assert_eq!(info.pending, 48);
}

fn lag_of(s: &Store, stream: &str, group: &str) -> (Option<u64>, Option<i64>) {
    let g = s
        .groups_info(&key(stream))
        .unwrap()
        .into_iter()
        .find(|g| g.name == group.as_bytes())
        .unwrap();
    (g.entries_read, g.lag)
}

fn explicit(s: &Store, stream: &str, ms: u64) {
    s.apply_one(
        append(
            stream,
            IdSpec::Explicit(StreamId::new(ms, 0)),
            fields("x"),
            Meta::default(),
        ),
        1,
    )
    .unwrap();
}

fn del(s: &Store, stream: &str, ms: u64) {
    s.apply_one(
        Op::Delete {
            stream: key(stream),
            ids: vec![StreamId::new(ms, 0)],
        },
        1,
    )
    .unwrap();
}

fn trim(s: &Store, stream: &str, strategy: TrimStrategy) {
    s.apply_one(
        Op::Trim {
            stream: key(stream),
            trim: Trim::new(strategy, false, None),
        },
        1,
    )
    .unwrap();
}

/// The cases of Redis's "Consumer group lag with XDELs / XTRIM / tombstone after last_id".
#[test]
fn lag_follows_redis_with_deletes_and_trims() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    // With XDELs.
    for ms in 1..=5 {
        explicit(&s, "x", ms);
    }
    del(&s, "x", 3);
    create_group(&s, "x", "g1", GroupStart::Id(StreamId::MIN), 1);
    create_group(&s, "x", "g2", GroupStart::Id(StreamId::MIN), 1);
    assert_eq!(lag_of(&s, "x", "g1"), (None, None), "a tombstone ahead");
    for _ in 0..3 {
        read(&s, "x", "g1", "c11", 1, 1);
        assert_eq!(lag_of(&s, "x", "g1"), (None, None));
    }
    read(&s, "x", "g1", "c11", 1, 1);
    assert_eq!(lag_of(&s, "x", "g1"), (Some(5), Some(0)));
    explicit(&s, "x", 6);
    assert_eq!(lag_of(&s, "x", "g1"), (Some(5), Some(1)));
    trim(&s, "x", TrimStrategy::MinId(StreamId::new(3, 0)));
    assert_eq!(lag_of(&s, "x", "g1"), (Some(5), Some(1)));
    assert_eq!(lag_of(&s, "x", "g2"), (None, Some(3)));
    trim(&s, "x", TrimStrategy::MinId(StreamId::new(5, 0)));
    assert_eq!(lag_of(&s, "x", "g2"), (None, Some(2)));

    // Tombstone after the group's last ID.
    create_group(&s, "y", "g1", GroupStart::Last, 1);
    explicit(&s, "y", 1);
    read(&s, "y", "g1", "alice", 10, 1);
    explicit(&s, "y", 2);
    explicit(&s, "y", 3);
    del(&s, "y", 2);
    assert_eq!(lag_of(&s, "y", "g1"), (Some(1), None));
    // Redis 7.4 trusts the counter once the tombstone is behind the first entry, and steps
    // it on from there (Redis 8 re-estimates).
    del(&s, "y", 1);
    assert_eq!(lag_of(&s, "y", "g1"), (Some(1), Some(2)));
    read(&s, "y", "g1", "alice", 10, 1);
    assert_eq!(lag_of(&s, "y", "g1"), (Some(2), Some(1)));

    // ENTRIESREAD beyond entries-added is taken as given: Redis 7.4's lag goes negative.
    explicit(&s, "w", 1);
    s.apply_one(
        Op::CreateGroup {
            stream: key("w"),
            group: b"g".to_vec(),
            start: GroupStart::Last,
            mkstream: false,
            entries_read: Some(9999),
            policy: None,
        },
        1,
    )
    .unwrap();
    assert_eq!(lag_of(&s, "w", "g"), (Some(9999), Some(-9998)));
    s.apply_one(
        Op::SetGroupId {
            stream: key("w"),
            group: b"g".to_vec(),
            start: GroupStart::Last,
            entries_read: Some(9999),
        },
        1,
    )
    .unwrap();
    assert_eq!(lag_of(&s, "w", "g"), (Some(9999), Some(-9998)));

    // With XTRIM.
    create_group(&s, "z", "g", GroupStart::Last, 1);
    for ms in 1..=5 {
        explicit(&s, "z", ms);
    }
    read(&s, "z", "g", "alice", 1, 1);
    assert_eq!(lag_of(&s, "z", "g"), (Some(1), Some(4)));
    // Redis 7.4 does not notice entries trimmed past the group (Redis 8 does).
    trim(&s, "z", TrimStrategy::MaxLen(1));
    assert_eq!(lag_of(&s, "z", "g"), (Some(1), Some(4)));
    read(&s, "z", "g", "alice", 10, 1);
    assert_eq!(lag_of(&s, "z", "g"), (Some(2), Some(3)));
    explicit(&s, "z", 6);
    assert_eq!(lag_of(&s, "z", "g"), (Some(2), Some(4)));
    trim(&s, "z", TrimStrategy::MaxLen(0));
    assert_eq!(lag_of(&s, "z", "g"), (Some(2), Some(4)));
}

/// A consumer's own pending list (history reads, DELCONSUMER) as of each point of one batch:
/// deliveries, claims and acks earlier in the same batch count, whether the group's pending
/// list is held in memory or left out of it (a bound of 0 bytes).
#[test]
fn a_consumers_pending_list_sees_the_changes_earlier_in_its_batch() {
    for bound in [StoreConfig::default().pending_index_bytes, 0] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            pending_index_bytes: bound,
            ..StoreConfig::default()
        };
        let s = Store::open(dir.path(), cfg.clone()).unwrap();
        let ids: Vec<StreamId> = (0..6).map(|n| add(&s, "s", &n.to_string(), 1)).collect();
        create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 1);
        // Committed before the batch: a holds 0 and 1.
        assert_eq!(read(&s, "s", "g", "a", 2, 2).len(), 2);
        let group_read = |consumer: &str, from: ReadFrom| Op::ReadGroup {
            streams: vec![(key("s"), from)],
            group: b"g".to_vec(),
            consumer: consumer.into(),
            count: Some(10),
            noack: false,
            retry: false,
        };
        let history = |consumer: &str| group_read(consumer, ReadFrom::History(StreamId::MIN));
        let claim = |consumer: &str, id: StreamId| Op::Claim {
            stream: key("s"),
            group: b"g".to_vec(),
            consumer: consumer.into(),
            min_idle_ms: 0,
            ids: vec![id],
            delivery_time_ms: None,
            retry_count: None,
            force: false,
            justid: true,
            last_id: None,
        };
        let out = s
            .apply(
                vec![
                    // b gets 2..5, then a takes 3 from b and b takes 0 from a.
                    group_read("b", ReadFrom::New),
                    claim("a", ids[3]),
                    claim("b", ids[0]),
                    Op::Ack {
                        stream: key("s"),
                        group: b"g".to_vec(),
                        ids: vec![ids[1], ids[4]],
                    },
                    history("a"),
                    history("b"),
                    Op::DeleteConsumer {
                        stream: key("s"),
                        group: b"g".to_vec(),
                        consumer: b"b".to_vec(),
                    },
                    history("a"),
                ],
                3,
            )
            .unwrap();
        let listed = |r: &Result<Reply>| match r {
            Ok(Reply::GroupRead(v)) => v[0].iter().map(|d| d.0).collect::<Vec<_>>(),
            other => panic!("bound {bound}: {other:?}"),
        };
        let r = &out.replies;
        assert_eq!(listed(&r[4]), [ids[3]], "bound {bound}: a's list");
        assert_eq!(
            listed(&r[5]),
            [ids[0], ids[2], ids[5]],
            "bound {bound}: b's list"
        );
        assert_eq!(r[6].as_ref().ok(), Some(&Reply::Count(3)), "bound {bound}");
        assert_eq!(listed(&r[7]), [ids[3]], "bound {bound}: a's list after");
        // The same after the commit, and after a reopen (the lists rebuilt from `pel`).
        let check = |s: &Store| {
            let a = s.apply_one(history("a"), 4).unwrap();
            assert_eq!(listed(&Ok(a)), [ids[3]], "bound {bound}: committed");
            assert!(s.scrub().unwrap().damage.is_empty(), "bound {bound}");
        };
        check(&s);
        drop(s);
        check(&Store::open(dir.path(), cfg).unwrap());
    }
}
