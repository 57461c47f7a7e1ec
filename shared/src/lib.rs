//! Bucky's domain library, shared by the agent, the coordinator and the CLI.
//!
//! - [`whisper`]: the whisper file format (header, `create`, `fetch`, `update_many`, locking),
//!   byte-identical to whisper.py 1.1.10.
//! - [`bucket`], [`manifests`]: a host's bucket over object_store, and finding its manifests.
//! - [`layout`]: the bucket layout (whisper-backup compatible keys), manifests, owner markers.
//! - [`metric`]: metric names and their paths under a whisper root.
//! - [`ring`]: consistent-hash rings that place metrics as carbon and carbon-c-relay do.
//! - [`fill`]: filling the gaps of one whisper file from another, in carbonate's mode
//!   (byte-identical to carbonate 1.1.10's `fill_archives`) or bucky's `safe` mode.
//!
//! ```no_run
//! use bucky_shared::fill::{self, FillMode, FillOptions};
//! # fn main() -> Result<(), bucky_shared::fill::Error> {
//! let options = FillOptions::new(FillMode::Safe, 1_700_000_000);
//! let report = fill::fill_files("replica-b/cpu.wsp".as_ref(), "replica-a/cpu.wsp".as_ref(), &options)?;
//! println!("filled {} points", report.points_written);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod bucket;
pub mod command_docs;
pub mod fill;
pub mod layout;
pub mod logging;
pub mod manifests;
pub mod metric;
pub mod ring;
pub mod selection;
pub mod synth;
pub mod whisper;
