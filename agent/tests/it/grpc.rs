//! The Agent gRPC service in-process on a loopback port, driven by a tonic client.

use std::net::SocketAddr;
use std::time::Duration;

use bucky_agent::service::{AgentConfig, AgentService};
use bucky_proto::v1 as pb;
use futures::StreamExt;
use pb::agent_client::AgentClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::support::{snapshot, write_tree};

const TOKEN: &str = "test-token-0123456789";

struct TestAgent {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestAgent {
    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("whisper")
    }
    fn bucket_url(&self) -> String {
        format!("file://{}", self.dir.path().join("bucket").display())
    }
}

async fn spawn_agent(metrics: usize) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("whisper");
    write_tree(&root, metrics);
    let config = AgentConfig {
        ring_fingerprint: "sha256:0011223344556677".into(),
        lock_timeout: Duration::from_millis(200),
        ..AgentConfig::new(
            "graphite-01",
            &root,
            &format!("file://{}", dir.path().join("bucket").display()),
        )
    };
    let (addr, stop) = bucky_agent::server::spawn_loopback(config, TOKEN)
        .await
        .unwrap();
    TestAgent {
        addr,
        dir,
        _stop: stop,
    }
}

/// Adds the bearer token to each request.
type Auth = Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>;
type Client = AgentClient<InterceptedService<Channel, Auth>>;

async fn client(agent: &TestAgent, token: Option<&'static str>) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", agent.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth: Auth = Box::new(move |mut req: tonic::Request<()>| {
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        Ok(req)
    });
    AgentClient::with_interceptor(channel, auth)
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_and_changes_nothing() {
    let agent = spawn_agent(2).await;
    for token in [None, Some("wrong-token")] {
        let mut c = client(&agent, token).await;
        assert_eq!(
            c.info(pb::InfoRequest {}).await.unwrap_err().code(),
            Code::Unauthenticated
        );
        let err = c.backup(pb::BackupRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let bucket = agent.dir.path().join("bucket");
    assert!(
        !bucket.exists() || snapshot(&bucket).is_empty(),
        "a refused backup wrote into the bucket"
    );
}

#[tokio::test]
async fn info_describes_the_node() {
    let agent = spawn_agent(3).await;
    let mut c = client(&agent, Some(TOKEN)).await;
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.node.as_str(), info.metric_count), ("graphite-01", 3));
    assert_eq!(info.ring_fingerprint, "sha256:0011223344556677");
    assert!(info.bytes_on_disk > 0 && info.running_job.is_none());
}

/// Backup over RPC, then the tree is lost and a restore plan built from the bucket brings it back.
#[tokio::test]
async fn backup_then_restore_by_plan() {
    let agent = spawn_agent(4).await;
    let mut c = client(&agent, Some(TOKEN)).await;
    let original = snapshot(&agent.root());
    let stream = c
        .backup(pb::BackupRequest::default())
        .await
        .unwrap()
        .into_inner();
    let result = last_update(stream)
        .await
        .result
        .expect("the last message has the result");
    assert_eq!((result.new, result.failed.len()), (4, 0));

    std::fs::remove_dir_all(agent.root()).unwrap();
    let bucket =
        bucky_agent::bucket::Bucket::open(&agent.bucket_url(), &Default::default()).unwrap();
    let (catalog, _) = bucky_agent::restore::catalog(&bucket).await.unwrap();
    let mut entries = Vec::new();
    for (name, versions) in &catalog {
        let (version, _) = versions.iter().next_back().unwrap();
        let sha1 = bucket
            .get(&bucket.layout().sha1_key(name, *version))
            .await
            .unwrap()
            .unwrap();
        entries.push(pb::RestoreEntry {
            metric: name.clone(),
            source_bucket: agent.bucket_url(),
            object_key: bucket.layout().data_key(name, *version),
            sha1: String::from_utf8(sha1.to_vec()).unwrap(),
            action: pb::RestoreAction::Write as i32,
            source_agent: String::new(),
            since: 0,
        });
    }
    let stream = c
        .restore(futures::stream::iter([pb::RestoreRequest {
            total: entries.len() as u64,
            entries,
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner();
    let last = last_update(stream).await;
    let result = last.result.unwrap();
    assert_eq!(
        (result.written, result.failed.len(), last.done, last.total),
        (4, 0, 4, 4)
    );
    assert_eq!(snapshot(&agent.root()), original);

    let err = c
        .restore(futures::stream::iter([pb::RestoreRequest {
            entries: vec![pb::RestoreEntry {
                metric: "a".into(),
                ..Default::default()
            }],
            total: 1,
            ..Default::default()
        }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A source that is neither this node's bucket nor a peer's by the bucket pattern is refused
    // before anything is opened: no directory appears.
    let elsewhere = agent.dir.path().join("elsewhere");
    let err = c
        .restore(futures::stream::iter([pb::RestoreRequest {
            entries: vec![pb::RestoreEntry {
                metric: "app.m000.requests".into(),
                source_bucket: format!("file://{}", elsewhere.display()),
                object_key: "app.m000.requests/2023-11-14T22:13:20+00:00.wsp.gz".into(),
                sha1: "0".repeat(40),
                action: pb::RestoreAction::Write as i32,
                source_agent: String::new(),
                since: 0,
            }],
            total: 1,
            ..Default::default()
        }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("restore_sources"), "{err:?}");
    assert!(!elsewhere.exists());
}

/// A CA and a `localhost` server certificate signed by it, as PEM files in `dir`.
fn make_certs(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (ca, cert, key) = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca, cert, key)
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path(), "good");
    let (other_ca, _, _) = make_certs(dir.path(), "other");
    let root = dir.path().join("whisper");
    write_tree(&root, 1);
    let config = AgentConfig {
        lock_timeout: Duration::from_millis(200),
        ..AgentConfig::new(
            "tls-node",
            &root,
            &format!("file://{}", dir.path().join("bucket").display()),
        )
    };
    let tls = bucky_proto::tls::ServerTls {
        cert_file: cert,
        key_file: key,
        client_ca_file: None,
    }
    .load()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bucky_agent::server::run(
        listener,
        AgentService::new(config).unwrap(),
        TOKEN,
        Some(tls),
        async {
            let _ = stopped.await;
        },
    ));

    let info = |ca: Option<std::path::PathBuf>, scheme: &'static str| async move {
        let mut endpoint =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}")).unwrap();
        if let Some(ca) = ca {
            endpoint = endpoint
                .tls_config(bucky_proto::tls::client(Some(&ca), Some("localhost")).unwrap())
                .unwrap();
        }
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(pb::InfoRequest {});
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        AgentClient::new(channel)
            .info(request)
            .await
            .map(|r| r.into_inner().node)
            .map_err(|e| e.to_string())
    };
    assert_eq!(info(Some(ca), "https").await.unwrap(), "tls-node");
    assert!(info(None, "http").await.is_err(), "plaintext is refused");
    assert!(
        info(Some(other_ca), "https").await.is_err(),
        "a server the client's CA did not sign is refused"
    );
}

/// A restore plan of 100,000 entries (a real node's is millions) goes to the agent in batches and
/// its result comes back bounded: no message grows with the plan. The objects do not exist, so
/// every entry fails, which is also the largest result a plan can produce.
#[tokio::test]
async fn a_plan_of_100_000_entries_streams_and_its_result_stays_bounded() {
    const ENTRIES: usize = 100_000;
    let agent = spawn_agent(0).await;
    let mut c = client(&agent, Some(TOKEN)).await;
    let bucket = agent.bucket_url();
    let batches: Vec<pb::RestoreRequest> = (0..ENTRIES)
        .map(|i| pb::RestoreEntry {
            metric: format!("scale.m{i:06}.requests"),
            source_bucket: bucket.clone(),
            object_key: format!("scale.m{i:06}.requests/2023-11-14T22:13:20+00:00.wsp.gz"),
            sha1: "0".repeat(40),
            action: pb::RestoreAction::Write as i32,
            source_agent: String::new(),
            since: 0,
        })
        .collect::<Vec<_>>()
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| pb::RestoreRequest {
            entries: chunk.to_vec(),
            total: if i == 0 { ENTRIES as u64 } else { 0 },
            ..Default::default()
        })
        .collect();
    let stream = c
        .restore(futures::stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let last = last_update(stream).await;
    assert_eq!((last.done, last.total), (ENTRIES as u64, ENTRIES as u64));
    let result = last.result.unwrap();
    assert_eq!(result.failed_count, ENTRIES as u64);
    assert_eq!(result.failed.len(), bucky_agent::failures::NAMED_FAILURES);
    assert!(
        result.failed[0].error.contains("has no object"),
        "{:?}",
        result.failed[0]
    );
}

/// The last message of a job's stream (the one with the result); every message before it is Ok.
async fn last_update<T>(mut stream: tonic::Streaming<T>) -> T {
    let mut last = None;
    while let Some(update) = stream.next().await {
        last = Some(update.unwrap());
    }
    last.expect("the job streamed at least one message")
}

/// A restore whose entries name a peer agent reads each file from that agent (ReadMetric) and
/// writes it whole; a metric the peer does not hold fails alone, naming the peer.
#[tokio::test]
async fn a_restore_reads_from_a_peer_agent_directly() {
    let source = spawn_agent(3).await;
    let target = spawn_agent(0).await;
    let mut c = client(&target, Some(TOKEN)).await;
    let peer = format!("http://{}", source.addr);
    let entries: Vec<pb::RestoreEntry> = ["app.m000.requests", "app.m002.requests", "app.nope"]
        .iter()
        .map(|m| pb::RestoreEntry {
            metric: m.to_string(),
            source_agent: peer.clone(),
            ..Default::default()
        })
        .collect();
    let request = futures::stream::iter(vec![pb::RestoreRequest {
        entries,
        total: 3,
        ..Default::default()
    }]);
    let mut stream = c.restore(request).await.unwrap().into_inner();
    let mut result = None;
    while let Some(update) = stream.next().await {
        result = update.unwrap().result.or(result);
    }
    let result = result.unwrap();
    assert_eq!(result.written, 2, "{result:?}");
    assert_eq!(result.failed_count, 1);
    assert_eq!(result.failed[0].metric, "app.nope");
    assert!(
        result.failed[0].error.contains(&peer),
        "{:?}",
        result.failed
    );
    for m in ["app.m000.requests", "app.m002.requests"] {
        let path = |root: &std::path::Path| bucky_shared::metric::path_of(root, m).unwrap();
        assert!(
            std::fs::read(path(&target.root())).unwrap()
                == std::fs::read(path(&source.root())).unwrap()
        );
    }

    // ReadMetric refuses a name that is not a metric.
    let mut s = client(&source, Some(TOKEN)).await;
    let err = s
        .read_metric(pb::ReadMetricRequest {
            metric: "../etc/passwd".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // Asked only if changed: the file's own SHA-1 (or its first 32 digits) gets no data back,
    // another gets the file; fewer than 32 digits are not trusted.
    let name = bucky_shared::metric::path_of(&source.root(), "app.m000.requests").unwrap();
    let sha1 = bucky_agent::codec::sha1_hex(&std::fs::read(&name).unwrap());
    for (unless, unchanged) in [
        (sha1.clone(), true),
        (sha1[..32].to_string(), true),
        (sha1[..31].to_string(), false),
        ("0".repeat(40), false),
    ] {
        let mut stream = s
            .read_metric(pb::ReadMetricRequest {
                metric: "app.m000.requests".into(),
                unless_sha1: unless.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert_eq!(first.unchanged, unchanged, "{unless}");
        assert_eq!(first.data.is_empty(), unchanged, "{unless}");
    }

    // Asked for the points since a time: the header and a few slots, each at its offset, the
    // last message saying how large the file is and that it is an excerpt.
    let whole = std::fs::read(&name).unwrap();
    let mut stream = s
        .read_metric(pb::ReadMetricRequest {
            metric: "app.m000.requests".into(),
            since: bucky_shared::layout::Version::now().0 - 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut received = 0;
    let mut last = None;
    while let Some(chunk) = stream.message().await.unwrap() {
        let at = chunk.offset as usize;
        assert_eq!(chunk.data, whole[at..at + chunk.data.len()], "at {at}");
        received += chunk.data.len();
        last = Some(chunk);
    }
    let last = last.unwrap();
    assert!(
        last.partial && last.file_size == whole.len() as u64,
        "{last:?}"
    );
    assert!(received * 4 < whole.len(), "{received} of {}", whole.len());
}
