//! The node's whisper tree as the agent serves it: usage, listing, a consistent copy of one file,
//! receiving a file (checked, then installed), deleting. Every metric name is validated, so no
//! request reaches outside the whisper root.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bucky_shared::metric::{self, InvalidName};
use bucky_shared::whisper::{Image, LockMode, Whisper, lock_file};

use crate::codec;
use crate::install::{Installed, install};
use crate::tree::{self, Selection, TreeFile};

/// A request on the tree that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name would not stay inside the root, or carbon could never have written it.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// No such metric.
    #[error("no metric {0} on this node")]
    NotFound(String),
    /// The received bytes are not the file announced.
    #[error("{metric}: received data has SHA-1 {actual}, expected {expected}")]
    ChecksumMismatch {
        /// The metric.
        metric: String,
        /// Announced.
        expected: String,
        /// Received.
        actual: String,
    },
    /// The received data is not a whisper file (or not gzip).
    #[error("{metric}: {reason}")]
    Corrupt {
        /// The metric.
        metric: String,
        /// What is wrong.
        reason: String,
    },
    /// The file stayed locked by another process.
    #[error("{0}")]
    Locked(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
}

/// The tree under one root.
#[derive(Debug, Clone)]
pub struct Node {
    root: PathBuf,
    lock_timeout: Duration,
}

impl Node {
    /// The tree at `root`; locks are waited for at most `lock_timeout`.
    pub fn new(root: &Path, lock_timeout: Duration) -> Self {
        Node {
            root: root.to_path_buf(),
            lock_timeout,
        }
    }

    /// The whisper root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Metric count and bytes on disk.
    ///
    /// # Errors
    /// The tree cannot be walked.
    pub fn usage(&self) -> anyhow::Result<(u64, u64)> {
        let files = tree::walk(&self.root, &Selection::default())?;
        Ok((files.len() as u64, files.iter().map(|f| f.size).sum()))
    }

    /// The selected metrics, sorted by name.
    ///
    /// # Errors
    /// The tree cannot be walked.
    pub fn list(&self, selection: &Selection) -> anyhow::Result<Vec<TreeFile>> {
        tree::walk(&self.root, selection)
    }

    /// A consistent copy of `metric` (read under a shared flock) and its SHA-1.
    ///
    /// # Errors
    /// A bad name, no such file, a lock timeout, a read error.
    pub fn read(&self, name: &str) -> Result<(Vec<u8>, String), Error> {
        let path = metric::path_of(&self.root, name)?;
        let mut file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(name.to_string()),
            _ => Error::Io(format!("{}: {e}", path.display())),
        })?;
        lock_file(&file, LockMode::Shared, self.lock_timeout, &path)
            .map_err(|e| Error::Locked(e.to_string()))?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let sha1 = codec::sha1_hex(&raw);
        Ok((raw, sha1))
    }

    /// Installs a received whisper file: checked against `expected_sha1` and parsed before
    /// anything is written, then created atomically or safe-filled.
    ///
    /// # Errors
    /// A bad name, a checksum mismatch, data that is not whisper, a lock timeout, a write error.
    pub fn receive(
        &self,
        name: &str,
        raw: Vec<u8>,
        expected_sha1: &str,
        now: i64,
    ) -> Result<Installed, Error> {
        let path = metric::path_of(&self.root, name)?;
        let actual = codec::sha1_hex(&raw);
        if actual != expected_sha1.trim().to_ascii_lowercase() {
            return Err(Error::ChecksumMismatch {
                metric: name.to_string(),
                expected: expected_sha1.to_string(),
                actual,
            });
        }
        let image = Whisper::open(Image::new(raw), name).map_err(|e| Error::Corrupt {
            metric: name.to_string(),
            reason: e.to_string(),
        })?;
        install(&path, &image, self.lock_timeout, now).map_err(Error::Io)
    }

    /// Deletes `metric`'s file, under its exclusive lock so no writer is cut off mid-write.
    /// Returns false when there was none.
    ///
    /// # Errors
    /// A bad name, a lock timeout, an unlink error.
    pub fn delete(&self, name: &str) -> Result<bool, Error> {
        let path = metric::path_of(&self.root, name)?;
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::Io(format!("{}: {e}", path.display()))),
        };
        lock_file(&file, LockMode::Exclusive, self.lock_timeout, &path)
            .map_err(|e| Error::Locked(e.to_string()))?;
        std::fs::remove_file(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_root_are_refused_and_nothing_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(&dir.path().join("w"), Duration::from_millis(10));
        for bad in ["../x", "a/../../b", "..", "a..b", "/etc/passwd", ""] {
            assert!(
                matches!(node.read(bad), Err(Error::InvalidName(_))),
                "{bad}"
            );
            assert!(
                matches!(node.delete(bad), Err(Error::InvalidName(_))),
                "{bad}"
            );
            assert!(
                matches!(node.receive(bad, vec![], "", 0), Err(Error::InvalidName(_))),
                "{bad}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(matches!(node.read("a.b"), Err(Error::NotFound(_))));
        assert!(!node.delete("a.b").unwrap());
    }
}
