//! Planning the restore of one host, rebalance-aware, as a pure value.
//!
//! Input: the newest manifest at or before the restore date of every host's bucket, and the ring
//! as it is now. The target gets every metric the ring now gives it (any of its owners, replicas
//! included) that any bucket holds. For each such metric, every bucket holding it, newest version
//! first (the target's own bucket first on a tie): the first is written, the others safe-filled
//! into it, so data left behind by an earlier rebalance or held by a replica is merged in.
//! Metrics in the target's own bucket that the ring no longer gives it are listed, not restored
//! (unless `all`).

use std::collections::BTreeMap;

use bucky_shared::layout::{Layout, Manifest, Version};
use bucky_shared::ring::Ring;

/// What one host's bucket holds, as its manifest says.
#[derive(Debug, Clone)]
pub struct BucketView {
    /// The host whose bucket it is.
    pub host: String,
    /// The bucket's URL.
    pub url: String,
    /// Key layout inside the bucket (its storage prefix).
    pub layout: Layout,
    /// The newest manifest at or before the restore date.
    pub manifest: Manifest,
}

/// How a step meets the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The metric's newest version: creates the file (or fills an existing one).
    Write,
    /// An older or peer version merged in by safe fill.
    Fill,
}

/// One stored version to put on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Dotted metric name.
    pub metric: String,
    /// Bucket URL.
    pub bucket: String,
    /// Data object key.
    pub key: String,
    /// SHA-1 of the raw file.
    pub sha1: String,
    /// The version.
    pub version: Version,
    /// Stored (compressed) bytes to download.
    pub bytes: u64,
    /// Write or fill.
    pub action: Action,
}

/// Downloads from one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceTotal {
    /// Steps reading from it.
    pub steps: u64,
    /// Stored bytes.
    pub bytes: u64,
}

/// The restore of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePlan {
    /// The host restored.
    pub target: String,
    /// Steps, grouped by metric (sorted), write first then fills.
    pub steps: Vec<Step>,
    /// Metrics in the target's own bucket that the ring now places elsewhere (not restored
    /// unless `all`).
    pub not_owned: Vec<String>,
    /// Per source bucket URL: steps and bytes.
    pub sources: BTreeMap<String, SourceTotal>,
}

impl RestorePlan {
    /// Distinct metrics restored.
    pub fn metric_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.action == Action::Write)
            .count()
    }
}

/// Plans the restore of `target`. `select` limits the metrics (e.g. a glob); `all` also restores
/// what the target's own bucket holds but the ring no longer gives it.
pub fn plan_restore(
    target: &str,
    ring: &Ring,
    views: &[BucketView],
    select: impl Fn(&str) -> bool,
    all: bool,
) -> RestorePlan {
    let mut holders: BTreeMap<&str, Vec<(&BucketView, &bucky_shared::layout::ManifestEntry)>> =
        BTreeMap::new();
    for view in views {
        for entry in &view.manifest.metrics {
            if select(&entry.name) {
                holders
                    .entry(entry.name.as_str())
                    .or_default()
                    .push((view, entry));
            }
        }
    }
    let mut plan = RestorePlan {
        target: target.to_string(),
        ..RestorePlan::default()
    };
    let mut owners = Vec::new();
    for (metric, mut held) in holders {
        ring.owners_into(metric, &mut owners);
        let owned = owners
            .iter()
            .any(|&i| ring.destinations()[i].host == target);
        let in_own_bucket = held.iter().any(|(v, _)| v.host == target);
        if !owned {
            if in_own_bucket {
                plan.not_owned.push(metric.to_string());
            }
            if !(all && in_own_bucket) {
                continue;
            }
        }
        // Newest first; on a tie the target's own bucket, then bucket URL, for a stable plan.
        held.sort_by(|(va, ea), (vb, eb)| {
            eb.latest()
                .cmp(&ea.latest())
                .then((vb.host == target).cmp(&(va.host == target)))
                .then(va.url.cmp(&vb.url))
        });
        for (i, (view, entry)) in held.into_iter().enumerate() {
            let version = entry.latest();
            let total = plan.sources.entry(view.url.clone()).or_default();
            total.steps += 1;
            total.bytes += entry.stored_size;
            plan.steps.push(Step {
                metric: metric.to_string(),
                bucket: view.url.clone(),
                key: view.layout.data_key(metric, version),
                sha1: entry.sha1.clone(),
                version,
                bytes: entry.stored_size,
                action: if i == 0 { Action::Write } else { Action::Fill },
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use bucky_shared::layout::{ManifestEntry, manifest};
    use bucky_shared::ring::{Algorithm, Flavour, RingConfig};

    use super::*;

    fn ring(hosts: &[&str], replication: usize) -> Ring {
        let destinations = hosts.iter().map(|h| format!("{h}:2004"));
        Ring::new(&RingConfig::new(
            Algorithm::CarbonCh,
            Flavour::Carbon,
            replication,
            destinations,
        ))
        .unwrap()
    }

    fn view(host: &str, metrics: &[(&str, i64)]) -> BucketView {
        let mut entries: Vec<ManifestEntry> = metrics
            .iter()
            .map(|(name, v)| ManifestEntry {
                name: name.to_string(),
                versions: vec![Version(*v)],
                sha1: format!("{:040x}", *v),
                size: 1000,
                stored_size: 100,
                mtime_ns: 0,
                missing_since: None,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        BucketView {
            host: host.into(),
            url: format!("file:///b/{host}"),
            layout: Layout::new(""),
            manifest: Manifest {
                format: manifest::FORMAT,
                node: host.into(),
                started: Version(0),
                finished: Version(0),
                metrics: entries,
                deletes: vec![],
                stats: None,
            },
        }
    }

    /// Names the ring places on each host.
    fn names_owned_by(ring: &Ring, host: &str, count: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("m.{i}"))
            .filter(|m| {
                ring.owners(m)
                    .iter()
                    .any(|&i| ring.destinations()[i].host == host)
            })
            .take(count)
            .collect()
    }

    #[test]
    fn the_target_gets_what_the_ring_gives_it_newest_first_merged_from_every_holder() {
        let three = ring(&["a", "b", "c"], 1);
        let mine = names_owned_by(&three, "c", 3);
        let theirs = names_owned_by(&three, "a", 2);
        // c's metric 0 is also in a's bucket (left there by an earlier rebalance), newer there.
        let views = [
            view("a", &[(mine[0].as_str(), 200), (theirs[0].as_str(), 100)]),
            view("b", &[(theirs[1].as_str(), 100)]),
            view(
                "c",
                &[
                    (mine[0].as_str(), 100),
                    (mine[1].as_str(), 100),
                    (mine[2].as_str(), 100),
                    (theirs[1].as_str(), 50),
                ],
            ),
        ];
        let plan = plan_restore("c", &three, &views, |_| true, false);
        assert_eq!(plan.metric_count(), 3);
        let first: Vec<&Step> = plan.steps.iter().filter(|s| s.metric == mine[0]).collect();
        assert_eq!(first.len(), 2);
        assert_eq!(
            (first[0].bucket.as_str(), first[0].action),
            ("file:///b/a", Action::Write),
            "newest first"
        );
        assert_eq!(
            (first[1].bucket.as_str(), first[1].action),
            ("file:///b/c", Action::Fill)
        );
        assert_eq!(first[0].key, format!("{}/{}.wsp.gz", mine[0], Version(200)));
        assert_eq!(
            plan.not_owned,
            vec![theirs[1].clone()],
            "c's bucket holds a metric the ring gives to a"
        );
        assert!(
            !plan
                .steps
                .iter()
                .any(|s| s.metric == theirs[0] || s.metric == theirs[1])
        );
        assert_eq!(
            plan.sources["file:///b/a"],
            SourceTotal {
                steps: 1,
                bytes: 100
            }
        );
        let all = plan_restore("c", &three, &views, |_| true, true);
        assert_eq!(all.metric_count(), 4);
    }

    #[test]
    fn a_new_node_receives_exactly_its_share_from_the_previous_owners() {
        let three = ring(&["a", "b", "c"], 1);
        let four = ring(&["a", "b", "c", "d"], 1);
        let names: Vec<String> = (0..300).map(|i| format!("servers.s{i}.cpu")).collect();
        let views: Vec<BucketView> = ["a", "b", "c"]
            .iter()
            .map(|h| {
                let held: Vec<(&str, i64)> = names
                    .iter()
                    .filter(|m| three.destinations()[three.owners(m)[0]].host == *h)
                    .map(|m| (m.as_str(), 100))
                    .collect();
                view(h, &held)
            })
            .collect();
        let plan = plan_restore("d", &four, &views, |_| true, false);
        let expected: Vec<&String> = names
            .iter()
            .filter(|m| four.destinations()[four.owners(m)[0]].host == "d")
            .collect();
        assert!(!expected.is_empty());
        let mut got: Vec<&String> = plan.steps.iter().map(|s| &s.metric).collect();
        got.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(
            got, want,
            "exactly the metrics the ring now gives d, nothing else"
        );
        assert!(plan.not_owned.is_empty());
    }

    #[test]
    fn replicas_count_as_owned_and_ties_prefer_the_own_bucket() {
        let r = ring(&["a", "b"], 2);
        let views = [view("a", &[("x.y", 100)]), view("b", &[("x.y", 100)])];
        let plan = plan_restore("b", &r, &views, |_| true, false);
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[0].bucket, "file:///b/b");
        let plan = plan_restore("b", &r, &views, |m| m.starts_with("nope"), false);
        assert!(plan.steps.is_empty());
    }
}
