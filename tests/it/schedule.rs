//! Scheduled delivery on the real binary: `CX.PUBLISH ... DELAY|AT`, the QUIC client's
//! `delay`/`deliver_at`, HTTP's `delay_ms`/`deliver_at`; stored at once, handed to groups at
//! their time in lane order, once, across a crash. Time moves with `CX.CLOCK ADVANCE` on a
//! `--test-clock` server: no test sleeps for a schedule.

use cortex::client::SubscribeOptions;
use cortex::wire;
use serde_json::json;

use crate::cx::values;
use crate::quic::{client, msg, next};
use crate::support::*;

fn read(r: &mut Raw, stream: &str) -> Vec<String> {
    values(&r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "pink",
        "COUNT",
        "10",
        "STREAMS",
        stream,
        ">",
    ]))
}

#[test]
fn resp_delay_and_at_hand_out_at_their_time_in_lane_order() {
    let s = Server::start(&["--test-clock"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"]);
    let now: u64 = r.cmd(&["CX.CLOCK"]).int() as u64;
    let at = (now + 60_000).to_string();
    r.cmd(&[
        "CX.PUBLISH",
        "q",
        "PRIORITY",
        "low",
        "AT",
        &at,
        "m",
        "low-later",
    ]);
    r.cmd(&[
        "CX.PUBLISH",
        "q",
        "PRIORITY",
        "critical",
        "DELAY",
        "60000",
        "m",
        "crit-later",
    ]);
    r.cmd(&["XADD", "q", "*", "m", "now"]);
    // Range reads show everything at once; the scheduled ones carry no surprise fields.
    assert_eq!(r.cmd(&["XLEN", "q"]).int(), 3);
    // The group gets what is due and sets the rest aside.
    assert_eq!(read(&mut r, "q"), vec!["now"]);
    r.cmd(&["CX.CLOCK", "ADVANCE", "30000"]);
    assert!(read(&mut r, "q").is_empty());
    r.cmd(&["CX.CLOCK", "ADVANCE", "31000"]);
    // Both are due now: the critical one first, then the low one, each once.
    assert_eq!(read(&mut r, "q"), vec!["crit-later", "low-later"]);
    assert!(read(&mut r, "q").is_empty());
    let p = r.cmd(&["XPENDING", "q", "g"]);
    assert_eq!(p.arr()[0].int(), 3);

    // Bad input is refused and names the option or the header at fault.
    let e = r.cmd(&["CX.PUBLISH", "q", "DELAY", "soon", "m", "x"]);
    assert!(matches!(&e, V::Err(t) if t.contains("DELAY")), "{e:?}");
    let e = r.cmd(&["CX.PUBLISH", "q", "AT", "-1", "m", "x"]);
    assert!(matches!(&e, V::Err(t) if t.contains("AT")), "{e:?}");
    let e = r.cmd(&["CX.PUBLISH", "q", "DELAY", "99999999999999", "m", "x"]);
    assert!(
        matches!(&e, V::Err(t) if t.contains("cortex-delay-ms") && t.contains("ahead")),
        "{e:?}"
    );
    let e = r.cmd(&[
        "CX.PUBLISH",
        "q",
        "HEADER",
        "cortex-deliver-at-ms",
        "tomorrow",
        "m",
        "x",
    ]);
    assert!(
        matches!(&e, V::Err(t) if t.contains("cortex-deliver-at-ms")),
        "{e:?}"
    );
    assert_eq!(r.cmd(&["XLEN", "q"]).int(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_push_subscriber_is_handed_a_delayed_message_when_its_time_comes() {
    let s = Server::start(&["--test-clock"]);
    let c = client(&s, "pink").await;
    let mut sub = c.subscribe(SubscribeOptions::new("jobs")).await.unwrap();
    let later = c
        .publish("jobs", msg("job", "later").delay(120_000))
        .await
        .unwrap();
    let now = c.publish("jobs", msg("job", "now")).await.unwrap();
    // The range shows the scheduled one with its time.
    let (first, last) = (
        wire::Id { ms: 0, seq: 0 },
        wire::Id {
            ms: u64::MAX,
            seq: u64::MAX,
        },
    );
    let stored = c.range("jobs", first, last, 10, false).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored[0]
        .headers
        .iter()
        .any(|(k, _)| k == wire::names::DELIVER_AT.as_bytes()));
    let d = next(&mut sub).await;
    assert_eq!(d.id, now.id);
    d.ack().await.unwrap();
    // The timer wakes the subscription once the broker's clock passes the time.
    s.raw().cmd(&["CX.CLOCK", "ADVANCE", "120001"]);
    let d = next(&mut sub).await;
    assert_eq!((d.id, d.attempt), (later.id, 1));
    assert_eq!(d.fields[0].1, b"later");
    d.ack().await.unwrap();

    // HTTP: delay_ms and deliver_at, and a malformed time refused by name.
    let post = |body: serde_json::Value| {
        crate::http::http(
            s.http,
            "POST",
            "/api/v1/streams/jobs/messages",
            None,
            Some(&body),
        )
    };
    for (bad, field) in [
        (
            json!({"fields": {"job": "x"}, "deliver_at": "tomorrow at nine"}),
            "deliver_at",
        ),
        (
            json!({"fields": {"job": "x"}, "delay_ms": "5s"}),
            "delay_ms",
        ),
    ] {
        let (code, body) = post(bad);
        assert_eq!(code, 400, "{body}");
        assert!(body.contains(field), "{body}");
    }
    let (code, body) = post(json!({"fields": {"job": "via-http"}, "delay_ms": 5000}));
    assert_eq!(code, 201, "{body}");
    s.raw().cmd(&["CX.CLOCK", "ADVANCE", "5001"]);
    let d = next(&mut sub).await;
    assert_eq!(d.fields[0].1, b"via-http");
}

#[test]
fn scheduled_entries_outlive_a_crash_and_go_out_once() {
    let mut s = Server::start(&["--test-clock"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"]);
    r.cmd(&[
        "CX.PUBLISH",
        "q",
        "PRIORITY",
        "low",
        "DELAY",
        "3600000",
        "m",
        "low",
    ]);
    r.cmd(&[
        "CX.PUBLISH",
        "q",
        "PRIORITY",
        "high",
        "DELAY",
        "3600000",
        "m",
        "high",
    ]);
    // Two set aside before the crash, two never reached by the group.
    assert!(read(&mut r, "q").is_empty());
    r.cmd(&["CX.PUBLISH", "q", "DELAY", "3600000", "m", "normal"]);
    r.cmd(&[
        "CX.PUBLISH",
        "q",
        "PRIORITY",
        "critical",
        "DELAY",
        "3600000",
        "m",
        "critical",
    ]);
    drop(r);
    s.crash_and_restart();
    let mut r = s.raw();
    assert!(read(&mut r, "q").is_empty());
    r.cmd(&["CX.CLOCK", "ADVANCE", "3600001"]);
    assert_eq!(read(&mut r, "q"), vec!["critical", "high", "normal", "low"]);
    assert!(read(&mut r, "q").is_empty());
}
