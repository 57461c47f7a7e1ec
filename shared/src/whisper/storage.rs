//! Where a whisper file's bytes live: an open file (positioned reads and writes) or an in-memory
//! image that remembers what each write replaced, so a whole fill can run in memory and then write
//! back exactly the points it changed.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::POINT_SIZE;

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

    /// Reserves disk space for `[offset, offset + len)` without changing any byte, so that a
    /// later write there cannot fail half way for want of space (restored files are sparse: a
    /// point may straddle an allocated and an unallocated page). Storage without holes does
    /// nothing.
    ///
    /// # Errors
    /// No space left, or another allocation failure.
    fn allocate(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

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

    fn allocate(&mut self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::{FallocateFlags, fallocate};
        match fallocate(&*self, FallocateFlags::KEEP_SIZE, offset, len) {
            Ok(()) => Ok(()),
            // A filesystem that cannot preallocate (some network and FUSE filesystems) has to
            // be written as it is; ENOSPC is still reported by the write itself.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// A whisper file held in memory, remembering the bytes each write replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    bytes: Vec<u8>,
    /// `(offset, len)` of every write, in write order; `replaced` holds their old bytes, end to
    /// end, in the same order.
    writes: Vec<(u64, usize)>,
    replaced: Vec<u8>,
}

/// One point a fill changes: where, what was there when it was read, and what it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangedPoint {
    /// Byte offset of the point in the file.
    pub offset: u64,
    /// The point's bytes as read, before any write.
    pub before: [u8; POINT_SIZE],
    /// The point's new bytes.
    pub after: [u8; POINT_SIZE],
}

impl Image {
    /// Wraps bytes read from a file; nothing is changed yet.
    pub fn new(bytes: Vec<u8>) -> Self {
        Image {
            bytes,
            writes: Vec::new(),
            replaced: Vec::new(),
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

    /// Every point whose bytes now differ from what was read, sorted by offset, each with its
    /// original bytes. Whisper writes whole points only, so every write is cut into points from
    /// its own offset.
    pub fn changed_points(&self) -> Vec<ChangedPoint> {
        let mut points = Vec::with_capacity(self.replaced.len() / POINT_SIZE);
        let mut at = 0;
        for &(offset, len) in &self.writes {
            let old = &self.replaced[at..at + len];
            at += len;
            debug_assert_eq!(len % POINT_SIZE, 0, "whisper writes whole points");
            for (i, chunk) in old.chunks_exact(POINT_SIZE).enumerate() {
                points.push(ChangedPoint {
                    offset: offset + (i * POINT_SIZE) as u64,
                    before: chunk.try_into().expect("a whole point"),
                    after: [0; POINT_SIZE],
                });
            }
        }
        // Stable: the first write to a point comes first and holds what was read.
        points.sort_by_key(|p| p.offset);
        points.dedup_by_key(|p| p.offset);
        points.retain_mut(|p| {
            let at = p.offset as usize;
            p.after = self.bytes[at..at + POINT_SIZE]
                .try_into()
                .expect("a whole point");
            p.after != p.before
        });
        points
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
        self.replaced.extend_from_slice(&self.bytes[start..end]);
        self.writes.push((offset, buf.len()));
        self.bytes[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ts: u32, v: f64) -> [u8; POINT_SIZE] {
        let mut p = [0u8; POINT_SIZE];
        p[..4].copy_from_slice(&ts.to_be_bytes());
        p[4..].copy_from_slice(&v.to_be_bytes());
        p
    }

    #[test]
    fn image_lists_changed_points_with_what_was_read() {
        let mut img = Image::new(vec![0; 4 + 5 * POINT_SIZE]);
        assert!(img.changed_points().is_empty());
        let at = |i: usize| (4 + i * POINT_SIZE) as u64;
        img.write_at(&point(60, 1.0), at(3)).unwrap();
        img.write_at(&[point(0, 0.0), point(120, 2.0)].concat(), at(0))
            .unwrap();
        // Written twice: the first write's old bytes are what was read.
        img.write_at(&point(60, 5.0), at(3)).unwrap();
        let changed = img.changed_points();
        // Point 0 was written with the bytes it already held: not a change.
        assert_eq!(
            changed,
            vec![
                ChangedPoint {
                    offset: at(1),
                    before: [0; POINT_SIZE],
                    after: point(120, 2.0),
                },
                ChangedPoint {
                    offset: at(3),
                    before: [0; POINT_SIZE],
                    after: point(60, 5.0),
                },
            ]
        );
        let mut buf = [0u8; POINT_SIZE];
        img.read_at(&mut buf, at(3)).unwrap();
        assert_eq!(buf, point(60, 5.0));
        assert!(img.read_at(&mut buf, at(5)).is_err());
    }
}
