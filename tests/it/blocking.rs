//! Blocked reads are woken by appends (never by polling), time out with nil, and are
//! released with Redis's errors when their stream or group goes away.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn xread_block_is_woken_by_xadd() {
    let s = Server::start(&[]);
    // Returns once the server reports the reader blocked: no sleeping and hoping.
    let waiter = s.spawn_blocked(&["XREAD", "BLOCK", "10000", "STREAMS", "s", "$"]);
    let mut w = s.raw();
    w.cmd(&["XADD", "s", "7-0", "f", "v"]);
    // An entry, not the nil of a timeout: the append woke it.
    let v = waiter.join().unwrap();
    assert_eq!(entry_id(&v.arr()[0].arr()[1].arr()[0]), "7-0");
}

#[test]
fn xreadgroup_block_wakes_times_out_and_is_released() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
    // Timeout: nil.
    let t = Instant::now();
    assert_eq!(
        r.cmd(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "200",
            "STREAMS",
            "s",
            ">"
        ]),
        V::Nil
    );
    assert!(t.elapsed() >= Duration::from_millis(190));
    // Woken by an append from another client.
    let waiter = s.spawn_blocked(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    r.cmd(&["XADD", "s", "1-0", "f", "v"]);
    let v = waiter.join().unwrap();
    assert_eq!(entry_id(&v.arr()[0].arr()[1].arr()[0]), "1-0");
    // Group destroyed while blocked: NOGROUP.
    let waiter = s.spawn_blocked(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    r.cmd(&["XGROUP", "DESTROY", "s", "g"]);
    let v = waiter.join().unwrap();
    assert!(v.s().starts_with("NOGROUP"), "{v:?}");
    // Stream deleted while blocked: NOGROUP (the command runs again and finds no group).
    r.cmd(&["XGROUP", "CREATE", "s", "g2", "$"]);
    let waiter = s.spawn_blocked(&[
        "XREADGROUP",
        "GROUP",
        "g2",
        "c",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    assert_eq!(r.cmd(&["DEL", "s"]), V::Int(1));
    let v = waiter.join().unwrap();
    assert_eq!(
        v,
        V::Err(
            "NOGROUP No such key 's' or consumer group 'g2' in XREADGROUP with GROUP option".into()
        )
    );
}

#[test]
fn blocked_clients_show_in_info_and_many_waiters_all_wake() {
    let s = Server::start(&[]);
    let addr = s.addr;
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut r = Raw::connect(addr);
                r.cmd(&["XREAD", "BLOCK", "10000", "STREAMS", "s", "$"])
            })
        })
        .collect();
    let mut r = s.raw();
    wait_until(|| {
        let info = r.cmd(&["INFO", "clients"]);
        if info.s().contains("blocked_clients:8") {
            Ok(())
        } else {
            Err(format!("8 clients never showed as blocked: {info:?}"))
        }
    });
    r.cmd(&["XADD", "s", "*", "f", "v"]);
    for w in waiters {
        assert_eq!(w.join().unwrap().arr().len(), 1);
    }
}
