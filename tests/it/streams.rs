//! Stream commands against the real server, with Redis's replies and error texts.

use redis::Commands;

use crate::support::*;

#[test]
fn xadd_xrange_xlen_xdel_with_the_redis_crate() {
    let s = Server::start(&[]);
    let mut c = s.redis();
    let id1: String = c.xadd("s", "1-1", &[("a", "1")]).unwrap();
    let id2: String = c.xadd("s", "1-*", &[("b", "2")]).unwrap();
    let id3: String = c.xadd("s", "*", &[("c", "3"), ("d", "4")]).unwrap();
    assert_eq!((id1.as_str(), id2.as_str()), ("1-1", "1-2"));
    assert_eq!(c.xlen::<_, i64>("s").unwrap(), 3);
    let r: redis::streams::StreamRangeReply = c.xrange_all("s").unwrap();
    let ids: Vec<&str> = r.ids.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, vec!["1-1", "1-2", id3.as_str()]);
    assert_eq!(r.ids[2].map.len(), 2);
    let r: redis::streams::StreamRangeReply = c.xrevrange_count("s", "+", "-", 1).unwrap();
    assert_eq!(r.ids[0].id, id3);
    assert_eq!(c.xdel::<_, _, i64>("s", &["1-2", "9-9"]).unwrap(), 1);
    assert_eq!(c.xlen::<_, i64>("s").unwrap(), 2);
}

#[test]
fn xadd_errors_and_options() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    assert_eq!(
        r.cmd(&["XADD", "s", "0-0", "f", "v"]),
        V::Err("ERR The ID specified in XADD must be greater than 0-0".into())
    );
    assert_eq!(r.cmd(&["XADD", "s", "5-5", "f", "v"]), b("5-5"));
    assert_eq!(
        r.cmd(&["XADD", "s", "5-5", "f", "v"]),
        V::Err(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item"
                .into()
        )
    );
    assert_eq!(
        r.cmd(&["XADD", "s", "abc", "f", "v"]),
        V::Err("ERR Invalid stream ID specified as stream command argument".into())
    );
    assert_eq!(
        r.cmd(&["XADD", "s", "*", "f"]),
        V::Err("ERR wrong number of arguments for 'xadd' command".into())
    );
    assert_eq!(
        r.cmd(&["XADD", "nomk", "NOMKSTREAM", "*", "f", "v"]),
        V::Nil
    );
    assert_eq!(r.cmd(&["EXISTS", "nomk"]), V::Int(0));
    assert_eq!(
        r.cmd(&["XADD", "s", "MAXLEN", "1", "MINID", "1", "*", "f", "v"]),
        V::Err(
            "ERR syntax error, MAXLEN and MINID options at the same time are not compatible".into()
        )
    );
    assert_eq!(
        r.cmd(&["XADD", "s", "MAXLEN", "1", "LIMIT", "10", "*", "f", "v"]),
        V::Err("ERR syntax error, LIMIT cannot be used without the special ~ option".into())
    );
    assert_eq!(
        r.cmd(&["XADD", "s", "MAXLEN", "-1", "*", "f", "v"]),
        V::Err("ERR The MAXLEN argument must be >= 0.".into())
    );
    for i in 0..10 {
        r.cmd(&["XADD", "t", "MAXLEN", "=", "3", "*", "i", &i.to_string()]);
    }
    assert_eq!(r.cmd(&["XLEN", "t"]), V::Int(3));
    assert_eq!(
        r.cmd(&["XADD", "s", "MAXLEN", "0", "9-0", "f", "v"]),
        b("9-0")
    );
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(0));
    assert_eq!(
        r.cmd(&["XADD", "s", "9-0", "f", "v"]),
        V::Err(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item"
                .into()
        )
    );
}

#[test]
fn xrange_bounds_count_and_exclusive_ids() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 1..=5 {
        r.cmd(&["XADD", "s", &format!("{i}-0"), "n", &i.to_string()]);
    }
    let ids = |v: V| v.arr().iter().map(entry_id).collect::<Vec<_>>();
    assert_eq!(
        ids(r.cmd(&["XRANGE", "s", "2", "4"])),
        vec!["2-0", "3-0", "4-0"]
    );
    assert_eq!(
        ids(r.cmd(&["XRANGE", "s", "(2-0", "+", "COUNT", "2"])),
        vec!["3-0", "4-0"]
    );
    assert_eq!(
        ids(r.cmd(&["XREVRANGE", "s", "+", "-", "COUNT", "2"])),
        vec!["5-0", "4-0"]
    );
    assert_eq!(
        ids(r.cmd(&["XREVRANGE", "s", "(5-0", "(1"])),
        vec!["4-0", "3-0", "2-0"]
    );
    // Like Redis, an incomplete exclusive end `(5` means below 5-MAX, so 5-0 is in.
    assert_eq!(
        ids(r.cmd(&["XREVRANGE", "s", "(5", "(1"])),
        vec!["5-0", "4-0", "3-0", "2-0"]
    );
    assert_eq!(
        r.cmd(&["XRANGE", "s", "-", "+", "COUNT", "0"]),
        V::Arr(vec![])
    );
    assert_eq!(r.cmd(&["XRANGE", "missing", "-", "+"]), V::Arr(vec![]));
    assert_eq!(
        r.cmd(&["XRANGE", "s", "-", "+", "FOO"]),
        V::Err("ERR syntax error".into())
    );
    assert_eq!(
        r.cmd(&["XRANGE", "s", "x", "+"]),
        V::Err("ERR Invalid stream ID specified as stream command argument".into())
    );
    let e = r.cmd(&["XRANGE", "s", "3", "3"]);
    assert_eq!(
        e,
        V::Arr(vec![V::Arr(vec![b("3-0"), V::Arr(vec![b("n"), b("3")])])])
    );
}

#[test]
fn xtrim_xsetid_and_xinfo_stream() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for i in 1..=10 {
        r.cmd(&["XADD", "s", &format!("{i}-0"), "n", &i.to_string()]);
    }
    assert_eq!(r.cmd(&["XTRIM", "s", "MAXLEN", "7"]), V::Int(3));
    assert_eq!(r.cmd(&["XTRIM", "s", "MINID", "6"]), V::Int(2));
    // `~` removes whole radix-tree nodes only: the five entries left share one 100-entry
    // node, and removing it would exceed LIMIT 2, so nothing goes (as in Redis).
    assert_eq!(
        r.cmd(&["XTRIM", "s", "MAXLEN", "~", "0", "LIMIT", "2"]),
        V::Int(0)
    );
    assert_eq!(r.cmd(&["XTRIM", "s", "MAXLEN", "3"]), V::Int(2));
    assert_eq!(
        r.cmd(&["XTRIM", "s", "FOO", "1"]),
        V::Err("ERR syntax error".into())
    );
    r.cmd(&["XDEL", "s", "9-0"]);
    let info = r.cmd(&["XINFO", "STREAM", "s"]);
    let get = |k: &str| -> V {
        let a = info.arr();
        let i = a
            .iter()
            .position(|v| *v == b(k))
            .unwrap_or_else(|| panic!("no {k} in {info:?}"));
        a[i + 1].clone()
    };
    assert_eq!(get("length"), V::Int(2));
    assert_eq!(get("last-generated-id"), b("10-0"));
    assert_eq!(get("max-deleted-entry-id"), b("9-0"));
    assert_eq!(get("entries-added"), V::Int(10));
    assert_eq!(get("recorded-first-entry-id"), b("8-0"));
    assert_eq!(entry_id(&get("first-entry")), "8-0");
    assert_eq!(entry_id(&get("last-entry")), "10-0");
    assert_eq!(
        r.cmd(&["XSETID", "s", "5-0"]),
        V::Err(
            "ERR The ID specified in XSETID is smaller than current max_deleted_entry_id".into()
        )
    );
    assert_eq!(
        r.cmd(&["XSETID", "s", "9-5"]),
        V::Err("ERR The ID specified in XSETID is smaller than the target stream top item".into())
    );
    assert_eq!(
        r.cmd(&["XSETID", "s", "20-0", "ENTRIESADDED", "1"]),
        V::Err(
            "ERR The entries_added specified in XSETID is smaller than the target stream length"
                .into()
        )
    );
    assert_eq!(
        r.cmd(&[
            "XSETID",
            "s",
            "20-0",
            "ENTRIESADDED",
            "50",
            "MAXDELETEDID",
            "15-0"
        ]),
        V::Simple("OK".into())
    );
    assert_eq!(
        r.cmd(&["XADD", "s", "19-0", "f", "v"]),
        V::Err(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item"
                .into()
        )
    );
    assert_eq!(
        r.cmd(&["XSETID", "missing", "1-0"]),
        V::Err("ERR no such key".into())
    );
    assert_eq!(
        r.cmd(&["XINFO", "STREAM", "missing"]),
        V::Err("ERR no such key".into())
    );
}
