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

#[test]
fn the_s3_examples_back_up_and_restore_a_cluster_as_written() {
    let s3 = spawn_s3();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3-example-token\n").unwrap();
    let env = [KEY, SECRET];

    let coordinator_text = edit(
        &example("coordinator-s3.example.toml"),
        EXAMPLE_ENDPOINT,
        &s3.endpoint,
    );
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
        let text = edit(
            &example("agent-s3.example.toml"),
            EXAMPLE_ENDPOINT,
            &s3.endpoint,
        );
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
    let url = format!("http://{}", coordinator.addr);
    let run = |cmd: &[&str]| {
        let mut args = cmd.to_vec();
        args.extend([
            "--coordinator",
            &url,
            "--token-file",
            token.to_str().unwrap(),
        ]);
        bucky(&args)
    };
    let said = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let backup = run(&["backup"]);
    assert!(backup.status.success(), "{}", said(&backup));
    let status = run(&["status", "--json"]);
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
    let verify = run(&["verify", "--all"]);
    assert_eq!(verify.status.code(), Some(0), "{}", said(&verify));

    let root = dir.path().join("trees").join("graphite-02");
    let before = snapshot(&root);
    assert!(!before.is_empty());
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let restore = run(&["restore", "--host", "graphite-02"]);
    assert!(restore.status.success(), "{}", said(&restore));
    assert_eq!(
        snapshot(&root),
        before,
        "graphite-02 restored byte for byte"
    );
    for name in &names {
        let held = metric::path_of(&root, name).unwrap().exists();
        let owned = ring
            .owners(name)
            .iter()
            .any(|&o| ring.destinations()[o].host == "graphite-02");
        assert_eq!(held, owned, "{name}");
    }
    drop(agents);
}
