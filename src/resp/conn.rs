//! Per-connection state.

use std::net::SocketAddr;

use crate::resp::codec::Args;

/// What one client connection remembers between commands.
pub struct Conn {
    /// Client ID (CLIENT ID).
    pub id: u64,
    /// Selected database = storage namespace.
    pub db: u16,
    /// 2 or 3 (HELLO).
    pub proto: u8,
    /// CLIENT SETNAME.
    pub name: Vec<u8>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER.
    pub lib: (Vec<u8>, Vec<u8>),
    /// Authenticated (always true without tokens).
    pub authed: bool,
    /// The agent that authenticated, if any.
    pub agent: Option<String>,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// When it connected (Unix ms).
    pub created_ms: u64,
    /// Last command time (Unix ms).
    pub last_ms: u64,
    /// Last command name, lower case.
    pub last_cmd: String,
    /// Commands queued by MULTI.
    pub multi: Option<Vec<Args>>,
    /// A command queued in MULTI had an error: EXEC aborts.
    pub multi_failed: bool,
    /// Close after the current reply.
    pub close: bool,
}

impl Conn {
    /// A fresh connection.
    pub fn new(id: u64, addr: SocketAddr, laddr: SocketAddr, now_ms: u64, authed: bool) -> Self {
        Conn {
            id,
            db: 0,
            proto: 2,
            name: Vec::new(),
            lib: (Vec::new(), Vec::new()),
            authed,
            agent: None,
            addr,
            laddr,
            created_ms: now_ms,
            last_ms: now_ms,
            last_cmd: "NULL".into(),
            multi: None,
            multi_failed: false,
            close: false,
        }
    }

    /// CLIENT LIST line.
    pub fn info_line(&self, now_ms: u64) -> String {
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi={} \
             watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 \
             events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            String::from_utf8_lossy(&self.name),
            now_ms.saturating_sub(self.created_ms) / 1000,
            now_ms.saturating_sub(self.last_ms) / 1000,
            if self.multi.is_some() { "x" } else { "N" },
            self.db,
            self.multi.as_ref().map_or(-1, |m| m.len() as i64),
            self.last_cmd,
            self.agent.as_deref().unwrap_or("default"),
            self.proto,
            String::from_utf8_lossy(&self.lib.0),
            String::from_utf8_lossy(&self.lib.1),
        )
    }
}
