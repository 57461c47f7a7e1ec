//! Writing a fill computed in memory back to the live file, safe against carbon writing the same
//! file without a lock (its default, `WHISPER_LOCK_WRITES = False`) and against a full disk.
//!
//! - Only points the fill changed are written, each run of adjacent changed points in one write:
//!   no byte the fill did not change is ever rewritten with a stale copy.
//! - Just before writing, each run is read again; a point whose bytes are no longer what the fill
//!   read was written meanwhile by the live writer, and is left as the writer wrote it.
//! - Space for every run is reserved before the first byte is written, so a full disk fails the
//!   fill with every point untouched instead of a timestamp written and its value lost in a hole.
//!   Runs close together are reserved and re-read as one span (the bytes between are only read,
//!   never written), so a fill of many single points is not a syscall storm.

use std::cell::RefCell;
use std::path::Path;

use crate::whisper::{self, ChangedPoint, POINT_SIZE, Storage};

/// What [`write_changes`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteBack {
    /// Points written.
    pub points: u64,
    /// Writes made (one per run of adjacent points).
    pub writes: u64,
    /// Points the fill changed that a live writer changed first: left as the writer wrote them.
    pub kept_live: u64,
}

/// Writes `changes` (sorted by offset, as [`crate::whisper::Image::changed_points`] and
/// [`super::safe::plan`] give them) into `target`, as described in the module doc. `path` names
/// the file in errors.
///
/// # Errors
/// Reserving space (a full disk: "No space left on device"), re-reading or writing failed; when
/// reserving fails, nothing has been written.
pub fn write_changes<S: Storage>(
    changes: &[ChangedPoint],
    target: &mut S,
    path: &Path,
) -> Result<WriteBack, whisper::Error> {
    let runs = runs(changes);
    let spans = spans(&runs);
    for span in &spans {
        let (start, len) = span_extent(span);
        target
            .allocate(start, len as u64)
            .map_err(|e| whisper::Error::io(path, "reserving space for filled points", e))?;
    }
    let mut done = WriteBack::default();
    // Taken, not borrowed: an error drops them, and the next write-back starts afresh.
    let (mut on_disk, mut new) = BUFFERS.with_borrow_mut(std::mem::take);
    for span in &spans {
        let (span_start, len) = span_extent(span);
        // Grown, never shrunk: only new length is zeroed, not every span's bytes.
        if on_disk.len() < len {
            on_disk.resize(len, 0);
        }
        let on_disk = &mut on_disk[..len];
        target
            .read_at(on_disk, span_start)
            .map_err(|e| whisper::Error::io(path, "re-reading points before writing", e))?;
        for run in *span {
            let at = (run[0].offset - span_start) as usize;
            let now = &on_disk[at..at + run.len() * POINT_SIZE];
            // Points [from, i) are unchanged on disk since the fill read them: one write.
            let mut from = 0;
            for i in 0..=run.len() {
                let untouched =
                    i < run.len() && now[i * POINT_SIZE..(i + 1) * POINT_SIZE] == run[i].before;
                if untouched {
                    continue;
                }
                if from < i {
                    new.clear();
                    for point in &run[from..i] {
                        new.extend_from_slice(&point.after);
                    }
                    target
                        .write_at(&new, run[from].offset)
                        .map_err(|e| whisper::Error::io(path, "writing filled points", e))?;
                    done.points += (i - from) as u64;
                    done.writes += 1;
                }
                if i < run.len() {
                    done.kept_live += 1;
                }
                from = i + 1;
            }
        }
    }
    BUFFERS.with_borrow_mut(|buffers| *buffers = (on_disk, new));
    Ok(done)
}

thread_local! {
    /// The re-read spans and the bytes of one write, reused from one file to the next.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = RefCell::default();
}

/// Runs closer than this share one space reservation and one re-read: a syscall per run costs
/// more than reading or reserving the few pages between them.
const SPAN_GAP: u64 = 64 * 1024;

/// `runs` grouped into spans of runs less than [`SPAN_GAP`] apart.
fn spans<'a, 'b>(runs: &'b [&'a [ChangedPoint]]) -> Vec<&'b [&'a [ChangedPoint]]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=runs.len() {
        let apart = |i: usize| {
            let (previous, len) = extent(runs[i - 1]);
            runs[i][0].offset - (previous + len as u64) >= SPAN_GAP
        };
        if i == runs.len() || apart(i) {
            if start < i {
                out.push(&runs[start..i]);
            }
            start = i;
        }
    }
    out
}

/// First byte and length of a span, from its first run's start to its last run's end.
fn span_extent(span: &[&[ChangedPoint]]) -> (u64, usize) {
    let (start, _) = extent(span[0]);
    let (last, len) = extent(span[span.len() - 1]);
    (start, (last - start) as usize + len)
}

/// `changed` cut into runs of adjacent points.
fn runs(changed: &[ChangedPoint]) -> Vec<&[ChangedPoint]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=changed.len() {
        if i == changed.len() || changed[i].offset != changed[i - 1].offset + POINT_SIZE as u64 {
            if start < i {
                out.push(&changed[start..i]);
            }
            start = i;
        }
    }
    out
}

fn extent(run: &[ChangedPoint]) -> (u64, usize) {
    (run[0].offset, run.len() * POINT_SIZE)
}
