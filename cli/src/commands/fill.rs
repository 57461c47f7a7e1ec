//! `bucky fill`: a drop-in for carbonate's whisper-fill, with a safe default mode, and a batch
//! mode for whole trees or lists of pairs.

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

use bucky_agent::fill_batch::{self, BatchOptions, BatchReport};
use bucky_agent::tree::{Selection, Walk};
use bucky_shared::fill::{self, FillMode, FillOptions};
use clap::{Args, ValueEnum};

use crate::time::now_or;

/// Fill the gaps of DST with data from SRC: replicas of one metric, two whisper trees (-r), or
/// a list of pairs (--pairs).
#[derive(Debug, Args)]
pub struct FillArgs {
    /// safe (default): never change a point DST has, fill every gap SRC can supply.
    /// carbonate: exactly what carbonate 1.1.10's whisper-fill does, quirks included
    /// (0.0 counts as a gap, the point after a gap is replaced, lower archives re-aggregated).
    #[arg(long, value_enum, default_value_t = Mode::Safe)]
    pub mode: Mode,
    /// Treat this Unix time as now (default: the system clock).
    #[arg(long)]
    pub now: Option<i64>,
    /// Newest timestamp to fill (default: now).
    #[arg(long)]
    pub start_from: Option<i64>,
    /// Oldest timestamp to fill (default: 0, everything DST retains).
    #[arg(long, default_value_t = 0)]
    pub end_at: i64,
    /// carbonate mode only: write every SRC point, whether DST has one or not.
    #[arg(long)]
    pub overwrite: bool,
    /// Seconds to wait for each file's lock before giving up.
    #[arg(long, default_value_t = 10)]
    pub lock_timeout: u64,
    /// Do not fsync DST after writing (faster, not crash-safe).
    #[arg(long)]
    pub no_fsync: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// SRC and DST are whisper trees: fill every metric both hold, copy those only SRC holds.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Fill the pairs listed in FILE (- for stdin), one per line: SRC<TAB>DST, or SRC DST.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recursive", "src", "dst"])]
    pub pairs: Option<PathBuf>,
    /// With -r or --pairs: leave a SRC file whose DST does not exist alone instead of copying
    /// it (atomically, as a restore creates files).
    #[arg(long)]
    pub no_copy: bool,
    /// With -r: only metrics matching this glob (`servers.*.cpu.*`); repeat for more.
    #[arg(long = "metrics", value_name = "GLOB", requires = "recursive")]
    pub metrics: Vec<String>,
    /// With -r or --pairs: pairs filled at once (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The file (with -r, the tree) to read from: locked shared, never modified.
    #[arg(required_unless_present = "pairs")]
    pub src: Option<PathBuf>,
    /// The file (with -r, the tree) to fill: each file locked exclusively while it is filled.
    #[arg(required_unless_present = "pairs")]
    pub dst: Option<PathBuf>,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Never change a present point.
    Safe,
    /// carbonate 1.1.10's fill_archives, byte for byte.
    Carbonate,
}

/// Runs `bucky fill`; the exit code is 1 when a batch had failures.
///
/// # Errors
/// Invalid options, a lock timeout, or an unreadable or corrupt file (one pair); an unreadable
/// tree or pair list (batch).
pub fn run(args: FillArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let mode = match args.mode {
        Mode::Safe => FillMode::Safe,
        Mode::Carbonate => FillMode::Carbonate,
    };
    let options = FillOptions {
        start_from: args.start_from,
        end_at: args.end_at,
        overwrite: args.overwrite,
        lock_timeout: Duration::from_secs(args.lock_timeout),
        fsync: !args.no_fsync,
        ..FillOptions::new(mode, now_or(args.now))
    };
    // Built only for a batch: counting the cores reads cgroup files, a cost a script running
    // one process per pair should not pay.
    let batch = || {
        let defaults = BatchOptions::new(options.clone());
        BatchOptions {
            copy_missing: !args.no_copy,
            workers: args.workers.unwrap_or(defaults.workers),
            ..defaults
        }
    };
    if let Some(list) = &args.pairs {
        let batch = batch();
        let report = if list.as_os_str() == "-" {
            fill_batch::fill_pairs(
                fill_batch::read_pairs(BufReader::new(std::io::stdin())),
                &batch,
            )
        } else {
            let file = std::fs::File::open(list)
                .map_err(|e| anyhow::anyhow!("reading the pairs in {}: {e}", list.display()))?;
            fill_batch::fill_pairs(fill_batch::read_pairs(BufReader::new(file)), &batch)
        };
        return write_batch(&report, None, args.json, out);
    }
    let (src, dst) = args
        .src
        .zip(args.dst)
        .expect("clap requires both without --pairs");
    if args.recursive {
        let batch = batch();
        let selection = Selection::new(&args.metrics, None)?;
        let (report, walk) = fill_batch::fill_trees(&src, &dst, selection, &batch)?;
        return write_batch(&report, Some(&walk), args.json, out);
    }
    if src.is_dir() || dst.is_dir() {
        anyhow::bail!(
            "{} is a directory: fill two trees with -r (bucky fill -r SRC_DIR DST_DIR)",
            if src.is_dir() { &src } else { &dst }.display()
        );
    }
    let report = fill::fill_files(&src, &dst, &options)?;
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(0);
    }
    write!(
        out,
        "{}: {} points written",
        dst.display(),
        report.points_written
    )?;
    if !report.filled_per_archive.is_empty() {
        let parts: Vec<String> = report
            .filled_per_archive
            .iter()
            .map(|a| format!("{}s: {}", a.seconds_per_point, a.points))
            .collect();
        write!(out, " ({})", parts.join(", "))?;
    }
    writeln!(out)?;
    Ok(0)
}

/// A batch's report, as text or one JSON document; exit code 1 when a pair failed.
fn write_batch(
    report: &BatchReport,
    walk: Option<&Walk>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<u8> {
    let code = u8::from(report.failed > 0 || !report.unsynced_dirs.is_empty());
    if json {
        let mut doc = serde_json::to_value(report)?;
        if let Some(walk) = walk {
            doc["not_carbon"] = serde_json::to_value(&walk.not_carbon)?;
            doc["links_skipped"] = serde_json::to_value(&walk.links_skipped)?;
        }
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)?;
        return Ok(code);
    }
    let rate = (report.pairs + report.copied) as f64 / report.seconds.max(1e-9);
    writeln!(
        out,
        "filled {} pairs in {:.2} s ({rate:.0} pairs/s): {} points written into {} files",
        report.pairs, report.seconds, report.points_written, report.pairs_changed
    )?;
    if report.points_kept_live > 0 {
        writeln!(
            out,
            "  {} points were written by carbon meanwhile and kept as it wrote them",
            report.points_kept_live
        )?;
    }
    match (report.copied, report.not_copied) {
        (0, 0) => {}
        (copied, 0) => writeln!(out, "  {copied} files only in the source copied whole")?,
        (_, left) => writeln!(
            out,
            "  {left} files only in the source left alone (--no-copy)"
        )?,
    }
    if let Some(walk) = walk {
        if walk.not_carbon.count > 0 {
            writeln!(
                out,
                "  {} .wsp files skipped: at paths carbon cannot have written for their name \
                 (first: {})",
                walk.not_carbon.count,
                walk.not_carbon.first[0].display()
            )?;
        }
        if walk.links_skipped.count > 0 {
            writeln!(
                out,
                "  {} symlinks not followed (loops or dangling)",
                walk.links_skipped.count
            )?;
        }
    }
    for dir in &report.unsynced_dirs {
        writeln!(out, "  not synced: {dir}")?;
    }
    if report.failed > 0 {
        writeln!(out, "{} failed:", report.failed)?;
        for f in &report.failures {
            if f.dst.is_empty() {
                writeln!(out, "  {}: {}", f.src, f.error)?;
            } else {
                writeln!(out, "  {} -> {}: {}", f.src, f.dst, f.error)?;
            }
        }
        if report.failed > report.failures.len() as u64 {
            writeln!(
                out,
                "  (and {} more)",
                report.failed - report.failures.len() as u64
            )?;
        }
    }
    Ok(code)
}
