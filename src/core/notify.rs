//! Wake-ups for blocked readers and mailboxes, keyed by stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use cortex_storage::StreamKey;
use tokio::sync::Notify;

use super::mailbox::Mailbox;

/// One registration.
enum Waiter {
    /// A blocked reader: woken by anything that happens to the stream.
    Reader(Weak<Notify>),
    /// A push subscription's mailbox: decides itself what concerns it
    /// ([`Mailbox::wake`]), and is served by the writer ([`Notifier::mailboxes`]).
    Mailbox(Weak<Mailbox>),
}

impl Waiter {
    fn live(&self) -> bool {
        match self {
            Waiter::Reader(w) => w.strong_count() > 0,
            Waiter::Mailbox(w) => w.strong_count() > 0,
        }
    }

    /// Wakes it; false when it is gone.
    fn wake(&self, covered: Option<u64>) -> bool {
        match self {
            Waiter::Reader(w) => w.upgrade().map(|n| n.notify_one()).is_some(),
            Waiter::Mailbox(w) => w.upgrade().map(|m| m.wake(covered)).is_some(),
        }
    }
}

/// Blocked readers register a [`Notify`] per stream they wait on, push subscriptions their
/// [`Mailbox`]; the writer notifies after each commit. A reader that timed out simply drops
/// its `Notify`; dead registrations are pruned whenever the stream is touched, so the map
/// never holds more than the live waiters plus one stale entry per stream.
#[derive(Default)]
pub struct Notifier {
    waiters: Mutex<HashMap<StreamKey, Vec<Waiter>>>,
}

impl Notifier {
    fn add(&self, key: &StreamKey, w: Waiter) {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(key.clone()).or_default();
        list.retain(Waiter::live);
        list.push(w);
    }

    /// Registers `n` to be woken when `key` changes.
    pub fn subscribe(&self, key: &StreamKey, n: &Arc<Notify>) {
        self.add(key, Waiter::Reader(Arc::downgrade(n)));
    }

    /// Registers a mailbox on its stream.
    pub fn subscribe_mailbox(&self, m: &Arc<Mailbox>) {
        self.add(&m.stream, Waiter::Mailbox(Arc::downgrade(m)));
    }

    /// The live mailboxes of `key`, in the order they registered.
    pub fn mailboxes(&self, key: &StreamKey) -> Vec<Arc<Mailbox>> {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map_or_else(Vec::new, |list| {
            list.iter()
                .filter_map(|w| match w {
                    Waiter::Mailbox(m) => m.upgrade(),
                    Waiter::Reader(_) => None,
                })
                .collect()
        })
    }

    /// Wakes everybody waiting on `key`. `covered`: what happened is appends a leader
    /// planned mailbox reads for (see [`Mailbox::wake`]).
    pub fn notify(&self, key: &StreamKey, covered: Option<u64>) {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(key) {
            list.retain(|w| w.wake(covered));
            if list.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Wakes every waiter (shutdown, a swapped store).
    pub fn notify_all(&self) {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for list in map.values() {
            for w in list {
                w.wake(None);
            }
        }
    }

    /// Every live mailbox (announcements).
    pub fn all_mailboxes(&self) -> Vec<Arc<Mailbox>> {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .flatten()
            .filter_map(|w| match w {
                Waiter::Mailbox(m) => m.upgrade(),
                Waiter::Reader(_) => None,
            })
            .collect()
    }

    /// Streams with waiters (INFO).
    pub fn keys_waited_on(&self) -> usize {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
