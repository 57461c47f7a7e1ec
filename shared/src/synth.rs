//! Realistic whisper data for benchmarks and the demo: random-walk series written the way
//! carbon-cache writes them (one `update_many` per block of points, the clock just after it), with
//! outages and single missing points, so files look like a production node's.

use crate::whisper::{self, ArchiveSpec, CreateOptions, Image, Whisper};

/// xorshift64: reproducible pseudo-random numbers without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// `points` one-minute points ending at the minute before `now`: a non-negative random walk,
/// with about one exact 0.0 in 50 (counters at rest).
pub fn random_walk(rng: &mut Rng, now: i64, points: i64) -> Vec<(i64, f64)> {
    let last = now - now % 60 - 60;
    let mut value = rng.below(1000) as f64;
    (0..points)
        .map(|i| {
            value = (value + rng.below(21) as f64 - 10.0).max(0.0);
            let v = if rng.below(50) == 0 {
                0.0
            } else {
                value + rng.below(100) as f64 / 100.0
            };
            (last - (points - 1 - i) * 60, v)
        })
        .collect()
}

/// 1 to 3 outages of 10 minutes to 6 hours and `singles` single missing minutes, within `span`
/// seconds before `now`, as `[start, end)` ranges.
pub fn outages(rng: &mut Rng, now: i64, span: i64, singles: usize) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = (0..1 + rng.below(3))
        .map(|_| {
            let start = now - (rng.next_u64() as i64).rem_euclid(span);
            (
                start,
                start + 600 + (rng.next_u64() as i64).rem_euclid(6 * 3600 - 600),
            )
        })
        .collect();
    out.extend((0..singles).map(|_| {
        let t = now - (rng.next_u64() as i64).rem_euclid(span);
        let t = t - t % 60;
        (t, t + 60)
    }));
    out
}

/// A whisper file of `schema` holding `series` minus `missing`, written carbon-style in blocks
/// of `block` points.
///
/// # Errors
/// An invalid schema.
pub fn carbon_written(
    schema: &[ArchiveSpec],
    series: &[(i64, f64)],
    missing: &[(i64, i64)],
    block: usize,
) -> whisper::Result<Image> {
    let mut file = Whisper::open(
        whisper::create_image(schema, &CreateOptions::default())?,
        "synth.wsp",
    )?;
    let points: Vec<(i64, f64)> = series
        .iter()
        .copied()
        .filter(|(t, _)| !missing.iter().any(|&(a, b)| *t >= a && *t < b))
        .collect();
    for chunk in points.chunks(block.max(1)) {
        let clock = chunk.last().expect("chunks are not empty").0 + 5;
        file.update_many(chunk, clock)?;
    }
    Ok(file.into_storage())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_reproducible_and_files_hold_them() {
        let (a, b) = (
            random_walk(&mut Rng::new(7), 1_700_000_000, 100),
            random_walk(&mut Rng::new(7), 1_700_000_000, 100),
        );
        assert_eq!(a, b);
        let schema = whisper::parse_retentions(&["60s:1d"]).unwrap();
        let image = carbon_written(&schema, &a, &[(a[10].0, a[12].0)], 30).unwrap();
        let file = Whisper::open(image, "x").unwrap();
        let series = file
            .fetch(a[0].0 - 60, Some(a[99].0), a[99].0 + 5)
            .unwrap()
            .unwrap();
        let known = series.values.iter().flatten().count();
        assert_eq!(known, 98, "100 points minus the 2 missing");
    }
}
