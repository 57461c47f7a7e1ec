//! The clock: `--now` pins it, otherwise it is the system time.

use std::time::{SystemTime, UNIX_EPOCH};

/// `pinned`, or the current Unix time in whole seconds (whisper's `int(time.time())`).
pub(crate) fn now_or(pinned: Option<i64>) -> i64 {
    pinned.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}
