//! deploy/: every example config loads with the real loaders and describes one cluster, the
//! systemd units pass `systemd-analyze verify` and keep their promises (graphite user,
//! hardening, idle I/O for backups), and the cron entry is well-formed. That the commands they
//! run work is shown by the docs test, which installs and starts them.

use std::path::{Path, PathBuf};
use std::process::Command;

use bucky_tests::deploy_files::{Cron, Unit};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn files(sub: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(deploy().join(sub))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            )
        })
        .collect();
    out.sort();
    out
}

/// The scheme of a bucket URL (`file`, `s3`, ...).
fn store_of(url: &str) -> &str {
    url.split("://").next().unwrap()
}

#[test]
fn every_example_config_loads_and_they_describe_one_cluster() {
    let mut agents = Vec::new();
    let mut coordinators = Vec::new();
    for (name, path) in files("config") {
        if name.starts_with("agent") && name.ends_with(".example.toml") {
            let settings = bucky_agent::config::load_as(&path, "graphite-02")
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            agents.push((name, settings));
        } else if name.starts_with("coordinator") && name.ends_with(".example.toml") {
            let cluster =
                bucky_coordinator::config::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            coordinators.push((name, cluster));
        } else if name.ends_with(".env.example") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (key, value) = line
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{name}: {line}"));
                assert!(
                    key.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !value.is_empty(),
                    "{name}: {line} is not KEY=value"
                );
            }
        } else {
            panic!("deploy/config/{name}: no test loads it");
        }
    }
    assert!(agents.len() >= 3 && coordinators.len() >= 3, "{agents:?}");
    for (name, cluster) in &coordinators {
        let fingerprint = cluster.ring.fingerprint().to_string();
        let graphite_02 = cluster
            .hosts
            .iter()
            .find(|h| h.name == "graphite-02")
            .unwrap();
        let mut matched = 0;
        for (agent_name, agent) in &agents {
            assert_eq!(
                agent.service.ring_fingerprint, fingerprint,
                "{agent_name} and {name} have the same ring"
            );
            assert_eq!(agent.service.node, "graphite-02");
            if store_of(&agent.service.bucket) == store_of(&graphite_02.bucket) {
                assert_eq!(
                    agent.service.bucket, graphite_02.bucket,
                    "{agent_name} backs graphite-02 up where {name} looks for it"
                );
                matched += 1;
            }
        }
        assert!(matched >= 1, "{name}: no agent example uses its store");
    }
}

/// `systemd-analyze verify` on the units, with the binaries where ExecStart expects them.
#[test]
fn systemd_units_verify() {
    let binaries = bucky_tests::binary("bucky").parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for (name, path) in files("systemd") {
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/", &format!("{}/", binaries.display()));
        let copy = dir.path().join(&name);
        std::fs::write(&copy, text).unwrap();
        units.push(copy);
    }
    assert_eq!(
        units.len(),
        6,
        "agent, coordinator, backup and verify services and timers"
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze is installed (.ci/run installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

fn unit(name: &str) -> Unit {
    Unit::parse(&std::fs::read_to_string(deploy().join("systemd").join(name)).unwrap())
}

#[test]
fn units_run_as_graphite_hardened_with_backups_at_idle_io() {
    for name in [
        "bucky-agent.service",
        "bucky-coordinator.service",
        "bucky-backup.service",
        "bucky-verify.service",
    ] {
        let u = unit(name);
        assert_eq!(u.values("Service", "User"), ["graphite"], "{name}");
        for (key, expected) in [
            ("ProtectSystem", "strict"),
            ("NoNewPrivileges", "true"),
            ("PrivateTmp", "true"),
            ("ProtectHome", "true"),
            ("CapabilityBoundingSet", ""),
            ("SystemCallArchitectures", "native"),
        ] {
            assert_eq!(u.values("Service", key), [expected], "{name}: {key}");
        }
        assert!(
            u.values("Service", "SystemCallFilter")
                .contains(&"@system-service"),
            "{name}"
        );
    }
    for name in ["bucky-agent.service", "bucky-coordinator.service"] {
        let u = unit(name);
        assert_eq!(
            u.values("Service", "MemoryMax").len(),
            1,
            "{name} has a memory limit"
        );
    }
    let agent = unit("bucky-agent.service");
    // The agent may write the whisper tree the example config names, and nothing else of note.
    let config = bucky_agent::config::load_as(
        &deploy().join("config/agent-file.example.toml"),
        "graphite-01",
    )
    .unwrap();
    let root = config.service.whisper_root.display().to_string();
    assert!(
        agent
            .values("Service", "ReadWritePaths")
            .contains(&root.as_str())
    );
    // Idle-class backups set the I/O priority per thread: the filter must allow ioprio_set.
    assert!(
        !agent
            .values("Service", "SystemCallFilter")
            .iter()
            .any(|f| f.starts_with('~') && f.contains("@resources")),
        "ioprio_set is in @resources"
    );
    assert!(
        config.service.backup_idle_io,
        "the example keeps backups at idle I/O"
    );
    let backup = unit("bucky-backup.service");
    assert_eq!(backup.values("Service", "Type"), ["oneshot"]);
    assert_eq!(backup.values("Service", "IOSchedulingClass"), ["idle"]);
    assert!(
        !backup.values("Service", "TimeoutStartSec").is_empty()
            && backup.values("Service", "TimeoutStartSec") != ["infinity"],
        "a backup never waits forever"
    );
    for name in ["bucky-backup.timer", "bucky-verify.timer"] {
        let timer = unit(name);
        assert!(!timer.values("Timer", "OnCalendar").is_empty(), "{name}");
        assert_eq!(timer.values("Timer", "Persistent"), ["true"], "{name}");
    }
    let verify = unit("bucky-verify.service");
    assert_eq!(verify.values("Service", "Type"), ["oneshot"]);
    assert_eq!(
        verify.values("Service", "ExecStart"),
        ["/usr/local/bin/bucky verify"]
    );
    assert!(
        !verify.values("Service", "TimeoutStartSec").is_empty()
            && verify.values("Service", "TimeoutStartSec") != ["infinity"],
        "a verification never waits forever"
    );
}

#[test]
fn the_cron_entry_is_one_job_as_graphite_at_idle_io_never_overlapping() {
    let cron = Cron::parse(&std::fs::read_to_string(deploy().join("cron/bucky-backup")).unwrap());
    assert_eq!(cron.jobs.len(), 1, "{:?}", cron.jobs);
    assert_eq!(cron.jobs[0].user, "graphite");
    let command = &cron.jobs[0].command;
    assert!(
        command.starts_with("flock -n ") && command.contains("ionice -c3"),
        "{command}"
    );
    assert!(
        command.ends_with("/usr/local/bin/bucky backup"),
        "{command}"
    );
}
