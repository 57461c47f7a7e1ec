//! Harness for bucky's end-to-end tests: locating the built binaries and the reference vectors.

use std::path::PathBuf;

/// Path of a binary of this workspace built by cargo for the current profile.
pub fn binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary has a path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}
