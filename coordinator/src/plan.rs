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

use bucky_shared::layout::{Layout, ManifestEntry, Trust, Version};
use bucky_shared::ring::Ring;

/// Names kept in a plan's summary; the count goes on.
pub const NAMED: usize = 100;

/// One host's bucket as its manifest describes it, read entry by entry in name order.
#[derive(Debug, Clone)]
pub struct Source<I> {
    /// The host whose bucket it is.
    pub host: String,
    /// The bucket's URL.
    pub url: String,
    /// Key layout inside the bucket (its storage prefix).
    pub layout: Layout,
    /// The newest manifest's entries at or before the restore date, in name order.
    pub entries: I,
    /// What verification found in the bucket: a corrupt version is passed over for the newest
    /// good one.
    pub trust: std::sync::Arc<Trust>,
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
    /// SHA-1 of the raw file (empty: read the version's `.sha1`; the manifest has only the
    /// newest version's).
    pub sha1: String,
    /// The version.
    pub version: Version,
    /// Stored (compressed) bytes to download.
    pub bytes: u64,
    /// Write or fill.
    pub action: Action,
    /// Whether the copy's newest version was found corrupt.
    pub passed_over: Option<Passed>,
}

/// A copy whose newest version verification found corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passed {
    /// This corrupt version was passed over for the step's (older, not found corrupt).
    For(Version),
    /// Every version is corrupt; the step uses the newest.
    NoGoodVersion,
}

/// The version of `entry` to restore: its newest unless verification found that corrupt, then
/// the newest not found corrupt.
fn usable(entry: &ManifestEntry, trust: &Trust) -> (Version, Option<Passed>) {
    let newest = entry.latest();
    if trust.corrupt_reason(&entry.name, newest).is_none() {
        return (newest, None);
    }
    match entry
        .versions
        .iter()
        .rev()
        .find(|v| trust.corrupt_reason(&entry.name, **v).is_none())
    {
        Some(good) => (*good, Some(Passed::For(newest))),
        None => (newest, Some(Passed::NoGoodVersion)),
    }
}

/// What the planner says about one metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Restore it: the write first, then the fills.
    Metric(Vec<Step>),
    /// The target's own bucket holds it but the ring now places it elsewhere; not restored
    /// (unless `all`, when it also comes as a `Metric`).
    NotOwned(String),
}

/// Downloads from one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceTotal {
    /// Steps reading from it.
    pub steps: u64,
    /// Stored bytes.
    pub bytes: u64,
}

/// A restore plan in figures: what it restores, reads from where, and leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSummary {
    /// The host restored.
    pub target: String,
    /// Distinct metrics restored.
    pub metrics: u64,
    /// Steps (writes and fills).
    pub steps: u64,
    /// Metrics in the target's own bucket that the ring now places elsewhere...
    pub not_owned_count: u64,
    /// ... the first [`NAMED`] of them.
    pub not_owned: Vec<String>,
    /// Per source bucket URL: steps and bytes.
    pub sources: BTreeMap<String, SourceTotal>,
    /// Copies whose newest version is corrupt, restored from an older good version...
    pub corrupt_passed_count: u64,
    /// ... the first [`NAMED`], `metric: bucket: corrupt -> used`.
    pub corrupt_passed: Vec<String>,
    /// Copies with no good version (planned from the newest; the agent refuses it if damaged).
    pub corrupt_only_count: u64,
}

impl PlanSummary {
    /// Counts `planned` in.
    pub fn add(&mut self, planned: &Planned) {
        match planned {
            Planned::Metric(steps) => {
                self.metrics += 1;
                self.steps += steps.len() as u64;
                for step in steps {
                    match &step.passed_over {
                        Some(Passed::For(corrupt)) => {
                            self.corrupt_passed_count += 1;
                            if self.corrupt_passed.len() < NAMED {
                                self.corrupt_passed.push(format!(
                                    "{}: {}: {corrupt} -> {}",
                                    step.metric, step.bucket, step.version
                                ));
                            }
                        }
                        Some(Passed::NoGoodVersion) => self.corrupt_only_count += 1,
                        None => {}
                    }
                    let total = self.sources.entry(step.bucket.clone()).or_default();
                    total.steps += 1;
                    total.bytes += step.bytes;
                }
            }
            Planned::NotOwned(name) => {
                self.not_owned_count += 1;
                if self.not_owned.len() < NAMED {
                    self.not_owned.push(name.clone());
                }
            }
        }
    }
}

/// Plans the restore of `target` from `sources`, handing each metric's plan to `emit` in name
/// order (it returns false to stop). The sources are merged as they are read: memory holds one
/// entry per source. `select` limits the metrics (e.g. a glob); `all` also restores what the
/// target's own bucket holds but the ring no longer gives it.
pub fn plan_restore<I: Iterator<Item = ManifestEntry>>(
    target: &str,
    ring: &Ring,
    sources: Vec<Source<I>>,
    select: impl Fn(&str) -> bool,
    all: bool,
    mut emit: impl FnMut(Planned) -> bool,
) {
    let mut sources: Vec<(Source<I>, Option<ManifestEntry>)> = sources
        .into_iter()
        .map(|mut s| {
            let head = s.entries.next();
            (s, head)
        })
        .collect();
    let mut owners = Vec::new();
    let mut held: Vec<(usize, ManifestEntry)> = Vec::new();
    loop {
        let Some(metric) = sources
            .iter()
            .filter_map(|(_, head)| head.as_ref().map(|e| e.name.as_str()))
            .min()
            .map(str::to_string)
        else {
            return;
        };
        held.clear();
        for (i, (source, head)) in sources.iter_mut().enumerate() {
            if head.as_ref().is_some_and(|e| e.name == metric) {
                let entry = std::mem::replace(head, source.entries.next());
                held.extend(entry.map(|e| (i, e)));
            }
        }
        if !select(&metric) {
            continue;
        }
        ring.owners_into(&metric, &mut owners);
        let owned = owners
            .iter()
            .any(|&i| ring.destinations()[i].host == target);
        let in_own_bucket = held.iter().any(|(i, _)| sources[*i].0.host == target);
        if !owned {
            if in_own_bucket && !emit(Planned::NotOwned(metric.clone())) {
                return;
            }
            if !(all && in_own_bucket) {
                continue;
            }
        }
        // Newest first; on a tie the target's own bucket, then bucket URL, for a stable plan.
        let source = |i: usize| &sources[i].0;
        let mut chosen: Vec<(usize, ManifestEntry, Version, Option<Passed>)> = held
            .drain(..)
            .map(|(i, entry)| {
                let (version, passed) = usable(&entry, &source(i).trust);
                (i, entry, version, passed)
            })
            .collect();
        chosen.sort_by(|(a, _, va, _), (b, _, vb, _)| {
            vb.cmp(va)
                .then((source(*b).host == target).cmp(&(source(*a).host == target)))
                .then(source(*a).url.cmp(&source(*b).url))
        });
        let steps = chosen
            .into_iter()
            .enumerate()
            .map(|(n, (i, entry, version, passed_over))| {
                let view = source(i);
                Step {
                    metric: metric.clone(),
                    bucket: view.url.clone(),
                    key: view.layout.data_key(&metric, version),
                    sha1: match version == entry.latest() {
                        true => entry.sha1,
                        false => String::new(),
                    },
                    version,
                    bytes: entry.stored_size,
                    action: if n == 0 { Action::Write } else { Action::Fill },
                    passed_over,
                }
            })
            .collect();
        if !emit(Planned::Metric(steps)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
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

    fn view(host: &str, metrics: &[(&str, i64)]) -> View {
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
        Source {
            host: host.into(),
            url: format!("file:///b/{host}"),
            layout: Layout::new(""),
            entries: entries.into_iter(),
            trust: std::sync::Arc::default(),
        }
    }

    type View = Source<std::vec::IntoIter<ManifestEntry>>;

    /// A plan collected whole, as tests look at it.
    struct Collected {
        steps: Vec<Step>,
        not_owned: Vec<String>,
        summary: PlanSummary,
    }

    impl Collected {
        fn metric_count(&self) -> u64 {
            self.summary.metrics
        }
    }

    fn plan_restore(
        target: &str,
        ring: &Ring,
        views: &[View],
        select: impl Fn(&str) -> bool,
        all: bool,
    ) -> Collected {
        let mut out = Collected {
            steps: Vec::new(),
            not_owned: Vec::new(),
            summary: PlanSummary::default(),
        };
        super::plan_restore(target, ring, views.to_vec(), select, all, |planned| {
            out.summary.add(&planned);
            match planned {
                Planned::Metric(steps) => out.steps.extend(steps),
                Planned::NotOwned(name) => out.not_owned.push(name),
            }
            true
        });
        out
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
            plan.summary.sources["file:///b/a"],
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
        let views: Vec<View> = ["a", "b", "c"]
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

#[cfg(test)]
mod corrupt_tests {
    use bucky_shared::layout::VerifyRecord;
    use bucky_shared::layout::verification::{CorruptVersion, FORMAT, PARTS};
    use bucky_shared::ring::{Algorithm, Flavour, RingConfig};

    use super::*;

    fn entry(name: &str, versions: &[i64]) -> ManifestEntry {
        ManifestEntry {
            name: name.into(),
            versions: versions.iter().map(|v| Version(*v)).collect(),
            sha1: "f".repeat(40),
            size: 10,
            stored_size: 5,
            mtime_ns: 0,
            missing_since: None,
        }
    }

    fn trust(corrupt: &[(&str, i64)]) -> Trust {
        Trust::from_records(vec![VerifyRecord {
            format: FORMAT,
            node: "a".into(),
            started: Version(1000),
            finished: Version(1000),
            parts: (0..PARTS).collect(),
            checked: 0,
            ok: 0,
            unread: 0,
            corrupt: corrupt
                .iter()
                .map(|(m, v)| CorruptVersion {
                    metric: m.to_string(),
                    version: Version(*v),
                    reason: "SHA-1 differs".into(),
                })
                .collect(),
            resolved: Vec::new(),
        }])
    }

    #[test]
    fn a_corrupt_newest_version_is_passed_over_for_the_newest_good_one() {
        let ring = Ring::new(&RingConfig::new(
            Algorithm::CarbonCh,
            Flavour::Carbon,
            1,
            ["a:2004".to_string()],
        ))
        .unwrap();
        let entries = vec![
            entry("m.one", &[10, 20, 30]),
            entry("m.two", &[10]),
            entry("m.zero", &[40]),
        ];
        let source = Source {
            host: "a".into(),
            url: "file:///b/a".into(),
            layout: Layout::new(""),
            entries: entries.into_iter(),
            trust: std::sync::Arc::new(trust(&[("m.one", 30), ("m.one", 20), ("m.two", 10)])),
        };
        let mut summary = PlanSummary::default();
        let mut steps = Vec::new();
        plan_restore(
            "a",
            &ring,
            vec![source],
            |_| true,
            false,
            |p| {
                summary.add(&p);
                if let Planned::Metric(s) = p {
                    steps.extend(s);
                }
                true
            },
        );
        let one = steps.iter().find(|s| s.metric == "m.one").unwrap();
        assert_eq!(one.version, Version(10));
        assert_eq!(one.key, Layout::new("").data_key("m.one", Version(10)));
        assert!(
            one.sha1.is_empty(),
            "an older version's SHA-1 is its .sha1 object's"
        );
        let zero = steps.iter().find(|s| s.metric == "m.zero").unwrap();
        assert_eq!((zero.version, zero.sha1.len()), (Version(40), 40));
        assert_eq!(summary.corrupt_passed_count, 1);
        assert!(
            summary.corrupt_passed[0].starts_with("m.one: file:///b/a: "),
            "{:?}",
            summary.corrupt_passed
        );
        assert_eq!(summary.corrupt_only_count, 1, "m.two has no good version");
    }
}
