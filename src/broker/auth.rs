//! Who is asking: authentication by agent token, compared in constant time. Every broker
//! call takes a [`Principal`]; a front gets one only from [`super::Broker::authenticate`]
//! (or [`super::Broker::open_session`] when no tokens are configured), so nothing reaches
//! the broker unauthenticated. Per-agent permissions (publish, consume, admin) hang off the
//! principal when they come.

use std::collections::BTreeMap;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    agent: Option<String>,
}

impl Principal {
    /// The broker's own tasks (timer, retention, alerts).
    pub(crate) fn internal() -> Principal {
        Principal { agent: None }
    }

    /// The agent's name (`None`: anonymous on a broker without tokens, or internal).
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
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
        .map(|name| Principal {
            agent: Some(name.clone()),
        })
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
            authenticate(&t, None, b"secret-p").unwrap().agent(),
            Some("pink")
        );
        assert_eq!(
            authenticate(&t, Some(b"harold"), b"secret-h")
                .unwrap()
                .agent(),
            Some("harold")
        );
        assert_eq!(
            authenticate(&t, Some(b"default"), b"secret-h")
                .unwrap()
                .agent(),
            Some("harold")
        );
        assert_eq!(
            authenticate(&t, Some(b"pink"), b"secret-h"),
            Err(AuthError::Denied)
        );
        assert_eq!(authenticate(&t, None, b"secret"), Err(AuthError::Denied));
        assert_eq!(authenticate(&t, None, b"secret-hh"), Err(AuthError::Denied));
        assert_eq!(
            authenticate(&BTreeMap::new(), None, b"x"),
            Err(AuthError::NotConfigured)
        );
        assert!(ct_eq(b"", b""));
        assert!(!ct_eq(b"a", b""));
    }
}
