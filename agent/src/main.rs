//! `bucky-agent`: the per-node server.

use clap::Parser;

/// Serves one Graphite node's whisper tree to the bucky coordinator.
#[derive(Parser)]
#[command(version = bucky_agent::VERSION)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!(
        "the agent's gRPC service and standalone backup arrive with the backup-engine and cluster issues; use `bucky fill` and `bucky whisper` meanwhile"
    )
}
