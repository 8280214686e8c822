//! `cortex serve`: start the broker and its fronts; stop cleanly on SIGINT/SIGTERM.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::config::Config;

/// Runs until SIGINT or SIGTERM: stop accepting, finish what is in flight, persist, return.
pub async fn run(config: Config) -> Result<(), String> {
    let resp_addr = config.resp;
    let (broker, writer) = Broker::start(config)?;
    let listener = TcpListener::bind(resp_addr)
        .await
        .map_err(|e| format!("cannot bind the RESP port {resp_addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this line to find the port when started on port 0.
    println!("cortex: RESP listening on {local}");
    tracing::info!(
        data_dir = %broker.config().data_dir.display(),
        fsync = ?broker.config().fsync,
        "RESP on {local}; the QUIC ({}) and HTTP ({}) fronts are not built yet",
        broker.config().quic,
        broker.config().http
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let stop2 = stop.clone();
    let server = tokio::spawn(crate::resp::serve(listener, broker.clone(), async move {
        stop2.notified().await;
    }));
    tokio::select! {
        _ = wait_for_signal() => {}
        e = broker.failure() => {
            stop.notify_one();
            return Err(format!("storage failure, stopping (a restart recovers what was committed): {e}"));
        }
    }
    tracing::info!("shutting down: no new connections, finishing writes");
    stop.notify_one();
    let _ = server.await;
    broker.shutdown();
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
        let _ = writer.join();
        // Flush memtables too, so the next start has no journal to replay.
        if let Err(e) = b.checkpoint() {
            tracing::error!("final flush failed: {e}");
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
