//! Backing one node's whisper tree up into its own bucket, whisper-backup compatible and
//! without its flaws.
//!
//! A run: refuse a bucket owned by another host; load the newest manifest (plus the checkpoint of
//! a run that died); walk the tree; for each file whose size or mtime differ from the manifest
//! (or every file with `verify_all`), read it under a shared flock, and upload it (data, then
//! `.sha1`: 2 PUTs) only if its SHA-1 differs from the newest stored version. An unchanged file
//! costs no request. Then the manifest is written — the run's commit point — and only after it
//! the versions beyond retention and the metrics purged are deleted; the manifest lists those
//! deletes, so a run that dies in between has them redone by the next.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bucky_shared::layout::{Manifest, ManifestEntry, RunStats, Version, manifest};
use bucky_shared::whisper::{LockMode, lock_file};
use futures::{StreamExt, stream};
use tracing::{info, warn};

pub use crate::failures::{Failures, FileFailure};
use crate::io_priority::IdleIo;
use crate::tree::{self, Found, Selection, TreeFile};
use crate::{codec, lease, ownership};
use bucky_shared::bucket::{self, Bucket};
use bucky_shared::manifests;

/// What a backup run does.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// This node's name, written into and checked against the owner marker.
    pub node: String,
    /// Versions kept per metric; default 5.
    pub keep_versions: usize,
    /// Days after a metric was first seen missing from disk before its backups are deleted;
    /// default 45; negative never purges.
    pub purge_after_days: i64,
    /// gzip level 0-9; default 6.
    pub gzip_level: u32,
    /// Files read, compressed and uploaded at once; default 4.
    pub workers: usize,
    /// Read every file, even those whose size and mtime match the manifest.
    pub verify_all: bool,
    /// Report what would change; write and delete nothing.
    pub noop: bool,
    /// Longest wait for a file's shared lock; a file that stays locked is reported failed.
    pub lock_timeout: Duration,
    /// Metrics covered; the others keep their manifest entries untouched.
    pub selection: Selection,
    /// Uploads between two checkpoints; default 500.
    pub checkpoint_every: usize,
    /// Manifests kept for point-in-time restores; default 60.
    pub keep_manifests: usize,
    /// Only record missing metrics and purge expired ones: no file is read or uploaded.
    pub purge_only: bool,
    /// Counters updated as the run goes, for whoever streams progress.
    pub progress: Arc<Progress>,
    /// Read the tree at idle I/O priority (see [`crate::io_priority`]); default true.
    pub idle_io: bool,
    /// Largest share of the metrics the last run saw that may go missing in one run; past it
    /// the run is refused (a disk that did not mount looks like a tree that was deleted).
    /// Default 0.5.
    pub max_missing_share: f64,
    /// Run even when more than `max_missing_share` of the metrics went missing.
    pub allow_shrink: bool,
}

/// Files done and to do, readable while a job runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Items done.
    pub done: AtomicU64,
    /// Items in the job (0 until known).
    pub total: AtomicU64,
}

impl BackupOptions {
    /// Defaults for `node`.
    pub fn new(node: &str) -> Self {
        BackupOptions {
            node: node.to_string(),
            keep_versions: 5,
            purge_after_days: 45,
            gzip_level: 6,
            workers: 4,
            verify_all: false,
            noop: false,
            lock_timeout: Duration::from_secs(10),
            selection: Selection::default(),
            checkpoint_every: 500,
            keep_manifests: 60,
            purge_only: false,
            progress: Arc::default(),
            idle_io: true,
            max_missing_share: 0.5,
            allow_shrink: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackupReport {
    /// The run's version (its start).
    pub run: Option<Version>,
    /// Metrics uploaded for the first time.
    pub new: u64,
    /// Metrics uploaded because their content changed.
    pub changed: u64,
    /// Metrics whose stored version is current.
    pub unchanged: u64,
    /// Files that could not be backed up (their previous backup is kept).
    pub failed: Failures,
    /// Bytes read from disk.
    pub bytes_read: u64,
    /// Bytes uploaded (compressed).
    pub bytes_uploaded: u64,
    /// Objects deleted (retention and purge).
    pub objects_deleted: u64,
    /// Metrics whose backups were purged.
    pub purged: Vec<String>,
    /// Metrics missing from disk but still kept.
    pub missing: u64,
    /// `.wsp` files at paths carbon cannot write for their name: not backed up.
    pub not_carbon: Found,
    /// Symlinks followed in the tree.
    pub links_followed: u64,
    /// Symlinks not followed: loops and dangling links.
    pub links_skipped: Found,
    /// Files a killed restore left behind (`.bucky-restore-*`, older than an hour) removed.
    pub restore_leftovers_removed: u64,
    /// Purge only: objects of versions no manifest lists (uploads of a run that died) removed,
    /// and, in a `file://` bucket, temp files of uploads cut off by a kill.
    pub orphans_deleted: u64,
    /// With `noop`: what the run would do.
    pub planned: Vec<String>,
}

/// Why a run could not complete. Files that fail are reported, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket belongs to another host, or its marker is unreadable.
    #[error(transparent)]
    Ownership(#[from] ownership::Error),
    /// Another run holds the bucket's lease.
    #[error(transparent)]
    Lease(#[from] lease::Error),
    /// The store failed a request the run cannot do without.
    #[error(transparent)]
    Bucket(#[from] bucket::Error),
    /// The whisper tree could not be walked.
    #[error("whisper tree: {0:#}")]
    Tree(anyhow::Error),
    /// Too many metrics went missing at once; nothing was written.
    #[error(
        "refusing to back up {root}: {missing} of the {known} metrics the last backup saw are gone \
         from the tree (more than {share:.0}%); a disk that did not mount? If they were removed on \
         purpose, run again with --allow-shrink",
        root = root.display(), share = share * 100.0
    )]
    Shrink {
        /// The whisper root.
        root: std::path::PathBuf,
        /// Metrics of the last manifest not found now.
        missing: u64,
        /// Metrics of the last manifest present then.
        known: u64,
        /// The allowed share.
        share: f64,
    },
}

/// A temp file of a restore older than this was left by a killed run.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// How one file went.
enum Outcome {
    /// Size and mtime as recorded: the previous entry stands as it is.
    Current,
    /// Content unchanged; the entry's size, mtime or missing mark were refreshed.
    Unchanged(ManifestEntry),
    Uploaded {
        entry: ManifestEntry,
        new: bool,
        expired: Vec<Version>,
        uploaded: u64,
    },
    WouldUpload {
        name: String,
        new: bool,
    },
    /// A new file in a purge-only run: not backed up yet, nothing to record.
    Skipped,
}

/// What a run did with one entry of the previous manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Its file was not found (or is outside the selection).
    Unseen,
    /// It stands as it was (unchanged file, or a file that failed).
    Keep,
    /// A new entry replaces it.
    Replaced,
}

/// Backs `root` up into `bucket` as of `now`.
///
/// # Errors
/// [`Error`] when the run cannot complete (another host's bucket, a store failure on the
/// manifest, an unreadable tree); the previous manifest then still describes the bucket.
pub async fn backup(
    bucket: &Bucket,
    root: &Path,
    options: &BackupOptions,
    now: Version,
) -> Result<BackupReport, Error> {
    ownership::ensure_owner(bucket, &options.node, !options.noop, now).await?;
    // A noop run writes nothing, so it needs no lease and may look while another run writes.
    let lease = match options.noop {
        true => None,
        false => Some(lease::acquire(bucket, &options.node, lease::DEFAULT_TTL).await?),
    };
    let result = run(bucket, root, options, now).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    result
}

/// The run itself, under the lease.
async fn run(
    bucket: &Bucket,
    root: &Path,
    options: &BackupOptions,
    now: Version,
) -> Result<BackupReport, Error> {
    let previous = manifests::latest(bucket, None).await?;
    let run = previous
        .as_ref()
        .map_or(now, |p| now.max(Version(p.started.0 + 1)));
    // The previous manifest's entries, moved out (not copied) and sorted by name: the new
    // manifest is built in this same array, so only entries that change are held twice.
    let (previous_started, retried, mut known) = match previous {
        Some(p) => (Some(p.started), p.pending_deletes, p.metrics),
        None => (None, Vec::new(), Vec::new()),
    };
    // What a dead run uploaded goes into this run's first checkpoint segment, so a third run
    // still knows it if this one dies too.
    let mut resumed = Vec::new();
    if let Some(checkpoint) = manifests::checkpoint(bucket).await?
        && previous_started.is_none_or(|started| checkpoint.started > started)
    {
        info!(
            bucket = bucket.url(),
            entries = checkpoint.metrics.len(),
            "resuming from the checkpoint of an unfinished run"
        );
        resumed = checkpoint.metrics.clone();
        known = merge_sorted(known, checkpoint.metrics);
    }

    let (root_owned, selection) = (root.to_path_buf(), options.selection.clone());
    let idle_io = options.idle_io;
    let walk = tokio::task::spawn_blocking(move || {
        let _idle = IdleIo::enter(idle_io);
        tree::walk(&root_owned, &selection)
    })
    .await
    .expect("the tree walk does not panic")
    .map_err(Error::Tree)?;
    check_shrink(&known, &walk, root, options)?;
    let mut report = BackupReport {
        run: Some(run),
        not_carbon: walk.not_carbon,
        links_followed: walk.links_followed,
        links_skipped: walk.links_skipped,
        ..BackupReport::default()
    };
    if !options.noop {
        report.restore_leftovers_removed = remove_leftovers(&walk.restore_leftovers);
    }
    let files = walk.files;
    options
        .progress
        .total
        .store(files.len() as u64, Ordering::Relaxed);
    let mut deletes: Vec<String> = Vec::new();
    // What became of each previous entry (by its index in `known`); only entries that changed
    // are held a second time, in `fresh`. A node of millions of unchanged metrics holds each
    // entry once.
    let mut fate = vec![Fate::Unseen; known.len()];
    let mut fresh: Vec<ManifestEntry> = Vec::new();
    // Uploads since the last checkpoint segment, and the segments written.
    let mut segment: Vec<ManifestEntry> = resumed;
    let mut segments = 0;
    let known_ref = &known;
    let mut outcomes = stream::iter(files.into_iter().map(|file| {
        let index = position(known_ref, &file.name);
        let current = index.filter(|&i| is_current(&known_ref[i], &file, options));
        let previous = match current {
            Some(_) => None,
            None => index.map(|i| known_ref[i].clone()),
        };
        async move {
            let size = file.size;
            let outcome = match current {
                Some(_) => Ok(Outcome::Current),
                None => process(bucket, root, file, previous, options, run).await,
            };
            (index, size, outcome)
        }
    }))
    .buffer_unordered(options.workers.max(1));
    while let Some((index, size, outcome)) = outcomes.next().await {
        options.progress.done.fetch_add(1, Ordering::Relaxed);
        let keep = |fate: &mut Vec<Fate>| {
            if let Some(i) = index {
                fate[i] = Fate::Keep;
            }
        };
        match outcome {
            Ok(Outcome::Current) => {
                report.unchanged += 1;
                keep(&mut fate);
            }
            Ok(Outcome::Unchanged(entry)) => {
                report.unchanged += 1;
                if options.verify_all {
                    report.bytes_read += size;
                }
                if let Some(i) = index {
                    fate[i] = Fate::Replaced;
                }
                fresh.push(entry);
            }
            Ok(Outcome::Uploaded {
                entry,
                new,
                expired,
                uploaded,
            }) => {
                if new {
                    report.new += 1
                } else {
                    report.changed += 1
                }
                report.bytes_read += size;
                report.bytes_uploaded += uploaded;
                for v in expired {
                    deletes.push(bucket.layout().data_key(&entry.name, v));
                    deletes.push(bucket.layout().sha1_key(&entry.name, v));
                }
                if let Some(i) = index {
                    fate[i] = Fate::Replaced;
                }
                segment.push(entry.clone());
                fresh.push(entry);
                if segment.len() >= options.checkpoint_every.max(1) {
                    let entries = std::mem::take(&mut segment);
                    write_segment(bucket, &options.node, run, segments, entries).await;
                    segments += 1;
                }
            }
            Ok(Outcome::Skipped) => {}
            Ok(Outcome::WouldUpload { name, new }) => {
                if new {
                    report.new += 1
                } else {
                    report.changed += 1
                }
                report.bytes_read += size;
                report.planned.push(format!(
                    "upload {name} ({})",
                    if new { "new" } else { "changed" }
                ));
            }
            Err((metric, error)) => {
                warn!(metric, error, "not backed up");
                keep(&mut fate);
                report.failed.push(FileFailure { metric, error });
            }
        }
    }
    drop(outcomes);

    // The new manifest, built in the previous one's place: every entry kept, replaced or found
    // missing, then the new metrics added; no second array of every entry.
    fresh.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut fresh = fresh.into_iter().peekable();
    let mut added = Vec::new();
    let mut current = known;
    for (entry, fate) in current.iter_mut().zip(fate) {
        while fresh.peek().is_some_and(|f| f.name < entry.name) {
            added.extend(fresh.next());
        }
        match fate {
            Fate::Keep => {}
            Fate::Replaced => {
                if let Some(new) = fresh.next_if(|f| f.name == entry.name) {
                    *entry = new;
                }
            }
            Fate::Unseen if !options.selection.matches(&entry.name) => {}
            Fate::Unseen => {
                let since = *entry.missing_since.get_or_insert(run);
                let expired = options.purge_after_days >= 0
                    && now.0 - since.0 >= options.purge_after_days * 86_400;
                if expired {
                    for v in &entry.versions {
                        deletes.push(bucket.layout().data_key(&entry.name, *v));
                        deletes.push(bucket.layout().sha1_key(&entry.name, *v));
                    }
                    report
                        .planned
                        .push(format!("purge {} (missing since {since})", entry.name));
                    // An empty name marks it for removal below.
                    report.purged.push(std::mem::take(&mut entry.name));
                } else {
                    report.missing += 1;
                }
            }
        }
    }
    current.retain(|e| !e.name.is_empty());
    if current.is_empty() && added.is_empty() {
        // A first run: the new entries are the manifest, in their own array.
        current = fresh.collect();
    } else {
        added.extend(fresh);
        if !added.is_empty() {
            current.extend(added);
            current.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        }
    }
    if options.noop {
        report
            .planned
            .extend(deletes.iter().map(|k| format!("delete {k}")));
        return Ok(report);
    }
    report.planned.clear();

    let manifest = Manifest {
        format: manifest::FORMAT,
        node: options.node.clone(),
        started: run,
        finished: Version(now.0.max(run.0)),
        metrics: current,
        pending_deletes: deletes.clone(),
        stats: Some(RunStats {
            new: report.new,
            changed: report.changed,
            unchanged: report.unchanged,
            failed: report.failed.len(),
            bytes_uploaded: report.bytes_uploaded,
        }),
    };
    let (manifest, encoded) = tokio::task::spawn_blocking(move || {
        let encoded = manifest.encode();
        (manifest, encoded)
    })
    .await
    .expect("encoding a manifest does not panic");
    bucket
        .put(&bucket.layout().manifest_key(run), encoded)
        .await?;
    let summary = serde_json::to_vec(&manifest.summary()).expect("a summary serialises");
    if let Err(e) = bucket.put(&bucket.layout().summary_key(run), summary).await {
        warn!(error = %e, "the run's summary was not written; status reads its manifest instead");
    }
    // Committed. What follows only removes what no manifest needs any more.
    for (keys, counted) in [(deletes, true), (retried, false)] {
        match bucket.delete_many(keys).await {
            Ok((deleted, failed)) => {
                report.objects_deleted += if counted { deleted } else { 0 };
                for e in failed {
                    warn!(error = %e, "delete failed; the next run retries it");
                }
            }
            Err(e) => warn!(error = %e, "deletes failed; the next run retries them"),
        }
    }
    if options.purge_only {
        report.orphans_deleted = collect_orphans(bucket, &manifest).await;
    }
    match manifests::checkpoint_keys(bucket).await {
        Ok(keys) => {
            if let Err(e) = bucket.delete_many(keys).await {
                warn!(error = %e, "could not remove the checkpoint");
            }
        }
        Err(e) => warn!(error = %e, "could not list the checkpoint to remove it"),
    }
    prune_manifests(bucket, options.keep_manifests).await;
    info!(
        bucket = bucket.url(),
        new = report.new,
        changed = report.changed,
        unchanged = report.unchanged,
        failed = report.failed.len(),
        bytes = report.bytes_uploaded,
        "backup done"
    );
    Ok(report)
}

/// `base` and `newer`, both sorted by name, merged; `newer`'s entry wins for a name in both.
fn merge_sorted(base: Vec<ManifestEntry>, newer: Vec<ManifestEntry>) -> Vec<ManifestEntry> {
    let mut out = Vec::with_capacity(base.len() + newer.len());
    let mut newer = newer.into_iter().peekable();
    for entry in base {
        while newer.peek().is_some_and(|n| n.name < entry.name) {
            out.extend(newer.next());
        }
        match newer.peek() {
            Some(n) if n.name == entry.name => out.extend(newer.next()),
            _ => out.push(entry),
        }
    }
    out.extend(newer);
    out
}

/// Refuses the run when more than the allowed share of the metrics the last manifest saw on disk
/// (and the selection covers) are not in the tree now.
fn check_shrink(
    known: &[ManifestEntry],
    walk: &tree::Walk,
    root: &Path,
    options: &BackupOptions,
) -> Result<(), Error> {
    if options.allow_shrink {
        return Ok(());
    }
    let mut present = 0u64;
    let mut missing = 0u64;
    for entry in known {
        let name = &entry.name;
        if entry.missing_since.is_some() || !options.selection.matches(name) {
            continue;
        }
        present += 1;
        let found = walk
            .files
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .is_ok();
        missing += u64::from(!found);
    }
    if present > 0 && missing as f64 > options.max_missing_share * present as f64 {
        return Err(Error::Shrink {
            root: root.to_path_buf(),
            missing,
            known: present,
            share: options.max_missing_share,
        });
    }
    Ok(())
}

/// Deletes the metric objects of versions `manifest` (just committed, the newest) does not list:
/// uploads of runs that died before their commit, deletes that failed. Only objects bucky wrote
/// (versions from the owner marker's creation on, so a migrated whisper-backup history stays)
/// and older than [`LEFTOVER_AGE`]. Skipped when a newer manifest exists that could not be read.
/// Returns how many were deleted.
async fn collect_orphans(bucket: &Bucket, manifest: &Manifest) -> u64 {
    let layout = bucket.layout();
    let newest = manifests::runs(bucket)
        .await
        .ok()
        .and_then(|r| r.last().copied());
    if newest != Some(manifest.started) {
        warn!(
            bucket = bucket.url(),
            "a newer manifest is unreadable; orphans are kept"
        );
        return 0;
    }
    let Ok(Some(claimed)) = ownership::marker(bucket)
        .await
        .map(|m| m.map(|m| m.created))
    else {
        return 0;
    };
    let listing = match bucket.list(layout.prefix()).await {
        Ok(listing) => listing,
        Err(e) => {
            warn!(error = %e, "could not list the bucket for orphans");
            return 0;
        }
    };
    let cutoff = in_flight_cutoff();
    let partial = remove_leftovers(&listing.partial_uploads);
    let orphans: Vec<String> = listing
        .objects
        .iter()
        .filter(|meta| meta.last_modified.timestamp() < cutoff)
        .filter_map(|meta| {
            let object = layout.parse_key(meta.location.as_ref())?;
            let listed = manifest
                .entry(&object.metric)
                .is_some_and(|e| e.versions.contains(&object.version));
            (!listed && object.version >= claimed).then(|| meta.location.to_string())
        })
        .collect();
    partial
        + match bucket.delete_many(orphans).await {
            Ok((deleted, failed)) => {
                for e in failed {
                    warn!(error = %e, "could not delete an orphan; the next purge retries");
                }
                deleted
            }
            Err(e) => {
                warn!(error = %e, "could not delete orphans");
                0
            }
        }
}

/// Unix seconds before which an object is old enough to be nobody's upload in flight.
fn in_flight_cutoff() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - LEFTOVER_AGE.as_secs() as i64
}

/// Removes temp files (of restores, of `file://` uploads) left more than [`LEFTOVER_AGE`] ago;
/// returns how many.
fn remove_leftovers(paths: &[std::path::PathBuf]) -> u64 {
    let mut removed = 0;
    for path in paths {
        let old = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > LEFTOVER_AGE));
        if old {
            match std::fs::remove_file(path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not remove a restore leftover")
                }
            }
        }
    }
    removed
}

/// Decides what one file needs and does it.
/// Whether `file` is as `entry` recorded it, so it needs no read.
fn is_current(entry: &ManifestEntry, file: &TreeFile, options: &BackupOptions) -> bool {
    !options.purge_only
        && !options.verify_all
        && entry.missing_since.is_none()
        && entry.size == file.size
        && entry.mtime_ns == file.mtime_ns
}

/// The index of `name` in `entries`, sorted by name.
fn position(entries: &[ManifestEntry], name: &str) -> Option<usize> {
    entries.binary_search_by(|e| e.name.as_str().cmp(name)).ok()
}

/// Decides what one file needs and does it; a failure names its metric.
async fn process(
    bucket: &Bucket,
    root: &Path,
    file: TreeFile,
    previous: Option<ManifestEntry>,
    options: &BackupOptions,
    run: Version,
) -> Result<Outcome, (String, String)> {
    let name = file.name.clone();
    read_and_upload(bucket, root, file, previous, options, run)
        .await
        .map_err(|error| (name, error))
}

async fn read_and_upload(
    bucket: &Bucket,
    root: &Path,
    file: TreeFile,
    previous: Option<ManifestEntry>,
    options: &BackupOptions,
    run: Version,
) -> Result<Outcome, String> {
    if options.purge_only {
        return Ok(previous.map_or(Outcome::Skipped, |p| {
            Outcome::Unchanged(ManifestEntry {
                missing_since: None,
                ..p
            })
        }));
    }
    let path = bucky_shared::metric::path_of(root, &file.name).map_err(|e| e.to_string())?;
    let (timeout, level) = (options.lock_timeout, options.gzip_level);
    let idle_io = options.idle_io;
    let previous_sha1 = previous.as_ref().map(|p| p.sha1.clone());
    let read = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let (raw, mtime_ns) = {
            let _idle = IdleIo::enter(idle_io);
            read_locked(&path, timeout)?
        };
        let sha1 = codec::sha1_hex(&raw);
        let gz =
            (previous_sha1.as_deref() != Some(sha1.as_str())).then(|| codec::gzip(&raw, level));
        Ok((raw.len() as u64, mtime_ns, sha1, gz))
    })
    .await
    .map_err(|e| format!("reader panicked: {e}"))??;
    let (size, mtime_ns, sha1, gz) = read;
    let Some(gz) = gz else {
        let prev = previous.expect("an unchanged SHA-1 has a previous entry");
        return Ok(Outcome::Unchanged(ManifestEntry {
            size,
            mtime_ns,
            missing_since: None,
            ..prev
        }));
    };
    let new = previous.is_none();
    if options.noop {
        return Ok(Outcome::WouldUpload {
            name: file.name,
            new,
        });
    }
    let layout = bucket.layout();
    let stored_size = gz.len() as u64;
    // Data first: a .sha1 without its data would announce a version that does not exist.
    bucket
        .put(&layout.data_key(&file.name, run), gz)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if let Err(e) = bucket
        .put(&layout.sha1_key(&file.name, run), sha1.clone().into_bytes())
        .await
    {
        // Without its .sha1 the data is no version; remove it rather than leave it to confuse.
        let _ = bucket.delete(&layout.data_key(&file.name, run)).await;
        return Err(format!("{e:#}"));
    }
    let mut versions = previous.map(|p| p.versions).unwrap_or_default();
    versions.push(run);
    let excess = versions.len().saturating_sub(options.keep_versions.max(1));
    let expired: Vec<Version> = versions.drain(..excess).collect();
    Ok(Outcome::Uploaded {
        entry: ManifestEntry {
            name: file.name,
            versions,
            sha1,
            size,
            stored_size,
            mtime_ns,
            missing_since: None,
        },
        new,
        expired,
        uploaded: stored_size,
    })
}

/// The file's bytes read under a shared flock, and its mtime at that moment.
fn read_locked(path: &Path, timeout: Duration) -> Result<(Vec<u8>, i64), String> {
    use std::os::unix::fs::MetadataExt;
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    lock_file(&file, LockMode::Shared, timeout, path).map_err(|e| e.to_string())?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut raw = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut raw)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((raw, meta.mtime() * 1_000_000_000 + meta.mtime_nsec()))
}

/// Writes checkpoint segment `seq` of `run`: the uploads since the segment before.
async fn write_segment(
    bucket: &Bucket,
    node: &str,
    run: Version,
    seq: u64,
    entries: Vec<ManifestEntry>,
) {
    let node = node.to_string();
    let encoded = tokio::task::spawn_blocking(move || {
        // Sorted, one entry per metric: the later (a re-upload after a resumed one) wins.
        let entries: BTreeMap<String, ManifestEntry> =
            entries.into_iter().map(|e| (e.name.clone(), e)).collect();
        Manifest {
            format: manifest::FORMAT,
            node,
            started: run,
            finished: run,
            metrics: entries.into_values().collect(),
            pending_deletes: Vec::new(),
            stats: None,
        }
        .encode()
    })
    .await
    .expect("encoding a checkpoint does not panic");
    let key = bucket.layout().checkpoint_segment_key(run, seq);
    if let Err(e) = bucket.put(&key, encoded).await {
        warn!(error = %e, "checkpoint not written; a resumed run may upload more again");
    }
}

/// Keeps the newest `keep` manifests.
async fn prune_manifests(bucket: &Bucket, keep: usize) {
    let runs = match manifests::runs(bucket).await {
        Ok(runs) => runs,
        Err(e) => return warn!(error = %e, "could not list manifests to prune"),
    };
    let layout = bucket.layout();
    let pruned: Vec<String> = runs
        .iter()
        .take(runs.len().saturating_sub(keep.max(1)))
        .flat_map(|run| [layout.manifest_key(*run), layout.summary_key(*run)])
        .collect();
    if let Err(e) = bucket.delete_many(pruned).await {
        warn!(error = %e, "could not prune manifests");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64) -> ManifestEntry {
        ManifestEntry {
            name: name.into(),
            versions: vec![Version(1)],
            sha1: String::new(),
            size,
            stored_size: 0,
            mtime_ns: 0,
            missing_since: None,
        }
    }

    #[test]
    fn merging_keeps_order_and_prefers_the_newer_entry() {
        let base = vec![entry("a", 1), entry("c", 1), entry("e", 1)];
        let newer = vec![entry("b", 2), entry("c", 2), entry("f", 2)];
        let merged = merge_sorted(base, newer);
        let got: Vec<(&str, u64)> = merged.iter().map(|e| (e.name.as_str(), e.size)).collect();
        assert_eq!(got, [("a", 1), ("b", 2), ("c", 2), ("e", 1), ("f", 2)]);
        assert_eq!(position(&merged, "e").map(|i| merged[i].size), Some(1));
        assert!(position(&merged, "d").is_none());
    }
}
