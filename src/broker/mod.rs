//! The one broker core every protocol front uses.
//!
//! - A single **writer thread** owns storage writes. Fronts submit batches of [`Op`]s; the
//!   writer drains everything waiting, applies it as one commit (one fsync under
//!   `--fsync always`) and answers each submitter only after that commit.
//! - Reads go to the store directly ([`Broker::store`]) and never queue behind the writer.
//! - The [`Notifier`] wakes blocked readers when the writer reports appends, due retries,
//!   deleted streams or destroyed groups; nothing polls.
//! - A timer task drives time (ack timeouts, backoff, TTL, garbage) by submitting
//!   [`Op::Tick`] when [`Store::due`] says a deadline passed, and an alert task summarises
//!   dead letters on `cortex:alerts`.

mod alerts;
mod notify;
mod retention;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cortex_storage::{Event, Op, Reply, Store, StreamKey};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::{Config, Fsync};
pub use notify::Notifier;

/// Replies of one submission, one per op.
pub type Replies = Vec<cortex_storage::Result<Reply>>;

/// Why a submission got no replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker is shutting down.
    ShuttingDown,
    /// The store failed (I/O); the broker stops.
    Storage(String),
    /// Too many submissions are waiting.
    Busy,
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerError::ShuttingDown => f.write_str("the broker is shutting down"),
            BrokerError::Storage(e) => write!(f, "storage failure: {e}"),
            BrokerError::Busy => f.write_str("the broker's write queue is full, retry later"),
        }
    }
}

struct Submission {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<Replies, BrokerError>>,
}

/// The broker's clock: the system clock plus an offset that only tests move.
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    fn new() -> Self {
        Clock {
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Unix milliseconds, as the broker sees them.
    pub fn now_ms(&self) -> u64 {
        let sys = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        (sys + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Moves the clock forward (tests).
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Counters for INFO.
#[derive(Default)]
pub struct Stats {
    /// Commits made by the writer.
    pub commits: AtomicU64,
    /// Ops applied.
    pub ops: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Commands processed.
    pub commands: AtomicU64,
    /// Clients connected now.
    pub clients: AtomicU64,
    /// Clients blocked now.
    pub blocked: AtomicU64,
    /// Alerts written.
    pub alerts: AtomicU64,
}

/// Handle to the broker; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    submit: mpsc::Sender<Submission>,
    notifier: Notifier,
    clock: Clock,
    config: Config,
    timer_wake: Notify,
    stats: Stats,
    stopping: AtomicBool,
    /// Set, and `failed_notify` woken, when the store failed: the process must exit.
    failed: std::sync::Mutex<Option<String>>,
    failed_notify: Notify,
    started_ms: u64,
    alerts: mpsc::Sender<Event>,
}

impl Broker {
    /// Opens the store and starts the writer, timer and alert tasks (on the current tokio
    /// runtime). Returns the broker and a handle that finishes when the writer has stopped.
    pub fn start(config: Config) -> Result<(Broker, std::thread::JoinHandle<()>), String> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
        let store = Store::open(&config.data_dir, config.store.clone())
            .map_err(|e| format!("cannot open store in {}: {e}", config.data_dir.display()))?;
        let store = Arc::new(store);
        let (tx, rx) = mpsc::channel(config.queue_max);
        let (alert_tx, alert_rx) = mpsc::channel(10_000);
        let clock = Clock::new();
        let started_ms = clock.now_ms();
        let broker = Broker {
            inner: Arc::new(Inner {
                store,
                submit: tx,
                notifier: Notifier::default(),
                clock,
                config,
                timer_wake: Notify::new(),
                stats: Stats::default(),
                stopping: AtomicBool::new(false),
                failed: std::sync::Mutex::new(None),
                failed_notify: Notify::new(),
                started_ms,
                alerts: alert_tx,
            }),
        };
        let writer = {
            let b = broker.clone();
            std::thread::Builder::new()
                .name("cortex-writer".into())
                .spawn(move || b.writer_loop(rx))
                .map_err(|e| format!("cannot start the writer thread: {e}"))?
        };
        if broker.inner.config.fsync == Fsync::Everysec {
            let b = broker.clone();
            std::thread::Builder::new()
                .name("cortex-fsync".into())
                .spawn(move || {
                    while !b.inner.stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_secs(1));
                        if let Err(e) = b.inner.store.persist() {
                            tracing::error!("periodic fsync failed: {e}");
                        }
                    }
                })
                .map_err(|e| format!("cannot start the fsync thread: {e}"))?;
        }
        tokio::spawn(broker.clone().timer_loop());
        tokio::spawn(alerts::run(broker.clone(), alert_rx));
        if !broker.inner.config.retention.is_empty() {
            tokio::spawn(retention::run(broker.clone()));
        }
        Ok((broker, writer))
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The notifier, for blocked reads.
    pub fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The broker's clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Unix ms as the broker sees them.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// When the broker started (Unix ms).
    pub fn started_ms(&self) -> u64 {
        self.inner.started_ms
    }

    /// Wakes the timer (after the clock moved).
    pub fn wake_timer(&self) {
        self.inner.timer_wake.notify_one();
    }

    /// Resolves when the store failed; the broker cannot go on and the process should exit
    /// (a restart recovers everything committed from the journal).
    pub async fn failure(&self) -> String {
        loop {
            let notified = self.inner.failed_notify.notified();
            if let Some(e) = self
                .inner
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return e;
            }
            notified.await;
        }
    }

    /// True once shutdown began.
    pub fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// Applies `ops` in the next commit and returns each op's result once durable under the
    /// configured `--fsync` mode.
    pub async fn submit(&self, ops: Vec<Op>) -> Result<Replies, BrokerError> {
        if self.stopping() {
            return Err(BrokerError::ShuttingDown);
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .submit
            .try_send(Submission { ops, reply: tx })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => BrokerError::Busy,
                mpsc::error::TrySendError::Closed(_) => BrokerError::ShuttingDown,
            })?;
        rx.await.unwrap_or(Err(BrokerError::ShuttingDown))
    }

    /// Submits one op.
    pub async fn submit_one(&self, op: Op) -> Result<cortex_storage::Result<Reply>, BrokerError> {
        let mut r = self.submit(vec![op]).await?;
        Ok(r.pop().unwrap_or(Ok(Reply::Ok)))
    }

    /// Begins shutdown: new submissions are refused; the writer finishes what is queued,
    /// closes the store cleanly and exits.
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        // An empty submission wakes the writer so it notices.
        let (tx, _rx) = oneshot::channel();
        let _ = self.inner.submit.try_send(Submission {
            ops: Vec::new(),
            reply: tx,
        });
        self.inner.timer_wake.notify_one();
    }

    fn writer_loop(self, mut rx: mpsc::Receiver<Submission>) {
        let max = self.inner.config.batch_ops_max;
        loop {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut subs = vec![first];
            let mut n = subs[0].ops.len();
            while n < max {
                match rx.try_recv() {
                    Ok(s) => {
                        n += s.ops.len();
                        subs.push(s);
                    }
                    Err(_) => break,
                }
            }
            let mut ops = Vec::with_capacity(n);
            let mut sizes = Vec::with_capacity(subs.len());
            let mut replies_to = Vec::with_capacity(subs.len());
            for s in subs {
                sizes.push(s.ops.len());
                ops.extend(s.ops);
                replies_to.push(s.reply);
            }
            if !ops.is_empty() {
                let now = self.now_ms();
                // Only these can create or move a deadline the timer must see.
                let moves_deadlines = ops.iter().any(|op| {
                    !matches!(
                        op,
                        Op::Append { .. } | Op::Ack { .. } | Op::Delete { .. } | Op::Trim { .. }
                    )
                });
                match self.inner.store.apply(ops, now) {
                    Ok(out) => {
                        self.inner.stats.commits.fetch_add(1, Ordering::Relaxed);
                        self.inner.stats.ops.fetch_add(n as u64, Ordering::Relaxed);
                        self.publish(&out.events);
                        if moves_deadlines {
                            self.inner.timer_wake.notify_one();
                        }
                        let mut replies = out.replies.into_iter();
                        for (size, to) in sizes.into_iter().zip(replies_to) {
                            let mine: Replies = replies.by_ref().take(size).collect();
                            let _ = to.send(Ok(mine));
                        }
                    }
                    Err(e) => {
                        // fjall refuses writes after a failed fsync: stop, let the supervisor
                        // restart us; the journal recovery brings back everything committed.
                        tracing::error!("storage failure, the broker stops: {e}");
                        for to in replies_to {
                            let _ = to.send(Err(BrokerError::Storage(e.to_string())));
                        }
                        self.inner.stopping.store(true, Ordering::Relaxed);
                        *self.inner.failed.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.to_string());
                        self.inner.failed_notify.notify_one();
                        break;
                    }
                }
            } else {
                for to in replies_to {
                    let _ = to.send(Ok(Vec::new()));
                }
            }
            if self.stopping() && rx.is_empty() {
                break;
            }
        }
        rx.close();
        while let Ok(s) = rx.try_recv() {
            let _ = s.reply.send(Err(BrokerError::ShuttingDown));
        }
        // Everybody waiting must see the shutdown.
        self.inner.notifier.notify_all();
        tracing::info!("writer stopped");
    }

    fn publish(&self, events: &[Event]) {
        let mut last: Option<&StreamKey> = None;
        for e in events {
            match e {
                // Runs of appends to one stream wake its readers once.
                Event::Appended { stream, .. } if last != Some(stream) => {
                    self.inner.notifier.notify(stream);
                    last = Some(stream);
                }
                Event::Renamed { from, to } => {
                    self.inner.notifier.notify(from);
                    self.inner.notifier.notify(to);
                    last = None;
                }
                Event::RetryReady { stream, .. }
                | Event::StreamDeleted { stream }
                | Event::GroupDestroyed { stream, .. } => {
                    self.inner.notifier.notify(stream);
                    last = None;
                }
                Event::DeadLettered { .. } | Event::TrimmedUndelivered { .. }
                    if self.inner.alerts.try_send(e.clone()).is_err() =>
                {
                    tracing::warn!("alert queue full, an alert is summarised less precisely");
                }
                _ => {}
            }
        }
    }

    async fn timer_loop(self) {
        loop {
            if self.stopping() {
                break;
            }
            let now = self.now_ms();
            let due = self.inner.store.due(now);
            match due.next_deadline_ms {
                Some(t) if t <= now => {
                    match self.submit_one(Op::Tick).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!("tick failed: {e}"),
                        Err(BrokerError::Busy) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(_) => break,
                    }
                    continue;
                }
                Some(t) => {
                    let wait = Duration::from_millis((t - now).min(1_000));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.inner.timer_wake.notified() => {}
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = self.inner.timer_wake.notified() => {}
                    }
                }
            }
        }
    }
}
