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

use bucky_shared::layout::manifest::{Reader, Record, Writer};
use bucky_shared::layout::verification::CorruptVersion;
use bucky_shared::layout::{Manifest, ManifestEntry, Retention, RunStats, Version};
use bucky_shared::whisper::{LockMode, lock_file};
use bytes::Bytes;
use futures::StreamExt;
use tracing::{info, warn};

pub use crate::failures::{Failures, FileFailure, NAMED_FAILURES, Sample};
use crate::io_priority::IdleIo;
use crate::tree::{self, Found, Selection, TreeFile};
use plan::Decision;

pub mod plan;
use crate::{codec, lease, ownership};
use bucky_shared::bucket::{self, Bucket};
use bucky_shared::manifests;

/// What a backup run does.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// This node's name, written into and checked against the owner marker.
    pub node: String,
    /// Versions kept per metric, by count and age; default the newest 5.
    pub retention: Retention,
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
    /// Manifests kept for point-in-time restores, by count and age; default the newest 60.
    pub manifest_retention: Retention,
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
            retention: Retention::default(),
            purge_after_days: 45,
            gzip_level: 6,
            workers: 4,
            verify_all: false,
            noop: false,
            lock_timeout: Duration::from_secs(10),
            selection: Selection::default(),
            checkpoint_every: 500,
            manifest_retention: Retention::last(60),
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
    /// Of the unchanged, those read and hashed (their size or mtime changed, or `--verify-all`);
    /// the rest were judged by size and mtime alone and not read.
    pub unchanged_read: u64,
    /// Files that could not be backed up (their previous backup is kept).
    pub failed: Failures,
    /// Bytes read from disk.
    pub bytes_read: u64,
    /// Bytes uploaded (compressed).
    pub bytes_uploaded: u64,
    /// Objects deleted (retention and purge).
    pub objects_deleted: u64,
    /// Corrupt versions (found by verify) replaced by a sound upload of the file and deleted.
    pub corrupt_replaced: u64,
    /// Metrics whose backups were purged.
    pub purged: Sample<String, NAMED_FAILURES>,
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
    /// With `noop`: what the run would do (the first [`PLANNED_LINES`] lines, and how many).
    pub planned: Sample<String, PLANNED_LINES>,
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
    /// The previous manifest went bad while it was read again (it was whole when fetched).
    #[error("previous manifest: {0}")]
    Previous(bucky_shared::layout::manifest::Error),
    /// The store stopped answering; the run stopped early, and what it uploaded is resumed by the
    /// next run from its checkpoint.
    #[error(
        "bucket {bucket}: stopped the run after {unanswered} requests in a row got no answer \
         within {after:?}; the store is not answering. Nothing committed is lost; the next run \
         resumes where this one stopped"
    )]
    Stalled {
        /// The bucket's URL.
        bucket: String,
        /// Requests in a row without an answer.
        unanswered: u32,
        /// The deadline of each.
        after: std::time::Duration,
    },
    /// Too many metrics went missing at once; no manifest was written.
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

/// `--noop` lines kept in a report; the rest are counted.
pub const PLANNED_LINES: usize = 10_000;

impl From<plan::JoinError> for Error {
    fn from(e: plan::JoinError) -> Self {
        match e {
            plan::JoinError::Tree(e) => Error::Tree(e),
            plan::JoinError::Previous(e) => Error::Previous(e),
        }
    }
}

/// A temp file of a restore older than this was left by a killed run.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// What executing one decision gave.
enum Outcome {
    /// The record for the new manifest (none for a new file that failed), and what to count.
    Done {
        record: Option<Record>,
        count: Count,
    },
    /// Deletes the previous run listed, to redo.
    Redo(String, Vec<Version>),
    /// With `noop`: the file would be uploaded.
    WouldUpload { name: String, new: bool, read: u64 },
    /// A file could not be backed up; its previous entry (if any) is kept.
    Failed {
        previous: Option<ManifestEntry>,
        failure: FileFailure,
    },
}

/// How a metric counts in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Count {
    /// As recorded, or outside the selection.
    Kept,
    /// Read: content unchanged.
    Unchanged { read: u64 },
    /// Uploaded (or, with `noop`, would be).
    Uploaded {
        new: bool,
        read: u64,
        uploaded: u64,
        /// Corrupt versions this sound upload replaces (deleted after the commit).
        replaced: Vec<Version>,
    },
    /// Missing from disk: `newly` since the previous run.
    Missing { newly: bool },
    /// Purged.
    Purged { newly: bool },
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
    let started = std::time::Instant::now();
    info!(
        node = options.node,
        bucket = bucket.url(),
        root = %root.display(),
        noop = options.noop,
        purge_only = options.purge_only,
        "backup started"
    );
    let result = run(bucket, root, options, now).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    match &result {
        Ok(report) => info!(
            node = options.node,
            bucket = bucket.url(),
            new = report.new,
            changed = report.changed,
            unchanged = report.unchanged,
            unchanged_read = report.unchanged_read,
            bytes_read = report.bytes_read,
            failed = report.failed.len(),
            missing = report.missing,
            purged = report.purged.len(),
            bytes = report.bytes_uploaded,
            seconds = started.elapsed().as_secs_f64(),
            "backup ended"
        ),
        Err(e) => warn!(node = options.node, bucket = bucket.url(), error = %e, "backup failed"),
    }
    result
}

/// Decisions and records in flight between the threads of a run, each way.
const CHANNEL: usize = 1024;

/// The run itself, under the lease: the tree and the previous manifest are joined on a blocking
/// thread into decisions in name order ([`plan`]); they are executed here, a few files read at a
/// time but completed in order, and their records streamed to the new manifest, written on
/// another blocking thread. Memory holds a window of metrics, not the node.
async fn run(
    bucket: &Bucket,
    root: &Path,
    options: &BackupOptions,
    now: Version,
) -> Result<BackupReport, Error> {
    let previous = manifests::latest_stored(bucket, None).await?;
    let run = previous
        .as_ref()
        .map_or(now, |p| now.max(Version(p.run.0 + 1)));
    // What a dead run uploaded: laid over the previous entries, and written again as this run's
    // first checkpoint segment, so a third run still knows it if this one dies too.
    let mut resumed = Vec::new();
    if let Some(checkpoint) = manifests::checkpoint(bucket).await?
        && previous.as_ref().is_none_or(|p| checkpoint.started > p.run)
    {
        info!(
            bucket = bucket.url(),
            entries = checkpoint.metrics.len(),
            "resuming from the checkpoint of an unfinished run"
        );
        resumed = checkpoint.metrics;
    }
    let present = present_before(previous.clone(), &options.selection).await;
    // Versions verification found corrupt are uploaded again; without the records, the run is
    // as it would be without verification.
    let trust = match manifests::trust(bucket).await {
        Ok((trust, _)) => trust,
        Err(e) => {
            warn!(error = %e, "verification records unreadable; corrupt versions are not replaced this run");
            bucky_shared::layout::Trust::default()
        }
    };
    let previous_size = previous.as_ref().map_or(0, |p| p.bytes.len());
    let rules = plan::Rules {
        run,
        now,
        purge_after_days: options.purge_after_days,
        verify_all: options.verify_all,
        purge_only: options.purge_only,
        selection: options.selection.clone(),
        trust: Arc::new(trust),
    };
    let newest_record = rules.trust.newest();
    options.progress.total.store(present, Ordering::Relaxed);
    let mut segments = 0;
    let mut segment: Vec<ManifestEntry> = match options.noop {
        true => Vec::new(),
        false => resumed.clone(),
    };

    let (decisions, decided) = tokio::sync::mpsc::channel(CHANNEL);
    let root_owned = root.to_path_buf();
    let idle_io = options.idle_io;
    let joined = tokio::task::spawn_blocking(move || -> Result<tree::Walk, Error> {
        let _idle = IdleIo::enter(idle_io);
        let mut files =
            tree::Sorted::new(&root_owned, rules.selection.clone()).map_err(Error::Tree)?;
        let known: Box<dyn Iterator<Item = _>> = match &previous {
            Some(stored) => Box::new(stored.reader()),
            None => Box::new(std::iter::empty()),
        };
        plan::join(
            files.by_ref(),
            plan::overlay(known, resumed),
            &rules,
            |decision| decisions.blocking_send(decision).is_ok(),
        )?;
        Ok(files.finish())
    });

    let (records, to_write) = tokio::sync::mpsc::channel::<Record>(CHANNEL);
    let (node, noop) = (options.node.clone(), options.noop);
    // About the previous manifest's size: most runs add or drop a few metrics.
    let expected_size = previous_size + previous_size / 16;
    let writer = tokio::task::spawn_blocking(move || {
        let mut to_write = to_write;
        let mut writer = Writer::with_capacity(&node, run, expected_size);
        while let Some(record) = to_write.blocking_recv() {
            if !noop {
                writer.record(&record);
            }
        }
        writer
    });

    let mut report = BackupReport {
        run: Some(run),
        ..BackupReport::default()
    };
    let readers = tokio::sync::Semaphore::new(options.workers.max(1));
    // Set once the shrink guard refuses the run: nothing more is read, the losses are counted.
    let refused = std::sync::atomic::AtomicBool::new(false);
    let mut outcomes = tokio_stream::wrappers::ReceiverStream::new(decided)
        .map(|decision| match refused.load(Ordering::Relaxed) {
            true => futures::future::Either::Left(std::future::ready(match decision {
                Decision::Gone { newly, .. } => Outcome::Done {
                    record: None,
                    count: Count::Missing { newly },
                },
                _ => Outcome::Done {
                    record: None,
                    count: Count::Kept,
                },
            })),
            false => futures::future::Either::Right(execute(
                bucket, root, options, run, &readers, decision,
            )),
        })
        // Files are read `workers` at a time; a window of later decisions (most need no read)
        // completes behind a slow one, so one locked file does not stall the run.
        .buffered(options.workers.max(1) * 64);
    let mut redo: Vec<String> = Vec::new();
    let mut resolved: Vec<CorruptVersion> = Vec::new();
    let (mut newly_missing, mut deleted_versions) = (0u64, 0u64);
    let mut stalled = None;
    while let Some(outcome) = outcomes.next().await {
        let record = match outcome {
            Outcome::Redo(name, versions) => {
                if !options.noop {
                    push_keys(bucket, &name, &versions, &mut redo);
                    if redo.len() >= DELETE_BATCH {
                        delete_keys(bucket, std::mem::take(&mut redo), false).await;
                    }
                }
                continue;
            }
            Outcome::WouldUpload { name, new, read } => {
                options.progress.done.fetch_add(1, Ordering::Relaxed);
                *(if new {
                    &mut report.new
                } else {
                    &mut report.changed
                }) += 1;
                report.bytes_read += read;
                let kind = if new { "new" } else { "changed" };
                note(&mut report, || format!("upload {name} ({kind})"));
                continue;
            }
            Outcome::Failed { previous, failure } => {
                options.progress.done.fetch_add(1, Ordering::Relaxed);
                warn!(
                    metric = failure.metric,
                    error = failure.error,
                    "not backed up"
                );
                report.failed.push(failure);
                if let Some(unanswered) = bucket.stalled() {
                    stalled = Some(unanswered);
                    break;
                }
                previous.map(|p| Record::Entry(p, Vec::new()))
            }
            Outcome::Done { record, count } => {
                if !matches!(count, Count::Missing { .. } | Count::Purged { .. }) {
                    options.progress.done.fetch_add(1, Ordering::Relaxed);
                }
                match count {
                    Count::Kept => report.unchanged += 1,
                    Count::Unchanged { read } => {
                        report.unchanged += 1;
                        report.unchanged_read += 1;
                        report.bytes_read += read;
                    }
                    Count::Uploaded {
                        new,
                        read,
                        uploaded,
                        replaced,
                    } => {
                        if let Some(Record::Entry(entry, _)) = &record {
                            resolved.extend(replaced.into_iter().map(|version| CorruptVersion {
                                metric: entry.name.clone(),
                                version,
                                reason: format!("replaced by {run}"),
                            }));
                        }
                        *(if new {
                            &mut report.new
                        } else {
                            &mut report.changed
                        }) += 1;
                        report.bytes_read += read;
                        report.bytes_uploaded += uploaded;
                    }
                    Count::Missing { newly } => {
                        report.missing += 1;
                        newly_missing += u64::from(newly);
                    }
                    Count::Purged { newly } => newly_missing += u64::from(newly),
                }
                record
            }
        };
        if !options.allow_shrink
            && present > 0
            && newly_missing as f64 > options.max_missing_share * present as f64
        {
            refused.store(true, Ordering::Relaxed);
        }
        let Some(record) = record else { continue };
        if refused.load(Ordering::Relaxed) {
            continue;
        }
        match &record {
            Record::Purged(name, versions) => {
                deleted_versions += versions.len() as u64;
                report.purged.push(name.clone());
                if options.noop {
                    note(&mut report, || {
                        format!("purge {name} ({} versions)", versions.len())
                    });
                }
            }
            Record::Entry(entry, expired) => {
                deleted_versions += expired.len() as u64;
                if options.noop && !expired.is_empty() {
                    note(&mut report, || {
                        let list: Vec<String> = expired.iter().map(ToString::to_string).collect();
                        format!("expire {} {}", entry.name, list.join(" "))
                    });
                }
            }
        }
        if let Record::Entry(entry, _) = &record
            && entry.versions.last() == Some(&run)
            && !options.noop
        {
            segment.push(entry.clone());
            if segment.len() >= options.checkpoint_every.max(1) {
                let entries = std::mem::take(&mut segment);
                write_segment(bucket, &options.node, run, segments, entries).await;
                segments += 1;
            }
        }
        if records.send(record).await.is_err() {
            break;
        }
    }
    drop(outcomes);
    drop(records);
    let writer = writer.await.expect("the manifest writer does not panic");
    let walk = joined.await.expect("the tree walk does not panic");
    if let Some(unanswered) = stalled {
        return Err(Error::Stalled {
            bucket: bucket.url().to_string(),
            unanswered,
            after: bucket.timeout(),
        });
    }
    if refused.into_inner() {
        return Err(Error::Shrink {
            root: root.to_path_buf(),
            missing: newly_missing,
            known: present,
            share: options.max_missing_share,
        });
    }
    let walk = walk?;
    report.not_carbon = walk.not_carbon;
    report.links_followed = walk.links_followed;
    report.links_skipped = walk.links_skipped;
    if options.noop {
        return Ok(report);
    }
    report.restore_leftovers_removed = remove_leftovers(&walk.restore_leftovers);
    if !redo.is_empty() {
        delete_keys(bucket, redo, false).await;
    }

    let stats = RunStats {
        new: report.new,
        changed: report.changed,
        unchanged: report.unchanged,
        failed: report.failed.len(),
        bytes_uploaded: report.bytes_uploaded,
    };
    let finished = Version(now.0.max(run.0));
    let (encoded, summary) =
        tokio::task::spawn_blocking(move || writer.finish(finished, Some(stats)))
            .await
            .expect("finishing a manifest does not panic");
    let encoded = Bytes::from(encoded);
    bucket
        .put_bytes(&bucket.layout().manifest_key(run), encoded.clone())
        .await?;
    let summary = serde_json::to_vec(&summary).expect("a summary serialises");
    if let Err(e) = bucket.put(&bucket.layout().summary_key(run), summary).await {
        warn!(error = %e, "the run's summary was not written; status reads its manifest instead");
    }
    // Committed. What follows only removes what no manifest needs any more.
    if deleted_versions > 0 {
        report.objects_deleted = delete_listed(bucket, encoded.clone()).await;
    }
    if options.purge_only {
        report.orphans_deleted = collect_orphans(bucket, run, encoded).await;
    }
    match manifests::checkpoint_keys(bucket).await {
        Ok(keys) => {
            if let Err(e) = bucket.delete_many(keys).await {
                warn!(error = %e, "could not remove the checkpoint");
            }
        }
        Err(e) => warn!(error = %e, "could not list the checkpoint to remove it"),
    }
    prune_manifests(bucket, &options.manifest_retention).await;
    if !resolved.is_empty() {
        report.corrupt_replaced = resolved.len() as u64;
        record_replaced(bucket, &options.node, run, newest_record, resolved).await;
    }
    Ok(report)
}

/// Records that the corrupt versions this run replaced with sound uploads (and deleted) are
/// corrupt no more: a verify record naming them alone, after the commit.
async fn record_replaced(
    bucket: &Bucket,
    node: &str,
    run: Version,
    newest_record: Option<Version>,
    resolved: Vec<CorruptVersion>,
) {
    use bucky_shared::layout::VerifyRecord;
    use bucky_shared::layout::verification::FORMAT;
    // Keyed after the newest record the run read at its start, so it replaces none.
    let at = Version(run.0.max(newest_record.map_or(i64::MIN, |n| n.0 + 1)));
    let record = VerifyRecord {
        format: FORMAT,
        node: node.to_string(),
        started: at,
        finished: at,
        parts: Vec::new(),
        checked: 0,
        ok: 0,
        unread: 0,
        corrupt: Vec::new(),
        resolved,
    };
    if let Err(e) = bucket
        .put(&bucket.layout().verify_key(at), record.encode())
        .await
    {
        warn!(error = %e, "the replaced corrupt versions were not recorded; verify finds them gone");
    }
}

/// Keys deleted in one request batch.
const DELETE_BATCH: usize = 1000;

/// Adds a `--noop` line; past [`PLANNED_LINES`] they are only counted.
fn note(report: &mut BackupReport, line: impl FnOnce() -> String) {
    let kept = report.planned.len() < PLANNED_LINES as u64;
    report
        .planned
        .push(if kept { line() } else { String::new() });
}

/// The data and `.sha1` keys of `versions` of `metric`.
fn push_keys(bucket: &Bucket, metric: &str, versions: &[Version], keys: &mut Vec<String>) {
    let layout = bucket.layout();
    for v in versions {
        keys.push(layout.data_key(metric, *v));
        keys.push(layout.sha1_key(metric, *v));
    }
}

/// Deletes `keys`; returns how many went. Failures are left to the next run (or purge).
async fn delete_keys(bucket: &Bucket, keys: Vec<String>, counted: bool) -> u64 {
    match bucket.delete_many(keys).await {
        Ok((deleted, failed)) => {
            for e in failed {
                warn!(error = %e, "delete failed; the next run retries it");
            }
            if counted { deleted } else { 0 }
        }
        Err(e) => {
            warn!(error = %e, "deletes failed; the next run retries them");
            0
        }
    }
}

/// Deletes what the just-committed manifest lists for deletion, in batches as it is read again.
async fn delete_listed(bucket: &Bucket, manifest: Bytes) -> u64 {
    let (keys, mut batches) = tokio::sync::mpsc::channel::<Vec<(String, Vec<Version>)>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::new();
        for record in Reader::new(&manifest).expect("just written").flatten() {
            if !record.deletes().is_empty() {
                let versions = record.deletes().to_vec();
                let name = match record {
                    Record::Entry(e, _) => e.name,
                    Record::Purged(name, _) => name,
                };
                batch.push((name, versions));
                if batch.len() >= DELETE_BATCH / 2
                    && keys.blocking_send(std::mem::take(&mut batch)).is_err()
                {
                    return;
                }
            }
        }
        let _ = keys.blocking_send(batch);
    });
    let mut deleted = 0;
    while let Some(batch) = batches.recv().await {
        let mut keys = Vec::new();
        for (name, versions) in batch {
            push_keys(bucket, &name, &versions, &mut keys);
        }
        deleted += delete_keys(bucket, keys, true).await;
    }
    let _ = reader.await;
    deleted
}

/// Metrics the previous manifest saw on disk that the selection covers: what the shrink guard
/// measures losses against.
async fn present_before(previous: Option<manifests::Stored>, selection: &Selection) -> u64 {
    let Some(stored) = previous else { return 0 };
    if selection.is_all() {
        return stored.trailer.metrics - stored.trailer.missing;
    }
    let selection = selection.clone();
    tokio::task::spawn_blocking(move || {
        stored
            .reader()
            .flatten()
            .filter(|r| match r {
                Record::Entry(e, _) => e.missing_since.is_none() && selection.matches(&e.name),
                Record::Purged(..) => false,
            })
            .count() as u64
    })
    .await
    .expect("counting does not panic")
}

/// Carries out one decision.
async fn execute(
    bucket: &Bucket,
    root: &Path,
    options: &BackupOptions,
    run: Version,
    readers: &tokio::sync::Semaphore,
    decision: Decision,
) -> Outcome {
    let done = |record: Record, count| Outcome::Done {
        record: Some(record),
        count,
    };
    match decision {
        Decision::Keep(entry) => done(expire(entry, options), Count::Kept),
        Decision::Redo(name, versions) => Outcome::Redo(name, versions),
        Decision::Gone {
            entry,
            newly,
            purge: false,
        } => done(expire(entry, options), Count::Missing { newly }),
        Decision::Gone { entry, newly, .. } => done(
            Record::Purged(entry.name, entry.versions),
            Count::Purged { newly },
        ),
        Decision::Read {
            file,
            previous,
            replace,
        } => {
            let _permit = readers.acquire().await.expect("the semaphore stays open");
            let name = file.name.clone();
            match read_and_upload(bucket, root, file, previous.clone(), replace, options, run).await
            {
                Ok(outcome) => outcome,
                Err(error) => Outcome::Failed {
                    previous,
                    failure: FileFailure {
                        metric: name,
                        error,
                    },
                },
            }
        }
    }
}

/// Deletes the metric objects of versions `manifest` (just committed, the newest) does not list:
/// uploads of runs that died before their commit, deletes that failed. Only objects bucky wrote
/// (versions from the owner marker's creation on, so a migrated whisper-backup history stays)
/// and older than [`LEFTOVER_AGE`]. Skipped when a newer manifest exists that could not be read.
/// Returns how many were deleted.
async fn collect_orphans(bucket: &Bucket, run: Version, manifest: Bytes) -> u64 {
    let layout = bucket.layout();
    let newest = manifests::runs(bucket)
        .await
        .ok()
        .and_then(|r| r.last().copied());
    if newest != Some(run) {
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
    // Purge is rare and lists the whole bucket anyway; the manifest is decoded whole here.
    let manifest = tokio::task::spawn_blocking(move || Manifest::decode(&manifest))
        .await
        .expect("decoding does not panic")
        .expect("just written");
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

/// Reads one file and uploads it when its content is not the stored version's (or the stored
/// version is corrupt: `replace` lists the corrupt versions, deleted once this one is stored).
async fn read_and_upload(
    bucket: &Bucket,
    root: &Path,
    file: TreeFile,
    previous: Option<ManifestEntry>,
    replace: Vec<Version>,
    options: &BackupOptions,
    run: Version,
) -> Result<Outcome, String> {
    let path = bucky_shared::metric::path_of(root, &file.name).map_err(|e| e.to_string())?;
    let (timeout, level) = (options.lock_timeout, options.gzip_level);
    let idle_io = options.idle_io;
    let previous_sha1 = match replace.is_empty() {
        true => previous.as_ref().map(|p| p.sha1.clone()),
        false => None,
    };
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
        let entry = ManifestEntry {
            size,
            mtime_ns,
            missing_since: None,
            ..prev
        };
        return Ok(Outcome::Done {
            record: Some(Record::Entry(entry, Vec::new())),
            count: Count::Unchanged { read: size },
        });
    };
    let new = previous.is_none();
    if options.noop {
        return Ok(Outcome::WouldUpload {
            name: file.name,
            new,
            read: size,
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
    versions.retain(|v| !replace.contains(v));
    let mut expired = options.retention.expire(&mut versions);
    expired.extend(&replace);
    let entry = ManifestEntry {
        name: file.name,
        versions,
        sha1,
        size,
        stored_size,
        mtime_ns,
        missing_since: None,
    };
    Ok(Outcome::Done {
        record: Some(Record::Entry(entry, expired)),
        count: Count::Uploaded {
            new,
            read: size,
            uploaded: stored_size,
            replaced: replace,
        },
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
        let mut writer = Writer::new(&node, run);
        for entry in entries.values() {
            writer.entry(entry, &[]);
        }
        writer.finish(run, None).0
    })
    .await
    .expect("encoding a checkpoint does not panic");
    let key = bucket.layout().checkpoint_segment_key(run, seq);
    if let Err(e) = bucket.put(&key, encoded).await {
        warn!(error = %e, "checkpoint not written; a resumed run may upload more again");
    }
}

/// An entry that stands, with the versions the retention policy no longer keeps taken out (a
/// policy changed since, or versions aged out of a class): they are deleted after the commit.
/// A purge-only run leaves retention alone (it does not know the policy backups run with).
fn expire(mut entry: ManifestEntry, options: &BackupOptions) -> Record {
    if options.purge_only {
        return Record::Entry(entry, Vec::new());
    }
    let expired = options.retention.expire(&mut entry.versions);
    Record::Entry(entry, expired)
}

/// Keeps the manifests `policy` keeps.
async fn prune_manifests(bucket: &Bucket, policy: &Retention) {
    let runs = match manifests::runs(bucket).await {
        Ok(runs) => runs,
        Err(e) => return warn!(error = %e, "could not list manifests to prune"),
    };
    let layout = bucket.layout();
    let keeps = policy.keeps(&runs);
    let pruned: Vec<String> = runs
        .iter()
        .zip(keeps)
        .filter(|(_, kept)| !kept)
        .flat_map(|(run, _)| [layout.manifest_key(*run), layout.summary_key(*run)])
        .collect();
    if let Err(e) = bucket.delete_many(pruned).await {
        warn!(error = %e, "could not prune manifests");
    }
}
