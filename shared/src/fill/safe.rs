//! Safe fill: merge a replica's data into dst without ever changing what dst already has.
//!
//! The rules, for each dst archive `D` (precision `S`, `P` points), over the slots of its
//! window: the aligned timestamps `t` with `now - now % S - S*P < t <= now - now % S`, and
//! `oldest < t <= newest` when a [`Window`] narrows it:
//!
//! 1. **Present points are never changed.** dst's slot for `t` is only written when the
//!    timestamp stored there is older than `t` (never written, or left over from an earlier
//!    lap of the ring). A slot holding `t` is data, whatever its value: `0.0` is data. A slot
//!    holding a newer timestamp (a point from the future) is left alone too.
//! 2. **Same precision first.** If src has an archive with precision `S` whose window holds
//!    `t` and whose slot stores `t`, that value is copied.
//! 3. **Otherwise from finer data.** Else the src archives whose precision `s` divides `S`,
//!    finest first, whose window holds `t`: the `S / s` slots from `t` are aggregated with dst's
//!    aggregation method when at least one is known and the known share reaches dst's
//!    xFilesFactor (whisper's own propagation rule). The first archive that yields a value
//!    supplies it. A coarser src archive never fills a finer dst archive.
//! 4. **No propagation.** Filled points are written into their slot only: dst's lower archives
//!    are filled by rules 2 and 3 from src, never by re-aggregating dst, so a value dst already
//!    had in a lower archive is never recomputed.
//! 5. **Empty archives.** If `D` was never written, the first filled point becomes its base,
//!    as whisper's first write does.
//! 6. **src is only read.**
//!
//! Every empty slot src can supply by rules 2 and 3 is filled, including single-slot gaps and
//! gaps that run to `now` (both of which carbonate's fill leaves or handles differently).

use crate::whisper::file::{decode_point, encode_point, slot_offset};
use crate::whisper::{ArchiveInfo, POINT_SIZE, Result, Storage, Whisper};

/// The timestamps a fill may touch: `oldest < t <= newest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Exclusive lower bound; 0 for none.
    pub oldest: i64,
    /// Inclusive upper bound; usually `now`.
    pub newest: i64,
}

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
