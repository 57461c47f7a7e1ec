//! Safe fill, tested by properties on random file pairs and by the cases that tell it apart from
//! carbonate's fill.

use bucky_shared::fill::{self, FillMode, FillOptions};
use bucky_shared::whisper::{
    Aggregation, ArchiveSpec, CreateOptions, Image, POINT_SIZE, Whisper, create_image,
};
use proptest::prelude::*;

const NOW: i64 = 1_700_000_037;

/// A file with `schema`, holding `points` written carbon-style: one update_many per block, with
/// the clock just after the block, so lower archives hold propagated aggregates.
fn file_with(
    schema: &[ArchiveSpec],
    agg: Aggregation,
    xff: f64,
    points: &[(i64, f64)],
) -> Whisper<Image> {
    let options = CreateOptions {
        x_files_factor: xff,
        aggregation: agg,
        ..CreateOptions::default()
    };
    let mut file = Whisper::open(create_image(schema, &options).unwrap(), "test.wsp").unwrap();
    for block in points.chunks(17) {
        let clock = block.last().unwrap().0.max(NOW - 1_000_000) + 1;
        file.update_many(block, clock.min(NOW)).unwrap();
    }
    file
}

/// Points of a random walk over `span` seconds before NOW, every `step`, minus `holes`.
fn series(step: i64, span: i64, seed: u64, holes: &[(i64, i64)], offset: f64) -> Vec<(i64, f64)> {
    let mut value = (seed % 100) as f64;
    let mut state = seed | 1;
    (0..span / step)
        .map(|i| NOW - span + i * step)
        .filter(|t| {
            !holes
                .iter()
                .any(|&(a, len)| *t >= NOW - a && *t < NOW - a + len)
        })
        .map(|t| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            value += (state % 7) as f64 - 3.0;
            (
                t,
                if state.is_multiple_of(11) {
                    0.0
                } else {
                    value + offset
                },
            )
        })
        .collect()
}

/// Every slot of every archive window: `(archive index, timestamp, known value)`.
fn known_points(file: &Whisper<Image>) -> Vec<(usize, i64, Option<f64>)> {
    let mut out = Vec::new();
    for (i, a) in file.header().archives.iter().enumerate() {
        let step = i64::from(a.seconds_per_point);
        let series = file
            .fetch_with_precision(NOW - a.retention() + 1, Some(NOW), NOW, Some(step))
            .unwrap()
            .unwrap();
        out.extend(series.points().map(|(t, v)| (i, t, v)));
    }
    out
}

fn safe_fill(src: &Whisper<Image>, dst: &mut Whisper<Image>) -> fill::FillReport {
    fill::fill_images(src, dst, &FillOptions::new(FillMode::Safe, NOW)).unwrap()
}

prop_compose! {
    /// A schema of two or three archives with precisions that divide each other.
    fn schema()(base in prop::sample::select(vec![10u32, 30, 60]),
                k1 in 2u32..6, k2 in 2u32..5, p0 in 40u32..120, three in any::<bool>())
               -> Vec<ArchiveSpec> {
        let first = ArchiveSpec::new(base, p0);
        let second = ArchiveSpec::new(base * k1, p0 / k1 * 3 + k1);
        if three {
            let third = ArchiveSpec::new(base * k1 * k2, second.points / k2 * 3 + k2);
            vec![first, second, third]
        } else {
            vec![first, second]
        }
    }
}

fn holes() -> impl Strategy<Value = Vec<(i64, i64)>> {
    prop::collection::vec((0i64..40_000, 1i64..3_000), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn safe_fill_never_changes_present_points_and_fills_what_src_supplies(
        dst_schema in schema(),
        same_schema in any::<bool>(),
        other_schema in schema(),
        agg in prop::sample::select(Aggregation::ALL.to_vec()),
        xff in prop::sample::select(vec![0.0, 0.3, 0.5, 1.0]),
        dst_holes in holes(), src_holes in holes(),
        seed in any::<u64>(),
    ) {
        let src_schema = if same_schema { dst_schema.clone() } else { other_schema };
        let span = dst_schema.last().unwrap().retention() as i64;
        let step = i64::from(dst_schema[0].seconds_per_point);
        let src = file_with(&src_schema, agg, xff,
            &series(step, span, seed, &src_holes, 0.25));
        let mut dst = file_with(&dst_schema, agg, xff, &series(step, span, seed, &dst_holes, 0.0));
        let src_bytes = src.storage().bytes().to_vec();
        let before = known_points(&dst);
        let before_bytes = dst.storage().bytes().to_vec();
        safe_fill(&src, &mut dst);
        let after = known_points(&dst);

        // src is never modified.
        prop_assert_eq!(src.storage().bytes(), &src_bytes[..]);
        let src_points = known_points(&src);
        for ((i, t, was), (_, _, now)) in before.iter().zip(&after) {
            let archive = dst.header().archives[*i];
            match was {
                // A present point keeps its exact bits, 0.0 included.
                Some(v) => prop_assert_eq!(now.map(f64::to_bits), Some(v.to_bits()), "archive {} t {}", i, t),
                None => {
                    // A gap src holds at the same precision is filled with src's value.
                    let same = src_points.iter().find(|(j, ts, _)| {
                        src.header().archives[*j].seconds_per_point == archive.seconds_per_point && ts == t
                    });
                    if let Some((_, _, Some(v))) = same {
                        prop_assert_eq!(now.map(f64::to_bits), Some(v.to_bits()), "archive {} t {}", i, t);
                    }
                }
            }
        }
        // Nothing outside the archives' data slots changed, and future slots are untouched.
        prop_assert_eq!(&dst.storage().bytes()[..dst.header().size()], &before_bytes[..dst.header().size()]);

        // A second fill has nothing left to do.
        let again = safe_fill(&src, &mut dst);
        prop_assert_eq!(again.points_written, 0);
    }
}

/// dst `60s` with gaps, src `10s` only: dst slots are aggregated from src's finer data with dst's
/// method and xff; a slot whose src data is too sparse for xff stays empty.
#[test]
fn finer_src_data_is_aggregated_with_dst_rules() {
    let src_schema = [ArchiveSpec::new(10, 600)];
    let dst_schema = [ArchiveSpec::new(60, 100)];
    let mut src_points = series(10, 6000, 7, &[], 0.0);
    // Leave the 60s interval that starts 600s before NOW with only 2 of 6 points.
    let sparse_start = NOW - NOW % 60 - 600;
    src_points.retain(|(t, _)| !(*t >= sparse_start + 20 && *t < sparse_start + 60));
    let src = file_with(&src_schema, Aggregation::Max, 0.5, &src_points);
    let mut dst = file_with(&dst_schema, Aggregation::Max, 0.5, &[]);
    let report = safe_fill(&src, &mut dst);
    assert!(report.points_written > 50, "{report:?}");
    let dst_series = dst.fetch(NOW - 5000, None, NOW).unwrap().unwrap();
    let src_series = src.fetch(NOW - 5000, None, NOW).unwrap().unwrap();
    for (t, v) in dst_series.points() {
        let slots: Vec<f64> = src_series
            .points()
            .filter(|(ts, _)| *ts >= t && *ts < t + 60)
            .filter_map(|(_, v)| v)
            .collect();
        if t == sparse_start {
            assert_eq!(v, None, "2 of 6 known is below xff 0.5");
        } else if slots.len() >= 3 {
            assert_eq!(v, slots.iter().copied().reduce(f64::max), "t {t}");
        }
    }
}

/// The cases that set safe mode apart from carbonate's: a stored 0.0 and the point after a gap
/// are kept, single-slot and trailing gaps are filled, lower archives are not re-aggregated.
#[test]
fn safe_mode_keeps_what_carbonate_mode_overwrites() {
    let schema = [ArchiveSpec::new(60, 120), ArchiveSpec::new(600, 100)];
    let dst_points: Vec<(i64, f64)> = series(60, 7200, 3, &[], 0.0)
        .into_iter()
        .filter(|(t, _)| {
            let age = NOW - t;
            !(age > 3000 && age <= 3060) && age > 240 // a single-slot gap and a trailing gap
        })
        .map(|(t, v)| {
            if NOW - t == 1800 - NOW % 60 {
                (t, 0.0)
            } else {
                (t, v)
            }
        })
        .collect();
    let src_points: Vec<(i64, f64)> = series(60, 7200, 3, &[], 0.25);
    let src = file_with(&schema, Aggregation::Average, 0.5, &src_points);
    let dst_original = file_with(&schema, Aggregation::Average, 0.5, &dst_points);

    let mut safe = Whisper::open(dst_original.storage().clone(), "safe.wsp").unwrap();
    safe_fill(&src, &mut safe);
    let mut carb = Whisper::open(dst_original.storage().clone(), "carb.wsp").unwrap();
    fill::fill_images(&src, &mut carb, &FillOptions::new(FillMode::Carbonate, NOW)).unwrap();

    let before = known_points(&dst_original);
    let after_safe = known_points(&safe);
    let after_carb = known_points(&carb);
    let mut zero_kept = false;
    let mut carbonate_changed_present = false;
    for ((b, s), c) in before.iter().zip(&after_safe).zip(&after_carb) {
        if let Some(v) = b.2 {
            assert_eq!(
                s.2.map(f64::to_bits),
                Some(v.to_bits()),
                "safe changed {b:?}"
            );
            zero_kept |= v == 0.0;
            carbonate_changed_present |= c.2.map(f64::to_bits) != Some(v.to_bits());
        } else if b.0 == 0 {
            let src_value = known_points(&src)
                .into_iter()
                .find(|p| p.0 == 0 && p.1 == b.1)
                .unwrap()
                .2;
            assert_eq!(s.2, src_value, "safe left a fillable gap at {}", b.1);
        }
    }
    assert!(zero_kept, "the stored 0.0 is data and survives a safe fill");
    assert!(
        carbonate_changed_present,
        "carbonate mode replaces some present points (0.0, post-gap)"
    );
}

/// A point from the future in dst's slot is not replaced by an older src point.
#[test]
fn future_points_in_dst_are_left_alone() {
    let schema = [ArchiveSpec::new(60, 30)];
    let src = file_with(
        &schema,
        Aggregation::Average,
        0.5,
        &series(60, 1800, 1, &[], 0.25),
    );
    let mut dst = file_with(&schema, Aggregation::Average, 0.5, &[]);
    let future = NOW - NOW % 60 + 60;
    dst.update_many(&[(future, 99.0)], NOW).unwrap();
    let before = dst.storage().bytes().to_vec();
    let offset = dst.header().archives[0].offset as usize;
    safe_fill(&src, &mut dst);
    let after = dst.storage().bytes();
    assert_eq!(
        &after[offset..offset + POINT_SIZE],
        &before[offset..offset + POINT_SIZE]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// On disk, where safe mode reads only the windows it compares and src only where dst has a
    /// gap, a fill writes exactly the bytes the in-memory fill computes, for any time window.
    #[test]
    fn a_fill_on_disk_writes_what_the_fill_in_memory_computes(
        dst_schema in schema(), other_schema in schema(), same_schema in any::<bool>(),
        dst_holes in holes(), src_holes in holes(), seed in any::<u64>(),
        window in prop::option::of((0i64..30_000, 1i64..30_000)),
    ) {
        let src_schema = if same_schema { dst_schema.clone() } else { other_schema };
        let span = dst_schema.last().unwrap().retention() as i64;
        let step = i64::from(dst_schema[0].seconds_per_point);
        let src = file_with(&src_schema, Aggregation::Average, 0.5,
            &series(step, span, seed, &src_holes, 0.25));
        let dst = file_with(&dst_schema, Aggregation::Average, 0.5,
            &series(step, span, seed, &dst_holes, 0.0));
        let options = FillOptions {
            start_from: window.map(|(newest, _)| NOW - newest),
            end_at: window.map_or(0, |(newest, len)| NOW - newest - len),
            ..FillOptions::new(FillMode::Safe, NOW)
        };

        let mut in_memory = Whisper::open(dst.storage().clone(), "dst.wsp").unwrap();
        let expected = fill::fill_images(&src, &mut in_memory, &options).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (src_path, dst_path) = (tmp.path().join("src.wsp"), tmp.path().join("dst.wsp"));
        std::fs::write(&src_path, src.storage().bytes()).unwrap();
        std::fs::write(&dst_path, dst.storage().bytes()).unwrap();
        let report = fill::fill_files(&src_path, &dst_path, &options).unwrap();
        prop_assert_eq!(report, expected);
        prop_assert!(std::fs::read(&dst_path).unwrap() == in_memory.storage().bytes());
        prop_assert!(std::fs::read(&src_path).unwrap() == src.storage().bytes());
    }
}
