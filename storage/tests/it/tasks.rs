//! Tasks: state moved by the calls a worker already makes, cancellation that overtakes,
//! history, listing, limits and expiry.

use cortex_storage::*;

use crate::util::*;

fn task_meta(task: &str) -> Meta {
    Meta {
        producer: Some(b"harold".to_vec()),
        headers: vec![(TASK_HEADER.to_vec(), task.as_bytes().to_vec())],
        ..Meta::default()
    }
}

fn submit(s: &Store, stream: &str, task: &str, now: u64) -> Result<Reply> {
    s.apply_one(
        append(stream, IdSpec::Auto, fields(task), task_meta(task)),
        now,
    )
}

fn submitted(s: &Store, stream: &str, task: &str, now: u64) -> StreamId {
    match submit(s, stream, task, now) {
        Ok(Reply::Appended { id, .. }) => id,
        other => panic!("submit {task}: {other:?}"),
    }
}

fn task(s: &Store, id: &str) -> Option<TaskRecord> {
    match s.query(
        &Query::Task {
            task: id.as_bytes().to_vec(),
        },
        0,
    ) {
        Ok(Answer::Task(t)) => t.map(|t| *t),
        other => panic!("task query: {other:?}"),
    }
}

fn state(s: &Store, id: &str) -> TaskState {
    task(s, id).expect("task exists").state
}

fn cancel(s: &Store, id: &str, now: u64) -> (Result<Reply>, Vec<Event>) {
    let mut out = s
        .apply(
            vec![Op::CancelTask {
                task: id.as_bytes().to_vec(),
            }],
            now,
        )
        .unwrap();
    (out.replies.remove(0), out.events)
}

fn part(s: &Store, task: &str, kind: &str, now: u64) -> Result<Reply> {
    let meta = Meta {
        headers: vec![
            (CORRELATION_HEADER.to_vec(), task.as_bytes().to_vec()),
            (PART_HEADER.to_vec(), kind.as_bytes().to_vec()),
        ],
        ..Meta::default()
    };
    s.apply_one(append("replies", IdSpec::Auto, fields(kind), meta), now)
}

#[test]
fn a_task_moves_with_delivery_parts_and_the_final_reply() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "inbox", "g", GroupStart::Id(StreamId::MIN), 0);
    let id = submitted(&s, "inbox", "T1", 100);
    let t = task(&s, "T1").unwrap();
    assert_eq!(
        (t.state, t.id, t.submitter.as_deref()),
        (TaskState::Submitted, id, Some(&b"harold"[..]))
    );
    assert_eq!(ids(&read(&s, "inbox", "g", "pink", 10, 110)), vec![id]);
    let t = task(&s, "T1").unwrap();
    assert_eq!(t.state, TaskState::Working);
    assert_eq!(t.holder, Some((b"g".to_vec(), b"pink".to_vec())));
    part(&s, "T1", "progress", 120).unwrap();
    part(&s, "T1", "input-required", 130).unwrap();
    assert_eq!(state(&s, "T1"), TaskState::InputRequired);
    part(&s, "T1", "progress", 140).unwrap();
    part(&s, "T1", "final", 150).unwrap();
    let t = task(&s, "T1").unwrap();
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.finished_ms, Some(150));
    let states: Vec<_> = t.history.iter().map(|c| c.state.name()).collect();
    assert_eq!(
        states,
        [
            "submitted",
            "working",
            "working",
            "input-required",
            "working",
            "completed"
        ]
    );
    assert!(t.history.iter().enumerate().all(|(i, c)| c.seq == i as u64));
    // The responder's own ack after the final part changes nothing.
    s.apply_one(
        Op::Ack {
            stream: key("inbox"),
            group: b"g".to_vec(),
            ids: vec![id],
        },
        160,
    )
    .unwrap();
    assert_eq!(task(&s, "T1").unwrap().changes, 6);
    // A finished task cannot be canceled, and says how it ended.
    match cancel(&s, "T1", 170).0 {
        Err(Error::TaskFinished { state, .. }) => assert_eq!(state, "completed"),
        other => panic!("cancel of a finished task: {other:?}"),
    }
    assert!(matches!(
        cancel(&s, "nope", 170).0,
        Err(Error::NoSuchTask { .. })
    ));
}

#[test]
fn ack_completes_nack_waits_again_and_reject_and_dead_letters_end_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "q", "g", GroupStart::Id(StreamId::MIN), 0);
    s.apply_one(
        Op::SetPolicy {
            stream: key("q"),
            group: b"g".to_vec(),
            policy: Some(DeliveryPolicy {
                max_attempts: 2,
                backoff_ms: vec![10],
                ..DeliveryPolicy::default()
            }),
        },
        0,
    )
    .unwrap();
    let a = submitted(&s, "q", "A", 100);
    let b = submitted(&s, "q", "B", 101);
    let c = submitted(&s, "q", "C", 102);
    assert_eq!(read(&s, "q", "g", "w", 10, 110).len(), 3);
    let nack = |ids: Vec<StreamId>, reject: bool, now: u64| {
        s.apply_one(
            Op::Nack {
                stream: key("q"),
                group: b"g".to_vec(),
                ids,
                error: Some(b"boom".to_vec()),
                reject,
            },
            now,
        )
        .unwrap()
    };
    s.apply_one(
        Op::Ack {
            stream: key("q"),
            group: b"g".to_vec(),
            ids: vec![a],
        },
        120,
    )
    .unwrap();
    assert_eq!(state(&s, "A"), TaskState::Completed);
    nack(vec![b], true, 121);
    assert_eq!(state(&s, "B"), TaskState::Rejected);
    nack(vec![c], false, 122);
    assert_eq!(state(&s, "C"), TaskState::Submitted);
    s.apply_one(Op::Tick, 200).unwrap();
    assert_eq!(ids(&read(&s, "q", "g", "w", 10, 210)), vec![c]);
    let t = task(&s, "C").unwrap();
    assert_eq!(t.state, TaskState::Working);
    assert!(matches!(
        t.history.last().unwrap().event,
        TaskEvent::Delivered { attempt: 2, .. }
    ));
    nack(vec![c], false, 220);
    let t = task(&s, "C").unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(
        t.history.last().unwrap().event,
        TaskEvent::DeadLettered {
            reason: "max_attempts".into()
        }
    );
}

#[test]
fn a_canceled_task_is_never_handed_out_and_a_held_one_leaves_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "inbox", "g", GroupStart::Id(StreamId::MIN), 0);
    // Not handed out yet: canceled, it is passed over; the entry stays in the log.
    submitted(&s, "inbox", "T0", 90);
    let (r, events) = cancel(&s, "T0", 95);
    assert_eq!(
        r.unwrap_or_else(|e| panic!("{e}")),
        Reply::Task(Box::new(task(&s, "T0").unwrap()))
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::TaskCanceled { .. })));
    // Held: the seed's T1/T2. T1 handed to pink, canceled, T2 submitted.
    let t1 = submitted(&s, "inbox", "T1", 100);
    assert_eq!(ids(&read(&s, "inbox", "g", "pink", 1, 110)), vec![t1]);
    let (r, events) = cancel(&s, "T1", 120);
    assert!(r.is_ok());
    let signals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskCanceled {
                task, consumer, id, ..
            } => Some((task.clone(), consumer.clone(), *id)),
            _ => None,
        })
        .collect();
    assert_eq!(signals, vec![(b"T1".to_vec(), b"pink".to_vec(), t1)]);
    let t2 = submitted(&s, "inbox", "T2", 130);
    // T1 left pink's pending list; T0 never comes; T2 does.
    assert_eq!(ids(&read(&s, "inbox", "g", "pink", 10, 140)), vec![t2]);
    let pending = match s
        .query(
            &Query::PendingSummary {
                stream: key("inbox"),
                group: b"g".to_vec(),
            },
            140,
        )
        .unwrap()
    {
        Answer::PendingSummary(p) => p.count,
        other => panic!("{other:?}"),
    };
    assert_eq!(pending, 1);
    assert_eq!(all(&s, "inbox").len(), 3);
    // pink's reply after the cancel is kept, marked late; the state stays canceled.
    part(&s, "T1", "final", 150).unwrap();
    let t = task(&s, "T1").unwrap();
    assert_eq!(t.state, TaskState::Canceled);
    let last = t.history.last().unwrap();
    assert!(last.late);
    assert!(matches!(&last.event, TaskEvent::Part { kind, .. } if kind == b"final"));
    // Canceling again says it is over.
    assert!(matches!(
        cancel(&s, "T1", 160).0,
        Err(Error::TaskFinished {
            state: "canceled",
            ..
        })
    ));
}

/// A task canceled before anyone took it goes to the DLQ (reason `canceled`) only when
/// its entry asks for it; its task stays `canceled`; redriven, it is a plain message.
#[test]
fn a_canceled_task_goes_to_the_dlq_only_when_it_asks_and_redrives_as_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "inbox", "g", GroupStart::Id(StreamId::MIN), 0);
    submitted(&s, "inbox", "DROP", 100);
    let mut meta = task_meta("KEEP");
    meta.headers
        .push((ON_CANCEL_HEADER.to_vec(), b"dlq".to_vec()));
    let keep = match s.apply_one(append("inbox", IdSpec::Auto, fields("keep"), meta), 101) {
        Ok(Reply::Appended { id, .. }) => id,
        other => panic!("{other:?}"),
    };
    cancel(&s, "DROP", 110).0.unwrap();
    let (r, events) = cancel(&s, "KEEP", 111);
    r.unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DeadLettered { reason: DeadReason::Canceled, id, .. } if *id == keep
    )));
    let dlq = std::str::from_utf8(DEFAULT_DLQ).unwrap();
    let dead = all(&s, dlq);
    assert_eq!(dead.len(), 1, "only the task that asked: {dead:?}");
    let d = dead[0].record.dead_letter.as_ref().expect("a dead letter");
    assert_eq!((d.reason, d.origin_id), (DeadReason::Canceled, keep));
    assert_eq!(d.group, b"g");
    assert_eq!(state(&s, "KEEP"), TaskState::Canceled);
    assert_eq!(state(&s, "DROP"), TaskState::Canceled);
    assert!(read(&s, "inbox", "g", "pink", 10, 120).is_empty());
    // Redriven: a plain message again (no task header), handed out like any other.
    let moved = s
        .apply_one(
            Op::DlqRedrive {
                dlq: key(dlq),
                filter: DlqFilter {
                    reason: Some(DeadReason::Canceled),
                    ..DlqFilter::default()
                },
                limit: 10,
            },
            130,
        )
        .unwrap();
    assert_eq!(moved, Reply::Count(1));
    let got = read(&s, "inbox", "g", "pink", 10, 140);
    assert_eq!(values(&got), vec!["keep"]);
    let record = got[0].1.as_ref().unwrap();
    assert!(!record.meta.headers.iter().any(|(k, _)| k == TASK_HEADER));
    assert_eq!(state(&s, "KEEP"), TaskState::Canceled);
}

/// A task whose entry leaves its stream before it finished (trimmed, deleted, the stream
/// deleted) fails as `removed`, and stops counting as open; a finished task's entry leaving
/// changes nothing.
#[test]
fn a_task_whose_entry_leaves_its_stream_unfinished_fails_as_removed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "inbox", "g", GroupStart::Id(StreamId::MIN), 0);
    let done = submitted(&s, "inbox", "DONE", 10);
    assert_eq!(ids(&read(&s, "inbox", "g", "pink", 1, 11)), vec![done]);
    part(&s, "DONE", "final", 12).unwrap();
    assert_eq!(state(&s, "DONE"), TaskState::Completed);
    submitted(&s, "inbox", "TRIMMED", 20);
    let trim = Op::Trim {
        stream: key("inbox"),
        trim: Trim::new(TrimStrategy::MaxLen(0), false, None),
    };
    s.apply_one(trim, 30).unwrap();
    let t = task(&s, "TRIMMED").unwrap();
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.history.last().unwrap().event, TaskEvent::Removed);
    let d = task(&s, "DONE").unwrap();
    assert_eq!((d.state, d.changes), (TaskState::Completed, 3), "{d:?}");
    // The stream deleted with an open task in it.
    submitted(&s, "inbox", "GONE", 40);
    s.apply_one(
        Op::DeleteStream {
            stream: key("inbox"),
        },
        50,
    )
    .unwrap();
    let g = task(&s, "GONE").unwrap();
    assert_eq!(g.state, TaskState::Failed);
    assert_eq!(g.history.last().unwrap().event, TaskEvent::Removed);
    assert_eq!(g.finished_ms, Some(50));
}

/// A rejected task's entry redriven from the DLQ: its task waits again (`redriven`), is
/// handed out and completed like any task.
#[test]
fn a_redriven_task_starts_again_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "inbox", "g", GroupStart::Id(StreamId::MIN), 0);
    let first = submitted(&s, "inbox", "R", 10);
    assert_eq!(ids(&read(&s, "inbox", "g", "pink", 1, 11)), vec![first]);
    let reject = Op::Nack {
        stream: key("inbox"),
        group: b"g".to_vec(),
        ids: vec![first],
        error: Some(b"not now".to_vec()),
        reject: true,
    };
    s.apply_one(reject, 12).unwrap();
    assert_eq!(state(&s, "R"), TaskState::Rejected);
    let dlq = std::str::from_utf8(DEFAULT_DLQ).unwrap();
    let redrive = Op::DlqRedrive {
        dlq: key(dlq),
        filter: DlqFilter::default(),
        limit: 10,
    };
    assert_eq!(s.apply_one(redrive, 20).unwrap(), Reply::Count(1));
    let t = task(&s, "R").unwrap();
    assert_eq!(t.state, TaskState::Submitted);
    assert_eq!(t.history.last().unwrap().event, TaskEvent::Redriven);
    assert_eq!(t.finished_ms, None);
    assert!(t.id > first, "linked to the new entry");
    // Expiry of finished tasks no longer takes it.
    s.apply_one(Op::Tick, 20 + 48 * 3_600_000).unwrap();
    let again = read(&s, "inbox", "g", "pink", 1, 20 + 48 * 3_600_000);
    assert_eq!(ids(&again), vec![t.id]);
    assert_eq!(state(&s, "R"), TaskState::Working);
    part(&s, "R", "final", 20 + 48 * 3_600_000 + 1).unwrap();
    assert_eq!(state(&s, "R"), TaskState::Completed);
}

#[test]
fn a_scheduled_task_canceled_before_its_time_never_comes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    create_group(&s, "q", "g", GroupStart::Id(StreamId::MIN), 0);
    let mut meta = task_meta("S");
    meta.headers.push((DELAY_HEADER.to_vec(), b"1000".to_vec()));
    s.apply_one(append("q", IdSpec::Auto, fields("s"), meta), 100)
        .unwrap();
    assert!(read(&s, "q", "g", "w", 10, 200).is_empty());
    cancel(&s, "S", 300).0.unwrap();
    s.apply_one(Op::Tick, 1100).unwrap();
    assert!(read(&s, "q", "g", "w", 10, 1200).is_empty());
    assert_eq!(state(&s, "S"), TaskState::Canceled);
}

#[test]
fn limits_unique_ids_listing_restart_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        limits: Limits {
            open_tasks_max: 2,
            task_history_max: 4,
            task_keep_ms: 1000,
            ..Limits::default()
        },
        ..StoreConfig::default()
    };
    {
        let s = Store::open(dir.path(), cfg.clone()).unwrap();
        submitted(&s, "a", "A1", 100);
        submitted(&s, "a", "A2", 101);
        submitted(&s, "b", "B1", 102);
        match submit(&s, "a", "A3", 103) {
            Err(Error::TooLarge { what, max: 2, .. }) => assert!(what.contains("open tasks")),
            other => panic!("third open task: {other:?}"),
        }
        assert!(matches!(
            submit(&s, "b", "A1", 104),
            Err(Error::TaskExists { .. })
        ));
        let long = "x".repeat(TASK_ID_MAX + 1);
        assert!(matches!(
            submit(&s, "b", &long, 104),
            Err(Error::BadName { .. })
        ));
        // Progress parts stop at the history bound, with a clear error; the end still goes in.
        part(&s, "A1", "progress", 110).unwrap();
        part(&s, "A1", "progress", 111).unwrap();
        assert!(matches!(
            part(&s, "A1", "progress", 112),
            Err(Error::TooLarge { .. })
        ));
        part(&s, "A1", "final", 113).unwrap();
        assert_eq!(state(&s, "A1"), TaskState::Completed);
        // Room again in stream a.
        submitted(&s, "a", "A3", 114);
        s.close().unwrap();
    }
    let s = Store::open(dir.path(), cfg).unwrap();
    let list = |filter: TaskFilter, after: &str, count: usize| match s
        .query(
            &Query::Tasks {
                filter,
                after: after.as_bytes().to_vec(),
                count,
            },
            1000,
        )
        .unwrap()
    {
        Answer::Tasks(t, next) => (
            t.iter()
                .map(|t| String::from_utf8(t.task.clone()).unwrap())
                .collect::<Vec<_>>(),
            next,
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        list(TaskFilter::default(), "", 10).0,
        ["A1", "A2", "A3", "B1"]
    );
    assert_eq!(list(TaskFilter::default(), "A2", 10).0, ["A3", "B1"]);
    let in_a = TaskFilter {
        stream: Some(key("a")),
        state: Some(TaskState::Submitted),
        ..TaskFilter::default()
    };
    assert_eq!(list(in_a, "", 10).0, ["A2", "A3"]);
    // The finished task expires after its keep time; the open ones stay.
    assert_eq!(s.due(200).next_deadline_ms, Some(1113));
    s.apply_one(Op::Tick, 1113).unwrap();
    assert!(task(&s, "A1").is_none());
    assert_eq!(list(TaskFilter::default(), "", 10).0, ["A2", "A3", "B1"]);
    assert_eq!(s.due(1200).next_deadline_ms, None);
}

fn task_with(task: &str, ttl_at: Option<u64>, keep: Option<&str>) -> Meta {
    let mut m = task_meta(task);
    m.expires_at_ms = ttl_at;
    if let Some(k) = keep {
        m.headers
            .push((KEEP_HEADER.to_vec(), k.as_bytes().to_vec()));
    }
    m
}

/// A task's deadline is its entry's TTL: past it, an unfinished task fails (`deadline`),
/// a holder loses it as on a cancel; one finished in time is untouched. A finished task is
/// removed after its own keep time when its entry asks for less than the store's.
#[test]
fn deadlines_fail_open_tasks_and_keep_times_remove_finished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        limits: Limits {
            task_keep_ms: 10_000,
            ..Limits::default()
        },
        ..StoreConfig::default()
    };
    let s = Store::open(dir.path(), cfg).unwrap();
    create_group(&s, "inbox", "g", GroupStart::Id(StreamId::MIN), 0);
    let add = |t: &str, ttl: Option<u64>, keep: Option<&str>, now: u64| {
        s.apply_one(
            append("inbox", IdSpec::Auto, fields(t), task_with(t, ttl, keep)),
            now,
        )
    };
    // W is handed out and held; F finishes in time (and is kept 500 ms); nobody takes N.
    let w = match add("W", Some(1000), None, 101).unwrap() {
        Reply::Appended { id, .. } => id,
        other => panic!("{other:?}"),
    };
    add("F", Some(1000), Some("500"), 102).unwrap();
    assert!(matches!(
        add("B", None, Some("soon"), 103),
        Err(Error::InvalidArgument(m)) if m.contains("cortex-task-keep-ms")
    ));
    let got = ids(&read(&s, "inbox", "g", "pink", 2, 110));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], w);
    add("N", Some(1000), None, 120).unwrap();
    part(&s, "F", "final", 200).unwrap();
    part(&s, "W", "progress", 210).unwrap();
    assert_eq!(state(&s, "F"), TaskState::Completed);
    assert_eq!(task(&s, "W").unwrap().deadline_ms, Some(1000));
    // The tick is due at the first deadline.
    assert_eq!(s.due(300).next_deadline_ms, Some(700));
    s.apply_one(Op::Tick, 700).unwrap();
    assert!(
        task(&s, "F").is_none(),
        "kept 500 ms after it finished at 200"
    );
    assert_eq!(s.due(800).next_deadline_ms, Some(1000));
    let out = s.apply(vec![Op::Tick], 1000).unwrap();
    for t in ["N", "W"] {
        let rec = task(&s, t).unwrap();
        assert_eq!(rec.state, TaskState::Failed, "{t}");
        assert_eq!(rec.history.last().unwrap().event, TaskEvent::DeadlinePassed);
        assert_eq!(rec.deadline_ms, None);
        assert_eq!(rec.remove_at_ms, Some(11_000));
    }
    let signals: Vec<_> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::TaskCanceled { task, consumer, .. } => Some((task.clone(), consumer.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(signals, vec![(b"W".to_vec(), b"pink".to_vec())]);
    let pending = match s
        .query(
            &Query::PendingSummary {
                stream: key("inbox"),
                group: b"g".to_vec(),
            },
            1000,
        )
        .unwrap()
    {
        Answer::PendingSummary(p) => p.count,
        other => panic!("{other:?}"),
    };
    assert_eq!(pending, 1, "F stays pending (not acked), W left pink");
    // The worker's late answer is kept, marked late; the state stays.
    part(&s, "W", "final", 1100).unwrap();
    let rec = task(&s, "W").unwrap();
    assert_eq!(rec.state, TaskState::Failed);
    assert!(rec.history.last().unwrap().late);
    // Finished at 1000, kept the store's 10 s.
    assert_eq!(s.due(1200).next_deadline_ms, Some(11_000));
    s.apply_one(Op::Tick, 11_000).unwrap();
    assert!(task(&s, "N").is_none() && task(&s, "W").is_none());
    assert_eq!(s.due(11_100).next_deadline_ms, None);
}
