//! Which metrics a job covers: all, or those matching any glob (Graphite style, `*` within one
//! segment) and the regex, when given.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;

/// A selection could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSelection(String);

/// Which metrics a job covers: all, or those matching any glob (Graphite style, `*` within one
/// segment: `servers.*.cpu.*`) and the regex, when given.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    globs: Option<GlobSet>,
    regex: Option<Regex>,
    /// The globs, when every one is a plain metric name (no wildcard) and there is no regex.
    names: Option<Vec<String>>,
}

impl Selection {
    /// Builds a selection.
    ///
    /// # Errors
    /// A glob or regex that does not compile, named.
    pub fn new(globs: &[String], regex: Option<&str>) -> Result<Self, InvalidSelection> {
        let globs_given = globs;
        let globs = if globs.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            for g in globs {
                // Match on the path form so `*` stops at segment boundaries.
                let glob = GlobBuilder::new(&g.replace('.', "/"))
                    .literal_separator(true)
                    .build()
                    .map_err(|e| InvalidSelection(format!("invalid metric glob '{g}': {e}")))?;
                set.add(glob);
            }
            Some(set.build().map_err(|e| InvalidSelection(e.to_string()))?)
        };
        let regex = regex
            .map(|r| {
                Regex::new(r)
                    .map_err(|e| InvalidSelection(format!("invalid metric regex '{r}': {e}")))
            })
            .transpose()?;
        let literal = |g: &String| !g.contains(['*', '?', '[', ']', '{', '}', '\\']);
        let names = (regex.is_none() && !globs_given.is_empty() && globs_given.iter().all(literal))
            .then(|| globs_given.to_vec());
        Ok(Selection {
            globs,
            regex,
            names,
        })
    }

    /// The metric names selected, when the selection is a list of plain names: a job can then
    /// look at those metrics only instead of everything.
    pub fn names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// Whether the selection is everything.
    pub fn is_all(&self) -> bool {
        self.globs.is_none() && self.regex.is_none()
    }

    /// Whether `metric` is selected.
    pub fn matches(&self, metric: &str) -> bool {
        self.globs
            .as_ref()
            .is_none_or(|g| g.is_match(metric.replace('.', "/")))
            && self.regex.as_ref().is_none_or(|r| r.is_match(metric))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_known_as_such() {
        let s = Selection::new(&["a.b".into(), "c".into()], None).unwrap();
        assert_eq!(s.names(), Some(&["a.b".to_string(), "c".to_string()][..]));
        assert!(s.matches("a.b") && !s.matches("a.bc"));
        for wild in ["a.*", "a.b?", "a.{b,c}", "a.[bc]"] {
            assert!(
                Selection::new(&[wild.into()], None)
                    .unwrap()
                    .names()
                    .is_none()
            );
        }
        assert!(
            Selection::new(&["a".into()], Some("a"))
                .unwrap()
                .names()
                .is_none()
        );
        assert!(Selection::default().names().is_none());
    }

    #[test]
    fn globs_stay_within_segments_and_regexes_apply() {
        let s = Selection::new(&["servers.*.cpu".into()], None).unwrap();
        assert!(s.matches("servers.web01.cpu"));
        assert!(!s.matches("servers.web01.x.cpu"));
        let s = Selection::new(&[], Some(r"\.p99$")).unwrap();
        assert!(s.matches("a.b.p99") && !s.matches("a.p99.b"));
        assert!(
            Selection::new(&["a[".into()], None)
                .unwrap_err()
                .to_string()
                .contains("'a['")
        );
    }
}
