//! The same scenarios against a real S3 HTTP server on loopback (s3s-fs, in-process).

use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::restore::{RestoreOptions, restore};
use bucky_shared::metric;

use crate::support::{NOW, at, s3_bucket, snapshot, spawn_s3, write_metric, write_tree};

#[tokio::test]
async fn backup_and_restore_through_s3() {
    let server = spawn_s3().await;
    let bucket = s3_bucket(&server, "graphite");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 8);
    let options = BackupOptions::new("g1");
    let report = backup(&bucket, &root, &options, at(0)).await.unwrap();
    assert_eq!(
        (report.new, report.failed.len()),
        (8, 0),
        "{:?}",
        report.failed
    );
    let report = backup(&bucket, &root, &options, at(60)).await.unwrap();
    assert_eq!((report.unchanged, report.bytes_uploaded), (8, 0));

    // Retention over S3: 7 versions of one metric, 5 kept.
    for run in 0..6i64 {
        write_metric(&root, "app.m000.requests", run as f64, 120 + run * 60);
        backup(&bucket, &root, &options, at(120 + run * 60))
            .await
            .unwrap();
    }
    let catalog = bucky_agent::restore::catalog(&bucket).await.unwrap();
    assert_eq!(catalog["app.m000.requests"].len(), 5);

    let target = tmp.path().join("r");
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.failed.len()),
        (8, 0),
        "{:?}",
        report.failed
    );
    assert_eq!(snapshot(&target), snapshot(&root));
}

#[tokio::test]
async fn s3_ownership_and_corrupt_objects() {
    let server = spawn_s3().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 2);
    let bucket = s3_bucket(&server, "host-a");
    backup(&bucket, &root, &BackupOptions::new("host-a"), at(0))
        .await
        .unwrap();
    let err = backup(&bucket, &root, &BackupOptions::new("host-b"), at(60))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("host-a") && err.to_string().contains("host-b"),
        "{err}"
    );

    let layout = bucket.layout().clone();
    bucket
        .put(
            &layout.data_key("app.m000.requests", at(0)),
            b"garbage".to_vec(),
        )
        .await
        .unwrap();
    let target = tmp.path().join("r");
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(report.failed.len(), 1);
    assert!(
        !metric::path_of(&target, "app.m000.requests")
            .unwrap()
            .exists()
    );
}
