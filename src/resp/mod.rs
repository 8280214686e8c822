//! The Redis-protocol front: a thin layer that parses commands, turns them into storage ops
//! or reads through the [`Broker`], and writes Redis's replies. It holds no broker semantics
//! of its own.

mod cmd;
pub mod codec;
mod conn;
mod server;

pub use cmd::glob;
pub use server::{serve, Clients};
