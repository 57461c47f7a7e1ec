//! The coordinator's config file (TOML), validated once at start-up into a [`Cluster`]: the ring,
//! one agent and one bucket per host. Two hosts sharing a bucket, a ring host without an agent, or
//! an agent for a host the ring does not have, are config errors naming what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bucky_shared::bucket::StoreOptions;
use bucky_shared::ring::{Ring, RingSection};
use serde::Deserialize;

/// A config that cannot be used; every message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}", path = path.display())]
pub struct Error {
    /// The config file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// `[buckets]`: a template with `{host}`, and/or one URL per host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketsSection {
    /// e.g. `s3://graphite-backup-{host}` or `file:///backups/{host}`.
    pub template: Option<String>,
    /// Host → bucket URL, overriding the template.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address to listen on; default `0.0.0.0:7430`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// File holding the bearer token (the agents' token).
    pub token_file: PathBuf,
    /// Backups and restores run at once across the cluster; default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Each node's backup starts after a random delay up to this many seconds, so a fleet does
    /// not hit its store at once; default 0.
    #[serde(default)]
    pub splay_secs: u64,
    /// Serve over TLS; default plain HTTP/2.
    pub tls: Option<bucky_proto::tls::ServerTls>,
    /// PEM CA the agents' certificates chain to, for agents at `https://` addresses; default
    /// the system's CA roots.
    pub agent_ca_file: Option<PathBuf>,
    /// The ring.
    pub ring: RingSection,
    /// Each host's bucket.
    pub buckets: BucketsSection,
    /// Store options.
    #[serde(default)]
    pub storage: StoreOptions,
    /// Ring host name → agent address (`http://graphite-01:7431`); one agent per host, even when
    /// the host runs several carbon instances.
    pub agents: BTreeMap<String, String>,
    /// Agents of nodes outside the ring, host name → address: a node being drained or an old
    /// cluster being moved from. `rebalance` reads from them (every metric they hold belongs
    /// elsewhere) and, with `--delete`, drains them; nothing is ever written to them or backed
    /// up from them.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Prometheus and carbon metrics of the fleet; none by default.
    #[serde(default)]
    pub metrics: Option<crate::metrics::MetricsConfig>,
    /// The pace of rebalance and heal into each node.
    #[serde(default)]
    pub moves: MovesSection,
    /// `[schedule]`: the coordinator backs the nodes up itself (absent: an external timer runs
    /// `bucky backup`).
    #[serde(default)]
    pub schedule: Option<crate::schedule::ScheduleSection>,
    /// `[verify]`: how fresh verification should be.
    #[serde(default)]
    pub verify: VerifySection,
}

/// `[verify]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// Days within which every stored version should have been verified; `check` warns past
    /// it, and the scheduled slice verifies `1/window_days` of each bucket. Default 30.
    #[serde(default = "default_window_days")]
    pub window_days: u32,
}

impl Default for VerifySection {
    fn default() -> Self {
        VerifySection {
            window_days: default_window_days(),
        }
    }
}

fn default_window_days() -> u32 {
    30
}

/// `[moves]`: how fast a rebalance or heal writes into each node. The defaults leave a busy
/// carbon node most of its disk: 100 metrics (about 136 MB of 1.36 MB files at most 50 MB) a
/// second.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovesSection {
    /// Metrics per second into each node; 0 for no limit. Default 100.
    #[serde(default = "default_metrics_per_sec")]
    pub metrics_per_sec: f64,
    /// Megabytes per second into each node; 0 for no limit. Default 50.
    #[serde(default = "default_mb_per_sec")]
    pub mb_per_sec: f64,
}

impl Default for MovesSection {
    fn default() -> Self {
        MovesSection {
            metrics_per_sec: default_metrics_per_sec(),
            mb_per_sec: default_mb_per_sec(),
        }
    }
}

fn default_metrics_per_sec() -> f64 {
    100.0
}

fn default_mb_per_sec() -> f64 {
    50.0
}

fn default_listen() -> String {
    "0.0.0.0:7430".into()
}

fn default_concurrency() -> usize {
    4
}

/// One storage host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Ring host name.
    pub name: String,
    /// Agent address.
    pub agent: String,
    /// Its own bucket URL.
    pub bucket: String,
}

/// A validated cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The ring as it is now.
    pub ring: Ring,
    /// Hosts in ring order.
    pub hosts: Vec<Host>,
    /// Nodes outside the ring (`[sources]`), by name; their `bucket` is empty.
    pub sources: Vec<Host>,
    /// The backup schedule, when `[schedule]` is configured.
    pub schedule: Option<crate::schedule::Schedule>,
    /// The file as parsed (listen address, token file, storage options...).
    pub config: CoordinatorConfig,
}

/// Reads and validates `path`.
///
/// # Errors
/// [`Error`] naming the file and the problem.
pub fn load(path: &Path) -> Result<Cluster, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse(&text, path)
}

/// Parses and validates config `text`, read from `path` (ring files are relative to it).
///
/// # Errors
/// [`Error`] naming the file and the problem.
pub fn parse(text: &str, path: &Path) -> Result<Cluster, Error> {
    let err = |reason: String| Error {
        path: path.to_path_buf(),
        reason,
    };
    let config: CoordinatorConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let ring = config
        .ring
        .build(base)
        .map_err(|e| err(format!("[ring]: {e}")))?;

    let mut hosts: Vec<String> = Vec::new();
    for d in ring.destinations() {
        if !hosts.contains(&d.host) {
            hosts.push(d.host.clone());
        }
    }
    let missing: Vec<&str> = hosts
        .iter()
        .filter(|h| !config.agents.contains_key(*h))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "[agents]: no agent for ring host(s) {}",
            missing.join(", ")
        )));
    }
    let unknown: Vec<&str> = config
        .agents
        .keys()
        .filter(|a| !hosts.contains(a))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(err(format!(
            "[agents]: {} not in the ring",
            unknown.join(", ")
        )));
    }

    let mut resolved: Vec<Host> = Vec::with_capacity(hosts.len());
    for name in hosts {
        let bucket = match (config.buckets.hosts.get(&name), &config.buckets.template) {
            (Some(url), _) => url.clone(),
            (None, Some(template)) => template.replace("{host}", &name),
            (None, None) => {
                return Err(err(format!(
                    "[buckets]: no bucket for {name} (give a template or a URL)"
                )));
            }
        };
        if let Some(other) = resolved.iter().find(|h| h.bucket == bucket) {
            return Err(err(format!(
                "[buckets]: {} and {name} both resolve to {bucket}: one bucket per host",
                other.name
            )));
        }
        let agent = config.agents[&name].clone();
        resolved.push(Host {
            name,
            agent,
            bucket,
        });
    }
    let mut sources = Vec::with_capacity(config.sources.len());
    for (name, agent) in &config.sources {
        if resolved.iter().any(|h| h.name == *name) {
            return Err(err(format!(
                "[sources]: {name} is in the ring; a source is a node outside it"
            )));
        }
        if let Some(h) = resolved.iter().find(|h| h.agent == *agent) {
            return Err(err(format!(
                "[sources]: {name} has the address of ring host {}: {agent}",
                h.name
            )));
        }
        sources.push(Host {
            name: name.clone(),
            agent: agent.clone(),
            bucket: String::new(),
        });
    }
    let schedule = match &config.schedule {
        Some(section) => Some(section.validate().map_err(err)?),
        None => None,
    };
    if config.verify.window_days == 0 {
        return Err(err("[verify] window_days: must be at least 1".into()));
    }
    Ok(Cluster {
        ring,
        hosts: resolved,
        sources,
        schedule,
        config,
    })
}

impl Cluster {
    /// Every node a rebalance reads from: the ring's hosts, then the sources outside it.
    pub fn members(&self) -> Vec<Host> {
        self.hosts.iter().chain(&self.sources).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
token_file = "/etc/bucky/token"
[ring]
hash = "carbon_ch"
replication = 2
destinations = ["graphite-01:2004:a", "graphite-01:2104:b", "graphite-02:2004:a"]
[buckets]
template = "s3://graphite-backup-{host}"
hosts = { "graphite-02" = "s3://special-02" }
[agents]
graphite-01 = "http://graphite-01:7431"
graphite-02 = "http://graphite-02:7431"
"#;

    #[test]
    fn one_agent_and_one_bucket_per_host() {
        let cluster = parse(VALID, Path::new("/etc/bucky/coordinator.toml")).unwrap();
        assert_eq!(
            cluster.hosts.len(),
            2,
            "two instances on graphite-01 are one host"
        );
        assert_eq!(cluster.hosts[0].bucket, "s3://graphite-backup-graphite-01");
        assert_eq!(cluster.hosts[1].bucket, "s3://special-02");
        assert_eq!(cluster.config.listen, "0.0.0.0:7430");
        assert_eq!(cluster.ring.config().replication, 2);
    }

    #[test]
    fn sources_are_nodes_outside_the_ring() {
        let path = Path::new("/etc/bucky/coordinator.toml");
        let with = |sources: &str| parse(&format!("{VALID}[sources]\n{sources}\n"), path);
        let cluster = with("graphite-09 = \"http://graphite-09:7431\"").unwrap();
        assert_eq!(cluster.sources.len(), 1);
        let members: Vec<String> = cluster.members().into_iter().map(|h| h.name).collect();
        assert_eq!(members, ["graphite-01", "graphite-02", "graphite-09"]);
        let err = with("graphite-02 = \"http://x:7431\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("graphite-02 is in the ring"), "{err}");
        let err = with("graphite-09 = \"http://graphite-01:7431\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("address of ring host graphite-01"), "{err}");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let path = Path::new("/etc/bucky/coordinator.toml");
        let cases = [
            (
                VALID.replace("graphite-02 = \"http", "graphite-03 = \"http"),
                "no agent for ring host(s) graphite-02",
            ),
            (
                VALID.replace(
                    "hosts = { \"graphite-02\" = \"s3://special-02\" }",
                    "hosts = { \"graphite-02\" = \"s3://graphite-backup-graphite-01\" }",
                ),
                "graphite-01 and graphite-02 both resolve",
            ),
            (
                VALID
                    .replace(
                        "template = \"s3://graphite-backup-{host}\"",
                        "template = \"s3://one-bucket\"\n",
                    )
                    .replace("hosts = { \"graphite-02\" = \"s3://special-02\" }", ""),
                "one bucket per host",
            ),
            (
                VALID.replace("replication = 2", "replication = 2\ncolour = \"blue\""),
                "unknown field `colour`",
            ),
            (
                VALID.replace("graphite-02:2004:a\"]", "graphite-02:20x4:a\"]"),
                "'graphite-02:20x4:a'",
            ),
            (
                VALID.replace(
                    "destinations =",
                    "relay_config = \"relay.conf\"\ndestinations =",
                ),
                "exactly one of",
            ),
        ];
        for (text, needle) in cases {
            let e = parse(&text, path).unwrap_err().to_string();
            assert!(
                e.starts_with("/etc/bucky/coordinator.toml: ") && e.contains(needle),
                "{needle}: {e}"
            );
        }
    }

    #[test]
    fn the_ring_can_come_from_the_relay_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("relay.conf"),
            "cluster g\n fnv1a_ch replication 1\n  h1:2003=a\n  h2:2003=b\n;\n",
        )
        .unwrap();
        let text = "token_file = \"t\"\n[ring]\nrelay_config = \"relay.conf\"\n[buckets]\ntemplate = \"file:///b/{host}\"\n[agents]\nh1 = \"http://h1:7431\"\nh2 = \"http://h2:7431\"\n";
        let cluster = parse(text, &dir.path().join("coordinator.toml")).unwrap();
        assert_eq!(
            cluster.ring.config().flavour,
            bucky_shared::ring::Flavour::Relay
        );
        assert_eq!(
            cluster
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>(),
            ["h1", "h2"]
        );
    }
}
