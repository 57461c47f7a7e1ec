//! Opening an S3 bucket from its URL and options, as `bucky-agent --bucket s3://... --s3-*`
//! does, against a real S3 HTTP server on loopback (s3s-fs, in-process). The scenario suite runs
//! against S3 too (`on_every_store!`).

use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::restore::{RestoreOptions, restore};

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
    let (catalog, _) = bucky_agent::restore::catalog(&bucket).await.unwrap();
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
