//! One backup per bucket at a time: a run holds `.bucky/lease.json`, created only if absent
//! (a conditional create where the store has one), renewed while it runs and removed at its end.
//! Two runs at once would write the same keys, and a manifest could end with a SHA-1 that is not
//! its stored object's.
//!
//! A lease is never forever: it lapses `ttl` after its last renewal, and a lease taken on this
//! host by a process that no longer runs (killed with -9), or by a run of this process that has
//! ended (its release failed with the store), is stale at once.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bucky_shared::bucket::{self, Bucket};
use bucky_shared::layout::Version;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The runs of this process that hold a lease now, by run id.
static ACTIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// Makes run ids unique within this process.
static RUNS: AtomicU64 = AtomicU64::new(0);

fn active() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    ACTIVE.lock().expect("the lease registry is never poisoned")
}

/// How long a lease holds without renewal.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// Who holds a lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The node whose backup runs.
    pub node: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// A token unique to the run, so a holder knows its own lease.
    pub run_id: String,
    /// Unix seconds when the run took the lease.
    pub started: i64,
    /// Unix seconds after which the lease has lapsed unless renewed.
    pub expires: i64,
}

/// Why a lease was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another run holds it.
    #[error(
        "bucket {bucket} is busy: a backup of {node} (pid {pid} on {host}) started {started} and holds \
         its lease until {expires}; one run per bucket at a time (if that run is dead on another \
         machine, its lease lapses then)",
        node = holder.node, pid = holder.pid, host = holder.host,
        started = Version(holder.started), expires = Version(holder.expires)
    )]
    Busy {
        /// The bucket's URL.
        bucket: String,
        /// The run holding it.
        holder: Holder,
    },
    /// The store failed.
    #[error(transparent)]
    Bucket(#[from] bucket::Error),
}

/// A lease held by this process; [`Lease::release`] ends it.
#[derive(Debug)]
pub struct Lease {
    bucket: Bucket,
    holder: Holder,
    renewer: JoinHandle<()>,
    registered: Registered,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Whether `holder` can no longer be running: lapsed, or on this host a process that is gone or
/// a run of this process that has ended.
fn is_stale(holder: &Holder, now: i64, this_host: &str) -> bool {
    if holder.expires < now {
        return true;
    }
    if holder.host != this_host {
        return false;
    }
    if holder.pid == std::process::id() {
        !active().contains(&holder.run_id)
    } else {
        !std::path::Path::new(&format!("/proc/{}", holder.pid)).exists()
    }
}

/// Takes the lease of `bucket` for `node`'s run, renewed every third of `ttl` until released.
///
/// # Errors
/// [`Error::Busy`] naming the run that holds it, or a store failure.
pub async fn acquire(bucket: &Bucket, node: &str, ttl: Duration) -> Result<Lease, Error> {
    let key = bucket.layout().lease_key();
    let now = unix_now();
    let host = hostname();
    let holder = Holder {
        node: node.to_string(),
        host: host.clone(),
        pid: std::process::id(),
        run_id: format!(
            "{host}-{}-{now}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ),
        started: now,
        expires: now + ttl.as_secs() as i64,
    };
    let record = serde_json::to_vec(&holder).expect("a lease serialises");
    // Registered before the create: another run of this process that reads the lease between our
    // create and our next poll must see it held, not stale.
    let registered = Registered::new(holder.run_id.clone());
    // At most two tries: the second after removing a stale lease.
    for _ in 0..2 {
        if bucket.create(&key, record.clone()).await? {
            let renewer = tokio::spawn(renew(bucket.clone(), holder.clone(), ttl));
            return Ok(Lease {
                bucket: bucket.clone(),
                holder,
                renewer,
                registered,
            });
        }
        let Some(bytes) = bucket.get(&key).await? else {
            continue; // released meanwhile
        };
        match serde_json::from_slice::<Holder>(&bytes) {
            Ok(other) if !is_stale(&other, now, &host) => {
                return Err(Error::Busy {
                    bucket: bucket.url().to_string(),
                    holder: other,
                });
            }
            Ok(other) => info!(
                bucket = bucket.url(),
                node = other.node,
                pid = other.pid,
                "taking over the lease of a run that is gone"
            ),
            Err(e) => warn!(bucket = bucket.url(), error = %e, "replacing an unreadable lease"),
        }
        bucket.delete(&key).await?;
    }
    let holder = match bucket.get(&key).await? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or(holder),
        None => holder,
    };
    Err(Error::Busy {
        bucket: bucket.url().to_string(),
        holder,
    })
}

/// A run id in [`ACTIVE`] until dropped: a run that did not get the lease (or whose future was
/// dropped mid-acquire) leaves no trace.
#[derive(Debug)]
struct Registered(String);

impl Registered {
    fn new(run_id: String) -> Self {
        active().insert(run_id.clone());
        Self(run_id)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        active().remove(&self.0);
    }
}

async fn renew(bucket: Bucket, mut holder: Holder, ttl: Duration) {
    let key = bucket.layout().lease_key();
    loop {
        tokio::time::sleep(ttl / 3).await;
        holder.expires = unix_now() + ttl.as_secs() as i64;
        let record = serde_json::to_vec(&holder).expect("a lease serialises");
        if let Err(e) = bucket.put(&key, record).await {
            warn!(error = %e, "could not renew the bucket lease; retrying");
        }
    }
}

impl Lease {
    /// Who holds it: this run.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Ends the lease: stops renewing and removes it, if it is still this run's.
    pub async fn release(self) {
        self.renewer.abort();
        drop(self.registered);
        let key = self.bucket.layout().lease_key();
        let ours = match self.bucket.get(&key).await {
            Ok(Some(bytes)) => serde_json::from_slice::<Holder>(&bytes)
                .is_ok_and(|h| h.run_id == self.holder.run_id),
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "could not read the lease to release it; it lapses by itself");
                false
            }
        };
        if ours && let Err(e) = self.bucket.delete(&key).await {
            warn!(error = %e, "could not remove the lease; it lapses by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(host: &str, pid: u32, expires: i64) -> Holder {
        Holder {
            node: "g1".into(),
            host: host.into(),
            pid,
            run_id: "r".into(),
            started: 0,
            expires,
        }
    }

    #[test]
    fn a_lease_is_stale_when_lapsed_or_its_process_here_is_gone() {
        let me = std::process::id();
        active().insert("r".into());
        assert!(!is_stale(&holder("h", me, 100), 50, "h"));
        assert!(is_stale(&holder("h", me, 100), 101, "h"));
        active().remove("r");
        assert!(
            is_stale(&holder("h", me, 100), 50, "h"),
            "a run of ours that ended"
        );
        // A pid that cannot exist (above the kernel's pid_max).
        assert!(is_stale(&holder("h", u32::MAX, 100), 50, "h"));
        // On another machine only the clock can tell.
        assert!(!is_stale(&holder("other", u32::MAX, 100), 50, "h"));
    }

    /// A store that, when the lease is created, notes whether its run was already registered:
    /// another run of this process may read the lease the moment it exists.
    #[derive(Debug)]
    struct Watching {
        inner: object_store::memory::InMemory,
        registered_at_create: std::sync::Mutex<Vec<bool>>,
    }

    impl std::fmt::Display for Watching {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Watching")
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for Watching {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            if matches!(opts.mode, object_store::PutMode::Create) {
                let bytes: Vec<u8> = payload.iter().flat_map(|b| b.to_vec()).collect();
                if let Ok(holder) = serde_json::from_slice::<Holder>(&bytes) {
                    let registered = active().contains(&holder.run_id);
                    self.registered_at_create.lock().unwrap().push(registered);
                }
            }
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<
                'static,
                object_store::Result<object_store::path::Path>,
            >,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
        {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// The run is registered before its lease exists, so no other run of this process can read
    /// the new lease and take it for one of ours that has ended.
    #[tokio::test]
    async fn a_run_is_registered_before_its_lease_is_created() {
        let store = std::sync::Arc::new(Watching {
            inner: object_store::memory::InMemory::new(),
            registered_at_create: Default::default(),
        });
        let bucket = Bucket::new(store.clone(), "g1", "test://watching");
        let lease = acquire(&bucket, "g1", Duration::from_secs(60))
            .await
            .unwrap();
        lease.release().await;
        assert_eq!(*store.registered_at_create.lock().unwrap(), [true]);
    }

    /// Two runs of one process racing for one lease: exactly one gets it, every time, however
    /// their polls interleave with the store's answers.
    #[tokio::test]
    async fn two_runs_of_one_process_never_both_hold_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let bucket = Bucket::open(&url, &Default::default()).unwrap();
        for round in 0..50 {
            let ttl = Duration::from_secs(60);
            let (a, b) = tokio::join!(acquire(&bucket, "g1", ttl), acquire(&bucket, "g1", ttl));
            let held: Vec<Lease> = [a, b].into_iter().filter_map(Result::ok).collect();
            assert_eq!(held.len(), 1, "round {round}: {held:?}");
            for lease in held {
                lease.release().await;
            }
        }
    }
}
