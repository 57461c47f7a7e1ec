//! The owner marker: a bucket belongs to exactly one host, named in `.bucky/owner.json`.

use super::Version;

/// Who owns a bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerMarker {
    /// The host (ring node name) whose tree the bucket holds.
    pub node: String,
    /// When the marker was written.
    pub created: Version,
    /// The tool and version that wrote it.
    pub written_by: String,
}

impl OwnerMarker {
    /// Pretty JSON, readable by a person browsing the bucket.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a marker serialises")
    }

    /// Parses a marker.
    ///
    /// # Errors
    /// The bytes are not an owner marker.
    pub fn decode(bytes: &[u8]) -> Result<OwnerMarker, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let m = OwnerMarker {
            node: "g1".into(),
            created: Version(5),
            written_by: "bucky 0.1.0".into(),
        };
        assert_eq!(OwnerMarker::decode(&m.encode()).unwrap(), m);
        assert!(OwnerMarker::decode(b"nope").is_err());
    }
}
