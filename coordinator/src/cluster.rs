//! Cluster operations: fleet status with ring agreement, cluster backup, restore of one host.
//! A node that is unreachable or dies fails its own part, never the others'.

use bucky_proto::v1 as pb;
use bucky_shared::bucket::Bucket;
use bucky_shared::layout::{ObjectKind, RunStats, Version};
use bucky_shared::manifests;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::{StreamExt, future, stream};

use crate::agents::{AgentApi, AgentError};
use crate::config::{Cluster, Host};
use crate::plan::{self, PlanSummary, Source};
pub use crate::plan::{Action, Planned, Step};
use bucky_shared::layout::manifest::Record;
use bucky_shared::layout::{Layout, Trust};
use bucky_shared::ring::Ring;
use bucky_shared::selection::Selection;
use std::sync::Arc;

/// Why a cluster operation did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Agents whose ring differs from the coordinator's.
    #[error("ring mismatch: {} do not have the coordinator's ring {expected}", nodes.join(", "))]
    RingMismatch {
        /// The coordinator's fingerprint.
        expected: String,
        /// `host (fingerprint)` of each disagreeing agent.
        nodes: Vec<String>,
    },
    /// Agents that are not the host the coordinator addresses, or that back up into another
    /// bucket than the coordinator's: a wrong address or a copied config, which would put
    /// two trees into one bucket.
    #[error("agent identity mismatch: {}", problems.join("; "))]
    IdentityMismatch {
        /// One line per disagreeing agent.
        problems: Vec<String>,
    },
    /// The restore target has no agent.
    #[error("no host {0} in the cluster")]
    UnknownHost(String),
    /// A bucket could not be read.
    #[error(transparent)]
    Bucket(#[from] bucky_shared::bucket::Error),
    /// The target agent failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// The last completed backup of a host, from its bucket's newest manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastBackup {
    /// When the run started.
    pub run: Version,
    /// When it committed.
    pub finished: Version,
    /// Metrics in the manifest.
    pub metrics: usize,
    /// Of those, metrics that were not on disk.
    pub missing: usize,
    /// What the run did.
    pub stats: Option<RunStats>,
}

/// One node in the fleet status.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// Ring host name.
    pub host: String,
    /// The agent's Info, when it answered.
    pub info: Result<pb::InfoResponse, AgentError>,
    /// Whether the agent's ring fingerprint equals the coordinator's.
    pub agrees: bool,
    /// The agent is not who the coordinator thinks (another node, another bucket), or the
    /// bucket belongs to another host.
    pub identity: Option<String>,
    /// Its bucket URL.
    pub bucket: String,
    /// The last completed backup, or why it could not be read.
    pub last_backup: Result<Option<LastBackup>, String>,
    /// The host named in the bucket's owner marker, if it has one.
    pub bucket_owner: Option<String>,
    /// What the bucket's verification records say, or why they could not be read.
    pub verification: Result<Verification, String>,
}

/// A bucket's verification records, summed up for `status` and `check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Corrupt versions known.
    pub corrupt: u64,
    /// The first few, `metric version: reason`.
    pub corrupt_sample: Vec<String>,
    /// Parts (of 1000) not verified within the window.
    pub parts_due: u64,
    /// The newest verification.
    pub newest: Option<Version>,
    /// The bucket was taken over less than a window ago: nothing is overdue yet.
    pub young: bool,
}

/// Corrupt versions named in `status`.
const CORRUPT_SAMPLE: usize = 5;

/// Reads `bucket`'s verification records against a window of `window_days` at `now`; `owned_since`
/// is when its owner marker was written.
async fn verification(
    bucket: &Bucket,
    window_days: u32,
    owned_since: Option<Version>,
) -> Result<Verification, String> {
    // Status runs every few minutes (Nagios, the metrics exporter): records are read again
    // only when they changed.
    static CACHE: std::sync::LazyLock<manifests::TrustCache> =
        std::sync::LazyLock::new(manifests::TrustCache::default);
    let trust = CACHE.trust(bucket).await.map_err(|e| e.to_string())?;
    let since = Version(Version::now().0 - i64::from(window_days) * 86_400);
    Ok(Verification {
        corrupt: trust.corrupt_count() as u64,
        corrupt_sample: trust
            .corrupt()
            .take(CORRUPT_SAMPLE)
            .map(|(m, v, why)| format!("{m} {v}: {why}"))
            .collect(),
        parts_due: trust.parts_due(since) as u64,
        newest: trust.newest(),
        young: owned_since.is_none_or(|owned| owned > since),
    })
}

/// The longest `status` waits for one host's bucket: a Nagios check has to answer in time, and
/// a store that does not answer is news, not a reason to hang.
pub const STATUS_DEADLINE: Duration = Duration::from_secs(10);

/// [`STATUS_DEADLINE`], or the bucket's request timeout when that is shorter.
fn status_deadline(bucket: Option<&Bucket>) -> Duration {
    bucket.map_or(STATUS_DEADLINE, |b| b.timeout().min(STATUS_DEADLINE))
}

/// Status of every host, queried concurrently.
pub async fn status<A: AgentApi>(cluster: &Cluster, agents: &[A]) -> Vec<NodeStatus> {
    let expected = cluster.ring.fingerprint().to_string();
    let storage = &cluster.config.storage;
    future::join_all(cluster.hosts.iter().map(|host| async {
        let agent = agents.iter().find(|a| a.host() == host.name);
        let info = match agent {
            Some(agent) => agent.info().await,
            None => Err(AgentError::Unreachable {
                host: host.name.clone(),
                address: "-".into(),
                reason: "no agent configured".into(),
            }),
        };
        let bucket = Bucket::open(&host.bucket, storage);
        let deadline = status_deadline(bucket.as_ref().ok());
        let last_backup = async {
            let bucket = bucket.as_ref().map_err(|e| e.to_string())?;
            let summary = manifests::latest_summary(bucket)
                .await
                .map_err(|e| e.to_string())?;
            Ok(summary.map(|s| LastBackup {
                run: s.started,
                finished: s.finished,
                metrics: s.metrics as usize,
                missing: s.missing as usize,
                stats: s.stats,
            }))
        };
        let (last_backup, answered) = match tokio::time::timeout(deadline, last_backup).await {
            Ok(last_backup) => (last_backup, true),
            Err(_) => (
                Err(format!(
                    "bucket {}: no answer within {deadline:?}; status does not wait longer",
                    host.bucket
                )),
                false,
            ),
        };
        let marker = match &bucket {
            Ok(bucket) if answered => {
                let key = bucket.layout().owner_key();
                match tokio::time::timeout(deadline, bucket.get(&key)).await {
                    Ok(Ok(Some(bytes))) => bucky_shared::layout::OwnerMarker::decode(&bytes).ok(),
                    _ => None,
                }
            }
            _ => None,
        };
        let verification = match &bucket {
            Ok(bucket) if answered => {
                let window = cluster.config.verify.window_days;
                let owned = marker.as_ref().map(|m| m.created);
                tokio::time::timeout(deadline, verification(bucket, window, owned))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {deadline:?}")))
            }
            Ok(_) => Err("the bucket did not answer".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let bucket_owner = marker.map(|m| m.node);
        let mut identity: Vec<String> = info
            .as_ref()
            .ok()
            .and_then(|i| identity_problem(host, i))
            .into_iter()
            .collect();
        if let Some(owner) = bucket_owner.as_ref().filter(|o| **o != host.name) {
            identity.push(format!(
                "{}'s bucket {} is owned by {owner}",
                host.name, host.bucket
            ));
        }
        NodeStatus {
            host: host.name.clone(),
            agrees: info.as_ref().is_ok_and(|i| i.ring_fingerprint == expected),
            info,
            identity: (!identity.is_empty()).then(|| identity.join("; ")),
            bucket: host.bucket.clone(),
            last_backup,
            bucket_owner,
            verification,
        }
    }))
    .await
}

/// What is wrong with the agent answering for `host`: another node (swapped addresses), or
/// another bucket (a copied config) than the coordinator's.
fn identity_problem(host: &Host, info: &pb::InfoResponse) -> Option<String> {
    if info.node != host.name {
        Some(format!(
            "the agent at {} is {}, not {}",
            host.agent, info.node, host.name
        ))
    } else if info.bucket.trim_end_matches('/') != host.bucket.trim_end_matches('/') {
        Some(format!(
            "{} backs up into {}, the coordinator expects {}",
            host.name, info.bucket, host.bucket
        ))
    } else {
        None
    }
}

/// Refuses to go on when a reachable agent has another ring.
pub async fn check_agreement<A: AgentApi>(cluster: &Cluster, agents: &[A]) -> Result<(), Error> {
    let expected = cluster.ring.fingerprint().to_string();
    let infos = future::join_all(agents.iter().map(|a| a.info())).await;
    let problems: Vec<String> = agents
        .iter()
        .zip(&infos)
        .filter_map(|(a, info)| {
            let info = info.as_ref().ok()?;
            let host = cluster.hosts.iter().find(|h| h.name == a.host())?;
            identity_problem(host, info)
        })
        .collect();
    if !problems.is_empty() {
        return Err(Error::IdentityMismatch { problems });
    }
    let nodes: Vec<String> = agents
        .iter()
        .zip(infos)
        .filter_map(|(a, info)| match info {
            Ok(i) if i.ring_fingerprint != expected => {
                let theirs = if i.ring_fingerprint.is_empty() {
                    "no ring".to_string()
                } else {
                    i.ring_fingerprint
                };
                Some(format!("{} ({theirs})", a.host()))
            }
            _ => None,
        })
        .collect();
    if nodes.is_empty() {
        Ok(())
    } else {
        Err(Error::RingMismatch { expected, nodes })
    }
}

/// How one node's backup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every file backed up.
    Ok,
    /// The run committed but some files failed.
    Partial(String),
    /// The run did not commit (unreachable, died, refused).
    Failed(String),
}

/// One node's backup.
#[derive(Debug, Clone)]
pub struct NodeBackup {
    /// Ring host name.
    pub host: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The agent's result, when the run committed.
    pub result: Option<pb::BackupResult>,
}

/// Backs every host up into its own bucket, `concurrency` at a time, each after a random delay up
/// to `splay`, once every reachable agent is known to have the coordinator's ring. `progress(host, done, total)` as agents report.
///
/// # Errors
/// [`Error::RingMismatch`] naming the nodes that differ; nothing is started then.
pub async fn backup<A: AgentApi>(
    cluster: &Cluster,
    agents: &[A],
    request: pb::BackupRequest,
    concurrency: usize,
    splay: Duration,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<Vec<NodeBackup>, Error> {
    if let Err(e) = check_agreement(cluster, agents).await {
        tracing::warn!(error = %e, "cluster backup refused");
        return Err(e);
    }
    let started = std::time::Instant::now();
    tracing::info!(
        nodes = agents.len(),
        noop = request.noop,
        "cluster backup started"
    );
    // Boxed, and built in a loop rather than by a closure: rustc cannot prove a closure-made
    // future `Send` for every lifetime when this runs inside a spawned task (rust#110338).
    type Job<'a> = Pin<Box<dyn Future<Output = NodeBackup> + Send + 'a>>;
    let mut backups: Vec<Job<'_>> = Vec::with_capacity(agents.len());
    for agent in agents {
        let request = request.clone();
        backups.push(Box::pin(async move {
            let host = agent.host().to_string();
            if !splay.is_zero() {
                tokio::time::sleep(splay.mul_f64(random_fraction(&host))).await;
            }
            match agent
                .backup(request, |done, total| progress(&host, done, total))
                .await
            {
                Ok(result) if result.failed.is_empty() => NodeBackup {
                    host,
                    outcome: Outcome::Ok,
                    result: Some(result),
                },
                Ok(result) => {
                    let first = &result.failed[0];
                    let why = format!(
                        "{} metrics failed, first: {}: {}",
                        result.failed.len(),
                        first.metric,
                        first.error
                    );
                    NodeBackup {
                        host,
                        outcome: Outcome::Partial(why),
                        result: Some(result),
                    }
                }
                Err(e) => NodeBackup {
                    host,
                    outcome: Outcome::Failed(e.to_string()),
                    result: None,
                },
            }
        }));
    }
    let mut results: Vec<NodeBackup> = stream::iter(backups)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.sort_by(|a, b| a.host.cmp(&b.host));
    for r in &results {
        match &r.outcome {
            Outcome::Ok => {}
            Outcome::Partial(why) => tracing::warn!(host = r.host, why, "node backed up in part"),
            Outcome::Failed(why) => tracing::warn!(host = r.host, why, "node not backed up"),
        }
    }
    let count = |want: fn(&Outcome) -> bool| results.iter().filter(|r| want(&r.outcome)).count();
    tracing::info!(
        ok = count(|o| *o == Outcome::Ok),
        partial = count(|o| matches!(o, Outcome::Partial(_))),
        failed = count(|o| matches!(o, Outcome::Failed(_))),
        seconds = started.elapsed().as_secs_f64(),
        "cluster backup ended"
    );
    Ok(results)
}

/// A number in `[0, 1)`, different per process and host (std's randomly keyed hasher).
fn random_fraction(host: &str) -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(host);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// How to restore a host.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// The host to restore.
    pub target: String,
    /// Use the newest manifests at or before this time (default: the newest).
    pub at: Option<Version>,
    /// Also restore what the target's bucket holds but the ring now places elsewhere.
    pub all: bool,
    /// Plan only.
    pub dry_run: bool,
}

/// A host's restore, planned: its figures, and the manifests it was planned from (compressed,
/// tens of bytes per metric), from which it is planned again metric by metric as it executes;
/// the plan itself is never held whole.
#[derive(Debug, Clone)]
pub struct HostPlan {
    /// What it restores, from where, and leaves out.
    pub summary: PlanSummary,
    ring: Ring,
    selection: Selection,
    all: bool,
    sources: Arc<Vec<StoredSource>>,
}

/// A bucket's newest manifest at or before the restore date.
#[derive(Debug, Clone)]
struct StoredSource {
    host: String,
    url: String,
    layout: Layout,
    manifest: manifests::Stored,
    trust: Arc<Trust>,
}

impl HostPlan {
    /// Distinct metrics restored.
    pub fn metric_count(&self) -> usize {
        self.summary.metrics as usize
    }

    /// Runs the planner on a blocking thread, each metric's plan sent as it is made.
    pub fn stream(&self) -> tokio::sync::mpsc::Receiver<Planned> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let plan = self.clone();
        tokio::task::spawn_blocking(move || {
            plan.run(|planned| tx.blocking_send(planned).is_ok());
        });
        rx
    }

    fn run(&self, emit: impl FnMut(Planned) -> bool) {
        let sources = self
            .sources
            .iter()
            .map(|s| Source {
                host: s.host.clone(),
                url: s.url.clone(),
                layout: s.layout.clone(),
                trust: s.trust.clone(),
                entries: s.manifest.reader().filter_map(|r| match r {
                    Ok(Record::Entry(entry, _)) => Some(entry),
                    _ => None,
                }),
            })
            .collect();
        plan::plan_restore(
            &self.summary.target,
            &self.ring,
            sources,
            |m| self.selection.matches(m),
            self.all,
            emit,
        );
    }
}

/// Plans the restore of one host from every host's bucket, after checking that every reachable
/// agent has the coordinator's ring: fetches each bucket's manifest and counts the plan.
///
/// # Errors
/// An unknown target, a ring mismatch, an unreadable bucket.
pub async fn plan_host<A: AgentApi>(
    cluster: &Cluster,
    agents: &[A],
    request: &RestoreRequest,
    selection: &Selection,
) -> Result<HostPlan, Error> {
    if !agents.iter().any(|a| a.host() == request.target) {
        return Err(Error::UnknownHost(request.target.clone()));
    }
    if let Err(e) = check_agreement(cluster, agents).await {
        tracing::warn!(target = request.target, error = %e, "restore refused");
        return Err(e);
    }
    let mut sources = Vec::new();
    for host in &cluster.hosts {
        let bucket = Bucket::open(&host.bucket, &cluster.config.storage)?;
        if let Some(manifest) = manifests::latest_stored(&bucket, request.at).await? {
            // What verification found steers the plan away from corrupt versions; records
            // that cannot be read leave it as it would be without them.
            let trust = match manifests::trust(&bucket).await {
                Ok((trust, _)) => trust,
                Err(e) => {
                    tracing::warn!(bucket = host.bucket, error = %e, "verification records unreadable; planning without them");
                    Trust::default()
                }
            };
            sources.push(StoredSource {
                trust: Arc::new(trust),
                host: host.name.clone(),
                url: host.bucket.clone(),
                layout: bucket.layout().clone(),
                manifest,
            });
        }
    }
    let mut plan = HostPlan {
        summary: PlanSummary {
            target: request.target.clone(),
            ..PlanSummary::default()
        },
        ring: cluster.ring.clone(),
        selection: selection.clone(),
        all: request.all,
        sources: Arc::new(sources),
    };
    plan = tokio::task::spawn_blocking(move || {
        let mut summary = PlanSummary::default();
        plan.run(|planned| {
            summary.add(&planned);
            true
        });
        plan.summary = PlanSummary {
            target: plan.summary.target.clone(),
            ..summary
        };
        plan
    })
    .await
    .expect("planning does not panic");
    Ok(plan)
}

/// Has the plan's target agent execute `plan`, planned again as it streams to the agent.
///
/// # Errors
/// The target has no agent, or the agent failed.
pub async fn execute_plan<A: AgentApi>(
    agents: &[A],
    plan: &HostPlan,
    progress: impl FnMut(u64, u64) + Send,
) -> Result<pb::RestoreResult, Error> {
    let agent = agents
        .iter()
        .find(|a| a.host() == plan.summary.target)
        .ok_or_else(|| Error::UnknownHost(plan.summary.target.clone()))?;
    let started = std::time::Instant::now();
    tracing::info!(
        target = plan.summary.target,
        metrics = plan.summary.metrics,
        sources = plan.summary.sources.len(),
        "restore started"
    );
    let entries = tokio_stream::wrappers::ReceiverStream::new(plan.stream()).flat_map(|planned| {
        let steps = match planned {
            Planned::Metric(steps) => steps,
            Planned::NotOwned(_) => Vec::new(),
        };
        stream::iter(steps.into_iter().map(|s| pb::RestoreEntry {
            metric: s.metric,
            source_bucket: s.bucket,
            object_key: s.key,
            sha1: s.sha1,
            action: match s.action {
                Action::Write => pb::RestoreAction::Write,
                Action::Fill => pb::RestoreAction::Fill,
            } as i32,
            source_agent: String::new(),
            since: 0,
        }))
    });
    let header = pb::RestoreRequest {
        total: plan.summary.metrics,
        job: "restore".into(),
        ..Default::default()
    };
    let result = agent.restore(entries, header, progress).await;
    match &result {
        Ok(r) => tracing::info!(
            target = plan.summary.target,
            written = r.written,
            filled = r.filled,
            failed = r.failed_count,
            seconds = started.elapsed().as_secs_f64(),
            "restore ended"
        ),
        Err(e) => tracing::warn!(target = plan.summary.target, error = %e, "restore failed"),
    }
    Ok(result?)
}

/// [`plan_host`], then, unless `dry_run`, [`execute_plan`].
///
/// # Errors
/// As those two.
pub async fn restore_host<A: AgentApi>(
    cluster: &Cluster,
    agents: &[A],
    request: &RestoreRequest,
    selection: &Selection,
    progress: impl FnMut(u64, u64) + Send,
) -> Result<(HostPlan, Option<pb::RestoreResult>), Error> {
    let plan = plan_host(cluster, agents, request, selection).await?;
    if request.dry_run {
        return Ok((plan, None));
    }
    let result = execute_plan(agents, &plan, progress).await?;
    Ok((plan, Some(result)))
}

/// The versions of `metric` in every host's bucket: `(host, bucket, versions oldest first)`,
/// counting only complete versions (data and `.sha1`).
///
/// # Errors
/// A bucket cannot be opened or listed.
pub async fn list_versions(
    cluster: &Cluster,
    metric: &str,
) -> Result<Vec<(String, String, Vec<Version>)>, Error> {
    let mut out = Vec::new();
    for host in &cluster.hosts {
        let bucket = Bucket::open(&host.bucket, &cluster.config.storage)?;
        let mut data = std::collections::BTreeSet::new();
        let mut sha1 = std::collections::BTreeSet::new();
        for meta in bucket
            .list(&bucket.layout().metric_prefix(metric))
            .await?
            .objects
        {
            if let Some(object) = bucket.layout().parse_key(meta.location.as_ref())
                && object.metric == metric
            {
                match object.kind {
                    ObjectKind::Data(_) => data.insert(object.version),
                    ObjectKind::Sha1 => sha1.insert(object.version),
                };
            }
        }
        let versions: Vec<Version> = data.intersection(&sha1).copied().collect();
        if !versions.is_empty() {
            out.push((host.name.clone(), host.bucket.clone(), versions));
        }
    }
    Ok(out)
}

/// One node's verification.
#[derive(Debug, Clone)]
pub struct NodeVerify {
    /// Ring host name.
    pub host: String,
    /// What its agent found, or why it failed.
    pub result: Result<pb::VerifyResult, String>,
}

/// Has every host (or `only`) verify `request`'s share of its bucket, `concurrency` at a time;
/// `progress(host, done)` as agents report.
///
/// # Errors
/// [`Error::UnknownHost`] when `only` is not a ring host.
pub async fn verify<A: AgentApi>(
    agents: &[A],
    only: Option<&str>,
    request: pb::VerifyRequest,
    concurrency: usize,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<Vec<NodeVerify>, Error> {
    if let Some(host) = only
        && !agents.iter().any(|a| a.host() == host)
    {
        return Err(Error::UnknownHost(host.to_string()));
    }
    type Job<'a> = Pin<Box<dyn Future<Output = NodeVerify> + Send + 'a>>;
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for agent in agents.iter().filter(|a| only.is_none_or(|h| a.host() == h)) {
        jobs.push(Box::pin(async move {
            let host = agent.host().to_string();
            let result = agent
                .verify(request, |done| progress(&host, done))
                .await
                .map_err(|e| e.to_string());
            NodeVerify { host, result }
        }));
    }
    let mut results: Vec<NodeVerify> = stream::iter(jobs)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(results)
}
