//! The RESP listener and the per-connection loop (pipelining: every complete command in the
//! buffer is answered before the replies are flushed together).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{RwLock, Semaphore};

use crate::broker::Broker;
use crate::resp::cmd;
use crate::resp::codec::{parse_command, Args, Frame};
use crate::resp::conn::{ClientView, Conn};

/// Most commands parsed ahead from one client's buffer.
const PIPELINE_MAX: usize = 1024;
/// Most pipelined commands sharing one submission.
const BATCH_MAX: usize = 1024;

/// State shared by all RESP connections.
pub struct Clients {
    next_id: AtomicU64,
    /// Every connection's CLIENT LIST view, by client ID.
    pub list: Mutex<BTreeMap<u64, Arc<Mutex<ClientView>>>>,
    /// MULTI/EXEC isolation: every command runs under the shared side, EXEC under the
    /// exclusive side, so nothing interleaves with a transaction.
    pub gate: RwLock<()>,
    /// Per-command counters for INFO commandstats: calls, errors, microseconds.
    pub cmdstats: Mutex<BTreeMap<&'static str, (u64, u64, u64)>>,
    /// Error replies by error code, for INFO errorstats.
    pub errorstats: Mutex<BTreeMap<String, u64>>,
    /// Connections turned away at `clients_max`.
    pub rejected: AtomicU64,
    /// CONFIG stream-node-max-entries and -bytes (accepted for compatibility, no effect).
    pub stream_node: Mutex<[i64; 2]>,
}

impl Clients {
    fn new() -> Self {
        Clients {
            next_id: AtomicU64::new(1),
            list: Mutex::new(BTreeMap::new()),
            gate: RwLock::new(()),
            cmdstats: Mutex::new(BTreeMap::new()),
            errorstats: Mutex::new(BTreeMap::new()),
            rejected: AtomicU64::new(0),
            stream_node: Mutex::new([100, 4096]),
        }
    }
}

/// Accepts RESP clients until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let clients = Arc::new(Clients::new());
    let limit = Arc::new(Semaphore::new(broker.config().clients_max));
    tokio::pin!(shutdown);
    loop {
        let (sock, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            clients.rejected.fetch_add(1, Ordering::Relaxed);
            let mut sock = sock;
            let _ = sock
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            continue;
        };
        let _ = sock.set_nodelay(true);
        let b = broker.clone();
        let c = clients.clone();
        tokio::spawn(async move {
            connection(sock, addr, b, c).await;
            drop(permit);
        });
    }
}

async fn connection(mut sock: TcpStream, addr: SocketAddr, broker: Broker, clients: Arc<Clients>) {
    let id = clients.next_id.fetch_add(1, Ordering::Relaxed);
    let laddr = sock.local_addr().unwrap_or(addr);
    let authed = broker.config().tokens.is_empty();
    let mut conn = Conn::new(id, addr, laddr, broker.now_ms(), authed);
    clients
        .list
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, conn.view.clone());
    let stats = broker.stats();
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.clients.fetch_add(1, Ordering::Relaxed);
    let limits = broker.config().resp_limits;
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
    // Commands parsed from the buffer, waiting to run (bounded per read).
    let mut queued: std::collections::VecDeque<Args> = std::collections::VecDeque::new();
    'conn: loop {
        let mut start = 0;
        let mut protocol_error = None;
        // True when parsing stopped at the cap, with more complete commands still buffered.
        let mut capped = true;
        while queued.len() < PIPELINE_MAX {
            match parse_command(&buf[start..], &limits) {
                Ok(Some((args, used))) => {
                    start += used;
                    if !args.is_empty() {
                        queued.push_back(args);
                    }
                }
                Ok(None) => {
                    capped = false;
                    break;
                }
                Err(e) => {
                    protocol_error = Some(e);
                    capped = false;
                    break;
                }
            }
        }
        buf.drain(..start);
        while let Some(args) = queued.pop_front() {
            if cmd::batchable(&args[0]) && conn.authed && conn.multi.is_none() {
                let mut run = vec![args];
                while queued.front().is_some_and(|a| cmd::batchable(&a[0])) && run.len() < BATCH_MAX
                {
                    run.extend(queued.pop_front());
                }
                for reply in cmd::dispatch_batch(&mut conn, &broker, &clients, run).await {
                    reply.encode(conn.proto, &mut out);
                }
            } else {
                let reply = cmd::dispatch(&mut conn, &broker, &clients, args).await;
                reply.encode(conn.proto, &mut out);
                if conn.close {
                    let _ = sock.write_all(&out).await;
                    break 'conn;
                }
            }
            if out.len() >= 64 << 10 {
                if sock.write_all(&out).await.is_err() {
                    break 'conn;
                }
                out.clear();
            }
        }
        if let Some(e) = protocol_error {
            Frame::err(format!("Protocol error: {}", e.0)).encode(conn.proto, &mut out);
            let _ = sock.write_all(&out).await;
            break;
        }
        if !out.is_empty() {
            if sock.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if broker.stopping() {
            break;
        }
        if buf.len() >= limits.buffer_bytes_max {
            Frame::err("Protocol error: client query buffer limit exceeded")
                .encode(conn.proto, &mut out);
            let _ = sock.write_all(&out).await;
            break;
        }
        // Parsing stopped at the cap: run the rest of the buffer before reading more.
        if capped {
            continue;
        }
        buf.reserve(16 << 10);
        match sock.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    clients
        .list
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    stats.clients.fetch_sub(1, Ordering::Relaxed);
}
