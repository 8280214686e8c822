//! The client's connection: made, authenticated, watched and remade.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::watch;

use super::{from_frame, ClientError, ClientOptions};
use cortex_protocol::io::{read_frame, write_frame, ReadError};
use cortex_protocol::{ErrorCode, Frame, Limits, PROTOCOL};

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Connected; the number counts connections made so far (1 for the first).
    Connected(u64),
    /// Reconnecting after a loss.
    Reconnecting,
}

type Current = Option<(u64, Connection)>;

pub(crate) struct Link {
    pub(crate) opts: ClientOptions,
    endpoint: Endpoint,
    current: watch::Sender<Current>,
    limits: Mutex<Limits>,
    /// Dropped with the last client (or taken by `close`): the supervisor stops.
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some((_, c)) = self.current.borrow().as_ref() {
            c.close(0u32.into(), b"client closed");
        }
    }
}

pub(crate) async fn write(send: &mut SendStream, f: &Frame) -> Result<(), ClientError> {
    write_frame(send, f).await.map_err(ClientError::Lost)
}

pub(crate) async fn read(recv: &mut RecvStream, limits: &Limits) -> Result<Frame, ClientError> {
    match read_frame(recv, limits).await {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(ClientError::Lost("the server ended the stream".into())),
        Err(ReadError::Decode(e)) => Err(ClientError::Protocol(e.to_string())),
        Err(ReadError::Stream(e)) => Err(ClientError::Lost(e)),
    }
}

fn jitter(max_ms: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b) % max_ms.max(1)
}

impl Link {
    /// Closes the connection and waits (up to 1 s) until the server was told, so it lets
    /// go of this client's subscriptions now instead of at its idle timeout.
    pub(crate) async fn close(&self) {
        // The supervisor stops first, so it does not reconnect what is closed here.
        drop(self.stop.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some((_, c)) = self.current.borrow().as_ref() {
            c.close(0u32.into(), b"client closed");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    pub(crate) async fn connect(opts: ClientOptions) -> Result<Arc<Link>, ClientError> {
        let tls = crate::tls::client_config(&opts.trust).map_err(ClientError::Config)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let mut cc = quinn::ClientConfig::new(Arc::new(crypto));
        let mut t = quinn::TransportConfig::default();
        // A broker that vanished without a reset is noticed within 10 s.
        t.keep_alive_interval(Some(Duration::from_secs(2)));
        t.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_secs(10))
                .map_err(|e| ClientError::Config(e.to_string()))?,
        ));
        cc.transport_config(Arc::new(t));
        let bind: std::net::SocketAddr = if opts.server.is_ipv6() {
            "[::]:0"
                .parse()
                .map_err(|e| ClientError::Config(format!("{e}")))?
        } else {
            "0.0.0.0:0"
                .parse()
                .map_err(|e| ClientError::Config(format!("{e}")))?
        };
        let mut endpoint =
            Endpoint::client(bind).map_err(|e| ClientError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(cc);
        let (conn, limits, _) = handshake_any(&endpoint, &opts, 0).await?;
        let (current, _) = watch::channel(Some((1, conn)));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let link = Arc::new(Link {
            opts,
            endpoint,
            current,
            limits: Mutex::new(limits),
            stop: Mutex::new(Some(stop)),
        });
        tokio::spawn(supervise(Arc::downgrade(&link), stopped));
        Ok(link)
    }

    pub(crate) fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn state(&self) -> State {
        match self.current.borrow().as_ref() {
            Some((n, _)) => State::Connected(*n),
            None => State::Reconnecting,
        }
    }

    /// The live connection, waiting (up to the connect timeout) while reconnecting.
    pub(crate) async fn connection(&self) -> Result<(u64, Connection), ClientError> {
        let mut rx = self.current.subscribe();
        let wait = async {
            rx.wait_for(|c| c.as_ref().is_some_and(|(_, c)| c.close_reason().is_none()))
                .await
                .map(|c| c.as_ref().cloned())
        };
        match tokio::time::timeout(self.opts.connect_timeout, wait).await {
            Ok(Ok(Some(c))) => Ok(c),
            Ok(Ok(None)) => Err(ClientError::Connect("no connection".into())),
            Ok(Err(_)) => Err(ClientError::Connect("the client is closed".into())),
            Err(_) => Err(ClientError::Connect(format!(
                "no connection to {} within {:?}",
                self.opts.server, self.opts.connect_timeout
            ))),
        }
    }

    /// A new stream on the live connection.
    pub(crate) async fn open(&self) -> Result<(SendStream, RecvStream), ClientError> {
        let (_, conn) = self.connection().await?;
        conn.open_bi()
            .await
            .map_err(|e| ClientError::Lost(e.to_string()))
    }

    /// One request on its own stream, one answer.
    pub(crate) async fn call(&self, f: &Frame) -> Result<Frame, ClientError> {
        let (mut send, mut recv) = self.open().await?;
        write(&mut send, f).await?;
        let _ = send.finish();
        read(&mut recv, &self.limits()).await
    }
}

/// How long one node may take to answer when there are others to try.
const NODE_CONNECT_MAX: Duration = Duration::from_secs(2);

/// Connects to the first node that answers, starting with the `first`-th address; returns
/// the connection, the limits and the index of the node.
async fn handshake_any(
    endpoint: &Endpoint,
    opts: &ClientOptions,
    first: usize,
) -> Result<(Connection, Limits, usize), ClientError> {
    let servers = opts.servers();
    let per_node = if servers.len() > 1 {
        opts.connect_timeout.min(NODE_CONNECT_MAX)
    } else {
        opts.connect_timeout
    };
    let mut last = ClientError::Connect("no server address".into());
    for k in 0..servers.len() {
        let i = (first + k) % servers.len();
        match handshake(endpoint, opts, servers[i], per_node).await {
            Ok((c, l)) => return Ok((c, l, i)),
            // Wrong credentials are wrong on every node.
            Err(e) if e.code() == Some(ErrorCode::AuthFailed) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connects to one node and says Hello.
async fn handshake(
    endpoint: &Endpoint,
    opts: &ClientOptions,
    server: std::net::SocketAddr,
    timeout: Duration,
) -> Result<(Connection, Limits), ClientError> {
    let connecting = endpoint
        .connect(server, &opts.server_name)
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let conn = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ClientError::Connect(format!("handshake with {server} timed out")))?
        .map_err(|e| ClientError::Connect(format!("{server}: {e}")))?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let hello = Frame::Hello {
        protocol: PROTOCOL,
        agent: opts.agent.clone(),
        token: opts.token.clone(),
        client: format!("cortex-rust {}", env!("CARGO_PKG_VERSION")),
    };
    write(&mut send, &hello).await?;
    let _ = send.finish();
    match read(&mut recv, &Limits::default()).await? {
        Frame::Welcome { limits, .. } => Ok((conn, limits)),
        other => Err(from_frame(other)),
    }
}

/// Watches the connection; when it closes, reconnects with jittered exponential backoff
/// (2^n ms, at most 4 s), forever, until the client is dropped, trying the cluster's nodes
/// in turn from the one after the node that failed. A refusal of the agent's credentials is
/// permanent: it is logged and retried at the slowest pace.
async fn supervise(link: std::sync::Weak<Link>, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let mut node = 0usize;
    loop {
        let conn = match link.upgrade() {
            Some(l) => l.current.borrow().as_ref().map(|(n, c)| (*n, c.clone())),
            None => return,
        };
        let Some((n, conn)) = conn else { return };
        tokio::select! {
            _ = conn.closed() => {}
            _ = &mut stopped => return,
        }
        let Some(l) = link.upgrade() else { return };
        l.current.send_replace(None);
        let (endpoint, opts) = (l.endpoint.clone(), l.opts.clone());
        drop(l);
        let mut attempt = 0u32;
        loop {
            let cap = 4_000u64;
            let base = (1u64 << attempt.min(12)).min(cap);
            let wait = base / 2 + jitter(base / 2 + 1);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = &mut stopped => return,
            }
            attempt += 1;
            match handshake_any(&endpoint, &opts, node + 1).await {
                Ok((c, limits, i)) => {
                    let Some(l) = link.upgrade() else { return };
                    *l.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
                    l.current.send_replace(Some((n + 1, c)));
                    node = i;
                    tracing::info!("reconnected to {}", opts.servers()[i]);
                    break;
                }
                Err(e) => {
                    if e.code() == Some(ErrorCode::AuthFailed) {
                        attempt = 12;
                    }
                    tracing::debug!("reconnect failed: {e}");
                }
            }
        }
    }
}
