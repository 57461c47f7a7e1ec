//! The `[ring]` section shared by the coordinator's and the agents' config files: the ring given
//! explicitly, or imported from a carbon-c-relay config or carbon.conf, with explicit settings
//! overriding what the import says.

use std::path::{Path, PathBuf};

use super::{Algorithm, Error, Flavour, Ring, RingConfig};

/// `[ring]`: explicit, or imported from a carbon-c-relay config or carbon.conf (exactly one).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSection {
    /// carbon_ch (default), fnv1a_ch, jump_fnv1a_ch, mmh3_ch; overrides an imported config.
    pub hash: Option<String>,
    /// carbon (default) or relay; overrides an imported config.
    pub flavour: Option<String>,
    /// consistent-hashing (default) or fast-hashing (carbon flavour).
    pub router: Option<String>,
    /// Owners per metric; default 1 (or the imported config's).
    pub replication: Option<usize>,
    /// carbon's DIVERSE_REPLICAS; default true (or the imported config's).
    pub diverse: Option<bool>,
    /// Destinations in ring order (carbon `host:port[:instance]`, relay `host[:port][=instance]`).
    pub destinations: Option<Vec<String>>,
    /// A carbon-c-relay config to read the ring from (relative to this file).
    pub relay_config: Option<PathBuf>,
    /// The cluster in `relay_config`; default its only consistent-hash cluster.
    pub cluster: Option<String>,
    /// A carbon.conf to read DESTINATIONS and the router settings from (relative to this file).
    pub carbon_conf: Option<PathBuf>,
    /// The carbon.conf section; default `relay`.
    pub carbon_section: Option<String>,
}

impl RingSection {
    /// Builds the ring this section describes; files are read relative to `base`.
    ///
    /// # Errors
    /// Not exactly one source, an unreadable file, or an invalid ring.
    pub fn build(&self, base: &Path) -> Result<Ring, Error> {
        let read = |p: &Path| {
            let full = base.join(p);
            std::fs::read_to_string(&full)
                .map(|t| (t, full.display().to_string()))
                .map_err(|e| Error::Invalid(format!("{}: {e}", full.display())))
        };
        let sources = [
            self.destinations.is_some(),
            self.relay_config.is_some(),
            self.carbon_conf.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(Error::Invalid(
                "give exactly one of destinations, relay_config, carbon_conf".into(),
            ));
        }
        let mut config = if let Some(destinations) = &self.destinations {
            RingConfig::new(
                Algorithm::CarbonCh,
                Flavour::Carbon,
                1,
                destinations.clone(),
            )
        } else if let Some(relay) = &self.relay_config {
            let (text, name) = read(relay)?;
            super::config::parse_relay_config(&text, self.cluster.as_deref(), &name)?
        } else {
            let (text, name) = read(self.carbon_conf.as_deref().expect("one source is set"))?;
            super::config::parse_carbon_conf(
                &text,
                self.carbon_section.as_deref().unwrap_or("relay"),
                &name,
            )?
        };
        if let Some(hash) = &self.hash {
            config.algorithm = hash.parse()?;
        }
        if let Some(flavour) = &self.flavour {
            config.flavour = flavour.parse()?;
        }
        if let Some(router) = &self.router {
            config.router = router.parse()?;
        }
        if let Some(replication) = self.replication {
            config.replication = replication;
        }
        if let Some(diverse) = self.diverse {
            config.diverse = diverse;
        }
        Ring::new(&config)
    }
}
