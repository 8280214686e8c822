//! Redis 7.4 behaviours found by running client libraries' and Redis's own stream tests: INFO
//! sections and the dirty counter, `~` trimming by radix-tree node, LIMIT and XSETID rules,
//! HELP arity, XREAD `+`, SWAPDB with blocked readers, CX.* HELP.

use crate::support::*;

pub(crate) fn info_field(r: &mut Raw, section: &str, field: &str) -> String {
    let info = r.cmd(&["INFO", section]);
    info.s()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
        .trim()
        .to_string()
}

pub(crate) fn dirty(r: &mut Raw) -> i64 {
    info_field(r, "persistence", "rdb_changes_since_last_save")
        .parse()
        .unwrap()
}

#[test]
fn info_has_redis_74_sections_and_counts_changes_like_redis() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let info = r.cmd(&["INFO"]);
    let text = info.s().to_string();
    for section in [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Modules",
        "# Errorstats",
        "# Cluster",
        "# Keyspace",
    ] {
        assert!(text.contains(section), "INFO lacks {section}");
    }
    assert!(
        !text.contains("# Commandstats"),
        "commandstats is not a default section"
    );
    for field in [
        "redis_version:7.4.",
        "arch_bits:64",
        "cluster_enabled:0",
        "role:master",
        "rdb_changes_since_last_save:",
        "used_memory:",
        "used_cpu_user:",
        "connected_clients:",
    ] {
        assert!(text.contains(field), "INFO lacks {field}");
    }
    assert!(r.cmd(&["INFO", "all"]).s().contains("# Commandstats"));
    let hello = r.cmd(&["HELLO", "3"]);
    assert!(format!("{hello:?}").contains("7.4."), "{hello:?}");
    r.cmd(&["HELLO", "2"]);

    let d0 = dirty(&mut r);
    for i in 1..=5 {
        r.cmd(&["XADD", "s", &format!("{i}-0"), "f", "v"]);
    }
    assert_eq!(dirty(&mut r), d0 + 5, "one per XADD");
    r.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    assert_eq!(dirty(&mut r), d0 + 6);
    // A group read of five entries counts once, and the consumer it creates once more
    // (Redis's "XREADGROUP from PEL does not change dirty").
    let got = r.cmd(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]);
    assert_eq!(got.arr()[0].arr()[1].arr().len(), 5);
    assert_eq!(dirty(&mut r), d0 + 8);
    // A read from the consumer's pending list does not count...
    r.cmd(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "0"]);
    assert_eq!(dirty(&mut r), d0 + 8);
    // ... but the consumer it creates does, even with an empty pending list.
    r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "noconsumer",
        "COUNT",
        "2",
        "STREAMS",
        "s",
        "0",
    ]);
    assert_eq!(dirty(&mut r), d0 + 9);
    r.cmd(&["XGROUP", "DELCONSUMER", "s", "g", "noconsumer"]);
    let d0 = d0 + 3;
    // XACK counts each acknowledged ID, XDEL each deleted entry; misses count nothing.
    assert_eq!(r.cmd(&["XACK", "s", "g", "1-0", "2-0", "9-0"]), V::Int(2));
    assert_eq!(dirty(&mut r), d0 + 9);
    assert_eq!(r.cmd(&["XDEL", "s", "3-0", "9-0"]), V::Int(1));
    assert_eq!(dirty(&mut r), d0 + 10);
    // Reads change nothing.
    r.cmd(&["XRANGE", "s", "-", "+"]);
    r.cmd(&["XINFO", "STREAM", "s"]);
    assert_eq!(dirty(&mut r), d0 + 10);
}

#[test]
fn approximate_trimming_removes_whole_nodes_as_redis_does() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let ok = V::Simple("OK".into());
    // Redis's "XADD with MAXLEN option and the '~' argument".
    assert_eq!(
        r.cmd(&["CONFIG", "SET", "stream-node-max-entries", "100"]),
        ok
    );
    let mut p = Vec::new();
    for j in 0..1000 {
        let field = if j % 10 == 9 { "yitem" } else { "xitem" };
        p.push(vec![
            "XADD".to_string(),
            "mystream".into(),
            "MAXLEN".into(),
            "~".into(),
            "555".into(),
            "*".into(),
            field.into(),
            j.to_string(),
        ]);
    }
    r.pipeline(&p);
    assert_eq!(r.cmd(&["XLEN", "mystream"]), V::Int(600));
    let info = r.cmd(&["XINFO", "STREAM", "mystream"]);
    let keys = format!("{info:?}");
    assert!(keys.contains("radix-tree-keys"), "{keys}");

    // "XADD with LIMIT delete entries no more than limit".
    for _ in 0..3 {
        r.cmd(&["XADD", "yourstream", "*", "xitem", "v"]);
    }
    r.cmd(&[
        "XADD",
        "yourstream",
        "MAXLEN",
        "~",
        "0",
        "LIMIT",
        "1",
        "*",
        "xitem",
        "v",
    ]);
    assert_eq!(r.cmd(&["XLEN", "yourstream"]), V::Int(4));

    // "XADD with LIMIT consecutive calls".
    r.cmd(&["DEL", "mystream"]);
    assert_eq!(
        r.cmd(&["CONFIG", "SET", "stream-node-max-entries", "10"]),
        ok
    );
    assert_eq!(
        r.cmd(&["CONFIG", "GET", "stream-node-max-entries"]),
        V::Arr(vec![b("stream-node-max-entries"), b("10")])
    );
    for _ in 0..100 {
        r.cmd(&["XADD", "mystream", "*", "xitem", "v"]);
    }
    let limited = [
        "XADD", "mystream", "MAXLEN", "~", "55", "LIMIT", "30", "*", "xitem", "v",
    ];
    r.cmd(&limited);
    assert_eq!(r.cmd(&["XLEN", "mystream"]), V::Int(71));
    r.cmd(&limited);
    assert_eq!(r.cmd(&["XLEN", "mystream"]), V::Int(62));

    // "XTRIM with ~ is limited" / "without ~ is not limited" / "without ~ and with LIMIT".
    r.cmd(&["CONFIG", "SET", "stream-node-max-entries", "1"]);
    for exact in [false, true] {
        r.cmd(&["DEL", "mystream"]);
        for _ in 0..102 {
            r.cmd(&["XADD", "mystream", "*", "xitem", "v"]);
        }
        if exact {
            assert_eq!(
                r.cmd(&["XTRIM", "mystream", "MAXLEN", "1", "LIMIT", "30"]),
                V::Err(
                    "ERR syntax error, LIMIT cannot be used without the special ~ option".into()
                )
            );
            r.cmd(&["XTRIM", "mystream", "MAXLEN", "1"]);
            assert_eq!(r.cmd(&["XLEN", "mystream"]), V::Int(1));
        } else {
            r.cmd(&["XTRIM", "mystream", "MAXLEN", "~", "1"]);
            assert_eq!(r.cmd(&["XLEN", "mystream"]), V::Int(2));
        }
    }

    // "XTRIM with LIMIT delete entries no more than limit".
    r.cmd(&["DEL", "mystream"]);
    r.cmd(&["CONFIG", "SET", "stream-node-max-entries", "2"]);
    for _ in 0..3 {
        r.cmd(&["XADD", "mystream", "*", "xitem", "v"]);
    }
    assert_eq!(
        r.cmd(&["XTRIM", "mystream", "MAXLEN", "~", "0", "LIMIT", "1"]),
        V::Int(0)
    );
    assert_eq!(
        r.cmd(&["XTRIM", "mystream", "MAXLEN", "~", "0", "LIMIT", "2"]),
        V::Int(2)
    );

    // Node sizes by bytes: 1,000-byte values fill a 4,096-byte node after four entries.
    r.cmd(&["CONFIG", "SET", "stream-node-max-entries", "100"]);
    let big = "v".repeat(1000);
    for _ in 0..10 {
        r.cmd(&["XADD", "big", "*", "f", &big]);
    }
    assert_eq!(r.cmd(&["XTRIM", "big", "MAXLEN", "~", "5"]), V::Int(4));
    assert_eq!(r.cmd(&["XLEN", "big"]), V::Int(6));

    // LIMIT without a strategy, XTRIM without one.
    assert_eq!(
        r.cmd(&["XADD", "s", "LIMIT", "5", "*", "f", "v"]),
        V::Err(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy".into()
        )
    );
    assert_eq!(
        r.cmd(&["XTRIM", "s", "LIMIT", "5"]),
        V::Err(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy".into()
        )
    );
}

#[test]
fn xsetid_help_arity_and_redis_74_lag() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 1..=3 {
        r.cmd(&["XADD", "x", &format!("{i}-0"), "f", "v"]);
    }
    r.cmd(&["XDEL", "x", "3-0"]);
    assert_eq!(
        r.cmd(&["XSETID", "x", "2-0"]),
        V::Err(
            "ERR The ID specified in XSETID is smaller than current max_deleted_entry_id".into()
        )
    );
    assert_eq!(r.cmd(&["XSETID", "x", "3-0"]), V::Simple("OK".into()));
    for (cmd, name) in [
        ("XGROUP", "xgroup"),
        ("XINFO", "xinfo"),
        ("CX.DLQ", "cx.dlq"),
    ] {
        assert_eq!(
            r.cmd(&[cmd, "HELP", "x"]),
            V::Err(format!(
                "ERR wrong number of arguments for '{name}|help' command"
            ))
        );
        assert!(!r.cmd(&[cmd, "HELP"]).arr().is_empty());
    }
    for cmd in ["CX.PUBLISH", "CX.POLICY", "CX.NACK", "CX.DLQ", "CX.CLOCK"] {
        let h = r.cmd(&[cmd, "help"]);
        assert!(
            matches!(&h.arr()[0], V::Simple(l) if l.starts_with(cmd)),
            "{cmd} HELP: {h:?}"
        );
    }
    // Redis 7.4's lag: a tombstone after the group's position makes it nil.
    r.cmd(&["XGROUP", "CREATE", "x", "g", "0"]);
    let groups = r.cmd(&["XINFO", "GROUPS", "x"]);
    let g = format!("{groups:?}");
    assert!(g.contains("\"lag\"), Nil"), "{g}");
    // ENTRIESREAD is taken as given (Redis 8 caps it): the lag goes negative.
    r.cmd(&["XADD", "w", "1-0", "f", "v"]);
    r.cmd(&["XGROUP", "CREATE", "w", "g", "$", "ENTRIESREAD", "100"]);
    let groups = format!("{:?}", r.cmd(&["XINFO", "GROUPS", "w"]));
    assert!(
        groups.contains("Int(100)") && groups.contains("Int(-99)"),
        "{groups}"
    );
}

#[test]
fn xread_plus_returns_the_last_entry_and_blocks_on_an_empty_stream() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    assert_eq!(r.cmd(&["XREAD", "STREAMS", "le", "+"]), V::Nil);
    for i in 1..=3 {
        r.cmd(&["XADD", "le", &format!("{i}-0"), &format!("k{i}"), "v"]);
    }
    let got = r.cmd(&["XREAD", "COUNT", "3", "STREAMS", "le", "+"]);
    assert_eq!(entry_id(&got.arr()[0].arr()[1].arr()[0]), "3-0");
    let got = r.cmd(&["XREAD", "BLOCK", "1000000", "STREAMS", "le", "+"]);
    assert_eq!(entry_id(&got.arr()[0].arr()[1].arr()[0]), "3-0");
    // Blocking on an empty stream waits for the next entry.
    r.cmd(&["DEL", "le"]);
    let h = s.spawn_blocked(&["XREAD", "BLOCK", "20000", "STREAMS", "le", "+"]);
    r.cmd(&["XADD", "le", "1-0", "k1", "v1"]);
    let got = h.join().unwrap();
    assert_eq!(entry_id(&got.arr()[0].arr()[1].arr()[0]), "1-0");
}

#[test]
fn swapdb_moves_streams_and_wakes_blocked_readers() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let ok = V::Simple("OK".into());
    r.cmd(&["SELECT", "9"]);
    r.cmd(&["XADD", "mystream", "666", "f", "v"]);
    r.cmd(&["XGROUP", "CREATE", "mystream", "mygroup", "$"]);
    let h = s.spawn_blocked_in(
        "9",
        &[
            "XREADGROUP",
            "GROUP",
            "mygroup",
            "Alice",
            "BLOCK",
            "0",
            "STREAMS",
            "mystream",
            ">",
        ],
    );
    // Database 4 is empty: after the swap the blocked reader's stream is gone.
    assert_eq!(r.cmd(&["SWAPDB", "4", "9"]), ok);
    let got = h.join().unwrap();
    assert!(
        matches!(&got, V::Err(e) if e.starts_with("NOGROUP")),
        "{got:?}"
    );
    assert_eq!(r.cmd(&["DBSIZE"]), V::Int(0));
    r.cmd(&["SELECT", "4"]);
    assert_eq!(r.cmd(&["XLEN", "mystream"]), V::Int(1));
    // A reader blocked on a key the swap brings in gets its entries.
    let h = s.spawn_blocked_in("9", &["XREAD", "BLOCK", "0", "STREAMS", "mystream", "0-0"]);
    assert_eq!(r.cmd(&["SWAPDB", "9", "4"]), ok);
    let got = h.join().unwrap();
    assert_eq!(entry_id(&got.arr()[0].arr()[1].arr()[0]), "666-0");
    assert_eq!(
        r.cmd(&["SWAPDB", "1", "16"]),
        V::Err("ERR DB index is out of range".into())
    );
    assert_eq!(
        r.cmd(&["SWAPDB", "x", "1"]),
        V::Err("ERR invalid first DB index".into())
    );
}
