//! `bucky-agent` as cron runs it: a real process, a `file://` bucket, exit codes.

use std::process::Command;

use crate::support::{snapshot, write_tree};

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bucky-agent"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn standalone_backup_list_restore_and_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 3);
    let url = format!("file://{}", tmp.path().join("bucket").display());
    let root_s = root.to_str().unwrap();

    let out = agent(&[
        "backup",
        "--bucket",
        &url,
        "--whisper-root",
        root_s,
        "--node",
        "g1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["new"], 3);

    let out = agent(&["list", "--bucket", &url, "--metrics", "app.m00[01].*"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(listing.starts_with("app.m000.requests 20"), "{listing}");

    let target = tmp.path().join("r");
    let out = agent(&[
        "restore",
        "--bucket",
        &url,
        "--whisper-root",
        target.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 written"));
    assert_eq!(snapshot(&target), snapshot(&root));

    let out = agent(&[
        "backup",
        "--bucket",
        &url,
        "--whisper-root",
        root_s,
        "--node",
        "g2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("belongs to g1, not to g2"), "{stderr}");

    let out = agent(&[
        "restore",
        "--bucket",
        &url,
        "--whisper-root",
        root_s,
        "--date",
        "last tuesday",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'last tuesday'"));
}

/// `bucky-agent serve` on port 0 prints its address, answers with the token, refuses without.
#[tokio::test]
async fn serve_prints_its_address_and_checks_the_token() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 2);
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "serve-token\n").unwrap();
    let url = format!("file://{}", tmp.path().join("bucket").display());
    let config = tmp.path().join("agent.toml");
    let text = format!(
        "node = \"g1\"\nwhisper_root = \"{}\"\nbucket = \"{url}\"\ntoken_file = \"{}\"\n[ring]\ndestinations = [\"g1:2004\", \"g2:2004\"]\n",
        root.display(),
        token_file.display()
    );
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bucky-agent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("the address line")
        .to_string();

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anonymous = bucky_proto::v1::agent_client::AgentClient::new(channel.clone());
    let err = anonymous
        .info(bucky_proto::v1::InfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut request = tonic::Request::new(bucky_proto::v1::InfoRequest {});
    request
        .metadata_mut()
        .insert("authorization", "Bearer serve-token".parse().unwrap());
    let info = anonymous.info(request).await.unwrap().into_inner();
    assert_eq!((info.node.as_str(), info.metric_count), ("g1", 2));
    assert!(
        info.ring_fingerprint.starts_with("sha256:"),
        "{}",
        info.ring_fingerprint
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `check-config` says what `serve` would refuse, without serving, and `backup --quiet` prints
/// nothing when all went well (cron mails any output).
#[test]
fn check_config_and_a_quiet_backup() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 2);
    let token = tmp.path().join("token");
    std::fs::write(&token, "secret-token-of-the-test\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = tmp.path().join("agent.toml");
    let write_config = |whisper_root: &std::path::Path| {
        std::fs::write(
            &config,
            format!(
                "node = \"g1\"\nwhisper_root = \"{}\"\nbucket = \"file://{}/{{host}}\"\ntoken_file = \"{}\"\nlisten = \"127.0.0.1:0\"\n[ring]\ndestinations = [\"g1:2004\"]\n",
                whisper_root.display(),
                tmp.path().join("buckets").display(),
                token.display()
            ),
        )
        .unwrap();
    };
    write_config(&root);
    let out = agent(&["check-config", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(": ok: node g1") && stdout.contains("ring sha256:"),
        "{stdout}"
    );

    write_config(&tmp.path().join("not-mounted"));
    let out = agent(&["check-config", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not-mounted is not a directory"),
        "{stderr}"
    );

    let url = format!("file://{}", tmp.path().join("b2").display());
    let quiet = ["backup", "--quiet", "--bucket", &url, "--node", "g1"];
    let out = agent(&[&quiet[..], &["--whisper-root", root.to_str().unwrap()]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    // Without --quiet, one summary line.
    let out = agent(&[
        "backup",
        "--bucket",
        &url,
        "--node",
        "g1",
        "--whisper-root",
        root.to_str().unwrap(),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "{out:?}"
    );
}

/// A year of daily runs, each with its own injected clock and a changed file: retention by age
/// keeps exactly the versions and manifests its classes name; a dry run of a tighter policy lists
/// what it would delete and deletes nothing.
#[test]
fn a_year_of_daily_backups_keeps_exactly_what_the_age_classes_name() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    let bucket = tmp.path().join("bucket");
    let url = format!("file://{}", bucket.display());
    let first = bucky_shared::layout::parse_date("2026-01-01T02:00:00Z").unwrap();
    let policy = [
        "--keep",
        "7",
        "--keep-daily",
        "30",
        "--keep-weekly",
        "8",
        "--keep-monthly",
        "12",
        "--keep-manifests",
        "10",
    ];
    for day in 0..365 {
        crate::support::write_metric(&root, "app.daily", day as f64, 0);
        let now = bucky_shared::layout::Version(first.0 + day * 86_400).to_string();
        let mut args = vec![
            "backup",
            "--bucket",
            &url,
            "--whisper-root",
            root.to_str().unwrap(),
            "--node",
            "g1",
            "--now",
            &now,
        ];
        args.extend(policy);
        let out = agent(&args);
        assert!(
            out.status.success(),
            "day {day}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dates = |dir: &std::path::Path, suffix: &str| -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(suffix)
                    .map(|stamp| stamp[..10].to_string())
            })
            .collect();
        found.sort();
        found
    };
    let mut want: Vec<String> = (2..=31).map(|d| format!("2026-12-{d:02}")).collect();
    want.extend(["2026-11-15", "2026-11-22", "2026-11-29"].map(String::from));
    want.extend(
        [
            "01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30",
            "10-31", "11-30",
        ]
        .map(|md| format!("2026-{md}")),
    );
    want.sort();
    assert_eq!(dates(&bucket.join("app.daily"), ".wsp.gz"), want);
    assert_eq!(dates(&bucket.join("app.daily"), ".sha1"), want);
    assert_eq!(dates(&bucket.join(".bucky/manifests"), ".json.gz"), want);

    let out = agent(&[
        "backup",
        "--bucket",
        &url,
        "--whisper-root",
        root.to_str().unwrap(),
        "--node",
        "g1",
        "--dry-run",
        "--keep",
        "7",
    ]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    let expire = said
        .lines()
        .find(|l| l.starts_with("expire app.daily "))
        .unwrap_or_else(|| panic!("{said}"));
    assert_eq!(expire.split(' ').count() - 2, 44 - 7, "{expire}");
    assert!(expire.contains("2026-01-31T02:00:00+00:00"), "{expire}");
    assert_eq!(dates(&bucket.join("app.daily"), ".wsp.gz").len(), 44);
}

/// Objects no committed run lists (a late upload, a data object without its `.sha1`) are shown
/// apart from the versions, and said once on stderr.
#[test]
fn list_tells_versions_from_objects_no_manifest_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("w");
    write_tree(&root, 2);
    let bucket = tmp.path().join("bucket");
    let url = format!("file://{}", bucket.display());
    let out = agent(&[
        "backup",
        "--bucket",
        &url,
        "--whisper-root",
        root.to_str().unwrap(),
        "--node",
        "g1",
    ]);
    assert!(out.status.success());
    let metric = bucket.join("app.m000.requests");
    std::fs::write(metric.join("2030-01-01T00:00:00+00:00.wsp.gz"), b"late").unwrap();
    std::fs::write(
        metric.join("2030-01-01T00:00:00+00:00.sha1"),
        "0".repeat(40),
    )
    .unwrap();
    std::fs::write(metric.join("2030-01-02T00:00:00+00:00.wsp.gz"), b"half").unwrap();
    let out = agent(&["list", "--bucket", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("app.m000.requests "))
        .unwrap();
    assert!(
        line.contains("(not in the manifest: 2030-01-01T00:00:00+00:00)")
            && line.contains("(incomplete: 2030-01-02T00:00:00+00:00)"),
        "{line}"
    );
    assert_eq!(line.split(' ').nth(1).map(str::len), Some(25), "{line}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("1 complete versions are not in the newest manifest")
    );
    let out = agent(&["list", "--bucket", &url, "--json"]);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["versions"].as_array().unwrap().len(), 1);
    assert_eq!(first["unlisted"][0], "2030-01-01T00:00:00+00:00");
    assert_eq!(first["incomplete"][0], "2030-01-02T00:00:00+00:00");
}
