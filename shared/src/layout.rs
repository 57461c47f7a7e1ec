//! The bucket layout, readable by whisper-backup and by hand:
//!
//! ```text
//! <prefix><metric.name>/<TS>.wsp.gz      one gzip member of the raw .wsp
//! <prefix><metric.name>/<TS>.sha1        40 lowercase hex chars, SHA-1 of the raw file, no newline
//! <prefix>.bucky/owner.json              the host that owns this bucket
//! <prefix>.bucky/manifests/<TS>.json.gz  one per completed run: its commit point
//! <prefix>.bucky/manifests/<TS>.summary.json  its counts, for status and checks
//! <prefix>.bucky/checkpoint/<TS>/<N>.json.gz  progress of a running backup, in segments
//! <prefix>.bucky/lease.json               the running backup, while one runs
//! <prefix>.bucky/verify/<TS>.json.gz      what a verification run found (see [`verification`])
//! ```
//!
//! `TS` is `YYYY-MM-DDTHH:MM:SS+00:00` (UTC). The `.bucky/` prefix can never be a metric: a
//! metric name has no empty segment, so none starts with a dot.

pub mod manifest;
pub mod owner;
pub mod retention;
mod timestamp;
pub mod verification;

pub use manifest::{Manifest, ManifestEntry, RunStats, Summary};
pub use owner::OwnerMarker;
pub use retention::Retention;
pub use timestamp::{Version, parse_date};
pub use verification::{Trust, VerifyRecord};

/// The directory under the prefix that holds bucky's own objects.
pub const RESERVED_DIR: &str = ".bucky/";

/// What a data object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `.wsp.gz`: one gzip member (bucky, whisper-backup's default).
    Gzip,
    /// `.wsp.sz`: snappy framing (whisper-backup's `--compress snappy`); read only.
    Snappy,
}

impl Encoding {
    fn suffix(self) -> &'static str {
        match self {
            Encoding::Gzip => ".wsp.gz",
            Encoding::Snappy => ".wsp.sz",
        }
    }
}

/// What an object key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// A metric's file at one version.
    Data(Encoding),
    /// The SHA-1 of that version.
    Sha1,
}

/// A parsed metric object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Dotted metric name.
    pub metric: String,
    /// When the version was taken.
    pub version: Version,
    /// Data or checksum.
    pub kind: ObjectKind,
}

/// Object keys under one storage prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// A layout under `prefix` (`""` for the bucket root; a trailing `/` is added if missing).
    pub fn new(prefix: &str) -> Self {
        let trimmed = prefix.trim_start_matches('/');
        let prefix = if trimmed.is_empty() || trimmed.ends_with('/') {
            trimmed.to_string()
        } else {
            format!("{trimmed}/")
        };
        Layout { prefix }
    }

    /// The storage prefix, empty or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Key of a metric's data at `version`.
    pub fn data_key(&self, metric: &str, version: Version) -> String {
        format!(
            "{}{metric}/{version}{}",
            self.prefix,
            Encoding::Gzip.suffix()
        )
    }

    /// Key of a metric's SHA-1 at `version`.
    pub fn sha1_key(&self, metric: &str, version: Version) -> String {
        format!("{}{metric}/{version}.sha1", self.prefix)
    }

    /// The prefix under which all of a metric's objects live.
    pub fn metric_prefix(&self, metric: &str) -> String {
        format!("{}{metric}/", self.prefix)
    }

    /// Key of the owner marker.
    pub fn owner_key(&self) -> String {
        format!("{}{RESERVED_DIR}owner.json", self.prefix)
    }

    /// Key of the lease a running backup holds, so two runs never write one bucket at once.
    pub fn lease_key(&self) -> String {
        format!("{}{RESERVED_DIR}lease.json", self.prefix)
    }

    /// Prefix of the checkpoint segments: what a running backup has uploaded so far, so a run
    /// that dies is resumed without uploading again. Each segment holds only the uploads since
    /// the one before, so checkpointing costs what was uploaded, not the whole run again.
    pub fn checkpoint_prefix(&self) -> String {
        format!("{}{RESERVED_DIR}checkpoint/", self.prefix)
    }

    /// Key of segment `seq` of run `run`'s checkpoint.
    pub fn checkpoint_segment_key(&self, run: Version, seq: u64) -> String {
        format!("{}{run}/{seq:08}.json.gz", self.checkpoint_prefix())
    }

    /// The run of a checkpoint segment key.
    pub fn parse_checkpoint_key(&self, key: &str) -> Option<Version> {
        let rest = key.strip_prefix(&self.checkpoint_prefix())?;
        let (run, segment) = rest.split_once('/')?;
        segment.strip_suffix(".json.gz")?;
        run.parse().ok()
    }

    /// Prefix of the verification records.
    pub fn verify_prefix(&self) -> String {
        format!("{}{RESERVED_DIR}verify/", self.prefix)
    }

    /// Key of the record of the verification run started at `run`.
    pub fn verify_key(&self, run: Version) -> String {
        format!("{}{run}.json.gz", self.verify_prefix())
    }

    /// The run a verification record key belongs to.
    pub fn parse_verify_key(&self, key: &str) -> Option<Version> {
        key.strip_prefix(&self.verify_prefix())?
            .strip_suffix(".json.gz")?
            .parse()
            .ok()
    }

    /// Prefix of the manifests.
    pub fn manifests_prefix(&self) -> String {
        format!("{}{RESERVED_DIR}manifests/", self.prefix)
    }

    /// Key of the manifest of the run started at `run`.
    pub fn manifest_key(&self, run: Version) -> String {
        format!("{}{run}.json.gz", self.manifests_prefix())
    }

    /// Key of the summary of the manifest of `run`.
    pub fn summary_key(&self, run: Version) -> String {
        format!("{}{run}.summary.json", self.manifests_prefix())
    }

    /// The run a manifest key belongs to.
    pub fn parse_manifest_key(&self, key: &str) -> Option<Version> {
        let name = key
            .strip_prefix(&self.manifests_prefix())?
            .strip_suffix(".json.gz")?;
        name.parse().ok()
    }

    /// Parses a metric object key; `None` for anything else (bucky's own objects, stray files).
    pub fn parse_key(&self, key: &str) -> Option<ObjectRef> {
        let rest = key.strip_prefix(&self.prefix)?;
        if rest.starts_with(RESERVED_DIR) {
            return None;
        }
        let (metric, file) = rest.rsplit_once('/')?;
        if metric.is_empty() || metric.contains('/') {
            return None;
        }
        let (stamp, kind) = if let Some(s) = file.strip_suffix(Encoding::Gzip.suffix()) {
            (s, ObjectKind::Data(Encoding::Gzip))
        } else if let Some(s) = file.strip_suffix(Encoding::Snappy.suffix()) {
            (s, ObjectKind::Data(Encoding::Snappy))
        } else {
            (file.strip_suffix(".sha1")?, ObjectKind::Sha1)
        };
        Some(ObjectRef {
            metric: metric.to_string(),
            version: stamp.parse().ok()?,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let layout = Layout::new("graphite");
        let v: Version = "2026-11-21T10:00:00+00:00".parse().unwrap();
        let key = layout.data_key("servers.web01.cpu", v);
        assert_eq!(
            key,
            "graphite/servers.web01.cpu/2026-11-21T10:00:00+00:00.wsp.gz"
        );
        let parsed = layout.parse_key(&key).unwrap();
        assert_eq!(
            (parsed.metric.as_str(), parsed.version, parsed.kind),
            ("servers.web01.cpu", v, ObjectKind::Data(Encoding::Gzip))
        );
        assert_eq!(
            layout.parse_key(&layout.sha1_key("a.b", v)).unwrap().kind,
            ObjectKind::Sha1
        );
        let sz = "graphite/a.b/2026-11-21T10:00:00+00:00.wsp.sz";
        assert_eq!(
            layout.parse_key(sz).unwrap().kind,
            ObjectKind::Data(Encoding::Snappy)
        );
        assert_eq!(layout.parse_manifest_key(&layout.manifest_key(v)), Some(v));
    }

    #[test]
    fn reserved_and_foreign_keys_are_not_metrics() {
        let layout = Layout::new("");
        let v: Version = "2026-01-01T00:00:00+00:00".parse().unwrap();
        assert_eq!(layout.parse_key(&layout.manifest_key(v)), None);
        assert_eq!(layout.parse_key(&layout.owner_key()), None);
        assert_eq!(layout.parse_key("a.b/notes.txt"), None);
        assert_eq!(layout.parse_key("a.b/yesterday.wsp.gz"), None);
        assert_eq!(
            layout.parse_key("x/a.b/2026-01-01T00:00:00+00:00.sha1"),
            None
        );
        assert_eq!(Layout::new("/p/").prefix(), "p/");
    }
}
