//! The whisper header: metadata and archive table, parsed with validation and encoded back.

use std::path::Path;

use super::{Aggregation, Error, Result};

/// Size of the metadata block: `!2LfL`.
pub(crate) const METADATA_SIZE: usize = 16;
/// Size of one archive table entry: `!3L`.
pub(crate) const ARCHIVE_INFO_SIZE: usize = 12;
/// Size of one point: `!Ld`, a u32 timestamp and an f64 value.
pub const POINT_SIZE: usize = 12;
/// The magic that opens go-carbon's compressed whisper files.
const COMPRESSED_MAGIC: &[u8] = b"whisper_compressed";
/// More archives than any sane schema; a count beyond it is a corrupt header, not a request
/// to read gigabytes of archive table.
const MAX_ARCHIVES: u32 = 1024;

/// One archive of a whisper file: where its ring of points starts, its precision and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveInfo {
    /// Byte offset of the archive's first slot.
    pub offset: u32,
    /// Precision: seconds between two slots.
    pub seconds_per_point: u32,
    /// Number of slots.
    pub points: u32,
}

impl ArchiveInfo {
    /// Seconds of history the archive holds: `seconds_per_point * points`.
    pub fn retention(&self) -> i64 {
        i64::from(self.seconds_per_point) * i64::from(self.points)
    }

    /// Bytes of the archive's data area.
    pub fn size(&self) -> i64 {
        i64::from(self.points) * POINT_SIZE as i64
    }

    /// Byte offset just past the archive.
    pub fn end(&self) -> i64 {
        i64::from(self.offset) + self.size()
    }

    pub(crate) fn step(&self) -> i64 {
        i64::from(self.seconds_per_point)
    }
}

/// A parsed whisper header.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Header {
    /// How lower archives aggregate higher ones.
    pub aggregation: Aggregation,
    /// The longest retention, as stored (whisper's `maxRetention`).
    pub max_retention: u32,
    /// Fraction of known points needed to propagate, stored as an f32.
    pub x_files_factor: f32,
    /// The archives, highest precision first.
    pub archives: Vec<ArchiveInfo>,
}

impl Header {
    /// Bytes taken by the metadata and the archive table.
    pub fn size(&self) -> usize {
        METADATA_SIZE + ARCHIVE_INFO_SIZE * self.archives.len()
    }

    /// The file size this header implies: the end of its last archive.
    pub fn file_size(&self) -> u64 {
        self.archives
            .iter()
            .map(|a| a.end() as u64)
            .max()
            .unwrap_or(self.size() as u64)
            .max(self.size() as u64)
    }

    /// xFilesFactor as whisper.py compares it: the stored f32 widened to f64.
    pub fn xff(&self) -> f64 {
        f64::from(self.x_files_factor)
    }

    /// The header's bytes, as whisper.py's `create` writes them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&self.aggregation.id().to_be_bytes());
        out.extend_from_slice(&self.max_retention.to_be_bytes());
        out.extend_from_slice(&self.x_files_factor.to_be_bytes());
        out.extend_from_slice(&(self.archives.len() as u32).to_be_bytes());
        for a in &self.archives {
            out.extend_from_slice(&a.offset.to_be_bytes());
            out.extend_from_slice(&a.seconds_per_point.to_be_bytes());
            out.extend_from_slice(&a.points.to_be_bytes());
        }
        out
    }

    /// Bytes of the archive table needed after the first [`METADATA_SIZE`] bytes, or an error
    /// when the metadata is not whisper's. `file_len` is the size of the whole file.
    pub(crate) fn table_len(metadata: &[u8], file_len: u64, path: &Path) -> Result<usize> {
        if metadata.starts_with(COMPRESSED_MAGIC) {
            return Err(Error::Compressed {
                path: path.to_path_buf(),
            });
        }
        if metadata.len() < METADATA_SIZE {
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                reason: format!(
                    "{} bytes, shorter than the {METADATA_SIZE}-byte header",
                    file_len
                ),
            });
        }
        let count = be_u32(metadata, 12);
        if count == 0 || count > MAX_ARCHIVES {
            return Err(bad(
                path,
                format!("archive count {count} is not in 1..={MAX_ARCHIVES}"),
            ));
        }
        Ok(count as usize * ARCHIVE_INFO_SIZE)
    }

    /// Parses and validates a header. `bytes` holds at least the metadata and archive table;
    /// `file_len` is the size of the file, which must hold every archive.
    ///
    /// # Errors
    /// [`Error::Compressed`], [`Error::Truncated`] or [`Error::BadHeader`] naming `path` and the
    /// first thing found wrong.
    pub fn parse(bytes: &[u8], file_len: u64, path: &Path) -> Result<Header> {
        let table_len = Self::table_len(bytes, file_len, path)?;
        let needed = METADATA_SIZE + table_len;
        if bytes.len() < needed {
            return Err(Error::Truncated {
                path: path.to_path_buf(),
                reason: format!(
                    "the archive table needs {needed} bytes but the file has {file_len}"
                ),
            });
        }
        let aggregation_id = be_u32(bytes, 0);
        let aggregation = Aggregation::from_id(aggregation_id)
            .ok_or_else(|| bad(path, format!("unknown aggregation type {aggregation_id}")))?;
        let max_retention = be_u32(bytes, 4);
        let x_files_factor = f32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(0.0..=1.0).contains(&x_files_factor) {
            return Err(bad(
                path,
                format!("xFilesFactor {x_files_factor} is not in 0..=1"),
            ));
        }
        let archives: Vec<ArchiveInfo> = bytes[METADATA_SIZE..needed]
            .chunks_exact(ARCHIVE_INFO_SIZE)
            .map(|c| ArchiveInfo {
                offset: be_u32(c, 0),
                seconds_per_point: be_u32(c, 4),
                points: be_u32(c, 8),
            })
            .collect();
        let header = Header {
            aggregation,
            max_retention,
            x_files_factor,
            archives,
        };
        header.check_archives(file_len, path)?;
        Ok(header)
    }

    fn check_archives(&self, file_len: u64, path: &Path) -> Result<()> {
        for (i, a) in self.archives.iter().enumerate() {
            if a.seconds_per_point == 0 || a.points == 0 {
                return Err(bad(
                    path,
                    format!(
                        "archive {i} has {} seconds per point and {} points",
                        a.seconds_per_point, a.points
                    ),
                ));
            }
            if (a.offset as usize) < self.size() {
                return Err(bad(
                    path,
                    format!("archive {i} starts at byte {} inside the header", a.offset),
                ));
            }
            if a.end() as u64 > file_len {
                return Err(Error::Truncated {
                    path: path.to_path_buf(),
                    reason: format!(
                        "archive {i} ends at byte {} but the file has {file_len} bytes",
                        a.end()
                    ),
                });
            }
            if let Some(prev) = i.checked_sub(1).map(|p| self.archives[p])
                && prev.seconds_per_point >= a.seconds_per_point
            {
                return Err(bad(
                    path,
                    format!(
                        "archive {i} is not of lower precision than archive {}",
                        i - 1
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn bad(path: &Path, reason: String) -> Error {
    Error::BadHeader {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            aggregation: Aggregation::Sum,
            max_retention: 600,
            x_files_factor: 0.3,
            archives: vec![
                ArchiveInfo {
                    offset: 40,
                    seconds_per_point: 10,
                    points: 6,
                },
                ArchiveInfo {
                    offset: 112,
                    seconds_per_point: 60,
                    points: 10,
                },
            ],
        }
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let h = header();
        let bytes = h.encode();
        assert_eq!(bytes.len(), 40);
        assert_eq!(
            Header::parse(&bytes, h.file_size(), Path::new("x")).unwrap(),
            h
        );
        assert_eq!(h.file_size(), 232);
    }

    #[test]
    fn short_files_are_truncated_not_panics() {
        let h = header();
        let bytes = h.encode();
        for cut in 0..bytes.len() {
            let err = Header::parse(&bytes[..cut], cut as u64, Path::new("m.wsp")).unwrap_err();
            assert!(matches!(err, Error::Truncated { .. }), "cut {cut}: {err}");
            assert!(err.to_string().contains("m.wsp"));
        }
        let err = Header::parse(&bytes, 200, Path::new("m.wsp")).unwrap_err();
        assert!(
            err.to_string().contains("archive 1 ends at byte 232"),
            "{err}"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let mut bytes = header().encode();
        bytes[3] = 9;
        let err = Header::parse(&bytes, 232, Path::new("m.wsp")).unwrap_err();
        assert!(
            err.to_string().contains("unknown aggregation type 9"),
            "{err}"
        );
        let mut h = header();
        h.archives.swap(0, 1);
        h.archives[0].offset = 40;
        h.archives[1].offset = 160;
        let err = Header::parse(&h.encode(), 300, Path::new("m.wsp")).unwrap_err();
        assert!(err.to_string().contains("not of lower precision"), "{err}");
    }

    #[test]
    fn compressed_whisper_is_refused_by_name() {
        let mut bytes = b"whisper_compressed".to_vec();
        bytes.resize(64, 0);
        let err = Header::parse(&bytes, 64, Path::new("c.wsp")).unwrap_err();
        assert!(matches!(err, Error::Compressed { .. }));
        assert!(err.to_string().contains("go-carbon"));
    }
}
