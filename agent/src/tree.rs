//! The node's whisper tree as carbon sees it: which metrics it holds, selected by glob or regex.
//!
//! One rule for every operation (backup reads, restore and fill write): symlinks are followed,
//! as carbon follows them when it opens `a/b/c.wsp` (operators link subtrees to other disks). A
//! link back to a directory being walked is a loop and is not followed again. A `.wsp` file at a
//! path carbon could never have written for its name (`d.e/f.wsp` is metric `d.e.f`, which carbon
//! writes to `d/e/f.wsp`) would restore somewhere else, so it is skipped, counted and named.
//! With those gone, a name and its path determine each other (`metric::path_of` gives a file's
//! path back), so no two files are one metric and a file is held by its name alone: on a node of
//! millions of metrics every byte per file counts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bucky_shared::metric;
pub use bucky_shared::selection::Selection;
use tracing::warn;

/// Paths of each kind kept by name in a [`Walk`]; the counts go on.
pub const NAMED_PATHS: usize = 20;

/// One whisper file found on disk; its path is `metric::path_of(root, &name)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// Dotted metric name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// Paths of one kind found by a walk: how many, and the first [`NAMED_PATHS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// How many.
    pub count: u64,
    /// The first ones, for the operator to look at.
    pub first: Vec<PathBuf>,
}

impl Found {
    fn add(&mut self, path: PathBuf) {
        self.count += 1;
        if self.first.len() < NAMED_PATHS {
            self.first.push(path);
        }
    }
}

/// What a walk found.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// The selected metrics' files, sorted by name, one per metric.
    pub files: Vec<TreeFile>,
    /// `.wsp` files at paths carbon could not have written for their name.
    pub not_carbon: Found,
    /// Symlinks followed (to files and to directories).
    pub links_followed: u64,
    /// Links not followed: loops back to a directory being walked, and dangling links.
    pub links_skipped: Found,
    /// Files left behind by a restore that was killed (`.bucky-restore-*`).
    pub restore_leftovers: Vec<PathBuf>,
}

/// Prefix of the temp files a restore writes before renaming them into place.
pub const RESTORE_TEMP_PREFIX: &str = ".bucky-restore-";

/// Walks `root` as described in the module doc, every file held at once; see [`Sorted`] for a
/// walk that holds one directory at a time.
///
/// # Errors
/// A directory that cannot be read, named.
pub fn walk(root: &Path, selection: &Selection) -> anyhow::Result<Walk> {
    let mut sorted = Sorted::new(root, selection.clone())?;
    let files = sorted.by_ref().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Walk {
        files,
        ..sorted.finish()
    })
}

/// The tree's files in metric name order, read one directory at a time: at most the entries of
/// the directories on the current path are held, whatever the size of the tree.
///
/// Name order from directory order: the names below directory `d` all start with `d.`, so a
/// directory sorts among its siblings as `d.` and a file as its name without `.wsp`; a name with
/// no dot in it (the only kind carbon writes) can never make those keys disagree with the order
/// of the full names.
pub struct Sorted {
    root: PathBuf,
    selection: Selection,
    /// Per directory on the current path: its children not yet visited, the smallest last.
    stack: Vec<Vec<Child>>,
    found: Walk,
    warned: bool,
}

struct Child {
    key: String,
    kind: ChildKind,
}

enum ChildKind {
    Dir {
        path: PathBuf,
        /// (device, inode) of it and its ancestors, to see loops.
        chain: Arc<Vec<(u64, u64)>>,
    },
    File(TreeFile),
}

impl Sorted {
    /// Starts at `root`.
    ///
    /// # Errors
    /// `root` cannot be read.
    pub fn new(root: &Path, selection: Selection) -> anyhow::Result<Sorted> {
        let meta = std::fs::metadata(root)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", root.display()))?;
        let mut sorted = Sorted {
            root: root.to_path_buf(),
            selection,
            stack: Vec::new(),
            found: Walk::default(),
            warned: false,
        };
        let children = sorted.read(root, &Arc::new(vec![id(&meta)]))?;
        sorted.stack.push(children);
        Ok(sorted)
    }

    /// What the walk found besides its files (once it has ended: counts so far before).
    pub fn finish(self) -> Walk {
        self.found
    }

    /// The children of `dir`, sorted so the smallest key is last.
    fn read(&mut self, dir: &Path, ancestors: &Arc<Vec<(u64, u64)>>) -> anyhow::Result<Vec<Child>> {
        let mut children = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
            let path = entry.path();
            let mut kind = entry.file_type()?;
            let link = kind.is_symlink();
            let mut meta = None;
            if link {
                match std::fs::metadata(&path) {
                    Ok(m) => {
                        kind = m.file_type();
                        meta = Some(m);
                    }
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "dangling symlink skipped");
                        self.found.links_skipped.add(path);
                        continue;
                    }
                }
            }
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if kind.is_dir() {
                let m = match meta {
                    Some(m) => m,
                    None => entry.metadata()?,
                };
                if ancestors.contains(&id(&m)) {
                    warn!(path = %path.display(), "symlink loop not followed");
                    self.found.links_skipped.add(path);
                    continue;
                }
                self.found.links_followed += u64::from(link);
                let mut chain = Vec::with_capacity(ancestors.len() + 1);
                chain.extend_from_slice(ancestors);
                chain.push(id(&m));
                children.push(Child {
                    key: format!("{file_name}."),
                    kind: ChildKind::Dir {
                        path,
                        chain: Arc::new(chain),
                    },
                });
            } else if kind.is_file() {
                self.found.links_followed += u64::from(link);
                if file_name.starts_with(RESTORE_TEMP_PREFIX) {
                    self.found.restore_leftovers.push(path);
                    continue;
                }
                let Some(stem) = file_name.strip_suffix(".wsp") else {
                    continue;
                };
                let relative = path.strip_prefix(&self.root).expect("walked below root");
                let Some(name) = metric::name_of(relative) else {
                    self.found.not_carbon.add(path);
                    continue;
                };
                if !self.selection.matches(&name) {
                    continue;
                }
                let meta = match meta {
                    Some(m) => m,
                    None => entry.metadata()?,
                };
                children.push(Child {
                    key: stem.to_string(),
                    kind: ChildKind::File(TreeFile {
                        name,
                        size: meta.len(),
                        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                    }),
                });
            }
        }
        children.sort_unstable_by(|a, b| b.key.cmp(&a.key));
        Ok(children)
    }

    fn next_file(&mut self) -> anyhow::Result<Option<TreeFile>> {
        while let Some(top) = self.stack.last_mut() {
            let Some(child) = top.pop() else {
                self.stack.pop();
                continue;
            };
            match child.kind {
                ChildKind::File(file) => return Ok(Some(file)),
                ChildKind::Dir { path, chain } => {
                    let children = self.read(&path, &chain)?;
                    self.stack.push(children);
                }
            }
        }
        if self.found.not_carbon.count > 0 && !self.warned {
            self.warned = true;
            warn!(
                count = self.found.not_carbon.count,
                first = %self.found.not_carbon.first[0].display(),
                "whisper files at paths carbon cannot write for their name (a '.' in a directory or file name) skipped"
            );
        }
        Ok(None)
    }
}

impl Iterator for Sorted {
    type Item = anyhow::Result<TreeFile>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.next_file().transpose();
        if matches!(next, Some(Err(_))) {
            self.stack.clear();
        }
        next
    }
}

fn id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(walk: &Walk) -> Vec<&str> {
        walk.files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn walks_sorted_and_skips_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("b/c/d.wsp"), b"x").unwrap();
        std::fs::write(dir.path().join("a.wsp"), b"xy").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let walk = walk(dir.path(), &Selection::default()).unwrap();
        assert_eq!(names(&walk), ["a", "b.c.d"]);
        assert_eq!(walk.files[0].size, 2);
        assert_eq!(walk.not_carbon.count, 0);
    }

    #[test]
    fn directory_order_is_name_order() {
        let dir = tempfile::tempdir().unwrap();
        // Characters on both sides of '.', files and directories sharing prefixes.
        let names = [
            "a", "a-b", "a.b", "a.b-c", "a.b.c", "a_x.y", "a0", "ab", "ab.c", "A", "Z.z", "a.-",
            "b+.x", "b", "b.a.a.a",
        ];
        for name in names {
            let path = metric::path_of(dir.path(), name).unwrap();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let walked: Vec<String> = Sorted::new(dir.path(), Selection::default())
            .unwrap()
            .map(|f| f.unwrap().name)
            .collect();
        let mut sorted = walked.clone();
        sorted.sort();
        assert_eq!(walked, sorted);
        assert_eq!(walked.len(), names.len());
    }

    #[test]
    fn paths_carbon_cannot_write_are_skipped_and_named() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["a/b.wsp", "a.b.wsp", "d.e/f.wsp", "x.wsp/y.wsp", "ok/m.wsp"] {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let walk = walk(dir.path(), &Selection::default()).unwrap();
        assert_eq!(names(&walk), ["a.b", "ok.m"]);
        assert_eq!(walk.files[0].size, 1);
        assert_eq!(walk.not_carbon.count, 3);
        let mut skipped = walk.not_carbon.first.clone();
        skipped.sort();
        assert_eq!(
            skipped,
            ["a.b.wsp", "d.e/f.wsp", "x.wsp/y.wsp"].map(|p| dir.path().join(p))
        );
    }

    #[test]
    fn links_are_followed_and_loops_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (root, disk2) = (dir.path().join("w"), dir.path().join("disk2"));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(disk2.join("sub")).unwrap();
        std::fs::write(root.join("a/m.wsp"), b"x").unwrap();
        std::fs::write(disk2.join("sub/n.wsp"), b"xyz").unwrap();
        std::fs::write(disk2.join("f.wsp"), b"xy").unwrap();
        symlink(&disk2, root.join("big")).unwrap();
        symlink(disk2.join("f.wsp"), root.join("a/linked.wsp")).unwrap();
        symlink(&root, disk2.join("sub/back")).unwrap();
        symlink(root.join("gone"), root.join("a/dangling.wsp")).unwrap();
        let walk = walk(&root, &Selection::default()).unwrap();
        assert_eq!(names(&walk), ["a.linked", "a.m", "big.f", "big.sub.n"]);
        assert_eq!(
            walk.files[0].size, 2,
            "a linked file is read through its link"
        );
        assert_eq!(walk.links_followed, 2);
        assert_eq!(
            walk.links_skipped.count, 2,
            "the loop and the dangling link"
        );
    }

    #[test]
    fn restore_leftovers_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/.bucky-restore-x1Yz"), b"half").unwrap();
        let walk = walk(dir.path(), &Selection::default()).unwrap();
        assert!(walk.files.is_empty());
        assert_eq!(
            walk.restore_leftovers,
            [dir.path().join("a/.bucky-restore-x1Yz")]
        );
    }
}
