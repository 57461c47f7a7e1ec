//! Putting a whisper file into the tree: created atomically when absent (temp name, only non-zero
//! 4 KiB blocks written so zero blocks stay holes, fsync, linked into place without replacing
//! anything), safe-filled under an exclusive lock when present, so no point the node holds is
//! ever changed. The directories new files went into are fsynced once each by [`sync_dirs`] at
//! the end of a restore, not once per file: a crash before that loses renames (files a rerun
//! writes again), never a file's content. New files get carbon's mode (0666 less the umask), not the
//! 0600 of a temp file: graphite-web reads them as another user.

use std::fs::Permissions;
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use bucky_shared::fill::{self, FillMode, FillOptions};
use bucky_shared::whisper::{Image, Whisper};

/// The mode carbon creates whisper files with, before the umask.
pub const DEFAULT_FILE_MODE: u32 = 0o666;

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The file did not exist and was created.
    Created,
    /// The file existed; this many points were filled into it.
    Filled(u64),
}

/// Installs `image` at `path` with restore's fill: safe mode at `now`, waiting at most
/// `lock_timeout` for the file's lock.
///
/// # Errors
/// A write, lock or fill failure, as text naming the path.
pub fn install(
    path: &Path,
    image: &Whisper<Image>,
    lock_timeout: Duration,
    now: i64,
    file_mode: u32,
) -> Result<Installed, String> {
    let options = FillOptions {
        lock_timeout,
        ..FillOptions::new(FillMode::Safe, now)
    };
    install_with(path, image, &options, file_mode)
}

/// Installs `image` at `path`, filling an existing file as `options` say. A new file is
/// fsynced before it is linked into place even when `options.fsync` is false: a crash must
/// never leave a whole-looking file of zeros.
///
/// # Errors
/// A write, lock or fill failure, as text naming the path.
pub fn install_with(
    path: &Path,
    image: &Whisper<Image>,
    options: &FillOptions,
    file_mode: u32,
) -> Result<Installed, String> {
    if !path.exists() {
        match write_new(path, image.storage().bytes(), file_mode) {
            Ok(()) => return Ok(Installed::Created),
            // Created meanwhile (carbon wrote it): fill it instead.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    let report = fill::fill_file_from_image(image, path, options).map_err(|e| format!("{e:#}"))?;
    Ok(Installed::Filled(report.points_written))
}

fn write_new(path: &Path, bytes: &[u8], file_mode: u32) -> std::io::Result<()> {
    const BLOCK: usize = 4096;
    let dir = path.parent().expect("a metric path has a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(crate::tree::RESTORE_TEMP_PREFIX)
        .permissions(Permissions::from_mode(file_mode))
        .tempfile_in(dir)?;
    let file = tmp.as_file_mut();
    file.set_len(bytes.len() as u64)?;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if block.iter().any(|&b| b != 0) {
            file.write_all_at(block, (i * BLOCK) as u64)?;
        }
    }
    file.flush()?;
    file.sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| e.error)?;
    Ok(())
}

/// Fsyncs `dirs` and each of their ancestors below `root` (and `root`), once each, so the
/// files created in them survive a crash. Returns the directories that could not be synced.
pub fn sync_dirs(
    root: &Path,
    dirs: &std::collections::BTreeSet<std::path::PathBuf>,
) -> Vec<String> {
    let mut all = std::collections::BTreeSet::new();
    for dir in dirs {
        let mut at = Some(dir.as_path());
        while let Some(d) = at {
            if !d.starts_with(root) || !all.insert(d.to_path_buf()) {
                break;
            }
            at = d.parent();
        }
    }
    sync_each(&all)
}

/// Fsyncs each of `dirs`; returns the ones that could not be synced, with the reason.
pub fn sync_each(dirs: &std::collections::BTreeSet<std::path::PathBuf>) -> Vec<String> {
    dirs.iter()
        .filter_map(
            |d| match std::fs::File::open(d).and_then(|f| f.sync_all()) {
                Ok(()) => None,
                Err(e) => Some(format!("{}: syncing the directory: {e}", d.display())),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_directories_are_synced_up_to_the_root_and_failures_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("w");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let dirs = [root.join("a/b"), root.join("a")].into_iter().collect();
        assert!(sync_dirs(&root, &dirs).is_empty());
        let gone = [root.join("gone")].into_iter().collect();
        let failed = sync_dirs(&root, &gone);
        assert_eq!(
            failed.len(),
            1,
            "the missing directory; the root syncs: {failed:?}"
        );
        assert!(failed[0].contains("gone"), "{failed:?}");
    }
}
