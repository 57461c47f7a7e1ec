//! Backups that run and check themselves, across processes: the coordinator's schedule runs
//! backups without a command and backs a failing node off; verification finds a flipped byte,
//! `check` and `status` report it, and a restore passes the corrupt version over.

use bucky_shared::layout::Version;
use bucky_shared::metric;
use bucky_tests::{Server, write_metric};

mod fleet;
use fleet::{Fleet, stdout};

fn text(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

/// Seconds since the epoch.
fn unix_now() -> i64 {
    Version::now().0
}

/// A fleet after its first cluster backup, and its directory.
fn backed_up_fleet() -> (Fleet, std::path::PathBuf) {
    let fleet = Fleet::start(|_| None);
    let dir = fleet.dir.path().to_path_buf();
    let backup = fleet.bucky(&["backup"]);
    assert!(backup.status.success(), "{}", text(&backup));
    (fleet, dir)
}

/// The host whose tree holds `name`.
fn holder(dir: &std::path::Path, name: &str) -> String {
    fleet::HOSTS
        .iter()
        .find(|h| {
            metric::path_of(&dir.join("trees").join(h), name)
                .unwrap()
                .exists()
        })
        .expect("some node holds it")
        .to_string()
}

#[test]
fn a_flipped_byte_is_found_reported_and_passed_over_by_restore() {
    let (fleet, dir) = backed_up_fleet();

    // One metric gets a second version: changed on disk, backed up a second later.
    let name = fleet.names[0].clone();
    let host = holder(&dir, &name);
    let path = metric::path_of(&dir.join("trees").join(&host), &name).unwrap();
    let first = std::fs::read(&path).unwrap();
    let started = unix_now();
    while unix_now() == started {
        std::thread::yield_now();
    }
    write_metric(
        &dir.join("trees").join(&host),
        &name,
        1000.0,
        unix_now(),
        200,
    );
    let backup = fleet.bucky(&["backup"]);
    assert!(backup.status.success(), "{}", text(&backup));
    let stored = dir.join("buckets").join(&host).join(&name);
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir(&stored)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".wsp.gz"))
        .collect();
    versions.sort();
    assert_eq!(versions.len(), 2, "{versions:?}");

    let clean = fleet.bucky(&["verify", "--all"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert_eq!(
        stdout(&clean)
            .lines()
            .filter(|l| l.contains(" ok "))
            .count(),
        3,
        "{}",
        text(&clean)
    );

    let newest = &versions[1];
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(newest, bytes).unwrap();

    let found = fleet.bucky(&["verify", "--all", "--host", &host]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    assert!(
        stdout(&found).contains(&format!("corrupt: {name} ")),
        "{}",
        text(&found)
    );
    // A daily slice afterwards does not forget it: the part was not read again.
    let slice = fleet.bucky(&["verify", "--share", "1%", "--host", &host]);
    assert!(
        stdout(&slice).contains("1 corrupt known"),
        "{}",
        text(&slice)
    );

    let check = fleet.bucky(&["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        stdout(&check).contains(&format!("{host}: 1 corrupt versions")),
        "{}",
        text(&check)
    );
    let status = fleet.bucky(&["status"]);
    assert!(stdout(&status).contains("1 CORRUPT"), "{}", text(&status));
    assert!(
        stdout(&status).contains(&format!("{host}: corrupt version {name} ")),
        "{}",
        text(&status)
    );

    // The file is lost; the restore takes the version before the corrupt one, and says so.
    std::fs::remove_file(&path).unwrap();
    let restore = fleet.bucky(&["restore", "--host", &host, "--metrics", &name]);
    assert!(restore.status.success(), "{}", text(&restore));
    assert!(
        stdout(&restore).contains("found corrupt by verify"),
        "{}",
        text(&restore)
    );
    assert_eq!(std::fs::read(&path).unwrap(), first);

    // The next backup replaces the corrupt version with a sound upload of the file and deletes
    // it; verify and check are clean again.
    let corrupt_key = newest.clone();
    let backup = fleet.bucky(&["backup"]);
    assert!(backup.status.success(), "{}", text(&backup));
    assert!(!corrupt_key.exists(), "the corrupt version is deleted");
    assert!(
        !corrupt_key
            .with_extension("")
            .with_extension("sha1")
            .exists(),
        "with its .sha1"
    );
    let check = fleet.bucky(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let clean = fleet.bucky(&["verify", "--all", "--host", &host]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}

/// A file unchanged since its newest version was stored gets that version replaced too once
/// verify finds it corrupt: the backup uploads it again although its size and mtime match.
#[test]
fn an_unchanged_file_whose_stored_version_is_corrupt_is_uploaded_again() {
    let (fleet, dir) = backed_up_fleet();
    let name = fleet.names[1].clone();
    let host = holder(&dir, &name);
    let stored = dir.join("buckets").join(&host).join(&name);
    let object = std::fs::read_dir(&stored)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".wsp.gz"))
        .unwrap();
    std::fs::write(&object, b"not gzip at all").unwrap();
    let found = fleet.bucky(&["verify", "--all", "--host", &host]);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    let started = unix_now();
    while unix_now() == started {
        std::thread::yield_now();
    }
    let backup = fleet.bucky(&["backup"]);
    assert!(
        stdout(&backup).contains("1 corrupt versions replaced"),
        "{}",
        text(&backup)
    );
    assert!(!object.exists());
    let clean = fleet.bucky(&["verify", "--all", "--host", &host]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    let tree = metric::path_of(&dir.join("trees").join(&host), &name).unwrap();
    std::fs::remove_file(&tree).unwrap();
    let restore = fleet.bucky(&["restore", "--host", &host, "--metrics", &name]);
    assert!(restore.status.success(), "{}", text(&restore));
    assert!(tree.exists());
}

#[test]
fn the_schedule_backs_up_by_itself_and_backs_a_failing_node_off() {
    let mut fleet = Fleet::start(|_| None);
    fleet.restart_coordinator_with(
        "[schedule]\nevery = \"2s\"\nretry_after = \"1s\"\nretry_max = \"2s\"\nretries = 50\nverify_every = \"1h\"\n",
    );
    // No command: every node gets backed up, then its first verification slice.
    for host in fleet::HOSTS {
        let node = fleet.wait_for(host, 60, "a scheduled backup and verification", |n| {
            n["schedule"]["last_result"] == "ok"
                && n["last_backup"]["run"].is_string()
                && n["schedule"]["last_verify"].is_string()
        });
        assert!(node["verification"]["newest"].is_string(), "{node}");
        assert_eq!(node["verification"]["corrupt"], 0, "{node}");
    }
    let status = fleet.bucky(&["status"]);
    assert!(stdout(&status).contains("SCHEDULE"), "{}", text(&status));

    // node-b goes down: its runs fail and back off; the others go on.
    let b_addr = fleet.agents[1].addr.clone();
    fleet.agents[1].kill();
    let node = fleet.wait_for("node-b", 60, "two failed runs, backing off", |n| {
        n["schedule"]["failures"].as_u64() >= Some(2) && n["schedule"]["backing_off"] == true
    });
    assert_eq!(node["schedule"]["last_result"], "failed", "{node}");
    let check = fleet.bucky(&["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        stdout(&check).contains("node-b: ")
            && stdout(&check).contains("scheduled backups failed in a row"),
        "{}",
        text(&check)
    );
    let status = fleet.bucky(&["status"]);
    assert!(stdout(&status).contains("retry in"), "{}", text(&status));

    // Back on the same address: the next retry succeeds and the failures are cleared.
    fleet.agents[1] = Server::start_on(
        "bucky-agent",
        &fleet.dir.path().join("node-b.toml"),
        &b_addr,
    );
    fleet.wait_for("node-b", 60, "a good run after the outage", |n| {
        n["schedule"]["failures"] == 0 && n["schedule"]["last_result"] == "ok"
    });
    let a = fleet.node_status("node-a");
    assert_eq!(a["schedule"]["failures"], 0, "{a}");
}
