//! Three real `cortex` processes on loopback as one cluster: leaders killed with SIGKILL
//! and paused with SIGSTOP under load, a node that missed thousands of entries catching up
//! through a snapshot. Every loop is bounded in time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Raw, Server, V};

const SECRET: &str = "test-cluster-secret-0123456789";

/// Free UDP ports for the cluster links (they must be known before any node starts).
fn free_udp_ports(n: usize) -> Vec<u16> {
    let socks: Vec<std::net::UdpSocket> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("addr").port())
        .collect()
}

pub struct Cluster {
    pub nodes: Vec<Server>,
    /// Each node's current RESP address (it changes on restart), shared with client threads.
    pub addrs: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Cluster {
    pub fn start(n: usize, config: Option<&str>) -> Cluster {
        let ports = free_udp_ports(n);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut common: Vec<String> = vec!["--cluster-secret".into(), SECRET.into()];
        for (i, p) in ports.iter().enumerate() {
            common.push("--cluster-node".into());
            common.push(format!("{}=127.0.0.1:{p}", i + 1));
        }
        if let Some(text) = config {
            let path = dir.path().join("cortex.toml");
            std::fs::write(&path, text).expect("config");
            common.push("--config".into());
            common.push(path.display().to_string());
        }
        // Started together: each waits for its peers on its own.
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let mut args = common.clone();
                args.push("--node-id".into());
                args.push((i + 1).to_string());
                std::thread::spawn(move || {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    Server::start(&a)
                })
            })
            .collect();
        let nodes: Vec<Server> = handles
            .into_iter()
            .map(|h| h.join().expect("start"))
            .collect();
        let addrs = Arc::new(Mutex::new(nodes.iter().map(|s| s.addr).collect()));
        std::mem::forget(dir);
        Cluster { nodes, addrs }
    }

    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.addrs.lock().unwrap()[i] = self.nodes[i].addr;
    }

    /// `INFO replication` of node `i` as key -> value (None when it does not answer).
    pub fn replication(&self, i: usize) -> Option<BTreeMap<String, String>> {
        if !self.nodes[i].running() {
            return None;
        }
        let mut r = Raw::try_connect(self.nodes[i].addr)?;
        let v = r.try_cmd(&["INFO", "replication"])?;
        Some(
            v.s()
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    /// The index of the leader, once every running node names the same one and it says it
    /// leads (up to 15 s).
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let views: Vec<BTreeMap<String, String>> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].running())
                .filter_map(|i| self.replication(i))
                .collect();
            let running = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].running())
                .count();
            let ids: BTreeSet<&str> = views
                .iter()
                .map(|m| m.get("cluster_leader_id").map_or("none", String::as_str))
                .collect();
            if views.len() == running && ids.len() == 1 {
                if let Some(l) = ids.iter().next().and_then(|x| x.parse::<usize>().ok()) {
                    let i = l - 1;
                    if self
                        .replication(i)
                        .is_some_and(|r| r.get("role").is_some_and(|x| x == "master"))
                    {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader within 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running node applied the same log index as the leader.
    pub fn converge(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let l = self.leader();
            let want = self
                .replication(l)
                .and_then(|r| r.get("cluster_applied_index").cloned());
            let all = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].running())
                .all(|i| {
                    self.replication(i)
                        .and_then(|r| r.get("cluster_applied_index").cloned())
                        == want
                });
            if all && want.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nodes did not converge within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn raw(&self, i: usize) -> Raw {
        Raw::connect(self.nodes[i].addr)
    }
}

/// One publisher per node: XADD with a unique payload; records every acknowledged ID.
fn publishers(
    addrs: &Arc<Mutex<Vec<SocketAddr>>>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(String, String)>>> {
    let n = addrs.lock().unwrap().len();
    (0..n)
        .map(|i| {
            let addrs = addrs.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut k = 0u64;
                let mut conn: Option<Raw> = None;
                while !stop.load(Ordering::Relaxed) {
                    let Some(c) = conn.as_mut() else {
                        let addr = addrs.lock().unwrap()[i];
                        conn = Raw::try_connect(addr);
                        if conn.is_none() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    };
                    k += 1;
                    let payload = format!("n{i}-{k}");
                    match c.try_cmd(&["XADD", "s", "*", "p", &payload]) {
                        Some(V::Bulk(id)) => acked.push((id, payload)),
                        Some(V::Err(_)) => {}
                        Some(other) => panic!("XADD answered {other:?}"),
                        None => conn = None,
                    }
                }
                acked
            })
        })
        .collect()
}

/// Every acknowledged entry is on every running node exactly once, with its payload, in
/// ID order; the nodes hold identical streams.
fn check_stream(c: &Cluster, acked: &[(String, String)]) -> usize {
    let mut first: Option<V> = None;
    for i in 0..c.nodes.len() {
        let all = c.raw(i).cmd(&["XRANGE", "s", "-", "+"]);
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut last = String::new();
        for e in all.arr() {
            let id = e.arr()[0].s().to_string();
            let payload = e.arr()[1].arr()[1].s().to_string();
            assert!(seen.insert(id.clone(), payload).is_none(), "{id} twice");
            last = id;
        }
        let _ = last;
        let payloads: BTreeSet<&String> = seen.values().collect();
        assert_eq!(
            payloads.len(),
            seen.len(),
            "node {i}: a payload appears twice"
        );
        for (id, p) in acked {
            assert_eq!(
                seen.get(id),
                Some(p),
                "node {}: acknowledged {id} ({p}) is missing",
                i + 1
            );
        }
        match &first {
            None => first = Some(all),
            Some(f) => assert!(f == &all, "node {} differs from node 1", i + 1),
        }
    }
    acked.len()
}

#[test]
fn leader_killed_under_load_loses_nothing_acknowledged() {
    let mut c = Cluster::start(3, None);
    let l = c.leader();
    assert_eq!(
        c.raw(l)
            .cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]),
        V::Simple("OK".into())
    );
    let stop = Arc::new(AtomicBool::new(false));
    let pubs = publishers(&c.addrs, &stop);
    // A consumer on a follower: group reads and acks are forwarded to the leader.
    let consumer = {
        let addrs = c.addrs.clone();
        let stop = stop.clone();
        let follower = (l + 1) % 3;
        std::thread::spawn(move || {
            let mut acked: Vec<String> = Vec::new();
            let mut cursor_seen: Vec<String> = Vec::new();
            let mut conn: Option<Raw> = None;
            while !stop.load(Ordering::Relaxed) {
                let Some(r) = conn.as_mut() else {
                    conn = Raw::try_connect(addrs.lock().unwrap()[follower]);
                    if conn.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    continue;
                };
                let Some(v) = r.try_cmd(&[
                    "XREADGROUP",
                    "GROUP",
                    "g",
                    "c1",
                    "COUNT",
                    "50",
                    "STREAMS",
                    "s",
                    ">",
                ]) else {
                    conn = None;
                    continue;
                };
                let V::Arr(streams) = v else { continue };
                let ids: Vec<String> = streams[0].arr()[1]
                    .arr()
                    .iter()
                    .map(|e| e.arr()[0].s().to_string())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                cursor_seen.push(ids.last().cloned().unwrap_or_default());
                let mut cmd = vec!["XACK", "s", "g"];
                cmd.extend(ids.iter().map(String::as_str));
                if let Some(V::Int(n)) = r.try_cmd(&cmd) {
                    assert_eq!(n as usize, ids.len(), "acked fewer than read");
                    acked.extend(ids);
                }
            }
            (acked, cursor_seen)
        })
    };
    let cycles: usize = std::env::var("CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut failovers = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // A random moment under load.
        std::thread::sleep(Duration::from_millis(200 + seed % 500));
        let l = c.leader();
        let before = c.replication((l + 1) % 3).unwrap_or_default();
        let t0 = Instant::now();
        c.nodes[l].kill();
        let next = c.leader();
        assert_ne!(next, l);
        let elected = t0.elapsed();
        // The next acknowledged write, through the new leader.
        let mut r = c.raw(next);
        loop {
            if let V::Bulk(_) = r.cmd(&["XADD", "probe", "*", "k", "v"]) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no write acknowledged 10 s after the kill"
            );
        }
        failovers.push(t0.elapsed());
        eprintln!(
            "kill: leader agreed after {elected:?}, write acknowledged after {:?}",
            t0.elapsed()
        );
        let after = c.replication(next).unwrap_or_default();
        let term = |m: &BTreeMap<String, String>| -> u64 {
            m.get("cluster_term")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0)
        };
        assert!(term(&after) > term(&before), "a new term after the kill");
        c.restart(l);
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, String)> = pubs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let (acks, cursors) = consumer.join().unwrap();
    c.converge();
    let n = check_stream(&c, &acked);
    assert!(n > 50, "only {n} writes were acknowledged");
    // Acknowledged acks stay acknowledged; the group's cursor never moved back.
    for i in 0..3 {
        let mut r = c.raw(i);
        let pending = r.cmd(&["XPENDING", "s", "g", "-", "+", "1000000"]);
        let pending: BTreeSet<String> = pending
            .arr()
            .iter()
            .map(|e| e.arr()[0].s().to_string())
            .collect();
        for a in &acks {
            assert!(
                !pending.contains(a),
                "node {}: acked {a} is pending again",
                i + 1
            );
        }
        let groups = r.cmd(&["XINFO", "GROUPS", "s"]);
        let g = groups.arr()[0].arr();
        let pos = g
            .iter()
            .position(|x| matches!(x, V::Bulk(s) | V::Simple(s) if s == "last-delivered-id"))
            .unwrap();
        let last = g[pos + 1].s().to_string();
        if let Some(max) = cursors.iter().max_by(|a, b| id_cmp(a, b)) {
            assert!(
                id_cmp(&last, max).is_ge(),
                "node {}: cursor {last} behind {max}",
                i + 1
            );
        }
    }
    let mut ms: Vec<u128> = failovers.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    eprintln!(
        "cluster: {cycles} leader kills, {n} acknowledged entries checked on 3 nodes, {} acks; failover ms {ms:?}",
        acks.len()
    );
}

fn id_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let p = |s: &str| -> (u64, u64) {
        let (m, q) = s.split_once('-').unwrap_or((s, "0"));
        (m.parse().unwrap_or(0), q.parse().unwrap_or(0))
    };
    p(a).cmp(&p(b))
}

#[test]
fn a_node_that_missed_thousands_of_entries_catches_up_through_a_snapshot() {
    let mut c = Cluster::start(3, Some("[cluster]\nsnapshot_logs = 20\nlogs_kept = 5\n"));
    let l = c.leader();
    let down = (l + 1) % 3;
    c.nodes[down].kill();
    let mut r = c.raw(l);
    assert_eq!(
        r.cmd(&["XGROUP", "CREATE", "s", "g", "0", "MKSTREAM"]),
        V::Simple("OK".into())
    );
    // Thousands of entries in many log entries (one per pipeline), group reads and acks.
    for round in 0..30 {
        let cmds: Vec<Vec<String>> = (0..100)
            .map(|k| {
                vec![
                    "XADD".into(),
                    "s".into(),
                    "*".into(),
                    "k".into(),
                    format!("{round}-{k}"),
                ]
            })
            .collect();
        for v in r.pipeline(&cmds) {
            assert!(matches!(v, V::Bulk(_)), "{v:?}");
        }
        let v = r.cmd(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "60",
            "STREAMS",
            "s",
            ">",
        ]);
        let ids: Vec<String> = v.arr()[0].arr()[1]
            .arr()
            .iter()
            .map(|e| e.arr()[0].s().to_string())
            .collect();
        let mut cmd = vec!["XACK", "s", "g"];
        cmd.extend(ids.iter().take(40).map(String::as_str));
        assert_eq!(r.cmd(&cmd), V::Int(40));
    }
    let rep = c.replication(l).unwrap();
    let purged: i64 = rep["cluster_purged_index"].parse().unwrap();
    assert!(
        purged > 0,
        "the leader purged its log behind a snapshot: {rep:?}"
    );
    c.restart(down);
    c.converge();
    let rep = c.replication(down).unwrap();
    let snap: i64 = rep["cluster_snapshot_index"].parse().unwrap();
    assert!(snap > 0, "the rejoined node holds a snapshot: {rep:?}");
    // All three stores are identical.
    let views: Vec<Vec<V>> = (0..3)
        .map(|i| {
            let mut r = c.raw(i);
            vec![
                r.cmd(&["XRANGE", "s", "-", "+"]),
                r.cmd(&["XINFO", "STREAM", "s", "FULL"]),
                // Without the idle time, which each node computes from its own clock.
                V::Arr(
                    r.cmd(&["XPENDING", "s", "g", "-", "+", "100000"])
                        .arr()
                        .iter()
                        .map(|e| {
                            let e = e.arr();
                            V::Arr(vec![e[0].clone(), e[1].clone(), e[3].clone()])
                        })
                        .collect(),
                ),
            ]
        })
        .collect();
    assert_eq!(views[0][0].arr().len(), 3000);
    for i in 1..3 {
        for (k, what) in ["XRANGE", "XINFO STREAM FULL", "XPENDING"]
            .iter()
            .enumerate()
        {
            assert!(
                views[0][k] == views[i][k],
                "{what} differs between node 1 and node {}:\n{:?}\n{:?}",
                i + 1,
                views[0][k],
                views[i][k]
            );
        }
    }
}

#[test]
fn a_paused_leader_is_replaced_and_rejoins_as_a_follower() {
    let c = Cluster::start(3, None);
    let l = c.leader();
    let mut r = c.raw(l);
    assert!(matches!(
        r.cmd(&["XADD", "s", "*", "k", "before"]),
        V::Bulk(_)
    ));
    let pid = c.nodes[l].pid().unwrap().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    // The others elect a leader of their own and take writes.
    let deadline = Instant::now() + Duration::from_secs(15);
    let next = loop {
        let found = (0..3)
            .filter(|i| *i != l)
            .find(|i| c.replication(*i).is_some_and(|m| m["role"] == "master"));
        if let Some(n) = found {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader while the old one is paused"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(matches!(
        c.raw(next).cmd(&["XADD", "s", "*", "k", "during"]),
        V::Bulk(_)
    ));
    signal("-CONT");
    // The old leader learns the new term and follows; all agree.
    c.converge();
    let m = c.replication(l).unwrap();
    assert_eq!(m["role"], "slave", "{m:?}");
    let all: Vec<V> = (0..3)
        .map(|i| c.raw(i).cmd(&["XRANGE", "s", "-", "+"]))
        .collect();
    assert_eq!(all[0].arr().len(), 2);
    assert!(all[0] == all[1] && all[1] == all[2]);
}
