//! The `cortex` binary: parse the command line, run, map errors to exit codes.

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: cortex::alloc::Allocator = cortex::alloc::Allocator;

/// Cortex Bus: a message broker for a swarm of agents, on its own append-only log.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the broker: QUIC for agents, RESP for Redis clients, HTTP for operators.
    Serve(cortex::config::ServeFlags),
    /// Publish a message; prints its ID once durable.
    Pub(cortex::cli::PubArgs),
    /// Subscribe: prints one JSON object per pushed delivery, acks after printing.
    Sub(cortex::cli::SubArgs),
    /// Send a request to an agent; prints the reply parts as JSON.
    Req(cortex::cli::ReqArgs),
    /// Serve an agent's requests with a command: request JSON on stdin, stdout is the reply.
    Reply(cortex::cli::ReplyArgs),
    /// Print a stream's entries in an ID or time range as JSON lines.
    Replay(cortex::cli::ReplayArgs),
    /// Tasks: submit to an agent, status, watch every change, cancel, list.
    Task(cortex::cli::TaskArgs),
    /// The agents connected to the node: sessions, client, last heard, what each serves.
    Agents(cortex::cli::AgentsArgs),
    /// List, redrive or purge dead letters (admin).
    Dlq(cortex::cli::DlqArgs),
    /// Streams, groups, lag, pending as JSON lines.
    Stat(cortex::cli::StatArgs),
    /// Measure the broker over QUIC: publish, deliver or reqrep.
    Bench(cortex::cli::bench::BenchArgs),
    /// Copy a running broker's data as of one commit into DIR (admin).
    Backup(cortex::cli::BackupArgs),
    /// Inspect the cluster, add or remove a voter (admin).
    Cluster(cortex::cli::ClusterArgs),
    /// Check a stopped broker's data offline: every record's CRC and the indexes.
    Verify(cortex::cli::VerifyArgs),
}

fn client(
    f: impl std::future::Future<Output = Result<(), cortex::cli::Exit>>,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    if let Err(e) = rt.block_on(f) {
        eprintln!("cortex: {}", e.message);
        std::process::exit(e.code);
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn,openraft=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::Serve(flags) => cortex::config::Config::load(&flags).and_then(|config| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?
                .block_on(cortex::serve::run(config))
        }),
        Cmd::Pub(a) => client(cortex::cli::publish(a)),
        Cmd::Sub(a) => client(cortex::cli::subscribe(a)),
        Cmd::Req(a) => client(cortex::cli::request(a)),
        Cmd::Reply(a) => client(cortex::cli::reply(a)),
        Cmd::Replay(a) => client(cortex::cli::replay(a)),
        Cmd::Task(a) => client(cortex::cli::task(a)),
        Cmd::Agents(a) => client(cortex::cli::agents(a)),
        Cmd::Dlq(a) => client(cortex::cli::dlq(a)),
        Cmd::Stat(a) => client(cortex::cli::stat(a)),
        Cmd::Bench(a) => client(cortex::cli::bench::run(a)),
        Cmd::Backup(a) => client(cortex::cli::backup(a)),
        Cmd::Cluster(a) => client(cortex::cli::cluster(a)),
        Cmd::Verify(a) => {
            if let Err(e) = cortex::cli::verify(a) {
                eprintln!("cortex: {}", e.message);
                std::process::exit(e.code);
            }
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("cortex: {e}");
        std::process::exit(1);
    }
}
