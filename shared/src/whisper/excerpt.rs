//! The part of a whisper file that holds the points of a recent time range: the header, and in
//! each archive the slots from that time on. A replica that missed six hours needs six hours of
//! points, not the file: for `60s:30d,15m:2y` that is about 5 KB of its 1.36 MB. An image made
//! of these ranges, zeros elsewhere, reads as the file within the range and as empty before it
//! (a zero timestamp is no point), so a fill from it writes exactly what a fill from the whole
//! file would write within the range.

use std::ops::Range;
use std::path::Path;

use super::Header;
use super::Result;
use super::file::{decode_point, slot_offset};
use super::header::POINT_SIZE;

/// The byte ranges of the whisper file `bytes` that hold the points from `since` to `now`: the
/// header, then per archive its first slot (whisper places every point relative to it) and the
/// slots from one step before `since` to one step after `now`, split where they wrap around the
/// archive's end. An archive never written sends none.
///
/// # Errors
/// `bytes` is not a whisper file.
pub fn ranges_since(bytes: &[u8], since: i64, now: i64, path: &Path) -> Result<Vec<Range<usize>>> {
    let header = Header::parse(bytes, bytes.len() as u64, path)?;
    let mut ranges = Vec::with_capacity(1 + 3 * header.archives.len());
    ranges.push(0..header.size());
    for archive in &header.archives {
        let start = archive.offset as usize;
        let base = i64::from(decode_point(&bytes[start..start + POINT_SIZE]).0);
        if base == 0 {
            continue;
        }
        let step = archive.step();
        let from = since - since.rem_euclid(step) - step;
        let slots = ((now - from).div_euclid(step) + 2).clamp(1, i64::from(archive.points));
        let first = slot_offset(archive, base, from) as usize;
        let end = archive.end() as usize;
        let wanted = slots as usize * POINT_SIZE;
        let straight = (end - first).min(wanted);
        // The archive's first slot goes too: whisper places every point relative to it.
        let wrapped = wanted - straight;
        if first != start && wrapped == 0 {
            ranges.push(start..start + POINT_SIZE);
        }
        if wrapped > 0 {
            ranges.push(start..start + wrapped);
        }
        ranges.push(first..first + straight);
    }
    Ok(ranges)
}

/// A file of `file_size` bytes holding `pieces` (offset, bytes) and zeros elsewhere.
///
/// # Errors
/// A piece that does not fit in the file, named.
pub fn image_of(
    file_size: usize,
    pieces: impl IntoIterator<Item = (usize, Vec<u8>)>,
) -> std::result::Result<Vec<u8>, String> {
    let mut image = vec![0u8; file_size];
    for (offset, data) in pieces {
        let end = offset
            .checked_add(data.len())
            .filter(|end| *end <= file_size)
            .ok_or_else(|| {
                format!(
                    "a piece of {} bytes at {offset} does not fit in a file of {file_size}",
                    data.len()
                )
            })?;
        image[offset..end].copy_from_slice(&data);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::{CreateOptions, Image, Whisper, create_image, parse_retentions};

    fn file(now: i64) -> Vec<u8> {
        let schema = parse_retentions(&["60s:1d", "15m:30d"]).unwrap();
        let image = create_image(&schema, &CreateOptions::default()).unwrap();
        let mut w = Whisper::open(image, "t.wsp").unwrap();
        // Two days of minutes: the minute archive has wrapped.
        let points: Vec<(i64, f64)> = (0..2 * 1440)
            .map(|i| (now - 2 * 86_400 + i * 60, i as f64))
            .collect();
        w.update_many(&points, now).unwrap();
        w.storage().bytes().to_vec()
    }

    #[test]
    fn an_excerpt_reads_as_the_file_within_its_range_and_empty_before() {
        let now = 1_700_000_000 - 1_700_000_000 % 86_400 + 7 * 3600 + 30;
        let bytes = file(now);
        let since = now - 6 * 3600;
        let ranges = ranges_since(&bytes, since, now, Path::new("t.wsp")).unwrap();
        let sent: usize = ranges.iter().map(ExactSizeIterator::len).sum();
        // A quarter of the day archive, 1/120 of the 30-day one.
        assert!(sent * 10 < bytes.len(), "{sent} of {} bytes", bytes.len());
        let excerpt = image_of(
            bytes.len(),
            ranges.iter().map(|r| (r.start, bytes[r.clone()].to_vec())),
        )
        .unwrap();
        let whole = Whisper::open(Image::new(bytes.clone()), "t.wsp").unwrap();
        let part = Whisper::open(Image::new(excerpt), "t.wsp").unwrap();
        for (from, until) in [(since, now), (since - 60, now), (now - 3600, now - 60)] {
            assert_eq!(
                whole.fetch(from, Some(until), now).unwrap(),
                part.fetch(from, Some(until), now).unwrap(),
                "{from}..{until}"
            );
        }
        let before = part
            .fetch(now - 20 * 3600, Some(since - 3600), now)
            .unwrap()
            .unwrap();
        assert!(
            before.points().all(|(_, v)| v.is_none()),
            "nothing before the range"
        );
        let coarse = part
            .fetch(now - 20 * 86_400, Some(now), now)
            .unwrap()
            .unwrap();
        let known = coarse.points().filter(|(_, v)| v.is_some()).count();
        assert!(
            (24..=27).contains(&known),
            "the 15m archive's last six hours: {known}"
        );
    }

    #[test]
    fn a_fill_from_an_excerpt_writes_what_a_fill_from_the_file_writes() {
        use crate::fill::{FillMode, FillOptions, fill_images};
        let now = 1_700_000_000 - 1_700_000_000 % 86_400 + 7 * 3600 + 30;
        let schema = parse_retentions(&["60s:1d", "15m:30d"]).unwrap();
        let replica = |gap: fn(i64) -> bool| {
            let image = create_image(&schema, &CreateOptions::default()).unwrap();
            let mut w = Whisper::open(image, "r.wsp").unwrap();
            let points: Vec<(i64, f64)> = (0..2 * 1440)
                .filter(|i| !gap(*i))
                .map(|i| {
                    (
                        now - 2 * 86_400 + i * 60,
                        if i % 17 == 0 { 0.0 } else { i as f64 },
                    )
                })
                .collect();
            w.update_many(&points, now).unwrap();
            w.storage().bytes().to_vec()
        };
        let src = replica(|i| i % 7 == 3);
        let dst = replica(|i| i % 11 == 5);
        // Every minute across a quarter hour (the coarse archive's alignment), and far back.
        let sinces = (0..16).map(|m| now - 3600 - m * 60).chain([
            now - 6 * 3600 - 450,
            now - 30 * 3600,
            now - 1,
            now - 61,
        ]);
        for since in sinces {
            let ranges = ranges_since(&src, since, now, Path::new("s.wsp")).unwrap();
            let excerpt = image_of(
                src.len(),
                ranges.iter().map(|r| (r.start, src[r.clone()].to_vec())),
            )
            .unwrap();
            let options = FillOptions {
                end_at: since,
                ..FillOptions::new(FillMode::Safe, now)
            };
            let fill = |from: &[u8]| {
                let src = Whisper::open(Image::new(from.to_vec()), "s.wsp").unwrap();
                let mut dst = Whisper::open(Image::new(dst.clone()), "d.wsp").unwrap();
                let report = fill_images(&src, &mut dst, &options).unwrap();
                (report, dst.storage().bytes().to_vec())
            };
            let (whole, whole_bytes) = fill(&src);
            let (part, part_bytes) = fill(&excerpt);
            assert_eq!(whole, part, "since {since}");
            assert!(whole_bytes == part_bytes, "since {since}");
            // The same on disk, as an agent fills an existing file.
            let on_disk = |from: &[u8]| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("d.wsp");
                std::fs::write(&path, &dst).unwrap();
                let src = Whisper::open(Image::new(from.to_vec()), "s.wsp").unwrap();
                let report = crate::fill::fill_file_from_image(&src, &path, &options).unwrap();
                (report, std::fs::read(&path).unwrap())
            };
            let (whole_disk, whole_disk_bytes) = on_disk(&src);
            let (part_disk, part_disk_bytes) = on_disk(&excerpt);
            assert_eq!(whole_disk, part_disk, "on disk, since {since}");
            assert!(
                whole_disk_bytes == part_disk_bytes,
                "on disk, since {since}"
            );
            assert!(
                whole_disk_bytes == whole_bytes,
                "on disk as in memory, since {since}"
            );
        }
    }

    #[test]
    fn an_archive_never_written_and_bad_pieces() {
        let schema = parse_retentions(&["60s:1d"]).unwrap();
        let image = create_image(&schema, &CreateOptions::default()).unwrap();
        let bytes = Whisper::open(image, "e.wsp")
            .unwrap()
            .storage()
            .bytes()
            .to_vec();
        let ranges = ranges_since(&bytes, 100, 200, Path::new("e.wsp")).unwrap();
        assert_eq!(ranges.len(), 1, "the header only");
        assert!(
            image_of(10, [(8, vec![0; 3])])
                .unwrap_err()
                .contains("does not fit")
        );
        assert!(ranges_since(b"junk", 1, 2, Path::new("j.wsp")).is_err());
    }
}
