//! The HTTP API's JSON shapes. Names and values are shown as UTF-8 (bytes that are not
//! become U+FFFD); IDs are `"ms-seq"` strings; times are Unix milliseconds.

use cortex_storage::{
    ConsumerInfo, DeadLetter, DeliveryPolicy, Entry, GroupInfo, Lane, PendingInfo, StreamId,
    StreamSummary,
};
use serde_json::{json, Map, Value};

use crate::broker::metrics::{Latency, Overview};
use crate::broker::Broker;

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn pairs(p: &[(Vec<u8>, Vec<u8>)]) -> Value {
    let mut m = Map::new();
    for (k, v) in p {
        m.insert(text(k), Value::String(text(v)));
    }
    Value::Object(m)
}

pub(crate) fn entry(stream: &[u8], e: &Entry) -> Value {
    let m = &e.record.meta;
    json!({
        "stream": text(stream),
        "id": e.id.to_string(),
        "time_ms": e.id.ms,
        "fields": pairs(&e.record.fields),
        "lane": m.lane.name(),
        "producer": m.producer.as_deref().map(text),
        "headers": pairs(&m.headers),
        "expires_at_ms": m.expires_at_ms,
    })
}

pub(crate) fn policy(p: &DeliveryPolicy) -> Value {
    json!({
        "ack_wait_ms": p.ack_wait_ms,
        "max_attempts": p.max_attempts,
        "backoff_ms": p.backoff_ms,
        "max_age_ms": p.max_age_ms,
        "dead_letter": text(&p.dead_letter),
    })
}

pub(crate) fn group(g: &GroupInfo, nacked: u64) -> Value {
    let c = &g.counters;
    json!({
        "name": text(&g.name),
        "consumers": g.consumers,
        "pending": g.pending,
        "lag": g.lag,
        "retries_ready": g.ready,
        "last_delivered_id": g.last_delivered_id.to_string(),
        "entries_read": g.entries_read,
        "policy": g.policy.as_ref().map(policy),
        "delivered": c.delivered,
        "redelivered": c.redelivered,
        "acked": c.acked,
        "nacked": nacked,
        "failed_attempts": c.failures,
        "dead_lettered": c.dead_lettered,
    })
}

pub(crate) fn stream(broker: &Broker, s: &StreamSummary) -> Value {
    let lanes: Map<String, Value> = Lane::ALL
        .iter()
        .map(|l| (l.name().to_string(), json!(s.lane_len[l.index()])))
        .collect();
    json!({
        "name": text(&s.name),
        "length": s.length,
        "bytes": s.bytes,
        "published": s.entries_added,
        "last_id": s.last_id.to_string(),
        "lanes": lanes,
        "trimmed_undelivered": s.trimmed_undelivered,
        "created_ms": s.created_ms,
        "groups": s.groups.iter().map(|g| group(g, broker.metrics().nacked(&s.name, &g.name))).collect::<Vec<_>>(),
    })
}

fn latency(l: &Latency) -> Value {
    json!({
        "bounds_s": Latency::bounds(),
        "counts": l.counts(),
        "count": l.count(),
    })
}

/// The overview (already restricted to what its caller may see: [`Broker::overview`]).
pub(crate) fn overview(broker: &Broker, o: &Overview) -> Value {
    let m = broker.metrics();
    let streams: Vec<Value> = o.streams.iter().map(|s| stream(broker, s)).collect();
    let dlqs: Vec<Value> = o
        .dlqs
        .iter()
        .map(|(n, len)| json!({"name": text(n), "length": len}))
        .collect();
    let conns: Map<String, Value> = o
        .connections
        .iter()
        .map(|(p, n)| ((*p).to_string(), json!(n)))
        .collect();
    let dead: Map<String, Value> = m
        .dead_by_reason()
        .into_iter()
        .map(|(r, n)| (r.to_string(), json!(n)))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "now_ms": o.now_ms,
        "uptime_s": o.uptime_s,
        "streams": streams,
        "dlqs": dlqs,
        "connections": conns,
        "storage_bytes": o.storage_bytes,
        "writer_queue": o.writer_queue,
        "commits": o.commits,
        "ops": o.ops,
        "dead_letters_by_reason": dead,
        "latency": {
            "publish_durable": latency(&m.publish_durable),
            "delivery": latency(&m.delivery),
            "commit": latency(&m.commit),
        },
    })
}

pub(crate) fn consumer(c: &ConsumerInfo) -> Value {
    json!({
        "name": text(&c.name),
        "pending": c.pending,
        "idle_ms": c.idle_ms,
        "inactive_ms": c.inactive_ms,
    })
}

pub(crate) fn pending(p: &PendingInfo) -> Value {
    json!({
        "id": p.id.to_string(),
        "consumer": text(&p.consumer),
        "idle_ms": p.idle_ms,
        "deliveries": p.deliveries,
        "failures": p.failures,
        "state": format!("{:?}", p.state).to_lowercase(),
    })
}

pub(crate) fn dead_letter(dlq: &[u8], e: &Entry, d: &DeadLetter) -> Value {
    let fields: Vec<(Vec<u8>, Vec<u8>)> = e
        .record
        .fields
        .iter()
        .skip(usize::from(d.header_fields))
        .cloned()
        .collect();
    json!({
        "dlq": text(dlq),
        "id": e.id.to_string(),
        "origin_stream": text(&d.origin_stream),
        "origin_id": d.origin_id.to_string(),
        "group": text(&d.group),
        "consumer": text(&d.consumer),
        "reason": d.reason.name(),
        "failures": d.failures,
        "deliveries": d.deliveries,
        "last_error": d.last_error.as_deref().map(text),
        "dead_at_ms": d.dead_at_ms,
        "lane": d.original_meta.lane.name(),
        "producer": d.original_meta.producer.as_deref().map(text),
        "fields": pairs(&fields),
    })
}

/// An ID, or a time (`@ms`, `-5m`, ISO date) meaning the first ID at that millisecond.
pub(crate) fn id_or_time(s: &str, now_ms: u64, end: bool) -> Option<StreamId> {
    match s {
        "-" => return Some(StreamId::MIN),
        "+" => return Some(StreamId::MAX),
        _ => {}
    }
    if let Ok(id) = s.parse::<StreamId>() {
        // `ms` alone as an end bound covers the whole millisecond, as in XRANGE.
        return Some(if end && !s.contains('-') {
            StreamId::new(id.ms, u64::MAX)
        } else {
            id
        });
    }
    let ms = crate::timespec::parse_time(s, now_ms)?;
    Some(if end {
        StreamId::new(ms, u64::MAX)
    } else {
        StreamId::new(ms, 0)
    })
}
