//! Conversions between the agent's domain values and `bucky.v1` messages, and its error table.

use bucky_proto::v1 as pb;

use crate::backup::BackupReport;
use crate::failures::Failures;
use crate::restore::{PlanEntry, RestoreReport, Source};

fn failures(failed: &Failures) -> Vec<pb::MetricFailure> {
    failed
        .first()
        .iter()
        .map(|f| pb::MetricFailure {
            metric: f.metric.clone(),
            error: f.error.clone(),
        })
        .collect()
}

pub(crate) fn backup_result(report: &BackupReport) -> pb::BackupResult {
    pb::BackupResult {
        run: report.run.map_or(0, |v| v.0),
        new: report.new,
        changed: report.changed,
        unchanged: report.unchanged,
        unchanged_read: report.unchanged_read,
        bytes_read: report.bytes_read,
        failed: failures(&report.failed),
        failed_count: report.failed.len(),
        bytes_uploaded: report.bytes_uploaded,
        missing: report.missing,
        purged: report.purged.len(),
        corrupt_replaced: report.corrupt_replaced,
    }
}

pub(crate) fn restore_result(report: &RestoreReport) -> pb::RestoreResult {
    pb::RestoreResult {
        written: report.written,
        filled: report.filled,
        points_filled: report.points_filled,
        failed: failures(&report.failed),
        failed_count: report.failed.len(),
        unchanged: report.unchanged,
        bytes_received: report.bytes_downloaded,
    }
}

/// One entry of a plan: it must name a metric and either a peer agent, or a bucket, a key and a
/// SHA-1 (empty: the version's `.sha1` object is read).
pub(crate) fn plan_entry(e: pb::RestoreEntry) -> Result<PlanEntry, (String, String)> {
    if !e.source_agent.is_empty() && !e.metric.is_empty() {
        return Ok(PlanEntry {
            metric: e.metric,
            source: Source::Peer {
                address: e.source_agent,
                since: e.since,
            },
        });
    }
    if e.metric.is_empty()
        || e.source_bucket.is_empty()
        || e.object_key.is_empty()
        || !(e.sha1.is_empty() || e.sha1.len() == 40)
    {
        return Err((
            e.metric,
            "a restore entry needs a metric and a source_agent, or a metric, a source_bucket, an \
             object_key and a 40-character sha1 (empty: the version's .sha1 object)"
                .into(),
        ));
    }
    Ok(PlanEntry {
        metric: e.metric,
        source: Source::Stored {
            bucket: e.source_bucket,
            key: e.object_key,
            sha1: e.sha1,
        },
    })
}

pub(crate) fn verify_result(report: &crate::verify::VerifyReport) -> pb::VerifyResult {
    pb::VerifyResult {
        run: report.run.map_or(0, |v| v.0),
        parts: report.parts,
        checked: report.checked,
        ok: report.ok,
        corrupt_count: report.corrupt.len(),
        corrupt: report
            .corrupt
            .first()
            .iter()
            .map(|c| pb::CorruptVersion {
                metric: c.metric.clone(),
                version: c.version.0,
                reason: c.reason.clone(),
            })
            .collect(),
        unread_count: report.unread.len(),
        unread: failures(&report.unread),
        bytes: report.bytes,
        corrupt_known: report.corrupt_known,
        parts_due: report.parts_due,
    }
}
