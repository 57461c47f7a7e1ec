//! Reading back what a bucket holds: each stored version downloaded, decompressed, checked
//! against its `.sha1` (and the manifest's SHA-1 for the newest), its whisper header parsed and
//! its archives checked against the file's size. What was found is recorded in the bucket
//! ([`bucky_shared::layout::verification`]), so a restore can pass over a corrupt version and
//! `check` can say what has not been verified lately.
//!
//! Versions are enumerated from the newest manifest (a bucket without one, whisper-backup's, or
//! with `from_listing`, from its listing), only those of the parts asked for; both `.wsp.gz` and
//! whisper-backup's `.wsp.sz` are read. Nothing is written but the record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bucky_shared::bucket::{self, Bucket};
use bucky_shared::layout::manifest::Record;
use bucky_shared::layout::verification::{CorruptVersion, FORMAT, PARTS, part_of};
use bucky_shared::layout::{Encoding, VerifyRecord, Version};
use bucky_shared::manifests;
use bucky_shared::whisper::{Image, Whisper};
use futures::StreamExt;
use tracing::{info, warn};

use crate::backup::Progress;
use crate::codec;
use crate::failures::{FileFailure, Sample};

/// Which of the bucket's versions a run reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    /// Every version.
    All,
    /// This fraction (0-1] of the parts, those verified longest ago first.
    Fraction(f64),
}

impl Share {
    /// The daily slice that verifies every version within `days`.
    pub fn daily(days: u32) -> Share {
        Share::Fraction(1.0 / f64::from(days.max(1)))
    }

    fn parts(self) -> usize {
        match self {
            Share::All => PARTS as usize,
            Share::Fraction(f) => ((f.clamp(0.0, 1.0) * f64::from(PARTS)).ceil() as usize).max(1),
        }
    }
}

/// How a verification runs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// This node's name, written into the record.
    pub node: String,
    /// What to read.
    pub share: Share,
    /// Versions downloaded at once; default 4.
    pub workers: usize,
    /// Largest whisper file decoded from an object.
    pub max_file_bytes: u64,
    /// Versions done so far, for whoever streams progress.
    pub progress: Arc<Progress>,
    /// Enumerate the bucket's listing even when it has a manifest: every complete version,
    /// whisper-backup's history from before bucky took the bucket over included (the listing
    /// is held in memory, as a restore from a listing holds it).
    pub from_listing: bool,
}

impl VerifyOptions {
    /// Defaults for `node`, verifying `share`.
    pub fn new(node: &str, share: Share) -> Self {
        VerifyOptions {
            node: node.to_string(),
            share,
            workers: 4,
            max_file_bytes: codec::DEFAULT_MAX_FILE_BYTES,
            progress: Arc::default(),
            from_listing: false,
        }
    }
}

/// First corrupt versions named in a report.
pub const NAMED_CORRUPT: usize = 100;

/// What a run found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// The run's version (its record's key).
    pub run: Option<Version>,
    /// Parts fully read (of [`PARTS`]).
    pub parts: u64,
    /// Versions read.
    pub checked: u64,
    /// Sound versions.
    pub ok: u64,
    /// Corrupt versions (the first [`NAMED_CORRUPT`] named; all are in the record).
    pub corrupt: Sample<CorruptVersion, NAMED_CORRUPT>,
    /// Versions that could not be read (store errors); their parts stay due.
    pub unread: Sample<FileFailure, NAMED_CORRUPT>,
    /// Stored bytes downloaded.
    pub bytes: u64,
    /// Corrupt versions known in the bucket after this run (this run's and earlier runs' in
    /// parts it did not read).
    pub corrupt_known: u64,
    /// Parts not verified within the last `window` days, after this run (see
    /// [`Trust::parts_due`](bucky_shared::layout::Trust::parts_due)).
    pub parts_due: u64,
}

/// Why a run could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket could not be listed or read.
    #[error(transparent)]
    Bucket(#[from] bucket::Error),
}

/// One version to read: where, and what it must hash to.
struct Job {
    metric: String,
    version: Version,
    /// The manifest's SHA-1, for the newest version.
    manifest_sha1: Option<String>,
    /// The encoding the listing showed (`None`: try gzip, then snappy).
    encoding: Option<Encoding>,
    /// A version earlier records found corrupt that this run's enumeration does not list (a
    /// whisper-backup version, or one deleted since): read again so the record speaks for it;
    /// gone entirely, it is forgotten.
    recheck: bool,
}

enum Verdict {
    Ok(u64),
    Corrupt(String),
    Unread(String),
    /// A rechecked version whose objects are both gone.
    Gone,
}

/// Verifies `options.share` of `bucket` and records what it found.
///
/// # Errors
/// The bucket's records, manifests or listing could not be read, or the record not written.
pub async fn verify(
    bucket: &Bucket,
    options: &VerifyOptions,
    now: Version,
    window_days: u32,
) -> Result<VerifyReport, Error> {
    let started = std::time::Instant::now();
    let (mut trust, _) = manifests::trust(bucket).await?;
    // Records are keyed by the second: a run in the same second as the last gets the next one,
    // so no record replaces another.
    let now = Version(now.0.max(trust.newest().map_or(i64::MIN, |at| at.0 + 1)));
    let chosen = trust.stalest(options.share.parts());
    let mut wanted = vec![false; PARTS as usize];
    for &p in &chosen {
        wanted[p as usize] = true;
    }
    info!(
        bucket = bucket.url(),
        parts = chosen.len(),
        "verification started"
    );
    // A record supersedes earlier ones for its parts, so every version they found corrupt in
    // those parts is read again, listed or not.
    let mut known_corrupt: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for (metric, version, _) in trust.corrupt() {
        if wanted[part_of(metric) as usize] {
            known_corrupt
                .entry(metric.to_string())
                .or_default()
                .push(version);
        }
    }
    let jobs = jobs(bucket, wanted, options.from_listing, known_corrupt).await?;
    let mut report = VerifyReport {
        run: Some(now),
        ..VerifyReport::default()
    };
    let mut corrupt = Vec::new();
    let mut unread_parts = vec![false; PARTS as usize];
    let mut results = jobs
        .map(|job| async move {
            let verdict = check(bucket, &job, options.max_file_bytes).await;
            (job, verdict)
        })
        .buffer_unordered(options.workers.max(1));
    while let Some((job, verdict)) = results.next().await {
        options.progress.done.fetch_add(1, Ordering::Relaxed);
        match verdict {
            Verdict::Ok(bytes) => {
                report.checked += 1;
                report.ok += 1;
                report.bytes += bytes;
            }
            Verdict::Corrupt(reason) => {
                report.checked += 1;
                warn!(metric = job.metric, version = %job.version, reason, "corrupt version");
                let found = CorruptVersion {
                    metric: job.metric,
                    version: job.version,
                    reason,
                };
                report.corrupt.push(found.clone());
                corrupt.push(found);
            }
            Verdict::Gone => {}
            Verdict::Unread(error) => {
                unread_parts[part_of(&job.metric) as usize] = true;
                report.unread.push(FileFailure {
                    metric: format!("{} {}", job.metric, job.version),
                    error,
                });
            }
        }
    }
    drop(results);
    let parts: Vec<u32> = chosen
        .into_iter()
        .filter(|&p| !unread_parts[p as usize])
        .collect();
    report.parts = parts.len() as u64;
    let record = VerifyRecord {
        format: FORMAT,
        node: options.node.clone(),
        started: now,
        finished: Version(Version::now().0.max(now.0)),
        parts,
        checked: report.checked,
        ok: report.ok,
        unread: report.unread.len(),
        corrupt,
        resolved: Vec::new(),
    };
    bucket
        .put(&bucket.layout().verify_key(now), record.encode())
        .await?;
    trust.add(record);
    let superseded: Vec<String> = trust
        .superseded()
        .into_iter()
        .map(|run| bucket.layout().verify_key(run))
        .collect();
    if !superseded.is_empty()
        && let Err(e) = bucket.delete_many(superseded).await
    {
        warn!(error = %e, "superseded verification records not deleted; the next run retries");
    }
    report.corrupt_known = trust.corrupt_count() as u64;
    report.parts_due = trust.parts_due(Version(now.0 - i64::from(window_days) * 86_400)) as u64;
    info!(
        bucket = bucket.url(),
        checked = report.checked,
        corrupt = report.corrupt.len(),
        unread = report.unread.len(),
        seconds = started.elapsed().as_secs_f64(),
        "verification ended"
    );
    Ok(report)
}

/// The versions of the wanted parts, streamed: from the newest manifest, read record by record
/// on a blocking thread (memory holds a window, not the bucket), or from the listing when the
/// bucket has no manifest (whisper-backup's; the listing is held whole, as a restore holds it).
async fn jobs(
    bucket: &Bucket,
    wanted: Vec<bool>,
    from_listing: bool,
    mut known_corrupt: BTreeMap<String, Vec<Version>>,
) -> Result<futures::stream::BoxStream<'static, Job>, Error> {
    let manifest = match from_listing {
        true => None,
        false => manifests::latest_stored(bucket, None).await?,
    };
    if let Some(stored) = manifest {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::task::spawn_blocking(move || {
            for record in stored.reader() {
                let Ok(Record::Entry(entry, _)) = record else {
                    continue;
                };
                if !wanted[part_of(&entry.name) as usize] {
                    continue;
                }
                let newest = entry.latest();
                let mut extra = known_corrupt.remove(&entry.name).unwrap_or_default();
                extra.retain(|v| !entry.versions.contains(v));
                for &version in &entry.versions {
                    let job = Job {
                        metric: entry.name.clone(),
                        version,
                        manifest_sha1: (version == newest).then(|| entry.sha1.clone()),
                        encoding: None,
                        recheck: false,
                    };
                    if tx.blocking_send(job).is_err() {
                        return;
                    }
                }
                for version in extra {
                    if tx.blocking_send(recheck(&entry.name, version)).is_err() {
                        return;
                    }
                }
            }
            for (metric, versions) in known_corrupt {
                for version in versions {
                    if tx.blocking_send(recheck(&metric, version)).is_err() {
                        return;
                    }
                }
            }
        });
        return Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed());
    }
    let (catalog, _) = crate::restore::catalog(bucket).await?;
    // What earlier records found corrupt and the listing no longer shows is gone: forgotten.
    let jobs = catalog
        .into_iter()
        .filter(move |(metric, _)| wanted[part_of(metric) as usize])
        .flat_map(|(metric, versions)| {
            versions
                .into_iter()
                // Data alone is an upload that died half way, never a version.
                .filter(|(_, stored)| stored.sha1 && stored.data.is_some())
                .map(move |(version, stored)| Job {
                    metric: metric.clone(),
                    version,
                    manifest_sha1: None,
                    encoding: stored.data,
                    recheck: false,
                })
        });
    Ok(futures::stream::iter(jobs).boxed())
}

fn recheck(metric: &str, version: Version) -> Job {
    Job {
        metric: metric.to_string(),
        version,
        manifest_sha1: None,
        encoding: None,
        recheck: true,
    }
}

/// Reads one version and judges it.
async fn check(bucket: &Bucket, job: &Job, max_file_bytes: u64) -> Verdict {
    let layout = bucket.layout();
    let gz_key = layout.data_key(&job.metric, job.version);
    let sz_key = gz_key.replace(".wsp.gz", ".wsp.sz");
    let mut object = None;
    for (encoding, key) in [(Encoding::Gzip, &gz_key), (Encoding::Snappy, &sz_key)] {
        if job.encoding.is_some_and(|e| e != encoding) {
            continue;
        }
        match bucket.get(key).await {
            Ok(Some(bytes)) => {
                object = Some((encoding, key.clone(), bytes));
                break;
            }
            Ok(None) => {}
            Err(e) => return Verdict::Unread(format!("{key}: {e:#}")),
        }
    }
    let sha1_key = layout.sha1_key(&job.metric, job.version);
    let sha1 = bucket.get(&sha1_key).await;
    let Some((encoding, key, object)) = object else {
        if job.recheck && matches!(sha1, Ok(None)) {
            return Verdict::Gone;
        }
        return Verdict::Corrupt(format!("{gz_key}: the data object is missing"));
    };
    let expected = match sha1 {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).trim().to_ascii_lowercase(),
        Ok(None) => return Verdict::Corrupt(format!("{sha1_key} is missing")),
        Err(e) => return Verdict::Unread(format!("{sha1_key}: {e:#}")),
    };
    let manifest_sha1 = job.manifest_sha1.clone();
    let size = object.len() as u64;
    let judged = tokio::task::spawn_blocking(move || {
        let raw =
            codec::decode(&object, encoding, max_file_bytes).map_err(|e| format!("{key}: {e}"))?;
        let actual = codec::sha1_hex(&raw);
        if actual != expected {
            return Err(format!(
                "{key}: SHA-1 {actual} does not match its .sha1 {expected}"
            ));
        }
        if let Some(listed) = manifest_sha1
            && listed != actual
        {
            return Err(format!(
                "{key}: SHA-1 {actual} does not match the manifest's {listed}"
            ));
        }
        Whisper::open(Image::new(raw), &key).map_err(|e| format!("{key}: {e}"))?;
        Ok(())
    })
    .await;
    match judged {
        Ok(Ok(())) => Verdict::Ok(size),
        Ok(Err(reason)) => Verdict::Corrupt(reason),
        Err(e) => Verdict::Unread(format!("verification task failed: {e}")),
    }
}
