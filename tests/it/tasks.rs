//! Tasks on the real binary: the seed's T1/T2 cancel race over QUIC and over RESP, states
//! moved by the worker's calls, watching from a position, listing, and bad input.

use std::time::Duration;

use cortex::client::{NewTask, SubEvent, SubscribeOptions, TaskInfo};
use cortex::wire::names;

use crate::quic::client;
use crate::support::*;

const T: Duration = Duration::from_secs(30);

fn fields(v: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(b"do".to_vec(), v.as_bytes().to_vec())]
}

fn task_named(id: &str, what: &str) -> NewTask {
    NewTask {
        id: Some(id.into()),
        ..NewTask::new(fields(what))
    }
}

async fn event(sub: &mut cortex::client::Subscription) -> SubEvent {
    tokio::time::timeout(T, sub.next_event())
        .await
        .expect("an event in time")
        .expect("subscription open")
        .expect("no error")
}

/// pink's inbox, as a worker reads it (the responders' group).
async fn worker(c: &cortex::client::Client) -> cortex::client::Subscription {
    let mut o = SubscribeOptions::new(names::inbox("pink"));
    o.group = Some(names::RESPONDERS_GROUP.into());
    c.subscribe(o).await.unwrap()
}

fn states(t: &TaskInfo) -> Vec<&str> {
    t.history.iter().map(|c| c.state.as_str()).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn quic_cancel_overtakes_the_next_task_and_a_late_reply_is_kept() {
    let s = Server::start(&[]);
    let harold = client(&s, "harold").await;
    let pink = client(&s, "pink").await;
    let mut sub = worker(&pink).await;

    let t1 = harold
        .submit_task("pink", task_named("T1", "start"))
        .await
        .unwrap();
    assert_eq!(t1.history[0].state, "submitted");
    let SubEvent::Delivery(d1) = event(&mut sub).await else {
        panic!("T1 first")
    };
    assert_eq!(d1.header("cortex-task-id"), Some(&b"T1"[..]));
    assert_eq!(harold.task(b"T1").await.unwrap().state, "working");

    // "Cancel T1, do T2 instead".
    let canceled = harold.cancel_task(b"T1").await.unwrap();
    assert_eq!(canceled.state, "canceled");
    harold
        .submit_task("pink", task_named("T2", "instead"))
        .await
        .unwrap();
    match event(&mut sub).await {
        SubEvent::Canceled { task, id } => assert_eq!((task, id), (b"T1".to_vec(), d1.id)),
        SubEvent::Delivery(d) => panic!("T2 came before T1's cancel: {:?}", d.fields),
    }
    let SubEvent::Delivery(d2) = event(&mut sub).await else {
        panic!("then T2")
    };
    assert_eq!(d2.header("cortex-task-id"), Some(&b"T2"[..]));

    // pink's reply to T1 arrives after the cancel: kept, marked late; T1 stays canceled.
    let corr = d1.header(names::CORRELATION).unwrap().to_vec();
    pink.respond(
        &corr,
        cortex::client::PartKind::Final,
        fields("done anyway"),
    )
    .await
    .unwrap();
    assert_eq!(
        d1.ack().await.unwrap(),
        0,
        "T1 left the pending list at the cancel"
    );
    let t1 = harold.task(b"T1").await.unwrap();
    assert_eq!(t1.state, "canceled");
    let last = t1.history.last().unwrap();
    assert!(last.late && last.event == "part", "{last:?}");

    // T2 runs its course through the worker's calls.
    let corr2 = d2.header(names::CORRELATION).unwrap().to_vec();
    pink.respond(&corr2, cortex::client::PartKind::Progress, fields("half"))
        .await
        .unwrap();
    pink.respond(&corr2, cortex::client::PartKind::Final, fields("done"))
        .await
        .unwrap();
    let t2 = harold.task(b"T2").await.unwrap();
    assert_eq!(
        states(&t2),
        ["submitted", "working", "working", "completed"]
    );
    assert_eq!(t2.consumer.as_deref(), Some(&b"pink"[..]));

    // Canceling again, or something unknown, says which it was.
    let e = harold.cancel_task(b"T2").await.unwrap_err();
    assert!(e.to_string().contains("completed"), "{e}");
    let e = harold.cancel_task(b"nope").await.unwrap_err();
    assert_eq!(e.code(), Some(cortex::wire::ErrorCode::NotFound), "{e}");

    // Listing: pink's tasks by state.
    let (done, next) = harold
        .tasks(Some("pink"), Some("completed"), b"", 10)
        .await
        .unwrap();
    assert_eq!(
        done.iter().map(|t| t.task.as_slice()).collect::<Vec<_>>(),
        [&b"T2"[..]]
    );
    assert!(next.is_none());
}

/// A request is a task: named by its requester (or by the server), moved by the
/// responder's parts, listed with the agent's tasks, canceled by its requester (the
/// responder is told), and failed at its deadline (the responder is told to stop).
#[tokio::test(flavor = "current_thread")]
async fn a_request_is_a_task_with_a_deadline() {
    let s = Server::start(&["--test-clock"]);
    let harold = client(&s, "harold").await;
    let pink = client(&s, "pink").await;
    let mut sub = worker(&pink).await;
    // A request's call returns with its first part: each runs in its own task.
    let ask = |id: Option<&str>, timeout: Duration| {
        let headers = id
            .map(|i| vec![(b"cortex-task-id".to_vec(), i.as_bytes().to_vec())])
            .unwrap_or_default();
        let h = harold.clone();
        tokio::spawn(async move {
            h.request_with("pink", fields("ask"), headers, 1, timeout)
                .await
        })
    };
    let delivery = |e: SubEvent| match e {
        SubEvent::Delivery(d) => d,
        SubEvent::Canceled { task, .. } => panic!("a cancel of {task:?}, not a delivery"),
    };

    // R1 answered: its task moves with the parts, the reply stream gets them.
    let r1 = ask(Some("R1"), T);
    let d1 = delivery(event(&mut sub).await);
    assert_eq!(d1.header("cortex-task-id"), Some(&b"R1"[..]));
    assert_eq!(d1.header(names::CORRELATION), Some(&b"R1"[..]));
    assert_eq!(harold.task(b"R1").await.unwrap().state, "working");
    pink.respond(b"R1", cortex::client::PartKind::Progress, fields("half"))
        .await
        .unwrap();
    pink.respond(
        b"R1",
        cortex::client::PartKind::InputRequired,
        fields("which branch?"),
    )
    .await
    .unwrap();
    assert_eq!(harold.task(b"R1").await.unwrap().state, "input-required");
    pink.respond(
        b"R1",
        cortex::client::PartKind::Progress,
        fields("main, then"),
    )
    .await
    .unwrap();
    pink.respond(b"R1", cortex::client::PartKind::Final, fields("done"))
        .await
        .unwrap();
    let mut r1 = r1.await.unwrap().unwrap();
    for want in [
        cortex::client::PartKind::Progress,
        cortex::client::PartKind::InputRequired,
        cortex::client::PartKind::Progress,
        cortex::client::PartKind::Final,
    ] {
        let p = tokio::time::timeout(T, r1.next()).await.unwrap().unwrap();
        assert_eq!(p.unwrap().kind, want);
    }
    let t1 = harold.task(b"R1").await.unwrap();
    assert_eq!(
        states(&t1),
        [
            "submitted",
            "working",
            "working",
            "input-required",
            "working",
            "completed"
        ]
    );
    assert_eq!(d1.ack().await.unwrap(), 1, "its last part acked it already");
    // An ID in use is refused; a request without one gets the server's.
    let e = ask(Some("R1"), T).await.unwrap().err().unwrap();
    assert_eq!(e.code(), Some(cortex::wire::ErrorCode::Conflict), "{e}");
    let _r = ask(None, T);
    let d = delivery(event(&mut sub).await);
    let unnamed = d.header("cortex-task-id").unwrap().to_vec();
    assert_eq!(unnamed.len(), 32);
    assert_eq!(Some(unnamed.as_slice()), d.header(names::CORRELATION));
    let (open, _) = harold
        .tasks(Some("pink"), Some("working"), b"", 10)
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].task, unnamed);
    assert_eq!(open[0].submitter.as_deref(), Some(&b"harold"[..]));

    // R3 canceled by its requester: pink is told.
    let _r3 = ask(Some("R3"), T);
    let d3 = delivery(event(&mut sub).await);
    harold.cancel_task(b"R3").await.unwrap();
    match event(&mut sub).await {
        SubEvent::Canceled { task, id } => assert_eq!((task, id), (b"R3".to_vec(), d3.id)),
        SubEvent::Delivery(d) => panic!("a delivery: {:?}", d.fields),
    }

    // R2 outlives its deadline (an hour, passed by stepping the server's clock): it fails
    // with a `deadline` change and pink, still holding it, is told to stop.
    let _r2 = ask(Some("R2"), Duration::from_secs(3600));
    let d2 = delivery(event(&mut sub).await);
    assert_eq!(d2.header("cortex-task-id"), Some(&b"R2"[..]));
    let mut r = s.raw();
    r.cmd(&["CX.CLOCK", "STEP", "7200000"]);
    // The unnamed request (30 s), which pink holds unanswered too, goes the same way.
    let mut told = Vec::new();
    for _ in 0..2 {
        match event(&mut sub).await {
            SubEvent::Canceled { task, id } => told.push((task, id)),
            SubEvent::Delivery(d) => panic!("a delivery: {:?}", d.fields),
        }
    }
    told.sort();
    let mut want = vec![(b"R2".to_vec(), d2.id), (unnamed.clone(), d.id)];
    want.sort();
    assert_eq!(told, want);
    let t2 = harold.task(b"R2").await.unwrap();
    assert_eq!(t2.state, "failed");
    assert_eq!(t2.history.last().unwrap().event, "deadline");
    let t = harold.task(&unnamed).await.unwrap();
    assert_eq!(t.history.last().unwrap().event, "deadline");
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_not_yet_taken_is_never_delivered_once_canceled() {
    let s = Server::start(&[]);
    let harold = client(&s, "harold").await;
    let pink = client(&s, "pink").await;
    harold
        .submit_task("pink", task_named("T0", "never"))
        .await
        .unwrap();
    harold.cancel_task(b"T0").await.unwrap();
    harold
        .submit_task("pink", task_named("T1", "this one"))
        .await
        .unwrap();
    // pink comes online later: T0 is passed over, T1 comes.
    let mut sub = worker(&pink).await;
    let SubEvent::Delivery(d) = event(&mut sub).await else {
        panic!("a delivery")
    };
    assert_eq!(d.header("cortex-task-id"), Some(&b"T1"[..]));
    let t0 = harold.task(b"T0").await.unwrap();
    assert_eq!(states(&t0), ["submitted", "canceled"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_watcher_resumes_from_its_position_and_misses_nothing() {
    let s = Server::start(&[]);
    let harold = client(&s, "harold").await;
    let pink = client(&s, "pink").await;
    harold
        .submit_task("pink", task_named("W", "watch me"))
        .await
        .unwrap();
    let w = harold.watch_task(b"W", 0, T).await.unwrap();
    assert_eq!(states(&w), ["submitted"]);
    // A watch from the next position waits for the change, whenever it comes.
    let watcher = {
        let h = harold.clone();
        tokio::spawn(async move { h.watch_task(b"W", 1, T).await })
    };
    let mut sub = worker(&pink).await;
    let SubEvent::Delivery(d) = event(&mut sub).await else {
        panic!("a delivery")
    };
    let w = watcher.await.unwrap().unwrap();
    assert_eq!(w.history[0].seq, 1);
    assert_eq!(w.history[0].event, "delivered");
    let corr = d.header(names::CORRELATION).unwrap().to_vec();
    for kind in [
        cortex::client::PartKind::Progress,
        cortex::client::PartKind::Error,
    ] {
        pink.respond(&corr, kind, fields("x")).await.unwrap();
    }
    // Resuming after the last change seen gets exactly the ones after it.
    let w = harold.watch_task(b"W", 2, T).await.unwrap();
    assert_eq!(w.history.iter().map(|c| c.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(w.state, "failed");
    // Nothing new: the watch answers after its wait, with no changes.
    let w = harold
        .watch_task(b"W", 4, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(w.history.is_empty());
    assert_eq!(w.changes, 4);
}

fn field<'a>(v: &'a V, name: &str) -> &'a V {
    let pairs: Vec<(&V, &V)> = match v {
        V::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        V::Arr(a) => a.chunks(2).map(|p| (&p[0], &p[1])).collect(),
        other => panic!("not a task: {other:?}"),
    };
    pairs
        .into_iter()
        .find(|(k, _)| k.s() == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {v:?}"))
}

#[tokio::test(flavor = "current_thread")]
async fn resp_cancel_overtakes_the_next_task() {
    let s = Server::start(&[]);
    let pink = client(&s, "pink").await;
    let mut sub = worker(&pink).await;
    let mut r = s.raw();
    let id = r.cmd(&["CX.TASK", "SUBMIT", "pink", "ID", "T1", "do", "start"]);
    assert_eq!(id.s(), "T1");
    let SubEvent::Delivery(d1) = event(&mut sub).await else {
        panic!("T1 first")
    };
    let st = r.cmd(&["CX.TASK", "STATUS", "T1"]);
    assert_eq!(field(&st, "state").s(), "working");
    assert_eq!(field(&st, "consumer").s(), "pink");
    let c = r.cmd(&["CX.CANCEL", "T1"]);
    assert_eq!(field(&c, "state").s(), "canceled");
    // A task ID made by the server.
    let t2 = r.cmd(&[
        "CX.TASK", "SUBMIT", "pink", "PRIORITY", "high", "do", "instead",
    ]);
    assert_eq!(t2.s().len(), 32);
    match event(&mut sub).await {
        SubEvent::Canceled { task, id } => assert_eq!((task, id), (b"T1".to_vec(), d1.id)),
        SubEvent::Delivery(d) => panic!("T2 came before T1's cancel: {:?}", d.fields),
    }
    let SubEvent::Delivery(d2) = event(&mut sub).await else {
        panic!("then T2")
    };
    assert_eq!(d2.header("cortex-task-id"), Some(t2.s().as_bytes()));

    // Watch from a position: the history from there on.
    let w = r.cmd(&["CX.TASK", "WATCH", "T1", "FROM", "1"]);
    let hist = field(&w, "history").arr();
    let events: Vec<&str> = hist.iter().map(|c| field(c, "event").s()).collect();
    assert_eq!(events, ["delivered", "canceled"]);
    // Listing: pink's tasks, the next cursor empty when complete.
    let l = r.cmd(&["CX.TASK", "LIST", "AGENT", "pink"]);
    assert_eq!(l.arr()[0].s(), "");
    assert_eq!(l.arr()[1].arr().len(), 2);
    let l = r.cmd(&["CX.TASK", "LIST", "AGENT", "pink", "STATE", "canceled"]);
    assert_eq!(l.arr()[1].arr()[0].arr()[0].s(), "T1");

    // Bad input and finished tasks answer which it was.
    let e = r.cmd(&["CX.CANCEL", "T1"]);
    assert!(
        matches!(&e, V::Err(t) if t.contains("already finished: canceled")),
        "{e:?}"
    );
    let e = r.cmd(&["CX.CANCEL", "T9"]);
    assert!(
        matches!(&e, V::Err(t) if t.contains("no task 'T9'")),
        "{e:?}"
    );
    let e = r.cmd(&["CX.TASK", "SUBMIT", "pink", "ID", "T1", "do", "again"]);
    assert!(matches!(&e, V::Err(t) if t.contains("exists")), "{e:?}");
    let e = r.cmd(&["CX.TASK", "SUBMIT", "pink", "DELAY", "soon", "do", "x"]);
    assert!(
        matches!(&e, V::Err(t) if t.contains("cortex-delay-ms")),
        "{e:?}"
    );
    let e = r.cmd(&["CX.TASK", "LIST", "STATE", "sleeping"]);
    assert!(matches!(&e, V::Err(t) if t.contains("STATE")), "{e:?}");
    let long = "x".repeat(65);
    let e = r.cmd(&["CX.TASK", "SUBMIT", "pink", "ID", &long, "do", "x"]);
    assert!(matches!(&e, V::Err(t) if t.contains("task ID")), "{e:?}");
    let e = r.cmd(&["MULTI"]);
    assert_eq!(e.s(), "OK");
    r.cmd(&["CX.CANCEL", "T2"]);
    let e = r.cmd(&["EXEC"]);
    assert!(format!("{e:?}").contains("MULTI"), "{e:?}");
}

/// One HTTP call from a blocking thread: the status and the JSON body.
async fn http(
    s: &Server,
    method: &'static str,
    path: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let addr = s.http;
    tokio::task::spawn_blocking(move || {
        let (status, text) = crate::http::http(addr, method, &path, None, body.as_ref());
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        (status, v)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn http_submit_watch_cancel_list_and_bad_input() {
    use serde_json::json;
    let s = Server::start(&[]);
    let pink = client(&s, "pink").await;
    let mut sub = worker(&pink).await;
    let (st, v) = http(
        &s,
        "POST",
        "/api/v1/tasks".into(),
        Some(
            json!({"agent": "pink", "id": "H1", "fields": {"do": "refactor"}, "priority": "high"}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["task"], "H1");
    let entry = v["id"].as_str().unwrap().to_string();
    // The same ID again, a malformed time, an unknown field: each refused, naming why.
    let (st, v) = http(
        &s,
        "POST",
        "/api/v1/tasks".into(),
        Some(json!({"agent": "pink", "id": "H1", "fields": {"do": "x"}})),
    )
    .await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("conflict")));
    let (st, v) = http(
        &s,
        "POST",
        "/api/v1/tasks".into(),
        Some(json!({"agent": "pink", "fields": {"do": "x"}, "deliver_at": "tomorrow"})),
    )
    .await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("deliver_at"));
    let SubEvent::Delivery(d) = event(&mut sub).await else {
        panic!("a delivery")
    };
    assert_eq!(d.id.to_string(), entry);
    // A watch from position 1 answers with the delivery (made before or after it asks).
    let (st, w) = http(&s, "GET", "/api/v1/tasks/H1?from=1".into(), None).await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["state"], "working");
    assert_eq!(w["history"][0]["event"], "delivered");
    assert!(w["consumer"].is_string());
    let (st, c) = http(&s, "POST", "/api/v1/tasks/H1/cancel".into(), None).await;
    assert_eq!((st, c["state"].as_str()), (200, Some("canceled")), "{c}");
    assert_eq!(c["final"], true);
    match event(&mut sub).await {
        SubEvent::Canceled { task, id } => {
            assert_eq!(task, b"H1");
            assert_eq!(id.to_string(), entry);
        }
        SubEvent::Delivery(d) => panic!("a cancel, not {d:?}"),
    }
    let (st, v) = http(&s, "POST", "/api/v1/tasks/H1/cancel".into(), None).await;
    assert_eq!(st, 409);
    assert!(v["error"]["message"].as_str().unwrap().contains("canceled"));
    let (st, _) = http(&s, "POST", "/api/v1/tasks/nope/cancel".into(), None).await;
    assert_eq!(st, 404);
    let (st, l) = http(
        &s,
        "GET",
        "/api/v1/tasks?agent=pink&state=canceled".into(),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = l["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["H1"]);
    let (st, v) = http(&s, "GET", "/api/v1/tasks?state=asleep".into(), None).await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("input-required"));
    // A task that asks for it goes to the DLQ when canceled before a worker took it (here
    // it waits for its time); one with a wrong value is refused, naming the header.
    let (st, v) = http(
        &s,
        "POST",
        "/api/v1/tasks".into(),
        Some(json!({"agent": "pink", "fields": {"do": "x"}, "on_cancel": "keep"})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cortex-on-cancel"));
    let (st, v) = http(
        &s,
        "POST",
        "/api/v1/tasks".into(),
        Some(
            json!({"agent": "pink", "id": "H2", "fields": {"do": "later"},
                    "delay_ms": 3_600_000, "on_cancel": "dlq"}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let h2 = v["id"].as_str().unwrap().to_string();
    let (st, c) = http(&s, "POST", "/api/v1/tasks/H2/cancel".into(), None).await;
    assert_eq!((st, c["state"].as_str()), (200, Some("canceled")), "{c}");
    let (st, d) = http(&s, "GET", "/api/v1/dlq?reason=canceled".into(), None).await;
    assert_eq!(st, 200, "{d}");
    let dead = d["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{d}");
    assert_eq!(dead[0]["origin_id"], h2.as_str(), "{d}");
    assert_eq!(dead[0]["origin_stream"], "cortex:inbox:pink", "{d}");
}

/// `cortex task ...` against the server; its output.
fn cortex_task(s: &Server, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
        .arg("task")
        .args(args)
        .arg("--server")
        .arg(s.quic.to_string())
        .arg("--data-dir")
        .arg(s.dir.path())
        .args(["--agent", "harold"])
        .output()
        .expect("cortex task")
}

fn json_lines(o: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn cli_submit_watch_until_final_then_cancel_is_refused_and_list() {
    let s = std::sync::Arc::new(Server::start(&[]));
    let pink = client(&s, "pink").await;
    let mut sub = worker(&pink).await;
    let o = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || {
            cortex_task(&s, &["submit", "pink", "do=review", "--id", "C1"])
        })
        .await
        .unwrap()
    };
    let t = &json_lines(&o)[0];
    // Handed to the waiting worker in the submit's own commit, or not yet.
    assert_eq!(t["task"], "C1");
    assert_eq!(t["history"][0]["state"], "submitted");
    assert_eq!(t["submitter"], "harold");
    // The watch prints every change until the task is final, then exits by itself.
    let watch = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || cortex_task(&s, &["watch", "C1"]))
    };
    let SubEvent::Delivery(d) = event(&mut sub).await else {
        panic!("a delivery")
    };
    let corr = d.header(names::CORRELATION).unwrap().to_vec();
    pink.respond(&corr, cortex::client::PartKind::Final, fields("done"))
        .await
        .unwrap();
    let o = tokio::time::timeout(T, watch)
        .await
        .expect("watch ends")
        .unwrap();
    let changes: Vec<(u64, String)> = json_lines(&o)
        .iter()
        .map(|l| {
            let c = &l["change"];
            (
                c["seq"].as_u64().unwrap(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (0, "submitted".into()),
            (1, "working".into()),
            (2, "completed".into())
        ]
    );
    let s2 = s.clone();
    let (cancel, list, bad) = tokio::task::spawn_blocking(move || {
        (
            cortex_task(&s2, &["cancel", "C1"]),
            cortex_task(&s2, &["list", "--for", "pink"]),
            cortex_task(&s2, &["submit", "pink", "do=x", "--delay", "soon"]),
        )
    })
    .await
    .unwrap();
    assert!(!cancel.status.success());
    let err = String::from_utf8_lossy(&cancel.stderr);
    assert!(err.contains("completed"), "{err}");
    let listed: Vec<_> = json_lines(&list)
        .iter()
        .map(|t| t["task"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["C1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--delay"));
}

/// Presence after a client dies without goodbye: `cortex reply pink` holding a task is
/// SIGKILLed; at the QUIC idle timeout (3 s here) pink leaves the agents list and one alert
/// says it fell silent with one task in progress.
#[test]
fn an_agent_that_dies_without_goodbye_leaves_and_one_silence_alert_fires() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cortex.toml");
    std::fs::write(&config, "quic_idle_timeout_ms = 3000\n").unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()]);
    let call = |method: &str, path: &str, body: Option<serde_json::Value>| {
        let (status, text) = crate::http::http(s.http, method, path, None, body.as_ref());
        assert!(status < 300, "{method} {path}: {status} {text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };
    call(
        "POST",
        "/api/v1/tasks",
        Some(serde_json::json!({"agent": "pink", "id": "S1", "fields": {"do": "think"}})),
    );
    // Its own process group, so the kill takes its command too.
    let mut reply = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
        .args([
            "reply",
            "pink",
            "--server",
            &s.quic.to_string(),
            "--data-dir",
        ])
        .arg(s.dir.path())
        .args(["--", "sleep", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("cortex reply");
    let held = call("GET", "/api/v1/tasks/S1?from=1&timeout_ms=30000", None);
    assert_eq!(held["state"], "working", "{held}");
    let listed = call("GET", "/api/v1/agents", None);
    assert!(listed.to_string().contains("\"pink\""), "{listed}");
    let pgid = reply.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = reply.wait();
    // The first alert of this broker: waited for, not polled.
    let mut r = s.raw();
    let got = r.cmd(&["XREAD", "BLOCK", "30000", "STREAMS", "cortex:alerts", "0-0"]);
    let text = format!("{got:?}");
    assert!(text.contains("agent_silent"), "{text}");
    assert!(
        text.contains("pink silent for") && text.contains("1 task in progress"),
        "{text}"
    );
    assert!(text.contains("/#/agents/pink"), "{text}");
    let listed = call("GET", "/api/v1/agents", None);
    assert!(!listed.to_string().contains("\"pink\""), "{listed}");
    let all = r.cmd(&["XRANGE", "cortex:alerts", "-", "+"]);
    let silent = format!("{all:?}").matches("agent_silent").count();
    assert_eq!(silent, 1, "{all:?}");
}

/// An agent still connected whose heartbeats stop (its code hangs; its client library
/// keeps the connection alive): after three of the gaps it beat at, one alert says it
/// fell silent. Broker time is advanced (`--test-clock`), nothing sleeps.
#[test]
fn an_agent_connected_without_heartbeats_is_alerted_once() {
    use cortex::client::Message;
    let s = Server::start(&["--test-clock"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pink = rt.block_on(crate::quic::client(&s, "pink"));
    let beat = Message {
        fields: vec![(b"status".to_vec(), b"ok".to_vec())],
        lane: 4,
        ..Message::default()
    };
    let mut r = s.raw();
    rt.block_on(pink.publish("health", beat.clone()))
        .expect("heartbeat");
    r.cmd(&["CX.CLOCK", "ADVANCE", "10000"]);
    rt.block_on(pink.publish("health", beat))
        .expect("heartbeat");
    // Two gaps without a heartbeat are not silence yet; pink is still connected.
    r.cmd(&["CX.CLOCK", "ADVANCE", "20000"]);
    r.cmd(&["CX.CLOCK", "ADVANCE", "11000"]);
    let got = r.cmd(&["XREAD", "BLOCK", "30000", "STREAMS", "cortex:alerts", "0-0"]);
    let text = format!("{got:?}");
    assert!(text.contains("agent_silent"), "{text}");
    // Broker time moved 31 s past the last heartbeat, and real time a little (the gap
    // and the silence are measured in broker time, which real time moves too).
    assert!(text.contains("pink silent for 3"), "{text}");
    assert!(
        text.contains("s (no heartbeat while connected; it beat every 1"),
        "{text}"
    );
    assert!(text.contains(" s), 0 tasks in progress"), "{text}");
    let silent_ms = text
        .split("Bulk(\"silent_ms\"), Bulk(\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .and_then(|t| t.parse::<u64>().ok())
        .expect("silent_ms");
    assert!(silent_ms >= 31_000, "{text}");
    let all = r.cmd(&["XRANGE", "cortex:alerts", "-", "+"]);
    assert_eq!(
        format!("{all:?}").matches("agent_silent").count(),
        1,
        "{all:?}"
    );
    rt.block_on(pink.close());
}
