//! The RESP listener and the per-connection loop: I/O only. Every complete command in the
//! buffer is planned, the plans run (runs of pipelined writes share one submission), and the
//! replies are flushed together.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::broker::Broker;
use crate::resp::cmd;
use crate::resp::codec::{parse_command, Args, Frame};
use crate::resp::conn::{Conn, Shared};

/// Most commands parsed ahead from one client's buffer.
const PIPELINE_MAX: usize = 1024;

/// Accepts RESP clients until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let shared = Arc::new(Shared::default());
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
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            let mut sock = sock;
            let _ = sock
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            continue;
        };
        let _ = sock.set_nodelay(true);
        let b = broker.clone();
        let s = shared.clone();
        tokio::spawn(async move {
            connection(sock, addr, b, s).await;
            drop(permit);
        });
    }
}

/// Replies larger than this are written straight from their own buffer, in chunks, letting
/// other connections run between chunks.
const DIRECT_WRITE_MIN: usize = 1 << 20;
/// Chunk size of a direct write.
const WRITE_CHUNK: usize = 256 << 10;

/// A buffer larger than this is replaced by a small one once it is empty.
const BUFFER_KEEP: usize = 64 << 10;

/// The bytes one connection's buffers hold, added into [`Shared::buffer_bytes`] (INFO
/// memory's `mem_clients_normal`).
struct Held<'a> {
    total: &'a std::sync::atomic::AtomicUsize,
    mine: usize,
}

impl Held<'_> {
    fn set(&mut self, now: usize) {
        if now == self.mine {
            // The usual case, once per read: no shared write.
            return;
        }
        if now > self.mine {
            self.total.fetch_add(now - self.mine, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(self.mine - now, Ordering::Relaxed);
        }
        self.mine = now;
    }
}

impl Drop for Held<'_> {
    /// A connection task that ends any other way (a panic) gives its count back too.
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Adds a reply to the output buffer, or writes a large pre-encoded one directly (after
/// what is buffered, so the order of replies holds).
async fn emit(
    sock: &mut TcpStream,
    out: &mut Vec<u8>,
    conn: &Conn,
    qbuf: usize,
    reply: Frame,
) -> std::io::Result<()> {
    match reply {
        Frame::Encoded(bytes) if bytes.len() >= DIRECT_WRITE_MIN => {
            flush(sock, out, conn, qbuf).await?;
            // Shown in CLIENT LIST (`omem`) from before the first byte goes out.
            let mut left = bytes.len();
            for chunk in bytes.chunks(WRITE_CHUNK) {
                conn.buffers(qbuf, left);
                sock.write_all(chunk).await?;
                left -= chunk.len();
                tokio::task::yield_now().await;
            }
            conn.buffers(qbuf, 0);
            Ok(())
        }
        other => {
            other.encode(conn.proto, out);
            Ok(())
        }
    }
}

/// The replies before the connection closes; a client that does not read them within a
/// few seconds does not keep the connection (and its buffers) alive.
async fn last_words(sock: &mut TcpStream, out: &[u8]) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sock.write_all(out)).await;
}

/// Writes and empties the output buffer. When the socket cannot take it at once (the client
/// is not reading), CLIENT LIST shows the bytes left as `omem` until they are written. The
/// connection's memory stays bounded either way: nothing more is read or run until they are.
async fn flush(
    sock: &mut TcpStream,
    out: &mut Vec<u8>,
    conn: &Conn,
    qbuf: usize,
) -> std::io::Result<()> {
    let done = match sock.try_write(out) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let r = if done == out.len() {
        Ok(())
    } else {
        conn.buffers(qbuf, out.len() - done);
        let r = sock.write_all(&out[done..]).await;
        conn.buffers(qbuf, 0);
        r
    };
    out.clear();
    r
}

async fn connection(mut sock: TcpStream, addr: SocketAddr, broker: Broker, shared: Arc<Shared>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let laddr = sock.local_addr().unwrap_or(addr);
    let mut conn = Conn::new(id, addr, laddr, broker.now_ms(), broker.open_session());
    shared
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
    let mut held = Held {
        total: &shared.buffer_bytes,
        mine: 0,
    };
    held.set(buf.capacity() + out.capacity());
    // Commands parsed from the buffer, waiting to run (bounded per read).
    let mut queued: VecDeque<Args> = VecDeque::new();
    let mut presence = super::presence::Presence::default();
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
        // Plan commands in order; a run of plans that are plain ops goes to the broker as
        // one submission. Anything else (and a command that closes the connection) runs
        // on its own, after what was planned before it.
        let mut run: Vec<cmd::Planned> = Vec::new();
        let mut run_ops = 0;
        // The clocks, read once for the commands of this read, and again (when a command
        // follows) after a wait.
        let mut now: Option<cmd::Stamp> = None;
        while let Some(args) = queued.pop_front() {
            let stamp = *now.get_or_insert_with(|| cmd::Stamp::now(&broker));
            let p = cmd::prepare(&mut conn, &broker, &shared, args, stamp);
            let ops = p.batchable();
            if run_ops > 0 && (ops.is_none() || run_ops + ops.unwrap_or(0) > cmd::PIPELINE_OPS_MAX)
            {
                for reply in cmd::run(&mut conn, &broker, &shared, std::mem::take(&mut run)).await {
                    if emit(&mut sock, &mut out, &conn, buf.len(), reply)
                        .await
                        .is_err()
                    {
                        break 'conn;
                    }
                }
                run_ops = 0;
                now = None;
            }
            run.push(p);
            match ops {
                Some(n) => run_ops += n,
                None => {
                    presence.sync(&mut conn, &broker);
                    for reply in
                        cmd::run(&mut conn, &broker, &shared, std::mem::take(&mut run)).await
                    {
                        if emit(&mut sock, &mut out, &conn, buf.len(), reply)
                            .await
                            .is_err()
                        {
                            break 'conn;
                        }
                    }
                    now = None;
                }
            }
            if conn.close {
                last_words(&mut sock, &out).await;
                break 'conn;
            }
            if out.len() >= 64 << 10 {
                if flush(&mut sock, &mut out, &conn, buf.len()).await.is_err() {
                    break 'conn;
                }
                now = None;
            }
        }
        if !run.is_empty() {
            for reply in cmd::run(&mut conn, &broker, &shared, std::mem::take(&mut run)).await {
                if emit(&mut sock, &mut out, &conn, buf.len(), reply)
                    .await
                    .is_err()
                {
                    break 'conn;
                }
            }
        }
        if let Some(e) = protocol_error {
            Frame::err(format!("Protocol error: {}", e.0)).encode(conn.proto, &mut out);
            last_words(&mut sock, &out).await;
            break;
        }
        // Before the replies go out: a client that has its reply finds itself listed.
        presence.sync(&mut conn, &broker);
        if !out.is_empty() && flush(&mut sock, &mut out, &conn, buf.len()).await.is_err() {
            break;
        }
        if broker.stopping() {
            break;
        }
        if buf.len() >= limits.buffer_bytes_max {
            Frame::err("Protocol error: client query buffer limit exceeded")
                .encode(conn.proto, &mut out);
            last_words(&mut sock, &out).await;
            break;
        }
        // Parsing stopped at the cap: run the rest of the buffer before reading more.
        if capped {
            continue;
        }
        // Buffers grown for one big command or reply are let go of once empty, so an idle
        // connection holds its small buffers only.
        if buf.is_empty() && buf.capacity() > BUFFER_KEEP {
            buf = Vec::with_capacity(16 << 10);
        }
        if out.is_empty() && out.capacity() > BUFFER_KEEP {
            out = Vec::with_capacity(16 << 10);
        }
        buf.reserve(16 << 10);
        held.set(buf.capacity() + out.capacity());
        match sock.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    shared
        .list
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    held.set(0);
    // Off the list of agents before the count goes down (a drain that waited for the
    // count sees no session left).
    drop(presence);
    stats.clients.fetch_sub(1, Ordering::Relaxed);
    broker.connection_closed();
}
