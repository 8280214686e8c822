//! The Redis-protocol front: parses commands into plans (ops, queries, blocking reads) that
//! the [`crate::broker::Broker`] carries out, and formats Redis's replies. It holds no broker
//! semantics of its own.
//!
//! - [`codec`]: the pure, bounded RESP parser and encoder.
//! - `server`: the listener and the per-connection loop (I/O only).
//! - `conn`: per-connection and shared state.
//! - `presence`: the connection's session in the broker's list of agents.
//! - `cmd`: one file per command family, each command a `parse -> Plan` and a formatter.

mod cmd;
pub mod codec;
mod conn;
mod presence;
mod server;

pub use server::serve;
