//! The one broker core, seen through the RESP port: multi-stream group reads are one op,
//! EXEC is one atomic batch nothing interleaves with (not even the broker's timer),
//! concurrent CX.POLICY changes are not lost, huge ID lists and huge replies work.

use std::time::Instant;

use crate::support::*;

/// XREADGROUP of group g over streams a and b, new entries.
fn read_a_and_b(r: &mut Raw) -> V {
    r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "STREAMS",
        "a",
        "b",
        ">",
        ">",
    ])
}

#[test]
fn xreadgroup_over_streams_with_a_missing_group_delivers_nothing() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    r.cmd(&["XADD", "a", "1-1", "f", "v"]);
    r.cmd(&["XADD", "b", "1-1", "f", "v"]);
    r.cmd(&["XGROUP", "CREATE", "a", "g", "0"]);
    // "b" has no group g: NOGROUP naming b, and a's entry is not left pending.
    let reply = read_a_and_b(&mut r);
    assert!(
        reply.s().starts_with("NOGROUP No such key 'b'"),
        "{reply:?}"
    );
    assert_eq!(r.cmd(&["XPENDING", "a", "g"]).arr()[0], V::Int(0));
    // The entry is still there for the next read.
    r.cmd(&["XGROUP", "CREATE", "b", "g", "0"]);
    let reply = read_a_and_b(&mut r);
    assert_eq!(reply.arr().len(), 2);
}

#[test]
fn exec_is_one_batch_the_timer_cannot_split() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 0..400 {
        r.cmd(&["XADD", "s", "*", "n", &i.to_string()]);
    }
    r.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    // Every delivery times out after 1 ms and its first failure dead-letters it: the
    // broker's timer keeps changing the pending list on its own.
    r.cmd(&["CX.POLICY", "s", "g", "ACKWAIT", "1", "MAXATTEMPTS", "1"]);
    for round in 0..80 {
        r.cmd(&["MULTI"]);
        r.cmd(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "5",
            "STREAMS",
            "s",
            ">",
        ]);
        r.cmd(&["XPENDING", "s", "g"]);
        r.cmd(&["XLEN", "cortex:dlq"]);
        r.cmd(&["XPENDING", "s", "g"]);
        r.cmd(&["XLEN", "cortex:dlq"]);
        let out = r.cmd(&["EXEC"]);
        let out = out.arr();
        assert_eq!(out.len(), 5);
        // Reads inside the transaction see its own delivery and nothing else moves between
        // them: the second pair equals the first.
        assert_eq!(
            out[1], out[3],
            "round {round}: the pending list changed inside EXEC"
        );
        assert_eq!(out[2], out[4], "round {round}: the DLQ changed inside EXEC");
        if let V::Arr(read) = &out[0] {
            let delivered = read[0].arr()[1].arr().len() as i64;
            assert!(out[1].arr()[0].int() >= delivered);
        }
        // Let the timer act before the next round: wait (blocked on the DLQ, as the server
        // reports it) until everything pending now has been dead-lettered.
        let target = out[2].int() + out[1].arr()[0].int();
        wait_for_dead_letters(&mut r, target);
    }
}

/// Blocks on `cortex:dlq` until it holds at least `n` entries (bounded).
fn wait_for_dead_letters(r: &mut Raw, n: i64) {
    let deadline = Instant::now() + crate::support::IO_BOUND;
    loop {
        // The last ID first, then the length: an entry added in between wakes the XREAD.
        let last = r.cmd(&["XREVRANGE", "cortex:dlq", "+", "-", "COUNT", "1"]);
        let after = last.arr().first().map_or("0-0".to_string(), entry_id);
        if r.cmd(&["XLEN", "cortex:dlq"]).int() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the timer never dead-lettered {n} entries"
        );
        r.cmd(&["XREAD", "BLOCK", "1000", "STREAMS", "cortex:dlq", &after]);
    }
}

#[test]
fn exec_sees_its_own_writes_and_applies_all_or_nothing() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    r.cmd(&["MULTI"]);
    r.cmd(&["XADD", "s", "1-1", "f", "a"]);
    r.cmd(&["XADD", "s", "1-2", "f", "b"]);
    r.cmd(&["XLEN", "s"]);
    r.cmd(&["XREVRANGE", "s", "+", "-", "COUNT", "1"]);
    r.cmd(&["SELECT", "1"]);
    r.cmd(&["XLEN", "s"]);
    let out = r.cmd(&["EXEC"]);
    let out = out.arr();
    assert_eq!(out[2], V::Int(2));
    assert_eq!(entry_id(&out[3].arr()[0]), "1-2");
    assert_eq!(out[4], V::Simple("OK".into()));
    assert_eq!(
        out[5],
        V::Int(0),
        "SELECT inside MULTI applies to what follows"
    );
}

#[test]
fn concurrent_cx_policy_changes_are_not_lost() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
    let rounds = 150;
    let set = |field: &'static str| {
        let addr = s.addr;
        std::thread::spawn(move || {
            let mut c = Raw::connect(addr);
            for i in 1..=rounds {
                let v = c.cmd(&["CX.POLICY", "s", "g", field, &(1000 + i).to_string()]);
                assert_eq!(v, V::Simple("OK".into()));
            }
        })
    };
    let (a, b) = (set("ACKWAIT"), set("MAXAGE"));
    a.join().unwrap();
    b.join().unwrap();
    let p = format!("{:?}", r.cmd(&["CX.POLICY", "s", "g"]));
    let want = (1000 + rounds).to_string();
    assert!(
        p.contains(&format!("Bulk(\"ack-wait-ms\"), Int({want})")),
        "ACKWAIT lost: {p}"
    );
    assert!(
        p.contains(&format!("Bulk(\"max-age-ms\"), Int({want})")),
        "MAXAGE lost: {p}"
    );
}

#[test]
fn xack_with_100000_ids_and_a_huge_xrange_work() {
    let s = Server::start(&[]);
    let mut c = s.redis();
    let mut pipe = redis::pipe();
    for i in 1..=1500 {
        pipe.cmd("XADD")
            .arg("s")
            .arg(format!("1-{i}"))
            .arg("f")
            .arg("v")
            .ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("s")
        .arg("g")
        .arg("0")
        .query(&mut c)
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("c")
        .arg("STREAMS")
        .arg("s")
        .arg(">")
        .query(&mut c)
        .unwrap();
    let mut ack = redis::cmd("XACK");
    ack.arg("s").arg("g");
    for i in 0..100_000 {
        ack.arg(format!("1-{}", i % 2000 + 1));
    }
    let n: i64 = ack.query(&mut c).unwrap();
    assert_eq!(n, 1500);
    let mut too_many = redis::cmd("XACK");
    too_many.arg("s").arg("g");
    for i in 0..100_001 {
        too_many.arg(format!("2-{i}"));
    }
    let e = too_many.query::<i64>(&mut c).unwrap_err();
    assert!(e.to_string().contains("number of IDs"), "{e}");
    // Larger than what is read and formatted inline: built off the network thread, the
    // same reply.
    let all: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg("s")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    assert_eq!(all.len(), 1500);
    let rev: Vec<redis::Value> = redis::cmd("XREVRANGE")
        .arg("s")
        .arg("+")
        .arg("-")
        .query(&mut c)
        .unwrap();
    assert_eq!(rev.len(), 1500);
    assert_eq!(rev.first(), all.last());
}

/// A lone client's writes commit on the network thread while the writer is idle
/// (`Core::commit_gathered`), and clients writing at once share commits (gathered there, or
/// the writer's): either way every write is applied once, in each client's order.
#[test]
fn lone_writes_commit_inline_and_concurrent_ones_share_commits() {
    use crate::http::{http, sample};
    let s = Server::start(&[]);
    let commits = |s: &Server| {
        let (status, text) = http(s.http, "GET", "/metrics", None, None);
        assert_eq!(status, 200);
        (
            sample(&text, "cortex_commits_total") as u64,
            sample(&text, "cortex_commits_inline_total") as u64,
        )
    };
    let mut r = s.raw();
    let (before, inline_before) = commits(&s);
    let mut last = String::new();
    for i in 0..200 {
        let id = r
            .cmd(&["XADD", "lone", "*", "n", &i.to_string()])
            .s()
            .to_string();
        assert!(id_after(&id, &last), "{id} after {last}");
        last = id;
    }
    let (after, inline_after) = commits(&s);
    // One commit per write, and (this client being alone) most on its own thread: the
    // timer's ticks or a slow scheduler may send a few through the writer.
    assert!(after - before >= 200);
    assert!(
        inline_after - inline_before >= 100,
        "{inline_before} -> {inline_after}"
    );

    // Eight clients at once, each 200 writes to its own stream and to a shared one.
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let mut r = s.raw();
            std::thread::spawn(move || {
                let mut last = String::new();
                for i in 0..200 {
                    let v = format!("{w}:{i}");
                    let id = r
                        .cmd(&["XADD", &format!("own{w}"), "*", "n", &v])
                        .s()
                        .to_string();
                    assert!(id_after(&id, &last), "{id} after {last}");
                    last = id;
                    r.cmd(&["XADD", "shared", "*", "n", &v]);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(r.cmd(&["XLEN", "lone"]).int(), 200);
    assert_eq!(r.cmd(&["XLEN", "shared"]).int(), 1600);
    for w in 0..8 {
        let all = r.cmd(&["XRANGE", &format!("own{w}"), "-", "+"]);
        let values: Vec<String> = all
            .arr()
            .iter()
            .map(|e| e.arr()[1].arr()[1].s().to_string())
            .collect();
        let want: Vec<String> = (0..200).map(|i| format!("{w}:{i}")).collect();
        assert_eq!(values, want, "client {w}'s writes, in its order");
    }
}

/// `a` > `b` as stream IDs (`b` empty: any).
fn id_after(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> (u64, u64) {
        let (ms, seq) = s.split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    };
    b.is_empty() || parse(a) > parse(b)
}
