//! Moves between nodes, as each side sees them: reading whisper files from peer agents (the file
//! travels from the agent that holds it to the agent that needs it, never through the
//! coordinator or the CLI), reading a file for a peer, and removing a moved copy only while it is
//! exactly what the owners confirmed holding. Peers are called with this agent's own token (one
//! cluster, one token) over one connection each, opened on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bucky_proto::v1 as pb;
use bucky_shared::whisper::LockMode;
use futures::StreamExt;
use tonic::transport::{Channel, Endpoint};

use crate::codec;

/// Bytes per ReadMetric message: well below gRPC's 4 MiB limit.
pub const CHUNK_BYTES: usize = 1 << 20;

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The peers this agent reads from.
#[derive(Debug)]
pub struct Peers {
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    /// Longest wait for a whole file.
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    /// What this agent last applied whole from each (peer, metric): the SHA-1 of the peer's file,
    /// so a move run again is not sent again while the peer's copy has not changed (a misplaced
    /// copy no longer receives carbon's writes). Keyed and valued by hash, 24 bytes an entry.
    applied: Mutex<HashMap<u64, u128>>,
}

/// A file read from a peer.
#[derive(Debug)]
pub struct Fetched {
    /// The whisper file (an excerpt's zeros included).
    pub file: Vec<u8>,
    /// The SHA-1 the peer sent: the file's, or for an excerpt that of the data sent.
    pub sha1: String,
    /// Bytes that travelled.
    pub received: u64,
}

/// Entries [`Peers`] remembers at most; past it the memory starts over (a rerun then moves again,
/// as it would after an agent restart).
const APPLIED_MAX: usize = 4_000_000;

fn applied_key(address: &str, metric: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one((address, metric))
}

fn sha1_bits(sha1: &str) -> Option<u128> {
    u128::from_str_radix(sha1.get(..32)?, 16).ok()
}

impl Peers {
    /// Peers called with `token`, each read given at most `timeout`.
    ///
    /// # Errors
    /// The token is not valid in a header.
    pub fn new(token: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Peers {
            authorization: format!("Bearer {token}")
                .parse()
                .map_err(|_| "the token is not valid ASCII".to_string())?,
            timeout,
            channels: Mutex::default(),
            applied: Mutex::default(),
        })
    }

    /// The SHA-1 prefix of the peer's file this agent last applied, if it remembers one.
    fn last_applied(&self, address: &str, metric: &str) -> Option<u128> {
        let applied = self.applied.lock().expect("never poisoned");
        applied.get(&applied_key(address, metric)).copied()
    }

    /// Remembers that the peer's file with `sha1` was applied here whole.
    pub fn applied(&self, address: &str, metric: &str, sha1: &str) {
        let Some(bits) = sha1_bits(sha1) else { return };
        let mut applied = self.applied.lock().expect("never poisoned");
        if applied.len() >= APPLIED_MAX {
            applied.clear();
        }
        applied.insert(applied_key(address, metric), bits);
    }

    /// Forgets what was applied from the peer's `metric` (an owner found lacking points of it:
    /// the next move sends it again).
    pub fn forget(&self, address: &str, metric: &str) {
        let mut applied = self.applied.lock().expect("never poisoned");
        applied.remove(&applied_key(address, metric));
    }

    /// The SHA-1 (hex) of the peer's file this agent last applied whole, to ask for the file
    /// only if it changed since.
    pub fn unless(&self, address: &str, metric: &str) -> Option<String> {
        self.last_applied(address, metric)
            .map(|bits| format!("{bits:032x}"))
    }

    fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().expect("never poisoned");
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(address.to_string())
            .map_err(|e| format!("invalid peer address {address}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// The whisper file of `metric` as the peer at `address` holds it, checked against the SHA-1
    /// the peer sends; at most `max_bytes`. With `unless` (a SHA-1, or its first 32 hex digits),
    /// `None` when the peer's file still has it: nothing was sent.
    ///
    /// # Errors
    /// The peer is unreachable, refuses, does not hold the metric, sends more than `max_bytes`
    /// or bytes that do not match its SHA-1, or takes longer than the timeout; each names the
    /// peer.
    pub async fn read(
        &self,
        address: &str,
        metric: &str,
        max_bytes: u64,
        unless: Option<&str>,
        since: i64,
    ) -> Result<Option<Fetched>, String> {
        let read = async {
            let mut client = pb::agent_client::AgentClient::new(self.channel(address)?)
                .max_decoding_message_size(2 * CHUNK_BYTES);
            let mut request = tonic::Request::new(pb::ReadMetricRequest {
                metric: metric.to_string(),
                unless_sha1: unless.unwrap_or_default().to_string(),
                since,
            });
            request
                .metadata_mut()
                .insert("authorization", self.authorization.clone());
            let said = |e: tonic::Status| format!("peer {address}: {}", e.message());
            let mut stream = client
                .read_metric(request)
                .await
                .map_err(said)?
                .into_inner();
            // What arrived, in order, and where each piece goes (whole files arrive in order
            // from offset 0; a heal's excerpt in ranges).
            let mut bytes = Vec::new();
            let mut pieces: Vec<(usize, usize)> = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(said)?;
                if chunk.unchanged {
                    return Ok(None);
                }
                if (bytes.len() + chunk.data.len()) as u64 > max_bytes
                    || chunk.file_size > max_bytes
                {
                    return Err(format!(
                        "peer {address}: {metric} is larger than {max_bytes} bytes"
                    ));
                }
                pieces.push((chunk.offset as usize, chunk.data.len()));
                bytes.extend_from_slice(&chunk.data);
                if !chunk.sha1.is_empty() {
                    let actual = codec::sha1_hex(&bytes);
                    if actual != chunk.sha1 {
                        return Err(format!(
                            "peer {address}: {metric}: SHA-1 {actual} of what arrived does not \
                             match the peer's {}",
                            chunk.sha1
                        ));
                    }
                    let received = bytes.len() as u64;
                    if !chunk.partial {
                        return Ok(Some(Fetched {
                            file: bytes,
                            sha1: actual,
                            received,
                        }));
                    }
                    let mut at = 0;
                    let placed = pieces.iter().map(|&(offset, len)| {
                        let data = bytes[at..at + len].to_vec();
                        at += len;
                        (offset, data)
                    });
                    let image =
                        bucky_shared::whisper::excerpt::image_of(chunk.file_size as usize, placed)
                            .map_err(|e| format!("peer {address}: {metric}: {e}"))?;
                    return Ok(Some(Fetched {
                        file: image,
                        sha1: actual,
                        received,
                    }));
                }
            }
            Err(format!(
                "peer {address}: the stream of {metric} ended before its SHA-1 (the peer went away?)"
            ))
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| {
                format!(
                    "peer {address}: {metric} not read within {}s",
                    self.timeout.as_secs()
                )
            })?
    }
}

/// The file of `metric` under `root`, read whole under a shared lock (whisper's own), which is
/// released before this returns.
///
/// # Errors
/// A bad metric name, a missing file, a lock not obtained within `lock_timeout`, or a read error;
/// each names the metric or path.
pub fn read_locked(root: &Path, metric: &str, lock_timeout: Duration) -> Result<Vec<u8>, String> {
    read_under(root, metric, LockMode::Shared, lock_timeout).map(|(_, _, bytes)| bytes)
}

/// Opens the file of `metric` (for writing too when `mode` is exclusive), takes the lock and
/// reads it whole; the lock goes with the returned file.
fn read_under(
    root: &Path,
    metric: &str,
    mode: LockMode,
    lock_timeout: Duration,
) -> Result<(std::fs::File, PathBuf, Vec<u8>), String> {
    use std::io::Read;
    let path = bucky_shared::metric::path_of(root, metric).map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(mode == LockMode::Exclusive)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    bucky_shared::whisper::lock_file(&file, mode, lock_timeout, &path)
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((file, path, bytes))
}

/// Removes the file of `metric` under `root` if its content still has SHA-1 `sha1`: checked and
/// unlinked under an exclusive lock, so a writer that locks (whisper, carbon with locking on)
/// cannot add a point in between. Points a lockless carbon writes after the check go to the
/// unlinked file and are lost with it; by then the ring sends the metric elsewhere.
///
/// # Errors
/// A bad name, a missing file, a lock timeout, content that changed since it was confirmed, or
/// a removal that failed; each names the path.
pub fn delete_if_unchanged(
    root: &Path,
    metric: &str,
    sha1: &str,
    lock_timeout: Duration,
) -> Result<(), String> {
    // The lock is held (by `_file`) until the file is unlinked.
    let (_file, path, bytes) = read_under(root, metric, LockMode::Exclusive, lock_timeout)?;
    let actual = codec::sha1_hex(&bytes);
    if actual != sha1 {
        return Err(format!(
            "{}: kept: it changed since the owners confirmed it (SHA-1 {actual}, confirmed {sha1})",
            path.display()
        ));
    }
    // One removal at a time, so two that empty sibling directories cannot each leave their
    // common parent to the other.
    static REMOVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = REMOVING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::fs::remove_file(&path).map_err(|e| format!("{}: removing: {e}", path.display()))?;
    // A drained node should not keep a tree of empty directories: each one the removal emptied
    // goes too (one carbon has just written into is not empty, and stays).
    let mut dir = path.parent().unwrap_or(root);
    while dir != root && dir.starts_with(root) && std::fs::remove_dir(dir).is_ok() {
        dir = dir.parent().unwrap_or(root);
    }
    // The removal itself must survive a crash: the next rebalance counts on it.
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_deleted_only_while_it_is_what_was_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = bucky_shared::metric::path_of(dir.path(), "a.b").unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"confirmed").unwrap();
        let confirmed = codec::sha1_hex(b"confirmed");
        std::fs::write(&path, b"written since").unwrap();
        let err =
            delete_if_unchanged(dir.path(), "a.b", &confirmed, Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("changed since"), "{err}");
        assert!(path.exists());
        std::fs::write(&path, b"confirmed").unwrap();
        // A neighbour keeps the directory they share; the last one out removes it.
        let other = bucky_shared::metric::path_of(dir.path(), "a.c").unwrap();
        std::fs::write(&other, b"confirmed").unwrap();
        delete_if_unchanged(dir.path(), "a.b", &confirmed, Duration::from_secs(1)).unwrap();
        assert!(!path.exists());
        assert!(dir.path().join("a").is_dir());
        delete_if_unchanged(dir.path(), "a.c", &confirmed, Duration::from_secs(1)).unwrap();
        assert!(
            !dir.path().join("a").exists(),
            "the emptied directory went too"
        );
        assert!(dir.path().is_dir(), "never the root");
        assert!(
            delete_if_unchanged(dir.path(), "../x", &confirmed, Duration::from_secs(1)).is_err()
        );
    }
}
