//! Harness for bucky's end-to-end tests across processes: the agents, the coordinator and the
//! `bucky` command started as real processes on loopback, with whisper trees and `file://`
//! buckets in a temp dir. The binaries are those `cargo test --workspace` builds beside the
//! test executable.

pub mod deploy_files;

use std::io::BufRead;

use bucky_shared::metric;
use bucky_shared::whisper::{self, CreateOptions, Whisper};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A loopback port that is free now and that the kernel will not hand out as the source port of
/// an outgoing connection before a child process binds it: it lies below the ephemeral range.
/// A port probed with `bind(":0")` comes from that range, and any connection the test makes
/// meanwhile may take it.
///
/// # Panics
/// When no port below the ephemeral range can be bound.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Processes running tests at the same time start apart; each process walks its own ports.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = u32::from(low.saturating_sub(10_000).max(1));
    let base = std::process::id() % span;
    for _ in 0..span {
        let offset = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = 10_000 + ((base + offset) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 10000 and {low}");
}

/// Path of a workspace binary built for the current profile.
///
/// # Panics
/// When it was not built (run the tests with `cargo test --workspace`).
pub fn binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("the test binary has a path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test --workspace`",
        path.display()
    );
    path
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    /// `host:port` it printed after binding.
    pub addr: String,
}

impl Server {
    /// Starts `binary serve --listen 127.0.0.1:0 --config <config>` and waits for its address line.
    pub fn start(binary_name: &str, config: &Path) -> Server {
        Server::start_on(binary_name, config, "127.0.0.1:0")
    }

    /// [`Server::start`] on a given address (a restart on the same port).
    pub fn start_on(binary_name: &str, config: &Path, listen: &str) -> Server {
        Server::start_with_env(binary_name, config, listen, &[])
    }

    /// [`Server::start_on`] with `env` added to its environment (credentials, as a unit's
    /// `EnvironmentFile` gives them).
    pub fn start_with_env(
        binary_name: &str,
        config: &Path,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let mut child = Command::new(binary(binary_name))
            .args(["serve", "--listen", listen, "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("an address line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, addr }
    }

    /// Kills the process now (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `bucky ARGS...` without waiting for it.
pub fn spawn_bucky(args: &[&str]) -> Child {
    Command::new(binary("bucky"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bucky starts")
}

/// Runs `bucky ARGS...`.
pub fn bucky(args: &[&str]) -> Output {
    Command::new(binary("bucky"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("bucky runs")
}

/// Writes metric `name` under `root`: schema `60s:1d,15m:30d`, `points` minute points ending at
/// `now`, values counting up from `base`.
pub fn write_metric(root: &Path, name: &str, base: f64, now: i64, points: i64) {
    let path = metric::path_of(root, name).expect("a valid metric name");
    std::fs::create_dir_all(path.parent().expect("metric paths have a directory"))
        .expect("creating the directory");
    let schema = whisper::parse_retentions(&["60s:1d", "15m:30d"]).expect("a valid schema");
    let image = whisper::create_image(&schema, &CreateOptions::default()).expect("a valid schema");
    let mut file = Whisper::open(image, &path).expect("a fresh image");
    let series: Vec<(i64, f64)> = (0..points)
        .map(|i| (now - points * 60 + i * 60, base + i as f64))
        .collect();
    file.update_many(&series, now).expect("points fit");
    std::fs::write(&path, file.storage().bytes()).expect("writing the file");
}

/// Every file under `root` (none when it does not exist), relative path → bytes, sorted.
pub fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("reading a file");
                out.push((
                    p.strip_prefix(root).expect("below root").to_path_buf(),
                    bytes,
                ));
            }
        }
    }
    out.sort();
    out
}
