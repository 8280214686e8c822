//! Bounds on HTTP connections, which axum leaves open: at most `http_connections_max` at
//! once (one more is answered `503` with the reason and closed, so a storm never costs more
//! than the limit), and a connection must send the first bytes of its request within
//! [`FIRST_BYTE_TIMEOUT`] (a half-open or idle-from-the-start connection would otherwise
//! hold its place forever). Long-lived responses (the live tail) are not bounded in time:
//! only the start of a connection is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a new connection may take to send the first byte of its request.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener that holds at most `max` connections.
pub struct Limited {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
}

impl Limited {
    /// Wraps `inner`, allowing `max` connections at once.
    pub fn new(inner: TcpListener, max: usize) -> Limited {
        Limited {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
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
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                let max = self.max;
                tokio::spawn(refuse(sock, max));
                continue;
            };
            let _ = sock.set_nodelay(true);
            return (
                Conn {
                    sock,
                    _permit: permit,
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
async fn refuse(mut sock: TcpStream, max: usize) {
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
    _permit: OwnedSemaphorePermit,
    /// Until the first byte arrives: when it fires, the connection is dropped.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
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
