//! `cortex_bus._native`: the Rust client (`cortex::client`) for Python, through PyO3.
//! Every call returns an asyncio awaitable run on one tokio runtime (`bridge`); reconnect,
//! resubscription, stateless resets, keep-alive and certificate pinning are the Rust
//! client's. The typed Python API (`cortex_bus`) wraps this module: values cross as plain
//! tuples, and failures as `NativeError(kind, code, message)`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cortex::client::{
    AdminAnswer, AdminRequest, Client as RustClient, ClientError, ClientOptions, DlqSelect, Id,
    Message, NewTask, PartKind, PolicyChange, ReplyStream as RustReplies, Start, State, SubEvent,
    SubscribeOptions, Subscription as RustSubscription, TaskInfo, Trust, Window,
};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use tokio::sync::Mutex;

mod bridge;
use bridge::spawn;

pyo3::create_exception!(_native, NativeError, PyException);

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A client error as `NativeError(kind, code, message)`: kind is `server` (code names the
/// server's error code), `connect`, `lost`, `protocol` or `config`.
fn native(e: ClientError) -> PyErr {
    let (kind, code) = match &e {
        ClientError::Server { code, .. } => ("server", format!("{code:?}")),
        ClientError::Connect(_) => ("connect", String::new()),
        ClientError::Lost(_) => ("lost", String::new()),
        ClientError::Protocol(_) => ("protocol", String::new()),
        ClientError::Config(_) => ("config", String::new()),
    };
    NativeError::new_err((kind, code, e.to_string()))
}

fn config(message: String) -> PyErr {
    NativeError::new_err(("config", String::new(), message))
}

fn part_kind(k: u8) -> PyResult<PartKind> {
    match k {
        0 => Ok(PartKind::Progress),
        1 => Ok(PartKind::Final),
        2 => Ok(PartKind::Error),
        3 => Ok(PartKind::InputRequired),
        _ => Err(config(format!("part kind {k} does not exist (0 to 3)"))),
    }
}

fn kind_number(k: PartKind) -> u8 {
    match k {
        PartKind::Progress => 0,
        PartKind::Final => 1,
        PartKind::Error => 2,
        PartKind::InputRequired => 3,
    }
}

/// What a subscription hands out: a delivery, or a cancel signal `(task, ms, seq)` for a
/// task this consumer holds.
#[derive(IntoPyObject)]
enum Event {
    Delivery(Delivery),
    Canceled((Vec<u8>, u64, u64)),
}

/// A task's state and changes `(seq, at_ms, state, event, detail, late)`.
type Change = (u64, u64, String, String, String, bool);
/// A task as a tuple: (task, state, stream, (ms, seq), submitter, (group, consumer),
/// (created_ms, updated_ms, finished_ms), changes, history).
type Task = (
    Vec<u8>,
    String,
    Vec<u8>,
    (u64, u64),
    Option<Vec<u8>>,
    (Option<Vec<u8>>, Option<Vec<u8>>),
    (u64, u64, Option<u64>),
    u64,
    Vec<Change>,
);

fn task_tuple(t: TaskInfo) -> Task {
    (
        t.task,
        t.state,
        t.stream,
        (t.id.ms, t.id.seq),
        t.submitter,
        (t.group, t.consumer),
        (t.created_ms, t.updated_ms, t.finished_ms),
        t.changes,
        t.history
            .into_iter()
            .map(|c| (c.seq, c.at_ms, c.state, c.event, c.detail, c.late))
            .collect(),
    )
}

/// A connection to a broker.
#[pyclass(frozen, module = "cortex_bus._native")]
struct Client {
    inner: RustClient,
}

/// (stored, id ms, id seq, duplicate, code, message) per message.
type PublishOutcome = (bool, u64, u64, bool, String, String);
/// A message to publish: (fields, lane, ttl_ms, key, headers).
type Outgoing = (Pairs, u8, Option<u64>, Option<Vec<u8>>, Pairs);

#[pymethods]
impl Client {
    /// Connects to the first server that answers; resolves to a Client.
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn connect<'py>(
        py: Python<'py>,
        servers: Vec<String>,
        agent: String,
        token: String,
        trust_kind: String,
        trust_value: String,
        server_name: String,
        connect_timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for s in &servers {
            let found = s
                .to_socket_addrs()
                .map_err(|e| config(format!("bad server address {s:?}: {e}")))?;
            addrs.extend(found.take(1));
        }
        let Some((&server, also)) = addrs.split_first() else {
            return Err(config("no server address".into()));
        };
        let trust = match trust_kind.as_str() {
            "ca_file" => Trust::CaFile(PathBuf::from(trust_value)),
            "fingerprint" => Trust::Fingerprint(trust_value),
            "cert_file" => Trust::CertFile(PathBuf::from(trust_value)),
            other => return Err(config(format!("unknown trust {other:?}"))),
        };
        if !(connect_timeout > 0.0 && connect_timeout < 86_400.0) {
            return Err(config(format!(
                "connect_timeout must be 0 to 86400 s, got {connect_timeout}"
            )));
        }
        let opts = ClientOptions {
            server,
            also: also.to_vec(),
            server_name,
            agent,
            token,
            trust,
            connect_timeout: Duration::from_secs_f64(connect_timeout),
        };
        spawn(py, async move {
            let inner = RustClient::connect(opts).await.map_err(native)?;
            Ok(Client { inner })
        })
    }

    /// The agent this client acts as.
    #[getter]
    fn agent(&self) -> String {
        self.inner.agent().to_string()
    }

    /// Connections made so far (1 until the first reconnect); 0 while reconnecting.
    #[getter]
    fn connections(&self) -> u64 {
        match self.inner.state() {
            State::Connected(n) => n,
            State::Reconnecting => 0,
        }
    }

    /// Closes the connection; the server lets go of this client's subscriptions at once.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            c.close().await;
            Ok(())
        })
    }

    /// Publishes (fields, lane, ttl_ms, key, headers) messages in one commit; resolves to
    /// one (stored, ms, seq, duplicate, code, message) per message.
    fn publish_batch<'py>(
        &self,
        py: Python<'py>,
        stream: Vec<u8>,
        messages: Vec<Outgoing>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        let messages: Vec<Message> = messages
            .into_iter()
            .map(|(fields, lane, ttl_ms, key, headers)| Message {
                fields,
                lane,
                ttl_ms,
                key,
                headers,
            })
            .collect();
        spawn(py, async move {
            let results = c.publish_batch(stream, messages).await.map_err(native)?;
            Ok(results
                .into_iter()
                .map(|r| -> PublishOutcome {
                    match r {
                        Ok(p) => (
                            true,
                            p.id.ms,
                            p.id.seq,
                            p.duplicate,
                            String::new(),
                            String::new(),
                        ),
                        Err(e) => {
                            let code = e.code().map(|c| format!("{c:?}")).unwrap_or_default();
                            (false, 0, 0, false, code, e.to_string())
                        }
                    }
                })
                .collect::<Vec<_>>())
        })
    }

    /// Opens a push subscription; resolves to a Subscription. start_kind: 0 new, 1 all,
    /// 2 after (ms, seq), 3 at Unix ms.
    #[allow(clippy::too_many_arguments)]
    fn subscribe<'py>(
        &self,
        py: Python<'py>,
        stream: Vec<u8>,
        group: Option<Vec<u8>>,
        consumer: Option<Vec<u8>>,
        start_kind: u8,
        start_ms: u64,
        start_seq: u64,
        window: u32,
        heartbeat_ms: u32,
        no_ack: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let from = match start_kind {
            0 => Start::New,
            1 => Start::All,
            2 => Start::After(Id {
                ms: start_ms,
                seq: start_seq,
            }),
            3 => Start::Time(start_ms),
            k => return Err(config(format!("start kind {k} does not exist"))),
        };
        let opts = SubscribeOptions {
            stream,
            group,
            consumer,
            from,
            window,
            heartbeat_ms,
            no_ack,
        };
        let c = self.inner.clone();
        spawn(py, async move {
            let sub = c.subscribe(opts).await.map_err(native)?;
            Ok(Subscription {
                window: sub.window(),
                inner: Arc::new(Mutex::new(Some(sub))),
                closing: tokio::sync::watch::Sender::new(false),
            })
        })
    }

    /// Sends a request; resolves to a ReplyStream once the request is stored (or raises
    /// NoResponders).
    fn request<'py>(
        &self,
        py: Python<'py>,
        agent: String,
        fields: Pairs,
        headers: Pairs,
        lane: u8,
        timeout_ms: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            let parts = c
                .request_with(
                    &agent,
                    fields,
                    headers,
                    lane,
                    Duration::from_millis(timeout_ms),
                )
                .await
                .map_err(native)?;
            Ok(ReplyStream {
                inner: Arc::new(Mutex::new(parts)),
            })
        })
    }

    /// Sends one part (kind 0 progress, 1 final, 2 error) of the reply to a request.
    fn respond<'py>(
        &self,
        py: Python<'py>,
        correlation: Vec<u8>,
        kind: u8,
        fields: Pairs,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kind = part_kind(kind)?;
        let c = self.inner.clone();
        spawn(py, async move {
            c.respond(&correlation, kind, fields).await.map_err(native)
        })
    }

    /// Entries with IDs in [start, end] as (ms, seq, fields, lane, headers, producer,
    /// expires_at_ms).
    #[allow(clippy::too_many_arguments)]
    fn range<'py>(
        &self,
        py: Python<'py>,
        stream: Vec<u8>,
        start: (u64, u64),
        end: (u64, u64),
        count: u32,
        rev: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            let entries = c
                .range(
                    stream,
                    Id {
                        ms: start.0,
                        seq: start.1,
                    },
                    Id {
                        ms: end.0,
                        seq: end.1,
                    },
                    count,
                    rev,
                )
                .await
                .map_err(native)?;
            Ok(entries
                .into_iter()
                .map(|e| {
                    (
                        e.id.ms,
                        e.id.seq,
                        e.fields,
                        e.lane,
                        e.headers,
                        e.producer,
                        e.expires_at_ms,
                    )
                })
                .collect::<Vec<_>>())
        })
    }

    /// Streams with their groups: (name, length, (ms, seq), lanes, [(group, consumers,
    /// pending, lag, (ms, seq), policy)]).
    fn stat<'py>(&self, py: Python<'py>, stream: Option<Vec<u8>>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            match c
                .admin(AdminRequest::Stat { stream })
                .await
                .map_err(native)?
            {
                AdminAnswer::Stat(streams) => Ok(streams
                    .into_iter()
                    .map(|s| {
                        let groups: Vec<_> = s
                            .groups
                            .into_iter()
                            .map(|g| {
                                (
                                    g.name,
                                    g.consumers,
                                    g.pending,
                                    g.lag,
                                    (g.last_delivered.ms, g.last_delivered.seq),
                                    g.policy,
                                )
                            })
                            .collect();
                        (
                            s.name,
                            s.length,
                            (s.last_id.ms, s.last_id.seq),
                            s.lanes,
                            groups,
                        )
                    })
                    .collect::<Vec<_>>()),
                other => Err(native(ClientError::Protocol(format!(
                    "unexpected answer {other:?}"
                )))),
            }
        })
    }

    /// Changes a group's retry policy (admin): attempts before dead-lettering, backoff.
    fn set_policy<'py>(
        &self,
        py: Python<'py>,
        stream: Vec<u8>,
        group: Vec<u8>,
        max_attempts: Option<u32>,
        backoff_ms: Option<Vec<u64>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            c.admin(AdminRequest::Policy {
                stream,
                group,
                change: Some(PolicyChange {
                    max_attempts,
                    backoff_ms,
                    ..PolicyChange::default()
                }),
            })
            .await
            .map_err(native)?;
            Ok(())
        })
    }

    /// Submits a task to `agent` (deadline 0: the server's default); resolves to the task.
    #[allow(clippy::too_many_arguments)]
    fn submit_task<'py>(
        &self,
        py: Python<'py>,
        agent: String,
        task: Option<Vec<u8>>,
        fields: Pairs,
        headers: Pairs,
        lane: u8,
        deadline_ms: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        let t = NewTask {
            id: task,
            fields,
            headers,
            lane,
            deadline: (deadline_ms > 0).then(|| Duration::from_millis(deadline_ms)),
        };
        spawn(py, async move {
            c.submit_task(&agent, t)
                .await
                .map(task_tuple)
                .map_err(native)
        })
    }

    /// A task with its history.
    fn task<'py>(&self, py: Python<'py>, task: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            c.task(&task).await.map(task_tuple).map_err(native)
        })
    }

    /// Cancels a task; resolves to it, canceled.
    fn cancel_task<'py>(&self, py: Python<'py>, task: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            c.cancel_task(&task).await.map(task_tuple).map_err(native)
        })
    }

    /// The task with its changes from `from` on, waiting up to `wait_ms` for one.
    fn watch_task<'py>(
        &self,
        py: Python<'py>,
        task: Vec<u8>,
        from: u64,
        wait_ms: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            c.watch_task(&task, from, Duration::from_millis(wait_ms))
                .await
                .map(task_tuple)
                .map_err(native)
        })
    }

    /// Tasks in ID order after `after`: (tasks, the ID to continue after or None).
    fn tasks<'py>(
        &self,
        py: Python<'py>,
        agent: Option<String>,
        state: Option<String>,
        after: Vec<u8>,
        count: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            let (tasks, next) = c
                .tasks(agent.as_deref(), state.as_deref(), &after, count)
                .await
                .map_err(native)?;
            Ok((tasks.into_iter().map(task_tuple).collect::<Vec<_>>(), next))
        })
    }

    /// The agents connected to the node and, in a cluster, to the others: (agent,
    /// last_heard_ms, [(front, client, connected_ms, last_heard_ms, [(stream, group)],
    /// node)]).
    fn agents<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            match c.admin(AdminRequest::Agents).await.map_err(native)? {
                AdminAnswer::Agents(list) => Ok(list
                    .into_iter()
                    .map(|a| {
                        let sessions: Vec<_> = a
                            .sessions
                            .into_iter()
                            .map(|s| {
                                (
                                    s.front,
                                    s.client,
                                    s.connected_ms,
                                    s.last_heard_ms,
                                    s.serves,
                                    s.node,
                                )
                            })
                            .collect();
                        (a.agent, a.last_heard_ms, sessions)
                    })
                    .collect::<Vec<_>>()),
                other => Err(native(ClientError::Protocol(format!(
                    "unexpected answer {other:?}"
                )))),
            }
        })
    }

    /// Dead letters from origin (admin): (ms, seq, origin ms, origin seq, group, reason,
    /// failures, last_error, fields).
    fn dead_letters<'py>(
        &self,
        py: Python<'py>,
        origin: Option<Vec<u8>>,
        count: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = self.inner.clone();
        spawn(py, async move {
            match c
                .admin(AdminRequest::DlqList(DlqSelect {
                    origin,
                    count,
                    ..DlqSelect::default()
                }))
                .await
                .map_err(native)?
            {
                AdminAnswer::DeadLetters(items) => Ok(items
                    .into_iter()
                    .map(|d| {
                        (
                            d.id.ms,
                            d.id.seq,
                            d.origin_id.ms,
                            d.origin_id.seq,
                            d.group,
                            d.reason,
                            d.failures,
                            d.last_error,
                            d.fields,
                        )
                    })
                    .collect::<Vec<_>>()),
                other => Err(native(ClientError::Protocol(format!(
                    "unexpected answer {other:?}"
                )))),
            }
        })
    }
}

/// A push subscription (resumed by the Rust client across reconnects).
#[pyclass(frozen, module = "cortex_bus._native")]
struct Subscription {
    /// `None` once closed.
    inner: Arc<Mutex<Option<RustSubscription>>>,
    window: Window,
    /// Set by `close`: a `next` in flight returns `None` at once.
    closing: tokio::sync::watch::Sender<bool>,
}

#[pymethods]
impl Subscription {
    /// Resolves to the next Delivery or cancel signal `(task, ms, seq)`, or None once the
    /// subscription ended.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        let mut closing = self.closing.subscribe();
        spawn(py, async move {
            let mut sub = inner.lock().await;
            let Some(sub) = sub.as_mut() else {
                return Ok(None);
            };
            let next = tokio::select! {
                next = sub.next_event() => next,
                _ = closing.wait_for(|c| *c) => None,
            };
            match next {
                None => Ok(None),
                Some(Err(e)) => Err(native(e)),
                Some(Ok(SubEvent::Delivery(d))) => {
                    Ok(Some(Event::Delivery(Delivery { inner: Arc::new(d) })))
                }
                Some(Ok(SubEvent::Canceled { task, id })) => {
                    Ok(Some(Event::Canceled((task, id.ms, id.seq))))
                }
            }
        })
    }

    /// Ends the subscription (its stream closes, so the server hands it nothing more);
    /// deliveries not acknowledged stay pending in the group. A `next` in flight returns
    /// `None`.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.closing.send_replace(true);
        let inner = self.inner.clone();
        spawn(py, async move {
            inner.lock().await.take();
            Ok(())
        })
    }

    /// Sets the window (0 pauses delivery).
    fn set_window(&self, window: u32) {
        self.window.set(window);
    }
}

/// One pushed entry.
#[pyclass(frozen, module = "cortex_bus._native")]
struct Delivery {
    inner: Arc<cortex::client::Delivery>,
}

#[pymethods]
impl Delivery {
    /// (stream, ms, seq, fields, lane, attempt, headers, producer).
    #[allow(clippy::type_complexity)]
    fn parts(&self) -> (Vec<u8>, u64, u64, Pairs, u8, u32, Pairs, Option<Vec<u8>>) {
        let d = &self.inner;
        (
            d.stream.clone(),
            d.id.ms,
            d.id.seq,
            d.fields.clone(),
            d.lane,
            d.attempt,
            d.headers.clone(),
            d.producer.clone(),
        )
    }

    /// Acknowledges it; resolves to 1, or 0 when it was no longer pending.
    fn ack<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let d = self.inner.clone();
        spawn(py, async move { d.ack().await.map_err(native) })
    }

    /// Fails it (retried after the backoff, or dead-lettered); with reject, dead-letters
    /// it at once.
    fn nack<'py>(
        &self,
        py: Python<'py>,
        error: String,
        reject: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let d = self.inner.clone();
        spawn(py, async move {
            if reject {
                d.nack_reject(&error).await.map_err(native)
            } else {
                d.nack(&error).await.map_err(native)
            }
        })
    }

    /// Still working on it: its ack deadline starts again.
    fn in_progress<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let d = self.inner.clone();
        spawn(py, async move { d.in_progress().await.map_err(native) })
    }
}

/// The parts of a reply as they arrive.
#[pyclass(frozen, module = "cortex_bus._native")]
struct ReplyStream {
    inner: Arc<Mutex<RustReplies>>,
}

#[pymethods]
impl ReplyStream {
    /// Resolves to the next (kind, from, fields), or None after the last.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        spawn(py, async move {
            match inner.lock().await.next().await {
                None => Ok(None),
                Some(Err(e)) => Err(native(e)),
                Some(Ok(p)) => Ok(Some((kind_number(p.kind), p.from, p.fields))),
            }
        })
    }
}

/// Decodes one golden-vector frame (with its length prefix) and encodes it again: the
/// Python package's codec is the Rust one, and this proves the bytes cross unchanged.
#[pyfunction]
fn reencode_frame(bytes: Vec<u8>) -> PyResult<(String, Vec<u8>)> {
    let limits = cortex::wire::Limits::default();
    match cortex::wire::split(&bytes, &limits) {
        Ok(Some((frame, used))) if used == bytes.len() => {
            Ok((frame.name().to_string(), cortex::wire::encode(&frame)))
        }
        Ok(_) => Err(config("not exactly one whole frame".into())),
        Err(e) => Err(config(e.to_string())),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<Subscription>()?;
    m.add_class::<Delivery>()?;
    m.add_class::<ReplyStream>()?;
    m.add_function(wrap_pyfunction!(reencode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::quiesce, m)?)?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    Ok(())
}
