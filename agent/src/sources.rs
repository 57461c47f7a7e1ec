//! Which buckets a Restore request may read: this node's own and its peers', as the config's
//! bucket template names them (`{host}` standing for any host name). A request naming any other
//! URL is refused before anything is opened, so a token alone cannot make the agent read (or,
//! for `file://`, create directories) anywhere.

use regex::Regex;

/// The bucket URLs a restore may read from.
#[derive(Debug, Clone)]
pub struct Sources {
    patterns: Vec<Regex>,
    shown: Vec<String>,
}

impl Sources {
    /// URLs matching any of `templates`, where `{host}` matches one host name (no `/`).
    pub fn new(templates: &[String]) -> Self {
        let patterns = templates
            .iter()
            .map(|t| {
                let escaped = regex::escape(t).replace(r"\{host\}", "[^/]+");
                Regex::new(&format!("^{escaped}/?$")).expect("an escaped template is a regex")
            })
            .collect();
        Sources {
            patterns,
            shown: templates.to_vec(),
        }
    }

    /// The templates for a node whose own bucket is `bucket`: the bucket with the node's name
    /// standing for any host (the usual `{host}` deployment), and the bucket itself.
    pub fn for_bucket(bucket: &str, node: &str) -> Vec<String> {
        let mut templates = vec![bucket.to_string()];
        if !node.is_empty()
            && let Some(at) = bucket.rfind(node)
        {
            templates.push(format!(
                "{}{{host}}{}",
                &bucket[..at],
                &bucket[at + node.len()..]
            ));
        }
        templates
    }

    /// Whether a restore may read `url`.
    pub fn allows(&self, url: &str) -> bool {
        !url.split('/').any(|s| s == "." || s == "..")
            && self.patterns.iter().any(|p| p.is_match(url))
    }

    /// The refusal for `url`.
    pub fn refusal(&self, url: &str) -> String {
        format!(
            "restore source {url} is not one of this agent's bucket patterns ({}); add it to \
             restore_sources in agent.toml if it is a peer's bucket",
            self.shown.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_and_peer_buckets_are_allowed() {
        let sources = Sources::new(&Sources::for_bucket(
            "s3://backups/graphite-01",
            "graphite-01",
        ));
        assert!(sources.allows("s3://backups/graphite-01"));
        assert!(sources.allows("s3://backups/graphite-07"));
        assert!(!sources.allows("s3://backups/a/b"));
        assert!(!sources.allows("s3://other/graphite-07"));
        assert!(!sources.allows("file:///etc"));
        let files = Sources::new(&["file:///srv/bucky/{host}".into()]);
        assert!(files.allows("file:///srv/bucky/g2"));
        assert!(!files.allows("file:///srv/bucky/../../etc"));
        assert!(!files.allows("file:///srv/bucky/.."));
        assert!(!files.allows("file:///srv/bucky/g2/x"));
        assert!(
            files
                .refusal("file:///tmp")
                .contains("file:///srv/bucky/{host}")
        );
    }
}
