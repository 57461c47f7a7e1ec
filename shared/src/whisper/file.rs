//! [`Whisper`]: a whisper file's storage plus its parsed header, and the slot arithmetic shared by
//! fetch and update.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::header::{METADATA_SIZE, POINT_SIZE};
use super::lock::{DEFAULT_LOCK_TIMEOUT, LockMode, lock_file};
use super::{ArchiveInfo, Error, Header, Image, Result, Storage};

/// How a file is opened, and so which `flock` it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only, under a shared lock.
    Read,
    /// Read and write, under an exclusive lock (the lock whisper and carbon take to write).
    ReadWrite,
}

/// An open whisper file: its bytes and its validated header.
#[derive(Debug)]
pub struct Whisper<S> {
    storage: S,
    header: Header,
    path: PathBuf,
    /// Per archive, its base interval once read non-zero; 0 while unknown. whisper reads the base
    /// before every update and every propagation, several times per gap a carbonate-mode fill
    /// fills. A non-zero base changes only by whole laps of the ring (the first slot is rewritten
    /// one lap later), which leave every slot where it was, so it is kept; a write of ours over
    /// an archive's first slot forgets it, for files whose base is off the step grid.
    bases: Box<[AtomicU32]>,
}

impl Whisper<File> {
    /// Opens `path` and locks it (shared for [`Access::Read`], exclusive for
    /// [`Access::ReadWrite`]), waiting at most [`DEFAULT_LOCK_TIMEOUT`]. The lock is released when
    /// the value is dropped.
    ///
    /// # Errors
    /// The file cannot be opened, stays locked, or is not a valid whisper file.
    pub fn open_file(path: &Path, access: Access) -> Result<Self> {
        Self::open_file_with_timeout(path, access, DEFAULT_LOCK_TIMEOUT)
    }

    /// [`Whisper::open_file`] with an explicit lock timeout.
    ///
    /// # Errors
    /// As [`Whisper::open_file`].
    pub fn open_file_with_timeout(path: &Path, access: Access, timeout: Duration) -> Result<Self> {
        let file = open_locked(path, access, timeout)?;
        Self::open(file, path)
    }
}

impl Whisper<Image> {
    /// Reads the whole of `path` into memory under a shared lock held only while reading.
    ///
    /// # Errors
    /// The file cannot be read, stays locked, or is not a valid whisper file.
    pub fn read_image(path: &Path, timeout: Duration) -> Result<Self> {
        let file = open_locked(path, Access::Read, timeout)?;
        Self::open(read_all(&file, path)?, path)
    }
}

/// Opens `path` with the lock `access` calls for.
pub(crate) fn open_locked(path: &Path, access: Access, timeout: Duration) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(access == Access::ReadWrite)
        .open(path)
        .map_err(|e| Error::io(path, "opening", e))?;
    let mode = match access {
        Access::Read => LockMode::Shared,
        Access::ReadWrite => LockMode::Exclusive,
    };
    lock_file(&file, mode, timeout, path)?;
    Ok(file)
}

/// The whole content of an open file, as an [`Image`].
pub(crate) fn read_all(mut file: &File, path: &Path) -> Result<Image> {
    let mut bytes = Vec::with_capacity(file.len().unwrap_or(0) as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, "reading", e))?;
    Ok(Image::new(bytes))
}

impl<S: Storage> Whisper<S> {
    /// Reads and validates the header of `storage`; `path` names the file in errors.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::BadHeader`], [`Error::Compressed`] or a read error.
    pub fn open(storage: S, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file_len = storage
            .len()
            .map_err(|e| Error::io(&path, "reading size", e))?;
        // Enough for the metadata and for go-carbon's 18-byte magic.
        let mut head = vec![0u8; file_len.min(32) as usize];
        storage
            .read_at(&mut head, 0)
            .map_err(|e| Error::io(&path, "reading header", e))?;
        let table_len = Header::table_len(&head, file_len, &path)?;
        let mut bytes = vec![0u8; (METADATA_SIZE + table_len).min(file_len as usize)];
        storage
            .read_at(&mut bytes, 0)
            .map_err(|e| Error::io(&path, "reading header", e))?;
        let header = Header::parse(&bytes, file_len, &path)?;
        let bases = header.archives.iter().map(|_| AtomicU32::new(0)).collect();
        Ok(Whisper {
            storage,
            header,
            path,
            bases,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The path the file was opened from (or the name given to an image).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives back the storage.
    pub fn into_storage(self) -> S {
        self.storage
    }

    pub(crate) fn read(&self, buf: &mut [u8], offset: i64) -> Result<()> {
        self.storage
            .read_at(buf, offset as u64)
            .map_err(|e| Error::io(&self.path, "reading points", e))
    }

    pub(crate) fn write(&mut self, buf: &[u8], offset: i64) -> Result<()> {
        let written = offset..offset + buf.len() as i64;
        for (archive, base) in self.header.archives.iter().zip(&self.bases) {
            if written.contains(&i64::from(archive.offset)) {
                base.store(0, Ordering::Relaxed);
            }
        }
        self.storage
            .write_at(buf, offset as u64)
            .map_err(|e| Error::io(&self.path, "writing points", e))
    }

    /// The `(timestamp, value)` stored at `offset`.
    pub(crate) fn read_point(&self, offset: i64) -> Result<(u32, f64)> {
        let mut buf = [0u8; POINT_SIZE];
        self.read(&mut buf, offset)?;
        Ok(decode_point(&buf))
    }

    /// The timestamp of an archive's first slot; 0 means the archive was never written.
    pub(crate) fn base_interval(&self, archive: &ArchiveInfo) -> Result<i64> {
        let known = self
            .header
            .archives
            .iter()
            .position(|a| a.offset == archive.offset)
            .map(|index| &self.bases[index]);
        if let Some(base) = known.map(|base| base.load(Ordering::Relaxed))
            && base != 0
        {
            return Ok(i64::from(base));
        }
        let base = self.read_point(i64::from(archive.offset))?.0;
        if let Some(known) = known {
            known.store(base, Ordering::Relaxed);
        }
        Ok(i64::from(base))
    }

    /// Reads the points between two byte offsets of `archive` the way whisper.py does: one read
    /// when `from < until`, otherwise to the archive's end and on from its start (so equal offsets
    /// read the whole archive).
    #[cfg(test)]
    pub(crate) fn read_ring(
        &self,
        archive: &ArchiveInfo,
        from: i64,
        until: i64,
    ) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let len = self.read_ring_into(archive, from, until, &mut buf)?.len();
        buf.truncate(len);
        Ok(buf)
    }

    /// [`Whisper::read_ring`] into the start of `buf`, returned: one buffer serves many reads,
    /// grown when too short and never shrunk, so a short read does not cost the next long one
    /// zeroing what it then overwrites.
    pub(crate) fn read_ring_into<'b>(
        &self,
        archive: &ArchiveInfo,
        from: i64,
        until: i64,
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b [u8]> {
        let (first, len) = if from < until {
            ((until - from) as usize, (until - from) as usize)
        } else {
            let first = (archive.end() - from) as usize;
            (first, first + (until - i64::from(archive.offset)) as usize)
        };
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let out = &mut buf[..len];
        self.read(&mut out[..first], from)?;
        if first < len {
            self.read(&mut out[first..], i64::from(archive.offset))?;
        }
        Ok(out)
    }
}

/// Byte offset of the slot for aligned `interval` in an archive whose first slot holds `base`.
pub(crate) fn slot_offset(archive: &ArchiveInfo, base: i64, interval: i64) -> i64 {
    let distance = (interval - base).div_euclid(archive.step());
    i64::from(archive.offset) + distance.rem_euclid(i64::from(archive.points)) * POINT_SIZE as i64
}

pub(crate) fn decode_point(buf: &[u8]) -> (u32, f64) {
    let ts = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes"));
    let value = f64::from_be_bytes(buf[4..12].try_into().expect("8 bytes"));
    (ts, value)
}

/// Whether every byte is 0: a never-written stretch of an archive.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let (words, rest) = bytes.as_chunks::<16>();
    // Or-ed together without stopping at the first non-zero word, so the compiler can use the
    // widest vector instructions: the bytes tested are in the CPU's cache, and most are zeros.
    let any = words.iter().fold(0, |any, w| any | u128::from_ne_bytes(*w));
    any == 0 && rest.iter().all(|&b| b == 0)
}

/// Packs a point, refusing timestamps that do not fit in whisper's u32 field.
pub(crate) fn encode_point(path: &Path, timestamp: i64, value: f64) -> Result<[u8; POINT_SIZE]> {
    let ts = u32::try_from(timestamp).map_err(|_| Error::TimestampOutOfRange {
        path: path.to_path_buf(),
        timestamp,
    })?;
    let mut buf = [0u8; POINT_SIZE];
    buf[0..4].copy_from_slice(&ts.to_be_bytes());
    buf[4..12].copy_from_slice(&value.to_be_bytes());
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whisper::{CreateOptions, create_image, parse_retentions};

    #[test]
    fn a_base_is_kept_once_known_and_forgotten_when_its_slot_is_written() {
        let schema = parse_retentions(&["60s:1h"]).unwrap();
        let image = create_image(&schema, &CreateOptions::default()).unwrap();
        let mut file = Whisper::open(image, "base.wsp").unwrap();
        let archive = file.header().archives[0];
        assert_eq!(file.base_interval(&archive).unwrap(), 0);
        // An unwritten archive's 0 is not kept: the first update defines the base.
        file.update_many(&[(1_000_020, 1.0)], 1_000_030).unwrap();
        assert_eq!(file.base_interval(&archive).unwrap(), 1_000_020);
        // Our own write over the first slot (here off the lap, as a damaged file may be).
        let point = encode_point(file.path(), 1_000_500, 2.0).unwrap();
        file.write(&point, i64::from(archive.offset)).unwrap();
        assert_eq!(file.base_interval(&archive).unwrap(), 1_000_500);
    }
}
