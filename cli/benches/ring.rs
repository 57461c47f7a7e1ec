//! Ring benchmark: placing 1,000,000 generated metric names on a 12-node ring with replication
//! 2, for every algorithm and flavour, on one core; and, in the same run, carbon 1.1.10's
//! `ConsistentHashingRouter` (virtualenv from PyPI) on a 100,000-name sample, whose owners must
//! equal bucky's. Two bucky figures are set against carbon's: the library in-process (what the
//! coordinator and agents call), and the `bucky locate` command fed the names on stdin (what an
//! operator runs, process start and output included).
//!
//! `cargo bench -p bucky-cli --bench ring [-- --names 1000000 --python-names 100000 --no-python]`

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use bucky_shared::ring::{Algorithm, Flavour, Ring, RingConfig, Router};
use bucky_shared::synth::Rng;
use support::{ensure_venv, run_python};

mod support;

fn main() -> anyhow::Result<()> {
    let (mut names_count, mut python_count, mut python) = (1_000_000usize, 100_000usize, true);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--names" => names_count = args.next().context("--names N")?.parse()?,
            "--python-names" => python_count = args.next().context("--python-names N")?.parse()?,
            "--no-python" => python = false,
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let names = generate_names(names_count);
    let carbon_destinations: Vec<String> = (1..=12).map(|i| format!("carbon{i:02}:2004")).collect();
    let relay_members: Vec<String> = (1..=12).map(|i| format!("carbon{i:02}:2003")).collect();
    let cases = [
        (
            "carbon carbon_ch",
            Algorithm::CarbonCh,
            Flavour::Carbon,
            Router::ConsistentHashing,
        ),
        (
            "carbon fnv1a_ch",
            Algorithm::Fnv1aCh,
            Flavour::Carbon,
            Router::ConsistentHashing,
        ),
        (
            "carbon mmh3_ch",
            Algorithm::Mmh3Ch,
            Flavour::Carbon,
            Router::ConsistentHashing,
        ),
        (
            "carbon fast-hashing carbon_ch",
            Algorithm::CarbonCh,
            Flavour::Carbon,
            Router::FastHashing,
        ),
        (
            "relay carbon_ch",
            Algorithm::CarbonCh,
            Flavour::Relay,
            Router::ConsistentHashing,
        ),
        (
            "relay fnv1a_ch",
            Algorithm::Fnv1aCh,
            Flavour::Relay,
            Router::ConsistentHashing,
        ),
        (
            "relay jump_fnv1a_ch",
            Algorithm::JumpFnv1aCh,
            Flavour::Relay,
            Router::ConsistentHashing,
        ),
    ];
    println!(
        "ring benchmark: {} names, 12 destinations, replication 2, one thread, best of {RUNS} runs",
        names.len()
    );
    let (mut carbon_ch_single, mut carbon_ch_batched) = (0.0, 0.0);
    for (label, algorithm, flavour, router) in cases {
        let destinations = if flavour == Flavour::Carbon {
            &carbon_destinations
        } else {
            &relay_members
        };
        let mut config = RingConfig::new(algorithm, flavour, 2, destinations.iter().cloned());
        config.router = router;
        let ring = Ring::new(&config)?;
        let mut owners = Vec::with_capacity(2);
        let mut checksum = 0usize;
        let single = best_rate(names.len(), || {
            checksum = 0;
            for name in &names {
                ring.owners_into(name, &mut owners);
                checksum = checksum.wrapping_add(owners[0] * 3 + owners[1]);
            }
        });
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut batch_checksum = 0usize;
        let batched = best_rate(names.len(), || {
            batch_checksum = 0;
            ring.owners_many(&refs, |_, owners| {
                batch_checksum = batch_checksum.wrapping_add(owners[0] * 3 + owners[1]);
            });
        });
        if batch_checksum != checksum {
            bail!("{label}: batched placement differs from single lookups");
        }
        if label == "carbon carbon_ch" {
            (carbon_ch_single, carbon_ch_batched) = (single, batched);
        }
        println!(
            "  bucky {label:<30} {:>6.2} M names/s one by one, {:>6.2} M names/s batched",
            single / 1e6,
            batched / 1e6
        );
    }
    let command_rate = time_locate_command(&names, &carbon_destinations)?;
    println!(
        "  bucky locate command, carbon carbon_ch      {:>6.2} M names/s (names on stdin from a file, owners to /dev/null, process start included)",
        command_rate / 1e6
    );
    if python {
        let sample = &names[..python_count.min(names.len())];
        let (rate, owners) = time_carbon(sample, &carbon_destinations)?;
        println!(
            "  carbon 1.1.10 ConsistentHashingRouter carbon_ch {:>8.3} M names/s  (baseline, {} names, best of 3)",
            rate / 1e6,
            sample.len()
        );
        println!("  names/s of bucky carbon_ch / carbon 1.1.10's router (in Python, in-process):");
        println!(
            "    bucky library, one by one: {:.0}x",
            carbon_ch_single / rate
        );
        println!(
            "    bucky library, batched:    {:.0}x",
            carbon_ch_batched / rate
        );
        println!("    bucky locate command:      {:.0}x", command_rate / rate);
        let mut config = RingConfig::new(
            Algorithm::CarbonCh,
            Flavour::Carbon,
            2,
            carbon_destinations.iter().cloned(),
        );
        config.router = Router::ConsistentHashing;
        let ring = Ring::new(&config)?;
        let agree = sample
            .iter()
            .zip(&owners)
            .filter(|(name, expected)| {
                let got: Vec<&str> = ring
                    .owners(name)
                    .iter()
                    .map(|&i| ring.destinations()[i].host.as_str())
                    .collect();
                got == expected.iter().map(String::as_str).collect::<Vec<_>>()
            })
            .count();
        println!("  owners equal to carbon's: {agree}/{}", sample.len());
        if agree != sample.len() {
            bail!(
                "bucky disagrees with carbon on {} names",
                sample.len() - agree
            );
        }
    }
    Ok(())
}

/// `bucky locate` (the release binary beside this bench) over `names` on stdin: names/s of
/// the best of 3 runs.
fn time_locate_command(names: &[String], destinations: &[String]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let names_path = dir.path().join("names.txt");
    std::fs::write(&names_path, names.join("\n"))?;
    let destinations = destinations.join(",");
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_bucky"))
            .args(["locate", "--hash", "carbon_ch", "--replication", "2"])
            .args(["--destinations", &destinations])
            .stdin(File::open(&names_path)?)
            .stdout(Stdio::null())
            .status()?;
        best = best.min(start.elapsed().as_secs_f64());
        if !status.success() {
            bail!("bucky locate: {status}");
        }
    }
    Ok(names.len() as f64 / best)
}

/// carbon's router over `names` in one interpreter: names/s and each name's owner servers.
fn time_carbon(
    names: &[String],
    destinations: &[String],
) -> anyhow::Result<(f64, Vec<Vec<String>>)> {
    let venv = ensure_venv()?;
    let dir = tempfile::tempdir()?;
    let names_path = dir.path().join("names.txt");
    std::fs::write(&names_path, names.join("\n"))?;
    let destinations = destinations.join(",");
    let owners_path = dir.path().join("owners.txt");
    let stdout = run_python(
        &venv,
        dir.path(),
        PYTHON_BENCH,
        &[
            names_path.as_os_str(),
            destinations.as_ref(),
            owners_path.as_os_str(),
        ],
    )?;
    let rate: f64 = stdout.trim().parse()?;
    let owners = read_owners(&dir.path().join("owners.txt"))?;
    Ok((rate, owners))
}

/// Names per second of the fastest of [`RUNS`] runs: this machine is shared, and the best run
/// is the one least disturbed.
fn best_rate(names: usize, mut run: impl FnMut()) -> f64 {
    let best = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    names as f64 / best
}

/// Repetitions per measurement (the Python baseline takes the best of 3).
const RUNS: usize = 5;

fn read_owners(path: &Path) -> anyhow::Result<Vec<Vec<String>>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(|l| l.split(' ').map(String::from).collect())
        .collect())
}

const PYTHON_BENCH: &str = r#"
import sys, time
from carbon.conf import Settings
from carbon.routers import ConsistentHashingRouter
from carbon import util
names = open(sys.argv[1]).read().split("\n")
s = Settings()
s['REPLICATION_FACTOR'] = 2
s['DIVERSE_REPLICAS'] = True
s['ROUTER_HASH_TYPE'] = 'carbon_ch'
router = ConsistentHashingRouter(s)
for d in util.parseDestinations(sys.argv[2].split(",")):
    router.addDestination(d)
elapsed = float("inf")
for _ in range(3):  # best of 3, like bucky's best of 5
    start = time.perf_counter()
    owners = [list(router.getDestinations(n)) for n in names]
    elapsed = min(elapsed, time.perf_counter() - start)
with open(sys.argv[3], "w") as f:
    for o in owners:
        f.write(" ".join(server for server, port, instance in o) + "\n")
print(len(names) / elapsed)
"#;

/// Graphite-like names: a few prefixes, host ids, subsystems and leaf names.
fn generate_names(count: usize) -> Vec<String> {
    const ROOTS: [&str; 5] = [
        "servers",
        "stats.timers",
        "stats.counters",
        "apps",
        "collectd",
    ];
    const SUBSYSTEMS: [&str; 6] = ["cpu", "memory", "disk", "network", "api.requests", "queue"];
    const LEAVES: [&str; 8] = [
        "user",
        "system",
        "p99",
        "count",
        "rx_bytes",
        "free",
        "latency_ms",
        "errors",
    ];
    let mut rng = Rng::new(0x5eed_1234_abcd_ef01);
    (0..count)
        .map(|_| {
            format!(
                "{}.host-{:04}.{}.{}.{}",
                ROOTS[rng.below(5) as usize],
                rng.below(5000),
                SUBSYSTEMS[rng.below(6) as usize],
                rng.below(64),
                LEAVES[rng.below(8) as usize]
            )
        })
        .collect()
}
