//! One bucket per host: the owner marker is checked before anything is written, and written by
//! the first backup into an empty bucket.

use bucky_shared::layout::{OwnerMarker, Version};

use bucky_shared::bucket::{self, Bucket};

/// The bucket cannot be written by this node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another host's bucket.
    #[error(
        "bucket {bucket} belongs to {owner}, not to {node}: refusing to write (one bucket per host)"
    )]
    OwnedByOther {
        /// The bucket's URL.
        bucket: String,
        /// The host named in its marker.
        owner: String,
        /// This node.
        node: String,
    },
    /// The marker exists but is not a marker.
    #[error("bucket {bucket}: unreadable owner marker {key}: {reason}")]
    Corrupt {
        /// The bucket's URL.
        bucket: String,
        /// The marker's key.
        key: String,
        /// The parse error.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Bucket(#[from] bucket::Error),
}

/// The bucket's owner marker, if it has one.
///
/// # Errors
/// A marker that is not one, or a store failure.
pub async fn marker(bucket: &Bucket) -> Result<Option<OwnerMarker>, Error> {
    let key = bucket.layout().owner_key();
    let Some(bytes) = bucket.get(&key).await? else {
        return Ok(None);
    };
    OwnerMarker::decode(&bytes)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            bucket: bucket.url().to_string(),
            key,
            reason: e.to_string(),
        })
}

/// Refuses a bucket owned by another host; writes the marker into an unowned one when `claim`.
///
/// # Errors
/// [`Error::OwnedByOther`] naming both hosts, a corrupt marker, or a store failure.
pub async fn ensure_owner(
    bucket: &Bucket,
    node: &str,
    claim: bool,
    now: Version,
) -> Result<(), Error> {
    match marker(bucket).await? {
        Some(marker) => {
            if marker.node != node {
                return Err(Error::OwnedByOther {
                    bucket: bucket.url().to_string(),
                    owner: marker.node,
                    node: node.to_string(),
                });
            }
            Ok(())
        }
        None if claim => {
            let marker = OwnerMarker {
                node: node.to_string(),
                created: now,
                written_by: format!("bucky-agent {}", crate::VERSION),
            };
            Ok(bucket
                .put(&bucket.layout().owner_key(), marker.encode())
                .await?)
        }
        None => Ok(()),
    }
}
