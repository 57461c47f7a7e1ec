//! Heal: two replicas with different gaps (and 0.0 values among their points) end with the union
//! of points on both, agent to agent; `since` bounds the time range filled.

use std::path::Path;
use std::time::Duration;

use bucky_agent::service::AgentConfig;
use bucky_coordinator::agents::GrpcAgent;
use bucky_coordinator::config;
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
    // Minute-aligned, so the series' slots are exact.
    let end = now() - now() % 60;
    for name in &names {
        write_replica(&dir.path().join("r1"), name, end, gap_a);
        write_replica(&dir.path().join("r2"), name, end, gap_b);
    }
    let mut agents_toml = String::new();
    let mut stops = Vec::new();
    for h in hosts {
        let config = AgentConfig {
            lock_timeout: Duration::from_secs(1),
            ..AgentConfig::new(
                h,
                &dir.path().join(h),
                &format!("file://{}/buckets/{h}", dir.path().display()),
            )
        };
        let (addr, stop) = bucky_agent::server::spawn_loopback(config, TOKEN)
            .await
            .unwrap();
        agents_toml.push_str(&format!("{h} = \"http://{addr}\"\n"));
        stops.push(stop);
    }
    let text = format!(
        "token_file = \"unused\"\n[ring]\nreplication = 2\ndestinations = [\"r1:2004\", \"r2:2004\"]\n[buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{agents_toml}",
        dir.path().display()
    );
    let cluster = config::parse(&text, &dir.path().join("coordinator.toml")).unwrap();
    let agents: Vec<GrpcAgent> = cluster
        .hosts
        .iter()
        .map(|h| GrpcAgent::new(&h.name, &h.agent, TOKEN, None).unwrap())
        .collect();
    let all = Selection::default();

    // The last hour only: older gaps stay, newer ones are filled.
    let since = end - 3600;
    let outcome = rebalance::run(
        &cluster,
        &agents,
        Job::Heal { only: None, since },
        &all,
        false,
        None,
    )
    .await;
    assert_eq!(outcome.metrics, names.len() as u64);
    for node in &outcome.nodes {
        let result = node.result.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(result.filled, names.len() as u64, "{result:?}");
        assert_eq!(result.failed_count, 0, "{result:?}");
        assert!(result.points_filled > 0);
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
