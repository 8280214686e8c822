//! Redis 8's stream commands on the RESP port, as redis.io documents them (the port still
//! reports 7.4.x): XDELEX and XACKDEL with KEEPREF, DELREF and ACKED, and the same choice
//! when XTRIM or XADD trims (8.2).

use crate::redis74::dirty;
use crate::support::*;

fn codes(v: &V) -> Vec<i64> {
    v.arr().iter().map(V::int).collect()
}

fn pending(r: &mut Raw, s: &str, g: &str) -> i64 {
    r.cmd(&["XPENDING", s, g]).arr()[0].int()
}

#[test]
fn xdelex_minds_the_groups_references_as_asked() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 1..=6 {
        r.cmd(&["XADD", "s", &format!("{i}-0"), "f", "v"]);
    }
    r.cmd(&["XGROUP", "CREATE", "s", "g1", "0"]);
    r.cmd(&["XGROUP", "CREATE", "s", "g2", "0"]);
    // g1 reads 1..4 and acks 1 and 2; g2 reads 1..2 and acks them.
    r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g1",
        "c",
        "COUNT",
        "4",
        "STREAMS",
        "s",
        ">",
    ]);
    r.cmd(&["XACK", "s", "g1", "1-0", "2-0"]);
    r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g2",
        "c",
        "COUNT",
        "2",
        "STREAMS",
        "s",
        ">",
    ]);
    r.cmd(&["XACK", "s", "g2", "1-0", "2-0"]);

    // ACKED: 1 is done everywhere; 3 is pending in g1; 5 no group has read; 9 is not there.
    let got = r.cmd(&[
        "XDELEX", "s", "ACKED", "IDS", "4", "1-0", "3-0", "5-0", "9-0",
    ]);
    assert_eq!(codes(&got), [1, 2, 2, -1]);
    assert_eq!(r.cmd(&["XLEN", "s"]).int(), 5);
    // KEEPREF (the default, the IDS block first): deleted, g1 still holds 3 pending.
    assert_eq!(codes(&r.cmd(&["XDELEX", "s", "IDS", "1", "3-0"])), [1]);
    assert_eq!(pending(&mut r, "s", "g1"), 2);
    // DELREF: deleted, and gone from g1's pending list.
    assert_eq!(
        codes(&r.cmd(&["XDELEX", "s", "IDS", "1", "4-0", "DELREF"])),
        [1]
    );
    assert_eq!(pending(&mut r, "s", "g1"), 1);
    // A missing key: -1 for each ID.
    assert_eq!(
        codes(&r.cmd(&["XDELEX", "none", "IDS", "2", "1-0", "2-0"])),
        [-1, -1]
    );
    // Bad input, each named.
    assert!(r
        .cmd(&["XDELEX", "s", "IDS", "0", "1-0"])
        .err_text()
        .contains("positive"));
    assert!(r
        .cmd(&["XDELEX", "s", "IDS", "3", "1-0", "2-0"])
        .err_text()
        .contains("numids"));
    assert!(r
        .cmd(&["XDELEX", "s", "KEEPREF", "ACKED", "IDS", "1", "1-0"])
        .err_text()
        .contains("syntax"));
    assert!(r
        .cmd(&["XDELEX", "s", "IDS", "1", "x"])
        .err_text()
        .contains("ID"));
}

#[test]
fn xackdel_acks_then_deletes_as_asked() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "s", "g", "0", "MKSTREAM"]);
    r.cmd(&["XGROUP", "CREATE", "s", "other", "0"]);
    for i in 1..=3 {
        r.cmd(&["XADD", "s", &format!("{i}-0"), "f", "v"]);
    }
    r.cmd(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]);
    let d0 = dirty(&mut r);
    // ACKED: acked in g, but "other" has not read it: kept.
    assert_eq!(
        codes(&r.cmd(&["XACKDEL", "s", "g", "ACKED", "IDS", "1", "1-0"])),
        [2]
    );
    assert_eq!(pending(&mut r, "s", "g"), 2);
    assert_eq!(r.cmd(&["XLEN", "s"]).int(), 3);
    assert_eq!(dirty(&mut r), d0 + 1, "the ack");
    // KEEPREF (default): acked and deleted; "other" has no reference to drop.
    let got = r.cmd(&["XACKDEL", "s", "g", "IDS", "3", "2-0", "3-0", "0-1"]);
    assert_eq!(codes(&got), [1, 1, -1]);
    assert_eq!(pending(&mut r, "s", "g"), 0);
    assert_eq!(r.cmd(&["XLEN", "s"]).int(), 1);
    assert_eq!(dirty(&mut r), d0 + 5, "two acks, two deletions");
    // A missing group or key answers -1 for each ID, as XACK answers 0.
    assert_eq!(
        codes(&r.cmd(&["XACKDEL", "s", "nogroup", "IDS", "1", "1-0"])),
        [-1]
    );
    assert_eq!(
        codes(&r.cmd(&["XACKDEL", "none", "g", "IDS", "1", "1-0"])),
        [-1]
    );
    // Once every group is done with it, ACKED deletes.
    r.cmd(&["XREADGROUP", "GROUP", "other", "c", "STREAMS", "s", ">"]);
    r.cmd(&["XACK", "s", "other", "1-0"]);
    assert_eq!(
        codes(&r.cmd(&["XACKDEL", "s", "g", "ACKED", "IDS", "1", "1-0"])),
        [1]
    );
    assert_eq!(r.cmd(&["XLEN", "s"]).int(), 0);
    // The commands are in COMMAND's table.
    let info = r.cmd(&["COMMAND", "INFO", "XDELEX", "XACKDEL"]);
    assert_eq!(info.arr().len(), 2);
    assert!(!matches!(info.arr()[0], V::Nil), "{info:?}");
}

trait ErrText {
    fn err_text(&self) -> String;
}

impl ErrText for V {
    /// An error reply's text (anything else fails the test).
    fn err_text(&self) -> String {
        match self {
            V::Err(e) => e.clone(),
            other => panic!("not an error: {other:?}"),
        }
    }
}

/// The pending list's (consumer, delivery count) of one entry.
fn holder(r: &mut Raw, s: &str, g: &str, id: &str) -> Option<(String, i64)> {
    let got = r.cmd(&["XPENDING", s, g, id, id, "1"]);
    got.arr()
        .first()
        .map(|e| (e.arr()[1].s().to_string(), e.arr()[3].int()))
}

#[test]
fn xnack_gives_entries_back_as_its_mode_and_the_policy_say() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "q", "g", "0", "MKSTREAM"]);
    for i in 1..=4 {
        r.cmd(&["XADD", "q", &format!("{i}-0"), "f", "v"]);
    }
    r.cmd(&["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "q", ">"]);
    // FAIL on a group without a policy: ready for the next read at once, count kept.
    assert_eq!(
        r.cmd(&["XNACK", "q", "g", "FAIL", "IDS", "1", "1-0"]),
        V::Int(1)
    );
    // SILENT: ready too, one delivery fewer; RETRYCOUNT sets the count outright.
    assert_eq!(
        r.cmd(&["XNACK", "q", "g", "SILENT", "IDS", "1", "2-0"]),
        V::Int(1)
    );
    let n = r.cmd(&[
        "XNACK",
        "q",
        "g",
        "SILENT",
        "IDS",
        "1",
        "3-0",
        "RETRYCOUNT",
        "7",
    ]);
    assert_eq!(n, V::Int(1));
    assert_eq!(holder(&mut r, "q", "g", "2-0"), Some(("c1".into(), 0)));
    assert_eq!(holder(&mut r, "q", "g", "3-0"), Some(("c1".into(), 7)));
    let again = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c2",
        "COUNT",
        "10",
        "STREAMS",
        "q",
        ">",
    ]);
    let ids: Vec<&str> = again.arr()[0].arr()[1]
        .arr()
        .iter()
        .map(|e| e.arr()[0].s())
        .collect();
    assert_eq!(ids, ["1-0", "2-0", "3-0"]);
    assert_eq!(holder(&mut r, "q", "g", "1-0"), Some(("c2".into(), 2)));
    assert_eq!(holder(&mut r, "q", "g", "2-0"), Some(("c2".into(), 1)));
    // FATAL: to the dead-letter stream at once, reason rejected.
    assert_eq!(
        r.cmd(&["XNACK", "q", "g", "FATAL", "IDS", "1", "4-0"]),
        V::Int(1)
    );
    assert_eq!(holder(&mut r, "q", "g", "4-0"), None);
    let dead = format!("{:?}", r.cmd(&["XRANGE", "cortex:dlq", "-", "+"]));
    assert!(dead.contains("rejected") && dead.contains("4-0"), "{dead}");
    // Not pending: nothing to give back.
    assert_eq!(
        r.cmd(&["XNACK", "q", "g", "FAIL", "IDS", "1", "9-0"]),
        V::Int(0)
    );
    // With a policy, FAIL is a failed attempt: the second of two dead-letters it (2-0 was
    // given back SILENTly, no failure counted).
    r.cmd(&["CX.POLICY", "q", "g", "MAXATTEMPTS", "2", "BACKOFF", "0"]);
    let fail = ["XNACK", "q", "g", "FAIL", "IDS", "1", "2-0"];
    assert_eq!(r.cmd(&fail), V::Int(1));
    assert!(holder(&mut r, "q", "g", "2-0").is_some());
    let read = [
        "XREADGROUP",
        "GROUP",
        "g",
        "c2",
        "COUNT",
        "1",
        "STREAMS",
        "q",
        ">",
    ];
    let retry = r.cmd(&read);
    assert_eq!(retry.arr()[0].arr()[1].arr()[0].arr()[0].s(), "2-0");
    assert_eq!(r.cmd(&fail), V::Int(1));
    assert_eq!(holder(&mut r, "q", "g", "2-0"), None);
    let dead = format!("{:?}", r.cmd(&["XRANGE", "cortex:dlq", "-", "+"]));
    assert!(dead.contains("max_attempts"), "{dead}");
    // Bad input, each named.
    assert!(r
        .cmd(&["XNACK", "q", "g", "LATER", "IDS", "1", "1-0"])
        .err_text()
        .contains("SILENT"));
    assert!(r
        .cmd(&["XNACK", "q", "g", "FAIL", "IDS", "1", "1-0", "FORCE", "FORCE"])
        .err_text()
        .contains("syntax"));
    assert!(r
        .cmd(&["XNACK", "q", "nogroup", "FAIL", "IDS", "1", "1-0"])
        .err_text()
        .contains("NOGROUP"));
}

#[test]
fn xnack_force_makes_unowned_pending_entries_of_the_streams_entries() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 1..=4 {
        r.cmd(&["XADD", "q", &format!("{i}-0"), "f", "v"]);
    }
    r.cmd(&["XGROUP", "CREATE", "q", "g", "$"]);
    // 1 and 2 were never handed out (the group starts after them); 9 is not in the stream.
    let n = r.cmd(&[
        "XNACK", "q", "g", "FAIL", "IDS", "3", "1-0", "2-0", "9-0", "FORCE",
    ]);
    assert_eq!(n, V::Int(2));
    assert_eq!(holder(&mut r, "q", "g", "1-0"), Some((String::new(), 0)));
    assert_eq!(holder(&mut r, "q", "g", "9-0"), None);
    let summary = r.cmd(&["XPENDING", "q", "g"]);
    assert_eq!(summary.arr()[0].int(), 2);
    // No consumer holds them: the group's list has them, no consumer's does.
    let consumers = r.cmd(&["XINFO", "CONSUMERS", "q", "g"]);
    assert!(consumers.arr().is_empty(), "{consumers:?}");
    // RETRYCOUNT sets a forced entry's count too; an entry already pending is only nacked.
    let n = r.cmd(&[
        "XNACK",
        "q",
        "g",
        "SILENT",
        "IDS",
        "2",
        "2-0",
        "3-0",
        "RETRYCOUNT",
        "5",
        "FORCE",
    ]);
    assert_eq!(n, V::Int(2));
    assert_eq!(holder(&mut r, "q", "g", "2-0"), Some((String::new(), 5)));
    assert_eq!(holder(&mut r, "q", "g", "3-0"), Some((String::new(), 5)));
    // They are ready: the next read of any consumer gets them first, and owns them.
    let got = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "10",
        "STREAMS",
        "q",
        ">",
    ]);
    assert_eq!(
        read_ids(&got),
        [(
            "q".to_string(),
            vec!["1-0".into(), "2-0".into(), "3-0".into()]
        )]
    );
    assert_eq!(holder(&mut r, "q", "g", "1-0"), Some(("c".into(), 1)));
    assert_eq!(holder(&mut r, "q", "g", "3-0"), Some(("c".into(), 6)));
    // FATAL with FORCE: dead-lettered at once.
    let n = r.cmd(&["XNACK", "q", "g", "FATAL", "IDS", "1", "4-0", "FORCE"]);
    assert_eq!(n, V::Int(1));
    assert_eq!(holder(&mut r, "q", "g", "4-0"), None);
    let dead = format!("{:?}", r.cmd(&["XRANGE", "cortex:dlq", "-", "+"]));
    assert!(dead.contains("rejected") && dead.contains("4-0"), "{dead}");
}

#[test]
fn xadd_idmp_stores_a_producers_message_once() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let add = |r: &mut Raw, extra: &[&str], v: &str| {
        let mut cmd = vec!["XADD", "s"];
        cmd.extend_from_slice(extra);
        cmd.extend_from_slice(&["*", "f", v]);
        r.cmd(&cmd).s().to_string()
    };
    let first = add(&mut r, &["IDMP", "p1", "m1"], "a");
    // The same producer and ID again: the first entry's ID, nothing stored.
    assert_eq!(add(&mut r, &["IDMP", "p1", "m1"], "b"), first);
    // Another producer with the same ID is another message.
    let other = add(&mut r, &["IDMP", "p2", "m1"], "a");
    assert_ne!(other, first);
    // IDMPAUTO: the ID is the content's.
    let auto = add(&mut r, &["IDMPAUTO", "p1"], "x");
    assert_eq!(add(&mut r, &["IDMPAUTO", "p1"], "x"), auto);
    assert_ne!(add(&mut r, &["IDMPAUTO", "p1"], "y"), auto);
    assert_eq!(r.cmd(&["XLEN", "s"]).int(), 4);
    // With trimming options around it, in either order.
    let t = add(&mut r, &["MAXLEN", "~", "100", "IDMP", "p3", "1"], "t");
    assert_eq!(
        add(&mut r, &["IDMP", "p3", "1", "MAXLEN", "~", "100"], "t"),
        t
    );
    // Only with `*`.
    let e = r.cmd(&["XADD", "s", "IDMP", "p", "1", "9-9", "f", "v"]);
    assert!(e.err_text().contains("IDMP"), "{e:?}");
}

/// A field of a RESP2 map reply (a flat array of names and values).
fn field<'v>(v: &'v V, name: &str) -> &'v V {
    let a = v.arr();
    let i = a
        .chunks(2)
        .position(|kv| kv[0].s() == name)
        .unwrap_or_else(|| panic!("no {name} in {v:?}"));
    &a[2 * i + 1]
}

/// XINFO STREAM's pids-tracked, iids-tracked, iids-added and iids-duplicates.
fn idmp_counters(r: &mut Raw, s: &str) -> [i64; 4] {
    let info = r.cmd(&["XINFO", "STREAM", s]);
    [
        "pids-tracked",
        "iids-tracked",
        "iids-added",
        "iids-duplicates",
    ]
    .map(|f| field(&info, f).int())
}

#[test]
fn xcfgset_sets_a_streams_idmp_window_and_xinfo_stream_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cortex.toml");
    std::fs::write(&cfg, "idempotency_window_ms = 300000\n").unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let mut r = s.raw();
    r.cmd(&["XADD", "s", "*", "f", "v"]);
    // A stream that never used IDMP keeps 7.4's reply (go-redis 9.17 refuses other fields).
    let info = r.cmd(&["XINFO", "STREAM", "s"]);
    assert_eq!(info.arr().len(), 2 * 10, "{info:?}");
    let add = |r: &mut Raw, pid: &str, iid: &str| {
        r.cmd(&["XADD", "s", "IDMP", pid, iid, "*", "f", iid])
            .s()
            .to_string()
    };
    let a = add(&mut r, "p1", "a");
    // Then: the store's window (300 s here) and Redis's default maxsize.
    let info = r.cmd(&["XINFO", "STREAM", "s"]);
    assert_eq!(field(&info, "idmp-duration").int(), 300);
    assert_eq!(field(&info, "idmp-maxsize").int(), 100);
    assert_eq!(idmp_counters(&mut r, "s"), [1, 1, 1, 0]);
    assert_eq!(add(&mut r, "p1", "a"), a);
    add(&mut r, "p2", "a");
    assert_eq!(idmp_counters(&mut r, "s"), [2, 2, 2, 1]);
    // A new maxsize forgets every producer's IDs, then keeps two per producer.
    assert_eq!(
        r.cmd(&["XCFGSET", "s", "IDMP-MAXSIZE", "2"]),
        V::Simple("OK".into())
    );
    assert_eq!(idmp_counters(&mut r, "s"), [0, 0, 2, 1]);
    let a2 = add(&mut r, "p1", "a");
    assert_ne!(a2, a);
    add(&mut r, "p1", "b");
    add(&mut r, "p1", "c");
    // "a" was the oldest of three: evicted, so it is a new message again.
    assert_ne!(add(&mut r, "p1", "a"), a2);
    assert_eq!(idmp_counters(&mut r, "s"), [1, 2, 6, 1]);
    // The same value again keeps them; both settings show.
    r.cmd(&["XCFGSET", "s", "IDMP-MAXSIZE", "2", "IDMP-DURATION", "300"]);
    assert_eq!(idmp_counters(&mut r, "s"), [1, 2, 6, 1]);
    let full = r.cmd(&["XINFO", "STREAM", "s", "FULL"]);
    assert_eq!(field(&full, "idmp-maxsize").int(), 2);
    assert_eq!(field(&full, "iids-tracked").int(), 2);
    // Errors, as redis.io lists them.
    let e = r.cmd(&["XCFGSET", "nokey", "IDMP-DURATION", "5"]);
    assert_eq!(e.err_text(), "ERR no such key");
    for bad in [
        ["IDMP-DURATION", "0"],
        ["IDMP-DURATION", "86401"],
        ["IDMP-MAXSIZE", "10001"],
    ] {
        let e = r.cmd(&["XCFGSET", "s", bad[0], bad[1]]);
        assert!(e.err_text().contains(bad[0]), "{e:?}");
    }
    let e = r.cmd(&["XCFGSET", "s", "IDMP-DURATION", "x"]);
    assert!(e.err_text().starts_with("ERR"), "{e:?}");
    let e = r.cmd(&["XCFGSET", "s", "DURATION", "5"]);
    assert!(e.err_text().contains("syntax"), "{e:?}");
}

fn ids_of(v: &V) -> Vec<String> {
    v.arr().iter().map(|e| e.arr()[0].s().to_string()).collect()
}

#[test]
fn trimming_minds_the_groups_references_as_asked() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 1..=6 {
        r.cmd(&["XADD", "s", &format!("{i}-0"), "f", "v"]);
    }
    r.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "3",
        "STREAMS",
        "s",
        ">",
    ]);
    r.cmd(&["XACK", "s", "g", "2-0", "3-0"]);
    // ACKED: 1 is pending and 4..6 unread, so only 2 and 3 may go; the trim goes on past 1.
    assert_eq!(r.cmd(&["XTRIM", "s", "MAXLEN", "=", "0", "ACKED"]).int(), 2);
    assert_eq!(
        ids_of(&r.cmd(&["XRANGE", "s", "-", "+"])),
        ["1-0", "4-0", "5-0", "6-0"]
    );
    // KEEPREF (the default, named): 1 goes and g still holds it.
    assert_eq!(r.cmd(&["XTRIM", "s", "MAXLEN", "3", "KEEPREF"]).int(), 1);
    assert_eq!(pending(&mut r, "s", "g"), 1);
    // DELREF, through XADD: 4 (now pending) and 5 go, and 4 leaves g's pending list.
    r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "1",
        "STREAMS",
        "s",
        ">",
    ]);
    assert_eq!(pending(&mut r, "s", "g"), 2);
    let id = r.cmd(&["XADD", "s", "MAXLEN", "2", "DELREF", "7-0", "f", "v"]);
    assert_eq!(id.s(), "7-0");
    assert_eq!(ids_of(&r.cmd(&["XRANGE", "s", "-", "+"])), ["6-0", "7-0"]);
    let held = r.cmd(&["XPENDING", "s", "g", "-", "+", "10"]);
    assert_eq!(
        ids_of(&held),
        ["1-0"],
        "only the entry trimmed with KEEPREF"
    );
    // XADD ... ACKED: 6 and 7 are unread by g, so nothing goes.
    r.cmd(&["XADD", "s", "ACKED", "MAXLEN", "=", "0", "8-0", "f", "v"]);
    assert_eq!(r.cmd(&["XLEN", "s"]).int(), 3);
    // Without groups ACKED trims as KEEPREF does.
    for i in 1..=3 {
        r.cmd(&["XADD", "free", &format!("{i}-0"), "f", "v"]);
    }
    assert_eq!(r.cmd(&["XTRIM", "free", "MINID", "3-0", "ACKED"]).int(), 2);
    // `~` with ACKED, as Redis's own test: nodes of two entries; the first node is acked
    // and goes, the second is still pending and stays.
    r.cmd(&["CONFIG", "SET", "stream-node-max-entries", "2"]);
    for i in 1..=4 {
        r.cmd(&["XADD", "t", &format!("{i}-0"), "f", "v"]);
    }
    r.cmd(&["XGROUP", "CREATE", "t", "g", "0"]);
    r.cmd(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "t", ">"]);
    r.cmd(&["XACK", "t", "g", "1-0", "2-0"]);
    assert_eq!(
        r.cmd(&["XTRIM", "t", "MINID", "~", "5-0", "ACKED"]).int(),
        2
    );
    assert_eq!(ids_of(&r.cmd(&["XRANGE", "t", "-", "+"])), ["3-0", "4-0"]);
    // The last policy named counts; they are not XTRIM's strategy.
    assert_eq!(
        r.cmd(&["XTRIM", "t", "MAXLEN", "0", "ACKED", "DELREF"])
            .int(),
        2
    );
    assert_eq!(pending(&mut r, "t", "g"), 0);
    assert!(r
        .cmd(&["XTRIM", "t", "ACKED", "DELREF"])
        .err_text()
        .contains("trimming strategy"));
}

/// XREADGROUP's ids and metadata: (id, idle ms, earlier deliveries) per entry.
fn claimed(v: &V) -> Vec<(String, i64, i64)> {
    if matches!(v, V::Nil) {
        return Vec::new();
    }
    v.arr()[0].arr()[1]
        .arr()
        .iter()
        .map(|e| {
            let e = e.arr();
            (e[0].s().to_string(), e[2].int(), e[3].int())
        })
        .collect()
}

#[test]
fn xreadgroup_claim_takes_idle_deliveries_first_then_new_entries() {
    let s = Server::start(&["--test-clock"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "q", "g", "0", "MKSTREAM"]);
    r.cmd(&["XADD", "q", "1-0", "f", "v"]);
    r.cmd(&["XADD", "q", "2-0", "f", "v"]);
    r.cmd(&["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "q", ">"]);
    r.cmd(&["CX.CLOCK", "ADVANCE", "100"]);
    r.cmd(&["XADD", "q", "3-0", "f", "v"]);
    r.cmd(&["XADD", "q", "4-0", "f", "v"]);
    let read = |r: &mut Raw, consumer: &str, count: &str, extra: &[&str]| {
        let mut cmd = vec!["XREADGROUP", "GROUP", "g", consumer, "COUNT", count];
        cmd.extend_from_slice(extra);
        cmd.extend_from_slice(&["STREAMS", "q", ">"]);
        r.cmd(&cmd)
    };
    let got = claimed(&read(&mut r, "c2", "10", &["CLAIM", "50"]));
    assert_eq!(got.len(), 4, "{got:?}");
    // The idle deliveries first, with their idle time (broker time moved 100 ms, real time
    // a little) and earlier deliveries; then the new entries with 0 and 0.
    for (i, (id, idle, n)) in got[..2].iter().enumerate() {
        assert_eq!(id, &format!("{}-0", i + 1));
        assert!(*idle >= 100 && *idle < 60_000, "{got:?}");
        assert_eq!(*n, 1);
    }
    assert_eq!(got[2], ("3-0".to_string(), 0, 0));
    assert_eq!(got[3], ("4-0".to_string(), 0, 0));
    let p = r.cmd(&["XPENDING", "q", "g", "1-0", "1-0", "1"]);
    assert_eq!(p.arr()[0].arr()[1].s(), "c2");
    assert_eq!(p.arr()[0].arr()[3].int(), 2);
    // Just claimed: nothing is idle; nothing is new.
    assert!(claimed(&read(&mut r, "c3", "10", &["CLAIM", "50"])).is_empty());
    // COUNT bounds the claimed and the new together.
    r.cmd(&["CX.CLOCK", "ADVANCE", "100"]);
    let got = claimed(&read(&mut r, "c3", "1", &["CLAIM", "50"]));
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["1-0"]
    );
    // NOACK: claimed entries leave the pending list.
    r.cmd(&["CX.CLOCK", "ADVANCE", "100"]);
    let got = claimed(&read(&mut r, "c4", "10", &["NOACK", "CLAIM", "50"]));
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(r.cmd(&["XPENDING", "q", "g"]).arr()[0].int(), 0);
    // Only with `>`; a negative time is refused.
    let e = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "CLAIM",
        "5",
        "STREAMS",
        "q",
        "0",
    ]);
    assert!(e.err_text().contains("CLAIM"), "{e:?}");
    let e = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "CLAIM",
        "-1",
        "STREAMS",
        "q",
        ">",
    ]);
    assert!(e.err_text().contains("min-idle-time"), "{e:?}");
}

/// Per stream, the IDs a read returned.
fn read_ids(v: &V) -> Vec<(String, Vec<String>)> {
    if matches!(v, V::Nil) {
        return Vec::new();
    }
    v.arr()
        .iter()
        .map(|s| {
            let s = s.arr();
            let ids = s[1]
                .arr()
                .iter()
                .map(|e| e.arr()[0].s().to_string())
                .collect();
            (s[0].s().to_string(), ids)
        })
        .collect()
}

#[test]
fn maxcount_and_maxsize_cap_a_read_over_all_its_streams() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let big = "v".repeat(100);
    for (k, n) in [("a", 2), ("b", 5)] {
        r.cmd(&["XGROUP", "CREATE", k, "g", "0", "MKSTREAM"]);
        for i in 1..=n {
            r.cmd(&["XADD", k, &format!("{i}-0"), "f", &big]);
        }
    }
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // XREAD: the first streams are served first.
    let got = read_ids(&r.cmd(&[
        "XREAD", "COUNT", "2", "MAXCOUNT", "3", "STREAMS", "a", "b", "0", "0",
    ]));
    assert_eq!(
        got,
        [
            ("a".into(), ids(&["1-0", "2-0"])),
            ("b".into(), ids(&["1-0"]))
        ]
    );
    // MAXSIZE is soft: the entry that reaches it is the last; one entry always comes.
    let got = read_ids(&r.cmd(&["XREAD", "MAXSIZE", "300", "STREAMS", "b", "0"]));
    assert_eq!(got, [("b".into(), ids(&["1-0", "2-0"]))]);
    let got = read_ids(&r.cmd(&["XREAD", "MAXSIZE", "1", "STREAMS", "b", "0"]));
    assert_eq!(got, [("b".into(), ids(&["1-0"]))]);
    // XREADGROUP: what the caps leave out is not handed out (the next read gets it).
    let got = read_ids(&r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "MAXCOUNT",
        "3",
        "STREAMS",
        "a",
        "b",
        ">",
        ">",
    ]));
    assert_eq!(
        got,
        [
            ("a".into(), ids(&["1-0", "2-0"])),
            ("b".into(), ids(&["1-0"]))
        ]
    );
    assert_eq!(r.cmd(&["XPENDING", "b", "g"]).arr()[0].int(), 1);
    let got = read_ids(&r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "MAXSIZE",
        "300",
        "STREAMS",
        "b",
        ">",
    ]));
    assert_eq!(got, [("b".into(), ids(&["2-0", "3-0"]))]);
    assert_eq!(r.cmd(&["XPENDING", "b", "g"]).arr()[0].int(), 3);
    // A history read under a byte cap walks the pending list in order.
    let got = read_ids(&r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "MAXSIZE",
        "300",
        "STREAMS",
        "b",
        "0",
    ]));
    assert_eq!(got, [("b".into(), ids(&["1-0", "2-0"]))]);
    // Bad caps, each named.
    let e = r.cmd(&["XREAD", "COUNT", "5", "MAXCOUNT", "2", "STREAMS", "a", "0"]);
    assert!(e.err_text().contains("MAXCOUNT"), "{e:?}");
    let e = r.cmd(&["XREAD", "MAXSIZE", "0", "STREAMS", "a", "0"]);
    assert!(e.err_text().contains("MAXSIZE"), "{e:?}");
}

/// An XACK or XDEL of more than 1,000 IDs runs in slices other clients interleave with;
/// to its own client it answers as one command: the count of distinct IDs it acked or
/// deleted, duplicates and unknown IDs counted once or not at all. Inside MULTI it is one
/// op, with the same answer.
#[test]
fn big_acks_and_deletes_answer_as_one_command() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let n = 2_500;
    let adds: Vec<Vec<String>> = (1..=n)
        .map(|i| {
            ["XADD", "big", &format!("{i}-0"), "f", "v"]
                .map(String::from)
                .to_vec()
        })
        .collect();
    r.pipeline(&adds);
    r.cmd(&["XGROUP", "CREATE", "big", "g", "0"]);
    r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "3000",
        "STREAMS",
        "big",
        ">",
    ]);
    assert_eq!(pending(&mut r, "big", "g"), n);
    // Every ID once, 300 again, 20 never added; the first 2,000 acked in MULTI.
    let ids = |from: i64, to: i64| (from..=to).map(|i| format!("{i}-0"));
    let mut ack: Vec<String> = ["XACK", "big", "g"].map(String::from).to_vec();
    ack.extend(ids(2_001, n));
    ack.extend(ids(2_001, 2_300));
    ack.extend(ids(n + 1, n + 20));
    let mut multi: Vec<String> = ["XACK", "big", "g"].map(String::from).to_vec();
    multi.extend(ids(1, 2_000));
    multi.extend(ids(1, 300));
    assert_eq!(r.cmd(&["MULTI"]), V::Simple("OK".into()));
    r.cmd_bytes(&multi);
    assert_eq!(codes(&r.cmd(&["EXEC"])), [2_000]);
    assert_eq!(r.cmd_bytes(&ack).int(), n - 2_000);
    assert_eq!(pending(&mut r, "big", "g"), 0);
    // The same for XDEL, and an XACK of a missing group is refused whole.
    let mut del: Vec<String> = ["XDEL", "big"].map(String::from).to_vec();
    del.extend(ids(1, n));
    del.extend(ids(1, 1_500));
    assert_eq!(r.cmd_bytes(&del).int(), n);
    assert_eq!(r.cmd(&["XLEN", "big"]).int(), 0);
    let mut nogroup: Vec<String> = ["XACK", "big", "nope"].map(String::from).to_vec();
    nogroup.extend(ids(1, 1_500));
    assert_eq!(
        r.cmd_bytes(&nogroup).int(),
        0,
        "as Redis: no such group acks nothing"
    );
}
