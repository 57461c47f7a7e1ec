//! Where a whisper file's bytes live: an open file (positioned reads and writes) or an in-memory
//! image that remembers which bytes changed, so a whole fill can run in memory and write back once.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Positioned byte access to a whisper file.
pub trait Storage {
    /// Fills `buf` from `offset`; a short read is an `UnexpectedEof` error.
    ///
    /// # Errors
    /// The underlying read failed or the data ends before `buf` is full.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, extending the storage if needed (as a file would).
    ///
    /// # Errors
    /// The underlying write failed.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Current length in bytes.
    ///
    /// # Errors
    /// The length could not be read.
    fn len(&self) -> io::Result<u64>;

    /// Whether the storage holds no bytes.
    ///
    /// # Errors
    /// The length could not be read.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl Storage for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// A whisper file held in memory, remembering which byte ranges writes have touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    bytes: Vec<u8>,
    /// `[start, end)` of every write, in write order.
    writes: Vec<(u64, u64)>,
}

impl Image {
    /// Wraps bytes read from a file; nothing is dirty yet.
    pub fn new(bytes: Vec<u8>) -> Self {
        Image {
            bytes,
            writes: Vec::new(),
        }
    }

    /// The current bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives back the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The byte ranges `[start, end)` written since creation, sorted, with ranges less than
    /// `merge_gap` bytes apart merged: what must be written back, in few large writes.
    pub fn dirty_ranges(&self, merge_gap: u64) -> Vec<(u64, u64)> {
        let mut writes = self.writes.clone();
        writes.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(writes.len());
        for (start, end) in writes {
            match merged.last_mut() {
                Some(last) if start <= last.1 + merge_gap => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }
}

impl Storage for Image {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.bytes.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::FileTooLarge)?;
        let end = start + buf.len();
        if end > self.bytes.len() {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(buf);
        self.writes.push((offset, end as u64));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tracks_dirty_ranges_and_refuses_short_reads() {
        let mut img = Image::new(vec![0; 10]);
        assert!(img.dirty_ranges(0).is_empty());
        img.write_at(&[1, 2], 6).unwrap();
        img.write_at(&[3], 2).unwrap();
        img.write_at(&[4], 7).unwrap();
        assert_eq!(img.dirty_ranges(0), vec![(2, 3), (6, 8)]);
        assert_eq!(img.dirty_ranges(3), vec![(2, 8)]);
        let mut buf = [0u8; 4];
        img.read_at(&mut buf, 5).unwrap();
        assert_eq!(buf, [0, 1, 4, 0]);
        assert!(img.read_at(&mut buf, 8).is_err());
        img.write_at(&[9, 9], 11).unwrap();
        assert_eq!(img.len().unwrap(), 13);
    }
}
