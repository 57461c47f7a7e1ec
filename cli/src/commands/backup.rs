//! `bucky backup`: back the whole cluster up, each node into its own bucket.

use std::io::Write;

use bucky_proto::v1 as pb;
use clap::Args;
use futures::StreamExt;

use super::coordinator::{Client, CoordinatorArgs, block_on, human_bytes, said};
use super::progress::Progress;

/// Back every node up into its own bucket (refused when an agent's ring differs).
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The coordinator.
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Only metrics matching this glob (repeatable).
    #[arg(long = "metrics", value_name = "GLOB")]
    pub globs: Vec<String>,
    /// Report what would change; write nothing.
    #[arg(long)]
    pub noop: bool,
    /// Read every file, even unchanged ones.
    #[arg(long)]
    pub verify_all: bool,
    /// Back up nodes even where more than the agent's max_missing_share of the metrics the last
    /// backup saw are gone (removed on purpose, not a disk that did not mount).
    #[arg(long)]
    pub allow_shrink: bool,
    /// Print one JSON document of every node's outcome.
    #[arg(long)]
    pub json: bool,
}

/// One node's outcome as `--json` prints it.
fn json_of(node: &pb::NodeBackup) -> serde_json::Value {
    let r = node.result.as_ref();
    serde_json::json!({
        "host": node.host,
        "outcome": node.outcome,
        "reason": (!node.reason.is_empty()).then_some(&node.reason),
        "result": r.map(|r| serde_json::json!({
            "run": (r.run != 0).then(|| bucky_shared::layout::Version(r.run).to_string()),
            "new": r.new,
            "changed": r.changed,
            "unchanged": r.unchanged,
            "unchanged_read": r.unchanged_read,
            "bytes_read": r.bytes_read,
            "failed_count": r.failed_count,
            "failed": r.failed.iter().map(|f| serde_json::json!({"metric": f.metric, "error": f.error})).collect::<Vec<_>>(),
            "bytes_uploaded": r.bytes_uploaded,
            "missing": r.missing,
            "purged": r.purged,
            "corrupt_replaced": r.corrupt_replaced,
        })),
    })
}

/// Runs `bucky backup`; fails when any node did not back up completely.
///
/// # Errors
/// The coordinator refused (ring mismatch) or was unreachable, or a node failed.
pub fn run(args: BackupArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut progress = Progress::new("files");
    let results = block_on(async {
        let mut client = Client::connect(&args.coordinator).await?;
        let request = client.request(pb::ClusterBackupRequest {
            globs: args.globs.clone(),
            regex: String::new(),
            noop: args.noop,
            verify_all: args.verify_all,
            allow_shrink: args.allow_shrink,
        });
        let mut stream = client
            .rpc()
            .cluster_backup(request)
            .await
            .map_err(|e| said(e, &args.coordinator))?
            .into_inner();
        while let Some(update) = stream.next().await {
            let update = update.map_err(|e| said(e, &args.coordinator))?;
            if !update.results.is_empty() || update.host.is_empty() {
                progress.finish();
                return Ok(update.results);
            }
            progress.update(&update.host, update.done, update.total);
        }
        anyhow::bail!("the coordinator closed the backup stream without results")
    })?;
    let failed = results.iter().filter(|n| n.outcome != "ok").count();
    if args.json {
        let nodes: Vec<serde_json::Value> = results.iter().map(json_of).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes }))?
        )?;
    }
    for node in results.iter().filter(|_| !args.json) {
        let r = node.result.clone().unwrap_or_default();
        write!(out, "{:<16} {:<8}", node.host, node.outcome)?;
        if node.result.is_some() {
            write!(
                out,
                " {} new, {} changed, {} unchanged ({} read), {} failed, {} read, {} uploaded",
                r.new,
                r.changed,
                r.unchanged,
                r.unchanged_read,
                r.failed.len(),
                human_bytes(r.bytes_read),
                human_bytes(r.bytes_uploaded)
            )?;
        }
        if r.corrupt_replaced > 0 {
            write!(out, ", {} corrupt versions replaced", r.corrupt_replaced)?;
        }
        if !node.reason.is_empty() {
            write!(out, " ({})", node.reason)?;
        }
        writeln!(out)?;
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} nodes did not back up completely",
            results.len()
        );
    }
    Ok(())
}
