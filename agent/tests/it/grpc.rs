//! The Agent gRPC service in-process on a loopback port, driven by a tonic client.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use bucky_agent::codec;
use bucky_agent::service::{AgentConfig, AgentService};
use bucky_proto::v1 as pb;
use bucky_shared::metric;
use bucky_shared::whisper::{Access, Whisper};
use futures::StreamExt;
use pb::agent_client::AgentClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::support::{NOW, snapshot, write_metric, write_tree};

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
        node: "graphite-01".into(),
        whisper_root: root,
        bucket: format!("file://{}", dir.path().join("bucket").display()),
        store: Default::default(),
        ring_fingerprint: "sha256:0011223344556677".into(),
        lock_timeout: Duration::from_millis(200),
        backup_idle_io: true,
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

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn upload(metric: &str, raw: &[u8], sha1: &str) -> Vec<pb::WriteMetricRequest> {
    let mut parts = vec![pb::WriteMetricRequest {
        part: Some(pb::write_metric_request::Part::Header(pb::MetricUpload {
            metric: metric.into(),
            sha1: sha1.into(),
        })),
    }];
    parts.extend(
        codec::gzip(raw, 6)
            .chunks(1000)
            .map(|c| pb::WriteMetricRequest {
                part: Some(pb::write_metric_request::Part::GzipChunk(c.to_vec())),
            }),
    );
    parts
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
        let err = c
            .delete_metric(pb::DeleteMetricRequest {
                metric: "app.m000.requests".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    assert!(
        metric::path_of(&agent.root(), "app.m000.requests")
            .unwrap()
            .exists()
    );
}

#[tokio::test]
async fn info_and_list_describe_the_node() {
    let agent = spawn_agent(3).await;
    let mut c = client(&agent, Some(TOKEN)).await;
    let info = c.info(pb::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.node.as_str(), info.metric_count), ("graphite-01", 3));
    assert_eq!(info.ring_fingerprint, "sha256:0011223344556677");
    assert!(info.bytes_on_disk > 0 && info.running_job.is_none());
    let mut stream = c
        .list_metrics(pb::ListMetricsRequest {
            globs: vec!["app.m00[02].*".into()],
            regex: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut names = Vec::new();
    while let Some(batch) = stream.next().await {
        names.extend(batch.unwrap().metrics.into_iter().map(|m| m.name));
    }
    assert_eq!(names, ["app.m000.requests", "app.m002.requests"]);
}

#[tokio::test]
async fn read_streams_the_file_and_its_sha1() {
    let agent = spawn_agent(1).await;
    let mut c = client(&agent, Some(TOKEN)).await;
    let mut stream = c
        .read_metric(pb::ReadMetricRequest {
            metric: "app.m000.requests".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (mut gz, mut trailer) = (Vec::new(), None);
    while let Some(part) = stream.next().await {
        match part.unwrap().part.unwrap() {
            pb::read_metric_response::Part::GzipChunk(c) => gz.extend(c),
            pb::read_metric_response::Part::Trailer(t) => trailer = Some(t),
        }
    }
    let raw = gunzip(&gz);
    assert_eq!(
        raw,
        std::fs::read(metric::path_of(&agent.root(), "app.m000.requests").unwrap()).unwrap()
    );
    let trailer = trailer.unwrap();
    assert_eq!(
        (trailer.sha1, trailer.size),
        (codec::sha1_hex(&raw), raw.len() as u64)
    );
    let err = c
        .read_metric(pb::ReadMetricRequest {
            metric: "no.such".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn write_creates_then_fills_and_bad_uploads_write_nothing() {
    let agent = spawn_agent(1).await;
    let mut c = client(&agent, Some(TOKEN)).await;
    // A file from elsewhere: same metric written on another node with other values.
    let other = tempfile::tempdir().unwrap();
    write_metric(other.path(), "app.new.metric", 500.0, 0);
    let raw = std::fs::read(metric::path_of(other.path(), "app.new.metric").unwrap()).unwrap();
    let sha1 = codec::sha1_hex(&raw);

    let created = c
        .write_metric(futures::stream::iter(upload("app.new.metric", &raw, &sha1)))
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    let path = metric::path_of(&agent.root(), "app.new.metric").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), raw);

    // Into an existing file: a safe fill; the node's own points stay.
    let local = metric::path_of(&agent.root(), "app.m000.requests").unwrap();
    let before = Whisper::open_file(&local, Access::Read)
        .unwrap()
        .fetch(NOW - 86_000, None, NOW)
        .unwrap()
        .unwrap();
    let filled = c
        .write_metric(futures::stream::iter(upload(
            "app.m000.requests",
            &raw,
            &sha1,
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(!filled.created);
    let after = Whisper::open_file(&local, Access::Read)
        .unwrap()
        .fetch(NOW - 86_000, None, NOW)
        .unwrap()
        .unwrap();
    for (b, a) in before.values.iter().zip(&after.values) {
        if b.is_some() {
            assert_eq!(a, b);
        }
    }

    let tree = snapshot(&agent.root());
    let err = c
        .write_metric(futures::stream::iter(upload(
            "app.x",
            &raw,
            &"0".repeat(40),
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("SHA-1"), "{}", err.message());
    for evil in ["../evil", "a/b", "..", "a..b"] {
        let err = c
            .write_metric(futures::stream::iter(upload(evil, &raw, &sha1)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{evil}");
    }
    let err = c
        .write_metric(futures::stream::iter(upload(
            "app.notwhisper",
            b"hello",
            &codec::sha1_hex(b"hello"),
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        snapshot(&agent.root()),
        tree,
        "refused uploads wrote nothing"
    );
    assert!(!agent.dir.path().join("evil.wsp").exists());
}

#[tokio::test]
async fn delete_removes_one_file() {
    let agent = spawn_agent(2).await;
    let mut c = client(&agent, Some(TOKEN)).await;
    let r = c
        .delete_metric(pb::DeleteMetricRequest {
            metric: "app.m001.requests".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.deleted);
    let r = c
        .delete_metric(pb::DeleteMetricRequest {
            metric: "app.m001.requests".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.deleted);
    assert!(
        metric::path_of(&agent.root(), "app.m000.requests")
            .unwrap()
            .exists()
    );
}

/// Backup over RPC, then the tree is lost and a restore plan built from the bucket brings it back.
#[tokio::test]
async fn backup_then_restore_by_plan() {
    let agent = spawn_agent(4).await;
    let mut c = client(&agent, Some(TOKEN)).await;
    let original = snapshot(&agent.root());
    let mut stream = c
        .backup(pb::BackupRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(update) = stream.next().await {
        last = Some(update.unwrap());
    }
    let result = last
        .unwrap()
        .result
        .expect("the last message has the result");
    assert_eq!((result.new, result.failed.len()), (4, 0));

    std::fs::remove_dir_all(agent.root()).unwrap();
    let bucket =
        bucky_agent::bucket::Bucket::open(&agent.bucket_url(), &Default::default()).unwrap();
    let catalog = bucky_agent::restore::catalog(&bucket).await.unwrap();
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
        });
    }
    let mut stream = c
        .restore(pb::RestoreRequest { entries })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(update) = stream.next().await {
        last = Some(update.unwrap());
    }
    let last = last.unwrap();
    let result = last.result.unwrap();
    assert_eq!(
        (result.written, result.failed.len(), last.done, last.total),
        (4, 0, 4, 4)
    );
    assert_eq!(snapshot(&agent.root()), original);

    let err = c
        .restore(pb::RestoreRequest {
            entries: vec![pb::RestoreEntry {
                metric: "a".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
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
        node: "tls-node".into(),
        whisper_root: root,
        bucket: format!("file://{}", dir.path().join("bucket").display()),
        store: Default::default(),
        ring_fingerprint: String::new(),
        lock_timeout: Duration::from_millis(200),
        backup_idle_io: true,
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
                .tls_config(bucky_proto::tls::client(&ca, Some("localhost")).unwrap())
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
