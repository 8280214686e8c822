//! # cortex
//!
//! The Cortex Bus broker: one binary over one durable store (`cortex-storage`).
//!
//! ## Layout
//! - [`config`]: config file + flags -> validated [`config::Config`]; every limit named there.
//! - [`broker`]: the one core: the writer thread (group commit), blocked-reader wake-ups, the
//!   timer that drives time, alerts.
//! - [`resp`]: the Redis-protocol front: a pure bounded codec, connections, commands.
//! - [`quic`]: the agents' front (cortex/1 over QUIC); [`client`] is its Rust client.
//! - [`http`]: `/metrics`, health, the JSON API and the embedded dashboard.
//! - [`serve`]: starts everything and shuts it down on SIGINT/SIGTERM.
#![deny(unsafe_code)]

pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod glob;
pub mod http;
pub mod quic;
pub mod resp;
pub mod serve;
pub mod timespec;
pub mod wire;
