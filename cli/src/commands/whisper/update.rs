//! `bucky whisper update`: whisper-update, always as one `update_many` call.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use bucky_shared::whisper::{Access, Whisper};
use clap::Args;

use crate::time::now_or;

/// Write points, e.g. `bucky whisper update cpu.wsp 1700000000:42 N:43`, all in one
/// update_many call in the order given (`N` is now).
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The file (locked exclusively while writing).
    pub path: PathBuf,
    /// Points as TIMESTAMP:VALUE; TIMESTAMP may be `N` for now.
    #[arg(required = true, value_name = "TIMESTAMP:VALUE")]
    pub points: Vec<String>,
    /// Treat this Unix time as now (default: the system clock).
    #[arg(long)]
    pub now: Option<i64>,
    /// Print `{"path", "points"}` as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `TIMESTAMP:VALUE` as whisper-update does: `int(float(ts))`, `N` for now.
fn parse_point(text: &str, now: i64) -> anyhow::Result<(i64, f64)> {
    let bad = || anyhow!("invalid point '{text}': expected TIMESTAMP:VALUE, e.g. 1700000000:42.5");
    let (ts, value) = text.split_once(':').ok_or_else(bad)?;
    let ts = if ts == "N" {
        now
    } else {
        let t: f64 = ts.parse().map_err(|_| bad())?;
        if !t.is_finite() {
            return Err(bad());
        }
        t.trunc() as i64
    };
    Ok((ts, value.trim().parse().map_err(|_| bad())?))
}

/// Runs `bucky whisper update`.
///
/// # Errors
/// A malformed point, a lock timeout, or an unreadable or corrupt file.
pub fn run(args: UpdateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let now = now_or(args.now);
    let points: Vec<(i64, f64)> = args
        .points
        .iter()
        .map(|p| parse_point(p, now))
        .collect::<anyhow::Result<_>>()?;
    let mut file = Whisper::open_file(&args.path, Access::ReadWrite)?;
    file.update_many(&points, now)?;
    file.storage()
        .sync_data()
        .with_context(|| format!("syncing {}", args.path.display()))?;
    if args.json {
        let body = serde_json::json!({"path": args.path, "points": points.len()});
        writeln!(out, "{body}")?;
    } else {
        writeln!(
            out,
            "{}: {} points written",
            args.path.display(),
            points.len()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_point;

    #[test]
    fn parses_whisper_update_points() {
        assert_eq!(
            parse_point("1700000000:42", 5).unwrap(),
            (1_700_000_000, 42.0)
        );
        assert_eq!(
            parse_point("1700000000.9:-1e3", 5).unwrap(),
            (1_700_000_000, -1000.0)
        );
        assert_eq!(parse_point("N:1.5", 77).unwrap(), (77, 1.5));
        for bad in ["1700000000", "x:1", "1:y", "inf:1"] {
            assert!(parse_point(bad, 0).unwrap_err().to_string().contains(bad));
        }
    }
}
