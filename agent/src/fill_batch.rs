//! Filling many replica pairs in one run: two whisper trees (`bucky fill -r`), or a list of
//! pairs. Pairs are taken from a stream by a few threads, each pair filled as `bucky fill` fills
//! one (dst locked exclusively, src shared, only changed points written), and a src file that has
//! no dst is copied into place whole, atomically, as a restore creates a file.
//!
//! Memory does not grow with the number of pairs: pairs are pulled from the stream as workers
//! free up, and the report keeps counts plus the first [`NAMED_FAILURES`] failures.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use bucky_shared::fill::{self, FillOptions};
use bucky_shared::metric;
use bucky_shared::whisper::Whisper;
use serde::Serialize;

use crate::install::{self, Installed};
use crate::tree::{self, Selection};

/// Failures kept by name in a [`BatchReport`]; the count goes on.
pub const NAMED_FAILURES: usize = 20;

/// One pair: fill `dst` from `src`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The file read.
    pub src: PathBuf,
    /// The file filled, or created from src.
    pub dst: PathBuf,
}

/// How to run a batch.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// How each pair is filled.
    pub fill: FillOptions,
    /// Copy a src file whose dst does not exist (created atomically, as a restore does).
    pub copy_missing: bool,
    /// Threads filling pairs.
    pub workers: usize,
    /// The mode of copied files before the umask (carbon's 0666).
    pub file_mode: u32,
}

impl BatchOptions {
    /// A batch with `fill`, copying missing files, one worker per core.
    pub fn new(fill: FillOptions) -> Self {
        BatchOptions {
            fill,
            copy_missing: true,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            file_mode: install::DEFAULT_FILE_MODE,
        }
    }
}

/// A pair that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The src path, or the input line that was not a pair.
    pub src: String,
    /// The dst path (empty for an input line that was not a pair).
    pub dst: String,
    /// Why.
    pub error: String,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchReport {
    /// Pairs filled (both files existed), whether or not points were written.
    pub pairs: u64,
    /// Of those, pairs whose dst got at least one point.
    pub pairs_changed: u64,
    /// Points written into dst files.
    pub points_written: u64,
    /// Points a writer without a lock (carbon) wrote first: kept as it wrote them.
    pub points_kept_live: u64,
    /// src files copied whole because dst had none.
    pub copied: u64,
    /// src files with no dst, left alone (`--no-copy`).
    pub not_copied: u64,
    /// Pairs that failed, counted.
    pub failed: u64,
    /// The first failures, named.
    pub failures: Vec<Failure>,
    /// Directories of copied files that could not be fsynced.
    pub unsynced_dirs: Vec<String>,
    /// Wall time of the run.
    pub seconds: f64,
}

impl BatchReport {
    fn fail(&mut self, failure: Failure) {
        self.failed += 1;
        if self.failures.len() < NAMED_FAILURES {
            self.failures.push(failure);
        }
    }

    fn merge(&mut self, other: BatchReport) {
        self.pairs += other.pairs;
        self.pairs_changed += other.pairs_changed;
        self.points_written += other.points_written;
        self.points_kept_live += other.points_kept_live;
        self.copied += other.copied;
        self.not_copied += other.not_copied;
        self.failed += other.failed;
        let room = NAMED_FAILURES.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
    }

    fn count_fill(&mut self, points: u64, kept_live: u64) {
        self.pairs += 1;
        self.pairs_changed += u64::from(points > 0);
        self.points_written += points;
        self.points_kept_live += kept_live;
    }
}

/// Fills every pair `pairs` yields, `options.workers` at a time. An `Err` item is an input that
/// was not a pair: it is counted as a failure, and the run goes on.
pub fn fill_pairs<I>(pairs: I, options: &BatchOptions) -> BatchReport
where
    I: Iterator<Item = Result<Pair, String>> + Send,
{
    fill_pairs_under(pairs, options, None)
}

/// [`fill_pairs`]; with `root`, the directories created below it for copied files are synced
/// up to it, not only the ones the files went into.
fn fill_pairs_under<I>(pairs: I, options: &BatchOptions, root: Option<&Path>) -> BatchReport
where
    I: Iterator<Item = Result<Pair, String>> + Send,
{
    let started = Instant::now();
    let pairs = Mutex::new(pairs);
    let created_in = Mutex::new(BTreeSet::new());
    let mut report = BatchReport::default();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..options.workers.max(1))
            .map(|_| scope.spawn(|| work(&pairs, options, &created_in)))
            .collect();
        for worker in workers {
            report.merge(worker.join().expect("a fill worker does not panic"));
        }
    });
    // Each directory a file was created in, so the new names survive a crash.
    let dirs = created_in.into_inner().expect("never poisoned");
    report.unsynced_dirs = match root {
        Some(root) => install::sync_dirs(root, &dirs),
        None => install::sync_each(&dirs),
    };
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// One worker: pairs until the stream ends.
fn work<I>(
    pairs: &Mutex<I>,
    options: &BatchOptions,
    created_in: &Mutex<BTreeSet<PathBuf>>,
) -> BatchReport
where
    I: Iterator<Item = Result<Pair, String>>,
{
    let mut report = BatchReport::default();
    loop {
        let next = pairs.lock().expect("never poisoned").next();
        let pair = match next {
            None => return report,
            Some(Err(line)) => {
                report.fail(Failure {
                    src: line,
                    dst: String::new(),
                    error: "not a pair of paths (SRC DST, tab- or space-separated)".into(),
                });
                continue;
            }
            Some(Ok(pair)) => pair,
        };
        let failure = |error: String| Failure {
            src: pair.src.display().to_string(),
            dst: pair.dst.display().to_string(),
            error,
        };
        if !pair.dst.exists() {
            if !options.copy_missing {
                report.not_copied += 1;
                continue;
            }
            match copy(&pair, options) {
                Ok(Installed::Created) => {
                    report.copied += 1;
                    if let Some(dir) = pair.dst.parent() {
                        created_in
                            .lock()
                            .expect("never poisoned")
                            .insert(dir.to_path_buf());
                    }
                }
                // Created meanwhile by carbon, and filled.
                Ok(Installed::Filled(points)) => report.count_fill(points, 0),
                Err(e) => report.fail(failure(e)),
            }
            continue;
        }
        match fill::fill_files(&pair.src, &pair.dst, &options.fill) {
            Ok(filled) => report.count_fill(filled.points_written, filled.points_kept_live),
            Err(e) => report.fail(failure(format!("{e:#}"))),
        }
    }
}

/// src copied to dst, read whole under src's shared lock and written as a restore writes a new
/// file; filled instead if dst appeared meanwhile.
fn copy(pair: &Pair, options: &BatchOptions) -> Result<Installed, String> {
    let image =
        Whisper::read_image(&pair.src, options.fill.lock_timeout).map_err(|e| format!("{e:#}"))?;
    install::install_with(&pair.dst, &image, &options.fill, options.file_mode)
}

/// Fills `dst_root` from `src_root`: every metric of src's tree (as carbon names them; see
/// [`tree`]) selected by `selection` is a pair, in metric name order, read one directory at a
/// time.
///
/// # Errors
/// `src_root` cannot be read, or is the same directory as `dst_root`.
pub fn fill_trees(
    src_root: &Path,
    dst_root: &Path,
    selection: Selection,
    options: &BatchOptions,
) -> anyhow::Result<(BatchReport, tree::Walk)> {
    let same = std::fs::canonicalize(src_root)
        .ok()
        .is_some_and(|src| std::fs::canonicalize(dst_root).is_ok_and(|dst| dst == src));
    if same {
        anyhow::bail!(
            "{} and {} are the same directory: nothing to fill",
            src_root.display(),
            dst_root.display()
        );
    }
    let mut walk = tree::Sorted::new(src_root, selection)?;
    let walk_error = Mutex::new(None);
    let pairs = walk.by_ref().map_while(|file| match file {
        Ok(file) => Some(
            match (
                metric::path_of(src_root, &file.name),
                metric::path_of(dst_root, &file.name),
            ) {
                (Ok(src), Ok(dst)) => Ok(Pair { src, dst }),
                _ => Err(file.name),
            },
        ),
        Err(e) => {
            *walk_error.lock().expect("never poisoned") = Some(e);
            None
        }
    });
    let report = fill_pairs_under(pairs, options, Some(dst_root));
    if let Some(e) = walk_error.into_inner().expect("never poisoned") {
        return Err(e.context(format!(
            "walking {} stopped after {} pairs",
            src_root.display(),
            report.pairs + report.copied
        )));
    }
    Ok((report, walk.finish()))
}

/// Pairs read from `input`, one per line: `SRC<TAB>DST`, or `SRC DST` when neither path holds a
/// space. Blank lines are skipped; any other line that is not two paths is an `Err` naming it.
pub fn read_pairs(input: impl BufRead) -> impl Iterator<Item = Result<Pair, String>> {
    input.lines().filter_map(|line| {
        let line = match line {
            Ok(line) => line,
            Err(e) => return Some(Err(format!("<unreadable input: {e}>"))),
        };
        if line.trim().is_empty() {
            return None;
        }
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').collect()
        } else {
            line.split_whitespace().collect()
        };
        Some(match fields[..] {
            [src, dst] if !src.is_empty() && !dst.is_empty() => Ok(Pair {
                src: src.into(),
                dst: dst.into(),
            }),
            _ => Err(line),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_read_by_tab_or_space_and_bad_lines_named() {
        let input = "a.wsp\tb c.wsp\n\n x.wsp  y.wsp \nlonely.wsp\n1 2 3\n";
        let pairs: Vec<_> = read_pairs(input.as_bytes()).collect();
        assert_eq!(
            pairs,
            vec![
                Ok(Pair {
                    src: "a.wsp".into(),
                    dst: "b c.wsp".into()
                }),
                Ok(Pair {
                    src: "x.wsp".into(),
                    dst: "y.wsp".into()
                }),
                Err("lonely.wsp".into()),
                Err("1 2 3".into()),
            ]
        );
    }
}
