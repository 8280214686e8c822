//! The QUIC front: accepts connections, authenticates each on its first stream, then serves
//! one request per bidirectional stream (publish, request, respond, range, admin) and one
//! long-lived stream per subscription. It parses and formats only: everything it does is a
//! [`Broker`] call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cortex_storage::{
    DlqFilter, GroupStart, Lane, Op, PolicyPatch, Query, Reply, StreamId, StreamKey,
};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::mpsc;

use super::convert::*;
use crate::broker::presence::Session;
use crate::broker::publish::Message;
use crate::broker::push::{SubscribeSpec, Subscription};
use crate::broker::reqrep::ReqError;
use crate::broker::task::TaskError;
use crate::broker::{Broker, Principal};
use crate::config::Config;
use crate::wire::io::{read_frame, write_frame, ReadError};
use crate::wire::names;
use crate::wire::{
    self, AdminAnswer, AdminRequest, ClusterChange, ErrorCode, Frame, GroupStat, Limits,
    StreamStat, PROTOCOL,
};

/// Time a new connection has to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_millis(names::AUTH_TIMEOUT_MS);

/// Binds the QUIC endpoint with TLS 1.3 and the connection limits from the config.
pub fn bind(config: &Config) -> Result<Endpoint, String> {
    let q = &config.quic_cfg;
    let (certs, key) =
        crate::tls::server_identity(q.cert.as_deref(), q.key.as_deref(), &config.data_dir)?;
    let fp = crate::tls::fingerprint(&certs[0]);
    let tls = crate::tls::server_config(certs, key)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| format!("TLS config unusable for QUIC: {e}"))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(q.streams_max.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_millis(q.idle_timeout_ms))
            .map_err(|e| format!("bad idle timeout: {e}"))?,
    ));
    t.keep_alive_interval(Some(Duration::from_millis(q.idle_timeout_ms / 3)));
    t.datagram_receive_buffer_size(None);
    sc.transport_config(Arc::new(t));
    let (reset, cid_key) = crate::tls::reset_key(&config.data_dir)?;
    let mut ep_cfg = quinn::EndpointConfig::new(Arc::new(reset));
    ep_cfg.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(config.quic)
        .map_err(|e| format!("cannot bind the QUIC port {}: {e}", config.quic))?;
    let runtime = quinn::default_runtime().ok_or("no async runtime for QUIC")?;
    let ep = Endpoint::new(ep_cfg, Some(sc), socket, runtime)
        .map_err(|e| format!("cannot start QUIC on {}: {e}", config.quic))?;
    tracing::info!("QUIC certificate SHA-256 fingerprint: {fp}");
    Ok(ep)
}

/// Serves until `stop` resolves, then closes every connection.
pub async fn serve(
    endpoint: Endpoint,
    broker: Broker,
    stop: impl std::future::Future<Output = ()>,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let max = broker.config().quic_cfg.connections_max;
    tokio::pin!(stop);
    loop {
        let incoming = tokio::select! {
            _ = &mut stop => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let busy = live.load(Ordering::Relaxed);
        if busy >= max {
            tracing::warn!("QUIC connection refused: {max} connections already");
            incoming.refuse();
            continue;
        }
        // Past half the limit, a client proves its address first (a Retry: one more round
        // trip), so spoofed or abandoned handshakes cannot hold places.
        let incoming = if busy >= max / 2 && !incoming.remote_address_validated() {
            match incoming.retry() {
                Ok(()) => continue,
                Err(e) => e.into_incoming(),
            }
        } else {
            incoming
        };
        live.fetch_add(1, Ordering::Relaxed);
        let b = broker.clone();
        let l = live.clone();
        tokio::spawn(async move {
            let counted = match incoming.await {
                Ok(conn) => connection(conn, &b).await,
                Err(e) => {
                    tracing::debug!("QUIC handshake failed: {e}");
                    false
                }
            };
            // The place under the limit first, then the count others wait on.
            l.fetch_sub(1, Ordering::Relaxed);
            if counted {
                b.metrics().quic_connections.fetch_sub(1, Ordering::Relaxed);
            }
            b.connection_closed();
        });
    }
    endpoint.close(names::CLOSE_SHUTDOWN.into(), b"server shutting down");
    endpoint.wait_idle().await;
}

async fn error(send: &mut SendStream, code: ErrorCode, message: impl Into<String>) {
    let _ = write_frame(
        send,
        &Frame::Error {
            code,
            message: message.into(),
        },
    )
    .await;
    let _ = send.finish();
}

/// Serves one connection; returns true when it authenticated (and so was counted in
/// `quic_connections`, which the caller takes back).
async fn connection(conn: Connection, broker: &Broker) -> bool {
    let limits = Limits::default();
    let (who, client) =
        match tokio::time::timeout(AUTH_TIMEOUT, authenticate(&conn, broker, &limits)).await {
            Ok(Some(who)) => who,
            Ok(None) => return false,
            Err(_) => {
                conn.close(names::CLOSE_AUTH.into(), b"no authentication in time");
                return false;
            }
        };
    broker.stats().connections.fetch_add(1, Ordering::Relaxed);
    broker
        .metrics()
        .quic_connections
        .fetch_add(1, Ordering::Relaxed);
    // Listed by `Broker::agents` until the connection ends.
    let session = Arc::new(broker.register_session(&who, "quic", &client));
    let ended = loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => break e,
        };
        let b = broker.clone();
        let w = who.clone();
        let s = session.clone();
        tokio::spawn(async move { stream(send, recv, b, w, s, limits).await });
    };
    // Off the list before the connection count goes down (a drain waited for on the count
    // then finds the agent gone). Gone without a goodbye, the agent may have fallen silent.
    match ended {
        quinn::ConnectionError::TimedOut | quinn::ConnectionError::Reset => session.lost(),
        _ => session.close(),
    }
    true
}

/// The first stream's first frame must be a good `Hello`; anything else closes the
/// connection after an error frame.
async fn authenticate(
    conn: &Connection,
    broker: &Broker,
    limits: &Limits,
) -> Option<(Principal, String)> {
    let (mut send, mut recv) = conn.accept_bi().await.ok()?;
    match hello(&mut recv, broker, limits).await {
        Ok((who, client)) => {
            let welcome = Frame::Welcome {
                protocol: PROTOCOL,
                server: format!("cortex {}", env!("CARGO_PKG_VERSION")),
                agent: who.agent().unwrap_or("").to_string(),
                limits: *limits,
            };
            write_frame(&mut send, &welcome).await.ok()?;
            let _ = send.finish();
            Some((who, client))
        }
        Err(None) => None,
        Err(Some((code, message))) => {
            error(&mut send, code, message).await;
            // Let the error frame reach the client before the connection closes.
            let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
            conn.close(names::CLOSE_AUTH.into(), b"authentication failed");
            None
        }
    }
}

/// Reads and checks `Hello`. `Err(None)`: the stream failed, nothing to answer.
async fn hello(
    recv: &mut RecvStream,
    broker: &Broker,
    limits: &Limits,
) -> Result<(Principal, String), Option<(ErrorCode, String)>> {
    let frame = match read_frame(recv, limits).await {
        Ok(Some(f)) => f,
        Ok(None) => return Err(Some((ErrorCode::NotAuthenticated, "no Hello".into()))),
        Err(ReadError::Decode(e)) => return Err(Some((e.code(), e.to_string()))),
        Err(ReadError::Stream(_)) => return Err(None),
    };
    let Frame::Hello {
        protocol,
        agent,
        token,
        client,
    } = frame
    else {
        return Err(Some((
            ErrorCode::NotAuthenticated,
            "authenticate first: the first frame must be Hello".into(),
        )));
    };
    if protocol != PROTOCOL {
        return Err(Some((
            ErrorCode::UnsupportedVersion,
            format!("protocol {protocol} is not spoken here; this server speaks {PROTOCOL}"),
        )));
    }
    if let Some(anonymous) = broker.anonymous_session(&agent) {
        return Ok((anonymous, client));
    }
    broker
        .authenticate(Some(agent.as_bytes()), token.as_bytes())
        .map(|who| (who, client))
        .map_err(|_| Some((ErrorCode::AuthFailed, "unknown agent or wrong token".into())))
}

async fn stream(
    mut send: SendStream,
    mut recv: RecvStream,
    broker: Broker,
    who: Principal,
    session: Arc<Session>,
    limits: Limits,
) {
    let frame = match read_frame(&mut recv, &limits).await {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(ReadError::Decode(e)) => {
            error(&mut send, e.code(), e.to_string()).await;
            let _ = recv.stop(0u32.into());
            return;
        }
        Err(ReadError::Stream(_)) => return,
    };
    broker.stats().commands.fetch_add(1, Ordering::Relaxed);
    session.heard();
    let reply = match frame {
        Frame::Publish { stream, messages } => publish(&broker, &who, stream, messages).await,
        Frame::Subscribe { .. } => {
            return subscription(send, recv, broker, who, session, frame, limits).await
        }
        Frame::Request { .. } => return request(send, broker, who, frame).await,
        Frame::Respond {
            correlation,
            kind,
            fields,
        } => match broker
            .respond(&who, &correlation, part_kind(kind), fields)
            .await
        {
            Ok(_) => Frame::Done { seq: 0, count: 1 },
            Err(e) => req_error(&e),
        },
        Frame::Range {
            stream,
            start,
            end,
            count,
            rev,
        } => {
            let q = Query::Range {
                stream: StreamKey::new(0, stream),
                start: sid(start),
                end: sid(end),
                count: Some(count as usize),
                rev,
            };
            match broker.query(&who, q).await {
                Ok(Ok(cortex_storage::Answer::Entries(e))) => Frame::Entries {
                    items: fitting(e.into_iter().map(entry), |e| {
                        wire::pairs_bytes(&e.fields) + wire::pairs_bytes(&e.headers)
                    }),
                },
                Ok(Ok(_)) => internal("unexpected answer"),
                Ok(Err(e)) => store_error(&e),
                Err(e) => broker_error(&e),
            }
        }
        Frame::Admin(a) => admin(&broker, &who, a).await,
        Frame::Hello { .. } => Frame::Error {
            code: ErrorCode::BadFrame,
            message: "already authenticated".into(),
        },
        _ => Frame::Error {
            code: ErrorCode::BadFrame,
            message: "this frame cannot open a stream".into(),
        },
    };
    let _ = write_frame(&mut send, &reply).await;
    let _ = send.finish();
}

async fn publish(
    broker: &Broker,
    who: &Principal,
    stream: Vec<u8>,
    messages: Vec<wire::Message>,
) -> Frame {
    let messages = messages
        .into_iter()
        .map(|m| Message {
            fields: m.fields,
            lane: Lane::from_index(usize::from(m.lane)).unwrap_or_default(),
            ttl_ms: m.ttl_ms,
            key: m.key,
            headers: m.headers,
        })
        .collect();
    match broker.publish(who, stream, messages).await {
        // Every message has its own result: a refused one leaves the others stored.
        Ok(replies) => Frame::Published {
            results: replies
                .into_iter()
                .map(|r| match r {
                    Ok(Reply::Appended { id, duplicate }) => {
                        wire::PublishResult::Stored(wire::Published {
                            id: wid(id),
                            duplicate,
                        })
                    }
                    Ok(_) => wire::PublishResult::Refused {
                        code: ErrorCode::Internal,
                        message: "unexpected reply to an append".into(),
                    },
                    Err(e) => wire::PublishResult::Refused {
                        code: store_code(&e),
                        message: e.to_string(),
                    },
                })
                .collect(),
        },
        Err(e) => broker_error(&e),
    }
}

async fn request(mut send: SendStream, broker: Broker, who: Principal, frame: Frame) {
    let Frame::Request {
        agent,
        fields,
        headers,
        timeout_ms,
        lane,
    } = frame
    else {
        return;
    };
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    let deadline = tokio::time::Instant::now() + timeout;
    let lane = Lane::from_index(usize::from(lane)).unwrap_or_default();
    let mut pending = match broker
        .request(&who, &agent, fields, headers, lane, timeout)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            let _ = write_frame(&mut send, &req_error(&e)).await;
            let _ = send.finish();
            return;
        }
    };
    loop {
        tokio::select! {
            part = pending.parts.recv() => {
                let Some(part) = part else { break };
                let end = part.kind.ends();
                let f = Frame::ReplyPart {
                    kind: wire_part_kind(part.kind),
                    from: part.from,
                    fields: part.fields,
                };
                if write_frame(&mut send, &f).await.is_err() || end {
                    break;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let f = Frame::Error {
                    code: ErrorCode::Timeout,
                    message: format!("no complete reply from '{agent}' within {timeout_ms} ms"),
                };
                let _ = write_frame(&mut send, &f).await;
                break;
            }
            // The requester gave up (reset its stream or closed the connection).
            _ = send.stopped() => break,
        }
    }
    let _ = send.finish();
}

async fn subscription(
    mut send: SendStream,
    mut recv: RecvStream,
    broker: Broker,
    who: Principal,
    session: Arc<Session>,
    frame: Frame,
    limits: Limits,
) {
    let Frame::Subscribe {
        stream,
        group,
        consumer,
        from,
        window,
        heartbeat_ms,
        no_ack,
    } = frame
    else {
        return;
    };
    let me = who.agent().unwrap_or("anonymous").as_bytes().to_vec();
    let spec = SubscribeSpec {
        stream: StreamKey::new(0, stream),
        group: group.unwrap_or_else(|| me.clone()),
        consumer: consumer.unwrap_or(me),
        start: match from {
            wire::Start::New => GroupStart::Last,
            wire::Start::All => GroupStart::Id(StreamId::MIN),
            wire::Start::After(id) => GroupStart::Id(sid(id)),
            wire::Start::Time(0) => GroupStart::Id(StreamId::MIN),
            wire::Start::Time(t) => GroupStart::Id(StreamId {
                ms: t - 1,
                seq: u64::MAX,
            }),
        },
        window,
        no_ack,
        policy: Some(broker.config().default_policy.clone().unwrap_or_default()),
    };
    // Listed as what this agent serves while the subscription lives: from before the
    // subscription exists, so that whatever shows its inbox served (this node's
    // responders, the other nodes' announcements) shows the session serving it too, and a
    // client told `Subscribed` finds itself listed.
    let _serving = session.serving(&spec.stream.name, &spec.group);
    let mut sub = match broker.subscribe(&who, spec).await {
        Ok(s) => s,
        Err(e) => {
            let _ = write_frame(&mut send, &sub_error(&e)).await;
            let _ = send.finish();
            return;
        }
    };
    let ok = Frame::Subscribed {
        group: sub.group().to_vec(),
        consumer: sub.consumer().to_vec(),
    };
    if write_frame(&mut send, &ok).await.is_err() {
        return;
    }
    let heartbeat = Duration::from_millis(u64::from(names::heartbeat_ms(heartbeat_ms)));
    // Control frames are read by their own task so that reading is never cancelled halfway.
    let (tx, mut rx) = mpsc::channel::<Result<Frame, ReadError>>(64);
    let reader = tokio::spawn(async move {
        loop {
            let r = read_frame(&mut recv, &limits).await;
            let end = !matches!(r, Ok(Some(_)));
            let item = match r {
                Ok(Some(f)) => Ok(f),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || end {
                break;
            }
        }
    });
    let mut quiet_since = tokio::time::Instant::now();
    let mut out = Vec::new();
    // Acks commit while deliveries go on; their answers are written as they come.
    let mut acks: tokio::task::JoinSet<Vec<u8>> = tokio::task::JoinSet::new();
    loop {
        if broker.stopping() {
            break;
        }
        let fetched = sub.fetch().await;
        // Cancels first: each came in a commit before any delivery taken with it.
        let canceled = sub.take_canceled();
        if !canceled.is_empty() {
            out.clear();
            for c in canceled {
                wire::encode_into(
                    &Frame::Canceled {
                        task: c.task,
                        id: wid(c.id),
                    },
                    &mut out,
                );
            }
            if send.write_all(&out).await.is_err() {
                break;
            }
            quiet_since = tokio::time::Instant::now();
        }
        match fetched {
            Ok(items) if !items.is_empty() => {
                let items: Vec<wire::Delivery> = items
                    .into_iter()
                    .map(|p| delivery(sub.stream(), p))
                    .collect();
                out.clear();
                // Several frames when one would pass the frame limit.
                for chunk in chunks(items, |d| {
                    wire::pairs_bytes(&d.fields) + wire::pairs_bytes(&d.headers)
                }) {
                    wire::encode_into(&Frame::Deliveries { items: chunk }, &mut out);
                }
                if send.write_all(&out).await.is_err() {
                    break;
                }
                quiet_since = tokio::time::Instant::now();
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = write_frame(&mut send, &sub_error(&e)).await;
                break;
            }
        }
        tokio::select! {
            f = rx.recv(), if acks.len() < ACKS_IN_FLIGHT_MAX => {
                let Some(first) = f else { break };
                session.heard();
                // Take every control frame already here: their acks share one commit.
                let mut frames = vec![first];
                while frames.len() < 64 {
                    match rx.try_recv() {
                        Ok(f) => frames.push(f),
                        Err(_) => break,
                    }
                }
                out.clear();
                let fatal = control(&mut sub, frames, &mut out, &mut acks).await;
                if !out.is_empty() && send.write_all(&out).await.is_err() {
                    break;
                }
                if fatal {
                    break;
                }
            }
            Some(answers) = acks.join_next(), if !acks.is_empty() => {
                if let Ok(answers) = answers {
                    if send.write_all(&answers).await.is_err() {
                        break;
                    }
                }
            }
            _ = sub.wait() => {}
            _ = tokio::time::sleep_until(quiet_since + heartbeat) => {
                let f = Frame::Heartbeat { in_flight: sub.in_flight(), window: sub.window() };
                if write_frame(&mut send, &f).await.is_err() {
                    break;
                }
                quiet_since = tokio::time::Instant::now();
            }
        }
    }
    // Acks already queued are committed whatever happens to the connection.
    while acks.join_next().await.is_some() {}
    reader.abort();
    let _ = send.finish();
}

/// Ack commits one subscription may have in progress before it reads more control frames.
const ACKS_IN_FLIGHT_MAX: usize = 8;

/// Applies a run of control frames, acks of consecutive frames sharing one commit; writes
/// their answers to `out`. True when the subscription must end (a broken frame).
async fn control(
    sub: &mut Subscription,
    frames: Vec<Result<Frame, ReadError>>,
    out: &mut Vec<u8>,
    committing: &mut tokio::task::JoinSet<Vec<u8>>,
) -> bool {
    let mut acks: Vec<(u64, Vec<StreamId>)> = Vec::new();
    let mut fatal = false;
    for f in frames {
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                let (code, message) = match &e {
                    ReadError::Decode(d) => (d.code(), d.to_string()),
                    ReadError::Stream(s) => (ErrorCode::BadFrame, s.clone()),
                };
                wire::encode_into(&Frame::Error { code, message }, out);
                fatal = true;
                break;
            }
        };
        if let Frame::Ack { seq, ids } = f {
            acks.push((seq, ids.into_iter().map(sid).collect()));
            continue;
        }
        flush_acks(sub, &mut acks, committing);
        let answer = match f {
            Frame::Credit { window } => {
                sub.set_window(window);
                continue;
            }
            Frame::Nack {
                seq,
                ids,
                error,
                reject,
            } => {
                let ids: Vec<StreamId> = ids.into_iter().map(sid).collect();
                result(
                    seq,
                    sub.nack(&ids, error.map(String::into_bytes), reject).await,
                )
            }
            Frame::Progress { seq, ids } => {
                let ids: Vec<StreamId> = ids.into_iter().map(sid).collect();
                result(seq, sub.progress(&ids).await)
            }
            _ => Frame::Failed {
                seq: 0,
                code: ErrorCode::BadFrame,
                message: "only Ack, Nack, Progress and Credit go on a subscription stream".into(),
            },
        };
        wire::encode_into(&answer, out);
    }
    flush_acks(sub, &mut acks, committing);
    fatal
}

/// Queues a run of acks as one submission (so a later nack of the same IDs comes after
/// them); their answers are encoded when they are committed.
fn flush_acks(
    sub: &mut Subscription,
    acks: &mut Vec<(u64, Vec<StreamId>)>,
    committing: &mut tokio::task::JoinSet<Vec<u8>>,
) {
    if acks.is_empty() {
        return;
    }
    let batch = std::mem::take(acks);
    let seqs: Vec<u64> = batch.iter().map(|a| a.0).collect();
    let results = sub.ack_many(batch.into_iter().map(|a| a.1).collect());
    committing.spawn(async move {
        let mut out = Vec::new();
        for (seq, r) in seqs.into_iter().zip(results.await) {
            wire::encode_into(&result(seq, r), &mut out);
        }
        out
    });
}

fn result(seq: u64, r: Result<u64, crate::broker::push::SubError>) -> Frame {
    match r {
        Ok(count) => Frame::Done { seq, count },
        Err(e) => match sub_error(&e) {
            Frame::Error { code, message } => Frame::Failed { seq, code, message },
            other => other,
        },
    }
}

async fn admin(broker: &Broker, who: &Principal, a: AdminRequest) -> Frame {
    match a {
        AdminRequest::Stat { stream } => stat(broker, who, stream),
        AdminRequest::Policy {
            stream,
            group,
            change,
        } => {
            let key = StreamKey::new(0, stream);
            if let Some(c) = change {
                let op = Op::PatchPolicy {
                    stream: key.clone(),
                    group: group.clone(),
                    patch: PolicyPatch {
                        max_attempts: c.max_attempts,
                        backoff_ms: c.backoff_ms,
                        ack_wait_ms: c.ack_wait_ms,
                        max_age_ms: c.max_age_ms,
                        dead_letter: c.dead_letter,
                    },
                };
                match broker.submit_one(who, op).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return store_error(&e),
                    Err(e) => return broker_error(&e),
                }
            }
            match broker
                .query(who, Query::Policy { stream: key, group })
                .await
            {
                Ok(Ok(cortex_storage::Answer::Policy(p))) => {
                    Frame::AdminAnswer(AdminAnswer::Policy(p.map(policy)))
                }
                Ok(Ok(_)) => internal("unexpected answer"),
                Ok(Err(e)) => store_error(&e),
                Err(e) => broker_error(&e),
            }
        }
        AdminRequest::DlqList(s) => {
            let (dlq, filter, count) = match dlq_select(s) {
                Ok(x) => x,
                Err(f) => return *f,
            };
            let q = Query::DeadLetters { dlq, filter, count };
            match broker.query(who, q).await {
                Ok(Ok(cortex_storage::Answer::DeadLetters(d))) => Frame::AdminAnswer(
                    AdminAnswer::DeadLetters(fitting(d.into_iter().map(dead_letter), |d| {
                        wire::pairs_bytes(&d.fields) + d.last_error.as_ref().map_or(0, Vec::len)
                    })),
                ),
                Ok(Ok(_)) => internal("unexpected answer"),
                Ok(Err(e)) => store_error(&e),
                Err(e) => broker_error(&e),
            }
        }
        AdminRequest::DlqRedrive(s) => match dlq_select(s) {
            Ok((dlq, filter, limit)) => {
                count_answer(broker, who, Op::DlqRedrive { dlq, filter, limit }).await
            }
            Err(f) => *f,
        },
        AdminRequest::Backup { dir } => match broker.backup(who, dir.into()).await {
            Ok(Ok(r)) => Frame::AdminAnswer(AdminAnswer::Backup {
                streams: r.streams,
                keys: r.keys,
                bytes: r.bytes,
            }),
            Ok(Err(e)) => Frame::Error {
                code: ErrorCode::InvalidArgument,
                message: format!("backup failed: {e}"),
            },
            Err(e) => broker_error(&e),
        },
        AdminRequest::Cluster { change } => {
            let change = match change {
                None => None,
                Some(ClusterChange::Remove { id }) => {
                    Some(crate::broker::Membership::Remove { id })
                }
                Some(ClusterChange::Add { id, addr }) => match addr.parse() {
                    Ok(addr) => Some(crate::broker::Membership::Add { id, addr }),
                    Err(_) => {
                        return Frame::Error {
                            code: ErrorCode::InvalidArgument,
                            message: format!("bad cluster address {addr:?} (expected host:port)"),
                        }
                    }
                },
            };
            match broker.cluster_admin(who, change).await {
                Ok(Ok(json)) => Frame::AdminAnswer(AdminAnswer::Cluster(json)),
                Ok(Err(e)) => Frame::Error {
                    code: ErrorCode::InvalidArgument,
                    message: e,
                },
                Err(e) => broker_error(&e),
            }
        }
        AdminRequest::DlqPurge(s) => match dlq_select(s) {
            Ok((dlq, filter, limit)) => {
                count_answer(broker, who, Op::DlqPurge { dlq, filter, limit }).await
            }
            Err(f) => *f,
        },
        AdminRequest::Task(call) => task_call(broker, who, call).await,
        AdminRequest::Agents => Frame::AdminAnswer(AdminAnswer::Agents(
            broker.agents().into_iter().map(agent_info).collect(),
        )),
    }
}

async fn task_call(broker: &Broker, who: &Principal, call: wire::TaskCall) -> Frame {
    use crate::broker::task::{NewTask, TaskQuery};
    use wire::TaskCall as C;
    let one = |r: Result<cortex_storage::TaskRecord, TaskError>| match r {
        Ok(t) => Frame::AdminAnswer(AdminAnswer::Task(task_info(t))),
        Err(e) => task_error(&e),
    };
    match call {
        C::Submit {
            agent,
            task,
            fields,
            headers,
            lane,
            deadline_ms,
        } => {
            let new = NewTask {
                id: task,
                fields,
                lane: Lane::from_index(usize::from(lane)).unwrap_or_default(),
                deadline_ms: (deadline_ms > 0).then_some(deadline_ms),
                headers,
            };
            match broker.submit_task(who, &agent, new).await {
                Ok((id, _)) => one(broker.task(who, &id).await),
                Err(e) => task_error(&e),
            }
        }
        C::Status { task } => one(broker.task(who, &task).await),
        C::Cancel { task } => one(broker.cancel_task(who, &task).await),
        C::Watch {
            task,
            from,
            wait_ms,
        } => one(broker
            .watch_task(who, &task, from, Duration::from_millis(u64::from(wait_ms)))
            .await),
        C::List {
            agent,
            stream,
            state,
            after,
            count,
        } => {
            let state = match state.as_deref().map(cortex_storage::TaskState::parse) {
                None => None,
                Some(Some(s)) => Some(s),
                Some(None) => {
                    return Frame::Error {
                        code: ErrorCode::InvalidArgument,
                        message: "state must be one of submitted, working, input-required, completed, failed, canceled, rejected".into(),
                    }
                }
            };
            let q = TaskQuery {
                agent,
                stream,
                state,
                after,
                count: count as usize,
            };
            match broker.tasks(who, q).await {
                Ok((tasks, next)) => Frame::AdminAnswer(AdminAnswer::Tasks {
                    tasks: tasks.into_iter().map(task_info).collect(),
                    next,
                }),
                Err(e) => task_error(&e),
            }
        }
    }
}

async fn count_answer(broker: &Broker, who: &Principal, op: Op) -> Frame {
    match broker.submit_one(who, op).await {
        Ok(Ok(Reply::Count(n))) => Frame::AdminAnswer(AdminAnswer::Count(n)),
        Ok(Ok(_)) => internal("unexpected reply"),
        Ok(Err(e)) => store_error(&e),
        Err(e) => broker_error(&e),
    }
}

fn dlq_select(s: wire::DlqSelect) -> Result<(StreamKey, DlqFilter, usize), Box<Frame>> {
    let reason = match s.reason {
        None => None,
        Some(r) => Some(
            cortex_storage::DeadReason::parse(&r).ok_or_else(|| Frame::Error {
                code: ErrorCode::InvalidArgument,
                message: format!(
                    "unknown reason '{r}' (max_attempts, expired, stale, rejected, canceled)"
                ),
            })?,
        ),
    };
    Ok((
        StreamKey::new(
            0,
            s.dlq
                .unwrap_or_else(|| cortex_storage::DEFAULT_DLQ.to_vec()),
        ),
        DlqFilter {
            id: s.id.map(sid),
            origin_stream: s.origin,
            group: s.group,
            reason,
        },
        (s.count as usize).max(1),
    ))
}

/// Streams the agent may consume, with their groups (at most 1,000 streams): the same
/// numbers as `/metrics` and the dashboard ([`Broker::overview`]).
fn stat(broker: &Broker, who: &Principal, only: Option<Vec<u8>>) -> Frame {
    let out = broker
        .streams(who)
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| *o == s.name))
        .take(1_000)
        .map(|s| StreamStat {
            length: s.length,
            last_id: wid(s.last_id),
            lanes: s.lane_len.to_vec(),
            groups: s
                .groups
                .into_iter()
                .map(|g| GroupStat {
                    name: g.name,
                    consumers: g.consumers as u64,
                    pending: g.pending,
                    lag: g.lag.map(|l| l.max(0) as u64),
                    last_delivered: wid(g.last_delivered_id),
                    policy: g.policy.is_some(),
                })
                .collect(),
            name: s.name,
        })
        .collect();
    Frame::AdminAnswer(AdminAnswer::Stat(out))
}

/// Bytes of items one answer frame may carry (the rest of the frame's limit is headroom
/// for the items' fixed fields).
const ANSWER_BYTES: usize = wire::FRAME_BYTES_MAX / 2;

/// The leading items that fit in one frame (at least one; a single item is at most an
/// entry, which the store bounds well below the frame limit). The reader continues after
/// the last ID it got, so a shortened answer loses nothing.
fn fitting<T>(items: impl Iterator<Item = T>, size: impl Fn(&T) -> usize) -> Vec<T> {
    let mut used = 0;
    let mut out = Vec::new();
    for it in items {
        used += size(&it) + 64;
        if used > ANSWER_BYTES && !out.is_empty() {
            break;
        }
        out.push(it);
    }
    out
}

/// Items split into runs that each fit in one frame.
fn chunks<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = vec![Vec::new()];
    let mut used = 0;
    for it in items {
        let n = size(&it) + 64;
        if used + n > ANSWER_BYTES && out.last().is_some_and(|c| !c.is_empty()) {
            out.push(Vec::new());
            used = 0;
        }
        used += n;
        if let Some(c) = out.last_mut() {
            c.push(it);
        }
    }
    out
}

fn req_error(e: &ReqError) -> Frame {
    let code = match e {
        ReqError::NoResponders(_) => ErrorCode::NoResponders,
        ReqError::UnknownRequest => ErrorCode::NotFound,
        ReqError::TooManyParts => ErrorCode::TooLarge,
        ReqError::Busy => ErrorCode::Busy,
        ReqError::Broker(b) => return broker_error(b),
        ReqError::Store(s) => return store_error(s),
    };
    Frame::Error {
        code,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_stay_under_the_frame_limit() {
        let big = ANSWER_BYTES / 3;
        let c = chunks(vec![big; 7], |n| *n);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 2, 1]);
        assert!(c
            .iter()
            .all(|c| c.iter().map(|n| n + 64).sum::<usize>() <= ANSWER_BYTES));
        assert_eq!(fitting(vec![big; 7].into_iter(), |n| *n).len(), 2);
        // One oversized item still goes out (alone), never an empty answer.
        assert_eq!(fitting(vec![ANSWER_BYTES * 2].into_iter(), |n| *n).len(), 1);
        assert_eq!(chunks(vec![1usize; 3], |n| *n), vec![vec![1, 1, 1]]);
    }
}
