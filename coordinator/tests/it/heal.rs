//! Heal: two replicas with different gaps (and 0.0 values among their points) end with the union
//! of points on both, agent to agent; `since` bounds the time range filled.

use std::path::Path;
use std::time::Duration;

use bucky_agent::service::AgentConfig;
use bucky_coordinator::agents::GrpcAgent;
use bucky_coordinator::config::{self, Cluster};
use bucky_coordinator::rebalance::{self, Job};
use bucky_shared::metric;
use bucky_shared::selection::Selection;
use bucky_shared::whisper::{self, CreateOptions, Whisper};

const TOKEN: &str = "heal-test-token";
const POINTS: i64 = 300;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The series every replica is a copy of: point `i` at `end - (POINTS - i) * 60`, with zeros.
fn value(i: i64) -> f64 {
    if i % 17 == 0 { 0.0 } else { i as f64 }
}

/// A replica missing the points `gap` selects.
fn write_replica(root: &Path, name: &str, end: i64, gap: impl Fn(i64) -> bool) {
    let path = metric::path_of(root, name).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = whisper::parse_retentions(&["60s:1d", "15m:30d"]).unwrap();
    let image = whisper::create_image(&schema, &CreateOptions::default()).unwrap();
    let mut file = Whisper::open(image, &path).unwrap();
    let points: Vec<(i64, f64)> = (0..POINTS)
        .filter(|&i| !gap(i))
        .map(|i| (end - (POINTS - i) * 60, value(i)))
        .collect();
    file.update_many(&points, end).unwrap();
    std::fs::write(&path, file.storage().bytes()).unwrap();
}

/// The replica's minute values over the series, by point index.
fn minute_points(root: &Path, name: &str, end: i64) -> Vec<Option<f64>> {
    let path = metric::path_of(root, name).unwrap();
    let whisper = Whisper::open(std::fs::File::open(&path).unwrap(), &path).unwrap();
    let series = whisper
        .fetch(end - (POINTS + 1) * 60, Some(end - 60), now())
        .unwrap()
        .unwrap();
    (0..POINTS)
        .map(|i| {
            let t = end - (POINTS - i) * 60;
            series
                .points()
                .find(|(at, _)| *at == t)
                .and_then(|(_, v)| v)
        })
        .collect()
}

fn gap_a(i: i64) -> bool {
    i % 7 == 3
}
fn gap_b(i: i64) -> bool {
    i % 11 == 5
}

#[tokio::test]
async fn replicas_are_filled_from_each_other_within_since() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["r1", "r2"];
    let names: Vec<String> = (0..6).map(|i| format!("app.node{i}.latency")).collect();
    // Aligned to the 15-minute archive, so the series' slots are exact and every 15-minute
    // interval holds 15 of its points. Unaligned, an interval at either end of the series could
    // hold too few points in each replica to aggregate (xff 0.5) yet enough in their union: the
    // two agents heal at once, and whether one fills that coarse slot from the other's aggregate
    // in this run depends on which reads the other first, so "a rerun fills nothing" would
    // hold only in 14 minutes of 15.
    let end = now() - now() % 900;
    for name in &names {
        write_replica(&dir.path().join("r1"), name, end, gap_a);
        write_replica(&dir.path().join("r2"), name, end, gap_b);
    }
    let (cluster, agents, stops) = serve(dir.path(), &hosts, 2).await;
    let all = Selection::default();

    // The last hour only: older gaps stay, newer ones are filled.
    let since = end - 3600;
    let outcome = rebalance::run(
        &cluster,
        &agents,
        Job::Heal { only: None, since },
        cluster.config.moves,
        &all,
        false,
        None,
    )
    .await;
    assert_eq!(outcome.metrics, names.len() as u64);
    let file_bytes = std::fs::metadata(metric::path_of(&dir.path().join("r1"), &names[0]).unwrap())
        .unwrap()
        .len();
    for node in &outcome.nodes {
        let result = node.result.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(result.filled, names.len() as u64, "{result:?}");
        assert_eq!(result.failed_count, 0, "{result:?}");
        assert!(result.points_filled > 0);
        // The last hour travelled, not the files: the header, and a few slots per archive.
        assert!(
            result.bytes_received * 10 < names.len() as u64 * file_bytes,
            "{} bytes received for {} files of {file_bytes}",
            result.bytes_received,
            names.len()
        );
    }
    for name in &names {
        for (host, own_gap) in [("r1", gap_a as fn(i64) -> bool), ("r2", gap_b)] {
            let got = minute_points(&dir.path().join(host), name, end);
            for (i, v) in got.iter().enumerate() {
                let i = i as i64;
                let t = end - (POINTS - i) * 60;
                let both_missing = gap_a(i) && gap_b(i);
                let expected = if !own_gap(i) || (t > since && !both_missing) {
                    Some(value(i))
                } else {
                    None
                };
                assert_eq!(
                    *v, expected,
                    "{host} {name} point {i} (t {t}, since {since})"
                );
            }
        }
    }

    // Then everything: both replicas hold the union, zeros included.
    let outcome = rebalance::run(
        &cluster,
        &agents,
        Job::Heal {
            only: None,
            since: 0,
        },
        cluster.config.moves,
        &all,
        false,
        None,
    )
    .await;
    let filled: u64 = outcome
        .nodes
        .iter()
        .map(|n| n.result.as_ref().unwrap().as_ref().unwrap().points_filled)
        .sum();
    assert!(filled > 0);
    for name in &names {
        let union: Vec<Option<f64>> = (0..POINTS)
            .map(|i| (!(gap_a(i) && gap_b(i))).then_some(value(i)))
            .collect();
        assert!(union.contains(&Some(0.0)));
        for host in hosts {
            assert_eq!(
                minute_points(&dir.path().join(host), name, end),
                union,
                "{host} {name}"
            );
        }
    }

    // Healed: a rerun fills nothing.
    let outcome = rebalance::run(
        &cluster,
        &agents,
        Job::Heal {
            only: Some(1),
            since: 0,
        },
        cluster.config.moves,
        &all,
        false,
        None,
    )
    .await;
    assert!(outcome.nodes[0].result.is_none(), "only r2 was asked for");
    let r2 = outcome.nodes[1].result.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(r2.points_filled, 0, "{r2:?}");
    drop(stops);
}

/// Agents for `hosts` (trees under `dir/<host>`) served in-process, and the cluster over them
/// with a ring of `replication`.
async fn serve(
    dir: &Path,
    hosts: &[&str],
    replication: usize,
) -> (
    Cluster,
    Vec<GrpcAgent>,
    Vec<tokio::sync::oneshot::Sender<()>>,
) {
    let mut agents_toml = String::new();
    let mut stops = Vec::new();
    for h in hosts {
        std::fs::create_dir_all(dir.join(h)).unwrap();
        let config = AgentConfig {
            lock_timeout: Duration::from_secs(1),
            ..AgentConfig::new(
                h,
                &dir.join(h),
                &format!("file://{}/buckets/{h}", dir.display()),
            )
        };
        let (addr, stop) = bucky_agent::server::spawn_loopback(config, TOKEN)
            .await
            .unwrap();
        agents_toml.push_str(&format!("{h} = \"http://{addr}\"\n"));
        stops.push(stop);
    }
    let destinations: Vec<String> = hosts.iter().map(|h| format!("\"{h}:2004\"")).collect();
    let text = format!(
        "token_file = \"unused\"\n[ring]\nreplication = {replication}\ndestinations = [{}]\n[buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{agents_toml}",
        destinations.join(", "),
        dir.display()
    );
    let cluster = config::parse(&text, &dir.join("coordinator.toml")).unwrap();
    let agents = cluster
        .hosts
        .iter()
        .map(|h| GrpcAgent::new(&h.name, &h.agent, TOKEN, None).unwrap())
        .collect();
    (cluster, agents, stops)
}

#[tokio::test]
async fn a_misplaced_copy_is_deleted_only_once_its_owner_holds_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["r1", "r2"];
    let (cluster, agents, _stops) = serve(dir.path(), &hosts, 1).await;
    let end = now() - now() % 60;
    let name = "app.moved.latency";
    let owner = cluster.ring.owners(name)[0];
    let other = 1 - owner;
    // The owner has the recent points (carbon since the ring changed), the old node the
    // history with a point the owner lacks.
    write_replica(&dir.path().join(hosts[owner]), name, end, |i| i < 200);
    write_replica(&dir.path().join(hosts[other]), name, end, |i| i >= 250);
    let old = metric::path_of(&dir.path().join(hosts[other]), name).unwrap();
    let all = Selection::default();

    let mut nodes = vec![rebalance::NodeResult::default(); 2];
    let errors = rebalance::delete_moved(&cluster, &agents, &all, &mut nodes).await;
    assert!(errors.is_empty());
    assert_eq!((nodes[other].deleted, nodes[other].kept), (0, 1));
    assert!(
        nodes[other].kept_reasons[0].contains("lacks"),
        "{:?}",
        nodes[other].kept_reasons
    );
    assert!(old.exists());

    let outcome = rebalance::run(
        &cluster,
        &agents,
        Job::Rebalance,
        cluster.config.moves,
        &all,
        false,
        None,
    )
    .await;
    assert!(!outcome.nodes[owner].failed());

    // The owner's file is replaced behind bucky's back after the move (it lost the points it
    // was sent): a rerun takes the source as unchanged, but the delete's check finds the owner
    // lacking, keeps the copy and makes the owner forget; the next rerun sends it again.
    let owned = metric::path_of(&dir.path().join(hosts[owner]), name).unwrap();
    write_replica(&dir.path().join(hosts[owner]), name, end, |i| i < 200);
    let rerun = || {
        rebalance::run(
            &cluster,
            &agents,
            Job::Rebalance,
            cluster.config.moves,
            &all,
            false,
            None,
        )
    };
    let skipped = rerun().await;
    let result = skipped.nodes[owner].result.clone().unwrap().unwrap();
    assert_eq!(result.unchanged, 1, "{result:?}");
    let mut nodes = vec![rebalance::NodeResult::default(); 2];
    rebalance::delete_moved(&cluster, &agents, &all, &mut nodes).await;
    assert_eq!((nodes[other].deleted, nodes[other].kept), (0, 1));
    assert!(old.exists() && owned.exists());
    let resent = rerun().await;
    let result = resent.nodes[owner].result.clone().unwrap().unwrap();
    assert_eq!(result.unchanged, 0, "{result:?}");
    assert!(result.points_filled > 0, "{result:?}");

    let mut nodes = vec![rebalance::NodeResult::default(); 2];
    rebalance::delete_moved(&cluster, &agents, &all, &mut nodes).await;
    assert_eq!(
        (nodes[other].deleted, nodes[other].kept),
        (1, 0),
        "{:?}",
        nodes[other]
    );
    assert!(!old.exists());
    let union: Vec<Option<f64>> = (0..POINTS).map(|i| Some(value(i))).collect();
    assert_eq!(
        minute_points(&dir.path().join(hosts[owner]), name, end),
        union
    );
}

/// A fourth node joins a three-node ring with replication 2: after a rebalance with delete,
/// every metric is on exactly its two owners under the new ring, with its data.
#[tokio::test]
async fn a_fourth_node_with_replication_two_ends_with_exactly_the_ring_placement() {
    use bucky_shared::ring::{Algorithm, Flavour, Ring, RingConfig};
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["n1", "n2", "n3", "n4"];
    let ring_of = |hosts: &[&str]| {
        let destinations: Vec<String> = hosts.iter().map(|h| format!("{h}:2004")).collect();
        Ring::new(&RingConfig::new(
            Algorithm::CarbonCh,
            Flavour::Carbon,
            2,
            destinations,
        ))
        .unwrap()
    };
    let owners = |ring: &Ring, name: &str| -> Vec<String> {
        ring.owners(name)
            .into_iter()
            .map(|d| ring.destinations()[d].host.clone())
            .collect()
    };
    let three = ring_of(&hosts[..3]);
    let end = now() - now() % 60;
    let names: Vec<String> = (0..40).map(|i| format!("svc.node{i:02}.cpu")).collect();
    for name in &names {
        for owner in owners(&three, name) {
            write_replica(&dir.path().join(&owner), name, end, |_| false);
        }
    }
    let (cluster, agents, _stops) = serve(dir.path(), &hosts, 2).await;
    let four = &cluster.ring;
    let changed = names
        .iter()
        .filter(|n| owners(&three, n) != owners(four, n))
        .count();
    assert!(changed > 0);
    let all = Selection::default();
    let outcome = rebalance::run(
        &cluster,
        &agents,
        Job::Rebalance,
        cluster.config.moves,
        &all,
        false,
        None,
    )
    .await;
    assert!(
        outcome.nodes.iter().all(|n| !n.failed()),
        "{:?}",
        outcome.nodes
    );
    // Run again before deleting: every move is still due, and none sends its file again (the
    // misplaced copies have not changed since they were applied).
    let again = rebalance::run(
        &cluster,
        &agents,
        Job::Rebalance,
        cluster.config.moves,
        &all,
        false,
        None,
    )
    .await;
    for (first, second) in outcome.nodes.iter().zip(&again.nodes) {
        assert_eq!(first.moves, second.moves);
        if second.moves > 0 {
            let result = second.result.as_ref().unwrap().as_ref().unwrap();
            assert_eq!(
                (result.unchanged, result.written, result.points_filled),
                (result.filled, 0, 0),
                "{result:?}"
            );
            assert!(result.unchanged > 0);
        }
    }
    let mut nodes = vec![rebalance::NodeResult::default(); hosts.len()];
    let errors = rebalance::delete_moved(&cluster, &agents, &all, &mut nodes).await;
    assert!(
        errors.is_empty() && nodes.iter().all(|n| n.kept == 0),
        "{nodes:?}"
    );
    assert!(nodes.iter().map(|n| n.deleted).sum::<u64>() > 0);
    let full: Vec<Option<f64>> = (0..POINTS).map(|i| Some(value(i))).collect();
    for name in &names {
        let placed = owners(four, name);
        for h in hosts {
            let path = metric::path_of(&dir.path().join(h), name).unwrap();
            assert_eq!(
                path.exists(),
                placed.iter().any(|p| p == h),
                "{name} on {h}"
            );
        }
        for owner in &placed {
            assert_eq!(
                minute_points(&dir.path().join(owner), name, end),
                full,
                "{name} on {owner}"
            );
        }
    }
}

/// A paced job tells each destination agent its size before moving anything: `status` shows the
/// job's total, so it can show an ETA.
#[tokio::test]
async fn a_paced_job_tells_each_agent_its_total() {
    use bucky_coordinator::agents::AgentApi;
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["r1", "r2"];
    let names: Vec<String> = (0..6).map(|i| format!("app.node{i}.latency")).collect();
    let end = now() - now() % 60;
    for name in &names {
        write_replica(&dir.path().join("r1"), name, end, gap_a);
        write_replica(&dir.path().join("r2"), name, end, gap_b);
    }
    let (cluster, agents, _stops) = serve(dir.path(), &hosts, 2).await;
    let pace = config::MovesSection {
        metrics_per_sec: 5.0,
        mb_per_sec: 0.0,
    };
    let job = {
        let (cluster, agents) = (cluster.clone(), agents.clone());
        tokio::spawn(async move {
            let all = Selection::default();
            let heal = Job::Heal {
                only: None,
                since: 0,
            };
            rebalance::run(&cluster, &agents, heal, pace, &all, false, None).await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let running = loop {
        let info = agents[0].info().await.unwrap();
        if let Some(job) = info.running_job.filter(|j| j.kind == "heal") {
            break job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the heal never ran on r1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(running.total, names.len() as u64, "{running:?}");
    let outcome = job.await.unwrap();
    assert_eq!(outcome.nodes[0].moves, names.len() as u64);
}
