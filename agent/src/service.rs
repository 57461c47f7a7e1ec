//! The Agent gRPC service: each handler converts, calls one domain function, maps the error.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bucky_proto::v1 as pb;
use bucky_shared::layout::Version;
use futures::Stream;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{instrument, warn};

use crate::backup::{self, BackupOptions, Progress};
use crate::node::Node;
use crate::peers::{self, Peers};
use crate::restore::{self, PlanEntry, PlanItem, RestoreOptions};
use crate::sources::Sources;
use crate::tree::Selection;
use crate::verify::{self, Share, VerifyOptions};
use crate::wire;
use bucky_shared::bucket::{Bucket, StoreOptions};
use bucky_shared::layout::Retention;

/// How often a running job's progress is streamed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What the agent serves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node's ring name.
    pub node: String,
    /// The whisper tree.
    pub whisper_root: std::path::PathBuf,
    /// This node's bucket URL.
    pub bucket: String,
    /// Options for opening buckets (this node's and peers' during restores).
    pub store: StoreOptions,
    /// Fingerprint of the configured ring, reported by Info (empty when none).
    pub ring_fingerprint: String,
    /// Longest wait for a whisper file's lock.
    pub lock_timeout: Duration,
    /// Backups read at idle I/O priority.
    pub backup_idle_io: bool,
    /// Largest share of the metrics the last backup saw that may go missing before a backup
    /// is refused (see [`crate::backup::BackupOptions::max_missing_share`]).
    pub max_missing_share: f64,
    /// Retention of versions and of manifests.
    pub retention: (Retention, Retention),
    /// Mode of restored files before the umask, as carbon creates them (0o666).
    pub file_mode: u32,
    /// Bucket URL templates a Restore may read from (`{host}` for any host name).
    pub restore_sources: Vec<String>,
}

impl AgentConfig {
    /// `node` serving `whisper_root` with `bucket`, every other setting at its default.
    pub fn new(node: &str, whisper_root: &std::path::Path, bucket: &str) -> Self {
        AgentConfig {
            node: node.to_string(),
            whisper_root: whisper_root.to_path_buf(),
            bucket: bucket.to_string(),
            store: StoreOptions::default(),
            ring_fingerprint: String::new(),
            lock_timeout: Duration::from_secs(10),
            backup_idle_io: true,
            max_missing_share: 0.5,
            retention: (Retention::default(), Retention::last(60)),
            file_mode: crate::install::DEFAULT_FILE_MODE,
            restore_sources: Sources::for_bucket(bucket, node),
        }
    }
}

#[derive(Debug)]
struct RunningJob {
    kind: &'static str,
    started: i64,
    progress: Arc<Progress>,
}

/// The tonic service.
#[derive(Debug, Clone)]
pub struct AgentService {
    config: Arc<AgentConfig>,
    node: Node,
    bucket: Bucket,
    job: Arc<Mutex<Option<RunningJob>>>,
    /// How to read from peer agents (moves between nodes); `None` until given a token.
    peers: Option<Arc<Peers>>,
}

/// Longest wait for one file from a peer agent.
const PEER_READ_TIMEOUT: Duration = Duration::from_secs(120);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Why an entry's source may not be read: a bucket outside `restore_sources`. Peer agents are
/// named by the coordinator, which holds the cluster's token already.
fn refused(sources: &Sources, entry: &PlanEntry) -> Option<String> {
    match &entry.source {
        restore::Source::Stored { bucket, .. } if !sources.allows(bucket) => {
            Some(sources.refusal(bucket))
        }
        _ => None,
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{e:#}"))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl AgentService {
    /// The service for `config`; opens the node's bucket.
    ///
    /// # Errors
    /// The bucket URL cannot be opened.
    pub fn new(config: AgentConfig) -> anyhow::Result<Self> {
        let bucket = Bucket::open(&config.bucket, &config.store)?;
        let node = Node::new(&config.whisper_root);
        Ok(AgentService {
            config: Arc::new(config),
            node,
            bucket,
            job: Arc::default(),
            peers: None,
        })
    }

    /// Lets restores read from peer agents, calling them with `token` (the cluster's).
    ///
    /// # Errors
    /// The token is not valid in a header.
    pub fn with_peer_token(mut self, token: &str) -> anyhow::Result<Self> {
        self.peers = Some(Arc::new(
            Peers::new(token, PEER_READ_TIMEOUT).map_err(anyhow::Error::msg)?,
        ));
        Ok(self)
    }

    /// Takes the job slot, or says what holds it.
    fn start_job(&self, kind: &'static str) -> Result<Arc<Progress>, Status> {
        let mut slot = self.job.lock().expect("the job lock is never poisoned");
        if let Some(running) = slot.as_ref() {
            return Err(Status::unavailable(format!(
                "a {} is already running since {}",
                running.kind,
                Version(running.started)
            )));
        }
        let progress = Arc::new(Progress::default());
        *slot = Some(RunningJob {
            kind,
            started: now(),
            progress: progress.clone(),
        });
        Ok(progress)
    }

    /// Runs `job` in the background, streaming `progress` until it ends, then `last(result)`.
    fn stream_job<T, R>(
        &self,
        progress: Arc<Progress>,
        job: impl Future<Output = Result<R, Status>> + Send + 'static,
        update: fn(u64, u64, Option<R>) -> T,
    ) -> BoxStream<T>
    where
        T: Send + 'static,
        R: Send + 'static,
    {
        use std::sync::atomic::Ordering;
        let (tx, rx) = mpsc::channel(8);
        let slot = self.job.clone();
        tokio::spawn(async move {
            let mut job = std::pin::pin!(tokio::spawn(job));
            let result = loop {
                tokio::select! {
                    done = &mut job => break done.map_err(internal).and_then(|r| r),
                    () = tokio::time::sleep(PROGRESS_EVERY) => {
                        let (done, total) = (progress.done.load(Ordering::Relaxed), progress.total.load(Ordering::Relaxed));
                        // A client that went away does not stop the job.
                        let _ = tx.send(Ok(update(done, total, None))).await;
                    }
                }
            };
            slot.lock().expect("the job lock is never poisoned").take();
            let (done, total) = (
                progress.done.load(Ordering::Relaxed),
                progress.total.load(Ordering::Relaxed),
            );
            let _ = tx.send(result.map(|r| update(done, total, Some(r)))).await;
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    type BackupStream = BoxStream<pb::BackupResponse>;
    type VerifyStream = BoxStream<pb::VerifyResponse>;
    type RestoreStream = BoxStream<pb::RestoreResponse>;
    type ListMetricsStream = BoxStream<pb::ListMetricsResponse>;
    type ReadMetricStream = BoxStream<pb::ReadMetricResponse>;

    #[instrument(skip_all)]
    async fn list_metrics(
        &self,
        _: Request<pb::ListMetricsRequest>,
    ) -> Result<Response<Self::ListMetricsStream>, Status> {
        // A few batches in flight: the walk runs as fast as the caller reads, no faster.
        let (tx, rx) = mpsc::channel(4);
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            let walked = node.names(|metrics| {
                tx.blocking_send(Ok(pb::ListMetricsResponse { metrics }))
                    .is_ok()
            });
            if let Err(e) = walked {
                warn!(error = %format!("{e:#}"), "listing the tree failed");
                let _ = tx.blocking_send(Err(internal(e)));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[instrument(skip_all, fields(metric = %req.get_ref().metric))]
    async fn confirm(
        &self,
        req: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::ConfirmResponse>, Status> {
        let req = req.into_inner();
        let peers = self
            .peers
            .clone()
            .ok_or_else(|| Status::failed_precondition("this agent has no token for peers"))?;
        let peers::Fetched {
            file: raw, sha1, ..
        } = peers
            .read(
                &req.source_agent,
                &req.metric,
                crate::codec::DEFAULT_MAX_FILE_BYTES,
                None,
                0,
            )
            .await
            .map_err(Status::unavailable)?
            .ok_or_else(|| Status::internal("a peer said unchanged to an unconditional read"))?;
        let path = bucky_shared::metric::path_of(&self.config.whisper_root, &req.metric)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let lock_timeout = self.config.lock_timeout;
        let (source, metric) = (req.source_agent.clone(), req.metric.clone());
        let missing_points = tokio::task::spawn_blocking(move || {
            let image = bucky_shared::whisper::Whisper::open(
                bucky_shared::whisper::Image::new(raw),
                &req.source_agent,
            )
            .map_err(|e| e.to_string())?;
            bucky_shared::fill::missing_points(&image, &path, lock_timeout, now())
                .map_err(|e| format!("{e:#}"))
        })
        .await
        .map_err(internal)?
        .map_err(Status::failed_precondition)?;
        if missing_points > 0 {
            peers.forget(&source, &metric);
        }
        Ok(Response::new(pb::ConfirmResponse {
            sha1,
            missing_points,
        }))
    }

    #[instrument(skip_all, fields(metric = %req.get_ref().metric))]
    async fn delete_metric(
        &self,
        req: Request<pb::DeleteMetricRequest>,
    ) -> Result<Response<pb::DeleteMetricResponse>, Status> {
        let req = req.into_inner();
        let (root, lock_timeout) = (self.config.whisper_root.clone(), self.config.lock_timeout);
        let metric = req.metric.clone();
        tokio::task::spawn_blocking(move || {
            peers::delete_if_unchanged(&root, &req.metric, &req.sha1, lock_timeout)
        })
        .await
        .map_err(internal)?
        .map_err(Status::failed_precondition)?;
        tracing::info!(metric, "moved copy deleted");
        self.node.forget().await;
        Ok(Response::new(pb::DeleteMetricResponse {}))
    }

    #[instrument(skip_all, fields(metric = %req.get_ref().metric))]
    async fn read_metric(
        &self,
        req: Request<pb::ReadMetricRequest>,
    ) -> Result<Response<Self::ReadMetricStream>, Status> {
        let req = req.into_inner();
        let metric = req.metric.clone();
        let (root, lock_timeout) = (self.config.whisper_root.clone(), self.config.lock_timeout);
        let bytes =
            tokio::task::spawn_blocking(move || peers::read_locked(&root, &metric, lock_timeout))
                .await
                .map_err(internal)?
                .map_err(Status::failed_precondition)?;
        let sha1 = crate::codec::sha1_hex(&bytes);
        // The reader may remember only the first 32 hex digits; fewer are not trusted.
        if req.since == 0 && req.unless_sha1.len() >= 32 && sha1.starts_with(&req.unless_sha1) {
            let unchanged = pb::ReadMetricResponse {
                sha1,
                unchanged: true,
                ..Default::default()
            };
            return Ok(Response::new(Box::pin(futures::stream::iter([Ok(
                unchanged,
            )]))));
        }
        let file_size = bytes.len() as u64;
        let (ranges, sha1, partial) = match req.since {
            0 => (std::iter::once(0..bytes.len()).collect(), sha1, false),
            since => {
                let ranges = bucky_shared::whisper::excerpt::ranges_since(
                    &bytes,
                    since,
                    now(),
                    std::path::Path::new(&req.metric),
                )
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
                let sent: Vec<u8> = ranges
                    .iter()
                    .flat_map(|r| bytes[r.clone()].iter().copied())
                    .collect();
                (ranges, crate::codec::sha1_hex(&sent), true)
            }
        };
        let mut chunks: Vec<Result<pb::ReadMetricResponse, Status>> = ranges
            .iter()
            .flat_map(|r| {
                (r.start..r.end.max(r.start + 1))
                    .step_by(peers::CHUNK_BYTES)
                    .map(|at| at..(at + peers::CHUNK_BYTES).min(r.end))
            })
            .map(|c| {
                Ok(pb::ReadMetricResponse {
                    data: bytes[c.clone()].to_vec(),
                    offset: c.start as u64,
                    ..Default::default()
                })
            })
            .collect();
        if let Some(Ok(last)) = chunks.last_mut() {
            last.sha1 = sha1;
            last.file_size = file_size;
            last.partial = partial;
        }
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    #[instrument(skip_all)]
    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let (metric_count, bytes_on_disk) = self
            .node
            .usage_within(crate::node::USAGE_MAX_AGE)
            .await
            .map_err(internal)?;
        let running_job = self
            .job
            .lock()
            .expect("the job lock is never poisoned")
            .as_ref()
            .map(|j| pb::Job {
                kind: j.kind.into(),
                started: j.started,
                done: j.progress.done.load(std::sync::atomic::Ordering::Relaxed),
                total: j.progress.total.load(std::sync::atomic::Ordering::Relaxed),
            });
        Ok(Response::new(pb::InfoResponse {
            node: self.config.node.clone(),
            version: crate::VERSION.into(),
            whisper_root: self.config.whisper_root.display().to_string(),
            metric_count,
            bytes_on_disk,
            ring_fingerprint: self.config.ring_fingerprint.clone(),
            running_job,
            bucket: self.config.bucket.clone(),
        }))
    }

    #[instrument(skip_all)]
    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let req = req.into_inner();
        let regex = (!req.regex.is_empty()).then_some(req.regex.as_str());
        let selection = Selection::new(&req.globs, regex)
            .map_err(|e| Status::invalid_argument(format!("{e:#}")))?;
        let progress = self.start_job("backup")?;
        let options = BackupOptions {
            noop: req.noop,
            verify_all: req.verify_all,
            allow_shrink: req.allow_shrink,
            max_missing_share: self.config.max_missing_share,
            retention: self.config.retention.0,
            manifest_retention: self.config.retention.1,
            selection,
            lock_timeout: self.config.lock_timeout,
            idle_io: self.config.backup_idle_io,
            progress: progress.clone(),
            ..BackupOptions::new(&self.config.node)
        };
        let (bucket, root) = (self.bucket.clone(), self.config.whisper_root.clone());
        let job = async move {
            backup::backup(&bucket, &root, &options, Version(now()))
                .await
                .map(|report| wire::backup_result(&report))
                .map_err(|e| Status::failed_precondition(e.to_string()))
        };
        Ok(Response::new(self.stream_job(
            progress,
            job,
            |done, total, result| pb::BackupResponse {
                done,
                total,
                result,
            },
        )))
    }

    #[instrument(skip_all)]
    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<Self::VerifyStream>, Status> {
        let req = req.into_inner();
        let share = match req.all {
            true => Share::All,
            false if req.share > 0.0 && req.share <= 1.0 => Share::Fraction(req.share),
            false => {
                return Err(Status::invalid_argument(format!(
                    "share {} is not a fraction in (0, 1]",
                    req.share
                )));
            }
        };
        let progress = self.start_job("verify")?;
        let options = VerifyOptions {
            progress: progress.clone(),
            ..VerifyOptions::new(&self.config.node, share)
        };
        let bucket = self.bucket.clone();
        let window = req.window_days.max(1);
        let job = async move {
            verify::verify(&bucket, &options, Version(now()), window)
                .await
                .map(|report| wire::verify_result(&report))
                .map_err(|e| Status::failed_precondition(e.to_string()))
        };
        Ok(Response::new(self.stream_job(
            progress,
            job,
            |done, total, result| pb::VerifyResponse {
                done,
                total,
                result,
            },
        )))
    }

    #[instrument(skip_all)]
    async fn restore(
        &self,
        req: Request<Streaming<pb::RestoreRequest>>,
    ) -> Result<Response<Self::RestoreStream>, Status> {
        let mut batches = req.into_inner();
        let first = batches
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty restore plan"))?;
        let sources = Sources::new(&self.config.restore_sources);
        // The first batch is checked whole before anything starts, so a plan that is wrong from
        // the start is refused, not half run; later bad entries fail alone.
        let mut head = Vec::with_capacity(first.entries.len());
        for entry in first.entries {
            let entry = wire::plan_entry(entry).map_err(|(_, e)| Status::invalid_argument(e))?;
            if let Some(refusal) = refused(&sources, &entry) {
                warn!(refusal, "restore refused: not an allowed source");
                return Err(Status::permission_denied(refusal));
            }
            head.push(PlanItem::Entry(entry));
        }
        let progress = self.start_job(match first.job.as_str() {
            "rebalance" => "rebalance",
            "heal" => "heal",
            _ => "restore",
        })?;
        let peer_throttle =
            crate::throttle::Throttle::new(first.peer_metrics_per_sec, first.peer_bytes_per_sec)
                .map(Arc::new);
        progress
            .total
            .store(first.total, std::sync::atomic::Ordering::Relaxed);
        let rest = batches.flat_map(move |batch| {
            let items: Vec<PlanItem> = match batch {
                Ok(batch) => batch
                    .entries
                    .into_iter()
                    .map(|e| match wire::plan_entry(e) {
                        Ok(entry) => match refused(&sources, &entry) {
                            None => PlanItem::Entry(entry),
                            Some(error) => PlanItem::Invalid {
                                error,
                                metric: entry.metric,
                            },
                        },
                        Err((metric, error)) => PlanItem::Invalid { metric, error },
                    })
                    .collect(),
                Err(status) => vec![PlanItem::Broken(status.message().to_string())],
            };
            futures::stream::iter(items)
        });
        let items = futures::stream::iter(head).chain(rest);
        let (own, store, root) = (
            self.bucket.clone(),
            self.config.store.clone(),
            self.config.whisper_root.clone(),
        );
        let options = RestoreOptions {
            lock_timeout: self.config.lock_timeout,
            file_mode: self.config.file_mode,
            peers: self.peers.clone(),
            peer_throttle,
            ..RestoreOptions::new(now())
        };
        let job_progress = progress.clone();
        let node = self.node.clone();
        let job = async move {
            let open = |url: &str| {
                if url == own.url() {
                    Ok(own.clone())
                } else {
                    Bucket::open(url, &store)
                }
            };
            let items = Box::pin(items);
            let started = std::time::Instant::now();
            tracing::info!(root = %root.display(), metrics = job_progress.total.load(std::sync::atomic::Ordering::Relaxed), "restore started");
            let report = restore::execute_plan(items, &root, open, &options, &job_progress).await;
            tracing::info!(
                root = %root.display(),
                written = report.written,
                filled = report.filled,
                failed = report.failed.len(),
                seconds = started.elapsed().as_secs_f64(),
                "restore ended"
            );
            node.forget().await;
            Ok(wire::restore_result(&report))
        };
        Ok(Response::new(self.stream_job(
            progress,
            job,
            |done, total, result| pb::RestoreResponse {
                done,
                total,
                result,
            },
        )))
    }
}
