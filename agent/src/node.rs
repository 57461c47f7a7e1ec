//! The node's whisper tree as the agent reports it to the coordinator: its metric count and size,
//! from a walk at most a few minutes old. Status, and the check before every cluster backup and
//! restore, ask for it; on a node of millions of files each walk stats every file, which is disk
//! work carbon competes with, so one walk answers every question for a while.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::tree::{self, Selection};

/// How old the usage Info reports may be.
pub const USAGE_MAX_AGE: Duration = Duration::from_secs(300);

/// Metric count and bytes on disk.
pub type Usage = (u64, u64);

/// The tree under one root.
#[derive(Debug, Clone)]
pub struct Node {
    root: PathBuf,
    /// The last walk's usage and when it was taken; the lock also makes concurrent askers wait
    /// for one walk instead of starting their own.
    last: Arc<Mutex<Option<(Instant, Usage)>>>,
}

impl Node {
    /// The tree at `root`.
    pub fn new(root: &Path) -> Self {
        Node {
            root: root.to_path_buf(),
            last: Arc::default(),
        }
    }

    /// The whisper root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Metric count and bytes on disk, walking the tree now.
    ///
    /// # Errors
    /// The tree cannot be walked.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let (mut count, mut bytes) = (0, 0);
        for file in tree::Sorted::new(&self.root, Selection::default())? {
            count += 1;
            bytes += file?.size;
        }
        Ok((count, bytes))
    }

    /// [`Node::usage`] from a walk no older than `max_age`, walking again only when the last one
    /// is older.
    ///
    /// # Errors
    /// The tree cannot be walked.
    pub async fn usage_within(&self, max_age: Duration) -> anyhow::Result<Usage> {
        let mut last = self.last.lock().await;
        if let Some((at, usage)) = *last
            && at.elapsed() <= max_age
        {
            return Ok(usage);
        }
        let node = self.clone();
        let usage = tokio::task::spawn_blocking(move || node.usage())
            .await
            .map_err(|e| anyhow::anyhow!("the tree walk panicked: {e}"))??;
        *last = Some((Instant::now(), usage));
        Ok(usage)
    }
}

impl Node {
    /// Drops the last walk's figures: the tree just changed (a restore wrote into it).
    pub async fn forget(&self) {
        *self.last.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_walk_answers_until_it_is_too_old() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wsp"), b"xy").unwrap();
        let node = Node::new(dir.path());
        assert_eq!(node.usage_within(USAGE_MAX_AGE).await.unwrap(), (1, 2));
        std::fs::write(dir.path().join("b.wsp"), b"xyz").unwrap();
        assert_eq!(
            node.usage_within(USAGE_MAX_AGE).await.unwrap(),
            (1, 2),
            "the last walk still answers"
        );
        assert_eq!(node.usage_within(Duration::ZERO).await.unwrap(), (2, 5));
        std::fs::remove_file(dir.path().join("a.wsp")).unwrap();
        node.forget().await;
        assert_eq!(node.usage_within(USAGE_MAX_AGE).await.unwrap(), (1, 3));
    }
}
