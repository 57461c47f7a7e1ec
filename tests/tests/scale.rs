//! One node of 50,000 tiny whisper files through a real agent and coordinator: backup, an
//! unchanged backup, losing the tree, restoring it, status and check. Before streaming, the
//! restore plan of a node this size was one gRPC message over tonic's 4 MiB limit.

use std::path::Path;

use bucky_shared::metric;
use bucky_shared::whisper::{self, CreateOptions, Whisper};
use bucky_tests::{Server, bucky, snapshot};

const FILES: usize = 50_000;
const HOST: &str = "big-node";

fn name(i: usize) -> String {
    // A thousand files a directory; the plan's entries (about 200 bytes each) still make over
    // 10 MB, past gRPC's 4 MiB.
    format!("servers.rack{:03}.host{:04}_rx_bytes", i / 1000, i % 1000)
}

fn write_tree(root: &Path, now: i64) {
    let schema = whisper::parse_retentions(&["60s:1h"]).unwrap();
    let empty = whisper::create_image(&schema, &CreateOptions::default()).unwrap();
    for i in 0..FILES {
        let path = metric::path_of(root, &name(i)).unwrap();
        if i % 1000 == 0 {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        }
        let mut file = Whisper::open(empty.clone(), &path).unwrap();
        let points: Vec<(i64, f64)> = (0..60)
            .map(|m| (now - m * 60, (i + m as usize) as f64))
            .collect();
        file.update_many(&points, now).unwrap();
        std::fs::write(&path, file.storage().bytes()).unwrap();
    }
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_node_of_50_000_metrics_backs_up_restores_and_shows_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let root = dir.path().join("whisper");
    write_tree(&root, now);
    let original = snapshot(&root);
    let token = dir.path().join("token");
    std::fs::write(&token, "scale-token\n").unwrap();
    let ring = format!("[ring]\ndestinations = [\"{HOST}:2004\"]\n");
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "node = \"{HOST}\"\nwhisper_root = \"{}\"\nbucket = \"file://{}/buckets/{HOST}\"\ntoken_file = \"{}\"\n{ring}",
            root.display(),
            dir.path().display(),
            token.display()
        ),
    )
    .unwrap();
    let agent = Server::start("bucky-agent", &agent_config);
    let coordinator_config = dir.path().join("coordinator.toml");
    std::fs::write(
        &coordinator_config,
        format!(
            "token_file = \"{}\"\n{ring}[buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{HOST} = \"http://{}\"\n",
            token.display(),
            dir.path().display(),
            agent.addr
        ),
    )
    .unwrap();
    let coordinator = Server::start("bucky-coordinator", &coordinator_config);
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

    let backup = run(&["backup"]);
    assert!(backup.status.success(), "{}", out(&backup));
    assert!(
        out(&backup).contains(&format!("{FILES} new")),
        "{}",
        out(&backup)
    );
    let again = run(&["backup"]);
    assert!(again.status.success(), "{}", out(&again));
    assert!(
        out(&again).contains(&format!("{FILES} unchanged")),
        "{}",
        out(&again)
    );

    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let restore = run(&["restore", "--host", HOST]);
    assert!(restore.status.success(), "{}", out(&restore));
    assert!(
        out(&restore).contains(&format!("{FILES} written")),
        "{}",
        out(&restore)
    );
    assert!(
        snapshot(&root) == original,
        "the restored tree equals the original"
    );

    let status = run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let node = &status["nodes"][0];
    assert_eq!(node["metric_count"], FILES as u64, "{node}");
    assert_eq!(node["last_backup"]["metrics"], FILES as u64, "{node}");
    assert_eq!(node["last_backup"]["missing"], 0, "{node}");
    let check = run(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", out(&check));
    drop((agent, coordinator));
}
