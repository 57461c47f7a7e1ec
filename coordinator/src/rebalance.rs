//! Moving live metrics to where the ring places them now, agent to agent. The agents' listings
//! are merged ([`consistency::Merge`]); for each metric, every owner that lacks it or may hold
//! less receives it from the nodes holding it misplaced: a copy it lacks is written whole (temp
//! name, fsync, rename), one it holds is safe-filled, so no present point is ever changed. Each
//! destination agent reads from the source agent directly (its restore, with peer sources); the
//! coordinator only passes names and addresses, a bounded number at a time. Nothing is deleted.
//!
//! Rerunning moves nothing twice in effect: a file already there is filled, and a fill of what
//! the file already has writes no point.

use bucky_proto::v1 as pb;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::agents::{AgentApi, AgentError};
use crate::config::{Cluster, MovesSection};
use crate::consistency::{self, Merge};
use bucky_shared::selection::Selection;

/// Entries queued per destination agent before the merge waits for it.
const QUEUE: usize = 1000;

/// One copy of a metric from one node to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Dotted metric name.
    pub metric: String,
    /// Host index of the node that receives it.
    pub to: usize,
    /// Host index of the node it is read from.
    pub from: usize,
    /// Whether `to` holds the metric already (it is filled) or not (written whole).
    pub fill: bool,
}

/// The moves one metric needs, given which hosts hold it and which the ring places it on, in the
/// order each destination applies them. Sources are the hosts holding it misplaced; an owner that
/// lacks it while no misplaced copy exists gets it from an owner that has it (a lost replica).
pub fn moves_of(metric: &str, holds: &[bool], owns: &[bool], out: &mut Vec<Move>) {
    let misplaced: Vec<usize> = (0..holds.len()).filter(|&h| holds[h] && !owns[h]).collect();
    for to in (0..owns.len()).filter(|&h| owns[h]) {
        let mut has = holds[to];
        let from_owner = (!has && misplaced.is_empty())
            .then(|| (0..holds.len()).find(|&h| holds[h] && owns[h]))
            .flatten();
        for from in misplaced.iter().copied().chain(from_owner) {
            out.push(Move {
                metric: metric.to_string(),
                to,
                from,
                fill: has,
            });
            has = true;
        }
    }
}

/// The moves a heal makes for one metric: each owner in `only` (every owner when `None`) that
/// holds it is filled from each other owner holding it; an owner that lacks it gets it written
/// from the first owner holding it, then filled from the others. Misplaced copies are left to
/// [`moves_of`].
pub fn heal_moves_of(
    metric: &str,
    holds: &[bool],
    owns: &[bool],
    only: Option<usize>,
    out: &mut Vec<Move>,
) {
    let replicas: Vec<usize> = (0..holds.len()).filter(|&h| holds[h] && owns[h]).collect();
    for to in (0..owns.len()).filter(|&h| owns[h] && only.is_none_or(|o| o == h)) {
        let mut has = holds[to];
        for &from in replicas.iter().filter(|&&r| r != to) {
            out.push(Move {
                metric: metric.to_string(),
                to,
                from,
                fill: has,
            });
            has = true;
        }
    }
}

/// Which job [`run`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Misplaced copies to their owners ([`moves_of`]).
    Rebalance,
    /// Replicas filled from each other ([`heal_moves_of`]).
    Heal {
        /// Only this host's replicas.
        only: Option<usize>,
        /// Only points newer than this Unix time (0: all).
        since: i64,
    },
}

/// What a rebalance did on one node.
#[derive(Debug, Clone, Default)]
pub struct NodeResult {
    /// Moves planned into it.
    pub moves: u64,
    /// The agent's result, when it ran; `None` when nothing was moved into it.
    pub result: Option<Result<pb::RestoreResult, AgentError>>,
    /// Its misplaced copies removed (with delete).
    pub deleted: u64,
    /// Its misplaced copies kept (with delete), and the first reasons.
    pub kept: u64,
    /// `metric: why`, at most [`KEPT_REASONS`].
    pub kept_reasons: Vec<String>,
}

/// Reasons for kept copies named per node.
pub const KEPT_REASONS: usize = 20;

/// Metrics whose deletion is being confirmed at once.
const DELETES_IN_FLIGHT: usize = 16;

impl NodeResult {
    /// Whether its part failed: the agent, or a move into it.
    pub fn failed(&self) -> bool {
        match &self.result {
            Some(Ok(r)) => r.failed_count > 0,
            Some(Err(_)) => true,
            None => false,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Per host, in cluster order.
    pub nodes: Vec<NodeResult>,
    /// Metrics seen in the cluster (selected ones).
    pub metrics: u64,
    /// Hosts whose listing failed, with why: metrics they hold may have been left unmoved.
    pub listing_errors: Vec<(usize, String)>,
    /// Why deletion was asked for and not done (a move failed, a node was not listed).
    pub delete_skipped: Option<String>,
}

/// Every member's listing merged, each selected metric with who holds it and who the ring
/// places it on: what both a move job and a deletion walk.
struct Placement<'a> {
    cluster: &'a Cluster,
    selection: &'a Selection,
    members: Vec<crate::config::Host>,
    host_of: Vec<Option<usize>>,
    merge: Merge,
    holds: Vec<bool>,
    owns: Vec<bool>,
    owners: Vec<usize>,
}

impl<'a> Placement<'a> {
    async fn open<A: AgentApi>(
        cluster: &'a Cluster,
        agents: &[A],
        selection: &'a Selection,
    ) -> Self {
        let members = cluster.members();
        let hosts: Vec<String> = members.iter().map(|h| h.name.clone()).collect();
        Placement {
            cluster,
            selection,
            host_of: consistency::host_indexes(&cluster.ring, &hosts),
            merge: Merge::new(agents.iter().map(AgentApi::list_metrics).collect()).await,
            holds: vec![false; members.len()],
            owns: vec![false; members.len()],
            owners: Vec::new(),
            members,
        }
    }

    /// The moves `job` makes of `metric` (the one [`Placement::next`] returned) into `moves`;
    /// returns the time from which points are filled (0: every point).
    fn moves_of(&mut self, job: Job, metric: &str, moves: &mut Vec<Move>) -> i64 {
        // A host whose listing failed may hold it after all: a fill, never a blind write.
        for (h, own) in self.owns.iter().enumerate() {
            if *own && !self.holds[h] && self.merge.failed(h) {
                self.holds[h] = true;
            }
        }
        moves.clear();
        match job {
            Job::Rebalance => {
                moves_of(metric, &self.holds, &self.owns, moves);
                0
            }
            Job::Heal { only, since } => {
                heal_moves_of(metric, &self.holds, &self.owns, only, moves);
                since
            }
        }
    }

    /// The next selected metric; `holds` and `owns` then describe it.
    async fn next(&mut self) -> Option<String> {
        loop {
            let metric = self.merge.next(&mut self.holds).await?;
            if self.selection.matches(&metric) {
                let ring = &self.cluster.ring;
                consistency::owning_hosts(
                    ring,
                    &self.host_of,
                    &metric,
                    &mut self.owners,
                    &mut self.owns,
                );
                return Some(metric);
            }
        }
    }
}

/// How many metrics `job` moves into each member (by index).
async fn metrics_per_destination<A: AgentApi>(
    cluster: &Cluster,
    agents: &[A],
    job: Job,
    selection: &Selection,
) -> Vec<u64> {
    let mut placement = Placement::open(cluster, agents, selection).await;
    let mut totals = vec![0u64; placement.members.len()];
    let (mut moves, mut into) = (Vec::new(), Vec::new());
    while let Some(metric) = placement.next().await {
        placement.moves_of(job, &metric, &mut moves);
        into.clear();
        into.extend(moves.drain(..).map(|m| m.to));
        into.sort_unstable();
        into.dedup();
        for &to in &into {
            totals[to] += 1;
        }
    }
    totals
}

/// Plans the moves of `job` (`dry_run`: only sends them to `planned`) or carries them out
/// through each destination's agent. `agents` are those of [`Cluster::members`], in that order
/// (sources outside the ring are read from, never written to). `planned` receives every move as
/// it is planned, when given.
pub async fn run<A: AgentApi + Clone + 'static>(
    cluster: &Cluster,
    agents: &[A],
    job: Job,
    pace: MovesSection,
    selection: &Selection,
    dry_run: bool,
    planned: Option<mpsc::Sender<Move>>,
) -> Outcome {
    // A first pass counts each destination's metrics, so its agent knows the job's size and
    // status can give an ETA; it costs one more listing of every node, seconds against the
    // hours a paced move of millions of metrics takes.
    let totals = match dry_run {
        true => Vec::new(),
        false => metrics_per_destination(cluster, agents, job, selection).await,
    };
    let mut placement = Placement::open(cluster, agents, selection).await;
    let count = placement.members.len();
    let mut moves = Vec::new();
    let mut queues: Vec<Option<mpsc::Sender<pb::RestoreEntry>>> = vec![None; count];
    let mut running = Vec::new();
    let mut counts = vec![0u64; count];
    let mut metrics = 0;
    while let Some(metric) = placement.next().await {
        metrics += 1;
        let since = placement.moves_of(job, &metric, &mut moves);
        for m in moves.drain(..) {
            counts[m.to] += 1;
            if let Some(tx) = &planned {
                let _ = tx.send(m.clone()).await;
            }
            if dry_run {
                continue;
            }
            let queue = queues[m.to].get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let agent = agents[m.to].clone();
                let to = m.to;
                let header = pb::RestoreRequest {
                    job: match job {
                        Job::Rebalance => "rebalance",
                        Job::Heal { .. } => "heal",
                    }
                    .into(),
                    total: totals.get(to).copied().unwrap_or(0),
                    peer_metrics_per_sec: pace.metrics_per_sec,
                    peer_bytes_per_sec: pace.mb_per_sec * 1e6,
                    ..Default::default()
                };
                running.push(tokio::spawn(async move {
                    let entries = tokio_stream::wrappers::ReceiverStream::new(rx);
                    (to, agent.restore(entries, header, |_, _| {}).await)
                }));
                tx
            });
            let entry = pb::RestoreEntry {
                metric: m.metric,
                action: if m.fill {
                    pb::RestoreAction::Fill
                } else {
                    pb::RestoreAction::Write
                } as i32,
                source_agent: placement.members[m.from].agent.clone(),
                since,
                ..Default::default()
            };
            // A destination that stopped taking entries has failed; its result says why.
            let _ = queue.send(entry).await;
        }
    }
    drop(queues);
    let mut nodes: Vec<NodeResult> = counts
        .iter()
        .map(|&moves| NodeResult {
            moves,
            ..NodeResult::default()
        })
        .collect();
    for (to, result) in futures::future::join_all(running)
        .await
        .into_iter()
        .flatten()
    {
        nodes[to].result = Some(result);
    }
    let listing_errors = placement
        .merge
        .errors()
        .into_iter()
        .enumerate()
        .filter_map(|(h, e)| e.map(|e| (h, e)))
        .collect();
    Outcome {
        nodes,
        metrics,
        listing_errors,
        delete_skipped: None,
    }
}

/// Removes every misplaced copy that each owner of its metric confirms holding (every point of
/// it, [`AgentApi::confirm`]) and that has not changed since ([`AgentApi::delete_metric`]);
/// anything else is kept and counted. Counts go into `nodes` (by host index).
pub async fn delete_moved<A: AgentApi>(
    cluster: &Cluster,
    agents: &[A],
    selection: &Selection,
    nodes: &mut [NodeResult],
) -> Vec<(usize, String)> {
    let mut placement = Placement::open(cluster, agents, selection).await;
    let count = placement.members.len();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    fn record(
        nodes: &mut [NodeResult],
        (host, metric, outcome): (usize, String, Result<(), String>),
    ) {
        let node = &mut nodes[host];
        match outcome {
            Ok(()) => node.deleted += 1,
            Err(why) => {
                node.kept += 1;
                if node.kept_reasons.len() < KEPT_REASONS {
                    node.kept_reasons.push(format!("{metric}: {why}"));
                }
            }
        }
    }
    while let Some(metric) = placement.next().await {
        let (holds, owns) = (&placement.holds, &placement.owns);
        let owners_now: Vec<usize> = (0..count).filter(|&h| owns[h]).collect();
        for source in (0..count).filter(|&h| holds[h] && !owns[h]) {
            let metric = metric.clone();
            let owners_now = owners_now.clone();
            let address = placement.members[source].agent.clone();
            in_flight.push(async move {
                let outcome = delete_one(agents, &metric, source, &address, &owners_now).await;
                (source, metric, outcome)
            });
            if in_flight.len() >= DELETES_IN_FLIGHT
                && let Some(done) = in_flight.next().await
            {
                record(nodes, done);
            }
        }
    }
    while let Some(done) = in_flight.next().await {
        record(nodes, done);
    }
    placement
        .merge
        .errors()
        .into_iter()
        .enumerate()
        .filter_map(|(h, e)| e.map(|e| (h, e)))
        .collect()
}

/// Deletes `metric` from `source` once every one of `owners` confirms holding all of it.
async fn delete_one<A: AgentApi>(
    agents: &[A],
    metric: &str,
    source: usize,
    address: &str,
    owners: &[usize],
) -> Result<(), String> {
    if owners.is_empty() {
        return Err("the ring places it on no node of this cluster".into());
    }
    let mut confirmed: Option<String> = None;
    for &owner in owners {
        let answer = agents[owner]
            .confirm(metric, address)
            .await
            .map_err(|e| e.to_string())?;
        if answer.missing_points > 0 {
            return Err(format!(
                "{} lacks {} of its points",
                agents[owner].host(),
                answer.missing_points
            ));
        }
        match &confirmed {
            Some(sha1) if *sha1 != answer.sha1 => {
                return Err("it changed while the owners were asked".into());
            }
            _ => confirmed = Some(answer.sha1),
        }
    }
    let sha1 = confirmed.expect("at least one owner answered");
    agents[source]
        .delete_metric(metric, &sha1)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moves(holds: &[bool], owns: &[bool]) -> Vec<(usize, usize, bool)> {
        let mut out = Vec::new();
        moves_of("m", holds, owns, &mut out);
        out.into_iter().map(|m| (m.to, m.from, m.fill)).collect()
    }

    #[test]
    fn each_owner_gets_every_misplaced_copy_written_first_then_filled() {
        // Held by 0 and 1, placed on 1 and 2: 1 is filled from 0, 2 written from 0.
        assert_eq!(
            moves(&[true, true, false], &[false, true, true]),
            vec![(1, 0, true), (2, 0, false)]
        );
        // Two misplaced copies into an owner that lacks it: written from one, filled from the
        // other.
        assert_eq!(
            moves(&[true, true, false], &[false, false, true]),
            vec![(2, 0, false), (2, 1, true)]
        );
        // Where it belongs already: nothing.
        assert_eq!(moves(&[false, true, true], &[false, true, true]), vec![]);
        // A heal fills replicas from each other, and leaves the misplaced copy alone.
        let mut out = Vec::new();
        heal_moves_of(
            "m",
            &[true, true, true],
            &[false, true, true],
            None,
            &mut out,
        );
        let healed: Vec<_> = out.iter().map(|m| (m.to, m.from, m.fill)).collect();
        assert_eq!(healed, vec![(1, 2, true), (2, 1, true)]);
        out.clear();
        heal_moves_of(
            "m",
            &[false, true, false],
            &[false, true, true],
            Some(2),
            &mut out,
        );
        let healed: Vec<_> = out.iter().map(|m| (m.to, m.from, m.fill)).collect();
        assert_eq!(healed, vec![(2, 1, false)], "only host 2, written whole");
        // A lost replica with no misplaced copy: from the owner that has it.
        assert_eq!(
            moves(&[false, true, false], &[false, true, true]),
            vec![(2, 1, false)]
        );
    }
}
