//! Consumer groups: XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM, XINFO.

use crate::support::*;

fn ids(v: &V) -> Vec<String> {
    // [[key, [entries...]]]
    v.arr()[0].arr()[1].arr().iter().map(entry_id).collect()
}

#[test]
fn group_lifecycle_and_errors() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    assert_eq!(
        r.cmd(&["XGROUP", "CREATE", "s", "g", "$"]),
        V::Err("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.".into())
    );
    assert_eq!(
        r.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]),
        V::Simple("OK".into())
    );
    assert_eq!(
        r.cmd(&["XGROUP", "CREATE", "s", "g", "$"]),
        V::Err("BUSYGROUP Consumer Group name already exists".into())
    );
    assert_eq!(
        r.cmd(&["XGROUP", "SETID", "s", "nope", "0"]),
        V::Err("NOGROUP No such consumer group 'nope' for key name 's'".into())
    );
    assert_eq!(
        r.cmd(&["XGROUP", "CREATECONSUMER", "s", "g", "c1"]),
        V::Int(1)
    );
    assert_eq!(
        r.cmd(&["XGROUP", "CREATECONSUMER", "s", "g", "c1"]),
        V::Int(0)
    );
    assert_eq!(
        r.cmd(&["XREADGROUP", "GROUP", "nope", "c", "STREAMS", "s", ">"]),
        V::Err(
            "NOGROUP No such key 's' or consumer group 'nope' in XREADGROUP with GROUP option"
                .into()
        )
    );
    assert!(r
        .cmd(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "$"])
        .s()
        .contains("The $ ID is meaningless"));
    assert_eq!(
        r.cmd(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]),
        V::Nil
    );
    assert_eq!(r.cmd(&["XGROUP", "DESTROY", "s", "g"]), V::Int(1));
    assert_eq!(r.cmd(&["XGROUP", "DESTROY", "s", "g"]), V::Int(0));
    assert!(r.cmd(&["XGROUP", "HELP"]).arr().len() > 5);
}

#[test]
fn read_ack_pending_claim() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 1..=5 {
        r.cmd(&["XADD", "s", &format!("{i}-0"), "n", &i.to_string()]);
    }
    r.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    let got = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "COUNT",
        "2",
        "STREAMS",
        "s",
        ">",
    ]);
    assert_eq!(ids(&got), vec!["1-0", "2-0"]);
    let got = r.cmd(&["XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">"]);
    assert_eq!(ids(&got), vec!["3-0", "4-0", "5-0"]);
    // Summary form.
    let p = r.cmd(&["XPENDING", "s", "g"]);
    assert_eq!(
        p,
        V::Arr(vec![
            V::Int(5),
            b("1-0"),
            b("5-0"),
            V::Arr(vec![
                V::Arr(vec![b("alice"), b("2")]),
                V::Arr(vec![b("bob"), b("3")])
            ])
        ])
    );
    assert_eq!(r.cmd(&["XACK", "s", "g", "1-0", "3-0", "1-0"]), V::Int(2));
    assert_eq!(r.cmd(&["XACK", "s", "nogroup", "1-0"]), V::Int(0));
    // Extended form.
    let p = r.cmd(&["XPENDING", "s", "g", "-", "+", "10", "bob"]);
    let ids_p: Vec<&str> = p.arr().iter().map(|e| e.arr()[0].s()).collect();
    assert_eq!(ids_p, vec!["4-0", "5-0"]);
    assert_eq!(p.arr()[0].arr()[1], b("bob"));
    assert_eq!(p.arr()[0].arr()[3], V::Int(1));
    assert_eq!(
        r.cmd(&["XPENDING", "s", "nope"]),
        V::Err("NOGROUP No such key 's' or consumer group 'nope'".into())
    );
    // History read of alice's own pending entries.
    let h = r.cmd(&["XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0"]);
    assert_eq!(ids(&h), vec!["2-0"]);
    // XCLAIM with JUSTID, then XAUTOCLAIM.
    let c = r.cmd(&["XCLAIM", "s", "g", "carol", "0", "4-0", "JUSTID"]);
    assert_eq!(c, V::Arr(vec![b("4-0")]));
    let a = r.cmd(&["XAUTOCLAIM", "s", "g", "dave", "0", "0", "COUNT", "1"]);
    assert_eq!(a.arr()[0], b("4-0"));
    assert_eq!(entry_id(&a.arr()[1].arr()[0]), "2-0");
    assert_eq!(a.arr()[2], V::Arr(vec![]));
    // Entries deleted while pending: XAUTOCLAIM reports and drops them.
    r.cmd(&["XDEL", "s", "5-0"]);
    let a = r.cmd(&[
        "XAUTOCLAIM",
        "s",
        "g",
        "dave",
        "0",
        "0",
        "COUNT",
        "10",
        "JUSTID",
    ]);
    assert_eq!(a.arr()[0], b("0-0"));
    assert_eq!(a.arr()[2], V::Arr(vec![b("5-0")]));
    assert_eq!(r.cmd(&["XPENDING", "s", "g"]).arr()[0], V::Int(2));
}

#[test]
fn xinfo_groups_and_consumers() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 1..=3 {
        r.cmd(&["XADD", "s", &format!("{i}-0"), "n", "x"]);
    }
    r.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
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
    let g = r.cmd(&["XINFO", "GROUPS", "s"]);
    let g0 = g.arr()[0].arr();
    let field = |k: &str| g0[g0.iter().position(|v| *v == b(k)).unwrap() + 1].clone();
    assert_eq!(field("name"), b("g"));
    assert_eq!(field("consumers"), V::Int(1));
    assert_eq!(field("pending"), V::Int(1));
    assert_eq!(field("last-delivered-id"), b("1-0"));
    assert_eq!(field("entries-read"), V::Int(1));
    assert_eq!(field("lag"), V::Int(2));
    let c = r.cmd(&["XINFO", "CONSUMERS", "s", "g"]);
    let c0 = c.arr()[0].arr();
    assert_eq!(c0[0], b("name"));
    assert_eq!(c0[1], b("c"));
    assert_eq!(c0[3], V::Int(1));
    let full = r.cmd(&["XINFO", "STREAM", "s", "FULL"]);
    assert!(format!("{full:?}").contains("pel-count"));
    assert_eq!(
        r.cmd(&["XINFO", "CONSUMERS", "s", "nope"]),
        V::Err("NOGROUP No such consumer group 'nope' for key name 's'".into())
    );
}

#[test]
fn redis_suite_details() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    // XAUTOCLAIM: deleted entries count toward COUNT (Redis's "XAUTOCLAIM with XDEL and count").
    for i in 1..=3 {
        r.cmd(&["XADD", "x", &format!("{i}-0"), "f", "v"]);
    }
    r.cmd(&["XGROUP", "CREATE", "x", "grp", "0"]);
    r.cmd(&["XREADGROUP", "GROUP", "grp", "Alice", "STREAMS", "x", ">"]);
    r.cmd(&["XDEL", "x", "1-0"]);
    r.cmd(&["XDEL", "x", "2-0"]);
    assert_eq!(
        r.cmd(&["XAUTOCLAIM", "x", "grp", "Bob", "0", "0-0", "COUNT", "1"]),
        V::Arr(vec![b("2-0"), V::Arr(vec![]), V::Arr(vec![b("1-0")])])
    );
    assert_eq!(
        r.cmd(&["XAUTOCLAIM", "x", "grp", "Bob", "0", "2-0", "COUNT", "1"]),
        V::Arr(vec![b("3-0"), V::Arr(vec![]), V::Arr(vec![b("2-0")])])
    );
    assert_eq!(
        r.cmd(&["XAUTOCLAIM", "k", "g", "c", "1", "1", "COUNT", "0"]),
        V::Err("ERR COUNT must be > 0".into())
    );
    // SETID accepts `-` (PEL NACK reassignment after XGROUP SETID).
    assert_eq!(
        r.cmd(&["XGROUP", "SETID", "x", "grp", "-"]),
        V::Simple("OK".into())
    );
    let got = r.cmd(&["XREADGROUP", "GROUP", "grp", "c2", "STREAMS", "x", ">"]);
    assert_eq!(ids(&got), vec!["3-0"]);
    assert_eq!(
        r.cmd(&["XREADGROUP", "GROUP", "grp", "Alice", "COUNT", "1", "STREAMS", "x"]),
        V::Err("ERR Unbalanced 'xreadgroup' list of streams: for each stream key an ID or '>' must be specified.".into())
    );
    // RENAME onto a key wakes readers blocked on it.
    r.cmd(&["XGROUP", "CREATE", "dst", "g", "$", "MKSTREAM"]);
    let waiter = s.spawn_blocked(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "BLOCK",
        "0",
        "STREAMS",
        "dst",
        ">",
    ]);
    r.cmd(&["XGROUP", "CREATE", "src", "g", "$", "MKSTREAM"]);
    r.cmd(&["XADD", "src", "100", "f1", "v1"]);
    assert_eq!(r.cmd(&["RENAME", "src", "dst"]), V::Simple("OK".into()));
    let v = waiter.join().unwrap();
    assert_eq!(entry_id(&v.arr()[0].arr()[1].arr()[0]), "100-0");
    assert!(r
        .cmd(&["INFO", "stats"])
        .s()
        .contains("total_error_replies:"));
}
