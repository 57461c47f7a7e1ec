//! `bucky status`: the fleet at a glance.

use std::io::Write;

use bucky_proto::v1 as pb;
use bucky_shared::layout::Version;
use clap::Args;

use super::coordinator::{Client, CoordinatorArgs, block_on, human_age, human_bytes, said};

/// Show every node: reachable, version, ring agreement, metrics, size, last backup, running job.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The coordinator.
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Fetches the status.
///
/// # Errors
/// The coordinator cannot be reached.
pub fn fetch(args: &CoordinatorArgs) -> anyhow::Result<pb::ClusterStatusResponse> {
    block_on(async {
        let mut client = Client::connect(args).await?;
        let request = client.request(pb::ClusterStatusRequest {});
        Ok(client
            .rpc()
            .cluster_status(request)
            .await
            .map_err(|e| said(e, args))?
            .into_inner())
    })
}

fn json_status(status: &pb::ClusterStatusResponse) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = status
        .nodes
        .iter()
        .map(|n| {
            let info = n.info.as_ref();
            serde_json::json!({
                "host": n.host,
                "reachable": n.reachable,
                "error": (!n.error.is_empty()).then_some(&n.error),
                "version": info.map(|i| &i.version),
                "ring_fingerprint": info.map(|i| &i.ring_fingerprint),
                "ring_agrees": n.agrees,
                "outside_ring": n.outside_ring,
                "metric_count": info.map(|i| i.metric_count),
                "bytes_on_disk": info.map(|i| i.bytes_on_disk),
                "running_job": info.and_then(|i| i.running_job.as_ref()).map(|j| serde_json::json!({"kind": j.kind, "done": j.done, "total": j.total})),
                "bucket": n.bucket,
                "last_backup": n.last_backup.as_ref().map(|b| serde_json::json!({
                    "run": Version(b.run).to_string(), "finished": Version(b.finished).to_string(), "metrics": b.metrics,
                    "new": b.new, "changed": b.changed, "unchanged": b.unchanged, "failed": b.failed, "bytes_uploaded": b.bytes_uploaded, "missing": b.missing,
                })),
                "bucket_error": (!n.bucket_error.is_empty()).then_some(&n.bucket_error),
                "bucket_owner": (!n.bucket_owner.is_empty()).then_some(&n.bucket_owner),
                "identity_error": (!n.identity_error.is_empty()).then_some(&n.identity_error),
                "verification": n.verification.as_ref().map(|v| serde_json::json!({
                    "corrupt": v.corrupt, "corrupt_sample": v.corrupt_sample,
                    "parts_due": v.parts_due, "window_days": v.window_days,
                    "newest": (v.newest != 0).then(|| Version(v.newest).to_string()),
                    "young": v.young, "error": (!v.error.is_empty()).then_some(&v.error),
                })),
                "schedule": n.schedule.as_ref().map(|s| serde_json::json!({
                    "last_run": (s.last_run != 0).then(|| Version(s.last_run).to_string()),
                    "last_result": (!s.last_result.is_empty()).then_some(&s.last_result),
                    "last_reason": (!s.last_reason.is_empty()).then_some(&s.last_reason),
                    "next_run": Version(s.next_run).to_string(),
                    "failures": s.failures, "backing_off": s.backing_off, "gave_up": s.gave_up,
                    "last_verify": (s.last_verify != 0).then(|| Version(s.last_verify).to_string()),
                })),
                "placement": n.consistency.as_ref().map(|c| serde_json::json!({
                    "held": c.held, "misplaced": c.misplaced, "missing": c.missing,
                    "error": (!c.error.is_empty()).then_some(&c.error),
                    "checked": Version(n.consistency_checked).to_string(),
                })),
            })
        })
        .collect();
    serde_json::json!({"ring_fingerprint": status.ring_fingerprint, "nodes": nodes})
}

/// Runs `bucky status`; the exit code is 1 when an agent is down, a ring differs, an agent is
/// not who the coordinator thinks or a bucket cannot be read, so a script can tell a healthy
/// fleet from the table's word.
///
/// # Errors
/// The coordinator cannot be reached.
pub fn run(args: StatusArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let status = fetch(&args.coordinator)?;
    let code = u8::from(status.nodes.iter().any(|n| {
        !n.reachable || !n.agrees || !n.identity_error.is_empty() || !n.bucket_error.is_empty()
    }));
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json_status(&status))?
        )?;
        return Ok(code);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    write_table(&status, now, out)?;
    Ok(code)
}

/// The fleet table, then one line per problem with its cause: the table's word ("NO",
/// "bucket unreadable") is never all the operator gets.
fn write_table(
    status: &pb::ClusterStatusResponse,
    now: i64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    writeln!(out, "ring {}", status.ring_fingerprint)?;
    writeln!(
        out,
        "{:<16} {:<5} {:<13} {:<5} {:>9} {:>9}  {:<14} {:<28} {:<14} {:<24} JOB",
        "HOST",
        "UP",
        "VERSION",
        "RING",
        "METRICS",
        "SIZE",
        "LAST BACKUP",
        "RESULT",
        "VERIFIED",
        "PLACEMENT"
    )?;
    for n in &status.nodes {
        let info = n.info.as_ref();
        let last = n.last_backup.as_ref();
        let result = last.map_or_else(
            || {
                if n.bucket_error.is_empty() {
                    "never".to_string()
                } else {
                    "bucket unreadable".to_string()
                }
            },
            |b| {
                let missing = match b.missing {
                    0 => String::new(),
                    n => format!(" {n} MISSING"),
                };
                format!(
                    "{} new {} chg {} fail {}{missing}",
                    b.new,
                    b.changed,
                    b.failed,
                    human_bytes(b.bytes_uploaded)
                )
            },
        );
        let job = info
            .and_then(|i| i.running_job.as_ref())
            .map_or("-".to_string(), |j| job_progress(j, now));
        writeln!(
            out,
            "{:<16} {:<5} {:<13} {:<5} {:>9} {:>9}  {:<14} {:<28} {:<14} {:<24} {job}",
            n.host,
            if n.reachable { "yes" } else { "NO" },
            info.map_or("-".into(), |i| short_version(&i.version)),
            if n.outside_ring {
                "out"
            } else if !n.reachable {
                "?"
            } else if !n.identity_error.is_empty() {
                "WHO?"
            } else if n.agrees {
                "ok"
            } else {
                "DIFF"
            },
            info.map_or("-".into(), |i| i.metric_count.to_string()),
            info.map_or("-".into(), |i| human_bytes(i.bytes_on_disk)),
            last.map_or("-".into(), |b| format!(
                "{} ago",
                human_age((now - b.finished).max(0))
            )),
            result,
            verified(n.verification.as_ref(), now),
            if n.outside_ring {
                drain(n)
            } else {
                placement(n.consistency.as_ref())
            },
        )?;
    }
    if let Some(checked) = status
        .nodes
        .iter()
        .map(|n| n.consistency_checked)
        .find(|&c| c != 0)
    {
        writeln!(
            out,
            "placement: the coordinator's last `bucky inconsistent`, {} ago",
            human_age((now - checked).max(0))
        )?;
    }
    write_schedule(status, now, out)?;
    for n in status.nodes.iter().filter(|n| !n.reachable) {
        writeln!(out, "{}: {}", n.host, n.error)?;
    }
    for n in &status.nodes {
        let Some(v) = &n.verification else { continue };
        for line in &v.corrupt_sample {
            writeln!(out, "{}: corrupt version {line}", n.host)?;
        }
        if v.corrupt > v.corrupt_sample.len() as u64 {
            writeln!(
                out,
                "{}: ... and {} more corrupt versions (bucky verify --host {} --all lists them)",
                n.host,
                v.corrupt - v.corrupt_sample.len() as u64,
                n.host
            )?;
        }
    }
    for n in status.nodes.iter().filter(|n| !n.identity_error.is_empty()) {
        writeln!(out, "{}: {}", n.host, n.identity_error)?;
    }
    for n in status.nodes.iter().filter(|n| !n.bucket_error.is_empty()) {
        writeln!(out, "{}: {}", n.host, n.bucket_error)?;
    }
    Ok(())
}

/// The VERIFIED column: corrupt versions first, then how much is overdue, then how fresh.
fn verified(v: Option<&pb::VerificationStatus>, now: i64) -> String {
    let Some(v) = v else { return "-".into() };
    if !v.error.is_empty() {
        "unreadable".into()
    } else if v.corrupt > 0 {
        format!("{} CORRUPT", v.corrupt)
    } else if v.newest == 0 {
        "never".into()
    } else if v.parts_due > 0 && !v.young {
        format!("{}% DUE", v.parts_due.div_ceil(10))
    } else {
        format!("ok {} ago", human_age((now - v.newest).max(0)))
    }
}

/// The schedule, one line per node, when the coordinator runs one.
fn write_schedule(
    status: &pb::ClusterStatusResponse,
    now: i64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let scheduled: Vec<(&str, &pb::ScheduleStatus)> = status
        .nodes
        .iter()
        .filter_map(|n| n.schedule.as_ref().map(|s| (n.host.as_str(), s)))
        .collect();
    if scheduled.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<14} {:<8} {:<24} LAST VERIFY",
        "SCHEDULE", "LAST RUN", "RESULT", "NEXT RUN"
    )?;
    for (host, s) in scheduled {
        let ago = |t: i64| match t {
            0 => "-".to_string(),
            t => format!("{} ago", human_age((now - t).max(0))),
        };
        let until = human_age((s.next_run - now).max(0));
        let next = if s.backing_off {
            format!("retry in {until} ({} failed)", s.failures)
        } else if s.gave_up {
            format!("in {until} (GAVE UP after {})", s.failures)
        } else {
            format!("in {until}")
        };
        writeln!(
            out,
            "{host:<16} {:<14} {:<8} {next:<24} {}",
            ago(s.last_run),
            if s.last_result.is_empty() {
                "-"
            } else {
                &s.last_result
            },
            ago(s.last_verify)
        )?;
        if !s.last_reason.is_empty() {
            writeln!(out, "{host}: last scheduled backup: {}", s.last_reason)?;
        }
    }
    Ok(())
}

/// A running job: what, how far, how fast, and when it should end when its size is known
/// (every job's is; an agent's older than this coordinator may send none).
fn job_progress(j: &pb::Job, now: i64) -> String {
    let elapsed = now - j.started;
    let rate = (elapsed > 0).then(|| j.done as f64 / elapsed as f64);
    let mut text = match j.total {
        0 => format!("{} {} done", j.kind, j.done),
        total => format!("{} {}/{total}", j.kind, j.done),
    };
    if let Some(rate) = rate.filter(|r| *r > 0.0) {
        text.push_str(&format!(", {rate:.0}/s"));
        if j.total > j.done {
            let left = ((j.total - j.done) as f64 / rate).ceil() as i64;
            text.push_str(&format!(", ETA {}", human_age(left)));
        }
    }
    text
}

/// How far a node outside the ring is from drained, by its agent's last walk.
fn drain(n: &pb::NodeStatus) -> String {
    match n.info.as_ref().map(|i| i.metric_count) {
        Some(0) => "drained".into(),
        Some(count) => format!("{count} to drain"),
        None => "?".into(),
    }
}

/// A node's counts from the last consistency check, in words.
fn placement(c: Option<&pb::NodeConsistency>) -> String {
    let Some(c) = c else {
        return "-".into();
    };
    if !c.error.is_empty() {
        return "not listed".into();
    }
    match (c.misplaced, c.missing) {
        (0, 0) => "ok".into(),
        (m, 0) => format!("{m} misplaced"),
        (0, m) => format!("{m} missing"),
        (a, b) => format!("{a} misplaced {b} missing"),
    }
}

/// `0.1.0 (0123456789ab)` as `0.1.0@0123456`: the commit tells two builds of one version apart.
fn short_version(version: &str) -> String {
    match version.split_once(" (") {
        Some((v, commit)) => {
            let commit = commit.trim_end_matches(')');
            format!("{v}@{}", &commit[..commit.len().min(7)])
        }
        None => version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_shows_its_rate_and_when_it_should_end() {
        let job = |done, total| pb::Job {
            kind: "restore".into(),
            started: 1000,
            done,
            total,
        };
        assert_eq!(job_progress(&job(0, 100), 1000), "restore 0/100");
        assert_eq!(
            job_progress(&job(50, 100), 1010),
            format!("restore 50/100, 5/s, ETA {}", human_age(10))
        );
        let rebalance = pb::Job {
            kind: "rebalance".into(),
            ..job(300, 0)
        };
        assert_eq!(job_progress(&rebalance, 1100), "rebalance 300 done, 3/s");
    }

    #[test]
    fn a_bucket_error_is_printed_with_its_cause() {
        let status = pb::ClusterStatusResponse {
            ring_fingerprint: "abc".into(),
            nodes: vec![pb::NodeStatus {
                host: "graphite-01".into(),
                reachable: true,
                agrees: true,
                bucket_error: "bucket s3://b: endpoint http://rgw is plain http".into(),
                ..Default::default()
            }],
        };
        let mut out = Vec::new();
        write_table(&status, 0, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("bucket unreadable"), "{text}");
        assert!(
            text.contains("graphite-01: bucket s3://b: endpoint http://rgw is plain http"),
            "{text}"
        );
    }
}
