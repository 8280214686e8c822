//! Extension commands: lanes and TTL seen by plain XREADGROUP, the delivery policy driven by
//! the broker's clock (nack -> backoff -> DLQ -> redrive), alerts, idempotent publish.

use crate::support::*;

pub fn values(v: &V) -> Vec<String> {
    if *v == V::Nil {
        return vec![];
    }
    v.arr()[0].arr()[1]
        .arr()
        .iter()
        .map(|e| e.arr()[1].arr()[1].s().to_string())
        .collect()
}

#[test]
fn lanes_and_ttl_through_plain_xreadgroup() {
    let s = Server::start(&["--test-clock"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"]);
    r.cmd(&["CX.PUBLISH", "q", "PRIORITY", "heartbeat", "m", "hb"]);
    r.cmd(&["XADD", "q", "*", "m", "normal"]);
    r.cmd(&["CX.PUBLISH", "q", "PRIORITY", "low", "m", "low"]);
    r.cmd(&["CX.PUBLISH", "q", "TTL", "1000", "m", "short-lived"]);
    r.cmd(&[
        "CX.PUBLISH",
        "q",
        "PRIORITY",
        "critical",
        "m",
        "PRODUCTION_DOWN",
    ]);
    r.cmd(&["CX.PUBLISH", "q", "PRIORITY", "high", "m", "urgent"]);
    assert_eq!(
        r.cmd(&["CX.PUBLISH", "q", "PRIORITY", "whenever", "m", "x"]),
        V::Err("ERR PRIORITY must be one of critical, high, normal, low, heartbeat".into())
    );
    // The TTL runs out before anybody reads.
    r.cmd(&["CX.CLOCK", "ADVANCE", "2000"]);
    let got = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "pink",
        "COUNT",
        "10",
        "STREAMS",
        "q",
        ">",
    ]);
    assert_eq!(
        values(&got),
        vec!["PRODUCTION_DOWN", "urgent", "normal", "low", "hb"]
    );
    // The log keeps what really happened, in order.
    let log: Vec<String> = r
        .cmd(&["XRANGE", "q", "-", "+"])
        .arr()
        .iter()
        .map(|e| e.arr()[1].arr()[1].s().to_string())
        .collect();
    assert_eq!(
        log,
        vec![
            "hb",
            "normal",
            "low",
            "short-lived",
            "PRODUCTION_DOWN",
            "urgent"
        ]
    );
    // The expired entry went to the DLQ with reason expired.
    let dl = r.cmd(&["CX.DLQ", "LIST"]);
    assert_eq!(dl.arr().len(), 1);
    let fields = dl.arr()[0].arr()[1].arr();
    let get = |k: &str| fields[fields.iter().position(|f| *f == b(k)).unwrap() + 1].clone();
    assert_eq!(get("reason"), b("expired"));
    assert_eq!(get("origin-stream"), b("q"));
    assert_eq!(get("m"), b("short-lived"));
}

#[test]
fn nack_backoff_dead_letter_alert_and_redrive() {
    // A ten-minute alert interval: the first alert after a quiet period must not wait for it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cortex.toml");
    std::fs::write(&cfg, "alert_interval_ms = 600000\n").unwrap();
    let s = Server::start(&["--test-clock", "--config", cfg.to_str().unwrap()]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "tasks", "pink", "$", "MKSTREAM"]);
    assert_eq!(r.cmd(&["CX.POLICY", "tasks", "pink"]), V::Nil);
    assert_eq!(
        r.cmd(&[
            "CX.POLICY",
            "tasks",
            "pink",
            "MAXATTEMPTS",
            "3",
            "BACKOFF",
            "5000,15000",
            "ACKWAIT",
            "NONE"
        ]),
        V::Simple("OK".into())
    );
    let id = r
        .cmd(&[
            "CX.PUBLISH",
            "tasks",
            "PRODUCER",
            "harold",
            "task",
            "build X",
        ])
        .s()
        .to_string();
    let read = |r: &mut Raw| {
        r.cmd(&[
            "XREADGROUP",
            "GROUP",
            "pink",
            "worker",
            "COUNT",
            "10",
            "STREAMS",
            "tasks",
            ">",
        ])
    };
    assert_eq!(values(&read(&mut r)), vec!["build X"]);
    assert_eq!(
        r.cmd(&["CX.NACK", "tasks", "pink", &id, "ERROR", "agent busy"]),
        V::Int(1)
    );
    // Not before the 5 s backoff.
    r.cmd(&["CX.CLOCK", "ADVANCE", "4000"]);
    assert_eq!(read(&mut r), V::Nil);
    r.cmd(&["CX.CLOCK", "ADVANCE", "1000"]);
    assert_eq!(values(&read(&mut r)), vec!["build X"]);
    r.cmd(&["CX.NACK", "tasks", "pink", &id, "ERROR", "still busy"]);
    r.cmd(&["CX.CLOCK", "ADVANCE", "15000"]);
    // A blocked reader is handed the retry when it becomes due (the broker drives time).
    assert_eq!(
        values(&r.cmd(&[
            "XREADGROUP",
            "GROUP",
            "pink",
            "worker",
            "BLOCK",
            "5000",
            "STREAMS",
            "tasks",
            ">"
        ])),
        vec!["build X"]
    );
    assert_eq!(
        r.cmd(&[
            "CX.NACK",
            "tasks",
            "pink",
            &id,
            "ERROR",
            "connection refused"
        ]),
        V::Int(1)
    );
    // Third failure: dead-lettered in the same commit as leaving the pending list.
    assert_eq!(r.cmd(&["XPENDING", "tasks", "pink"]).arr()[0], V::Int(0));
    let dl = r.cmd(&["XRANGE", "cortex:dlq", "-", "+"]);
    assert_eq!(dl.arr().len(), 1);
    let f = dl.arr()[0].arr()[1].arr();
    let get = |k: &str| f[f.iter().position(|x| *x == b(k)).unwrap() + 1].clone();
    assert_eq!(get("reason"), b("max_attempts"));
    assert_eq!(get("attempts"), b("3"));
    assert_eq!(get("last-error"), b("connection refused"));
    assert_eq!(get("origin-id"), b(&id));
    assert_eq!(get("group"), b("pink"));
    // An alert is raised at once (the stream reports it: a blocking read returns when it is
    // there), summarised.
    let alert = r.cmd(&["XREAD", "BLOCK", "20000", "STREAMS", "cortex:alerts", "0-0"]);
    assert_ne!(
        alert,
        V::Nil,
        "no alert within 20 s of a 10-minute interval"
    );
    let text = format!("{alert:?}");
    assert!(text.contains("1 message failed (1 to worker)"), "{text}");
    // It links to the dashboard's dead-letter view.
    assert!(text.contains("/#/dlq"), "{text}");
    // Redrive puts exactly what was published back.
    assert_eq!(r.cmd(&["CX.DLQ", "REDRIVE", "STREAM", "tasks"]), V::Int(1));
    assert_eq!(r.cmd(&["XLEN", "cortex:dlq"]), V::Int(0));
    let back = read(&mut r);
    assert_eq!(values(&back), vec!["build X"]);
    assert_eq!(r.cmd(&["CX.DLQ", "PURGE"]), V::Int(0));
    assert_eq!(
        r.cmd(&["CX.POLICY", "tasks", "pink", "RESET"]),
        V::Simple("OK".into())
    );
    assert!(r
        .cmd(&["CX.NACK", "tasks", "pink", &id])
        .s()
        .contains("no delivery policy"));
}

#[test]
fn ack_timeout_redelivers_to_a_live_consumer() {
    let s = Server::start(&["--test-clock"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "jobs", "g", "$", "MKSTREAM"]);
    r.cmd(&["CX.POLICY", "jobs", "g", "ACKWAIT", "1000", "BACKOFF", "0"]);
    r.cmd(&["XADD", "jobs", "*", "job", "1"]);
    let first = r.cmd(&["XREADGROUP", "GROUP", "g", "silent", "STREAMS", "jobs", ">"]);
    assert_eq!(values(&first), vec!["1"]);
    // The consumer falls silent: after ack_wait the broker makes it available again.
    r.cmd(&["CX.CLOCK", "ADVANCE", "1500"]);
    let again = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alive",
        "BLOCK",
        "5000",
        "STREAMS",
        "jobs",
        ">",
    ]);
    assert_eq!(values(&again), vec!["1"]);
    let p = r.cmd(&["XPENDING", "jobs", "g", "-", "+", "10"]);
    assert_eq!(p.arr()[0].arr()[1], b("alive"));
    assert_eq!(p.arr()[0].arr()[3], V::Int(2));
}

#[test]
fn idempotent_publish_and_clock_guard() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let a = r.cmd(&["CX.PUBLISH", "s", "IDEMPOTENCY", "req-1", "f", "v"]);
    let b2 = r.cmd(&["CX.PUBLISH", "s", "IDEMPOTENCY", "req-1", "f", "v"]);
    assert_eq!(a, b2);
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(1));
    assert_eq!(
        r.cmd(&["CX.CLOCK", "ADVANCE", "10"]),
        V::Err("ERR CX.CLOCK ADVANCE|STEP needs a server started with --test-clock".into())
    );
    assert!(r.cmd(&["CX.CLOCK"]).int() > 1_700_000_000_000);
}

#[test]
fn retention_trims_by_rule_and_alerts_on_undelivered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cortex.toml");
    std::fs::write(
        &cfg,
        "retention_interval_ms = 100\nalert_interval_ms = 100\n\
         [[retention]]\npattern = \"events:*\"\nmax_len = 5\n\
         [[retention]]\npattern = \"big:*\"\nmax_bytes = 60\n",
    )
    .unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "events:a", "slow", "$", "MKSTREAM"]);
    for i in 0..10 {
        r.cmd(&["XADD", "events:a", "*", "i", &i.to_string()]);
        r.cmd(&["XADD", "big:b", "*", "f", "123456789"]);
        r.cmd(&["XADD", "other", "*", "i", &i.to_string()]);
    }
    wait_until(|| {
        let a = r.cmd(&["XLEN", "events:a"]).int();
        let b = r.cmd(&["XLEN", "big:b"]).int();
        if a == 5 && b == 6 {
            Ok(())
        } else {
            Err(format!("retention did not trim: events:a {a}, big:b {b}"))
        }
    });
    assert_eq!(
        r.cmd(&["XLEN", "other"]),
        V::Int(10),
        "no rule, no trimming"
    );
    // The newest entries stay.
    let first = r.cmd(&["XRANGE", "events:a", "-", "+", "COUNT", "1"]);
    assert_eq!(first.arr()[0].arr()[1], V::Arr(vec![b("i"), b("5")]));
    // The group never got those 5 entries: an alert says so.
    wait_until(|| {
        let alerts = format!("{:?}", r.cmd(&["XRANGE", "cortex:alerts", "-", "+"]));
        if alerts.contains("undelivered entries trimmed") {
            Ok(())
        } else {
            Err(format!("no trim alert: {alerts}"))
        }
    });
}
