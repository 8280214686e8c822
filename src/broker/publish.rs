//! Publishing, as every front does it: one submission (one commit) per batch, each message
//! stamped with its producer (the authenticated agent) and its expiry from the broker's clock.

use cortex_storage::{Fields, IdSpec, Lane, Meta, Op, StreamKey};

use super::{Broker, BrokerError, Principal, Replies};

/// One message to publish.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// Field/value pairs (at least one).
    pub fields: Fields,
    /// Priority lane.
    pub lane: Lane,
    /// Time to live from now; past it the message is never handed out.
    pub ttl_ms: Option<u64>,
    /// Idempotency key: a repeat within the window stores nothing and returns the first ID.
    pub key: Option<Vec<u8>>,
    /// Free-form headers.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The idempotency key of Redis 8.6's `XADD ... IDMP producer idempotent-id` (or, with
/// `IDMPAUTO producer`, `iid = None`: one made from the entry's fields, a SHA-256 of each
/// field and value with its length, so the same content from the same producer is stored
/// once). The store keeps these apart from other idempotency keys, per stream and producer
/// (`cortex_storage::idmp`: XCFGSET's duration and maxsize).
pub fn idmp_key(producer: &[u8], iid: Option<&[u8]>, fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    match iid {
        Some(iid) => cortex_storage::idmp::idmp_key(producer, iid),
        None => {
            let mut h = ring::digest::Context::new(&ring::digest::SHA256);
            for (f, v) in fields {
                for part in [f, v] {
                    h.update(&(part.len() as u64).to_be_bytes());
                    h.update(part);
                }
            }
            cortex_storage::idmp::idmp_key(producer, h.finish().as_ref())
        }
    }
}

impl Broker {
    /// Appends `messages` to `stream` (namespace 0) in one commit; one reply per message,
    /// once durable. A message that fails (too large, say) fails alone.
    pub async fn publish(
        &self,
        who: &Principal,
        stream: Vec<u8>,
        messages: Vec<Message>,
    ) -> Result<Replies, BrokerError> {
        let key = StreamKey::new(0, stream);
        let now = self.now_ms();
        let producer = who.agent().map(|a| a.as_bytes().to_vec());
        let ops = messages
            .into_iter()
            .map(|m| Op::Append {
                stream: key.clone(),
                id: IdSpec::Auto,
                fields: m.fields,
                meta: Meta {
                    lane: m.lane,
                    expires_at_ms: m.ttl_ms.map(|t| now.saturating_add(t)),
                    producer: producer.clone(),
                    headers: m.headers,
                },
                idempotency_key: m.key,
                no_mkstream: false,
                trim: None,
            })
            .collect();
        self.submit(who, ops).await
    }
}

#[cfg(test)]
mod tests {
    /// IDMP keys: the same (producer, ID) is one key; the content hash tells fields apart
    /// however they are split, and producers never share keys.
    #[test]
    fn idmp_keys_are_per_producer_and_content() {
        use super::idmp_key;
        let f = |pairs: &[(&str, &str)]| -> Vec<(Vec<u8>, Vec<u8>)> {
            pairs
                .iter()
                .map(|(a, b)| (a.as_bytes().to_vec(), b.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            idmp_key(b"p", Some(b"1"), &[]),
            idmp_key(b"p", Some(b"1"), &f(&[("a", "b")]))
        );
        assert_ne!(
            idmp_key(b"p", Some(b"1"), &[]),
            idmp_key(b"q", Some(b"1"), &[])
        );
        assert_ne!(
            idmp_key(b"p1", Some(b"x"), &[]),
            idmp_key(b"p", Some(b"1x"), &[])
        );
        let auto = |pairs| idmp_key(b"p", None, &f(pairs));
        assert_eq!(auto(&[("a", "b")]), auto(&[("a", "b")]));
        assert_ne!(auto(&[("ab", "")]), auto(&[("a", "b")]));
        assert_ne!(auto(&[("a", "b")]), idmp_key(b"q", None, &f(&[("a", "b")])));
    }

    /// The protocol names the schedule headers the store acts on: they are one pair.
    #[test]
    fn schedule_headers_are_the_stores() {
        use crate::wire::names;
        assert_eq!(
            names::DELIVER_AT.as_bytes(),
            cortex_storage::DELIVER_AT_HEADER
        );
        assert_eq!(names::DELAY.as_bytes(), cortex_storage::DELAY_HEADER);
        assert_eq!(
            names::ON_CANCEL.as_bytes(),
            cortex_storage::ON_CANCEL_HEADER
        );
    }
}
