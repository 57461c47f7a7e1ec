//! Restoring a node's whisper tree from a bucket: for each metric the newest version strictly
//! before the restore date is downloaded, decompressed and checked against its `.sha1`; a file
//! that does not exist is written whole (temp name, fsync, rename, zero blocks left sparse), a
//! file that exists is safe-filled, so no point it holds is changed. Works on buckets written by
//! whisper-backup (no manifest) because it reads the bucket's listing.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use bucky_shared::fill::{self, FillMode, FillOptions};
use bucky_shared::layout::{Encoding, ObjectKind, Version};
use bucky_shared::metric;
use bucky_shared::whisper::{Image, Whisper};
use futures::{StreamExt, stream};
use tracing::{info, warn};

use crate::backup::FileFailure;
use crate::bucket::{self, Bucket};
use crate::codec;
use crate::tree::Selection;

/// What a restore does.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Restore the newest version strictly before this time; default: the newest.
    pub before: Option<Version>,
    /// Metrics restored.
    pub selection: Selection,
    /// Metrics downloaded and written at once; default 4.
    pub workers: usize,
    /// Longest wait for an existing file's exclusive lock.
    pub lock_timeout: Duration,
    /// The clock for safe fill (Unix seconds).
    pub now: i64,
}

impl RestoreOptions {
    /// Defaults at time `now`.
    pub fn new(now: i64) -> Self {
        RestoreOptions {
            before: None,
            selection: Selection::default(),
            workers: 4,
            lock_timeout: Duration::from_secs(10),
            now,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreReport {
    /// Files written whole (they did not exist).
    pub written: u64,
    /// Existing files safe-filled.
    pub filled: u64,
    /// Points the fills added.
    pub points_filled: u64,
    /// Metrics with no version before the date.
    pub no_version: u64,
    /// Bytes downloaded.
    pub bytes_downloaded: u64,
    /// Metrics that could not be restored (corrupt object, checksum mismatch, bad name...).
    pub failed: Vec<FileFailure>,
}

/// The versions a bucket holds: metric → version → what is stored for it.
pub type Catalog = BTreeMap<String, BTreeMap<Version, Stored>>;

/// The objects of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    /// The data object, and how it is encoded.
    pub data: Option<Encoding>,
    /// Whether a `.sha1` exists.
    pub sha1: bool,
}

/// Lists the bucket into a catalog of metrics and versions.
///
/// # Errors
/// The listing failed.
pub async fn catalog(bucket: &Bucket) -> Result<Catalog, bucket::Error> {
    let mut out = Catalog::new();
    for meta in bucket.list(bucket.layout().prefix()).await? {
        let Some(object) = bucket.layout().parse_key(meta.location.as_ref()) else {
            continue;
        };
        let stored = out
            .entry(object.metric)
            .or_default()
            .entry(object.version)
            .or_default();
        match object.kind {
            ObjectKind::Data(encoding) => stored.data = Some(encoding),
            ObjectKind::Sha1 => stored.sha1 = true,
        }
    }
    Ok(out)
}

/// Restores `bucket` into `root`.
///
/// # Errors
/// Only a failed listing; each metric that fails is reported in [`RestoreReport::failed`].
pub async fn restore(
    bucket: &Bucket,
    root: &Path,
    options: &RestoreOptions,
) -> Result<RestoreReport, bucket::Error> {
    let catalog = catalog(bucket).await?;
    let mut report = RestoreReport::default();
    let mut chosen = Vec::new();
    for (name, versions) in &catalog {
        if !options.selection.matches(name) {
            continue;
        }
        // A version is complete with its .sha1; data alone is an upload that died half way.
        let pick = versions.iter().rev().find(|(v, s)| {
            s.data.is_some() && s.sha1 && options.before.is_none_or(|before| **v < before)
        });
        match pick {
            Some((v, s)) => chosen.push((name.clone(), *v, *s)),
            None => report.no_version += 1,
        }
    }
    let mut results = stream::iter(
        chosen
            .into_iter()
            .map(|(name, version, stored)| async move {
                let result = restore_one(bucket, root, &name, version, stored, options).await;
                (name, result)
            }),
    )
    .buffer_unordered(options.workers.max(1));
    while let Some((name, result)) = results.next().await {
        match result {
            Ok(done) => {
                report.bytes_downloaded += done.downloaded;
                match done.points_filled {
                    None => report.written += 1,
                    Some(points) => {
                        report.filled += 1;
                        report.points_filled += points;
                    }
                }
            }
            Err(error) => {
                warn!(metric = name, error, "not restored");
                report.failed.push(FileFailure {
                    metric: name,
                    error,
                });
            }
        }
    }
    info!(
        bucket = bucket.url(),
        written = report.written,
        filled = report.filled,
        failed = report.failed.len(),
        "restore done"
    );
    Ok(report)
}

struct Restored {
    downloaded: u64,
    /// `None` when the file was written whole.
    points_filled: Option<u64>,
}

async fn restore_one(
    bucket: &Bucket,
    root: &Path,
    name: &str,
    version: Version,
    stored: Stored,
    options: &RestoreOptions,
) -> Result<Restored, String> {
    let path = metric::path_of(root, name).map_err(|e| e.to_string())?;
    let layout = bucket.layout();
    let encoding = stored.data.expect("chosen versions have data");
    let data_key = match encoding {
        Encoding::Gzip => layout.data_key(name, version),
        Encoding::Snappy => layout.data_key(name, version).replace(".wsp.gz", ".wsp.sz"),
    };
    let object = bucket
        .get(&data_key)
        .await
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(|| format!("{data_key} disappeared"))?;
    let expected = bucket
        .get(&layout.sha1_key(name, version))
        .await
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(|| format!("{data_key}: its .sha1 disappeared"))?;
    let downloaded = (object.len() + expected.len()) as u64;
    let (options, name) = (options.clone(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let raw = codec::decode(&object, encoding)
            .map_err(|e| format!("{data_key}: corrupt object: {e}"))?;
        let expected = String::from_utf8_lossy(&expected)
            .trim()
            .to_ascii_lowercase();
        let actual = codec::sha1_hex(&raw);
        if actual != expected {
            return Err(format!(
                "{data_key}: SHA-1 {actual} does not match its .sha1 {expected}"
            ));
        }
        let image = Whisper::open(Image::new(raw), &data_key).map_err(|e| e.to_string())?;
        if !path.exists() {
            match write_new(&path, image.storage().bytes()) {
                Ok(()) => {
                    return Ok(Restored {
                        downloaded,
                        points_filled: None,
                    });
                }
                // Created meanwhile (carbon wrote it): fill it instead.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        let fill_options = FillOptions {
            lock_timeout: options.lock_timeout,
            ..FillOptions::new(FillMode::Safe, options.now)
        };
        let filled = fill::fill_file_from_image(&image, &path, &fill_options)
            .map_err(|e| format!("{name}: {e:#}"))?;
        Ok(Restored {
            downloaded,
            points_filled: Some(filled.points_written),
        })
    })
    .await
    .map_err(|e| format!("restore task panicked: {e}"))?
}

/// Writes a new file atomically: temp name in the same directory, only non-zero 4 KiB blocks
/// written (zero blocks stay holes), fsync, link into place without replacing anything, fsync the
/// directory.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    const BLOCK: usize = 4096;
    let dir = path.parent().expect("a metric path has a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".bucky-restore-")
        .tempfile_in(dir)?;
    let file = tmp.as_file_mut();
    file.set_len(bytes.len() as u64)?;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if block.iter().any(|&b| b != 0) {
            file.write_all_at(block, (i * BLOCK) as u64)?;
        }
    }
    file.flush()?;
    file.sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
