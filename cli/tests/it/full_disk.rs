//! `bucky fill` on a real filesystem that is full: a small tmpfs, mounted in a mount namespace of
//! the test's own (so it goes away with the process), holding a sparse dst as restores write them.

use std::path::Path;
use std::process::Command;

use bucky_shared::fill::{self, FillMode, FillOptions};
use bucky_shared::whisper::{
    CreateOptions, Image, POINT_SIZE, Whisper, create_image, parse_retentions,
};

const NOW: i64 = 1_700_000_040;

fn file_with(points: &[(i64, f64)]) -> Whisper<Image> {
    let schema = parse_retentions(&["60s:2d", "5m:30d"]).unwrap();
    let mut w = Whisper::open(
        create_image(&schema, &CreateOptions::default()).unwrap(),
        "f.wsp",
    )
    .unwrap();
    w.update_many(points, NOW).unwrap();
    w
}

/// Runs `script` as root in a new mount namespace; `None` when this machine cannot (not root,
/// no unshare, no tmpfs), which the test reports and skips.
fn in_mount_namespace(script: &str, env: &[(&str, &Path)]) -> Option<std::process::Output> {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().ok()?;
    (out.status.code() != Some(99)).then_some(out)
}

#[test]
fn a_full_filesystem_fails_the_fill_with_its_reason_and_changes_no_point() {
    let tmp = tempfile::tempdir().unwrap();
    let minute = NOW - NOW % 60;
    let all: Vec<(i64, f64)> = (0..2880)
        .map(|i| (minute - i * 60, 0.5 + i as f64))
        .collect();
    let src = file_with(&all);
    let dst = file_with(&all[..120]);
    std::fs::write(tmp.path().join("src.wsp"), src.storage().bytes()).unwrap();
    std::fs::write(tmp.path().join("dst.wsp"), dst.storage().bytes()).unwrap();
    let mut expected =
        Whisper::open(Image::new(dst.storage().bytes().to_vec()), "dst.wsp").unwrap();
    fill::fill_images(&src, &mut expected, &FillOptions::new(FillMode::Safe, NOW)).unwrap();

    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let script = format!(
        r#"
        mount -t tmpfs -o size=512k bucky-test "$MNT" 2>/dev/null || exit 99
        cp "$OUT/src.wsp" "$MNT/src.wsp"
        cp --sparse=always "$OUT/dst.wsp" "$MNT/dst.wsp"
        cat /dev/zero > "$MNT/filler" 2>/dev/null
        "$BUCKY" fill --now {NOW} "$MNT/src.wsp" "$MNT/dst.wsp" 2> "$OUT/full.err"
        echo $? > "$OUT/full.rc"
        cp "$MNT/dst.wsp" "$OUT/dst_on_full_disk.wsp"
        rm "$MNT/filler"
        "$BUCKY" fill --now {NOW} "$MNT/src.wsp" "$MNT/dst.wsp" 2> "$OUT/freed.err"
        echo $? > "$OUT/freed.rc"
        cp "$MNT/dst.wsp" "$OUT/dst_after_freeing.wsp"
        "#
    );
    let bucky = Path::new(env!("CARGO_BIN_EXE_bucky"));
    let Some(out) = in_mount_namespace(
        &script,
        &[("MNT", &mnt), ("OUT", tmp.path()), ("BUCKY", bucky)],
    ) else {
        eprintln!(
            "skipped: cannot mount a tmpfs in a mount namespace here (needs root and unshare)"
        );
        return;
    };
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap_or_default();
    assert!(out.status.success(), "{out:?}");

    assert_eq!(
        read("full.rc").trim(),
        "1",
        "the fill on a full disk must fail"
    );
    let err = read("full.err");
    assert!(
        err.contains("No space left on device") && err.contains("dst.wsp"),
        "the error names the file and the reason: {err}"
    );
    let (before, after) = (dst.storage().bytes(), expected.storage().bytes());
    let on_full = std::fs::read(tmp.path().join("dst_on_full_disk.wsp")).unwrap();
    for a in &dst.header().archives {
        for i in 0..a.points as usize {
            let at = a.offset as usize + i * POINT_SIZE;
            let point = &on_full[at..at + POINT_SIZE];
            assert!(
                point == &before[at..at + POINT_SIZE] || point == &after[at..at + POINT_SIZE],
                "the point at byte {at} is half written"
            );
        }
    }
    assert_eq!(
        on_full, before,
        "space is reserved first: the failed fill wrote nothing"
    );

    assert_eq!(read("freed.rc").trim(), "0", "{}", read("freed.err"));
    let freed = std::fs::read(tmp.path().join("dst_after_freeing.wsp")).unwrap();
    assert_eq!(
        freed, after,
        "once space is free the rerun completes the fill"
    );
}
