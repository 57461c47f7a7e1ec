//! `bucky check`: a Nagios plugin. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use std::io::Write;

use bucky_proto::v1 as pb;
use clap::Args;

use super::coordinator::{CoordinatorArgs, human_age};

/// Nagios check of the last backups: age thresholds, failures, reachability, ring agreement,
/// corrupt or long-unverified stored versions, and failing scheduled backups.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The coordinator.
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// WARNING when a node's last backup is older than this many hours.
    #[arg(long, default_value_t = 26.0)]
    pub warning: f64,
    /// CRITICAL when a node's last backup is older than this many hours (or it has none).
    #[arg(long, default_value_t = 50.0)]
    pub critical: f64,
    /// Print `{"state", "code", "summary", "reasons", "nodes"}` as JSON instead of the Nagios
    /// line (the exit code is the same).
    #[arg(long)]
    pub json: bool,
}

/// Nagios states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// 0.
    Ok,
    /// 1.
    Warning,
    /// 2.
    Critical,
    /// 3.
    Unknown,
}

impl State {
    /// The exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    fn label(self) -> &'static str {
        ["OK", "WARNING", "CRITICAL", "UNKNOWN"][self as usize]
    }
}

/// The state of the fleet at `now`, with the reasons. CRITICAL: no backup, one older than
/// `critical` hours, a ring mismatch, or scheduled retries given up; WARNING: older than
/// `warning` hours, failed files in the last run, an unreachable agent, corrupt versions, a
/// bucket not wholly verified within the window, or failed scheduled runs (backing off).
pub fn evaluate(
    status: &pb::ClusterStatusResponse,
    now: i64,
    warning: f64,
    critical: f64,
) -> (State, Vec<String>) {
    let mut state = State::Ok;
    let mut reasons = Vec::new();
    let mut raise = |s: State, why: String, state: &mut State| {
        *state = (*state).max(s);
        reasons.push(why);
    };
    for n in &status.nodes {
        if !n.identity_error.is_empty() {
            raise(State::Critical, n.identity_error.clone(), &mut state);
        }
        if n.reachable && !n.agrees {
            raise(
                State::Critical,
                format!("{}: ring differs", n.host),
                &mut state,
            );
        }
        if !n.reachable {
            raise(
                State::Warning,
                match n.error.is_empty() {
                    true => format!("{}: agent unreachable", n.host),
                    false => n.error.clone(),
                },
                &mut state,
            );
        }
        match &n.last_backup {
            None => raise(
                State::Critical,
                format!("{}: no backup", n.host),
                &mut state,
            ),
            Some(b) => {
                let hours = (now - b.finished) as f64 / 3600.0;
                if hours > critical {
                    raise(
                        State::Critical,
                        format!(
                            "{}: last backup {} ago",
                            n.host,
                            human_age((now - b.finished).max(0))
                        ),
                        &mut state,
                    );
                } else if hours > warning {
                    raise(
                        State::Warning,
                        format!(
                            "{}: last backup {} ago",
                            n.host,
                            human_age((now - b.finished).max(0))
                        ),
                        &mut state,
                    );
                }
                // Past half the manifest the tree looks lost, not pruned (backups of it would
                // have been refused without --allow-shrink).
                if b.missing * 2 > b.metrics {
                    raise(
                        State::Warning,
                        format!(
                            "{}: {} of {} metrics missing from disk",
                            n.host, b.missing, b.metrics
                        ),
                        &mut state,
                    );
                }
                if b.failed > 0 {
                    raise(
                        State::Warning,
                        format!("{}: {} files failed", n.host, b.failed),
                        &mut state,
                    );
                }
            }
        }
        if let Some(v) = n.verification.as_ref().filter(|v| v.error.is_empty()) {
            if v.corrupt > 0 {
                raise(
                    State::Warning,
                    format!(
                        "{}: {} corrupt versions in its bucket (first: {})",
                        n.host,
                        v.corrupt,
                        v.corrupt_sample.first().map_or("-", String::as_str)
                    ),
                    &mut state,
                );
            }
            if v.parts_due > 0 && !v.young {
                raise(
                    State::Warning,
                    format!(
                        "{}: {}% of its bucket not verified in {} days",
                        n.host,
                        v.parts_due.div_ceil(10),
                        v.window_days
                    ),
                    &mut state,
                );
            }
        }
        if let Some(s) = n.schedule.as_ref().filter(|s| s.failures > 0) {
            raise(
                if s.gave_up {
                    State::Critical
                } else {
                    State::Warning
                },
                format!(
                    "{}: {} scheduled backups failed in a row{}: {}",
                    n.host,
                    s.failures,
                    if s.gave_up { ", retries stopped" } else { "" },
                    s.last_reason
                ),
                &mut state,
            );
        }
    }
    (state, reasons)
}

/// Runs the check, printing one Nagios line with performance data.
pub fn run(args: CheckArgs, out: &mut impl Write) -> anyhow::Result<State> {
    if args.warning.is_nan() || args.critical.is_nan() || args.warning > args.critical {
        writeln!(
            out,
            "BUCKY UNKNOWN - --warning {} must not exceed --critical {} (hours)",
            args.warning, args.critical
        )?;
        return Ok(State::Unknown);
    }
    let mut status = match super::status::fetch(&args.coordinator) {
        Ok(status) => status,
        Err(e) => {
            writeln!(out, "BUCKY UNKNOWN - {e:#}")?;
            return Ok(State::Unknown);
        }
    };
    // Nodes outside the ring are being drained, not backed up.
    status.nodes.retain(|n| !n.outside_ring);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let (state, reasons) = evaluate(&status, now, args.warning, args.critical);
    let oldest = status
        .nodes
        .iter()
        .filter_map(|n| n.last_backup.as_ref())
        .map(|b| (now - b.finished).max(0))
        .max();
    let summary = if reasons.is_empty() {
        format!(
            "{} nodes backed up, oldest {} ago",
            status.nodes.len(),
            oldest.map_or("-".into(), human_age)
        )
    } else {
        reasons.join(", ")
    };
    let perf: Vec<String> = status
        .nodes
        .iter()
        .map(|n| {
            // A clock behind the bucket's never makes an age negative; no backup is "U", unitless.
            let age = n.last_backup.as_ref().map_or("U".to_string(), |b| {
                format!("{}s", (now - b.finished).max(0))
            });
            let missing = n
                .last_backup
                .as_ref()
                .map_or("U".to_string(), |b| b.missing.to_string());
            format!(
                "'{}_age'={age};{};{} '{}_missing'={missing}",
                n.host,
                (args.warning * 3600.0) as i64,
                (args.critical * 3600.0) as i64,
                n.host
            )
        })
        .collect();
    if args.json {
        let nodes: Vec<serde_json::Value> = status
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "host": n.host,
                    "age_seconds": n.last_backup.as_ref().map(|b| (now - b.finished).max(0)),
                    "missing": n.last_backup.as_ref().map(|b| b.missing),
                    "failed": n.last_backup.as_ref().map(|b| b.failed),
                    "reachable": n.reachable,
                    "ring_agrees": n.agrees,
                })
            })
            .collect();
        let body = serde_json::json!({
            "state": state.label(),
            "code": state.code(),
            "summary": summary,
            "reasons": reasons,
            "nodes": nodes,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        return Ok(state);
    }
    writeln!(
        out,
        "BUCKY {} - {summary} | {}",
        state.label(),
        perf.join(" ")
    )?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, finished: Option<i64>, failed: u64) -> pb::NodeStatus {
        pb::NodeStatus {
            host: host.into(),
            reachable: true,
            agrees: true,
            last_backup: finished.map(|f| pb::LastBackup {
                finished: f,
                failed,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn corrupt_overdue_and_failing_schedules_are_reported() {
        let now = 1_000_000;
        let with = |verification, schedule| pb::ClusterStatusResponse {
            nodes: vec![pb::NodeStatus {
                verification: Some(verification),
                schedule,
                ..node("a", Some(now - 3600), 0)
            }],
            ..Default::default()
        };
        let fine = pb::VerificationStatus {
            window_days: 30,
            newest: now - 60,
            ..Default::default()
        };
        assert_eq!(
            evaluate(&with(fine.clone(), None), now, 26.0, 50.0).0,
            State::Ok
        );
        let corrupt = pb::VerificationStatus {
            corrupt: 2,
            corrupt_sample: vec!["m.x 2026-01-01T00:00:00+00:00: SHA-1 differs".into()],
            ..fine.clone()
        };
        let (state, reasons) = evaluate(&with(corrupt, None), now, 26.0, 50.0);
        assert_eq!(state, State::Warning);
        assert!(
            reasons[0].contains("2 corrupt versions in its bucket (first: m.x"),
            "{reasons:?}"
        );
        let overdue = pb::VerificationStatus {
            parts_due: 250,
            ..fine.clone()
        };
        let (state, reasons) = evaluate(&with(overdue.clone(), None), now, 26.0, 50.0);
        assert_eq!(state, State::Warning);
        assert!(
            reasons[0].contains("25% of its bucket not verified in 30 days"),
            "{reasons:?}"
        );
        let young = pb::VerificationStatus {
            young: true,
            ..overdue
        };
        assert_eq!(evaluate(&with(young, None), now, 26.0, 50.0).0, State::Ok);
        let failing = |gave_up| pb::ScheduleStatus {
            failures: 3,
            gave_up,
            backing_off: !gave_up,
            last_reason: "agent unreachable".into(),
            ..Default::default()
        };
        let (state, reasons) = evaluate(&with(fine.clone(), Some(failing(false))), now, 26.0, 50.0);
        assert_eq!(state, State::Warning);
        assert!(
            reasons[0].contains("3 scheduled backups failed in a row: agent unreachable"),
            "{reasons:?}"
        );
        assert_eq!(
            evaluate(&with(fine, Some(failing(true))), now, 26.0, 50.0).0,
            State::Critical
        );
    }

    #[test]
    fn thresholds_failures_and_reachability() {
        let now = 1_000_000;
        let status = |nodes| pb::ClusterStatusResponse {
            nodes,
            ..Default::default()
        };
        let fresh = node("a", Some(now - 3600), 0);
        assert_eq!(
            evaluate(&status(vec![fresh.clone()]), now, 26.0, 50.0).0,
            State::Ok
        );
        assert_eq!(
            evaluate(
                &status(vec![node("a", Some(now - 30 * 3600), 0)]),
                now,
                26.0,
                50.0
            )
            .0,
            State::Warning
        );
        assert_eq!(
            evaluate(
                &status(vec![node("a", Some(now - 51 * 3600), 0)]),
                now,
                26.0,
                50.0
            )
            .0,
            State::Critical
        );
        assert_eq!(
            evaluate(&status(vec![node("a", None, 0)]), now, 26.0, 50.0).0,
            State::Critical
        );
        let (state, reasons) = evaluate(
            &status(vec![fresh.clone(), node("b", Some(now), 3)]),
            now,
            26.0,
            50.0,
        );
        assert_eq!(
            (state, reasons),
            (State::Warning, vec!["b: 3 files failed".to_string()])
        );
        let mut emptied = node("c", Some(now), 0);
        let last = emptied.last_backup.as_mut().unwrap();
        (last.metrics, last.missing) = (10, 6);
        assert_eq!(
            evaluate(&status(vec![emptied.clone()]), now, 26.0, 50.0),
            (
                State::Warning,
                vec!["c: 6 of 10 metrics missing from disk".to_string()]
            )
        );
        emptied.last_backup.as_mut().unwrap().missing = 4;
        assert_eq!(
            evaluate(&status(vec![emptied]), now, 26.0, 50.0).0,
            State::Ok,
            "a few metrics removed is housekeeping"
        );
        let mut down = fresh.clone();
        down.reachable = false;
        assert_eq!(
            evaluate(&status(vec![down]), now, 26.0, 50.0).0,
            State::Warning
        );
        let mut differs = fresh;
        differs.agrees = false;
        assert_eq!(
            evaluate(&status(vec![differs]), now, 26.0, 50.0).0,
            State::Critical
        );
        assert_eq!(State::Unknown.code(), 3);
    }
}
