//! Finding the manifest that describes a bucket: the newest valid one (at or before a date), and
//! the checkpoint of a run that did not finish.

use crate::layout::{Manifest, Version};
use tracing::warn;

use crate::bucket::{self, Bucket};

/// The runs that have manifests, oldest first.
///
/// # Errors
/// The listing failed.
pub async fn runs(bucket: &Bucket) -> Result<Vec<Version>, bucket::Error> {
    let layout = bucket.layout();
    let mut runs: Vec<Version> = bucket
        .list(&layout.manifests_prefix())
        .await?
        .objects
        .iter()
        .filter_map(|m| layout.parse_manifest_key(m.location.as_ref()))
        .collect();
    runs.sort();
    Ok(runs)
}

/// The newest readable manifest, of a run started at or before `at` when given. A corrupt
/// manifest is skipped with a warning: the one before it is still a valid description.
///
/// # Errors
/// The store failed.
pub async fn latest(
    bucket: &Bucket,
    at: Option<Version>,
) -> Result<Option<Manifest>, bucket::Error> {
    for run in runs(bucket).await?.into_iter().rev() {
        if at.is_some_and(|at| run > at) {
            continue;
        }
        let key = bucket.layout().manifest_key(run);
        let Some(bytes) = bucket.get(&key).await? else {
            continue;
        };
        match Manifest::decode(&bytes) {
            Ok(manifest) => return Ok(Some(manifest)),
            Err(e) => warn!(bucket = bucket.url(), key, error = %e, "skipping unreadable manifest"),
        }
    }
    Ok(None)
}

/// The checkpoint left by an unfinished run, if readable.
///
/// # Errors
/// The store failed.
pub async fn checkpoint(bucket: &Bucket) -> Result<Option<Manifest>, bucket::Error> {
    let key = bucket.layout().checkpoint_key();
    Ok(match bucket.get(&key).await? {
        Some(bytes) => Manifest::decode(&bytes)
            .inspect_err(
                |e| warn!(bucket = bucket.url(), key, error = %e, "ignoring unreadable checkpoint"),
            )
            .ok(),
        None => None,
    })
}
