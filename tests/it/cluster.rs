//! Three real `cortex` processes on loopback as one cluster: leaders killed with SIGKILL
//! and paused with SIGSTOP under load, a node that missed thousands of entries catching up
//! through a snapshot. Every loop is bounded in time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::support::{
    id_cmp, last_delivered, lease_ports, read_ids, PortLease, Raw, Server, IO_BOUND, V,
};

const SECRET: &str = "test-cluster-secret-0123456789";

/// Raft timing for test clusters. The defaults (50 ms heartbeats, 150-300 ms elections) are
/// for an idle LAN; three debug builds on two loaded cores (a second suite, CPU hogs, fsync
/// writers) miss a 150 ms election timeout now and then, and the leader a test just found
/// is deposed under it (seen by scripts/flake-hunt: an XADD to the leader refused right
/// after start). A leader stalled a whole second is not a scheduling hiccup; the tests that
/// kill, pause and cut off leaders still see elections, a second or two later.
const TIMING: &str =
    "heartbeat_ms = 100\nelection_timeout_min_ms = 1000\nelection_timeout_max_ms = 2000\n";

/// `config` with [`TIMING`] in its `[cluster]` section (one is added if it has none).
fn with_timing(config: Option<&str>) -> String {
    let text = config.unwrap_or("");
    match text.find("[cluster]\n") {
        Some(at) => {
            let end = at + "[cluster]\n".len();
            format!("{}{TIMING}{}", &text[..end], &text[end..])
        }
        None => format!("{text}\n[cluster]\n{TIMING}"),
    }
}

pub struct Cluster {
    pub nodes: Vec<Server>,
    /// Each node's current RESP address (it changes on restart), shared with client threads.
    pub board: Arc<Board>,
    /// `AUTH` arguments, when the nodes need them (bound to non-loopback addresses).
    auth: Option<[&'static str; 2]>,
    net: Option<Netns>,
    /// Holds the config file the nodes read at every (re)start.
    _dir: tempfile::TempDir,
    /// The nodes' cluster ports, held for as long as the cluster lives (nodes restart).
    _ports: Option<PortLease>,
}

/// Three network namespaces on one bridge (root needed): node `i` at `10.213.X.(i+1)`,
/// the test (root namespace) at `.254`. Cutting a node's veth partitions it from everyone.
pub struct Netns {
    tag: String,
    subnet: String,
    n: usize,
}

fn ip(args: &str) -> bool {
    std::process::Command::new("ip")
        .args(args.split_whitespace())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// `None` when namespaces cannot be made here (not root, no `ip`).
    pub fn create(n: usize) -> Option<Netns> {
        let pid = std::process::id();
        let tag = format!("cx{}", pid % 100_000);
        // A subnet no other interface here is on (a second copy of the suite may have built
        // its own network at the same time).
        let taken = std::process::Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let third = (0..250)
            .map(|k| (pid + k) % 250)
            .find(|x| !taken.contains(&format!(" 10.213.{x}.")))
            .expect("a free 10.213.X.0/24 subnet");
        let subnet = format!("10.213.{third}");
        let net = Netns { tag, subnet, n };
        let t = &net.tag;
        if !ip(&format!("link add {t}br type bridge")) {
            return None;
        }
        let mut ok = ip(&format!("addr add {}.254/24 dev {t}br", net.subnet))
            && ip(&format!("link set {t}br up"));
        for i in 0..n {
            ok = ok
                && ip(&format!("netns add {t}n{i}"))
                && ip(&format!("link add {t}v{i} type veth peer name {t}p{i}"))
                && ip(&format!("link set {t}p{i} netns {t}n{i}"))
                && ip(&format!("link set {t}v{i} master {t}br"))
                && ip(&format!("link set {t}v{i} up"))
                && ip(&format!(
                    "netns exec {t}n{i} ip addr add {}/24 dev {t}p{i}",
                    net.addr(i)
                ))
                && ip(&format!("netns exec {t}n{i} ip link set {t}p{i} up"))
                && ip(&format!("netns exec {t}n{i} ip link set lo up"));
        }
        assert!(ok, "could not build the test network {t}");
        Some(net)
    }

    pub fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// Cuts (or restores) node `i`'s only link.
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        assert!(ip(&format!("link set {}v{i} {state}", self.tag)));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for i in 0..self.n {
            ip(&format!("netns del {}n{i}", self.tag));
        }
        ip(&format!("link del {}br", self.tag));
    }
}

/// A node's view of the cluster once the state `query` names holds (see [`Cluster::status`]).
fn status_of(node: &Server, token: Option<&str>, query: &str) -> serde_json::Value {
    let path = format!("/api/v1/cluster?{query}&timeout_ms=20000");
    let (code, body) = crate::http::http(node.http, "GET", &path, token, None);
    assert_eq!(code, 200, "{}: {path}: {body}", node.http);
    serde_json::from_str(&body).expect("JSON")
}

/// What the clients of a test share with it: each node's RESP address and how many times
/// it was (re)started, the writes acknowledged so far, the stop flag; every change is
/// announced on the condvar, so clients wait for events instead of sleeping.
pub struct Board {
    state: Mutex<BoardState>,
    changed: Condvar,
}

struct BoardState {
    addrs: Vec<Option<SocketAddr>>,
    starts: Vec<u64>,
    acks: u64,
    stop: bool,
}

impl Board {
    fn new(addrs: Vec<SocketAddr>) -> Board {
        let n = addrs.len();
        Board {
            state: Mutex::new(BoardState {
                addrs: addrs.into_iter().map(Some).collect(),
                starts: vec![1; n],
                acks: 0,
                stop: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut BoardState)) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }

    /// Waits (up to 60 s) until `ready` holds; `None` once the test stops.
    fn wait<T>(&self, mut ready: impl FnMut(&BoardState) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut st = self.state.lock().unwrap();
        loop {
            if st.stop {
                return None;
            }
            if let Some(v) = ready(&st) {
                return Some(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "nothing changed on the board for 60 s");
            st = self.changed.wait_timeout(st, left).unwrap().0;
        }
    }

    /// A connection to node `i` newer than start `after` (the node is up): its number.
    fn connect(&self, i: usize, after: u64) -> Option<(Raw, u64)> {
        loop {
            let (addr, start) = self.wait(|st| {
                st.addrs[i]
                    .filter(|_| st.starts[i] > after)
                    .map(|a| (a, st.starts[i]))
            })?;
            if let Some(r) = Raw::try_connect(addr) {
                return Some((r, start));
            }
            // Refused: the node was killed after the board said it was up; wait for news.
            self.wait(|st| (st.addrs[i] != Some(addr) || st.starts[i] != start).then_some(()))?;
        }
    }

    fn stopped(&self) -> bool {
        self.state.lock().unwrap().stop
    }
}

/// Starts `n` nodes together (each waits for its peers on its own), node `i` with
/// `common` plus `--node-id i+1`.
fn launch(
    n: usize,
    common: Vec<String>,
    start: impl Fn(usize, Vec<String>) -> Server + Send + Sync + 'static,
) -> (Vec<Server>, Arc<Board>) {
    let start = Arc::new(start);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let mut args = common.clone();
            args.push("--node-id".into());
            args.push((i + 1).to_string());
            let start = start.clone();
            std::thread::spawn(move || start(i, args))
        })
        .collect();
    let nodes: Vec<Server> = handles
        .into_iter()
        .map(|h| h.join().expect("start"))
        .collect();
    let board = Arc::new(Board::new(nodes.iter().map(|s| s.addr).collect()));
    (nodes, board)
}

impl Cluster {
    pub fn start(n: usize, config: Option<&str>) -> Cluster {
        let lease = lease_ports(n);
        let ports = lease.ports.clone();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut common: Vec<String> = vec!["--cluster-secret".into(), SECRET.into()];
        for (i, p) in ports.iter().enumerate() {
            common.push("--cluster-node".into());
            common.push(format!("{}=127.0.0.1:{p}", i + 1));
        }
        let path = dir.path().join("cortex.toml");
        std::fs::write(&path, with_timing(config)).expect("config");
        common.push("--config".into());
        common.push(path.display().to_string());
        // Started together: each waits for its peers on its own.
        let (nodes, board) = launch(n, common, |_, args| {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            Server::start(&a)
        });
        Cluster {
            nodes,
            board,
            auth: None,
            net: None,
            _dir: dir,
            _ports: Some(lease),
        }
    }

    /// Three nodes, each in its own network namespace; clients authenticate.
    pub fn start_in_netns(net: Netns) -> Cluster {
        let n = net.n;
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("cortex.toml");
        std::fs::write(
            &config,
            with_timing(Some(
                "[tokens]\ntester = \"tester-token-0123456789\"\n\
                 [agents.tester]\nadmin = true\npublish = [\"*\"]\nconsume = [\"*\"]\n",
            )),
        )
        .expect("config");
        let mut common: Vec<String> = vec![
            "--cluster-secret".into(),
            SECRET.into(),
            "--config".into(),
            config.display().to_string(),
        ];
        for i in 0..n {
            common.push("--cluster-node".into());
            common.push(format!("{}={}:7500", i + 1, net.addr(i)));
        }
        let (ns, hosts): (Vec<String>, Vec<String>) =
            (0..n).map(|i| (net.ns(i), net.addr(i))).unzip();
        let (nodes, board) = launch(n, common, move |i, args| {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            Server::start_in_netns(&ns[i], &hosts[i], &a)
        });
        Cluster {
            nodes,
            board,
            auth: Some(["tester", "tester-token-0123456789"]),
            net: Some(net),
            _dir: dir,
            _ports: None,
        }
    }

    fn connect(&self, i: usize) -> Option<Raw> {
        let mut r = Raw::try_connect(self.nodes[i].addr)?;
        if let Some([agent, token]) = self.auth {
            match r.try_cmd(&["AUTH", agent, token])? {
                V::Simple(_) => {}
                other => panic!("AUTH answered {other:?}"),
            }
        }
        Some(r)
    }

    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        let addr = self.nodes[i].addr;
        self.board.update(|st| {
            st.addrs[i] = Some(addr);
            st.starts[i] += 1;
        });
    }

    /// SIGKILL node `i`, telling its clients first.
    pub fn kill(&mut self, i: usize) {
        self.board.update(|st| st.addrs[i] = None);
        self.nodes[i].kill();
    }

    /// `INFO replication` of node `i` as key -> value (None when it does not answer).
    pub fn replication(&self, i: usize) -> Option<BTreeMap<String, String>> {
        if !self.nodes[i].running() {
            return None;
        }
        let mut r = self.connect(i)?;
        let v = r.try_cmd(&["INFO", "replication"])?;
        Some(
            v.s()
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].running())
            .collect()
    }

    /// Node `i`'s view of the cluster once the state `query` names holds (`leader=1`,
    /// `leader_not=ID`, `applied=N`, `purged=N`, or empty for now): the server reports it, nothing polls.
    pub fn status(&self, i: usize, query: &str) -> serde_json::Value {
        status_of(&self.nodes[i], self.auth.map(|[_, token]| token), query)
    }

    /// The index of the leader, once every running node names the same running one. A node
    /// naming a leader the others have left behind is asked again for a different one.
    pub fn leader(&self) -> usize {
        let running = self.running();
        let mut not: Vec<Option<u64>> = vec![None; self.nodes.len()];
        for _ in 0..50 {
            let views: Vec<(usize, u64, u64)> = running
                .iter()
                .map(|&i| {
                    let q = not[i].map_or("leader=1".to_string(), |l| format!("leader_not={l}"));
                    let st = self.status(i, &q);
                    (
                        i,
                        st["leader"].as_u64().unwrap(),
                        st["term"].as_u64().unwrap(),
                    )
                })
                .collect();
            let best = views.iter().max_by_key(|v| v.2).map(|v| v.1).unwrap();
            let alive = running.contains(&(best as usize - 1));
            if alive && views.iter().all(|v| v.1 == best) {
                return best as usize - 1;
            }
            for &(i, l, _) in &views {
                if l != best || !alive {
                    not[i] = Some(l);
                }
            }
        }
        panic!("the nodes never agreed on a leader");
    }

    /// Waits until every running node applied the log as far as the leader has.
    pub fn converge(&self) {
        let l = self.leader();
        let want = self.status(l, "")["applied_index"].as_u64().unwrap();
        for i in self.running() {
            self.status(i, &format!("applied={want}"));
        }
    }

    /// The leader the nodes other than `l` elect while `l` is gone or cut off.
    pub fn leader_other_than(&self, l: usize) -> usize {
        let i = (0..self.nodes.len()).find(|i| *i != l).unwrap();
        let st = self.status(i, &format!("leader_not={}", l + 1));
        let next = st["leader"].as_u64().unwrap() as usize - 1;
        // The new leader knows it leads.
        let own = self.status(next, "leader=1");
        assert_eq!(own["leader"].as_u64(), Some(next as u64 + 1), "{own}");
        next
    }

    /// Waits until node `i` follows a leader and has applied the log as far as it has.
    pub fn following(&self, i: usize) {
        let l = self.status(i, "leader=1")["leader"].as_u64().unwrap() as usize - 1;
        let want = self.status(l, "")["applied_index"].as_u64().unwrap();
        self.status(i, &format!("applied={want}"));
    }

    pub fn raw(&self, i: usize) -> Raw {
        self.connect(i).expect("connect")
    }
}

/// One publisher per node: XADD with a unique payload; records every acknowledged ID and
/// counts it on the board. A killed node's publisher waits for its restart.
fn publishers(board: &Arc<Board>) -> Vec<std::thread::JoinHandle<Vec<(String, String)>>> {
    let n = board.state.lock().unwrap().addrs.len();
    (0..n)
        .map(|i| {
            let board = board.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut k = 0u64;
                let mut start = 0;
                while let Some((mut c, s)) = board.connect(i, start) {
                    start = s;
                    while !board.stopped() {
                        k += 1;
                        let payload = format!("n{i}-{k}");
                        match c.try_cmd(&["XADD", "s", "*", "p", &payload]) {
                            Some(V::Bulk(id)) => {
                                acked.push((id, payload));
                                board.update(|st| st.acks += 1);
                            }
                            Some(V::Err(_)) => {}
                            Some(other) => panic!("XADD answered {other:?}"),
                            None => break,
                        }
                    }
                    if board.stopped() {
                        break;
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
    let pubs = publishers(&c.board);
    // A consumer on a follower: group reads and acks are forwarded to the leader.
    let consumer = {
        let board = c.board.clone();
        let follower = (l + 1) % 3;
        std::thread::spawn(move || {
            let mut acked: Vec<String> = Vec::new();
            let mut cursor_seen: Vec<String> = Vec::new();
            let mut start = 0;
            while let Some((mut r, s)) = board.connect(follower, start) {
                start = s;
                while !board.stopped() {
                    let read = [
                        "XREADGROUP",
                        "GROUP",
                        "g",
                        "c1",
                        "COUNT",
                        "50",
                        "STREAMS",
                        "s",
                        ">",
                    ];
                    let Some(v) = r.try_cmd(&read) else { break };
                    if !matches!(v, V::Arr(_)) {
                        continue;
                    }
                    let ids = read_ids(&v);
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
                if board.stopped() {
                    break;
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
        // A random moment under load: after 20 to 300 more acknowledged writes.
        let until = c.board.state.lock().unwrap().acks + 20 + seed % 280;
        c.board.wait(|st| (st.acks >= until).then_some(()));
        let l = c.leader();
        let before = c.replication((l + 1) % 3).unwrap_or_default();
        let t0 = Instant::now();
        c.kill(l);
        // The next acknowledged write, as a client sees it: tried on the live nodes in turn
        // (a follower forwards it; a CLUSTERDOWN while the election runs is retried).
        let live: Vec<usize> = (0..3).filter(|i| *i != l).collect();
        let mut k = 0;
        loop {
            let i = live[k % live.len()];
            k += 1;
            let acked = c
                .connect(i)
                .and_then(|mut r| r.try_cmd(&["XADD", "probe", "*", "k", "v"]))
                .is_some_and(|v| matches!(v, V::Bulk(_)));
            if acked {
                break;
            }
            // A bound on a hang, not a target: failover times are reported (and measured
            // by scripts/cluster-failover-long), never asserted.
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no write acknowledged 60 s after the kill"
            );
        }
        failovers.push(t0.elapsed());
        let next = c.leader();
        assert_ne!(next, l);
        let after = c.replication(next).unwrap_or_default();
        let term = |m: &BTreeMap<String, String>| -> u64 {
            m.get("cluster_term")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0)
        };
        assert!(term(&after) > term(&before), "a new term after the kill");
        eprintln!(
            "kill: write acknowledged after {:?} ({k} attempts), terms {} -> {}, all nodes agree on node {} after {:?}",
            failovers.last().unwrap(),
            term(&before),
            term(&after),
            next + 1,
            t0.elapsed()
        );
        c.restart(l);
        // The next kill hits a healthy cluster: the restarted node follows a leader again.
        c.following(l);
    }
    c.board.update(|st| st.stop = true);
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
        let last = last_delivered(&mut r, "s");
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

/// One group read of `count` new entries of `s` for consumer `c` of group `g`, then an ack
/// of the first `ack` of them; returns the IDs read.
fn read_and_ack(r: &mut Raw, count: usize, ack: usize) -> Vec<String> {
    let n = count.to_string();
    let v = r.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        &n,
        "STREAMS",
        "s",
        ">",
    ]);
    let ids = read_ids(&v);
    let mut cmd = vec!["XACK", "s", "g"];
    cmd.extend(ids.iter().take(ack).map(String::as_str));
    assert_eq!(r.cmd(&cmd), V::Int(ack.min(ids.len()) as i64));
    ids
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
        read_and_ack(&mut r, 60, 40);
    }
    // The leader purges its log behind a snapshot (in the background: wait for it).
    c.status(l, "purged=1");
    let rep = c.replication(l).unwrap();
    let purged: i64 = rep["cluster_purged_index"].parse().unwrap();
    assert!(purged > 0, "{rep:?}");
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
    let next = c.leader_other_than(l);
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

/// Partitions with network namespaces (root; CI runs as root): the leader's only link is
/// cut, the majority elects a new leader and takes writes, the old leader does not
/// acknowledge a write sent to it while cut off; after healing, every acknowledged entry is
/// on every node once and the unacknowledged one is nowhere.
#[test]
fn a_partitioned_leader_stops_acknowledging_and_loses_nothing_after_healing() {
    let Some(net) = Netns::create(3) else {
        eprintln!("SKIPPED: network namespaces need root (CI runs as root)");
        return;
    };
    let c = Cluster::start_in_netns(net);
    let l = c.leader();
    let mut acked = Vec::new();
    let mut r = c.raw(l);
    for k in 0..20 {
        let p = format!("before-{k}");
        let V::Bulk(id) = r.cmd(&["XADD", "s", "*", "p", &p]) else {
            panic!("write before the partition failed")
        };
        acked.push((id, p));
    }
    let net = c.net.as_ref().expect("netns");
    net.link(l, false);
    // A client next to the old leader (in its namespace) sends a write: it must not be
    // acknowledged (the old leader cannot reach a majority).
    let ns = net.ns(l);
    let host = net.addr(l);
    let port = c.nodes[l].addr.port().to_string();
    let stale = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "timeout", "20", "redis-cli"])
            .args(["-h", &host, "-p", &port, "--user", "tester"])
            .args(["--pass", "tester-token-0123456789", "--no-auth-warning"])
            .args(["XADD", "s", "*", "p", "stale"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    });
    // The majority elects a leader of its own and takes writes.
    let next = c.leader_other_than(l);
    let mut r = c.raw(next);
    for k in 0..20 {
        let p = format!("during-{k}");
        let V::Bulk(id) = r.cmd(&["XADD", "s", "*", "p", &p]) else {
            panic!("the majority refused a write")
        };
        acked.push((id, p));
    }
    let stale = stale.join().unwrap();
    assert!(
        stale.starts_with("CLUSTERDOWN") || stale.is_empty(),
        "the cut-off leader answered {stale:?}"
    );
    net.link(l, true);
    c.converge();
    let m = c.replication(l).unwrap();
    assert_eq!(
        m["role"], "slave",
        "the old leader follows after healing: {m:?}"
    );
    check_stream(&c, &acked);
    let all = c.raw(l).cmd(&["XRANGE", "s", "-", "+"]);
    assert_eq!(
        all.arr().len(),
        acked.len(),
        "only acknowledged entries exist"
    );
    assert!(
        !all.arr().iter().any(|e| e.arr()[1].arr()[1].s() == "stale"),
        "the unacknowledged write appeared"
    );
}

/// The QUIC client knows every node: when its node dies it moves to a live one, its
/// subscription resumes there, and publishes with idempotency keys go on.
#[test]
fn quic_client_moves_to_a_live_node_and_resumes_its_subscription() {
    use cortex::client::{Client, ClientOptions, Message, SubscribeOptions};
    use cortex::tls::{fingerprint_of, Trust, CERT_FILE};

    let mut c = Cluster::start(3, None);
    let l = c.leader();
    let mut order: Vec<usize> = vec![l];
    order.extend((0..3).filter(|i| *i != l));
    let fingerprints: Vec<String> = (0..3)
        .map(|i| fingerprint_of(&c.nodes[i].dir.path().join(CERT_FILE)).unwrap())
        .collect();
    let opts = ClientOptions {
        server: c.nodes[l].quic,
        also: order[1..].iter().map(|i| c.nodes[*i].quic).collect(),
        server_name: "localhost".into(),
        agent: "worker".into(),
        token: String::new(),
        trust: Trust::Fingerprint(fingerprints.join(",")),
        connect_timeout: Duration::from_secs(15),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let msg = |n: usize| Message {
        fields: vec![(b"n".to_vec(), n.to_string().into_bytes())],
        key: Some(format!("k{n}").into_bytes()),
        ..Message::default()
    };
    let next = |sub: &mut cortex::client::Subscription| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), sub.next())
                .await
                .expect("a delivery in time")
                .expect("subscription open")
                .expect("delivery")
        })
    };
    let client = rt.block_on(Client::connect(opts)).expect("connect");
    let mut sub = rt
        .block_on(client.subscribe(SubscribeOptions::new("jobs")))
        .expect("subscribe");
    for n in 0..3 {
        rt.block_on(client.publish("jobs", msg(n)))
            .expect("publish");
        let d = next(&mut sub);
        assert_eq!(d.fields[0].1, n.to_string().into_bytes());
        rt.block_on(d.ack()).expect("ack");
    }
    c.nodes[l].kill();
    // The client reconnects to another node on its own; the publish retries with its key.
    for n in 3..6 {
        rt.block_on(client.publish("jobs", msg(n)))
            .expect("publish after the kill");
        let d = next(&mut sub);
        assert_eq!(d.fields[0].1, n.to_string().into_bytes());
        rt.block_on(d.ack()).expect("ack after the kill");
    }
    c.restart(l);
    c.converge();
    let all = c.raw(l).cmd(&["XRANGE", "jobs", "-", "+"]);
    assert_eq!(all.arr().len(), 6, "each message once: {all:?}");
    let pending = c.raw(order[1]).cmd(&["XPENDING", "jobs", "worker"]);
    assert_eq!(pending.arr()[0].int(), 0);
}

/// `cortex cluster add|remove|status`: a fourth node started with `--join` is added through
/// a follower (forwarded to the leader), catches up and votes; a node removed from the
/// membership can then die without the cluster noticing.
#[test]
fn membership_changes_replace_a_node() {
    let mut c = Cluster::start(3, None);
    let l = c.leader();
    let mut r = c.raw(l);
    for k in 0..50 {
        let id = r.cmd(&["XADD", "s", "*", "k", &k.to_string()]);
        assert!(matches!(id, V::Bulk(_)), "XADD on the leader: {id:?}");
    }
    let lease = lease_ports(1);
    let port = lease.ports[0];
    let own = format!("4=127.0.0.1:{port}");
    let timing = tempfile::tempdir().unwrap();
    let config = timing.path().join("cortex.toml");
    std::fs::write(&config, with_timing(None)).unwrap();
    let new = Server::start(&[
        "--config",
        config.to_str().unwrap(),
        "--node-id",
        "4",
        "--cluster-node",
        &own,
        "--cluster-secret",
        SECRET,
        "--join",
    ]);
    let cli = |node: &Server, args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
            .arg("cluster")
            .args(args)
            .arg("--server")
            .arg(node.quic.to_string())
            .arg("--data-dir")
            .arg(node.dir.path())
            .output()
            .expect("cortex cluster");
        assert!(
            out.status.success(),
            "cortex cluster {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let follower = (l + 1) % 3;
    let addr = format!("127.0.0.1:{port}");
    let st = cli(&c.nodes[follower], &["add", "4", &addr]);
    assert_eq!(st["voters"], serde_json::json!([1, 2, 3, 4]), "{st}");
    // The new node holds everything, then takes part in commits.
    assert!(matches!(
        c.raw(l).cmd(&["XADD", "s", "*", "k", "after"]),
        V::Bulk(_)
    ));
    let want = c.status(l, "")["applied_index"].as_u64().unwrap();
    status_of(&new, None, &format!("applied={want}"));
    assert_eq!(Raw::connect(new.addr).cmd(&["XLEN", "s"]), V::Int(51));
    // Replace the old leader: remove it from the membership, then stop it.
    let gone = (l + 1) as u64;
    let st = cli(&c.nodes[follower], &["remove", &gone.to_string()]);
    let voters: Vec<u64> = serde_json::from_value(st["voters"].clone()).unwrap();
    assert!(!voters.contains(&gone) && voters.len() == 3, "{st}");
    c.nodes[l].kill();
    // Node 4 learns the leader the remaining voters elect.
    let next = status_of(&new, None, &format!("leader_not={gone}"))["leader"]
        .as_u64()
        .unwrap();
    let leader = if next == 4 {
        new.addr
    } else {
        c.nodes[next as usize - 1].addr
    };
    assert!(matches!(
        Raw::connect(leader).cmd(&["XADD", "s", "*", "k", "end"]),
        V::Bulk(_)
    ));
    let st = cli(&new, &["status"]);
    assert_eq!(st["voters"].as_array().map(Vec::len), Some(3), "{st}");
    // `cortex stat` ends with the cluster line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cortex"))
        .args(["stat", "--server", &new.quic.to_string(), "--data-dir"])
        .arg(new.dir.path())
        .output()
        .expect("cortex stat");
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).expect("JSON");
    assert_eq!(v["cluster"]["id"], 4, "{last}");
    // /metrics shows the cluster; /readyz is ready with a leader.
    let (code, metrics) = crate::http::http(new.http, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    assert_eq!(crate::http::sample(&metrics, "cortex_cluster_voters"), 3.0);
    assert_eq!(
        crate::http::sample(&metrics, "cortex_cluster_has_leader"),
        1.0
    );
    assert_eq!(
        crate::http::http(new.http, "GET", "/readyz", None, None).0,
        200
    );
}

/// All three nodes killed at once (SIGKILL) and restarted: the stores (written without
/// fsync) are rebuilt from the Raft logs, and every acknowledged write, ack and cursor is
/// still there.
#[test]
fn the_whole_cluster_killed_at_once_loses_nothing_acknowledged() {
    let mut c = Cluster::start(3, None);
    let l = c.leader();
    let mut r = c.raw(l);
    assert_eq!(
        r.cmd(&["XGROUP", "CREATE", "s", "g", "0", "MKSTREAM"]),
        V::Simple("OK".into())
    );
    let mut acked = Vec::new();
    for round in 0..10 {
        let cmds: Vec<Vec<String>> = (0..50)
            .map(|k| {
                let p = format!("{round}-{k}");
                ["XADD", "s", "*", "p", &p].map(String::from).to_vec()
            })
            .collect();
        for (v, cmd) in r.pipeline(&cmds).into_iter().zip(&cmds) {
            let V::Bulk(id) = v else { panic!("{v:?}") };
            acked.push((id, cmd[4].clone()));
        }
    }
    let ids = read_and_ack(&mut r, 300, 200);
    for n in &mut c.nodes {
        n.kill();
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.converge();
    check_stream(&c, &acked);
    for i in 0..3 {
        let mut r = c.raw(i);
        let summary = r.cmd(&["XPENDING", "s", "g"]);
        assert_eq!(summary.arr()[0].int(), 100, "node {}: {summary:?}", i + 1);
        let last = last_delivered(&mut r, "s");
        assert_eq!(last, ids[299], "node {}", i + 1);
    }
}

/// A runtime for the Rust client in a test that drives processes synchronously.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `GET path` on `node`'s HTTP port, which must answer 200 with JSON.
fn get_json(node: &Server, path: &str) -> serde_json::Value {
    let (code, body) = crate::http::http(node.http, "GET", path, None, None);
    assert_eq!(code, 200, "{}: {path}: {body}", node.http);
    serde_json::from_str(&body).expect("JSON")
}

/// Who serves `agent`, as node `node` sees it, once it is served (or not) there.
fn responders(node: &Server, agent: &str, served: bool) -> serde_json::Value {
    get_json(
        node,
        &format!("/api/v1/responders?agent={agent}&served={served}&timeout_ms=20000"),
    )
}

/// A client of `agent` connected to `node`.
fn connect(rt: &tokio::runtime::Runtime, node: &Server, agent: &str) -> cortex::client::Client {
    let opts = crate::quic::opts(node, agent, "");
    rt.block_on(cortex::client::Client::connect(opts))
        .expect("connect")
}

/// Request/reply between agents on different nodes, for every ordered pair: a progress
/// part and the final reply, a timeout, and no responders once the responder left; then
/// the responder's node is killed in mid-request and the requester hears a timeout.
#[test]
fn request_reply_between_any_two_nodes() {
    use cortex::client::{Client, ErrorCode, PartKind};

    let mut c = Cluster::start(3, None);
    // Subscribing is a write: wait until the nodes agree on a leader (an election on a
    // loaded machine can outlast the 3 s a write waits for one).
    c.leader();
    let rt = runtime();
    let connect = |node: &Server, agent: &str| connect(&rt, node, agent);
    // Answers with a progress part and the request's fields plus `by`; leaves `ignore`
    // unanswered; reports each request it got.
    let serve = |client: &Client, me: String| {
        let (got, seen) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut reqs = rt.block_on(client.serve(4)).expect("serve");
        let task = rt.spawn(async move {
            while let Some(Ok(r)) = reqs.next().await {
                let q = r.fields()[0].1.clone();
                let _ = got.send(q.clone());
                if q == b"ignore" {
                    continue;
                }
                r.progress(vec![(b"status".to_vec(), b"working".to_vec())])
                    .await
                    .unwrap();
                let mut out = r.fields().to_vec();
                out.push((b"by".to_vec(), me.clone().into_bytes()));
                r.reply(out).await.unwrap();
            }
        });
        (task, seen)
    };
    let q = |v: &str| vec![(b"q".to_vec(), v.as_bytes().to_vec())];
    for b in 0..3 {
        let agent = format!("pink{}", b + 1);
        let responder = connect(&c.nodes[b], &agent);
        let (task, _seen) = serve(&responder, agent.clone());
        for a in (0..3).filter(|a| *a != b) {
            // The other node has heard of the responder.
            let seen = responders(&c.nodes[a], &agent, true);
            assert_eq!(seen["nodes"], serde_json::json!([b + 1]), "{seen}");
            assert_eq!(seen["here"], 0, "{seen}");
            let asker = connect(&c.nodes[a], &format!("harold{}", a + 1));
            let mut parts = rt
                .block_on(asker.request_parts(&agent, q("sum"), IO_BOUND))
                .unwrap_or_else(|e| panic!("node {} asks {agent} on node {}: {e}", a + 1, b + 1));
            let p1 = rt.block_on(parts.next()).unwrap().unwrap();
            assert_eq!(p1.kind, PartKind::Progress);
            assert_eq!(p1.fields[0].1, b"working");
            let p2 = rt.block_on(parts.next()).unwrap().unwrap();
            assert_eq!(p2.kind, PartKind::Final);
            assert_eq!(p2.from.as_deref(), Some(agent.as_str()));
            assert_eq!(p2.fields[1], (b"by".to_vec(), agent.clone().into_bytes()));
            assert!(rt.block_on(parts.next()).is_none());
            if b == 0 {
                let e = rt
                    .block_on(asker.request(&agent, q("ignore"), Duration::from_millis(500)))
                    .unwrap_err();
                assert_eq!(e.code(), Some(ErrorCode::Timeout), "{e}");
            }
        }
        // The responder leaves: every node says nobody serves the agent.
        task.abort();
        drop(responder);
        for a in 0..3 {
            responders(&c.nodes[a], &agent, false);
            let asker = connect(&c.nodes[a], &format!("harold{}", a + 1));
            let e = rt
                .block_on(asker.request(&agent, q("sum"), IO_BOUND))
                .unwrap_err();
            assert_eq!(
                e.code(),
                Some(ErrorCode::NoResponders),
                "node {}: {e}",
                a + 1
            );
        }
    }

    // The responder's node dies while it holds a request: the requester times out.
    let l = c.leader();
    let (r, a) = ((l + 1) % 3, (l + 2) % 3);
    let responder = connect(&c.nodes[r], "blue");
    let (task, seen) = serve(&responder, "blue".into());
    responders(&c.nodes[a], "blue", true);
    let asker = connect(&c.nodes[a], "harold");
    let ask = rt.spawn(async move {
        asker
            .request(
                "blue",
                vec![(b"q".to_vec(), b"ignore".to_vec())],
                Duration::from_secs(3),
            )
            .await
    });
    assert_eq!(
        seen.recv_timeout(IO_BOUND).expect("the request arrived"),
        b"ignore"
    );
    c.kill(r);
    let e = rt
        .block_on(async { tokio::time::timeout(IO_BOUND, ask).await })
        .expect("the requester is answered")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Timeout), "{e}");
    task.abort();
    // With its node gone, its announcement lapses: nobody serves blue.
    responders(&c.nodes[a], "blue", false);
}

/// A push subscriber on a follower receives what is published on the leader and acks it;
/// when its node is killed, its unacknowledged delivery goes to a consumer on another node
/// once the group's ack wait has passed.
#[test]
fn a_push_subscriber_on_a_follower_acks_and_its_deliveries_outlive_its_node() {
    use cortex::client::{Client, SubscribeOptions};

    let mut c = Cluster::start(3, None);
    let l = c.leader();
    let (f, o) = ((l + 1) % 3, (l + 2) % 3);
    let mut r = c.raw(l);
    assert_eq!(
        r.cmd(&["XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"]),
        V::Simple("OK".into())
    );
    let policy = ["CX.POLICY", "jobs", "workers", "ACKWAIT", "2000"];
    assert_eq!(r.cmd(&policy), V::Simple("OK".into()));
    let rt = runtime();
    let subscribe = |node: &Server, consumer: &str| {
        let opts = crate::quic::opts(node, consumer, "");
        let client = rt.block_on(Client::connect(opts)).expect("connect");
        let sub = rt
            .block_on(client.subscribe(SubscribeOptions {
                group: Some(b"workers".to_vec()),
                consumer: Some(consumer.as_bytes().to_vec()),
                window: 10,
                ..SubscribeOptions::new("jobs")
            }))
            .expect("subscribe");
        (client, sub)
    };
    let next = |sub: &mut cortex::client::Subscription| {
        rt.block_on(async {
            tokio::time::timeout(IO_BOUND, sub.next())
                .await
                .expect("a delivery in time")
                .expect("subscription open")
                .expect("delivery")
        })
    };
    let (_fc, mut on_f) = subscribe(&c.nodes[f], "on-follower");
    let one = r.cmd(&["XADD", "jobs", "*", "n", "1"]);
    let d = next(&mut on_f);
    assert_eq!(d.fields[0].1, b"1");
    assert_eq!(d.attempt, 1);
    rt.block_on(d.ack()).expect("ack on the follower");
    let two = r.cmd(&["XADD", "jobs", "*", "n", "2"]);
    let d = next(&mut on_f);
    assert_eq!(d.fields[0].1, b"2");
    // The ack of 1 and the delivery of 2 are committed: the leader's pending list says so.
    c.converge();
    let pending = r.cmd(&["XPENDING", "jobs", "workers", "-", "+", "10"]);
    let ids: Vec<&str> = pending.arr().iter().map(|p| p.arr()[0].s()).collect();
    assert_eq!(ids, vec![two.s()], "1 ({one:?}) acked, 2 pending");
    c.kill(f);
    // Another node's consumer gets 2 once the ack wait (2 s) has passed.
    let (_oc, mut on_o) = subscribe(&c.nodes[o], "on-other");
    let again = next(&mut on_o);
    assert_eq!(again.fields[0].1, b"2");
    assert_eq!(again.attempt, 2);
    rt.block_on(again.ack()).expect("ack on the other node");
    c.converge();
    let summary = c.raw(l).cmd(&["XPENDING", "jobs", "workers"]);
    assert_eq!(summary.arr()[0].int(), 0, "{summary:?}");
}

/// A push subscriber on a follower is handed each new entry by the commit that stores it:
/// once the leader has heard of its mailbox, the leader's entry carries the subscriber's
/// group read, and the follower pushes when it applies that entry; the subscriber reads
/// nothing by itself. (Counted by the follower's metrics; a round with a leader change in
/// it is measured again.)
#[test]
fn a_follower_subscriber_is_handed_new_entries_by_the_commit_that_stores_them() {
    use cortex::client::{Client, SubscribeOptions};

    let c = Cluster::start(3, None);
    let rt = runtime();
    let l = c.leader();
    let f = (l + 1) % 3;
    let client = rt
        .block_on(Client::connect(crate::quic::opts(
            &c.nodes[f],
            "worker",
            "",
        )))
        .expect("connect");
    let mut sub = rt
        .block_on(client.subscribe(SubscribeOptions {
            group: Some(b"workers".to_vec()),
            window: 50,
            ..SubscribeOptions::new("jobs")
        }))
        .expect("subscribe");
    let metric = |name: &str| {
        let (code, m) = crate::http::http(c.nodes[f].http, "GET", "/metrics", None, None);
        assert_eq!(code, 200);
        crate::http::sample(&m, name)
    };
    let in_commit = || metric("cortex_push_deliveries_in_commit_total");
    let read = || metric("cortex_push_deliveries_read_total");
    let term = || metric("cortex_cluster_term");
    let mut n = 0u64;
    let mut publish_and_take = || {
        n += 1;
        let leader = c.leader();
        let id = c
            .raw(leader)
            .cmd(&["XADD", "jobs", "*", "n", &n.to_string()]);
        let d = rt.block_on(async {
            tokio::time::timeout(IO_BOUND, sub.next())
                .await
                .expect("a delivery in time")
                .expect("subscription open")
                .expect("delivery")
        });
        assert_eq!(d.id.to_string(), id.s());
        assert_eq!(d.attempt, 1);
        rt.block_on(d.ack()).expect("ack");
    };
    // Until the leader has heard of the mailbox (an announcement within milliseconds),
    // the subscriber reads by itself.
    for i in 0.. {
        assert!(i < 500, "no delivery inside a commit after {i} publishes");
        publish_and_take();
        if in_commit() >= 1.0 {
            break;
        }
    }
    for round in 0.. {
        assert!(round < 3, "the leader changed in every round");
        let (t, c0, r0) = (term(), in_commit(), read());
        for _ in 0..10 {
            publish_and_take();
        }
        if term() != t {
            continue;
        }
        assert_eq!(
            in_commit() - c0,
            10.0,
            "every one handed out by its own commit"
        );
        assert_eq!(read() - r0, 0.0, "nothing read by the subscriber itself");
        break;
    }
}

/// Scheduled entries set aside on every node survive the leader's death: the new leader's
/// timer hands them out at their time, once, in lane order.
#[test]
fn scheduled_entries_go_out_once_at_their_time_after_a_failover() {
    let mut c = Cluster::start(3, None);
    let l = c.leader();
    let mut r = c.raw(l);
    r.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"]);
    // The same moment for both (a DELAY each would give each its own millisecond).
    let at = (r.cmd(&["CX.CLOCK"]).int() + 6000).to_string();
    for (lane, m) in [("low", "low"), ("critical", "critical")] {
        let id = r.cmd(&["CX.PUBLISH", "q", "PRIORITY", lane, "AT", &at, "m", m]);
        assert!(matches!(id, V::Bulk(_)), "{id:?}");
    }
    let read = |r: &mut Raw, block: &str| {
        r.cmd(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "pink",
            "COUNT",
            "10",
            "BLOCK",
            block,
            "STREAMS",
            "q",
            ">",
        ])
    };
    // The group reaches them early and sets them aside (a replicated change, on every node).
    let early = read(&mut r, "1");
    assert_eq!(
        early,
        V::Nil,
        "handed out before their time (or 6 s passed)"
    );
    drop(r);
    c.kill(l);
    let next = c.leader_other_than(l);
    let mut r = c.raw(next);
    // Woken by the new leader's timer, not by polling.
    let got = read(&mut r, "30000");
    let values: Vec<String> = got.arr()[0].arr()[1]
        .arr()
        .iter()
        .map(|e| e.arr()[1].arr()[1].s().to_string())
        .collect();
    assert_eq!(values, vec!["critical", "low"]);
    assert_eq!(read(&mut r, "1"), V::Nil);
    let p = r.cmd(&["XPENDING", "q", "g"]);
    assert_eq!(p.arr()[0].int(), 2);
}

/// A task's whole lifecycle watched by its submitter on the worker's node (each agent talks
/// to its own host's node), while that node is killed with the task in hand: the watcher's
/// client moves to a live node and resumes from one past the last change it saw; the
/// task is handed out again on another node and completed there. The watcher saw every
/// change the cluster recorded, once each, in order.
#[test]
fn a_task_watched_across_the_kill_of_its_workers_node_misses_no_change() {
    use cortex::client::{
        Client, ClientError, ClientOptions, NewTask, PartKind, SubscribeOptions, TaskChange,
    };
    use cortex::tls::{fingerprint_of, Trust, CERT_FILE};
    use cortex::wire::names;

    let mut c = Cluster::start(3, None);
    let l = c.leader();
    let (f, o) = ((l + 1) % 3, (l + 2) % 3);
    let fingerprints: Vec<String> = (0..3)
        .map(|i| fingerprint_of(&c.nodes[i].dir.path().join(CERT_FILE)).unwrap())
        .collect();
    let quic: Vec<SocketAddr> = c.nodes.iter().map(|n| n.quic).collect();
    // The given node first, then the others.
    let opts = |agent: &str, first: usize| ClientOptions {
        server: quic[first],
        also: (0..3).filter(|i| *i != first).map(|i| quic[i]).collect(),
        server_name: "localhost".into(),
        agent: agent.into(),
        token: String::new(),
        trust: Trust::Fingerprint(fingerprints.join(",")),
        connect_timeout: Duration::from_secs(15),
    };
    let rt = runtime();
    let harold = rt.block_on(Client::connect(opts("harold", f))).unwrap();
    let task = NewTask {
        id: Some(b"W1".to_vec()),
        ..NewTask::new(vec![(b"do".to_vec(), b"port the parser".to_vec())])
    };
    rt.block_on(harold.submit_task("pink", task))
        .expect("submit");
    // A held task comes back 2 s after its holder went silent.
    let mut r = c.raw(l);
    let policy = [
        "CX.POLICY",
        "cortex:inbox:pink",
        names::RESPONDERS_GROUP,
        "ACKWAIT",
        "2000",
    ];
    assert_eq!(r.cmd(&policy), V::Simple("OK".into()));
    // The watcher: every change from 0 until final, resuming after a lost connection.
    let watcher = {
        let harold = harold.clone();
        rt.spawn(async move {
            let end = Instant::now() + Duration::from_secs(90);
            let (mut seen, mut from, mut lost) = (Vec::<TaskChange>::new(), 0u64, 0u32);
            while Instant::now() < end {
                match harold.watch_task(b"W1", from, Duration::from_secs(5)).await {
                    Ok(t) => {
                        for ch in t.history {
                            from = ch.seq + 1;
                            seen.push(ch);
                        }
                        if t.finished_ms.is_some() && from >= t.changes {
                            return (seen, lost);
                        }
                    }
                    Err(ClientError::Lost(_) | ClientError::Connect(_)) => lost += 1,
                    Err(e) => panic!("watch: {e}"),
                }
            }
            panic!("the task did not finish in 90 s; saw {seen:?}");
        })
    };
    let worker = |node: usize| {
        let pink = rt.block_on(Client::connect(opts("pink", node))).unwrap();
        let mut so = SubscribeOptions::new(names::inbox("pink"));
        so.group = Some(names::RESPONDERS_GROUP.into());
        let sub = rt.block_on(pink.subscribe(so)).expect("subscribe");
        (pink, sub)
    };
    let next = |sub: &mut cortex::client::Subscription| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("a delivery in time")
                .expect("subscription open")
                .expect("delivery")
        })
    };
    let (pink_f, mut sub_f) = worker(f);
    let d = next(&mut sub_f);
    let corr = d.header(names::CORRELATION).unwrap().to_vec();
    rt.block_on(pink_f.respond(
        &corr,
        PartKind::Progress,
        vec![(b"pct".to_vec(), b"40".to_vec())],
    ))
    .expect("progress, durable");
    c.kill(f);
    // pink on another node gets it again and finishes it.
    let (pink_o, mut sub_o) = worker(o);
    let again = next(&mut sub_o);
    assert_eq!(again.header(names::CORRELATION), Some(corr.as_slice()));
    rt.block_on(pink_o.respond(
        &corr,
        PartKind::Final,
        vec![(b"ok".to_vec(), b"1".to_vec())],
    ))
    .expect("final");
    let (seen, lost) = rt.block_on(watcher).expect("watcher");
    assert!(lost >= 1, "the watcher's node was killed under it");
    let all = rt.block_on(harold.task(b"W1")).expect("status");
    assert_eq!(all.state, "completed");
    assert_eq!(
        seen.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (0..all.changes).collect::<Vec<_>>(),
        "every change once, in order: {seen:?}"
    );
    assert_eq!(seen, all.history);
    let events: Vec<&str> = seen.iter().map(|c| c.event.as_str()).collect();
    assert_eq!(events.first(), Some(&"submitted"));
    assert!(events.contains(&"part"), "{events:?}");
    assert_eq!(seen.last().map(|c| c.state.as_str()), Some("completed"));
}

/// Agents as node `node` lists them, once `agent` has `sessions` sessions (any when
/// `None`) on all nodes together.
fn agents_on(node: &Server, agent: &str, sessions: Option<usize>) -> serde_json::Value {
    let n = sessions.map_or(String::new(), |n| format!("&sessions={n}"));
    get_json(
        node,
        &format!("/api/v1/agents?agent={agent}{n}&timeout_ms=20000"),
    )
}

/// What every node must agree on of a list of agents: each session's agent, node, front,
/// client, connection time and what it serves (last-heard times are a second stale on
/// the other nodes by design).
fn agreed(list: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for a in list["agents"].as_array().expect("agents") {
        for s in a["sessions"].as_array().expect("sessions") {
            out.push(format!(
                "{} node {} {} {} {} {}",
                a["agent"], s["node"], s["front"], s["client"], s["connected_ms"], s["serves"]
            ));
        }
    }
    out.sort();
    out
}

/// Presence is the same on every node: agents on two nodes over QUIC and one over RESP
/// are listed by all three with the node each is connected to; one that says goodbye
/// leaves every list, and the agents of a killed node leave the others' lists when its
/// announcement lapses.
#[test]
fn every_node_lists_every_nodes_agents() {
    let mut c = Cluster::start(3, None);
    c.leader();
    let rt = runtime();
    let connect = |node: &Server, agent: &str| connect(&rt, node, agent);
    let pink = connect(&c.nodes[0], "pink");
    let requests = rt.block_on(pink.serve(4)).expect("serve");
    let harold = connect(&c.nodes[1], "harold");
    let mut blue = c.nodes[2].raw();
    blue.cmd(&["CLIENT", "SETNAME", "blue-tool"]);
    for node in &c.nodes {
        agents_on(node, "pink", Some(1));
        agents_on(node, "harold", Some(1));
        agents_on(node, "", Some(1));
        // What pink serves reaches the other nodes in a later announcement than its
        // session; the announcement that shows its inbox served shows that too.
        responders(node, "pink", true);
    }
    let lists: Vec<Vec<String>> = c
        .nodes
        .iter()
        .map(|n| agreed(&agents_on(n, "pink", Some(1))))
        .collect();
    assert_eq!(lists[0].len(), 3, "{lists:?}");
    assert_eq!(lists[0], lists[1], "nodes 1 and 2 disagree");
    assert_eq!(lists[0], lists[2], "nodes 1 and 3 disagree");
    let one = agents_on(&c.nodes[2], "pink", Some(1));
    let text = one.to_string();
    let by_name = |name: &str| {
        one["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == name)
            .unwrap_or_else(|| panic!("{name} in {text}"))["sessions"][0]
            .clone()
    };
    assert_eq!(by_name("pink")["node"], 1, "{text}");
    assert_eq!(
        by_name("pink")["serves"],
        serde_json::json!([{"stream": "cortex:inbox:pink", "group": "cortex-responders"}]),
        "{text}"
    );
    assert_eq!(by_name("harold")["node"], 2, "{text}");
    assert_eq!(by_name("")["node"], 3, "{text}");
    assert_eq!(by_name("")["front"], "resp", "{text}");
    assert_eq!(by_name("")["client"], "blue-tool", "{text}");

    // pink says goodbye: no node lists it.
    drop(requests);
    rt.block_on(pink.close());
    for node in &c.nodes {
        agents_on(node, "pink", Some(0));
    }
    // harold's node dies: its announcement lapses on the others, and harold with it.
    c.kill(1);
    for i in [0, 2] {
        let left = agents_on(&c.nodes[i], "harold", Some(0));
        let names = agreed(&left);
        assert_eq!(names.len(), 1, "node {}: {left}", i + 1);
    }
    drop(harold);
}
