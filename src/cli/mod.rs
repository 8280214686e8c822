//! The client subcommands (`pub`, `sub`, `req`, `reply`, `replay`, `dlq`, `stat`, `bench`):
//! thin shells over [`crate::client`], printing JSON lines.

pub mod bench;
mod task;
use crate::timespec as time;
pub use task::{agents, task, AgentsArgs, TaskAction, TaskArgs};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::client::{
    AdminAnswer, AdminRequest, Client, ClientError, ClientOptions, DlqSelect, ErrorCode, Id,
    Message, PartKind, Start, SubscribeOptions, Trust,
};

/// Connection flags every client subcommand takes.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnFlags {
    /// Broker's QUIC address; a cluster's nodes as a comma-separated list (the client moves
    /// to the next that answers when one fails).
    #[arg(
        long,
        env = "CORTEX_SERVER",
        default_value = "127.0.0.1:7400",
        value_delimiter = ',',
        global = true
    )]
    pub server: Vec<SocketAddr>,
    /// Agent name [default: the AGENT argument for `reply`, else "cli"].
    #[arg(long, env = "CORTEX_AGENT", global = true)]
    pub agent: Option<String>,
    /// Token (not needed on a broker without tokens).
    #[arg(
        long,
        env = "CORTEX_TOKEN",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    pub token: String,
    /// Trust servers whose certificate a CA in this PEM file signed.
    #[arg(long, global = true, conflicts_with = "fingerprint")]
    pub ca: Option<PathBuf>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint.
    #[arg(long, global = true)]
    pub fingerprint: Option<String>,
    /// With neither --ca nor --fingerprint, trust the certificate `cortex serve` keeps in
    /// this data dir.
    #[arg(long, default_value = "./cortex-data", global = true)]
    pub data_dir: PathBuf,
    /// Name the certificate must carry (with --ca).
    #[arg(long, default_value = "localhost", global = true)]
    pub server_name: String,
}

impl ConnFlags {
    /// Client options for these flags.
    pub fn options(&self, default_agent: &str) -> ClientOptions {
        ClientOptions {
            server: self
                .server
                .first()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7400))),
            also: self.server.iter().skip(1).copied().collect(),
            server_name: self.server_name.clone(),
            agent: self.agent.clone().unwrap_or_else(|| default_agent.into()),
            token: self.token.clone(),
            trust: match (&self.ca, &self.fingerprint) {
                (Some(ca), _) => Trust::CaFile(ca.clone()),
                (None, Some(f)) => Trust::Fingerprint(f.clone()),
                (None, None) => Trust::local(&self.data_dir),
            },
            connect_timeout: Duration::from_secs(10),
        }
    }

    async fn connect(&self, default_agent: &str) -> Result<Client, Exit> {
        Client::connect(self.options(default_agent))
            .await
            .map_err(Exit::from)
    }
}

/// A failed command: its message and exit code.
#[derive(Debug)]
pub struct Exit {
    /// Exit code.
    pub code: i32,
    /// What to print on stderr.
    pub message: String,
}

impl From<ClientError> for Exit {
    fn from(e: ClientError) -> Self {
        let code = match e.code() {
            Some(ErrorCode::Timeout) => 3,
            Some(ErrorCode::NoResponders) => 4,
            Some(ErrorCode::NoPermission | ErrorCode::AuthFailed) => 5,
            _ => 1,
        };
        Exit {
            code,
            message: e.to_string(),
        }
    }
}

fn usage(msg: impl Into<String>) -> Exit {
    Exit {
        code: 2,
        message: msg.into(),
    }
}

/// `FIELD=VALUE` pairs.
fn pairs(items: &[String]) -> Result<crate::wire::Pairs, Exit> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .ok_or_else(|| usage(format!("'{kv}' is not FIELD=VALUE")))
        })
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn object(p: &[(Vec<u8>, Vec<u8>)]) -> Value {
    let mut m = Map::new();
    for (k, v) in p {
        m.insert(text(k), Value::String(text(v)));
    }
    Value::Object(m)
}

fn lane_name(l: u8) -> &'static str {
    ["critical", "high", "normal", "low", "heartbeat"]
        .get(usize::from(l))
        .copied()
        .unwrap_or("normal")
}

fn lane(s: &str) -> Result<u8, Exit> {
    ["critical", "high", "normal", "low", "heartbeat"]
        .iter()
        .position(|l| l.eq_ignore_ascii_case(s))
        .map(|i| i as u8)
        .ok_or_else(|| {
            usage(format!(
                "unknown lane '{s}' (critical, high, normal, low, heartbeat)"
            ))
        })
}

fn print(v: Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// `cortex pub`.
#[derive(Clone, Debug, clap::Args)]
pub struct PubArgs {
    /// Stream.
    pub stream: String,
    /// Priority lane: critical, high, normal, low, heartbeat.
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// Time to live, ms.
    #[arg(long)]
    pub ttl: Option<u64>,
    /// Idempotency key: a repeat within the window returns the first ID.
    #[arg(long)]
    pub key: Option<String>,
    /// Header NAME=VALUE (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Hand it to groups from this time on: 2026-11-25T09:00:00Z (UTC) or @UNIX_MS.
    #[arg(long, conflicts_with = "delay")]
    pub at: Option<String>,
    /// Hand it to groups after this delay: 500ms, 30s, 10m, 2h, 1d.
    #[arg(long)]
    pub delay: Option<String>,
    /// FIELD=VALUE pairs.
    #[arg(required = true)]
    pub fields: Vec<String>,
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// `m` with the schedule of `--at` or `--delay`, if one is given.
fn scheduled(mut m: Message, at: Option<&str>, delay: Option<&str>) -> Result<Message, Exit> {
    if let Some(at) = at {
        let t = crate::timespec::parse_time(at, crate::timespec::now_ms())
            .filter(|_| !at.starts_with('-'))
            .ok_or_else(|| {
                usage(format!(
                    "--at '{at}' is not a time (2026-11-25T09:00:00Z or @UNIX_MS)"
                ))
            })?;
        m = m.deliver_at(t);
    }
    if let Some(d) = delay {
        let ms = crate::timespec::parse_duration(d).ok_or_else(|| {
            usage(format!(
                "--delay '{d}' is not a duration (500ms, 30s, 10m, 2h, 1d)"
            ))
        })?;
        m = m.delay(ms);
    }
    Ok(m)
}

/// Runs `cortex pub`: prints the entry's ID once durable.
pub async fn publish(a: PubArgs) -> Result<(), Exit> {
    let m = Message {
        fields: pairs(&a.fields)?,
        lane: lane(&a.priority)?,
        ttl_ms: a.ttl,
        key: a.key.map(String::into_bytes),
        headers: pairs(&a.headers)?,
    };
    let m = scheduled(m, a.at.as_deref(), a.delay.as_deref())?;
    let c = a.conn.connect("cli").await?;
    let p = c.publish(a.stream, m).await?;
    println!("{}", p.id);
    Ok(())
}

/// `cortex sub`.
#[derive(Clone, Debug, clap::Args)]
pub struct SubArgs {
    /// Stream.
    pub stream: String,
    /// Group [default: the agent's name, so every agent sees every message].
    #[arg(long)]
    pub group: Option<String>,
    /// Consumer [default: the agent's name].
    #[arg(long)]
    pub consumer: Option<String>,
    /// Where a new group starts: new (default), all, an ID (ms-seq), or a time
    /// (2026-11-25T09:00:00Z, @UNIX_MS, or -30s / -10m / -2h / -1d ago).
    #[arg(long, default_value = "new", allow_hyphen_values = true)]
    pub from: String,
    /// Exit after this many deliveries.
    #[arg(long)]
    pub count: Option<u64>,
    /// Most unacknowledged deliveries in flight.
    #[arg(long, default_value_t = 100)]
    pub credits: u32,
    /// Do not acknowledge (deliveries are not kept pending).
    #[arg(long)]
    pub no_ack: bool,
    #[command(flatten)]
    pub conn: ConnFlags,
}

fn start(s: &str, now_ms: u64) -> Result<Start, Exit> {
    match s {
        "new" | "$" => return Ok(Start::New),
        "all" | "0" | "start" => return Ok(Start::All),
        _ => {}
    }
    if let Some(id) = time::parse_id(s) {
        return Ok(Start::After(Id {
            ms: id.0,
            seq: id.1,
        }));
    }
    time::parse_time(s, now_ms)
        .map(Start::Time)
        .ok_or_else(|| usage(format!("'{s}' is not new, all, an ID or a time")))
}

/// Runs `cortex sub`.
pub async fn subscribe(a: SubArgs) -> Result<(), Exit> {
    let mut opts = SubscribeOptions::new(a.stream.clone());
    opts.group = a.group.map(String::into_bytes);
    opts.consumer = a.consumer.map(String::into_bytes);
    opts.from = start(&a.from, time::now_ms())?;
    opts.window = a.credits.max(1);
    opts.no_ack = a.no_ack;
    let stop = stopped();
    tokio::pin!(stop);
    let c = a.conn.connect("cli").await?;
    let mut sub = c.subscribe(opts).await?;
    let mut n = 0;
    while a.count.is_none_or(|c| n < c) {
        let next = tokio::select! {
            d = sub.next() => d,
            _ = &mut stop => break,
        };
        let Some(d) = next else { break };
        let d = d?;
        print(json!({
            "stream": text(&d.stream),
            "id": d.id.to_string(),
            "fields": object(&d.fields),
            "lane": lane_name(d.lane),
            "attempt": d.attempt,
            "headers": object(&d.headers),
            "producer": d.producer.as_deref().map(text),
        }));
        if !a.no_ack {
            d.ack().await?;
        }
        n += 1;
    }
    c.close().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM. A command that serves or subscribes then closes its
/// connection (`Client::close`), so the broker lets go of the subscription at once instead
/// of handing deliveries to a process that is gone until its idle timeout. The handlers are
/// installed when this is called (before the subscription exists), not when first polled.
fn stopped() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            _ = wait_signal(term.as_mut()) => {}
            _ = wait_signal(int.as_mut()) => {}
        }
    }
}

/// The next delivery of a signal (never, when its handler could not be installed).
async fn wait_signal(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// `cortex req`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReqArgs {
    /// The agent to ask.
    pub agent_to: String,
    /// Deadline for the whole reply, ms.
    #[arg(long, default_value_t = 10_000)]
    pub timeout: u64,
    /// The request's task ID (1 to 64 bytes, unique while kept): `cortex task status ID`
    /// then tells what became of it. Default: one the server makes.
    #[arg(long)]
    pub task_id: Option<String>,
    /// FIELD=VALUE pairs.
    pub fields: Vec<String>,
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// Runs `cortex req`: prints each reply part as JSON; exit 0 on a final reply, 1 on an
/// error reply, 3 on timeout, 4 when nobody serves the agent.
pub async fn request(a: ReqArgs) -> Result<(), Exit> {
    let fields = pairs(&a.fields)?;
    let fields = if fields.is_empty() {
        vec![(b"request".to_vec(), Vec::new())]
    } else {
        fields
    };
    let c = a.conn.connect("cli").await?;
    let headers = a
        .task_id
        .map(|t| vec![(crate::wire::names::TASK.as_bytes().to_vec(), t.into_bytes())])
        .unwrap_or_default();
    let mut parts = c
        .request_with(
            &a.agent_to,
            fields,
            headers,
            1,
            Duration::from_millis(a.timeout),
        )
        .await?;
    while let Some(p) = parts.next().await {
        let p = p?;
        let kind = match p.kind {
            PartKind::Progress => "progress",
            PartKind::Final => "final",
            PartKind::Error => "error",
            PartKind::InputRequired => "input-required",
        };
        print(json!({"kind": kind, "from": p.from, "fields": object(&p.fields)}));
        match p.kind {
            PartKind::Progress | PartKind::InputRequired => {}
            PartKind::Final => return Ok(()),
            PartKind::Error => {
                return Err(Exit {
                    code: 1,
                    message: format!("{} answered with an error", a.agent_to),
                })
            }
        }
    }
    Err(Exit {
        code: 1,
        message: "the reply ended without a final part".into(),
    })
}

/// `cortex reply`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReplyArgs {
    /// The agent whose requests to serve.
    pub agent_name: String,
    /// Exit after answering this many requests.
    #[arg(long)]
    pub count: Option<u64>,
    /// The command to run per request (after `--`): the request as JSON on its stdin,
    /// its stdout is the reply (field `output`); a non-zero exit is an error reply.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// Runs `cortex reply`.
pub async fn reply(a: ReplyArgs) -> Result<(), Exit> {
    let stop = stopped();
    tokio::pin!(stop);
    let c = a.conn.connect(&a.agent_name).await?;
    if c.agent() != a.agent_name {
        return Err(usage(format!(
            "--agent {} cannot serve {}: connect as the agent whose requests you answer",
            c.agent(),
            a.agent_name
        )));
    }
    let mut reqs = c.serve(1).await?;
    eprintln!("cortex: serving requests for {}", a.agent_name);
    let mut n = 0;
    while a.count.is_none_or(|c| n < c) {
        let next = tokio::select! {
            r = reqs.next() => r,
            _ = &mut stop => break,
        };
        let Some(r) = next else { break };
        let r = r?;
        let input = json!({
            "id": r.delivery.id.to_string(),
            "from": r.from().map(text),
            "fields": object(r.fields()),
        });
        let out = run_command(&a.command, input.to_string()).await;
        let res = match out {
            Ok((0, stdout, _)) => r.reply(vec![(b"output".to_vec(), stdout)]).await,
            Ok((code, stdout, stderr)) => {
                r.fail(vec![
                    (b"output".to_vec(), stdout),
                    (b"stderr".to_vec(), stderr),
                    (b"exit".to_vec(), code.to_string().into_bytes()),
                ])
                .await
            }
            Err(e) => r.fail(vec![(b"error".to_vec(), e.into_bytes())]).await,
        };
        if let Err(e) = res {
            eprintln!("cortex: could not answer: {e}");
        }
        n += 1;
    }
    c.close().await;
    Ok(())
}

/// Output of one command run is capped at this many bytes per stream.
const OUTPUT_MAX: usize = 512 * 1024;

async fn run_command(cmd: &[String], input: String) -> Result<(i32, Vec<u8>, Vec<u8>), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cmd[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{} failed: {e}", cmd[0]))?;
    let cap = |mut v: Vec<u8>| {
        v.truncate(OUTPUT_MAX);
        v
    };
    Ok((
        out.status.code().unwrap_or(-1),
        cap(out.stdout),
        cap(out.stderr),
    ))
}

/// `cortex replay`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    /// Stream.
    pub stream: String,
    /// From this ID or time (inclusive).
    #[arg(long, allow_hyphen_values = true)]
    pub since: String,
    /// Up to this ID or time (inclusive) [default: the end].
    #[arg(long, allow_hyphen_values = true)]
    pub until: Option<String>,
    #[command(flatten)]
    pub conn: ConnFlags,
}

fn bound(s: &str, now: u64, high: bool) -> Result<Id, Exit> {
    if let Some((ms, seq)) = time::parse_id(s) {
        return Ok(Id { ms, seq });
    }
    match time::parse_time(s, now) {
        Some(ms) if high => Ok(Id { ms, seq: u64::MAX }),
        Some(ms) => Ok(Id { ms, seq: 0 }),
        None => Err(usage(format!("'{s}' is not an ID or a time"))),
    }
}

/// Runs `cortex replay`: every entry in the range, oldest first, as JSON lines.
pub async fn replay(a: ReplayArgs) -> Result<(), Exit> {
    let now = time::now_ms();
    let mut start = bound(&a.since, now, false)?;
    let end = match &a.until {
        Some(u) => bound(u, now, true)?,
        None => Id {
            ms: u64::MAX,
            seq: u64::MAX,
        },
    };
    let c = a.conn.connect("cli").await?;
    loop {
        let page = c.range(a.stream.clone(), start, end, 1_000, false).await?;
        let Some(last) = page.last().map(|e| e.id) else {
            break;
        };
        for e in &page {
            print(json!({
                "stream": a.stream,
                "id": e.id.to_string(),
                "fields": object(&e.fields),
                "lane": lane_name(e.lane),
                "headers": object(&e.headers),
                "producer": e.producer.as_deref().map(text),
            }));
        }
        // A page may be shorter than asked (the server keeps answers under its frame
        // limit): only an empty page, or the end of the range, ends the replay.
        if last == end {
            break;
        }
        start = if last.seq == u64::MAX {
            Id {
                ms: last.ms + 1,
                seq: 0,
            }
        } else {
            Id {
                ms: last.ms,
                seq: last.seq + 1,
            }
        };
    }
    Ok(())
}

/// `cortex dlq`.
#[derive(Clone, Debug, clap::Args)]
pub struct DlqArgs {
    /// list, redrive or purge.
    #[arg(value_parser = ["list", "redrive", "purge"])]
    pub action: String,
    /// Dead-letter stream [default: cortex:dlq].
    #[arg(long)]
    pub dlq: Option<String>,
    /// Only entries from this origin stream.
    #[arg(long)]
    pub origin: Option<String>,
    /// Only entries dead-lettered by this group.
    #[arg(long)]
    pub group: Option<String>,
    /// Only this reason: max_attempts, expired, stale, rejected, canceled.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only this DLQ entry.
    #[arg(long)]
    pub id: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub count: u32,
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// Runs `cortex dlq`.
pub async fn dlq(a: DlqArgs) -> Result<(), Exit> {
    let id = match &a.id {
        Some(s) => Some(
            time::parse_id(s)
                .map(|(ms, seq)| Id { ms, seq })
                .ok_or_else(|| usage(format!("'{s}' is not an ID")))?,
        ),
        None => None,
    };
    let sel = DlqSelect {
        dlq: a.dlq.map(String::into_bytes),
        id,
        origin: a.origin.map(String::into_bytes),
        group: a.group.map(String::into_bytes),
        reason: a.reason,
        count: a.count,
    };
    let req = match a.action.as_str() {
        "list" => AdminRequest::DlqList(sel),
        "redrive" => AdminRequest::DlqRedrive(sel),
        _ => AdminRequest::DlqPurge(sel),
    };
    let c = a.conn.connect("cli").await?;
    match c.admin(req).await? {
        AdminAnswer::DeadLetters(d) => {
            for d in d {
                print(json!({
                    "id": d.id.to_string(),
                    "origin": text(&d.origin),
                    "origin_id": d.origin_id.to_string(),
                    "group": text(&d.group),
                    "consumer": text(&d.consumer),
                    "reason": d.reason,
                    "failures": d.failures,
                    "last_error": d.last_error.as_deref().map(text),
                    "dead_at_ms": d.dead_at_ms,
                    "fields": object(&d.fields),
                }));
            }
        }
        AdminAnswer::Count(n) => print(json!({ "action": a.action, "count": n })),
        other => return Err(usage(format!("unexpected answer {other:?}"))),
    }
    Ok(())
}

/// `cortex cluster`.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: ClusterAction,
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// What `cortex cluster` does.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ClusterAction {
    /// The node's view: role, leader, term, members, each follower's lag.
    Status,
    /// Add a voter (start it first with --join): it catches up, then joins the quorum.
    Add {
        /// Its node ID.
        id: u64,
        /// Its cluster address (host:port).
        addr: String,
    },
    /// Remove a voter (a dead node, or one being replaced).
    Remove {
        /// Its node ID.
        id: u64,
    },
}

/// Runs `cortex cluster` (admin): prints the node's view as JSON, after the change.
pub async fn cluster(a: ClusterArgs) -> Result<(), Exit> {
    let change = match a.action {
        ClusterAction::Status => None,
        ClusterAction::Add { id, addr } => Some(crate::wire::ClusterChange::Add { id, addr }),
        ClusterAction::Remove { id } => Some(crate::wire::ClusterChange::Remove { id }),
    };
    let c = a.conn.connect("cli").await?;
    match c.admin(AdminRequest::Cluster { change }).await? {
        AdminAnswer::Cluster(json) => {
            println!("{json}");
            Ok(())
        }
        other => Err(usage(format!("unexpected answer {other:?}"))),
    }
}

/// `cortex stat`.
#[derive(Clone, Debug, clap::Args)]
pub struct StatArgs {
    /// Only this stream.
    pub stream: Option<String>,
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// Runs `cortex stat`: one JSON object per stream with its groups, then the cluster's
/// status on a cluster node.
pub async fn stat(a: StatArgs) -> Result<(), Exit> {
    let c = a.conn.connect("cli").await?;
    let AdminAnswer::Stat(streams) = c
        .admin(AdminRequest::Stat {
            stream: a.stream.map(String::into_bytes),
        })
        .await?
    else {
        return Err(usage("unexpected answer"));
    };
    for s in streams {
        let lanes: Map<String, Value> = s
            .lanes
            .iter()
            .enumerate()
            .map(|(i, n)| (lane_name(i as u8).to_string(), json!(n)))
            .collect();
        print(json!({
            "stream": text(&s.name),
            "length": s.length,
            "last_id": s.last_id.to_string(),
            "lanes": lanes,
            "groups": s.groups.iter().map(|g| json!({
                "group": text(&g.name),
                "consumers": g.consumers,
                "pending": g.pending,
                "lag": g.lag,
                "last_delivered": g.last_delivered.to_string(),
                "policy": g.policy,
            })).collect::<Vec<_>>(),
        }));
    }
    // A cluster node adds one line with the cluster (for admins; others get no line).
    if let Ok(AdminAnswer::Cluster(status)) = c.admin(AdminRequest::Cluster { change: None }).await
    {
        if let Ok(v) = serde_json::from_str::<Value>(&status) {
            print(json!({ "cluster": v }));
        }
    }
    Ok(())
}

/// `cortex backup`.
#[derive(Clone, Debug, clap::Args)]
pub struct BackupArgs {
    /// Directory to create on the broker's machine (absent or empty); a relative path is
    /// taken from this command's working directory.
    pub dir: std::path::PathBuf,
    #[command(flatten)]
    pub conn: ConnFlags,
}

/// Runs `cortex backup`: the running broker copies its store as of one commit (admin).
pub async fn backup(a: BackupArgs) -> Result<(), Exit> {
    let dir =
        std::path::absolute(&a.dir).map_err(|e| usage(format!("{}: {e}", a.dir.display())))?;
    let c = a.conn.connect("cli").await?;
    let AdminAnswer::Backup {
        streams,
        keys,
        bytes,
    } = c
        .admin(AdminRequest::Backup {
            dir: dir.display().to_string(),
        })
        .await?
    else {
        return Err(usage("unexpected answer"));
    };
    print(json!({
        "backup": dir.display().to_string(),
        "streams": streams,
        "keys": keys,
        "bytes": bytes,
    }));
    Ok(())
}

/// `cortex verify`.
#[derive(Clone, Debug, clap::Args)]
pub struct VerifyArgs {
    /// The data directory of a stopped broker (or a backup).
    pub data_dir: std::path::PathBuf,
}

/// Runs `cortex verify`: checks every record's CRC and the indexes, offline. Prints one JSON
/// line per damage found and a summary; exits 1 when anything is damaged.
pub fn verify(a: VerifyArgs) -> Result<(), Exit> {
    let r = cortex_storage::verify(&a.data_dir, &cortex_storage::StoreConfig::default()).map_err(
        |e| {
            // A store fjall cannot open: its damaged table files, one line each.
            for (file, keyspace, why) in cortex_storage::damaged_table_files(&a.data_dir) {
                print(json!({
                    "damaged": "",
                    "what": format!("table file {file} ({keyspace}) cannot be read: {why}"),
                    "ids": Vec::<String>::new(),
                }));
            }
            Exit {
                code: 2,
                message: format!("cannot check {}: {e}", a.data_dir.display()),
            }
        },
    )?;
    for d in &r.damage {
        print(json!({
            "damaged": text(&d.stream),
            "what": d.what,
            "ids": d.ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }));
    }
    print(json!({
        "checked": a.data_dir.display().to_string(),
        "streams": r.streams,
        "entries": r.entries,
        "groups": r.groups,
        "pending": r.pending,
        "other": r.other,
        "damaged": r.damage.len(),
    }));
    if r.damage.is_empty() {
        Ok(())
    } else {
        Err(Exit {
            code: 1,
            message: format!("{} problems found", r.damage.len()),
        })
    }
}
