//! Starts the real binary and talks to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a server may take to start and report its ports (a loaded machine is slow
/// to start a process, not this slow).
const STARTUP: Duration = Duration::from_secs(60);
/// The longest one read or write on a test's connection may wait: a reply the server owes
/// comes long before this, and a hang fails with the read's error instead of holding CI.
pub const IO_BOUND: Duration = Duration::from_secs(60);

/// Polls `check` every 20 ms until it returns `Ok`: for a state the server reaches on its
/// own and reports (a client blocked, a trim, the journal filler at work). Past `IO_BOUND`
/// the test fails with `check`'s last `Err`, which says what was seen.
pub fn wait_until(mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + IO_BOUND;
    loop {
        match check() {
            Ok(()) => return,
            Err(seen) => assert!(Instant::now() < deadline, "{seen} (within {IO_BOUND:?})"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `cortex serve` on a free loopback port with its own data dir.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The QUIC port (kept across restarts, so clients can reconnect).
    pub quic: SocketAddr,
    /// The HTTP port (kept across restarts).
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The data directory (`dir`, unless started on another one).
    data: std::path::PathBuf,
    extra: Vec<String>,
    /// Where the fronts bind (127.0.0.1, or a namespace's address).
    host: String,
    /// A command the binary runs under (`ip netns exec NS`), or nothing.
    wrapper: Vec<String>,
    /// The QUIC and HTTP ports on loopback, held while the server lives (see
    /// [`PortLease`]): a restart binds them again. Taken with `:0`, the kernel hands a
    /// port freed by a kill to the next outgoing connection of any process (seen in a CI
    /// rehearsal beside a flake hunt: "cannot bind the HTTP port ...: Address already in
    /// use" at a crash test's restart).
    _ports: Option<PortLease>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_path_buf();
        Server::launch(dir, data, extra)
    }

    /// A server on an existing data directory (a backup, say).
    pub fn start_in(data: &std::path::Path, extra: &[&str]) -> Server {
        Server::launch(
            tempfile::tempdir().expect("tempdir"),
            data.to_path_buf(),
            extra,
        )
    }

    fn launch(dir: tempfile::TempDir, data: std::path::PathBuf, extra: &[&str]) -> Server {
        Server::launch_as(dir, data, extra, "127.0.0.1", Vec::new())
    }

    /// A server inside network namespace `ns`, its fronts bound to `host` (which needs
    /// tokens in its config: it is not loopback).
    pub fn start_in_netns(ns: &str, host: &str, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_path_buf();
        let wrapper = ["ip", "netns", "exec", ns].map(String::from).to_vec();
        Server::launch_as(dir, data, extra, host, wrapper)
    }

    fn launch_as(
        dir: tempfile::TempDir,
        data: std::path::PathBuf,
        extra: &[&str],
        host: &str,
        wrapper: Vec<String>,
    ) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // In a namespace of its own nobody else binds ports: `:0` there.
        let lease = (host == "127.0.0.1").then(|| lease_ports(2));
        let keep = lease.as_ref().map(|l| {
            let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
            (at(l.ports[0]), at(l.ports[1]))
        });
        let (child, addr, quic, http) = spawn(&data, &extra, keep, host, &wrapper);
        Server {
            child: Some(child),
            addr,
            quic,
            http,
            dir,
            data,
            extra,
            host: host.to_string(),
            wrapper,
            _ports: lease,
        }
    }

    /// Kills the process (SIGKILL: nothing is flushed) and starts it again on the same data.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// Kills the process (SIGKILL) and leaves it down; [`Server::restart`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }

    /// The process ID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        let (child, addr, _, _) = spawn(
            &self.data,
            &self.extra,
            Some((self.quic, self.http)),
            &self.host,
            &self.wrapper,
        );
        self.child = Some(child);
        self.addr = addr;
    }

    pub fn redis(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.addr)).expect("client");
        let c = client
            .get_connection_with_timeout(IO_BOUND)
            .expect("connect");
        c.set_read_timeout(Some(IO_BOUND)).expect("read timeout");
        c.set_write_timeout(Some(IO_BOUND)).expect("write timeout");
        c
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn blocked_clients(&self) -> usize {
        let info = self.raw().cmd(&["INFO", "clients"]);
        let line = info
            .s()
            .lines()
            .find(|l| l.starts_with("blocked_clients:"))
            .expect("blocked_clients")
            .to_string();
        line["blocked_clients:".len()..]
            .trim()
            .parse()
            .expect("number")
    }

    /// Sends a (blocking) command from another client and returns once the server reports one
    /// more blocked client; join the handle for its reply.
    pub fn spawn_blocked(&self, args: &[&str]) -> std::thread::JoinHandle<V> {
        self.spawn_blocked_in("0", args)
    }

    /// [`Server::spawn_blocked`] from a client that first SELECTs database `db`.
    pub fn spawn_blocked_in(&self, db: &str, args: &[&str]) -> std::thread::JoinHandle<V> {
        let before = self.blocked_clients();
        let addr = self.addr;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let db = db.to_string();
        let handle = std::thread::spawn(move || {
            let mut r = Raw::connect(addr);
            assert_eq!(r.cmd(&["SELECT", &db]), V::Simple("OK".into()));
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            r.cmd(&a)
        });
        wait_until(|| {
            if self.blocked_clients() > before {
                Ok(())
            } else {
                Err("the command never blocked".into())
            }
        });
        handle
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(
    dir: &std::path::Path,
    extra: &[String],
    keep: Option<(SocketAddr, SocketAddr)>,
    host: &str,
    wrapper: &[String],
) -> (Child, SocketAddr, SocketAddr, SocketAddr) {
    let (quic_arg, http_arg) = keep.map_or((format!("{host}:0"), format!("{host}:0")), |(q, h)| {
        (q.to_string(), h.to_string())
    });
    let bin = env!("CARGO_BIN_EXE_cortex");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--resp")
        .arg(format!("{host}:0"))
        .arg("--quic")
        .arg(quic_arg)
        .arg("--http")
        .arg(http_arg)
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("IT_LOG").unwrap_or("warn,openraft=off".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start cortex");
    // stdout is read on a thread of its own (which keeps draining it, so the child never
    // blocks on a full pipe), and the ports come over a channel: a child that prints
    // nothing cannot hold the test past the bound.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // The test gave up on this child: keep draining.
                continue;
            }
        }
    });
    let deadline = Instant::now() + STARTUP;
    let (mut quic, mut http) = (None, None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "cortex did not report its ports within {STARTUP:?} ({}; exit {status:?}): \
                     see its log above",
                    match e {
                        std::sync::mpsc::RecvTimeoutError::Timeout => "still running",
                        std::sync::mpsc::RecvTimeoutError::Disconnected => "stdout closed",
                    }
                );
            }
        };
        if let Some(a) = line.strip_prefix("cortex: QUIC listening on ") {
            quic = a.trim().parse().ok();
        }
        if let Some(a) = line.strip_prefix("cortex: HTTP listening on ") {
            http = a.trim().parse().ok();
        }
        if let Some(a) = line.strip_prefix("cortex: RESP listening on ") {
            if let (Ok(addr), Some(quic), Some(http)) = (a.trim().parse(), quic, http) {
                return (child, addr, quic, http);
            }
        }
    }
}

/// A reply as the tests see it.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Simple(String),
    Err(String),
    Int(i64),
    Bulk(String),
    Nil,
    Arr(Vec<V>),
    Map(Vec<(V, V)>),
    Double(String),
    Verbatim(String),
}

impl V {
    pub fn s(&self) -> &str {
        match self {
            V::Simple(s) | V::Bulk(s) | V::Err(s) | V::Verbatim(s) | V::Double(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }
    pub fn arr(&self) -> &[V] {
        match self {
            V::Arr(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }
    pub fn int(&self) -> i64 {
        match self {
            V::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }
    pub fn is_err(&self) -> bool {
        matches!(self, V::Err(_))
    }
}

/// A raw RESP connection: send bytes, read one reply at a time.
pub struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    tolerant: bool,
}

fn multibulk(args: &[&str]) -> Vec<u8> {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    multibulk_bytes(&bytes)
}

fn multibulk_bytes<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(IO_BOUND)).expect("timeout");
        s.set_write_timeout(Some(IO_BOUND)).expect("timeout");
        Raw {
            s,
            buf: Vec::new(),
            tolerant: false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// Sends a command (as a multibulk) and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> V {
        self.send(&multibulk(args));
        self.read()
    }

    /// [`Raw::cmd`] with binary arguments.
    pub fn cmd_bytes<A: AsRef<[u8]>>(&mut self, args: &[A]) -> V {
        self.send(&multibulk_bytes(args));
        self.read()
    }

    /// Sends commands in one write and reads their replies.
    pub fn pipeline(&mut self, cmds: &[Vec<String>]) -> Vec<V> {
        let mut out = Vec::new();
        for c in cmds {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            out.extend(multibulk(&args));
        }
        self.send(&out);
        cmds.iter().map(|_| self.read()).collect()
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        loop {
            return match self.s.read(&mut chunk) {
                Ok(0) => false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    true
                }
                // A socket read with a timeout returns EINTR after any signal (or a stop
                // and continue of this process), whatever SA_RESTART says: read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if self.tolerant => {
                    let _ = e;
                    false
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("the server sent no reply within {IO_BOUND:?}")
                }
                Err(e) => panic!("read: {e}"),
            };
        }
    }

    fn try_line(&mut self) -> Option<String> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return Some(l);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// True when the server closed the connection.
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }

    pub fn read(&mut self) -> V {
        self.try_read().expect("connection closed")
    }

    /// A connection that reports failures as `None` instead of panicking (servers that
    /// get killed under it).
    pub fn try_connect(addr: SocketAddr) -> Option<Raw> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
        s.set_write_timeout(Some(Duration::from_secs(15))).ok()?;
        Some(Raw {
            s,
            buf: Vec::new(),
            tolerant: true,
        })
    }

    /// Sends a command; `None` when the connection failed.
    pub fn try_cmd(&mut self, args: &[&str]) -> Option<V> {
        self.s.write_all(&multibulk(args)).ok()?;
        self.try_read()
    }

    fn try_read(&mut self) -> Option<V> {
        let l = self.try_line()?;
        let (t, rest) = l.split_at(1);
        Some(match t {
            "+" => V::Simple(rest.into()),
            "-" => V::Err(rest.into()),
            ":" => V::Int(rest.parse().expect("int")),
            "_" => V::Nil,
            "," => V::Double(rest.into()),
            "#" => V::Int(i64::from(rest == "t")),
            "$" | "=" => {
                let n: i64 = rest.parse().expect("len");
                if n < 0 {
                    return Some(V::Nil);
                }
                let n = n as usize;
                while self.buf.len() < n + 2 {
                    if !self.fill() {
                        return None;
                    }
                }
                let s = String::from_utf8_lossy(&self.buf[..n]).into_owned();
                self.buf.drain(..n + 2);
                if t == "=" {
                    V::Verbatim(s[4..].into())
                } else {
                    V::Bulk(s)
                }
            }
            "*" | "~" | ">" => {
                let n: i64 = rest.parse().expect("len");
                if n < 0 {
                    return Some(V::Nil);
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.try_read()?);
                }
                V::Arr(v)
            }
            "%" => {
                let n: usize = rest.parse().expect("len");
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push((self.try_read()?, self.try_read()?));
                }
                V::Map(v)
            }
            other => panic!("unexpected reply type {other:?} in {l:?}"),
        })
    }
}

/// Shorthand for a bulk string.
pub fn b(s: &str) -> V {
    V::Bulk(s.into())
}

/// The ID of an `[id, [f, v, ...]]` entry reply.
pub fn entry_id(v: &V) -> String {
    v.arr()[0].s().to_string()
}

/// The entry IDs of the first stream of an XREAD / XREADGROUP reply.
pub fn read_ids(v: &V) -> Vec<String> {
    v.arr()[0].arr()[1].arr().iter().map(entry_id).collect()
}

/// A stream's first group's last-delivered-id, from XINFO GROUPS.
pub fn last_delivered(r: &mut Raw, stream: &str) -> String {
    let groups = r.cmd(&["XINFO", "GROUPS", stream]);
    let g = groups.arr()[0].arr();
    let pos = g
        .iter()
        .position(|x| matches!(x, V::Bulk(s) | V::Simple(s) if s == "last-delivered-id"))
        .expect("last-delivered-id");
    g[pos + 1].s().to_string()
}

/// Orders two stream IDs (`ms-seq`) as numbers.
pub fn id_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let p = |s: &str| -> (u64, u64) {
        let (m, q) = s.split_once('-').unwrap_or((s, "0"));
        (m.parse().unwrap_or(0), q.parse().unwrap_or(0))
    };
    p(a).cmp(&p(b))
}

/// Loopback ports this process holds until the lease is dropped, for what must be known
/// before a server starts (a cluster's node addresses). Picking a free port with a `:0`
/// bind and letting it go races with every other `:0` bind on the machine (each QUIC client
/// makes one) until the server binds it, which under load is seconds. A leased port comes
/// from below the kernel's ephemeral range (32768 and up), so no `:0` bind is handed it; a
/// lock file in the temp dir, held while the lease lives, keeps concurrent tests and test
/// processes apart; and it is checked free for UDP and TCP.
pub struct PortLease {
    pub ports: Vec<u16>,
    _locks: Vec<std::fs::File>,
}

/// Leases `n` ports (see [`PortLease`]).
pub fn lease_ports(n: usize) -> PortLease {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join("cortex-test-ports");
    std::fs::create_dir_all(&dir).expect("the port lock directory");
    let start = std::process::id().wrapping_mul(7919);
    let mut lease = PortLease {
        ports: Vec::new(),
        _locks: Vec::new(),
    };
    for _ in 0..COUNT {
        if lease.ports.len() == n {
            return lease;
        }
        let port =
            (FIRST + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT) as u16;
        let Ok(file) = std::fs::File::create(dir.join(port.to_string())) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        let free = std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free {
            lease.ports.push(port);
            lease._locks.push(file);
        }
    }
    panic!("no {n} free ports between {FIRST} and {}", FIRST + COUNT);
}
