//! Alerts on `cortex:alerts`: dead letters and undelivered trims. The first after a quiet
//! period goes out at once; later ones are summarised per interval ("3 messages failed to
//! pink"), at most one entry per interval and namespace. Each carries `view`, the path of
//! the dashboard view that shows what it is about (`/#/dlq`), for a link.

use std::collections::BTreeMap;
use std::time::Duration;

use cortex_storage::{Event, IdSpec, Meta, Op, StreamKey, Trim, TrimStrategy};
use tokio::sync::mpsc;

use super::Core;

/// The alert stream.
pub const ALERTS: &[u8] = b"cortex:alerts";
/// Entries kept on the alert stream.
const ALERTS_KEEP: u64 = 10_000;
/// Most distinct (group, consumer) pairs named in one alert.
const NAMED_MAX: usize = 8;

/// (stream, group, consumer) a dead letter came from.
type Target = (Vec<u8>, Vec<u8>, Vec<u8>);

#[derive(Default)]
struct Summary {
    dead: u64,
    trimmed: u64,
    reasons: BTreeMap<&'static str, u64>,
    /// (stream, group, consumer) -> count
    targets: BTreeMap<Target, u64>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Summary {
    fn add(&mut self, e: &Event) {
        match e {
            Event::DeadLettered {
                stream,
                group,
                consumer,
                reason,
                ..
            } => {
                self.dead += 1;
                *self.reasons.entry(reason.name()).or_default() += 1;
                if self.targets.len() < 1000 {
                    *self
                        .targets
                        .entry((stream.name.clone(), group.clone(), consumer.clone()))
                        .or_default() += 1;
                }
            }
            Event::TrimmedUndelivered { count, .. } => self.trimmed += count,
            _ => {}
        }
    }

    fn message(&self) -> String {
        let mut parts = Vec::new();
        if self.dead > 0 {
            let mut per_consumer: BTreeMap<String, u64> = BTreeMap::new();
            for ((_, group, consumer), n) in &self.targets {
                let who = if consumer.is_empty() {
                    lossy(group)
                } else {
                    lossy(consumer)
                };
                *per_consumer.entry(who).or_default() += n;
            }
            let mut named: Vec<(u64, String)> =
                per_consumer.into_iter().map(|(k, v)| (v, k)).collect();
            named.sort_by(|a, b| b.cmp(a));
            let list: Vec<String> = named
                .iter()
                .take(NAMED_MAX)
                .map(|(n, who)| format!("{n} to {who}"))
                .collect();
            let noun = if self.dead == 1 {
                "message"
            } else {
                "messages"
            };
            parts.push(format!("{} {noun} failed ({})", self.dead, list.join(", ")));
        }
        if self.trimmed > 0 {
            parts.push(format!("{} undelivered entries trimmed", self.trimmed));
        }
        parts.join("; ")
    }

    fn into_op(self, ns: u16) -> Op {
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{r}:{n}"))
            .collect();
        let streams: Vec<String> = {
            let mut s: Vec<String> = self.targets.keys().map(|(st, _, _)| lossy(st)).collect();
            s.dedup();
            s.truncate(NAMED_MAX);
            s
        };
        let fields = vec![
            (b"kind".to_vec(), b"dead_letter".to_vec()),
            (b"message".to_vec(), self.message().into_bytes()),
            (
                b"dead_lettered".to_vec(),
                self.dead.to_string().into_bytes(),
            ),
            (
                b"trimmed_undelivered".to_vec(),
                self.trimmed.to_string().into_bytes(),
            ),
            (b"reasons".to_vec(), reasons.join(",").into_bytes()),
            (b"streams".to_vec(), streams.join(",").into_bytes()),
            (b"view".to_vec(), b"/#/dlq".to_vec()),
        ];
        alert_op(ns, fields)
    }
}

/// An alert about the data disk or the store's failure state (namespace 0).
pub(super) fn disk_alert(kind: &str, message: &str) -> Op {
    alert_op(
        0,
        vec![
            (b"kind".to_vec(), kind.as_bytes().to_vec()),
            (b"message".to_vec(), message.as_bytes().to_vec()),
            (b"view".to_vec(), b"/#/overview".to_vec()),
        ],
    )
}

/// An agent fell silent: its last connection to this node ended without a goodbye
/// (namespace 0).
pub fn silence_alert(agent: &str, message: &str, working: u64, silent_ms: u64) -> Op {
    alert_op(
        0,
        vec![
            (b"kind".to_vec(), b"agent_silent".to_vec()),
            (b"message".to_vec(), message.as_bytes().to_vec()),
            (b"agent".to_vec(), agent.as_bytes().to_vec()),
            (
                b"tasks_in_progress".to_vec(),
                working.to_string().into_bytes(),
            ),
            (b"silent_ms".to_vec(), silent_ms.to_string().into_bytes()),
            (b"view".to_vec(), format!("/#/agents/{agent}").into_bytes()),
        ],
    )
}

/// An alert about damage found in the store (namespace 0).
pub(super) fn damage_alert(message: &str) -> Op {
    alert_op(
        0,
        vec![
            (b"kind".to_vec(), b"store_damage".to_vec()),
            (b"message".to_vec(), message.as_bytes().to_vec()),
            (b"view".to_vec(), b"/#/overview".to_vec()),
        ],
    )
}

fn alert_op(ns: u16, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Op {
    Op::Append {
        stream: StreamKey::new(ns, ALERTS.to_vec()),
        id: IdSpec::Auto,
        fields,
        meta: Meta {
            lane: cortex_storage::Lane::High,
            ..Meta::default()
        },
        idempotency_key: None,
        no_mkstream: false,
        trim: Some(Trim::new(TrimStrategy::MaxLen(ALERTS_KEEP), true, None)),
    }
}

fn ns_of(e: &Event) -> u16 {
    match e {
        Event::DeadLettered { stream, .. } | Event::TrimmedUndelivered { stream, .. } => stream.ns,
        _ => 0,
    }
}

/// Writes the first alert after a quiet period at once; events that follow within the
/// interval are summarised into one alert per namespace at its end, and so on while they keep
/// coming. An interval without events makes the next one immediate again.
pub async fn run(broker: Core, mut rx: mpsc::Receiver<Event>) {
    let interval = Duration::from_millis(broker.config.alert_interval_ms);
    while let Some(first) = rx.recv().await {
        let mut pending: BTreeMap<u16, Summary> = BTreeMap::new();
        pending.entry(ns_of(&first)).or_default().add(&first);
        // Whatever the same commit raised is already queued: it joins the first alert.
        while let Ok(e) = rx.try_recv() {
            pending.entry(ns_of(&e)).or_default().add(&e);
        }
        write(&broker, pending).await;
        loop {
            let until = tokio::time::Instant::now() + interval;
            let mut pending: BTreeMap<u16, Summary> = BTreeMap::new();
            let mut closed = false;
            loop {
                tokio::select! {
                    e = rx.recv() => match e {
                        Some(e) => pending.entry(ns_of(&e)).or_default().add(&e),
                        None => {
                            closed = true;
                            break;
                        }
                    },
                    _ = tokio::time::sleep_until(until) => break,
                }
            }
            let quiet = pending.is_empty();
            write(&broker, pending).await;
            if closed {
                return;
            }
            if quiet {
                break;
            }
        }
    }
}

async fn write(broker: &Core, pending: BTreeMap<u16, Summary>) {
    // Every node sees the events as it applies them; the leader writes the alerts.
    if pending.is_empty() || !broker.leads() {
        return;
    }
    let ops: Vec<Op> = pending.into_iter().map(|(ns, s)| s.into_op(ns)).collect();
    let n = ops.len() as u64;
    match broker.submit_system(ops).await {
        Ok(_) => {
            broker
                .stats
                .alerts
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => tracing::warn!("could not write an alert: {e}"),
    }
}
