use cortex_storage::*;

use crate::util::*;

fn policy(ack_wait_ms: Option<u64>) -> DeliveryPolicy {
    DeliveryPolicy {
        ack_wait_ms,
        ..DeliveryPolicy::default()
    }
}

fn set_policy(s: &Store, p: Option<DeliveryPolicy>) {
    s.apply_one(
        Op::SetPolicy {
            stream: key("s"),
            group: b"g".to_vec(),
            policy: p,
        },
        0,
    )
    .unwrap();
}

fn nack(s: &Store, id: StreamId, err: &str, now: u64) -> u64 {
    count(s.apply_one(
        Op::Nack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: vec![id],
            error: Some(err.into()),
            reject: false,
        },
        now,
    ))
}

fn dead_letters(s: &Store) -> Vec<(Entry, DeadLetter)> {
    s.dlq_list(&key("cortex:dlq"), &DlqFilter::default(), 100)
        .unwrap()
}

#[test]
fn nack_backoff_retry_dead_letter_and_redrive() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    set_policy(&s, Some(policy(None)));
    let id = s
        .apply_one(
            append(
                "s",
                IdSpec::Auto,
                vec![(b"task".to_vec(), b"build".to_vec())],
                Meta {
                    lane: Lane::High,
                    producer: Some(b"harold".to_vec()),
                    ..Meta::default()
                },
            ),
            1000,
        )
        .map(|r| match r {
            Reply::Appended { id, .. } => id,
            r => panic!("{r:?}"),
        })
        .unwrap();
    assert_eq!(ids(&read(&s, "s", "g", "pink", 10, 1000)), vec![id]);
    // Attempt 1 fails: retry after 5 s.
    assert_eq!(nack(&s, id, "agent busy", 2000), 1);
    assert!(read(&s, "s", "g", "pink", 10, 6999).is_empty());
    assert_eq!(s.due(6999).next_deadline_ms, Some(7000));
    let out = s.apply(vec![Op::Tick], 7000).unwrap();
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Event::RetryReady { .. })));
    assert_eq!(s.due(7000).ready.len(), 1);
    // Any consumer of the group gets the retry first.
    assert_eq!(ids(&read(&s, "s", "g", "red", 10, 7500)), vec![id]);
    // Attempt 2 fails: retry after 15 s.
    nack(&s, id, "still busy", 8000);
    assert!(read(&s, "s", "g", "red", 10, 22_999).is_empty());
    assert_eq!(ids(&read(&s, "s", "g", "red", 10, 23_000)), vec![id]);
    // Attempt 3 fails: max_attempts reached, dead-lettered in the same batch.
    let out = s
        .apply(
            vec![Op::Nack {
                stream: key("s"),
                group: b"g".to_vec(),
                ids: vec![id],
                error: Some(b"connection refused".to_vec()),
                reject: false,
            }],
            24_000,
        )
        .unwrap();
    assert!(out.events.iter().any(|e| matches!(
        e,
        Event::DeadLettered {
            reason: DeadReason::MaxAttempts,
            dlq_id: Some(_),
            ..
        }
    )));
    assert_eq!(s.pending_summary(&key("s"), b"g").unwrap().count, 0);
    let dl = dead_letters(&s);
    assert_eq!(dl.len(), 1);
    let (e, d) = &dl[0];
    assert_eq!(
        (d.origin_id, d.reason, d.failures, d.deliveries),
        (id, DeadReason::MaxAttempts, 3, 3)
    );
    assert_eq!(d.consumer, b"red");
    assert_eq!(d.last_error.as_deref(), Some(&b"connection refused"[..]));
    assert_eq!(d.original_meta.lane, Lane::High);
    assert_eq!(
        e.record.original_fields(),
        &[(b"task".to_vec(), b"build".to_vec())]
    );
    let field = |name: &[u8]| {
        e.record
            .fields
            .iter()
            .find(|f| f.0 == name)
            .map(|f| f.1.clone())
    };
    assert_eq!(field(b"reason"), Some(b"max_attempts".to_vec()));
    assert_eq!(field(b"origin-stream"), Some(b"s".to_vec()));
    let gi = &s.groups_info(&key("s")).unwrap()[0];
    assert_eq!(
        (
            gi.counters.failures,
            gi.counters.dead_lettered,
            gi.counters.delivered,
            gi.counters.redelivered
        ),
        (3, 1, 1, 2)
    );
    // Redrive: exactly what was published goes back, as a new entry.
    assert_eq!(
        count(s.apply_one(
            Op::DlqRedrive {
                dlq: key("cortex:dlq"),
                filter: DlqFilter::default(),
                limit: 10
            },
            30_000
        )),
        1
    );
    assert!(dead_letters(&s).is_empty());
    let back = read(&s, "s", "g", "pink", 10, 30_001);
    assert_eq!(back.len(), 1);
    let rec = back[0].1.clone().unwrap();
    assert_eq!(rec.fields, vec![(b"task".to_vec(), b"build".to_vec())]);
    assert_eq!(rec.meta.lane, Lane::High);
    assert_eq!(rec.meta.producer.as_deref(), Some(&b"harold"[..]));
}

#[test]
fn ack_timeout_counts_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    set_policy(
        &s,
        Some(DeliveryPolicy {
            ack_wait_ms: Some(1000),
            max_attempts: 2,
            backoff_ms: vec![500],
            ..DeliveryPolicy::default()
        }),
    );
    let id = add(&s, "s", "x", 100);
    read(&s, "s", "g", "a", 1, 100);
    assert_eq!(s.due(100).next_deadline_ms, Some(1100));
    // An ack before the deadline ends it; the stale due key does no harm.
    s.apply_one(
        Op::Ack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: vec![id],
        },
        500,
    )
    .unwrap();
    s.apply_one(Op::Tick, 2000).unwrap();
    assert_eq!(s.pending_summary(&key("s"), b"g").unwrap().count, 0);
    assert!(dead_letters(&s).is_empty());
    // A silent consumer: timeout, backoff, redelivery, timeout again -> DLQ.
    let id2 = add(&s, "s", "y", 3000);
    read(&s, "s", "g", "a", 1, 3000);
    s.apply_one(Op::Tick, 4000).unwrap();
    let q = PendingQuery {
        start: StreamId::MIN,
        end: StreamId::MAX,
        count: 10,
        consumer: None,
        min_idle_ms: None,
    };
    let p = s.pending_range(&key("s"), b"g", &q, 4000).unwrap();
    assert_eq!(p[0].failures, 1);
    assert_eq!(p[0].state, PendingState::RetryWait { due_ms: 4500 });
    assert_eq!(ids(&read(&s, "s", "g", "b", 1, 4500)), vec![id2]);
    let out = s.apply(vec![Op::Tick], 5500).unwrap();
    assert!(out.events.iter().any(|e| matches!(
        e,
        Event::DeadLettered {
            reason: DeadReason::MaxAttempts,
            ..
        }
    )));
    let dl = dead_letters(&s);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].1.last_error.as_deref(), Some(&b"ack timeout"[..]));
    assert_eq!(s.due(6000).next_deadline_ms, None);
}

#[test]
fn expired_and_stale_entries_are_never_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "plain", GroupStart::Id(StreamId::MIN), 0);
    s.apply_one(
        Op::CreateGroup {
            stream: key("s"),
            group: b"g".to_vec(),
            start: GroupStart::Id(StreamId::MIN),
            mkstream: true,
            entries_read: None,
            policy: None,
        },
        0,
    )
    .unwrap();
    set_policy(
        &s,
        Some(DeliveryPolicy {
            max_age_ms: Some(30_000),
            dead_letter: b"s:dlq".to_vec(),
            ..DeliveryPolicy::default()
        }),
    );
    let ttl = Meta {
        expires_at_ms: Some(1500),
        ..Meta::default()
    };
    s.apply_one(append("s", IdSpec::Auto, fields("short-lived"), ttl), 1000)
        .unwrap();
    let fresh = add(&s, "s", "fresh", 40_000);
    add(&s, "s", "old-for-g", 2000); // explicit clock going back: ID stays monotonic
                                     // Plain group (no policy): the expired entry goes to cortex:dlq, the rest is delivered.
    let got = read(&s, "s", "plain", "c", 10, 45_000);
    assert_eq!(values(&got), vec!["fresh", "old-for-g"]);
    let dl = dead_letters(&s);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].1.reason, DeadReason::Expired);
    assert_eq!(dl[0].1.group, b"plain");
    // Group with max_age 30 s: the first entry is expired, the others were published at 40 s.
    let got = read(&s, "s", "g", "c", 10, 71_000);
    assert!(got.is_empty(), "{got:?}");
    let dl = s
        .dlq_list(&key("s:dlq"), &DlqFilter::default(), 10)
        .unwrap();
    let reasons: Vec<_> = dl.iter().map(|d| (d.1.reason, d.1.origin_id)).collect();
    assert_eq!(reasons[0].0, DeadReason::Expired);
    assert_eq!(reasons[1], (DeadReason::Stale, fresh));
    assert_eq!(reasons.len(), 3);
    // Range reads still show the whole log.
    assert_eq!(all(&s, "s").len(), 3);
    // Filtered redrive and purge.
    let stale_only = DlqFilter {
        reason: Some(DeadReason::Stale),
        ..DlqFilter::default()
    };
    assert_eq!(
        count(s.apply_one(
            Op::DlqPurge {
                dlq: key("s:dlq"),
                filter: stale_only,
                limit: 1
            },
            72_000
        )),
        1
    );
    assert_eq!(
        s.dlq_list(&key("s:dlq"), &DlqFilter::default(), 10)
            .unwrap()
            .len(),
        2
    );
    // Redriving an expired entry drops its TTL (it would expire again at once).
    let expired = DlqFilter {
        reason: Some(DeadReason::Expired),
        ..DlqFilter::default()
    };
    assert_eq!(
        count(s.apply_one(
            Op::DlqRedrive {
                dlq: key("s:dlq"),
                filter: expired,
                limit: 10
            },
            72_000
        )),
        1
    );
    let last = all(&s, "s").pop().unwrap();
    assert_eq!(last.record.fields, fields("short-lived"));
    assert_eq!(last.record.meta.expires_at_ms, None);
}

#[test]
fn reject_and_policy_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    let id = add(&s, "s", "x", 1);
    read(&s, "s", "g", "c", 1, 1);
    // No policy: a retrying nack is refused, a reject works.
    let r = s.apply_one(
        Op::Nack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: vec![id],
            error: None,
            reject: false,
        },
        2,
    );
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
    let r = s.apply_one(
        Op::Nack {
            stream: key("s"),
            group: b"g".to_vec(),
            ids: vec![id],
            error: Some(b"bad payload".to_vec()),
            reject: true,
        },
        2,
    );
    assert_eq!(count(r), 1);
    assert_eq!(dead_letters(&s)[0].1.reason, DeadReason::Rejected);
    let bad = |p: DeliveryPolicy| {
        s.apply_one(
            Op::SetPolicy {
                stream: key("s"),
                group: b"g".to_vec(),
                policy: Some(p),
            },
            0,
        )
    };
    assert!(matches!(
        bad(DeliveryPolicy {
            max_attempts: 0,
            ..DeliveryPolicy::default()
        }),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        bad(DeliveryPolicy {
            ack_wait_ms: Some(0),
            ..DeliveryPolicy::default()
        }),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        bad(DeliveryPolicy {
            backoff_ms: vec![1; 33],
            ..DeliveryPolicy::default()
        }),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        bad(DeliveryPolicy {
            dead_letter: vec![],
            ..DeliveryPolicy::default()
        }),
        Err(Error::BadName { .. })
    ));
    assert_eq!(s.group_policy(&key("s"), b"g").unwrap(), None);
}

fn deliver(s: &Store, consumer: &str, from: ReadFrom, count: usize, now: u64) -> Vec<Delivery> {
    match s.apply_one(
        Op::Deliver {
            stream: key("s"),
            group: b"g".to_vec(),
            consumer: consumer.into(),
            from,
            count,
            noack: false,
        },
        now,
    ) {
        Ok(Reply::Delivered(d)) => d,
        other => panic!("deliver: {other:?}"),
    }
}

fn attempts(d: &[Delivery]) -> Vec<(StreamId, u32)> {
    d.iter().map(|d| (d.id, d.attempt)).collect()
}

/// A push delivery carries each entry's attempt number: 1 when new, the pending list's
/// count on a retry or a replay of the consumer's own pending entries. A delivery that
/// finds nothing writes nothing (the consumer's seen-time stays).
#[test]
fn deliver_carries_attempt_numbers_and_an_idle_one_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "s", "g", GroupStart::Id(StreamId::MIN), 0);
    set_policy(&s, Some(policy(None)));
    let a = add(&s, "s", "a", 1000);
    let b = add(&s, "s", "b", 1000);
    // `count` bounds it; the rest waits for the next one.
    assert_eq!(
        attempts(&deliver(&s, "pink", ReadFrom::New, 1, 1000)),
        vec![(a, 1)]
    );
    assert_eq!(
        attempts(&deliver(&s, "pink", ReadFrom::New, 10, 1000)),
        vec![(b, 1)]
    );
    // Replaying the consumer's own pending entries (a new connection) is attempt 2.
    assert_eq!(
        attempts(&deliver(
            &s,
            "pink",
            ReadFrom::History(StreamId::MIN),
            10,
            1000
        )),
        vec![(a, 2), (b, 2)]
    );
    // A nacked entry comes back as a retry after its backoff, with its count.
    assert_eq!(nack(&s, a, "busy", 2000), 1);
    s.apply_one(Op::Tick, 7000).unwrap();
    assert_eq!(
        attempts(&deliver(&s, "red", ReadFrom::New, 10, 7000)),
        vec![(a, 3)]
    );
    // Nothing to hand out: nothing written, not even red's seen-time.
    let seen = |s: &Store| {
        s.consumers_info(&key("s"), b"g", 20_000)
            .unwrap()
            .into_iter()
            .find(|c| c.name == b"red")
            .map(|c| c.idle_ms)
    };
    let before = seen(&s);
    assert!(deliver(&s, "red", ReadFrom::New, 10, 9000).is_empty());
    assert_eq!(seen(&s), before);
    // A missing group is an error, as for XREADGROUP.
    let r = s.apply_one(
        Op::Deliver {
            stream: key("s"),
            group: b"nope".to_vec(),
            consumer: b"red".to_vec(),
            from: ReadFrom::New,
            count: 1,
            noack: false,
        },
        9000,
    );
    assert!(matches!(r, Err(Error::NoSuchGroup { .. })), "{r:?}");
}
