//! Restore: into an empty tree, into an existing one (safe fill), to a date, from a
//! whisper-backup bucket, and past corrupt objects.

use std::io::Write;

use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::codec;
use bucky_agent::restore::{RestoreOptions, restore};
use bucky_shared::layout::Version;
use bucky_shared::metric;
use bucky_shared::whisper::{Access, Whisper};

use crate::support::{
    Backend, Faults, NOW, at, counted_bucket, snapshot, write_metric, write_tree,
};

async fn restore_into_an_empty_tree_is_byte_identical(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let (root, target) = (tmp.path().join("w"), tmp.path().join("restored"));
    write_tree(&root, 6);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.filled, report.failed.len()),
        (6, 0, 0)
    );
    assert_eq!(snapshot(&target), snapshot(&root));
}

/// An existing file is filled, never overwritten: its points stay, its gaps get the backup's.
async fn restore_into_an_existing_tree_fills_gaps_and_keeps_points(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 2);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();

    // The node lost the file and carbon recreated it with new data for the last 10 minutes.
    let path = metric::path_of(&root, "app.m000.requests").unwrap();
    std::fs::remove_file(&path).unwrap();
    write_metric(&root, "app.m000.requests", 5000.0, 0);
    let mut file = Whisper::open_file(&path, Access::ReadWrite).unwrap();
    let recent: Vec<(i64, f64)> = (0..10).map(|i| (NOW - 600 + i * 60, -1.0)).collect();
    file.update_many(&recent, NOW).unwrap();
    let before = file.fetch(NOW - 3600, None, NOW).unwrap().unwrap();
    drop(file);

    let report = restore(&bucket, &root, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.filled, report.failed.len()),
        (0, 2, 0)
    );
    let after = Whisper::open_file(&path, Access::Read)
        .unwrap()
        .fetch(NOW - 3600, None, NOW)
        .unwrap()
        .unwrap();
    for (b, a) in before.values.iter().zip(&after.values) {
        if b.is_some() {
            assert_eq!(a, b, "a point the node had was changed");
        }
    }
}

async fn the_date_picks_the_newest_version_strictly_before_it(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 1);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    let options = BackupOptions::new("g1");
    backup(&bucket, &root, &options, at(0)).await.unwrap();
    let first = std::fs::read(metric::path_of(&root, "app.m000.requests").unwrap()).unwrap();
    write_metric(&root, "app.m000.requests", 77.0, 3600);
    backup(&bucket, &root, &options, at(3600)).await.unwrap();

    for (before, expected) in [
        (at(3600), first.clone()),
        (
            at(3601),
            std::fs::read(metric::path_of(&root, "app.m000.requests").unwrap()).unwrap(),
        ),
    ] {
        let target = tmp.path().join(format!("r{}", before.0));
        let options = RestoreOptions {
            before: Some(before),
            ..RestoreOptions::new(NOW)
        };
        restore(&bucket, &target, &options).await.unwrap();
        assert_eq!(
            std::fs::read(metric::path_of(&target, "app.m000.requests").unwrap()).unwrap(),
            expected
        );
    }
    let options = RestoreOptions {
        before: Some(at(0)),
        ..RestoreOptions::new(NOW)
    };
    let report = restore(&bucket, &tmp.path().join("none"), &options)
        .await
        .unwrap();
    assert_eq!((report.no_version, report.written), (1, 0));
}

/// A bucket written by whisper-backup: no manifest, no owner marker, snappy-framed objects.
async fn a_whisper_backup_bucket_with_snappy_objects_restores(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 1);
    let raw = std::fs::read(metric::path_of(&root, "app.m000.requests").unwrap()).unwrap();
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    let mut sz = snap::write::FrameEncoder::new(Vec::new());
    sz.write_all(&raw).unwrap();
    let stamp = Version(NOW - 86_400);
    let base = format!("graphite/app.m000.requests/{stamp}");
    bucket
        .put(&format!("{base}.wsp.sz"), sz.into_inner().unwrap())
        .await
        .unwrap();
    bucket
        .put(&format!("{base}.sha1"), codec::sha1_hex(&raw).into_bytes())
        .await
        .unwrap();
    let target = tmp.path().join("r");
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.failed.len()),
        (1, 0),
        "{:?}",
        report.failed
    );
    assert_eq!(
        std::fs::read(metric::path_of(&target, "app.m000.requests").unwrap()).unwrap(),
        raw
    );
}

/// A data object without its `.sha1` (an upload that died between the two PUTs) is no version:
/// the previous complete one is restored.
async fn a_version_without_its_sha1_is_skipped(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 1);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let layout = bucket.layout().clone();
    bucket
        .put(
            &layout.data_key("app.m000.requests", at(60)),
            codec::gzip(b"half an upload", 6),
        )
        .await
        .unwrap();
    let target = tmp.path().join("r");
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.failed.len()),
        (1, 0),
        "{:?}",
        report.failed
    );
    assert_eq!(snapshot(&target), snapshot(&root));
}

/// A corrupt object, a checksum mismatch and a decompression bomb (a valid file followed by
/// megabytes of zeros) fail their metric with a clear error; the others are restored and nothing
/// is written for the failed ones.
async fn corrupt_objects_fail_their_metric_only(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 4);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let layout = bucket.layout().clone();
    bucket
        .put(
            &layout.data_key("app.m000.requests", at(0)),
            b"not gzip at all".to_vec(),
        )
        .await
        .unwrap();
    bucket
        .put(
            &layout.sha1_key("app.m001.requests", at(0)),
            "0".repeat(40).into_bytes(),
        )
        .await
        .unwrap();
    let mut bomb = std::fs::read(metric::path_of(&root, "app.m002.requests").unwrap()).unwrap();
    bomb.resize(16 << 20, 0);
    bucket
        .put(
            &layout.data_key("app.m002.requests", at(0)),
            codec::gzip(&bomb, 1),
        )
        .await
        .unwrap();
    let target = tmp.path().join("r");
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(report.written, 1);
    let mut failed: Vec<(String, String)> = report
        .failed
        .first()
        .iter()
        .map(|f| (f.metric.clone(), f.error.clone()))
        .collect();
    failed.sort();
    assert_eq!(failed.len(), 3);
    assert!(failed[0].1.contains("corrupt object"), "{failed:?}");
    assert!(failed[1].1.contains("does not match"), "{failed:?}");
    assert!(
        failed[2]
            .1
            .contains("decompresses past the 51880 bytes its whisper header gives"),
        "{failed:?}"
    );
    assert!(
        !metric::path_of(&target, "app.m000.requests")
            .unwrap()
            .exists()
    );
    for failed in ["app.m001.requests", "app.m002.requests"] {
        assert!(!metric::path_of(&target, failed).unwrap().exists());
    }
}

crate::on_every_store!(
    restore_into_an_empty_tree_is_byte_identical,
    restore_into_an_existing_tree_fills_gaps_and_keeps_points,
    the_date_picks_the_newest_version_strictly_before_it,
    a_whisper_backup_bucket_with_snappy_objects_restores,
    a_version_without_its_sha1_is_skipped,
    corrupt_objects_fail_their_metric_only,
);
