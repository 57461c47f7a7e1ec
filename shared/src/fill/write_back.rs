//! Writing a fill computed in memory back to the live file, safe against carbon writing the same
//! file without a lock (its default, `WHISPER_LOCK_WRITES = False`) and against a full disk.
//!
//! - Only points the fill changed are written, each run of adjacent changed points in one write:
//!   no byte the fill did not change is ever rewritten with a stale copy.
//! - Just before writing, each run is read again; a point whose bytes are no longer what the fill
//!   read was written meanwhile by the live writer, and is left as the writer wrote it.
//! - Space for every run is reserved before the first byte is written, so a full disk fails the
//!   fill with every point untouched instead of a timestamp written and its value lost in a hole.

use std::path::Path;

use crate::whisper::{self, ChangedPoint, Image, POINT_SIZE, Storage};

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

/// Writes the points `image` changed into `target`, as described in the module doc. `path`
/// names the file in errors.
///
/// # Errors
/// Reserving space (a full disk: "No space left on device"), re-reading or writing failed; when
/// reserving fails, nothing has been written.
pub fn write_changes<S: Storage>(
    image: &Image,
    target: &mut S,
    path: &Path,
) -> Result<WriteBack, whisper::Error> {
    let changed = image.changed_points();
    let runs = runs(&changed);
    for run in &runs {
        let (start, len) = extent(run);
        target
            .allocate(start, len as u64)
            .map_err(|e| whisper::Error::io(path, "reserving space for filled points", e))?;
    }
    let mut done = WriteBack::default();
    let mut on_disk = Vec::new();
    for run in &runs {
        let (start, len) = extent(run);
        on_disk.resize(len, 0);
        target
            .read_at(&mut on_disk, start)
            .map_err(|e| whisper::Error::io(path, "re-reading points before writing", e))?;
        // Points [from, i) are unchanged on disk since the fill read them: one write.
        let mut from = 0;
        for i in 0..=run.len() {
            let untouched =
                i < run.len() && on_disk[i * POINT_SIZE..(i + 1) * POINT_SIZE] == run[i].before;
            if untouched {
                continue;
            }
            if from < i {
                let a = run[from].offset as usize;
                let b = a + (i - from) * POINT_SIZE;
                target
                    .write_at(&image.bytes()[a..b], a as u64)
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
    Ok(done)
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
