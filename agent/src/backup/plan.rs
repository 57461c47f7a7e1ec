//! What a backup run does with each metric, decided without touching disk or bucket: the tree's
//! files and the previous manifest's records, both in name order, joined one metric at a time.
//! A run executes these decisions in the same order, so the new manifest is written as they
//! complete and nothing holds every metric; `--noop` prints them.

use std::cmp::Ordering;
use std::iter::Peekable;

use bucky_shared::layout::manifest::{self, Record};
use bucky_shared::layout::{ManifestEntry, Trust, Version};

use crate::tree::{Selection, TreeFile};

/// The rules a run decides by.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The run's version.
    pub run: Version,
    /// The time the run started.
    pub now: Version,
    /// Days a metric may stay missing before its backups are deleted; negative: never.
    pub purge_after_days: i64,
    /// Read every file, even one whose size and mtime are as recorded.
    pub verify_all: bool,
    /// Read no file: only record what went missing and purge.
    pub purge_only: bool,
    /// Metrics covered; an entry outside it stands as it is.
    pub selection: Selection,
    /// What verification found: a metric whose newest stored version is corrupt is read and
    /// uploaded again, even unchanged.
    pub trust: std::sync::Arc<Trust>,
}

/// What becomes of one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Its entry stands: the file is as recorded, the metric is outside the selection, or (in a
    /// purge-only run) the file is back and its missing mark is cleared.
    Keep(ManifestEntry),
    /// Read the file; upload it when its content differs from `previous`'s.
    Read {
        /// The file.
        file: TreeFile,
        /// Its entry, if it had one.
        previous: Option<ManifestEntry>,
        /// Its versions verification found corrupt, when the newest is one of them: the file is
        /// uploaded even if unchanged, and these are deleted once the sound copy is stored.
        replace: Vec<Version>,
    },
    /// Not on disk. Its entry is kept, marked missing since its first absence, or, missing
    /// longer than the purge delay, removed with every version.
    Gone {
        /// The entry, its missing mark set.
        entry: ManifestEntry,
        /// It was on disk at the previous run (it counts against the shrink guard).
        newly: bool,
        /// Purge it.
        purge: bool,
    },
    /// Versions the previous run deleted after its commit, deleted again in case it died first.
    Redo(String, Vec<Version>),
}

/// The decision for one metric: its file (if found) and its previous entry (if any).
pub fn decide(
    file: Option<TreeFile>,
    previous: Option<ManifestEntry>,
    rules: &Rules,
) -> Option<Decision> {
    match (file, previous) {
        (None, None) => None,
        (Some(_), None) if rules.purge_only => None,
        (Some(file), None) => Some(Decision::Read {
            file,
            previous: None,
            replace: Vec::new(),
        }),
        (Some(_), Some(previous)) if rules.purge_only => Some(Decision::Keep(ManifestEntry {
            missing_since: None,
            ..previous
        })),
        (Some(file), Some(previous)) => {
            let replace = match rules
                .trust
                .corrupt_reason(&previous.name, previous.latest())
            {
                // Only versions bucky lists: whisper-backup's history is never deleted.
                Some(_) => rules
                    .trust
                    .corrupt_versions(&previous.name)
                    .into_iter()
                    .filter(|v| previous.versions.contains(v))
                    .collect(),
                None => Vec::new(),
            };
            let current = !rules.verify_all
                && replace.is_empty()
                && previous.missing_since.is_none()
                && previous.size == file.size
                && previous.mtime_ns == file.mtime_ns;
            Some(match current {
                true => Decision::Keep(previous),
                false => Decision::Read {
                    file,
                    previous: Some(previous),
                    replace,
                },
            })
        }
        (None, Some(previous)) if !rules.selection.matches(&previous.name) => {
            Some(Decision::Keep(previous))
        }
        (None, Some(previous)) => {
            let newly = previous.missing_since.is_none();
            let since = previous.missing_since.unwrap_or(rules.run);
            let purge = rules.purge_after_days >= 0
                && rules.now.0 - since.0 >= rules.purge_after_days * 86_400;
            Some(Decision::Gone {
                entry: ManifestEntry {
                    missing_since: Some(since),
                    ..previous
                },
                newly,
                purge,
            })
        }
    }
}

/// Why a join stopped.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The tree could not be walked.
    #[error("whisper tree: {0:#}")]
    Tree(anyhow::Error),
    /// The previous manifest could not be read.
    #[error("previous manifest: {0}")]
    Previous(manifest::Error),
}

/// Joins `files` and `known` (both in name order) and hands each decision to `emit`, in name
/// order ([`Decision::Redo`]s excepted: they come as their records are read, a little ahead);
/// stops early when `emit` returns false.
///
/// # Errors
/// The first failure of either input.
pub fn join(
    files: impl Iterator<Item = anyhow::Result<TreeFile>>,
    known: impl Iterator<Item = Result<Record, manifest::Error>>,
    rules: &Rules,
    mut emit: impl FnMut(Decision) -> bool,
) -> Result<(), JoinError> {
    let mut files = files;
    let mut known = known;
    let mut next_file = || files.next().transpose().map_err(JoinError::Tree);
    // The next entry; the deletes of the records passed on the way are redone.
    let mut next_entry = |emit: &mut dyn FnMut(Decision) -> bool| loop {
        match known.next().transpose().map_err(JoinError::Previous)? {
            None => return Ok(None),
            Some(Record::Purged(name, versions)) => {
                if !versions.is_empty() && !emit(Decision::Redo(name, versions)) {
                    return Ok(None);
                }
            }
            Some(Record::Entry(entry, expired)) => {
                if !expired.is_empty() && !emit(Decision::Redo(entry.name.clone(), expired)) {
                    return Ok(None);
                }
                return Ok(Some(entry));
            }
        }
    };
    let mut file = next_file()?;
    let mut entry = next_entry(&mut emit)?;
    loop {
        let decision = match (file.take(), entry.take()) {
            (None, None) => return Ok(()),
            (Some(f), e) if e.as_ref().is_none_or(|e| f.name < e.name) => {
                (file, entry) = (next_file()?, e);
                decide(Some(f), None, rules)
            }
            (f, Some(e)) if f.as_ref().is_none_or(|f| f.name > e.name) => {
                (file, entry) = (f, next_entry(&mut emit)?);
                decide(None, Some(e), rules)
            }
            (Some(f), Some(e)) => {
                debug_assert_eq!(f.name.cmp(&e.name), Ordering::Equal);
                (file, entry) = (next_file()?, next_entry(&mut emit)?);
                decide(Some(f), Some(e), rules)
            }
            (None, Some(_)) | (Some(_), None) => unreachable!("handled above"),
        };
        if let Some(decision) = decision
            && !emit(decision)
        {
            return Ok(());
        }
    }
}

/// The previous manifest's records with a dead run's uploads laid over them (both in name order):
/// an uploaded entry replaces the previous one, whose expired versions stay to be redone.
pub fn overlay<I>(previous: I, uploaded: Vec<ManifestEntry>) -> Overlay<I>
where
    I: Iterator<Item = Result<Record, manifest::Error>>,
{
    Overlay {
        previous: previous.peekable(),
        uploaded: uploaded.into_iter().peekable(),
    }
}

/// See [`overlay`].
pub struct Overlay<I: Iterator> {
    previous: Peekable<I>,
    uploaded: Peekable<std::vec::IntoIter<ManifestEntry>>,
}

impl<I> Iterator for Overlay<I>
where
    I: Iterator<Item = Result<Record, manifest::Error>>,
{
    type Item = Result<Record, manifest::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let order = match (self.previous.peek(), self.uploaded.peek()) {
            (Some(Err(_)), _) | (Some(_), None) => return self.previous.next(),
            (None, _) => return self.uploaded.next().map(|e| Ok(Record::Entry(e, vec![]))),
            (Some(Ok(p)), Some(u)) => u.name.as_str().cmp(p.name()),
        };
        match order {
            Ordering::Less => self.uploaded.next().map(|e| Ok(Record::Entry(e, vec![]))),
            Ordering::Greater => self.previous.next(),
            Ordering::Equal => match self.previous.next() {
                Some(Ok(Record::Entry(_, expired))) => {
                    self.uploaded.next().map(|e| Ok(Record::Entry(e, expired)))
                }
                purged => purged,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            run: Version(1_000_000),
            now: Version(1_000_000),
            purge_after_days: 1,
            verify_all: false,
            purge_only: false,
            selection: Selection::default(),
            trust: std::sync::Arc::default(),
        }
    }

    fn file(name: &str, size: u64) -> TreeFile {
        TreeFile {
            name: name.into(),
            size,
            mtime_ns: 7,
        }
    }

    fn entry(name: &str, size: u64, missing_since: Option<i64>) -> ManifestEntry {
        ManifestEntry {
            name: name.into(),
            versions: vec![Version(1)],
            sha1: "0".repeat(40),
            size,
            stored_size: 1,
            mtime_ns: 7,
            missing_since: missing_since.map(Version),
        }
    }

    fn run_join(
        files: Vec<TreeFile>,
        known: Vec<Record>,
        rules: &Rules,
    ) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        join(
            files.into_iter().map(Ok),
            known.into_iter().map(Ok),
            rules,
            |d| {
                out.push(match d {
                    Decision::Keep(e) => (e.name, "keep"),
                    Decision::Read { file, previous, .. } => {
                        (file.name, if previous.is_some() { "read" } else { "new" })
                    }
                    Decision::Gone {
                        entry, purge: true, ..
                    } => (entry.name, "purge"),
                    Decision::Gone { entry, .. } => (entry.name, "missing"),
                    Decision::Redo(name, _) => (name, "redo"),
                });
                true
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn joins_in_name_order() {
        let files = vec![file("a", 1), file("b", 2), file("d", 1), file("e", 1)];
        let known = vec![
            Record::Entry(entry("b", 1, None), vec![]),
            Record::Entry(entry("c", 1, None), vec![Version(0)]),
            Record::Purged("c.old".into(), vec![Version(0)]),
            Record::Entry(entry("d", 1, None), vec![]),
            Record::Entry(entry("f", 1, Some(0)), vec![]),
        ];
        let (redo, got): (Vec<_>, Vec<_>) = run_join(files, known, &rules())
            .into_iter()
            .partition(|(_, d)| *d == "redo");
        let want = [
            ("a", "new"),
            ("b", "read"),
            ("c", "missing"),
            ("d", "keep"),
            ("e", "new"),
            ("f", "purge"),
        ];
        assert_eq!(
            got,
            want.map(|(n, d)| (n.to_string(), d)).to_vec(),
            "{got:?}"
        );
        let redo: Vec<&str> = redo.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(redo, ["c", "c.old"]);
    }

    #[test]
    fn decisions_follow_the_rules() {
        let r = rules();
        let kept = |d: Option<Decision>| matches!(d, Some(Decision::Keep(_)));
        assert!(kept(decide(
            Some(file("a", 1)),
            Some(entry("a", 1, None)),
            &r
        )));
        let verify = Rules {
            verify_all: true,
            ..rules()
        };
        assert!(!kept(decide(
            Some(file("a", 1)),
            Some(entry("a", 1, None)),
            &verify
        )));
        // A file back after being missing is read, even at the recorded size and mtime.
        assert!(!kept(decide(
            Some(file("a", 1)),
            Some(entry("a", 1, Some(5))),
            &r
        )));
        let purge_only = Rules {
            purge_only: true,
            ..rules()
        };
        assert_eq!(decide(Some(file("a", 1)), None, &purge_only), None);
        assert_eq!(
            decide(
                Some(file("a", 9)),
                Some(entry("a", 1, Some(5))),
                &purge_only
            ),
            Some(Decision::Keep(entry("a", 1, None)))
        );
        assert_eq!(
            decide(None, Some(entry("a", 1, None)), &r),
            Some(Decision::Gone {
                entry: entry("a", 1, Some(1_000_000)),
                newly: true,
                purge: false
            })
        );
        let outside = Rules {
            selection: Selection::new(&["b.*".to_string()], None).unwrap(),
            ..rules()
        };
        assert!(kept(decide(None, Some(entry("a", 1, None)), &outside)));
        let never = Rules {
            purge_after_days: -1,
            ..rules()
        };
        assert!(matches!(
            decide(None, Some(entry("a", 1, Some(0))), &never),
            Some(Decision::Gone { purge: false, .. })
        ));
    }

    #[test]
    fn a_dead_runs_uploads_replace_previous_entries() {
        let previous = vec![
            Record::Entry(entry("a", 1, None), vec![Version(0)]),
            Record::Purged("b".into(), vec![Version(0)]),
            Record::Entry(entry("c", 1, None), vec![]),
        ];
        let uploaded = vec![
            entry("a", 2, None),
            entry("b", 2, None),
            entry("d", 2, None),
        ];
        let merged: Vec<Record> = overlay(previous.into_iter().map(Ok), uploaded)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            merged,
            vec![
                Record::Entry(entry("a", 2, None), vec![Version(0)]),
                Record::Purged("b".into(), vec![Version(0)]),
                Record::Entry(entry("b", 2, None), vec![]),
                Record::Entry(entry("c", 1, None), vec![]),
                Record::Entry(entry("d", 2, None), vec![]),
            ]
        );
    }
}
