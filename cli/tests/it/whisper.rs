//! `bucky whisper create|update|fetch|info`.

use crate::support::{bucky, case_json, cases, path_str};

/// `bucky whisper create` with a case's schema makes the vector's empty file, and
/// `bucky whisper update` with its points (as `TS:VALUE` arguments) makes the expected file.
#[test]
fn create_then_update_reproduce_the_update_many_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for dir in cases("um_") {
        let case = case_json(&dir);
        if !case["before_is_empty"].as_bool().unwrap() {
            continue;
        }
        let path = path_str(&tmp.path().join(format!("{checked}.wsp")));
        let mut args = vec!["whisper".to_string(), "create".into(), path.clone()];
        args.extend(
            case["schema"]
                .as_str()
                .unwrap()
                .split(',')
                .map(String::from),
        );
        args.extend(["--xff".into(), case["xff"].to_string()]);
        args.extend([
            "--aggregation".into(),
            case["aggregation"].as_str().unwrap().into(),
        ]);
        bucky(&args).unwrap();
        assert!(
            std::fs::read(&path).unwrap() == std::fs::read(dir.join("before.wsp")).unwrap(),
            "{}",
            dir.display()
        );

        // The points file holds Python reprs; passing that text keeps the exact doubles.
        let text = std::fs::read_to_string(dir.join("points.json")).unwrap();
        let points: Vec<(i64, serde_json::Number)> = serde_json::from_str(&text).unwrap();
        let mut args = vec!["whisper".to_string(), "update".into(), path.clone()];
        args.extend(["--now".into(), case["now"].to_string()]);
        args.extend(points.iter().map(|(t, v)| format!("{t}:{v}")));
        bucky(&args).unwrap();
        assert!(
            std::fs::read(&path).unwrap() == std::fs::read(dir.join("expected.wsp")).unwrap(),
            "{}",
            dir.display()
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} cases start empty");
}

#[test]
fn fetch_and_info_print_what_whisper_tools_print() {
    let tmp = tempfile::tempdir().unwrap();
    let path = path_str(&tmp.path().join("m.wsp"));
    bucky(&[
        "whisper", "create", &path, "60s:1h", "5m:1d", "--xff", "0.3",
    ])
    .unwrap();
    bucky(&[
        "whisper",
        "update",
        &path,
        "--now",
        "1700000030",
        "1699999800:1.5",
        "1699999860:-2",
        "N:0",
    ])
    .unwrap();

    let out = bucky(&[
        "whisper",
        "fetch",
        &path,
        "--now",
        "1700000030",
        "--from",
        "1699999700",
    ])
    .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1699999740\tNone");
    assert_eq!(lines[1], "1699999800\t1.500000");
    assert_eq!(lines[2], "1699999860\t-2.000000");
    assert_eq!(lines.last().unwrap(), &"1699999980\t0.000000"); // N = 1700000030, aligned to 60s

    let out = bucky(&[
        "whisper",
        "fetch",
        &path,
        "--now",
        "1700000030",
        "--from",
        "1699999700",
        "--drop",
        "empty",
        "--json",
    ])
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["points"],
        serde_json::json!([[1699999800, 1.5], [1699999860, -2.0]]),
        "with --drop each point keeps its time"
    );
    assert_eq!(json["step"], 60);

    let out = bucky(&[
        "whisper",
        "fetch",
        &path,
        "--now",
        "1700000030",
        "--from",
        "1699990000",
        "--precision",
        "5m",
    ])
    .unwrap();
    assert!(
        out.lines()
            .all(|l| l.split('\t').next().unwrap().parse::<i64>().unwrap() % 300 == 0)
    );

    let info = bucky(&["whisper", "info", &path]).unwrap();
    assert!(info.starts_with("aggregationMethod: average\nmaxRetention: 86400\nxFilesFactor: 0.30000001192092896\nfileSize: 4216\n\nArchive 0\noffset: 40\n"), "{info}");
    let json: serde_json::Value =
        serde_json::from_str(&bucky(&["whisper", "info", &path, "--json"]).unwrap()).unwrap();
    assert_eq!(json["archives"][1]["secondsPerPoint"], 300);
}

#[test]
fn create_and_update_report_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let path = path_str(&tmp.path().join("m.wsp"));
    let out = bucky(&["whisper", "create", &path, "60s:1h", "--json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["path"], path.as_str());
    assert_eq!(
        json["bytes"],
        16 + 12 + 60 * 12,
        "header, one archive, 60 points"
    );
    let out = bucky(&[
        "whisper",
        "update",
        &path,
        "--now",
        "1700000030",
        "1699999800:1",
        "1699999860:2",
        "--json",
    ])
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["points"], 2);
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = path_str(&tmp.path().join("m.wsp"));
    let err = bucky(&["whisper", "create", &path, "60s:1h", "90s:1d"]).unwrap_err();
    assert!(format!("{err:#}").contains("evenly divide"), "{err:#}");
    let err = bucky(&[
        "whisper",
        "create",
        &path,
        "60s:1h",
        "--aggregation",
        "median",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("median"), "{err:#}");
    bucky(&["whisper", "create", &path, "60s:1h"]).unwrap();
    let err = bucky(&["whisper", "create", &path, "60s:1h"]).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    bucky(&["whisper", "create", &path, "10s:1h", "--overwrite"]).unwrap();
    let info = bucky(&["whisper", "info", &path]).unwrap();
    assert!(info.contains("secondsPerPoint: 10"), "{info}");
    let err = bucky(&["whisper", "update", &path, "12:x"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("invalid point '12:x'"),
        "{err:#}"
    );
}
