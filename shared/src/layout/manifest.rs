//! The per-run manifest: every metric seen on disk in a run, with its versions in the bucket,
//! and since when a metric has been missing from disk. Written last, so a run that dies leaves
//! the previous manifest as the truth; stored as gzip-compressed JSON lines ([`stream`]), written
//! and read one metric at a time. [`Manifest`] is the whole of one in memory, for small ones.

pub mod stream;

pub use stream::{Reader, Record, Trailer, Writer};

use super::Version;

/// The format this code writes; it reads 1 (one JSON document) too.
pub const FORMAT: u32 = 2;

/// A manifest's JSON is at most this many times its gzip size (bucky's compress 10-20 to one);
/// past it the object is a decompression bomb, not a manifest, and is refused before memory
/// follows it.
pub const MAX_EXPANSION: u64 = 100;
/// ... and may always expand to this many bytes, however small it is.
const MIN_EXPANDED_LIMIT: u64 = 16 << 20;

/// A manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not gzip, not JSON, or not a manifest.
    #[error("corrupt manifest: {0}")]
    Corrupt(String),
    /// Written by a newer bucky.
    #[error("manifest format {0} is newer than this bucky understands ({FORMAT})")]
    Format(u32),
}

/// One metric in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    /// Dotted metric name.
    pub name: String,
    /// Every version stored in the bucket, oldest first; the last is the newest.
    pub versions: Vec<Version>,
    /// SHA-1 of the newest version's raw file, lowercase hex.
    pub sha1: String,
    /// Size of the raw file in bytes.
    pub size: u64,
    /// Size of the stored (compressed) object in bytes.
    pub stored_size: u64,
    /// The file's modification time when it was last read, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// When a run first found the file gone from disk; `None` while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_since: Option<Version>,
}

/// A completed run's view of the bucket, whole in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The host whose tree this is.
    pub node: String,
    /// When the run started (also its key).
    pub started: Version,
    /// When the run wrote this manifest.
    pub finished: Version,
    /// Metrics sorted by name.
    pub metrics: Vec<ManifestEntry>,
    /// Versions this run deletes after writing the manifest (beyond retention, and every
    /// version of a purged metric), sorted by name; the next run deletes them again in case this
    /// one died first.
    pub deletes: Vec<Deleted>,
    /// What the run did (absent in checkpoints and older manifests).
    pub stats: Option<RunStats>,
}

/// Versions of one metric a run deletes once its manifest is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// Dotted metric name.
    pub name: String,
    /// The versions.
    pub versions: Vec<Version>,
    /// The metric was purged: it has no entry any more.
    pub purged: bool,
}

/// Counts of one backup run, kept in its manifest for status and checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunStats {
    /// Metrics uploaded for the first time.
    pub new: u64,
    /// Metrics uploaded because they changed.
    pub changed: u64,
    /// Metrics already current.
    pub unchanged: u64,
    /// Files that could not be backed up.
    pub failed: u64,
    /// Compressed bytes uploaded.
    pub bytes_uploaded: u64,
}

/// A manifest in a few hundred bytes, written beside it, so status and checks of a node of
/// millions of metrics read this instead of downloading the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// The run's start (the manifest's key).
    pub started: Version,
    /// When its manifest was written.
    pub finished: Version,
    /// Metrics in the manifest.
    pub metrics: u64,
    /// Of those, metrics that were not on disk.
    pub missing: u64,
    /// What the run did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<RunStats>,
}

impl Manifest {
    /// Its [`Summary`].
    pub fn summary(&self) -> Summary {
        Summary {
            started: self.started,
            finished: self.finished,
            metrics: self.metrics.len() as u64,
            missing: self
                .metrics
                .iter()
                .filter(|e| e.missing_since.is_some())
                .count() as u64,
            stats: self.stats,
        }
    }
}

impl ManifestEntry {
    /// The newest stored version.
    pub fn latest(&self) -> Version {
        *self
            .versions
            .last()
            .expect("a manifest entry has a version")
    }
}

impl Manifest {
    /// The entry of `name`, if any (metrics are sorted by name).
    pub fn entry(&self, name: &str) -> Option<&ManifestEntry> {
        self.metrics
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.metrics[i])
    }

    /// Its bytes, as [`Writer`] writes them.
    pub fn encode(&self) -> Vec<u8> {
        let mut writer = Writer::new(&self.node, self.started);
        let mut deletes = self.deletes.iter().peekable();
        for entry in &self.metrics {
            while let Some(d) = deletes.next_if(|d| d.name < entry.name) {
                if d.purged {
                    writer.purged(&d.name, &d.versions);
                }
            }
            let expired = deletes
                .next_if(|d| d.name == entry.name && !d.purged)
                .map_or(&[][..], |d| &d.versions);
            writer.entry(entry, expired);
        }
        for d in deletes.filter(|d| d.purged) {
            writer.purged(&d.name, &d.versions);
        }
        writer.finish(self.finished, self.stats).0
    }

    /// Reads a manifest whole (either format).
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::Format`].
    pub fn decode(bytes: &[u8]) -> Result<Manifest, Error> {
        let mut reader = Reader::new(bytes)?;
        let (node, started) = (reader.node().to_string(), reader.started());
        let mut metrics = Vec::new();
        let mut deletes = Vec::new();
        for record in reader.by_ref() {
            match record? {
                Record::Entry(entry, expired) => {
                    if !expired.is_empty() {
                        deletes.push(Deleted {
                            name: entry.name.clone(),
                            versions: expired,
                            purged: false,
                        });
                    }
                    metrics.push(entry);
                }
                Record::Purged(name, versions) => deletes.push(Deleted {
                    name,
                    versions,
                    purged: true,
                }),
            }
        }
        let trailer = reader.finish()?;
        Ok(Manifest {
            format: FORMAT,
            node,
            started,
            finished: trailer.finished,
            metrics,
            deletes,
            stats: trailer.stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn manifest() -> Manifest {
        let entry = |name: &str| ManifestEntry {
            name: name.into(),
            versions: vec![Version(1_699_000_000), Version(1_700_000_000)],
            sha1: "0".repeat(40),
            size: 1000,
            stored_size: 100,
            mtime_ns: 1_699_999_999_123_456_789,
            missing_since: (name == "b").then_some(Version(1_700_000_000)),
        };
        Manifest {
            format: FORMAT,
            node: "graphite-01".into(),
            started: Version(1_700_000_000),
            finished: Version(1_700_000_060),
            metrics: vec![entry("a"), entry("b"), entry("c.d")],
            deletes: vec![
                Deleted {
                    name: "a".into(),
                    versions: vec![Version(1_698_999_000)],
                    purged: false,
                },
                Deleted {
                    name: "a.x".into(),
                    versions: vec![Version(1_698_999_000), Version(1_699_000_000)],
                    purged: true,
                },
            ],
            stats: Some(RunStats {
                new: 1,
                changed: 2,
                unchanged: 3,
                failed: 0,
                bytes_uploaded: 100,
            }),
        }
    }

    #[test]
    fn round_trips_and_finds_entries() {
        let m = manifest();
        let decoded = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(decoded, m);
        assert_eq!(
            decoded.entry("c.d").unwrap().latest(),
            Version(1_700_000_000)
        );
        assert!(decoded.entry("zz").is_none());
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    fn inflate(bytes: &[u8]) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    fn error_of(text: &str) -> String {
        Manifest::decode(&gzip(text)).unwrap_err().to_string()
    }

    #[test]
    fn corrupt_cut_off_and_future_manifests_are_refused() {
        let bytes = manifest().encode();
        assert!(matches!(
            Manifest::decode(&bytes[..bytes.len() / 2]),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(Manifest::decode(b"{}"), Err(Error::Corrupt(_))));
        let text = inflate(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        // Cut at a line boundary: the gzip stream is whole, the manifest is not.
        let cut = lines[..lines.len() - 1].join("\n") + "\n";
        assert!(error_of(&cut).contains("no end line"), "{}", error_of(&cut));
        let dropped = [&lines[..3], &lines[4..]].concat().join("\n");
        assert!(error_of(&dropped).contains("claiming 3 metrics"));
        let swapped = [lines[0], lines[2], lines[1], lines[3]].join("\n");
        assert!(error_of(&swapped).contains("not sorted"));
        let future = text.replacen("\"format\":2", "\"format\":99", 1);
        assert!(matches!(
            Manifest::decode(&gzip(&future)),
            Err(Error::Format(99))
        ));
        let mut bomb = GzEncoder::new(Vec::new(), Compression::best());
        bomb.write_all(&vec![b' '; 17 << 20]).unwrap();
        let bomb = bomb.finish().unwrap();
        let err = Manifest::decode(&bomb).unwrap_err().to_string();
        assert!(err.contains("expand past 16777216"), "{err}");
    }

    #[test]
    fn format_1_is_read() {
        let v1 = r#"{"format":1,"node":"g1","started":"2023-11-14T22:13:20+00:00","finished":"2023-11-14T22:14:20+00:00","metrics":[{"name":"a","versions":["2023-11-14T22:13:20+00:00"],"sha1":"00","size":1,"stored_size":1,"mtime_ns":5},{"name":"b","versions":["2023-11-14T22:13:20+00:00"],"sha1":"00","size":1,"stored_size":1,"mtime_ns":5,"missing_since":"2023-11-14T22:13:20+00:00"}],"pending_deletes":["x/2023-11-14T22:13:20+00:00.wsp.gz"]}"#;
        let m = Manifest::decode(&gzip(v1)).unwrap();
        assert_eq!((m.node.as_str(), m.metrics.len()), ("g1", 2));
        assert_eq!(m.summary().missing, 1);
        assert_eq!(m.finished, Version(1_700_000_060));
        let unsorted = v1.replacen("\"name\":\"a\"", "\"name\":\"c\"", 1);
        assert!(error_of(&unsorted).contains("not sorted"));
    }
}
