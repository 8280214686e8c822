//! The `cortex` binary: parse the command line, run, map errors to exit codes.

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Cortex Bus: a message broker for a swarm of agents, on its own append-only log.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the broker (RESP port for redis-cli and Redis clients).
    Serve(cortex::config::ServeFlags),
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,fjall=warn,lsm_tree=warn")
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
    };
    if let Err(e) = result {
        eprintln!("cortex: {e}");
        std::process::exit(1);
    }
}
