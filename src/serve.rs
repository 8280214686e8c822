//! `cortex serve`: start the broker and its fronts; stop cleanly on SIGINT/SIGTERM.

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::config::Config;

/// Runs until SIGINT or SIGTERM: stop accepting, finish what is in flight, persist, return.
pub async fn run(config: Config) -> Result<(), String> {
    no_huge_pages();
    let resp_addr = config.resp;
    let (broker, writer) = Broker::start(config).await?;
    let listener = TcpListener::bind(resp_addr)
        .await
        .map_err(|e| format!("cannot bind the RESP port {resp_addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let endpoint = crate::quic::server::bind(broker.config())?;
    let quic_local = endpoint.local_addr().map_err(|e| e.to_string())?;
    let http = crate::http::bind(&broker).await?;
    let http_local = http.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read these lines to find the ports when started on port 0.
    println!("cortex: QUIC listening on {quic_local}");
    println!("cortex: HTTP listening on {http_local}");
    println!("cortex: RESP listening on {local}");
    tracing::info!(
        data_dir = %broker.config().data_dir.display(),
        fsync = ?broker.config().fsync,
        "QUIC on {quic_local}, RESP on {local}, dashboard and metrics on http://{http_local}/"
    );
    // A watch channel, so a front that starts waiting late still sees the stop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(crate::resp::serve(
        listener,
        broker.clone(),
        until_stop(stopped.clone()),
    ));
    let quic = tokio::spawn(crate::quic::server::serve(
        endpoint,
        broker.clone(),
        until_stop(stopped.clone()),
    ));
    let web = tokio::spawn(crate::http::serve(http, broker.clone(), stopped));
    tokio::select! {
        _ = wait_for_signal() => {}
        e = broker.failure() => {
            let _ = stop.send(true);
            return Err(format!("storage failure, stopping (a restart recovers what was committed): {e}"));
        }
    }
    tracing::info!("shutting down: no new connections, finishing writes");
    let _ = stop.send(true);
    let _ = server.await;
    let _ = quic.await;
    if let Ok(Err(e)) = web.await {
        tracing::warn!("HTTP front: {e}");
    }
    broker.shutdown();
    writer.join().await;
    if let Some(node) = broker.cluster() {
        if let Err(e) = node.raft.shutdown().await {
            tracing::warn!("Raft did not stop cleanly: {e}");
        }
        node.net.close();
    }
    let b = broker.clone();
    tokio::task::spawn_blocking(move || {
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

/// Turns transparent huge pages off for this process, as Redis does (`disable-thp yes`).
/// With them on, the allocator's arenas are backed by 2 MiB pages (mimalloc asks for them
/// with `madvise`): every first touch of one zeroes 2 MiB inside whatever request touched
/// it, and with the kernel's `defrag` setting it may compact memory first. Measured on the
/// RESP rows (README, seventh session): with them off, 1 KB XADD at -P 16 gained a fifth in
/// throughput and XREADGROUP's p99 fell by a third; the ack rows lost 4-6 % (more TLB misses
/// in large tables). The flag is the process's (`PR_SET_THP_DISABLE`), checked by the kernel
/// at each fault, so it covers memory mapped before this call too.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!("cannot turn transparent huge pages off (prctl): {e}");
    }
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
