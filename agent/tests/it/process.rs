//! `bucky-agent` as cron runs it: a real process, a `file://` bucket, exit codes.

use std::process::Command;

use crate::support::{snapshot, write_tree};

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bucky-agent"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn standalone_backup_list_restore_and_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 3);
    let url = format!("file://{}", tmp.path().join("bucket").display());
    let root_s = root.to_str().unwrap();

    let out = agent(&[
        "backup",
        "--bucket",
        &url,
        "--whisper-root",
        root_s,
        "--node",
        "g1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["new"], 3);

    let out = agent(&["list", "--bucket", &url, "--metrics", "app.m00[01].*"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(listing.starts_with("app.m000.requests 20"), "{listing}");

    let target = tmp.path().join("r");
    let out = agent(&[
        "restore",
        "--bucket",
        &url,
        "--whisper-root",
        target.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 written"));
    assert_eq!(snapshot(&target), snapshot(&root));

    let out = agent(&[
        "backup",
        "--bucket",
        &url,
        "--whisper-root",
        root_s,
        "--node",
        "g2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to g1, not to g2"), "{stderr}");

    let out = agent(&[
        "restore",
        "--bucket",
        &url,
        "--whisper-root",
        root_s,
        "--date",
        "last tuesday",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'last tuesday'"));
}
