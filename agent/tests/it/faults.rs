//! Store faults: a run that dies part way, and a flaky store. Each ends with nothing lost.

use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::manifests;
use bucky_agent::restore::{RestoreOptions, restore};

use crate::support::{Backend, Faults, NOW, at, counted_bucket, snapshot, write_tree};

/// A run that dies after some uploads leaves the previous manifest in charge; the next run
/// resumes from the checkpoint and uploads only what was not uploaded.
async fn a_run_killed_midway_is_resumed_without_uploading_again(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    let store = backend.store();
    write_tree(&root, 2);
    let options = BackupOptions {
        checkpoint_every: 1,
        workers: 1,
        ..BackupOptions::new("g1")
    };
    let (bucket, _) = counted_bucket(store.clone(), Faults::None);
    backup(&bucket, &root, &options, at(0)).await.unwrap();
    let first = manifests::latest(&bucket, None).await.unwrap().unwrap();

    write_tree(&root, 12); // 10 new metrics
    // The store "dies" 10 PUTs into the run: the lease, then 3 metrics uploaded and checkpointed
    // (3 PUTs each).
    let (dying, _) = counted_bucket(store.clone(), Faults::DieAfterPuts(10));
    assert!(backup(&dying, &root, &options, at(60)).await.is_err());
    let (bucket, counts) = counted_bucket(store.clone(), Faults::None);
    let still = manifests::latest(&bucket, None).await.unwrap().unwrap();
    assert_eq!(
        still.started, first.started,
        "the dead run committed nothing"
    );

    let report = backup(&bucket, &root, &options, at(120)).await.unwrap();
    assert_eq!(report.failed.len(), 0);
    assert_eq!(
        report.new, 7,
        "3 of the 10 new metrics were already uploaded by the dead run"
    );
    assert_eq!(report.unchanged, 5);
    assert_eq!(
        counts.puts(),
        2 + 7 * 3 + 2,
        "the lease (refused, then taken over from the dead run), data, .sha1 and a checkpoint \
         per upload, then the manifest and its summary"
    );

    let target = tmp.path().join("r");
    let report = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 0);
    assert_eq!(snapshot(&target), snapshot(&root));
}

/// A store that fails one request in seven (one in five would fail a request of the five a
/// run cannot do without at its start, owner, lease, manifests, checkpoint, every time). Whatever each run manages, the newest manifest only
/// names complete, correct versions; a healthy run then completes the tree.
async fn a_flaky_store_loses_nothing(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 10);
    let store = backend.store();
    let options = BackupOptions::new("g1");
    // One flaky store for all runs, so the failures fall on different requests each run.
    let (flaky, _) = counted_bucket(store.clone(), Faults::EveryNth(7));
    let (healthy, _) = counted_bucket(store, Faults::None);
    let mut committed_runs = 0;
    for run in 0..8 {
        let outcome = backup(&flaky, &root, &options, at(run * 60)).await;
        committed_runs += usize::from(outcome.is_ok());
        let Some(manifest) = manifests::latest(&healthy, None).await.unwrap() else {
            continue;
        };
        let target = tmp.path().join(format!("r{run}"));
        let report = restore(&healthy, &target, &RestoreOptions::new(NOW))
            .await
            .unwrap();
        assert_eq!(report.failed.len(), 0, "{:?}", report.failed);
        let restored = snapshot(&target);
        let original = snapshot(&root);
        for entry in &manifest.metrics {
            let file = std::path::PathBuf::from(entry.name.replace('.', "/") + ".wsp");
            let got = restored.iter().find(|(p, _)| *p == file).map(|(_, b)| b);
            let want = original.iter().find(|(p, _)| *p == file).map(|(_, b)| b);
            assert_eq!(got, want, "run {run}: {}", entry.name);
        }
    }
    assert!(committed_runs > 0, "some flaky runs commit");
    let report = backup(&healthy, &root, &options, at(3600)).await.unwrap();
    assert_eq!(report.failed.len(), 0);
    let target = tmp.path().join("final");
    restore(&healthy, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(snapshot(&target), snapshot(&root));
}

/// A store that freezes mid-run: the run stops after a few requests in a row go unanswered,
/// with an error that says so, instead of waiting out every file; the next run completes.
async fn a_frozen_store_stops_the_run_early_and_loses_nothing(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 40);
    let options = BackupOptions {
        workers: 2,
        ..BackupOptions::new("g1")
    };
    // The lease and two metrics (2 PUTs each) are stored, then nothing answers.
    let (frozen, counts) = counted_bucket(backend.store(), Faults::FreezeAfterPuts(5));
    let frozen = frozen.with_timeout(std::time::Duration::from_millis(100));
    let error = backup(&frozen, &root, &options, at(0))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not answering") && error.contains("in a row"),
        "{error}"
    );
    // Waiting out every file would send 2 PUTs for each of the 38 left.
    let sent = counts.puts() + counts.gets() + counts.lists() + counts.deletes();
    assert!(sent < 30, "{sent} requests: the run did not stop early");

    a_healthy_run_restores_the_tree(&backend, &root, &options, at(60)).await;
}

/// A store that freezes mid-restore: once 5 requests in a row got no answer, the metrics left
/// fail at once, naming the store, instead of each waiting out its deadline; a restore once the
/// store answers completes the tree.
async fn a_store_frozen_mid_restore_fails_the_rest_fast(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 40);
    let (healthy, counts) = counted_bucket(backend.store(), Faults::None);
    backup(&healthy, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let before = counts.gets();
    restore(&healthy, target.path(), &RestoreOptions::new(NOW))
        .await
        .unwrap();
    // Two GETs per metric (object and .sha1), and the manifest's.
    let per_restore = counts.gets() - before;
    let target = tempfile::tempdir().unwrap();

    // The manifest and four metrics are read, then nothing answers.
    let (frozen, counts) =
        counted_bucket(backend.store(), Faults::FreezeAfterGets(per_restore - 72));
    let frozen = frozen.with_timeout(std::time::Duration::from_millis(100));
    let options = RestoreOptions {
        workers: 2,
        ..RestoreOptions::new(NOW)
    };
    let report = restore(&frozen, target.path(), &options).await.unwrap();
    assert!(report.failed.len() > 30, "{report:?}");
    assert!(
        report
            .failed
            .first()
            .iter()
            .any(|f| f.error.contains("not answering")),
        "{report:?}"
    );
    // Waiting out every metric would send 2 GETs for each of the 36 left.
    assert!(
        counts.gets() < per_restore - 72 + 10,
        "{} GETs: it did not stop early",
        counts.gets()
    );

    let report = restore(&healthy, target.path(), &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(report.failed.len(), 0);
    assert_eq!(snapshot(target.path()), snapshot(&root));
}

crate::on_every_store!(
    a_store_frozen_mid_restore_fails_the_rest_fast,
    a_frozen_store_stops_the_run_early_and_loses_nothing,
    a_stuck_store_times_out_and_loses_nothing,
    a_run_killed_midway_is_resumed_without_uploading_again,
    a_flaky_store_loses_nothing,
);

/// A store that never answers one request in seven: each stuck request times out (here after
/// 200 ms), fails its file or its run, and nothing committed is lost.
async fn a_stuck_store_times_out_and_loses_nothing(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 6);
    let options = BackupOptions::new("g1");
    let (stuck, _) = counted_bucket(backend.store(), Faults::HangEveryNth(7));
    let stuck = stuck.with_timeout(std::time::Duration::from_millis(200));
    let mut timeouts = 0;
    for run in 0..4 {
        match backup(&stuck, &root, &options, at(run * 60)).await {
            Ok(report) => {
                timeouts += report
                    .failed
                    .first()
                    .iter()
                    .filter(|f| f.error.contains("no answer"))
                    .count()
            }
            Err(e) => timeouts += usize::from(e.to_string().contains("no answer")),
        }
    }
    assert!(timeouts > 0, "some requests hung and timed out");
    a_healthy_run_restores_the_tree(&backend, &root, &options, at(3600)).await;
}

/// After a faulty store: a run against the healthy store fails nothing, and a restore from it
/// equals the tree at `root`.
async fn a_healthy_run_restores_the_tree(
    backend: &Backend,
    root: &std::path::Path,
    options: &BackupOptions,
    run: bucky_shared::layout::Version,
) {
    let (healthy, _) = counted_bucket(backend.store(), Faults::None);
    let report = backup(&healthy, root, options, run).await.unwrap();
    assert_eq!(report.failed.len(), 0);
    let target = tempfile::tempdir().unwrap();
    restore(&healthy, target.path(), &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(snapshot(target.path()), snapshot(root));
}

/// Checkpoints cost what was uploaded: each segment holds only the uploads since the one before
/// (the whole run so far, rewritten every 500 uploads, was quadratic on a node of millions).
#[tokio::test]
async fn checkpoint_segments_hold_only_new_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 9);
    let store = Backend::file().store();
    let options = BackupOptions {
        checkpoint_every: 3,
        workers: 1,
        ..BackupOptions::new("g1")
    };
    // The owner marker, the lease, 9 uploads of 2 PUTs, 3 segments: the manifest, the 24th
    // PUT, fails.
    let (dying, _) = counted_bucket(store.clone(), Faults::DieAfterPuts(23));
    assert!(backup(&dying, &root, &options, at(0)).await.is_err());
    let (bucket, _) = counted_bucket(store, Faults::None);
    let keys = manifests::checkpoint_keys(&bucket).await.unwrap();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        let segment =
            bucky_shared::layout::Manifest::decode(&bucket.get(key).await.unwrap().unwrap())
                .unwrap();
        assert_eq!(segment.metrics.len(), 3, "{key}");
    }
    let resumed = manifests::checkpoint(&bucket).await.unwrap().unwrap();
    assert_eq!(resumed.metrics.len(), 9);

    let report = backup(&bucket, &root, &options, at(60)).await.unwrap();
    assert_eq!(
        (report.new, report.unchanged),
        (0, 9),
        "resumed: nothing uploaded again"
    );
    assert!(
        manifests::checkpoint_keys(&bucket)
            .await
            .unwrap()
            .is_empty()
    );
}
