//! Where a whisper file's bytes live: an open file (positioned reads and writes) or an in-memory
//! image that remembers what each write replaced, so a whole fill can run in memory and then write
//! back exactly the points it changed.

use std::cell::RefCell;
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
        changed_points(&self.writes, &self.replaced, &self.bytes)
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

/// A whisper file seen through the writes made to it in memory: reads come from the file as it
/// was when first read, with those writes laid over them, and the file itself is never written.
/// A carbonate-mode fill runs against it (its `update_many` reads back what it wrote to propagate
/// it), then writes back only [`Overlay::changed_points`], each with the bytes the fill first
/// read there, so a point a live writer changed meanwhile is recognised and kept
/// ([`crate::fill::write_back`]).
///
/// The file is read into a buffer of its size only where touched, 4 KiB ([`CACHE_BLOCK`]) at a
/// time at least: whisper reads a point or a few at a time (a base interval, the slots under one
/// lower-archive point), and a fill makes a read per block it touches, not one per point; a scan
/// over an archive is one read of the blocks it lacks. The buffer can be handed from one file to
/// the next ([`Overlay::with_buffer`], [`Overlay::into_parts`]).
#[derive(Debug)]
pub struct Overlay<S> {
    base: S,
    /// The file's bytes as the overlay sees them, valid where `loaded`.
    bytes: RefCell<Vec<u8>>,
    /// Per block, whether it was read (sized on first use).
    loaded: RefCell<Vec<bool>>,
    /// `(offset, len)` of every write, in write order; `replaced` holds their old bytes, end to
    /// end, in the same order (as [`Image`] keeps them).
    writes: Vec<(u64, usize)>,
    replaced: Vec<u8>,
}

/// The least an [`Overlay`] reads of the file at a time.
const CACHE_BLOCK: u64 = 4096;

impl<S: Storage> Overlay<S> {
    /// `base` as it is; nothing written yet.
    pub fn new(base: S) -> Self {
        Overlay::with_buffer(base, Vec::new())
    }

    /// [`Overlay::new`], holding the file's bytes in `buffer` (its content is ignored).
    pub fn with_buffer(base: S, buffer: Vec<u8>) -> Self {
        Overlay {
            base,
            bytes: RefCell::new(buffer),
            loaded: RefCell::default(),
            writes: Vec::new(),
            replaced: Vec::new(),
        }
    }

    /// The storage underneath, unchanged, and the buffer, for another overlay.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.base, self.bytes.into_inner())
    }

    /// Every point whose bytes now differ from what was first read, sorted by offset.
    pub fn changed_points(&self) -> Vec<ChangedPoint> {
        changed_points(&self.writes, &self.replaced, &self.bytes.borrow())
    }

    /// Reads the blocks of `[offset, offset + len)` not read yet, each run of them in one read,
    /// and returns the bytes' range in the buffer.
    fn load(&self, offset: u64, len: usize) -> io::Result<std::ops::Range<usize>> {
        let mut loaded = self.loaded.borrow_mut();
        let mut bytes = self.bytes.borrow_mut();
        if loaded.is_empty() {
            let file_len = self.base.len()?;
            // Only a fresh buffer's growth is zeroed; a reused one is overwritten as read.
            bytes.resize(file_len as usize, 0);
            loaded.resize(file_len.div_ceil(CACHE_BLOCK).max(1) as usize, false);
        }
        let end = offset + len as u64;
        if end > bytes.len() as u64 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if len == 0 {
            return Ok(offset as usize..offset as usize);
        }
        let (first, last) = (
            (offset / CACHE_BLOCK) as usize,
            ((end - 1) / CACHE_BLOCK) as usize,
        );
        let mut index = first;
        while index <= last {
            if loaded[index] {
                index += 1;
                continue;
            }
            let run = index;
            while index <= last && !loaded[index] {
                loaded[index] = true;
                index += 1;
            }
            let from = run * CACHE_BLOCK as usize;
            let to = (index * CACHE_BLOCK as usize).min(bytes.len());
            if let Err(e) = self.base.read_at(&mut bytes[from..to], from as u64) {
                loaded[run..index].fill(false);
                return Err(e);
            }
        }
        Ok(offset as usize..end as usize)
    }
}

impl<S: Storage> Storage for Overlay<S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if (buf.len() as u64) < 4 * CACHE_BLOCK {
            let range = self.load(offset, buf.len())?;
            buf.copy_from_slice(&self.bytes.borrow()[range]);
            return Ok(());
        }
        // A scan: read into the caller's buffer (small, and hot in the CPU's cache: a kernel
        // copy into a cold buffer the size of the file costs twice as much), then keep the blocks
        // it covers whole that were not read yet, and lay the others over it.
        self.load(0, 0)?;
        self.base.read_at(buf, offset)?;
        let (start, end) = (offset as usize, offset as usize + buf.len());
        let block = CACHE_BLOCK as usize;
        for index in start / block..=(end - 1) / block {
            let from = index * block;
            let to = (from + block).min(self.bytes.borrow().len());
            let whole = from >= start && to <= end;
            let was_loaded = self.loaded.borrow()[index];
            if !was_loaded && whole {
                self.bytes.borrow_mut()[from..to].copy_from_slice(&buf[from - start..to - start]);
                self.loaded.borrow_mut()[index] = true;
                continue;
            }
            if !was_loaded {
                self.load(from as u64, to - from)?;
            }
            let (lo, hi) = (from.max(start), to.min(end));
            buf[lo - start..hi - start].copy_from_slice(&self.bytes.borrow()[lo..hi]);
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
        let range = self.load(offset, buf.len())?;
        let bytes = self.bytes.get_mut();
        self.replaced.extend_from_slice(&bytes[range.clone()]);
        bytes[range].copy_from_slice(buf);
        self.writes.push((offset, buf.len()));
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.base.len()
    }
}

/// The points under `writes` (`(offset, len)` in write order, their old bytes end to end in
/// `replaced`) whose bytes in `bytes` differ from what they held before the first write to them,
/// sorted by offset.
fn changed_points(writes: &[(u64, usize)], replaced: &[u8], bytes: &[u8]) -> Vec<ChangedPoint> {
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
    points.retain_mut(|p| {
        let at = p.offset as usize;
        p.after = bytes[at..at + POINT_SIZE]
            .try_into()
            .expect("a written point is held");
        p.after != p.before
    });
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
    fn an_overlay_sees_the_file_as_first_read_so_a_live_write_is_not_taken_for_the_old_bytes() {
        let at = |i: usize| (4 + i * POINT_SIZE) as u64;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wsp");
        std::fs::write(&path, vec![0; 4 + 2000 * POINT_SIZE]).unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let live = file.try_clone().unwrap();
        let overlay = Overlay::new(file);
        // A scan reads blocks whole and a block's end; then a live writer writes in both.
        let mut scan = vec![0; 1500 * POINT_SIZE];
        overlay.read_at(&mut scan, at(10)).unwrap();
        let mut overlay = overlay;
        for i in [20, 500, 1509] {
            live.write_all_at(&point(60, 6.0), at(i)).unwrap();
        }
        for i in [20, 500, 1509] {
            let mut seen = [0; POINT_SIZE];
            overlay.read_at(&mut seen, at(i)).unwrap();
            assert_eq!(seen, [0; POINT_SIZE], "point {i} as first read");
            overlay.write_at(&point(120, 1.0), at(i)).unwrap();
        }
        let changed = overlay.changed_points();
        assert_eq!(changed.len(), 3);
        assert!(changed.iter().all(|p| p.before == [0; POINT_SIZE]));
        // The last block was never read before the live write: the live bytes are what the fill
        // read there.
        live.write_all_at(&point(60, 6.0), at(1900)).unwrap();
        overlay.write_at(&point(180, 2.0), at(1900)).unwrap();
        let changed = overlay.changed_points();
        let last = changed.iter().find(|p| p.offset == at(1900)).unwrap();
        assert_eq!(last.before, point(60, 6.0));
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
        assert_eq!(overlay.changed_points(), expected.changed_points());
        let mut past_end = [0; 12];
        let end = expected.bytes().len() as u64;
        assert!(overlay.read_at(&mut past_end, end - 6).is_err());
        assert!(overlay.write_at(&[0; 5], at(0)).is_err());
        assert_eq!(
            overlay.into_parts().0,
            original,
            "the base is never written"
        );
    }
}
