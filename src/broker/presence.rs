//! Presence: which agents are connected to this node, over which front, with which client,
//! what they serve (their push subscriptions: stream and group) and when each was last
//! heard from. Soft state in memory, never in the log: a session exists while its
//! connection does, and leaves the list when the connection ends (a client that died
//! without goodbye leaves at the front's idle timeout).
//!
//! An agent whose last session here ends without a goodbye (timed out, reset) has fallen
//! silent: an alert on `cortex:alerts` says so, with how long since it was last heard from
//! and how many tasks of its inbox were in progress, at most one per agent per
//! `alert_interval_ms`.
//!
//! Bounded by what bounds connections: one session per authenticated connection, one
//! served (stream, group) per open subscription stream, and a client name cut to
//! [`CLIENT_BYTES_MAX`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Broker, Principal};

/// Longest client name kept (the rest of what a peer sent is cut off).
pub const CLIENT_BYTES_MAX: usize = 256;

/// The sessions of this node.
#[derive(Default)]
pub(super) struct Presence {
    next: AtomicU64,
    sessions: Mutex<BTreeMap<u64, Arc<State>>>,
    /// Agent -> when its last silence alert went out, Unix ms (pruned past the interval).
    alerted: Mutex<BTreeMap<String, u64>>,
}

struct State {
    agent: String,
    front: &'static str,
    client: String,
    connected_ms: u64,
    last_heard_ms: AtomicU64,
    /// (stream, group) -> open subscriptions.
    serves: Mutex<BTreeMap<Served, u32>>,
}

/// A (stream, group) an agent serves.
type Served = (Vec<u8>, Vec<u8>);

/// One connection's presence; it leaves the list when dropped.
pub struct Session {
    broker: Broker,
    id: u64,
    state: Arc<State>,
}

/// One subscription's entry in its session's `serves`; removed when dropped.
pub struct Serving {
    state: Arc<State>,
    key: Served,
}

/// A session as [`Broker::agents`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    /// The front (`quic`; RESP connections are not registered yet).
    pub front: &'static str,
    /// The client library's own name and version (QUIC `Hello.client`).
    pub client: String,
    /// When the connection authenticated, Unix ms.
    pub connected_ms: u64,
    /// When the agent last sent anything on it, Unix ms.
    pub last_heard_ms: u64,
    /// (stream, group) of its open subscriptions.
    pub serves: Vec<Served>,
}

/// An agent with its sessions on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentView {
    /// Its name (empty: the anonymous agent of a broker without tokens).
    pub agent: String,
    /// Its connections.
    pub sessions: Vec<SessionView>,
    /// The latest `last_heard_ms` of its sessions.
    pub last_heard_ms: u64,
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(CLIENT_BYTES_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Broker {
    /// Registers a connection that authenticated as `who`; it is listed by
    /// [`Broker::agents`] until the returned session is dropped.
    pub fn register_session(&self, who: &Principal, front: &'static str, client: &str) -> Session {
        let now = self.now_ms();
        let p = &self.inner.presence;
        let id = p.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(State {
            agent: who.agent().unwrap_or("").to_string(),
            front,
            client: cut(client),
            connected_ms: now,
            last_heard_ms: AtomicU64::new(now),
            serves: Mutex::new(BTreeMap::new()),
        });
        p.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, state.clone());
        Session {
            broker: self.clone(),
            id,
            state,
        }
    }

    /// The agents connected to this node, by name, each with its sessions (oldest first).
    /// Presence is for discovery: every authenticated agent may read it.
    pub fn agents(&self) -> Vec<AgentView> {
        let sessions: Vec<Arc<State>> = self
            .inner
            .presence
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut by_agent: BTreeMap<String, AgentView> = BTreeMap::new();
        for s in sessions {
            let view = SessionView {
                front: s.front,
                client: s.client.clone(),
                connected_ms: s.connected_ms,
                last_heard_ms: s.last_heard_ms.load(Ordering::Relaxed),
                serves: s
                    .serves
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .cloned()
                    .collect(),
            };
            let a = by_agent
                .entry(s.agent.clone())
                .or_insert_with(|| AgentView {
                    agent: s.agent.clone(),
                    sessions: Vec::new(),
                    last_heard_ms: 0,
                });
            a.last_heard_ms = a.last_heard_ms.max(view.last_heard_ms);
            a.sessions.push(view);
        }
        by_agent.into_values().collect()
    }
}

impl Broker {
    /// Writes the alert that `agent` fell silent `silent_ms` ago.
    async fn silence_alert(&self, agent: &str, silent_ms: u64) {
        let q = super::task::TaskQuery {
            agent: Some(agent.to_string()),
            state: Some(cortex_storage::TaskState::Working),
            count: super::task::LIST_MAX,
            ..Default::default()
        };
        let working = match self.tasks(&Principal::internal(), q).await {
            Ok((tasks, _)) => tasks.len(),
            Err(e) => {
                tracing::warn!("counting the tasks of silent agent {agent}: {e}");
                0
            }
        };
        let noun = if working == 1 { "task" } else { "tasks" };
        let more = if working >= super::task::LIST_MAX {
            "+"
        } else {
            ""
        };
        let message = format!(
            "{agent} silent for {} s (its connection timed out), {working}{more} {noun} in progress",
            silent_ms.div_ceil(1000)
        );
        let op = crate::core::alerts::silence_alert(agent, &message, working as u64, silent_ms);
        if let Err(e) = self.submit(&Principal::internal(), vec![op]).await {
            tracing::warn!("alert '{message}' not written: {e}");
        }
    }
}

impl Session {
    /// The agent sent something: a request, a frame on a subscription.
    pub fn heard(&self) {
        self.state
            .last_heard_ms
            .fetch_max(self.broker.now_ms(), Ordering::Relaxed);
    }

    /// A subscription on (stream, group) opened; it is listed while the guard lives.
    pub fn serving(&self, stream: &[u8], group: &[u8]) -> Serving {
        let key = (stream.to_vec(), group.to_vec());
        *self
            .state
            .serves
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert(0) += 1;
        Serving {
            state: self.state.clone(),
            key,
        }
    }

    /// The connection ended without a goodbye: off the list, and when it was the agent's
    /// last session here, an alert that the agent fell silent (see the module's doc).
    pub fn lost(&self) {
        self.close();
        let agent = self.state.agent.clone();
        let b = self.broker.clone();
        if agent.is_empty() || b.agents().iter().any(|a| a.agent == agent) {
            return;
        }
        let now = b.now_ms();
        let interval = b.config().alert_interval_ms;
        {
            let mut alerted = b
                .inner
                .presence
                .alerted
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if alerted
                .get(&agent)
                .is_some_and(|t| now < t.saturating_add(interval))
            {
                return;
            }
            alerted.retain(|_, t| now < t.saturating_add(interval));
            alerted.insert(agent.clone(), now);
        }
        let silent_ms = now.saturating_sub(self.state.last_heard_ms.load(Ordering::Relaxed));
        tokio::spawn(async move { b.silence_alert(&agent, silent_ms).await });
    }

    /// Takes the session off the list (the connection ended), even while tasks of the
    /// connection still hold it.
    pub fn close(&self) {
        self.broker
            .inner
            .presence
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let mut serves = self.state.serves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = serves.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                serves.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn client_names_are_cut_on_a_char_boundary() {
        assert_eq!(cut("cortex-go 0.1.0"), "cortex-go 0.1.0");
        let long = "é".repeat(200); // 400 bytes
        let c = cut(&long);
        assert!(c.len() <= super::CLIENT_BYTES_MAX && c.len() >= super::CLIENT_BYTES_MAX - 1);
        assert!(c.chars().all(|ch| ch == 'é'));
    }
}
