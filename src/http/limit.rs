//! Bounds on HTTP connections, which axum leaves open: at most `http_connections_max` at
//! once (one more is answered `503` with the reason and closed, so a storm never costs more
//! than the limit), and a connection must send the first bytes of its request within
//! [`FIRST_BYTE_TIMEOUT`] (a half-open or idle-from-the-start connection would otherwise
//! hold its place forever). Long-lived responses (the live tail) are not bounded in time:
//! only the start of a connection is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::broker::Broker;

/// How long a new connection may take to send the first byte of its request.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener that holds at most `http_connections_max` connections, counted in the
/// broker's `http_connections` (the limit and the gauge are one number).
pub struct Limited {
    inner: TcpListener,
    broker: Broker,
    max: u64,
}

impl Limited {
    /// Wraps `inner` for `broker`'s HTTP front.
    pub fn new(inner: TcpListener, broker: Broker) -> Limited {
        let max = broker.config().http_connections_max as u64;
        Limited { inner, broker, max }
    }
}

impl axum::serve::Listener for Limited {
    type Io = Conn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Conn, Self::Addr) {
        loop {
            let (sock, addr) = match self.inner.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, mostly: let some close.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let open = &self.broker.metrics().http_connections;
            if open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.max).then_some(n + 1)
                })
                .is_err()
            {
                tokio::spawn(refuse(sock, self.max));
                continue;
            }
            let _ = sock.set_nodelay(true);
            return (
                Conn {
                    sock,
                    broker: self.broker.clone(),
                    first_byte: Some(Box::pin(tokio::time::sleep(FIRST_BYTE_TIMEOUT))),
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Answers a connection over the limit and closes it (bounded in time: a peer that does
/// not read is dropped).
async fn refuse(mut sock: TcpStream, max: u64) {
    tracing::warn!("HTTP connection refused: {max} connections already (http_connections_max)");
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"the server has {max} HTTP connections open (http_connections_max); try again later\"}}}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = sock.write_all(answer.as_bytes()).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

/// One HTTP connection: its place under the limit goes with it.
pub struct Conn {
    sock: TcpStream,
    broker: Broker,
    /// Until the first byte arrives: when it fires, the connection is dropped.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.broker
            .metrics()
            .http_connections
            .fetch_sub(1, Ordering::AcqRel);
        self.broker.connection_closed();
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.sock).poll_read(cx, buf);
        if self.first_byte.is_some() {
            match &r {
                Poll::Ready(Ok(())) if buf.filled().len() > before => self.first_byte = None,
                Poll::Pending => {
                    if let Some(t) = self.first_byte.as_mut() {
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "no request within 10 s of connecting",
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        r
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.sock).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.sock).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.sock.is_write_vectored()
    }
}
