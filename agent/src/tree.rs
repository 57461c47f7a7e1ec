//! The node's whisper tree: which metrics it holds, selected by glob or regex.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bucky_shared::metric;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;

/// Which metrics a job covers: all, or those matching any glob (Graphite style, `*` within one
/// segment: `servers.*.cpu.*`) and the regex, when given.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    globs: Option<GlobSet>,
    regex: Option<Regex>,
}

impl Selection {
    /// Builds a selection.
    ///
    /// # Errors
    /// A glob or regex that does not compile, named.
    pub fn new(globs: &[String], regex: Option<&str>) -> anyhow::Result<Self> {
        let globs = if globs.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            for g in globs {
                // Match on the path form so `*` stops at segment boundaries.
                let glob = GlobBuilder::new(&g.replace('.', "/"))
                    .literal_separator(true)
                    .build()
                    .map_err(|e| anyhow::anyhow!("invalid metric glob '{g}': {e}"))?;
                set.add(glob);
            }
            Some(set.build()?)
        };
        let regex = regex
            .map(|r| Regex::new(r).map_err(|e| anyhow::anyhow!("invalid metric regex '{r}': {e}")))
            .transpose()?;
        Ok(Selection { globs, regex })
    }

    /// Whether the selection is everything.
    pub fn is_all(&self) -> bool {
        self.globs.is_none() && self.regex.is_none()
    }

    /// Whether `metric` is selected.
    pub fn matches(&self, metric: &str) -> bool {
        self.globs
            .as_ref()
            .is_none_or(|g| g.is_match(metric.replace('.', "/")))
            && self.regex.as_ref().is_none_or(|r| r.is_match(metric))
    }
}

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
    fn globs_stay_within_segments_and_regexes_apply() {
        let s = Selection::new(&["servers.*.cpu".into()], None).unwrap();
        assert!(s.matches("servers.web01.cpu"));
        assert!(!s.matches("servers.web01.x.cpu"));
        let s = Selection::new(&[], Some(r"\.p99$")).unwrap();
        assert!(s.matches("a.b.p99") && !s.matches("a.p99.b"));
        assert!(
            Selection::new(&["a[".into()], None)
                .unwrap_err()
                .to_string()
                .contains("'a['")
        );
    }

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
