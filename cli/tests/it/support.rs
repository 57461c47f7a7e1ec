//! Running the CLI in-process and finding the vectors.

use std::path::{Path, PathBuf};

use clap::Parser;

/// Runs `bucky ARGS...` and returns its stdout, or the error it reported.
pub fn bucky<S: AsRef<str>>(args: &[S]) -> anyhow::Result<String> {
    bucky_with_code(args).map(|(_, out)| out)
}

/// [`bucky`], with the exit code the command returned.
pub fn bucky_with_code<S: AsRef<str>>(args: &[S]) -> anyhow::Result<(u8, String)> {
    let argv = std::iter::once("bucky").chain(args.iter().map(AsRef::as_ref));
    let cli = bucky_cli::Cli::try_parse_from(argv)?;
    let mut out = Vec::new();
    let code = bucky_cli::run(cli, &mut out)?;
    Ok((code, String::from_utf8(out).expect("utf-8 output")))
}

/// The reference vectors: `testdata/vectors` in the repository, or `$BUCKY_VECTORS`.
pub fn vectors_dir() -> PathBuf {
    let root = std::env::var_os("BUCKY_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors"));
    assert!(
        root.is_dir(),
        "reference vectors not found at {}: testdata/vectors belongs to the repository; BUCKY_VECTORS overrides it",
        root.display()
    );
    root
}

/// `vectors/whisper/<prefix>*` directories, sorted.
pub fn cases(prefix: &str) -> Vec<PathBuf> {
    let root = vectors_dir();
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join("whisper"))
        .unwrap_or_else(|e| panic!("reference vectors missing at {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    out.sort();
    assert!(!out.is_empty());
    out
}

pub fn case_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap()
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}
