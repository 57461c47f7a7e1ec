//! The safe fill as first written: every src archive decoded whole, every dst slot read and
//! written through the storage. Slow and plain, kept as the oracle the lean [`super::plan`] is
//! checked against.

use crate::whisper::file::{decode_point, encode_point, slot_offset};
use crate::whisper::{ArchiveInfo, POINT_SIZE, Result, Storage, Whisper};

use super::Window;

/// Fills `dst` from `src` by the rules above. Returns the slots filled per dst archive.
///
/// # Errors
/// A read or write error on either file.
pub fn fill<S: Storage, D: Storage>(
    src: &Whisper<S>,
    dst: &mut Whisper<D>,
    window: Window,
    now: i64,
) -> Result<Vec<u64>> {
    let src_archives: Vec<SrcArchive> = src
        .header()
        .archives
        .iter()
        .map(|a| SrcArchive::read(src, *a, now))
        .collect::<Result<_>>()?;
    let dst_archives = dst.header().archives.clone();
    let mut filled = Vec::with_capacity(dst_archives.len());
    for archive in dst_archives {
        filled.push(fill_archive(&src_archives, dst, archive, window, now)?);
    }
    Ok(filled)
}

fn fill_archive<D: Storage>(
    src: &[SrcArchive],
    dst: &mut Whisper<D>,
    archive: ArchiveInfo,
    window: Window,
    now: i64,
) -> Result<u64> {
    let step = archive.step();
    let newest = (now - now.rem_euclid(step)).min(window.newest - window.newest.rem_euclid(step));
    let first = (now - now.rem_euclid(step) - archive.retention() + step)
        .max(window.oldest - window.oldest.rem_euclid(step) + step);
    let aggregation = dst.header().aggregation;
    let xff = dst.header().xff();
    let mut base = dst.base_interval(&archive)?;
    let mut count = 0;
    let mut t = first;
    while t <= newest {
        let offset = if base == 0 {
            None
        } else {
            Some(slot_offset(&archive, base, t))
        };
        let stored = match offset {
            Some(offset) => i64::from(dst.read_point(offset)?.0),
            None => 0,
        };
        if stored < t
            && let Some(value) = supply(src, step, t, |slots| {
                let known = slots.iter().flatten().count();
                (known > 0 && known as f64 / slots.len() as f64 >= xff)
                    .then(|| aggregation.apply(slots))
            })
        {
            let packed = encode_point(dst.path(), t, value)?;
            let offset = offset.unwrap_or_else(|| {
                base = t;
                i64::from(archive.offset)
            });
            dst.write(&packed, offset)?;
            count += 1;
        }
        t += step;
    }
    Ok(count)
}

/// The value src supplies for the dst slot `[t, t + step)`, by rules 2 and 3.
fn supply(
    src: &[SrcArchive],
    step: i64,
    t: i64,
    aggregate: impl Fn(&[Option<f64>]) -> Option<f64>,
) -> Option<f64> {
    if let Some(same) = src.iter().find(|a| a.step == step)
        && let Some(value) = same.value(t)
    {
        return Some(value);
    }
    src.iter()
        .filter(|a| a.step < step && step % a.step == 0)
        .filter(|a| a.holds(t))
        .find_map(|a| {
            let slots: Vec<Option<f64>> = (t..t + step)
                .step_by(a.step as usize)
                .map(|ts| a.value(ts))
                .collect();
            aggregate(&slots)
        })
}

/// One src archive's window, decoded once: its known points by slot.
struct SrcArchive {
    step: i64,
    /// First timestamp of the window.
    first: i64,
    /// `values[i]` belongs to `first + i * step`.
    values: Vec<Option<f64>>,
}

impl SrcArchive {
    fn read<S: Storage>(src: &Whisper<S>, archive: ArchiveInfo, now: i64) -> Result<Self> {
        let step = archive.step();
        let first = now - now.rem_euclid(step) - archive.retention() + step;
        let base = src.base_interval(&archive)?;
        let mut values = vec![None; archive.points as usize];
        if base != 0 {
            let bytes = src.read_ring(
                &archive,
                slot_offset(&archive, base, first),
                slot_offset(&archive, base, first + archive.retention()),
            )?;
            for (i, chunk) in bytes.chunks_exact(POINT_SIZE).enumerate() {
                let (ts, value) = decode_point(chunk);
                if i64::from(ts) == first + i as i64 * step {
                    values[i] = Some(value);
                }
            }
        }
        Ok(SrcArchive {
            step,
            first,
            values,
        })
    }

    fn holds(&self, t: i64) -> bool {
        t >= self.first && t < self.first + self.values.len() as i64 * self.step
    }

    fn value(&self, t: i64) -> Option<f64> {
        if !self.holds(t) || (t - self.first) % self.step != 0 {
            return None;
        }
        self.values[((t - self.first) / self.step) as usize]
    }
}
