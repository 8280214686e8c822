//! Retention: every `retention_interval_ms`, streams matching a rule are trimmed to its
//! limits (entries, age, bytes). Trims go through the writer like any op; entries a group had
//! not been handed yet are counted and alerted (storage reports them).

use std::time::Duration;

use cortex_storage::{Op, StreamKey, Trim, TrimStrategy};

use super::Broker;
use crate::glob::glob;

/// Namespaces retention looks at (the RESP databases).
const NAMESPACES: u16 = 16;

fn trims(broker: &Broker) -> Vec<Op> {
    let store = broker.store();
    let rules = &broker.config().retention;
    let now = broker.now_ms();
    let mut ops = Vec::new();
    for ns in 0..NAMESPACES {
        for name in store.list_streams(ns) {
            let Some(rule) = rules.iter().find(|r| glob(r.pattern.as_bytes(), &name)) else {
                continue;
            };
            let key = StreamKey::new(ns, name);
            let Ok(Some(info)) = store.stream_info(&key) else {
                continue;
            };
            let mut push = |strategy| {
                ops.push(Op::Trim {
                    stream: key.clone(),
                    trim: Trim::new(strategy, false, None),
                })
            };
            if let Some(n) = rule.max_len.filter(|n| info.length > *n) {
                push(TrimStrategy::MaxLen(n));
            }
            if let Some(age) = rule.max_age_ms {
                let oldest = info.first_entry.as_ref().map_or(u64::MAX, |e| e.id.ms);
                if oldest < now.saturating_sub(age) {
                    push(TrimStrategy::MaxAgeMs(age));
                }
            }
            if let Some(b) = rule.max_bytes.filter(|b| info.bytes > *b) {
                push(TrimStrategy::MaxBytes(b));
            }
        }
    }
    ops
}

/// Enforces retention until the broker stops.
pub(super) async fn run(broker: Broker) {
    let every = Duration::from_millis(broker.config().retention_interval_ms);
    while !broker.stopping() {
        tokio::time::sleep(every).await;
        let ops = trims(&broker);
        // Followers apply the leader's trims.
        if ops.is_empty() || !broker.is_leader() {
            continue;
        }
        match broker.submit(&super::Principal::internal(), ops).await {
            Ok(replies) => {
                for r in replies {
                    if let Err(e) = r {
                        tracing::warn!("retention trim failed: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("retention could not run: {e}"),
        }
    }
}
