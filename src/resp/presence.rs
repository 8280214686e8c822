//! A RESP connection in the broker's presence list: a session while the connection acts
//! as an agent (from connect on a broker without tokens, from AUTH otherwise), named
//! after the client library it reports (`CLIENT SETINFO LIB-NAME / LIB-VER`, else
//! `CLIENT SETNAME`), last heard at its last command, serving the (stream, group) pairs it
//! read with XREADGROUP (at most [`SERVES_MAX`]). Synced after each batch of commands and
//! before a command that may block (a reader waiting with XREADGROUP BLOCK is listed as
//! serving its group while it waits), comparing a few bytes when nothing changed.

use std::collections::BTreeMap;

use crate::broker::presence::SERVES_MAX;
use crate::broker::presence::{Serving, Session};
use crate::broker::Broker;

use super::conn::Conn;

/// The presence of one RESP connection.
#[derive(Default)]
pub(super) struct Presence {
    session: Option<Session>,
    /// The connection's name and library (name, version) as last seen.
    named: (Vec<u8>, Vec<u8>, Vec<u8>),
    /// The connection's [`Conn::ident`] when they were last looked at.
    seen: Option<u64>,
    serving: BTreeMap<(Vec<u8>, Vec<u8>), Serving>,
}

impl Presence {
    /// Brings the session in line with the connection after a batch of commands.
    pub fn sync(&mut self, conn: &mut Conn, broker: &Broker) {
        let Some(who) = conn.principal() else {
            // Not authenticated (or RESET on a broker with tokens): not an agent.
            self.serving.clear();
            self.session = None;
            self.seen = None;
            conn.read_groups.clear();
            return;
        };
        // The name, library and principal are looked at only when they may have changed.
        if self.seen != Some(conn.ident()) {
            self.seen = Some(conn.ident());
            let agent = who.agent().unwrap_or("");
            let (lib, ver) = conn.lib();
            let renamed = self.named.0 != conn.name() || self.named.1 != lib || self.named.2 != ver;
            if renamed {
                self.named = (conn.name().to_vec(), lib.to_vec(), ver.to_vec());
            }
            if self.session.as_ref().is_none_or(|s| s.agent() != agent) {
                // First command, or AUTH as another agent: a new session.
                self.serving.clear();
                self.session = Some(broker.register_session(who, "resp", &client_name(conn)));
            } else if renamed {
                if let Some(s) = &self.session {
                    s.set_client(&client_name(conn));
                }
            }
        }
        let Some(session) = &self.session else {
            return;
        };
        session.heard_at(conn.last_ms);
        for key in conn.read_groups.drain(..) {
            if self.serving.len() >= SERVES_MAX {
                break;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = self.serving.entry(key) {
                let guard = session.serving(&e.key().0, &e.key().1);
                e.insert(guard);
            }
        }
        conn.read_groups.clear();
    }
}

/// `lib-name/lib-ver` as the client reported them, else its connection name.
fn client_name(conn: &Conn) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match conn.lib() {
        ([], []) => text(conn.name()),
        (name, []) => text(name),
        (name, ver) => format!("{}/{}", text(name), text(ver)),
    }
}
