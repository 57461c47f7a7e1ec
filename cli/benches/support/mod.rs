//! What the benches share: the reference-tools virtualenv and a reproducible PRNG.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

/// A virtualenv under target/ with the Python reference tools (whisper, carbonate, carbon
/// 1.1.10) from PyPI, created on first use.
pub fn ensure_venv() -> anyhow::Result<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-venv");
    let marker = venv.join("bucky-bench-ready");
    if marker.exists() {
        return Ok(venv);
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?
        .success()
        && Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "whisper==1.1.10",
                "carbonate==1.1.10",
                "carbon==1.1.10",
            ])
            .status()?
            .success();
    if !ok {
        bail!(
            "could not create the reference virtualenv at {} (needs python3 and PyPI)",
            venv.display()
        );
    }
    std::fs::write(&marker, b"")?;
    Ok(venv)
}

/// Runs `script` with the reference virtualenv's Python and `args`; returns its stdout.
pub fn run_python(
    venv: &Path,
    dir: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
) -> anyhow::Result<String> {
    let path = dir.join("bench.py");
    std::fs::write(&path, script)?;
    let out = Command::new(venv.join("bin/python"))
        .arg(&path)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "python bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}
