//! bucky-agent: runs on every Graphite storage node next to carbon and serves that node's
//! whisper tree (listing, streaming, backup into the node's own bucket, restore by safe fill).
//!
//! This crate holds the agent's domain modules and its gRPC service. The whisper format and fill
//! it relies on live in [`bucky_shared`].

/// The agent's version, reported by `Info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
