//! Agents over QUIC, end to end against the real binary on loopback.

use std::time::Duration;

use cortex::client::{
    AdminAnswer, AdminRequest, Client, ClientOptions, DlqSelect, ErrorCode, Message, PartKind,
    Start, SubscribeOptions, Trust,
};
use cortex::wire::{self, Frame};

use crate::support::*;

const T: Duration = crate::support::IO_BOUND;

pub fn opts(s: &Server, agent: &str, token: &str) -> ClientOptions {
    ClientOptions {
        server: s.quic,
        also: Vec::new(),
        server_name: "localhost".into(),
        agent: agent.into(),
        token: token.into(),
        trust: Trust::local(s.dir.path()),
        connect_timeout: Duration::from_secs(15),
    }
}

pub async fn client(s: &Server, agent: &str) -> Client {
    Client::connect(opts(s, agent, "")).await.expect("connect")
}

pub fn msg(k: &str, v: &str) -> Message {
    Message {
        fields: vec![(k.into(), v.into())],
        lane: 2,
        ..Message::default()
    }
}

pub async fn next(sub: &mut cortex::client::Subscription) -> cortex::client::Delivery {
    tokio::time::timeout(T, sub.next())
        .await
        .expect("a delivery in time")
        .expect("subscription open")
        .expect("delivery")
}

async fn dead_letters(c: &Client) -> Vec<cortex::client::DeadLetter> {
    let a = c
        .admin(AdminRequest::DlqList(DlqSelect {
            count: 10,
            ..DlqSelect::default()
        }))
        .await
        .unwrap();
    match a {
        AdminAnswer::DeadLetters(d) => d,
        other => panic!("not dead letters: {other:?}"),
    }
}

fn pending(s: &Server, stream: &str, group: &str) -> i64 {
    s.raw().cmd(&["XPENDING", stream, group]).arr()[0].int()
}

#[tokio::test(flavor = "current_thread")]
async fn push_credits_and_acks() {
    let s = Server::start(&[]);
    let c = client(&s, "worker").await;
    for i in 0..5 {
        c.publish("jobs", msg("n", &i.to_string())).await.unwrap();
    }
    let mut o = SubscribeOptions::new("jobs");
    o.from = Start::All;
    o.window = 2;
    let mut sub = c.subscribe(o).await.unwrap();
    let a = next(&mut sub).await;
    let b = next(&mut sub).await;
    assert_eq!((a.fields[0].1.as_slice(), a.attempt), (&b"0"[..], 1));
    assert_eq!(b.fields[0].1, b"1");
    // The window is full: the server has handed out exactly two.
    assert_eq!(pending(&s, "jobs", "worker"), 2);
    assert_eq!(a.ack().await.unwrap(), 1);
    let third = next(&mut sub).await;
    assert_eq!(third.fields[0].1, b"2");
    assert_eq!(pending(&s, "jobs", "worker"), 2);
    // Window 0 pauses delivery even after acks.
    sub.set_window(0);
    b.ack().await.unwrap();
    third.ack().await.unwrap();
    assert_eq!(pending(&s, "jobs", "worker"), 0);
    sub.set_window(10);
    let d = next(&mut sub).await;
    let e = next(&mut sub).await;
    assert_eq!(
        (d.fields[0].1.as_slice(), e.fields[0].1.as_slice()),
        (&b"3"[..], &b"4"[..])
    );
    // Pushed as soon as it is published: nothing polls.
    c.publish("jobs", msg("n", "5")).await.unwrap();
    assert_eq!(next(&mut sub).await.fields[0].1, b"5");
}

#[tokio::test(flavor = "current_thread")]
async fn nack_retries_after_backoff_then_dead_letters() {
    let s = Server::start(&[]);
    let c = client(&s, "worker").await;
    let mut sub = c.subscribe(SubscribeOptions::new("tasks")).await.unwrap();
    let r = s.raw().cmd(&[
        "CX.POLICY",
        "tasks",
        "worker",
        "MAXATTEMPTS",
        "2",
        "BACKOFF",
        "20",
    ]);
    assert!(!r.is_err(), "{r:?}");
    c.publish("tasks", msg("job", "x")).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.attempt, 1);
    d.nack("boom").await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.attempt, 2);
    d.nack("boom again").await.unwrap();
    let dl = dead_letters(&c).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].reason, "max_attempts");
    assert_eq!(dl[0].last_error.as_deref(), Some(&b"boom again"[..]));
    assert_eq!(dl[0].fields, vec![(b"job".to_vec(), b"x".to_vec())]);
}

#[tokio::test(flavor = "current_thread")]
async fn in_progress_keeps_a_slow_delivery() {
    let s = Server::start(&["--test-clock"]);
    let c = client(&s, "slow").await;
    let mut sub = c.subscribe(SubscribeOptions::new("llm")).await.unwrap();
    s.raw().cmd(&[
        "CX.POLICY",
        "llm",
        "slow",
        "ACKWAIT",
        "1000",
        "BACKOFF",
        "1",
    ]);
    c.publish("llm", msg("prompt", "long")).await.unwrap();
    let d = next(&mut sub).await;
    let mut r = s.raw();
    r.cmd(&["CX.CLOCK", "ADVANCE", "600"]);
    assert_eq!(d.in_progress().await.unwrap(), 1);
    // Past the first deadline, before the extended one: still one delivery, still ours.
    r.cmd(&["CX.CLOCK", "ADVANCE", "600"]);
    let p = r.cmd(&["XPENDING", "llm", "slow", "-", "+", "10"]);
    assert_eq!(p.arr().len(), 1);
    assert_eq!(p.arr()[0].arr()[3].int(), 1, "not redelivered: {p:?}");
    // Silent past the extended deadline: it fails and comes back.
    r.cmd(&["CX.CLOCK", "ADVANCE", "600"]);
    r.cmd(&["CX.CLOCK", "ADVANCE", "10"]);
    let again = next(&mut sub).await;
    assert_eq!((again.id, again.attempt), (d.id, 2));
}

#[tokio::test(flavor = "current_thread")]
async fn stale_messages_are_never_delivered() {
    let s = Server::start(&["--test-clock"]);
    let c = client(&s, "w").await;
    let mut m = msg("v", "old");
    m.ttl_ms = Some(100);
    c.publish("fresh", m).await.unwrap();
    s.raw().cmd(&["CX.CLOCK", "ADVANCE", "200"]);
    c.publish("fresh", msg("v", "new")).await.unwrap();
    let mut o = SubscribeOptions::new("fresh");
    o.from = Start::All;
    let mut sub = c.subscribe(o).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(d.fields[0].1, b"new");
    d.ack().await.unwrap();
    let dl = dead_letters(&c).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].reason, "expired");
}

#[tokio::test(flavor = "current_thread")]
async fn client_resumes_after_a_server_crash() {
    let mut s = Server::start(&[]);
    let c = client(&s, "w").await;
    let mut o = SubscribeOptions::new("r");
    o.from = Start::All;
    let mut sub = c.subscribe(o).await.unwrap();
    c.publish("r", msg("n", "1")).await.unwrap();
    c.publish("r", msg("n", "2")).await.unwrap();
    let one = next(&mut sub).await;
    let two = next(&mut sub).await;
    one.ack().await.unwrap();
    let _ = two; // delivered, never acknowledged
    s.crash_and_restart();
    // The unacknowledged delivery comes back from the pending list on the new connection.
    let again = next(&mut sub).await;
    assert_eq!(again.fields[0].1, b"2");
    assert_eq!(again.attempt, 2);
    again.ack().await.unwrap();
    // Publishing works on the new connection, and new messages are pushed.
    let mut k = msg("n", "3");
    k.key = Some(b"three".to_vec());
    c.publish("r", k).await.unwrap();
    assert_eq!(next(&mut sub).await.fields[0].1, b"3");
    assert!(matches!(c.state(), cortex::client::State::Connected(n) if n >= 2));
}

#[tokio::test(flavor = "current_thread")]
async fn request_reply_parts_timeout_and_no_responders() {
    let s = Server::start(&[]);
    let asker = client(&s, "harold").await;
    let e = asker
        .request("pink", vec![(b"q".to_vec(), b"?".to_vec())], T)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NoResponders), "{e}");
    let pink = client(&s, "pink").await;
    let mut reqs = pink.serve(4).await.unwrap();
    let server = tokio::spawn(async move {
        while let Some(Ok(r)) = reqs.next().await {
            if r.fields()[0].1 == b"ignore" {
                continue; // never answered: the requester times out
            }
            r.progress(vec![(b"status".to_vec(), b"working".to_vec())])
                .await
                .unwrap();
            let mut out = r.fields().to_vec();
            out.push((b"by".to_vec(), b"pink".to_vec()));
            r.reply(out).await.unwrap();
        }
    });
    let mut parts = asker
        .request_parts("pink", vec![(b"q".to_vec(), b"sum".to_vec())], T)
        .await
        .unwrap();
    let p1 = parts.next().await.unwrap().unwrap();
    assert_eq!(p1.kind, PartKind::Progress);
    assert_eq!(p1.fields[0].1, b"working");
    let p2 = parts.next().await.unwrap().unwrap();
    assert_eq!(p2.kind, PartKind::Final);
    assert_eq!(p2.from.as_deref(), Some("pink"));
    assert_eq!(p2.fields[1], (b"by".to_vec(), b"pink".to_vec()));
    assert!(parts.next().await.is_none());
    // Both hops are durable: the request in pink's inbox, the parts in harold's replies.
    assert_eq!(s.raw().cmd(&["XLEN", "cortex:inbox:pink"]).int(), 1);
    assert_eq!(s.raw().cmd(&["XLEN", "cortex:replies:harold"]).int(), 2);
    let e = asker
        .request(
            "pink",
            vec![(b"q".to_vec(), b"ignore".to_vec())],
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Timeout), "{e}");
    server.abort();
}

/// The last part of a reply acknowledges the request it answers in the part's own commit
/// (request and reply cost one commit each); the responder's ack that follows is answered
/// without another, and frees its window as any ack does.
#[tokio::test(flavor = "current_thread")]
async fn a_final_reply_acknowledges_its_request_in_the_same_commit() {
    let s = Server::start(&[]);
    let asker = client(&s, "harold").await;
    let pink = client(&s, "pink").await;
    let mut o = SubscribeOptions::new("cortex:inbox:pink");
    o.group = Some(b"cortex-responders".to_vec());
    o.window = 1;
    let mut inbox = pink.subscribe(o).await.unwrap();
    let ask = |q: &'static str| {
        let asker = asker.clone();
        tokio::spawn(async move {
            asker
                .request("pink", vec![(b"q".to_vec(), q.into())], T)
                .await
        })
    };
    for q in ["one", "two"] {
        let waiting = ask(q);
        let d = next(&mut inbox).await;
        assert_eq!(d.fields[0].1, q.as_bytes());
        assert_eq!(pending(&s, "cortex:inbox:pink", "cortex-responders"), 1);
        let correlation = d.header("cortex-correlation-id").unwrap().to_vec();
        pink.respond(
            &correlation,
            PartKind::Progress,
            vec![(b"p".to_vec(), b"1".to_vec())],
        )
        .await
        .unwrap();
        // A progress part leaves the request pending; the final one acknowledges it.
        assert_eq!(pending(&s, "cortex:inbox:pink", "cortex-responders"), 1);
        pink.respond(
            &correlation,
            PartKind::Final,
            vec![(b"a".to_vec(), q.into())],
        )
        .await
        .unwrap();
        assert_eq!(pending(&s, "cortex:inbox:pink", "cortex-responders"), 0);
        let reply = waiting.await.unwrap().unwrap();
        assert_eq!(reply.fields[0].1, q.as_bytes());
        // The window (1) is freed by the responder's own ack, so "two" is delivered.
        d.ack().await.unwrap();
    }
    assert_eq!(pending(&s, "cortex:inbox:pink", "cortex-responders"), 0);
    assert_eq!(s.raw().cmd(&["XLEN", "cortex:inbox:pink"]).int(), 2);
}

#[test]
fn cli_reply_and_req_round_trip() {
    let s = Server::start(&[]);
    let bin = env!("CARGO_BIN_EXE_cortex");
    let common = |c: &mut std::process::Command| {
        c.arg("--server")
            .arg(s.quic.to_string())
            .arg("--data-dir")
            .arg(s.dir.path());
    };
    let mut reply = std::process::Command::new(bin);
    reply.args(["reply", "echo-bot", "--count", "1"]);
    common(&mut reply);
    reply.args(["--", "sh", "-c", "cat; echo ' ok'"]);
    let mut responder = reply
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cortex reply");
    // `cortex reply` says so once its subscription to the inbox is confirmed by the broker.
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(responder.stderr.take().unwrap()));
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("serving requests for echo-bot"));
    assert!(ready, "cortex reply never started serving");
    let mut req = std::process::Command::new(bin);
    req.args(["req", "echo-bot", "--task-id", "echo-1", "q=hello"]);
    common(&mut req);
    let out = req.output().expect("cortex req");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["kind"], "final");
    let output = v["fields"]["output"].as_str().unwrap();
    assert!(
        output.contains("\"q\":\"hello\"") && output.ends_with(" ok\n"),
        "{output}"
    );
    assert!(responder.wait().unwrap().success());
    // The request is a task, named on the command line.
    let mut status = std::process::Command::new(bin);
    status.args(["task", "status", "echo-1"]);
    common(&mut status);
    let out = status.output().expect("cortex task status");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"completed\""), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_are_clear_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[tokens]\nharold = \"h\"\npink = \"p\"\n[agents.harold]\npublish = [\"tasks:*\"]\nconsume = [\"tasks:*\"]\n",
    )
    .unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let e = Client::connect(opts(&s, "harold", "wrong"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::AuthFailed), "{e}");
    let h = Client::connect(opts(&s, "harold", "h")).await.unwrap();
    h.publish("tasks:a", msg("f", "v")).await.unwrap();
    let e = h.publish("secrets", msg("f", "v")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NoPermission));
    assert!(
        e.to_string()
            .contains("agent 'harold' may not publish to stream 'secrets'"),
        "{e}"
    );
    // Pink has only its inbox.
    let p = Client::connect(opts(&s, "pink", "p")).await.unwrap();
    let e = p
        .subscribe(SubscribeOptions::new("tasks:a"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(ErrorCode::NoPermission));
    p.publish("cortex:inbox:pink", msg("f", "v")).await.unwrap();
    // The same rule on the RESP port.
    let mut r = s.raw();
    assert_eq!(r.cmd(&["AUTH", "pink", "p"]), V::Simple("OK".into()));
    assert_eq!(
        r.cmd(&["XADD", "tasks:a", "*", "f", "v"]),
        V::Err("NOPERM agent 'pink' may not publish to stream 'tasks:a'".into())
    );
    assert_eq!(r.cmd(&["XLEN", "cortex:inbox:pink"]), V::Int(1));
    // Raw frames: before Hello, and oversized.
    let conn = raw_connection(&s).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let f = Frame::Publish {
        stream: b"tasks:a".to_vec(),
        messages: vec![msg("f", "v")],
    };
    send.write_all(&wire::encode(&f)).await.unwrap();
    let _ = send.finish();
    match cortex::wire::io::read_frame(&mut recv, &wire::Limits::default()).await {
        Ok(Some(Frame::Error { code, .. })) => assert_eq!(code, ErrorCode::NotAuthenticated),
        other => panic!("{other:?}"),
    }
    let (mut send, mut recv) = h.raw_stream().await.unwrap();
    send.write_all(&(64u32 << 20).to_le_bytes()).await.unwrap();
    match cortex::wire::io::read_frame(&mut recv, &wire::Limits::default()).await {
        Ok(Some(Frame::Error { code, message })) => {
            assert_eq!(code, ErrorCode::TooLarge, "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Still serving, on the same connection and to others.
    h.publish("tasks:a", msg("f", "again")).await.unwrap();
    assert_eq!(s.raw().cmd(&["PING"]), V::Simple("PONG".into()));
}

pub async fn raw_connection(s: &Server) -> quinn::Connection {
    let tls = cortex::tls::client_config(&Trust::local(s.dir.path())).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
    ep.connect(s.quic, "localhost").unwrap().await.unwrap()
}

/// `cortex bench disk` measures the floor (100-byte append + fdatasync) and leaves no file
/// behind; `cortex bench publish` reports its latencies over that floor, measured first in
/// the same run.
#[test]
fn bench_measures_the_disk_floor_and_reports_ratios_to_it() {
    let s = Server::start(&[]);
    let bench = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
            .arg("bench")
            .args(args)
            .arg("--json")
            .arg("--server")
            .arg(s.quic.to_string())
            .arg("--data-dir")
            .arg(s.dir.path())
            .output()
            .expect("cortex bench");
        assert!(
            out.status.success(),
            "cortex bench {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let n = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k}: {v}"));
    let d = bench(&["disk", "--duration", "1"]);
    assert_eq!(d["workload"], "disk");
    assert!(n(&d, "count") > 0.0, "{d}");
    assert!(
        n(&d, "p50_us") > 0.0 && n(&d, "p99_us") >= n(&d, "p50_us"),
        "{d}"
    );
    let scratch: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".cortex-bench-disk")
        })
        .collect();
    assert!(scratch.is_empty(), "left behind: {scratch:?}");
    let p = bench(&["publish", "--duration", "1", "--floor-seconds", "1"]);
    assert!(n(&p, "count") > 0.0, "{p}");
    let over = n(&p, "p99_over_disk");
    let want = n(&p, "p99_us") / n(&p, "disk_p99_us");
    assert!((over - want).abs() < 1e-9, "{p}");
}

/// `cortex reply` stopped with SIGTERM closes its connection and exits 0: the broker lets go
/// of its subscription at once, so the next request hears "no responders" instead of being
/// handed to a process that is gone.
#[test]
fn cortex_reply_stopped_by_sigterm_leaves_nothing_serving() {
    let s = Server::start(&[]);
    let mut reply = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
        .args([
            "reply",
            "pink",
            "--server",
            &s.quic.to_string(),
            "--data-dir",
        ])
        .arg(s.dir.path())
        .args(["--", "cat"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cortex reply");
    let path = "/api/v1/responders?agent=pink&served=true&timeout_ms=20000";
    let (code, body) = crate::http::http(s.http, "GET", path, None, None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"here\":1"), "{body}");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &reply.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(ok.success());
    // Its exit, waited for on a thread so the test stays bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(reply.wait());
    });
    let status = rx
        .recv_timeout(IO_BOUND)
        .expect("cortex reply stopped after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    let path = "/api/v1/responders?agent=pink&served=false&timeout_ms=20000";
    let (code, body) = crate::http::http(s.http, "GET", path, None, None);
    assert_eq!(code, 200, "{body}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
        .args(["req", "pink", "--server", &s.quic.to_string(), "--data-dir"])
        .arg(s.dir.path())
        .arg("q=1")
        .output()
        .expect("cortex req");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A batch with one message over the store's entry limit: that message alone is refused,
/// every other one is stored and its ID returned, so a client retries only what failed.
#[tokio::test(flavor = "current_thread")]
async fn a_batch_answers_one_result_per_message() {
    let s = Server::start(&[]);
    let c = client(&s, "harold").await;
    let big = Message {
        fields: vec![(b"body".to_vec(), vec![b'x'; (1 << 20) + 10])],
        lane: 2,
        ..Message::default()
    };
    let batch = vec![msg("n", "1"), big, msg("n", "3"), msg("n", "4")];
    let results = c.publish_batch("mixed", batch).await.expect("publish");
    assert_eq!(results.len(), 4);
    let ids: Vec<_> = [0, 2, 3]
        .iter()
        .map(|&i| results[i].as_ref().expect("stored").id)
        .collect();
    match &results[1] {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::TooLarge), "{e}"),
        Ok(p) => panic!("an entry over 1 MiB was stored as {}", p.id),
    }
    // Exactly the three are in the stream, with the IDs the answer gave, in order.
    let entries = c
        .range(
            "mixed",
            wire::Id { ms: 0, seq: 0 },
            wire::Id {
                ms: u64::MAX,
                seq: u64::MAX,
            },
            10,
            false,
        )
        .await
        .expect("range");
    let got: Vec<_> = entries.iter().map(|e| e.id).collect();
    assert_eq!(got, ids);
    let values: Vec<_> = entries.iter().map(|e| e.fields[0].1.clone()).collect();
    assert_eq!(values, vec![b"1".to_vec(), b"3".to_vec(), b"4".to_vec()]);
}

/// Presence: the agents connected, over which front, with which client, what each serves
/// and when each was last heard from; an agent leaves the list when its connection ends.
#[tokio::test(flavor = "current_thread")]
async fn agents_are_listed_with_what_they_serve_until_they_leave() {
    let s = Server::start(&[]);
    let get = |path: &str| {
        let (status, text) = crate::http::http(s.http, "GET", path, None, None);
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    let pink = client(&s, "pink").await;
    let _requests = pink.serve(4).await.expect("serve");
    let harold = client(&s, "harold").await;
    // The server reports when pink's inbox is served.
    get("/api/v1/responders?agent=pink&timeout_ms=20000");
    harold
        .publish("tasks", msg("a", "b"))
        .await
        .expect("publish");

    let all = get("/api/v1/agents");
    let agents = all["agents"].as_array().unwrap();
    let names: Vec<&str> = agents
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["harold", "pink"], "{all}");
    let session = |a: &serde_json::Value| a["sessions"][0].clone();
    let (h, p) = (session(&agents[0]), session(&agents[1]));
    for x in [&h, &p] {
        assert_eq!(x["front"], "quic", "{all}");
        assert!(
            x["client"].as_str().unwrap().starts_with("cortex-rust "),
            "{all}"
        );
        assert!(
            x["last_heard_ms"].as_u64() >= x["connected_ms"].as_u64(),
            "{all}"
        );
    }
    assert_eq!(
        p["serves"],
        serde_json::json!([{"stream": "cortex:inbox:pink", "group": "cortex-responders"}]),
        "{all}"
    );
    assert_eq!(h["serves"], serde_json::json!([]), "{all}");
    // The same answer over the QUIC admin call, RESP's CX.AGENTS and `cortex agents` (whose
    // own connection is one more agent, "cli").
    let cortex::client::AdminAnswer::Agents(quic) = harold
        .admin(cortex::client::AdminRequest::Agents)
        .await
        .expect("admin agents")
    else {
        panic!("an Agents answer")
    };
    let names: Vec<&str> = quic.iter().map(|a| a.agent.as_str()).collect();
    assert_eq!(names, ["harold", "pink"]);
    assert_eq!(
        quic[1].sessions[0].serves,
        [(b"cortex:inbox:pink".to_vec(), b"cortex-responders".to_vec())]
    );
    // A RESP connection is a session too: this one (the anonymous agent of a broker
    // without tokens) is listed under the library it names, reading with its group.
    let mut raw = s.raw();
    raw.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]);
    raw.cmd(&["CLIENT", "SETINFO", "LIB-VER", "5.2.1"]);
    raw.cmd(&["XGROUP", "CREATE", "tasks", "reviewers", "0"]);
    raw.cmd(&[
        "XREADGROUP",
        "GROUP",
        "reviewers",
        "r1",
        "COUNT",
        "1",
        "STREAMS",
        "tasks",
        ">",
    ]);
    let resp = raw.cmd(&["CX.AGENTS"]);
    let listed: Vec<&V> = resp.arr().iter().collect();
    assert_eq!(listed.len(), 3, "{resp:?}");
    let text = format!("{resp:?}");
    assert!(text.contains("cortex:inbox:pink"), "{text}");
    let all = get("/api/v1/agents");
    let anon = &all["agents"][0];
    assert_eq!(anon["agent"], "", "{all}");
    assert_eq!(anon["sessions"][0]["front"], "resp", "{all}");
    assert_eq!(anon["sessions"][0]["client"], "redis-py/5.2.1", "{all}");
    assert_eq!(anon["sessions"][0]["node"], 0, "{all}");
    assert_eq!(
        anon["sessions"][0]["serves"],
        serde_json::json!([{"stream": "tasks", "group": "reviewers"}]),
        "{all}"
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
        .arg("agents")
        .arg("--server")
        .arg(s.quic.to_string())
        .arg("--data-dir")
        .arg(s.dir.path())
        .output()
        .await
        .expect("cortex agents");
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines.iter().map(|a| a["agent"].as_str().unwrap()).collect();
    assert_eq!(names, ["", "cli", "harold", "pink"], "{lines:?}");
    assert_eq!(
        lines[3]["sessions"][0]["serves"][0]["group"],
        "cortex-responders"
    );

    // harold and the RESP connection leave: once the server counts one QUIC connection
    // and no RESP one, the list has only pink.
    harold.close().await;
    drop(raw);
    get("/api/v1/agents?agent=harold&sessions=0&timeout_ms=20000");
    get("/api/v1/connections?protocol=quic&at_most=1&timeout_ms=20000");
    get("/api/v1/connections?protocol=resp&at_most=0&timeout_ms=20000");
    let after = get("/api/v1/agents");
    let names: Vec<&str> = after["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pink"], "{after}");
}
