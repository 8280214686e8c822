//! Who may do what: per-agent permissions from the config, checked here, in the core, for
//! every op and query any front sends, so QUIC, RESP and HTTP refuse the same things with
//! the same words.
//!
//! Three rights, each over stream-name patterns (Redis globs):
//! - **publish**: append to a stream.
//! - **consume**: read it, create and use consumer groups on it (read, ack, nack, claim,
//!   in-progress), see its info and pending lists.
//! - **admin**: everything else: policies, DLQ list, redrive and purge, deletes, trims,
//!   renames, XSETID, group destruction; and every stream.
//!
//! An agent always may publish to and consume its own inbox (`cortex:inbox:<agent>`) and
//! consume its own replies (`cortex:replies:<agent>`). The broker's own tasks and the
//! anonymous principal of a broker without tokens may do everything.

use cortex_storage::{Op, Query, StreamKey};

use crate::glob::glob;

pub use cortex_protocol::names::{inbox, replies, INBOX_PREFIX, REPLIES_PREFIX};

/// An agent's rights, as configured (`[agents.NAME]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Permissions {
    /// Streams it may publish to (globs).
    pub publish: Vec<String>,
    /// Streams it may consume (globs).
    pub consume: Vec<String>,
    /// Administration, and every stream.
    pub admin: bool,
}

impl Permissions {
    /// Everything (anonymous on a token-less broker, the broker's own tasks).
    pub fn all() -> Permissions {
        Permissions {
            publish: vec!["*".into()],
            consume: vec!["*".into()],
            admin: true,
        }
    }
}

/// A right over a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right {
    /// Append.
    Publish,
    /// Read and use groups.
    Consume,
    /// Administer.
    Admin,
}

impl Right {
    fn verb(self) -> &'static str {
        match self {
            Right::Publish => "publish to",
            Right::Consume => "consume from",
            Right::Admin => "administer",
        }
    }
}

/// A refusal, naming who was refused what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The agent.
    pub agent: String,
    /// The right it lacks.
    pub right: Right,
    /// The stream (`None`: a broker-wide operation).
    pub stream: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.stream {
            Some(s) => write!(
                f,
                "agent '{}' may not {} stream '{}'",
                self.agent,
                self.right.verb(),
                s
            ),
            None => write!(
                f,
                "agent '{}' may not do this: it needs the admin permission",
                self.agent
            ),
        }
    }
}

fn matches(patterns: &[String], name: &[u8]) -> bool {
    patterns.iter().any(|p| glob(p.as_bytes(), name))
}

/// Who asks: an agent's name (`None`: anonymous or the broker itself) and its permissions.
/// [`super::Principal`] hands one out for every check.
#[derive(Clone, Copy, Debug)]
pub struct Asker<'a> {
    /// The agent.
    pub agent: Option<&'a str>,
    /// Its permissions.
    pub perms: &'a Permissions,
}

impl Asker<'_> {
    /// May this principal use `right` on `stream`?
    pub fn may(&self, right: Right, stream: &[u8]) -> bool {
        let p = self.perms;
        if p.admin {
            return true;
        }
        if let Some(agent) = self.agent {
            let own_inbox = stream.strip_prefix(INBOX_PREFIX.as_bytes()) == Some(agent.as_bytes());
            let own_replies =
                stream.strip_prefix(REPLIES_PREFIX.as_bytes()) == Some(agent.as_bytes());
            if own_inbox && right != Right::Admin {
                return true;
            }
            if own_replies && right == Right::Consume {
                return true;
            }
        }
        match right {
            Right::Publish => matches(&p.publish, stream),
            Right::Consume => matches(&p.consume, stream),
            Right::Admin => false,
        }
    }

    pub fn need(&self, right: Right, stream: Option<&StreamKey>) -> Result<(), Refusal> {
        let ok = match stream {
            Some(k) => self.may(right, &k.name),
            None => self.perms.admin,
        };
        if ok {
            return Ok(());
        }
        Err(Refusal {
            agent: self.agent.unwrap_or("anonymous").to_string(),
            right,
            stream: stream.map(|k| String::from_utf8_lossy(&k.name).into_owned()),
        })
    }

    /// Checks a broker-wide administrative action (backup, say).
    pub fn authorize_admin(&self) -> Result<(), Refusal> {
        self.need(Right::Admin, None)
    }

    /// Checks one op.
    pub fn authorize_op(&self, op: &Op) -> Result<(), Refusal> {
        if self.perms.admin {
            return Ok(());
        }
        use Right::*;
        match op {
            // XADD ... DELREF takes the trimmed entries out of every group's pending list,
            // as XTRIM ... DELREF and XDELEX ... DELREF do: an admin's right too.
            Op::Append {
                stream,
                trim: Some(t),
                ..
            } if t.refs == cortex_storage::RefPolicy::DelRef => {
                self.need(Publish, Some(stream))?;
                self.need(Admin, Some(stream))
            }
            Op::Append { stream, .. } => self.need(Publish, Some(stream)),
            Op::CreateGroup { stream, .. }
            | Op::SetGroupId { stream, .. }
            | Op::CreateConsumer { stream, .. }
            | Op::DeleteConsumer { stream, .. }
            | Op::Ack { stream, .. }
            | Op::Nack { stream, .. }
            | Op::NackMode { stream, .. }
            | Op::NackForce { stream, .. }
            | Op::Claim { stream, .. }
            | Op::AutoClaim { stream, .. }
            | Op::Progress { stream, .. }
            | Op::Deliver { stream, .. } => self.need(Consume, Some(stream)),
            Op::ReadGroup { streams, .. } | Op::ReadGroupEx { streams, .. } => streams
                .iter()
                .try_for_each(|(s, _)| self.need(Consume, Some(s))),
            Op::Delete { stream, .. }
            | Op::Trim { stream, .. }
            | Op::SetId { stream, .. }
            | Op::DeleteStream { stream }
            | Op::DestroyGroup { stream, .. }
            | Op::SetPolicy { stream, .. }
            | Op::PatchPolicy { stream, .. }
            | Op::ConfigureIdmp { stream, .. } => self.need(Admin, Some(stream)),
            // XACKDEL ... ACKED deletes only what no group needs any more: a consumer's
            // right; any other deletion is an admin's, as XDEL is.
            Op::DeleteEx {
                stream,
                ack: Some(_),
                refs: cortex_storage::RefPolicy::Acked,
                ..
            } => self.need(Consume, Some(stream)),
            Op::DeleteEx { stream, .. } => self.need(Admin, Some(stream)),
            Op::RenameStream { from, .. } => self.need(Admin, Some(from)),
            Op::DlqRedrive { dlq, .. } | Op::DlqPurge { dlq, .. } => self.need(Admin, Some(dlq)),
            Op::Query(q) => self.authorize_query(q),
            // Flushing a namespace, ticks, and ops added later: admin only.
            _ => self.need(Admin, None),
        }
    }

    /// Checks a read.
    pub fn authorize_query(&self, q: &Query) -> Result<(), Refusal> {
        if self.perms.admin {
            return Ok(());
        }
        match q {
            // Names only; every agent may list them.
            Query::Names { .. } => Ok(()),
            Query::DeadLetters { dlq, .. } => self.need(Right::Admin, Some(dlq)),
            // Every other read needs the consume right on each stream it reads.
            q => q
                .streams()
                .into_iter()
                .try_for_each(|s| self.need(Right::Consume, Some(s))),
        }
    }

    /// Checks a batch of ops.
    pub fn authorize_ops(&self, ops: &[Op]) -> Result<(), Refusal> {
        ops.iter().try_for_each(|op| self.authorize_op(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<'a>(agent: &'a str, perms: &'a Permissions) -> Asker<'a> {
        Asker {
            agent: Some(agent),
            perms,
        }
    }

    #[test]
    fn rights_follow_patterns_and_inboxes() {
        let pink = Permissions {
            publish: vec!["tasks:*".into(), "cortex:inbox:*".into()],
            consume: vec!["tasks:pink".into()],
            admin: false,
        };
        let p = check("pink", &pink);
        assert!(p.may(Right::Publish, b"tasks:red"));
        assert!(!p.may(Right::Consume, b"tasks:red"));
        assert!(p.may(Right::Consume, b"tasks:pink"));
        assert!(p.may(Right::Consume, b"cortex:inbox:pink"));
        assert!(p.may(Right::Publish, b"cortex:inbox:pink"));
        assert!(p.may(Right::Consume, b"cortex:replies:pink"));
        assert!(!p.may(Right::Publish, b"cortex:replies:pink"));
        assert!(!p.may(Right::Consume, b"cortex:inbox:red"));
        assert!(!p.may(Right::Admin, b"cortex:inbox:pink"));
        let nothing = Permissions::default();
        let none = check("red", &nothing);
        assert!(none.may(Right::Consume, b"cortex:inbox:red"));
        assert!(!none.may(Right::Consume, b"cortex:inbox:redx"));
        let e = none
            .authorize_op(&Op::DeleteStream {
                stream: StreamKey::new(0, "x"),
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "agent 'red' may not administer stream 'x'");
        assert!(none.authorize_op(&Op::Tick).is_err());
        assert!(check("a", &Permissions::all())
            .authorize_op(&Op::Tick)
            .is_ok());
        let all = Permissions::all();
        let internal = Asker {
            agent: None,
            perms: &all,
        };
        assert!(internal.authorize_op(&Op::Tick).is_ok());
    }

    #[test]
    fn a_consumer_may_delete_only_what_no_group_needs() {
        use cortex_storage::RefPolicy;
        let pink = Permissions {
            consume: vec!["tasks:pink".into()],
            ..Permissions::default()
        };
        let p = check("pink", &pink);
        let op = |ack: Option<&str>, refs| Op::DeleteEx {
            stream: StreamKey::new(0, "tasks:pink"),
            ack: ack.map(|g| g.as_bytes().to_vec()),
            ids: Vec::new(),
            refs,
        };
        assert!(p.authorize_op(&op(Some("g"), RefPolicy::Acked)).is_ok());
        assert!(p.authorize_op(&op(Some("g"), RefPolicy::KeepRef)).is_err());
        assert!(p.authorize_op(&op(None, RefPolicy::Acked)).is_err());
    }

    #[test]
    fn a_publisher_trims_away_other_groups_references_only_as_an_admin() {
        use cortex_storage::{IdSpec, Meta, RefPolicy, Trim, TrimStrategy};
        let harold = Permissions {
            publish: vec!["tasks:*".into()],
            ..Permissions::default()
        };
        let p = check("harold", &harold);
        let op = |refs| Op::Append {
            stream: StreamKey::new(0, "tasks:pink"),
            id: IdSpec::Auto,
            fields: vec![(b"f".to_vec(), b"v".to_vec())],
            meta: Meta::default(),
            idempotency_key: None,
            no_mkstream: false,
            trim: Some(Trim {
                refs,
                ..Trim::new(TrimStrategy::MaxLen(10), false, None)
            }),
        };
        assert!(p.authorize_op(&op(RefPolicy::KeepRef)).is_ok());
        assert!(p.authorize_op(&op(RefPolicy::Acked)).is_ok());
        assert!(p.authorize_op(&op(RefPolicy::DelRef)).is_err());
    }
}
