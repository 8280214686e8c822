//! SIGKILL under load, on both client fronts: publishers on RESP and QUIC record every ID the
//! broker acknowledged while a consumer reads, acks, nacks and rejects (to the DLQ). The
//! server is killed after a random number of acknowledged publishes and restarted; after
//! every cycle the test checks what the broker promised. `CRASH_CYCLES` sets the cycles
//! (3 by default; `scripts/crash-long` runs 50 on a release build).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cortex::client::{Client, ClientOptions, Message, Trust};

use crate::support::*;

/// What the clients were told, across cycles.
#[derive(Default)]
struct Ledger {
    /// Acknowledged publishes: ID -> payload tag.
    published: Mutex<HashMap<String, String>>,
    /// Publishes acknowledged in this cycle (the kill comes after a random number of them),
    /// announced on `acked_now`.
    this_cycle: Mutex<usize>,
    acked_now: Condvar,
    /// Entries handed to the consumer.
    delivered: Mutex<HashSet<String>>,
    /// XACK answered 1.
    acked: Mutex<HashSet<String>>,
    /// CX.NACK ... REJECT answered 1: dead-lettered.
    rejected: Mutex<HashSet<String>>,
    /// An ack or nack sent when the server was killed: its outcome is unknown.
    unknown: Mutex<HashSet<String>>,
    stop: AtomicBool,
}

impl Ledger {
    fn count_publish(&self) {
        *self.this_cycle.lock().unwrap() += 1;
        self.acked_now.notify_all();
    }

    /// Waits until `n` publishes of this cycle were acknowledged (bounded).
    fn wait_publishes(&self, n: usize, cycle: usize) {
        let done = self.this_cycle.lock().unwrap();
        let (done, timeout) = self
            .acked_now
            .wait_timeout_while(done, Duration::from_secs(60), |d| *d < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "cycle {cycle}: only {} publishes acknowledged in 60 s",
            *done
        );
    }
}

const STREAM: &str = "jobs";

fn resp_publisher(s: &Server, ledger: Arc<Ledger>, cycle: usize) -> std::thread::JoinHandle<()> {
    let addr = s.addr;
    std::thread::spawn(move || {
        let Some(mut r) = Raw::try_connect(addr) else {
            return;
        };
        for seq in 0..1_000_000 {
            if ledger.stop.load(Ordering::Relaxed) {
                return;
            }
            let tag = format!("resp-{cycle}-{seq}");
            match r.try_cmd(&["XADD", STREAM, "*", "tag", &tag]) {
                Some(V::Bulk(id)) => {
                    ledger.published.lock().unwrap().insert(id, tag);
                    ledger.count_publish();
                }
                // Killed mid-request: the outcome is unknown, and not acknowledged.
                _ => return,
            }
        }
    })
}

fn quic_publisher(s: &Server, ledger: Arc<Ledger>, cycle: usize) -> std::thread::JoinHandle<()> {
    let opts = ClientOptions {
        server: s.quic,
        also: Vec::new(),
        server_name: "localhost".into(),
        agent: "publisher".into(),
        token: String::new(),
        trust: Trust::local(s.dir.path()),
        connect_timeout: Duration::from_secs(10),
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let Ok(c) = Client::connect(opts).await else {
                return;
            };
            for seq in 0..1_000_000 {
                if ledger.stop.load(Ordering::Relaxed) {
                    return;
                }
                let tag = format!("quic-{cycle}-{seq}");
                let m = Message {
                    fields: vec![(b"tag".to_vec(), tag.clone().into_bytes())],
                    lane: 2,
                    ..Message::default()
                };
                // A publish to a killed server never answers: the test stops waiting.
                let r = tokio::time::timeout(Duration::from_secs(3), c.publish(STREAM, m)).await;
                match r {
                    Ok(Ok(p)) => {
                        ledger
                            .published
                            .lock()
                            .unwrap()
                            .insert(p.id.to_string(), tag);
                        ledger.count_publish();
                    }
                    _ => return,
                }
            }
        });
    })
}

/// Reads new entries and answers each: most are acked, every 7th is nacked (retried after
/// the backoff), every 11th rejected (dead-lettered at once).
fn consumer(s: &Server, ledger: Arc<Ledger>) -> std::thread::JoinHandle<()> {
    let addr = s.addr;
    std::thread::spawn(move || {
        let Some(mut r) = Raw::try_connect(addr) else {
            return;
        };
        let mut n = 0u64;
        while !ledger.stop.load(Ordering::Relaxed) {
            let Some(v) = r.try_cmd(&[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "COUNT",
                "20",
                "BLOCK",
                "50",
                "STREAMS",
                STREAM,
                ">",
            ]) else {
                return;
            };
            if !matches!(v, V::Arr(_)) {
                continue;
            }
            let ids = read_ids(&v);
            ledger.delivered.lock().unwrap().extend(ids.iter().cloned());
            for id in ids {
                n += 1;
                let (cmd, set): (Vec<&str>, Option<&Mutex<HashSet<String>>>) =
                    if n.is_multiple_of(11) {
                        (
                            vec!["CX.NACK", STREAM, "g", &id, "REJECT"],
                            Some(&ledger.rejected),
                        )
                    } else if n.is_multiple_of(7) {
                        (vec!["CX.NACK", STREAM, "g", &id], None)
                    } else {
                        (vec!["XACK", STREAM, "g", &id], Some(&ledger.acked))
                    };
                match r.try_cmd(&cmd) {
                    Some(V::Int(1)) => {
                        if let Some(set) = set {
                            set.lock().unwrap().insert(id);
                        }
                    }
                    Some(_) => {}
                    None => {
                        ledger.unknown.lock().unwrap().insert(id);
                        return;
                    }
                }
            }
        }
    })
}

/// What the broker holds after a restart.
struct Seen {
    stream: Vec<(String, String)>,
    pending: HashSet<String>,
    dlq: BTreeSet<String>,
    dlq_origins: HashSet<String>,
    cursor: String,
}

fn fields_of(e: &V) -> HashMap<String, String> {
    e.arr()[1]
        .arr()
        .chunks(2)
        .map(|kv| (kv[0].s().to_string(), kv[1].s().to_string()))
        .collect()
}

fn look(r: &mut Raw) -> Seen {
    let all = r.cmd(&["XRANGE", STREAM, "-", "+"]);
    let stream = all
        .arr()
        .iter()
        .map(|e| (entry_id(e), fields_of(e)["tag"].clone()))
        .collect();
    let p = r.cmd(&["XPENDING", STREAM, "g", "-", "+", "1000000"]);
    let pending = p.arr().iter().map(|e| e.arr()[0].s().to_string()).collect();
    let d = r.cmd(&["XRANGE", "cortex:dlq", "-", "+"]);
    let dlq = d.arr().iter().map(entry_id).collect();
    let dlq_origins = d
        .arr()
        .iter()
        .map(|e| fields_of(e)["origin-id"].clone())
        .collect();
    Seen {
        stream,
        pending,
        dlq,
        dlq_origins,
        cursor: last_delivered(r, STREAM),
    }
}

/// Every promise, checked against what the broker holds; returns the entries checked.
fn check(ledger: &Ledger, seen: &Seen, before: Option<&Seen>) -> usize {
    // Every acknowledged publish is there exactly once, with its payload; IDs are in order
    // and no payload is stored twice.
    let published = ledger.published.lock().unwrap();
    let mut ids = HashMap::new();
    let mut tags = HashSet::new();
    for w in seen.stream.windows(2) {
        assert!(id_cmp(&w[0].0, &w[1].0).is_lt(), "IDs out of order: {w:?}");
    }
    for (id, tag) in &seen.stream {
        assert!(tags.insert(tag.clone()), "payload {tag} stored twice");
        ids.insert(id.clone(), tag.clone());
    }
    for (id, tag) in published.iter() {
        assert_eq!(
            ids.get(id),
            Some(tag),
            "acknowledged publish {id} ({tag}) lost"
        );
    }
    // Acks stay acked; rejected entries are in the DLQ, not pending.
    let acked = ledger.acked.lock().unwrap();
    for id in acked.iter() {
        assert!(!seen.pending.contains(id), "acked {id} is pending again");
    }
    let rejected = ledger.rejected.lock().unwrap();
    for id in rejected.iter() {
        assert!(
            seen.dlq_origins.contains(id),
            "rejected {id} is not in the DLQ"
        );
        assert!(!seen.pending.contains(id), "rejected {id} is pending again");
    }
    // Delivered, neither acked nor rejected: still pending, so it is delivered again.
    let delivered = ledger.delivered.lock().unwrap();
    let unknown = ledger.unknown.lock().unwrap();
    for id in delivered.iter() {
        if !acked.contains(id) && !rejected.contains(id) && !unknown.contains(id) {
            assert!(
                seen.pending.contains(id) || seen.dlq_origins.contains(id),
                "delivered, unacked {id} will never be delivered again"
            );
        }
        assert!(
            id_cmp(&seen.cursor, id).is_ge(),
            "the group cursor {} is behind delivered {id}",
            seen.cursor
        );
    }
    if let Some(b) = before {
        assert!(
            id_cmp(&seen.cursor, &b.cursor).is_ge(),
            "the group cursor moved back"
        );
        assert!(b.dlq.is_subset(&seen.dlq), "a DLQ entry vanished");
    }
    published.len()
}

/// A random-enough number in `lo..hi` (no RNG crate in the tests).
fn pick(lo: usize, hi: usize) -> usize {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    lo + (t ^ (t >> 7)) % (hi - lo)
}

#[test]
fn sigkill_under_load_on_resp_and_quic_loses_nothing_acknowledged() {
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut s = Server::start(&["--fsync", "always"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", STREAM, "g", "$", "MKSTREAM"]);
    r.cmd(&[
        "CX.POLICY",
        STREAM,
        "g",
        "MAXATTEMPTS",
        "3",
        "BACKOFF",
        "20",
        "ACKWAIT",
        "60000",
    ]);
    drop(r);
    let ledger = Arc::new(Ledger::default());
    let mut before: Option<Seen> = None;
    let mut checked = 0;
    for cycle in 0..cycles {
        ledger.stop.store(false, Ordering::Relaxed);
        *ledger.this_cycle.lock().unwrap() = 0;
        let workers = vec![
            resp_publisher(&s, ledger.clone(), cycle),
            resp_publisher(&s, ledger.clone(), cycle + 1_000_000),
            quic_publisher(&s, ledger.clone(), cycle),
            consumer(&s, ledger.clone()),
        ];
        // The kill comes after a random number of acknowledged publishes.
        let target = pick(50, 400);
        ledger.wait_publishes(target, cycle);
        s.kill();
        ledger.stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("client thread");
        }
        s.restart();
        let seen = look(&mut s.raw());
        checked = check(&ledger, &seen, before.as_ref());
        eprintln!(
            "cycle {cycle}: killed after {} acknowledged publishes this cycle; {checked} acknowledged entries checked, {} pending, {} dead-lettered",
            *ledger.this_cycle.lock().unwrap(),
            seen.pending.len(),
            seen.dlq.len()
        );
        before = Some(seen);
    }
    // Everything still pending is delivered again: claimed by another consumer.
    let mut r = s.raw();
    let pending = before.expect("a cycle ran").pending;
    let claimed = r.cmd(&[
        "XAUTOCLAIM",
        STREAM,
        "g",
        "c2",
        "0",
        "0-0",
        "COUNT",
        "100000",
    ]);
    let got: HashSet<String> = claimed.arr()[1].arr().iter().map(entry_id).collect();
    assert_eq!(got, pending);
    eprintln!(
        "{cycles} SIGKILL cycles, {checked} acknowledged publishes checked, {} acks, {} rejections",
        ledger.acked.lock().unwrap().len(),
        ledger.rejected.lock().unwrap().len()
    );
}

/// Stream IDs compare as (ms, seq).
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("an entry ID");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// What push subscribers were told, for the crash test below.
#[derive(Default)]
struct Pushes {
    /// ID -> the consumer it was pushed to.
    delivered: HashMap<String, String>,
    /// Acks the server answered.
    acked: HashSet<String>,
    /// An ack in progress when the server died: its outcome is unknown.
    unanswered: HashSet<String>,
}

/// SIGKILL right after publishes that waiting push subscribers were handed in the commit
/// that stored them: after the restart, every entry a subscriber was handed is pending,
/// owned by the consumer it went to, or was acked; the group's cursor is past all of
/// them; and no consumer holds more than its window (plus the one ack it had in progress).
#[test]
fn sigkill_right_after_publishes_to_waiting_push_subscribers_loses_no_delivery() {
    const WINDOW: u32 = 16;
    const PUSHED: &str = "pushed";
    let mut s = Server::start(&["--fsync", "always"]);
    let opts = |agent: &str| crate::quic::opts(&s, agent, "");
    let (subscribers, publishers) = (
        [("c1", opts("c1")), ("c2", opts("c2"))],
        [opts("publisher0"), opts("publisher1")],
    );
    let pushes = Arc::new(Mutex::new(Pushes::default()));
    let seen = Arc::new(tokio::sync::Notify::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = pick(60, 300);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for (name, o) in subscribers {
            let c = Client::connect(o).await.expect("connect");
            let mut o = cortex::client::SubscribeOptions::new(PUSHED);
            o.group = Some(b"g".to_vec());
            o.consumer = Some(name.as_bytes().to_vec());
            o.window = WINDOW;
            let mut sub = c.subscribe(o).await.expect("subscribe");
            let (pushes, seen) = (pushes.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                let _keep = c;
                while let Some(Ok(d)) = sub.next().await {
                    let id = d.id.to_string();
                    pushes
                        .lock()
                        .unwrap()
                        .delivered
                        .insert(id.clone(), name.to_string());
                    seen.notify_one();
                    pushes.lock().unwrap().unanswered.insert(id.clone());
                    match d.ack().await {
                        Ok(_) => {
                            let mut p = pushes.lock().unwrap();
                            p.unanswered.remove(&id);
                            p.acked.insert(id);
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        for o in publishers {
            let c = Client::connect(o).await.expect("connect");
            tasks.push(tokio::spawn(async move {
                for i in 0..1_000_000u64 {
                    let m = Message {
                        fields: vec![(b"n".to_vec(), i.to_string().into_bytes())],
                        lane: 2,
                        ..Message::default()
                    };
                    let r = tokio::time::timeout(Duration::from_secs(3), c.publish(PUSHED, m));
                    if !matches!(r.await, Ok(Ok(_))) {
                        return;
                    }
                }
            }));
        }
        let bound = tokio::time::Instant::now() + IO_BOUND;
        while pushes.lock().unwrap().delivered.len() < target {
            assert!(
                tokio::time::timeout_at(bound, seen.notified())
                    .await
                    .is_ok(),
                "only {} deliveries in {IO_BOUND:?}",
                pushes.lock().unwrap().delivered.len()
            );
        }
        s.kill();
        for t in tasks {
            t.abort();
        }
    });
    drop(rt);
    s.restart();
    let mut r = s.raw();
    let pending: HashMap<String, String> = r
        .cmd(&["XPENDING", PUSHED, "g", "-", "+", "100000"])
        .arr()
        .iter()
        .map(|p| (p.arr()[0].s().to_string(), p.arr()[1].s().to_string()))
        .collect();
    let cursor = id_key(&last_delivered(&mut r, PUSHED));
    let p = pushes.lock().unwrap();
    assert!(p.delivered.len() >= target);
    for (id, consumer) in &p.delivered {
        assert!(
            id_key(id) <= cursor,
            "{id} was pushed, the cursor is {cursor:?}"
        );
        match pending.get(id) {
            Some(owner) => assert_eq!(owner, consumer, "{id}: pending with another consumer"),
            None => assert!(
                p.acked.contains(id) || p.unanswered.contains(id),
                "{id} was pushed to {consumer}, is not pending and was never acked: lost"
            ),
        }
    }
    for id in &p.acked {
        assert!(!pending.contains_key(id), "{id}: acked, still pending");
    }
    for name in ["c1", "c2"] {
        let held = pending.values().filter(|c| *c == name).count();
        assert!(
            held <= WINDOW as usize + 1,
            "{name} holds {held} unacked deliveries, over its window of {WINDOW}"
        );
    }
    eprintln!(
        "killed after {} pushes ({} acked, {} pending)",
        p.delivered.len(),
        p.acked.len(),
        pending.len()
    );
}
