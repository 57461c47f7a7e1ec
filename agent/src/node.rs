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

/// Names per batch of [`Node::names`]: about 50 KB of names, far below gRPC's 4 MiB.
pub const NAMES_BATCH: usize = 1000;

impl Node {
    /// The tree's metric names in byte order, [`NAMES_BATCH`] at a time, each batch handed to
    /// `send`, which returns false when nobody wants more. Walks one directory at a time, so
    /// nothing grows with the tree.
    ///
    /// # Errors
    /// A directory that cannot be read: the names sent so far are not the whole tree.
    pub fn names(&self, mut send: impl FnMut(Vec<String>) -> bool) -> anyhow::Result<()> {
        let mut batch = Vec::with_capacity(NAMES_BATCH);
        for file in tree::Sorted::new(&self.root, Selection::default())? {
            batch.push(file?.name);
            if batch.len() == NAMES_BATCH
                && !send(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(NAMES_BATCH),
                ))
            {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            send(batch);
        }
        Ok(())
    }

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

    #[test]
    fn names_come_in_byte_order_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for i in 0..NAMES_BATCH + 5 {
            // '-' sorts before '.': "a-x" comes before every "a.*" name.
            let name = match i % 3 {
                0 => format!("a.b{i:05}"),
                1 => format!("a-x.c{i:05}"),
                _ => format!("z{i:05}"),
            };
            let path = bucky_shared::metric::path_of(dir.path(), &name).unwrap();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
            expected.push(name);
        }
        expected.sort();
        let node = Node::new(dir.path());
        let mut batches = Vec::new();
        node.names(|b| {
            batches.push(b);
            true
        })
        .unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].len(), NAMES_BATCH);
        assert_eq!(batches.concat(), expected);

        // Whoever stops listening stops the walk.
        let mut sent = 0;
        node.names(|_| {
            sent += 1;
            false
        })
        .unwrap();
        assert_eq!(sent, 1);
    }
}
