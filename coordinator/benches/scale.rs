//! Scale benchmark: one node of many tiny whisper files (`60s:1h`, 748 bytes each, 60 points)
//! backed up into a `file://` bucket, backed up again unchanged, planned, wiped and restored
//! through the coordinator, with the node's status asked in between. Printed at each size so
//! growth with the number of metrics is seen, not assumed.
//!
//! `cargo bench -p bucky-coordinator --bench scale [-- --sizes 100000,1000000] [--backup-only]`
//!
//! Memory is the peak resident set of this process during each step above what it held when the
//! step began (freed memory is first handed back with `malloc_trim`, then Linux `clear_refs`
//! resets the peak), per metric; the growth line gives the marginal bytes per metric between the
//! two sizes, which a fixed base does not blur. Everything runs in one process:
//! backups and restores as the agent runs them, the plan and status as the coordinator does
//! (the restore's figure holds both the agent and the coordinator). Requests are those the
//! bucket sent (every GET, PUT, DELETE and listing).

#![allow(unsafe_code)] // malloc_trim, so a step's peak is measured from what is live.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bucky_agent::backup::{BackupOptions, backup};
use bucky_agent::bucket::{Bucket, StoreOptions};
use bucky_agent::service::AgentConfig;
use bucky_coordinator::agents::GrpcAgent;
use bucky_coordinator::cluster::{self, RestoreRequest};
use bucky_coordinator::config;
use bucky_shared::layout::Version;
use bucky_shared::metric;
use bucky_shared::whisper::{self, CreateOptions, Whisper};

const TOKEN: &str = "scale-bench-token";
const HOST: &str = "graphite-01";

fn main() -> anyhow::Result<()> {
    let mut sizes = vec![100_000usize, 1_000_000];
    let mut backup_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .context("--sizes N,M")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--backup-only" => backup_only = true,
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "scale benchmark: one node, tiny whisper files (60s:1h, 748 bytes), file:// bucket, {} cores",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    let mut rows = Vec::new();
    for &n in &sizes {
        let (row, work) = runtime.block_on(measure(n, backup_only))?;
        row.print();
        rows.push(row);
        // Printed first: removing millions of files (with online discard) takes minutes.
        drop(work);
    }
    if let [small, .., large] = rows.as_slice() {
        println!(
            "growth {} -> {} metrics ({:.0}x): time per metric, first backup {:.2}x, unchanged re-run {:.2}x, restore {:.2}x, plan {:.2}x; memory per metric, backup {:.2}x, restore {:.2}x (1.00x = linear)",
            small.n,
            large.n,
            large.n as f64 / small.n as f64,
            large.per_metric(large.backup.secs) / small.per_metric(small.backup.secs),
            large.per_metric(large.rerun.secs) / small.per_metric(small.rerun.secs),
            large.per_metric(large.restore.secs) / small.per_metric(small.restore.secs),
            large.per_metric(large.plan.secs) / small.per_metric(small.plan.secs),
            large.backup.peak as f64 / large.n as f64 / (small.backup.peak as f64 / small.n as f64),
            large.restore.peak as f64
                / large.n as f64
                / (small.restore.peak as f64 / small.n as f64),
        );
        let marginal =
            |l: Step, s: Step| (l.peak as f64 - s.peak as f64) / (large.n as f64 - small.n as f64);
        println!(
            "marginal memory per metric between the two sizes: first backup {:.0} B, unchanged re-run {:.0} B, plan {:.0} B, restore {:.0} B",
            marginal(large.backup, small.backup),
            marginal(large.rerun, small.rerun),
            marginal(large.plan, small.plan),
            marginal(large.restore, small.restore),
        );
    }
    Ok(())
}

/// One step: how long, and its peak memory above what the process held when it began.
#[derive(Debug, Clone, Copy, Default)]
struct Step {
    secs: f64,
    peak: u64,
}

struct Row {
    n: usize,
    backup: Step,
    rerun: Step,
    rerun_requests: u64,
    manifest_bytes: u64,
    status: Step,
    status_again: Step,
    plan: Step,
    restore: Step,
}

impl Row {
    fn per_metric(&self, secs: f64) -> f64 {
        secs / self.n as f64
    }

    fn print(&self) {
        let n = self.n as f64;
        let rate = |s: Step| n / s.secs;
        let mem = |s: Step| s.peak as f64 / n;
        println!("{} metrics:", self.n);
        println!(
            "  first backup        {:>8.1} s {:>9.0} files/s   peak {:>6.0} bytes/metric",
            self.backup.secs,
            rate(self.backup),
            mem(self.backup)
        );
        println!(
            "  unchanged re-run    {:>8.2} s {:>9.0} files/s   peak {:>6.0} bytes/metric   {} requests ({:.6} per file)",
            self.rerun.secs,
            rate(self.rerun),
            mem(self.rerun),
            self.rerun_requests,
            self.rerun_requests as f64 / n
        );
        println!(
            "  manifest            {:>8.1} bytes/metric in the bucket",
            self.manifest_bytes as f64 / n
        );
        if self.restore.secs == 0.0 {
            return; // --backup-only
        }
        println!(
            "  status, check       {:>8.3} s first (ClusterStatus, which both use: the agent's Info walks the tree, the bucket's summary), {:.3} s again (the walk is reused for 5 minutes)",
            self.status.secs, self.status_again.secs
        );
        println!(
            "  restore plan        {:>8.2} s                     peak {:>6.0} bytes/metric (coordinator)",
            self.plan.secs,
            mem(self.plan)
        );
        println!(
            "  restore (wiped)     {:>8.1} s {:>9.0} files/s   peak {:>6.0} bytes/metric (agent and coordinator)",
            self.restore.secs,
            rate(self.restore),
            mem(self.restore)
        );
    }
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `step`, timing it and measuring its peak resident memory above the start.
async fn step<T>(work: impl std::future::Future<Output = T>) -> (T, Step) {
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    // Writing 5 resets the peak (VmHWM) to the current resident set.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = status_kb("VmRSS:");
    let started = Instant::now();
    let out = work.await;
    let secs = started.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:").saturating_sub(base) * 1024;
    (out, Step { secs, peak })
}

fn name(i: usize) -> String {
    format!("bench.h{:04}.m{:03}", i / 1000, i % 1000)
}

/// Writes `n` tiny files, on every core.
fn generate(root: &Path, n: usize, now: i64) -> anyhow::Result<()> {
    let schema = whisper::parse_retentions(&["60s:1h"])?;
    let empty = whisper::create_image(&schema, &CreateOptions::default())?;
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    std::thread::scope(|scope| {
        for core in 0..cores {
            let empty = empty.clone();
            scope.spawn(move || {
                for i in (core..n).step_by(cores) {
                    let path = metric::path_of(root, &name(i)).expect("a valid name");
                    if i % 1000 == 0 || i % 1000 < cores {
                        std::fs::create_dir_all(path.parent().expect("a parent"))
                            .expect("creating a directory");
                    }
                    let mut file = Whisper::open(empty.clone(), &path).expect("an image");
                    let points: Vec<(i64, f64)> = (0..60)
                        .map(|m| (now - m * 60, (i + m as usize) as f64))
                        .collect();
                    file.update_many(&points, now).expect("points fit");
                    std::fs::write(&path, file.storage().bytes()).expect("writing a file");
                }
            });
        }
    });
    Ok(())
}

async fn measure(n: usize, backup_only: bool) -> anyhow::Result<(Row, tempfile::TempDir)> {
    let work = tempfile::tempdir()?;
    let root = work.path().join("whisper").join(HOST);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let started = Instant::now();
    let (root_owned, _) = (root.clone(), ());
    tokio::task::spawn_blocking(move || generate(&root_owned, n, now)).await??;
    eprintln!(
        "  ({n} files generated in {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    let buckets = work.path().join("buckets");
    let url = format!("file://{}/{HOST}", buckets.display());
    let bucket = Bucket::open(&url, &StoreOptions::default())?;
    let options = BackupOptions {
        workers: 4,
        ..BackupOptions::new(HOST)
    };

    let (first, backup_step) = step(backup(&bucket, &root, &options, Version(now))).await;
    let first = first?;
    anyhow::ensure!(
        first.new == n as u64,
        "first backup: {} new of {n}",
        first.new
    );
    let before = bucket.requests();
    let (rerun, rerun_step) = step(backup(&bucket, &root, &options, Version(now + 60))).await;
    let rerun = rerun?;
    anyhow::ensure!(
        rerun.unchanged == n as u64,
        "re-run: {} unchanged",
        rerun.unchanged
    );
    let rerun_requests = bucket.requests() - before;
    let manifest_bytes = bucket
        .get(
            &bucket
                .layout()
                .manifest_key(rerun.run.expect("a committed run")),
        )
        .await?
        .map_or(0, |b| b.len() as u64);

    if backup_only {
        let row = Row {
            n,
            backup: backup_step,
            rerun: rerun_step,
            rerun_requests,
            manifest_bytes,
            status: Step::default(),
            status_again: Step::default(),
            plan: Step::default(),
            restore: Step::default(),
        };
        return Ok((row, work));
    }

    // The coordinator and the node's agent, on loopback.
    let agent_config = AgentConfig {
        lock_timeout: Duration::from_secs(5),
        ..AgentConfig::new(HOST, &root, &url)
    };
    let text = format!(
        "token_file = \"unused\"\n[ring]\ndestinations = [\"{HOST}:2004\"]\n[buckets]\ntemplate = \"file://{}/{{host}}\"\n[agents]\n{HOST} = \"http://127.0.0.1:9\"\n",
        buckets.display()
    );
    let placement = config::parse(&text, &work.path().join("coordinator.toml"))?;
    let agent_config = AgentConfig {
        ring_fingerprint: placement.ring.fingerprint().to_string(),
        ..agent_config
    };
    let (addr, _stop) = bucky_agent::server::spawn_loopback(agent_config, TOKEN).await?;
    let cluster = config::parse(
        &text.replace("http://127.0.0.1:9", &format!("http://{addr}")),
        &work.path().join("coordinator.toml"),
    )?;
    let agents = vec![GrpcAgent::new(
        HOST,
        &format!("http://{addr}"),
        TOKEN,
        None,
    )?];

    let (statuses, status_step) = step(cluster::status(&cluster, &agents)).await;
    let (_, status_again) = step(cluster::status(&cluster, &agents)).await;
    anyhow::ensure!(
        statuses[0]
            .last_backup
            .as_ref()
            .ok()
            .and_then(|b| b.as_ref())
            .map(|b| b.metrics)
            == Some(n),
        "status does not show the backup"
    );
    let request = RestoreRequest {
        target: HOST.into(),
        ..RestoreRequest::default()
    };
    let (plan, plan_step) = step(cluster::plan_host(
        &cluster,
        &agents,
        &request,
        &Default::default(),
    ))
    .await;
    let plan = plan?;
    anyhow::ensure!(
        plan.metric_count() == n,
        "plan: {} metrics",
        plan.metric_count()
    );
    drop(plan);

    std::fs::remove_dir_all(&root)?;
    std::fs::create_dir_all(&root)?;
    let (restored, restore_step) = step(cluster::restore_host(
        &cluster,
        &agents,
        &request,
        &Default::default(),
        |_, _| {},
    ))
    .await;
    let (_, result) = restored?;
    let result = result.context("a restore result")?;
    anyhow::ensure!(
        result.written == n as u64 && result.failed_count == 0,
        "restore: {} written, {} failed",
        result.written,
        result.failed_count
    );
    let restored_file: PathBuf = metric::path_of(&root, &name(n - 1))?;
    anyhow::ensure!(restored_file.exists(), "restored files are in place");
    Ok((
        Row {
            n,
            backup: backup_step,
            rerun: rerun_step,
            rerun_requests,
            manifest_bytes,
            status: status_step,
            status_again,
            plan: plan_step,
            restore: restore_step,
        },
        work,
    ))
}
