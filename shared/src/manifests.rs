//! Finding the manifest that describes a bucket: the newest valid one (at or before a date), and
//! the checkpoint of a run that did not finish.

use bytes::Bytes;
use tracing::warn;

use crate::layout::manifest::{Reader, Trailer};
use crate::layout::{Manifest, Summary, Version};

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

/// A committed manifest as stored: compressed, checked whole once, read again record by record
/// with [`Reader`] (tens of bytes per metric held, not hundreds).
#[derive(Debug, Clone)]
pub struct Stored {
    /// The run (its key).
    pub run: Version,
    /// The compressed bytes.
    pub bytes: Bytes,
    /// Its end line.
    pub trailer: Trailer,
}

impl Stored {
    /// A reader of its records.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.bytes).expect("checked when it was fetched")
    }
}

/// The newest readable manifest, of a run started at or before `at` when given, compressed. A
/// corrupt manifest is skipped with a warning: the one before it is still a valid description.
///
/// # Errors
/// The store failed.
pub async fn latest_stored(
    bucket: &Bucket,
    at: Option<Version>,
) -> Result<Option<Stored>, bucket::Error> {
    for run in runs(bucket).await?.into_iter().rev() {
        if at.is_some_and(|at| run > at) {
            continue;
        }
        let key = bucket.layout().manifest_key(run);
        let Some(bytes) = bucket.get(&key).await? else {
            continue;
        };
        let checked = bytes.clone();
        let checked =
            tokio::task::spawn_blocking(move || Reader::new(&checked).and_then(Reader::finish))
                .await
                .expect("reading a manifest does not panic");
        match checked {
            Ok(trailer) => {
                return Ok(Some(Stored {
                    run,
                    bytes,
                    trailer,
                }));
            }
            Err(e) => warn!(bucket = bucket.url(), key, error = %e, "skipping unreadable manifest"),
        }
    }
    Ok(None)
}

/// The newest readable manifest, of a run started at or before `at` when given, whole in
/// memory; see [`latest_stored`].
///
/// # Errors
/// The store failed.
pub async fn latest(
    bucket: &Bucket,
    at: Option<Version>,
) -> Result<Option<Manifest>, bucket::Error> {
    let Some(stored) = latest_stored(bucket, at).await? else {
        return Ok(None);
    };
    Ok(Some(
        tokio::task::spawn_blocking(move || Manifest::decode(&stored.bytes))
            .await
            .expect("reading a manifest does not panic")
            .expect("checked when it was fetched"),
    ))
}

/// The newest committed run's [`Summary`]: read from its summary object, or from the manifest's
/// end line when there is none (written by an older bucky, or its write failed). A corrupt
/// newest manifest is skipped for the one before, as [`latest`] does.
///
/// # Errors
/// The store failed.
pub async fn latest_summary(bucket: &Bucket) -> Result<Option<Summary>, bucket::Error> {
    let layout = bucket.layout();
    if let Some(run) = runs(bucket).await?.last()
        && let Some(bytes) = bucket.get(&layout.summary_key(*run)).await?
        && let Ok(summary) = serde_json::from_slice::<Summary>(&bytes)
    {
        return Ok(Some(summary));
    }
    Ok(latest_stored(bucket, None).await?.map(|s| Summary {
        started: s.run,
        finished: s.trailer.finished,
        metrics: s.trailer.metrics,
        missing: s.trailer.missing,
        stats: s.trailer.stats,
    }))
}

/// The checkpoint left by an unfinished run, newest run only, its segments merged (a later
/// segment's entry for a metric wins); unreadable segments are skipped with a warning (their
/// metrics are uploaded again). Returns the run and its entries, sorted by name.
///
/// # Errors
/// The store failed.
pub async fn checkpoint(bucket: &Bucket) -> Result<Option<Manifest>, bucket::Error> {
    let layout = bucket.layout();
    let mut segments: Vec<(Version, String)> = bucket
        .list(&layout.checkpoint_prefix())
        .await?
        .objects
        .into_iter()
        .filter_map(|m| {
            let key = m.location.to_string();
            layout.parse_checkpoint_key(&key).map(|run| (run, key))
        })
        .collect();
    let Some(newest) = segments.iter().map(|(run, _)| *run).max() else {
        return Ok(None);
    };
    segments.retain(|(run, _)| *run == newest);
    segments.sort();
    let mut merged: Option<Manifest> = None;
    let mut entries = std::collections::BTreeMap::new();
    for (_, key) in segments {
        let Some(bytes) = bucket.get(&key).await? else {
            continue;
        };
        match Manifest::decode(&bytes) {
            Ok(mut segment) => {
                entries.extend(segment.metrics.drain(..).map(|e| (e.name.clone(), e)));
                merged.get_or_insert(segment);
            }
            Err(e) => {
                warn!(bucket = bucket.url(), key, error = %e, "ignoring an unreadable checkpoint segment")
            }
        }
    }
    Ok(merged.map(|mut m| {
        m.metrics = entries.into_values().collect();
        m
    }))
}

/// Every checkpoint segment's key, of every run (removed once a run commits).
///
/// # Errors
/// The store failed.
pub async fn checkpoint_keys(bucket: &Bucket) -> Result<Vec<String>, bucket::Error> {
    Ok(bucket
        .list(&bucket.layout().checkpoint_prefix())
        .await?
        .objects
        .into_iter()
        .map(|m| m.location.to_string())
        .collect())
}

/// What the bucket's verification records say, and the keys of the records. A record that
/// cannot be read is skipped with a warning (its parts are verified again soon: they look due).
///
/// # Errors
/// The listing or a download failed.
pub async fn trust(bucket: &Bucket) -> Result<(crate::layout::Trust, Vec<Version>), bucket::Error> {
    let runs = verify_runs(bucket).await?;
    Ok((read_trust(bucket, &runs).await?, runs))
}

/// The runs that have verification records, oldest first.
async fn verify_runs(bucket: &Bucket) -> Result<Vec<Version>, bucket::Error> {
    let layout = bucket.layout();
    let mut runs: Vec<Version> = bucket
        .list(&layout.verify_prefix())
        .await?
        .objects
        .iter()
        .filter_map(|m| layout.parse_verify_key(m.location.as_ref()))
        .collect();
    runs.sort();
    Ok(runs)
}

async fn read_trust(
    bucket: &Bucket,
    runs: &[Version],
) -> Result<crate::layout::Trust, bucket::Error> {
    use crate::layout::{Trust, VerifyRecord};
    let layout = bucket.layout();
    let mut records = Vec::with_capacity(runs.len());
    for run in runs {
        let key = layout.verify_key(*run);
        let Some(bytes) = bucket.get(&key).await? else {
            continue;
        };
        match VerifyRecord::decode(&bytes) {
            Ok(record) => records.push(record),
            Err(e) => warn!(key, error = e, "verification record skipped"),
        }
    }
    Ok(Trust::from_records(records))
}

/// Buckets' verification records as last read, by bucket URL: a caller that asks often (status,
/// a Nagios check every few minutes, the metrics exporter) lists the records each time and reads
/// them again only when the list changed (records are written once and never changed).
#[derive(Debug, Default)]
pub struct TrustCache {
    buckets:
        std::sync::Mutex<std::collections::HashMap<String, (Vec<Version>, crate::layout::Trust)>>,
}

impl TrustCache {
    /// [`trust`] of `bucket`, from the cache when its records are the ones read last time.
    ///
    /// # Errors
    /// The listing or a download failed.
    pub async fn trust(&self, bucket: &Bucket) -> Result<crate::layout::Trust, bucket::Error> {
        let runs = verify_runs(bucket).await?;
        if let Some((cached, trust)) = self
            .buckets
            .lock()
            .expect("never poisoned")
            .get(bucket.url())
            && *cached == runs
        {
            return Ok(trust.clone());
        }
        let trust = read_trust(bucket, &runs).await?;
        self.buckets
            .lock()
            .expect("never poisoned")
            .insert(bucket.url().to_string(), (runs, trust.clone()));
        Ok(trust)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::VerifyRecord;
    use crate::layout::verification::FORMAT;

    fn record(at: i64) -> VerifyRecord {
        VerifyRecord {
            format: FORMAT,
            node: "g1".into(),
            started: Version(at),
            finished: Version(at),
            parts: vec![1, 2],
            checked: 0,
            ok: 0,
            unread: 0,
            corrupt: Vec::new(),
            resolved: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_cache_reads_records_again_only_when_they_changed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let bucket = Bucket::open(&url, &crate::bucket::StoreOptions::default()).unwrap();
        let put = |at: i64| {
            let bucket = &bucket;
            async move {
                let key = bucket.layout().verify_key(Version(at));
                bucket.put(&key, record(at).encode()).await.unwrap();
            }
        };
        put(100).await;
        put(200).await;
        let cache = TrustCache::default();
        let before = bucket.requests();
        let first = cache.trust(&bucket).await.unwrap();
        assert_eq!(bucket.requests() - before, 3, "a listing and two records");
        assert_eq!(first.newest(), Some(Version(200)));
        let before = bucket.requests();
        let again = cache.trust(&bucket).await.unwrap();
        assert_eq!(bucket.requests() - before, 1, "the listing only");
        assert_eq!(again.newest(), Some(Version(200)));
        put(300).await;
        let before = bucket.requests();
        let newer = cache.trust(&bucket).await.unwrap();
        assert_eq!(bucket.requests() - before, 4);
        assert_eq!(newer.newest(), Some(Version(300)));
    }
}
