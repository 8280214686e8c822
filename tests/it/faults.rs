//! Faults the disk makes: a full disk (a small tmpfs, filled for real) and the broker
//! staying up through it.

use std::path::{Path, PathBuf};

use crate::http::{http, sample};
use crate::support::*;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when it cannot be mounted here (not root).
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, mib: u64) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(self.path())
            .status()
            .expect("mount -o remount");
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes zeros into `path` until the disk refuses (ENOSPC); returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("ballast");
    let block = vec![0u8; 64 << 10];
    let mut n = 0u64;
    // Bounded: a tmpfs of this test is at most a few hundred MiB.
    for _ in 0..100_000 {
        match f.write(&block) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k as u64,
        }
    }
    let _ = f.flush();
    n
}

fn metrics(s: &Server) -> String {
    let (status, text) = http(s.http, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    text
}

/// Waits for the next `cortex:alerts` entry of `kind` after ID `after` (the server holds
/// the read until one comes: XREAD BLOCK); returns its ID and its fields as text.
fn next_alert(r: &mut Raw, after: &str, kind: &str) -> (String, String) {
    let mut from = after.to_string();
    // Bounded: at most 20 other alerts in between, 20 s each.
    for _ in 0..20 {
        let v = r.cmd(&["XREAD", "BLOCK", "20000", "STREAMS", "cortex:alerts", &from]);
        assert_ne!(v, V::Nil, "no {kind} alert within 20 s");
        for e in v.arr()[0].arr()[1].arr() {
            from = entry_id(e);
            let text = format!("{:?}", e.arr()[1]);
            if text.contains(&format!("Bulk(\"{kind}\")")) {
                return (from, text);
            }
        }
    }
    panic!("no {kind} alert among the next 20");
}

fn is_id(v: &V) -> bool {
    matches!(v, V::Bulk(b) if b.contains('-'))
}

#[test]
fn a_full_disk_refuses_new_data_keeps_acks_and_reads_and_recovers_without_a_restart() {
    let Some(fs) = Tmpfs::mount(48) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data: PathBuf = fs.path().join("data");
    let mut s = Server::start_in(&data, &["--disk-free-min", "12MiB"]);
    let mut r = s.raw();
    r.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
    let payload = "x".repeat(64 << 10);
    // 1. Publish until the watermark refuses: every refusal is a clear -DISKFULL.
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..2_000 {
        let v = r.cmd(&["XADD", "s", "*", "i", &i.to_string(), "p", &payload]);
        if is_id(&v) {
            acked.push(v.s().to_string());
        } else {
            refusal = Some(format!("{v:?}"));
            break;
        }
    }
    let refusal = refusal.expect("the watermark never refused a publish");
    assert!(refusal.contains("DISKFULL"), "{refusal}");
    assert!(
        acked.len() > 100,
        "only {} publishes before the refusal",
        acked.len()
    );
    let m = metrics(&s);
    assert_eq!(sample(&m, "cortex_disk_low"), 1.0);
    assert!(sample(&m, "cortex_disk_refused_writes_total") >= 1.0);
    // The mark held: the broker counts what it admits against its last look at the disk and
    // looks again near the mark, so a fast publisher does not run past it between samples.
    let free = sample(&m, "cortex_disk_free_bytes");
    assert!(
        free >= f64::from(6 << 20),
        "{free} bytes free after the refusal"
    );
    // The alert goes out (the broker's own small write passes the watermark).
    let (last_alert, _) = next_alert(&mut r, "0-0", "disk_low");
    // 2. Under the watermark, reads, group reads and acks work.
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(acked.len() as i64));
    let got = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "10",
        "STREAMS",
        "s",
        ">",
    ]);
    assert_eq!(got.arr()[0].arr()[1].arr().len(), 10);
    assert_eq!(r.cmd(&["XACK", "s", "g", &acked[0], &acked[1]]), V::Int(2));

    // 3. Fill the disk for real: commits fail with ENOSPC, fjall poisons its database. The
    // broker stays up, answers a storage error, and keeps serving reads.
    let ballast = fs.path().join("ballast");
    fill(&ballast);
    // Acks first; small writes may still fit the journal's last page, so more small
    // writes (new consumers: metadata the watermark lets through) follow until one fails.
    let mut failed = None;
    let mut unknown = None;
    let mut done = vec![acked[0].clone(), acked[1].clone()];
    for id in &acked[2..10] {
        let v = r.cmd(&["XACK", "s", "g", id]);
        if v.is_err() {
            failed = Some(format!("{v:?}"));
            unknown = Some(id.clone());
            break;
        }
        done.push(id.clone());
    }
    for i in 0..10_000 {
        if failed.is_some() {
            break;
        }
        let v = r.cmd(&["XGROUP", "CREATECONSUMER", "s", "g", &format!("filler-{i}")]);
        if v.is_err() {
            failed = Some(format!("{v:?}"));
        }
    }
    let failed = failed.expect("no write failed on a full disk");
    assert!(failed.contains("storage failure"), "{failed}");
    assert!(s.running());
    assert_eq!(r.cmd(&["PING"]), V::Simple("PONG".into()));
    let all = r.cmd(&["XRANGE", "s", "-", "+"]);
    assert_eq!(all.arr().iter().map(entry_id).collect::<Vec<_>>(), acked);
    assert_eq!(sample(&metrics(&s), "cortex_store_failed"), 1.0);
    assert_eq!(http(s.http, "GET", "/readyz", None, None).0, 503);

    // 4. Space returns (the ballast goes, the volume grows): the store is reopened from its
    // journal without a restart, and publishes are accepted again.
    std::fs::remove_file(&ballast).expect("rm ballast");
    fs.resize(96);
    let (last_alert, _) = next_alert(&mut r, &last_alert, "store_reopened");
    assert_eq!(http(s.http, "GET", "/readyz", None, None).0, 200);
    let m = metrics(&s);
    assert_eq!(sample(&m, "cortex_store_reopens_total"), 1.0);
    assert_eq!(sample(&m, "cortex_store_failed"), 0.0);
    next_alert(&mut r, &last_alert, "disk_ok");
    assert_eq!(sample(&metrics(&s), "cortex_disk_low"), 0.0);
    // The failed ack was not acknowledged (its outcome is unknown to the client): it is
    // sent again, as a client would.
    if let Some(unknown) = unknown {
        let again = r.cmd(&["XACK", "s", "g", &unknown]).int();
        assert!(again <= 1, "{again}");
        done.push(unknown);
    }
    let v = r.cmd(&["XADD", "s", "*", "after", "space"]);
    assert!(is_id(&v), "{v:?}");
    acked.push(v.s().to_string());

    // 5. Nothing acknowledged was lost, acks stay acked, and a crash now keeps it all.
    drop(r);
    s.crash_and_restart();
    let mut r = s.raw();
    let all = r.cmd(&["XRANGE", "s", "-", "+"]);
    assert_eq!(all.arr().iter().map(entry_id).collect::<Vec<_>>(), acked);
    let p = r.cmd(&["XPENDING", "s", "g"]);
    let pending: Vec<&String> = acked[..10].iter().filter(|id| !done.contains(id)).collect();
    assert_eq!(p.arr()[0], V::Int(pending.len() as i64), "{p:?}");
    if let Some(first) = pending.first() {
        assert_eq!(p.arr()[1], b(first));
    }
    drop(r);
    drop(s);
}

/// The largest table file of the store (the entries keyspace's, here).
fn largest_table(data: &Path) -> PathBuf {
    let mut best = (0, PathBuf::new());
    for ks in std::fs::read_dir(data.join("keyspaces")).expect("keyspaces") {
        let tables = ks.expect("dir entry").path().join("tables");
        let Ok(files) = std::fs::read_dir(&tables) else {
            continue;
        };
        for f in files {
            let p = f.expect("dir entry").path();
            let len = std::fs::metadata(&p).expect("metadata").len();
            if len > best.0 {
                best = (len, p);
            }
        }
    }
    assert!(best.0 > 0, "no table files");
    best.1
}

fn verify(data: &Path) -> (i32, Vec<serde_json::Value>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
        .arg("verify")
        .arg(data)
        .output()
        .expect("cortex verify");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[test]
fn flipped_bytes_on_disk_are_reported_with_stream_and_ids_and_never_served() {
    let mut s = Server::start(&[]);
    let mut r = s.raw();
    let payload = "p".repeat(3000);
    let mut ids: std::collections::HashMap<&str, Vec<String>> = Default::default();
    for name in ["a", "b"] {
        for i in 0..150 {
            let v = r.cmd(&["XADD", name, "*", "i", &i.to_string(), "p", &payload]);
            ids.entry(name).or_default().push(v.s().to_string());
        }
    }
    drop(r);
    // A clean stop flushes everything into table files; then flip 16 bytes a quarter into
    // the largest one (inside the first stream's entries) while the server is down.
    assert!(s.terminate().success());
    let data = s.dir.path().to_path_buf();
    let table = largest_table(&data);
    let mut bytes = std::fs::read(&table).unwrap();
    let mid = bytes.len() / 4;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&table, &bytes).unwrap();
    // `cortex verify` names the stream and where its unreadable entries begin.
    let (code, lines) = verify(&data);
    assert_eq!(code, 1, "{lines:?}");
    let first = lines
        .iter()
        .find(|l| {
            l["what"]
                .as_str()
                .is_some_and(|w| w.contains("cannot be read"))
        })
        .unwrap_or_else(|| panic!("no unreadable span in {lines:?}"));
    let damaged = first["damaged"].as_str().unwrap().to_string();
    let from = first["ids"][0].as_str().unwrap().to_string();
    // The span starts right after the last readable entry, inside the stream.
    let (lo, hi) = (
        &ids[damaged.as_str()][0],
        ids[damaged.as_str()].last().unwrap(),
    );
    assert!(
        id_cmp(&from, lo).is_ge() && id_cmp(&from, hi).is_le(),
        "{first}"
    );
    let intact = if damaged == "a" { "b" } else { "a" };

    // The restarted broker finds the same damage by itself and reports it.
    s.restart();
    let mut r = s.raw();
    let (_, alerts) = next_alert(&mut r, "0-0", "store_damage");
    // The count is set before the alert is written.
    assert!(sample(&metrics(&s), "cortex_store_damaged") >= 1.0);
    assert!(
        alerts.contains(&format!("stream '{damaged}'")) && alerts.contains(&from),
        "{alerts}"
    );
    // Nothing damaged is served as data: a read over the block fails, naming the stream.
    match r.cmd(&["XRANGE", &damaged, "-", "+"]) {
        V::Err(e) => assert!(e.contains(&format!("stream '{damaged}'")), "{e}"),
        v => panic!("damaged range served: {v:?}"),
    }
    // The rest is served: the other stream whole, and the damaged stream before the block.
    let all = r.cmd(&["XRANGE", intact, "-", "+"]);
    assert_eq!(
        all.arr().iter().map(entry_id).collect::<Vec<_>>(),
        ids[intact]
    );
    let before: Vec<String> = ids[damaged.as_str()]
        .iter()
        .take_while(|id| id_cmp(id, &from).is_lt())
        .cloned()
        .collect();
    if let Some(last) = before.last() {
        let v = r.cmd(&["XRANGE", &damaged, "-", last]);
        assert_eq!(v.arr().iter().map(entry_id).collect::<Vec<_>>(), before);
    }
    // A group read over the block (it runs in a commit) is refused with the reason; only
    // its batch is: the store is not failed, not reopened, and takes the next writes.
    r.cmd(&["XGROUP", "CREATE", &damaged, "g", "0"]);
    match r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        "1000",
        "STREAMS",
        &damaged,
        ">",
    ]) {
        V::Err(e) => assert!(e.contains("nothing of it was written"), "{e}"),
        other => panic!("damaged entries handed out: {other:?}"),
    }
    assert!(!r.cmd(&["XADD", intact, "*", "after", "damage"]).is_err());
    let m = metrics(&s);
    assert_eq!(sample(&m, "cortex_store_failed"), 0.0);
    assert_eq!(sample(&m, "cortex_store_reopens_total"), 0.0);
}

/// A `--test-faults` server with entry "a" in stream `s` and a group `g` on it, whose next
/// `fault` (`COMMIT` or `SYNC`) fails: the XADD of "failed" that meets it is answered with
/// an error holding `why`, never acknowledged.
fn one_write_failed(fault: &str, why: &str) -> (Server, Raw) {
    let s = Server::start(&["--test-faults"]);
    let mut r = s.raw();
    let a = r.cmd(&["XADD", "s", "*", "k", "a"]);
    assert!(is_id(&a), "{a:?}");
    r.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    assert_eq!(r.cmd(&["CX.FAULT", fault, "1"]), V::Simple("OK".into()));
    match r.cmd(&["XADD", "s", "*", "k", "failed"]) {
        V::Err(e) => assert!(e.contains(why), "{e}"),
        other => panic!("acknowledged a failed write: {other:?}"),
    }
    (s, r)
}

/// After the store was reopened: a write is acknowledged again, the group survived and
/// reads every entry, and the metrics say one reopen and no failure. Returns the stream's
/// values.
fn works_after_the_reopen(s: &Server, r: &mut Raw) -> Vec<String> {
    let b = r.cmd(&["XADD", "s", "*", "k", "b"]);
    assert!(is_id(&b), "{b:?}");
    let values: Vec<String> = r
        .cmd(&["XRANGE", "s", "-", "+"])
        .arr()
        .iter()
        .map(|e| e.arr()[1].arr()[1].s().to_string())
        .collect();
    let got = r.cmd(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]);
    assert_eq!(got.arr()[0].arr()[1].arr().len(), values.len());
    let m = metrics(s);
    assert_eq!(crate::http::sample(&m, "cortex_store_reopens_total"), 1.0);
    assert_eq!(crate::http::sample(&m, "cortex_store_failed"), 0.0);
    values
}

#[test]
fn an_injected_io_error_fails_one_commit_and_the_store_comes_back_without_a_restart() {
    // The commit fails as on a disk answering EIO: not acknowledged, with the reason.
    let (s, mut r) = one_write_failed("COMMIT", "injected I/O error");
    // The store is reopened in place (no restart, this connection stays) and says so.
    next_alert(&mut r, "0-0", "store_reopened");
    assert_eq!(works_after_the_reopen(&s, &mut r), vec!["a", "b"]);
    // Only a server started for it injects faults.
    let plain = Server::start(&[]);
    assert_eq!(
        plain.raw().cmd(&["CX.FAULT", "COMMIT", "1"]),
        V::Err("ERR CX.FAULT needs a server started with --test-faults".into())
    );
}

/// A journal sync fails: the commit it covered is not acknowledged, the store is reopened
/// from its journal without a restart, and reads and writes go on. The failed commit's
/// outcome is unknown to its client, as after a crash (`gathered_answers_wait_for_the_sync_
/// beside_the_next_commit` in `src/core` makes the sync beside the next commit fail).
#[test]
fn a_failed_journal_sync_fails_its_commit_and_the_store_comes_back_without_a_restart() {
    let (s, mut r) = one_write_failed("SYNC", "injected sync error");
    // Until the store is reopened (the disk loop sees the failure, alerts, and wakes the
    // writer), a read after a failed sync beside the next commit is refused rather than
    // answered from a commit that is not known to be durable.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match r.cmd(&["XREAD", "BLOCK", "20000", "STREAMS", "cortex:alerts", "0-0"]) {
            V::Err(e) => assert!(e.contains("sync failed"), "{e}"),
            v if format!("{v:?}").contains("Bulk(\"store_reopened\")") => break,
            _ => {}
        }
        assert!(
            std::time::Instant::now() < until,
            "the store was not reopened"
        );
    }
    // A lone client's commit syncs itself (nothing applied on failure); one synced beside
    // the next commit was applied first (its bytes reached the disk here, so it is back).
    let values = works_after_the_reopen(&s, &mut r);
    assert!(
        values == ["a", "b"] || values == ["a", "failed", "b"],
        "{values:?}"
    );
}

#[test]
fn a_truncated_table_file_is_named_at_start_and_by_verify() {
    let mut s = Server::start(&[]);
    let mut r = s.raw();
    let payload = "p".repeat(3000);
    for i in 0..150 {
        r.cmd(&["XADD", "a", "*", "i", &i.to_string(), "p", &payload]);
    }
    drop(r);
    assert!(s.terminate().success());
    let data = s.dir.path().to_path_buf();
    let table = largest_table(&data);
    let len = std::fs::metadata(&table).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&table)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let rel = table.strip_prefix(&data).unwrap().display().to_string();
    // The broker does not start on it, and says which file and what to do.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args([
            "--resp",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "off")
        .output()
        .expect("cortex serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&rel) && err.contains("(entries"), "{err}");
    assert!(
        err.contains("restore the data directory from a backup"),
        "{err}"
    );
    // cortex verify names the same file.
    let (code, lines) = verify(&data);
    assert_eq!(code, 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["what"].as_str().is_some_and(|w| w.contains(&rel))),
        "{lines:?}"
    );
}

#[test]
fn a_torn_journal_tail_loses_only_the_torn_batch() {
    let mut s = Server::start(&[]);
    let mut r = s.raw();
    let ids: Vec<String> = (0..100)
        .map(|i| {
            r.cmd(&["XADD", "a", "*", "i", &i.to_string()])
                .s()
                .to_string()
        })
        .collect();
    drop(r);
    // Killed: the entries are in the journal only. Tear its last batch in the middle, as a
    // crash during that write would.
    s.kill();
    let data = s.dir.path().to_path_buf();
    let journal = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .max_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
        })
        .expect("a journal");
    let bytes = std::fs::read(&journal).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).expect("journal data") + 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(end as u64 - 10)
        .unwrap();
    s.restart();
    let mut r = s.raw();
    let stored: Vec<String> = r
        .cmd(&["XRANGE", "a", "-", "+"])
        .arr()
        .iter()
        .map(entry_id)
        .collect();
    assert_eq!(
        stored,
        ids[..99].to_vec(),
        "the batches before the tear are whole"
    );
    assert!(is_id(&r.cmd(&["XADD", "a", "*", "i", "after"])));
    assert!(s.terminate().success());
    let (code, lines) = verify(&data);
    assert_eq!(code, 0, "{lines:?}");
}
