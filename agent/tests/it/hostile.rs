//! Buckets that are not what bucky wrote: a key that is not a valid object path, versions no
//! manifest committed.

use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::restore::{RestoreOptions, restore};
use bucky_shared::metric;

use crate::support::{
    Backend, Faults, NOW, at, counted_bucket, snapshot, write_metric, write_tree,
};

/// A tab in a directory name of a `file://` bucket used to fail the whole listing, so nothing
/// could be restored. Now that key is reported and every other metric is restored.
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
        report.failed[0].error.contains("app.m000\trequests"),
        "the key is named: {:?}",
        report.failed
    );
    assert_eq!(snapshot(&target), snapshot(&root));
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
