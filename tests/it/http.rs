//! The HTTP front against the real binary: the JSON API (publish, group read, ack, nack,
//! DLQ), bearer tokens, `/metrics` (linted by promtool when it is installed), the live
//! tail, and `cortex backup` / `cortex verify`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// One HTTP/1.1 request on its own connection; returns the status and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    // Longer than any wait a test asks the server for (`timeout_ms` of cluster queries).
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, rest) = out.split_once("\r\n\r\n").expect("response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, rest.to_string())
}

fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, text) = http(addr, method, path, None, body.as_ref());
    assert!(status < 300, "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// The value of one sample line of a Prometheus exposition.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn publish_consume_ack_nack_over_http_and_the_same_numbers_in_metrics() {
    let s = Server::start(&[]);
    let h = s.http;
    call(
        h,
        "POST",
        "/api/v1/streams/jobs/groups",
        Some(json!({"group": "g", "start": "0", "policy": {"max_attempts": 1}})),
    );
    let one = call(
        h,
        "POST",
        "/api/v1/streams/jobs/messages",
        Some(json!({"fields": {"task": "a"}, "priority": "high", "headers": {"trace": "t1"}})),
    );
    assert_eq!(one["duplicate"], false);
    let batch = call(
        h,
        "POST",
        "/api/v1/streams/jobs/messages",
        Some(
            json!({"messages": [{"fields": {"task": "b"}}, {"fields": {"task": "c"}, "key": "k1"}]}),
        ),
    );
    assert_eq!(batch["published"].as_array().unwrap().len(), 2);
    // The idempotency key makes a repeat a duplicate with the first ID.
    let again = call(
        h,
        "POST",
        "/api/v1/streams/jobs/messages",
        Some(json!({"fields": {"task": "c"}, "key": "k1"})),
    );
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], batch["published"][1]["id"]);

    let got = call(
        h,
        "POST",
        "/api/v1/streams/jobs/groups/g/read",
        Some(json!({"consumer": "w", "count": 10})),
    );
    let msgs = got["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    // The high lane first.
    assert_eq!(msgs[0]["fields"]["task"], "a");
    assert_eq!(msgs[0]["lane"], "high");
    assert_eq!(msgs[0]["headers"]["trace"], "t1");
    let id = |i: usize| msgs[i]["id"].as_str().unwrap().to_string();
    // The writer holds the three pending entries in memory for the acks.
    let (_, metrics) = http(h, "GET", "/metrics", None, None);
    assert_eq!(sample(&metrics, "cortex_pending_index_entries"), 3.0);
    assert!(sample(&metrics, "cortex_pending_index_bytes") > 0.0);
    assert_eq!(sample(&metrics, "cortex_pending_index_groups_on_disk"), 0.0);
    let acked = call(
        h,
        "POST",
        "/api/v1/streams/jobs/groups/g/ack",
        Some(json!({"ids": [id(0), id(1)]})),
    );
    assert_eq!(acked["acked"], 2);
    let nacked = call(
        h,
        "POST",
        "/api/v1/streams/jobs/groups/g/nack",
        Some(json!({"ids": [id(2)], "error": "bad input"})),
    );
    assert_eq!(nacked["nacked"], 1);
    let dlq = call(h, "GET", "/api/v1/dlq?stream=jobs", None);
    let dead = &dlq["dead_letters"][0];
    assert_eq!(dead["origin_id"], id(2).as_str());
    assert_eq!(dead["last_error"], "bad input");
    assert_eq!(dead["reason"], "max_attempts");
    assert_eq!(dead["fields"], json!({"task": "c"}));

    // Browsing consumes nothing: the group's pending list is unchanged by it.
    let browse = call(
        h,
        "GET",
        "/api/v1/streams/jobs/messages?rev=true&count=2",
        None,
    );
    assert_eq!(browse["messages"][0]["id"], id(2).as_str());
    let overview = call(h, "GET", "/api/v1/overview", None);
    let jobs = overview["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "jobs")
        .unwrap()
        .clone();
    let g = &jobs["groups"][0];
    assert_eq!(
        (
            g["delivered"].as_u64(),
            g["acked"].as_u64(),
            g["nacked"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(g["dead_lettered"], 1);
    assert_eq!(g["pending"], 0);

    let (status, metrics) = http(h, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let l = r#"{stream="jobs",group="g"}"#;
    assert_eq!(
        sample(&metrics, r#"cortex_stream_published_total{stream="jobs"}"#),
        3.0
    );
    assert_eq!(
        sample(&metrics, &format!("cortex_group_delivered_total{l}")),
        3.0
    );
    assert_eq!(
        sample(&metrics, &format!("cortex_group_acked_total{l}")),
        2.0
    );
    assert_eq!(
        sample(&metrics, &format!("cortex_group_nacked_total{l}")),
        1.0
    );
    assert_eq!(
        sample(&metrics, &format!("cortex_group_dead_lettered_total{l}")),
        1.0
    );
    assert_eq!(
        sample(&metrics, r#"cortex_dlq_entries{dlq="cortex:dlq"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"cortex_dead_letters_total{reason="max_attempts"}"#
        ),
        1.0
    );
    assert_eq!(sample(&metrics, "cortex_pending_index_entries"), 0.0);
    assert!(sample(&metrics, "cortex_publish_durable_seconds_count") >= 3.0);
    assert_eq!(
        sample(&metrics, "cortex_delivery_latency_seconds_count"),
        3.0
    );
    promtool(&metrics);

    // Redrive puts it back on its stream.
    let r = call(
        h,
        "POST",
        "/api/v1/dlq/redrive",
        Some(json!({"stream": "jobs"})),
    );
    assert_eq!(r["redriven"], 1);
    let dlq = call(h, "GET", "/api/v1/dlq", None);
    assert_eq!(dlq["dead_letters"], json!([]));
    let tl = call(h, "GET", "/api/v1/timeline?count=1&streams=jobs", None);
    assert_eq!(tl["messages"][0]["fields"]["task"], "c");

    // Bad input: a clear error, the server carries on.
    let (status, text) = http(
        h,
        "POST",
        "/api/v1/streams/jobs/messages",
        None,
        Some(&json!({"fields": {"a": "b"}, "priority": "urgent"})),
    );
    assert_eq!(status, 400);
    assert!(text.contains("unknown priority 'urgent'"), "{text}");
    let (status, _) = http(
        h,
        "GET",
        "/api/v1/streams/nope/groups/g/pending",
        None,
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(http(h, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(h, "GET", "/readyz", None, None).0, 200);
    let (status, page) = http(h, "GET", "/", None, None);
    assert_eq!(status, 200);
    assert!(page.contains("Cortex Bus"), "{page}");
}

/// `promtool check metrics` on the exposition, when promtool is installed (`scripts/test`
/// installs it and sets `CORTEX_TEST_PROMTOOL=1`, which makes its absence a failure).
fn promtool(metrics: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("CORTEX_TEST_PROMTOOL").is_none(),
                "promtool: {e}"
            );
            eprintln!("promtool not installed; the metrics lint was skipped");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bearer_tokens_carry_the_same_permissions_as_other_fronts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cortex.toml");
    std::fs::write(
        &cfg,
        "[tokens]\nops = \"o-secret\"\nbot = \"b-secret\"\n\
         [agents.ops]\nadmin = true\n\
         [agents.bot]\npublish = [\"jobs\"]\nconsume = [\"jobs\"]\n",
    )
    .unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let h = s.http;
    let body = json!({"fields": {"a": "b"}});
    let (status, text) = http(
        h,
        "POST",
        "/api/v1/streams/jobs/messages",
        None,
        Some(&body),
    );
    assert_eq!(status, 401, "{text}");
    let (status, _) = http(h, "GET", "/metrics", Some("nope"), None);
    assert_eq!(status, 401);
    let (status, text) = http(
        h,
        "POST",
        "/api/v1/streams/jobs/messages",
        Some("b-secret"),
        Some(&body),
    );
    assert_eq!(status, 201, "{text}");
    let (status, text) = http(
        h,
        "POST",
        "/api/v1/streams/other/messages",
        Some("b-secret"),
        Some(&body),
    );
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("agent 'bot' may not publish to stream 'other'"),
        "{text}"
    );
    // The producer is the authenticated agent.
    let (_, text) = http(
        h,
        "GET",
        "/api/v1/streams/jobs/messages",
        Some("b-secret"),
        None,
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["messages"][0]["producer"], "bot");
    // Redrive and purge are admin's.
    let (status, _) = http(
        h,
        "POST",
        "/api/v1/dlq/purge",
        Some("b-secret"),
        Some(&json!({})),
    );
    assert_eq!(status, 403);
    let (status, text) = http(
        h,
        "POST",
        "/api/v1/dlq/purge",
        Some("o-secret"),
        Some(&json!({})),
    );
    assert_eq!(status, 200, "{text}");
    // The overview shows an agent only the streams it may read.
    let (_, text) = http(
        h,
        "POST",
        "/api/v1/streams/secret/messages",
        Some("o-secret"),
        Some(&body),
    );
    assert!(text.contains("\"id\""), "{text}");
    let (_, text) = http(h, "GET", "/api/v1/overview", Some("b-secret"), None);
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(http(h, "GET", "/metrics", Some("b-secret"), None).0, 200);
}

#[test]
fn live_tail_streams_new_entries_as_server_sent_events() {
    let s = Server::start(&[]);
    call(
        s.http,
        "POST",
        "/api/v1/streams/feed/messages",
        Some(json!({"fields": {"n": "0"}})),
    );
    let mut sock = TcpStream::connect(s.http).unwrap();
    sock.set_read_timeout(Some(crate::support::IO_BOUND))
        .unwrap();
    write!(
        sock,
        "GET /api/v1/tail?streams=feed HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(sock).lines();
    // The response head arrives once the tail is registered; entries after it are sent.
    let head = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("text/event-stream"));
    assert!(head);
    // The tail starts after the streams' last IDs as of the request, so an entry published
    // once the head arrived is sent (and the one published before is not).
    assert_eq!(
        sample(
            &http(s.http, "GET", "/metrics", None, None).1,
            r#"cortex_connections{protocol="http_sse"}"#
        ),
        1.0
    );
    let p = call(
        s.http,
        "POST",
        "/api/v1/streams/feed/messages",
        Some(json!({"fields": {"n": "1"}})),
    );
    let data = lines
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .expect("an event");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["id"], p["id"]);
    assert_eq!(v["fields"]["n"], "1");
}

#[test]
fn backup_of_a_running_broker_opens_and_verifies() {
    let s = Server::start(&[]);
    for i in 0..20 {
        call(
            s.http,
            "POST",
            "/api/v1/streams/keep/messages",
            Some(json!({"fields": {"i": i.to_string()}})),
        );
    }
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("copy");
    let bin = env!("CARGO_BIN_EXE_cortex");
    let out = std::process::Command::new(bin)
        .arg("backup")
        .arg(&target)
        .arg("--server")
        .arg(s.quic.to_string())
        .arg("--data-dir")
        .arg(s.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["keys"].as_u64().unwrap() >= 20, "{v}");
    let out = std::process::Command::new(bin)
        .arg("verify")
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"entries\":20"), "{text}");
    assert!(text.contains("\"damaged\":0"), "{text}");
    // The copy serves: a broker on it has the stream.
    let copy = Server::start_in(&target, &[]);
    let v = call(copy.http, "GET", "/api/v1/streams/keep", None);
    assert_eq!(v["length"], 20);
    // A second backup into the same place is refused with a clear error.
    let out = std::process::Command::new(bin)
        .arg("backup")
        .arg(&target)
        .arg("--server")
        .arg(s.quic.to_string())
        .arg("--data-dir")
        .arg(s.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{out:?}"
    );
}

/// A batch with one message over the store's entry limit answers 207 with one result per
/// message: the refused one's error, the others' IDs, and exactly those others stored.
#[test]
fn a_batch_answers_one_result_per_message_over_http() {
    let s = Server::start(&[]);
    let big = "x".repeat((1 << 20) + 10);
    let (status, text) = http(
        s.http,
        "POST",
        "/api/v1/streams/mixed/messages",
        None,
        Some(&json!({"messages": [
            {"fields": {"n": "1"}},
            {"fields": {"body": big}},
            {"fields": {"n": "3"}},
            {"fields": {"n": "4"}},
        ]})),
    );
    assert_eq!(status, 207, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let results = body["published"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{text}");
    assert_eq!(body["refused"], 1);
    assert_eq!(results[1]["error"]["code"], "too_large", "{text}");
    assert!(results[1].get("id").is_none(), "{text}");
    let ids: Vec<&str> = [0, 2, 3]
        .iter()
        .map(|&i| results[i]["id"].as_str().expect("an id"))
        .collect();
    let read = call(s.http, "GET", "/api/v1/streams/mixed/messages", None);
    let stored: Vec<&str> = read["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(stored, ids, "{read}");
    // A lone message's refusal is still the answer's status.
    let (status, text) = http(
        s.http,
        "POST",
        "/api/v1/streams/mixed/messages",
        None,
        Some(&json!({"fields": {"body": "x".repeat((1 << 20) + 10)}})),
    );
    assert_eq!(status, 413, "{text}");
}
