//! bucky-agent: runs on every Graphite storage node next to carbon and serves that node's
//! whisper tree: backup into the node's own bucket, restore by safe fill, listing.
//!
//! - [`bucket`]: the node's bucket (object_store) and its layout.
//! - [`tree`]: the whisper tree and metric selection.
//! - [`backup`]: the backup engine; [`restore`]: the restore engine.
//! - [`ownership`], [`lease`], [`manifests`], [`codec`]: owner marker, one run per bucket,
//!   manifest discovery, object encoding.
//! - [`io_priority`]: backups read at idle I/O priority.
//! - [`node`], [`install`]: the tree as served over gRPC; putting a received file into it.
//! - [`service`], [`server`], [`auth`]: the Agent gRPC service, its server, the bearer-token check.

pub mod backup;
pub mod codec;
pub mod config;
pub mod failures;
pub mod fill_batch;
pub mod install;
pub mod io_priority;
pub mod lease;
pub mod listing;
pub mod node;
pub mod ownership;
pub mod peers;
pub mod restore;
pub mod server;
pub mod service;
pub mod signal;
pub mod sources;
pub mod throttle;
pub mod tree;
pub mod verify;
mod wire;

pub use bucky_proto::auth;
pub use bucky_shared::{bucket, manifests};

/// The agent's version.
pub const VERSION: &str = bucky_proto::VERSION;
