//! `bucky whisper fetch`: whisper-fetch.

use std::io::Write;
use std::path::PathBuf;

use bucky_shared::whisper::{self, Access, Whisper};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::format::py_fixed;
use crate::time::now_or;

/// Print the points of a time range, one `TIMESTAMP<TAB>VALUE` line each (`None` when unknown).
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The file.
    pub path: PathBuf,
    /// Unix time to start at (default: now - 1 day).
    #[arg(long)]
    pub from: Option<i64>,
    /// Unix time to end at (default: now).
    #[arg(long)]
    pub until: Option<i64>,
    /// Treat this Unix time as now (default: the system clock).
    #[arg(long)]
    pub now: Option<i64>,
    /// Read the archive of this precision (`60`, `1m`, `15min`) instead of the best one.
    #[arg(long)]
    pub precision: Option<String>,
    /// Leave out unknown points (nulls), zero values (zeroes) or both (empty). Unlike
    /// whisper-fetch, the remaining points keep their own timestamps.
    #[arg(long, value_enum)]
    pub drop: Option<Drop>,
    /// Print `{"start", "end", "step", "values"}` as JSON (whisper-fetch's); with `--drop`,
    /// `"points": [[time, value], ...]` instead of `"values"`, so each point keeps its time.
    #[arg(long)]
    pub json: bool,
}

/// `--drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Drop {
    /// Unknown points.
    Nulls,
    /// Points whose value is 0.
    Zeroes,
    /// Both.
    Empty,
}

impl Drop {
    fn keeps(self, value: Option<f64>) -> bool {
        match self {
            Drop::Nulls => value.is_some(),
            Drop::Zeroes => value != Some(0.0),
            Drop::Empty => value.is_some_and(|v| v != 0.0),
        }
    }
}

/// Runs `bucky whisper fetch`.
///
/// # Errors
/// An unreadable or corrupt file, `--from` after `--until`, an unknown precision.
pub fn run(args: FetchArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let now = now_or(args.now);
    let precision = args
        .precision
        .as_deref()
        .map(|p| {
            whisper::parse_retention(&format!("{p}:1")).map(|a| i64::from(a.seconds_per_point))
        })
        .transpose()?;
    let file = Whisper::open_file(&args.path, Access::Read)?;
    let from = args.from.unwrap_or(now - 86_400);
    let series = file.fetch_with_precision(from, args.until, now, precision)?;
    let Some(series) = series else {
        anyhow::bail!(
            "{}: the range is outside the file's retention",
            args.path.display()
        );
    };
    let keep = |v: Option<f64>| args.drop.is_none_or(|d| d.keeps(v));
    if args.json {
        let mut body = json!({"start": series.from, "end": series.until, "step": series.step});
        if args.drop.is_some() {
            let points: Vec<(i64, Option<f64>)> =
                series.points().filter(|(_, v)| keep(*v)).collect();
            body["points"] = json!(points);
        } else {
            body["values"] = json!(series.values);
        }
        writeln!(out, "{body}")?;
        return Ok(());
    }
    for (t, v) in series.points().filter(|(_, v)| keep(*v)) {
        match v {
            Some(v) => writeln!(out, "{t}\t{}", py_fixed(v))?,
            None => writeln!(out, "{t}\tNone")?,
        }
    }
    Ok(())
}
