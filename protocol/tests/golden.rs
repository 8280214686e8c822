//! The golden vectors: one file per frame variant (several for variants whose inner enums
//! have cases worth pinning), each holding the frame's bytes and what they say, generated
//! from this crate's codec. The test fails when the codec and the files drift apart;
//! `CORTEX_BLESS=1 cargo test -p cortex-protocol --test golden` rewrites them after a
//! deliberate change (which `docs/PROTOCOL.md` must then describe). Every client's tests
//! decode each file's bytes and re-encode them byte for byte.
//!
//! File format (`protocol/golden/NN-name.txt`, UTF-8, one `key: value` per line):
//! `frame:` the tag and variant name; `about:` a description for people (several lines
//! allowed); `hex:` the whole frame, length prefix included, lowercase hex.

use std::collections::BTreeSet;
use std::path::PathBuf;

use cortex_protocol::*;

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn pairs(p: &[(&str, &str)]) -> Pairs {
    p.iter().map(|(k, v)| (b(k), b(v))).collect()
}

const ID: Id = Id {
    ms: 1_764_000_000_123,
    seq: 7,
};

/// (file stem, description, frame).
fn vectors() -> Vec<(&'static str, &'static str, Frame)> {
    vec![
        (
            "hello",
            "Hello: protocol 1, agent `harold`, token `s3cret`, client `cortex-go/0.1.0`.",
            Frame::Hello {
                protocol: PROTOCOL,
                agent: "harold".into(),
                token: "s3cret".into(),
                client: "cortex-go/0.1.0".into(),
            },
        ),
        (
            "welcome",
            "Welcome: protocol 1, server `cortex 0.1.0`, agent `harold`, the default limits.",
            Frame::Welcome {
                protocol: PROTOCOL,
                server: "cortex 0.1.0".into(),
                agent: "harold".into(),
                limits: Limits::default(),
            },
        ),
        (
            "error",
            "Error: code NoResponders (10), message `nobody serves pink`.",
            Frame::Error {
                code: ErrorCode::NoResponders,
                message: "nobody serves pink".into(),
            },
        ),
        (
            "publish",
            "Publish to `tasks`: message 1 {task: review, pr: 42} on lane 1 (high) with a TTL of \
             60000 ms, key `k-1` and header trace=t1; message 2 {task: sleep} on lane 4, no TTL, \
             no key, no headers.",
            Frame::Publish {
                stream: b("tasks"),
                messages: vec![
                    Message {
                        fields: pairs(&[("task", "review"), ("pr", "42")]),
                        lane: 1,
                        ttl_ms: Some(60_000),
                        key: Some(b("k-1")),
                        headers: pairs(&[("trace", "t1")]),
                    },
                    Message {
                        fields: pairs(&[("task", "sleep")]),
                        lane: 4,
                        ttl_ms: None,
                        key: None,
                        headers: Vec::new(),
                    },
                ],
            },
        ),
        (
            "published",
            "Published: result 1 stored as 1764000000123-7, not a duplicate; result 2 refused \
             with TooLarge (7) `entry of 1048586 bytes is over the limit`; result 3 a duplicate \
             of 1764000000123-8.",
            Frame::Published {
                results: vec![
                    PublishResult::Stored(Published {
                        id: ID,
                        duplicate: false,
                    }),
                    PublishResult::Refused {
                        code: ErrorCode::TooLarge,
                        message: "entry of 1048586 bytes is over the limit".into(),
                    },
                    PublishResult::Stored(Published {
                        id: Id { ms: ID.ms, seq: 8 },
                        duplicate: true,
                    }),
                ],
            },
        ),
        (
            "subscribe",
            "Subscribe to `tasks`, group `workers`, consumer default (None), starting After \
             1764000000123-7, window 16, heartbeat 2000 ms, acks needed.",
            Frame::Subscribe {
                stream: b("tasks"),
                group: Some(b("workers")),
                consumer: None,
                from: Start::After(ID),
                window: 16,
                heartbeat_ms: 2_000,
                no_ack: false,
            },
        ),
        (
            "subscribe-time",
            "Subscribe to `cortex:inbox:pink`, group and consumer default, starting at Unix time \
             1764000000000 ms, window 1, default heartbeat (0), no acks.",
            Frame::Subscribe {
                stream: b("cortex:inbox:pink"),
                group: None,
                consumer: None,
                from: Start::Time(1_764_000_000_000),
                window: 1,
                heartbeat_ms: 0,
                no_ack: true,
            },
        ),
        ("credit", "Credit: window 32.", Frame::Credit { window: 32 }),
        (
            "subscribed",
            "Subscribed: group `workers`, consumer `pink`.",
            Frame::Subscribed {
                group: b("workers"),
                consumer: b("pink"),
            },
        ),
        (
            "deliveries",
            "Deliveries: one entry of `cortex:inbox:pink`, 1764000000123-7, {q: help?}, lane 0, \
             attempt 2, headers cortex-correlation-id=00ff and cortex-reply-to=cortex:replies:harold, \
             producer `harold`.",
            Frame::Deliveries {
                items: vec![Delivery {
                    stream: b("cortex:inbox:pink"),
                    id: ID,
                    fields: pairs(&[("q", "help?")]),
                    lane: 0,
                    attempt: 2,
                    headers: pairs(&[
                        (names::CORRELATION, "00ff"),
                        (names::REPLY_TO, "cortex:replies:harold"),
                    ]),
                    producer: Some(b("harold")),
                }],
            },
        ),
        (
            "heartbeat",
            "Heartbeat: 3 in flight of a window of 16.",
            Frame::Heartbeat {
                in_flight: 3,
                window: 16,
            },
        ),
        (
            "ack",
            "Ack seq 5: 1764000000123-7 and 1764000000123-8.",
            Frame::Ack {
                seq: 5,
                ids: vec![ID, Id { ms: ID.ms, seq: 8 }],
            },
        ),
        (
            "nack",
            "Nack seq 6: 1764000000123-7, error `tests failed`, not a reject.",
            Frame::Nack {
                seq: 6,
                ids: vec![ID],
                error: Some("tests failed".into()),
                reject: false,
            },
        ),
        (
            "nack-reject",
            "Nack seq 7: 1764000000123-7, no error text, reject (dead-letter at once).",
            Frame::Nack {
                seq: 7,
                ids: vec![ID],
                error: None,
                reject: true,
            },
        ),
        (
            "progress",
            "Progress seq 8: 1764000000123-7.",
            Frame::Progress {
                seq: 8,
                ids: vec![ID],
            },
        ),
        (
            "done",
            "Done seq 5: applied to 2 IDs.",
            Frame::Done { seq: 5, count: 2 },
        ),
        (
            "failed",
            "Failed seq 6: NotFound (6), `no such group`.",
            Frame::Failed {
                seq: 6,
                code: ErrorCode::NotFound,
                message: "no such group".into(),
            },
        ),
        (
            "request",
            "Request to agent `pink`: {q: help?}, header trace=t2, timeout 30000 ms, lane 1.",
            Frame::Request {
                agent: "pink".into(),
                fields: pairs(&[("q", "help?")]),
                headers: pairs(&[("trace", "t2")]),
                timeout_ms: 30_000,
                lane: 1,
            },
        ),
        (
            "reply-part",
            "ReplyPart: Progress from `pink`, {pct: 50}.",
            Frame::ReplyPart {
                kind: PartKind::Progress,
                from: Some("pink".into()),
                fields: pairs(&[("pct", "50")]),
            },
        ),
        (
            "reply-part-final",
            "ReplyPart: Final, sender unknown (None), {a: done}.",
            Frame::ReplyPart {
                kind: PartKind::Final,
                from: None,
                fields: pairs(&[("a", "done")]),
            },
        ),
        (
            "respond",
            "Respond to correlation `0123456789abcdef0123456789abcdef`: Error, {why: busy}.",
            Frame::Respond {
                correlation: b("0123456789abcdef0123456789abcdef"),
                kind: PartKind::Error,
                fields: pairs(&[("why", "busy")]),
            },
        ),
        (
            "range",
            "Range of `tasks` from 0-0 to 1764000000123-7, at most 100, newest first.",
            Frame::Range {
                stream: b("tasks"),
                start: Id { ms: 0, seq: 0 },
                end: ID,
                count: 100,
                rev: true,
            },
        ),
        (
            "entries",
            "Entries: 1764000000123-7 {task: review}, lane 2, header trace=t1, producer `harold`, \
             expires at 1764000060123.",
            Frame::Entries {
                items: vec![Entry {
                    id: ID,
                    fields: pairs(&[("task", "review")]),
                    lane: 2,
                    headers: pairs(&[("trace", "t1")]),
                    producer: Some(b("harold")),
                    expires_at_ms: Some(1_764_000_060_123),
                }],
            },
        ),
        (
            "admin-stat",
            "Admin Stat of stream `tasks`.",
            Frame::Admin(AdminRequest::Stat {
                stream: Some(b("tasks")),
            }),
        ),
        (
            "admin-policy",
            "Admin Policy of `tasks`/`workers`, changing max_attempts to 5, backoff to [1000, \
             5000] ms, the ack wait to none, keeping the rest.",
            Frame::Admin(AdminRequest::Policy {
                stream: b("tasks"),
                group: b("workers"),
                change: Some(PolicyChange {
                    max_attempts: Some(5),
                    backoff_ms: Some(vec![1_000, 5_000]),
                    ack_wait_ms: Some(None),
                    max_age_ms: None,
                    dead_letter: None,
                }),
            }),
        ),
        (
            "admin-dlq-list",
            "Admin DlqList: default DLQ, origin `tasks`, reason `rejected`, at most 10.",
            Frame::Admin(AdminRequest::DlqList(DlqSelect {
                dlq: None,
                id: None,
                origin: Some(b("tasks")),
                group: None,
                reason: Some("rejected".into()),
                count: 10,
            })),
        ),
        (
            "admin-cluster-add",
            "Admin Cluster: add voter 3 at `10.0.0.3:7200`.",
            Frame::Admin(AdminRequest::Cluster {
                change: Some(ClusterChange::Add {
                    id: 3,
                    addr: "10.0.0.3:7200".into(),
                }),
            }),
        ),
        (
            "admin-answer-stat",
            "AdminAnswer Stat: stream `tasks`, 3 entries, last 1764000000123-7, lanes [0, 1, 2, \
             0, 0], group `workers` with 1 consumer, 1 pending, lag 2, last delivered 0-1, a \
             policy.",
            Frame::AdminAnswer(AdminAnswer::Stat(vec![StreamStat {
                name: b("tasks"),
                length: 3,
                last_id: ID,
                lanes: vec![0, 1, 2, 0, 0],
                groups: vec![GroupStat {
                    name: b("workers"),
                    consumers: 1,
                    pending: 1,
                    lag: Some(2),
                    last_delivered: Id { ms: 0, seq: 1 },
                    policy: true,
                }],
            }])),
        ),
        (
            "admin-answer-dead-letters",
            "AdminAnswer DeadLetters: 1764000000123-8 in the DLQ, from `tasks` 1764000000123-7, \
             group `workers`, consumer `pink`, reason `max_attempts`, 3 failures, last error \
             `boom`, dead at 1764000000999, fields {task: review}.",
            Frame::AdminAnswer(AdminAnswer::DeadLetters(vec![DeadLetter {
                id: Id { ms: ID.ms, seq: 8 },
                origin: b("tasks"),
                origin_id: ID,
                group: b("workers"),
                consumer: b("pink"),
                reason: "max_attempts".into(),
                failures: 3,
                last_error: Some(b("boom")),
                dead_at_ms: 1_764_000_000_999,
                fields: pairs(&[("task", "review")]),
            }])),
        ),
        (
            "admin-answer-count",
            "AdminAnswer Count: 4.",
            Frame::AdminAnswer(AdminAnswer::Count(4)),
        ),
        (
            "admin-task-submit",
            "Admin Task Submit: to agent `pink`, task `T1`, fields {do: review}, header \
             cortex-delay-ms=500, lane 1 (high), deadline 60000 ms.",
            Frame::Admin(AdminRequest::Task(TaskCall::Submit {
                agent: "pink".into(),
                task: Some(b("T1")),
                fields: pairs(&[("do", "review")]),
                headers: pairs(&[("cortex-delay-ms", "500")]),
                lane: 1,
                deadline_ms: 60_000,
            })),
        ),
        (
            "admin-task-cancel",
            "Admin Task Cancel: task `T1`.",
            Frame::Admin(AdminRequest::Task(TaskCall::Cancel { task: b("T1") })),
        ),
        (
            "admin-task-list",
            "Admin Task List: agent `pink`, no stream, state `working`, after `T0`, at most 50.",
            Frame::Admin(AdminRequest::Task(TaskCall::List {
                agent: Some("pink".into()),
                stream: None,
                state: Some("working".into()),
                after: b("T0"),
                count: 50,
            })),
        ),
        (
            "admin-task-watch",
            "Admin Task Watch: task `T1` from change 2, waiting up to 30000 ms.",
            Frame::Admin(AdminRequest::Task(TaskCall::Watch {
                task: b("T1"),
                from: 2,
                wait_ms: 30_000,
            })),
        ),
        (
            "admin-answer-task",
            "AdminAnswer Task: `T1`, canceled, stream `cortex:inbox:pink` entry 1764000000123-7, \
             submitted by `harold`, held by `pink` in `cortex-responders`, created \
             1764000000123, updated and finished 1764000000200, 3 changes, history from 1: \
             delivered (working), canceled (canceled).",
            Frame::AdminAnswer(AdminAnswer::Task(TaskInfo {
                task: b("T1"),
                state: "canceled".into(),
                stream: b("cortex:inbox:pink"),
                id: ID,
                submitter: Some(b("harold")),
                group: Some(b("cortex-responders")),
                consumer: Some(b("pink")),
                created_ms: 1_764_000_000_123,
                updated_ms: 1_764_000_000_200,
                finished_ms: Some(1_764_000_000_200),
                changes: 3,
                history: vec![
                    TaskChange {
                        seq: 1,
                        at_ms: 1_764_000_000_150,
                        state: "working".into(),
                        event: "delivered".into(),
                        detail: "to pink in cortex-responders, attempt 1".into(),
                        late: false,
                    },
                    TaskChange {
                        seq: 2,
                        at_ms: 1_764_000_000_200,
                        state: "canceled".into(),
                        event: "canceled".into(),
                        detail: String::new(),
                        late: false,
                    },
                ],
            })),
        ),
        (
            "admin-answer-tasks",
            "AdminAnswer Tasks: one task `T2` (submitted, `cortex:inbox:pink` 1764000000123-8, \
             no holder, no history), continue after `T2`.",
            Frame::AdminAnswer(AdminAnswer::Tasks {
                tasks: vec![TaskInfo {
                    task: b("T2"),
                    state: "submitted".into(),
                    stream: b("cortex:inbox:pink"),
                    id: Id { ms: ID.ms, seq: 8 },
                    submitter: None,
                    group: None,
                    consumer: None,
                    created_ms: 1_764_000_000_123,
                    updated_ms: 1_764_000_000_123,
                    finished_ms: None,
                    changes: 1,
                    history: Vec::new(),
                }],
                next: Some(b("T2")),
            }),
        ),
        (
            "admin-agents",
            "Admin Agents: the agents connected to the node.",
            Frame::Admin(AdminRequest::Agents),
        ),
        (
            "admin-answer-agents",
            "AdminAnswer Agents: `pink`, last heard 1764000000123, one QUIC session to node 2 \
             from client `cortex-py/0.1.0` connected at 1764000000000, serving stream \
             `cortex:inbox:pink` with group `cortex-responders`.",
            Frame::AdminAnswer(AdminAnswer::Agents(vec![AgentInfo {
                agent: "pink".into(),
                last_heard_ms: 1_764_000_000_123,
                sessions: vec![SessionInfo {
                    front: "quic".into(),
                    client: "cortex-py/0.1.0".into(),
                    connected_ms: 1_764_000_000_000,
                    last_heard_ms: 1_764_000_000_123,
                    serves: vec![(b("cortex:inbox:pink"), b("cortex-responders"))],
                    node: 2,
                }],
            }])),
        ),
        (
            "canceled",
            "Canceled: task `T1`, entry 1764000000123-7.",
            Frame::Canceled {
                task: b("T1"),
                id: ID,
            },
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

fn render(stem: &str, about: &str, f: &Frame) -> (String, String) {
    let bytes = encode(f);
    let tag = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    let file = format!("{tag:02}-{stem}.txt");
    let text = format!(
        "frame: {tag} {}\nabout: {about}\nhex: {}\n",
        f.name(),
        hex(&bytes)
    );
    (file, text)
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden")
}

#[test]
fn golden_vectors_match_the_codec_and_cover_every_frame() {
    let bless = std::env::var_os("CORTEX_BLESS").is_some();
    let mut tags = BTreeSet::new();
    let mut expected = BTreeSet::new();
    for (stem, about, f) in vectors() {
        let (file, text) = render(stem, about, &f);
        // Each vector decodes back to its frame.
        let bytes = encode(&f);
        let (back, used) = split(&bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!((back, used), (f.clone(), bytes.len()), "{file}");
        tags.insert(u32::from_le_bytes(bytes[4..8].try_into().unwrap()));
        let path = dir().join(&file);
        if bless {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else {
            let on_disk = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (CORTEX_BLESS=1 writes it)", path.display()));
            assert_eq!(
                on_disk, text,
                "{file} drifted from the codec: if the change is deliberate, document it in \
                 docs/PROTOCOL.md and rerun with CORTEX_BLESS=1"
            );
        }
        expected.insert(file);
    }
    // No stale files.
    let present: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    assert_eq!(
        present, expected,
        "golden files without a vector, or the reverse"
    );
    // Every variant has a vector: tags 0..=last are all covered, and the tag after the last
    // is not a frame (so a new variant fails here until it gets one).
    let last = *tags.last().unwrap();
    assert_eq!(tags, (0..=last).collect(), "a frame variant has no vector");
    let mut unknown = (last + 1).to_le_bytes().to_vec();
    unknown.extend_from_slice(&[0; 64]);
    let r = decode(&unknown, &Limits::default());
    assert!(
        matches!(r, Err(DecodeError::Malformed(ref m)) if m.contains("UnexpectedVariant")),
        "tag {} decodes ({r:?}): a new frame variant needs a golden vector",
        last + 1
    );
}
