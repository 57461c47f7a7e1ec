//! A restore into a live node: carbon keeps writing without a lock (its default,
//! `WHISPER_LOCK_WRITES = False`) while the restore fills the same files.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::restore::{RestoreOptions, restore};
use bucky_shared::metric;
use bucky_shared::whisper::{self, Access, CreateOptions, Whisper};

use crate::support::{Backend, Faults, NOW, at, counted_bucket, write_metric};

const FILES: usize = 200;
/// `write_metric` writes 600 minutes ending at NOW.
const MINUTES: i64 = 600;

/// The aligned slot of the `i`-th minute `write_metric` writes.
fn minute(i: i64) -> i64 {
    NOW - NOW % 60 - MINUTES * 60 + i * 60
}

/// The node's copy after an outage of every other minute: only even minutes are present.
fn write_with_gaps(path: &PathBuf, base: f64) {
    let schema = whisper::parse_retentions(&["60s:1d", "15m:30d"]).unwrap();
    let image = whisper::create_image(&schema, &CreateOptions::default()).unwrap();
    let mut file = Whisper::open(image, path).unwrap();
    let points: Vec<(i64, f64)> = (0..MINUTES)
        .step_by(2)
        .map(|i| (minute(i), base + i as f64))
        .collect();
    file.update_many(&points, NOW).unwrap();
    std::fs::write(path, file.storage().bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carbon_writing_without_a_lock_loses_no_point_during_a_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    let names: Vec<String> = (0..FILES).map(|i| format!("live.m{i:03}.rate")).collect();
    for (i, name) in names.iter().enumerate() {
        write_metric(&root, name, i as f64 * 1000.0, 0);
    }
    let backend = Backend::file();
    let (bucket, _) = counted_bucket(backend.store(), Faults::None);
    backup(&bucket, &root, &BackupOptions::new("g1"), at(0))
        .await
        .unwrap();
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| metric::path_of(&root, n).unwrap())
        .collect();
    for (i, path) in paths.iter().enumerate() {
        write_with_gaps(path, i as f64 * 1000.0);
    }

    // The writer rewrites present minutes, newest first, one per file per round, opening each
    // file as carbon does with locking off: no flock at all.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, paths) = (stop.clone(), paths.clone());
        std::thread::spawn(move || {
            let mut wrote = Vec::new();
            for round in 0..MINUTES / 2 {
                for (f, path) in paths.iter().enumerate() {
                    if stop.load(Ordering::Relaxed) {
                        return wrote;
                    }
                    let t = minute(MINUTES - 2 - 2 * round);
                    let value = -1.0 - round as f64;
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(path)
                        .unwrap();
                    let mut file = Whisper::open(file, path).unwrap();
                    file.update_many(&[(t, value)], NOW).unwrap();
                    wrote.push((f, t, value));
                }
            }
            wrote
        })
    };
    let report = restore(&bucket, &root, &RestoreOptions::new(NOW))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let wrote = writer.join().unwrap();
    assert_eq!(
        (report.filled, report.failed.len()),
        (FILES as u64, 0),
        "{report:?}"
    );
    assert!(
        !wrote.is_empty(),
        "the writer wrote nothing: the test raced nothing"
    );

    let mut by_file: Vec<Vec<Option<f64>>> = Vec::with_capacity(FILES);
    for path in &paths {
        let series = Whisper::open_file(path, Access::Read)
            .unwrap()
            .fetch_with_precision(minute(0) - 1, Some(minute(MINUTES - 1)), NOW, Some(60))
            .unwrap()
            .unwrap();
        assert_eq!(series.from, minute(0));
        by_file.push(series.values);
    }
    let mut lost = Vec::new();
    for &(f, t, value) in &wrote {
        let got = by_file[f][((t - minute(0)) / 60) as usize];
        if got != Some(value) {
            lost.push((paths[f].display().to_string(), t, value, got));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} points the writer wrote were lost, first: {:?}",
        lost.len(),
        wrote.len(),
        lost.first()
    );
    // Every gap was filled with the backup's value.
    for (f, values) in by_file.iter().enumerate() {
        for i in (1..MINUTES).step_by(2) {
            assert_eq!(
                values[i as usize],
                Some(f as f64 * 1000.0 + i as f64),
                "{}: minute {i} not filled",
                paths[f].display()
            );
        }
    }
    eprintln!(
        "writer: {} points; restore: {} points filled",
        wrote.len(),
        report.points_filled
    );
}
