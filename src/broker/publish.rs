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
