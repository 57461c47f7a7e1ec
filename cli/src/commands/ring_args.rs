//! The ring flags shared by `bucky locate` and `bucky ring show`: explicit, or imported from a
//! carbon-c-relay config or carbon.conf.

use std::path::PathBuf;

use anyhow::{Context, bail};
use bucky_shared::ring::{self, Algorithm, Flavour, Ring, RingConfig, Router};
use clap::Args;

/// Which ring to use.
#[derive(Debug, Args)]
pub struct RingArgs {
    /// Hash: carbon_ch, fnv1a_ch, jump_fnv1a_ch (relay) or mmh3_ch (carbon).
    #[arg(long = "hash")]
    pub hash: Option<String>,
    /// Placement rules: carbon (carbon-relay, carbon-cache, carbonate) or relay (carbon-c-relay).
    #[arg(long)]
    pub flavour: Option<String>,
    /// carbon's RELAY_METHOD: consistent-hashing (default) or fast-hashing.
    #[arg(long)]
    pub router: Option<String>,
    /// Owners per metric (REPLICATION_FACTOR / the relay's `replication`); default 1.
    #[arg(long)]
    pub replication: Option<usize>,
    /// carbon's DIVERSE_REPLICAS = False: replicas may share a server.
    #[arg(long)]
    pub no_diverse: bool,
    /// Destinations in ring order: host:port[:instance] (carbon) or host[:port][=instance] (relay).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["relay_config", "carbon_conf"])]
    pub destinations: Vec<String>,
    /// Read the ring from a carbon-c-relay config's cluster block.
    #[arg(long, conflicts_with = "carbon_conf")]
    pub relay_config: Option<PathBuf>,
    /// The cluster to read from --relay-config (default: its only consistent-hash cluster).
    #[arg(long, requires = "relay_config")]
    pub cluster: Option<String>,
    /// Read the ring from carbon.conf (DESTINATIONS, REPLICATION_FACTOR, DIVERSE_REPLICAS,
    /// ROUTER_HASH_TYPE, RELAY_METHOD).
    #[arg(long)]
    pub carbon_conf: Option<PathBuf>,
    /// The carbon.conf section to read.
    #[arg(long, default_value = "relay", requires = "carbon_conf")]
    pub carbon_section: String,
}

impl RingArgs {
    /// The ring config these flags describe; explicit flags override what a config file says.
    ///
    /// # Errors
    /// An unreadable config file, a bad flag value, or no destinations.
    pub fn config(&self) -> anyhow::Result<RingConfig> {
        let mut config = if let Some(path) = &self.relay_config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ring::config::parse_relay_config(
                &text,
                self.cluster.as_deref(),
                &path.display().to_string(),
            )?
        } else if let Some(path) = &self.carbon_conf {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ring::config::parse_carbon_conf(
                &text,
                &self.carbon_section,
                &path.display().to_string(),
            )?
        } else {
            if self.destinations.is_empty() {
                bail!("no ring: give --destinations, --relay-config or --carbon-conf");
            }
            RingConfig::new(
                Algorithm::CarbonCh,
                Flavour::Carbon,
                1,
                self.destinations.clone(),
            )
        };
        if let Some(hash) = &self.hash {
            config.algorithm = hash.parse()?;
        }
        if let Some(flavour) = &self.flavour {
            config.flavour = flavour.parse()?;
        }
        if let Some(router) = &self.router {
            config.router = router.parse::<Router>()?;
        }
        if let Some(replication) = self.replication {
            config.replication = replication;
        }
        if self.no_diverse {
            config.diverse = false;
        }
        if config.flavour == Flavour::Relay {
            config.diverse = false;
        }
        Ok(config)
    }

    /// The built ring.
    ///
    /// # Errors
    /// As [`RingArgs::config`], and an invalid ring (the bad destination is named).
    pub fn ring(&self) -> anyhow::Result<Ring> {
        Ok(Ring::new(&self.config()?)?)
    }
}
