//! The QUIC front for agents (`cortex/1` over quinn + rustls): see `server.rs` for what it
//! serves, `crate::tls` for certificates and trust, `io.rs` for frames on streams. The protocol
//! itself is the `cortex-protocol` crate (`crate::wire`), documented in `docs/PROTOCOL.md`.

mod convert;
pub mod server;
