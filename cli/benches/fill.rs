//! Fill benchmark: `bucky fill` (safe and carbonate modes) against carbonate 1.1.10's
//! whisper-fill, on identical copies of a generated tree of replica pairs.
//!
//! `cargo bench -p bucky-cli --bench fill [-- --pairs 300 --cli-pairs 50 --no-python]`
//!
//! The tree: schema `60s:30d,15m:2y`, 30 days of 1-minute data written like carbon-cache (one
//! update_many per 30-minute block), each pair two replicas of one series with different outages
//! and single missing points. Two comparisons are printed:
//! - library: every pair filled in one process (bucky in-process without fsync; carbonate's
//!   `fill_archives` in one Python interpreter, clock pinned), so start-up costs are excluded;
//! - command: one process per pair (`bucky fill` vs the `whisper-fill` script) on the first
//!   `--cli-pairs` pairs, as an operator's shell loop would run them.
//!
//! The carbonate-mode results are compared with carbonate's byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bucky_shared::fill::{self, FillMode, FillOptions};
use bucky_shared::synth::{self, Rng};
use bucky_shared::whisper;
use support::{ensure_venv, run_python};

mod support;

const MINUTES_30_DAYS: i64 = 30 * 24 * 60;

struct Args {
    pairs: usize,
    cli_pairs: usize,
    python: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        pairs: 300,
        cli_pairs: 50,
        python: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pairs" => args.pairs = it.next().context("--pairs N")?.parse()?,
            "--cli-pairs" => args.cli_pairs = it.next().context("--cli-pairs N")?.parse()?,
            "--no-python" => args.python = false,
            "--bench" => {} // passed by `cargo bench`
            other => bail!("unknown argument {other}"),
        }
    }
    args.cli_pairs = args.cli_pairs.min(args.pairs);
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let work = tempfile::tempdir()?;
    let started = Instant::now();
    let pairs = generate(&work.path().join("tree"), args.pairs, now)?;
    println!(
        "fill benchmark: {} replica pairs, schema 60s:30d,15m:2y, 30 days of 1-minute data ({:.1} MB per file), generated in {:.1} s",
        pairs.len(),
        std::fs::metadata(&pairs[0].0)?.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    println!(
        "\nlibrary: all pairs in one process, no fsync (bucky: best of {RUNS} runs; carbonate: one run)"
    );
    let safe = time_bucky(&pairs, &work.path().join("safe"), FillMode::Safe, now)?;
    let carb = time_bucky(
        &pairs,
        &work.path().join("carbonate"),
        FillMode::Carbonate,
        now,
    )?;
    let python = if args.python {
        let venv = ensure_venv()?;
        Some(time_python(
            &venv,
            &pairs,
            &work.path().join("python"),
            now,
        )?)
    } else {
        None
    };
    let rows = [
        ("bucky fill --mode safe", safe),
        ("bucky fill --mode carbonate", carb),
    ];
    report(
        &rows,
        python
            .as_ref()
            .map(|p| ("carbonate 1.1.10 fill_archives", p.0)),
        pairs.len(),
    );
    if let Some((_, python_dsts)) = &python {
        let carb_dsts = copies(&pairs, &work.path().join("carbonate"));
        let identical = carb_dsts
            .iter()
            .zip(python_dsts)
            .filter(|(a, b)| std::fs::read(a).ok() == std::fs::read(b).ok())
            .count();
        println!(
            "  carbonate-mode output byte-identical to carbonate's: {identical}/{}",
            pairs.len()
        );
        if identical != pairs.len() {
            bail!(
                "carbonate mode differs from carbonate on {} pairs",
                pairs.len() - identical
            );
        }
    }

    if args.python && args.cli_pairs > 0 {
        let sample = &pairs[..args.cli_pairs];
        println!("\ncommand: one process per pair, {} pairs", sample.len());
        let bucky = time_command(sample, &work.path().join("cli-bucky"), |src, dst| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucky"));
            cmd.args([
                "fill",
                "--mode",
                "carbonate",
                "--no-fsync",
                "--now",
                &now.to_string(),
            ])
            .arg(src)
            .arg(dst);
            cmd
        })?;
        let venv = ensure_venv()?;
        let python = time_command(sample, &work.path().join("cli-python"), |src, dst| {
            let mut cmd = Command::new(venv.join("bin/whisper-fill"));
            cmd.arg(src).arg(dst);
            cmd
        })?;
        report(
            &[("bucky fill --mode carbonate", bucky)],
            Some(("whisper-fill (carbonate 1.1.10)", python)),
            sample.len(),
        );
    }
    Ok(())
}

fn report(rows: &[(&str, f64)], baseline: Option<(&str, f64)>, files: usize) {
    let rate = |secs: f64| files as f64 / secs;
    if let Some((name, secs)) = baseline {
        println!(
            "  {name:<32} {secs:>8.3} s {:>10.1} files/s   (baseline)",
            rate(secs)
        );
    }
    for (name, secs) in rows {
        print!("  {name:<32} {secs:>8.3} s {:>10.1} files/s", rate(*secs));
        if let Some((_, base)) = baseline {
            print!("   {:.1}x the baseline", base / secs);
        }
        println!();
    }
}

/// Copies every dst into `dir` and returns the copies' paths.
fn copy_dsts(pairs: &[(PathBuf, PathBuf)], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let out = copies(pairs, dir);
    for ((_, dst), copy) in pairs.iter().zip(&out) {
        std::fs::copy(dst, copy)?;
    }
    Ok(out)
}

fn copies(pairs: &[(PathBuf, PathBuf)], dir: &Path) -> Vec<PathBuf> {
    (0..pairs.len())
        .map(|i| dir.join(format!("{i}.wsp")))
        .collect()
}

/// Seconds of the fastest of [`RUNS`] runs, each on fresh copies (copying is not timed): this
/// machine is shared, and the best run is the one least disturbed. The copies of the last run
/// stay in `dir`.
fn time_bucky(
    pairs: &[(PathBuf, PathBuf)],
    dir: &Path,
    mode: FillMode,
    now: i64,
) -> anyhow::Result<f64> {
    let options = FillOptions {
        fsync: false,
        ..FillOptions::new(mode, now)
    };
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        let dsts = copy_dsts(pairs, dir)?;
        let start = Instant::now();
        for ((src, _), dst) in pairs.iter().zip(&dsts) {
            fill::fill_files(src, dst, &options)?;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Repetitions of each bucky library run.
const RUNS: usize = 3;

fn time_command(
    pairs: &[(PathBuf, PathBuf)],
    dir: &Path,
    command: impl Fn(&Path, &Path) -> Command,
) -> anyhow::Result<f64> {
    let dsts = copy_dsts(pairs, dir)?;
    let start = Instant::now();
    for ((src, _), dst) in pairs.iter().zip(&dsts) {
        let status = command(src, dst).stdout(Stdio::null()).status()?;
        if !status.success() {
            bail!("fill of {} failed: {status}", dst.display());
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// carbonate's `fill_archives` over all pairs in one interpreter, clock pinned to `now`.
const PYTHON_BENCH: &str = r#"
import json, sys, time
now = float(sys.argv[1])
pairs = json.load(open(sys.argv[2]))
time.time = lambda: now
from carbonate.fill import fill_archives
start = time.perf_counter()
for src, dst in pairs:
    fill_archives(src, dst, now, overwrite=False, lock_writes=False)
print(time.perf_counter() - start)
"#;

fn time_python(
    venv: &Path,
    pairs: &[(PathBuf, PathBuf)],
    dir: &Path,
    now: i64,
) -> anyhow::Result<(f64, Vec<PathBuf>)> {
    let dsts = copy_dsts(pairs, dir)?;
    let list: Vec<(&Path, &Path)> = pairs
        .iter()
        .zip(&dsts)
        .map(|((s, _), d)| (s.as_path(), d.as_path()))
        .collect();
    let list_path = dir.join("pairs.json");
    std::fs::write(&list_path, serde_json::to_string(&list)?)?;
    let now = now.to_string();
    let stdout = run_python(
        venv,
        dir,
        PYTHON_BENCH,
        &[now.as_ref(), list_path.as_os_str()],
    )?;
    let secs: f64 = stdout.trim().parse()?;
    Ok((secs, dsts))
}

/// Writes `count` replica pairs under `dir`: one series each, two replicas with their own
/// outages and 20 single missing points, written carbon-style in 30-minute blocks.
fn generate(dir: &Path, count: usize, now: i64) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let schema = whisper::parse_retentions(&["60s:30d", "15m:2y"])?;
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let pair_dir = dir.join(format!("metric{i:04}"));
        std::fs::create_dir_all(&pair_dir)?;
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
        let series = synth::random_walk(&mut rng, now, MINUTES_30_DAYS);
        let mut paths = Vec::new();
        for name in ["src.wsp", "dst.wsp"] {
            let missing = synth::outages(&mut rng, now, MINUTES_30_DAYS * 60, 20);
            let image = synth::carbon_written(&schema, &series, &missing, 30)?;
            let path = pair_dir.join(name);
            std::fs::write(&path, image.bytes())?;
            paths.push(path);
        }
        pairs.push((paths[0].clone(), paths[1].clone()));
    }
    Ok(pairs)
}
