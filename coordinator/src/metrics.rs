//! The fleet as numbers, for the operator's monitoring: Prometheus text on an HTTP port
//! (`GET /metrics`), and the same values as carbon plaintext lines sent to a Graphite of the
//! operator's choosing (these users graph everything in Graphite). Rendered from
//! [`cluster::status`](crate::cluster::status), refreshed every `interval_secs`.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::RwLock;

use crate::agents::AgentApi;
use crate::cluster::{self, NodeStatus};
use crate::config::Cluster;

/// `[metrics]` of the coordinator's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus text at `http://<listen>/metrics`, e.g. `127.0.0.1:9430`.
    pub listen: Option<String>,
    /// Send carbon plaintext lines to this `host:port` (a carbon-relay's line receiver, 2003).
    pub carbon: Option<String>,
    /// Prefix of the carbon metric names; default `bucky`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Seconds between two refreshes (and carbon sends); default 60.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
}

fn default_prefix() -> String {
    "bucky".into()
}

fn default_interval() -> u64 {
    60
}

/// One value of one node.
struct Sample {
    name: &'static str,
    help: &'static str,
    host: String,
    /// An extra label (`kind` of a job), if any.
    kind: Option<String>,
    value: f64,
}

fn samples(statuses: &[NodeStatus]) -> Vec<Sample> {
    let mut out = Vec::new();
    for n in statuses {
        let mut add = |name, help, value: f64| {
            out.push(Sample {
                name,
                help,
                host: n.host.clone(),
                kind: None,
                value,
            })
        };
        let info = n.info.as_ref().ok();
        add(
            "up",
            "1 when the node's agent answered",
            f64::from(u8::from(info.is_some())),
        );
        add(
            "ring_agrees",
            "1 when the agent has the coordinator's ring",
            f64::from(u8::from(n.agrees)),
        );
        add(
            "identity_ok",
            "1 when the agent is the node, with the bucket, the coordinator expects",
            f64::from(u8::from(n.identity.is_none())),
        );
        if let Some(info) = info {
            add(
                "metrics_on_disk",
                "whisper files in the node's tree",
                info.metric_count as f64,
            );
            add(
                "bytes_on_disk",
                "bytes of whisper files in the node's tree",
                info.bytes_on_disk as f64,
            );
        }
        if let Ok(Some(last)) = &n.last_backup {
            add(
                "last_backup_timestamp_seconds",
                "when the last backup committed",
                last.finished.0 as f64,
            );
            add(
                "last_backup_metrics",
                "metrics in the last backup's manifest",
                last.metrics as f64,
            );
            add(
                "last_backup_missing",
                "of those, metrics gone from disk",
                last.missing as f64,
            );
            if let Some(stats) = last.stats {
                add(
                    "last_backup_new",
                    "metrics the last backup uploaded new",
                    stats.new as f64,
                );
                add(
                    "last_backup_changed",
                    "metrics the last backup uploaded changed",
                    stats.changed as f64,
                );
                add(
                    "last_backup_failed",
                    "files the last backup could not back up",
                    stats.failed as f64,
                );
                add(
                    "last_backup_uploaded_bytes",
                    "bytes the last backup uploaded",
                    stats.bytes_uploaded as f64,
                );
            }
        }
        add(
            "bucket_readable",
            "1 when the node's bucket could be read",
            f64::from(u8::from(n.last_backup.is_ok())),
        );
        if let Ok(v) = &n.verification {
            add(
                "bucket_corrupt_versions",
                "stored versions verification found corrupt",
                v.corrupt as f64,
            );
            add(
                "bucket_parts_unverified",
                "parts of the bucket (of 1000) not verified within the window",
                v.parts_due as f64,
            );
            if let Some(newest) = v.newest {
                add(
                    "last_verification_timestamp_seconds",
                    "when part of the bucket was last verified",
                    newest.0 as f64,
                );
            }
        }
        if let Some(job) = info.and_then(|i| i.running_job.as_ref()) {
            for (name, help, value) in [
                ("job_done", "items the running job has done", job.done),
                (
                    "job_total",
                    "items of the running job (0 while unknown)",
                    job.total,
                ),
            ] {
                out.push(Sample {
                    name,
                    help,
                    host: n.host.clone(),
                    kind: Some(job.kind.clone()),
                    value: value as f64,
                });
            }
        }
    }
    out
}

/// Prometheus text exposition (version 0.0.4) of `statuses`.
pub fn prometheus(statuses: &[NodeStatus]) -> String {
    let samples = samples(statuses);
    let mut names: Vec<(&str, &str)> = samples.iter().map(|s| (s.name, s.help)).collect();
    names.sort();
    names.dedup();
    let mut text = String::new();
    for (name, help) in names {
        let _ = writeln!(
            text,
            "# HELP bucky_{name} {help}\n# TYPE bucky_{name} gauge"
        );
        for s in samples.iter().filter(|s| s.name == name) {
            let kind = s
                .kind
                .as_ref()
                .map_or(String::new(), |k| format!(",kind=\"{}\"", escape(k)));
            let _ = writeln!(
                text,
                "bucky_{name}{{host=\"{}\"{kind}}} {}",
                escape(&s.host),
                s.value
            );
        }
    }
    text
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Carbon plaintext lines (`<prefix>.<host>.<name> <value> <time>`) of `statuses`; dots in a host
/// name become `_` so each host is one path segment.
pub fn carbon(statuses: &[NodeStatus], prefix: &str, now: i64) -> String {
    let mut text = String::new();
    for s in samples(statuses) {
        let host = s.host.replace(['.', ' '], "_");
        let name = match &s.kind {
            Some(kind) => format!("{}.{}", s.name, kind.replace(['.', ' '], "_")),
            None => s.name.to_string(),
        };
        let _ = writeln!(text, "{prefix}.{host}.{name} {} {now}", s.value);
    }
    text
}

/// Refreshes the figures every interval (and sends them to carbon when configured); serves
/// them over HTTP when configured. Runs until the process ends.
///
/// # Errors
/// The listen address cannot be bound.
pub async fn serve<A: AgentApi + 'static>(
    config: MetricsConfig,
    cluster: Arc<Cluster>,
    agents: Arc<Vec<A>>,
) -> anyhow::Result<()> {
    let latest = Arc::new(RwLock::new(String::new()));
    if let Some(listen) = &config.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding the metrics address {listen}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
        let text = latest.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = text.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        text.read().await.clone(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(config.interval_secs.max(1)));
    loop {
        tick.tick().await;
        let statuses = cluster::status(&cluster, &agents).await;
        *latest.write().await = prometheus(&statuses);
        if let Some(address) = &config.carbon {
            let now = bucky_shared::layout::Version::now().0;
            let lines = carbon(&statuses, &config.prefix, now);
            if let Err(e) = send(address, lines.as_bytes()).await {
                tracing::warn!(address, error = %e, "could not send metrics to carbon");
            }
        }
    }
}

/// Writes `lines` to a carbon line receiver, within a deadline.
async fn send(address: &str, lines: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let deadline = Duration::from_secs(10);
    let send = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(lines).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(deadline, send)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))
        })
}

#[cfg(test)]
mod tests {
    use bucky_proto::v1 as pb;
    use bucky_shared::layout::{RunStats, Version};

    use super::*;
    use crate::agents::AgentError;
    use crate::cluster::LastBackup;

    fn statuses() -> Vec<NodeStatus> {
        vec![
            NodeStatus {
                host: "graphite-01".into(),
                info: Ok(pb::InfoResponse {
                    metric_count: 10,
                    bytes_on_disk: 1000,
                    running_job: Some(pb::Job {
                        kind: "backup".into(),
                        started: 1,
                        done: 3,
                        total: 10,
                    }),
                    ..Default::default()
                }),
                agrees: true,
                identity: None,
                bucket: "file:///b/graphite-01".into(),
                last_backup: Ok(Some(LastBackup {
                    run: Version(1_700_000_000),
                    finished: Version(1_700_000_060),
                    metrics: 10,
                    missing: 1,
                    stats: Some(RunStats {
                        new: 2,
                        changed: 3,
                        unchanged: 5,
                        failed: 0,
                        bytes_uploaded: 500,
                    }),
                })),
                bucket_owner: Some("graphite-01".into()),
                verification: Ok(crate::cluster::Verification {
                    corrupt: 2,
                    parts_due: 40,
                    newest: Some(Version(1_700_000_100)),
                    ..Default::default()
                }),
            },
            NodeStatus {
                host: "graphite.02".into(),
                info: Err(AgentError::Unreachable {
                    host: "graphite.02".into(),
                    address: "http://x".into(),
                    reason: "refused".into(),
                }),
                agrees: false,
                identity: None,
                bucket: "file:///b/graphite-02".into(),
                last_backup: Ok(None),
                bucket_owner: None,
                verification: Err("not read".into()),
            },
        ]
    }

    #[test]
    fn prometheus_text_has_every_node() {
        let text = prometheus(&statuses());
        assert!(text.contains("# TYPE bucky_up gauge"), "{text}");
        assert!(
            text.contains("bucky_up{host=\"graphite-01\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("bucky_up{host=\"graphite.02\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("bucky_last_backup_timestamp_seconds{host=\"graphite-01\"} 1700000060\n")
        );
        assert!(text.contains("bucky_job_done{host=\"graphite-01\",kind=\"backup\"} 3\n"));
        assert!(text.contains("bucky_bucket_corrupt_versions{host=\"graphite-01\"} 2\n"));
        assert!(text.contains("bucky_bucket_parts_unverified{host=\"graphite-01\"} 40\n"));
        assert!(text.contains(
            "bucky_last_verification_timestamp_seconds{host=\"graphite-01\"} 1700000100\n"
        ));
        assert!(!text.contains("bucky_bucket_corrupt_versions{host=\"graphite.02\"}"));
        assert!(!text.contains("bucky_last_backup_metrics{host=\"graphite.02\"}"));
        assert_eq!(text.matches("# HELP bucky_up ").count(), 1);
    }

    #[test]
    fn carbon_lines_name_each_host_in_one_segment() {
        let text = carbon(&statuses(), "ops.bucky", 1_700_000_100);
        assert!(
            text.contains("ops.bucky.graphite-01.last_backup_missing 1 1700000100\n"),
            "{text}"
        );
        assert!(
            text.contains("ops.bucky.graphite_02.up 0 1700000100\n"),
            "{text}"
        );
        assert!(
            text.contains("ops.bucky.graphite-01.job_total.backup 10 1700000100\n"),
            "{text}"
        );
    }
}
