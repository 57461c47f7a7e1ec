//! `bucky verify`: read back what the buckets hold, every node or one.

use std::io::Write;

use bucky_proto::v1 as pb;
use bucky_shared::layout::Version;
use clap::Args;
use futures::StreamExt;

use super::coordinator::{Client, CoordinatorArgs, block_on, human_bytes, said};
use super::progress::Progress;

/// Read back a share of each bucket (download, gunzip, SHA-1, whisper header and archive sizes)
/// and record what was found in the bucket; exit 1 when a corrupt version is found or a node
/// could not verify.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The coordinator.
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Only this host.
    #[arg(long)]
    pub host: Option<String>,
    /// Every stored version (default: the daily slice, 1/window_days of each bucket, verified
    /// longest ago first).
    #[arg(long, conflicts_with = "share")]
    pub all: bool,
    /// This share of each bucket, verified longest ago first: 0.1 or 10%.
    #[arg(long, value_parser = bucky_shared::layout::verification::parse_share)]
    pub share: Option<f64>,
    /// Print one JSON document of every node's result.
    #[arg(long)]
    pub json: bool,
}

fn json_of(node: &pb::NodeVerify) -> serde_json::Value {
    let r = node.result.as_ref();
    serde_json::json!({
        "host": node.host,
        "error": (!node.error.is_empty()).then_some(&node.error),
        "result": r.map(|r| serde_json::json!({
            "run": Version(r.run).to_string(),
            "parts": r.parts,
            "checked": r.checked,
            "ok": r.ok,
            "corrupt_count": r.corrupt_count,
            "corrupt": r.corrupt.iter().map(|c| serde_json::json!({
                "metric": c.metric, "version": Version(c.version).to_string(), "reason": c.reason,
            })).collect::<Vec<_>>(),
            "unread_count": r.unread_count,
            "unread": r.unread.iter().map(|f| serde_json::json!({"version": f.metric, "error": f.error})).collect::<Vec<_>>(),
            "bytes": r.bytes,
            "corrupt_known": r.corrupt_known,
            "parts_due": r.parts_due,
        })),
    })
}

/// Runs `bucky verify`; 0 when every node verified and found nothing corrupt, else 1.
///
/// # Errors
/// The coordinator refused or was unreachable.
pub fn run(args: VerifyArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let mut progress = Progress::new("versions");
    let results = block_on(async {
        let mut client = Client::connect(&args.coordinator).await?;
        let request = client.request(pb::ClusterVerifyRequest {
            host: args.host.clone().unwrap_or_default(),
            all: args.all,
            share: args.share.unwrap_or(0.0),
        });
        let mut stream = client
            .rpc()
            .cluster_verify(request)
            .await
            .map_err(|e| said(e, &args.coordinator))?
            .into_inner();
        while let Some(update) = stream.next().await {
            let update = update.map_err(|e| said(e, &args.coordinator))?;
            if update.host.is_empty() {
                progress.finish();
                return Ok(update.results);
            }
            progress.update(&update.host, update.done, 0);
        }
        anyhow::bail!("the coordinator closed the verify stream without results")
    })?;
    let bad = results.iter().any(|n| {
        !n.error.is_empty()
            || n.result
                .as_ref()
                .is_some_and(|r| r.corrupt_count > 0 || r.unread_count > 0)
    });
    if args.json {
        let nodes: Vec<serde_json::Value> = results.iter().map(json_of).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes }))?
        )?;
        return Ok(u8::from(bad));
    }
    for node in &results {
        let Some(r) = &node.result else {
            writeln!(out, "{:<16} failed   ({})", node.host, node.error)?;
            continue;
        };
        let state = match (r.corrupt_count, r.unread_count) {
            (0, 0) => "ok",
            (0, _) => "unread",
            _ => "CORRUPT",
        };
        writeln!(
            out,
            "{:<16} {state:<8} {} versions in {} of 1000 parts, {} ok, {} corrupt, {} unread, {} read; {} corrupt known, {} parts not verified within the window",
            node.host,
            r.checked,
            r.parts,
            r.ok,
            r.corrupt_count,
            r.unread_count,
            human_bytes(r.bytes),
            r.corrupt_known,
            r.parts_due
        )?;
        for c in &r.corrupt {
            writeln!(
                out,
                "  corrupt: {} {}: {}",
                c.metric,
                Version(c.version),
                c.reason
            )?;
        }
        if r.corrupt_count > r.corrupt.len() as u64 {
            writeln!(
                out,
                "  ... and {} more corrupt",
                r.corrupt_count - r.corrupt.len() as u64
            )?;
        }
        for f in &r.unread {
            writeln!(out, "  unread: {}: {}", f.metric, f.error)?;
        }
    }
    Ok(u8::from(bad))
}
