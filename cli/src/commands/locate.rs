//! `bucky locate`: which destinations own each metric.

use std::io::{BufRead, BufWriter, Write};

use clap::Args;

use super::ring_args::RingArgs;

/// Print the owners of each metric, primary first (names from stdin when none are given).
#[derive(Debug, Args)]
pub struct LocateArgs {
    /// The ring.
    #[command(flatten)]
    pub ring: RingArgs,
    /// One JSON object per line: {"metric": ..., "owners": [...]}.
    #[arg(long)]
    pub json: bool,
    /// Metric names; read one per line from stdin when none are given.
    pub metrics: Vec<String>,
}

/// Runs `bucky locate`, reading names from `input` when none are given on the command line.
///
/// # Errors
/// An invalid ring, or a read or write error.
pub fn run(args: LocateArgs, input: &mut impl BufRead, out: &mut impl Write) -> anyhow::Result<()> {
    let ring = args.ring.ring()?;
    let mut out = BufWriter::new(out);
    let mut owners = Vec::new();
    let mut emit = |metric: &str, out: &mut BufWriter<_>| -> anyhow::Result<()> {
        ring.owners_into(metric, &mut owners);
        let names: Vec<&str> = owners
            .iter()
            .map(|&i| ring.destinations()[i].text.as_str())
            .collect();
        if args.json {
            serde_json::to_writer(
                &mut *out,
                &serde_json::json!({"metric": metric, "owners": names}),
            )?;
            writeln!(out)?;
        } else {
            writeln!(out, "{metric} {}", names.join(" "))?;
        }
        Ok(())
    };
    if args.metrics.is_empty() {
        for line in input.lines() {
            let line = line?;
            let metric = line.trim();
            if !metric.is_empty() {
                emit(metric, &mut out)?;
            }
        }
    } else {
        for metric in &args.metrics {
            emit(metric, &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}
