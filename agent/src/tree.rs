//! The node's whisper tree: which metrics it holds, selected by glob or regex.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bucky_shared::metric;
pub use bucky_shared::selection::Selection;

/// One whisper file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// Dotted metric name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// Every selected `.wsp` file under `root`, sorted by name. Symlinks are not followed (a link
/// out of the tree is not this node's data); files whose names are not valid metrics are skipped.
///
/// # Errors
/// A directory that cannot be read, named.
pub fn walk(root: &Path, selection: &Selection) -> anyhow::Result<Vec<TreeFile>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let relative = path.strip_prefix(root).expect("walked below root");
                let Some(name) = metric::name_of(relative) else {
                    continue;
                };
                if !selection.matches(&name) {
                    continue;
                }
                let meta = entry.metadata()?;
                out.push(TreeFile {
                    name,
                    path,
                    size: meta.len(),
                    mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_sorted_and_skips_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("b/c/d.wsp"), b"x").unwrap();
        std::fs::write(dir.path().join("a.wsp"), b"xy").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let files = walk(dir.path(), &Selection::default()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b.c.d"]);
        assert_eq!(files[0].size, 2);
    }
}
