//! Helpers: locating the reference vectors and reading their cases.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `testdata/vectors` in the repository (or `$BUCKY_VECTORS`). Missing vectors fail the
/// test: they are the reference, not an optional extra.
pub fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("BUCKY_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors"));
    assert!(
        dir.is_dir(),
        "reference vectors not found at {}: testdata/vectors belongs to the repository; BUCKY_VECTORS overrides it",
        dir.display()
    );
    dir
}

/// The case directories of `vectors/whisper` whose name starts with `prefix`, sorted.
pub fn whisper_cases(prefix: &str) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(vectors_dir().join("whisper"))
        .expect("vectors/whisper is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no {prefix}* cases in the vectors");
    cases
}

pub fn case_json(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("case.json")).expect("case.json");
    serde_json::from_str(&text).expect("case.json parses")
}

/// Index of the first differing byte, for a readable failure.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}
