//! `bucky demo`: a whole cluster on this machine in under a minute, no config, no service. A
//! coordinator and three agents run in-process on loopback ports with whisper trees in a temp dir
//! (metrics placed by a carbon_ch ring, days of minute data written like carbon-cache writes) and
//! `file://` buckets; the demo backs the cluster up, wipes one node, restores it from the buckets,
//! shows the status and checks the restored files against the originals.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use bucky_agent::service::AgentConfig;
use bucky_coordinator::agents::GrpcAgent;
use bucky_coordinator::cluster::{self, Outcome, RestoreRequest};
use bucky_coordinator::config::{self, Cluster};
use bucky_proto::v1 as pb;
use bucky_shared::synth::{self, Rng};
use bucky_shared::{metric, whisper};
use clap::Args;

const HOSTS: [&str; 3] = ["graphite-01", "graphite-02", "graphite-03"];
const TOKEN: &str = "bucky-demo-token";

/// Run a three-node cluster locally: backup, lose a node, restore it, verify.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Metrics across the cluster.
    #[arg(long, default_value_t = 3000)]
    pub metrics: usize,
    /// Days of minute data per metric (what the schema keeps of them).
    #[arg(long, default_value_t = 3)]
    pub days: i64,
    /// Retentions of every file, as in storage-schemas.conf; `60s:1h` (748-byte files) fits a
    /// million-metric demo on a laptop disk.
    #[arg(long, value_delimiter = ',', default_value = "60s:3d,15m:30d")]
    pub schema: Vec<String>,
    /// Keep the demo directory (trees, buckets, configs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON document at the end (`dir`, `kept`, `metrics`, `backup`, `restore`,
    /// `status`, `verified_files`, `commands`, `seconds`) instead of the narration.
    #[arg(long)]
    pub json: bool,
}

/// What `demo --json` prints: the figures the narration gives, per step.
#[derive(Debug, Default, serde::Serialize)]
struct DemoReport {
    dir: PathBuf,
    kept: bool,
    metrics: usize,
    per_host: Vec<HostCount>,
    ring_fingerprint: String,
    backup: Vec<BackupLine>,
    backup_seconds: f64,
    restore: RestoreLine,
    status: Vec<StatusLine>,
    verified_files: usize,
    /// With `--keep`: the commands that start the kept cluster again.
    commands: Vec<String>,
    seconds: f64,
}

#[derive(Debug, serde::Serialize)]
struct HostCount {
    host: String,
    metrics: usize,
}

#[derive(Debug, serde::Serialize)]
struct BackupLine {
    host: String,
    outcome: String,
    new: u64,
    bytes_uploaded: u64,
}

#[derive(Debug, Default, serde::Serialize)]
struct RestoreLine {
    host: String,
    wiped_files: usize,
    planned: u64,
    written: u64,
    seconds: f64,
}

#[derive(Debug, serde::Serialize)]
struct StatusLine {
    host: String,
    reachable: bool,
    ring_agrees: bool,
    metrics: u64,
    last_backup_metrics: usize,
}

/// Runs the demo.
///
/// # Errors
/// Any step that fails, named; the restored data not matching the original.
pub fn run(args: DemoArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if args.json {
        let mut report = DemoReport::default();
        // The narration's hint to rerun with --keep goes to the sink; the error carries it.
        narrate(&args, &mut std::io::sink(), &mut report).map_err(|e| match args.keep {
            true => e,
            false => e.context(format!(
                "the demo failed (run with --keep to inspect {})",
                report.dir.display()
            )),
        })?;
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    narrate(&args, out, &mut DemoReport::default())
}

fn narrate(args: &DemoArgs, out: &mut impl Write, report: &mut DemoReport) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("bucky-demo-").tempdir()?;
    let root = dir.path().to_path_buf();
    report.dir = root.clone();
    writeln!(out, "bucky demo in {}", root.display())?;
    let result = tokio::runtime::Runtime::new()?.block_on(demo(args, &root, out, report));
    if result.is_err() && !args.keep {
        writeln!(out, "(run with --keep to inspect {})", root.display())?;
    }
    if args.keep {
        let kept = dir.keep();
        report.kept = true;
        writeln!(out, "kept {}", kept.display())?;
        report.commands = keep_configs(&kept, out)?;
    }
    result?;
    report.seconds = started.elapsed().as_secs_f64();
    writeln!(out, "demo finished in {:.1} s", report.seconds)?;
    Ok(())
}

/// Writes a token and the configs of the demo's cluster beside its trees and buckets, and prints
/// the commands that start it again as real processes and run the tour against it.
fn keep_configs(root: &Path, out: &mut impl Write) -> anyhow::Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let token = root.join("token");
    std::fs::write(&token, format!("{TOKEN}\n"))?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))?;
    let free_port = || -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let ring = format!(
        "[ring]\nhash = \"carbon_ch\"\ndestinations = [{}]\n",
        HOSTS
            .iter()
            .map(|h| format!("\"{h}:2004\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut agents = String::new();
    let mut commands = Vec::new();
    for host in HOSTS {
        let port = free_port()?;
        let config = root.join(format!("{host}.toml"));
        std::fs::write(
            &config,
            format!(
                "node = \"{host}\"\nwhisper_root = \"{}\"\nbucket = \"file://{}/buckets/{host}\"\ntoken_file = \"{}\"\nlisten = \"127.0.0.1:{port}\"\n{ring}",
                tree(root, host).display(),
                root.display(),
                token.display()
            ),
        )?;
        agents.push_str(&format!("{host} = \"http://127.0.0.1:{port}\"\n"));
        commands.push(format!("bucky-agent serve --config {} &", config.display()));
    }
    let port = free_port()?;
    let coordinator = root.join("coordinator.toml");
    std::fs::write(
        &coordinator,
        format!(
            "listen = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n{ring}[buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{agents}",
            token.display(),
            root.display()
        ),
    )?;
    commands.push(format!(
        "bucky-coordinator serve --config {} &",
        coordinator.display()
    ));
    commands.push(format!(
        "export BUCKY_COORDINATOR=http://127.0.0.1:{port} BUCKY_TOKEN_FILE={}",
        token.display()
    ));
    commands.extend(
        [
            "bucky status",
            "bucky backup",
            "bucky restore --host graphite-02 --dry-run",
        ]
        .map(String::from),
    );
    writeln!(
        out,
        "configs and token written beside the trees; to run this cluster again as processes and take the README's tour:"
    )?;
    for command in &commands {
        writeln!(out, "  {command}")?;
    }
    Ok(commands)
}

fn tree(root: &Path, host: &str) -> PathBuf {
    root.join("whisper").join(host)
}

fn files(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((p.strip_prefix(dir)?.to_path_buf(), std::fs::read(&p)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn demo(
    args: &DemoArgs,
    root: &Path,
    out: &mut impl Write,
    report: &mut DemoReport,
) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let destinations: Vec<String> = HOSTS.iter().map(|h| format!("\"{h}:2004\"")).collect();
    let config_text = |agents: &str| {
        format!(
            "token_file = \"unused\"\n[ring]\nhash = \"carbon_ch\"\ndestinations = [{}]\n[buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{agents}",
            destinations.join(", "),
            root.display()
        )
    };
    let placeholder: String = HOSTS
        .iter()
        .map(|h| format!("{h} = \"http://127.0.0.1:9\"\n"))
        .collect();
    let ring = config::parse(&config_text(&placeholder), &root.join("coordinator.toml"))?.ring;

    // 1. Trees, placed by the ring, written like carbon-cache writes.
    let step = Instant::now();
    let schema = whisper::parse_retentions(&args.schema)?;
    let minutes = args.days.clamp(1, 3) * 1440;
    let mut per_host = [0usize; 3];
    for i in 0..args.metrics {
        // Unique names: 12 per host name, 4 kinds x 3 instances.
        let name = format!(
            "servers.web{:03}.{}.m{}",
            i / 12,
            ["cpu", "memory", "disk", "net"][i % 4],
            i % 12 / 4
        );
        let host = &ring.destinations()[ring.owners(&name)[0]].host;
        let index = HOSTS
            .iter()
            .position(|h| h == host)
            .expect("the ring's hosts");
        per_host[index] += 1;
        let mut rng = Rng::new(i as u64 + 1);
        let series = synth::random_walk(&mut rng, now, minutes);
        let missing = synth::outages(&mut rng, now, minutes * 60, 5);
        let image = synth::carbon_written(&schema, &series, &missing, 60)?;
        let path = metric::path_of(&tree(root, host), &name)?;
        std::fs::create_dir_all(path.parent().expect("metric paths have a directory"))?;
        std::fs::write(&path, image.bytes())?;
    }
    report.metrics = args.metrics;
    report.per_host = HOSTS
        .iter()
        .zip(per_host)
        .map(|(h, n)| HostCount {
            host: h.to_string(),
            metrics: n,
        })
        .collect();
    writeln!(
        out,
        "1. wrote {} metrics ({} days of minute data, schema {}) placed by carbon_ch: {} in {:.1} s",
        args.metrics,
        minutes / 1440,
        args.schema.join(","),
        HOSTS
            .iter()
            .zip(per_host)
            .map(|(h, n)| format!("{h} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        step.elapsed().as_secs_f64()
    )?;

    // 2. Agents and the coordinator's view of them.
    let mut stops = Vec::new();
    let mut agent_lines = String::new();
    for host in HOSTS {
        let config = AgentConfig {
            ring_fingerprint: ring.fingerprint().to_string(),
            lock_timeout: Duration::from_secs(5),
            ..AgentConfig::new(
                host,
                &tree(root, host),
                &format!("file://{}/buckets/{host}", root.display()),
            )
        };
        let (addr, stop) = bucky_agent::server::spawn_loopback(config, TOKEN).await?;
        stops.push(stop);
        agent_lines.push_str(&format!("{host} = \"http://{addr}\"\n"));
    }
    let cluster: Cluster =
        config::parse(&config_text(&agent_lines), &root.join("coordinator.toml"))?;
    let agents: Vec<GrpcAgent> = cluster
        .hosts
        .iter()
        .map(|h| GrpcAgent::new(&h.name, &h.agent, TOKEN, None))
        .collect::<Result<_, _>>()?;
    report.ring_fingerprint = ring.fingerprint().to_string();
    writeln!(
        out,
        "2. started 3 agents on loopback; ring {}",
        ring.fingerprint()
    )?;

    // 3. Cluster backup.
    let step = Instant::now();
    let results = cluster::backup(
        &cluster,
        &agents,
        pb::BackupRequest::default(),
        3,
        Duration::ZERO,
        &|_, _, _| {},
    )
    .await?;
    for r in &results {
        let res = r.result.clone().unwrap_or_default();
        let outcome = match &r.outcome {
            Outcome::Ok => "ok".to_string(),
            Outcome::Partial(why) => format!("partial ({why})"),
            Outcome::Failed(why) => format!("failed ({why})"),
        };
        writeln!(
            out,
            "   {:<12} {outcome}: {} new, {} bytes uploaded",
            r.host, res.new, res.bytes_uploaded
        )?;
        report.backup.push(BackupLine {
            host: r.host.clone(),
            outcome: outcome.clone(),
            new: res.new,
            bytes_uploaded: res.bytes_uploaded,
        });
        ensure!(
            r.outcome == Outcome::Ok,
            "{} did not back up: {outcome}",
            r.host
        );
    }
    report.backup_seconds = step.elapsed().as_secs_f64();
    writeln!(
        out,
        "3. backed the cluster up into file:// buckets in {:.1} s",
        report.backup_seconds
    )?;

    // 4. Lose a node.
    let lost = tree(root, HOSTS[1]);
    let original = files(&lost)?;
    std::fs::remove_dir_all(&lost)?;
    writeln!(out, "4. wiped {} ({} files)", HOSTS[1], original.len())?;

    // 5. Restore it.
    let step = Instant::now();
    let request = RestoreRequest {
        target: HOSTS[1].into(),
        ..RestoreRequest::default()
    };
    let (plan, result) =
        cluster::restore_host(&cluster, &agents, &request, &Default::default(), |_, _| {}).await?;
    let result = result.context("the restore returned no result")?;
    if let Some(first) = result.failed.first() {
        bail!(
            "{} metrics were not restored, first {}: {}",
            result.failed_count,
            first.metric,
            first.error
        );
    }
    report.restore = RestoreLine {
        host: HOSTS[1].to_string(),
        wiped_files: original.len(),
        planned: plan.metric_count() as u64,
        written: result.written,
        seconds: step.elapsed().as_secs_f64(),
    };
    writeln!(
        out,
        "5. restored {}: {} metrics planned, {} written, in {:.1} s",
        HOSTS[1],
        plan.metric_count(),
        result.written,
        report.restore.seconds
    )?;

    // 6. Status.
    writeln!(out, "6. status:")?;
    for s in cluster::status(&cluster, &agents).await {
        let info = s.info.as_ref().ok();
        let last = s.last_backup.as_ref().ok().and_then(|b| b.as_ref());
        writeln!(
            out,
            "   {:<12} reachable {:<5} ring agrees {:<5} metrics {:>5}  last backup: {} metrics",
            s.host,
            info.is_some(),
            s.agrees,
            info.map_or(0, |i| i.metric_count),
            last.map_or(0, |b| b.metrics)
        )?;
        report.status.push(StatusLine {
            host: s.host.clone(),
            reachable: info.is_some(),
            ring_agrees: s.agrees,
            metrics: info.map_or(0, |i| i.metric_count),
            last_backup_metrics: last.map_or(0, |b| b.metrics),
        });
    }

    // 7. Verify.
    let restored = files(&lost)?;
    if restored != original {
        bail!(
            "the restored files of {} differ from the originals",
            HOSTS[1]
        );
    }
    report.verified_files = restored.len();
    writeln!(
        out,
        "7. verified: all {} restored files are byte-identical to the originals",
        restored.len()
    )?;
    drop(stops);
    Ok(())
}
