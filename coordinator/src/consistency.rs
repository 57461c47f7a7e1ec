//! Whether each node holds exactly what the ring places on it. Every agent streams its metric
//! names in byte order; the streams are merged, so each name is seen once with the set of nodes
//! holding it, and compared with its owners under the ring as configured now (replication
//! included). Memory is one batch of names per agent, whatever the size of the cluster.
//!
//! A node holding a metric the ring does not place there has it *misplaced*; a node the ring
//! places a metric on, which another node holds and it does not, is *missing* it. A metric no
//! node holds is invisible here (it is a backup's business, not placement's).

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::agents::NameBatches;
use bucky_shared::ring::Ring;

/// How long an agent may take to send its next batch of names before its listing is given up.
pub const BATCH_DEADLINE: Duration = Duration::from_secs(60);

/// Findings per batch sent to the listener.
pub const FINDINGS_BATCH: usize = 1000;

/// How a node and the ring disagree about a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Held, not placed there.
    Misplaced,
    /// Placed there, not held (another node holds it).
    Missing,
}

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Dotted metric name.
    pub metric: String,
    /// Index of the node in the host list given to [`check`].
    pub host: usize,
    /// Which.
    pub kind: Kind,
}

/// One node's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// Metrics it holds.
    pub held: u64,
    /// Of those, not placed on it.
    pub misplaced: u64,
    /// Placed on it and held elsewhere, not by it.
    pub missing: u64,
    /// Why its listing failed or stopped; its counts are then partial.
    pub error: Option<String>,
}

/// The result of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per host, in the order given.
    pub nodes: Vec<NodeCounts>,
    /// Distinct metrics seen.
    pub metrics: u64,
}

impl Report {
    /// Whether every node was listed and holds exactly its share.
    pub fn consistent(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.error.is_none() && n.misplaced == 0 && n.missing == 0)
    }
}

/// One agent's stream, one batch and one name at a time.
struct Source {
    batches: NameBatches,
    batch: std::vec::IntoIter<String>,
    head: Option<String>,
    error: Option<String>,
}

impl Source {
    /// Moves to the next name; at the end, or on an error, `head` is `None`.
    async fn advance(&mut self) {
        loop {
            if let Some(name) = self.batch.next() {
                // A name out of order would be counted twice, or missing where it is not.
                if self.head.as_ref().is_some_and(|head| name <= *head) {
                    self.fail(format!(
                        "the agent listed {name} after {}: its names are not in byte order",
                        self.head.as_deref().unwrap_or_default()
                    ));
                    return;
                }
                self.head = Some(name);
                return;
            }
            match tokio::time::timeout(BATCH_DEADLINE, self.batches.next()).await {
                Ok(Some(Ok(batch))) => self.batch = batch.into_iter(),
                Ok(Some(Err(e))) => return self.fail(e.to_string()),
                Ok(None) => {
                    self.head = None;
                    return;
                }
                Err(_) => {
                    return self.fail(format!(
                        "listing stopped: no names within {}s",
                        BATCH_DEADLINE.as_secs()
                    ));
                }
            }
        }
    }

    fn fail(&mut self, error: String) {
        self.head = None;
        self.error = Some(error);
    }
}

/// Every host's names merged: each metric once, in byte order, with the hosts holding it.
pub struct Merge {
    sources: Vec<Source>,
}

impl Merge {
    /// Starts reading every listing (`lists[i]` is host `i`'s).
    pub async fn new(lists: Vec<NameBatches>) -> Merge {
        let mut sources: Vec<Source> = lists
            .into_iter()
            .map(|batches| Source {
                batches,
                batch: Vec::new().into_iter(),
                head: None,
                error: None,
            })
            .collect();
        for source in &mut sources {
            source.advance().await;
        }
        Merge { sources }
    }

    /// The next metric, with `holds[i]` set when host `i` holds it; `None` at the end.
    pub async fn next(&mut self, holds: &mut [bool]) -> Option<String> {
        let metric = self
            .sources
            .iter()
            .filter_map(|s| s.head.as_deref())
            .min()
            .map(str::to_string)?;
        for (i, source) in self.sources.iter_mut().enumerate() {
            holds[i] = source.head.as_deref() == Some(metric.as_str());
            if holds[i] {
                source.advance().await;
            }
        }
        Some(metric)
    }

    /// Whether host `i`'s listing has failed (what it holds from here on is unknown).
    pub fn failed(&self, i: usize) -> bool {
        self.sources[i].error.is_some()
    }

    /// Why each listing failed, if it did.
    pub fn errors(self) -> Vec<Option<String>> {
        self.sources.into_iter().map(|s| s.error).collect()
    }
}

/// For each destination of `ring`, the index of its host in `hosts` (`None`: not a host here).
pub fn host_indexes(ring: &Ring, hosts: &[String]) -> Vec<Option<usize>> {
    ring.destinations()
        .iter()
        .map(|d| hosts.iter().position(|h| *h == d.host))
        .collect()
}

/// Sets `owns[h]` for each host the ring places `metric` on; `owners` is scratch space.
pub fn owning_hosts(
    ring: &Ring,
    host_of: &[Option<usize>],
    metric: &str,
    owners: &mut Vec<usize>,
    owns: &mut [bool],
) {
    ring.owners_into(metric, owners);
    owns.fill(false);
    for &d in owners.iter() {
        if let Some(h) = host_of[d] {
            owns[h] = true;
        }
    }
}

/// Compares what each of `hosts` holds (`lists[i]` is `hosts[i]`'s listing) with where `ring`
/// places it. Each finding is sent to `findings`, in batches, when given; a listener that goes
/// away stops the check. A host whose listing fails gets its error in the report, and from then
/// on counts nothing as missing on it (what it holds past that point is unknown).
pub async fn check(
    ring: &Ring,
    hosts: &[String],
    lists: Vec<NameBatches>,
    findings: Option<mpsc::Sender<Vec<Finding>>>,
) -> Report {
    assert_eq!(lists.len(), hosts.len(), "one listing per host");
    let host_of = host_indexes(ring, hosts);
    let mut merge = Merge::new(lists).await;
    let mut report = Report {
        nodes: vec![NodeCounts::default(); hosts.len()],
        metrics: 0,
    };
    let mut holds = vec![false; hosts.len()];
    let mut owns = vec![false; hosts.len()];
    let mut owners = Vec::new();
    let mut pending = Vec::new();
    while let Some(metric) = merge.next(&mut holds).await {
        report.metrics += 1;
        owning_hosts(ring, &host_of, &metric, &mut owners, &mut owns);
        for (h, node) in report.nodes.iter_mut().enumerate() {
            let kind = match (holds[h], owns[h]) {
                (true, owned) => {
                    node.held += 1;
                    if owned {
                        continue;
                    }
                    node.misplaced += 1;
                    Kind::Misplaced
                }
                (false, true) if !merge.failed(h) => {
                    node.missing += 1;
                    Kind::Missing
                }
                (false, _) => continue,
            };
            if findings.is_some() {
                pending.push(Finding {
                    metric: metric.clone(),
                    host: h,
                    kind,
                });
            }
        }
        if pending.len() >= FINDINGS_BATCH
            && let Some(tx) = &findings
            && tx.send(std::mem::take(&mut pending)).await.is_err()
        {
            break;
        }
    }
    if let Some(tx) = &findings
        && !pending.is_empty()
    {
        let _ = tx.send(pending).await;
    }
    for (node, error) in report.nodes.iter_mut().zip(merge.errors()) {
        node.error = error;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::AgentError;
    use bucky_shared::ring::{Algorithm, Flavour, RingConfig};

    fn ring(hosts: &[&str], replication: usize) -> Ring {
        Ring::new(&RingConfig::new(
            Algorithm::CarbonCh,
            Flavour::Carbon,
            replication,
            hosts
                .iter()
                .map(|h| format!("{h}:2004"))
                .collect::<Vec<_>>(),
        ))
        .unwrap()
    }

    /// A listing of `names` (sorted here) in batches of 3.
    fn listing(mut names: Vec<String>) -> NameBatches {
        names.sort();
        let batches: Vec<Result<Vec<String>, AgentError>> =
            names.chunks(3).map(|c| Ok(c.to_vec())).collect();
        futures::stream::iter(batches).boxed()
    }

    fn owners(ring: &Ring, metric: &str) -> Vec<String> {
        ring.owners(metric)
            .into_iter()
            .map(|d| ring.destinations()[d].host.clone())
            .collect()
    }

    #[tokio::test]
    async fn misplaced_and_missing_are_counted_and_listed_against_the_ring() {
        let hosts: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let old = ring(&["a", "b", "c"], 2);
        let new = ring(&["a", "b", "c", "d"], 2);
        let names: Vec<String> = (0..200).map(|i| format!("svc.m{i:03}.count")).collect();
        // Trees as the three-node ring placed them; d is new and empty.
        let mut trees: Vec<Vec<String>> = vec![Vec::new(); 4];
        for name in &names {
            for owner in owners(&old, name) {
                trees[hosts.iter().position(|h| *h == owner).unwrap()].push(name.clone());
            }
        }
        // One metric lost from a node both rings place it on.
        let lost = names
            .iter()
            .find(|n| owners(&new, n).contains(&owners(&old, n)[0]))
            .unwrap();
        let lost_from = hosts
            .iter()
            .position(|h| *h == owners(&old, lost)[0])
            .unwrap();
        trees[lost_from].retain(|n| n != lost);

        let (tx, mut rx) = mpsc::channel(100);
        let lists = trees.iter().cloned().map(listing).collect();
        let report = check(&new, &hosts, lists, Some(tx)).await;
        let mut findings = Vec::new();
        while let Some(batch) = rx.recv().await {
            findings.extend(batch);
        }

        // The expected findings, from the rules directly.
        let mut expected = Vec::new();
        for name in &names {
            let owned = owners(&new, name);
            for (h, host) in hosts.iter().enumerate() {
                let held = trees[h].contains(name);
                let owner = owned.contains(host);
                if held && !owner {
                    expected.push((name.clone(), h, Kind::Misplaced));
                } else if !held && owner {
                    expected.push((name.clone(), h, Kind::Missing));
                }
            }
        }
        let got: Vec<_> = findings
            .iter()
            .map(|f| (f.metric.clone(), f.host, f.kind))
            .collect();
        assert_eq!(got, expected, "in name order, each once");
        assert!(got.contains(&(lost.clone(), lost_from, Kind::Missing)));
        assert_eq!(report.metrics, 200);
        for (h, node) in report.nodes.iter().enumerate() {
            assert_eq!(node.held, trees[h].len() as u64);
            let count = |k| expected.iter().filter(|e| e.1 == h && e.2 == k).count() as u64;
            assert_eq!(node.misplaced, count(Kind::Misplaced));
            assert_eq!(node.missing, count(Kind::Missing));
        }
        assert!(report.nodes[3].missing > 0 && report.nodes[3].held == 0);
        assert!(!report.consistent());

        // The same trees under the ring that made them: consistent but for the lost copy.
        let lists = trees[..3].iter().cloned().map(listing).collect();
        let report = check(&old, &hosts[..3], lists, None).await;
        assert_eq!(
            report.nodes.iter().map(|n| n.missing).sum::<u64>(),
            1,
            "{report:?}"
        );
        assert!(report.nodes.iter().all(|n| n.misplaced == 0));
    }

    #[tokio::test]
    async fn a_failed_or_disordered_listing_is_named_and_counts_nothing_missing() {
        let hosts: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let ring = ring(&["a", "b"], 2);
        let names: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        let broken: NameBatches = futures::stream::iter(vec![
            Ok(vec!["m0".to_string()]),
            Err(AgentError::Unreachable {
                host: "b".into(),
                address: "http://b".into(),
                reason: "connection reset".into(),
            }),
        ])
        .boxed();
        let report = check(&ring, &hosts, vec![listing(names.clone()), broken], None).await;
        assert_eq!(report.nodes[0].missing, 0);
        assert_eq!(report.nodes[1].held, 1);
        assert_eq!(report.nodes[1].missing, 0, "unknown, not missing");
        assert!(
            report.nodes[1]
                .error
                .as_deref()
                .unwrap()
                .contains("connection reset")
        );
        assert!(!report.consistent());

        let disordered: NameBatches =
            futures::stream::iter(vec![Ok(vec!["m5".to_string(), "m1".to_string()])]).boxed();
        let report = check(&ring, &hosts, vec![listing(names), disordered], None).await;
        assert!(
            report.nodes[1]
                .error
                .as_deref()
                .unwrap()
                .contains("not in byte order")
        );
    }
}
