//! The node's whisper tree as the agent reports it to the coordinator.

use std::path::{Path, PathBuf};

use crate::tree::{self, Selection};

/// The tree under one root.
#[derive(Debug, Clone)]
pub struct Node {
    root: PathBuf,
}

impl Node {
    /// The tree at `root`.
    pub fn new(root: &Path) -> Self {
        Node {
            root: root.to_path_buf(),
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
        let files = tree::walk(&self.root, &Selection::default())?.files;
        Ok((files.len() as u64, files.iter().map(|f| f.size).sum()))
    }
}
