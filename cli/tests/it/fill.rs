//! `bucky fill`.

use std::path::{Path, PathBuf};

use bucky_shared::metric;
use bucky_shared::synth::{self, Rng};
use bucky_shared::whisper;

use crate::support::{bucky, bucky_with_code, case_json, cases, path_str};

#[test]
fn carbonate_mode_reproduces_every_fill_vector() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in cases("fill_") {
        let case = case_json(&dir);
        let src = tmp.path().join("src.wsp");
        let dst = tmp.path().join("dst.wsp");
        std::fs::copy(dir.join("src.wsp"), &src).unwrap();
        std::fs::copy(dir.join("dst_before.wsp"), &dst).unwrap();
        let mut args = vec![
            "fill".to_string(),
            "--mode".into(),
            "carbonate".into(),
            "--now".into(),
            case["now"].to_string(),
            "--start-from".into(),
            case["startFrom"].to_string(),
            "--end-at".into(),
            case["endAt"].to_string(),
        ];
        if case["overwrite"].as_bool().unwrap() {
            args.push("--overwrite".into());
        }
        args.extend([path_str(&src), path_str(&dst)]);
        bucky(&args).unwrap();
        assert!(
            std::fs::read(&dst).unwrap() == std::fs::read(dir.join("dst_after.wsp")).unwrap(),
            "{}",
            dir.display()
        );
        assert!(std::fs::read(&src).unwrap() == std::fs::read(dir.join("src.wsp")).unwrap());
    }
}

#[test]
fn safe_mode_is_the_default_and_reports_per_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = cases("fill_02").remove(0);
    let now = case_json(&dir)["now"].to_string();
    let src = path_str(&tmp.path().join("src.wsp"));
    let dst = path_str(&tmp.path().join("dst.wsp"));
    std::fs::copy(dir.join("src.wsp"), &src).unwrap();
    std::fs::copy(dir.join("dst_before.wsp"), &dst).unwrap();
    let out = bucky(&["fill", "--now", &now, "--json", &src, &dst]).unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let per_archive = report["filled_per_archive"].as_array().unwrap();
    assert_eq!(per_archive.len(), 3);
    assert_eq!(per_archive[0]["seconds_per_point"], 10);
    assert!(report["points_written"].as_u64().unwrap() > 0);
    let out = bucky(&["fill", "--now", &now, &src, &dst]).unwrap();
    assert!(
        out.contains(": 0 points written (10s: 0, 60s: 0, 600s: 0)"),
        "{out}"
    );
}

#[test]
fn overwrite_needs_carbonate_mode() {
    let err = bucky(&["fill", "--overwrite", "a.wsp", "b.wsp"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("carbonate mode only"),
        "{err:#}"
    );
}

/// Carbonate mode keeps its byte-exact promise in batch mode: the fill vectors that share one
/// clock, laid out as two trees and filled in one run.
#[test]
fn a_carbonate_batch_reproduces_the_fill_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let now = 1_700_000_037;
    let mut expected = Vec::new();
    for dir in cases("fill_") {
        let case = case_json(&dir);
        if case["now"] != now || case["endAt"] != 0 || case["overwrite"] != false {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for (root, file) in [(&src, "src.wsp"), (&dst, "dst_before.wsp")] {
            std::fs::create_dir_all(root.join("vectors")).unwrap();
            std::fs::copy(dir.join(file), root.join(format!("vectors/{name}.wsp"))).unwrap();
        }
        expected.push((
            dst.join(format!("vectors/{name}.wsp")),
            dir.join("dst_after.wsp"),
        ));
    }
    assert!(expected.len() >= 10, "{}", expected.len());
    let args = [
        "fill",
        "-r",
        "--mode",
        "carbonate",
        "--now",
        &now.to_string(),
        "--json",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend([path_str(&src), path_str(&dst)]);
    let (code, out) = bucky_with_code(&args).unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (code, report["pairs"].as_u64()),
        (0, Some(expected.len() as u64)),
        "{out}"
    );
    for (filled, after) in expected {
        assert!(
            std::fs::read(&filled).unwrap() == std::fs::read(&after).unwrap(),
            "{} differs from carbonate's",
            filled.display()
        );
    }
}

const NOW: i64 = 1_700_000_000;

/// A replica of one series: the same points, minus outages of its own.
fn replica(seed: u64, outage_seed: u64) -> Vec<u8> {
    let schema = whisper::parse_retentions(&["60s:1d", "5m:7d"]).unwrap();
    let series = synth::random_walk(&mut Rng::new(seed), NOW, 1440);
    let missing = synth::outages(&mut Rng::new(outage_seed), NOW, 86_400, 5);
    synth::carbon_written(&schema, &series, &missing, 30)
        .unwrap()
        .into_bytes()
}

fn put(root: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = metric::path_of(root, name).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `bucky fill -r`: every metric in both trees is filled exactly as a single `bucky fill` fills
/// it, one only in SRC is copied whole, one only in DST is left alone, and a corrupt file fails
/// alone, named, with exit code 1.
#[test]
fn a_tree_is_filled_pair_by_pair_copied_and_failures_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, single) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("single"),
    );
    let mut pairs = Vec::new();
    for i in 0..12u64 {
        let name = format!("servers.web{}.cpu.user", i % 4);
        let name = format!("{name}{i}");
        put(&src, &name, &replica(i, 100 + i));
        let filled = put(&dst, &name, &replica(i, 200 + i));
        let alone = put(&single, &name, &replica(i, 200 + i));
        pairs.push((metric::path_of(&src, &name).unwrap(), filled, alone));
    }
    let only_src = put(&src, "servers.new.metric", &replica(50, 51));
    let only_dst = put(&dst, "servers.old.metric", &replica(60, 61));
    put(&src, "servers.broken", &replica(70, 71));
    let broken = put(&dst, "servers.broken", &replica(70, 72)[..100]);
    let only_dst_before = std::fs::read(&only_dst).unwrap();

    let now = NOW.to_string();
    let (code, out) = bucky_with_code(&[
        "fill",
        "-r",
        "--now",
        &now,
        &path_str(&src),
        &path_str(&dst),
    ])
    .unwrap();
    assert_eq!(code, 1, "a failed pair is exit code 1: {out}");
    assert!(out.contains("filled 12 pairs"), "{out}");
    assert!(
        out.contains("1 files only in the source copied whole"),
        "{out}"
    );
    assert!(
        out.contains("1 failed:") && out.contains(&broken.display().to_string()),
        "the corrupt file is named: {out}"
    );
    let mut changed = 0;
    for (i, (src, filled, alone)) in pairs.iter().enumerate() {
        bucky(&["fill", "--now", &now, &path_str(src), &path_str(alone)]).unwrap();
        let batch = std::fs::read(filled).unwrap();
        assert!(
            batch == std::fs::read(alone).unwrap(),
            "{} differs from a single fill",
            filled.display()
        );
        changed += usize::from(batch != replica(i as u64, 200 + i as u64));
    }
    assert_eq!(changed, pairs.len(), "every replica had gaps to fill");
    let copied = metric::path_of(&dst, "servers.new.metric").unwrap();
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&only_src).unwrap()
    );
    assert_eq!(std::fs::read(&only_dst).unwrap(), only_dst_before);

    // Again: nothing left to fill, nothing to copy, the broken file still named.
    let (_, out) = bucky_with_code(&[
        "fill",
        "-r",
        "--json",
        "--now",
        &now,
        &path_str(&src),
        &path_str(&dst),
    ])
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["points_written"], 0, "{out}");
    assert_eq!(
        (report["pairs"].as_u64(), report["copied"].as_u64()),
        (Some(13), Some(0)),
        "{out}"
    );
    assert_eq!(report["failed"], 1, "{out}");
}

/// `--pairs`: pairs from a list (a bad line is a named failure, the rest go on); `--no-copy`
/// leaves a file with no dst alone.
#[test]
fn pairs_come_from_a_list_and_no_copy_leaves_missing_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let a_src = put(tmp.path(), "a.src", &replica(1, 2));
    let a_dst = put(tmp.path(), "a.dst", &replica(1, 3));
    let b_src = put(tmp.path(), "b.src", &replica(4, 5));
    let b_dst = tmp.path().join("b/none.wsp");
    let list = tmp.path().join("pairs.txt");
    std::fs::write(
        &list,
        format!(
            "{}\t{}\nnot a pair at all\n{} {}\n",
            a_src.display(),
            a_dst.display(),
            b_src.display(),
            b_dst.display()
        ),
    )
    .unwrap();
    let before = std::fs::read(&a_dst).unwrap();
    let (code, out) = bucky_with_code(&[
        "fill",
        "--pairs",
        &path_str(&list),
        "--no-copy",
        "--json",
        "--now",
        &NOW.to_string(),
    ])
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["pairs"], 1, "{out}");
    assert_eq!(report["not_copied"], 1, "{out}");
    assert_eq!(report["failures"][0]["src"], "not a pair at all", "{out}");
    assert!(report["points_written"].as_u64().unwrap() > 0, "{out}");
    assert_ne!(std::fs::read(&a_dst).unwrap(), before);
    assert!(!b_dst.exists());
}

/// `-r` with one tree as both sides is refused before anything is read or locked, and a
/// directory given without `-r` is named with the fix.
#[test]
fn a_tree_is_not_filled_from_itself_and_directories_need_r() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    put(&root, "a.b", &replica(1, 2));
    let same = bucky(&["fill", "-r", &path_str(&root), &path_str(&root)]).unwrap_err();
    assert!(same.to_string().contains("same directory"), "{same}");
    let file = metric::path_of(&root, "a.b").unwrap();
    let no_r = bucky(&["fill", &path_str(&root), &path_str(&file)]).unwrap_err();
    assert!(
        no_r.to_string().contains("fill two trees with -r"),
        "{no_r}"
    );
}
