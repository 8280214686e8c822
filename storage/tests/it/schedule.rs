//! Scheduled delivery: entries stored at once, set aside by each group that reaches them
//! early, handed out at their time in lane order, across a reopen.

use cortex_storage::*;

use crate::util::*;

fn scheduled(
    s: &Store,
    v: &str,
    lane: Lane,
    header: &[u8],
    value: &str,
    now: u64,
) -> Result<Reply> {
    let meta = Meta {
        lane,
        headers: vec![(header.to_vec(), value.as_bytes().to_vec())],
        ..Meta::default()
    };
    s.apply_one(append("s", IdSpec::Auto, fields(v), meta), now)
}

fn appended(r: Result<Reply>) -> StreamId {
    match r {
        Ok(Reply::Appended { id, .. }) => id,
        other => panic!("append: {other:?}"),
    }
}

fn tick_wakes(s: &Store, now: u64) -> bool {
    let out = s.apply(vec![Op::Tick], now).unwrap();
    out.events
        .iter()
        .any(|e| matches!(e, Event::RetryReady { .. }))
}

#[test]
fn a_delayed_entry_waits_for_its_time_and_others_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    let late = appended(scheduled(
        &s,
        "later",
        Lane::Normal,
        DELAY_HEADER,
        "5000",
        1000,
    ));
    let now_id = add(&s, "s", "now", 1001);
    // Stored at once, with the delay settled into an absolute time.
    let stored = all(&s, "s");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].record.meta.deliver_at_ms(), Some(6000));
    assert!(!stored[0]
        .record
        .meta
        .headers
        .iter()
        .any(|(k, _)| k == DELAY_HEADER));
    // The group reaches it early: it is set aside, and the entry behind it is handed out.
    assert_eq!(ids(&read(&s, "s", "g", "pink", 10, 1100)), vec![now_id]);
    assert!(read(&s, "s", "g", "pink", 10, 5999).is_empty());
    assert_eq!(s.due(2000).next_deadline_ms, Some(6000));
    assert!(!tick_wakes(&s, 5999));
    assert!(tick_wakes(&s, 6000));
    // Handed out once, to whichever consumer reads first.
    let got = read(&s, "s", "g", "red", 10, 6001);
    assert_eq!(ids(&got), vec![late]);
    assert!(read(&s, "s", "g", "pink", 10, 6002).is_empty());
    assert_eq!(s.due(6002).next_deadline_ms, None);
    // It is pending as any delivered entry.
    let acked = s.apply_one(
        Op::Ack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: vec![late],
        },
        6003,
    );
    assert_eq!(count(acked), 1);
}

#[test]
fn due_entries_go_out_in_lane_order_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
        appended(scheduled(
            &s,
            "low",
            Lane::Low,
            DELIVER_AT_HEADER,
            "9000",
            1000,
        ));
        appended(scheduled(
            &s,
            "normal",
            Lane::Normal,
            DELIVER_AT_HEADER,
            "9000",
            1001,
        ));
        appended(scheduled(
            &s,
            "critical",
            Lane::Critical,
            DELIVER_AT_HEADER,
            "9500",
            1002,
        ));
        // A second group, which never read before the reopen.
        create_group(&s, "s", "h", GroupStart::Id(StreamId::MIN), 1003);
        assert!(read(&s, "s", "g", "pink", 10, 1100).is_empty());
        // One the group has not reached yet.
        appended(scheduled(
            &s,
            "high",
            Lane::High,
            DELIVER_AT_HEADER,
            "9000",
            1200,
        ));
        s.close().unwrap();
    }
    let s = open(dir.path());
    assert_eq!(s.due(2000).next_deadline_ms, Some(9000));
    assert!(read(&s, "s", "g", "pink", 10, 8999).is_empty());
    // At 10,000 all four are due: by lane, whether set aside or not (the critical one first,
    // though its time came last).
    let got = read(&s, "s", "g", "pink", 10, 10_000);
    assert_eq!(values(&got), vec!["critical", "high", "normal", "low"]);
    assert!(read(&s, "s", "g", "pink", 10, 10_001).is_empty());
    // The other group gets them once too, in lane order.
    let got = read(&s, "s", "h", "red", 10, 10_003);
    assert_eq!(values(&got), vec!["critical", "high", "normal", "low"]);
}

#[test]
fn a_read_hands_out_no_more_than_its_count_and_the_rest_follow() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    for i in 0..5 {
        appended(scheduled(
            &s,
            &format!("m{i}"),
            Lane::Normal,
            DELAY_HEADER,
            "100",
            1000,
        ));
    }
    assert!(read(&s, "s", "g", "pink", 10, 1000).is_empty());
    assert!(tick_wakes(&s, 1100));
    assert_eq!(
        values(&read(&s, "s", "g", "pink", 2, 1100)),
        vec!["m0", "m1"]
    );
    // Due ones are left: the tick is due at once and wakes readers again.
    assert_eq!(s.due(1100).next_deadline_ms, Some(1100));
    assert!(tick_wakes(&s, 1101));
    assert_eq!(
        values(&read(&s, "s", "g", "pink", 10, 1101)),
        vec!["m2", "m3", "m4"]
    );
    assert_eq!(s.due(1102).next_deadline_ms, None);
}

#[test]
fn a_ttl_counts_from_the_delivery_time_and_an_expired_entry_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    let meta = Meta {
        expires_at_ms: Some(1500),
        headers: vec![(DELAY_HEADER.to_vec(), b"2000".to_vec())],
        ..Meta::default()
    };
    appended(s.apply_one(append("s", IdSpec::Auto, fields("a"), meta), 1000));
    assert_eq!(all(&s, "s")[0].record.meta.expires_at_ms, Some(3500));
    assert!(read(&s, "s", "g", "pink", 10, 1000).is_empty());
    assert_eq!(values(&read(&s, "s", "g", "pink", 10, 3000)), vec!["a"]);

    let meta = Meta {
        expires_at_ms: Some(4100),
        headers: vec![(DELAY_HEADER.to_vec(), b"1000".to_vec())],
        ..Meta::default()
    };
    appended(s.apply_one(append("s", IdSpec::Auto, fields("b"), meta), 4000));
    assert!(read(&s, "s", "g", "pink", 10, 4000).is_empty());
    // Nobody read between 5,000 and 5,100: at 6,000 it has expired.
    assert!(read(&s, "s", "g", "pink", 10, 6000).is_empty());
    let dead = s
        .dlq_list(&key("cortex:dlq"), &DlqFilter::default(), 10)
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1.reason, DeadReason::Expired);
    assert_eq!(s.due(6001).next_deadline_ms, None);
}

#[test]
fn a_past_time_is_no_schedule_and_bad_ones_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    appended(scheduled(
        &s,
        "past",
        Lane::Normal,
        DELIVER_AT_HEADER,
        "10",
        1000,
    ));
    assert_eq!(all(&s, "s")[0].record.meta.deliver_at_ms(), None);
    assert_eq!(values(&read(&s, "s", "g", "pink", 10, 1000)), vec!["past"]);

    let bad = scheduled(&s, "x", Lane::Normal, DELAY_HEADER, "soon", 1000).unwrap_err();
    assert!(bad.to_string().contains("cortex-delay-ms"), "{bad}");
    let bad = scheduled(&s, "x", Lane::Normal, DELIVER_AT_HEADER, "-5", 1000).unwrap_err();
    assert!(bad.to_string().contains("cortex-deliver-at-ms"), "{bad}");
    let max = StoreConfig::default().limits.schedule_ahead_max_ms;
    let far = (max + 1).to_string();
    let bad = scheduled(&s, "x", Lane::Normal, DELAY_HEADER, &far, 1000).unwrap_err();
    assert!(bad.to_string().contains("ahead"), "{bad}");
    assert!(scheduled(&s, "x", Lane::Normal, DELAY_HEADER, &max.to_string(), 1000).is_ok());
    assert_eq!(all(&s, "s").len(), 2);
}

#[test]
fn a_deleted_group_leaves_no_set_aside_keys_behind() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    appended(scheduled(&s, "a", Lane::Normal, DELAY_HEADER, "1000", 1000));
    assert!(read(&s, "s", "g", "pink", 10, 1000).is_empty());
    let r = s.apply_one(
        Op::DestroyGroup {
            stream: key("s"),
            group: b"g".to_vec(),
        },
        1001,
    );
    assert!(r.is_ok(), "{r:?}");
    s.apply(vec![Op::Tick], 1002).unwrap();
    // Nothing is left for the tick to do (the group's set-aside key went with it).
    assert_eq!(s.due(1003).next_deadline_ms, None);
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 1004);
    assert!(read(&s, "s", "g", "pink", 10, 1500).is_empty());
    assert_eq!(values(&read(&s, "s", "g", "pink", 10, 2500)), vec!["a"]);
}
