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

/// A whisper file held in memory, with the byte range that writes have touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    bytes: Vec<u8>,
    dirty: Option<(u64, u64)>,
}

impl Image {
    /// Wraps bytes read from a file; nothing is dirty yet.
    pub fn new(bytes: Vec<u8>) -> Self {
        Image { bytes, dirty: None }
    }

    /// The current bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Gives back the bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The half-open byte range `[start, end)` written since creation, if any.
    pub fn dirty_range(&self) -> Option<(u64, u64)> {
        self.dirty
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
        let (lo, hi) = self.dirty.unwrap_or((offset, offset));
        self.dirty = Some((lo.min(offset), hi.max(end as u64)));
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
    fn image_tracks_dirty_range_and_refuses_short_reads() {
        let mut img = Image::new(vec![0; 10]);
        assert_eq!(img.dirty_range(), None);
        img.write_at(&[1, 2], 6).unwrap();
        img.write_at(&[3], 2).unwrap();
        assert_eq!(img.dirty_range(), Some((2, 8)));
        let mut buf = [0u8; 4];
        img.read_at(&mut buf, 5).unwrap();
        assert_eq!(buf, [0, 1, 2, 0]);
        assert!(img.read_at(&mut buf, 8).is_err());
        img.write_at(&[9, 9], 11).unwrap();
        assert_eq!(img.len().unwrap(), 13);
    }
}
