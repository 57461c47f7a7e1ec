//! Writing a fill back to a live file: a full disk leaves every point untouched or whole, and a
//! writer that takes no lock (carbon's default) keeps every point it wrote.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use bucky_shared::fill::{self, FillMode, FillOptions, write_back};
use bucky_shared::whisper::{
    CreateOptions, Image, POINT_SIZE, Storage, Whisper, create_image, parse_retentions,
};

const NOW: i64 = 1_700_000_040;
const PAGE: u64 = 4096;

/// A sparse file on a disk with `free` pages left: a write into an unallocated page takes one
/// or, when none is left, stops there with ENOSPC after writing what came before, as a kernel's
/// short write does. `allocate` takes pages the same way.
struct FullDisk {
    bytes: Vec<u8>,
    allocated: BTreeSet<u64>,
    free: usize,
}

impl FullDisk {
    /// `bytes` stored sparse as a restore writes them: all-zero pages are holes.
    fn new(bytes: &[u8], free: usize) -> Self {
        let allocated = bytes
            .chunks(PAGE as usize)
            .enumerate()
            .filter(|(_, page)| page.iter().any(|&b| b != 0))
            .map(|(i, _)| i as u64)
            .collect();
        FullDisk {
            bytes: bytes.to_vec(),
            allocated,
            free,
        }
    }

    fn take_page(&mut self, page: u64) -> io::Result<()> {
        if self.allocated.contains(&page) {
            return Ok(());
        }
        if self.free == 0 {
            return Err(rustix::io::Errno::NOSPC.into());
        }
        self.free -= 1;
        self.allocated.insert(page);
        Ok(())
    }
}

impl Storage for FullDisk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let at = offset as usize;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        for (i, &b) in buf.iter().enumerate() {
            let at = offset + i as u64;
            self.take_page(at / PAGE)?;
            self.bytes[at as usize] = b;
        }
        Ok(())
    }

    fn allocate(&mut self, offset: u64, len: u64) -> io::Result<()> {
        for page in offset / PAGE..=(offset + len - 1) / PAGE {
            self.take_page(page)?;
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

fn file(schema: &[&str]) -> Whisper<Image> {
    let archives = parse_retentions(schema).unwrap();
    Whisper::open(
        create_image(&archives, &CreateOptions::default()).unwrap(),
        "dst.wsp",
    )
    .unwrap()
}

/// src: every minute of the last day. dst: only the last two hours and every tenth minute of
/// the hour before, so its archives are mostly holes.
fn replica_pair() -> (Whisper<Image>, Whisper<Image>) {
    let schema = ["60s:1d", "5m:7d"];
    let mut src = file(&schema);
    let minute = NOW - NOW % 60;
    let all: Vec<(i64, f64)> = (0..1440)
        .map(|i| (minute - i * 60, 1.5 + i as f64))
        .collect();
    src.update_many(&all, NOW).unwrap();
    let mut dst = file(&schema);
    let recent: Vec<(i64, f64)> = all
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| *i < 120 || (*i < 180 && i % 10 == 0))
        .map(|(_, p)| p)
        .collect();
    dst.update_many(&recent, NOW).unwrap();
    (src, dst)
}

/// Offsets of every point slot of `w`.
fn slots(w: &Whisper<Image>) -> Vec<usize> {
    w.header()
        .archives
        .iter()
        .flat_map(|a| (0..a.points as usize).map(|i| a.offset as usize + i * POINT_SIZE))
        .collect()
}

#[test]
fn a_full_disk_leaves_every_point_untouched_or_whole() {
    for mode in [FillMode::Safe, FillMode::Carbonate] {
        let (src, dst) = replica_pair();
        let before = dst.storage().bytes().to_vec();
        let mut filled = Whisper::open(Image::new(before.clone()), "dst.wsp").unwrap();
        fill::fill_images(&src, &mut filled, &FillOptions::new(mode, NOW)).unwrap();
        let after = filled.storage().bytes().to_vec();
        let pages = before.len().div_ceil(PAGE as usize);
        let mut failures = 0;
        for free in 0..=pages {
            let mut disk = FullDisk::new(&before, free);
            let result = write_back::write_changes(
                &filled.storage().changed_points(),
                &mut disk,
                Path::new("dst.wsp"),
            );
            for at in slots(&dst) {
                let point = &disk.bytes[at..at + POINT_SIZE];
                assert!(
                    point == &before[at..at + POINT_SIZE] || point == &after[at..at + POINT_SIZE],
                    "{mode:?}, {free} free pages: the point at byte {at} is half written"
                );
            }
            match result {
                Ok(_) => assert_eq!(disk.bytes, after, "{mode:?}: a write that succeeded"),
                Err(e) => {
                    failures += 1;
                    let text = e.to_string();
                    assert!(
                        text.contains("dst.wsp") && text.contains("No space left on device"),
                        "{text}"
                    );
                    assert_eq!(e.io_kind(), Some(io::ErrorKind::StorageFull));
                    // Space is reserved before anything is written: a failure writes nothing.
                    assert_eq!(disk.bytes, before, "{mode:?}, {free} free pages");
                }
            }
        }
        assert!(
            failures > 0,
            "{mode:?}: the disk never ran out; the test proves nothing"
        );
    }
}

#[test]
fn a_writer_without_a_lock_keeps_every_point_it_wrote() {
    for mode in [FillMode::Safe, FillMode::Carbonate] {
        let (src, dst) = replica_pair();
        let mut filled =
            Whisper::open(Image::new(dst.storage().bytes().to_vec()), "dst.wsp").unwrap();
        fill::fill_images(&src, &mut filled, &FillOptions::new(mode, NOW)).unwrap();

        // While the fill computed, carbon wrote the current minute (present in dst, between two
        // points the fill changes in carbonate mode, a few bytes from them in both) and one
        // slot the fill was about to fill.
        let mut disk =
            Whisper::open(Image::new(dst.storage().bytes().to_vec()), "dst.wsp").unwrap();
        let minute = NOW - NOW % 60;
        let gap = minute - 155 * 60;
        disk.update_many(&[(minute - 130 * 60, -7.0), (gap, -9.0)], NOW)
            .unwrap();
        let carbon_wrote = disk.storage().bytes().to_vec();
        let changed_by_carbon: Vec<usize> = slots(&dst)
            .into_iter()
            .filter(|&at| {
                carbon_wrote[at..at + POINT_SIZE] != dst.storage().bytes()[at..at + POINT_SIZE]
            })
            .collect();
        assert!(!changed_by_carbon.is_empty());

        let mut disk = disk.into_storage();
        let done = write_back::write_changes(
            &filled.storage().changed_points(),
            &mut disk,
            Path::new("dst.wsp"),
        )
        .unwrap();
        assert!(done.kept_live >= 1, "{mode:?}: {done:?}");
        for at in slots(&dst) {
            let point = &disk.bytes()[at..at + POINT_SIZE];
            if changed_by_carbon.contains(&at) {
                assert_eq!(
                    point,
                    &carbon_wrote[at..at + POINT_SIZE],
                    "{mode:?}: carbon's point at {at} lost"
                );
            } else {
                assert_eq!(
                    point,
                    &filled.storage().bytes()[at..at + POINT_SIZE],
                    "{mode:?}: filled point at {at}"
                );
            }
        }
    }
}
