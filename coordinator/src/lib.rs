//! bucky-coordinator: knows the cluster's consistent-hash ring, checks every agent agrees on it,
//! and fans backups and restores out across the agents.
//!
//! - [`plan`]: rebalance-aware restore planning of one host, as a pure value.
//! - [`agents`]: reaching the agents (a trait, over gRPC); [`cluster`]: status, backup, restore.
//! - [`consistency`]: which metrics each node holds that the ring places elsewhere, and lacks;
//!   [`rebalance`]: moving them where the ring places them, agent to agent.
//! - [`service`], [`server`]: the Coordinator gRPC service and its server.
//! - [`config`]: the coordinator's TOML config, validated into a [`config::Cluster`].

pub mod agents;
pub mod cluster;
pub mod config;
pub mod consistency;
pub mod metrics;
pub mod plan;
pub mod rebalance;
pub mod schedule;
pub mod server;
pub mod service;

/// The coordinator's version.
pub const VERSION: &str = bucky_proto::VERSION;
