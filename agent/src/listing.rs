//! What `bucky-agent list` shows of a bucket: per metric, the versions a restore can use, and
//! apart from them the objects that are not such versions: a data object without its `.sha1` (or
//! the reverse), an upload that landed after its run gave up on it, or history the newest
//! manifest does not list.

use bucky_shared::layout::manifest::Record;
use bucky_shared::layout::{ManifestEntry, Version};

use crate::restore::Catalog;

/// One metric as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    /// Dotted metric name.
    pub metric: String,
    /// Complete versions (data and `.sha1`) the newest manifest lists, or, in a bucket without
    /// manifests (whisper-backup's), every complete version.
    pub versions: Vec<Version>,
    /// Complete versions the newest manifest does not list: uploads of a run that did not commit
    /// (or landed after the run gave up on them), or history from before bucky took the bucket
    /// over. A default restore does not use them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unlisted: Vec<Version>,
    /// Versions with only their data or only their `.sha1`: never restored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<Version>,
}

/// Joins the bucket's `catalog` with its newest manifest's `entries` (both in name order; `None`
/// for a bucket without manifests), handing each metric `keep` selects to `emit`.
pub fn join(
    catalog: &Catalog,
    entries: Option<impl Iterator<Item = ManifestEntry>>,
    keep: impl Fn(&str) -> bool,
    mut emit: impl FnMut(Listed),
) {
    let mut entries = entries.map(Iterator::peekable);
    for (name, stored) in catalog {
        let listed: Option<Vec<Version>> = entries.as_mut().map(|it| {
            while it.next_if(|e| e.name < *name).is_some() {}
            it.next_if(|e| e.name == *name)
                .map(|e| e.versions)
                .unwrap_or_default()
        });
        if !keep(name) {
            continue;
        }
        let mut out = Listed {
            metric: name.clone(),
            versions: Vec::new(),
            unlisted: Vec::new(),
            incomplete: Vec::new(),
        };
        for (version, s) in stored {
            if !(s.sha1 && s.data.is_some()) {
                out.incomplete.push(*version);
            } else if listed.as_ref().is_none_or(|l| l.contains(version)) {
                out.versions.push(*version);
            } else {
                out.unlisted.push(*version);
            }
        }
        emit(out);
    }
}

/// The entries of a stored manifest, corrupt records skipped.
pub fn entries(
    stored: &bucky_shared::manifests::Stored,
) -> impl Iterator<Item = ManifestEntry> + '_ {
    stored.reader().filter_map(|r| match r {
        Ok(Record::Entry(entry, _)) => Some(entry),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::Stored;
    use bucky_shared::layout::Encoding;

    fn stored(data: bool, sha1: bool) -> Stored {
        Stored {
            data: data.then_some(Encoding::Gzip),
            sha1,
        }
    }

    #[test]
    fn versions_are_told_from_unlisted_and_incomplete_objects() {
        let mut catalog = Catalog::new();
        let a = catalog.entry("a".into()).or_default();
        a.insert(Version(1), stored(true, true));
        a.insert(Version(2), stored(true, true));
        a.insert(Version(3), stored(true, false));
        catalog
            .entry("b".into())
            .or_default()
            .insert(Version(5), stored(false, true));
        catalog
            .entry("c".into())
            .or_default()
            .insert(Version(7), stored(true, true));
        let manifest = vec![ManifestEntry {
            name: "a".into(),
            versions: vec![Version(2)],
            sha1: "0".repeat(40),
            size: 1,
            stored_size: 1,
            mtime_ns: 0,
            missing_since: None,
        }];
        let mut out = Vec::new();
        join(
            &catalog,
            Some(manifest.into_iter()),
            |_| true,
            |l| out.push(l),
        );
        assert_eq!(out[0].versions, [Version(2)]);
        assert_eq!(out[0].unlisted, [Version(1)]);
        assert_eq!(out[0].incomplete, [Version(3)]);
        assert_eq!((out[1].versions.len(), out[1].incomplete.len()), (0, 1));
        assert_eq!(
            out[2].unlisted,
            [Version(7)],
            "a metric the manifest does not have"
        );

        let mut whisper_backup = Vec::new();
        join(
            &catalog,
            None::<std::vec::IntoIter<ManifestEntry>>,
            |n| n != "b",
            |l| whisper_backup.push(l),
        );
        assert_eq!(whisper_backup.len(), 2);
        assert_eq!(whisper_backup[0].versions, [Version(1), Version(2)]);
    }
}
