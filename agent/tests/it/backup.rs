//! Backup: objects readable by hand, the request budget, ownership, retention, purge, noop.

use std::io::Read;

use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::bucket::{Bucket, StoreOptions};
use bucky_agent::codec;
use bucky_shared::metric;

use crate::support::{
    Backend, Faults, at, counted_bucket, counted_bucket_at, write_metric, write_tree,
};

/// Every object gunzips to the original file and matches its `.sha1`, as a person restoring
/// by hand with `gunzip` would find.
#[tokio::test]
async fn objects_in_a_file_bucket_gunzip_to_the_original_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("whisper");
    let names = write_tree(&root, 5);
    let url = format!("file://{}", tmp.path().join("bucket").display());
    let bucket = Bucket::open(&url, &StoreOptions::default()).unwrap();
    let report = backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    assert_eq!((report.new, report.failed.len()), (5, 0));
    for name in &names {
        let dir = tmp.path().join("bucket").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        let (sha1_file, gz_file) = (&files[0], &files[1]);
        assert!(gz_file.to_string_lossy().ends_with("+00:00.wsp.gz"));
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(gz_file).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(
            raw,
            std::fs::read(metric::path_of(&root, name).unwrap()).unwrap()
        );
        let sha1 = std::fs::read_to_string(sha1_file).unwrap();
        assert_eq!(sha1, codec::sha1_hex(&raw));
        assert_eq!(sha1.len(), 40, "40 hex chars, no newline");
    }
}

/// Unchanged files cost no request: a rerun's requests do not grow with the tree; a changed
/// file costs exactly 2 PUTs.
async fn unchanged_files_cost_no_requests_and_changed_ones_two_puts(backend: Backend) {
    let mut rerun_requests = Vec::new();
    for files in [4, 40] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("w");
        write_tree(&root, files);
        let (bucket, counts) =
            counted_bucket_at(backend.store(), &format!("tree{files}"), Faults::None);
        let options = BackupOptions::new("g1");
        backup(&bucket, &root, &options, at(0)).await.unwrap();
        assert_eq!(
            counts.puts(),
            1 + 1 + 2 * files + 2,
            "owner marker, lease, 2 per file, manifest and its summary"
        );
        let before = counts.total();
        let report = backup(&bucket, &root, &options, at(60)).await.unwrap();
        assert_eq!(report.unchanged, files as u64);
        assert_eq!(
            (report.unchanged_read, report.bytes_read),
            (0, 0),
            "size and mtime judged them; nothing was read"
        );
        rerun_requests.push(counts.total() - before);

        // Change 3 files: 2 PUTs each, plus the lease, the manifest and its summary.
        let puts_before = counts.puts();
        for i in 0..3 {
            write_metric(&root, &format!("app.m{i:03}.requests"), 1000.0, 60);
        }
        let report = backup(&bucket, &root, &options, at(120)).await.unwrap();
        assert_eq!((report.changed, report.unchanged), (3, files as u64 - 3));
        assert_eq!(counts.puts() - puts_before, 3 * 2 + 3);

        // Touch 2 files without changing them: read and hashed, counted as read, not uploaded.
        let mut touched_bytes = 0;
        for i in 0..2 {
            let path = metric::path_of(&root, &format!("app.m{i:03}.requests")).unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            let later =
                file.metadata().unwrap().modified().unwrap() + std::time::Duration::from_secs(3600);
            file.set_modified(later).unwrap();
            touched_bytes += file.metadata().unwrap().len();
        }
        let puts_before = counts.puts();
        let report = backup(&bucket, &root, &options, at(180)).await.unwrap();
        assert_eq!(
            (report.changed, report.unchanged, report.unchanged_read),
            (0, files as u64, 2)
        );
        assert_eq!(report.bytes_read, touched_bytes);
        assert_eq!(
            counts.puts() - puts_before,
            3,
            "the lease, the manifest and its summary"
        );
    }
    assert_eq!(
        rerun_requests[0], rerun_requests[1],
        "a rerun's requests do not depend on the file count"
    );
}

async fn another_hosts_bucket_is_refused_before_anything_is_written(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 3);
    let store = backend.store();
    let (bucket, _) = counted_bucket(store.clone(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("graphite-01"), at(0))
        .await
        .unwrap();
    let (bucket, counts) = counted_bucket(store, Faults::None);
    let err = backup(&bucket, &root, &BackupOptions::new("graphite-02"), at(60))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("graphite-01") && msg.contains("graphite-02"),
        "{msg}"
    );
    assert_eq!((counts.puts(), counts.deletes()), (0, 0));
}

async fn retention_keeps_five_versions_and_purge_waits_for_the_grace_period(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 2);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    let options = BackupOptions::new("g1");
    for run in 0..7i64 {
        write_metric(&root, "app.m000.requests", run as f64 * 100.0, run * 60);
        backup(&bucket, &root, &options, at(run * 3600))
            .await
            .unwrap();
    }
    let (catalog, _) = bucky_agent::restore::catalog(&bucket).await.unwrap();
    assert_eq!(
        catalog["app.m000.requests"].len(),
        5,
        "7 versions written, 5 kept"
    );
    assert!(
        catalog["app.m000.requests"]
            .values()
            .all(|s| s.sha1 && s.data.is_some())
    );
    assert_eq!(catalog["app.m001.requests"].len(), 1);

    std::fs::remove_file(metric::path_of(&root, "app.m001.requests").unwrap()).unwrap();
    let day = 86_400;
    let report = backup(&bucket, &root, &options, at(10 * day))
        .await
        .unwrap();
    assert_eq!((report.missing, report.purged.len()), (1, 0));
    let report = backup(&bucket, &root, &options, at(10 * day + 44 * day))
        .await
        .unwrap();
    assert_eq!(
        (report.missing, report.purged.len()),
        (1, 0),
        "44 days after it went missing: kept"
    );
    let report = backup(&bucket, &root, &options, at(10 * day + 45 * day))
        .await
        .unwrap();
    assert_eq!(report.purged.first(), ["app.m001.requests".to_string()]);
    let (catalog, _) = bucky_agent::restore::catalog(&bucket).await.unwrap();
    assert!(!catalog.contains_key("app.m001.requests"));
    assert_eq!(catalog["app.m000.requests"].len(), 5);
}

async fn noop_reports_and_writes_nothing(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 3);
    let (bucket, counts) = counted_bucket(backend.store(), Faults::None);
    let options = BackupOptions {
        noop: true,
        ..BackupOptions::new("g1")
    };
    let report = backup(&bucket, &root, &options, at(0)).await.unwrap();
    assert_eq!(report.new, 3);
    assert_eq!(report.planned.len(), 3, "{:?}", report.planned);
    assert_eq!((counts.puts(), counts.deletes()), (0, 0));
}

async fn a_locked_file_is_reported_and_backed_up_by_the_next_run(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 3);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    let options = BackupOptions {
        lock_timeout: std::time::Duration::from_millis(50),
        ..BackupOptions::new("g1")
    };
    let locked = std::fs::File::open(metric::path_of(&root, "app.m001.requests").unwrap()).unwrap();
    locked.lock().unwrap();
    let report = backup(&bucket, &root, &options, at(0)).await.unwrap();
    assert_eq!(report.new, 2);
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed.first()[0].error.contains("lock"),
        "{:?}",
        report.failed
    );
    drop(locked);
    let report = backup(&bucket, &root, &options, at(60)).await.unwrap();
    assert_eq!(
        (report.new, report.unchanged, report.failed.len()),
        (1, 2, 0)
    );
}

/// Status and checks read a run's summary: two requests whatever the node's size, never the
/// manifest.
async fn a_runs_summary_answers_status_without_the_manifest(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    let names = write_tree(&root, 40);
    let (bucket, counts) = counted_bucket(backend.store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    for name in &names[..5] {
        std::fs::remove_file(metric::path_of(&root, name).unwrap()).unwrap();
    }
    let report = backup(&bucket, &root, &BackupOptions::new("g1"), at(60))
        .await
        .unwrap();
    let before = counts.total();
    let summary = bucky_agent::manifests::latest_summary(&bucket)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.total() - before, 2, "one listing, one small GET");
    assert_eq!((summary.metrics, summary.missing), (40, 5));
    assert_eq!(summary.started, report.run.unwrap());
    assert_eq!(summary.stats.unwrap().unchanged, 35);
}

crate::on_every_store!(
    a_runs_summary_answers_status_without_the_manifest,
    unchanged_files_cost_no_requests_and_changed_ones_two_puts,
    another_hosts_bucket_is_refused_before_anything_is_written,
    retention_keeps_five_versions_and_purge_waits_for_the_grace_period,
    noop_reports_and_writes_nothing,
    a_locked_file_is_reported_and_backed_up_by_the_next_run,
);
