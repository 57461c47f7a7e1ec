//! `update_many`: writing points and propagating them to lower archives, byte-identical to
//! whisper.py 1.1.10, quirks included (see `testdata/vectors/whisper/README.md`).

use super::file::{decode_point, encode_point, slot_offset};
use super::header::POINT_SIZE;
use std::cell::RefCell;

use super::{Error, Result, Storage, Whisper, pyset};

/// Buffers reused from one update to the next: a fill calls `update_many` once per gap.
#[derive(Default)]
struct Scratch {
    newest_first: Vec<(i64, f64)>,
    pending: Vec<(i64, f64)>,
    aligned: Vec<(i64, f64)>,
    /// Packed points of every run, end to end.
    packed: Vec<u8>,
    /// `(first interval, byte range in packed)` per run.
    runs: Vec<(i64, std::ops::Range<usize>)>,
    /// Lower intervals in propagation order.
    order: Vec<i64>,
    /// Higher-archive bytes and slots under one lower interval.
    ring: Vec<u8>,
    slots: Vec<Option<f64>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

impl<S: Storage> Whisper<S> {
    /// whisper.py's `update_many(path, points, now)`. Each point goes to the first archive whose
    /// retention covers its age (points older than every archive are dropped); of several points
    /// in one slot the newest timestamp wins, and between equal timestamps the first given.
    /// Lower archives are then updated by aggregation where enough points are known.
    ///
    /// # Errors
    /// [`Error::TimestampOutOfRange`] before anything is written when a timestamp does not fit
    /// in 32 bits, or a read/write error.
    pub fn update_many(&mut self, points: &[(i64, f64)], now: i64) -> Result<()> {
        if let Some(&(timestamp, _)) = points
            .iter()
            .find(|(t, _)| u32::try_from(*t).is_err() && *t > 0)
        {
            return Err(Error::TimestampOutOfRange {
                path: self.path().to_path_buf(),
                timestamp,
            });
        }
        // Taken, not borrowed: an error drops it, and the next update starts afresh.
        let mut scratch = SCRATCH.with_borrow_mut(std::mem::take);
        self.update_many_with(points, now, &mut scratch)?;
        SCRATCH.with_borrow_mut(|s| *s = scratch);
        Ok(())
    }

    fn update_many_with(
        &mut self,
        points: &[(i64, f64)],
        now: i64,
        scratch: &mut Scratch,
    ) -> Result<()> {
        let mut newest_first = std::mem::take(&mut scratch.newest_first);
        let mut pending = std::mem::take(&mut scratch.pending);
        newest_first.clear();
        newest_first.extend_from_slice(points);
        newest_first.sort_by_key(|p| std::cmp::Reverse(p.0)); // stable, as Python's sort(reverse=True)
        pending.clear();
        let archive_count = self.header().archives.len();
        let mut archive = 0;
        let mut dropped = false;
        for &point in &newest_first {
            let age = now - point.0;
            while self.header().archives[archive].retention() < age {
                if !pending.is_empty() {
                    pending.reverse();
                    self.archive_update_many(archive, &pending, scratch)?;
                    pending.clear();
                }
                archive += 1;
                if archive == archive_count {
                    dropped = true; // the remaining points are older than every archive
                    break;
                }
            }
            if dropped {
                break;
            }
            pending.push(point);
        }
        if !pending.is_empty() {
            pending.reverse();
            self.archive_update_many(archive, &pending, scratch)?;
        }
        scratch.newest_first = newest_first;
        scratch.pending = pending;
        Ok(())
    }

    /// Writes chronologically ordered `points` into archive `index`, then propagates.
    fn archive_update_many(
        &mut self,
        index: usize,
        points: &[(i64, f64)],
        scratch: &mut Scratch,
    ) -> Result<()> {
        let archive = self.header().archives[index];
        let step = archive.step();
        scratch.aligned.clear();
        scratch
            .aligned
            .extend(points.iter().map(|&(t, v)| (t - t.rem_euclid(step), v)));
        contiguous_runs(
            &scratch.aligned,
            step,
            self.path(),
            &mut scratch.packed,
            &mut scratch.runs,
        )?;
        let mut base = self.base_interval(&archive)?;
        if base == 0 {
            base = scratch.runs[0].0; // the file's first update defines where the archive starts
        }
        for (start, bytes) in &scratch.runs {
            let packed = &scratch.packed[bytes.clone()];
            let offset = slot_offset(&archive, base, *start);
            let beyond = offset + packed.len() as i64 - archive.end();
            if beyond > 0 {
                let split = packed.len() - beyond as usize;
                self.write(&packed[..split], offset)?;
                self.write(&packed[split..], i64::from(archive.offset))?;
            } else {
                self.write(packed, offset)?;
            }
        }
        let mut order = std::mem::take(&mut scratch.order);
        let mut higher = index;
        for lower in index + 1..self.header().archives.len() {
            let lower_step = self.header().archives[lower].step();
            let intervals = scratch
                .aligned
                .iter()
                .map(|&(t, _)| t - t.rem_euclid(lower_step));
            pyset::iteration_order_into(intervals, &mut order);
            let mut propagated = false;
            for &interval in &order {
                propagated |= self.propagate(interval, higher, lower, scratch)?;
            }
            if !propagated {
                break;
            }
            higher = lower;
        }
        scratch.order = order;
        Ok(())
    }

    /// whisper.py's `__propagate`: aggregates the higher archive's slots under one lower interval
    /// and writes the result when at least one is known and the known share reaches xff.
    fn propagate(
        &mut self,
        timestamp: i64,
        higher: usize,
        lower: usize,
        scratch: &mut Scratch,
    ) -> Result<bool> {
        let (high, low) = (
            self.header().archives[higher],
            self.header().archives[lower],
        );
        let lower_start = timestamp - timestamp.rem_euclid(low.step());
        let high_base = self.base_interval(&high)?;
        let first = if high_base == 0 {
            i64::from(high.offset)
        } else {
            slot_offset(&high, high_base, lower_start)
        };
        let span = (low.step() / high.step()) * POINT_SIZE as i64;
        let last = (first - i64::from(high.offset) + span) % high.size() + i64::from(high.offset);
        let ring = self.read_ring_into(&high, first, last, &mut scratch.ring)?;
        let slots = &mut scratch.slots;
        slots.clear();
        slots.extend(
            ring.chunks_exact(POINT_SIZE)
                .zip((lower_start..).step_by(high.step() as usize))
                .map(|(chunk, expected)| {
                    let (ts, value) = decode_point(chunk);
                    (i64::from(ts) == expected).then_some(value)
                }),
        );
        let known = slots.iter().flatten().count();
        if known == 0 || (known as f64 / slots.len() as f64) < self.header().xff() {
            return Ok(false);
        }
        let value = self.header().aggregation.apply(slots);
        let packed = encode_point(self.path(), lower_start, value)?;
        let low_base = self.base_interval(&low)?;
        let offset = if low_base == 0 {
            i64::from(low.offset)
        } else {
            slot_offset(&low, low_base, lower_start)
        };
        self.write(&packed, offset)?;
        Ok(true)
    }
}

/// Packs aligned points into runs of consecutive slots: the points end to end in `packed`, and
/// per run its first interval and byte range in `runs`. Of a run of equal intervals the last is
/// kept. whisper.py tests `not previousInterval`, so a point at interval 0 joins the next one
/// whatever its interval; that is kept here.
fn contiguous_runs(
    aligned: &[(i64, f64)],
    step: i64,
    path: &std::path::Path,
    packed: &mut Vec<u8>,
    runs: &mut Vec<(i64, std::ops::Range<usize>)>,
) -> Result<()> {
    packed.clear();
    runs.clear();
    let mut run_start = 0;
    let mut previous: Option<i64> = None;
    let close = |packed: &[u8], run_start: usize, previous: i64| {
        let count = ((packed.len() - run_start) / POINT_SIZE) as i64;
        (previous - step * (count - 1), run_start..packed.len())
    };
    for (i, &(interval, value)) in aligned.iter().enumerate() {
        if aligned.get(i + 1).is_some_and(|next| next.0 == interval) {
            continue;
        }
        let point = encode_point(path, interval, value)?;
        match previous {
            Some(prev) if prev != 0 && interval != prev + step => {
                runs.push(close(packed, run_start, prev));
                run_start = packed.len();
            }
            _ => {}
        }
        packed.extend_from_slice(&point);
        previous = Some(interval);
    }
    if let Some(prev) = previous {
        runs.push(close(packed, run_start, prev));
    }
    Ok(())
}
