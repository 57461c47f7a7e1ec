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
    #[arg(long, conflicts_with = "toml")]
    pub json: bool,
    /// Print the `[ring]` section to paste into the coordinator's and agents' configs (its
    /// fingerprint is the one the agents will report).
    #[arg(long)]
    pub toml: bool,
}

/// `config` as a `[ring]` section of a bucky config file, every setting explicit.
pub fn ring_section(config: &bucky_shared::ring::RingConfig) -> String {
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let mut text = format!(
        "[ring]\nhash = {}\nflavour = {}\n",
        quoted(&config.algorithm.to_string()),
        quoted(&config.flavour.to_string())
    );
    if config.flavour == Flavour::Carbon {
        text += &format!(
            "router = {}\ndiverse = {}\n",
            quoted(&config.router.to_string()),
            config.diverse
        );
    }
    let destinations: Vec<String> = config.destinations.iter().map(|d| quoted(d)).collect();
    text += &format!(
        "replication = {}\ndestinations = [{}]\n",
        config.replication,
        destinations.join(", ")
    );
    text
}

/// Runs `bucky ring ...`.
///
/// # Errors
/// An invalid ring.
pub fn run(command: RingCommand, out: &mut impl Write) -> anyhow::Result<()> {
    let RingCommand::Show(args) = command;
    let ring = args.ring.ring()?;
    let config = ring.config();
    if args.toml {
        write!(out, "{}", ring_section(ring.config()))?;
        writeln!(out, "# fingerprint: {}", ring.fingerprint())?;
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    use bucky_shared::ring::{Algorithm, Ring, RingConfig, RingSection};

    use super::*;

    #[test]
    fn the_printed_section_builds_the_same_ring() {
        for (algorithm, flavour) in [
            (Algorithm::CarbonCh, Flavour::Carbon),
            (Algorithm::Fnv1aCh, Flavour::Relay),
            (Algorithm::JumpFnv1aCh, Flavour::Relay),
        ] {
            let mut config = RingConfig::new(algorithm, flavour, 2, ["a:2004", "b:2004", "c:2104"]);
            config.diverse = false;
            let ring = Ring::new(&config).unwrap();
            let text = ring_section(&config);
            #[derive(serde::Deserialize)]
            struct File {
                ring: RingSection,
            }
            let file: File = toml::from_str(&text).unwrap();
            let rebuilt = file.ring.build(std::path::Path::new(".")).unwrap();
            assert_eq!(rebuilt.fingerprint(), ring.fingerprint(), "{text}");
        }
    }
}
