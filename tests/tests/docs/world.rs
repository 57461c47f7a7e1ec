//! A three-node Graphite cluster in a directory, in which the documentation's commands run as
//! written. Every absolute path an operator types (`/etc/...`, `/var/lib/graphite/whisper`,
//! `/srv/...`, `/usr/local/bin/`) and every well-known address (`0.0.0.0:7431`,
//! `http://127.0.0.1:7430`, `graphite-02:7431`) is mapped into the world in one pass, per node;
//! `deploy/...` names that node's mapped copy of the repository's deploy directory, so the
//! example configs and units it installs are the repository's, with the world's paths.
//!
//! What a shell cannot do here, the world does itself, and says so:
//! - `systemctl`: units are read from the node's `/etc/systemd/system`, `ExecStartPre` and
//!   oneshot `ExecStart` run to completion, services start in the background and are waited
//!   for (`listening on ...`), timers must name an installed service.
//! - `chown`/`chgrp`: the paths must exist; ownership is not changed (the world has no graphite
//!   account). All nodes share one kernel host name, so each node's processes get `BUCKY_NODE`.
//! - `cargo`: a shim; `cargo test --workspace` built the binaries the commands use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bucky_shared::layout::Version;
use bucky_shared::ring::{Algorithm, Flavour, Ring, RingConfig};
use bucky_tests::deploy_files::{Cron, Unit};

/// The nodes, as the example configs name them.
pub const NODES: [&str; 3] = ["graphite-01", "graphite-02", "graphite-03"];
/// Longest any one documented command may take (the demo in a debug build is the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a service may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    binaries: PathBuf,
    ports: HashMap<String, u16>,
    /// What [`World::map`] replaces.
    pattern: regex::Regex,
    /// Variables `export`ed by earlier commands.
    env: Vec<(String, String)>,
    services: Vec<(String, Child)>,
    /// Metrics written, by name, with their owners.
    pub metrics: Vec<(String, Vec<String>)>,
}

impl World {
    /// The cluster's hosts with whisper trees of data, the files an operator already has
    /// (relay config, carbon.conf, an old whisper-backup bucket), and nothing of bucky's.
    pub fn new() -> World {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ is in the repository")
            .to_path_buf();
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path().to_path_buf();
        let binaries = bucky_tests::binary("bucky")
            .parent()
            .expect("binaries are in a directory")
            .to_path_buf();
        let mut ports = HashMap::new();
        for name in NODES.iter().chain(&["coordinator"]) {
            ports.insert(name.to_string(), bucky_tests::free_port());
        }
        let mut world = World {
            _dir: dir,
            root,
            repo,
            binaries,
            ports,
            pattern: regex::Regex::new(concat!(
                r"(?P<pre>^|[^A-Za-z0-9_.-])(?P<path>/etc/bucky/token|/etc/|/var/lib/graphite/whisper|",
                r"/srv/|/tmp/|/usr/local/bin/|/usr/local/share/|/run/lock/|deploy/)",
                r"|(?P<release>(?:\$PWD/)?target/release/)",
                r"|(?P<addr>0\.0\.0\.0:743[01]|127\.0\.0\.1:7430|bucky\.example:7430|graphite-0[1-3]:7431)",
                r"|(?P<date>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00)",
            ))
            .expect("a valid pattern"),
            env: Vec::new(),
            services: Vec::new(),
            metrics: Vec::new(),
        };
        world.build();
        world
    }

    fn build(&mut self) {
        for d in ["bin", "tmp", "srv/bucky", "run/lock", "shims"] {
            std::fs::create_dir_all(self.root.join(d)).unwrap();
        }
        let shim = self.root.join("shims/cargo");
        std::fs::write(&shim, CARGO_SHIM).unwrap();
        make_executable(&shim);
        let now = now().0;
        let destinations: Vec<String> = NODES.iter().map(|n| format!("{n}:2004:a")).collect();
        let ring = Ring::new(&RingConfig::new(
            Algorithm::CarbonCh,
            Flavour::Carbon,
            2,
            destinations,
        ))
        .unwrap();
        for node in NODES {
            let etc = self.root.join(node).join("etc");
            for d in ["systemd/system", "cron.d", "carbon"] {
                std::fs::create_dir_all(etc.join(d)).unwrap();
            }
            std::fs::create_dir_all(self.root.join(node).join("whisper")).unwrap();
            std::fs::write(etc.join("carbon-c-relay.conf"), RELAY_CONF).unwrap();
            std::fs::write(etc.join("carbon/carbon.conf"), CARBON_CONF).unwrap();
            self.copy_deploy(node);
        }
        let mut names = Vec::new();
        for web in 1..=8 {
            for m in ["cpu.user", "cpu.system", "cpu.idle", "disk.sda.reads"] {
                names.push(format!("servers.web{web:02}.{m}"));
            }
        }
        for (i, name) in names.into_iter().enumerate() {
            let owners: Vec<String> = ring
                .owners(&name)
                .iter()
                .map(|&o| ring.destinations()[o].host.clone())
                .collect();
            for owner in &owners {
                bucky_tests::write_metric(
                    &self.root.join(owner).join("whisper"),
                    &name,
                    i as f64,
                    now,
                    600,
                );
            }
            self.metrics.push((name, owners));
        }
        self.old_whisper_backup_bucket("graphite-01", now);
    }

    /// What whisper-backup left for `node`: a version of each of its metrics, no manifest.
    fn old_whisper_backup_bucket(&self, node: &str, now: i64) {
        use bucky_agent::codec::{gzip, sha1_hex};
        let bucket = self.root.join("srv/whisper-backup").join(node);
        let version = Version(now - 7 * 86_400);
        for (name, owners) in &self.metrics {
            if !owners.iter().any(|o| o == node) {
                continue;
            }
            let path =
                bucky_shared::metric::path_of(&self.root.join(node).join("whisper"), name).unwrap();
            let raw = std::fs::read(path).unwrap();
            let dir = bucket.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{version}.wsp.gz")), gzip(&raw, 6)).unwrap();
            std::fs::write(dir.join(format!("{version}.sha1")), sha1_hex(&raw)).unwrap();
        }
    }

    /// `<node>/deploy`: the repository's deploy directory with the node's paths.
    fn copy_deploy(&self, node: &str) {
        for sub in ["config", "systemd", "cron"] {
            let from = self.repo.join("deploy").join(sub);
            let to = self.root.join(node).join("deploy").join(sub);
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(&from).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(to.join(path.file_name().unwrap()), self.map(&text, node)).unwrap();
            }
        }
    }

    /// `text` with the operator's paths and addresses mapped into the world for `node`.
    pub fn map(&self, text: &str, node: &str) -> String {
        let root = self.root.display().to_string();
        self.pattern
            .replace_all(text, |c: &regex::Captures| {
                if let Some(path) = c.name("path") {
                    let mapped = match path.as_str() {
                        "/etc/bucky/token" => format!("{root}/token"),
                        "/etc/" => format!("{root}/{node}/etc/"),
                        "/var/lib/graphite/whisper" => format!("{root}/{node}/whisper"),
                        "deploy/" => format!("{root}/{node}/deploy/"),
                        "/usr/local/bin/" => format!("{root}/bin/"),
                        other => format!("{root}{other}"),
                    };
                    format!("{}{mapped}", &c["pre"])
                } else if c.name("release").is_some() {
                    format!("{}/", self.binaries.display())
                } else if let Some(addr) = c.name("addr") {
                    let addr = addr.as_str();
                    let owner = match addr {
                        "0.0.0.0:7431" => node,
                        a if a.starts_with("graphite-") => &a[..11],
                        _ => "coordinator",
                    };
                    format!("127.0.0.1:{}", self.ports[owner])
                } else {
                    // A date in an example means "a moment after the backups so far".
                    now().to_string()
                }
            })
            .into_owned()
    }

    /// Runs one documented block on `node`.
    pub fn run_block(&mut self, origin: &str, lines: &[String], node: &str) {
        let mut shell: Vec<String> = Vec::new();
        for line in lines {
            let mapped = self.map(line, node);
            let program = mapped.split_whitespace().next().unwrap_or_default();
            match program {
                // Users and groups are the machine's own business: never made by a test.
                "useradd" | "groupadd" => {}
                "systemctl" | "chown" | "chgrp" => {
                    self.run_shell(origin, &shell, node);
                    shell.clear();
                    let args: Vec<&str> = mapped.split_whitespace().skip(1).collect();
                    if program == "systemctl" {
                        self.systemctl(origin, &args, node);
                    } else {
                        for path in args.iter().skip(1) {
                            assert!(
                                Path::new(path).exists(),
                                "{origin}: {program}: {path} does not exist"
                            );
                        }
                    }
                }
                _ => {
                    if let Some(vars) = mapped.trim().strip_prefix("export ") {
                        for pair in vars.split_whitespace() {
                            let (k, v) = pair.split_once('=').expect("export K=V");
                            self.env.retain(|(name, _)| name != k);
                            self.env.push((k.to_string(), v.to_string()));
                        }
                    }
                    shell.push(mapped);
                }
            }
        }
        self.run_shell(origin, &shell, node);
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>, node: &str) -> Command {
        let path = format!(
            "{}:{}:{}:{}",
            self.root.join("shims").display(),
            self.root.join("bin").display(),
            self.binaries.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(program);
        command
            .current_dir(&self.repo)
            .env("PATH", path)
            .env("TMPDIR", self.root.join("tmp"))
            .env("BUCKY_NODE", node)
            .env("BUCKY_REPO", &self.repo)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn run_shell(&self, origin: &str, lines: &[String], node: &str) {
        if lines.is_empty() {
            return;
        }
        let script = lines.join("\n");
        let mut command = self.command("bash", node);
        command.args(["-eo", "pipefail", "-c", &script]);
        run_to_end(command, origin, &script);
    }

    fn systemctl(&mut self, origin: &str, args: &[&str], node: &str) {
        let (verb, rest) = args.split_first().expect("systemctl VERB");
        let now = rest.contains(&"--now");
        let units: Vec<&str> = rest
            .iter()
            .copied()
            .filter(|a| !a.starts_with("--"))
            .collect();
        match *verb {
            "daemon-reload" => return,
            "enable" | "start" | "restart" => {}
            other => panic!("{origin}: systemctl {other} is not something the docs test knows"),
        }
        for unit_name in units {
            let path = self
                .root
                .join(node)
                .join("etc/systemd/system")
                .join(unit_name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{origin}: {unit_name} is not installed on {node}"));
            let unit = Unit::parse(&text);
            if unit_name.ends_with(".timer") {
                assert!(unit.has_section("Timer"), "{origin}: {unit_name}");
                let service = unit_name.replace(".timer", ".service");
                assert!(
                    path.with_file_name(&service).exists(),
                    "{origin}: {unit_name} starts {service}, which is not installed"
                );
                continue;
            }
            if *verb == "enable" && !now {
                continue;
            }
            if *verb == "restart" {
                self.stop(unit_name, node);
            }
            let env = unit.environment();
            for pre in unit.commands("ExecStartPre") {
                let mut command = self.command(&pre[0], node);
                command.args(&pre[1..]).envs(env.iter().cloned());
                run_to_end(command, origin, &pre.join(" "));
            }
            let start = unit.commands("ExecStart").pop().expect("ExecStart");
            let mut command = self.command(&start[0], node);
            command.args(&start[1..]).envs(env.iter().cloned());
            if unit.get("Type") == Some("oneshot") {
                run_to_end(command, origin, &start.join(" "));
            } else {
                let child = start_service(command, origin, unit_name);
                self.services.push((format!("{node}/{unit_name}"), child));
            }
        }
    }

    fn stop(&mut self, unit: &str, node: &str) {
        let key = format!("{node}/{unit}");
        for (_, child) in self.services.iter_mut().filter(|(k, _)| *k == key) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.services.retain(|(k, _)| *k != key);
    }

    /// The cron.d entry installed on `node`, run as cron would run it.
    pub fn run_cron(&self, file: &str, node: &str) {
        let path = self.root.join(node).join("etc/cron.d").join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{file} is not installed in /etc/cron.d on {node}"));
        let cron = Cron::parse(&text);
        assert_eq!(cron.jobs.len(), 1, "one job in {file}: {:?}", cron.jobs);
        let job = &cron.jobs[0];
        assert_eq!(job.user, "graphite", "{file} runs as graphite");
        let mut command = self.command(cron.shell(), node);
        command
            .args(["-c", &job.command])
            .envs(cron.env.iter().cloned());
        run_to_end(command, &format!("cron.d/{file}"), &job.command);
    }

    /// A file or directory in the world, by the path an operator would use on `node`.
    pub fn path(&self, operator_path: &str, node: &str) -> PathBuf {
        PathBuf::from(self.map(operator_path, node))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for (_, child) in &mut self.services {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `[Service]` settings the world acts on.
trait ServiceSettings {
    fn service(&self, key: &str) -> Vec<&str>;

    /// The last `key=` of `[Service]`, as systemd takes it.
    fn get(&self, key: &str) -> Option<&str> {
        self.service(key).pop()
    }

    /// Every `key=` command line, split into words (the units quote nothing).
    fn commands(&self, key: &str) -> Vec<Vec<String>> {
        self.service(key)
            .iter()
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    /// `Environment=` pairs, then those of each `EnvironmentFile=` (`-` prefix: optional).
    fn environment(&self) -> Vec<(String, String)> {
        let pairs = |text: &str| -> Vec<(String, String)> {
            text.split_whitespace()
                .filter_map(|p| p.split_once('='))
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let mut env: Vec<(String, String)> = self
            .service("Environment")
            .into_iter()
            .flat_map(pairs)
            .collect();
        for file in self.service("EnvironmentFile") {
            let (optional, file) = file.strip_prefix('-').map_or((false, file), |f| (true, f));
            match std::fs::read_to_string(file) {
                Ok(text) => env.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.starts_with('#'))
                        .filter_map(|l| l.split_once('='))
                        .map(|(a, b)| (a.to_string(), b.to_string())),
                ),
                Err(e) => assert!(optional, "EnvironmentFile {file}: {e}"),
            }
        }
        env
    }
}

impl ServiceSettings for Unit {
    fn service(&self, key: &str) -> Vec<&str> {
        self.values("Service", key)
    }
}

/// Runs `command` to its end within [`COMMAND_TIMEOUT`]; panics with its output on failure.
fn run_to_end(mut command: Command, origin: &str, shown: &str) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{origin}: {shown}: {e}"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let (tx, rx) = std::sync::mpsc::channel();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let (mut o, mut e) = (String::new(), String::new());
        let t = std::thread::spawn(move || {
            let _ = err.read_to_string(&mut e);
            e
        });
        let _ = out.read_to_string(&mut o);
        let e = t.join().unwrap_or_default();
        let _ = tx.send(());
        (o, e)
    });
    // Output closes when the process (and anything it started) is done, or on the deadline.
    if rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_err()
    {
        let _ = child.kill();
        panic!("{origin}: `{shown}` did not finish in {COMMAND_TIMEOUT:?}");
    }
    let status = child.wait().expect("waiting for the command");
    let (stdout, stderr) = reader.join().expect("the reader");
    assert!(
        status.success(),
        "{origin}: `{shown}` failed ({status})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

/// Starts a service and waits for the address line it prints once it listens.
fn start_service(mut command: Command, origin: &str, unit: &str) -> Child {
    use std::io::BufRead;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{origin}: {unit}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the service never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(START_TIMEOUT)
        .unwrap_or_else(|_| panic!("{origin}: {unit} did not start in {START_TIMEOUT:?}"));
    assert!(
        line.starts_with("listening on "),
        "{origin}: {unit} printed {line:?} instead of its address"
    );
    child
}

fn now() -> Version {
    Version(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs() as i64,
    )
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const CARGO_SHIM: &str = r#"#!/bin/bash
# cargo, as the docs test sees it: `cargo test --workspace` has built the binaries already.
set -eu
case "$1" in
  build) exit 0 ;;
  test) [ "${2:-}" = "--workspace" ] && exit 0 ;;
  run)
    args=("$@"); i=0
    while [ "${args[$i]}" != "--" ]; do i=$((i+1)); done
    [[ " ${args[*]:0:$i} " == *" -p bucky-cli "* ]] || { echo "cargo shim: run of what? $*" >&2; exit 2; }
    exec bucky "${args[@]:$((i+1))}" ;;
  bench)
    # cargo bench -p PACKAGE --bench NAME: that bench target exists (CI compiles it with clippy).
    dir="$BUCKY_REPO/${3#bucky-}"
    [ "$2" = "-p" ] && [ "$4" = "--bench" ] && [ -f "$dir/benches/$5.rs" ] \
      && grep -q "name = \"$5\"" "$dir/Cargo.toml" && exit 0 ;;
esac
echo "cargo shim: not a command the docs use: cargo $*" >&2
exit 2
"#;

const RELAY_CONF: &str = "cluster graphite\n    carbon_ch replication 2\n        graphite-01:2004=a\n        graphite-02:2004=a\n        graphite-03:2004=a\n    ;\nmatch * send to graphite;\n";

const CARBON_CONF: &str = "[relay]\nLINE_RECEIVER_PORT = 2003\nRELAY_METHOD = consistent-hashing\nREPLICATION_FACTOR = 2\nDIVERSE_REPLICAS = True\nDESTINATIONS = graphite-01:2004:a, graphite-02:2004:a, graphite-03:2004:a\n";
