//! Names and numbers of the protocol that are not frames: the streams request/reply uses,
//! the headers a request and its reply parts carry, heartbeat bounds and close codes.

/// Prefix of an agent's inbox stream: requests to `pink` are appended to `cortex:inbox:pink`.
pub const INBOX_PREFIX: &str = "cortex:inbox:";
/// Prefix of the stream where an agent's reply parts are kept (`cortex:replies:<agent>`).
pub const REPLIES_PREFIX: &str = "cortex:replies:";
/// The dead-letter stream unless a group's policy names another.
pub const DLQ: &str = "cortex:dlq";

/// The inbox stream of an agent.
pub fn inbox(agent: &str) -> Vec<u8> {
    format!("{INBOX_PREFIX}{agent}").into_bytes()
}

/// The reply stream of an agent.
pub fn replies(agent: &str) -> Vec<u8> {
    format!("{REPLIES_PREFIX}{agent}").into_bytes()
}

/// The group responders serve their inbox with, so that every instance of one agent shares
/// its requests (each handed to one of them).
pub const RESPONDERS_GROUP: &str = "cortex-responders";

/// Header: a request's correlation ID (32 hex digits); a responder echoes it in `Respond`.
pub const CORRELATION: &str = "cortex-correlation-id";
/// Header of a task's entry: its task ID (a submitted task's, and a request's, is also its
/// correlation ID). In `Request.headers`, the requester's choice of its request's task ID.
pub const TASK: &str = "cortex-task-id";
/// Header of a task's entry (or a `Request`): how long its task is kept once finished, ms
/// (at most the server's `task_keep_ms`; a request's default is 10 minutes).
pub const TASK_KEEP: &str = "cortex-task-keep-ms";
/// Header: the stream a request's reply parts go to.
pub const REPLY_TO: &str = "cortex-reply-to";
/// Header: a request's deadline, Unix ms.
pub const DEADLINE: &str = "cortex-deadline-ms";
/// Header: a stored reply part's kind (`progress`, `final`, `error`).
pub const PART: &str = "cortex-part";

/// Header: when a scheduled message may first be handed to a group, Unix ms (decimal). The
/// message is stored at once and range reads show it; groups receive it from that time on,
/// in lane order. A time not ahead of the server's clock is no schedule (the header goes).
pub const DELIVER_AT: &str = "cortex-deliver-at-ms";
/// Header: instead of [`DELIVER_AT`], a delay after the server stores the message, ms (the
/// server replaces it with [`DELIVER_AT`]). Either is refused, naming the header, when it is
/// not a decimal number or reaches beyond the server's `schedule_ahead_max_ms`.
pub const DELAY: &str = "cortex-delay-ms";

/// Header of a task (`TaskCall::Submit.headers`): `dlq` sends it to the dead-letter stream
/// (reason `canceled`) when it is canceled before a worker took it; `drop` (the default)
/// drops it. Any other value is refused.
pub const ON_CANCEL: &str = "cortex-on-cancel";

/// Heartbeat interval on a quiet subscription when `Subscribe.heartbeat_ms` is 0.
pub const HEARTBEAT_MS: u32 = 5_000;
/// Shortest heartbeat interval a client may ask for (shorter asks are raised to it).
pub const HEARTBEAT_MIN_MS: u32 = 100;

/// The heartbeat interval the server uses for a `Subscribe.heartbeat_ms`.
pub fn heartbeat_ms(asked: u32) -> u32 {
    match asked {
        0 => HEARTBEAT_MS,
        h => h.max(HEARTBEAT_MIN_MS),
    }
}

/// QUIC application close code: authentication failed or did not come in time.
pub const CLOSE_AUTH: u32 = 1;
/// QUIC application close code: the server is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 2;

/// Time a new connection has to send its `Hello`, ms.
pub const AUTH_TIMEOUT_MS: u64 = 10_000;
/// Longest correlation ID a `Respond` may carry, bytes.
pub const CORRELATION_BYTES_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_bounds() {
        assert_eq!(heartbeat_ms(0), HEARTBEAT_MS);
        assert_eq!(heartbeat_ms(1), HEARTBEAT_MIN_MS);
        assert_eq!(heartbeat_ms(2_000), 2_000);
        assert_eq!(inbox("pink"), b"cortex:inbox:pink");
        assert_eq!(replies("pink"), b"cortex:replies:pink");
    }
}
