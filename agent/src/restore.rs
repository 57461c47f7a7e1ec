//! Restoring a node's whisper tree from a bucket: for each metric the newest version strictly
//! before the restore date is downloaded, decompressed and checked against its `.sha1`; a file
//! that does not exist is written whole (temp name, fsync, rename, zero blocks left sparse), a
//! file that exists is safe-filled, so no point it holds is changed.
//!
//! A bucket bucky wrote is restored as its newest committed manifest (before the date)
//! describes it, read record by record without listing the bucket: versions a run uploaded
//! before it died, which no manifest lists, are never restored. A bucket without manifests
//! (whisper-backup's) is restored from its listing, of only the selected metrics' prefixes when
//! the selection names them plainly.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bucky_shared::layout::manifest::Record;
use bucky_shared::layout::{Encoding, ObjectKind, Version};
use bucky_shared::metric;
use bucky_shared::whisper::{Image, Whisper};
use futures::{StreamExt, stream};
use tracing::{info, warn};

use crate::codec;
use crate::failures::{Failures, FileFailure};
use crate::install::{Installed, install};
use crate::tree::Selection;
use bucky_shared::bucket::{self, Bucket};
use bucky_shared::fill::{FillMode, FillOptions};
use bucky_shared::manifests;

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
    /// Mode of created files before the umask; default carbon's 0o666.
    pub file_mode: u32,
    /// Largest whisper file decoded from an object; a larger one fails its metric only.
    /// Default [`codec::DEFAULT_MAX_FILE_BYTES`].
    pub max_file_bytes: u64,
    /// How to read from peer agents; without it, peer entries fail.
    pub peers: Option<std::sync::Arc<crate::peers::Peers>>,
    /// The pace of reads from peer agents, shared by the workers; none by default.
    pub peer_throttle: Option<std::sync::Arc<crate::throttle::Throttle>>,
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
            max_file_bytes: codec::DEFAULT_MAX_FILE_BYTES,
            file_mode: crate::install::DEFAULT_FILE_MODE,
            peers: None,
            peer_throttle: None,
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
    /// Metrics that could not be restored (corrupt object, checksum mismatch, bad name, a key
    /// that is not a valid object path...).
    pub failed: Failures,
    /// Of the filled, peer entries whose source had not changed since this agent applied it
    /// whole: nothing was moved.
    pub unchanged: u64,
    /// Metrics whose newest version verification found corrupt, restored from an older good
    /// one: `metric: corrupt -> used`.
    pub corrupt_passed: crate::failures::Sample<String, { crate::failures::NAMED_FAILURES }>,
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

/// Lists the bucket into a catalog of metrics and versions, and the keys that are not valid
/// object paths (each with the reason).
///
/// # Errors
/// The listing failed.
pub async fn catalog(bucket: &Bucket) -> Result<(Catalog, Vec<String>), bucket::Error> {
    let mut out = Catalog::new();
    let listing = bucket.list(bucket.layout().prefix()).await?;
    for meta in listing.objects {
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
    Ok((out, listing.unreadable))
}

/// Lists what `selection` may cover: the prefixes of its metrics when it names them plainly,
/// else the whole bucket.
///
/// # Errors
/// A listing failed.
pub async fn catalog_of(
    bucket: &Bucket,
    selection: &Selection,
) -> Result<(Catalog, Vec<String>), bucket::Error> {
    let Some(names) = selection.names() else {
        return catalog(bucket).await;
    };
    let mut out = Catalog::new();
    let mut unreadable = Vec::new();
    for name in names {
        let listing = bucket.list(&bucket.layout().metric_prefix(name)).await?;
        unreadable.extend(listing.unreadable);
        for meta in listing.objects {
            if let Some(object) = bucket.layout().parse_key(meta.location.as_ref())
                && object.metric == *name
            {
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
        }
    }
    Ok((out, unreadable))
}

/// A version chosen for restore.
type Chosen = (String, Version, Stored);

/// Restores `bucket` into `root`: as its newest committed manifest before the date lists it,
/// read record by record (no listing), or, for a bucket without manifests, as its listing shows.
///
/// # Errors
/// Only a failed listing; each metric that fails is reported in [`RestoreReport::failed`].
pub async fn restore(
    bucket: &Bucket,
    root: &Path,
    options: &RestoreOptions,
) -> Result<RestoreReport, bucket::Error> {
    let started = std::time::Instant::now();
    info!(bucket = bucket.url(), root = %root.display(), "restore started");
    let mut report = RestoreReport::default();
    let committed =
        manifests::latest_stored(bucket, options.before.map(|before| Version(before.0 - 1)))
            .await?;
    // Verification's findings steer away from corrupt versions; unreadable records leave the
    // restore as it would be without them.
    let trust = match manifests::trust(bucket).await {
        Ok((trust, _)) => trust,
        Err(e) => {
            warn!(bucket = bucket.url(), error = %e, "verification records unreadable; restoring without them");
            bucky_shared::layout::Trust::default()
        }
    };
    let passed = std::sync::Arc::new(std::sync::Mutex::new(crate::failures::Sample::default()));
    let (chosen, counted): (
        std::pin::Pin<Box<dyn futures::Stream<Item = Chosen> + Send>>,
        _,
    ) = match committed {
        Some(stored) => {
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            let (selection, before) = (options.selection.clone(), options.before);
            let passed_in = passed.clone();
            let feeder = tokio::task::spawn_blocking(move || {
                let passed = passed_in;
                let mut no_version = 0;
                for record in stored.reader() {
                    let Ok(Record::Entry(entry, _)) = record else {
                        continue;
                    };
                    if !selection.matches(&entry.name) {
                        continue;
                    }
                    let dated: Vec<Version> = entry
                        .versions
                        .iter()
                        .rev()
                        .copied()
                        .filter(|v| before.is_none_or(|b| *v < b))
                        .collect();
                    let good = dated
                        .iter()
                        .copied()
                        .find(|v| trust.corrupt_reason(&entry.name, *v).is_none());
                    if let (Some(first), Some(good)) = (dated.first(), good)
                        && *first != good
                    {
                        passed
                            .lock()
                            .expect("never poisoned")
                            .push(format!("{}: {first} -> {good}", entry.name));
                    }
                    match good.or(dated.first().copied()) {
                        Some(version) => {
                            let stored = Stored {
                                data: Some(Encoding::Gzip),
                                sha1: true,
                            };
                            if tx.blocking_send((entry.name, version, stored)).is_err() {
                                break;
                            }
                        }
                        None => no_version += 1,
                    }
                }
                no_version
            });
            let chosen = tokio_stream::wrappers::ReceiverStream::new(rx);
            (Box::pin(chosen), Some(feeder))
        }
        None => {
            let chosen = from_listing(bucket, options, &mut report).await?;
            (Box::pin(stream::iter(chosen)), None)
        }
    };
    let mut results = chosen
        .map(|(name, version, stored)| async move {
            let result = restore_one(bucket, root, &name, version, stored, options).await;
            (name, result)
        })
        .buffer_unordered(options.workers.max(1));
    let new_dirs = NewDirs::default();
    while let Some((name, result)) = results.next().await {
        match result {
            Ok(done) => {
                report.bytes_downloaded += done.downloaded;
                match done.points_filled {
                    None => {
                        report.written += 1;
                        note_created(&new_dirs, root, &name);
                    }
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
    drop(results);
    if let Some(feeder) = counted {
        report.no_version += feeder.await.expect("reading a manifest does not panic");
    }
    report.corrupt_passed = std::mem::take(&mut *passed.lock().expect("never poisoned"));
    for line in report.corrupt_passed.first() {
        warn!(
            bucket = bucket.url(),
            passed = line,
            "newest version is corrupt; restored an older one"
        );
    }
    sync_new_dirs(root, new_dirs, &mut report).await;
    info!(
        bucket = bucket.url(),
        written = report.written,
        filled = report.filled,
        failed = report.failed.len(),
        no_version = report.no_version,
        seconds = started.elapsed().as_secs_f64(),
        "restore ended"
    );
    Ok(report)
}

/// The versions to restore from a bucket without manifests (whisper-backup's), from its listing:
/// the newest complete one (data and `.sha1`) before the date, per selected metric.
async fn from_listing(
    bucket: &Bucket,
    options: &RestoreOptions,
    report: &mut RestoreReport,
) -> Result<Vec<Chosen>, bucket::Error> {
    let (catalog, unreadable) = catalog_of(bucket, &options.selection).await?;
    for reason in unreadable {
        warn!(
            bucket = bucket.url(),
            reason, "a key that is not a valid object path"
        );
        report.failed.push(FileFailure {
            metric: "(unreadable key)".into(),
            error: reason,
        });
    }
    let mut chosen = Vec::new();
    for (name, versions) in catalog {
        if !options.selection.matches(&name) {
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
    Ok(chosen)
}

struct Restored {
    downloaded: u64,
    /// `None` when the file was written whole.
    points_filled: Option<u64>,
    /// Read from a peer whose copy had not changed since it was applied here: nothing moved.
    unchanged: bool,
}

/// Directories new files were created in, synced at the end of a restore.
type NewDirs = std::sync::Mutex<std::collections::BTreeSet<std::path::PathBuf>>;

fn note_created(dirs: &NewDirs, root: &Path, metric: &str) {
    if let Ok(path) = metric::path_of(root, metric)
        && let Some(dir) = path.parent()
    {
        dirs.lock()
            .expect("the directory set is never poisoned")
            .insert(dir.to_path_buf());
    }
}

/// Fsyncs the directories of the files a restore created; a failure is the restore's.
async fn sync_new_dirs(root: &Path, dirs: NewDirs, report: &mut RestoreReport) {
    let dirs = dirs
        .into_inner()
        .expect("the directory set is never poisoned");
    let root = root.to_path_buf();
    let failed = tokio::task::spawn_blocking(move || crate::install::sync_dirs(&root, &dirs))
        .await
        .unwrap_or_else(|e| vec![format!("syncing directories panicked: {e}")]);
    for error in failed {
        report.failed.push(FileFailure {
            metric: "(directory)".into(),
            error,
        });
    }
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
    if let Some(why) = bucket.not_answering() {
        return Err(why);
    }
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
    let expected = String::from_utf8_lossy(&expected)
        .trim()
        .to_ascii_lowercase();
    verify_and_install(
        object,
        encoding,
        data_key,
        expected,
        "its .sha1",
        path,
        options,
    )
    .await
    .map(|points_filled| Restored {
        downloaded,
        points_filled,
        unchanged: false,
    })
}

/// Decodes a stored object, checks it against `expected` (named `what` in the error), and
/// installs it at `path`, off the async runtime. Returns the points filled, or `None` when the
/// file was created.
async fn verify_and_install(
    object: bytes::Bytes,
    encoding: Encoding,
    key: String,
    expected: String,
    what: &'static str,
    path: std::path::PathBuf,
    options: &RestoreOptions,
) -> Result<Option<u64>, String> {
    let options = options.clone();
    tokio::task::spawn_blocking(move || {
        let raw = codec::decode(&object, encoding, options.max_file_bytes)
            .map_err(|e| format!("{key}: {e}"))?;
        let actual = codec::sha1_hex(&raw);
        if actual != expected {
            return Err(format!(
                "{key}: SHA-1 {actual} does not match {what} {expected}"
            ));
        }
        let image = Whisper::open(Image::new(raw), &key).map_err(|e| e.to_string())?;
        let installed = install(
            &path,
            &image,
            options.lock_timeout,
            options.now,
            options.file_mode,
        )?;
        Ok(match installed {
            Installed::Created => None,
            Installed::Filled(points) => Some(points),
        })
    })
    .await
    .map_err(|e| format!("restore task panicked: {e}"))?
}

/// One step of a restore plan: a version to put into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    /// Dotted metric name.
    pub metric: String,
    /// Where the version comes from.
    pub source: Source,
}

/// Where a plan entry's file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A stored version.
    Stored {
        /// URL of the bucket holding it.
        bucket: String,
        /// Key of the data object in that bucket.
        key: String,
        /// Expected SHA-1 of the raw file.
        sha1: String,
    },
    /// The live file of a peer agent (a rebalance), read with its ReadMetric.
    Peer {
        /// The peer's address.
        address: String,
        /// Fill only points newer than this Unix time (0: all); a missing file is still written
        /// whole.
        since: i64,
    },
}

/// One item of a plan as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanItem {
    /// An entry to apply.
    Entry(PlanEntry),
    /// An entry that cannot be applied (incomplete, or from a bucket this agent may not read);
    /// it fails alone.
    Invalid {
        /// Its metric, as given.
        metric: String,
        /// Why.
        error: String,
    },
    /// The plan stopped arriving (the sender went away): nothing after it is applied.
    Broken(String),
}

/// What the executor works on: all the entries of one metric, or a failure to record.
enum Work {
    Metric(Vec<PlanEntry>),
    Failed(FileFailure),
}

/// Cuts a plan stream into the entries of one metric each (they are consecutive in a plan).
fn by_metric(
    items: impl futures::Stream<Item = PlanItem> + Send + Unpin,
) -> impl futures::Stream<Item = Work> + Send {
    stream::unfold(
        (items, None::<PlanItem>, false),
        |(mut items, mut pending, done)| async move {
            if done {
                return None;
            }
            let mut group: Vec<PlanEntry> = Vec::new();
            loop {
                let item = match pending.take() {
                    Some(item) => Some(item),
                    None => items.next().await,
                };
                match item {
                    Some(PlanItem::Entry(e)) if group.is_empty() || group[0].metric == e.metric => {
                        group.push(e);
                    }
                    None if group.is_empty() => return None,
                    None => return Some((Work::Metric(group), (items, None, true))),
                    Some(item) if !group.is_empty() => {
                        return Some((Work::Metric(group), (items, Some(item), false)));
                    }
                    Some(PlanItem::Invalid { metric, error }) => {
                        let failed = Work::Failed(FileFailure { metric, error });
                        return Some((failed, (items, None, false)));
                    }
                    Some(PlanItem::Broken(why)) => {
                        let failed = Work::Failed(FileFailure {
                            metric: "(plan)".into(),
                            error: format!("the plan stopped arriving: {why}"),
                        });
                        return Some((failed, (items, None, true)));
                    }
                    Some(PlanItem::Entry(_)) => unreachable!("an entry joins or ends a group"),
                }
            }
        },
    )
}

/// Executes a plan into `root` as it arrives: the entries of one metric in the order given (the
/// first creates the file, the others fill it), metrics in parallel, `options.workers` at a time;
/// only those in flight are held. `open` gives the bucket of a URL (each opened once).
pub async fn execute_plan(
    items: impl futures::Stream<Item = PlanItem> + Send + Unpin,
    root: &Path,
    open: impl Fn(&str) -> Result<Bucket, bucket::Error> + Sync,
    options: &RestoreOptions,
    progress: &crate::backup::Progress,
) -> RestoreReport {
    use std::sync::atomic::Ordering;
    let buckets: std::sync::Mutex<BTreeMap<String, Result<Bucket, String>>> = Default::default();
    let bucket_of = |url: &str| {
        let mut buckets = buckets.lock().expect("the bucket cache is never poisoned");
        buckets
            .entry(url.to_string())
            .or_insert_with(|| open(url).map_err(|e| e.to_string()))
            .clone()
    };
    let bucket_of = &bucket_of;
    let results = by_metric(items)
        .map(|work| async move {
            let steps = match work {
                Work::Failed(failure) => return vec![(failure.metric, Err(failure.error))],
                Work::Metric(steps) => steps,
            };
            let mut outcomes = Vec::with_capacity(steps.len());
            for step in steps {
                let outcome = match &step.source {
                    Source::Stored { bucket, key, sha1 } => match bucket_of(bucket) {
                        Ok(bucket) => {
                            apply_stored(&bucket, root, &step.metric, key, sha1, options).await
                        }
                        Err(e) => Err(e),
                    },
                    Source::Peer { address, since } => {
                        apply_peer(address, *since, root, &step.metric, options).await
                    }
                };
                outcomes.push((step.metric, outcome));
            }
            // Progress counts metrics, as the plan does.
            progress.done.fetch_add(1, Ordering::Relaxed);
            outcomes
        })
        .buffer_unordered(options.workers.max(1));
    let mut results = std::pin::pin!(results);
    let mut report = RestoreReport::default();
    let new_dirs = NewDirs::default();
    while let Some(outcomes) = results.next().await {
        for (metric, outcome) in outcomes {
            match outcome {
                Ok(done) => {
                    report.bytes_downloaded += done.downloaded;
                    report.unchanged += u64::from(done.unchanged);
                    match done.points_filled {
                        None => {
                            report.written += 1;
                            note_created(&new_dirs, root, &metric);
                        }
                        Some(points) => {
                            report.filled += 1;
                            report.points_filled += points;
                        }
                    }
                }
                Err(error) => report.failed.push(FileFailure { metric, error }),
            }
        }
    }
    sync_new_dirs(root, new_dirs, &mut report).await;
    report
}

/// Installs the live file of `metric` read from the peer agent at `address`.
async fn apply_peer(
    address: &str,
    since: i64,
    root: &Path,
    metric: &str,
    options: &RestoreOptions,
) -> Result<Restored, String> {
    let path = metric::path_of(root, metric).map_err(|e| e.to_string())?;
    let peers = options
        .peers
        .as_ref()
        .ok_or("this agent was not given a token to call peers with")?;
    if let Some(throttle) = &options.peer_throttle {
        throttle.admit().await;
    }
    // A whole-file move remembers what it applied: run again while the source's copy has not
    // changed (a misplaced copy no longer gets carbon's writes), it moves nothing. A heal bounded
    // by `since` fills only part of the file, so it never counts as applied.
    // Only over a file that is still whisper: one damaged since gets the move again (and fails
    // it, as it should, rather than have the damage go unnoticed).
    let sound = || {
        std::fs::File::open(&path)
            .ok()
            .is_some_and(|f| Whisper::open(f, &path).is_ok())
    };
    let unless = match since {
        0 if sound() => peers.unless(address, metric),
        _ => None,
    };
    // A heal bounded by `since` needs only the points from then on: the peer sends an excerpt
    // (header, and the slots from `since` on). A file this node lacks is written whole instead,
    // so it gets the whole file.
    let excerpt_since = match path.exists() {
        true => since,
        false => 0,
    };
    let Some(crate::peers::Fetched {
        file: raw,
        sha1,
        received,
    }) = peers
        .read(
            address,
            metric,
            options.max_file_bytes,
            unless.as_deref(),
            excerpt_since,
        )
        .await?
    else {
        return Ok(Restored {
            downloaded: 0,
            points_filled: Some(0),
            unchanged: true,
        });
    };
    let downloaded = received;
    if let Some(throttle) = &options.peer_throttle {
        throttle.charge(downloaded);
    }
    let options = options.clone();
    let what = format!("{metric} from {address}");
    let points_filled = tokio::task::spawn_blocking(move || {
        let image = Whisper::open(Image::new(raw), &what).map_err(|e| e.to_string())?;
        let fill = FillOptions {
            lock_timeout: options.lock_timeout,
            end_at: since.min(options.now - 1).max(0),
            ..FillOptions::new(FillMode::Safe, options.now)
        };
        let installed = crate::install::install_with(&path, &image, &fill, options.file_mode)?;
        Ok::<_, String>(match installed {
            Installed::Created => None,
            Installed::Filled(points) => Some(points),
        })
    })
    .await
    .map_err(|e| format!("restore task panicked: {e}"))??;
    if since == 0 {
        peers.applied(address, metric, &sha1);
    }
    Ok(Restored {
        downloaded,
        points_filled,
        unchanged: false,
    })
}

async fn apply_stored(
    bucket: &Bucket,
    root: &Path,
    name: &str,
    key: &str,
    sha1: &str,
    options: &RestoreOptions,
) -> Result<Restored, String> {
    let path = metric::path_of(root, name).map_err(|e| e.to_string())?;
    if let Some(why) = bucket.not_answering() {
        return Err(why);
    }
    let encoding = if key.ends_with(".wsp.sz") {
        Encoding::Snappy
    } else {
        Encoding::Gzip
    };
    let object = bucket
        .get(key)
        .await
        .map_err(|e| format!("{e:#}"))?
        .ok_or_else(|| format!("{} has no object {key}", bucket.url()))?;
    let mut downloaded = object.len() as u64;
    // An older version than the manifest's newest (the newest was found corrupt) comes without
    // its SHA-1 in the plan: its .sha1 object has it.
    let (expected, what) = match sha1.is_empty() {
        false => (sha1.to_ascii_lowercase(), "the plan's"),
        true => {
            let sha1_key = format!(
                "{}.sha1",
                key.trim_end_matches(".wsp.gz").trim_end_matches(".wsp.sz")
            );
            let stored = bucket
                .get(&sha1_key)
                .await
                .map_err(|e| format!("{e:#}"))?
                .ok_or_else(|| format!("{} has no object {sha1_key}", bucket.url()))?;
            downloaded += stored.len() as u64;
            (
                String::from_utf8_lossy(&stored).trim().to_ascii_lowercase(),
                "its .sha1",
            )
        }
    };
    verify_and_install(
        object,
        encoding,
        key.to_string(),
        expected,
        what,
        path,
        options,
    )
    .await
    .map(|points_filled| Restored {
        downloaded,
        points_filled,
        unchanged: false,
    })
}
