//! Who is asking: authentication by agent token, compared in constant time. Every broker
//! call takes a [`Principal`]; a front gets one only from [`super::Broker::authenticate`]
//! (or [`super::Broker::open_session`] when no tokens are configured), so nothing reaches
//! the broker unauthenticated. Its [`Permissions`] (`perm.rs`) decide what it may do.

use std::collections::BTreeMap;
use std::sync::Arc;

use cortex_storage::{Op, Query, StreamKey};

use super::perm::{Asker, Permissions, Refusal, Right};

/// An authenticated caller with its rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    agent: Option<String>,
    perms: Arc<Permissions>,
}

impl Principal {
    /// The broker's own tasks (timer, retention, alerts), and the anonymous client of a
    /// broker without tokens: every right.
    pub(crate) fn internal() -> Principal {
        Principal {
            agent: None,
            perms: Arc::new(Permissions::all()),
        }
    }

    /// An agent with the given rights.
    pub(crate) fn agent_with(name: &str, perms: Permissions) -> Principal {
        Principal {
            agent: Some(name.to_string()),
            perms: Arc::new(perms),
        }
    }

    /// Its rights.
    pub fn permissions(&self) -> &Permissions {
        &self.perms
    }

    /// The agent's name (`None`: anonymous on a broker without tokens, or internal).
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// This principal as the permission checks see it ([`super::perm`] owns them).
    pub fn asker(&self) -> Asker<'_> {
        Asker {
            agent: self.agent(),
            perms: &self.perms,
        }
    }

    /// May this principal use `right` on `stream`?
    pub fn may(&self, right: Right, stream: &[u8]) -> bool {
        self.asker().may(right, stream)
    }

    /// Checks one right, on a stream or broker-wide (`None`).
    pub(crate) fn need(&self, right: Right, stream: Option<&StreamKey>) -> Result<(), Refusal> {
        self.asker().need(right, stream)
    }

    /// Checks a broker-wide administrative action (backup, say).
    pub fn authorize_admin(&self) -> Result<(), Refusal> {
        self.asker().authorize_admin()
    }

    /// Checks one op.
    pub fn authorize_op(&self, op: &Op) -> Result<(), Refusal> {
        self.asker().authorize_op(op)
    }

    /// Checks a read.
    pub fn authorize_query(&self, q: &Query) -> Result<(), Refusal> {
        self.asker().authorize_query(q)
    }

    /// Checks a batch of ops.
    pub fn authorize_ops(&self, ops: &[Op]) -> Result<(), Refusal> {
        self.asker().authorize_ops(ops)
    }
}

/// Why authentication failed. One variant on purpose: the reply must not say whether the
/// agent or the token was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No tokens are configured, so there is nothing to authenticate against.
    NotConfigured,
    /// Unknown agent or wrong token.
    Denied,
}

/// Equal in time independent of where the inputs differ (only their lengths leak).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// Checks `token` (and, if given, the agent's name) against every configured token without
/// stopping at the first match, so timing does not tell which agent or prefix matched.
/// `default` as the agent name means "any agent" (Redis clients send `AUTH default pw`).
pub(crate) fn authenticate(
    tokens: &BTreeMap<String, String>,
    perms: &BTreeMap<String, Permissions>,
    agent: Option<&[u8]>,
    token: &[u8],
) -> Result<Principal, AuthError> {
    if tokens.is_empty() {
        return Err(AuthError::NotConfigured);
    }
    let any = agent.is_none_or(|a| a == b"default");
    let mut found: Option<&String> = None;
    for (name, t) in tokens {
        let token_ok = ct_eq(t.as_bytes(), token);
        let name_ok = any || agent.is_some_and(|a| ct_eq(name.as_bytes(), a));
        if token_ok && name_ok && found.is_none() {
            found = Some(name);
        }
    }
    found
        .map(|name| Principal::agent_with(name, perms.get(name).cloned().unwrap_or_default()))
        .ok_or(AuthError::Denied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_whole_and_by_agent() {
        let mut t = BTreeMap::new();
        t.insert("harold".to_string(), "secret-h".to_string());
        t.insert("pink".to_string(), "secret-p".to_string());
        assert_eq!(
            authenticate(&t, &BTreeMap::new(), None, b"secret-p")
                .unwrap()
                .agent(),
            Some("pink")
        );
        assert_eq!(
            authenticate(&t, &BTreeMap::new(), Some(b"harold"), b"secret-h")
                .unwrap()
                .agent(),
            Some("harold")
        );
        assert_eq!(
            authenticate(&t, &BTreeMap::new(), Some(b"default"), b"secret-h")
                .unwrap()
                .agent(),
            Some("harold")
        );
        assert_eq!(
            authenticate(&t, &BTreeMap::new(), Some(b"pink"), b"secret-h"),
            Err(AuthError::Denied)
        );
        assert_eq!(
            authenticate(&t, &BTreeMap::new(), None, b"secret"),
            Err(AuthError::Denied)
        );
        assert_eq!(
            authenticate(&t, &BTreeMap::new(), None, b"secret-hh"),
            Err(AuthError::Denied)
        );
        assert_eq!(
            authenticate(&BTreeMap::new(), &BTreeMap::new(), None, b"x"),
            Err(AuthError::NotConfigured)
        );
        assert!(ct_eq(b"", b""));
        assert!(!ct_eq(b"a", b""));
    }
}
