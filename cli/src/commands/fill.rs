//! `bucky fill`: a drop-in for carbonate's whisper-fill, with a safe default mode.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bucky_shared::fill::{self, FillMode, FillOptions};
use clap::{Args, ValueEnum};

use crate::time::now_or;

/// Fill the gaps of DST with data from SRC (replicas of one metric).
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
    /// The file to read from (locked shared, never modified).
    pub src: PathBuf,
    /// The file to fill (locked exclusively).
    pub dst: PathBuf,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Never change a present point.
    Safe,
    /// carbonate 1.1.10's fill_archives, byte for byte.
    Carbonate,
}

/// Runs `bucky fill`.
///
/// # Errors
/// Invalid options, a lock timeout, or an unreadable or corrupt file.
pub fn run(args: FillArgs, out: &mut impl Write) -> anyhow::Result<()> {
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
    let report = fill::fill_files(&args.src, &args.dst, &options)?;
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    write!(
        out,
        "{}: {} points written",
        args.dst.display(),
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
    Ok(())
}
