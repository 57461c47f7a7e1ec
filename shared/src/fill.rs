//! Filling the gaps of one whisper file (dst) with the data of another (src), as whisper-fill
//! does for replicas of one metric.
//!
//! Two modes:
//! - [`FillMode::Carbonate`]: byte-identical to carbonate 1.1.10's `fill_archives`, quirks
//!   included (see [`carbonate`]). For operators who want exactly what `whisper-fill` does.
//! - [`FillMode::Safe`], the default and the one every restore uses: never changes a point that
//!   is present in dst and fills every empty slot src can supply (rules in [`safe`]).
//!
//! [`fill_files`] locks dst exclusively and src shared for the whole fill, computes the fill in
//! memory, and writes back only the points that changed, safe against a writer that takes no
//! lock and against a full disk ([`write_back`]).

pub mod carbonate;
pub mod safe;
pub mod write_back;

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::whisper::{
    self, Access, ArchiveInfo, DEFAULT_LOCK_TIMEOUT, Image, LockMode, Overlay, ReadCache, Storage,
    Whisper,
};

/// Why a fill failed. Nothing is written to dst unless the fill computed successfully.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, locking or parsing one of the files failed.
    #[error(transparent)]
    Whisper(#[from] whisper::Error),
    /// src and dst are the same file.
    #[error("{path}: source and destination are the same file", path = path.display())]
    SameFile {
        /// The file.
        path: PathBuf,
    },
    /// Options that do not go together.
    #[error("invalid fill options: {0}")]
    InvalidOptions(String),
}

/// Which fill semantics to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FillMode {
    /// Never change a present point; fill every slot src can supply.
    #[default]
    Safe,
    /// carbonate 1.1.10's `fill_archives`, byte for byte.
    Carbonate,
}

/// How to fill.
#[derive(Debug, Clone, PartialEq)]
pub struct FillOptions {
    /// Fill semantics; default [`FillMode::Safe`].
    pub mode: FillMode,
    /// The clock: both files are read as if it were this Unix time.
    pub now: i64,
    /// Newest timestamp to fill (carbonate's `startFrom`); default `now`.
    pub start_from: Option<i64>,
    /// Oldest timestamp to fill (carbonate's `endAt`); default 0, no bound.
    pub end_at: i64,
    /// Carbonate mode only: write every src point, present or not.
    pub overwrite: bool,
    /// Longest wait for each file's lock; default [`DEFAULT_LOCK_TIMEOUT`].
    pub lock_timeout: Duration,
    /// fsync dst after writing; default true.
    pub fsync: bool,
}

impl FillOptions {
    /// Defaults for `mode` at time `now`.
    pub fn new(mode: FillMode, now: i64) -> Self {
        FillOptions {
            mode,
            now,
            start_from: None,
            end_at: 0,
            overwrite: false,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            fsync: true,
        }
    }

    /// The timestamps a safe fill may touch.
    fn window(&self) -> safe::Window {
        safe::Window {
            oldest: self.end_at,
            newest: self.start_from.unwrap_or(self.now),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.overwrite && self.mode == FillMode::Safe {
            return Err(Error::InvalidOptions(
                "overwrite applies to carbonate mode only; safe mode never changes a present point"
                    .into(),
            ));
        }
        if let Some(start) = self.start_from
            && start <= self.end_at
        {
            return Err(Error::InvalidOptions(format!(
                "start-from {start} must be after end-at {}",
                self.end_at
            )));
        }
        Ok(())
    }
}

/// What a fill did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FillReport {
    /// Points written into dst (carbonate mode: points passed to `update_many`).
    pub points_written: u64,
    /// Safe mode: slots filled in each dst archive, highest precision first.
    pub filled_per_archive: Vec<ArchiveFill>,
    /// Points the fill would have written that a writer without a lock (carbon's default)
    /// wrote first: the writer's bytes were kept. Counted in the two fields above, not written.
    pub points_kept_live: u64,
}

/// Slots a safe fill wrote into one dst archive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveFill {
    /// The archive's precision.
    pub seconds_per_point: u32,
    /// Slots filled.
    pub points: u64,
}

/// Fills `dst` from `src` in memory, as [`fill_files`] does on disk.
///
/// # Errors
/// Invalid options, or a whisper error reading either image.
pub fn fill_images<S: Storage, D: Storage>(
    src: &Whisper<S>,
    dst: &mut Whisper<D>,
    options: &FillOptions,
) -> Result<FillReport, Error> {
    options.validate()?;
    let start_from = options.start_from.unwrap_or(options.now);
    match options.mode {
        FillMode::Carbonate => {
            let points = carbonate::fill_archives(
                src,
                dst,
                start_from,
                options.end_at,
                options.overwrite,
                options.now,
            )?;
            Ok(FillReport {
                points_written: points,
                ..FillReport::default()
            })
        }
        FillMode::Safe => {
            let filled = safe::fill(src, dst, options.window(), options.now)?;
            Ok(safe_report(&dst.header().archives, filled))
        }
    }
}

fn safe_report(archives: &[ArchiveInfo], filled: Vec<u64>) -> FillReport {
    let per_archive: Vec<ArchiveFill> = archives
        .iter()
        .zip(filled)
        .map(|(a, points)| ArchiveFill {
            seconds_per_point: a.seconds_per_point,
            points,
        })
        .collect();
    FillReport {
        points_written: per_archive.iter().map(|a| a.points).sum(),
        filled_per_archive: per_archive,
        points_kept_live: 0,
    }
}

/// Fills the file `dst` from the file `src`. dst is locked exclusively and src shared until the
/// fill is done. Safe mode reads only the archive windows it compares and the src ranges that
/// can fill a gap ([`safe::plan`]); carbonate mode reads what carbonate fetches, src gap by gap
/// through a [`ReadCache`], and writes into an [`Overlay`] of dst. Only the points that changed
/// are written back ([`write_back`]), then fsynced unless `options.fsync` is false.
///
/// # Errors
/// Invalid options, src and dst being one file, a lock not obtained within
/// `options.lock_timeout`, a corrupt or truncated file, or an I/O error (a full disk among them,
/// which leaves dst untouched); each names the path and the OS's reason.
pub fn fill_files(src: &Path, dst: &Path, options: &FillOptions) -> Result<FillReport, Error> {
    options.validate()?;
    let dst_file = whisper::file::open_locked(dst, Access::ReadWrite, options.lock_timeout)?;
    let src_file = File::open(src).map_err(|e| whisper::Error::io(src, "opening", e))?;
    // Checked before locking src: its shared lock would wait on our own exclusive one.
    if same_file(&src_file, &dst_file) {
        return Err(Error::SameFile {
            path: dst.to_path_buf(),
        });
    }
    whisper::lock_file(&src_file, LockMode::Shared, options.lock_timeout, src)?;
    // src's shared lock is released (on drop) only once dst is safely written.
    match options.mode {
        FillMode::Safe => fill_locked(&Whisper::open(src_file, src)?, dst_file, dst, options),
        // carbonate reads src a gap at a time, a few points per read: through cached windows.
        FillMode::Carbonate => {
            let src_whisper = Whisper::open(ReadCache::with_buffer(src_file, buffer()), src)?;
            let report = fill_locked(&src_whisper, dst_file, dst, options);
            give_back(src_whisper.into_storage().into_parts().1);
            report
        }
    }
}

/// Fills the file `dst` from `src` already in memory (a downloaded backup), as [`fill_files`]
/// does: dst locked exclusively, changed points written back and fsynced.
///
/// # Errors
/// Invalid options, a lock timeout, or a corrupt or unreadable dst; each names the path.
pub fn fill_file_from_image(
    src: &Whisper<Image>,
    dst: &Path,
    options: &FillOptions,
) -> Result<FillReport, Error> {
    options.validate()?;
    let dst_file = whisper::file::open_locked(dst, Access::ReadWrite, options.lock_timeout)?;
    fill_locked(src, dst_file, dst, options)
}

/// How many points a safe fill of the file `dst` from `src` would write: 0 when dst holds every
/// point of src that its archives can hold (a point at each of src's timestamps, whatever its
/// value). dst is read under a shared lock and never written. This is the check made before a
/// moved metric's source copy may be deleted.
///
/// # Errors
/// A lock not obtained within `lock_timeout`, or a corrupt or unreadable dst; each names the path.
pub fn missing_points(
    src: &Whisper<Image>,
    dst: &Path,
    lock_timeout: std::time::Duration,
    now: i64,
) -> Result<u64, Error> {
    let file = whisper::file::open_locked(dst, Access::Read, lock_timeout)?;
    let dst_whisper = Whisper::open(file, dst)?;
    let window = safe::Window {
        oldest: 0,
        newest: now,
    };
    SCRATCH.with_borrow_mut(|scratch| {
        let filled = safe::plan(src, &dst_whisper, window, now, scratch)?;
        Ok(filled.iter().sum())
    })
}

thread_local! {
    /// Each thread's fill buffers, so a batch of fills reuses them instead of allocating.
    static SCRATCH: RefCell<safe::Scratch> = RefCell::default();
    /// Carbonate mode's buffers (src's [`ReadCache`] windows, dst's [`Overlay`]), given back
    /// after each fill, so a batch does not fault fresh pages in for every pair.
    static BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn buffer() -> Vec<u8> {
    BUFFERS.with_borrow_mut(Vec::pop).unwrap_or_default()
}

fn give_back(buffer: Vec<u8>) {
    BUFFERS.with_borrow_mut(|buffers| {
        if buffers.len() < 2 {
            buffers.push(buffer);
        }
    });
}

fn fill_locked<S: Storage>(
    src: &Whisper<S>,
    dst_file: File,
    dst: &Path,
    options: &FillOptions,
) -> Result<FillReport, Error> {
    let (mut report, written, dst_file) = match options.mode {
        FillMode::Safe => SCRATCH.with_borrow_mut(|scratch| {
            let dst_whisper = Whisper::open(dst_file, dst)?;
            let filled = safe::plan(src, &dst_whisper, options.window(), options.now, scratch)?;
            let report = safe_report(&dst_whisper.header().archives, filled);
            let mut dst_file = dst_whisper.into_storage();
            let written = write_back::write_changes(&scratch.changes, &mut dst_file, dst)?;
            Ok::<_, Error>((report, written, dst_file))
        })?,
        FillMode::Carbonate => {
            let overlay = Overlay::with_buffer(dst_file, buffer());
            let mut dst_overlay = Whisper::open(overlay, dst)?;
            let report = fill_images(src, &mut dst_overlay, options);
            let overlay = dst_overlay.into_storage();
            let changes = overlay.changed_points();
            let (mut dst_file, bytes) = overlay.into_parts();
            give_back(bytes);
            let report = report?;
            let written = write_back::write_changes(&changes, &mut dst_file, dst)?;
            (report, written, dst_file)
        }
    };
    report.points_kept_live = written.kept_live;
    if written.points > 0 && options.fsync {
        dst_file
            .sync_data()
            .map_err(|e| whisper::Error::io(dst, "syncing", e))?;
    }
    Ok(report)
}

fn same_file(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
