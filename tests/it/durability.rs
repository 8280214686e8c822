//! Restarts: everything acknowledged survives a SIGKILL; SIGTERM exits 0 after persisting.

use crate::support::*;

#[test]
fn crash_keeps_acknowledged_entries_and_pending_lists() {
    let mut s = Server::start(&["--fsync", "always"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(
            r.cmd(&["XADD", "s", "*", "i", &i.to_string()])
                .s()
                .to_string(),
        );
    }
    let got = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "50",
        "STREAMS",
        "s",
        ">",
    ]);
    assert_eq!(got.arr()[0].arr()[1].arr().len(), 50);
    r.cmd(&["XACK", "s", "g", &ids[0], &ids[1]]);
    drop(r);
    s.crash_and_restart();
    let mut r = s.raw();
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(200));
    let all = r.cmd(&["XRANGE", "s", "-", "+"]);
    let got_ids: Vec<String> = all.arr().iter().map(entry_id).collect();
    assert_eq!(got_ids, ids);
    let p = r.cmd(&["XPENDING", "s", "g"]);
    assert_eq!(p.arr()[0], V::Int(48));
    assert_eq!(p.arr()[1], b(&ids[2]));
    // The group continues where it was.
    let next = r.cmd(&[
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
    assert_eq!(entry_id(&next.arr()[0].arr()[1].arr()[0]), ids[50]);
}

/// A new journal's blocks are written ahead of the writer by a background thread once the
/// writer is past its first MiB, while the writer is idle (vendor/fjall's
/// `journal/prefill.rs`: 10 ms without a sync). A SIGKILL once that thread has written
/// (`cortex_journal_written_ahead_bytes` moved), and another one later (the reopened journal
/// is appended to, not filled), keep every acknowledged entry.
#[test]
fn crash_while_the_journal_is_filled_ahead_keeps_acknowledged_entries() {
    let mut s = Server::start(&["--fsync", "always"]);
    // Incompressible: fjall compresses a journal entry this large, and 8 KiB of one letter
    // would leave the journal under its first MiB, where the filler never starts.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let payload: String = (0..8 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let mut ids = Vec::new();
    for round in 0..2 {
        let mut r = s.raw();
        // 300 x 8 KiB: well past the first MiB of the journal.
        for i in 0..300 {
            let v = r.cmd(&[
                "XADD",
                "s",
                "*",
                "i",
                &format!("{round}-{i}"),
                "p",
                &payload,
            ]);
            ids.push(v.s().to_string());
        }
        drop(r);
        if round == 0 {
            // The kill lands once the filler has written (the writer is idle now); the
            // journal reopened in the second round is never filled.
            wait_until(|| {
                let (_, text) = crate::http::http(s.http, "GET", "/metrics", None, None);
                if crate::http::sample(&text, "cortex_journal_written_ahead_bytes_total") > 0.0 {
                    Ok(())
                } else {
                    Err("nothing written ahead of the journal".into())
                }
            });
        }
        s.crash_and_restart();
        let mut r = s.raw();
        assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(ids.len() as i64));
        let all = r.cmd(&["XRANGE", "s", "-", "+"]);
        let got: Vec<String> = all.arr().iter().map(entry_id).collect();
        assert_eq!(got, ids);
        let last = r.cmd(&["XREVRANGE", "s", "+", "-", "COUNT", "1"]);
        let fields = last.arr()[0].arr()[1].arr();
        assert_eq!(fields[3], b(&payload));
    }
}

#[test]
fn sigterm_exits_zero_and_buffered_writes_survive() {
    let mut s = Server::start(&["--fsync", "no"]);
    let mut r = s.raw();
    for i in 0..100 {
        r.cmd(&["XADD", "s", "*", "i", &i.to_string()]);
    }
    drop(r);
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
    s.restart();
    let mut r = s.raw();
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(100));
}
