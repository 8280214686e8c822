//! # cortex
//!
//! The Cortex Bus broker: one binary over one durable store (`cortex-storage`).
//!
//! ## Layout
//! - [`alloc`]: the global allocator (mimalloc, its plain calls where the alignment allows).
//! - [`config`]: config file + flags -> validated [`config::Config`]; every limit named there.
//! - [`core`]: the writer thread (group commit), apply, the timer, recovery and the disk
//!   loop, behind one [`core::Sequencer`] trait (the single node commits, a cluster proposes);
//!   mailboxes (delivery inside the commit) and wake-ups.
//! - [`cluster`]: replication on openraft, over the core (the cluster's sequencer).
//! - [`broker`]: what the broker does above the core: who may do what ([`perm`]), publish,
//!   push subscriptions, request/reply, reads, the overview and metrics.
//! - [`resp`]: the Redis-protocol front: a pure bounded codec, connections, commands.
//! - [`quic`]: the agents' front (cortex/1 over QUIC); [`client`] is its Rust client.
//! - [`http`]: `/metrics`, health, the JSON API and the embedded dashboard.
//! - [`serve`]: starts everything and shuts it down on SIGINT/SIGTERM.
#![deny(unsafe_code)]

pub mod alloc;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod core;
pub mod glob;
pub mod http;
pub mod perm;
pub mod quic;
pub mod resp;
pub mod serve;
pub mod timespec;
pub mod tls;
pub use cortex_protocol as wire;
