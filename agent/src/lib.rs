//! bucky-agent: runs on every Graphite storage node next to carbon and serves that node's
//! whisper tree: backup into the node's own bucket, restore by safe fill, listing.
//!
//! - [`bucket`]: the node's bucket (object_store) and its layout.
//! - [`tree`]: the whisper tree and metric selection.
//! - [`backup`]: the backup engine; [`restore`]: the restore engine.
//! - [`ownership`], [`manifests`], [`codec`]: owner marker, manifest discovery, object encoding.

pub mod backup;
pub mod bucket;
pub mod codec;
pub mod manifests;
pub mod ownership;
pub mod restore;
pub mod tree;

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
