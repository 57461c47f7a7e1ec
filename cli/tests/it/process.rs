//! The `bucky` binary as a process: exit codes, errors on stderr, `| head` is not an error.

use std::io::Read;
use std::process::{Command, Stdio};

fn bucky() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bucky"))
}

#[test]
fn errors_go_to_stderr_with_a_failing_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.wsp");
    let out = bucky()
        .args(["whisper", "info"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("bucky: ") && stderr.contains("missing.wsp"),
        "{stderr}"
    );
}

#[test]
fn a_closed_stdout_pipe_is_success() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.wsp");
    let status = bucky()
        .args(["whisper", "create"])
        .arg(&path)
        .arg("1s:1d")
        .status()
        .unwrap();
    assert!(status.success());
    // 86,400 lines is far more than a pipe buffer holds, so bucky writes into a closed pipe.
    let mut child = bucky()
        .args([
            "whisper",
            "fetch",
            "--now",
            "1700000000",
            "--from",
            "1699913700",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
}

/// `bucky-fill` is `bucky fill` in a binary of its own: the same bytes written, the same report,
/// the same exit code and a named error for a bad file.
#[test]
fn bucky_fill_is_bucky_fill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = crate::support::cases("fill_02").remove(0);
    let now = crate::support::case_json(&dir)["now"].to_string();
    let run = |program: &str, args: &[&str], name: &str| {
        let src = tmp.path().join(format!("{name}-src.wsp"));
        let dst = tmp.path().join(format!("{name}-dst.wsp"));
        std::fs::copy(dir.join("src.wsp"), &src).unwrap();
        std::fs::copy(dir.join("dst_before.wsp"), &dst).unwrap();
        let out = Command::new(program)
            .args(args)
            .args(["--now", &now, "--json"])
            .arg(&src)
            .arg(&dst)
            .output()
            .unwrap();
        (out, std::fs::read(&dst).unwrap())
    };
    let (full, full_bytes) = run(env!("CARGO_BIN_EXE_bucky"), &["fill"], "full");
    let (lean, lean_bytes) = run(env!("CARGO_BIN_EXE_bucky-fill"), &[], "lean");
    assert!(full.status.success() && lean.status.success());
    assert!(full_bytes == lean_bytes);
    assert!(full_bytes != std::fs::read(dir.join("dst_before.wsp")).unwrap());
    assert_eq!(full.stdout, lean.stdout);

    let garbage = tmp.path().join("garbage.wsp");
    std::fs::write(&garbage, b"not whisper").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bucky-fill"))
        .arg(&garbage)
        .arg(tmp.path().join("lean-dst.wsp"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("bucky-fill: ") && stderr.contains("garbage.wsp"),
        "{stderr}"
    );
}
