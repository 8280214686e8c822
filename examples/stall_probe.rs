//! Does one client's huge command stall the others? One client sends PING in a loop and
//! records each round trip while another sends `XACK` with 100,000 distinct IDs and
//! `XRANGE key - +` over a 200,000-entry stream. Prints the PING latencies during each.
//!
//! ```sh
//! cargo run --release --example stall_probe -- 127.0.0.1:6380       # a running cortex or redis
//! ```
//!
//! It writes to the stream `stall-probe` (deleted first) and the group `g`. Loopback only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENTRIES: usize = 200_000;
const ACK_IDS: usize = 100_000;

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one whole RESP2 reply, returning its first line (nested replies are skipped over).
fn read_reply(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("read");
    let first = line.trim_end().to_string();
    let mut pending: u64 = 0;
    let consume =
        |l: &str, pending: &mut u64, r: &mut BufReader<TcpStream>| match l.as_bytes().first() {
            Some(b'*') => {
                let n: i64 = l[1..].parse().unwrap_or(0);
                *pending += n.max(0) as u64;
            }
            Some(b'$') => {
                let n: i64 = l[1..].parse().unwrap_or(-1);
                if n >= 0 {
                    let mut buf = vec![0u8; n as usize + 2];
                    r.read_exact(&mut buf).expect("bulk");
                }
            }
            _ => {}
        };
    consume(&first, &mut pending, r);
    while pending > 0 {
        pending -= 1;
        let mut l = String::new();
        r.read_line(&mut l).expect("read");
        consume(l.trim_end(), &mut pending, r);
    }
    first
}

fn connect(addr: &str) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let r = BufReader::with_capacity(1 << 20, s.try_clone().expect("clone"));
    (s, r)
}

fn call(s: &mut TcpStream, r: &mut BufReader<TcpStream>, args: &[&[u8]]) -> String {
    s.write_all(&command(args)).expect("write");
    read_reply(r)
}

/// Sends `args` in a loop until `stop`; returns the round trips in microseconds.
fn looper(
    addr: String,
    stop: Arc<AtomicBool>,
    args: Vec<Vec<u8>>,
    ok: fn(&str) -> bool,
) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let (mut s, mut r) = connect(&addr);
        let args: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let mut lat = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let t = Instant::now();
            let rep = call(&mut s, &mut r, &args);
            assert!(ok(&rep), "unexpected reply {rep}");
            lat.push(t.elapsed().as_micros() as u64);
        }
        lat
    })
}

fn report(who: &str, mut lat: Vec<u64>) {
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "  other client's {who}: {} sent, p50 {} us, p99 {} us, worst {:.1} ms",
        lat.len(),
        p(0.5),
        p(0.99),
        *lat.last().unwrap_or(&0) as f64 / 1e3
    );
}

/// Runs `f` on a fresh connection while another client PINGs.
fn during(addr: &str, what: &str, f: impl FnOnce(&mut TcpStream, &mut BufReader<TcpStream>)) {
    let (mut s, mut r) = connect(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let ping = looper(
        addr.to_string(),
        stop.clone(),
        vec![b"PING".to_vec()],
        |r| r == "+PONG",
    );
    let xadd = looper(
        addr.to_string(),
        stop.clone(),
        ["XADD", "stall-probe-other", "MAXLEN", "1000", "*", "f", "v"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        |r| r.starts_with('$'),
    );
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    f(&mut s, &mut r);
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    println!("{what}: took {:.1} ms", took.as_secs_f64() * 1e3);
    report("PINGs", ping.join().expect("pinger"));
    report("XADDs", xadd.join().expect("xadd"));
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6380".into());
    let (mut s, mut r) = connect(&addr);
    call(
        &mut s,
        &mut r,
        &[b"DEL", b"stall-probe", b"stall-probe-other"],
    );
    // Fill: pipelined XADDs in chunks.
    let payload = vec![b'x'; 100];
    for chunk in 0..ENTRIES / 1000 {
        let mut buf = Vec::new();
        for _ in 0..1000 {
            buf.extend(command(&[b"XADD", b"stall-probe", b"*", b"f", &payload]));
        }
        s.write_all(&buf).expect("write");
        for _ in 0..1000 {
            let rep = read_reply(&mut r);
            assert!(rep.starts_with('$'), "XADD failed at chunk {chunk}: {rep}");
        }
    }
    call(
        &mut s,
        &mut r,
        &[b"XGROUP", b"CREATE", b"stall-probe", b"g", b"0"],
    );
    // Deliver ACK_IDS entries so the XACK has real work.
    let rep = call(
        &mut s,
        &mut r,
        &[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"c",
            b"COUNT",
            ACK_IDS.to_string().as_bytes(),
            b"STREAMS",
            b"stall-probe",
            b">",
        ],
    );
    assert!(rep.starts_with('*'), "XREADGROUP: {rep}");
    let ids = {
        s.write_all(&command(&[
            b"XRANGE",
            b"stall-probe",
            b"-",
            b"+",
            b"COUNT",
            ACK_IDS.to_string().as_bytes(),
        ]))
        .expect("write");
        // Parse the IDs out of the XRANGE reply.
        let mut ids = Vec::with_capacity(ACK_IDS);
        let mut line = String::new();
        r.read_line(&mut line).expect("read");
        let n: usize = line[1..].trim_end().parse().expect("count");
        for _ in 0..n {
            let mut l = String::new();
            r.read_line(&mut l).expect("*2"); // *2
            l.clear();
            r.read_line(&mut l).expect("$len");
            l.clear();
            r.read_line(&mut l).expect("id");
            ids.push(l.trim_end().to_string());
            l.clear();
            r.read_line(&mut l).expect("*2 fields");
            for _ in 0..2 {
                l.clear();
                r.read_line(&mut l).expect("$");
                l.clear();
                r.read_line(&mut l).expect("v");
            }
        }
        ids
    };
    println!(
        "{ENTRIES} entries stored, {} delivered to group g",
        ids.len()
    );
    during(&addr, "XACK with 100,000 IDs", |s, r| {
        let mut args: Vec<&[u8]> = vec![b"XACK", b"stall-probe", b"g"];
        args.extend(ids.iter().map(|i| i.as_bytes()));
        let rep = call(s, r, &args);
        println!("XACK replied {rep}");
    });
    during(&addr, "XRANGE - + over 200,000 entries", |s, r| {
        let rep = call(s, r, &[b"XRANGE", b"stall-probe", b"-", b"+"]);
        println!("XRANGE replied {rep}");
    });
    call(
        &mut s,
        &mut r,
        &[b"DEL", b"stall-probe", b"stall-probe-other"],
    );
}
