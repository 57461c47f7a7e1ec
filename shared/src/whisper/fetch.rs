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
        let mut bytes = Vec::new();
        let Some(raw) = self.fetch_raw(from, until, now, seconds_per_point, &mut bytes)? else {
            return Ok(None);
        };
        Ok(Some(Series {
            from: raw.from,
            until: raw.until,
            step: raw.step,
            values: raw.values(&bytes).collect(),
        }))
    }

    /// [`Whisper::fetch_with_precision`] without decoding: the archive's slots are left in
    /// `bytes` (one buffer serves many fetches) and read through [`RawSeries::values`].
    ///
    /// # Errors
    /// As [`Whisper::fetch_with_precision`].
    pub(crate) fn fetch_raw(
        &self,
        from: i64,
        until: Option<i64>,
        now: i64,
        seconds_per_point: Option<i64>,
        bytes: &mut Vec<u8>,
    ) -> Result<Option<RawSeries>> {
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
        self.archive_fetch_raw(archive, from, until, bytes)
            .map(Some)
    }

    /// whisper.py's `__archive_fetch`: the slots of one archive from `from` to `until`, as bytes.
    fn archive_fetch_raw(
        &self,
        archive: &ArchiveInfo,
        from: i64,
        until: i64,
        bytes: &mut Vec<u8>,
    ) -> Result<RawSeries> {
        let step = archive.step();
        let from_interval = from - from.rem_euclid(step) + step;
        let mut until_interval = until - until.rem_euclid(step) + step;
        if from_interval == until_interval {
            until_interval += step;
        }
        let base = self.base_interval(archive)?;
        let raw = RawSeries {
            from: from_interval,
            until: until_interval,
            step,
            written: base != 0,
        };
        if base == 0 {
            bytes.clear();
        } else {
            self.read_ring_into(
                archive,
                slot_offset(archive, base, from_interval),
                slot_offset(archive, base, until_interval),
                bytes,
            )?;
        }
        Ok(raw)
    }
}

/// A fetch whose slots are still bytes: see [`Whisper::fetch_raw`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawSeries {
    pub from: i64,
    pub until: i64,
    pub step: i64,
    /// Whether the archive was ever written; if not, every slot is unknown.
    written: bool,
}

impl RawSeries {
    /// One value per slot, `None` where unknown, decoded from the bytes the fetch left. As in
    /// whisper.py, a range longer than the archive yields one lap of it.
    pub fn values<'a>(&self, bytes: &'a [u8]) -> impl Iterator<Item = Option<f64>> + 'a {
        let (from, step) = (self.from, self.step);
        let len = if self.written {
            bytes.len() / POINT_SIZE
        } else {
            (self.until - self.from).div_euclid(step).max(0) as usize
        };
        let bytes = if self.written { bytes } else { &[] };
        (0..len).map(move |i| {
            let point = bytes.get(i * POINT_SIZE..(i + 1) * POINT_SIZE)?;
            let (ts, value) = decode_point(point);
            (i64::from(ts) == from + i as i64 * step).then_some(value)
        })
    }
}
