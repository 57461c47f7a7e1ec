//! `bucky rebalance`: every metric to the nodes the ring places it on now, agent to agent; and
//! `bucky heal`: replicas filled from each other.

use std::io::Write;

use bucky_proto::v1 as pb;
use clap::Args;
use futures::StreamExt;

use super::coordinator::{Client, CoordinatorArgs, block_on, human_bytes, said};

/// Copy every metric a node holds misplaced to the nodes the ring places it on now (replication
/// included), each destination agent reading from the source agent directly: a copy the owner
/// lacks is written whole, one it holds is safe-filled (no present point changed). Nothing is
/// deleted; rerunning moves no point twice.
#[derive(Debug, Args)]
pub struct RebalanceArgs {
    /// What every move job takes.
    #[command(flatten)]
    pub job: MoveArgs,
    /// Once every move succeeded, remove each misplaced copy that every owner confirms holding
    /// (each of its points present there) and that has not changed since.
    #[arg(long, conflicts_with = "dry_run")]
    pub delete: bool,
}

/// The options of `rebalance` and `heal` alike.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The coordinator.
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Print the moves; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only metrics matching this glob (repeatable).
    #[arg(long = "metrics", value_name = "GLOB")]
    pub globs: Vec<String>,
    /// Print one JSON document: the summary (and, with --dry-run, every move).
    #[arg(long)]
    pub json: bool,
    /// The pace.
    #[command(flatten)]
    pub pace: PaceArgs,
}

/// How fast moves write into each node; the coordinator's `[moves]` when not given.
#[derive(Debug, Args)]
pub struct PaceArgs {
    /// Metrics per second into each node, at most (0: no limit; default: the coordinator's
    /// [moves] metrics_per_sec, 100).
    #[arg(long, value_name = "METRICS_PER_SEC")]
    pub rate: Option<f64>,
    /// Megabytes per second into each node, at most (0: no limit; default: the coordinator's
    /// [moves] mb_per_sec, 50).
    #[arg(long, value_name = "MB_PER_SEC")]
    pub mb_rate: Option<f64>,
}

fn move_json(m: &pb::RebalanceMove) -> serde_json::Value {
    serde_json::json!({"metric": m.metric, "from": m.from, "to": m.to, "fill": m.fill})
}

fn summary_json(summary: &pb::RebalanceSummary, moves: &[pb::RebalanceMove]) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = summary
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "host": n.host,
                "moves": n.moves,
                "result": n.result.as_ref().map(|r| serde_json::json!({
                    "written": r.written,
                    "filled": r.filled,
                    "points_filled": r.points_filled,
                    "unchanged": r.unchanged,
                    "bytes_received": r.bytes_received,
                    "failed_count": r.failed_count,
                    "failed": r.failed.iter().map(|f| serde_json::json!({"metric": f.metric, "error": f.error})).collect::<Vec<_>>(),
                })),
                "error": (!n.error.is_empty()).then_some(&n.error),
                "deleted": n.deleted,
                "kept": n.kept,
                "kept_reasons": n.kept_reasons,
            })
        })
        .collect();
    serde_json::json!({
        "metrics": summary.metrics,
        "nodes": nodes,
        "listing_errors": summary.listing_errors,
        "delete_skipped": (!summary.delete_skipped.is_empty()).then_some(&summary.delete_skipped),
        "moves": moves.iter().map(move_json).collect::<Vec<_>>(),
    })
}

/// Whether a node's part failed (a kept copy counts: the operator asked for it to go).
fn failed(n: &pb::NodeRebalance) -> bool {
    !n.error.is_empty() || n.result.as_ref().is_some_and(|r| r.failed_count > 0) || n.kept > 0
}

/// Fill each replica's gaps from the metric's other replicas (its other ring owners), agent to
/// agent; an owner that lacks its replica gets it written whole. Needs replication >= 2.
#[derive(Debug, Args)]
pub struct HealArgs {
    /// What every move job takes.
    #[command(flatten)]
    pub job: MoveArgs,
    /// Only this host's replicas are filled (default: every host's).
    #[arg(long)]
    pub host: Option<String>,
    /// Only points of the last DURATION (6h, 2d; default: every point): a node down for six
    /// hours needs six hours of points.
    #[arg(long, value_parser = bucky_shared::whisper::parse_duration)]
    pub since: Option<u64>,
}

/// Runs `bucky rebalance`; the exit code is 1 when a move failed or a node could not be listed.
///
/// # Errors
/// The coordinator refused (ring mismatch) or could not be reached.
pub fn run(args: RebalanceArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let job = &args.job;
    let request = pb::RebalanceRequest {
        dry_run: job.dry_run,
        globs: job.globs.clone(),
        delete: args.delete,
        metrics_per_sec: job.pace.rate,
        mb_per_sec: job.pace.mb_rate,
    };
    report(job, out, |mut client| async move {
        let request = client.request(request);
        client.rpc().rebalance(request).await
    })
}

/// Runs `bucky heal`; the exit code is 1 when a fill failed or a node could not be listed.
///
/// # Errors
/// The coordinator refused (ring mismatch, unknown host) or could not be reached.
pub fn heal(args: HealArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let job = &args.job;
    let request = pb::HealRequest {
        host: args.host.clone().unwrap_or_default(),
        since_seconds: args.since.map_or(0, |s| s as i64),
        globs: job.globs.clone(),
        dry_run: job.dry_run,
        metrics_per_sec: job.pace.rate,
        mb_per_sec: job.pace.mb_rate,
    };
    report(job, out, |mut client| async move {
        let request = client.request(request);
        client.rpc().heal(request).await
    })
}

type Moves = tonic::Response<tonic::Streaming<pb::RebalanceResponse>>;

/// Calls the coordinator with `call`, prints the moves it streams and its summary.
fn report<F, Fut>(job: &MoveArgs, out: &mut impl Write, call: F) -> anyhow::Result<u8>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<Moves, tonic::Status>>,
{
    let (coordinator, dry_run, json) = (&job.coordinator, job.dry_run, job.json);
    let mut kept_moves = Vec::new();
    let summary = block_on(async {
        let client = Client::connect(coordinator).await?;
        let mut stream = call(client)
            .await
            .map_err(|e| said(e, coordinator))?
            .into_inner();
        while let Some(message) = stream.next().await {
            let message = message.map_err(|e| said(e, coordinator))?;
            for m in message.moves {
                if json {
                    kept_moves.push(m);
                } else {
                    let how = if m.fill { "fill" } else { "write" };
                    writeln!(out, "{how:<5} {} -> {}  {}", m.from, m.to, m.metric)?;
                }
            }
            if let Some(summary) = message.summary {
                return Ok(summary);
            }
        }
        anyhow::bail!("the coordinator closed the stream without a summary")
    })?;
    let code = u8::from(
        summary.nodes.iter().any(failed)
            || !summary.listing_errors.is_empty()
            || !summary.delete_skipped.is_empty(),
    );
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&summary_json(&summary, &kept_moves))?
        )?;
        return Ok(code);
    }
    for n in &summary.nodes {
        write!(out, "{:<16} {:>8} moves", n.host, n.moves)?;
        if let Some(r) = &n.result {
            write!(
                out,
                ": {} written, {} filled ({} points), {} failed",
                r.written, r.filled, r.points_filled, r.failed_count
            )?;
            if r.unchanged > 0 {
                write!(out, " ({} unchanged since applied: not sent)", r.unchanged)?;
            }
            if r.bytes_received > 0 {
                write!(out, ", {} received", human_bytes(r.bytes_received))?;
            }
            if let Some(first) = r.failed.first() {
                write!(out, ", first: {}: {}", first.metric, first.error)?;
            }
        }
        if !n.error.is_empty() {
            write!(out, ": {}", n.error)?;
        }
        if n.deleted + n.kept > 0 {
            write!(out, "; {} deleted, {} kept", n.deleted, n.kept)?;
            if let Some(first) = n.kept_reasons.first() {
                write!(out, ", first kept: {first}")?;
            }
        }
        writeln!(out)?;
    }
    if !summary.delete_skipped.is_empty() {
        writeln!(out, "nothing deleted: {}", summary.delete_skipped)?;
    }
    for e in &summary.listing_errors {
        writeln!(out, "not listed: {e}")?;
    }
    let moves: u64 = summary.nodes.iter().map(|n| n.moves).sum();
    writeln!(
        out,
        "{} metrics, {moves} moves{}",
        summary.metrics,
        if dry_run { " planned (dry run)" } else { "" }
    )?;
    Ok(code)
}
