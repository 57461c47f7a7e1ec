//! Verification: bucky's own versions and whisper-backup's (`.wsp.gz` and `.wsp.sz`), damage of
//! each kind found and recorded, and a store that fails leaving its parts due.

use std::io::Write;

use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::codec;
use bucky_agent::verify::{Share, VerifyOptions, verify};
use bucky_shared::layout::Version;
use bucky_shared::manifests;
use bucky_shared::metric;

use crate::support::{Backend, Faults, NOW, at, counted_bucket, write_tree};

/// A whisper-backup bucket (no manifest): two sound versions (snappy and gzip) and two damaged
/// ones (snappy that is not snappy, gzip whose `.sha1` differs) are told apart and recorded.
async fn whisper_backup_objects_are_read_and_damage_is_found(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    let names = write_tree(&root, 4);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    let stamp = Version(NOW - 86_400);
    for (i, name) in names.iter().enumerate() {
        let raw = std::fs::read(metric::path_of(&root, name).unwrap()).unwrap();
        let base = format!("graphite/{name}/{stamp}");
        let (suffix, object) = match i {
            0 | 2 => {
                let mut sz = snap::write::FrameEncoder::new(Vec::new());
                sz.write_all(&raw).unwrap();
                let mut bytes = sz.into_inner().unwrap();
                if i == 2 {
                    bytes.truncate(bytes.len() / 2);
                }
                (".wsp.sz", bytes)
            }
            _ => (".wsp.gz", codec::gzip(&raw, 6)),
        };
        bucket
            .put(&format!("{base}{suffix}"), object)
            .await
            .unwrap();
        let sha1 = match i {
            3 => "0".repeat(40),
            _ => codec::sha1_hex(&raw),
        };
        bucket
            .put(&format!("{base}.sha1"), sha1.into_bytes())
            .await
            .unwrap();
    }
    let report = verify(&bucket, &VerifyOptions::new("g1", Share::All), at(0), 30)
        .await
        .unwrap();
    assert_eq!((report.checked, report.ok, report.parts), (4, 2, 1000));
    let mut corrupt: Vec<(String, String)> = report
        .corrupt
        .first()
        .iter()
        .map(|c| (c.metric.clone(), c.reason.clone()))
        .collect();
    corrupt.sort();
    assert_eq!(corrupt.len(), 2, "{corrupt:?}");
    assert_eq!(corrupt[0].0, names[2]);
    assert_eq!(corrupt[1].0, names[3]);
    assert!(
        corrupt[1].1.contains("does not match its .sha1"),
        "{corrupt:?}"
    );
    let (trust, records) = manifests::trust(&bucket).await.unwrap();
    assert_eq!(records.len(), 1);
    assert!(trust.corrupt_reason(&names[2], stamp).is_some());
    assert!(trust.corrupt_reason(&names[0], stamp).is_none());

    // bucky takes the bucket over: its manifest lists only its own versions; the listing still
    // reaches whisper-backup's.
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let own = verify(&bucket, &VerifyOptions::new("g1", Share::All), at(10), 30)
        .await
        .unwrap();
    // bucky's four, and the two whisper-backup versions found corrupt before, read again.
    assert_eq!((own.checked, own.ok, own.corrupt.len()), (6, 4, 2));
    assert_eq!(own.corrupt_known, 2);
    let listing = VerifyOptions {
        from_listing: true,
        ..VerifyOptions::new("g1", Share::All)
    };
    let all = verify(&bucket, &listing, at(20), 30).await.unwrap();
    assert_eq!((all.checked, all.ok, all.corrupt.len()), (8, 6, 2));

    // The damaged whisper-backup versions are removed by hand: the next run forgets them.
    for name in &names[2..] {
        for suffix in [".wsp.sz", ".wsp.gz", ".sha1"] {
            let _ = bucket
                .delete(&format!("graphite/{name}/{stamp}{suffix}"))
                .await;
        }
    }
    let after = verify(&bucket, &VerifyOptions::new("g1", Share::All), at(30), 30)
        .await
        .unwrap();
    assert_eq!((after.checked, after.corrupt_known), (4, 0), "{after:?}");
}

/// Versions a failing store would not give are neither sound nor corrupt: their parts stay due
/// and the next run, taking the stalest parts first, reads them.
async fn a_failing_store_leaves_its_parts_due_for_the_next_run(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 30);
    let store = backend.store();
    let (bucket, _) = counted_bucket(store.clone(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let (flaky, _) = counted_bucket(store.clone(), Faults::EveryNth(7));
    let first = verify(&flaky, &VerifyOptions::new("g1", Share::All), at(10), 30)
        .await
        .unwrap();
    assert!(!first.unread.is_empty(), "the faults hit reads: {first:?}");
    assert!(first.parts < 1000 && first.parts_due > 0, "{first:?}");
    assert_eq!(first.parts_due, 1000 - first.parts);
    let due = first.parts_due as f64 / 1000.0;
    let second = verify(
        &bucket,
        &VerifyOptions::new("g1", Share::Fraction(due)),
        at(20),
        30,
    )
    .await
    .unwrap();
    assert_eq!(
        (second.parts_due, second.unread.len()),
        (0, 0),
        "{second:?}"
    );
    assert!(second.checked >= first.unread.len(), "{second:?}");
    assert_eq!(second.corrupt_known, 0);
}

/// `bucky-agent restore` (no coordinator) passes a corrupt newest version over for the one
/// before it and says so.
async fn a_local_restore_passes_a_corrupt_version_over(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    let names = write_tree(&root, 2);
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let path = metric::path_of(&root, &names[0]).unwrap();
    let first = std::fs::read(&path).unwrap();
    crate::support::write_metric(&root, &names[0], 500.0, 60);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(60))
        .await
        .unwrap();
    bucket
        .put(
            &bucket.layout().data_key(&names[0], at(60)),
            b"rot".to_vec(),
        )
        .await
        .unwrap();
    let found = verify(&bucket, &VerifyOptions::new("g1", Share::All), at(120), 30)
        .await
        .unwrap();
    assert_eq!(found.corrupt.len(), 1);
    let target = tmp.path().join("r");
    let report = bucky_agent::restore::restore(
        &bucket,
        &target,
        &bucky_agent::restore::RestoreOptions::new(NOW),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.written, report.failed.len()),
        (2, 0),
        "{:?}",
        report.failed
    );
    assert_eq!(report.corrupt_passed.len(), 1);
    assert!(report.corrupt_passed.first()[0].starts_with(&format!("{}: ", names[0])));
    assert_eq!(
        std::fs::read(metric::path_of(&target, &names[0]).unwrap()).unwrap(),
        first
    );
}

crate::on_every_store!(
    whisper_backup_objects_are_read_and_damage_is_found,
    a_failing_store_leaves_its_parts_due_for_the_next_run,
    a_local_restore_passes_a_corrupt_version_over,
);
