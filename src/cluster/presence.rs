//! Who serves which inbox on the other nodes, and which push mailboxes wait there: soft
//! state over the cluster links.
//!
//! Mailboxes ride in the same announcements: the leader plans deliveries for them inside
//! its commits (see `core/mailbox.rs`). Each carries the room its node had and how much
//! of the leader's planned reads it had applied when it announced, so the leader's credit
//! for it is that room less what it planned since; it never hands out more than the
//! mailbox had room for. Soft state, not log entries: credit changes with every ack, and a
//! new leader learns every mailbox within a second because the nodes announce again.
//!
//! Each node announces the inboxes its agents serve to every other member: at once when
//! the set changes, and every [`ANNOUNCE_EVERY`] anyway. An announcement holds for
//! [`LEASE`]; a node that stops announcing (killed, cut off) drops out when its lease runs
//! out. Nothing here is durable or goes through the log: "somebody serves agent X" decides
//! only whether a request is refused with "no responders" before anything is proposed,
//! and a node that restarts or a new leader needs nothing rebuilt (the peers announce
//! again within a second). Log entries would cost a commit per subscriber change and be
//! replayed forever for a fact that is stale the moment its node dies.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

pub use crate::core::mailbox::{MailboxAd, RemoteMailbox};

/// How often a node announces its inboxes when nothing changed.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How long an announcement holds.
pub const LEASE: Duration = Duration::from_secs(4);
/// Most inboxes one announcement carries (more are left out, with a warning).
pub const INBOXES_MAX: usize = 10_000;
/// Most mailboxes one announcement carries (more read by themselves, as before).
pub const MAILBOXES_MAX: usize = 10_000;
/// Most agent sessions one announcement carries (more are left out, with a warning).
pub const SESSIONS_MAX: usize = 10_000;
/// Most (stream, group) pairs announced per session.
pub const SERVES_MAX: usize = 256;

/// One node's announcement: its run (random per process start), a sequence number within
/// the run (an older announcement that arrives late is ignored), and the inboxes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Announcement {
    /// The announcing process's run ID.
    pub run: u64,
    /// Increases with each announcement of the run.
    pub seq: u64,
    /// Inbox stream names served there.
    pub inboxes: Vec<Vec<u8>>,
    /// Armed push mailboxes there.
    pub mailboxes: Vec<MailboxAd>,
    /// The agents' sessions there, or `None`: the same as in the run's last announcement
    /// that carried them (they ride only on changes and once a second, not on the
    /// frequent mailbox announcements).
    pub sessions: Option<Vec<SessionAd>>,
}

/// An agent's session on the announcing node, for the cluster-wide list of agents.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionAd {
    /// The agent's name (empty: the anonymous agent).
    pub agent: String,
    /// The front it came over (`quic`, `resp`).
    pub front: String,
    /// Its client library's name and version.
    pub client: String,
    /// When it authenticated, Unix ms.
    pub connected_ms: u64,
    /// When the agent last sent anything on it, Unix ms (as of the announcement).
    pub last_heard_ms: u64,
    /// (stream, group) of its open subscriptions, at most [`SERVES_MAX`].
    pub serves: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Peer {
    run: u64,
    seq: u64,
    inboxes: HashSet<Vec<u8>>,
    mailboxes: Vec<MailboxAd>,
    sessions: Vec<SessionAd>,
    until: Instant,
}

/// The other nodes' announcements.
pub struct Presence {
    peers: Mutex<HashMap<u64, Peer>>,
    version: watch::Sender<u64>,
}

impl Default for Presence {
    fn default() -> Self {
        Presence {
            peers: Mutex::new(HashMap::new()),
            version: watch::Sender::new(0),
        }
    }
}

impl Presence {
    /// Takes node `peer`'s announcement (an older one of the same run is ignored).
    pub fn record(&self, peer: u64, a: Announcement) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get(&peer) {
            if p.run == a.run && a.seq <= p.seq {
                return;
            }
        }
        let inboxes: HashSet<Vec<u8>> = a.inboxes.into_iter().take(INBOXES_MAX).collect();
        let mut changed = peers.get(&peer).is_none_or(|p| p.inboxes != inboxes);
        let mut mailboxes = a.mailboxes;
        mailboxes.truncate(MAILBOXES_MAX);
        let sessions = match a.sessions {
            Some(mut s) => {
                s.truncate(SESSIONS_MAX);
                for one in &mut s {
                    one.serves.truncate(SERVES_MAX);
                }
                changed |= peers.get(&peer).is_none_or(|p| p.sessions != s);
                s
            }
            // Unchanged: what the same run announced last (a new run starts with none).
            None => match peers.get_mut(&peer) {
                Some(p) if p.run == a.run => std::mem::take(&mut p.sessions),
                Some(p) => {
                    changed |= !p.sessions.is_empty();
                    Vec::new()
                }
                None => Vec::new(),
            },
        };
        peers.insert(
            peer,
            Peer {
                run: a.run,
                seq: a.seq,
                inboxes,
                mailboxes,
                sessions,
                until: Instant::now() + LEASE,
            },
        );
        drop(peers);
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
    }

    /// True when another node's live announcement serves `inbox` (a request's check: no
    /// list is built).
    pub fn serves(&self, inbox: &[u8]) -> bool {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .values()
            .any(|p| p.until > now && p.inboxes.contains(inbox))
    }

    /// The other nodes whose live announcement serves `inbox`, in ID order.
    pub fn serving(&self, inbox: &[u8]) -> Vec<u64> {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<u64> = peers
            .iter()
            .filter(|(_, p)| p.until > now && p.inboxes.contains(inbox))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The live mailboxes of other nodes on one stream.
    pub fn mailboxes(&self, ns: u16, stream: &[u8]) -> Vec<RemoteMailbox> {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (node, p) in peers.iter().filter(|(_, p)| p.until > now) {
            for ad in p
                .mailboxes
                .iter()
                .filter(|m| m.ns == ns && m.stream == stream)
            {
                out.push(RemoteMailbox {
                    node: *node,
                    run: p.run,
                    seq: p.seq,
                    ad: ad.clone(),
                });
            }
        }
        out
    }

    /// True while a live announcement of `node`'s run `run` lists mailbox `id`.
    pub fn has_mailbox(&self, node: u64, run: u64, id: u64) -> bool {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(&node).is_some_and(|p| {
            p.run == run && p.until > now && p.mailboxes.iter().any(|m| m.id == id)
        })
    }

    /// The latest live announcement of each node that has armed mailboxes: (node, run,
    /// sequence number).
    pub fn mailbox_nodes(&self) -> Vec<(u64, u64, u64)> {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .iter()
            .filter(|(_, p)| p.until > now && !p.mailboxes.is_empty())
            .map(|(id, p)| (*id, p.run, p.seq))
            .collect()
    }

    /// The agents' sessions on the other nodes whose announcement is live: (node, session),
    /// in node order.
    pub fn sessions(&self) -> Vec<(u64, SessionAd)> {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(u64, SessionAd)> = peers
            .iter()
            .filter(|(_, p)| p.until > now)
            .flat_map(|(id, p)| p.sessions.iter().map(|s| (*id, s.clone())))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Changes whenever a peer's set of inboxes or its sessions changed (lease ends are
    /// not announced: a waiter rechecks at least every [`ANNOUNCE_EVERY`]).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(run: u64, seq: u64, inboxes: &[&str]) -> Announcement {
        Announcement {
            run,
            seq,
            inboxes: inboxes.iter().map(|s| s.as_bytes().to_vec()).collect(),
            mailboxes: Vec::new(),
            sessions: None,
        }
    }

    #[test]
    fn a_late_announcement_never_overwrites_a_newer_one() {
        let p = Presence::default();
        p.record(2, a(7, 2, &["cortex:inbox:pink"]));
        p.record(2, a(7, 1, &[]));
        assert_eq!(p.serving(b"cortex:inbox:pink"), vec![2]);
        // A restarted node (new run) starts its sequence again.
        p.record(2, a(8, 1, &[]));
        assert!(p.serving(b"cortex:inbox:pink").is_empty());
    }

    #[test]
    fn several_nodes_serve_one_inbox() {
        let p = Presence::default();
        let mut changes = p.changes();
        p.record(3, a(1, 1, &["cortex:inbox:x"]));
        p.record(2, a(1, 1, &["cortex:inbox:x", "cortex:inbox:y"]));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(p.serving(b"cortex:inbox:x"), vec![2, 3]);
        assert!(p.serves(b"cortex:inbox:y") && !p.serves(b"cortex:inbox:z"));
        assert_eq!(p.serving(b"cortex:inbox:y"), vec![2]);
        // The same set again is no change.
        p.record(2, a(1, 2, &["cortex:inbox:y", "cortex:inbox:x"]));
        assert!(!changes.has_changed().unwrap());
    }

    fn session(agent: &str) -> SessionAd {
        SessionAd {
            agent: agent.into(),
            front: "quic".into(),
            client: "cortex-go/0.1.0".into(),
            connected_ms: 1,
            last_heard_ms: 2,
            serves: vec![(b"cortex:inbox:pink".to_vec(), b"cortex-responders".to_vec())],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_hold_until_announced_again_and_end_with_the_run_or_lease() {
        let p = Presence::default();
        let mut first = a(7, 1, &[]);
        first.sessions = Some(vec![session("pink")]);
        p.record(2, first);
        p.record(3, a(1, 1, &[]));
        // A mailbox announcement without sessions keeps the ones announced before.
        p.record(2, a(7, 2, &[]));
        assert_eq!(p.sessions(), vec![(2, session("pink"))]);
        // An empty list is an announcement too.
        let mut gone = a(7, 3, &[]);
        gone.sessions = Some(Vec::new());
        p.record(2, gone);
        assert!(p.sessions().is_empty());
        // A restarted node's announcement without sessions has none yet.
        let mut again = a(7, 4, &[]);
        again.sessions = Some(vec![session("pink"), session("harold")]);
        p.record(2, again);
        p.record(2, a(8, 1, &[]));
        assert!(p.sessions().is_empty());
        let mut back = a(8, 2, &[]);
        back.sessions = Some(vec![session("pink")]);
        p.record(2, back);
        tokio::time::advance(LEASE + Duration::from_millis(1)).await;
        assert!(
            p.sessions().is_empty(),
            "a node that stopped announcing drops out"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_announcement_holds_for_its_lease() {
        let p = Presence::default();
        p.record(2, a(1, 1, &["cortex:inbox:pink"]));
        tokio::time::advance(LEASE - Duration::from_millis(1)).await;
        assert_eq!(p.serving(b"cortex:inbox:pink"), vec![2]);
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(p.serving(b"cortex:inbox:pink").is_empty());
    }
}
