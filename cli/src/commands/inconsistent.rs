//! `bucky inconsistent`: which metrics each node holds that the ring places elsewhere, and which
//! it lacks that the ring places on it.

use std::io::Write;

use bucky_proto::v1 as pb;
use clap::Args;
use futures::StreamExt;

use super::coordinator::{Client, CoordinatorArgs, block_on, said};

/// Compare every node's metrics with the ring as configured now (replication included): per node,
/// metrics held that the ring places elsewhere (misplaced) and metrics the ring places there that
/// another node holds and it does not (missing). Exit code 1 when any, or a node was not listed.
#[derive(Debug, Args)]
pub struct InconsistentArgs {
    /// The coordinator.
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Also print every misplaced and missing metric, as they are found.
    #[arg(long)]
    pub list: bool,
    /// JSON lines: one object per misplaced or missing metric, as they are found, then one
    /// `{"summary": ...}`.
    #[arg(long)]
    pub json: bool,
}

fn kind_word(kind: i32) -> &'static str {
    match pb::InconsistencyKind::try_from(kind) {
        Ok(pb::InconsistencyKind::Misplaced) => "misplaced",
        Ok(pb::InconsistencyKind::Missing) => "missing",
        _ => "unknown",
    }
}

fn summary_json(summary: &pb::ConsistencySummary) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = summary
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "host": n.host,
                "held": n.held,
                "misplaced": n.misplaced,
                "missing": n.missing,
                "error": (!n.error.is_empty()).then_some(&n.error),
            })
        })
        .collect();
    serde_json::json!({"summary": {
        "metrics": summary.metrics,
        "ring_fingerprint": summary.ring_fingerprint,
        "nodes": nodes,
    }})
}

/// Runs `bucky inconsistent`; the exit code is 1 when a node holds a misplaced metric, misses
/// one, or could not be listed.
///
/// # Errors
/// The coordinator cannot be reached, or the stream ended without a summary.
pub fn run(args: InconsistentArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let list = args.list || args.json;
    let summary = block_on(async {
        let mut client = Client::connect(&args.coordinator).await?;
        let request = client.request(pb::InconsistentRequest { list });
        let mut stream = client
            .rpc()
            .inconsistent(request)
            .await
            .map_err(|e| said(e, &args.coordinator))?
            .into_inner();
        while let Some(message) = stream.next().await {
            let message = message.map_err(|e| said(e, &args.coordinator))?;
            for entry in &message.entries {
                if args.json {
                    let line = serde_json::json!({
                        "metric": entry.metric,
                        "host": entry.host,
                        "kind": kind_word(entry.kind),
                    });
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "{:<9} {:<16} {}",
                        kind_word(entry.kind),
                        entry.host,
                        entry.metric
                    )?;
                }
            }
            if let Some(summary) = message.summary {
                return Ok(summary);
            }
        }
        anyhow::bail!("the coordinator closed the stream without a summary")
    })?;
    let consistent = summary
        .nodes
        .iter()
        .all(|n| n.error.is_empty() && n.misplaced == 0 && n.missing == 0);
    if args.json {
        writeln!(out, "{}", summary_json(&summary))?;
        return Ok(u8::from(!consistent));
    }
    if list {
        writeln!(out)?;
    }
    writeln!(
        out,
        "{:<16} {:>12} {:>12} {:>12}",
        "HOST", "HELD", "MISPLACED", "MISSING"
    )?;
    for n in &summary.nodes {
        if n.error.is_empty() {
            writeln!(
                out,
                "{:<16} {:>12} {:>12} {:>12}",
                n.host, n.held, n.misplaced, n.missing
            )?;
        } else {
            writeln!(
                out,
                "{:<16} not listed after {} metrics: {}",
                n.host, n.held, n.error
            )?;
        }
    }
    let misplaced: u64 = summary.nodes.iter().map(|n| n.misplaced).sum();
    let missing: u64 = summary.nodes.iter().map(|n| n.missing).sum();
    writeln!(
        out,
        "{} metrics in the cluster; {misplaced} misplaced, {missing} missing under ring {}",
        summary.metrics, summary.ring_fingerprint
    )?;
    Ok(u8::from(!consistent))
}
