//! `bucky whisper create`: whisper-create.

use std::io::Write;
use std::path::PathBuf;

use bucky_shared::whisper::{self, Aggregation, CreateOptions};
use clap::Args;

/// Create a whisper file, e.g. `bucky whisper create cpu.wsp 60s:30d 15m:2y`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The file to create.
    pub path: PathBuf,
    /// Archives as PRECISION:RETENTION (`60s:30d`, `15m:2y`, `60:1440`).
    #[arg(required = true, value_name = "PRECISION:RETENTION")]
    pub retentions: Vec<String>,
    /// Fraction of known points needed to propagate to a lower archive.
    #[arg(long, alias = "xFilesFactor", default_value_t = 0.5)]
    pub xff: f64,
    /// average, sum, last, max, min, avg_zero, absmax or absmin.
    #[arg(long, alias = "aggregationMethod", default_value = "average")]
    pub aggregation: String,
    /// Leave the data area as a hole (sparse file).
    #[arg(long)]
    pub sparse: bool,
    /// Replace the file if it exists (atomically).
    #[arg(long)]
    pub overwrite: bool,
    /// Print `{"path", "bytes"}` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `bucky whisper create`.
///
/// # Errors
/// A bad retention, xff or aggregation, an existing file, or an I/O error.
pub fn run(args: CreateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let archives = whisper::parse_retentions(&args.retentions)?;
    let aggregation: Aggregation = args.aggregation.parse()?;
    let options = CreateOptions {
        x_files_factor: args.xff,
        aggregation,
        sparse: args.sparse,
        replace: args.overwrite,
    };
    whisper::create(&args.path, &archives, &options)?;
    let size = std::fs::metadata(&args.path)?.len();
    if args.json {
        let body = serde_json::json!({"path": args.path, "bytes": size});
        writeln!(out, "{body}")?;
    } else {
        writeln!(out, "Created: {} ({} bytes)", args.path.display(), size)?;
    }
    Ok(())
}
