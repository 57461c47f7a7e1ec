//! `bucky-coordinator`: the cluster server.

use clap::Parser;

/// Coordinates backups and restores across a Graphite cluster.
#[derive(Parser)]
#[command(version = bucky_coordinator::VERSION)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!(
        "the coordinator arrives with the cluster issue; use `bucky fill` and `bucky whisper` meanwhile"
    )
}
