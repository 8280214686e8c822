//! The generic commands tools and clients send.

use crate::support::*;

#[test]
fn keys_databases_and_renames() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    for k in ["a", "b", "cortex:x"] {
        r.cmd(&["XADD", k, "*", "f", "v"]);
    }
    assert_eq!(r.cmd(&["DBSIZE"]), V::Int(3));
    assert_eq!(r.cmd(&["EXISTS", "a", "a", "nope"]), V::Int(2));
    assert_eq!(r.cmd(&["TYPE", "a"]), V::Simple("stream".into()));
    assert_eq!(r.cmd(&["TYPE", "nope"]), V::Simple("none".into()));
    assert_eq!(r.cmd(&["KEYS", "cortex:*"]), V::Arr(vec![b("cortex:x")]));
    // SCAN visits every key exactly once.
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let v = r.cmd(&["SCAN", &cursor, "COUNT", "1"]);
        cursor = v.arr()[0].s().to_string();
        seen.extend(v.arr()[1].arr().iter().map(|k| k.s().to_string()));
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["a", "b", "cortex:x"]);
    assert_eq!(r.cmd(&["RENAME", "a", "z"]), V::Simple("OK".into()));
    assert_eq!(r.cmd(&["RENAMENX", "b", "z"]), V::Int(0));
    assert_eq!(
        r.cmd(&["RENAME", "nope", "y"]),
        V::Err("ERR no such key".into())
    );
    // Databases are separate namespaces.
    assert_eq!(r.cmd(&["SELECT", "3"]), V::Simple("OK".into()));
    assert_eq!(r.cmd(&["DBSIZE"]), V::Int(0));
    r.cmd(&["XADD", "a", "*", "f", "v"]);
    assert_eq!(
        r.cmd(&["SELECT", "16"]),
        V::Err("ERR DB index is out of range".into())
    );
    assert_eq!(r.cmd(&["FLUSHDB"]), V::Simple("OK".into()));
    assert_eq!(r.cmd(&["DBSIZE"]), V::Int(0));
    r.cmd(&["SELECT", "0"]);
    assert_eq!(r.cmd(&["DBSIZE"]), V::Int(3));
    assert_eq!(r.cmd(&["DEL", "z", "b", "nope"]), V::Int(2));
    assert_eq!(r.cmd(&["FLUSHALL"]), V::Simple("OK".into()));
    assert_eq!(r.cmd(&["DBSIZE"]), V::Int(0));
    assert!(r.cmd(&["INFO", "keyspace"]).s().contains("# Keyspace"));
}

#[test]
fn multi_exec_discard() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    assert_eq!(r.cmd(&["MULTI"]), V::Simple("OK".into()));
    assert_eq!(
        r.cmd(&["XADD", "s", "1-0", "f", "v"]),
        V::Simple("QUEUED".into())
    );
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Simple("QUEUED".into()));
    assert_eq!(
        r.cmd(&["MULTI"]),
        V::Err("ERR MULTI calls can not be nested".into())
    );
    assert_eq!(r.cmd(&["EXEC"]), V::Arr(vec![b("1-0"), V::Int(1)]));
    assert_eq!(r.cmd(&["EXEC"]), V::Err("ERR EXEC without MULTI".into()));
    r.cmd(&["MULTI"]);
    r.cmd(&["XADD", "s", "2-0", "f", "v"]);
    assert_eq!(r.cmd(&["DISCARD"]), V::Simple("OK".into()));
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(1));
    r.cmd(&["MULTI"]);
    assert!(r.cmd(&["NOSUCHCMD"]).is_err());
    assert_eq!(
        r.cmd(&["EXEC"]),
        V::Err("EXECABORT Transaction discarded because of previous errors.".into())
    );
    // Blocking reads inside a transaction do not block.
    r.cmd(&["MULTI"]);
    r.cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    assert_eq!(r.cmd(&["EXEC"]), V::Arr(vec![V::Nil]));
}

#[test]
fn client_command_info_config_function() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let id = r.cmd(&["CLIENT", "ID"]).int();
    assert_eq!(r.cmd(&["CLIENT", "GETNAME"]), V::Nil);
    assert_eq!(
        r.cmd(&["CLIENT", "SETNAME", "harold"]),
        V::Simple("OK".into())
    );
    assert_eq!(r.cmd(&["CLIENT", "GETNAME"]), b("harold"));
    assert!(r.cmd(&["CLIENT", "SETNAME", "bad name"]).is_err());
    assert_eq!(
        r.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "tests"]),
        V::Simple("OK".into())
    );
    let list = r.cmd(&["CLIENT", "LIST"]);
    assert!(
        list.s().contains(&format!("id={id} "))
            && list.s().contains("name=harold")
            && list.s().contains("lib-name=tests"),
        "{list:?}"
    );
    // RESET forgets the name: CLIENT LIST shows the change, as it showed the setting.
    assert_eq!(r.cmd(&["RESET"]), V::Simple("RESET".into()));
    let list = r.cmd(&["CLIENT", "LIST"]);
    assert!(
        list.s().contains(&format!("id={id} ")) && list.s().contains(" name= "),
        "{list:?}"
    );
    assert!(r.cmd(&["COMMAND", "COUNT"]).int() >= 40);
    let info = r.cmd(&["COMMAND", "INFO", "xadd"]);
    assert_eq!(info.arr()[0].arr()[0], b("xadd"));
    assert_eq!(info.arr()[0].arr()[1], V::Int(-5));
    assert!(matches!(r.cmd(&["COMMAND", "DOCS", "xadd"]), V::Arr(_)));
    r.cmd(&["XADD", "s", "*", "f", "v"]);
    let all = r.cmd(&["INFO", "all"]).s().to_string();
    for section in [
        "# Server",
        "# Clients",
        "# Stats",
        "# Commandstats",
        "# Errorstats",
        "# Keyspace",
        "redis_version:7",
    ] {
        assert!(all.contains(section), "INFO lacks {section}");
    }
    assert!(all.contains("cmdstat_xadd:calls=1"), "{all}");
    assert_eq!(
        r.cmd(&["CONFIG", "GET", "appendfsync"]),
        V::Arr(vec![b("appendfsync"), b("always")])
    );
    assert!(r.cmd(&["CONFIG", "SET", "appendfsync", "no"]).is_err());
    assert_eq!(
        r.cmd(&["CONFIG", "SET", "stream-node-max-entries", "2"]),
        V::Simple("OK".into())
    );
    assert_eq!(
        r.cmd(&["CONFIG", "GET", "stream-node-max-entries"]),
        V::Arr(vec![b("stream-node-max-entries"), b("2")])
    );
    assert_eq!(r.cmd(&["FUNCTION", "FLUSH"]), V::Simple("OK".into()));
    assert_eq!(r.cmd(&["ECHO", "hi"]), b("hi"));
    assert_eq!(r.cmd(&["PING", "x"]), b("x"));
    r.cmd(&["SELECT", "2"]);
    assert_eq!(r.cmd(&["RESET"]), V::Simple("RESET".into()));
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(1), "RESET went back to db 0");
    assert_eq!(r.cmd(&["QUIT"]), V::Simple("OK".into()));
    assert!(r.closed());
}

fn commits(r: &mut Raw) -> u64 {
    let info = r.cmd(&["INFO", "stats"]);
    let line = info
        .s()
        .lines()
        .find(|l| l.starts_with("cortex_commits:"))
        .expect("cortex_commits");
    line["cortex_commits:".len()..]
        .trim()
        .parse()
        .expect("number")
}

#[test]
fn exec_and_pipelines_share_one_commit() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    // A transaction of 2000 XADDs is one atomic commit.
    let before = commits(&mut r);
    r.cmd(&["MULTI"]);
    for i in 0..2000 {
        assert_eq!(
            r.cmd(&["XADD", "s", "*", "item", &i.to_string()]),
            V::Simple("QUEUED".into())
        );
    }
    let ids = r.cmd(&["EXEC"]);
    assert_eq!(commits(&mut r), before + 1);
    assert_eq!(ids.arr().len(), 2000);
    let all = r.cmd(&["XRANGE", "s", "-", "+"]);
    assert_eq!(all.arr().len(), 2000);
    assert_eq!(all.arr()[1999].arr()[1], V::Arr(vec![b("item"), b("1999")]));
    // A pipeline of XADDs with a bad one in the middle: each gets its own reply, in order.
    let mut batch = Vec::new();
    for i in 0..100 {
        let id = if i == 50 {
            "0-0".to_string()
        } else {
            "*".to_string()
        };
        let v = i.to_string();
        batch.extend_from_slice(
            format!(
                "*5\r\n$4\r\nXADD\r\n$1\r\np\r\n${}\r\n{id}\r\n$1\r\nf\r\n${}\r\n{v}\r\n",
                id.len(),
                v.len()
            )
            .as_bytes(),
        );
    }
    let before = commits(&mut r);
    r.send(&batch);
    for i in 0..100 {
        let reply = r.read();
        if i == 50 {
            assert_eq!(
                reply,
                V::Err("ERR The ID specified in XADD must be greater than 0-0".into())
            );
        } else {
            assert!(matches!(reply, V::Bulk(_)), "{i}: {reply:?}");
        }
    }
    assert!(
        commits(&mut r) - before < 100,
        "pipelined XADDs share commits"
    );
    assert_eq!(r.cmd(&["XLEN", "p"]), V::Int(99));
}
