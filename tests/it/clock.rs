//! Steps of the system clock (simulated with `CX.CLOCK STEP` on a `--test-clock` server):
//! entry IDs stay in order, and TTL and retry backoff keep their durations across a step
//! back, and fall due across a step forward.

use crate::support::*;

const HOUR: i64 = 3_600_000;

fn ms_of(id: &str) -> u64 {
    id.split('-').next().unwrap().parse().unwrap()
}

fn read(r: &mut Raw, block_ms: Option<u64>) -> Vec<String> {
    read_from(r, "q", block_ms)
}

/// XREADGROUP of group `g` on `stream`: the values handed out.
fn read_from(r: &mut Raw, stream: &str, block_ms: Option<u64>) -> Vec<String> {
    let block = block_ms.map(|b| b.to_string());
    let mut args = vec!["XREADGROUP", "GROUP", "g", "w", "COUNT", "10"];
    if let Some(b) = &block {
        args.extend(["BLOCK", b.as_str()]);
    }
    args.extend(["STREAMS", stream, ">"]);
    match r.cmd(&args) {
        V::Nil => vec![],
        v => v.arr()[0].arr()[1]
            .arr()
            .iter()
            .map(|e| e.arr()[1].arr()[1].s().to_string())
            .collect(),
    }
}

fn clock_ahead(s: &Server) -> f64 {
    let (_, text) = crate::http::http(s.http, "GET", "/metrics", None, None);
    crate::http::sample(&text, "cortex_clock_ahead_seconds")
}

fn dead_letters(r: &mut Raw) -> Vec<(String, String)> {
    r.cmd(&["CX.DLQ", "LIST"])
        .arr()
        .iter()
        .map(|e| {
            let f = e.arr()[1].arr();
            let get = |k: &str| {
                f[f.iter().position(|x| *x == b(k)).unwrap() + 1]
                    .s()
                    .to_string()
            };
            (get("m"), get("reason"))
        })
        .collect()
}

#[test]
fn steps_of_the_system_clock_keep_id_order_ttl_and_backoff() {
    let s = Server::start(&["--test-clock"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"]);
    let policy = [
        "CX.POLICY",
        "q",
        "g",
        "MAXATTEMPTS",
        "5",
        "BACKOFF",
        "300,600000",
        "ACKWAIT",
        "NONE",
    ];
    assert_eq!(r.cmd(&policy), V::Simple("OK".into()));
    let a = r.cmd(&["XADD", "q", "*", "m", "a"]).s().to_string();
    let t0 = r.cmd(&["CX.CLOCK"]).int() as u64;

    // The system clock goes back an hour: broker time does not.
    let t1 = r.cmd(&["CX.CLOCK", "STEP", &(-HOUR).to_string()]).int() as u64;
    assert!(t1 >= t0 && t1 < t0 + 60_000, "{t0} -> {t1}");
    let b_id = r.cmd(&["XADD", "q", "*", "m", "b"]).s().to_string();
    assert_eq!(id_cmp(&a, &b_id), std::cmp::Ordering::Less, "{a} {b_id}");
    assert!(
        ms_of(&b_id) >= t1,
        "{b_id} is behind the broker's time {t1}"
    );
    // An hour, less what was absorbed since; the server reads the two clocks a moment apart,
    // so a second of room above the hour.
    let ahead = clock_ahead(&s);
    assert!(ahead > 3_500.0 && ahead <= 3_601.0, "{ahead}");
    let mut last = t1;
    for _ in 0..20 {
        let now = r.cmd(&["CX.CLOCK"]).int() as u64;
        assert!(now >= last, "broker time went back: {last} -> {now}");
        last = now;
    }

    // Backoff: a retry due in 300 ms comes in about 300 ms, not in an hour and 300 ms. The
    // blocked read returns nothing if it does not come within 10 s.
    assert_eq!(read(&mut r, None), vec!["a", "b"]);
    assert_eq!(r.cmd(&["CX.NACK", "q", "g", &a]), V::Int(1));
    assert_eq!(read(&mut r, Some(10_000)), vec!["a"]);

    // TTL: 1 s still expires in about 1 s. Two entries are delivered and nacked; their retry
    // falls due 2 s later (the server wakes the blocked read then), by which time the one
    // with a 1 s TTL has expired: it is dead-lettered, the other is handed out again.
    r.cmd(&["XGROUP", "CREATE", "ttl", "g", "$", "MKSTREAM"]);
    let policy = [
        "CX.POLICY",
        "ttl",
        "g",
        "BACKOFF",
        "2000",
        "ACKWAIT",
        "NONE",
    ];
    assert_eq!(r.cmd(&policy), V::Simple("OK".into()));
    let short = r.cmd(&["CX.PUBLISH", "ttl", "TTL", "1000", "m", "short"]);
    let long = r.cmd(&["CX.PUBLISH", "ttl", "TTL", "600000", "m", "long"]);
    assert_eq!(read_from(&mut r, "ttl", None), vec!["short", "long"]);
    assert_eq!(
        r.cmd(&["CX.NACK", "ttl", "g", short.s(), long.s()]),
        V::Int(2)
    );
    assert_eq!(read_from(&mut r, "ttl", Some(10_000)), vec!["long"]);
    assert_eq!(
        dead_letters(&mut r),
        vec![("short".to_string(), "expired".to_string())]
    );

    // The system clock jumps forward two hours (an hour past broker time): what fell due in
    // that hour is due at once.
    assert_eq!(r.cmd(&["CX.NACK", "q", "g", &a]), V::Int(1)); // next retry in 10 minutes
    r.cmd(&["CX.PUBLISH", "q", "TTL", "600000", "m", "later"]);
    let t2 = r.cmd(&["CX.CLOCK", "STEP", &(2 * HOUR).to_string()]).int() as u64;
    assert!(t2 >= t0 + 3_500_000, "{t0} -> {t2}");
    assert_eq!(read(&mut r, None), vec!["a"]);
    let dl = dead_letters(&mut r);
    assert!(
        dl.contains(&("later".to_string(), "expired".to_string())),
        "{dl:?}"
    );
    let c = r.cmd(&["XADD", "q", "*", "m", "c"]).s().to_string();
    assert!(ms_of(&c) >= t2, "{c} is behind the broker's time {t2}");
    assert_eq!(clock_ahead(&s), 0.0);
}
