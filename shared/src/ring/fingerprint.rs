//! The ring fingerprint: a digest of everything that decides placement, so agents and the
//! coordinator can prove they agree on the ring.

use std::fmt;

use sha2::{Digest, Sha256};

use super::{Destination, Flavour, RingConfig};

/// SHA-256 of the canonical ring description; displayed as `sha256:` and 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Digests algorithm, flavour, router and diverse flag (where the flavour has them),
    /// replication, and the parsed destinations in order. Spelling that does not change placement
    /// (`01` vs `1` as a relay instance, whitespace) does not change the fingerprint.
    pub(crate) fn of(config: &RingConfig, destinations: &[Destination]) -> Self {
        let mut text = format!(
            "bucky-ring-v1\nalgorithm={}\nflavour={}\nreplication={}\n",
            config.algorithm, config.flavour, config.replication
        );
        if config.flavour == Flavour::Carbon {
            text.push_str(&format!(
                "router={}\ndiverse={}\n",
                config.router, config.diverse
            ));
        }
        for d in destinations {
            text.push_str(&format!(
                "destination={}\t{}\t{}\n",
                d.host,
                d.port,
                d.instance.as_deref().unwrap_or("")
            ));
        }
        Fingerprint(Sha256::digest(text.as_bytes()).into())
    }

    /// The full digest in hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.to_hex()[..16])
    }
}
