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
//! Fetched slots are scanned a chunk at a time, undecoded, in buffers kept per thread, so a batch
//! of fills does not allocate a decoded series per archive and per gap, and the buffers stay in
//! the CPU's cache.

use std::cell::RefCell;

use crate::whisper::fetch::Chunk;
use crate::whisper::file::{decode_point, is_zero};
use crate::whisper::{ArchiveInfo, POINT_SIZE, Result, Storage, Whisper};

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
            // The slots are scanned first and the gaps filled after: a fill writes into dst,
            // and carbonate scans the values it fetched before writing.
            gaps.clear();
            let mut scan = GapScan {
                gap_start: 0,
                min_gap: archive.step(),
            };
            if overwrite || !range.written() {
                // No slot counts as a value: one gap over the whole range.
                scan.gap_start = if range.slots() > 0 { range.from } else { 0 };
            } else {
                dst.fetch_chunks(&range, dst_bytes, |chunk| scan.chunk(chunk, gaps))?;
            }
            if scan.gap_start != 0 {
                gaps.push((scan.gap_start - range.step, range.until - range.step));
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
        src.fetch_chunks(&range, bytes, |chunk| {
            // Never-written slots (timestamp 0: not the slot's) skipped a run at a time.
            let runs = chunk.bytes.chunks(ZERO_RUN * POINT_SIZE);
            for (k, run) in runs.enumerate().filter(|(_, run)| !is_zero(run)) {
                let mut t = chunk.from + (k * ZERO_RUN) as i64 * chunk.step;
                for point in run.chunks_exact(POINT_SIZE) {
                    let (timestamp, value) = decode_point(point);
                    if i64::from(timestamp) == t {
                        points.push((t, value));
                    }
                    t += chunk.step;
                }
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

/// carbonate's search for gaps in dst's fetched slots: a slot without a value, or holding 0.0
/// (Python's `bool(value)`), opens a gap; the next slot with a value closes it, and a gap of at
/// least `min_gap` seconds is kept as `(gap start - step, closing slot)`.
struct GapScan {
    /// Timestamp of the slot that opened the gap; 0 while none is open (Python's `None`).
    gap_start: i64,
    /// The archive's step: shorter gaps are left alone.
    min_gap: i64,
}

/// Slots a gap scan skips at a time while they are all zero bytes (never written).
const ZERO_RUN: usize = 64;

impl GapScan {
    fn chunk(&mut self, chunk: Chunk<'_>, gaps: &mut Vec<(i64, i64)>) {
        let step = chunk.step;
        let (points, _) = chunk.bytes.as_chunks::<POINT_SIZE>();
        let mut points = points.iter();
        // The timestamp the next point of `points` should carry.
        let mut t = chunk.from;
        // `value != 0.0` on the bits: -0.0 is zero too, a NaN is not.
        let has_value = |t: i64, point: &[u8; POINT_SIZE]| {
            let (timestamp, value) = decode_point(point);
            i64::from(timestamp) == t && value.to_bits() << 1 != 0
        };
        loop {
            if self.gap_start == 0 {
                for point in points.by_ref() {
                    let at = t;
                    t += step;
                    if !has_value(at, point) {
                        self.gap_start = at;
                        break;
                    }
                }
                if self.gap_start == 0 {
                    return;
                }
                continue;
            }
            // In a gap, which in a young file's long archive is mostly never-written slots:
            // those are skipped a run at a time, not decoded one by one.
            let rest = points.as_slice();
            let run = &rest[..rest.len().min(ZERO_RUN)];
            if run.is_empty() {
                return;
            }
            if is_zero(run.as_flattened()) {
                points.nth(run.len() - 1);
                t += run.len() as i64 * step;
                continue;
            }
            for point in points.by_ref().take(run.len()) {
                let at = t;
                t += step;
                if has_value(at, point) {
                    if at - self.gap_start >= self.min_gap {
                        gaps.push((self.gap_start - step, at));
                    }
                    self.gap_start = 0;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn point(ts: u32, value: f64) -> Vec<u8> {
        [ts.to_be_bytes().as_slice(), &value.to_be_bytes()].concat()
    }

    #[test]
    fn a_gap_is_what_python_finds_false_and_may_span_chunks() {
        // Slot i of the first chunk is expected to hold timestamp T + 60 * i.
        const T: u32 = 1_000_000;
        let first: Vec<u8> = [
            point(T, 1.0),
            point(T + 60, -0.0), // false in Python: a gap
            point(T + 120, 2.0),
            point(T + 180, f64::NAN),     // true in Python: a value
            point(T + 240 - 86_400, 5.0), // a point of an earlier lap: no value here
            point(T + 300, 0.0),
            point(T + 360, 3.0),
            point(0, 0.0),
        ]
        .concat();
        let second = point(T + 480, 4.0);
        let scan = |min_gap| {
            let mut scan = GapScan {
                gap_start: 0,
                min_gap,
            };
            let mut gaps = Vec::new();
            for (from, bytes) in [(T, &first), (T + 480, &second)] {
                let chunk = Chunk {
                    from: i64::from(from),
                    step: 60,
                    bytes,
                };
                scan.chunk(chunk, &mut gaps);
            }
            gaps
        };
        let t = |s: i64| i64::from(T) + s;
        assert_eq!(
            scan(60),
            vec![(t(0), t(120)), (t(180), t(360)), (t(360), t(480))]
        );
        assert_eq!(
            scan(120),
            vec![(t(180), t(360))],
            "gaps shorter than the step asked for are left"
        );
    }

    /// What a slot of a generated archive holds.
    #[derive(Debug, Clone, Copy)]
    enum Slot {
        Unwritten,
        Value,
        Zero,
        EarlierLap,
    }

    /// carbonate's loop over decoded slots, as Python runs it.
    fn gaps_as_python(slots: &[Slot], step: i64, min_gap: i64) -> Vec<(i64, i64)> {
        let (mut gaps, mut gap_start) = (Vec::new(), None);
        for (i, slot) in slots.iter().enumerate() {
            let t = 1_000_000 + i as i64 * step;
            if matches!(slot, Slot::Value) {
                if let Some(start) = gap_start.take()
                    && t - start >= min_gap
                {
                    gaps.push((start - step, t));
                }
            } else if gap_start.is_none() {
                gap_start = Some(t);
            }
        }
        gaps
    }

    proptest! {
        #[test]
        fn skipping_unwritten_runs_finds_the_gaps_python_finds(
            // Runs of a kind, so that whole zero runs occur and are broken at every position.
            runs in vec((prop_oneof![
                6 => Just(Slot::Unwritten),
                3 => Just(Slot::Value),
                1 => Just(Slot::Zero),
                1 => Just(Slot::EarlierLap),
            ], 1usize..100), 0..40),
            // Chunks shorter and longer than a zero run.
            chunk in 1usize..200,
            min_gap in prop_oneof![Just(60i64), Just(180)],
        ) {
            let slots: Vec<Slot> = runs
                .iter()
                .flat_map(|&(slot, n)| std::iter::repeat_n(slot, n))
                .collect();
            const STEP: i64 = 60;
            let bytes: Vec<u8> = slots
                .iter()
                .enumerate()
                .flat_map(|(i, slot)| {
                    let t = (1_000_000 + i as i64 * STEP) as u32;
                    match slot {
                        Slot::Unwritten => point(0, 0.0),
                        Slot::Value => point(t, 1.5),
                        Slot::Zero => point(t, 0.0),
                        Slot::EarlierLap => point(t - 86_400, 2.0),
                    }
                })
                .collect();
            let mut scan = GapScan { gap_start: 0, min_gap };
            let mut gaps = Vec::new();
            for (n, bytes) in bytes.chunks(chunk * POINT_SIZE).enumerate() {
                let from = 1_000_000 + (n * chunk) as i64 * STEP;
                scan.chunk(Chunk { from, step: STEP, bytes }, &mut gaps);
            }
            prop_assert_eq!(gaps, gaps_as_python(&slots, STEP, min_gap));
        }
    }
}
