//! Integration tests: the real `cortex` binary on loopback ports, real clients.

mod auth;
mod bad_input;
mod blocking;
mod clock;
mod cluster;
mod core;
mod crash;
mod cx;
mod durability;
mod faults;
mod generic;
mod groups;
mod http;
mod pressure;
mod protocol;
mod quic;
mod redis74;
mod redis8;
mod redis_cli;
mod schedule;
mod streams;
mod support;
mod tasks;
