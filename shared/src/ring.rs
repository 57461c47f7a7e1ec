//! Consistent-hash rings that place metrics exactly where carbon and carbon-c-relay put them.
//!
//! Two flavours, because both are in production and they differ:
//! - [`Flavour::Carbon`]: carbon 1.1.10's `ConsistentHashingRouter` (carbon-relay, carbon-cache,
//!   carbonate) and its `fast-hashing` router; destinations `host:port[:instance]`.
//! - [`Flavour::Relay`]: carbon-c-relay 3.7's `carbon_ch`, `fnv1a_ch` and `jump_fnv1a_ch`
//!   clusters; members `host[:port][=instance]`.
//!
//! ```
//! use bucky_shared::ring::{Algorithm, Flavour, Ring, RingConfig};
//! let config = RingConfig::new(Algorithm::CarbonCh, Flavour::Carbon, 2,
//!     ["carbon01:2004", "carbon02:2004", "carbon03:2004"]);
//! let ring = Ring::new(&config).unwrap();
//! let owners: Vec<&str> = ring.owners("servers.web01.cpu.user").iter()
//!     .map(|&i| ring.destinations()[i].text.as_str()).collect();
//! assert_eq!(owners.len(), 2);
//! println!("fingerprint {}", ring.fingerprint());
//! ```

mod balance;
mod carbon;
pub mod config;
mod destination;
mod fingerprint;
mod hash;
mod jump;
mod md5x;
mod nodeset;
mod relay;
mod section;
mod table;

use std::fmt;
use std::str::FromStr;

pub use destination::Destination;
pub use fingerprint::Fingerprint;
pub use section::RingSection;

/// A ring that cannot be built as configured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A destination string that does not parse.
    #[error("invalid destination '{entry}': {reason}")]
    InvalidDestination {
        /// The destination as given.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// Two destinations that are the same node.
    #[error("duplicate destination '{entry}': the same node as '{first}'")]
    DuplicateDestination {
        /// The later destination.
        entry: String,
        /// The earlier one.
        first: String,
    },
    /// A ring setting that cannot work.
    #[error("invalid ring: {0}")]
    Invalid(String),
    /// A carbon-c-relay config or carbon.conf that cannot be imported.
    #[error("{source_name}: {reason}")]
    Config {
        /// The file (or "relay config", "carbon.conf").
        source_name: String,
        /// What is wrong, with the line where known.
        reason: String,
    },
}

/// The hash function and ring construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// MD5-based ring, 16-bit positions (carbon's default).
    CarbonCh,
    /// FNV-1a folded to 16 bits.
    Fnv1aCh,
    /// Jump consistent hash over FNV-1a 64 (carbon-c-relay only).
    JumpFnv1aCh,
    /// MurmurHash3 x86_32 (carbon only).
    Mmh3Ch,
}

impl Algorithm {
    /// The name used in configs: `carbon_ch`, `fnv1a_ch`, `jump_fnv1a_ch`, `mmh3_ch`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::CarbonCh => "carbon_ch",
            Algorithm::Fnv1aCh => "fnv1a_ch",
            Algorithm::JumpFnv1aCh => "jump_fnv1a_ch",
            Algorithm::Mmh3Ch => "mmh3_ch",
        }
    }
}

/// Which implementation's placement rules to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// carbon 1.1.10 (Python).
    Carbon,
    /// carbon-c-relay 3.7.
    Relay,
}

impl Flavour {
    /// `carbon` or `relay`.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Carbon => "carbon",
            Flavour::Relay => "relay",
        }
    }
}

/// carbon's router (the carbon flavour only).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Router {
    /// `RELAY_METHOD = consistent-hashing`: the hash ring.
    #[default]
    ConsistentHashing,
    /// `RELAY_METHOD = fast-hashing`: nodes sorted by hash, start at `hash % n`.
    FastHashing,
}

impl Router {
    /// `consistent-hashing` or `fast-hashing`.
    pub fn name(self) -> &'static str {
        match self {
            Router::ConsistentHashing => "consistent-hashing",
            Router::FastHashing => "fast-hashing",
        }
    }
}

macro_rules! from_str_by_name {
    ($ty:ty, $what:literal, [$($v:expr),+]) => {
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                [$($v),+].into_iter().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<&str> = [$($v.name()),+].to_vec();
                    Error::Invalid(format!(concat!("unknown ", $what, " '{}' (expected {})"), s, names.join(", ")))
                })
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.name()) }
        }
    };
}
from_str_by_name!(
    Algorithm,
    "hash",
    [
        Algorithm::CarbonCh,
        Algorithm::Fnv1aCh,
        Algorithm::JumpFnv1aCh,
        Algorithm::Mmh3Ch
    ]
);
from_str_by_name!(Flavour, "flavour", [Flavour::Carbon, Flavour::Relay]);
from_str_by_name!(
    Router,
    "router",
    [Router::ConsistentHashing, Router::FastHashing]
);

/// Everything that decides placement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RingConfig {
    /// Hash function and ring construction.
    pub algorithm: Algorithm,
    /// carbon or carbon-c-relay rules.
    pub flavour: Flavour,
    /// carbon's router; ignored by the relay flavour.
    #[serde(default)]
    pub router: Router,
    /// Owners per metric (carbon's REPLICATION_FACTOR, the relay's `replication`).
    pub replication: usize,
    /// carbon's DIVERSE_REPLICAS (default true); the relay has no such option.
    #[serde(default = "default_diverse")]
    pub diverse: bool,
    /// Destinations in order, as written: `host:port[:instance]` (carbon) or
    /// `host[:port][=instance]` (relay).
    pub destinations: Vec<String>,
}

fn default_diverse() -> bool {
    true
}

impl RingConfig {
    /// A config with carbon's defaults: consistent-hashing router, diverse replicas.
    pub fn new<S: Into<String>>(
        algorithm: Algorithm,
        flavour: Flavour,
        replication: usize,
        destinations: impl IntoIterator<Item = S>,
    ) -> Self {
        RingConfig {
            algorithm,
            flavour,
            router: Router::ConsistentHashing,
            replication,
            diverse: true,
            destinations: destinations.into_iter().map(Into::into).collect(),
        }
    }
}

/// How a ring finds owners.
#[derive(Debug, Clone)]
enum Placement {
    Carbon(carbon::ConsistentRing),
    Fast(carbon::FastRing),
    Relay(relay::RelayRing),
    Jump(jump::JumpRing),
}

/// A built ring: destinations plus the structure that places metrics on them.
#[derive(Debug, Clone)]
pub struct Ring {
    config: RingConfig,
    destinations: Vec<Destination>,
    placement: Placement,
    fingerprint: Fingerprint,
}

impl Ring {
    /// Parses the destinations and builds the ring.
    ///
    /// # Errors
    /// An invalid or duplicate destination (named), no destinations, replication 0, a
    /// replication above the member count (relay), or an algorithm the flavour does not have.
    pub fn new(config: &RingConfig) -> Result<Ring, Error> {
        if config.destinations.is_empty() {
            return Err(Error::Invalid("no destinations".into()));
        }
        if config.replication == 0 {
            return Err(Error::Invalid("replication must be at least 1".into()));
        }
        let destinations = destination::parse_all(&config.destinations, config.flavour)?;
        let placement = match (config.flavour, config.algorithm, config.router) {
            (Flavour::Carbon, Algorithm::JumpFnv1aCh, _) => {
                return Err(Error::Invalid(
                    "jump_fnv1a_ch is a carbon-c-relay hash: use the relay flavour".into(),
                ));
            }
            (Flavour::Relay, Algorithm::Mmh3Ch, _) => {
                return Err(Error::Invalid(
                    "mmh3_ch is a carbon hash: use the carbon flavour".into(),
                ));
            }
            (Flavour::Carbon, algorithm, Router::ConsistentHashing) => {
                Placement::Carbon(carbon::ConsistentRing::new(
                    &destinations,
                    algorithm,
                    config.replication,
                    config.diverse,
                ))
            }
            (Flavour::Carbon, algorithm, Router::FastHashing) => Placement::Fast(
                carbon::FastRing::new(&destinations, algorithm, config.replication, config.diverse),
            ),
            (Flavour::Relay, Algorithm::JumpFnv1aCh, _) => {
                relay::check_replication(config.replication, destinations.len())?;
                Placement::Jump(jump::JumpRing::new(&destinations, config.replication))
            }
            (Flavour::Relay, algorithm, _) => {
                relay::check_replication(config.replication, destinations.len())?;
                Placement::Relay(relay::RelayRing::new(
                    &destinations,
                    algorithm,
                    config.replication,
                ))
            }
        };
        let fingerprint = Fingerprint::of(config, &destinations);
        Ok(Ring {
            config: config.clone(),
            destinations,
            placement,
            fingerprint,
        })
    }

    /// The config the ring was built from.
    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// The destinations, in config order; [`Ring::owners`] returns indices into this.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    /// The digest of everything that decides placement.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The owners of `metric`, primary first, as indices into [`Ring::destinations`].
    pub fn owners(&self, metric: &str) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.config.replication);
        self.owners_into(metric, &mut out);
        out
    }

    /// [`Ring::owners`] into a reused buffer (cleared first), for placing many names.
    pub fn owners_into(&self, metric: &str, out: &mut Vec<usize>) {
        out.clear();
        let key = metric.as_bytes();
        match &self.placement {
            Placement::Carbon(r) => r.owners_at(r.position(key), out),
            Placement::Fast(r) => r.owners_at(r.position(key), out),
            Placement::Relay(r) => r.owners_at(r.position(key), out),
            Placement::Jump(r) => r.owners(key, out),
        }
    }

    /// The owners of many metrics: calls `each(metric, owners)` in order. Faster than
    /// [`Ring::owners_into`] per name for carbon_ch rings, whose MD5s are computed
    /// [`md5x::LANES`] names at a time.
    pub fn owners_many<'a>(&self, metrics: &[&'a str], mut each: impl FnMut(&'a str, &[usize])) {
        const CHUNK: usize = 8 * md5x::LANES;
        let mut out = Vec::with_capacity(self.config.replication);
        let mut positions = [0i64; CHUNK];
        let batched = self.config.algorithm == Algorithm::CarbonCh
            && !matches!(self.placement, Placement::Jump(_));
        for chunk in metrics.chunks(CHUNK) {
            if batched {
                let keys: Vec<&[u8]> = chunk.iter().map(|m| m.as_bytes()).collect();
                md5x::carbon_ch_many(&keys, &mut positions[..chunk.len()]);
            }
            for (i, metric) in chunk.iter().enumerate() {
                out.clear();
                let position = |key: &[u8]| {
                    if batched {
                        positions[i]
                    } else {
                        self.position(key)
                    }
                };
                let key = metric.as_bytes();
                match &self.placement {
                    Placement::Carbon(r) => r.owners_at(position(key), &mut out),
                    Placement::Fast(r) => r.owners_at(position(key), &mut out),
                    Placement::Relay(r) => r.owners_at(position(key), &mut out),
                    Placement::Jump(r) => r.owners(key, &mut out),
                }
                each(metric, &out);
            }
        }
    }

    /// The position of `key` on a position ring (unused for jump).
    fn position(&self, key: &[u8]) -> i64 {
        match &self.placement {
            Placement::Carbon(r) => r.position(key),
            Placement::Fast(r) => r.position(key),
            Placement::Relay(r) => r.position(key),
            Placement::Jump(_) => 0,
        }
    }

    /// The share of the hash space for which each destination is the primary owner, in
    /// destination order; the shares sum to 1.
    pub fn balance(&self) -> Vec<f64> {
        match &self.placement {
            Placement::Carbon(r) => r.balance(self.destinations.len()),
            Placement::Fast(r) => r.balance(self.destinations.len()),
            Placement::Relay(r) => r.balance(self.destinations.len()),
            Placement::Jump(_) => {
                vec![1.0 / self.destinations.len() as f64; self.destinations.len()]
            }
        }
    }
}
