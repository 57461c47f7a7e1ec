//! bucky-coordinator: knows the cluster's consistent-hash ring, checks every agent agrees on it,
//! and fans backups and restores out across the agents.
//!
//! - [`plan`]: rebalance-aware restore planning of one host, as a pure value.
//! - [`config`]: the coordinator's TOML config, validated into a [`config::Cluster`].

pub mod agents;
pub mod cluster;
pub mod config;
pub mod plan;

/// The coordinator's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
