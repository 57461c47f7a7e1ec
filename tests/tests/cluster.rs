//! A coordinator and three agents as real processes: cluster backup, status and check, losing a
//! node and restoring it, listing versions, a wrong token, a crashed agent.

use std::path::Path;

use bucky_shared::metric;
use bucky_tests::{Server, bucky, snapshot, spawn_bucky, write_metric};

mod fleet;
use fleet::{Fleet, HOSTS, stdout};

/// Every `.wsp.gz` under `buckets` gunzips to a file of `trees` and matches its `.sha1`; returns
/// how many were checked.
fn check_objects(buckets: &Path, trees: &Path, names: &[String]) -> usize {
    use sha1::Digest;
    use std::io::Read;
    let mut checked = 0;
    for (path, gz) in snapshot(buckets) {
        let Some(stamp) = path.to_str().unwrap().strip_suffix(".wsp.gz") else {
            continue;
        };
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        let sha1 = std::fs::read_to_string(buckets.join(format!("{stamp}.sha1"))).unwrap();
        let digest: String = sha1::Sha1::digest(&raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha1, digest, "{}", path.display());
        let metric = path.iter().nth(1).unwrap().to_str().unwrap();
        assert!(names.iter().any(|n| n == metric), "{metric}");
        let originals: Vec<Vec<u8>> = HOSTS
            .iter()
            .filter_map(|h| std::fs::read(metric::path_of(&trees.join(h), metric).unwrap()).ok())
            .collect();
        assert!(
            originals.contains(&raw),
            "{} is the file of {metric}",
            path.display()
        );
        checked += 1;
    }
    checked
}

/// `GET /metrics` from `addr`, or what went wrong.
fn scrape(addr: std::net::SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(response)
}

/// The coordinator's fleet metrics reach Prometheus (scraped) and carbon (pushed).
#[test]
fn fleet_metrics_reach_prometheus_and_carbon() {
    let fleet = Fleet::start(|_| None);
    assert!(fleet.bucky(&["backup"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let want = format!("bucky_last_backup_metrics{{host=\"{}\"}}", HOSTS[0]);
    let text = loop {
        match scrape(fleet.metrics) {
            Ok(text) if text.contains(&want) => break text,
            other => assert!(
                std::time::Instant::now() < deadline,
                "no backup figures at /metrics: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for host in HOSTS {
        assert!(
            text.contains(&format!("bucky_up{{host=\"{host}\"}} 1")),
            "{text}"
        );
    }
    fleet.carbon.set_nonblocking(false).unwrap();
    let (mut line_receiver, _) = fleet.carbon.accept().unwrap();
    line_receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut lines = String::new();
    std::io::Read::read_to_string(&mut line_receiver, &mut lines).unwrap();
    assert!(
        lines.contains(&format!("bucky.{}.up 1 ", HOSTS[0])),
        "{lines}"
    );
}

#[test]
fn cluster_backup_status_restore_and_failures_across_processes() {
    let mut fleet = Fleet::start(|_| None);
    let run = |cmd: &[&str]| fleet.bucky(cmd);
    let names = fleet.names.clone();
    let dir = fleet.dir.path().to_path_buf();
    let url = format!("http://{}", fleet.coordinator.addr);
    // Before any backup the check is CRITICAL.
    let check = run(&["check"]);
    assert_eq!(check.status.code(), Some(2), "{}", stdout(&check));

    let backup = run(&["backup"]);
    assert!(
        backup.status.success(),
        "{}{}",
        stdout(&backup),
        String::from_utf8_lossy(&backup.stderr)
    );
    assert_eq!(
        stdout(&backup)
            .lines()
            .filter(|l| l.contains(" ok "))
            .count(),
        3,
        "{}",
        stdout(&backup)
    );

    assert_eq!(
        check_objects(&dir.join("buckets"), &dir.join("trees"), &names),
        names.len()
    );
    let status = run(&["status", "--json"]);
    assert!(status.status.success(), "a healthy fleet's status exits 0");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for node in status["nodes"].as_array().unwrap() {
        assert_eq!(node["reachable"], true);
        assert_eq!(node["ring_agrees"], true);
        assert!(node["last_backup"]["run"].is_string(), "{node}");
        assert_eq!(
            node["bucket_owner"], node["host"],
            "the owner marker names the host"
        );
    }
    let check = run(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    assert!(
        stdout(&check).starts_with("BUCKY OK - 3 nodes backed up"),
        "{}",
        stdout(&check)
    );
    let check = run(&["check", "--json"]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    let json: serde_json::Value = serde_json::from_str(&stdout(&check)).unwrap();
    assert_eq!(json["state"], "OK");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(3), "{json}");

    // Lose node-b's tree; restore it from the buckets.
    let lost = dir.join("trees").join("node-b");
    let original = snapshot(&lost);
    assert!(!original.is_empty());
    std::fs::remove_dir_all(&lost).unwrap();
    let plan = run(&["restore", "--host", "node-b", "--dry-run"]);
    assert!(
        stdout(&plan).contains(&format!("{} metrics", original.len())),
        "{}",
        stdout(&plan)
    );
    let shown = run(&["restore", "--host", "node-b", "--dry-run", "--show", "1"]);
    let text = stdout(&shown);
    assert_eq!(text.matches(": write file://").count(), 1, "{text}");
    assert!(
        text.contains(&format!("and {} more metrics", original.len() - 1)),
        "{text}"
    );
    let json = run(&[
        "restore",
        "--host",
        "node-b",
        "--dry-run",
        "--show",
        "2",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["plan"]["metrics"], original.len() as u64);
    assert_eq!(json["metrics"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["metrics"][0]["copies"][0]["action"], "write");
    assert!(!lost.exists(), "a dry run changes nothing");
    let restore = run(&["restore", "--host", "node-b"]);
    assert!(
        restore.status.success(),
        "{}{}",
        stdout(&restore),
        String::from_utf8_lossy(&restore.stderr)
    );
    assert_eq!(snapshot(&lost), original);

    let list = run(&["list", &names[0]]);
    assert!(stdout(&list).contains("/buckets/"), "{}", stdout(&list));

    // A wrong token is refused.
    std::fs::write(dir.join("bad"), "nope").unwrap();
    let bad = bucky(&[
        "status",
        "--coordinator",
        &url,
        "--token-file",
        dir.join("bad").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("token"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // node-c's agent crashes: its node fails, the others back up; the check warns.
    fleet.agents[2].kill();
    let run = |cmd: &[&str]| fleet.bucky(cmd);
    let backup = run(&["backup"]);
    assert!(!backup.status.success());
    let out = stdout(&backup);
    assert!(
        out.lines()
            .any(|l| l.starts_with("node-c") && l.contains("failed")),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains(" ok ")).count(),
        2,
        "{out}"
    );
    let check = run(&["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(
        stdout(&check).contains("node-c: agent unreachable"),
        "{}",
        stdout(&check)
    );
    // status says it in its exit code too, for scripts.
    assert_eq!(run(&["status"]).status.code(), Some(1));
    // Nagios conventions: a usage error and thresholds that contradict are UNKNOWN (3).
    let usage = run(&["check", "--warning", "soon"]);
    assert_eq!(usage.status.code(), Some(3), "{}", stdout(&usage));
    let backwards = run(&["check", "--warning", "60", "--critical", "50"]);
    assert_eq!(backwards.status.code(), Some(3), "{}", stdout(&backwards));
    assert!(stdout(&backwards).starts_with("BUCKY UNKNOWN - --warning 60"));
}

/// An agent configured with another ring: the backup is refused naming it, status shows it.
#[test]
fn a_mismatched_ring_blocks_backup_and_shows_in_status_across_processes() {
    let fleet = Fleet::start(|h| {
        (h == "node-c")
            .then(|| "[ring]\ndestinations = [\"node-a:2004\", \"node-b:2004\"]\n".to_string())
    });
    let backup = fleet.bucky(&["backup"]);
    assert!(!backup.status.success());
    let stderr = String::from_utf8_lossy(&backup.stderr);
    assert!(
        stderr.contains("ring mismatch")
            && stderr.contains("node-c")
            && !stderr.contains("node-a ("),
        "{stderr}"
    );
    let status = fleet.bucky(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(1),
        "a ring that differs fails status"
    );
    let table = stdout(&status);
    let c = table.lines().find(|l| l.starts_with("node-c")).unwrap();
    assert!(c.contains("DIFF"), "{table}");
    assert!(
        table
            .lines()
            .find(|l| l.starts_with("node-a"))
            .unwrap()
            .contains(" ok "),
        "{table}"
    );
    assert!(
        snapshot(&fleet.dir.path().join("buckets")).is_empty(),
        "no object was written"
    );
}

/// Kills node-c's agent while its backup is provably running (blocked on a file this test holds
/// locked): node-c fails, the others succeed; restarted on the same port, a rerun completes.
#[test]
fn an_agent_killed_mid_backup_fails_its_node_and_a_rerun_completes() {
    let mut fleet = Fleet::start(|_| None);
    let c_root = fleet.dir.path().join("trees").join("node-c");
    let victim = snapshot(&c_root)
        .into_iter()
        .next()
        .expect("node-c holds metrics")
        .0;
    let held = std::fs::File::open(c_root.join(&victim)).unwrap();
    held.lock().unwrap();

    let url = format!("http://{}", fleet.coordinator.addr);
    let token = fleet.dir.path().join("token");
    let backup = spawn_bucky(&[
        "backup",
        "--coordinator",
        &url,
        "--token-file",
        token.to_str().unwrap(),
    ]);
    // Wait until node-c reports a running backup (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status: serde_json::Value =
            serde_json::from_slice(&fleet.bucky(&["status", "--json"]).stdout).unwrap();
        let c = status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["host"] == "node-c")
            .unwrap()
            .clone();
        if c["running_job"]["kind"] == "backup" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node-c never started its backup: {c}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let c_addr = fleet.agents[2].addr.clone();
    fleet.agents[2].kill();
    let out = backup.wait_with_output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("node-c") && l.contains("failed")),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(" ok ")).count(),
        2,
        "{text}"
    );

    drop(held);
    fleet.agents[2] = Server::start_on(
        "bucky-agent",
        &fleet.dir.path().join("node-c.toml"),
        &c_addr,
    );
    let rerun = fleet.bucky(&["backup"]);
    assert!(
        rerun.status.success(),
        "{}{}",
        stdout(&rerun),
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert_eq!(
        stdout(&rerun)
            .lines()
            .filter(|l| l.contains(" ok "))
            .count(),
        3,
        "{}",
        stdout(&rerun)
    );
}

/// A fourth node joins the ring: restarted with the new ring, the cluster restores node-d with
/// exactly the metrics the ring now gives it, from their previous owners' buckets.
#[test]
fn a_fourth_node_receives_exactly_its_share_across_processes() {
    let mut fleet = Fleet::start(|_| None);
    assert!(fleet.bucky(&["backup"]).status.success());
    let dir = fleet.dir.path().to_path_buf();
    let ring4 = fleet.grow_to_four();

    // Before the restore: node-d misses its share, the old owners hold it misplaced.
    let moved: Vec<&String> = fleet
        .names
        .iter()
        .filter(|m| ring4.destinations()[ring4.owners(m)[0]].host == "node-d")
        .collect();
    let findings = |fleet: &Fleet| {
        let out = fleet.bucky(&["inconsistent", "--json"]);
        let lines: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out.status.code(), lines)
    };
    let (code, lines) = findings(&fleet);
    assert_eq!(code, Some(1), "{lines:?}");
    let (summary, entries) = lines.split_last().unwrap();
    let mut expected: Vec<(String, String, &str)> = Vec::new();
    for name in &fleet.names {
        let old_owner = HOSTS
            .iter()
            .find(|h| {
                metric::path_of(&dir.join("trees").join(h), name)
                    .unwrap()
                    .exists()
            })
            .unwrap();
        let new_owner = &ring4.destinations()[ring4.owners(name)[0]].host;
        if old_owner != new_owner {
            expected.push((name.clone(), new_owner.clone(), "missing"));
            expected.push((name.clone(), old_owner.to_string(), "misplaced"));
        }
    }
    let mut got: Vec<(String, String, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["metric"].as_str().unwrap().to_string(),
                e["host"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap(),
            )
        })
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert!(!moved.is_empty());
    let d = &summary["summary"]["nodes"][3];
    assert_eq!(d["host"], "node-d");
    assert_eq!(d["missing"], moved.len() as u64);
    assert_eq!(summary["summary"]["metrics"], fleet.names.len() as u64);

    let restore = fleet.bucky(&["restore", "--host", "node-d"]);
    assert!(
        restore.status.success(),
        "{}{}",
        stdout(&restore),
        String::from_utf8_lossy(&restore.stderr)
    );
    let mut expected: Vec<String> = fleet
        .names
        .iter()
        .filter(|m| ring4.destinations()[ring4.owners(m)[0]].host == "node-d")
        .cloned()
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    let d = dir.join("trees").join("node-d");
    let mut got: Vec<String> = snapshot(&d)
        .into_iter()
        .map(|(p, _)| {
            p.to_str()
                .unwrap()
                .trim_end_matches(".wsp")
                .replace('/', ".")
        })
        .collect();
    got.sort();
    assert_eq!(
        got, expected,
        "exactly the metrics the ring now gives node-d"
    );
    for name in &expected {
        let restored = std::fs::read(metric::path_of(&d, name).unwrap()).unwrap();
        let previous = HOSTS
            .iter()
            .find_map(|h| {
                std::fs::read(metric::path_of(&dir.join("trees").join(h), name).unwrap()).ok()
            })
            .unwrap();
        assert_eq!(restored, previous, "{name}: the previous owner's data");
    }

    // After it: nothing missing; the old copies are still there (restore never deletes), and
    // status shows the last check's counts.
    let out = fleet.bucky(&["inconsistent"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("{} misplaced, 0 missing", moved.len())),
        "{text}"
    );
    let status = fleet.bucky(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let placement = &status["nodes"][3]["placement"];
    assert_eq!(placement["held"], moved.len() as u64, "{status}");
    assert_eq!(placement["missing"], 0);
    let table = stdout(&fleet.bucky(&["status"]));
    assert!(
        table.contains("PLACEMENT") && table.contains("misplaced"),
        "{table}"
    );
}

/// The 60-second archive's values of `path` at `now`.
fn minute_values(path: &Path, now: i64) -> Vec<Option<f64>> {
    let file = std::fs::File::open(path).unwrap();
    let whisper = bucky_shared::whisper::Whisper::open(file, path).unwrap();
    whisper
        .fetch(now - 86_000, Some(now), now)
        .unwrap()
        .unwrap()
        .values
}

#[test]
fn a_rebalance_moves_every_metric_to_its_owners_agent_to_agent() {
    let mut fleet = Fleet::start(|_| None);
    let dir = fleet.dir.path().to_path_buf();
    let ring4 = fleet.grow_to_four();
    let owner4 = |name: &str| ring4.destinations()[ring4.owners(name)[0]].host.clone();
    let old_owner = |name: &str| {
        HOSTS
            .iter()
            .find(|h| {
                metric::path_of(&dir.join("trees").join(h), name)
                    .unwrap()
                    .exists()
            })
            .unwrap()
            .to_string()
    };
    let moved: Vec<String> = fleet
        .names
        .iter()
        .filter(|m| owner4(m) != old_owner(m))
        .cloned()
        .collect();
    assert!(moved.len() >= 2, "{moved:?}");
    let before: Vec<(String, Vec<u8>)> = fleet
        .names
        .iter()
        .map(|m| {
            let path = metric::path_of(&dir.join("trees").join(old_owner(m)), m).unwrap();
            (m.clone(), std::fs::read(path).unwrap())
        })
        .collect();
    // Since the ring changed, carbon on the new owner has written the newest points of one of
    // them, over slots the old owner holds too: those must stay as carbon wrote them.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let live = &moved[0];
    let live_path = metric::path_of(&dir.join("trees").join(owner4(live)), live).unwrap();
    write_metric(&dir.join("trees").join(owner4(live)), live, 1000.0, now, 5);
    let carbon_wrote = minute_values(&live_path, now);

    let plan = fleet.bucky(&["rebalance", "--dry-run", "--json"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned = plan["moves"].as_array().unwrap();
    assert_eq!(planned.len(), moved.len(), "{plan}");
    for m in planned {
        let name = m["metric"].as_str().unwrap();
        assert_eq!(m["to"], owner4(name));
        assert_eq!(m["from"], old_owner(name));
        assert_eq!(m["fill"], name == live, "{m}");
    }
    assert!(
        !metric::path_of(&dir.join("trees").join(owner4(&moved[1])), &moved[1])
            .unwrap()
            .exists(),
        "a dry run moves nothing"
    );

    let run = fleet.bucky(&["rebalance", "--json"]);
    assert_eq!(run.status.code(), Some(0), "{}", stdout(&run));
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let d = &run["nodes"][3];
    assert_eq!(d["host"], "node-d");
    assert_eq!(d["result"]["filled"], 1, "{run}");
    assert_eq!(d["result"]["written"], moved.len() as u64 - 1, "{run}");

    for (name, old_bytes) in &before {
        let at_owner = metric::path_of(&dir.join("trees").join(owner4(name)), name).unwrap();
        if name == live {
            let old_path = dir.join("old.wsp");
            std::fs::write(&old_path, old_bytes).unwrap();
            let old = minute_values(&old_path, now);
            let merged: Vec<Option<f64>> = carbon_wrote
                .iter()
                .zip(&old)
                .map(|(carbon, old)| carbon.or(*old))
                .collect();
            assert_eq!(minute_values(&at_owner, now), merged, "{name}");
            assert!(carbon_wrote.iter().flatten().count() == 5);
        } else {
            assert!(
                std::fs::read(&at_owner).unwrap() == *old_bytes,
                "{name}: the old owner's file, whole"
            );
        }
        // Nothing was deleted.
        let old_copy = metric::path_of(&dir.join("trees").join(old_owner(name)), name).unwrap();
        assert!(std::fs::read(old_copy).unwrap() == *old_bytes);
    }

    // A rerun moves nothing new.
    let again = fleet.bucky(&["rebalance", "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["nodes"][3]["result"]["written"], 0, "{again}");
    assert_eq!(again["nodes"][3]["result"]["points_filled"], 0, "{again}");
    assert_eq!(
        again["nodes"][3]["result"]["unchanged"],
        moved.len() as u64,
        "the old copies did not change: none is sent again: {again}"
    );
    let out = fleet.bucky(&["inconsistent"]);
    assert!(
        stdout(&out).contains(&format!("{} misplaced, 0 missing", moved.len())),
        "{}",
        stdout(&out)
    );

    // --delete removes nothing while a move fails: here a new owner's copy that is corrupt.
    let broken = metric::path_of(&dir.join("trees").join(owner4(&moved[1])), &moved[1]).unwrap();
    let good = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, b"not whisper").unwrap();
    let out = fleet.bucky(&["rebalance", "--delete"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("nothing deleted: moves into node-d failed"),
        "{}",
        stdout(&out)
    );
    for (name, _) in &before {
        assert!(
            metric::path_of(&dir.join("trees").join(old_owner(name)), name)
                .unwrap()
                .exists()
        );
    }

    // Once every move succeeds, each misplaced copy goes, and only those.
    std::fs::write(&broken, &good).unwrap();
    let owned_before: Vec<Vec<u8>> = fleet
        .names
        .iter()
        .map(|m| {
            std::fs::read(metric::path_of(&dir.join("trees").join(owner4(m)), m).unwrap()).unwrap()
        })
        .collect();
    let out = fleet.bucky(&["rebalance", "--delete", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deleted: u64 = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["deleted"].as_u64().unwrap())
        .sum();
    assert_eq!(deleted, moved.len() as u64, "{json}");
    for (i, name) in fleet.names.iter().enumerate() {
        for h in ["node-a", "node-b", "node-c", "node-d"] {
            let path = metric::path_of(&dir.join("trees").join(h), name).unwrap();
            assert_eq!(path.exists(), h == owner4(name), "{name} on {h}");
        }
        let at_owner = metric::path_of(&dir.join("trees").join(owner4(name)), name).unwrap();
        assert!(
            std::fs::read(at_owner).unwrap() == owned_before[i],
            "{name}: its owner's copy untouched"
        );
    }
    let out = fleet.bucky(&["inconsistent"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn a_node_removed_from_the_ring_is_drained_to_zero() {
    let mut fleet = Fleet::start(|_| None);
    let dir = fleet.dir.path().to_path_buf();
    let held = |h: &str, name: &str| {
        std::fs::read(metric::path_of(&dir.join("trees").join(h), name).unwrap()).ok()
    };
    let before: Vec<(String, Vec<u8>)> = fleet
        .names
        .iter()
        .map(|m| {
            let bytes = HOSTS.iter().find_map(|h| held(h, m)).unwrap();
            (m.clone(), bytes)
        })
        .collect();
    let on_c = fleet
        .names
        .iter()
        .filter(|m| held("node-c", m).is_some())
        .count();
    assert!(on_c > 0);
    let ring2 = fleet.reconfigure(&["node-a", "node-b"], &["node-c"]);

    let status = stdout(&fleet.bucky(&["status"]));
    assert!(status.contains(&format!("{on_c} to drain")), "{status}");
    let out = fleet.bucky(&["rebalance", "--delete"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    for (name, bytes) in &before {
        let owner = &ring2.destinations()[ring2.owners(name)[0]].host;
        assert!(
            held(owner, name).as_ref() == Some(bytes),
            "{name} on {owner}, unchanged"
        );
        for h in HOSTS.iter().filter(|h| *h != owner) {
            assert!(held(h, name).is_none(), "{name} left on {h}");
        }
    }
    let status = stdout(&fleet.bucky(&["status"]));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("node-c") && l.contains(" out ") && l.contains("drained")),
        "{status}"
    );
    let out = fleet.bucky(&["inconsistent"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let left: Vec<_> = std::fs::read_dir(dir.join("trees").join("node-c"))
        .unwrap()
        .collect();
    assert!(
        left.is_empty(),
        "no empty directories left behind: {left:?}"
    );
}

/// Kill the coordinator and a source agent in the middle of a rebalance, restart both, run it
/// again with --delete: it completes, every metric is on exactly its owner, nothing is lost.
#[test]
fn a_rebalance_killed_half_way_completes_when_run_again() {
    let mut fleet = Fleet::start(|_| None);
    let dir = fleet.dir.path().to_path_buf();
    let held = |h: &str, name: &str| {
        std::fs::read(metric::path_of(&dir.join("trees").join(h), name).unwrap()).ok()
    };
    let before: Vec<(String, Vec<u8>)> = fleet
        .names
        .iter()
        .map(|m| (m.clone(), HOSTS.iter().find_map(|h| held(h, m)).unwrap()))
        .collect();
    let ring4 = fleet.grow_to_four();
    let owner4 = |name: &str| ring4.destinations()[ring4.owners(name)[0]].host.clone();
    let moved = fleet
        .names
        .iter()
        .filter(|m| held(&owner4(m), m).is_none())
        .count();
    assert!(moved >= 4, "{moved}");

    // Slowly, so there is a middle to stop in.
    let url = format!("http://{}", fleet.coordinator.addr);
    let token = dir.join("token");
    let args = [
        "--coordinator",
        &url,
        "--token-file",
        token.to_str().unwrap(),
    ];
    let run = spawn_bucky(&[&["rebalance", "--rate", "4"][..], &args].concat());
    let on_d = || snapshot(&dir.join("trees").join("node-d")).len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while on_d() == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing moved");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    fleet.coordinator.kill();
    let a_addr = fleet.agents[0].addr.clone();
    fleet.agents[0].kill();
    let out = run.wait_with_output().unwrap();
    assert!(!out.status.success(), "the run was cut short");
    assert!(on_d() < moved, "stopped half way: {} of {moved}", on_d());

    fleet.agents[0] = Server::start_on("bucky-agent", &dir.join("node-a-4r1.toml"), &a_addr);
    fleet.coordinator = Server::start("bucky-coordinator", &dir.join("coordinator-4r1.toml"));
    // node-d's job ends once it sees its plan cut off; wait for that (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status: serde_json::Value =
            serde_json::from_slice(&fleet.bucky(&["status", "--json"]).stdout).unwrap();
        if status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["running_job"].is_null())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a job never ended: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let again = fleet.bucky(&["rebalance", "--delete", "--rate", "0"]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
    for (name, bytes) in &before {
        let owner = owner4(name);
        assert!(
            held(&owner, name).as_ref() == Some(bytes),
            "{name} on {owner}"
        );
        for h in ["node-a", "node-b", "node-c", "node-d"]
            .iter()
            .filter(|h| **h != owner)
        {
            assert!(held(h, name).is_none(), "{name} also on {h}");
        }
    }
}

/// A fourth node joins with replication 2, and carbon keeps writing its copies while a rebalance
/// fills them, alternately taking whisper's lock and not: every point it wrote is there
/// afterwards, the points it had before are unchanged, and every gap around them holds the old
/// owner's history; after `--delete` every metric is on exactly its two owners.
#[test]
fn points_written_during_a_rebalance_are_kept() {
    use bucky_shared::whisper::{LockMode, Whisper, lock_file};
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut fleet = Fleet::start(|_| None);
    let dir = fleet.dir.path().to_path_buf();
    let old_owner = |name: &str| {
        HOSTS
            .iter()
            .find(|h| {
                metric::path_of(&dir.join("trees").join(h), name)
                    .unwrap()
                    .exists()
            })
            .unwrap()
            .to_string()
    };
    // Replication 2 on the three nodes first (every metric on its two owners), then a fourth
    // node: node-d receives what it now owns from the owner it replaces.
    let all = ["node-a", "node-b", "node-c", "node-d"];
    fleet.reconfigure_replicated(&all[..3], &[], 2);
    let out = fleet.bucky(&["rebalance", "--delete"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let ring4 = fleet.reconfigure_replicated(&all, &[], 2);
    let owners = |m: &str| -> Vec<String> {
        ring4
            .owners(m)
            .iter()
            .map(|&o| ring4.destinations()[o].host.clone())
            .collect()
    };
    let moved: Vec<String> = fleet
        .names
        .iter()
        .filter(|m| owners(m).iter().any(|h| h == "node-d"))
        .cloned()
        .collect();
    assert!(moved.len() >= 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % 60;
    let d_path = |name: &str| metric::path_of(&dir.join("trees").join("node-d"), name).unwrap();
    let open = |path: &Path| {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        Whisper::open(file, path).unwrap()
    };
    // What carbon on node-d had before: every third minute of the old owner's span, other values.
    let had: Vec<i64> = (2..=150)
        .filter(|k| k % 3 == 0)
        .map(|k| end - k * 60)
        .collect();
    for name in &moved {
        write_metric(&dir.join("trees").join("node-d"), name, 0.0, now, 0);
        let points: Vec<(i64, f64)> = had.iter().map(|&t| (t, 5000.0)).collect();
        open(&d_path(name)).update_many(&points, now).unwrap();
    }

    // While the rebalance runs, one new point per round per metric, older than anything the old
    // owner has, so the fill never writes those slots: only a fill that rewrote more than it
    // changed could lose them.
    let slot = move |round: i64| end - (300 + round) * 60;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, moved, dir) = (stop.clone(), moved.clone(), dir.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while rounds < 1000 && !stop.load(Ordering::Relaxed) {
                rounds += 1;
                for name in &moved {
                    let path = metric::path_of(&dir.join("trees").join("node-d"), name).unwrap();
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .unwrap();
                    // Odd rounds as carbon with WHISPER_LOCK_WRITES, even ones as its default.
                    if rounds % 2 == 1 {
                        let timeout = std::time::Duration::from_secs(5);
                        lock_file(&file, LockMode::Exclusive, timeout, &path).unwrap();
                    }
                    let mut w = Whisper::open(file, &path).unwrap();
                    w.update_many(&[(slot(rounds), 7000.0 + rounds as f64)], now)
                        .unwrap();
                }
            }
            rounds
        })
    };
    let out = fleet.bucky(&["rebalance", "--rate", "20"]);
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(rounds > 1, "the writer ran during the rebalance");

    let minutes = |path: &Path| {
        let w = Whisper::open(std::fs::File::open(path).unwrap(), path).unwrap();
        let series = w.fetch(end - 1400 * 60, Some(end), now).unwrap().unwrap();
        series
            .points()
            .collect::<std::collections::BTreeMap<i64, Option<f64>>>()
    };
    for name in &moved {
        let got = minutes(&d_path(name));
        let old =
            minutes(&metric::path_of(&dir.join("trees").join(old_owner(name)), name).unwrap());
        for round in 1..=rounds {
            assert_eq!(
                got[&slot(round)],
                Some(7000.0 + round as f64),
                "{name}: round {round}"
            );
        }
        for (t, value) in &got {
            if had.contains(t) {
                assert_eq!(*value, Some(5000.0), "{name} at {t}: node-d's own point");
            } else if old[t].is_some() {
                assert_eq!(value, &old[t], "{name} at {t}: the old owner's point");
            }
        }
        assert!(
            old.values().flatten().count() > had.len(),
            "{name}: history to fill"
        );
    }

    // Then the old copies go: every metric ends on exactly its two owners, node-d's copies with
    // carbon's points still in them.
    let out = fleet.bucky(&["rebalance", "--delete"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    for name in &fleet.names {
        let placed = owners(name);
        for h in all {
            let held = metric::path_of(&dir.join("trees").join(h), name)
                .unwrap()
                .exists();
            assert_eq!(held, placed.iter().any(|p| p == h), "{name} on {h}");
        }
    }
    for name in &moved {
        let got = minutes(&d_path(name));
        for round in 1..=rounds {
            assert_eq!(
                got[&slot(round)],
                Some(7000.0 + round as f64),
                "{name}: {round}"
            );
        }
    }
}

/// Replication raised from 1 to 2, then a fourth node: after each `rebalance --delete` every
/// metric is on exactly its owners under the ring as configured, each copy with every point.
#[test]
fn replication_two_and_a_fourth_node_end_with_exactly_the_ring_placement() {
    let mut fleet = Fleet::start(|_| None);
    let dir = fleet.dir.path().to_path_buf();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let path = |h: &str, name: &str| metric::path_of(&dir.join("trees").join(h), name).unwrap();
    let values: Vec<(String, Vec<Option<f64>>)> = fleet
        .names
        .iter()
        .map(|m| {
            let h = HOSTS.iter().find(|h| path(h, m).exists()).unwrap();
            (m.clone(), minute_values(&path(h, m), now))
        })
        .collect();
    let all = ["node-a", "node-b", "node-c", "node-d"];
    for hosts in [&all[..3], &all[..]] {
        let ring = fleet.reconfigure_replicated(hosts, &[], 2);
        let out = fleet.bucky(&["rebalance", "--delete"]);
        assert_eq!(out.status.code(), Some(0), "{hosts:?}: {}", stdout(&out));
        for (name, want) in &values {
            let owners: Vec<&str> = ring
                .owners(name)
                .iter()
                .map(|&o| ring.destinations()[o].host.as_str())
                .collect();
            assert_eq!(owners.len(), 2);
            for h in all {
                assert_eq!(
                    path(h, name).exists(),
                    owners.contains(&h),
                    "{hosts:?}: {name} on {h} (owners {owners:?})"
                );
            }
            for owner in owners {
                assert_eq!(
                    minute_values(&path(owner, name), now),
                    *want,
                    "{name} on {owner}"
                );
            }
        }
        let out = fleet.bucky(&["inconsistent"]);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    }
}

/// A whole cluster moved to a new one: the old nodes are sources outside the new ring, a
/// rebalance without --delete copies every metric to its new owner, and the old cluster is left
/// exactly as it was.
#[test]
fn a_cluster_is_moved_to_a_new_one_and_the_old_one_is_left_alone() {
    let mut fleet = Fleet::start(|_| None);
    let dir = fleet.dir.path().to_path_buf();
    let old: Vec<_> = HOSTS
        .iter()
        .map(|h| snapshot(&dir.join("trees").join(h)))
        .collect();
    let ring = fleet.reconfigure(&["new-a", "new-b"], &HOSTS);
    let out = fleet.bucky(&["rebalance"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    for name in &fleet.names {
        let owner = &ring.destinations()[ring.owners(name)[0]].host;
        let at = |h: &str| {
            std::fs::read(metric::path_of(&dir.join("trees").join(h), name).unwrap()).ok()
        };
        let original = HOSTS.iter().find_map(|h| at(h)).unwrap();
        assert!(at(owner) == Some(original), "{name} on {owner}, as it was");
        let other = if owner == "new-a" { "new-b" } else { "new-a" };
        assert!(at(other).is_none(), "{name} only on its owner");
    }
    for (h, before) in HOSTS.iter().zip(&old) {
        assert!(
            snapshot(&dir.join("trees").join(h)) == *before,
            "{h} untouched"
        );
    }
    let status = stdout(&fleet.bucky(&["status"]));
    assert!(
        status.lines().filter(|l| l.contains(" out ")).count() == 3,
        "{status}"
    );
}
