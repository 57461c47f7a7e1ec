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
        self.archive_fetch(archive, from, until).map(Some)
    }

    /// whisper.py's `__archive_fetch`: the slots of one archive from `from` to `until`.
    pub(crate) fn archive_fetch(
        &self,
        archive: &ArchiveInfo,
        from: i64,
        until: i64,
    ) -> Result<Series> {
        let step = archive.step();
        let from_interval = from - from.rem_euclid(step) + step;
        let mut until_interval = until - until.rem_euclid(step) + step;
        if from_interval == until_interval {
            until_interval += step;
        }
        let base = self.base_interval(archive)?;
        if base == 0 {
            let count = (until_interval - from_interval).div_euclid(step);
            return Ok(Series {
                from: from_interval,
                until: until_interval,
                step,
                values: vec![None; count.max(0) as usize],
            });
        }
        let bytes = self.read_ring(
            archive,
            slot_offset(archive, base, from_interval),
            slot_offset(archive, base, until_interval),
        )?;
        let values = bytes
            .chunks_exact(POINT_SIZE)
            .zip((from_interval..).step_by(step as usize))
            .map(|(chunk, expected)| {
                let (ts, value) = decode_point(chunk);
                (i64::from(ts) == expected).then_some(value)
            })
            .collect();
        Ok(Series {
            from: from_interval,
            until: until_interval,
            step,
            values,
        })
    }
}
