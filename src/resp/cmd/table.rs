//! The command table: arity and flags, for dispatch and for COMMAND / COMMAND DOCS.

/// One command's description.
pub struct Spec {
    /// Upper-case name.
    pub name: &'static str,
    /// Redis arity: exact when positive, minimum when negative (counting the name).
    pub arity: i32,
    /// Redis command flags.
    pub flags: &'static [&'static str],
    /// First key position (0: none).
    pub first_key: i32,
    /// Last key position (-1: last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// Group for COMMAND DOCS.
    pub group: &'static str,
    /// Summary for COMMAND DOCS.
    pub summary: &'static str,
}

impl Spec {
    /// A container of subcommands (`XGROUP CREATE ...`): its `HELP` takes no arguments.
    pub fn is_container(&self) -> bool {
        matches!(
            self.name,
            "XGROUP" | "XINFO" | "CLIENT" | "CONFIG" | "COMMAND" | "FUNCTION" | "CX.DLQ"
        )
    }

    /// True when `n` arguments (with the name) fit the arity.
    pub fn arity_ok(&self, n: usize) -> bool {
        let n = n as i32;
        if self.arity >= 0 {
            n == self.arity
        } else {
            n >= -self.arity
        }
    }
}

const W: &[&str] = &["write"];
const WF: &[&str] = &["write", "denyoom", "fast"];
const R: &[&str] = &["readonly"];
const RF: &[&str] = &["readonly", "fast"];
const F: &[&str] = &["fast"];
const A: &[&str] = &["admin"];

macro_rules! spec {
    ($name:expr, $arity:expr, $flags:expr, $fk:expr, $lk:expr, $st:expr, $group:expr, $summary:expr) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            first_key: $fk,
            last_key: $lk,
            step: $st,
            group: $group,
            summary: $summary,
        }
    };
}

/// Every command the RESP port knows.
pub static COMMANDS: &[Spec] = &[
    spec!("XADD", -5, WF, 1, 1, 1, "stream", "Appends a new message to a stream. Creates the key if it doesn't exist."),
    spec!("XTRIM", -4, W, 1, 1, 1, "stream", "Deletes messages from the beginning of a stream."),
    spec!("XDEL", -3, &["write", "fast"], 1, 1, 1, "stream", "Returns the number of messages after removing them from a stream."),
    spec!("XLEN", 2, RF, 1, 1, 1, "stream", "Return the number of messages in a stream."),
    spec!("XRANGE", -4, R, 1, 1, 1, "stream", "Returns the messages from a stream within a range of IDs."),
    spec!("XREVRANGE", -4, R, 1, 1, 1, "stream", "Returns the messages from a stream within a range of IDs in reverse order."),
    spec!("XREAD", -4, &["readonly", "blocking", "movablekeys"], 0, 0, 0, "stream", "Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise."),
    spec!("XREADGROUP", -7, &["write", "blocking", "movablekeys"], 0, 0, 0, "stream", "Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise."),
    spec!("XACK", -4, &["write", "fast"], 1, 1, 1, "stream", "Returns the number of messages that were successfully acknowledged by the consumer group member of a stream."),
    spec!("XACKDEL", -6, &["write", "fast"], 1, 1, 1, "stream", "Acknowledges messages in a consumer group and deletes them from the stream, minding the groups' references (Redis 8.2)."),
    spec!("XNACK", -7, &["write", "fast"], 1, 1, 1, "stream", "Gives pending messages back to their consumer group: SILENT, FAIL or FATAL, mapped onto the group's delivery policy (Redis 8.8)."),
    spec!("XCFGSET", -4, &["write", "fast"], 1, 1, 1, "stream", "Sets a stream's idempotent-production settings: IDMP-DURATION and IDMP-MAXSIZE (Redis 8.6)."),
    spec!("XDELEX", -5, &["write", "fast"], 1, 1, 1, "stream", "Deletes messages from a stream, minding the consumer groups' references (Redis 8.2)."),
    spec!("XPENDING", -3, R, 1, 1, 1, "stream", "Returns the information and entries from a stream consumer group's pending entries list."),
    spec!("XCLAIM", -6, &["write", "fast"], 1, 1, 1, "stream", "Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member."),
    spec!("XAUTOCLAIM", -6, &["write", "fast"], 1, 1, 1, "stream", "Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member."),
    spec!("XGROUP", -2, W, 2, 2, 1, "stream", "A container for consumer groups commands."),
    spec!("XINFO", -2, R, 2, 2, 1, "stream", "A container for stream introspection commands."),
    spec!("XSETID", -3, WF, 1, 1, 1, "stream", "An internal command for replicating stream values."),
    spec!("PING", -1, F, 0, 0, 0, "connection", "Returns the server's liveliness response."),
    spec!("ECHO", 2, F, 0, 0, 0, "connection", "Returns the given string."),
    spec!("HELLO", -1, F, 0, 0, 0, "connection", "Handshakes with the Redis server."),
    spec!("AUTH", -2, F, 0, 0, 0, "connection", "Authenticates the connection."),
    spec!("SELECT", 2, F, 0, 0, 0, "connection", "Changes the selected database."),
    spec!("QUIT", -1, F, 0, 0, 0, "connection", "Closes the connection."),
    spec!("RESET", 1, F, 0, 0, 0, "connection", "Resets the connection."),
    spec!("CLIENT", -2, &[], 0, 0, 0, "connection", "A container for client connection commands."),
    spec!("COMMAND", -1, &["loading", "stale"], 0, 0, 0, "server", "Returns detailed information about all commands."),
    spec!("INFO", -1, &["loading", "stale"], 0, 0, 0, "server", "Returns information and statistics about the server."),
    spec!("CONFIG", -2, A, 0, 0, 0, "server", "A container for server configuration commands."),
    spec!("DBSIZE", 1, RF, 0, 0, 0, "server", "Returns the number of keys in the database."),
    spec!("DEL", -2, W, 1, -1, 1, "generic", "Deletes one or more keys."),
    spec!("UNLINK", -2, &["write", "fast"], 1, -1, 1, "generic", "Asynchronously deletes one or more keys."),
    spec!("EXISTS", -2, RF, 1, -1, 1, "generic", "Determines whether one or more keys exist."),
    spec!("TYPE", 2, RF, 1, 1, 1, "generic", "Determines the type of value stored at a key."),
    spec!("KEYS", 2, R, 0, 0, 0, "generic", "Returns all key names that match a pattern."),
    spec!("SCAN", -2, R, 0, 0, 0, "generic", "Iterates over the key names in the database."),
    spec!("RENAME", 3, W, 1, 2, 1, "generic", "Renames a key and overwrites the destination."),
    spec!("RENAMENX", 3, &["write", "fast"], 1, 2, 1, "generic", "Renames a key only when the target key name doesn't exist."),
    spec!("FLUSHDB", -1, W, 0, 0, 0, "server", "Remove all keys from the current database."),
    spec!("FLUSHALL", -1, W, 0, 0, 0, "server", "Removes all keys from all databases."),
    spec!("SWAPDB", 3, &["write", "fast"], 0, 0, 0, "server", "Swaps two Redis databases."),
    spec!("MULTI", 1, &["fast", "allow_busy"], 0, 0, 0, "transactions", "Starts a transaction."),
    spec!("EXEC", 1, &["skip_slowlog"], 0, 0, 0, "transactions", "Executes all commands in a transaction."),
    spec!("DISCARD", 1, &["fast", "allow_busy"], 0, 0, 0, "transactions", "Discards a transaction."),
    spec!("FUNCTION", -2, &[], 0, 0, 0, "scripting", "A container for function commands."),
    spec!("CX.PUBLISH", -4, WF, 1, 1, 1, "cortex", "Appends a message with a priority lane, TTL, idempotency key and trimming."),
    spec!("CX.POLICY", -3, W, 1, 1, 1, "cortex", "Shows, sets or clears a consumer group's delivery policy."),
    spec!("CX.NACK", -4, &["write", "fast"], 1, 1, 1, "cortex", "Reports failed processing: retry after the backoff, or dead-letter."),
    spec!("CX.DLQ", -2, W, 0, 0, 0, "cortex", "Lists, redrives or purges dead letters."),
    spec!("CX.CLOCK", -1, F, 0, 0, 0, "cortex", "Shows the broker's clock; moves it in test mode."),
    spec!("CX.FAULT", -2, F, 0, 0, 0, "cortex", "Injects storage failures in test mode."),
    spec!("CX.TASK", -2, W, 0, 0, 0, "cortex", "Submits, shows, lists or watches tasks."),
    spec!("CX.AGENTS", 1, &["readonly", "fast"], 0, 0, 0, "cortex", "The agents connected to the cluster's nodes: sessions, node, client, last heard, what each serves."),
    spec!("CX.CANCEL", 2, &["write", "fast"], 0, 0, 0, "cortex", "Cancels a task: never delivered if not yet, else its holder is told first."),
];

/// The spec of a command by name, in any case (no allocation).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}
