//! Where a whisper file's bytes live: an open file (positioned reads and writes) or an in-memory
//! image that remembers what each write replaced, so a whole fill can run in memory and then write
//! back exactly the points it changed.

use std::cell::{Cell, RefCell};
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
        let mut points = points_written(&self.writes, &self.replaced);
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

/// A whisper file seen through the writes made to it in memory: reads come from the file with
/// those writes laid over them, and the file itself is never written. A carbonate-mode fill runs
/// against it (its `update_many` reads back what it wrote to propagate it), then writes back only
/// [`Overlay::changed_points`], without holding the whole file.
///
/// whisper reads a point or a few at a time (a base interval, the slots under one lower-archive
/// point): reads that small, and every write, go through [`CACHE_BLOCK`]-byte blocks of the file
/// kept once read, so a fill makes a read per block it touches, not one per point. Larger reads
/// (a scan over an archive) go to the file, with the blocks written to laid over them. The file
/// must not change underneath (the fill holds its lock).
#[derive(Debug)]
pub struct Overlay<S> {
    base: S,
    /// Blocks read so far, by index, holding the current bytes (sized on first use).
    blocks: RefCell<Vec<Option<Box<[u8]>>>>,
    /// Indexes of the blocks written to.
    dirty: Vec<bool>,
    len: Cell<Option<u64>>,
    /// `(offset, len)` of every write, in write order; `replaced` holds their old bytes, end to
    /// end, in the same order (as [`Image`] keeps them).
    writes: Vec<(u64, usize)>,
    replaced: Vec<u8>,
}

/// Bytes of the file an [`Overlay`] reads at a time for a small read.
pub const CACHE_BLOCK: u64 = 4096;

impl<S: Storage> Overlay<S> {
    /// `base` as it is; nothing written yet.
    pub fn new(base: S) -> Self {
        Overlay {
            base,
            blocks: RefCell::default(),
            dirty: Vec::new(),
            len: Cell::new(None),
            writes: Vec::new(),
            replaced: Vec::new(),
        }
    }

    /// The storage underneath, unchanged.
    pub fn into_inner(self) -> S {
        self.base
    }

    /// Every point whose bytes now differ from what the file holds, sorted by offset.
    ///
    /// # Errors
    /// Reading a point's current bytes failed (it cannot: each was written through a block).
    pub fn changed_points(&self) -> io::Result<Vec<ChangedPoint>> {
        let mut points = points_written(&self.writes, &self.replaced);
        let mut now = [0; POINT_SIZE];
        for point in &mut points {
            self.read_at(&mut now, point.offset)?;
            point.after = now;
        }
        points.retain(|p| p.after != p.before);
        Ok(points)
    }

    /// The file's length, read once.
    fn len_known(&self) -> io::Result<u64> {
        if let Some(len) = self.len.get() {
            return Ok(len);
        }
        let len = self.base.len()?;
        self.len.set(Some(len));
        Ok(len)
    }

    /// Runs `each` on every block `[offset, offset + len)` touches, read from the file if not
    /// yet, with the part of the range it holds: `(block, range in block, range in the buffer)`.
    fn with_blocks(
        &self,
        offset: u64,
        len: usize,
        mut each: impl FnMut(&mut [u8], std::ops::Range<usize>, std::ops::Range<usize>),
    ) -> io::Result<()> {
        let file_len = self.len_known()?;
        let end = offset + len as u64;
        if end > file_len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if len == 0 {
            return Ok(());
        }
        let mut blocks = self.blocks.borrow_mut();
        if blocks.is_empty() {
            blocks.resize(file_len.div_ceil(CACHE_BLOCK) as usize, None);
        }
        for index in offset / CACHE_BLOCK..=(end - 1) / CACHE_BLOCK {
            let start = index * CACHE_BLOCK;
            let block = match &mut blocks[index as usize] {
                Some(block) => block,
                empty => {
                    let mut block = vec![0; (file_len - start).min(CACHE_BLOCK) as usize];
                    self.base.read_at(&mut block, start)?;
                    empty.insert(block.into_boxed_slice())
                }
            };
            let (lo, hi) = (offset.max(start), end.min(start + block.len() as u64));
            each(
                block,
                (lo - start) as usize..(hi - start) as usize,
                (lo - offset) as usize..(hi - offset) as usize,
            );
        }
        Ok(())
    }
}

impl<S: Storage> Storage for Overlay<S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.len() as u64 <= 2 * CACHE_BLOCK {
            return self.with_blocks(offset, buf.len(), |block, inside, into| {
                buf[into].copy_from_slice(&block[inside]);
            });
        }
        self.base.read_at(buf, offset)?;
        let end = offset + buf.len() as u64;
        let blocks = self.blocks.borrow();
        for index in offset / CACHE_BLOCK..=(end - 1) / CACHE_BLOCK {
            if !self.dirty.get(index as usize).copied().unwrap_or(false) {
                continue;
            }
            let block = blocks[index as usize]
                .as_ref()
                .expect("a written block is read");
            let start = index * CACHE_BLOCK;
            let (lo, hi) = (offset.max(start), end.min(start + block.len() as u64));
            buf[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&block[(lo - start) as usize..(hi - start) as usize]);
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !buf.len().is_multiple_of(POINT_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an overlay takes whole points only",
            ));
        }
        let mut replaced = std::mem::take(&mut self.replaced);
        let at = replaced.len();
        replaced.resize(at + buf.len(), 0);
        let result = self.with_blocks(offset, buf.len(), |block, inside, from| {
            let old = &mut replaced[at + from.start..at + from.end];
            old.copy_from_slice(&block[inside.clone()]);
            block[inside].copy_from_slice(&buf[from]);
        });
        if let Err(e) = result {
            replaced.truncate(at);
            self.replaced = replaced;
            return Err(e);
        }
        self.replaced = replaced;
        self.writes.push((offset, buf.len()));
        if !buf.is_empty() {
            let (first, last) = (
                offset / CACHE_BLOCK,
                (offset + buf.len() as u64 - 1) / CACHE_BLOCK,
            );
            if self.dirty.len() <= last as usize {
                self.dirty.resize(last as usize + 1, false);
            }
            self.dirty[first as usize..=last as usize].fill(true);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.len_known()
    }
}

/// The points under `writes` (`(offset, len)` in write order, their old bytes end to end in
/// `replaced`), sorted by offset, each with the bytes it held before the first write to it.
/// `after` is left zero.
fn points_written(writes: &[(u64, usize)], replaced: &[u8]) -> Vec<ChangedPoint> {
    let mut points = Vec::with_capacity(replaced.len() / POINT_SIZE);
    let mut at = 0;
    for &(offset, len) in writes {
        let old = &replaced[at..at + len];
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
    points
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

    #[test]
    fn an_overlay_reads_its_writes_and_lists_what_changed_without_writing_the_base() {
        let at = |i: usize| (4 + i * POINT_SIZE) as u64;
        // Over two cache blocks, so reads within a block, across two and longer are all made.
        let mut original = Image::new(vec![0; 4 + 700 * POINT_SIZE]);
        original.write_at(&point(60, 1.0), at(1)).unwrap();
        original.write_at(&point(7, 7.0), at(699)).unwrap();
        let original = Image::new(original.into_bytes());
        let mut overlay = Overlay::new(original.clone());
        overlay
            .write_at(
                &[point(0, 0.0), point(60, 1.0), point(120, 2.0)].concat(),
                at(0),
            )
            .unwrap();
        overlay.write_at(&point(180, 3.0), at(4)).unwrap();
        overlay.write_at(&point(180, 4.0), at(4)).unwrap();
        overlay.write_at(&point(9, 9.0), at(341)).unwrap(); // the first of block 1
        // A write longer than two blocks, and one to the same points again.
        let long: Vec<u8> = (0..400).flat_map(|i| point(1000 + i, 0.5)).collect();
        overlay.write_at(&long, at(290)).unwrap();
        overlay.write_at(&long[..24], at(290)).unwrap();
        let mut expected = original.clone();
        for (p, i) in [
            (point(120, 2.0), 2),
            (point(180, 4.0), 4),
            (point(9, 9.0), 341),
        ] {
            expected.write_at(&p, at(i)).unwrap();
        }
        expected.write_at(&long, at(290)).unwrap();
        // Reads anywhere, straddling points or blocks or not, see the writes over the base.
        for start in (0..expected.bytes().len()).step_by(7) {
            for len in [1, 5, 12, 13, 30, 4096, 5000, 9000] {
                let len = len.min(expected.bytes().len() - start);
                let mut got = vec![0; len];
                overlay.read_at(&mut got, start as u64).unwrap();
                assert_eq!(got, expected.bytes()[start..start + len], "{start}+{len}");
            }
        }
        assert_eq!(overlay.changed_points().unwrap(), expected.changed_points());
        let mut past_end = [0; 12];
        let end = expected.bytes().len() as u64;
        assert!(overlay.read_at(&mut past_end, end - 6).is_err());
        assert!(overlay.write_at(&[0; 5], at(0)).is_err());
        assert_eq!(overlay.into_inner(), original, "the base is never written");
    }
}
