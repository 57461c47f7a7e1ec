//! `bucky locate`: which destinations own each metric.

use std::io::{BufRead, BufWriter, Write};

use bucky_shared::ring::Ring;
use clap::Args;

use super::ring_args::RingArgs;

/// Names read from stdin per placement batch.
const BATCH: usize = 4096;

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
    if args.metrics.is_empty() {
        // Names are placed in batches, which lets carbon_ch rings hash several at once.
        let mut batch: Vec<String> = Vec::with_capacity(BATCH);
        let mut lines = input.lines();
        loop {
            batch.clear();
            for line in lines.by_ref() {
                let line = line?;
                let metric = line.trim();
                if !metric.is_empty() {
                    batch.push(metric.to_string());
                    if batch.len() == BATCH {
                        break;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            write_owners(&ring, &batch, args.json, &mut out)?;
        }
    } else {
        write_owners(&ring, &args.metrics, args.json, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// Places `metrics` and writes one line each.
fn write_owners(
    ring: &Ring,
    metrics: &[String],
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let names: Vec<&str> = metrics.iter().map(String::as_str).collect();
    let mut result = Ok(());
    ring.owners_many(&names, |metric, owners| {
        if result.is_err() {
            return;
        }
        let owners: Vec<&str> = owners
            .iter()
            .map(|&i| ring.destinations()[i].text.as_str())
            .collect();
        result = if json {
            serde_json::to_writer(
                &mut *out,
                &serde_json::json!({"metric": metric, "owners": owners}),
            )
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(writeln!(out)?))
        } else {
            writeln!(out, "{metric} {}", owners.join(" ")).map_err(anyhow::Error::from)
        };
    });
    result
}
