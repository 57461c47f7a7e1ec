//! `bucky demo` at a small size: every step runs and the restored node verifies.

use crate::support::bucky;

#[test]
fn the_demo_backs_up_loses_a_node_restores_and_verifies() {
    let out = bucky(&["demo", "--metrics", "120", "--days", "1"]).unwrap();
    assert!(out.contains("1. wrote 120 metrics"), "{out}");
    let written: usize = out
        .lines()
        .filter(|l| l.trim_start().starts_with("graphite-0") && l.contains(" new,"))
        .map(|l| {
            l.split(": ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(written, 120, "every metric backed up once: {out}");
    assert!(out.contains("7. verified: all"), "{out}");
    assert!(
        out.lines()
            .filter(|l| l.contains("ring agrees true"))
            .count()
            == 3,
        "{out}"
    );
}

/// `--schema` sets every file's retentions: tiny files for a demo of many metrics.
#[test]
fn the_demo_takes_a_schema() {
    let out = bucky(&[
        "demo",
        "--metrics",
        "60",
        "--days",
        "1",
        "--schema",
        "60s:1h",
    ])
    .unwrap();
    assert!(out.contains("schema 60s:1h)"), "{out}");
    assert!(out.contains("7. verified: all"), "{out}");
    let err = bucky(&["demo", "--schema", "60x:1h"]).unwrap_err();
    assert!(format!("{err:#}").contains("60x"), "{err:#}");
}

/// `--keep` leaves configs and a token the real loaders accept, for the same cluster, and prints
/// the commands to start it again.
#[test]
fn a_kept_demo_leaves_a_cluster_to_start_again() {
    let out = bucky(&["demo", "--metrics", "30", "--days", "1", "--keep"]).unwrap();
    let kept = out
        .lines()
        .find_map(|l| l.strip_prefix("kept "))
        .expect("the kept directory is named");
    let root = std::path::Path::new(kept);
    let cluster = bucky_coordinator::config::load(&root.join("coordinator.toml")).unwrap();
    for host in &cluster.hosts {
        let agent =
            bucky_agent::config::load_as(&root.join(format!("{}.toml", host.name)), &host.name)
                .unwrap();
        assert_eq!(
            agent.service.ring_fingerprint,
            cluster.ring.fingerprint().to_string()
        );
        assert_eq!(agent.service.bucket, host.bucket);
        assert!(
            host.agent
                .ends_with(agent.listen.trim_start_matches("127.0.0.1")),
            "{} {}",
            host.agent,
            agent.listen
        );
        assert!(
            out.contains(&format!(
                "bucky-agent serve --config {}/{}.toml",
                kept, host.name
            )),
            "{out}"
        );
    }
    assert!(
        out.contains("export BUCKY_COORDINATOR=http://127.0.0.1:"),
        "{out}"
    );
    std::fs::remove_dir_all(root).unwrap();
}

/// `--json` prints one document with the demo's figures and no narration.
#[test]
fn the_demo_reports_as_json() {
    let out = bucky(&["demo", "--metrics", "45", "--days", "1", "--json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(json["metrics"], 45);
    let sum = |list: &str, field: &str| -> u64 {
        let items = json[list].as_array().unwrap().iter();
        items.map(|item| item[field].as_u64().unwrap()).sum()
    };
    assert_eq!(sum("per_host", "metrics"), 45);
    assert_eq!(sum("backup", "new"), 45, "{json}");
    assert_eq!(json["restore"]["host"], "graphite-02");
    assert_eq!(
        json["verified_files"], json["restore"]["wiped_files"],
        "{json}"
    );
    assert_eq!(json["kept"], false);
    assert!(
        !std::path::Path::new(json["dir"].as_str().unwrap()).exists(),
        "without --keep the directory is removed"
    );
}
