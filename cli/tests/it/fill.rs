//! `bucky fill`.

use crate::support::{bucky, case_json, cases, path_str};

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
