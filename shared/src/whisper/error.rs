//! The errors of the whisper module: each names the file and what is wrong with it.

use std::path::PathBuf;
use std::time::Duration;

/// Something went wrong reading, writing or validating a whisper file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read, a write or an open. The OS's words are part of the
    /// message (not a separate source), so every caller that prints the error prints them once:
    /// "No space left on device" must reach the operator whoever formats the error.
    #[error("{path}: {action}: {cause}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done ("reading header", "writing points", ...).
        action: &'static str,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// The header is not a whisper header.
    #[error("{path}: not a valid whisper file: {reason}", path = path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is shorter than its header says.
    #[error("{path}: truncated whisper file: {reason}", path = path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// go-carbon's compressed whisper format, which bucky does not read.
    #[error(
        "{path}: this is a go-carbon compressed whisper file (magic 'whisper_compressed'); bucky reads only standard whisper files, convert it with go-carbon first",
        path = path.display()
    )]
    Compressed {
        /// The file.
        path: PathBuf,
    },
    /// An archive list that whisper.py's `validateArchiveList` would refuse.
    #[error("invalid archive configuration: {0}")]
    InvalidConfiguration(String),
    /// A retention definition such as `60s:30d` that cannot be parsed.
    #[error("invalid retention definition '{definition}': {reason}")]
    InvalidRetention {
        /// The text given.
        definition: String,
        /// What is wrong.
        reason: String,
    },
    /// An unknown aggregation method name.
    #[error(
        "unknown aggregation method '{0}' (expected average, sum, last, max, min, avg_zero, absmax or absmin)"
    )]
    UnknownAggregation(String),
    /// An xFilesFactor outside 0..=1.
    #[error("invalid xFilesFactor {0}: must be between 0 and 1")]
    InvalidXff(f64),
    /// `create` on a path that exists.
    #[error("{path}: file already exists", path = path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// `fetch` with `from` after `until`.
    #[error("invalid time interval: from time {from} is after until time {until}")]
    InvalidTimeInterval {
        /// Requested start.
        from: i64,
        /// Requested end.
        until: i64,
    },
    /// `fetch` asked for an archive precision the file does not have.
    #[error("{path}: no archive with {seconds}s precision", path = path.display())]
    NoSuchArchive {
        /// The file.
        path: PathBuf,
        /// Requested seconds per point.
        seconds: i64,
    },
    /// A timestamp that does not fit whisper's unsigned 32-bit field.
    #[error("{path}: timestamp {timestamp} cannot be stored (whisper timestamps are unsigned 32-bit)", path = path.display())]
    TimestampOutOfRange {
        /// The file.
        path: PathBuf,
        /// The offending timestamp.
        timestamp: i64,
    },
    /// Another process kept the file locked for longer than we wait.
    #[error("{path}: could not take a {mode} lock within {waited:?}: another process holds it", path = path.display())]
    LockTimeout {
        /// The file.
        path: PathBuf,
        /// Shared or exclusive.
        mode: super::LockMode,
        /// How long we waited.
        waited: Duration,
    },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, action: &'static str, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            action,
            cause,
        }
    }

    /// The OS error's kind, for an I/O failure (`StorageFull` for a full disk).
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io { cause, .. } => Some(cause.kind()),
            _ => None,
        }
    }
}
