//! `create`: a new whisper file with whisper.py's validation, written to a temp name and renamed
//! into place so no reader ever sees half a file.

use std::io::Write;
use std::path::Path;

use super::header::{ARCHIVE_INFO_SIZE, METADATA_SIZE};
use super::{Aggregation, ArchiveInfo, ArchiveSpec, Error, Header, Image, POINT_SIZE, Result};

/// What `create` writes besides the archives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CreateOptions {
    /// Fraction of known points needed to propagate; default 0.5, stored as f32.
    pub x_files_factor: f64,
    /// Aggregation method; default average.
    pub aggregation: Aggregation,
    /// Leave the data area as a hole instead of writing zeros; default false.
    pub sparse: bool,
    /// Atomically replace an existing file (whisper-create's `--overwrite`); default false.
    pub replace: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            x_files_factor: 0.5,
            aggregation: Aggregation::Average,
            sparse: false,
            replace: false,
        }
    }
}

/// Sorts `archives` by precision and applies whisper.py's `validateArchiveList` rules.
///
/// # Errors
/// [`Error::InvalidConfiguration`] with whisper.py's message for the first broken rule.
pub fn validate_archives(archives: &mut [ArchiveSpec]) -> Result<()> {
    let invalid = |msg: String| Err(Error::InvalidConfiguration(msg));
    if archives.is_empty() {
        return invalid("You must specify at least one archive configuration!".into());
    }
    archives.sort_by_key(|a| a.seconds_per_point);
    for (i, pair) in archives.windows(2).enumerate() {
        let (a, next) = (pair[0], pair[1]);
        if a.seconds_per_point >= next.seconds_per_point {
            return invalid(format!(
                "A Whisper database may not be configured having two archives with the same precision (archive{i}: {a}, archive{}: {next})",
                i + 1
            ));
        }
        if next.seconds_per_point % a.seconds_per_point != 0 {
            return invalid(format!(
                "Higher precision archives' precision must evenly divide all lower precision archives' precision (archive{i}: {}, archive{}: {})",
                a.seconds_per_point,
                i + 1,
                next.seconds_per_point
            ));
        }
        if next.retention() <= a.retention() {
            return invalid(format!(
                "Lower precision archives must cover larger time intervals than higher precision archives (archive{i}: {} seconds, archive{}: {} seconds)",
                a.retention(),
                i + 1,
                next.retention()
            ));
        }
        let per_consolidation = next.seconds_per_point / a.seconds_per_point;
        if a.points < per_consolidation {
            return invalid(format!(
                "Each archive must have at least enough points to consolidate to the next archive (archive{} consolidates {per_consolidation} of archive{i}'s points but it has only {} total points)",
                i + 1,
                a.points
            ));
        }
    }
    Ok(())
}

/// The header `create` writes for `archives` (validated and sorted in place).
fn build_header(archives: &mut [ArchiveSpec], options: &CreateOptions) -> Result<Header> {
    validate_archives(archives)?;
    if !(0.0..=1.0).contains(&options.x_files_factor) {
        return Err(Error::InvalidXff(options.x_files_factor));
    }
    let too_big =
        |what: &str| Error::InvalidConfiguration(format!("{what} does not fit in 32 bits"));
    let max_retention = archives
        .iter()
        .map(ArchiveSpec::retention)
        .max()
        .unwrap_or(0);
    let max_retention = u32::try_from(max_retention).map_err(|_| too_big("the retention"))?;
    let mut offset = (METADATA_SIZE + ARCHIVE_INFO_SIZE * archives.len()) as u64;
    let mut infos = Vec::with_capacity(archives.len());
    for a in archives.iter() {
        infos.push(ArchiveInfo {
            offset: u32::try_from(offset).map_err(|_| too_big("the file size"))?,
            seconds_per_point: a.seconds_per_point,
            points: a.points,
        });
        offset += u64::from(a.points) * POINT_SIZE as u64;
    }
    u32::try_from(offset).map_err(|_| too_big("the file size"))?;
    Ok(Header {
        aggregation: options.aggregation,
        max_retention,
        x_files_factor: options.x_files_factor as f32,
        archives: infos,
    })
}

/// A new whisper file in memory, byte-identical to what `whisper.create` writes.
///
/// # Errors
/// As [`validate_archives`], and [`Error::InvalidXff`].
pub fn create_image(archives: &[ArchiveSpec], options: &CreateOptions) -> Result<Image> {
    let header = build_header(&mut archives.to_vec(), options)?;
    let mut bytes = header.encode();
    bytes.resize(header.file_size() as usize, 0);
    Ok(Image::new(bytes))
}

/// Creates `path`. Written to a temp file in the same directory, fsynced, then linked into place:
/// an existing file is never touched unless `options.replace` asks to swap it atomically.
///
/// # Errors
/// [`Error::Exists`], a configuration error, or an I/O error naming the path.
pub fn create(path: &Path, archives: &[ArchiveSpec], options: &CreateOptions) -> Result<()> {
    let header = build_header(&mut archives.to_vec(), options)?;
    if path.exists() && !options.replace {
        return Err(Error::Exists {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |action| move |e| Error::io(path, action, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".bucky-create-")
        .tempfile_in(dir)
        .map_err(io("creating temp file"))?;
    let file = tmp.as_file_mut();
    file.write_all(&header.encode())
        .map_err(io("writing header"))?;
    let data_len = header.file_size() - header.size() as u64;
    if options.sparse {
        file.set_len(header.file_size()).map_err(io("extending"))?;
    } else {
        let zeros = vec![0u8; 1 << 16];
        let mut remaining = data_len;
        while remaining > 0 {
            let n = remaining.min(zeros.len() as u64) as usize;
            file.write_all(&zeros[..n])
                .map_err(io("writing archives"))?;
            remaining -= n as u64;
        }
    }
    file.sync_all().map_err(io("syncing"))?;
    let persisted = if options.replace {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    persisted.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Exists {
                path: path.to_path_buf(),
            }
        } else {
            Error::io(path, "renaming into place", e.error)
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_rules_are_enforced_with_its_messages() {
        let cases = [
            (vec![], "at least one archive"),
            (
                vec![ArchiveSpec::new(60, 10), ArchiveSpec::new(60, 20)],
                "same precision",
            ),
            (
                vec![ArchiveSpec::new(60, 100), ArchiveSpec::new(90, 100)],
                "evenly divide",
            ),
            (
                vec![ArchiveSpec::new(60, 100), ArchiveSpec::new(120, 50)],
                "larger time intervals",
            ),
            (
                vec![ArchiveSpec::new(60, 3), ArchiveSpec::new(300, 100)],
                "at least enough points",
            ),
        ];
        for (mut archives, needle) in cases {
            let err = validate_archives(&mut archives).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let mut unsorted = vec![ArchiveSpec::new(900, 70080), ArchiveSpec::new(60, 43200)];
        validate_archives(&mut unsorted).unwrap();
        assert_eq!(unsorted[0], ArchiveSpec::new(60, 43200));
    }

    #[test]
    fn create_refuses_existing_files_and_bad_xff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wsp");
        let archives = [ArchiveSpec::new(60, 10)];
        create(&path, &archives, &CreateOptions::default()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16 + 12 + 120);
        assert!(matches!(
            create(&path, &archives, &CreateOptions::default()),
            Err(Error::Exists { .. })
        ));
        let bad = CreateOptions {
            x_files_factor: 1.5,
            ..CreateOptions::default()
        };
        let err = create(&dir.path().join("b.wsp"), &archives, &bad).unwrap_err();
        assert!(matches!(err, Error::InvalidXff(_)));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn sparse_and_dense_files_have_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let archives = [ArchiveSpec::new(60, 1440), ArchiveSpec::new(3600, 720)];
        let dense = dir.path().join("d.wsp");
        let sparse = dir.path().join("s.wsp");
        create(&dense, &archives, &CreateOptions::default()).unwrap();
        let options = CreateOptions {
            sparse: true,
            ..CreateOptions::default()
        };
        create(&sparse, &archives, &options).unwrap();
        let image = create_image(&archives, &CreateOptions::default()).unwrap();
        assert_eq!(
            std::fs::read(&dense).unwrap(),
            std::fs::read(&sparse).unwrap()
        );
        assert_eq!(std::fs::read(&dense).unwrap(), image.bytes());
    }
}
