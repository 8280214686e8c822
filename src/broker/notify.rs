//! Wake-ups for blocked readers, keyed by stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use cortex_storage::StreamKey;
use tokio::sync::Notify;

/// Blocked readers register a [`Notify`] per stream they wait on; the writer notifies after
/// each commit. A reader that timed out simply drops its `Notify`; dead registrations are
/// pruned whenever the stream is touched, so the map never holds more than the live waiters
/// plus one stale entry per stream.
#[derive(Default)]
pub struct Notifier {
    waiters: Mutex<HashMap<StreamKey, Vec<Weak<Notify>>>>,
}

impl Notifier {
    /// Registers `n` to be woken when `key` changes.
    pub fn subscribe(&self, key: &StreamKey, n: &Arc<Notify>) {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(key.clone()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(n));
    }

    /// Wakes everybody waiting on `key`.
    pub fn notify(&self, key: &StreamKey) {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(key) {
            list.retain(|w| match w.upgrade() {
                Some(n) => {
                    n.notify_one();
                    true
                }
                None => false,
            });
            if list.is_empty() {
                map.remove(key);
            }
        }
    }

    /// Wakes every waiter (shutdown).
    pub fn notify_all(&self) {
        let map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for list in map.values() {
            for n in list.iter().filter_map(Weak::upgrade) {
                n.notify_one();
            }
        }
    }

    /// Streams with waiters (INFO).
    pub fn keys_waited_on(&self) -> usize {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
