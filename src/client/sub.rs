//! Client subscriptions: pushed deliveries, acks, nacks, in-progress, credits; resumed on
//! every new connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::conn::{read, write, Link};
use super::{from_frame, ClientError, SubscribeOptions};
use cortex_protocol::{names, ErrorCode, Frame, Id};

type Answer = oneshot::Sender<Result<u64, ClientError>>;

enum Control {
    Ack(Vec<Id>, Answer),
    Nack(Vec<Id>, Option<String>, bool, Answer),
    Progress(Vec<Id>, Answer),
    Credit(u32),
}

/// One pushed message.
#[derive(Debug)]
pub struct Delivery {
    /// Stream.
    pub stream: Vec<u8>,
    /// ID.
    pub id: Id,
    /// Field/value pairs.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Lane (0 critical ... 4 heartbeat).
    pub lane: u8,
    /// How many times the group handed it out (1: first time).
    pub attempt: u32,
    /// Headers.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The publishing agent.
    pub producer: Option<Vec<u8>>,
    ctl: mpsc::UnboundedSender<Control>,
}

impl Delivery {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| &v[..])
    }

    async fn send(&self, make: impl FnOnce(Answer) -> Control) -> Result<u64, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.ctl
            .send(make(tx))
            .map_err(|_| ClientError::Lost("the subscription is closed".into()))?;
        rx.await
            .unwrap_or_else(|_| Err(ClientError::Lost("the subscription is closed".into())))
    }

    /// Acknowledges it (durable when this returns). Returns 0 if it was no longer pending
    /// for this consumer (acked before, or redelivered elsewhere after its ack deadline).
    pub async fn ack(&self) -> Result<u64, ClientError> {
        let id = self.id;
        self.send(|a| Control::Ack(vec![id], a)).await
    }

    /// Fails it: retried after the group's backoff, or dead-lettered after max attempts.
    pub async fn nack(&self, error: &str) -> Result<u64, ClientError> {
        let id = self.id;
        let e = error.to_string();
        self.send(|a| Control::Nack(vec![id], Some(e), false, a))
            .await
    }

    /// Rejects it: dead-lettered at once (reason `rejected`).
    pub async fn nack_reject(&self, error: &str) -> Result<u64, ClientError> {
        let id = self.id;
        let e = error.to_string();
        self.send(|a| Control::Nack(vec![id], Some(e), true, a))
            .await
    }

    /// Still working on it: its ack deadline starts again.
    pub async fn in_progress(&self) -> Result<u64, ClientError> {
        let id = self.id;
        self.send(|a| Control::Progress(vec![id], a)).await
    }
}

/// What a subscription receives.
#[derive(Debug)]
pub enum SubEvent {
    /// A message.
    Delivery(Delivery),
    /// A task this consumer holds was canceled: stop working on it. It comes before any
    /// message sent after the cancel; the entry is no longer pending (acking it is
    /// harmless, a reply is kept and marked late).
    Canceled {
        /// Task ID.
        task: Vec<u8>,
        /// The entry.
        id: Id,
    },
}

type Item = Result<SubEvent, ClientError>;

/// A subscription's deliveries.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Item>,
    ctl: mpsc::UnboundedSender<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscription {
    /// The next delivery; `Some(Err)` for a permanent failure (then `None`). Cancel
    /// signals are passed over: a worker of tasks reads [`Subscription::next_event`].
    pub async fn next(&mut self) -> Option<Result<Delivery, ClientError>> {
        loop {
            match self.rx.recv().await? {
                Ok(SubEvent::Delivery(d)) => return Some(Ok(d)),
                Ok(SubEvent::Canceled { .. }) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next delivery or cancel signal, in the order the server sent them.
    pub async fn next_event(&mut self) -> Option<Item> {
        self.rx.recv().await
    }

    /// Changes the window (0 pauses delivery).
    pub fn set_window(&self, window: u32) {
        let _ = self.ctl.send(Control::Credit(window));
    }

    /// A handle that changes the window while another task waits in [`Subscription::next`].
    pub fn window(&self) -> Window {
        Window(self.ctl.clone())
    }
}

/// Changes a subscription's window from anywhere (see [`Subscription::window`]).
#[derive(Clone, Debug)]
pub struct Window(mpsc::UnboundedSender<Control>);

impl Window {
    /// Sets the window (0 pauses delivery); it holds across reconnects.
    pub fn set(&self, window: u32) {
        let _ = self.0.send(Control::Credit(window));
    }
}

pub(super) async fn open(
    link: Arc<Link>,
    opts: SubscribeOptions,
) -> Result<Subscription, ClientError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    // The first subscribe happens here so that its errors reach the caller.
    let first = subscribe(&link, &opts, opts.window).await?;
    let task = tokio::spawn(run(link, opts, tx, ctl.clone(), ctl_rx, first));
    Ok(Subscription { rx, ctl, task })
}

type Streams = (quinn::SendStream, quinn::RecvStream);

async fn subscribe(
    link: &Link,
    opts: &SubscribeOptions,
    window: u32,
) -> Result<Streams, ClientError> {
    let (mut send, mut recv) = link.open().await?;
    let f = Frame::Subscribe {
        stream: opts.stream.clone(),
        group: opts.group.clone(),
        consumer: opts.consumer.clone(),
        from: opts.from,
        window,
        heartbeat_ms: opts.heartbeat_ms,
        no_ack: opts.no_ack,
    };
    write(&mut send, &f).await?;
    match read(&mut recv, &link.limits()).await? {
        Frame::Subscribed { .. } => Ok((send, recv)),
        other => Err(from_frame(other)),
    }
}

fn permanent(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            ErrorCode::NoPermission
                | ErrorCode::NotFound
                | ErrorCode::InvalidArgument
                | ErrorCode::TooLarge
                | ErrorCode::BadFrame
        )
    )
}

async fn run(
    link: Arc<Link>,
    opts: SubscribeOptions,
    tx: mpsc::UnboundedSender<Item>,
    ctl: mpsc::UnboundedSender<Control>,
    mut ctl_rx: mpsc::UnboundedReceiver<Control>,
    first: Streams,
) {
    let heartbeat = Duration::from_millis(u64::from(names::heartbeat_ms(opts.heartbeat_ms)));
    let mut window = opts.window;
    let mut seq = 0u64;
    // Sent and not yet answered: re-sent on a new stream (acks and in-progress are
    // idempotent); a nack is failed instead, since it may have counted already.
    let mut pending: HashMap<u64, (Frame, Answer)> = HashMap::new();
    let mut streams = Some(first);
    let mut failures = 0u32;
    loop {
        let (mut send, recv) = match streams.take() {
            Some(s) => s,
            None => match subscribe(&link, &opts, window).await {
                Ok(s) => {
                    failures = 0;
                    s
                }
                Err(e) if permanent(&e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                Err(e) => {
                    if tx.is_closed() {
                        return;
                    }
                    failures += 1;
                    tracing::debug!("resubscribe failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(failures.min(20))))
                        .await;
                    continue;
                }
            },
        };
        let mut resend = Vec::new();
        for (s, (frame, answer)) in pending.drain() {
            if matches!(frame, Frame::Nack { .. }) {
                let _ = answer.send(Err(ClientError::Lost(
                    "connection lost before the nack was confirmed".into(),
                )));
            } else {
                resend.push((s, (frame, answer)));
            }
        }
        let mut ok = true;
        for (s, (frame, answer)) in resend {
            ok &= write(&mut send, &frame).await.is_ok();
            pending.insert(s, (frame, answer));
        }
        let (ftx, mut frx) = mpsc::channel(64);
        let limits = link.limits();
        let reader = tokio::spawn(async move {
            let mut recv = recv;
            loop {
                let r = read(&mut recv, &limits).await;
                let end = r.is_err();
                if ftx.send(r).await.is_err() || end {
                    break;
                }
            }
        });
        let mut last = tokio::time::Instant::now();
        while ok {
            tokio::select! {
                f = frx.recv() => {
                    last = tokio::time::Instant::now();
                    match f {
                        Some(Ok(Frame::Deliveries { items })) => {
                            for d in items {
                                let _ = tx.send(Ok(SubEvent::Delivery(Delivery {
                                    stream: d.stream,
                                    id: d.id,
                                    fields: d.fields,
                                    lane: d.lane,
                                    attempt: d.attempt,
                                    headers: d.headers,
                                    producer: d.producer,
                                    ctl: ctl.clone(),
                                })));
                            }
                        }
                        Some(Ok(Frame::Canceled { task, id })) => {
                            let _ = tx.send(Ok(SubEvent::Canceled { task, id }));
                        }
                        Some(Ok(Frame::Heartbeat { .. })) => {}
                        Some(Ok(Frame::Done { seq, count })) => {
                            if let Some((_, a)) = pending.remove(&seq) {
                                let _ = a.send(Ok(count));
                            }
                        }
                        Some(Ok(f @ Frame::Failed { .. })) => {
                            if let Frame::Failed { seq, .. } = &f {
                                if let Some((_, a)) = pending.remove(seq) {
                                    let _ = a.send(Err(from_frame(f)));
                                }
                            }
                        }
                        Some(Ok(other)) => {
                            let e = from_frame(other);
                            if permanent(&e) {
                                let _ = tx.send(Err(e));
                                reader.abort();
                                return;
                            }
                            ok = false;
                        }
                        Some(Err(_)) | None => ok = false,
                    }
                }
                c = ctl_rx.recv() => {
                    let Some(c) = c else {
                        reader.abort();
                        return;
                    };
                    seq += 1;
                    let (frame, answer) = match c {
                        Control::Credit(w) => {
                            window = w;
                            ok = write(&mut send, &Frame::Credit { window: w }).await.is_ok();
                            continue;
                        }
                        Control::Ack(ids, a) => (Frame::Ack { seq, ids }, a),
                        Control::Nack(ids, error, reject, a) => (Frame::Nack { seq, ids, error, reject }, a),
                        Control::Progress(ids, a) => (Frame::Progress { seq, ids }, a),
                    };
                    ok = write(&mut send, &frame).await.is_ok();
                    pending.insert(seq, (frame, answer));
                }
                _ = tokio::time::sleep_until(last + heartbeat * 3) => {
                    tracing::debug!("subscription silent for 3 heartbeats; resubscribing");
                    ok = false;
                }
            }
            if tx.is_closed() {
                reader.abort();
                return;
            }
        }
        reader.abort();
    }
}
