//! Harness for bucky's end-to-end tests across processes: the agents, the coordinator and the
//! `bucky` command started as real processes on loopback, with whisper trees and `file://`
//! buckets in a temp dir. The binaries are those `cargo test --workspace` builds beside the
//! test executable.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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
        let mut child = Command::new(binary(binary_name))
            .args(["serve", "--listen", listen, "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
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
