//! deploy/config's S3 examples, run as written against a real S3 API server on plain-http
//! loopback (s3s-fs, as many Ceph RGW and MinIO installs serve): only the endpoint's host, the
//! local paths and the agents' addresses are changed; credentials come from the environment, as
//! the units' `EnvironmentFile` gives them. Three agents and the coordinator as processes: a
//! cluster backup, status, and a node restored from the buckets.

use std::path::Path;

use bucky_shared::metric;
use bucky_tests::{Server, bucky, snapshot, write_metric};

const HOSTS: [&str; 3] = ["graphite-01", "graphite-02", "graphite-03"];
const KEY: (&str, &str) = ("AWS_ACCESS_KEY_ID", "bucky-example-key");
const SECRET: (&str, &str) = ("AWS_SECRET_ACCESS_KEY", "bucky-example-secret");
const EXAMPLE_ENDPOINT: &str = "http://rgw.example.internal:7480";

/// An S3 server on loopback with one bucket per host, served from a background runtime.
struct S3 {
    endpoint: String,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn spawn_s3() -> S3 {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder as ConnBuilder;
    let dir = tempfile::tempdir().unwrap();
    for host in HOSTS {
        std::fs::create_dir(dir.path().join(format!("graphite-backup-{host}"))).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fs = s3s_fs::FileSystem::new(dir.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(KEY.1, SECRET.1));
    let service = builder.build();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let conn = ConnBuilder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(conn);
        }
    });
    S3 {
        endpoint: format!("http://{addr}"),
        _dir: dir,
        _runtime: runtime,
    }
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/config")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// `text` with `from` replaced, which must be there.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has {from:?}");
    text.replace(from, to)
}

/// How the proxy in front of the S3 server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes pass both ways.
    Pass,
    /// Connections are held and nothing is forwarded: a frozen server.
    Freeze,
    /// Every request gets S3's answer for a bucket that does not exist.
    NoSuchBucket,
}

/// A TCP proxy on loopback whose mode the test switches; a switch drops the connections open.
struct Proxy {
    endpoint: String,
    mode: std::sync::Arc<std::sync::Mutex<(Mode, u64)>>,
}

impl Proxy {
    fn set(&self, mode: Mode) {
        let mut m = self.mode.lock().unwrap();
        *m = (mode, m.1 + 1);
    }
}

const NO_SUCH_BUCKET: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>graphite-backup</BucketName><RequestId>tx000000000000000000001</RequestId><HostId>bucky-test</HostId></Error>";

fn spawn_proxy(s3: &S3) -> Proxy {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = s3.endpoint.trim_start_matches("http://").to_string();
    let mode = std::sync::Arc::new(std::sync::Mutex::new((Mode::Pass, 0u64)));
    let listener = s3
        ._runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let shared = mode.clone();
    s3._runtime.spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let (current, generation) = *shared.lock().unwrap();
            let shared = shared.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let switched = move || shared.lock().unwrap().1 != generation;
                match current {
                    Mode::Freeze => {
                        while !switched() {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                    Mode::NoSuchBucket => {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if client.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        let response = format!(
                            "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{NO_SUCH_BUCKET}",
                            NO_SUCH_BUCKET.len()
                        );
                        let _ = client.write_all(response.as_bytes()).await;
                        let _ = client.shutdown().await;
                    }
                    Mode::Pass => {
                        let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            () = async {
                                while !switched() {
                                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                }
                            } => {}
                        }
                    }
                }
            });
        }
    });
    Proxy { endpoint, mode }
}

/// The S3 examples' cluster on loopback: agents and coordinator as processes.
struct Cluster {
    dir: tempfile::TempDir,
    token: std::path::PathBuf,
    _agents: Vec<Server>,
    coordinator: Server,
    ring: bucky_shared::ring::Ring,
    names: Vec<String>,
}

impl Cluster {
    /// The examples with `endpoint`, and `[storage]`'s request timeout set to `timeout` seconds
    /// when given.
    fn start(endpoint: &str, timeout: Option<u64>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3-example-token\n").unwrap();
        let env = [KEY, SECRET];
        let adjust = |text: String| match timeout {
            Some(t) => edit(
                &text,
                "request_timeout = 60",
                &format!("request_timeout = {t}"),
            ),
            None => text,
        };
        let coordinator_text = adjust(edit(
            &example("coordinator-s3.example.toml"),
            EXAMPLE_ENDPOINT,
            endpoint,
        ));
        let coordinator_text = edit(
            &coordinator_text,
            "\"/etc/bucky/token\"",
            &format!("{token:?}"),
        );
        // Metrics on their ring owners (replication 2), as carbon wrote them.
        let probe = dir.path().join("probe.toml");
        std::fs::write(&probe, &coordinator_text).unwrap();
        let ring = bucky_coordinator::config::load(&probe).unwrap().ring;
        let now = bucky_shared::layout::Version::now().0;
        let names: Vec<String> = (0..24).map(|i| format!("servers.web{i:02}.cpu")).collect();
        for (i, name) in names.iter().enumerate() {
            for owner in ring.owners(name) {
                let host = &ring.destinations()[owner].host;
                write_metric(
                    &dir.path().join("trees").join(host),
                    name,
                    i as f64,
                    now,
                    120,
                );
            }
        }
        let mut agents = Vec::new();
        let mut lines = coordinator_text;
        for host in HOSTS {
            let root = dir.path().join("trees").join(host);
            std::fs::create_dir_all(&root).unwrap();
            let text = adjust(edit(
                &example("agent-s3.example.toml"),
                EXAMPLE_ENDPOINT,
                endpoint,
            ));
            let text = edit(&text, "\"/var/lib/graphite/whisper\"", &format!("{root:?}"));
            let text = edit(&text, "\"/etc/bucky/token\"", &format!("{token:?}"));
            let config = dir.path().join(format!("{host}.toml"));
            std::fs::write(&config, format!("node = \"{host}\"\n{text}")).unwrap();
            let agent = Server::start_with_env("bucky-agent", &config, "127.0.0.1:0", &env);
            lines = edit(
                &lines,
                &format!("{host} = \"http://{host}:7431\""),
                &format!("{host} = \"http://{}\"", agent.addr),
            );
            agents.push(agent);
        }
        let coordinator_config = dir.path().join("coordinator.toml");
        std::fs::write(&coordinator_config, lines).unwrap();
        let coordinator = Server::start_with_env(
            "bucky-coordinator",
            &coordinator_config,
            "127.0.0.1:0",
            &env,
        );
        Cluster {
            dir,
            token,
            _agents: agents,
            coordinator,
            ring,
            names,
        }
    }

    fn args<'a>(&'a self, url: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
        let mut args = cmd.to_vec();
        args.extend([
            "--coordinator",
            url,
            "--token-file",
            self.token.to_str().unwrap(),
        ]);
        args
    }

    fn run(&self, cmd: &[&str]) -> std::process::Output {
        let url = format!("http://{}", self.coordinator.addr);
        bucky(&self.args(&url, cmd))
    }

    /// `cmd`, killed and failed if it has not ended within `secs` seconds.
    fn run_within(&self, secs: u64, cmd: &[&str]) -> std::process::Output {
        let url = format!("http://{}", self.coordinator.addr);
        let mut child = bucky_tests::spawn_bucky(&self.args(&url, cmd));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("bucky {cmd:?} did not end within {secs} s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }
}

fn said(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_s3_examples_back_up_and_restore_a_cluster_as_written() {
    let s3 = spawn_s3();
    let cluster = Cluster::start(&s3.endpoint, None);
    let (ring, names) = (&cluster.ring, &cluster.names);

    let backup = cluster.run(&["backup"]);
    assert!(backup.status.success(), "{}", said(&backup));
    let status = cluster.run(&["status", "--json"]);
    assert!(status.status.success(), "{}", said(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for node in status["nodes"].as_array().unwrap() {
        assert_eq!(node["bucket_owner"], node["host"], "{node}");
        assert_eq!(node["last_backup"]["failed"], 0, "{node}");
        assert!(
            node["bucket"]
                .as_str()
                .unwrap()
                .starts_with("s3://graphite-backup-")
        );
    }
    let verify = cluster.run(&["verify", "--all"]);
    assert_eq!(verify.status.code(), Some(0), "{}", said(&verify));

    let root = cluster.dir.path().join("trees").join("graphite-02");
    let before = snapshot(&root);
    assert!(!before.is_empty());
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let restore = cluster.run(&["restore", "--host", "graphite-02"]);
    assert!(restore.status.success(), "{}", said(&restore));
    assert_eq!(
        snapshot(&root),
        before,
        "graphite-02 restored byte for byte"
    );
    for name in names {
        let held = metric::path_of(&root, name).unwrap().exists();
        let owned = ring
            .owners(name)
            .iter()
            .any(|&o| ring.destinations()[o].host == "graphite-02");
        assert_eq!(held, owned, "{name}");
    }
}

/// The store freezes, then answers that the bucket is gone, then comes back: backups stop early
/// with the cause said once, `status` answers within its deadline naming it, and nothing
/// committed is lost.
#[test]
fn a_frozen_store_and_a_lost_bucket_are_said_plainly_across_processes() {
    let s3 = spawn_s3();
    let proxy = spawn_proxy(&s3);
    let cluster = Cluster::start(&proxy.endpoint, Some(2));
    let backup = cluster.run(&["backup"]);
    assert!(backup.status.success(), "{}", said(&backup));

    proxy.set(Mode::Freeze);
    let status = cluster.run_within(60, &["status", "--json"]);
    assert_eq!(status.status.code(), Some(1), "{}", said(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for node in json["nodes"].as_array().unwrap() {
        let error = node["bucket_error"].as_str().unwrap_or_default();
        assert!(error.contains("no answer within"), "{node}");
    }
    // Each node's run stops after a few unanswered requests instead of waiting out every file.
    let backup = cluster.run_within(120, &["backup"]);
    assert!(!backup.status.success(), "{}", said(&backup));
    let text = said(&backup);
    for host in HOSTS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(host) && l.contains("failed")),
            "{text}"
        );
    }
    assert!(text.contains("no answer"), "{text}");

    proxy.set(Mode::NoSuchBucket);
    let backup = cluster.run_within(120, &["backup"]);
    assert!(!backup.status.success(), "{}", said(&backup));
    let text = said(&backup);
    assert!(
        text.contains(
            "reading .bucky/owner.json: the bucket does not exist on the server (NoSuchBucket)"
        ),
        "{text}"
    );
    assert!(
        !text.contains("<?xml") && !text.contains("<Error>"),
        "{text}"
    );
    for line in text.lines() {
        assert!(
            line.matches("NoSuchBucket").count() <= 1,
            "said more than once: {line}"
        );
    }
    let status = cluster.run_within(60, &["status"]);
    assert_eq!(status.status.code(), Some(1), "{}", said(&status));
    assert!(said(&status).contains("NoSuchBucket"), "{}", said(&status));

    proxy.set(Mode::Pass);
    let backup = cluster.run(&["backup"]);
    assert!(backup.status.success(), "{}", said(&backup));
    let verify = cluster.run(&["verify", "--all"]);
    assert_eq!(verify.status.code(), Some(0), "{}", said(&verify));
}
