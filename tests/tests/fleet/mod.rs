//! A coordinator and three agents as real processes, for the multi-process tests.
#![allow(dead_code)]

use bucky_shared::ring::{Algorithm, Flavour, Ring, RingConfig};
use bucky_tests::{Server, bucky, write_metric};

/// The ring's hosts.
pub const HOSTS: [&str; 3] = ["node-a", "node-b", "node-c"];

/// A process's standard output.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A running cluster: agents, coordinator, and how to call bucky against it.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub agents: Vec<Server>,
    pub coordinator: Server,
    pub names: Vec<String>,
    /// Where the coordinator serves Prometheus metrics.
    pub metrics: std::net::SocketAddr,
    /// The test's carbon line receiver, which the coordinator sends its metrics to.
    pub carbon: std::net::TcpListener,
}

impl Fleet {
    /// Three agents and a coordinator; `agent_ring(host)` may give an agent another ring.
    pub fn start(agent_ring: impl Fn(&str) -> Option<String>) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let destinations: Vec<String> = HOSTS.iter().map(|h| format!("{h}:2004")).collect();
        let ring = Ring::new(&RingConfig::new(
            Algorithm::CarbonCh,
            Flavour::Carbon,
            1,
            destinations.clone(),
        ))
        .unwrap();
        let ring_toml = format!(
            "[ring]\ndestinations = [{}]\n",
            destinations
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let token = dir.path().join("token");
        std::fs::write(&token, "e2e-token\n").unwrap();
        let names: Vec<String> = (0..40)
            .map(|i| format!("apps.svc{i:02}.requests"))
            .collect();
        for (i, name) in names.iter().enumerate() {
            let owner = &ring.destinations()[ring.owners(name)[0]].host;
            write_metric(
                &dir.path().join("trees").join(owner),
                name,
                i as f64,
                now,
                200,
            );
        }
        let mut agents = Vec::new();
        for h in HOSTS {
            let root = dir.path().join("trees").join(h);
            std::fs::create_dir_all(&root).unwrap();
            let config = dir.path().join(format!("{h}.toml"));
            let text = format!(
                "node = \"{h}\"\nwhisper_root = \"{}\"\nbucket = \"file://{}/buckets/{h}\"\ntoken_file = \"{}\"\n{}",
                root.display(),
                dir.path().display(),
                token.display(),
                agent_ring(h).unwrap_or_else(|| ring_toml.clone())
            );
            std::fs::write(&config, text).unwrap();
            agents.push(Server::start("bucky-agent", &config));
        }
        let coordinator_config = dir.path().join("coordinator.toml");
        let agent_lines: String = HOSTS
            .iter()
            .zip(&agents)
            .map(|(h, a)| format!("{h} = \"http://{}\"\n", a.addr))
            .collect();
        let metrics: std::net::SocketAddr = ([127, 0, 0, 1], bucky_tests::free_port()).into();
        let carbon = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std::fs::write(
            &coordinator_config,
            format!(
                "token_file = \"{}\"\n{ring_toml}[buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{agent_lines}[metrics]\nlisten = \"{metrics}\"\ncarbon = \"{}\"\ninterval_secs = 1\n",
                token.display(),
                dir.path().display(),
                carbon.local_addr().unwrap()
            ),
        )
        .unwrap();
        let coordinator = Server::start("bucky-coordinator", &coordinator_config);
        Fleet {
            dir,
            agents,
            coordinator,
            names,
            metrics,
            carbon,
        }
    }

    /// Adds node-d: every agent restarted with the four-node ring (replication 1), the
    /// coordinator too. Returns the new ring.
    pub fn grow_to_four(&mut self) -> Ring {
        self.reconfigure(&["node-a", "node-b", "node-c", "node-d"], &[])
    }

    /// Restarts every agent (of `ring_hosts` and `sources`) with a ring of `ring_hosts`
    /// (replication 1), and the coordinator with `sources` as nodes outside the ring. Returns
    /// the new ring.
    pub fn reconfigure(&mut self, ring_hosts: &[&str], sources: &[&str]) -> Ring {
        self.reconfigure_replicated(ring_hosts, sources, 1)
    }

    /// [`Fleet::reconfigure`] with `replication` copies of each metric.
    pub fn reconfigure_replicated(
        &mut self,
        ring_hosts: &[&str],
        sources: &[&str],
        replication: usize,
    ) -> Ring {
        let destinations: Vec<String> = ring_hosts.iter().map(|h| format!("{h}:2004")).collect();
        let ring = Ring::new(&RingConfig::new(
            Algorithm::CarbonCh,
            Flavour::Carbon,
            replication,
            destinations.clone(),
        ))
        .unwrap();
        let ring_toml = format!(
            "[ring]\nreplication = {replication}\ndestinations = [{}]\n",
            destinations
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let token = self.dir.path().join("token");
        let tag = format!("{}r{replication}", ring_hosts.len());
        let mut agents = Vec::new();
        for h in ring_hosts.iter().chain(sources) {
            let root = self.dir.path().join("trees").join(h);
            std::fs::create_dir_all(&root).unwrap();
            let config = self.dir.path().join(format!("{h}-{tag}.toml"));
            let text = format!(
                "node = \"{h}\"\nwhisper_root = \"{}\"\nbucket = \"file://{}/buckets/{h}\"\ntoken_file = \"{}\"\n{ring_toml}",
                root.display(),
                self.dir.path().display(),
                token.display()
            );
            std::fs::write(&config, text).unwrap();
            agents.push(Server::start("bucky-agent", &config));
        }
        let line = |(h, a): (&&str, &Server)| format!("{h} = \"http://{}\"\n", a.addr);
        let lines: String = ring_hosts.iter().zip(&agents).map(line).collect();
        let source_lines: String = sources
            .iter()
            .zip(&agents[ring_hosts.len()..])
            .map(line)
            .collect();
        let config = self.dir.path().join(format!("coordinator-{tag}.toml"));
        std::fs::write(
            &config,
            format!(
                "token_file = \"{}\"\n{ring_toml}[buckets]\ntemplate = \"file://{}/buckets/{{host}}\"\n[agents]\n{lines}[sources]\n{source_lines}",
                token.display(),
                self.dir.path().display()
            ),
        )
        .unwrap();
        self.coordinator = Server::start("bucky-coordinator", &config);
        self.agents = agents;
        ring
    }

    /// Restarts the coordinator with `extra` TOML after its start-up config.
    pub fn restart_coordinator_with(&mut self, extra: &str) {
        let base = std::fs::read_to_string(self.dir.path().join("coordinator.toml")).unwrap();
        let config = self.dir.path().join("coordinator-extra.toml");
        std::fs::write(&config, format!("{base}{extra}")).unwrap();
        self.coordinator.kill();
        self.coordinator = Server::start("bucky-coordinator", &config);
    }

    /// `bucky status --json`'s entry for `host`.
    pub fn node_status(&self, host: &str) -> serde_json::Value {
        let out = self.bucky(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["host"] == host)
            .cloned()
            .unwrap_or_else(|| panic!("no {host} in {status}"))
    }

    /// Polls `bucky status` until `host`'s entry satisfies `ok`, for at most `secs` seconds.
    pub fn wait_for(
        &self,
        host: &str,
        secs: u64,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let node = self.node_status(host);
            if ok(&node) {
                return node;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{host}: {what} within {secs} s; status: {node}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Runs `bucky CMD... --coordinator ... --token-file ...`.
    pub fn bucky(&self, cmd: &[&str]) -> std::process::Output {
        let url = format!("http://{}", self.coordinator.addr);
        let token = self.dir.path().join("token");
        let mut args: Vec<&str> = cmd.to_vec();
        args.extend([
            "--coordinator",
            url.as_str(),
            "--token-file",
            token.to_str().unwrap(),
        ]);
        bucky(&args)
    }
}
