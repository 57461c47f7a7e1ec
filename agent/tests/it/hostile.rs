//! Buckets that are not what bucky wrote: a key that is not a valid object path, versions no
//! manifest committed, two runs at once, a dead run's uploads.

use bucky_agent::backup::{BackupOptions, Error, backup};
use bucky_agent::lease;
use bucky_agent::restore::{RestoreOptions, restore};
use bucky_shared::metric;

use crate::support::{
    Backend, Faults, NOW, at, counted_bucket, counted_bucket_at, snapshot, write_metric, write_tree,
};

/// A tab in a directory name of a `file://` bucket used to fail the whole listing, so nothing
/// could be restored. Now that key is reported and every other metric is restored. (A bucket
/// with a manifest is restored without a listing: the manifests are removed to list it.)
#[tokio::test]
async fn a_key_that_is_not_a_valid_path_fails_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir) = (tmp.path().join("w"), tmp.path().join("bucket"));
    write_tree(&root, 3);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("file://{}", dir.display());
    let bucket = bucky_agent::bucket::Bucket::open(&url, &Default::default()).unwrap();
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    std::fs::remove_dir_all(dir.join(".bucky/manifests")).unwrap();
    let bad = dir.join("app.m000\trequests");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("2023-11-14T22:13:20+00:00.wsp.gz"), b"someone's").unwrap();

    let target = tmp.path().join("r");
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(report.written, 3, "{report:?}");
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed.first()[0]
            .error
            .contains("app.m000\trequests"),
        "the key is named: {:?}",
        report.failed
    );
    assert_eq!(snapshot(&target), snapshot(&root));

    // A restore of metrics named plainly lists only their prefixes: the bad key is not seen.
    let options = RestoreOptions {
        selection: bucky_agent::tree::Selection::new(&["app.m001.requests".into()], None).unwrap(),
        ..RestoreOptions::new(NOW)
    };
    let report = restore(&bucket, &tmp.path().join("one"), &options)
        .await
        .unwrap();
    assert_eq!((report.written, report.failed.len()), (1, 0), "{report:?}");
}

/// Versions a run uploaded before it died are in the bucket but in no manifest: a restore takes
/// the committed ones, as the manifest describes the bucket.
#[tokio::test]
async fn a_restore_reads_committed_versions_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 2);
    let committed = snapshot(&root);
    let backend = Backend::file();
    let options = BackupOptions {
        workers: 1,
        ..BackupOptions::new("g1")
    };
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    backup(&bucket, &root, &options, at(0)).await.unwrap();

    // Both files change and a new one appears; the run dies after two PUTs: one changed metric's
    // data and .sha1 are stored, the manifest is not.
    write_metric(&root, "app.m000.requests", 500.0, 60);
    write_metric(&root, "app.m001.requests", 900.0, 60);
    write_metric(&root, "app.zz.new", 1.0, 60);
    let (dying, _) = counted_bucket(backend.store(), Faults::DieAfterPuts(2));
    assert!(backup(&dying, &root, &options, at(60)).await.is_err());

    let target = tmp.path().join("r");
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW + 120))
        .await
        .unwrap();
    assert_eq!((report.written, report.failed.len()), (2, 0), "{report:?}");
    assert_eq!(
        snapshot(&target),
        committed,
        "the dead run's uploads are not restored"
    );
    assert!(!metric::path_of(&target, "app.zz.new").unwrap().exists());
}

/// Two backups into one bucket at once: while one run holds the lease, another is refused at once
/// with the first's identity; a lease whose run is gone (lapsed, or on another machine past its
/// time) is taken. (Two runs racing for the lease: `lease`'s unit tests.)
#[tokio::test]
async fn one_backup_per_bucket_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 20);
    let (bucket, _) = counted_bucket(Backend::file().store(), Faults::None);
    let options = BackupOptions::new("g1");
    let running = lease::acquire(&bucket, "g1", lease::DEFAULT_TTL)
        .await
        .unwrap();
    let refused = backup(&bucket, &root, &options, at(0)).await.unwrap_err();
    assert!(matches!(refused, Error::Lease(_)), "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("is busy: a backup of g1")
            && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    running.release().await;
    let ok = backup(&bucket, &root, &options, at(0)).await.unwrap();
    assert_eq!(ok.new, 20);

    // A run on another machine holds the lease: refused, but a noop run may look.
    let key = bucket.layout().lease_key();
    let far = |expires: i64| {
        serde_json::json!({"node": "g1", "host": "elsewhere", "pid": 1, "run_id": "x",
                           "started": 0, "expires": expires})
        .to_string()
        .into_bytes()
    };
    let in_an_hour = unix_now() + 3600;
    bucket.put(&key, far(in_an_hour)).await.unwrap();
    let err = backup(&bucket, &root, &options, at(60)).await.unwrap_err();
    assert!(err.to_string().contains("on elsewhere"), "{err}");
    let noop = BackupOptions {
        noop: true,
        ..BackupOptions::new("g1")
    };
    backup(&bucket, &root, &noop, at(60)).await.unwrap();

    // Its lease lapsed: the next run takes it, and removes it when done.
    bucket.put(&key, far(unix_now() - 1)).await.unwrap();
    let report = backup(&bucket, &root, &options, at(120)).await.unwrap();
    assert_eq!(report.unchanged, 20);
    assert!(bucket.get(&key).await.unwrap().is_none());
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The lease rests on a create that refuses an existing object, on every store.
async fn a_create_refuses_an_existing_object(backend: Backend) {
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    assert!(
        bucket
            .create(".bucky/lease.json", b"first".to_vec())
            .await
            .unwrap()
    );
    assert!(
        !bucket
            .create(".bucky/lease.json", b"second".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(
        bucket
            .get(".bucky/lease.json")
            .await
            .unwrap()
            .unwrap()
            .as_ref(),
        b"first"
    );
}

crate::on_every_store!(a_create_refuses_an_existing_object);

/// Purge collects the uploads of a run that died (versions no manifest lists) once they are old
/// enough to be nobody's upload in flight; history older than the bucket's owner marker (a
/// whisper-backup bucket bucky took over) is never touched.
#[tokio::test]
async fn purge_collects_a_dead_runs_uploads_and_keeps_older_history() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir) = (tmp.path().join("w"), tmp.path().join("bucket"));
    write_tree(&root, 2);
    let committed = snapshot(&root);
    std::fs::create_dir_all(&dir).unwrap();
    let bucket = bucky_agent::bucket::Bucket::open(
        &format!("file://{}", dir.display()),
        &Default::default(),
    )
    .unwrap();
    // whisper-backup's history, from before bucky claimed the bucket.
    let old = bucket.layout().data_key("app.m000.requests", at(-86_400));
    bucket
        .put(&old, b"whisper-backup's".to_vec())
        .await
        .unwrap();
    let options = BackupOptions {
        workers: 1,
        ..BackupOptions::new("g1")
    };
    backup(&bucket, &root, &options, at(0)).await.unwrap();

    write_metric(&root, "app.m000.requests", 500.0, 60);
    let store = object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap();
    let (dying, _) = counted_bucket_at(std::sync::Arc::new(store), "", Faults::DieAfterPuts(3));
    let died = backup(&dying, &root, &options, at(60)).await;
    assert!(died.is_err(), "{died:?}");
    let dead_run = bucket.layout().data_key("app.m000.requests", at(60));
    assert!(
        bucket.get(&dead_run).await.unwrap().is_some(),
        "the dead run uploaded"
    );

    let purge = BackupOptions {
        purge_only: true,
        ..BackupOptions::new("g1")
    };
    // Fresh objects may be an upload in flight: kept.
    let report = backup(&bucket, &root, &purge, at(120)).await.unwrap();
    assert_eq!(report.orphans_deleted, 0);
    // object_store's temp file of an upload cut off by kill -9.
    let partial = dir.join("app.m001.requests/2023-11-14T22:14:20+00:00.wsp.gz#17");
    std::fs::write(&partial, b"half an upload").unwrap();
    age_every_file(&dir, 7200);
    let report = backup(&bucket, &root, &purge, at(180)).await.unwrap();
    assert_eq!(
        report.orphans_deleted, 3,
        "the dead run's data and .sha1, and the cut-off upload"
    );
    assert!(!partial.exists());
    assert!(bucket.get(&dead_run).await.unwrap().is_none());
    assert!(
        bucket.get(&old).await.unwrap().is_some(),
        "older history is kept"
    );

    let target = tmp.path().join("r");
    restore(&bucket, &target, &RestoreOptions::new(NOW + 240))
        .await
        .unwrap();
    assert_eq!(snapshot(&target), committed);
}

fn age_every_file(dir: &std::path::Path, seconds: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(seconds);
    for (path, _) in snapshot(dir) {
        std::fs::File::options()
            .write(true)
            .open(dir.join(path))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}
