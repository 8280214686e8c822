//! Node-to-node transport: QUIC (TLS 1.3), one connection per peer, one bidirectional
//! stream per call. The first stream of a connection authenticates both ends: each sends
//! HMAC-SHA256(cluster secret, role · TLS exporter · node ID), so only holders of the secret
//! talk, and the MAC is bound to this TLS session (a relay cannot reuse it).
//!
//! A call is `[kind u8][len u32 LE][bincode payload]`, answered by `[len u32 LE][payload]`.
//! Kinds: append entries, vote, snapshot (the header, then the snapshot's files streamed),
//! forward (a follower's writer batch), membership.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory, Snapshot, SnapshotMeta, Vote};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::AsyncWriteExt;

use super::sm::{Dirs, SnapshotDir};
use super::{Node, Origin, Raft, TypeConfig};
use crate::core::Core;

/// ALPN of cluster links.
pub const ALPN: &[u8] = b"cortex-cluster/1";
/// Largest call or answer (a batch of entries).
const FRAME_MAX: usize = 256 << 20;
/// Longest path inside a snapshot.
const PATH_MAX: usize = 4096;
/// Most files in a snapshot (a store has a few hundred; this bounds a broken sender).
const SNAPSHOT_FILES_MAX: usize = 100_000;
/// How long connecting and authenticating may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a forwarded batch may take to commit.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

const APPEND: u8 = 1;
const VOTE: u8 = 2;
const SNAPSHOT: u8 = 3;
const FORWARD: u8 = 4;
// 5 was a status call, never used; the number stays retired.
const MEMBERSHIP: u8 = 6;
const PRESENCE: u8 = 7;
/// How long an announcement of inboxes may take (the next one follows within a second).
const PRESENCE_TIMEOUT: Duration = Duration::from_millis(1500);

fn cfg() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// A failed call: the peer could not be reached, or the link failed during the call.
#[derive(Debug)]
pub enum NetError {
    /// No connection.
    Unreachable(String),
    /// The call failed on the way.
    Failed(String),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Unreachable(e) => write!(f, "unreachable: {e}"),
            NetError::Failed(e) => write!(f, "{e}"),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> NetError {
    NetError::Failed(e.to_string())
}

/// This node's endpoint and its links to the others.
pub struct Net {
    id: u64,
    secret: Vec<u8>,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    addrs: RwLock<BTreeMap<u64, SocketAddr>>,
    conns: tokio::sync::Mutex<HashMap<u64, quinn::Connection>>,
}

fn mac(secret: &[u8], role: &[u8], exporter: &[u8], id: u64) -> ring::hmac::Tag {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(role);
    ctx.update(exporter);
    ctx.update(&id.to_le_bytes());
    ctx.sign()
}

fn verify(secret: &[u8], role: &[u8], exporter: &[u8], id: u64, tag: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut msg = Vec::with_capacity(role.len() + exporter.len() + 8);
    msg.extend_from_slice(role);
    msg.extend_from_slice(exporter);
    msg.extend_from_slice(&id.to_le_bytes());
    ring::hmac::verify(&key, &msg, tag).is_ok()
}

fn exporter(conn: &quinn::Connection) -> Result<[u8; 32], NetError> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, b"cortex cluster auth", b"")
        .map_err(|e| failed(format!("TLS exporter: {e:?}")))?;
    Ok(out)
}

async fn write_frame(send: &mut quinn::SendStream, payload: &[u8]) -> Result<(), NetError> {
    send.write_all(&(payload.len() as u32).to_le_bytes())
        .await
        .map_err(failed)?;
    send.write_all(payload).await.map_err(failed)
}

async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Vec<u8>, NetError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(failed)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_MAX {
        return Err(failed(format!("frame of {len} bytes is over {FRAME_MAX}")));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await.map_err(failed)?;
    Ok(buf)
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, NetError> {
    bincode::serde::encode_to_vec(v, cfg()).map_err(failed)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, NetError> {
    let (v, used) = bincode::serde::decode_from_slice(b, cfg()).map_err(failed)?;
    if used != b.len() {
        return Err(failed("trailing bytes in a frame"));
    }
    Ok(v)
}

impl Net {
    /// Binds this node's cluster endpoint.
    pub fn bind(
        id: u64,
        listen: SocketAddr,
        secret: &str,
        nodes: &BTreeMap<u64, SocketAddr>,
    ) -> Result<Net, String> {
        let (server, client) = crate::tls::cluster_configs(ALPN)?;
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| format!("TLS config unusable for QUIC: {e}"))?;
        let mut sc = quinn::ServerConfig::with_crypto(Arc::new(server));
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(1024u32.into());
        t.max_concurrent_uni_streams(0u32.into());
        t.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_secs(10)).map_err(|e| e.to_string())?,
        ));
        t.keep_alive_interval(Some(Duration::from_secs(2)));
        let t = Arc::new(t);
        sc.transport_config(t.clone());
        let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|e| format!("TLS config unusable for QUIC: {e}"))?;
        let mut cc = quinn::ClientConfig::new(Arc::new(client));
        cc.transport_config(t);
        // Stateless-reset and connection-ID keys derived from the secret and the node ID:
        // a restarted node resets its predecessor's connections at the first packet, so
        // its peers reconnect at once instead of waiting for the idle timeout.
        let derive = |label: &[u8]| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
            let mut ctx = ring::hmac::Context::with_key(&key);
            ctx.update(label);
            ctx.update(&id.to_le_bytes());
            ctx.sign()
        };
        let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derive(b"reset").as_ref());
        let cid_key =
            u64::from_le_bytes(derive(b"cid").as_ref()[..8].try_into().unwrap_or_default());
        let mut ep_cfg = quinn::EndpointConfig::new(Arc::new(reset));
        ep_cfg.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let socket = std::net::UdpSocket::bind(listen)
            .map_err(|e| format!("cannot bind the cluster port {listen}: {e}"))?;
        let runtime = quinn::default_runtime().ok_or("no async runtime for QUIC")?;
        let endpoint = quinn::Endpoint::new(ep_cfg, Some(sc), socket, runtime)
            .map_err(|e| format!("cannot start QUIC on the cluster port {listen}: {e}"))?;
        Ok(Net {
            id,
            secret: secret.as_bytes().to_vec(),
            endpoint,
            client: cc,
            addrs: RwLock::new(nodes.clone()),
            conns: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, String> {
        self.endpoint.local_addr().map_err(|e| e.to_string())
    }

    /// Learns (or changes) a peer's address.
    pub fn set_addr(&self, id: u64, addr: SocketAddr) {
        self.addrs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, addr);
    }

    async fn connect(&self, target: u64) -> Result<quinn::Connection, NetError> {
        {
            // Not held while connecting: a dead peer must not delay calls to the others.
            let mut conns = self.conns.lock().await;
            if let Some(c) = conns.get(&target) {
                if c.close_reason().is_none() {
                    return Ok(c.clone());
                }
                conns.remove(&target);
            }
        }
        let addr = self
            .addrs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&target)
            .copied()
            .ok_or_else(|| NetError::Unreachable(format!("no address for node {target}")))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let conn = self
                .endpoint
                .connect_with(self.client.clone(), addr, "cortex-cluster")
                .map_err(|e| NetError::Unreachable(e.to_string()))?
                .await
                .map_err(|e| NetError::Unreachable(e.to_string()))?;
            let ex = exporter(&conn)?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(failed)?;
            let tag = mac(&self.secret, b"client", &ex, self.id);
            let mut hello = self.id.to_le_bytes().to_vec();
            hello.extend_from_slice(tag.as_ref());
            write_frame(&mut send, &hello).await?;
            let _ = send.finish();
            let answer = read_frame(&mut recv).await?;
            if answer.len() != 40 {
                return Err(failed("bad cluster handshake answer"));
            }
            let peer = u64::from_le_bytes(answer[..8].try_into().unwrap_or_default());
            if peer != target || !verify(&self.secret, b"server", &ex, peer, &answer[8..]) {
                conn.close(1u32.into(), b"auth");
                return Err(NetError::Unreachable(format!(
                    "node at {addr} failed cluster authentication (wrong secret or node ID {peer}, expected {target})"
                )));
            }
            Ok(conn)
        })
        .await
        .map_err(|_| NetError::Unreachable(format!("connecting to node {target} at {addr} timed out")))??;
        self.conns.lock().await.insert(target, conn.clone());
        Ok(conn)
    }

    async fn connect_cached(&self, target: u64) -> Result<quinn::Connection, ()> {
        self.conns.lock().await.get(&target).cloned().ok_or(())
    }

    async fn forget(&self, target: u64) {
        self.conns.lock().await.remove(&target);
    }

    /// Opens a call's stream and sends its kind and payload.
    async fn open(
        &self,
        target: u64,
        kind: u8,
        payload: &[u8],
    ) -> Result<(quinn::SendStream, quinn::RecvStream), NetError> {
        let conn = self.connect(target).await?;
        let r = async {
            let (mut send, recv) = conn.open_bi().await.map_err(failed)?;
            send.write_all(&[kind]).await.map_err(failed)?;
            write_frame(&mut send, payload).await?;
            Ok((send, recv))
        }
        .await;
        if r.is_err() {
            self.forget(target).await;
        }
        r
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: u64,
        kind: u8,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, NetError> {
        let payload = enc(req)?;
        // A peer we cannot connect to in time is unreachable (openraft backs off); a call
        // that times out on a live connection failed.
        tokio::time::timeout(timeout, self.connect(target))
            .await
            .map_err(|_| {
                NetError::Unreachable(format!("node {target} did not answer within {timeout:?}"))
            })??;
        let r = tokio::time::timeout(timeout, async {
            let (mut send, mut recv) = self.open(target, kind, &payload).await?;
            let _ = send.finish();
            dec(&read_frame(&mut recv).await?)
        })
        .await
        .map_err(|_| failed(format!("call to node {target} timed out after {timeout:?}")));
        // A slow call leaves a live connection in place; a closed one is dropped (a peer
        // that restarted resets it at once, see `bind`).
        if let Ok(c) = self.connect_cached(target).await {
            if c.close_reason().is_some() {
                self.forget(target).await;
            }
        }
        r?
    }

    /// Forwards a writer batch to the leader; `Ok` once the leader committed it.
    pub async fn forward(
        &self,
        leader: u64,
        ops: &[cortex_storage::Op],
        origins: &[Origin],
    ) -> Result<(), String> {
        let batch = serde_bytes::ByteBuf::from(cortex_storage::encode_batch(ops, 0));
        let r: Result<(), String> = self
            .call(leader, FORWARD, &(batch, origins.to_vec()), FORWARD_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        r
    }

    /// Asks the leader to change the membership; the log index of the committed change.
    pub async fn membership(&self, leader: u64, change: &super::Membership) -> Result<u64, String> {
        let r: Result<u64, String> = self
            .call(leader, MEMBERSHIP, change, Duration::from_secs(120))
            .await
            .map_err(|e| e.to_string())?;
        r
    }

    /// Tells node `peer` which inboxes this node serves.
    pub async fn announce(
        &self,
        peer: u64,
        a: &super::presence::Announcement,
    ) -> Result<(), NetError> {
        self.call(peer, PRESENCE, a, PRESENCE_TIMEOUT).await
    }

    async fn send_snapshot(
        &self,
        target: u64,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
    ) -> Result<SnapshotResponse<u64>, NetError> {
        let header = enc(&(vote, snapshot.meta.clone()))?;
        let (mut send, mut recv) = self.open(target, SNAPSHOT, &header).await?;
        let root = snapshot.snapshot.path.clone();
        let mut files = Vec::new();
        list_files(&root, &root, &mut files).map_err(failed)?;
        let mut total = 0u64;
        for rel in files {
            let path = root.join(&rel);
            let mut f = tokio::fs::File::open(&path).await.map_err(failed)?;
            let len = f.metadata().await.map_err(failed)?.len();
            write_frame(&mut send, &enc(&(rel.to_string_lossy().into_owned(), len))?).await?;
            // Exactly `len` bytes, even if the file grew meanwhile.
            let mut limited = tokio::io::AsyncReadExt::take(&mut f, len);
            let copied = tokio::io::copy(&mut limited, &mut send)
                .await
                .map_err(failed)?;
            if copied != len {
                return Err(failed(format!(
                    "{} shrank while being sent",
                    path.display()
                )));
            }
            total += len;
        }
        write_frame(&mut send, &enc(&(String::new(), 0u64))?).await?;
        send.flush().await.map_err(failed)?;
        let _ = send.finish();
        tracing::info!(
            "sent snapshot {} to node {target}: {total} bytes",
            snapshot.meta.snapshot_id
        );
        let r: Result<SnapshotResponse<u64>, String> = dec(&read_frame(&mut recv).await?)?;
        r.map_err(failed)
    }

    /// Serves peers until the endpoint closes.
    pub async fn serve(self: Arc<Self>, raft: Raft, core: Core, node: Arc<Node>, dirs: Dirs) {
        while let Some(incoming) = self.endpoint.accept().await {
            let me = self.clone();
            let raft = raft.clone();
            let core = core.clone();
            let node = node.clone();
            let dirs = dirs.clone();
            tokio::spawn(async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!("cluster connection failed: {e}");
                        return;
                    }
                };
                if let Err(e) = me.serve_conn(conn, raft, core, node, dirs).await {
                    tracing::debug!("cluster connection ended: {e}");
                }
            });
        }
    }

    /// Closes the endpoint (shutdown).
    pub fn close(&self) {
        self.endpoint.close(2u32.into(), b"shutdown");
    }

    async fn serve_conn(
        &self,
        conn: quinn::Connection,
        raft: Raft,
        core: Core,
        node: Arc<Node>,
        dirs: Dirs,
    ) -> Result<(), NetError> {
        let ex = exporter(&conn)?;
        let peer = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let (mut send, mut recv) = conn.accept_bi().await.map_err(failed)?;
            let hello = read_frame(&mut recv).await?;
            if hello.len() != 40 {
                return Err(failed("bad cluster hello"));
            }
            let peer = u64::from_le_bytes(hello[..8].try_into().unwrap_or_default());
            if !verify(&self.secret, b"client", &ex, peer, &hello[8..]) {
                conn.close(1u32.into(), b"auth");
                return Err(failed(format!(
                    "a peer at {} failed cluster authentication",
                    conn.remote_address()
                )));
            }
            let tag = mac(&self.secret, b"server", &ex, self.id);
            let mut answer = self.id.to_le_bytes().to_vec();
            answer.extend_from_slice(tag.as_ref());
            write_frame(&mut send, &answer).await?;
            let _ = send.finish();
            Ok(peer)
        })
        .await
        .map_err(|_| failed("cluster handshake timed out"))??;
        tracing::debug!("node {peer} connected from {}", conn.remote_address());
        loop {
            let (send, recv) = conn.accept_bi().await.map_err(failed)?;
            let raft = raft.clone();
            let core = core.clone();
            let node = node.clone();
            let dirs = dirs.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_call(peer, send, recv, raft, core, node, dirs).await {
                    tracing::debug!("cluster call from node {peer} failed: {e}");
                }
            });
        }
    }
}

async fn serve_call(
    peer: u64,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    raft: Raft,
    core: Core,
    node: Arc<Node>,
    dirs: Dirs,
) -> Result<(), NetError> {
    let mut kind = [0u8; 1];
    recv.read_exact(&mut kind).await.map_err(failed)?;
    let payload = read_frame(&mut recv).await?;
    let answer = match kind[0] {
        APPEND => {
            let req: AppendEntriesRequest<TypeConfig> = dec(&payload)?;
            enc(&raft.append_entries(req).await)?
        }
        VOTE => {
            let req: VoteRequest<u64> = dec(&payload)?;
            enc(&raft.vote(req).await)?
        }
        FORWARD => {
            let (batch, origins): (serde_bytes::ByteBuf, Vec<Origin>) = dec(&payload)?;
            let r = match cortex_storage::decode_batch(&batch) {
                Ok((_, ops)) => core.submit_forwarded(ops, origins).await,
                Err(e) => Err(format!("bad forwarded batch: {e}")),
            };
            enc(&r)?
        }
        PRESENCE => {
            let a: super::presence::Announcement = dec(&payload)?;
            node.presence.record(peer, a);
            enc(&())?
        }
        MEMBERSHIP => {
            let change: super::Membership = dec(&payload)?;
            let r: Result<u64, String> = node.change_membership_on_leader(change).await;
            enc(&r)?
        }
        SNAPSHOT => {
            let (vote, meta): (Vote<u64>, SnapshotMeta<u64, BasicNode>) = dec(&payload)?;
            let dir = dirs.receiving();
            let r = receive_files(&mut recv, &dir).await;
            let r = match r {
                Ok(()) => raft
                    .install_full_snapshot(
                        vote,
                        Snapshot {
                            meta,
                            snapshot: Box::new(SnapshotDir { path: dir.clone() }),
                        },
                    )
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            // Installed snapshots were moved away; anything left is an unused copy.
            if dir.exists() {
                let _ = tokio::fs::remove_dir_all(&dir).await;
            }
            enc(&r)?
        }
        k => return Err(failed(format!("unknown call kind {k}"))),
    };
    write_frame(&mut send, &answer).await?;
    let _ = send.finish();
    Ok(())
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            list_files(root, &e.path(), out)?;
        } else if let Ok(rel) = e.path().strip_prefix(root) {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

/// Receives a snapshot's files into `dir`; paths must be plain relative paths.
async fn receive_files(recv: &mut quinn::RecvStream, dir: &Path) -> Result<(), NetError> {
    tokio::fs::create_dir_all(dir).await.map_err(failed)?;
    for _ in 0..SNAPSHOT_FILES_MAX {
        let (rel, len): (String, u64) = dec(&read_frame(recv).await?)?;
        if rel.is_empty() {
            return Ok(());
        }
        let p = Path::new(&rel);
        if rel.len() > PATH_MAX || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(failed(format!("refusing snapshot path {rel:?}")));
        }
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(failed)?;
        }
        let mut f = tokio::fs::File::create(&path).await.map_err(failed)?;
        let mut limited = tokio::io::AsyncReadExt::take(&mut *recv, len);
        let got = tokio::io::copy(&mut limited, &mut f)
            .await
            .map_err(failed)?;
        if got != len {
            return Err(failed(format!("snapshot file {rel} cut short")));
        }
        f.sync_all().await.map_err(failed)?;
    }
    Err(failed(format!(
        "a snapshot of more than {SNAPSHOT_FILES_MAX} files"
    )))
}

/// openraft's view of the network.
pub struct Factory {
    /// The links.
    pub net: Arc<Net>,
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        match node.addr.parse() {
            Ok(a) => self.net.set_addr(target, a),
            Err(e) => tracing::warn!("node {target} has a bad address {:?}: {e}", node.addr),
        }
        Peer {
            net: self.net.clone(),
            target,
        }
    }
}

/// The link to one peer.
pub struct Peer {
    net: Arc<Net>,
    target: u64,
}

fn rpc_err<E: std::error::Error>(e: NetError) -> RPCError<u64, BasicNode, E> {
    match e {
        NetError::Unreachable(m) => {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(m)))
        }
        NetError::Failed(m) => RPCError::Network(NetworkError::new(&std::io::Error::other(m))),
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let r: Result<AppendEntriesResponse<u64>, RaftError<u64>> = self
            .net
            .call(self.target, APPEND, &rpc, option.hard_ttl())
            .await
            .map_err(rpc_err)?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let r: Result<VoteResponse<u64>, RaftError<u64>> = self
            .net
            .call(self.target, VOTE, &rpc, option.hard_ttl())
            .await
            .map_err(rpc_err)?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let send = self.net.send_snapshot(self.target, vote, snapshot);
        tokio::select! {
            r = send => r.map_err(|e| match e {
                NetError::Unreachable(m) => StreamingError::Unreachable(Unreachable::new(&std::io::Error::other(m))),
                NetError::Failed(m) => StreamingError::Network(NetworkError::new(&std::io::Error::other(m))),
            }),
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}
