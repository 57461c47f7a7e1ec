//! Moves benchmark: a rebalance moving every metric of a node outside the ring to the ring's
//! node, agent to agent on loopback (the coordinator, both agents and the destination's fsyncs
//! in this process), against the same tree copied with `tar | tar` in the same run; then a heal
//! of two replicas with their own outages. Realistic files: `60s:30d,15m:2y` (1.36 MB), 30 days of
//! 1-minute data written like carbon-cache. At two sizes, so growth is seen.
//!
//! `cargo bench -p bucky-coordinator --bench moves [-- --sizes 200,600]`
//!
//! Unpaced (`[moves]` rates 0). The baseline is `tar -cf - . | tar -xf -` between two directories
//! of the same file system, timed alone and with the `sync` that puts its files on disk (bucky
//! fsyncs each new file before renaming it into place). Memory: the peak resident set of this
//! process during the rebalance above what it held before, per metric moved; the growth line
//! gives the marginal bytes per metric between the two sizes (agents and coordinator together,
//! so an upper bound for the coordinator's).

#![allow(unsafe_code)] // malloc_trim, so the peak is measured from what is live.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use bucky_agent::service::AgentConfig;
use bucky_coordinator::agents::GrpcAgent;
use bucky_coordinator::config::{self, MovesSection};
use bucky_coordinator::rebalance::{self, Job};
use bucky_shared::metric;
use bucky_shared::selection::Selection;
use bucky_shared::synth::{self, Rng};
use bucky_shared::whisper;

const TOKEN: &str = "moves-bench-token";
const MINUTES_30_DAYS: i64 = 30 * 24 * 60;
const UNPACED: MovesSection = MovesSection {
    metrics_per_sec: 0.0,
    mb_per_sec: 0.0,
};

fn main() -> anyhow::Result<()> {
    let mut sizes = vec![200usize, 600];
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
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "moves benchmark: schema 60s:30d,15m:2y, 30 days of 1-minute data, loopback, {} cores",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    let mut memory = Vec::new();
    for &n in &sizes {
        memory.push((n, runtime.block_on(measure(n))?));
    }
    if let [(a, mem_a), .., (b, mem_b)] = memory[..] {
        println!(
            "\ngrowth: rebalance peak memory {:.1} MB at {a} metrics, {:.1} MB at {b}: {:.0} bytes \
             per metric moved",
            mem_a as f64 / 1e6,
            mem_b as f64 / 1e6,
            (mem_b as f64 - mem_a as f64) / (b - a) as f64
        );
    }
    Ok(())
}

fn name(i: usize) -> String {
    format!("bench.h{:02}.m{:04}", i % 50, i)
}

/// Writes replica `replica` of `n` series under `root`; returns the bytes written.
fn generate(root: &Path, n: usize, now: i64, replica: u64) -> anyhow::Result<u64> {
    let schema = whisper::parse_retentions(&["60s:30d", "15m:2y"])?;
    let mut bytes = 0;
    for i in 0..n {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
        let series = synth::random_walk(&mut rng, now, MINUTES_30_DAYS);
        let mut outages = Rng::new(replica.wrapping_mul(0x2545_f491) ^ i as u64);
        let missing = synth::outages(&mut outages, now, MINUTES_30_DAYS * 60, 20);
        let image = synth::carbon_written(&schema, &series, &missing, 30)?;
        let path = metric::path_of(root, &name(i))?;
        std::fs::create_dir_all(path.parent().context("a parent")?)?;
        std::fs::write(&path, image.bytes())?;
        bytes += image.bytes().len() as u64;
    }
    Ok(bytes)
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

fn shell(script: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let status = Command::new("sh").arg("-c").arg(script).status()?;
    if !status.success() {
        bail!("{script}: {status}");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Serves agents for `nodes` (trees under `dir/<node>`) and returns the cluster: `ring` hosts
/// with `replication`, the others as sources outside the ring.
async fn serve(
    dir: &Path,
    ring: &[&str],
    sources: &[&str],
    replication: usize,
) -> anyhow::Result<(
    config::Cluster,
    Vec<GrpcAgent>,
    Vec<tokio::sync::oneshot::Sender<()>>,
)> {
    let mut lines = (String::new(), String::new());
    let mut stops = Vec::new();
    for (i, node) in ring.iter().chain(sources).enumerate() {
        std::fs::create_dir_all(dir.join(node))?;
        let config = AgentConfig::new(
            node,
            &dir.join(node),
            &format!("file://{}/buckets/{node}", dir.display()),
        );
        let (addr, stop) = bucky_agent::server::spawn_loopback(config, TOKEN).await?;
        let line = format!("{node} = \"http://{addr}\"\n");
        if i < ring.len() {
            lines.0.push_str(&line);
        } else {
            lines.1.push_str(&line);
        }
        stops.push(stop);
    }
    let destinations: Vec<String> = ring.iter().map(|h| format!("\"{h}:2004\"")).collect();
    let text = format!(
        "token_file = \"unused\"\n[ring]\nreplication = {replication}\ndestinations = [{}]\n\
         [buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{}[sources]\n{}",
        destinations.join(", "),
        dir.display(),
        lines.0,
        lines.1
    );
    let cluster = config::parse(&text, &dir.join("coordinator.toml"))?;
    let agents = cluster
        .members()
        .iter()
        .map(|h| GrpcAgent::new(&h.name, &h.agent, TOKEN, None))
        .collect::<Result<_, _>>()?;
    Ok((cluster, agents, stops))
}

/// One size: tar | tar, the rebalance, the heal. Returns the rebalance's peak memory.
async fn measure(n: usize) -> anyhow::Result<u64> {
    let work = tempfile::tempdir_in(std::env::temp_dir())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let started = Instant::now();
    let bytes = generate(&work.path().join("old"), n, now, 1)?;
    println!(
        "\n{n} metrics ({:.0} MB), generated in {:.1} s",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    shell("sync")?;

    let (old, copy) = (work.path().join("old"), work.path().join("tar-copy"));
    std::fs::create_dir_all(&copy)?;
    let tar = shell(&format!(
        "tar -C '{}' -cf - . | tar -C '{}' -xf -",
        old.display(),
        copy.display()
    ))?;
    let tar_sync = tar + shell("sync")?;
    std::fs::remove_dir_all(&copy)?;
    shell("sync")?;

    let (cluster, agents, _stops) = serve(work.path(), &["new"], &["old"], 1).await?;
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    // Writing 5 resets the peak (VmHWM) to the current resident set.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let base = status_kb("VmRSS:");
    let started = Instant::now();
    let all = Selection::default();
    let outcome = rebalance::run(
        &cluster,
        &agents,
        Job::Rebalance,
        UNPACED,
        &all,
        false,
        None,
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:").saturating_sub(base) * 1024;
    let result = match &outcome.nodes[0].result {
        Some(Ok(r)) => r.clone(),
        other => bail!("the rebalance into new failed: {other:?}"),
    };
    if result.written != n as u64 || result.failed_count > 0 {
        bail!("the rebalance wrote {} of {n}: {result:?}", result.written);
    }
    for i in (0..n).step_by(97) {
        let a = std::fs::read(metric::path_of(&old, &name(i))?)?;
        let b = std::fs::read(metric::path_of(&work.path().join("new"), &name(i))?)?;
        if a != b {
            bail!("{} differs after the move", name(i));
        }
    }
    let row = |what: &str, secs: f64, baseline: Option<f64>| {
        let ratio = baseline.map_or(String::new(), |b| {
            format!("   {:.0}% of its rate", 100.0 * b / secs)
        });
        println!(
            "  {what:<44} {secs:>8.2} s {:>8.0} metrics/s {:>7.0} MB/s{ratio}",
            n as f64 / secs,
            bytes as f64 / 1e6 / secs
        );
    };
    row("tar | tar (baseline)", tar, None);
    row("tar | tar; sync", tar_sync, None);
    row("bucky rebalance, agent to agent (vs tar)", secs, Some(tar));
    row("bucky rebalance (vs tar; sync)", secs, Some(tar_sync));
    println!(
        "  rebalance peak memory {:.1} MB ({:.0} bytes per metric moved)",
        peak as f64 / 1e6,
        peak as f64 / n as f64
    );
    drop(_stops);
    drop(agents);

    // Heal: two replicas of every metric with their own outages, both owners (replication 2):
    // the last 8 hours (what a node that was down that long needs), then, on fresh replicas,
    // every point.
    for (label, since) in [
        ("the last 8 hours", now - 8 * 3600),
        ("every point     ", 0),
    ] {
        for node in ["r1", "r2"] {
            let _ = std::fs::remove_dir_all(work.path().join(node));
            generate(
                &work.path().join(node),
                n,
                now,
                if node == "r1" { 2 } else { 3 },
            )?;
        }
        shell("sync")?;
        let (cluster, agents, _stops) = serve(work.path(), &["r1", "r2"], &[], 2).await?;
        let started = Instant::now();
        let job = Job::Heal { only: None, since };
        let outcome = rebalance::run(&cluster, &agents, job, UNPACED, &all, false, None).await;
        let secs = started.elapsed().as_secs_f64();
        let (mut points, mut received) = (0, 0);
        for node in &outcome.nodes {
            match &node.result {
                Some(Ok(r)) if r.failed_count == 0 => {
                    points += r.points_filled;
                    received += r.bytes_received;
                }
                other => bail!("the heal failed: {other:?}"),
            }
        }
        println!(
            "  bucky heal, 2 replicas, {label} {secs:>8.2} s {:>8.0} metrics/s {:>7.0} points filled/s ({points} points), {:.1} KB received per copy",
            2.0 * n as f64 / secs,
            points as f64 / secs,
            received as f64 / (2.0 * n as f64) / 1e3
        );
    }
    Ok(peak)
}
