//! carbonate 1.1.10's `fill_archives`, byte for byte.
//!
//! Reproduced as carbonate behaves, not as one might wish it did:
//! - a stored `0.0` counts as a gap (`bool(value)` is false), so zeros are replaced;
//! - each gap is fetched from src over `(gapstart - step, start]`, so the first present dst
//!   point after a gap is overwritten by src's value there;
//! - src points are written with `whisper.update_many`, so they propagate into dst's lower
//!   archives (re-aggregating values dst already had);
//! - dst archives are visited by increasing retention, each only up to where the previous one
//!   began.
//!
//! Fetched slots are scanned a chunk at a time in buffers kept per thread, so a batch of fills
//! does not allocate a decoded series per archive and per gap, and the buffers stay in the CPU's
//! cache.

use std::cell::RefCell;

use crate::whisper::{ArchiveInfo, Result, Storage, Whisper};

/// Buffers reused from one fill to the next.
#[derive(Default)]
struct Buffers {
    /// dst's fetched slots.
    dst: Vec<u8>,
    /// src's fetched slots.
    src: Vec<u8>,
    /// src's points for one `update_many`.
    points: Vec<(i64, f64)>,
    /// dst's gaps in one archive.
    gaps: Vec<(i64, i64)>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::default();
}

/// carbonate's `fill_archives(src, dst, startFrom, endAt, overwrite)` with `time.time() == now`.
/// Returns the number of points passed to `update_many`.
///
/// # Errors
/// A read or write error on either file.
pub fn fill_archives<S: Storage, D: Storage>(
    src: &Whisper<S>,
    dst: &mut Whisper<D>,
    start_from: i64,
    end_at: i64,
    overwrite: bool,
    now: i64,
) -> Result<u64> {
    BUFFERS.with_borrow_mut(|buffers| {
        let Buffers {
            dst: dst_bytes,
            src: src_bytes,
            points,
            gaps,
        } = buffers;
        let mut archives = dst.header().archives.clone();
        archives.sort_by_key(|a| a.retention());
        let mut src_archives = src.header().archives.clone();
        src_archives.sort_by_key(|a| a.retention());
        let mut start_from = start_from;
        let mut written = 0;
        for archive in archives {
            let from_time = end_at.max(now - archive.retention());
            if from_time >= start_from {
                continue;
            }
            // carbonate would crash on a range wholly outside the file; nothing to fill.
            let Some(range) = dst.fetch_range(from_time, Some(start_from), now, None)? else {
                continue;
            };
            let step = range.step;
            // Python truthiness: 0 stands for "no gap open", as `gapstart = None` does there.
            let mut gap_start = 0;
            // The slots are scanned first and the gaps filled after: a fill writes into dst,
            // and carbonate scans the values it fetched before writing.
            gaps.clear();
            dst.fetch_slots(&range, dst_bytes, |start, value| {
                let has_value = !overwrite && value.is_some_and(|v| v != 0.0);
                if !has_value && gap_start == 0 {
                    gap_start = start;
                } else if has_value && gap_start != 0 {
                    if start - gap_start >= archive.step() {
                        gaps.push((gap_start - step, start));
                    }
                    gap_start = 0;
                }
            })?;
            if gap_start != 0 {
                gaps.push((gap_start - step, range.until - step));
            }
            for &(tstart, tstop) in gaps.iter() {
                written += fill(
                    src,
                    &src_archives,
                    dst,
                    (tstart, tstop),
                    now,
                    src_bytes,
                    points,
                )?;
            }
            start_from = from_time;
        }
        Ok(written)
    })
}

/// carbonate's `fill(src, dst, tstart, tstop)`: copies src's known points in `(tstart, tstop]`
/// into dst, from src's highest-precision archive that has them. `archives`: src's, by
/// increasing retention.
fn fill<S: Storage, D: Storage>(
    src: &Whisper<S>,
    archives: &[ArchiveInfo],
    dst: &mut Whisper<D>,
    (tstart, tstop): (i64, i64),
    now: i64,
    bytes: &mut Vec<u8>,
    points: &mut Vec<(i64, f64)>,
) -> Result<u64> {
    let src_time = now - i64::from(src.header().max_retention);
    if tstart < src_time && tstop < src_time {
        return Ok(0);
    }
    let mut tstop = tstop;
    let mut written = 0;
    for archive in archives {
        let rtime = now - archive.retention();
        if tstop <= rtime {
            continue;
        }
        let from_time = rtime.max(tstart);
        let Some(range) = src.fetch_range(from_time, Some(tstop), now, None)? else {
            return Ok(written);
        };
        points.clear();
        src.fetch_slots(&range, bytes, |t, value| {
            if let Some(v) = value {
                points.push((t, v));
            }
        })?;
        points.reverse(); // newest first, as carbonate sorts them
        dst.update_many(points, now)?;
        written += points.len() as u64;
        tstop = from_time;
        if tstart == tstop {
            break;
        }
    }
    Ok(written)
}
