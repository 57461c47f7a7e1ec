//! `bucky restore`: restore one host from its own and its peers' buckets, under the ring as it
//! is now.

use std::io::Write;

use bucky_proto::v1 as pb;
use bucky_shared::layout::{Version, parse_date};
use clap::Args;
use futures::StreamExt;

use super::coordinator::{Client, CoordinatorArgs, block_on, human_bytes, said};
use super::progress::Progress;

/// Restore one host: every metric the ring gives it, newest version first, merged with the
/// others by safe fill.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The coordinator.
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// The host to restore.
    #[arg(long)]
    pub host: String,
    /// Restore the state of this ISO-8601 time (newest manifests at or before it).
    #[arg(long)]
    pub date: Option<String>,
    /// Only metrics matching this glob (repeatable).
    #[arg(long = "metrics", value_name = "GLOB")]
    pub globs: Vec<String>,
    /// Also restore what the host's bucket holds but the ring now places elsewhere.
    #[arg(long)]
    pub all: bool,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: list the plan of the first N metrics (the buckets holding each, newest
    /// first); the rest are counted.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub show: u64,
    /// Print one JSON document: the plan, the metrics listed, the result.
    #[arg(long)]
    pub json: bool,
}

/// The JSON document of `--json`.
fn json_of(
    plan: &pb::RestorePlanSummary,
    listed: &[pb::PlannedMetric],
    result: Option<&pb::RestoreResult>,
) -> serde_json::Value {
    serde_json::json!({
        "plan": {
            "metrics": plan.metrics,
            "sources": plan.sources.iter().map(|s| serde_json::json!({
                "bucket": s.bucket, "versions": s.steps, "bytes": s.bytes,
            })).collect::<Vec<_>>(),
            "not_owned_count": plan.not_owned_count,
            "not_owned": plan.not_owned,
            "corrupt_passed_count": plan.corrupt_passed_count,
            "corrupt_passed": plan.corrupt_passed,
            "corrupt_only_count": plan.corrupt_only_count,
        },
        "metrics": listed.iter().map(|m| serde_json::json!({
            "metric": m.metric,
            "copies": m.copies.iter().map(|c| serde_json::json!({
                "bucket": c.bucket,
                "version": Version(c.version).to_string(),
                "bytes": c.bytes,
                "action": if c.action() == pb::RestoreAction::Fill { "fill" } else { "write" },
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "result": result.map(|r| serde_json::json!({
            "written": r.written,
            "filled": r.filled,
            "points_filled": r.points_filled,
            "failed_count": r.failed_count,
            "failed": r.failed.iter().map(|f| serde_json::json!({"metric": f.metric, "error": f.error})).collect::<Vec<_>>(),
        })),
    })
}

/// Runs `bucky restore`.
///
/// # Errors
/// A bad date, the coordinator refusing or unreachable, or metrics failing.
pub fn run(args: RestoreArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let at = args
        .date
        .as_deref()
        .map(parse_date)
        .transpose()?
        .map_or(0, |v| v.0);
    let mut progress = Progress::new("metrics");
    let (plan, result, listed) = block_on(async {
        let mut client = Client::connect(&args.coordinator).await?;
        let request = client.request(pb::ClusterRestoreRequest {
            host: args.host.clone(),
            at,
            globs: args.globs.clone(),
            all: args.all,
            dry_run: args.dry_run,
            show: if args.dry_run { args.show } else { 0 },
        });
        let mut stream = client
            .rpc()
            .cluster_restore(request)
            .await
            .map_err(|e| said(e, &args.coordinator))?
            .into_inner();
        let (mut plan, mut result, mut listed) = (None, None, Vec::new());
        while let Some(update) = stream.next().await {
            let update = update.map_err(|e| said(e, &args.coordinator))?;
            plan = plan.or(update.plan);
            listed.extend(update.metrics);
            if update.result.is_some() {
                result = update.result;
            } else if update.total > 0 && plan.is_some() && !args.dry_run {
                progress.update(&args.host, update.done, update.total);
            }
        }
        progress.finish();
        Ok((
            plan.ok_or_else(|| anyhow::anyhow!("the coordinator sent no plan"))?,
            result,
            listed,
        ))
    })?;
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json_of(&plan, &listed, result.as_ref()))?
        )?;
        return match result {
            Some(r) if r.failed_count > 0 => {
                anyhow::bail!("{} restore steps failed", r.failed_count)
            }
            _ => Ok(()),
        };
    }
    writeln!(out, "restore of {}: {} metrics", args.host, plan.metrics)?;
    for s in &plan.sources {
        writeln!(
            out,
            "  from {}: {} versions, {}",
            s.bucket,
            s.steps,
            human_bytes(s.bytes)
        )?;
    }
    if plan.not_owned_count > 0 {
        let verb = if args.all {
            "restored anyway (--all)"
        } else {
            "not restored (use --all)"
        };
        writeln!(
            out,
            "  {} metrics in {}'s bucket now belong elsewhere: {verb}",
            plan.not_owned_count, args.host
        )?;
        for m in plan.not_owned.iter().take(20) {
            writeln!(out, "    {m}")?;
        }
        let shown = plan.not_owned.len().min(20) as u64;
        if plan.not_owned_count > shown {
            writeln!(out, "    and {} more", plan.not_owned_count - shown)?;
        }
    }
    if plan.corrupt_passed_count > 0 {
        writeln!(
            out,
            "  {} copies' newest version was found corrupt by verify: restored from the newest good one",
            plan.corrupt_passed_count
        )?;
        for line in plan.corrupt_passed.iter().take(20) {
            writeln!(out, "    {line}")?;
        }
        let shown = plan.corrupt_passed.len().min(20) as u64;
        if plan.corrupt_passed_count > shown {
            writeln!(out, "    and {} more", plan.corrupt_passed_count - shown)?;
        }
    }
    if plan.corrupt_only_count > 0 {
        writeln!(
            out,
            "  {} copies have no version verify did not find corrupt: planned from the newest (its SHA-1 is checked)",
            plan.corrupt_only_count
        )?;
    }
    if args.dry_run {
        for m in &listed {
            let copies: Vec<String> = m
                .copies
                .iter()
                .map(|c| {
                    let how = match c.action() {
                        pb::RestoreAction::Fill => "fill",
                        _ => "write",
                    };
                    format!(
                        "{how} {} {} ({})",
                        c.bucket,
                        Version(c.version),
                        human_bytes(c.bytes)
                    )
                })
                .collect();
            writeln!(out, "  {}: {}", m.metric, copies.join("; "))?;
        }
        let more = plan.metrics.saturating_sub(listed.len() as u64);
        if more > 0 {
            writeln!(out, "  and {more} more metrics (--show N lists more)")?;
        }
        writeln!(out, "dry run: nothing changed")?;
        return Ok(());
    }
    let result = result.ok_or_else(|| anyhow::anyhow!("the restore ended without a result"))?;
    writeln!(
        out,
        "{} written, {} filled ({} points), {} failed",
        result.written, result.filled, result.points_filled, result.failed_count
    )?;
    for f in &result.failed {
        writeln!(out, "  failed: {}: {}", f.metric, f.error)?;
    }
    if result.failed_count > result.failed.len() as u64 {
        writeln!(
            out,
            "  failed: and {} more",
            result.failed_count - result.failed.len() as u64
        )?;
    }
    if result.failed_count > 0 {
        anyhow::bail!("{} restore steps failed", result.failed_count);
    }
    Ok(())
}
