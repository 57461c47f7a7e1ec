//! Trees that grew by hand: names carbon cannot write, symlinked subtrees, a disk that did not
//! mount, restore leftovers; and the mode of restored files.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::{Duration, SystemTime};

use bucky_agent::backup::{BackupOptions, Error, backup};
use bucky_agent::restore::{RestoreOptions, restore};
use bucky_shared::metric;

use crate::support::{
    Backend, Faults, NOW, at, counted_bucket, snapshot, write_metric, write_tree,
};

/// `a/b.wsp` and `a.b.wsp` are both "a.b" for a naive walk; carbon writes only the first.
#[tokio::test]
async fn files_carbon_cannot_have_written_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_metric(&root, "a.b", 1.0, 0);
    let carbons = std::fs::read(root.join("a/b.wsp")).unwrap();
    for odd in ["a.b.wsp", "d.e/f.wsp", "x.wsp/y.wsp"] {
        let p = root.join(odd);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"not carbon's").unwrap();
    }
    let (bucket, _) = counted_bucket(Backend::file().store(), Faults::None);
    let report = backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    assert_eq!((report.new, report.failed.len()), (1, 0), "{report:?}");
    assert_eq!(report.not_carbon.count, 3);
    assert!(report.not_carbon.first.contains(&root.join("d.e/f.wsp")));

    let target = tmp.path().join("r");
    let restored = restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(restored.written, 1);
    assert_eq!(std::fs::read(target.join("a/b.wsp")).unwrap(), carbons);
}

/// Operators link subtrees to other disks: the backup sees what carbon sees, a loop is not
/// followed twice, and a restore puts the metrics at the paths carbon uses.
#[tokio::test]
async fn symlinked_subtrees_are_backed_up_and_loops_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, disk2) = (tmp.path().join("w"), tmp.path().join("disk2"));
    write_tree(&root, 2);
    write_metric(&disk2, "big.cpu", 7.0, 0);
    symlink(disk2.join("big"), root.join("big")).unwrap();
    symlink(&root, disk2.join("big/again")).unwrap();
    let (bucket, _) = counted_bucket(Backend::file().store(), Faults::None);
    let report = backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    assert_eq!((report.new, report.failed.len()), (3, 0), "{report:?}");
    assert_eq!(report.links_followed, 1);
    assert_eq!(report.links_skipped.count, 1, "the loop back to the root");

    let target = tmp.path().join("r");
    restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(target.join("big/cpu.wsp")).unwrap(),
        std::fs::read(disk2.join("big/cpu.wsp")).unwrap()
    );
}

/// A tree that is suddenly mostly gone is not backed up as the truth: the run is refused before
/// anything is written, and goes through with `allow_shrink`.
#[tokio::test]
async fn a_tree_that_mostly_vanished_is_refused_until_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    let names = write_tree(&root, 10);
    let (bucket, counts) = counted_bucket(Backend::file().store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    // Four gone is a cleanup; six would be a disk that did not mount.
    for name in &names[..6] {
        std::fs::remove_file(metric::path_of(&root, name).unwrap()).unwrap();
    }
    let keys = |listing: bucky_agent::bucket::Listing| {
        let mut keys: Vec<String> = listing
            .objects
            .iter()
            .map(|m| m.location.to_string())
            .collect();
        keys.sort();
        keys
    };
    let before = keys(bucket.list("").await.unwrap());
    let (puts, deletes) = (counts.puts(), counts.deletes());
    let err = backup(&bucket, &root, &BackupOptions::new("g1"), at(60))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shrink {
                missing: 6,
                known: 10,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("6 of the 10 metrics") && text.contains("--allow-shrink"),
        "{text}"
    );
    assert_eq!(
        keys(bucket.list("").await.unwrap()),
        before,
        "a refused run leaves nothing"
    );
    assert_eq!(
        (counts.puts() - puts, counts.deletes() - deletes),
        (1, 1),
        "only its lease, taken and removed"
    );

    let options = BackupOptions {
        allow_shrink: true,
        ..BackupOptions::new("g1")
    };
    let report = backup(&bucket, &root, &options, at(120)).await.unwrap();
    assert_eq!((report.unchanged, report.missing), (4, 6));

    // The same tree again: nothing new has gone missing, so no refusal.
    let report = backup(&bucket, &root, &BackupOptions::new("g1"), at(180))
        .await
        .unwrap();
    assert_eq!((report.unchanged, report.missing), (4, 6));

    // An empty (unmounted) tree after that is refused too.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    let err = backup(&bucket, &root, &BackupOptions::new("g1"), at(240))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Shrink {
                missing: 4,
                known: 4,
                ..
            }
        ),
        "{err}"
    );
}

fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line.split_whitespace().nth(1).unwrap(), 8).unwrap()
}

/// Restored files get the mode carbon gives its files (0666 less the umask), not a temp file's
/// 0600, and a killed restore's temp files are removed by the next backup once they are old.
#[tokio::test]
async fn restored_files_get_carbons_mode_and_leftovers_are_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 2);
    let (bucket, _) = counted_bucket(Backend::file().store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let target = tmp.path().join("r");
    restore(&bucket, &target, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    for (path, _) in snapshot(&target) {
        let mode = std::fs::metadata(target.join(&path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o666 & !umask(), "{}", path.display());
    }

    let dir = metric::path_of(&root, "app.m000.requests").unwrap();
    let dir = dir.parent().unwrap();
    let (old, fresh) = (
        dir.join(".bucky-restore-a1B2c3"),
        dir.join(".bucky-restore-d4E5f6"),
    );
    std::fs::write(&old, b"half a file").unwrap();
    std::fs::write(&fresh, b"being written").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let report = backup(&bucket, &root, &BackupOptions::new("g1"), at(60))
        .await
        .unwrap();
    assert_eq!(report.restore_leftovers_removed, 1);
    assert!(
        !old.exists() && fresh.exists(),
        "only a leftover older than an hour goes"
    );
    assert_eq!(report.unchanged, 2);
}
