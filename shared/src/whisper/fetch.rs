//! `fetch`: the values of a time range from the best archive, exactly as whisper.py 1.1.10.

use super::file::{decode_point, slot_offset};
use super::header::POINT_SIZE;
use super::{ArchiveInfo, Error, Result, Storage, Whisper};

/// The result of a fetch: `values[i]` belongs to `from + i * step`; `None` is an unknown slot.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Series {
    /// First timestamp (whisper's `fromInterval`).
    pub from: i64,
    /// End of the range, exclusive (whisper's `untilInterval`).
    pub until: i64,
    /// Seconds between values.
    pub step: i64,
    /// One value per slot.
    pub values: Vec<Option<f64>>,
}

impl Series {
    /// `(timestamp, value)` for every slot.
    pub fn points(&self) -> impl Iterator<Item = (i64, Option<f64>)> + '_ {
        (self.from..self.until)
            .step_by(self.step as usize)
            .zip(self.values.iter().copied())
    }
}

impl<S: Storage> Whisper<S> {
    /// whisper.py's `fetch(path, from, until, now)`: clamps the range to the file's retention and
    /// to `now`, picks the first archive that covers `now - from`, and returns its slots.
    /// `Ok(None)` when the range is wholly in the future or beyond retention.
    ///
    /// # Errors
    /// [`Error::InvalidTimeInterval`] when `from > until`, or a read error.
    pub fn fetch(&self, from: i64, until: Option<i64>, now: i64) -> Result<Option<Series>> {
        self.fetch_with_precision(from, until, now, None)
    }

    /// [`Whisper::fetch`] from the archive with `seconds_per_point` precision (whisper.py's
    /// `archiveToSelect`) instead of the first one that covers the range.
    ///
    /// # Errors
    /// As [`Whisper::fetch`], and [`Error::NoSuchArchive`].
    pub fn fetch_with_precision(
        &self,
        from: i64,
        until: Option<i64>,
        now: i64,
        seconds_per_point: Option<i64>,
    ) -> Result<Option<Series>> {
        let Some(range) = self.fetch_range(from, until, now, seconds_per_point)? else {
            return Ok(None);
        };
        let mut values = Vec::with_capacity(range.slots());
        self.fetch_slots(&range, &mut Vec::new(), |_, value| values.push(value))?;
        Ok(Some(Series {
            from: range.from,
            until: range.until,
            step: range.step,
            values,
        }))
    }

    /// What [`Whisper::fetch_with_precision`] would read, without reading it: the archive and
    /// the slots. `Ok(None)` as there.
    ///
    /// # Errors
    /// As [`Whisper::fetch_with_precision`].
    pub(crate) fn fetch_range(
        &self,
        from: i64,
        until: Option<i64>,
        now: i64,
        seconds_per_point: Option<i64>,
    ) -> Result<Option<FetchRange>> {
        let mut from = from;
        let mut until = until.unwrap_or(now);
        if from > until {
            return Err(Error::InvalidTimeInterval { from, until });
        }
        let oldest = now - i64::from(self.header().max_retention);
        if from > now || until < oldest {
            return Ok(None);
        }
        from = from.max(oldest);
        until = until.min(now);
        let diff = now - from;
        let archives = &self.header().archives;
        let archive =
            match seconds_per_point {
                Some(spp) => archives.iter().find(|a| a.step() == spp).ok_or_else(|| {
                    Error::NoSuchArchive {
                        path: self.path().to_path_buf(),
                        seconds: spp,
                    }
                })?,
                // Like the Python loop, fall back to the last archive when none covers the range.
                None => archives
                    .iter()
                    .find(|a| a.retention() >= diff)
                    .unwrap_or_else(|| archives.last().expect("a header has archives")),
            };
        // whisper.py's `__archive_fetch`.
        let step = archive.step();
        let from_interval = from - from.rem_euclid(step) + step;
        let mut until_interval = until - until.rem_euclid(step) + step;
        if from_interval == until_interval {
            until_interval += step;
        }
        Ok(Some(FetchRange {
            archive: *archive,
            base: self.base_interval(archive)?,
            from: from_interval,
            until: until_interval,
            step,
        }))
    }

    /// Hands each slot of `range` to `visit` in order, as `(timestamp, value)`, `None` where
    /// unknown. The slots are read [`FETCH_CHUNK`] at a time into `bytes`, so a long range is not
    /// held whole. As in whisper.py, a range longer than the archive yields one lap of it.
    ///
    /// # Errors
    /// A read error.
    pub(crate) fn fetch_slots(
        &self,
        range: &FetchRange,
        bytes: &mut Vec<u8>,
        mut visit: impl FnMut(i64, Option<f64>),
    ) -> Result<()> {
        if range.base == 0 {
            for i in 0..range.slots() {
                visit(range.from + i as i64 * range.step, None);
            }
            return Ok(());
        }
        self.fetch_chunks(range, bytes, |chunk| {
            for (t, point) in chunk.points() {
                let (ts, value) = decode_point(point);
                visit(t, (i64::from(ts) == t).then_some(value));
            }
        })
    }

    /// The slots of `range` as [`fetch_slots`](Whisper::fetch_slots) reads them, handed over
    /// raw a chunk at a time, for scans that decide on bytes without decoding every point. An
    /// archive never written ([`FetchRange::written`] false) yields no chunk: every slot of it
    /// is unknown.
    ///
    /// # Errors
    /// A read error.
    pub(crate) fn fetch_chunks(
        &self,
        range: &FetchRange,
        bytes: &mut Vec<u8>,
        mut visit: impl FnMut(Chunk<'_>),
    ) -> Result<()> {
        let slots = range.slots();
        if range.base == 0 {
            return Ok(());
        }
        let archive = &range.archive;
        let points = i64::from(archive.points);
        let first = (slot_offset(archive, range.base, range.from) - i64::from(archive.offset))
            / POINT_SIZE as i64;
        let offset = |k: usize| {
            i64::from(archive.offset) + (first + k as i64).rem_euclid(points) * POINT_SIZE as i64
        };
        for start in (0..slots).step_by(FETCH_CHUNK) {
            let end = (start + FETCH_CHUNK).min(slots);
            let bytes = self.read_ring_into(archive, offset(start), offset(end), bytes)?;
            visit(Chunk {
                from: range.from + start as i64 * range.step,
                step: range.step,
                bytes,
            });
        }
        Ok(())
    }
}

/// Consecutive slots of a fetch as read: `bytes` holds whole points, the first expected to
/// carry timestamp `from`, each next one `step` later. A slot is known when its stored
/// timestamp is the one expected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk<'a> {
    pub from: i64,
    pub step: i64,
    pub bytes: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// `(expected timestamp, point bytes)` per slot.
    pub fn points(self) -> impl Iterator<Item = (i64, &'a [u8])> {
        (self.from..)
            .step_by(self.step as usize)
            .zip(self.bytes.chunks_exact(POINT_SIZE))
    }
}

/// Slots a fetch reads at a time (48 KiB).
#[cfg(not(test))]
const FETCH_CHUNK: usize = 4096;
/// Small in unit tests, so their small archives are read in several chunks, across the ring's end.
#[cfg(test)]
const FETCH_CHUNK: usize = 7;

/// The archive and slots of one fetch: see [`Whisper::fetch_range`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchRange {
    archive: ArchiveInfo,
    /// The archive's base interval; 0 if never written.
    base: i64,
    /// First timestamp (whisper's `fromInterval`).
    pub from: i64,
    /// End of the range, exclusive (whisper's `untilInterval`).
    pub until: i64,
    pub step: i64,
}

impl FetchRange {
    /// Whether the archive was ever written (its first slot holds a timestamp).
    pub fn written(&self) -> bool {
        self.base != 0
    }

    /// How many slots the fetch yields: one per step of the range, or one lap of the archive
    /// when the range is longer (whisper reads from the first slot's offset to the last's).
    pub fn slots(&self) -> usize {
        // `from` and `until` are both on the step's grid, so the distance between their slots
        // is the steps between them, whatever the base.
        let steps = (self.until - self.from).div_euclid(self.step).max(0);
        if self.base == 0 {
            return steps as usize;
        }
        let points = i64::from(self.archive.points);
        match steps.rem_euclid(points) {
            0 => points as usize,
            n => n as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::{ArchiveSpec, CreateOptions, create_image};
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000;

    proptest! {
        /// Read a chunk at a time, a fetch yields what whisper.py's one read of the ring from the
        /// first slot's offset to the last's yields: one value per slot, one lap at most.
        #[test]
        fn a_chunked_fetch_reads_what_one_read_of_the_ring_reads(
            written in 0usize..60,
            from_back in 0i64..2_000,
            span in 0i64..2_000,
            precision in prop::option::of(prop::sample::select(vec![10i64, 60])),
        ) {
            let schema = [ArchiveSpec::new(10, 20), ArchiveSpec::new(60, 12)];
            let image = create_image(&schema, &CreateOptions::default()).unwrap();
            let mut file = Whisper::open(image, "t.wsp").unwrap();
            let points: Vec<(i64, f64)> =
                (0..written).map(|i| (NOW - 10 * i as i64, i as f64)).collect();
            if !points.is_empty() {
                file.update_many(&points, NOW).unwrap();
            }
            let from = NOW - from_back;
            let Some(range) = file.fetch_range(from, Some(from + span), NOW, precision).unwrap()
            else {
                return Ok(());
            };
            let expected: Vec<Option<f64>> = if range.base == 0 {
                vec![None; range.slots()]
            } else {
                let at = |t| slot_offset(&range.archive, range.base, t);
                let bytes = file.read_ring(&range.archive, at(range.from), at(range.until)).unwrap();
                bytes
                    .chunks_exact(POINT_SIZE)
                    .zip((range.from..).step_by(range.step as usize))
                    .map(|(p, t)| {
                        let (ts, v) = decode_point(p);
                        (i64::from(ts) == t).then_some(v)
                    })
                    .collect()
            };
            let series = file.fetch_with_precision(from, Some(from + span), NOW, precision)
                .unwrap()
                .unwrap();
            prop_assert_eq!(series.values, expected);
        }
    }
}
