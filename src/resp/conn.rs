//! Per-connection state, and the state all RESP connections share.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};

use crate::broker::Principal;
use crate::resp::codec::Args;

/// State shared by all RESP connections (statistics and the CLIENT LIST views).
pub struct Shared {
    /// Next client ID.
    pub next_id: AtomicU64,
    /// Every connection's CLIENT LIST view, by client ID.
    pub list: Mutex<BTreeMap<u64, Arc<Mutex<ClientView>>>>,
    /// Per-command counters for INFO commandstats: calls, errors, microseconds.
    pub cmdstats: Mutex<BTreeMap<&'static str, (u64, u64, u64)>>,
    /// Error replies by error code, for INFO errorstats.
    pub errorstats: Mutex<BTreeMap<String, u64>>,
    /// Connections turned away at `clients_max`.
    pub rejected: AtomicU64,
    /// Bytes the connections' query and reply buffers hold (INFO memory's
    /// `mem_clients_normal`).
    pub buffer_bytes: AtomicUsize,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            next_id: AtomicU64::new(1),
            list: Mutex::new(BTreeMap::new()),
            cmdstats: Mutex::new(BTreeMap::new()),
            errorstats: Mutex::new(BTreeMap::new()),
            rejected: AtomicU64::new(0),
            buffer_bytes: AtomicUsize::new(0),
        }
    }
}

/// What CLIENT LIST shows of a connection. Each connection copies its few scalar fields in
/// after a command ([`Conn::publish`]); the line is formatted only when somebody asks.
#[derive(Clone, Debug)]
pub struct ClientView {
    id: u64,
    addr: SocketAddr,
    laddr: SocketAddr,
    created_ms: u64,
    last_ms: u64,
    last_cmd: &'static str,
    name: Vec<u8>,
    lib: (Vec<u8>, Vec<u8>),
    db: u16,
    proto: u8,
    multi: i64,
    user: String,
    /// The connection's [`Conn::ident`] that `name`, `lib` and `user` were copied at.
    ident: u64,
    /// Bytes of the query buffer (read, not yet run).
    qbuf: usize,
    /// Bytes of replies being written (the client has not read them yet).
    omem: usize,
}

impl ClientView {
    /// The CLIENT LIST line.
    pub fn line(&self, now_ms: u64) -> String {
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi={} \
             watch=0 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={} tot-mem={} \
             events={} cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            String::from_utf8_lossy(&self.name),
            now_ms.saturating_sub(self.created_ms) / 1000,
            now_ms.saturating_sub(self.last_ms) / 1000,
            if self.multi >= 0 { "x" } else { "N" },
            self.db,
            self.multi,
            self.qbuf,
            self.omem,
            self.qbuf + self.omem,
            if self.omem > 0 { "rw" } else { "r" },
            self.last_cmd.to_ascii_lowercase(),
            self.user,
            self.proto,
            String::from_utf8_lossy(&self.lib.0),
            String::from_utf8_lossy(&self.lib.1),
        )
    }
}

/// What one client connection remembers between commands.
pub struct Conn {
    /// Client ID (CLIENT ID).
    pub id: u64,
    /// Selected database = storage namespace.
    pub db: u16,
    /// 2 or 3 (HELLO).
    pub proto: u8,
    /// CLIENT SETNAME.
    name: Vec<u8>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER.
    lib: (Vec<u8>, Vec<u8>),
    /// Who this connection acts as; `None` until it authenticates (only when the broker
    /// has tokens).
    principal: Option<Principal>,
    /// Moves with every change of `name`, `lib` or `principal` (their setters), so that
    /// what copies them (CLIENT LIST's view, the presence list) compares this number after
    /// each command instead of their bytes (those comparisons were a tenth of the network
    /// thread's user time under unpipelined XADDs).
    ident: u64,
    /// Last command time (Unix ms).
    pub last_ms: u64,
    /// Last command name (upper case, from the command table).
    pub last_cmd: &'static str,
    /// Commands queued by MULTI.
    pub multi: Option<Vec<Args>>,
    /// A command queued in MULTI had an error: EXEC aborts.
    pub multi_failed: bool,
    /// Close after the current reply.
    pub close: bool,
    /// Shared with CLIENT LIST.
    pub view: Arc<Mutex<ClientView>>,
    /// (stream, group) of each XREADGROUP since presence last looked (it lists them as
    /// what the connection serves).
    pub read_groups: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Conn {
    /// A fresh connection.
    pub fn new(
        id: u64,
        addr: SocketAddr,
        laddr: SocketAddr,
        now_ms: u64,
        principal: Option<Principal>,
    ) -> Self {
        let view = ClientView {
            id,
            addr,
            laddr,
            created_ms: now_ms,
            last_ms: now_ms,
            last_cmd: "NULL",
            name: Vec::new(),
            lib: (Vec::new(), Vec::new()),
            db: 0,
            proto: 2,
            multi: -1,
            user: "default".into(),
            // Unlike any connection's: the first publish copies.
            ident: u64::MAX,
            qbuf: 0,
            omem: 0,
        };
        Conn {
            id,
            db: 0,
            proto: 2,
            name: Vec::new(),
            lib: (Vec::new(), Vec::new()),
            principal,
            ident: 0,
            last_ms: now_ms,
            last_cmd: "NULL",
            multi: None,
            multi_failed: false,
            close: false,
            view: Arc::new(Mutex::new(view)),
            read_groups: Vec::new(),
        }
    }

    /// CLIENT SETNAME's name (empty: none).
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// CLIENT SETINFO's library name and version (empty: not given).
    pub fn lib(&self) -> (&[u8], &[u8]) {
        (&self.lib.0, &self.lib.1)
    }

    /// Who the connection acts as.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// A number that changes whenever the name, the library or the principal does.
    pub fn ident(&self) -> u64 {
        self.ident
    }

    /// CLIENT SETNAME (empty: none); moves `ident`.
    pub fn set_name(&mut self, name: Vec<u8>) {
        self.name = name;
        self.ident += 1;
    }

    /// CLIENT SETINFO LIB-NAME; moves `ident`.
    pub fn set_lib_name(&mut self, name: Vec<u8>) {
        self.lib.0 = name;
        self.ident += 1;
    }

    /// CLIENT SETINFO LIB-VER; moves `ident`.
    pub fn set_lib_ver(&mut self, ver: Vec<u8>) {
        self.lib.1 = ver;
        self.ident += 1;
    }

    /// AUTH, HELLO AUTH or RESET; moves `ident`.
    pub fn set_principal(&mut self, principal: Option<Principal>) {
        self.principal = principal;
        self.ident += 1;
    }

    /// Copies what CLIENT LIST shows into the shared view (cheap: scalars, and the strings
    /// only when they changed).
    pub fn publish(&self) {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.last_ms = self.last_ms;
        v.last_cmd = self.last_cmd;
        v.db = self.db;
        v.proto = self.proto;
        v.multi = self.multi.as_ref().map_or(-1, |m| m.len() as i64);
        if v.ident != self.ident {
            v.ident = self.ident;
            v.name.clone_from(&self.name);
            v.lib.clone_from(&self.lib);
            let user = self.principal().and_then(Principal::agent);
            user.unwrap_or("default").clone_into(&mut v.user);
        }
    }

    /// Records the connection's buffers for CLIENT LIST: `qbuf` bytes read and not yet run,
    /// `omem` bytes of replies being written.
    pub fn buffers(&self, qbuf: usize, omem: usize) {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.qbuf = qbuf;
        v.omem = omem;
    }

    /// This connection's CLIENT LIST line.
    pub fn info_line(&self, now_ms: u64) -> String {
        self.publish();
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .line(now_ms)
    }
}
