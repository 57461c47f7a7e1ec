//! bucky-coordinator: knows the cluster's consistent-hash ring, checks every agent agrees on it,
//! and fans backups and restores out across the agents.

/// The coordinator's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
