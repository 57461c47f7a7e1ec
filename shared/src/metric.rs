//! Metric names and where their files live: `a.b.c` is `<root>/a/b/c.wsp`. A name that could
//! reach outside the whisper root, or that carbon could never have written, is refused.

use std::path::{Component, Path, PathBuf};

/// A metric name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid metric name '{name}': {reason}")]
pub struct InvalidName {
    /// The name given (lossy if it was not UTF-8).
    pub name: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Checks that `name` is a dotted metric name that maps to a file inside the whisper root.
///
/// # Errors
/// [`InvalidName`]: empty, a `/` or NUL, an empty segment (`a..b`, a leading or trailing dot,
/// which also rules out `..`), or a segment that is `.` or `..`.
pub fn validate(name: &str) -> Result<(), InvalidName> {
    let bad = |reason| {
        Err(InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.contains('/') {
        return bad("contains '/'");
    }
    if name.contains('\0') {
        return bad("contains NUL");
    }
    if name.split('.').any(str::is_empty) {
        return bad("has an empty segment ('..', or a leading or trailing dot)");
    }
    Ok(())
}

/// The file of metric `name` under `root`.
///
/// # Errors
/// As [`validate`].
pub fn path_of(root: &Path, name: &str) -> Result<PathBuf, InvalidName> {
    validate(name)?;
    let mut path = root.to_path_buf();
    let mut segments = name.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segments.peek().is_some() {
            path.push(segment);
        } else {
            path.push(format!("{segment}.wsp"));
        }
    }
    Ok(path)
}

/// The metric name of a `.wsp` file at `relative` (to the whisper root), if carbon could have
/// written it there: a `.` inside a directory or file name (`d.e/f.wsp`, `a.b.wsp`) gives a name
/// whose file carbon writes elsewhere (`d/e/f.wsp`, `a/b.wsp`), so it is none.
pub fn name_of(relative: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in relative.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?),
            _ => return None,
        }
    }
    let last = parts.pop()?.strip_suffix(".wsp")?;
    parts.push(last);
    if parts.iter().any(|p| p.contains('.')) {
        return None;
    }
    let name = parts.join(".");
    validate(&name).ok()?;
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_paths_and_back() {
        let p = path_of(Path::new("/w"), "servers.web01.cpu").unwrap();
        assert_eq!(p, Path::new("/w/servers/web01/cpu.wsp"));
        assert_eq!(
            name_of(Path::new("servers/web01/cpu.wsp")).as_deref(),
            Some("servers.web01.cpu")
        );
        assert_eq!(name_of(Path::new("servers/web01/cpu.txt")), None);
        assert_eq!(name_of(Path::new("../x.wsp")), None);
        for elsewhere in ["a.b.wsp", "d.e/f.wsp", "x.wsp/y.wsp"] {
            assert_eq!(name_of(Path::new(elsewhere)), None, "{elsewhere}");
        }
    }

    #[test]
    fn escaping_names_are_refused_by_name() {
        for bad in [
            "",
            "a/b",
            "a..b",
            ".a",
            "a.",
            "..",
            "a\0b",
            "../../etc/passwd",
        ] {
            let err = validate(bad).unwrap_err();
            assert_eq!(err.name, bad);
        }
        assert!(
            path_of(Path::new("/w"), "a..b")
                .unwrap_err()
                .to_string()
                .contains("'a..b'")
        );
    }
}
