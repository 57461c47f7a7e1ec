//! Fill benchmark: bucky's batch fill (`bucky fill -r`), one process per pair (`bucky fill` and the
//! small `bucky-fill` binary), carbonate 1.1.10's `fill_archives` in one interpreter and its
//! `whisper-fill` command per pair, on identical copies of generated trees of replica pairs, at
//! two tree sizes.
//!
//! `cargo bench -p bucky-cli --bench fill [-- --sizes 200,2000 --cli-pairs 200 --no-python]`
//! (`--keep DIR` generates the trees under DIR/SIZE and leaves them there, with the `--now` they
//! were made for in DIR/SIZE/now, for profiling)
//!
//! The trees: schema `60s:30d,15m:2y` (1.36 MB files), 30 days of 1-minute data written like
//! carbon-cache (one update_many per 30-minute block); each pair two replicas of one series with
//! their own outages and single missing points, at `src/bench/mNNNN.wsp` and `dst/bench/...`.
//! Every run fills a fresh copy of dst (copying and syncing it is not timed), without fsync unless the row says
//! so (carbonate does not fsync). bucky and Go rows are the best of 3 runs; Python rows one run.
//! Rates are pairs/s and MB/s of whisper data (src + dst bytes of the pairs filled per second).
//!
//! `$BUCKY_FILL_STATIC` naming a static-pie build of `bucky-fill` adds its per-pair row.
//! buckytools' Go `bucky-fill` gets a per-pair row when `$BUCKY_FILL` names its binary; Go is
//! not installed on this project's machine, so the row is skipped there, and says so.
//!
//! The carbonate-mode batch is compared with carbonate's own output byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bucky_shared::synth::{self, Rng};
use bucky_shared::whisper;
use support::{ensure_venv, run_python};

mod support;

const MINUTES_30_DAYS: i64 = 30 * 24 * 60;
/// Repetitions of each bucky run.
const RUNS: usize = 3;
/// Runs of each of safe and carbonate mode, alternated, for the ratio between them.
const RATIO_RUNS: usize = 5;

struct Args {
    sizes: Vec<usize>,
    cli_pairs: usize,
    python: bool,
    /// Where to generate the trees and leave them, for profiling; default a temporary directory.
    keep: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        sizes: vec![200, 2000],
        cli_pairs: 200,
        python: true,
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sizes" => {
                args.sizes = it
                    .next()
                    .context("--sizes N,M")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--cli-pairs" => args.cli_pairs = it.next().context("--cli-pairs N")?.parse()?,
            "--no-python" => args.python = false,
            "--keep" => args.keep = Some(it.next().context("--keep DIR")?.into()),
            "--bench" => {} // passed by `cargo bench`
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// One tree of pairs and where its runs happen.
struct Trees {
    work: PathBuf,
    src: PathBuf,
    dst: PathBuf,
    pairs: usize,
    /// src + dst bytes of one pair.
    pair_bytes: u64,
}

impl Trees {
    /// A fresh copy of dst under `name`, returned as the tree to fill.
    fn fresh_dst(&self, name: &str) -> anyhow::Result<PathBuf> {
        let copy = self.work.join(name);
        if copy.exists() {
            std::fs::remove_dir_all(&copy)?;
        }
        std::fs::create_dir_all(copy.join("bench"))?;
        for i in 0..self.pairs {
            let file = format!("bench/m{i:04}.wsp");
            std::fs::copy(self.dst.join(&file), copy.join(&file))?;
        }
        // The copy's dirty pages written out now, not by the kernel during the timed run.
        Command::new("sync").status()?;
        Ok(copy)
    }

    fn pair(&self, root: &Path, i: usize) -> (PathBuf, PathBuf) {
        let file = format!("bench/m{i:04}.wsp");
        (self.src.join(&file), root.join(file))
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let go = std::env::var_os("BUCKY_FILL").map(PathBuf::from);
    let venv = if args.python {
        Some(ensure_venv()?)
    } else {
        None
    };
    let mut batch_rates = Vec::new();
    for &size in &args.sizes {
        let temporary = tempfile::tempdir()?;
        let work = match &args.keep {
            Some(dir) => dir.join(size.to_string()),
            None => temporary.path().to_path_buf(),
        };
        let started = Instant::now();
        let trees = generate(&work, size, now)?;
        if args.keep.is_some() {
            // The trees are relative to this time: profiling runs pass it as `--now`.
            std::fs::write(work.join("now"), now.to_string())?;
        }
        println!(
            "\nfill benchmark: {size} replica pairs, schema 60s:30d,15m:2y, 30 days of 1-minute \
             data ({:.2} MB per file), generated in {:.1} s; {} cores",
            trees.pair_bytes as f64 / 2e6,
            started.elapsed().as_secs_f64(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let baseline = match &venv {
            Some(venv) => Some(time_python(venv, &trees, now)?),
            None => None,
        };
        let bucky = env!("CARGO_BIN_EXE_bucky");
        let batch_once = |mode: &str, extra: &[&str]| -> anyhow::Result<f64> {
            let dst = trees.fresh_dst("dst-bucky")?;
            let mut cmd = Command::new(bucky);
            cmd.args(["fill", "-r", "--mode", mode, "--now", &now.to_string()])
                .args(extra)
                .arg(&trees.src)
                .arg(&dst);
            time_one(cmd)
        };
        let batch = |mode: &str, extra: &[&str]| best_of(RUNS, || batch_once(mode, extra));
        // Safe and carbonate mode alternate, run for run, so that their ratio is not this
        // machine's drift from one minute to the next; carbonate runs last, and its tree is
        // compared with carbonate's below.
        let (mut safe, mut carbonate) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..RATIO_RUNS {
            safe = safe.min(batch_once("safe", &["--no-fsync"])?);
            carbonate = carbonate.min(batch_once("carbonate", &["--no-fsync"])?);
        }
        if let Some((_, python_dst)) = &baseline {
            let identical = (0..size)
                .filter(|&i| {
                    let (_, a) = trees.pair(&trees.work.join("dst-bucky"), i);
                    let (_, b) = trees.pair(python_dst, i);
                    std::fs::read(a).ok() == std::fs::read(b).ok()
                })
                .count();
            if identical != size {
                bail!(
                    "carbonate mode differs from carbonate on {} pairs",
                    size - identical
                );
            }
        }
        let fsynced = batch("safe", &[])?;
        let one_core = batch("safe", &["--no-fsync", "--workers", "1"])?;
        batch_rates.push((size, size as f64 / safe));

        let sample = args.cli_pairs.min(size);
        // carbonate's whisper-fill takes half a second a pair: a smaller sample.
        let python_sample = sample.min(50);
        let per_pair =
            |runs: usize, sample: usize, dir: &str, command: &dyn Fn(&Path, &Path) -> Command| {
                best_of(runs, || {
                    let dst = trees.fresh_dst(dir)?;
                    let start = Instant::now();
                    for i in 0..sample {
                        let (s, d) = trees.pair(&dst, i);
                        let status = command(&s, &d).stdout(Stdio::null()).status()?;
                        if !status.success() {
                            bail!("fill of {} failed: {status}", d.display());
                        }
                    }
                    Ok(start.elapsed().as_secs_f64())
                })
            };
        let bucky_per_pair = per_pair(RUNS, sample, "dst-cli", &|s, d| {
            let mut cmd = Command::new(bucky);
            cmd.args(["fill", "--no-fsync", "--now", &now.to_string()])
                .arg(s)
                .arg(d);
            cmd
        })?;

        let lean_per_pair = per_pair(RUNS, sample, "dst-lean", &|s, d| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucky-fill"));
            cmd.args(["--no-fsync", "--now", &now.to_string()])
                .arg(s)
                .arg(d);
            cmd
        })?;

        // The same binary linked static-pie (glibc, ASLR kept), when one is named: built with
        // RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p bucky-cli
        // --bin bucky-fill --target x86_64-unknown-linux-gnu --target-dir ...
        let static_per_pair = match std::env::var_os("BUCKY_FILL_STATIC") {
            Some(binary) => Some(per_pair(RUNS, sample, "dst-static", &|s, d| {
                let mut cmd = Command::new(&binary);
                cmd.args(["--no-fsync", "--now", &now.to_string()])
                    .arg(s)
                    .arg(d);
                cmd
            })?),
            None => None,
        };

        let table = Table {
            pair_bytes: trees.pair_bytes,
            baseline: baseline.as_ref().map(|(secs, _)| (size, *secs)),
        };
        table.header();
        table.row("bucky fill -r (safe)", size, safe);
        table.row("bucky fill -r --mode carbonate", size, carbonate);
        table.row("bucky fill -r, fsync (the default)", size, fsynced);
        table.row("bucky fill -r --workers 1", size, one_core);
        table.row(
            &format!("bucky fill, one process per pair ({sample})"),
            sample,
            bucky_per_pair,
        );
        table.row(
            &format!("bucky-fill, one process per pair ({sample})"),
            sample,
            lean_per_pair,
        );
        if let Some(secs) = static_per_pair {
            table.row(
                &format!("bucky-fill static-pie, one process per pair ({sample})"),
                sample,
                secs,
            );
        }
        if let Some(venv) = &venv {
            let script = venv.join("bin/whisper-fill");
            let python = per_pair(1, python_sample, "dst-whisper-fill", &|s, d| {
                let mut cmd = Command::new(&script);
                cmd.arg(s).arg(d);
                cmd
            })?;
            table.row(
                &format!("whisper-fill, one process per pair ({python_sample})"),
                python_sample,
                python,
            );
        }
        match &go {
            Some(binary) => {
                let go = per_pair(RUNS, sample, "dst-go", &|s, d| {
                    let mut cmd = Command::new(binary);
                    cmd.arg(s).arg(d);
                    cmd
                })?;
                table.row(
                    &format!("buckytools bucky-fill per pair ({sample})"),
                    sample,
                    go,
                );
            }
            None => println!(
                "  buckytools bucky-fill: skipped (Go is not installed here; set BUCKY_FILL to \
                 its binary to add it)"
            ),
        }
        println!(
            "  carbonate mode: {:.0}% of safe mode's time (best of {RATIO_RUNS} alternated runs each){}",
            100.0 * carbonate / safe,
            if baseline.is_some() {
                "; its output byte-identical to carbonate's on every pair"
            } else {
                ""
            }
        );
    }
    if let [(a, rate_a), .., (b, rate_b)] = batch_rates[..] {
        println!(
            "\ngrowth: bucky fill -r {rate_a:.0} pairs/s at {a} pairs, {rate_b:.0} pairs/s at {b} \
             ({:.2}x the rate at {}x the pairs)",
            rate_b / rate_a,
            b / a.max(1)
        );
    }
    Ok(())
}

struct Table {
    pair_bytes: u64,
    /// Pairs and seconds of carbonate's in-process fill.
    baseline: Option<(usize, f64)>,
}

impl Table {
    fn header(&self) {
        if let Some((pairs, secs)) = self.baseline {
            self.line("carbonate 1.1.10 fill_archives", pairs, secs);
            println!("   (baseline)");
        }
    }

    fn row(&self, name: &str, pairs: usize, secs: f64) {
        self.line(name, pairs, secs);
        match self.baseline {
            Some((base_pairs, base_secs)) => println!(
                "   {:.1}x the speed of the baseline",
                (pairs as f64 / secs) / (base_pairs as f64 / base_secs)
            ),
            None => println!(),
        }
    }

    fn line(&self, name: &str, pairs: usize, secs: f64) {
        let rate = pairs as f64 / secs;
        print!(
            "  {name:<44} {secs:>8.3} s {rate:>8.0} pairs/s {:>8.0} MB/s",
            rate * self.pair_bytes as f64 / 1e6
        );
    }
}

/// The fastest of `runs` runs of `run`, in seconds: this machine is shared, and the best run
/// is the one least disturbed.
fn best_of(runs: usize, mut run: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        best = best.min(run()?);
    }
    Ok(best)
}

/// Seconds `cmd` took; fails unless it succeeded.
fn time_one(mut cmd: Command) -> anyhow::Result<f64> {
    let start = Instant::now();
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(secs)
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

/// Seconds of carbonate's in-process fill of every pair, and the dst tree it filled.
fn time_python(venv: &Path, trees: &Trees, now: i64) -> anyhow::Result<(f64, PathBuf)> {
    let dst = trees.fresh_dst("dst-python")?;
    let list: Vec<(PathBuf, PathBuf)> = (0..trees.pairs).map(|i| trees.pair(&dst, i)).collect();
    let list_path = trees.work.join("pairs.json");
    std::fs::write(&list_path, serde_json::to_string(&list)?)?;
    let now = now.to_string();
    let stdout = run_python(
        venv,
        &trees.work,
        PYTHON_BENCH,
        &[now.as_ref(), list_path.as_os_str()],
    )?;
    Ok((stdout.trim().parse()?, dst))
}

/// Writes `count` replica pairs under `dir`: one series each, two replicas with their own
/// outages and 20 single missing points, written carbon-style in 30-minute blocks.
fn generate(dir: &Path, count: usize, now: i64) -> anyhow::Result<Trees> {
    let schema = whisper::parse_retentions(&["60s:30d", "15m:2y"])?;
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir_all(src.join("bench"))?;
    std::fs::create_dir_all(dst.join("bench"))?;
    let mut pair_bytes = 0;
    for i in 0..count {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
        let series = synth::random_walk(&mut rng, now, MINUTES_30_DAYS);
        pair_bytes = 0;
        for root in [&src, &dst] {
            let missing = synth::outages(&mut rng, now, MINUTES_30_DAYS * 60, 20);
            let image = synth::carbon_written(&schema, &series, &missing, 30)?;
            std::fs::write(root.join(format!("bench/m{i:04}.wsp")), image.bytes())?;
            pair_bytes += image.bytes().len() as u64;
        }
    }
    Ok(Trees {
        work: dir.to_path_buf(),
        src,
        dst,
        pairs: count,
        pair_bytes,
    })
}
