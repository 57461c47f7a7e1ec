//! The Coordinator gRPC service: each handler converts, calls one cluster operation, maps errors.

use std::pin::Pin;
use std::sync::Arc;

use bucky_proto::v1 as pb;
use bucky_shared::layout::Version;
use bucky_shared::selection::Selection;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::agents::{AgentApi, GrpcAgent};
use crate::cluster::{self, Outcome, RestoreRequest};
use crate::config::Cluster;
use crate::consistency;
use crate::rebalance;
use crate::schedule;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Names a summary lists before it says "and N more": messages stay small on any cluster.
const NAMED: usize = 100;

/// The tonic service over a validated cluster.
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    cluster: Arc<Cluster>,
    agents: Arc<Vec<GrpcAgent>>,
    /// The start of the cluster backup running now, if one is: a second is refused at once
    /// instead of running half against busy agents.
    backup_running: Arc<std::sync::Mutex<Option<Version>>>,
    /// Agents of the ring's hosts, then of the sources outside it ([`Cluster::members`]).
    members: Arc<Vec<GrpcAgent>>,
    /// The last consistency check's summary, for status.
    consistency: Arc<std::sync::Mutex<Option<pb::ConsistencySummary>>>,
    /// Each node's place in the backup schedule (empty without `[schedule]`).
    schedule: schedule::States,
}

/// Holds the cluster backup slot; frees it when dropped (the job ended, however).
struct BackupSlot(Arc<std::sync::Mutex<Option<Version>>>);

impl BackupSlot {
    /// Takes the slot, or says when the backup holding it started.
    fn take(slot: &Arc<std::sync::Mutex<Option<Version>>>, now: Version) -> Result<Self, Version> {
        let mut running = slot.lock().expect("the backup slot is never poisoned");
        match *running {
            Some(started) => Err(started),
            None => {
                *running = Some(now);
                Ok(BackupSlot(slot.clone()))
            }
        }
    }
}

impl Drop for BackupSlot {
    fn drop(&mut self) {
        *self.0.lock().expect("the backup slot is never poisoned") = None;
    }
}

impl CoordinatorService {
    /// The service for `cluster`, reaching its agents with `token`.
    ///
    /// # Errors
    /// An agent address or the token is invalid.
    pub fn new(cluster: Cluster, token: &str) -> anyhow::Result<Self> {
        let ca = cluster.config.agent_ca_file.clone();
        let tls_for = |address: &str| -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
            match address.starts_with("https://") {
                // Without agent_ca_file, the system's CA roots.
                true => Ok(Some(
                    bucky_proto::tls::client(ca.as_deref(), None).map_err(anyhow::Error::msg)?,
                )),
                false => Ok(None),
            }
        };
        let agent_of = |h: &crate::config::Host| -> anyhow::Result<GrpcAgent> {
            Ok(GrpcAgent::new(
                &h.name,
                &h.agent,
                token,
                tls_for(&h.agent)?,
            )?)
        };
        let agents = cluster
            .hosts
            .iter()
            .map(agent_of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let members = cluster
            .members()
            .iter()
            .map(agent_of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(CoordinatorService {
            cluster: Arc::new(cluster),
            agents: Arc::new(agents),
            members: Arc::new(members),
            backup_running: Arc::default(),
            consistency: Arc::default(),
            schedule: Arc::default(),
        })
    }

    /// Starts the backup schedule in the background, when `[schedule]` is configured.
    pub fn start_schedule(&self) {
        if let Some(schedule) = self.cluster.schedule {
            tokio::spawn(schedule::run(
                self.cluster.clone(),
                self.agents.clone(),
                schedule,
                self.schedule.clone(),
            ));
        }
    }
}

fn verification_status(
    v: Result<cluster::Verification, String>,
    window_days: u32,
) -> pb::VerificationStatus {
    match v {
        Ok(v) => pb::VerificationStatus {
            corrupt: v.corrupt,
            corrupt_sample: v.corrupt_sample,
            parts_due: v.parts_due,
            window_days,
            newest: v.newest.map_or(0, |n| n.0),
            young: v.young,
            error: String::new(),
        },
        Err(error) => pb::VerificationStatus {
            window_days,
            error,
            ..Default::default()
        },
    }
}

/// One metric's plan as the client shows it.
fn planned_metric(steps: Vec<cluster::Step>) -> pb::PlannedMetric {
    pb::PlannedMetric {
        metric: steps.first().map(|s| s.metric.clone()).unwrap_or_default(),
        copies: steps
            .into_iter()
            .map(|s| pb::PlannedCopy {
                bucket: s.bucket,
                version: s.version.0,
                bytes: s.bytes,
                action: match s.action {
                    cluster::Action::Write => pb::RestoreAction::Write,
                    cluster::Action::Fill => pb::RestoreAction::Fill,
                } as i32,
            })
            .collect(),
    }
}

impl CoordinatorService {
    /// The fleet's metrics, as `[metrics]` configures them; runs until the process ends.
    ///
    /// # Errors
    /// The metrics address cannot be bound.
    pub async fn serve_metrics(&self, config: crate::metrics::MetricsConfig) -> anyhow::Result<()> {
        crate::metrics::serve(config, self.cluster.clone(), self.agents.clone()).await
    }
}

fn consistency_summary(cluster: &Cluster, report: consistency::Report) -> pb::ConsistencySummary {
    pb::ConsistencySummary {
        nodes: cluster
            .members()
            .iter()
            .zip(report.nodes)
            .map(|(host, n)| pb::NodeConsistency {
                host: host.name.clone(),
                held: n.held,
                misplaced: n.misplaced,
                missing: n.missing,
                error: n.error.unwrap_or_default(),
            })
            .collect(),
        metrics: report.metrics,
        checked: Version::now().0,
        ring_fingerprint: cluster.ring.fingerprint().to_string(),
    }
}

/// `host`'s counts in the last consistency check, if there was one.
fn last_counts(last: Option<&pb::ConsistencySummary>, host: &str) -> Option<pb::NodeConsistency> {
    last.and_then(|c| c.nodes.iter().find(|n| n.host == host).cloned())
}

fn rebalance_summary(cluster: &Cluster, outcome: rebalance::Outcome) -> pb::RebalanceSummary {
    pb::RebalanceSummary {
        metrics: outcome.metrics,
        nodes: cluster
            .members()
            .iter()
            .zip(outcome.nodes)
            .map(|(host, n)| {
                let (result, error) = match n.result {
                    None => (None, String::new()),
                    Some(Ok(r)) => (Some(r), String::new()),
                    Some(Err(e)) => (None, e.to_string()),
                };
                pb::NodeRebalance {
                    host: host.name.clone(),
                    moves: n.moves,
                    result,
                    error,
                    deleted: n.deleted,
                    kept: n.kept,
                    kept_reasons: n.kept_reasons,
                }
            })
            .collect(),
        listing_errors: outcome
            .listing_errors
            .into_iter()
            .map(|(h, e)| format!("{}: {e}", cluster.members()[h].name))
            .collect(),
        delete_skipped: outcome.delete_skipped.unwrap_or_default(),
    }
}

fn inconsistency(cluster: &Cluster, f: consistency::Finding) -> pb::Inconsistency {
    pb::Inconsistency {
        host: cluster.members()[f.host].name.clone(),
        metric: f.metric,
        kind: match f.kind {
            consistency::Kind::Misplaced => pb::InconsistencyKind::Misplaced,
            consistency::Kind::Missing => pb::InconsistencyKind::Missing,
        } as i32,
    }
}

impl CoordinatorService {
    /// The pace of a move job: the request's where it sets one, else `[moves]`.
    fn pace(
        &self,
        metrics_per_sec: Option<f64>,
        mb_per_sec: Option<f64>,
    ) -> Result<crate::config::MovesSection, Status> {
        let config = self.cluster.config.moves;
        let pace = crate::config::MovesSection {
            metrics_per_sec: metrics_per_sec.unwrap_or(config.metrics_per_sec),
            mb_per_sec: mb_per_sec.unwrap_or(config.mb_per_sec),
        };
        if !(pace.metrics_per_sec >= 0.0 && pace.mb_per_sec >= 0.0) {
            return Err(Status::invalid_argument(
                "rates must be 0 (no limit) or more",
            ));
        }
        Ok(pace)
    }

    /// Runs a rebalance or a heal: checks the ring unless it is a dry run, then streams the
    /// planned moves (dry run) and the summary; with `delete`, once every move succeeded,
    /// removes the misplaced copies the owners confirm.
    async fn run_moves(
        &self,
        job: rebalance::Job,
        pace: crate::config::MovesSection,
        globs: &[String],
        dry_run: bool,
        delete: bool,
    ) -> Result<Response<BoxStream<pb::RebalanceResponse>>, Status> {
        let selection =
            Selection::new(globs, None).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !dry_run {
            cluster::check_agreement(&self.cluster, &self.agents)
                .await
                .map_err(to_status)?;
        }
        let (tx, rx) = mpsc::channel(4);
        let (cluster, agents) = (self.cluster.clone(), self.members.clone());
        tokio::spawn(async move {
            let members = cluster.members();
            let (moves_tx, mut moves_rx) = mpsc::channel(1000);
            let run = rebalance::run(
                &cluster,
                &agents,
                job,
                pace,
                &selection,
                dry_run,
                dry_run.then_some(moves_tx),
            );
            let forward = async {
                let mut batch = Vec::new();
                while let Some(m) = moves_rx.recv().await {
                    batch.push(pb::RebalanceMove {
                        from: members[m.from].name.clone(),
                        to: members[m.to].name.clone(),
                        metric: m.metric,
                        fill: m.fill,
                    });
                    if batch.len() == 1000 {
                        let message = pb::RebalanceResponse {
                            moves: std::mem::take(&mut batch),
                            summary: None,
                        };
                        if tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                }
                if !batch.is_empty() {
                    let _ = tx
                        .send(Ok(pb::RebalanceResponse {
                            moves: batch,
                            summary: None,
                        }))
                        .await;
                }
            };
            let (mut outcome, ()) = tokio::join!(run, forward);
            if delete && !dry_run {
                let failed: Vec<&str> = outcome
                    .nodes
                    .iter()
                    .zip(&members)
                    .filter(|(n, _)| n.failed())
                    .map(|(_, h)| h.name.as_str())
                    .collect();
                if !failed.is_empty() {
                    outcome.delete_skipped =
                        Some(format!("moves into {} failed", failed.join(", ")));
                } else if !outcome.listing_errors.is_empty() {
                    outcome.delete_skipped = Some("a node was not listed".into());
                } else {
                    outcome.listing_errors =
                        rebalance::delete_moved(&cluster, &agents, &selection, &mut outcome.nodes)
                            .await;
                }
            }
            let summary = rebalance_summary(&cluster, outcome);
            let _ = tx
                .send(Ok(pb::RebalanceResponse {
                    moves: Vec::new(),
                    summary: Some(summary),
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn to_status(err: cluster::Error) -> Status {
    match err {
        cluster::Error::RingMismatch { .. } | cluster::Error::IdentityMismatch { .. } => {
            Status::failed_precondition(err.to_string())
        }
        cluster::Error::UnknownHost(_) => Status::not_found(err.to_string()),
        cluster::Error::Bucket(_) | cluster::Error::Agent(_) => {
            Status::unavailable(err.to_string())
        }
    }
}

fn last_backup(b: &cluster::LastBackup) -> pb::LastBackup {
    let stats = b.stats.unwrap_or_default();
    pb::LastBackup {
        run: b.run.0,
        finished: b.finished.0,
        metrics: b.metrics as u64,
        new: stats.new,
        changed: stats.changed,
        unchanged: stats.unchanged,
        failed: stats.failed,
        bytes_uploaded: stats.bytes_uploaded,
        missing: b.missing as u64,
    }
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    type ClusterBackupStream = BoxStream<pb::ClusterBackupResponse>;
    type ClusterVerifyStream = BoxStream<pb::ClusterVerifyResponse>;
    type ClusterRestoreStream = BoxStream<pb::ClusterRestoreResponse>;
    type InconsistentStream = BoxStream<pb::InconsistentResponse>;
    type RebalanceStream = BoxStream<pb::RebalanceResponse>;
    type HealStream = BoxStream<pb::RebalanceResponse>;

    #[instrument(skip_all)]
    async fn rebalance(
        &self,
        req: Request<pb::RebalanceRequest>,
    ) -> Result<Response<Self::RebalanceStream>, Status> {
        let req = req.into_inner();
        let pace = self.pace(req.metrics_per_sec, req.mb_per_sec)?;
        self.run_moves(
            rebalance::Job::Rebalance,
            pace,
            &req.globs,
            req.dry_run,
            req.delete,
        )
        .await
    }

    #[instrument(skip_all)]
    async fn heal(
        &self,
        req: Request<pb::HealRequest>,
    ) -> Result<Response<Self::HealStream>, Status> {
        let req = req.into_inner();
        let only = match req.host.as_str() {
            "" => None,
            host => Some(
                self.cluster
                    .hosts
                    .iter()
                    .position(|h| h.name == host)
                    .ok_or_else(|| Status::not_found(format!("no host {host} in the cluster")))?,
            ),
        };
        if req.since_seconds < 0 {
            return Err(Status::invalid_argument(
                "since_seconds must not be negative",
            ));
        }
        let since = match req.since_seconds {
            0 => 0,
            s => Version::now().0 - s,
        };
        let pace = self.pace(req.metrics_per_sec, req.mb_per_sec)?;
        self.run_moves(
            rebalance::Job::Heal { only, since },
            pace,
            &req.globs,
            req.dry_run,
            false,
        )
        .await
    }

    #[instrument(skip_all)]
    async fn inconsistent(
        &self,
        req: Request<pb::InconsistentRequest>,
    ) -> Result<Response<Self::InconsistentStream>, Status> {
        let list = req.into_inner().list;
        let (tx, rx) = mpsc::channel(4);
        let (cluster, agents, last) = (
            self.cluster.clone(),
            self.members.clone(),
            self.consistency.clone(),
        );
        tokio::spawn(async move {
            let (found_tx, mut found_rx) = mpsc::channel(4);
            let hosts: Vec<String> = cluster.members().into_iter().map(|h| h.name).collect();
            let lists = agents.iter().map(AgentApi::list_metrics).collect();
            let check = consistency::check(&cluster.ring, &hosts, lists, list.then_some(found_tx));
            let forward = async {
                while let Some(batch) = found_rx.recv().await {
                    let entries = batch.into_iter().map(|f| inconsistency(&cluster, f));
                    let message = pb::InconsistentResponse {
                        entries: entries.collect(),
                        summary: None,
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return; // the client left; dropping the receiver stops the check
                    }
                }
            };
            let (report, ()) = tokio::join!(check, forward);
            let summary = consistency_summary(&cluster, report);
            *last.lock().expect("never poisoned") = Some(summary.clone());
            let _ = tx
                .send(Ok(pb::InconsistentResponse {
                    entries: Vec::new(),
                    summary: Some(summary),
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[instrument(skip_all)]
    async fn cluster_verify(
        &self,
        req: Request<pb::ClusterVerifyRequest>,
    ) -> Result<Response<Self::ClusterVerifyStream>, Status> {
        let req = req.into_inner();
        let window_days = self.cluster.config.verify.window_days;
        let share = match (req.all, req.share) {
            (true, _) => 0.0,
            (false, 0.0) => 1.0 / f64::from(window_days),
            (false, s) if s > 0.0 && s <= 1.0 => s,
            (false, s) => {
                return Err(Status::invalid_argument(format!(
                    "share {s} is not a fraction in (0, 1]"
                )));
            }
        };
        let request = pb::VerifyRequest {
            all: req.all,
            share,
            window_days,
        };
        let only = (!req.host.is_empty()).then_some(req.host);
        if let Some(host) = &only
            && !self.agents.iter().any(|a| a.host() == host)
        {
            return Err(to_status(cluster::Error::UnknownHost(host.clone())));
        }
        let (tx, rx) = mpsc::channel(64);
        let (agents, concurrency) = (self.agents.clone(), self.cluster.config.concurrency);
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let progress = move |host: &str, done: u64| {
                let _ = progress_tx.try_send(Ok(pb::ClusterVerifyResponse {
                    host: host.into(),
                    done,
                    results: vec![],
                }));
            };
            let last = cluster::verify(&agents, only.as_deref(), request, concurrency, &progress)
                .await
                .map(|results| pb::ClusterVerifyResponse {
                    results: results
                        .into_iter()
                        .map(|r| match r.result {
                            Ok(result) => pb::NodeVerify {
                                host: r.host,
                                error: String::new(),
                                result: Some(result),
                            },
                            Err(error) => pb::NodeVerify {
                                host: r.host,
                                error,
                                result: None,
                            },
                        })
                        .collect(),
                    ..Default::default()
                })
                .map_err(to_status);
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[instrument(skip_all)]
    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let last_check = self.consistency.lock().expect("never poisoned").clone();
        let schedule = self.schedule.lock().expect("never poisoned").clone();
        let window_days = self.cluster.config.verify.window_days;
        let nodes = cluster::status(&self.cluster, &self.agents)
            .await
            .into_iter()
            .map(|s| pb::NodeStatus {
                host: s.host.clone(),
                reachable: s.info.is_ok(),
                error: s
                    .info
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                info: s.info.ok(),
                agrees: s.agrees,
                identity_error: s.identity.unwrap_or_default(),
                bucket: s.bucket,
                last_backup: s
                    .last_backup
                    .as_ref()
                    .ok()
                    .and_then(|b| b.as_ref().map(last_backup)),
                bucket_error: s.last_backup.err().unwrap_or_default(),
                bucket_owner: s.bucket_owner.unwrap_or_default(),
                consistency: last_counts(last_check.as_ref(), &s.host),
                consistency_checked: last_check.as_ref().map_or(0, |c| c.checked),
                outside_ring: false,
                verification: Some(verification_status(s.verification, window_days)),
                schedule: schedule.get(&s.host).map(schedule::NodeState::to_pb),
            })
            .collect();
        let mut nodes: Vec<pb::NodeStatus> = nodes;
        let sources = &self.members[self.agents.len()..];
        let infos = futures::future::join_all(sources.iter().map(AgentApi::info)).await;
        for (agent, info) in sources.iter().zip(infos) {
            let host = agent.host().to_string();
            nodes.push(pb::NodeStatus {
                reachable: info.is_ok(),
                error: info
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                info: info.ok(),
                agrees: true,
                consistency: last_counts(last_check.as_ref(), &host),
                consistency_checked: last_check.as_ref().map_or(0, |c| c.checked),
                outside_ring: true,
                host,
                ..Default::default()
            });
        }
        Ok(Response::new(pb::ClusterStatusResponse {
            ring_fingerprint: self.cluster.ring.fingerprint().to_string(),
            nodes,
        }))
    }

    #[instrument(skip_all)]
    async fn cluster_backup(
        &self,
        req: Request<pb::ClusterBackupRequest>,
    ) -> Result<Response<Self::ClusterBackupStream>, Status> {
        let req = req.into_inner();
        let request = pb::BackupRequest {
            globs: req.globs,
            regex: req.regex,
            noop: req.noop,
            verify_all: req.verify_all,
            allow_shrink: req.allow_shrink,
        };
        let slot = match request.noop {
            true => None,
            false => {
                let now = Version::now();
                let slot = BackupSlot::take(&self.backup_running, now).map_err(|started| {
                    Status::failed_precondition(format!(
                        "a cluster backup started at {started} is still running; wait for it to \
                         end (bucky status shows its progress)"
                    ))
                })?;
                Some(slot)
            }
        };
        let (tx, rx) = mpsc::channel(64);
        let (cluster, agents) = (self.cluster.clone(), self.agents.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let progress_tx = tx.clone();
            let progress = move |host: &str, done: u64, total: u64| {
                // Progress is best effort: a slow client skips updates, never stalls the backup.
                let _ = progress_tx.try_send(Ok(pb::ClusterBackupResponse {
                    host: host.into(),
                    done,
                    total,
                    results: vec![],
                }));
            };
            let concurrency = cluster.config.concurrency;
            let splay = std::time::Duration::from_secs(cluster.config.splay_secs);
            let last =
                match cluster::backup(&cluster, &agents, request, concurrency, splay, &progress)
                    .await
                {
                    Ok(results) => Ok(pb::ClusterBackupResponse {
                        results: results
                            .into_iter()
                            .map(|r| {
                                let (outcome, reason) = match r.outcome {
                                    Outcome::Ok => ("ok", String::new()),
                                    Outcome::Partial(why) => ("partial", why),
                                    Outcome::Failed(why) => ("failed", why),
                                };
                                pb::NodeBackup {
                                    host: r.host,
                                    outcome: outcome.into(),
                                    reason,
                                    result: r.result,
                                }
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    Err(e) => Err(to_status(e)),
                };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[instrument(skip_all, fields(node = %req.get_ref().host))]
    async fn cluster_restore(
        &self,
        req: Request<pb::ClusterRestoreRequest>,
    ) -> Result<Response<Self::ClusterRestoreStream>, Status> {
        let req = req.into_inner();
        let selection = Selection::new(&req.globs, None)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let request = RestoreRequest {
            target: req.host,
            at: (req.at != 0).then_some(Version(req.at)),
            all: req.all,
            dry_run: req.dry_run,
        };
        // Planned once: the client sees the plan before anything is written, and that plan is
        // the one executed.
        let plan = cluster::plan_host(&self.cluster, &self.agents, &request, &selection)
            .await
            .map_err(to_status)?;
        let summary = pb::RestorePlanSummary {
            metrics: plan.summary.metrics,
            sources: plan
                .summary
                .sources
                .iter()
                .map(|(bucket, t)| pb::SourceSummary {
                    bucket: bucket.clone(),
                    steps: t.steps,
                    bytes: t.bytes,
                })
                .collect(),
            not_owned: plan.summary.not_owned.iter().take(NAMED).cloned().collect(),
            not_owned_count: plan.summary.not_owned_count,
            corrupt_passed_count: plan.summary.corrupt_passed_count,
            corrupt_passed: plan.summary.corrupt_passed.clone(),
            corrupt_only_count: plan.summary.corrupt_only_count,
        };
        // Progress counts metrics, as the plan summary does.
        let total = plan.summary.metrics;
        let (tx, rx) = mpsc::channel(64);
        let _ = tx
            .send(Ok(pb::ClusterRestoreResponse {
                plan: Some(summary),
                total,
                ..Default::default()
            }))
            .await;
        if request.dry_run && req.show > 0 {
            let mut planned = plan.stream();
            let mut left = req.show;
            let mut batch = Vec::new();
            while left > 0
                && let Some(next) = planned.recv().await
            {
                if let cluster::Planned::Metric(steps) = next {
                    batch.push(planned_metric(steps));
                    left -= 1;
                }
                if batch.len() == NAMED || (left == 0 && !batch.is_empty()) {
                    let metrics = std::mem::take(&mut batch);
                    let _ = tx
                        .send(Ok(pb::ClusterRestoreResponse {
                            metrics,
                            ..Default::default()
                        }))
                        .await;
                }
            }
            if !batch.is_empty() {
                let _ = tx
                    .send(Ok(pb::ClusterRestoreResponse {
                        metrics: batch,
                        ..Default::default()
                    }))
                    .await;
            }
        }
        if !request.dry_run {
            let agents = self.agents.clone();
            tokio::spawn(async move {
                let progress_tx = tx.clone();
                let progress = move |done: u64, total: u64| {
                    let _ = progress_tx.try_send(Ok(pb::ClusterRestoreResponse {
                        done,
                        total,
                        ..Default::default()
                    }));
                };
                let last = match cluster::execute_plan(&agents, &plan, progress).await {
                    Ok(result) => Ok(pb::ClusterRestoreResponse {
                        done: total,
                        total,
                        result: Some(result),
                        ..Default::default()
                    }),
                    Err(e) => Err(to_status(e)),
                };
                let _ = tx.send(last).await;
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[instrument(skip_all, fields(metric = %req.get_ref().metric))]
    async fn list_versions(
        &self,
        req: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let metric = req.into_inner().metric;
        bucky_shared::metric::validate(&metric)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let found = cluster::list_versions(&self.cluster, &metric)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListVersionsResponse {
            buckets: found
                .into_iter()
                .map(|(host, bucket, versions)| pb::StoredVersions {
                    host,
                    bucket,
                    versions: versions.iter().map(|v| v.0).collect(),
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_backup_is_refused_until_the_first_ends() {
        let slot = Arc::default();
        let first = BackupSlot::take(&slot, Version(100)).unwrap();
        assert_eq!(
            BackupSlot::take(&slot, Version(160)).err(),
            Some(Version(100))
        );
        drop(first);
        assert!(BackupSlot::take(&slot, Version(200)).is_ok());
    }
}
