//! `bucky ring show`: the ring's destinations, fingerprint and balance.

use std::io::Write;

use bucky_shared::ring::Flavour;
use clap::{Args, Subcommand};
use serde_json::json;

use super::ring_args::RingArgs;

/// `bucky ring` subcommands.
#[derive(Debug, Subcommand)]
pub enum RingCommand {
    /// Show the destinations, the fingerprint and each destination's share of the hash space.
    Show(ShowArgs),
}

/// `bucky ring show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The ring.
    #[command(flatten)]
    pub ring: RingArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `bucky ring ...`.
///
/// # Errors
/// An invalid ring.
pub fn run(command: RingCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let RingCommand::Show(args) = command;
    let ring = args.ring.ring()?;
    let config = ring.config();
    let shares = ring.balance();
    if args.json {
        let destinations: Vec<_> = ring
            .destinations()
            .iter()
            .zip(&shares)
            .map(|(d, s)| json!({"destination": d.text, "host": d.host, "port": d.port, "instance": d.instance, "share": s}))
            .collect();
        let body = json!({
            "flavour": config.flavour,
            "hash": config.algorithm,
            "router": (config.flavour == Flavour::Carbon).then_some(config.router),
            "replication": config.replication,
            "diverse": (config.flavour == Flavour::Carbon).then_some(config.diverse),
            "fingerprint": ring.fingerprint().to_string(),
            "fingerprint_sha256": ring.fingerprint().to_hex(),
            "destinations": destinations,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        return Ok(());
    }
    write!(
        out,
        "flavour: {}  hash: {}  replication: {}",
        config.flavour, config.algorithm, config.replication
    )?;
    if config.flavour == Flavour::Carbon {
        write!(
            out,
            "  router: {}  diverse: {}",
            config.router, config.diverse
        )?;
    }
    writeln!(out, "\nfingerprint: {}\n", ring.fingerprint())?;
    let width = ring
        .destinations()
        .iter()
        .map(|d| d.text.len())
        .max()
        .unwrap_or(0)
        .max(11);
    writeln!(out, "{:<width$}  SHARE", "DESTINATION")?;
    for (d, s) in ring.destinations().iter().zip(&shares) {
        writeln!(out, "{:<width$}  {:>6.2}%", d.text, s * 100.0)?;
    }
    Ok(())
}
