//! `flock` with a deadline: the lock whisper.py and carbon take, without ever waiting forever.

use std::fmt;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Error, Result};

/// How long [`super::Whisper::open_file`] waits for a lock held by another process.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest pause between two attempts; short enough that a released lock is taken promptly.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// Which `flock` to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// `LOCK_SH`: readers that need a consistent copy.
    Shared,
    /// `LOCK_EX`: writers.
    Exclusive,
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        })
    }
}

/// Takes `mode` on `file` (released when the file is closed), retrying with backoff until
/// `timeout` has passed. flock(2) has no timeout of its own, hence the non-blocking attempts.
///
/// # Errors
/// [`Error::LockTimeout`] naming `path` when another process holds a conflicting lock for longer
/// than `timeout`; [`Error::Io`] when flock itself fails.
pub fn lock_file(file: &File, mode: LockMode, timeout: Duration, path: &Path) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let attempt = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(Error::io(path, "locking", e)),
            Err(TryLockError::WouldBlock) => {
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(Error::LockTimeout {
                        path: path.to_path_buf(),
                        mode,
                        waited,
                    });
                }
                std::thread::sleep(pause.min(timeout - waited));
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclusive_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wsp");
        std::fs::write(&path, b"x").unwrap();
        let a = File::open(&path).unwrap();
        let b = File::open(&path).unwrap();
        lock_file(&a, LockMode::Shared, Duration::ZERO, &path).unwrap();
        lock_file(&b, LockMode::Shared, Duration::ZERO, &path).unwrap();
        let c = File::open(&path).unwrap();
        let err = lock_file(&c, LockMode::Exclusive, Duration::from_millis(20), &path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LockTimeout {
                    mode: LockMode::Exclusive,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("m.wsp"));
        drop((a, b));
        lock_file(&c, LockMode::Exclusive, Duration::ZERO, &path).unwrap();
    }
}
