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
//! An agent can also fall silent while still connected (its client library keeps the
//! connection alive while the agent's own code hangs). Agents that publish on the
//! heartbeat lane say how often to expect them: the gap between their last two heartbeats
//! (at least [`BEAT_GAP_MIN_MS`]). One that is still connected here and has sent none for
//! [`MISSED_BEATS`] of those gaps gets the same alert, once until it beats again.
//!
//! In a cluster every node lists every node's agents: each node announces its sessions to
//! the others with the inboxes it serves (`cluster/presence.rs`), at once when one opens,
//! closes or starts or stops serving, and once a second with fresh last-heard times. A
//! node that stops announcing (killed, cut off) drops out of the others' lists when its
//! lease ends.
//!
//! Bounded by what bounds connections: one session per authenticated connection, one
//! served (stream, group) per open subscription stream, and a client name cut to
//! [`CLIENT_BYTES_MAX`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{lock, Broker, Principal};
use crate::cluster::presence::SessionAd;
/// Most (stream, group) pairs one session is listed as serving (what a front records of a
/// session, and what the cluster announces of it).
pub use crate::cluster::presence::SERVES_MAX;

/// Longest client name kept (the rest of what a peer sent is cut off).
pub const CLIENT_BYTES_MAX: usize = 256;
/// Heartbeats missed in a row before an agent still connected counts as silent.
pub const MISSED_BEATS: u64 = 3;
/// The shortest gap between heartbeats expected of an agent (a burst of heartbeats does
/// not make it expected every millisecond).
pub const BEAT_GAP_MIN_MS: u64 = 1_000;
/// Most agents whose heartbeats are followed on one node (more are not, with a warning).
pub const BEATS_MAX: usize = 100_000;
/// How often the heartbeats followed are checked.
const BEAT_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The sessions of this node.
pub(super) struct Presence {
    next: AtomicU64,
    sessions: Mutex<BTreeMap<u64, Arc<State>>>,
    /// Agent -> when its last silence alert went out, Unix ms (pruned past the interval).
    alerted: Mutex<BTreeMap<String, u64>>,
    /// Agent -> its heartbeats, for agents that published on the heartbeat lane here.
    beats: Mutex<std::collections::HashMap<String, Beat>>,
    /// Counts the times a session opened or closed or what one serves changed (the
    /// cluster's announcer and waiters for an agent listen).
    changed: Arc<watch::Sender<u64>>,
}

impl Default for Presence {
    fn default() -> Self {
        Presence {
            next: AtomicU64::new(0),
            sessions: Mutex::new(BTreeMap::new()),
            alerted: Mutex::new(BTreeMap::new()),
            beats: Mutex::new(std::collections::HashMap::new()),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// An agent's heartbeats as this node saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Beat {
    /// The last one, Unix ms.
    last_ms: u64,
    /// The gap to the one before (at least [`BEAT_GAP_MIN_MS`]; 0: only one so far).
    gap_ms: u64,
    /// Its silence was alerted (no more until it beats again).
    flagged: bool,
}

impl Beat {
    fn beat(&mut self, now: u64) {
        if self.last_ms > 0 {
            self.gap_ms = now.saturating_sub(self.last_ms).max(BEAT_GAP_MIN_MS);
        }
        self.last_ms = self.last_ms.max(now);
        self.flagged = false;
    }

    /// How long it has been silent at `now`, once that is [`MISSED_BEATS`] of its gaps
    /// and its silence was not alerted yet.
    fn overdue(&self, now: u64) -> Option<u64> {
        let silent = now.saturating_sub(self.last_ms);
        (!self.flagged && self.gap_ms > 0 && silent > self.gap_ms.saturating_mul(MISSED_BEATS))
            .then_some(silent)
    }
}

struct State {
    agent: String,
    front: &'static str,
    client: Mutex<String>,
    connected_ms: u64,
    last_heard_ms: AtomicU64,
    /// (stream, group) -> open subscriptions.
    serves: Mutex<BTreeMap<Served, u32>>,
    changed: Arc<watch::Sender<u64>>,
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
    /// The node the connection is to (its cluster ID; 0 on a single node).
    pub node: u64,
    /// The front (`quic`, `resp`).
    pub front: String,
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

/// Waits for a change here or in the other nodes' announcements, for at most `wait` and
/// at most 250 ms: a lease that lapses is told to nobody, so a waiter looks again anyway.
pub(super) async fn next_change(
    local: &mut watch::Receiver<u64>,
    remote: Option<&mut watch::Receiver<u64>>,
    wait: std::time::Duration,
) {
    let nap = wait.min(std::time::Duration::from_millis(250));
    let remote_changed = async {
        match remote {
            Some(r) => {
                let _ = r.changed().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = local.changed() => {}
        _ = remote_changed => {}
        _ = tokio::time::sleep(nap) => {}
    }
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
            client: Mutex::new(cut(client)),
            connected_ms: now,
            last_heard_ms: AtomicU64::new(now),
            serves: Mutex::new(BTreeMap::new()),
            changed: p.changed.clone(),
        });
        lock(&p.sessions).insert(id, state.clone());
        p.changed.send_modify(|v| *v += 1);
        Session {
            broker: self.clone(),
            id,
            state,
        }
    }

    /// The agents connected to this node and, in a cluster, to the other nodes whose
    /// announcement is live (as of their last one, at most a second old), by name, each
    /// with its sessions (this node's first, oldest first). Presence is for discovery:
    /// every authenticated agent may read it.
    pub fn agents(&self) -> Vec<AgentView> {
        let here = self.cluster().map_or(0, |n| n.id);
        let remote = self
            .cluster()
            .map(|n| n.presence.sessions())
            .unwrap_or_default();
        let local = self.session_ads().into_iter().map(|s| (here, s));
        let mut by_agent: BTreeMap<String, AgentView> = BTreeMap::new();
        for (node, s) in local.chain(remote) {
            let a = by_agent
                .entry(s.agent.clone())
                .or_insert_with(|| AgentView {
                    agent: s.agent.clone(),
                    sessions: Vec::new(),
                    last_heard_ms: 0,
                });
            a.last_heard_ms = a.last_heard_ms.max(s.last_heard_ms);
            a.sessions.push(SessionView {
                node,
                front: s.front,
                client: s.client,
                connected_ms: s.connected_ms,
                last_heard_ms: s.last_heard_ms,
                serves: s.serves,
            });
        }
        by_agent.into_values().collect()
    }

    /// The agents (as [`Broker::agents`]) once `agent` has `sessions` sessions on all nodes
    /// together (at least one when `None`; 0: it left), or `None` when `timeout` passed
    /// first. Woken by this node's sessions and by the other nodes' announcements.
    pub async fn wait_agents(
        &self,
        agent: &str,
        sessions: Option<usize>,
        timeout: std::time::Duration,
    ) -> Option<Vec<AgentView>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut local = self.sessions_changed();
        let mut remote = self.cluster().map(|n| n.presence.changes());
        loop {
            local.mark_unchanged();
            if let Some(r) = remote.as_mut() {
                r.mark_unchanged();
            }
            let view = self.agents();
            let n = view
                .iter()
                .find(|a| a.agent == agent)
                .map_or(0, |a| a.sessions.len());
            if sessions.map_or(n > 0, |want| want == n) {
                return Some(view);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return None;
            }
            next_change(&mut local, remote.as_mut(), deadline - now).await;
        }
    }

    /// This node's sessions, oldest first, as the cluster announces them.
    pub(crate) fn session_ads(&self) -> Vec<SessionAd> {
        let sessions: Vec<Arc<State>> = lock(&self.inner.presence.sessions)
            .values()
            .cloned()
            .collect();
        sessions
            .iter()
            .map(|s| SessionAd {
                agent: s.agent.clone(),
                front: s.front.to_string(),
                client: lock(&s.client).clone(),
                connected_ms: s.connected_ms,
                last_heard_ms: s.last_heard_ms.load(Ordering::Relaxed),
                serves: lock(&s.serves).keys().take(SERVES_MAX).cloned().collect(),
            })
            .collect()
    }

    /// Changes when a session here opens or closes or what one serves changes.
    pub(crate) fn sessions_changed(&self) -> watch::Receiver<u64> {
        self.inner.presence.changed.subscribe()
    }
}

impl Broker {
    /// True when no silence alert went out for `agent` within the alert interval (and
    /// then one counts as going out now).
    fn may_alert_silence(&self, agent: &str, now: u64) -> bool {
        let interval = self.config().alert_interval_ms;
        let mut alerted = lock(&self.inner.presence.alerted);
        if alerted
            .get(agent)
            .is_some_and(|t| now < t.saturating_add(interval))
        {
            return false;
        }
        alerted.retain(|_, t| now < t.saturating_add(interval));
        alerted.insert(agent.to_string(), now);
        true
    }

    /// `agent` published on the heartbeat lane.
    pub(crate) fn heartbeat(&self, agent: &str) {
        let now = self.now_ms();
        let mut beats = lock(&self.inner.presence.beats);
        if let Some(b) = beats.get_mut(agent) {
            b.beat(now);
        } else if beats.len() < BEATS_MAX {
            let mut b = Beat::default();
            b.beat(now);
            beats.insert(agent.to_string(), b);
        } else {
            tracing::warn!("{BEATS_MAX} agents' heartbeats are followed here; {agent}'s are not");
        }
    }

    /// Checks the heartbeats followed here every second until shutdown: an agent still
    /// connected here that missed [`MISSED_BEATS`] of its gaps is alerted as silent; one
    /// no longer connected here is no longer followed (a goodbye is not silence, and a
    /// lost connection has its own alert).
    pub(crate) async fn watch_heartbeats(self) {
        let mut every = tokio::time::interval(BEAT_CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.stopping() {
            every.tick().await;
            let now = self.now_ms();
            let here: std::collections::HashSet<String> = lock(&self.inner.presence.sessions)
                .values()
                .map(|s| s.agent.clone())
                .collect();
            let mut due = Vec::new();
            {
                let mut beats = lock(&self.inner.presence.beats);
                beats.retain(|agent, _| here.contains(agent));
                for (agent, b) in beats.iter_mut() {
                    if let Some(silent) = b.overdue(now) {
                        b.flagged = true;
                        due.push((agent.clone(), silent, b.gap_ms));
                    }
                }
            }
            for (agent, silent, gap) in due {
                if self.may_alert_silence(&agent, now) {
                    let why = format!(
                        "no heartbeat while connected; it beat every {} s",
                        (gap + 500) / 1000
                    );
                    self.silence_alert(&agent, silent, &why).await;
                }
            }
        }
    }

    /// Writes the alert that `agent` fell silent `silent_ms` ago (`why`: how that showed).
    async fn silence_alert(&self, agent: &str, silent_ms: u64, why: &str) {
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
            "{agent} silent for {} s ({why}), {working}{more} {noun} in progress",
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
        self.heard_at(self.broker.now_ms());
    }

    /// The agent sent something at `ms` (Unix ms), a time the front read anyway.
    pub fn heard_at(&self, ms: u64) {
        self.state.last_heard_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The agent it is a session of.
    pub fn agent(&self) -> &str {
        &self.state.agent
    }

    /// The client named itself after connecting (RESP `CLIENT SETINFO` / `SETNAME`).
    pub fn set_client(&self, client: &str) {
        *lock(&self.state.client) = cut(client);
        self.state.changed.send_modify(|v| *v += 1);
    }

    /// A subscription on (stream, group) opened; it is listed while the guard lives.
    pub fn serving(&self, stream: &[u8], group: &[u8]) -> Serving {
        let key = (stream.to_vec(), group.to_vec());
        let first = {
            let mut serves = lock(&self.state.serves);
            let n = serves.entry(key.clone()).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first {
            self.state.changed.send_modify(|v| *v += 1);
        }
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
        if !b.may_alert_silence(&agent, now) {
            return;
        }
        lock(&b.inner.presence.beats).remove(&agent);
        let silent_ms = now.saturating_sub(self.state.last_heard_ms.load(Ordering::Relaxed));
        tokio::spawn(async move {
            b.silence_alert(&agent, silent_ms, "its connection timed out")
                .await
        });
    }

    /// Takes the session off the list (the connection ended), even while tasks of the
    /// connection still hold it.
    pub fn close(&self) {
        let p = &self.broker.inner.presence;
        let removed = lock(&p.sessions).remove(&self.id);
        if removed.is_some() {
            p.changed.send_modify(|v| *v += 1);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let mut serves = lock(&self.state.serves);
        if let Some(n) = serves.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                serves.remove(&self.key);
                self.state.changed.send_modify(|v| *v += 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cut, Beat, BEAT_GAP_MIN_MS, MISSED_BEATS};

    #[test]
    fn silence_is_three_missed_gaps_once_until_the_next_beat() {
        let mut b = Beat::default();
        b.beat(10_000);
        // One heartbeat says nothing of how often to expect them.
        assert_eq!(b.overdue(1_000_000), None);
        b.beat(25_000);
        assert_eq!(b.gap_ms, 15_000);
        assert_eq!(b.overdue(25_000 + 3 * 15_000), None);
        assert_eq!(b.overdue(25_000 + 3 * 15_000 + 1), Some(45_001));
        b.flagged = true;
        assert_eq!(b.overdue(200_000), None, "once until it beats again");
        b.beat(200_000);
        assert!(!b.flagged);
        assert_eq!(b.overdue(200_001), None);
        // A burst does not make it expected every millisecond.
        b.beat(200_002);
        assert_eq!(b.gap_ms, BEAT_GAP_MIN_MS);
        assert_eq!(b.overdue(200_002 + MISSED_BEATS * BEAT_GAP_MIN_MS), None);
    }

    #[test]
    fn client_names_are_cut_on_a_char_boundary() {
        assert_eq!(cut("cortex-go 0.1.0"), "cortex-go 0.1.0");
        let long = "é".repeat(200); // 400 bytes
        let c = cut(&long);
        assert!(c.len() <= super::CLIENT_BYTES_MAX && c.len() >= super::CLIENT_BYTES_MAX - 1);
        assert!(c.chars().all(|ch| ch == 'é'));
    }
}
