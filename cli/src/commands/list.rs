//! `bucky list METRIC`: the versions of a metric in every host's bucket.

use std::io::Write;

use bucky_proto::v1 as pb;
use bucky_shared::layout::Version;
use clap::Args;

use super::coordinator::{Client, CoordinatorArgs, block_on, said};

/// List a metric's stored versions across all buckets.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The coordinator.
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Dotted metric name.
    pub metric: String,
}

/// Runs `bucky list`.
///
/// # Errors
/// The coordinator is unreachable or refuses the name.
pub fn run(args: ListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let response = block_on(async {
        let mut client = Client::connect(&args.coordinator).await?;
        let request = client.request(pb::ListVersionsRequest {
            metric: args.metric.clone(),
        });
        Ok(client
            .rpc()
            .list_versions(request)
            .await
            .map_err(|e| said(e, &args.coordinator))?
            .into_inner())
    })?;
    if args.json {
        let buckets: Vec<serde_json::Value> = response
            .buckets
            .iter()
            .map(|b| serde_json::json!({"host": b.host, "bucket": b.bucket, "versions": b.versions.iter().map(|v| Version(*v).to_string()).collect::<Vec<_>>()}))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::json!({"metric": args.metric, "buckets": buckets})
        )?;
        return Ok(());
    }
    if response.buckets.is_empty() {
        writeln!(out, "{}: no stored version", args.metric)?;
    }
    for b in &response.buckets {
        let versions: Vec<String> = b.versions.iter().map(|v| Version(*v).to_string()).collect();
        writeln!(out, "{} {} {}", b.host, b.bucket, versions.join(" "))?;
    }
    Ok(())
}
