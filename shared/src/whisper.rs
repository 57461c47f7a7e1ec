//! The whisper file format, byte-identical to whisper.py 1.1.10.
//!
//! A [`Whisper`] wraps a [`Storage`] (an open [`std::fs::File`] or an in-memory [`Image`]) and its
//! parsed [`Header`]. Every operation takes `now` explicitly, so results are reproducible and match
//! the reference implementation called with the same clock.
//!
//! ```no_run
//! use bucky_shared::whisper::{self, Aggregation, ArchiveSpec, CreateOptions};
//! # fn main() -> Result<(), whisper::Error> {
//! let archives = whisper::parse_retentions(&["60s:30d", "15m:2y"])?;
//! whisper::create("cpu.wsp".as_ref(), &archives, &CreateOptions::default())?;
//! let mut file = whisper::Whisper::open_file("cpu.wsp".as_ref(), whisper::Access::ReadWrite)?;
//! file.update_many(&[(1_700_000_000, 42.0)], 1_700_000_030)?;
//! let series = file.fetch(1_699_990_000, None, 1_700_000_030)?;
//! # Ok(()) }
//! ```

mod aggregation;
mod create;
pub(crate) mod error;
pub mod excerpt;
pub(crate) mod fetch;
pub(crate) mod file;
mod header;
mod lock;
mod pyset;
mod retention;
mod storage;
mod update;

pub use aggregation::Aggregation;
pub use create::{CreateOptions, create, create_image, validate_archives};
pub use error::Error;
pub use fetch::Series;
pub use file::{Access, Whisper};
pub use header::{ArchiveInfo, Header, POINT_SIZE};
pub use lock::{DEFAULT_LOCK_TIMEOUT, LockMode, lock_file};
pub use retention::{ArchiveSpec, parse_duration, parse_retention, parse_retentions};
pub use storage::{ChangedPoint, Image, Overlay, ReadCache, Storage};

/// A result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
