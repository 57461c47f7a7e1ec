//! `bucky whisper info`: whisper-info.

use std::io::Write;
use std::path::PathBuf;

use bucky_shared::whisper::{Access, Whisper};
use clap::Args;
use serde_json::json;

use crate::format::py_float;

/// Print a whisper file's header and archives, as whisper-info does.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The file.
    pub path: PathBuf,
    /// Print JSON (whisper-info's `--json` keys).
    #[arg(long)]
    pub json: bool,
}

/// Runs `bucky whisper info`.
///
/// # Errors
/// An unreadable or corrupt file.
pub fn run(args: InfoArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let file = Whisper::open_file(&args.path, Access::Read)?;
    let header = file.header();
    let file_size = std::fs::metadata(&args.path)?.len();
    let archives: Vec<serde_json::Value> = header
        .archives
        .iter()
        .map(|a| {
            json!({
                "offset": a.offset,
                "secondsPerPoint": a.seconds_per_point,
                "points": a.points,
                "retention": a.retention(),
                "size": a.size(),
            })
        })
        .collect();
    if args.json {
        let info = json!({
            "aggregationMethod": header.aggregation.name(),
            "maxRetention": header.max_retention,
            "xFilesFactor": header.xff(),
            "archives": archives,
            "fileSize": file_size,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
        return Ok(());
    }
    writeln!(out, "aggregationMethod: {}", header.aggregation)?;
    writeln!(out, "maxRetention: {}", header.max_retention)?;
    writeln!(out, "xFilesFactor: {}", py_float(header.xff()))?;
    writeln!(out, "fileSize: {file_size}")?;
    writeln!(out)?;
    for (i, a) in header.archives.iter().enumerate() {
        writeln!(out, "Archive {i}")?;
        writeln!(out, "offset: {}", a.offset)?;
        writeln!(out, "secondsPerPoint: {}", a.seconds_per_point)?;
        writeln!(out, "points: {}", a.points)?;
        writeln!(out, "retention: {}", a.retention())?;
        writeln!(out, "size: {}", a.size())?;
        writeln!(out)?;
    }
    Ok(())
}
