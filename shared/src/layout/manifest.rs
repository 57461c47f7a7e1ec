//! The per-run manifest: every metric seen on disk in a run, with its newest version in the
//! bucket, and since when a metric has been missing from disk. Written last, so a run that dies
//! leaves the previous manifest as the truth; stored as gzip-compressed JSON.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::Version;

/// The format this code writes and reads.
pub const FORMAT: u32 = 1;

/// A manifest's JSON is at most this many times its gzip size (bucky's compress 10-20 to one);
/// past it the object is a decompression bomb, not a manifest, and is refused before memory
/// follows it.
pub const MAX_EXPANSION: u64 = 100;
/// ... and may always expand to this many bytes, however small it is.
const MIN_EXPANDED_LIMIT: u64 = 16 << 20;

/// A reader that gives at most `left` bytes and then fails, so a bomb stops where it is seen.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other(
                "the decompressed manifest is too large",
            ));
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

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

/// A completed run's view of the bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Object keys this run deletes after writing the manifest (old versions beyond retention,
    /// purged metrics); the next run deletes them again in case this one died first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_deletes: Vec<String>,
    /// What the run did (absent in checkpoints and older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<RunStats>,
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

    /// gzip-compressed JSON.
    pub fn encode(&self) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        serde_json::to_writer(&mut gz, self).expect("a manifest serialises");
        gz.flush().expect("writing to memory");
        gz.finish().expect("writing to memory")
    }

    /// Reads [`Manifest::encode`]'s output.
    ///
    /// # Errors
    /// [`Error::Corrupt`] or [`Error::Format`].
    pub fn decode(bytes: &[u8]) -> Result<Manifest, Error> {
        let limit = (bytes.len() as u64 * MAX_EXPANSION).max(MIN_EXPANDED_LIMIT);
        // Parsed as it is inflated: the JSON text of a node of millions of metrics is never
        // held whole beside the entries it becomes.
        let mut json = Bounded {
            inner: GzDecoder::new(bytes),
            left: limit,
        };
        let parsed = serde_json::from_reader(std::io::BufReader::new(&mut json));
        if json.left == 0 {
            return Err(Error::Corrupt(format!(
                "{} compressed bytes expand past {limit}: not a manifest bucky wrote",
                bytes.len()
            )));
        }
        let manifest: Manifest = parsed.map_err(|e| Error::Corrupt(e.to_string()))?;
        if manifest.format > FORMAT {
            return Err(Error::Format(manifest.format));
        }
        if !manifest.metrics.is_sorted_by(|a, b| a.name < b.name) {
            return Err(Error::Corrupt("metrics are not sorted by name".into()));
        }
        if let Some(e) = manifest.metrics.iter().find(|e| e.versions.is_empty()) {
            return Err(Error::Corrupt(format!("metric {} has no version", e.name)));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
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
            pending_deletes: vec!["a/2023-11-03T08:26:40+00:00.wsp.gz".into()],
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

    #[test]
    fn corrupt_and_future_manifests_are_refused() {
        let bytes = manifest().encode();
        assert!(matches!(
            Manifest::decode(&bytes[..bytes.len() / 2]),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(Manifest::decode(b"{}"), Err(Error::Corrupt(_))));
        let mut future = manifest();
        future.format = 99;
        assert!(matches!(
            Manifest::decode(&future.encode()),
            Err(Error::Format(99))
        ));
        let mut bomb = GzEncoder::new(Vec::new(), Compression::best());
        bomb.write_all(&vec![b' '; 17 << 20]).unwrap();
        let bomb = bomb.finish().unwrap();
        let err = Manifest::decode(&bomb).unwrap_err().to_string();
        assert!(err.contains("expand past 16777216"), "{err}");
        let mut unsorted = manifest();
        unsorted.metrics.reverse();
        assert!(matches!(
            Manifest::decode(&unsorted.encode()),
            Err(Error::Corrupt(_))
        ));
    }
}
