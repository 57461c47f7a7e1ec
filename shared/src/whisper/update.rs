//! `update_many`: writing points and propagating them to lower archives, byte-identical to
//! whisper.py 1.1.10, quirks included (see `testdata/vectors/whisper/README.md`).

use super::file::{decode_point, encode_point, slot_offset};
use super::header::POINT_SIZE;
use super::{Error, Result, Storage, Whisper, pyset};

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
        let mut newest_first = points.to_vec();
        newest_first.sort_by_key(|p| std::cmp::Reverse(p.0)); // stable, as Python's sort(reverse=True)
        let archive_count = self.header().archives.len();
        let mut archive = 0;
        let mut pending: Vec<(i64, f64)> = Vec::new();
        for point in newest_first {
            let age = now - point.0;
            while self.header().archives[archive].retention() < age {
                if !pending.is_empty() {
                    pending.reverse();
                    self.archive_update_many(archive, &pending)?;
                    pending.clear();
                }
                archive += 1;
                if archive == archive_count {
                    return Ok(()); // the remaining points are older than every archive
                }
            }
            pending.push(point);
        }
        if !pending.is_empty() {
            pending.reverse();
            self.archive_update_many(archive, &pending)?;
        }
        Ok(())
    }

    /// Writes chronologically ordered `points` into archive `index`, then propagates.
    fn archive_update_many(&mut self, index: usize, points: &[(i64, f64)]) -> Result<()> {
        let archive = self.header().archives[index];
        let step = archive.step();
        let aligned: Vec<(i64, f64)> = points
            .iter()
            .map(|&(t, v)| (t - t.rem_euclid(step), v))
            .collect();
        let runs = contiguous_runs(&aligned, step, self.path())?;
        let mut base = self.base_interval(&archive)?;
        if base == 0 {
            base = runs[0].0; // the file's first update defines where the archive starts
        }
        for (start, packed) in &runs {
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
        let mut higher = index;
        for lower in index + 1..self.header().archives.len() {
            let lower_step = self.header().archives[lower].step();
            let intervals = aligned.iter().map(|&(t, _)| t - t.rem_euclid(lower_step));
            let mut propagated = false;
            for interval in pyset::iteration_order(intervals) {
                propagated |= self.propagate(interval, higher, lower)?;
            }
            if !propagated {
                break;
            }
            higher = lower;
        }
        Ok(())
    }

    /// whisper.py's `__propagate`: aggregates the higher archive's slots under one lower interval
    /// and writes the result when at least one is known and the known share reaches xff.
    fn propagate(&mut self, timestamp: i64, higher: usize, lower: usize) -> Result<bool> {
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
        let bytes = self.read_ring(&high, first, last)?;
        let slots: Vec<Option<f64>> = bytes
            .chunks_exact(POINT_SIZE)
            .zip((lower_start..).step_by(high.step() as usize))
            .map(|(chunk, expected)| {
                let (ts, value) = decode_point(chunk);
                (i64::from(ts) == expected).then_some(value)
            })
            .collect();
        let known = slots.iter().flatten().count();
        if known == 0 || (known as f64 / slots.len() as f64) < self.header().xff() {
            return Ok(false);
        }
        let value = self.header().aggregation.apply(&slots);
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

/// Packs aligned points into runs of consecutive slots, `(first interval, packed points)`. Of a
/// run of equal intervals the last is kept. whisper.py tests `not previousInterval`, so a point
/// at interval 0 joins the next one whatever its interval; that is kept here.
fn contiguous_runs(
    aligned: &[(i64, f64)],
    step: i64,
    path: &std::path::Path,
) -> Result<Vec<(i64, Vec<u8>)>> {
    let mut runs = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut previous: Option<i64> = None;
    let close = |current: &[u8], previous: i64| {
        let count = (current.len() / POINT_SIZE) as i64;
        previous - step * (count - 1)
    };
    for (i, &(interval, value)) in aligned.iter().enumerate() {
        if aligned.get(i + 1).is_some_and(|next| next.0 == interval) {
            continue;
        }
        let packed = encode_point(path, interval, value)?;
        match previous {
            Some(prev) if prev != 0 && interval != prev + step => {
                runs.push((close(&current, prev), std::mem::take(&mut current)));
            }
            _ => {}
        }
        current.extend_from_slice(&packed);
        previous = Some(interval);
    }
    if let Some(prev) = previous {
        runs.push((close(&current, prev), current));
    }
    Ok(runs)
}
