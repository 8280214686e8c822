//! Configuration: a TOML file plus command-line flags, turned into one validated [`Config`]
//! before anything starts. Every limit the server enforces is named here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cortex_storage::{DeliveryPolicy, Durability, StoreConfig};
use serde::Deserialize;

use crate::perm::Permissions;

/// The QUIC front's settings.
#[derive(Clone, Debug)]
pub struct QuicSettings {
    /// Certificate chain (PEM); `None`: self-signed in the data dir.
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    pub key: Option<PathBuf>,
    /// Most connections.
    pub connections_max: usize,
    /// Most concurrent bidirectional streams per connection.
    pub streams_max: u32,
    /// Idle timeout; keep-alives are sent at a third of it.
    pub idle_timeout_ms: u64,
}

/// `--fsync`: when an acknowledged write is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Reply only after fsync (group commit shares one fsync among concurrent writers).
    Always,
    /// Reply after the write reached the OS; fsync every second.
    Everysec,
    /// Reply after the write reached the OS; fsync only at shutdown.
    No,
}

/// The delivery policy as written in the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyFile {
    /// Ack deadline.
    pub ack_wait_ms: Option<u64>,
    /// Failed attempts before dead-lettering.
    pub max_attempts: Option<u32>,
    /// Backoff schedule.
    pub backoff_ms: Option<Vec<u64>>,
    /// Freshness limit.
    pub max_age_ms: Option<u64>,
    /// Dead-letter stream.
    pub dead_letter: Option<String>,
}

impl PolicyFile {
    fn into_policy(self) -> DeliveryPolicy {
        let d = DeliveryPolicy::default();
        DeliveryPolicy {
            ack_wait_ms: self.ack_wait_ms.or(d.ack_wait_ms),
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            backoff_ms: self.backoff_ms.unwrap_or(d.backoff_ms),
            max_age_ms: self.max_age_ms,
            dead_letter: self.dead_letter.map_or(d.dead_letter, String::into_bytes),
        }
    }
}

/// A retention rule: streams whose name matches `pattern` (Redis glob) keep at most these.
/// The first matching rule applies. Trimming entries a group has not been handed yet raises
/// an alert.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Stream name pattern, e.g. `cortex:events:*`.
    pub pattern: String,
    /// Most entries.
    pub max_len: Option<u64>,
    /// Oldest entry age (by ID time).
    pub max_age_ms: Option<u64>,
    /// Most bytes of fields and values.
    pub max_bytes: Option<u64>,
}

/// One voter in `[[cluster.nodes]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Node ID (unique, not 0).
    pub id: u64,
    /// Its cluster address (QUIC).
    pub addr: SocketAddr,
}

/// `[cluster]`: replication across nodes. Absent: a single node, no replication.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterFile {
    /// This node's ID.
    pub node_id: Option<u64>,
    /// Where this node listens for its peers (default: its own entry in `nodes`).
    pub listen: Option<SocketAddr>,
    /// Shared secret (at least 16 bytes) authenticating nodes to each other; better given
    /// as `CORTEX_CLUSTER_SECRET`.
    pub secret: Option<String>,
    /// Every voter, this node included.
    pub nodes: Vec<NodeFile>,
    /// Leader heartbeat.
    pub heartbeat_ms: Option<u64>,
    /// Election timeout, lower bound.
    pub election_timeout_min_ms: Option<u64>,
    /// Election timeout, upper bound.
    pub election_timeout_max_ms: Option<u64>,
    /// Log entries between snapshots.
    pub snapshot_logs: Option<u64>,
    /// Log entries kept behind a snapshot.
    pub logs_kept: Option<u64>,
    /// Join an existing cluster instead of forming one.
    pub join: Option<bool>,
}

/// The config file. Every field is optional; flags win over the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// RESP listen address.
    pub resp: Option<SocketAddr>,
    /// QUIC listen address.
    pub quic: Option<SocketAddr>,
    /// HTTP listen address.
    pub http: Option<SocketAddr>,
    /// Durability.
    pub fsync: Option<Fsync>,
    /// Agent name -> token. With any token configured, clients must AUTH.
    pub tokens: BTreeMap<String, String>,
    /// Agent name -> rights (`[agents.NAME]`). An agent without a section may use only
    /// its own inbox.
    pub agents: BTreeMap<String, Permissions>,
    /// TLS certificate chain (PEM) for the QUIC port; with none, a self-signed one is
    /// made in the data dir.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Most QUIC connections.
    pub quic_connections_max: Option<usize>,
    /// Most concurrent streams a QUIC connection may open.
    pub quic_streams_max: Option<u32>,
    /// QUIC idle timeout.
    pub quic_idle_timeout_ms: Option<u64>,
    /// Policy given to every group created without one (`None`: plain Redis semantics).
    pub default_policy: Option<PolicyFile>,
    /// Most client connections.
    pub clients_max: Option<usize>,
    /// Most HTTP connections.
    pub http_connections_max: Option<usize>,
    /// Largest RESP bulk string.
    pub bulk_bytes_max: Option<usize>,
    /// Most bytes buffered per client.
    pub client_buffer_bytes_max: Option<usize>,
    /// Starvation guard of priority lanes.
    pub starvation_guard: Option<u32>,
    /// Idempotency window.
    pub idempotency_window_ms: Option<u64>,
    /// XADD IDMP IDs kept per producer of a stream XCFGSET did not set.
    pub idmp_maxsize: Option<u64>,
    /// Furthest ahead a scheduled message may be delivered.
    pub schedule_ahead_max_ms: Option<u64>,
    /// Most unfinished tasks one agent's inbox (any stream) may hold.
    pub open_tasks_max: Option<u64>,
    /// Most changes one task's history keeps.
    pub task_history_max: Option<usize>,
    /// How long a finished task stays readable.
    pub task_keep_ms: Option<u64>,
    /// Most heap bytes the pending lists kept in memory for acks may take.
    pub pending_index_bytes: Option<u64>,
    /// Minimum time between two alerts on `cortex:alerts`.
    pub alert_interval_ms: Option<u64>,
    /// Let `CX.CLOCK` move the broker's clock (tests only).
    pub test_clock: Option<bool>,
    /// Retention rules, checked in order.
    pub retention: Vec<RetentionRule>,
    /// How often retention is enforced.
    pub retention_interval_ms: Option<u64>,
    /// Streams with series of their own in `/metrics`; the rest are summed as `other`.
    pub metrics_streams_max: Option<usize>,
    /// New data is refused while the data disk has less free space, bytes (0: off).
    pub disk_free_min_bytes: Option<u64>,
    /// Replication.
    pub cluster: Option<ClusterFile>,
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// RESP listen address.
    pub resp: SocketAddr,
    /// QUIC listen address (the QUIC front is not built yet; the address is validated).
    pub quic: SocketAddr,
    /// HTTP listen address (the HTTP front is not built yet; the address is validated).
    pub http: SocketAddr,
    /// Durability.
    pub fsync: Fsync,
    /// Agent name -> token.
    pub tokens: BTreeMap<String, String>,
    /// Agent name -> rights.
    pub agents: BTreeMap<String, Permissions>,
    /// QUIC settings.
    pub quic_cfg: QuicSettings,
    /// Default group policy.
    pub default_policy: Option<DeliveryPolicy>,
    /// Most client connections.
    pub clients_max: usize,
    /// Most HTTP connections.
    pub http_connections_max: usize,
    /// RESP codec bounds.
    pub resp_limits: RespLimits,
    /// Storage settings.
    pub store: StoreConfig,
    /// Minimum time between two alerts.
    pub alert_interval_ms: u64,
    /// `CX.CLOCK` allowed.
    pub test_clock: bool,
    /// `CX.FAULT` allowed.
    pub test_faults: bool,
    /// Most ops applied in one commit.
    pub batch_ops_max: usize,
    /// Most submissions waiting for the writer.
    pub queue_max: usize,
    /// Retention rules.
    pub retention: Vec<RetentionRule>,
    /// How often retention is enforced.
    pub retention_interval_ms: u64,
    /// Streams with series of their own in `/metrics`.
    pub metrics_streams_max: usize,
    /// New data (publishes, re-drives, new groups) is refused while the data disk has fewer
    /// free bytes than this (0: never); acks, reads and trims go on.
    pub disk_free_min_bytes: u64,
    /// Replication (`None`: a single node).
    pub cluster: Option<ClusterConfig>,
}

/// Flags of `cortex serve` that override the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServeFlags {
    /// Data directory [default: ./cortex-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// RESP (Redis protocol) listen address [default: 127.0.0.1:6380]
    #[arg(long)]
    pub resp: Option<SocketAddr>,
    /// QUIC listen address [default: 127.0.0.1:7400]
    #[arg(long)]
    pub quic: Option<SocketAddr>,
    /// HTTP listen address [default: 127.0.0.1:7401]
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// When a write is acknowledged: after fsync (always), or after reaching the OS with an
    /// fsync every second (everysec) or only at shutdown (no) [default: always]
    #[arg(long, value_enum)]
    pub fsync: Option<Fsync>,
    /// TOML config file; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Allow CX.CLOCK to move the broker's clock (for tests).
    #[arg(long, hide = true)]
    pub test_clock: bool,
    /// Allow CX.FAULT to inject storage failures (for tests).
    #[arg(long, hide = true)]
    pub test_faults: bool,
    /// This node's ID in the cluster (with --cluster-node; overrides [cluster] node_id)
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Cluster listen address (QUIC, node to node) [default: this node's --cluster-node]
    #[arg(long)]
    pub cluster_listen: Option<SocketAddr>,
    /// A cluster voter as ID=ADDR, repeated for every node (this one included); replaces
    /// [[cluster.nodes]]
    #[arg(long = "cluster-node", value_name = "ID=ADDR")]
    pub cluster_nodes: Vec<String>,
    /// The cluster's shared secret (at least 16 bytes)
    #[arg(long, env = "CORTEX_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Join an existing cluster (`cortex cluster add` on it) instead of forming one from
    /// the node list
    #[arg(long)]
    pub join: bool,
    /// Refuse new data while the data disk has less free space than this (bytes, or with
    /// KiB, MiB, GiB; 0 turns it off) [default: 256MiB]
    #[arg(long, value_parser = parse_bytes)]
    pub disk_free_min: Option<u64>,
}

/// A byte count: `268435456`, `256MiB`, `256M`, `1GiB`, `64KiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count (like 256MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("'{s}': unknown unit (use KiB, MiB, GiB or TiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| unreachable!("built-in address {s}"))
}

impl Config {
    /// Reads the file (if any), then `CORTEX_*` environment variables over it, then the
    /// flags over both; validates.
    pub fn load(flags: &ServeFlags) -> Result<Config, String> {
        let file = load_file(flags.config.as_deref(), std::env::vars())?;
        Config::build(file, flags)
    }

    /// Builds and validates a config from its two sources.
    pub fn build(file: FileConfig, flags: &ServeFlags) -> Result<Config, String> {
        let fsync = flags.fsync.or(file.fsync).unwrap_or(Fsync::Always);
        let mut store = StoreConfig {
            durability: match fsync {
                Fsync::Always => Durability::SyncEachCommit,
                Fsync::Everysec | Fsync::No => Durability::Buffered,
            },
            ..StoreConfig::default()
        };
        if let Some(g) = file.starvation_guard {
            store.starvation_guard = g;
        }
        if let Some(w) = file.idempotency_window_ms {
            store.idempotency_window_ms = w;
        }
        if let Some(n) = file.idmp_maxsize {
            if !cortex_storage::idmp::MAXSIZE_RANGE.contains(&n) {
                return Err(format!(
                    "idmp_maxsize must be between {} and {}",
                    cortex_storage::idmp::MAXSIZE_RANGE.start(),
                    cortex_storage::idmp::MAXSIZE_RANGE.end()
                ));
            }
            store.limits.idmp_maxsize = n;
        }
        if let Some(a) = file.schedule_ahead_max_ms {
            store.limits.schedule_ahead_max_ms = a;
        }
        if let Some(n) = file.open_tasks_max {
            store.limits.open_tasks_max = n;
        }
        if let Some(n) = file.task_history_max {
            store.limits.task_history_max = n;
        }
        if let Some(k) = file.task_keep_ms {
            store.limits.task_keep_ms = k;
        }
        if let Some(b) = file.pending_index_bytes {
            store.pending_index_bytes = b;
        }
        store.validate().map_err(|e| e.to_string())?;
        let mut resp_limits = RespLimits::default();
        if let Some(b) = file.bulk_bytes_max {
            resp_limits.bulk_bytes_max = b;
        }
        if let Some(b) = file.client_buffer_bytes_max {
            resp_limits.buffer_bytes_max = b;
        }
        let cfg = Config {
            data_dir: flags
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./cortex-data")),
            resp: flags
                .resp
                .or(file.resp)
                .unwrap_or_else(|| addr("127.0.0.1:6380")),
            quic: flags
                .quic
                .or(file.quic)
                .unwrap_or_else(|| addr("127.0.0.1:7400")),
            http: flags
                .http
                .or(file.http)
                .unwrap_or_else(|| addr("127.0.0.1:7401")),
            fsync,
            tokens: file.tokens,
            agents: file.agents,
            quic_cfg: QuicSettings {
                cert: file.tls_cert,
                key: file.tls_key,
                connections_max: file.quic_connections_max.unwrap_or(10_000),
                streams_max: file.quic_streams_max.unwrap_or(256),
                idle_timeout_ms: file.quic_idle_timeout_ms.unwrap_or(30_000),
            },
            default_policy: file.default_policy.map(PolicyFile::into_policy),
            clients_max: file.clients_max.unwrap_or(10_000),
            http_connections_max: file.http_connections_max.unwrap_or(1_024),
            resp_limits,
            store,
            alert_interval_ms: file.alert_interval_ms.unwrap_or(1_000),
            test_clock: flags.test_clock || file.test_clock.unwrap_or(false),
            test_faults: flags.test_faults,
            batch_ops_max: 4096,
            queue_max: 65_536,
            retention: file.retention,
            retention_interval_ms: file.retention_interval_ms.unwrap_or(1_000),
            metrics_streams_max: file.metrics_streams_max.unwrap_or(100),
            disk_free_min_bytes: flags
                .disk_free_min
                .or(file.disk_free_min_bytes)
                .unwrap_or(256 << 20),
            cluster: cluster_config(file.cluster, flags)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The store settings of a cluster node: commits reach the OS but are not fsynced one
    /// by one; the Raft log (fsynced per append) is the durable copy, replayed after a crash.
    pub fn store_for_cluster(&self) -> StoreConfig {
        StoreConfig {
            durability: Durability::Buffered,
            ..self.store.clone()
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.tokens.is_empty() {
            for (name, a) in [
                ("--resp", self.resp),
                ("--quic", self.quic),
                ("--http", self.http),
            ] {
                if !a.ip().is_loopback() {
                    return Err(format!(
                        "refusing to bind {name} {a}: it is not a loopback address and no auth tokens are configured; \
                         add [tokens] to the config file or bind 127.0.0.1"
                    ));
                }
            }
        }
        if self.tokens.values().any(String::is_empty) {
            return Err("tokens must not be empty".into());
        }
        if let Some(a) = self.agents.keys().find(|a| !self.tokens.contains_key(*a)) {
            return Err(format!(
                "[agents.{a}] has no token: add it under [tokens] or remove the section"
            ));
        }
        let q = &self.quic_cfg;
        if q.cert.is_some() != q.key.is_some() {
            return Err("tls_cert and tls_key must be given together".into());
        }
        if q.connections_max == 0 || q.streams_max == 0 || q.idle_timeout_ms < 1_000 {
            return Err("quic_connections_max and quic_streams_max must be positive, quic_idle_timeout_ms at least 1000".into());
        }

        let l = &self.resp_limits;
        if l.bulk_bytes_max < self.store.limits.entry_bytes_max.min(1 << 20) {
            return Err("bulk_bytes_max is smaller than the largest entry".into());
        }
        if l.buffer_bytes_max < 2 * l.bulk_bytes_max {
            return Err("client_buffer_bytes_max must be at least twice bulk_bytes_max".into());
        }
        if self.clients_max == 0
            || self.http_connections_max == 0
            || self.alert_interval_ms == 0
            || self.retention_interval_ms == 0
        {
            return Err(
                "clients_max, http_connections_max, alert_interval_ms and retention_interval_ms must be positive".into(),
            );
        }
        for r in &self.retention {
            if r.pattern.is_empty()
                || (r.max_len.is_none() && r.max_age_ms.is_none() && r.max_bytes.is_none())
            {
                return Err(format!(
                    "retention rule '{}' needs a pattern and at least one of max_len, max_age_ms, max_bytes",
                    r.pattern
                ));
            }
        }
        if let Some(p) = &self.default_policy {
            if p.max_attempts == 0 {
                return Err("default_policy.max_attempts must be at least 1".into());
            }
        }
        Ok(())
    }
}

/// `[cluster]` and the cluster flags (flags win; `--cluster-node` replaces the file's list).
fn cluster_config(
    file: Option<ClusterFile>,
    flags: &ServeFlags,
) -> Result<Option<ClusterConfig>, String> {
    let mut nodes = std::collections::BTreeMap::new();
    for n in &flags.cluster_nodes {
        let (id, a) = n
            .split_once('=')
            .ok_or_else(|| format!("--cluster-node {n}: expected ID=ADDR"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("--cluster-node {n}: the ID must be a number"))?;
        let a: SocketAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("--cluster-node {n}: bad address"))?;
        if nodes.insert(id, a).is_some() {
            return Err(format!("--cluster-node: node {id} given twice"));
        }
    }
    let file = match file {
        Some(f) => f,
        None if nodes.is_empty() && flags.node_id.is_none() => return Ok(None),
        None => ClusterFile::default(),
    };
    if nodes.is_empty() {
        for n in &file.nodes {
            if nodes.insert(n.id, n.addr).is_some() {
                return Err(format!("[[cluster.nodes]]: node {} given twice", n.id));
            }
        }
    }
    let node_id = flags
        .node_id
        .or(file.node_id)
        .ok_or("the cluster needs this node's ID: [cluster] node_id or --node-id")?;
    if nodes.contains_key(&0) {
        return Err("cluster node IDs start at 1".into());
    }
    let own = *nodes.get(&node_id).ok_or_else(|| {
        format!("node {node_id} is not in the cluster's node list: add it to [[cluster.nodes]] or --cluster-node")
    })?;
    let secret = flags
        .cluster_secret
        .clone()
        .or(file.secret)
        .ok_or("the cluster needs a shared secret: CORTEX_CLUSTER_SECRET, --cluster-secret or [cluster] secret")?;
    if secret.len() < 16 {
        return Err("the cluster secret must be at least 16 bytes".into());
    }
    if nodes.len() == 2 {
        tracing::warn!(
            "a two-node cluster cannot fail over (losing either stops writes); use three"
        );
    }
    let c = ClusterConfig {
        node_id,
        listen: flags.cluster_listen.or(file.listen).unwrap_or(own),
        nodes,
        secret,
        heartbeat_ms: file.heartbeat_ms.unwrap_or(50),
        election_min_ms: file.election_timeout_min_ms.unwrap_or(150),
        election_max_ms: file.election_timeout_max_ms.unwrap_or(300),
        snapshot_logs: file.snapshot_logs.unwrap_or(10_000),
        logs_kept: file.logs_kept.unwrap_or(1_000),
        join: flags.join || file.join.unwrap_or(false),
    };
    if c.heartbeat_ms == 0
        || c.election_min_ms <= 2 * c.heartbeat_ms
        || c.election_max_ms <= c.election_min_ms
    {
        return Err("cluster timing: need 0 < heartbeat_ms, 2 * heartbeat_ms < election_timeout_min_ms < election_timeout_max_ms".into());
    }
    if c.snapshot_logs == 0 {
        return Err("cluster snapshot_logs must be positive".into());
    }
    Ok(Some(c))
}

/// The settings an environment variable may give: `CORTEX_` + the key in upper case (the
/// tables, `tokens`, `agents`, `retention` and `default_policy`, only in the file).
pub const ENV_KEYS: [&str; 26] = [
    "data_dir",
    "resp",
    "quic",
    "http",
    "fsync",
    "tls_cert",
    "tls_key",
    "quic_connections_max",
    "quic_streams_max",
    "quic_idle_timeout_ms",
    "clients_max",
    "http_connections_max",
    "bulk_bytes_max",
    "client_buffer_bytes_max",
    "starvation_guard",
    "idempotency_window_ms",
    "idmp_maxsize",
    "schedule_ahead_max_ms",
    "open_tasks_max",
    "task_history_max",
    "task_keep_ms",
    "pending_index_bytes",
    "alert_interval_ms",
    "retention_interval_ms",
    "metrics_streams_max",
    "disk_free_min_bytes",
];

/// The file's settings with `CORTEX_*` variables over them. A bad file is an error naming
/// the file, line and key (the TOML parser's message); a bad variable names the variable.
pub fn load_file(
    path: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
) -> Result<FileConfig, String> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read config file {}: {e}", p.display()))?,
        None => String::new(),
    };
    let name = path.map_or(String::new(), |p| p.display().to_string());
    // Parsed once from the text alone, so errors carry the file's line and column.
    let file: FileConfig = toml::from_str(&text).map_err(|e| format!("config file {name}: {e}"))?;
    let mut overrides = Vec::new();
    for (var, raw) in env {
        let Some(key) = var.strip_prefix("CORTEX_").map(str::to_ascii_lowercase) else {
            continue;
        };
        if !ENV_KEYS.contains(&key.as_str()) {
            continue;
        }
        // A number stays a number; anything else (addresses, paths, names) is a string.
        let value = raw
            .parse::<i64>()
            .map(toml::Value::Integer)
            .unwrap_or_else(|_| toml::Value::String(raw.clone()));
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        toml::Value::Table(one)
            .try_into::<FileConfig>()
            .map_err(|e| format!("environment variable {var}={raw}: {e}"))?;
        overrides.push((key, value));
    }
    if overrides.is_empty() {
        return Ok(file);
    }
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("config file {name}: {e}"))?;
    table.extend(overrides);
    toml::Value::Table(table)
        .try_into()
        .map_err(|e| format!("config file {name} with CORTEX_* variables: {e}"))
}

/// `[cluster]`: this node and its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's ID.
    pub node_id: u64,
    /// Where this node listens for its peers (QUIC).
    pub listen: SocketAddr,
    /// Every voter: ID -> cluster address (this node included).
    pub nodes: BTreeMap<u64, SocketAddr>,
    /// The shared secret that authenticates nodes to each other.
    pub secret: String,
    /// Leader heartbeat.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound.
    pub election_min_ms: u64,
    /// Election timeout, upper bound.
    pub election_max_ms: u64,
    /// Log entries between snapshots.
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot (a follower further behind gets the snapshot).
    pub logs_kept: u64,
    /// Never form a cluster from the node list: wait to be added to an existing one.
    pub join: bool,
}

/// Bounds on what one RESP client may send (`resp::codec` enforces them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// Largest bulk string (one argument).
    pub bulk_bytes_max: usize,
    /// Most arguments in one command.
    pub args_max: usize,
    /// Longest inline command (a line without `*`).
    pub inline_bytes_max: usize,
    /// Most bytes buffered for one client before a command completes.
    pub buffer_bytes_max: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            bulk_bytes_max: 8 << 20,
            args_max: 1 << 20,
            inline_bytes_max: 64 << 10,
            buffer_bytes_max: 64 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::build(FileConfig::default(), &ServeFlags::default()).unwrap();
        assert_eq!(c.resp, addr("127.0.0.1:6380"));
        assert_eq!(c.fsync, Fsync::Always);
        assert_eq!(c.data_dir, PathBuf::from("./cortex-data"));
        let file: FileConfig = toml::from_str(
            "fsync = \"no\"\nresp = \"127.0.0.1:1\"\n[default_policy]\nmax_attempts = 5\n",
        )
        .unwrap();
        let flags = ServeFlags {
            fsync: Some(Fsync::Everysec),
            ..ServeFlags::default()
        };
        let c = Config::build(file, &flags).unwrap();
        assert_eq!(c.fsync, Fsync::Everysec);
        assert_eq!(c.resp, addr("127.0.0.1:1"));
        assert_eq!(c.default_policy.unwrap().max_attempts, 5);
        let file: FileConfig =
            toml::from_str("[[retention]]\npattern = \"events:*\"\nmax_len = 10\n").unwrap();
        let c = Config::build(file, &ServeFlags::default()).unwrap();
        assert_eq!(c.retention[0].max_len, Some(10));
        let file: FileConfig = toml::from_str("[[retention]]\npattern = \"events:*\"\n").unwrap();
        assert!(Config::build(file, &ServeFlags::default()).is_err());
    }

    #[test]
    fn cluster_from_flags_and_file() {
        let nodes = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let flags = ServeFlags {
            node_id: Some(2),
            cluster_nodes: nodes(&["1=10.0.0.1:7500", "2=10.0.0.2:7500", "3=10.0.0.3:7500"]),
            cluster_secret: Some("0123456789abcdef".into()),
            ..ServeFlags::default()
        };
        let c = Config::build(FileConfig::default(), &flags).unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!((cl.node_id, cl.listen), (2, addr("10.0.0.2:7500")));
        assert_eq!(cl.nodes.len(), 3);
        assert!(!cl.join);
        // No [cluster] and no flags: a single node.
        assert!(Config::build(FileConfig::default(), &ServeFlags::default())
            .unwrap()
            .cluster
            .is_none());
        let err = |f: ServeFlags| Config::build(FileConfig::default(), &f).unwrap_err();
        let e = err(ServeFlags {
            cluster_secret: None,
            ..flags.clone()
        });
        assert!(e.contains("shared secret"), "{e}");
        let e = err(ServeFlags {
            cluster_secret: Some("short".into()),
            ..flags.clone()
        });
        assert!(e.contains("16 bytes"), "{e}");
        let e = err(ServeFlags {
            node_id: Some(4),
            ..flags.clone()
        });
        assert!(e.contains("not in the cluster's node list"), "{e}");
        let e = err(ServeFlags {
            cluster_nodes: nodes(&["1:10.0.0.1:7500"]),
            ..flags.clone()
        });
        assert!(e.contains("ID=ADDR"), "{e}");
        // The file's table, with timing; flags for the ID.
        let file: FileConfig = toml::from_str(
            "[cluster]\nsecret = \"0123456789abcdef\"\nelection_timeout_min_ms = 500\n\
             election_timeout_max_ms = 900\n[[cluster.nodes]]\nid = 1\naddr = \"10.0.0.1:7500\"\n",
        )
        .unwrap();
        let f = ServeFlags {
            node_id: Some(1),
            ..ServeFlags::default()
        };
        let cl = Config::build(file, &f).unwrap().cluster.unwrap();
        assert_eq!((cl.election_min_ms, cl.election_max_ms), (500, 900));
    }

    #[test]
    fn public_bind_needs_tokens() {
        let flags = ServeFlags {
            resp: Some(addr("0.0.0.0:6380")),
            ..ServeFlags::default()
        };
        let err = Config::build(FileConfig::default(), &flags).unwrap_err();
        assert!(err.contains("no auth tokens"), "{err}");
        let file: FileConfig = toml::from_str("[tokens]\nharold = \"s3cret\"\n").unwrap();
        assert!(Config::build(file, &flags).is_ok());
        assert!(toml::from_str::<FileConfig>("unknown_key = 1").is_err());
    }

    /// `cortex.toml.example` documents every setting with its default: it must parse, and
    /// give exactly the built-in configuration.
    #[test]
    fn byte_counts_take_units() {
        assert_eq!(parse_bytes("268435456"), Ok(256 << 20));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cortex.toml.example");
        let text = std::fs::read_to_string(&path).unwrap();
        let file = load_file(Some(&path), std::iter::empty()).unwrap();
        let c = Config::build(file, &ServeFlags::default()).unwrap();
        let d = Config::build(FileConfig::default(), &ServeFlags::default()).unwrap();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
        for key in ENV_KEYS {
            assert!(
                text.contains(&format!("{key} =")),
                "{key} is not documented"
            );
        }
    }

    #[test]
    fn file_then_environment_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cortex.toml");
        std::fs::write(
            &path,
            "fsync = \"no\"\nclients_max = 5\nhttp = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let env = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let f = load_file(
            Some(&path),
            env(&[
                ("CORTEX_CLIENTS_MAX", "7"),
                ("CORTEX_HTTP", "127.0.0.1:2"),
                ("CORTEX_TOKEN", "not a setting of serve"),
            ]),
        )
        .unwrap();
        assert_eq!(f.clients_max, Some(7));
        assert_eq!(f.fsync, Some(Fsync::No));
        let flags = ServeFlags {
            http: Some(addr("127.0.0.1:3")),
            ..ServeFlags::default()
        };
        let c = Config::build(f, &flags).unwrap();
        assert_eq!(c.http, addr("127.0.0.1:3"));
        assert_eq!(c.clients_max, 7);
        let err = load_file(Some(&path), env(&[("CORTEX_FSYNC", "sometimes")])).unwrap_err();
        assert!(err.contains("CORTEX_FSYNC"), "{err}");
        std::fs::write(&path, "fsync = \"no\"\n\nclient_max = 5\n").unwrap();
        let err = load_file(Some(&path), env(&[])).unwrap_err();
        assert!(err.contains("cortex.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("client_max"), "{err}");
    }
}
