//! bucky-agent's config file (TOML, default `/etc/bucky/agent.toml`), validated once at start-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bucky_shared::bucket::StoreOptions;
use bucky_shared::layout::Retention;
use bucky_shared::ring::RingSection;
use serde::Deserialize;

use crate::service::AgentConfig;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// This node's ring host name; default the host name.
    pub node: Option<String>,
    /// The whisper tree.
    pub whisper_root: PathBuf,
    /// Address to listen on; default `0.0.0.0:7431`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// This node's own bucket URL; `{host}` stands for the node name, so one file serves
    /// every node.
    pub bucket: String,
    /// File holding the bearer token.
    pub token_file: PathBuf,
    /// Seconds to wait for a whisper file's lock; default 10.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout_secs: u64,
    /// Backups read whisper files at idle I/O priority, after carbon's I/O; default true.
    /// Restores always run at the agent's own priority.
    #[serde(default = "default_true")]
    pub backup_idle_io: bool,
    /// A backup is refused when more than this share of the metrics the last one saw are gone
    /// from the tree (a disk that did not mount); `bucky backup --allow-shrink` overrides it
    /// once. Default 0.5.
    #[serde(default = "default_max_missing_share")]
    pub max_missing_share: f64,
    /// Mode of the files a restore creates, before the umask: default 0o666, as carbon (0644
    /// under the usual umask 022, so graphite-web, running as another user, can read them).
    #[serde(default = "default_file_mode")]
    pub file_mode: u32,
    /// Bucket URLs a restore may read from, `{host}` standing for any host name; default this
    /// node's bucket and its peers' as the `bucket` template names them (or, for a literal
    /// bucket, that URL with this node's name standing for any host).
    #[serde(default)]
    pub restore_sources: Vec<String>,
    /// Store options (credentials come from the environment).
    #[serde(default)]
    pub storage: StoreOptions,
    /// What backups keep: versions per metric and manifests, by count and age.
    #[serde(default)]
    pub retention: RetentionSection,
    /// The ring, so Info reports its fingerprint and the coordinator can check agreement.
    pub ring: Option<RingSection>,
    /// Serve over TLS; default plain HTTP/2.
    pub tls: Option<bucky_proto::tls::ServerTls>,
}

/// `[retention]`: by count (`last`, `manifests`) and by age class (`daily`, `weekly`,
/// `monthly`, each the newest of that many most recent days, weeks, months); a version or
/// manifest any rule keeps is kept. The defaults keep the newest 5 versions and 60 manifests.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Newest versions kept per metric.
    pub last: usize,
    /// Newest manifests kept (point-in-time restores).
    pub manifests: usize,
    /// Days, weeks and months kept, for versions and manifests alike.
    pub daily: usize,
    /// See `daily`.
    pub weekly: usize,
    /// See `daily`.
    pub monthly: usize,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            last: 5,
            manifests: 60,
            daily: 0,
            weekly: 0,
            monthly: 0,
        }
    }
}

impl RetentionSection {
    /// The policies for versions and for manifests.
    pub fn policies(&self) -> (Retention, Retention) {
        let ages = Retention {
            last: self.last,
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
        };
        (
            ages,
            Retention {
                last: self.manifests,
                ..ages
            },
        )
    }
}

fn default_listen() -> String {
    "0.0.0.0:7431".into()
}

fn default_true() -> bool {
    true
}

fn default_max_missing_share() -> f64 {
    0.5
}

fn default_file_mode() -> u32 {
    crate::install::DEFAULT_FILE_MODE
}

fn default_lock_timeout() -> u64 {
    10
}

/// What `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service's configuration.
    pub service: AgentConfig,
    /// Address to listen on.
    pub listen: String,
    /// Token file.
    pub token_file: PathBuf,
    /// TLS, when configured.
    pub tls: Option<bucky_proto::tls::ServerTls>,
}

/// What [`check_on_host`] found: the token, and what to warn about.
#[derive(Debug)]
pub struct HostCheck {
    /// The bearer token.
    pub token: String,
    /// Risks worth a warning at start-up, each a sentence.
    pub warnings: Vec<String>,
}

/// What `serve` checks on the machine before binding: the whisper root is a directory (a disk
/// that did not mount is not an empty node), the token file is the server's alone, and a
/// plaintext listener on a non-loopback address is worth a warning.
///
/// # Errors
/// A missing whisper root, an unreadable token file or one others can write.
pub fn check_on_host(settings: &Settings) -> anyhow::Result<HostCheck> {
    let root = &settings.service.whisper_root;
    if !root.is_dir() {
        anyhow::bail!(
            "whisper_root {} is not a directory: refusing to serve a node without its tree (a disk that did not mount?)",
            root.display()
        );
    }
    let (token, warning) =
        bucky_proto::auth::read_server_token(&settings.token_file).map_err(anyhow::Error::msg)?;
    let mut warnings: Vec<String> = warning.into_iter().collect();
    if settings.tls.is_none() && !bucky_proto::tls::is_loopback(&settings.listen) {
        warnings.push(format!(
            "serving plain-text gRPC on {}: the token crosses the network in clear; configure [tls] or listen on loopback",
            settings.listen
        ));
    }
    Ok(HostCheck { token, warnings })
}

/// Reads and validates `path`; `hostname` gives the node name when the file has none.
///
/// # Errors
/// An unreadable file, a parse error, an invalid ring; each names the file.
pub fn load(
    path: &Path,
    hostname: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<Settings> {
    load_node(path, None, hostname)
}

/// [`load`] for node `node`, whatever the file's `node` says (`--node`, `BUCKY_NODE`).
///
/// # Errors
/// As [`load`].
pub fn load_as(path: &Path, node: &str) -> anyhow::Result<Settings> {
    load_node(path, Some(node.to_string()), || {
        unreachable!("the node is given")
    })
}

fn load_node(
    path: &Path,
    override_node: Option<String>,
    hostname: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<Settings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: AgentFile =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let ring_fingerprint = match &file.ring {
        Some(section) => section
            .build(base)
            .with_context(|| format!("{}: [ring]", path.display()))?
            .fingerprint()
            .to_string(),
        None => String::new(),
    };
    let node = match (override_node, file.node) {
        (Some(node), _) | (None, Some(node)) => node,
        (None, None) => hostname()?,
    };
    if node.trim().is_empty() {
        anyhow::bail!(
            "{}: node is empty; set it to this host's name in the ring, or leave it out to use the host name",
            path.display()
        );
    }
    let bucket = file.bucket.replace("{host}", &node);
    let mut restore_sources = file.restore_sources.clone();
    if restore_sources.is_empty() {
        restore_sources = crate::sources::Sources::for_bucket(&bucket, &node);
        if file.bucket.contains("{host}") && !restore_sources.contains(&file.bucket) {
            restore_sources.push(file.bucket.clone());
        }
    }
    Ok(Settings {
        service: AgentConfig {
            node,
            whisper_root: file.whisper_root,
            bucket,
            store: file.storage,
            ring_fingerprint,
            lock_timeout: Duration::from_secs(file.lock_timeout_secs),
            backup_idle_io: file.backup_idle_io,
            max_missing_share: file.max_missing_share,
            retention: file.retention.policies(),
            file_mode: file.file_mode,
            restore_sources,
        },
        listen: file.listen,
        token_file: file.token_file,
        tls: file.tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_with_defaults_and_names_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "whisper_root = \"/w\"\nbucket = \"file:///b\"\ntoken_file = \"/t\"\n[ring]\ndestinations = [\"a:2004\", \"b:2004\"]\n").unwrap();
        let s = load(&path, || Ok("graphite-09".into())).unwrap();
        assert_eq!(
            (s.service.node.as_str(), s.listen.as_str()),
            ("graphite-09", "0.0.0.0:7431")
        );
        assert!(s.service.ring_fingerprint.starts_with("sha256:"));
        std::fs::write(&path, "node = \"graphite-01\"\nwhisper_root = \"/w\"\nbucket = \"file:///srv/bucky/{host}\"\ntoken_file = \"/t\"\n").unwrap();
        let s = load(&path, || unreachable!("the file names the node")).unwrap();
        assert_eq!(s.service.bucket, "file:///srv/bucky/graphite-01");
        let s = load_as(&path, "graphite-02").unwrap();
        assert_eq!(
            (s.service.node.as_str(), s.service.bucket.as_str()),
            ("graphite-02", "file:///srv/bucky/graphite-02")
        );
        std::fs::write(
            &path,
            "whisper_root = \"/w\"\nbucket = \"x\"\ntoken_file = \"/t\"\nport = 3\n",
        )
        .unwrap();
        let err = format!("{:#}", load(&path, || Ok("n".into())).unwrap_err());
        assert!(
            err.contains("agent.toml") && err.contains("unknown field `port`"),
            "{err}"
        );
    }

    #[test]
    fn configs_that_point_at_the_wrong_place_are_refused_at_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, root, token) = (
            dir.path().join("agent.toml"),
            dir.path().join("whisper"),
            dir.path().join("token"),
        );
        let write = |node: &str, listen: &str| {
            std::fs::write(
                &path,
                format!(
                    "{node}whisper_root = \"{}\"\nbucket = \"file:///srv/bucky/{{host}}\"\ntoken_file = \"{}\"\nlisten = \"{listen}\"\n",
                    root.display(),
                    token.display()
                ),
            )
            .unwrap();
        };
        write("node = \"\"\n", "127.0.0.1:7431");
        let err = format!("{:#}", load(&path, || Ok("h".into())).unwrap_err());
        assert!(err.contains("node is empty"), "{err}");

        write("node = \"g1\"\n", "127.0.0.1:7431");
        let settings = load(&path, || unreachable!()).unwrap();
        assert_eq!(
            settings.service.restore_sources,
            ["file:///srv/bucky/g1", "file:///srv/bucky/{host}"]
        );
        std::fs::write(&token, "t0ken\n").unwrap();
        let err = format!("{:#}", check_on_host(&settings).unwrap_err());
        assert!(
            err.contains("is not a directory") && err.contains("whisper"),
            "{err}"
        );

        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = format!("{:#}", check_on_host(&settings).unwrap_err());
        assert!(
            err.contains("writable by others") && err.contains("chmod 600"),
            "{err}"
        );

        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let checked = check_on_host(&settings).unwrap();
        assert_eq!(checked.token, "t0ken");
        assert_eq!(checked.warnings.len(), 1);
        assert!(checked.warnings[0].contains("readable by every user"));

        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_on_host(&settings).unwrap().warnings.is_empty());
        write("node = \"g1\"\n", "0.0.0.0:7431");
        let settings = load(&path, || unreachable!()).unwrap();
        let warnings = check_on_host(&settings).unwrap().warnings;
        assert!(
            warnings[0].contains("plain-text gRPC on 0.0.0.0:7431"),
            "{warnings:?}"
        );
    }
}
