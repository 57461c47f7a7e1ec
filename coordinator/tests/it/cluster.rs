//! Cluster backup, restore of a lost host, restore of a new host, ring mismatch, a dead agent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bucky_agent::service::AgentConfig;
use bucky_coordinator::agents::GrpcAgent;
use bucky_coordinator::cluster::{self, Outcome, RestoreRequest};
use bucky_coordinator::config::{self, Cluster};
use bucky_proto::v1 as pb;
use bucky_shared::metric;
use bucky_shared::whisper::{Access, Whisper};
use bucky_tests::{snapshot, write_metric};

const TOKEN: &str = "cluster-test-token";
const NOW: i64 = 1_700_000_000;

struct Fleet {
    dir: tempfile::TempDir,
    names: Vec<String>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    addrs: Vec<(String, SocketAddr)>,
}

fn cluster_config(dir: &Path, hosts: &[&str], addrs: &[(String, SocketAddr)]) -> Cluster {
    let destinations: Vec<String> = hosts.iter().map(|h| format!("\"{h}:2004\"")).collect();
    let agents: String = hosts
        .iter()
        .map(|h| {
            let addr = addrs
                .iter()
                .find(|(n, _)| n == h)
                .map_or("127.0.0.1:9".to_string(), |(_, a)| a.to_string());
            format!("{h} = \"http://{addr}\"\n")
        })
        .collect();
    let text = format!(
        "token_file = \"unused\"\n[ring]\ndestinations = [{}]\n[buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{agents}",
        destinations.join(", "),
        dir.display()
    );
    config::parse(&text, &dir.join("coordinator.toml")).unwrap()
}

fn tree(dir: &Path, host: &str) -> PathBuf {
    dir.join("trees").join(host)
}

async fn spawn_agent(
    dir: &Path,
    host: &str,
    fingerprint: String,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config = AgentConfig {
        ring_fingerprint: fingerprint,
        lock_timeout: Duration::from_secs(1),
        ..AgentConfig::new(
            host,
            &tree(dir, host),
            &format!("file://{}/buckets/{host}", dir.display()),
        )
    };
    bucky_agent::server::spawn_loopback(config, TOKEN)
        .await
        .unwrap()
}

/// Three agents g1..g3, 60 metrics placed on their owners by the ring.
async fn fleet(wrong_ring_on: Option<&str>) -> (Fleet, Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["g1", "g2", "g3"];
    let placement = cluster_config(dir.path(), &hosts, &[]);
    let names: Vec<String> = (0..60).map(|i| format!("servers.web{i:02}.cpu")).collect();
    for (i, name) in names.iter().enumerate() {
        let owner = &placement.ring.destinations()[placement.ring.owners(name)[0]].host;
        write_metric(&tree(dir.path(), owner), name, i as f64, NOW, 300);
    }
    let mut addrs = Vec::new();
    let mut stops = Vec::new();
    for h in hosts {
        std::fs::create_dir_all(tree(dir.path(), h)).unwrap();
        let fingerprint = if Some(h) == wrong_ring_on {
            "sha256:ffffffffffffffff".into()
        } else {
            placement.ring.fingerprint().to_string()
        };
        let (addr, stop) = spawn_agent(dir.path(), h, fingerprint).await;
        addrs.push((h.to_string(), addr));
        stops.push(stop);
    }
    let cluster = cluster_config(dir.path(), &hosts, &addrs);
    (
        Fleet {
            dir,
            names,
            stops,
            addrs,
        },
        cluster,
    )
}

fn agents(cluster: &Cluster) -> Vec<GrpcAgent> {
    cluster
        .hosts
        .iter()
        .map(|h| GrpcAgent::new(&h.name, &h.agent, TOKEN, None).unwrap())
        .collect()
}

/// A whole-cluster backup, `concurrency` nodes at once, no splay, progress ignored.
async fn backup_all(
    cluster: &Cluster,
    agents: &[GrpcAgent],
    concurrency: usize,
) -> Result<Vec<cluster::NodeBackup>, cluster::Error> {
    cluster::backup(
        cluster,
        agents,
        pb::BackupRequest::default(),
        concurrency,
        Duration::ZERO,
        &|_, _, _| {},
    )
    .await
}

#[tokio::test]
async fn cluster_backup_then_restore_of_a_lost_host() {
    let (fleet, cluster) = fleet(None).await;
    let agents = agents(&cluster);
    let results = backup_all(&cluster, &agents, 2).await.unwrap();
    assert!(
        results.iter().all(|r| r.outcome == Outcome::Ok),
        "{results:?}"
    );
    let uploaded: u64 = results.iter().map(|r| r.result.as_ref().unwrap().new).sum();
    assert_eq!(uploaded, fleet.names.len() as u64);

    let status = cluster::status(&cluster, &agents).await;
    assert!(
        status
            .iter()
            .all(|s| s.agrees && s.last_backup.as_ref().unwrap().is_some())
    );

    let g2 = tree(fleet.dir.path(), "g2");
    let original = snapshot(&g2);
    assert!(!original.is_empty());
    std::fs::remove_dir_all(&g2).unwrap();
    let request = RestoreRequest {
        target: "g2".into(),
        ..RestoreRequest::default()
    };
    let (plan, result) =
        cluster::restore_host(&cluster, &agents, &request, &Default::default(), |_, _| {})
            .await
            .unwrap();
    let result = result.unwrap();
    assert_eq!(
        (result.written as usize, result.failed.len()),
        (original.len(), 0)
    );
    assert_eq!(plan.metric_count(), original.len());
    assert_eq!(snapshot(&g2), original);
    drop(fleet.stops);
}

/// A fourth node joins the ring: its restore brings exactly the metrics the ring now gives it,
/// from their previous owners' buckets, and nothing else.
#[tokio::test]
async fn a_new_node_receives_exactly_its_share() {
    let (fleet, cluster) = fleet(None).await;
    backup_all(&cluster, &agents(&cluster), 3).await.unwrap();

    let four_hosts = ["g1", "g2", "g3", "g4"];
    let bigger = cluster_config(fleet.dir.path(), &four_hosts, &[]);
    std::fs::create_dir_all(tree(fleet.dir.path(), "g4")).unwrap();
    let mut addrs = fleet.addrs.clone();
    let mut stops = Vec::new();
    // The existing agents now run with the new ring, as after a rebalance.
    for h in four_hosts {
        let (addr, stop) =
            spawn_agent(fleet.dir.path(), h, bigger.ring.fingerprint().to_string()).await;
        addrs.retain(|(n, _)| n != h);
        addrs.push((h.to_string(), addr));
        stops.push(stop);
    }
    let bigger = cluster_config(fleet.dir.path(), &four_hosts, &addrs);
    let request = RestoreRequest {
        target: "g4".into(),
        ..RestoreRequest::default()
    };
    let (plan, result) = cluster::restore_host(
        &bigger,
        &agents(&bigger),
        &request,
        &Default::default(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(result.unwrap().failed.len(), 0);
    let mut expected: Vec<&String> = fleet
        .names
        .iter()
        .filter(|m| bigger.ring.destinations()[bigger.ring.owners(m)[0]].host == "g4")
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    let g4 = tree(fleet.dir.path(), "g4");
    let mut got: Vec<String> = snapshot(&g4)
        .into_iter()
        .map(|(p, _)| {
            p.to_string_lossy()
                .trim_end_matches(".wsp")
                .replace('/', ".")
        })
        .collect();
    got.sort();
    assert_eq!(got.iter().collect::<Vec<_>>(), expected);
    assert_eq!(plan.metric_count(), expected.len());
    for name in expected {
        let fetch = |root: &Path| {
            Whisper::open_file(&metric::path_of(root, name).unwrap(), Access::Read)
                .unwrap()
                .fetch(NOW - 3600, None, NOW)
                .unwrap()
        };
        let previous_owner = fleet
            .addrs
            .iter()
            .map(|(h, _)| tree(fleet.dir.path(), h))
            .find(|root| metric::path_of(root, name).unwrap().exists())
            .unwrap();
        assert_eq!(
            fetch(&g4),
            fetch(&previous_owner),
            "{name}: same points as on its previous owner"
        );
    }
    drop((fleet.stops, stops));
}

#[tokio::test]
async fn a_mismatched_ring_blocks_the_backup_and_shows_in_status() {
    let (fleet, cluster) = fleet(Some("g3")).await;
    let agents = agents(&cluster);
    let err = backup_all(&cluster, &agents, 3).await.unwrap_err();
    assert!(
        err.to_string().contains("g3 (sha256:ffffffffffffffff)"),
        "{err}"
    );
    assert!(!err.to_string().contains("g1"));
    let status = cluster::status(&cluster, &agents).await;
    let agrees: Vec<(&str, bool)> = status.iter().map(|s| (s.host.as_str(), s.agrees)).collect();
    assert_eq!(agrees, [("g1", true), ("g2", true), ("g3", false)]);
    assert!(
        status
            .iter()
            .all(|s| s.last_backup.as_ref().unwrap().is_none()),
        "nothing was backed up"
    );
    drop(fleet.stops);
}

/// Two agents' addresses swapped in the coordinator's config: each would back the other's tree
/// into a bucket of the wrong name. Nothing runs, and the error says which agent is which.
#[tokio::test]
async fn swapped_agent_addresses_block_the_backup() {
    let (fleet, _) = fleet(None).await;
    let mut swapped = fleet.addrs.clone();
    let (a, b) = (swapped[0].1, swapped[1].1);
    (swapped[0].1, swapped[1].1) = (b, a);
    let cluster = cluster_config(fleet.dir.path(), &["g1", "g2", "g3"], &swapped);
    let err = backup_all(&cluster, &agents(&cluster), 3)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!("the agent at http://{b} is g2, not g1"))
            && message.contains(&format!("the agent at http://{a} is g1, not g2"))
            && !message.contains("g3"),
        "{message}"
    );
    assert!(snapshot(&fleet.dir.path().join("buckets")).is_empty());

    // Status says the same, per node.
    let status = cluster::status(&cluster, &agents(&cluster)).await;
    let identity: Vec<Option<String>> = status.iter().map(|n| n.identity.clone()).collect();
    assert_eq!(
        identity,
        [
            Some(format!("the agent at http://{b} is g2, not g1")),
            Some(format!("the agent at http://{a} is g1, not g2")),
            None
        ]
    );
    drop(fleet.stops);
}

#[tokio::test]
async fn a_dead_agent_fails_its_node_only() {
    let (mut fleet, cluster) = fleet(None).await;
    // g2's agent goes away.
    drop(fleet.stops.remove(1));
    let agents = agents(&cluster);
    let results = backup_all(&cluster, &agents, 3).await.unwrap();
    let outcomes: Vec<(&str, bool)> = results
        .iter()
        .map(|r| (r.host.as_str(), r.outcome == Outcome::Ok))
        .collect();
    assert_eq!(outcomes, [("g1", true), ("g2", false), ("g3", true)]);
    match &results[1].outcome {
        Outcome::Failed(why) => assert!(
            why.contains("g2: agent unreachable at http://127.0.0.1:")
                && !why.contains("Unavailable"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    let status = cluster::status(&cluster, &agents).await;
    assert!(status[1].info.is_err() && status[0].info.is_ok());
    drop(fleet.stops);
}

/// g2's bucket is an S3 endpoint that accepts connections and never answers: status reports it
/// within its own deadline (10 s, not the 60 s a backup's request may take), naming the bucket,
/// and the other nodes as usual.
#[tokio::test]
async fn status_does_not_hang_on_a_store_that_never_answers() {
    let (fleet, mut cluster) = fleet(None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    cluster.hosts[1].bucket = "s3://silent/g2".into();
    cluster.config.storage = bucky_shared::bucket::StoreOptions {
        endpoint: Some(format!("http://{silent}")),
        path_style: true,
        allow_http: true,
        extra: vec![
            ("aws_access_key_id".into(), "k".into()),
            ("aws_secret_access_key".into(), "s".into()),
        ],
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let status = cluster::status(&cluster, &agents(&cluster)).await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(20), "status took {waited:?}");
    let error = status[1].last_backup.as_ref().unwrap_err();
    assert!(
        error.contains("s3://silent/g2") && error.contains("no answer within 10s"),
        "{error}"
    );
    assert!(status[0].last_backup.is_ok() && status[2].last_backup.is_ok());
    server.abort();
    drop(fleet.stops);
}

/// A host's bucket holding 100,000 metrics the ring now places elsewhere (a node that was
/// rebalanced away from): the restore plan travels to the client as counts and the first names,
/// never as one message listing them all (that would be over 5 MB here).
#[tokio::test]
async fn a_plan_with_100_000_names_not_owned_reaches_the_client_bounded() {
    use bucky_shared::layout::{Manifest, ManifestEntry, Version, manifest};
    const NAMES: usize = 100_000;
    let (fleet, cluster) = fleet(None).await;
    let mut entries: Vec<ManifestEntry> = (0..)
        .map(|i| format!("servers.production.frontend-{i:07}.interfaces.eth0.rx_bytes"))
        .filter(|name| {
            let owners = cluster.ring.owners(name);
            !owners
                .iter()
                .any(|&o| cluster.ring.destinations()[o].host == "g1")
        })
        .take(NAMES)
        .map(|name| ManifestEntry {
            name,
            versions: vec![Version(NOW)],
            sha1: "0".repeat(40),
            size: 1000,
            stored_size: 100,
            mtime_ns: 0,
            missing_since: None,
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = Manifest {
        format: manifest::FORMAT,
        node: "g1".into(),
        started: Version(NOW),
        finished: Version(NOW),
        metrics: entries,
        deletes: vec![],
        stats: None,
    };
    let bucket =
        bucky_shared::bucket::Bucket::open(&cluster.hosts[0].bucket, &Default::default()).unwrap();
    bucket
        .put(
            &bucket.layout().manifest_key(Version(NOW)),
            manifest.encode(),
        )
        .await
        .unwrap();

    let service = bucky_coordinator::service::CoordinatorService::new(cluster, TOKEN).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bucky_coordinator::server::run(
        listener,
        service,
        TOKEN,
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = pb::coordinator_client::CoordinatorClient::new(channel);
    let mut request = tonic::Request::new(pb::ClusterRestoreRequest {
        host: "g1".into(),
        dry_run: true,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let mut stream = client.cluster_restore(request).await.unwrap().into_inner();
    let first = futures::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    let plan = first.plan.expect("the first message carries the plan");
    assert_eq!(plan.not_owned_count, NAMES as u64);
    assert_eq!(plan.not_owned.len(), 100);
    assert_eq!(
        plan.metrics, 0,
        "only g1's share of the other buckets (none here)"
    );
    drop(fleet);
}
