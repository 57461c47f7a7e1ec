//! Where a whisper file's bytes live: an open file (positioned reads and writes) or an in-memory
//! image that remembers what each write replaced, so a whole fill can run in memory and then write
//! back exactly the points it changed.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::POINT_SIZE;
use super::file::is_zero;

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
/// over an archive reads into the caller's buffer and copies what it read of blocks not held yet
/// into the overlay's (a block it ends in, its head until the next chunk reads the rest), except
/// whole blocks of zeros (the never-written slots of a young file's long archives), kept as a
/// mark. The buffer can be handed from one file to the next ([`Overlay::with_buffer`],
/// [`Overlay::into_parts`]).
#[derive(Debug)]
pub struct Overlay<S> {
    base: S,
    /// The file's bytes as the overlay sees them, valid in [`Block::Held`] blocks.
    bytes: RefCell<Vec<u8>>,
    /// Per block, what the overlay knows of it (sized on first use).
    blocks: RefCell<Vec<Block>>,
    /// What each written point held before its first write.
    first_writes: FirstWrites,
}

/// The bytes each point held before its first write, kept once per point however often it is
/// written (carbonate mode rewrites a lower archive's point once per update under it), and
/// listed by offset without sorting every write.
#[derive(Debug, Default)]
struct FirstWrites {
    /// One bit per point (offset / [`POINT_SIZE`]), set once its old bytes are kept.
    seen: Vec<u64>,
    /// `(offset, bytes before the first write)`, in the order first written.
    before: Vec<(u64, [u8; POINT_SIZE])>,
    /// Every point's offset modulo [`POINT_SIZE`] (a whisper file's points all share it), set
    /// by the first write: a write off that grid would alias two points to one bit.
    grid: Option<u64>,
}

impl FirstWrites {
    /// Keeps `old`, whole points from `offset` about to be overwritten, for the points not
    /// written before.
    fn record(&mut self, offset: u64, old: &[u8]) -> io::Result<()> {
        let grid = *self.grid.get_or_insert(offset % POINT_SIZE as u64);
        if offset % POINT_SIZE as u64 != grid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a write between two points",
            ));
        }
        for (i, point) in old.chunks_exact(POINT_SIZE).enumerate() {
            let at = offset + (i * POINT_SIZE) as u64;
            let index = (at / POINT_SIZE as u64) as usize;
            let (word, bit) = (index / 64, 1u64 << (index % 64));
            if word >= self.seen.len() {
                self.seen.resize(word + 1, 0);
            }
            if self.seen[word] & bit == 0 {
                self.seen[word] |= bit;
                self.before
                    .push((at, point.try_into().expect("a whole point")));
            }
        }
        Ok(())
    }

    /// The points whose bytes in `bytes` differ from what they held before their first write,
    /// sorted by offset.
    fn changed(&self, bytes: &[u8]) -> Vec<ChangedPoint> {
        let mut points: Vec<ChangedPoint> = self
            .before
            .iter()
            .filter_map(|&(offset, before)| {
                let at = offset as usize;
                let after: [u8; POINT_SIZE] = bytes[at..at + POINT_SIZE]
                    .try_into()
                    .expect("a written point is held");
                (after != before).then_some(ChangedPoint {
                    offset,
                    before,
                    after,
                })
            })
            .collect();
        // Each offset once: no order among equals to keep.
        points.sort_unstable_by_key(|p| p.offset);
        points
    }
}

/// The least an [`Overlay`] reads of the file at a time.
const CACHE_BLOCK: u64 = 4096;

/// What an [`Overlay`] holds of one block of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Not read yet: the file's bytes are what it holds.
    Unread,
    /// Its first `n` bytes are in the buffer, the rest not read yet: a scan read in chunks that
    /// do not end on a block's edge leaves the block's head here, and the next chunk's read
    /// completes it, so a scan reads each byte once.
    Head(u16),
    /// Read, and in the buffer.
    Held,
    /// Read by a scan and found all zeros (an archive's never-written slots): kept as a mark,
    /// not copied, and zeroed into the buffer only when something reads it a point at a time
    /// or writes into it.
    Zero,
}

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
            blocks: RefCell::default(),
            first_writes: FirstWrites::default(),
        }
    }

    /// The storage underneath, unchanged, and the buffer, for another overlay.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.base, self.bytes.into_inner())
    }

    /// Every point whose bytes now differ from what was first read, sorted by offset.
    pub fn changed_points(&self) -> Vec<ChangedPoint> {
        self.first_writes.changed(&self.bytes.borrow())
    }

    /// Reads the blocks of `[offset, offset + len)` not read yet, each run of them in one read,
    /// zeroes those marked [`Block::Zero`], and returns the bytes' range in the buffer.
    fn load(&self, offset: u64, len: usize) -> io::Result<std::ops::Range<usize>> {
        let mut blocks = self.blocks.borrow_mut();
        let mut bytes = self.bytes.borrow_mut();
        if blocks.is_empty() {
            let file_len = self.base.len()?;
            // Only a fresh buffer's growth is zeroed; a reused one is overwritten as read.
            bytes.resize(file_len as usize, 0);
            blocks.resize(
                file_len.div_ceil(CACHE_BLOCK).max(1) as usize,
                Block::Unread,
            );
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
        // Most reads and writes are a point or a few, in a block already held.
        if first == last && blocks[first] == Block::Held {
            return Ok(offset as usize..end as usize);
        }
        let extent = |index: usize, bytes: &[u8]| {
            let from = index * CACHE_BLOCK as usize;
            from..(from + CACHE_BLOCK as usize).min(bytes.len())
        };
        let mut index = first;
        while index <= last {
            match blocks[index] {
                Block::Held => index += 1,
                Block::Zero => {
                    let block = extent(index, &bytes);
                    bytes[block].fill(0);
                    blocks[index] = Block::Held;
                    index += 1;
                }
                Block::Head(held) => {
                    let block = extent(index, &bytes);
                    let from = block.start + usize::from(held);
                    self.base
                        .read_at(&mut bytes[from..block.end], from as u64)?;
                    blocks[index] = Block::Held;
                    index += 1;
                }
                Block::Unread => {
                    let run = index;
                    while index <= last && blocks[index] == Block::Unread {
                        blocks[index] = Block::Held;
                        index += 1;
                    }
                    let (from, to) = (extent(run, &bytes).start, extent(index - 1, &bytes).end);
                    if let Err(e) = self.base.read_at(&mut bytes[from..to], from as u64) {
                        blocks[run..index].fill(Block::Unread);
                        return Err(e);
                    }
                }
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
        // copy into a cold buffer the size of the file costs twice as much), then keep what it
        // read of the blocks not read yet (whole all-zero ones as a mark only, the head of a
        // block it ends in until the next chunk brings the rest), and lay what the overlay holds
        // over it.
        self.load(0, 0)?;
        self.base.read_at(buf, offset)?;
        let (start, end) = (offset as usize, offset as usize + buf.len());
        let block = CACHE_BLOCK as usize;
        let mut bytes = self.bytes.borrow_mut();
        let mut blocks = self.blocks.borrow_mut();
        for index in start / block..=(end - 1) / block {
            let from = index * block;
            let to = (from + block).min(bytes.len());
            // The part of the block the scan read.
            let (lo, hi) = (from.max(start), to.min(end));
            let mut held = match blocks[index] {
                Block::Held => {
                    buf[lo - start..hi - start].copy_from_slice(&bytes[lo..hi]);
                    continue;
                }
                Block::Zero => {
                    buf[lo - start..hi - start].fill(0);
                    continue;
                }
                Block::Unread if (lo, hi) == (from, to) => {
                    let read = &buf[lo - start..hi - start];
                    blocks[index] = if is_zero(read) {
                        Block::Zero
                    } else {
                        bytes[from..to].copy_from_slice(read);
                        Block::Held
                    };
                    continue;
                }
                Block::Unread => from,
                Block::Head(n) => from + usize::from(n),
            };
            if held < lo {
                // A scan starting inside the block (an archive's first chunk): the bytes before
                // it are read now, so the block is held from this scan on.
                self.base.read_at(&mut bytes[held..lo], held as u64)?;
                held = lo;
            }
            let laid = held.min(hi);
            buf[lo - start..laid - start].copy_from_slice(&bytes[lo..laid]);
            bytes[laid..hi].copy_from_slice(&buf[laid - start..hi - start]);
            blocks[index] = match hi.max(held) - from {
                n if n == to - from => Block::Held,
                n => Block::Head(n as u16),
            };
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
        self.first_writes.record(offset, &bytes[range.clone()])?;
        bytes[range].copy_from_slice(buf);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.base.len()
    }
}

/// A file read a few points at a time, through a few windows of it kept in memory: carbonate
/// fetches src gap by gap, each fetch reading the archive's first point and the gap's slots. A
/// window is small enough to stay in the CPU's cache, and the fetches move forward through an
/// archive, so most reads are served by a window read for an earlier one. Reads longer than a
/// quarter window go straight to the file. Never written: what it reads is what the file held at
/// some point during the reads, which is all a fill asks of its source. The windows' buffer can
/// be handed from one file to the next ([`ReadCache::with_buffer`], [`ReadCache::into_parts`]).
#[derive(Debug)]
pub struct ReadCache<S> {
    base: S,
    /// [`WINDOWS`] windows of [`WINDOW`] bytes, end to end.
    buffer: RefCell<Vec<u8>>,
    windows: RefCell<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    /// `(file offset, length, place in the buffer)` per window read, the most recently used last.
    held: Vec<(u64, usize, usize)>,
    /// The file's length, read once.
    file_len: Option<u64>,
}

/// Bytes per [`ReadCache`] window, and how many it keeps (256 KiB in all: the CPU's cache).
const WINDOW: usize = 64 * 1024;
const WINDOWS: usize = 4;

impl<S: Storage> ReadCache<S> {
    /// Reads of `base` through windows, none read yet.
    pub fn new(base: S) -> Self {
        ReadCache::with_buffer(base, Vec::new())
    }

    /// [`ReadCache::new`], holding the windows in `buffer` (its content is ignored).
    pub fn with_buffer(base: S, buffer: Vec<u8>) -> Self {
        ReadCache {
            base,
            buffer: RefCell::new(buffer),
            windows: RefCell::default(),
        }
    }

    /// The storage underneath and the buffer, for another cache.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.base, self.buffer.into_inner())
    }

    /// Reads the window holding `[offset, end)` unless one does, and returns its place in
    /// `windows.held`.
    fn window(&self, windows: &mut Windows, offset: u64, end: u64) -> io::Result<usize> {
        let held = windows
            .held
            .iter()
            .rposition(|&(at, len, _)| at <= offset && end <= at + len as u64);
        if let Some(index) = held {
            return Ok(index);
        }
        let file_len = match windows.file_len {
            Some(len) => len,
            None => *windows.file_len.insert(self.base.len()?),
        };
        if end > file_len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let at = offset - offset % CACHE_BLOCK;
        let len = (file_len - at).min(WINDOW as u64) as usize;
        let place = if windows.held.len() == WINDOWS {
            windows.held.remove(0).2
        } else {
            // A place no window holds (a failed read leaves its place free, not last).
            (0..WINDOWS)
                .map(|i| i * WINDOW)
                .find(|&place| windows.held.iter().all(|held| held.2 != place))
                .expect("fewer windows than places")
        };
        let mut buffer = self.buffer.borrow_mut();
        if buffer.len() < WINDOWS * WINDOW {
            buffer.resize(WINDOWS * WINDOW, 0);
        }
        self.base.read_at(&mut buffer[place..place + len], at)?;
        windows.held.push((at, len, place));
        Ok(windows.held.len() - 1)
    }
}

impl<S: Storage> Storage for ReadCache<S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if buf.len() > WINDOW / 4 {
            return self.base.read_at(buf, offset);
        }
        let mut windows = self.windows.borrow_mut();
        let index = self.window(&mut windows, offset, offset + buf.len() as u64)?;
        let last = windows.held.len() - 1;
        windows.held.swap(index, last);
        let (at, _, place) = windows.held[last];
        let from = place + (offset - at) as usize;
        buf.copy_from_slice(&self.buffer.borrow()[from..from + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a read cache is never written",
        ))
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

    /// An overlay of a file of 4 bytes and `points` zero points, and a handle a live writer
    /// writes the file through.
    fn overlay_of_live_file(points: usize) -> (tempfile::TempDir, Overlay<File>, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wsp");
        std::fs::write(&path, vec![0; 4 + points * POINT_SIZE]).unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        let live = file.try_clone().unwrap();
        (dir, Overlay::new(file), live)
    }

    #[test]
    fn an_overlay_sees_the_file_as_first_read_so_a_live_write_is_not_taken_for_the_old_bytes() {
        let at = |i: usize| (4 + i * POINT_SIZE) as u64;
        let (_dir, overlay, live) = overlay_of_live_file(2000);
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
    fn a_scan_in_chunks_holds_each_byte_as_the_chunk_that_covered_it_read_it() {
        let at = |i: usize| (4 + i * POINT_SIZE) as u64;
        let (_dir, mut overlay, live) = overlay_of_live_file(6000);
        // The first chunk ends inside a block; a live writer then writes on either side of its
        // end, and the next chunk reads on from there.
        let mut chunk = vec![0; 2000 * POINT_SIZE];
        overlay.read_at(&mut chunk, at(0)).unwrap();
        let (before_end, after_end) = (1999, 2001);
        assert_eq!(at(before_end) / CACHE_BLOCK, at(after_end) / CACHE_BLOCK);
        for i in [before_end, after_end] {
            live.write_all_at(&point(60, 6.0), at(i)).unwrap();
        }
        overlay.read_at(&mut chunk, at(2000)).unwrap();
        assert_eq!(
            chunk[POINT_SIZE..2 * POINT_SIZE],
            point(60, 6.0),
            "read by the next chunk"
        );
        let mut seen = [0; POINT_SIZE];
        overlay.read_at(&mut seen, at(before_end)).unwrap();
        assert_eq!(seen, [0; POINT_SIZE], "as the first chunk read it");
        for i in [before_end, after_end] {
            overlay.write_at(&point(120, 1.0), at(i)).unwrap();
        }
        let before: Vec<_> = overlay.changed_points().iter().map(|p| p.before).collect();
        assert_eq!(before, [[0; POINT_SIZE], point(60, 6.0)]);
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

    /// A file of `blocks` 4 KiB blocks: every third one all zeros (never written), every third
    /// zeros but for its last byte, the others holding bytes that differ from block to block.
    fn striped(blocks: usize) -> Vec<u8> {
        let block = CACHE_BLOCK as usize;
        (0..blocks * block)
            .map(|i| match (i / block) % 3 {
                0 => 0,
                1 => u8::from(i % block == block - 1),
                _ => (i * 7 + i / block) as u8 | 1,
            })
            .collect()
    }

    proptest::proptest! {
        /// Whatever the order of scans, small reads and writes, an overlay reads what an image
        /// given the same writes holds, and lists the same changed points.
        #[test]
        fn an_overlay_reads_as_an_image_written_alike(
            ops in proptest::collection::vec((0u8..3, 0usize..1_000_000, 1usize..9), 1..40),
        ) {
            let file = striped(12);
            let points = (file.len() - 4) / POINT_SIZE;
            let mut expected = Image::new(file.clone());
            // A buffer handed on from another file: its old bytes must never show through.
            let dirty = vec![0xa5; 3 * file.len()];
            let mut overlay = Overlay::with_buffer(Image::new(file.clone()), dirty);
            for (kind, at, len) in ops {
                match kind {
                    0 => {
                        // A scan: 16 KiB or more, from anywhere.
                        let len = 4 * CACHE_BLOCK as usize + len * 1500;
                        let start = at % (file.len() - len);
                        let mut got = vec![0; len];
                        overlay.read_at(&mut got, start as u64).unwrap();
                        proptest::prop_assert_eq!(&got[..], &expected.bytes()[start..start + len]);
                    }
                    1 => {
                        let start = at % (file.len() - 100);
                        let len = len * 11;
                        let mut got = vec![0; len];
                        overlay.read_at(&mut got, start as u64).unwrap();
                        proptest::prop_assert_eq!(&got[..], &expected.bytes()[start..start + len]);
                    }
                    _ => {
                        let first = at % (points - len);
                        let new: Vec<u8> = (0..len * POINT_SIZE).map(|i| (i + at) as u8).collect();
                        let offset = (4 + first * POINT_SIZE) as u64;
                        overlay.write_at(&new, offset).unwrap();
                        expected.write_at(&new, offset).unwrap();
                    }
                }
            }
            proptest::prop_assert_eq!(overlay.changed_points(), expected.changed_points());
        }

        /// A read cache reads what the file holds, however reads of any length follow each other
        /// across its windows, and gives its buffer back.
        #[test]
        fn a_read_cache_reads_what_the_file_holds(
            reads in proptest::collection::vec((0usize..2_000_000, 1usize..40_000), 1..60),
        ) {
            let file = striped(100);
            let cache = ReadCache::new(Image::new(file.clone()));
            for (at, len) in reads {
                // Mostly small reads near each other, as a fill's fetches are.
                let len = if len % 4 == 0 { len } else { len % 200 + 1 };
                let start = at % (file.len() - len);
                let mut got = vec![0; len];
                cache.read_at(&mut got, start as u64).unwrap();
                proptest::prop_assert_eq!(&got[..], &file[start..start + len]);
            }
            let mut past_end = [0; 12];
            proptest::prop_assert!(cache.read_at(&mut past_end, file.len() as u64 - 6).is_err());
            let (base, buffer) = cache.into_parts();
            proptest::prop_assert_eq!(base.bytes(), &file[..]);
            proptest::prop_assert!(buffer.len() <= WINDOWS * WINDOW);
        }
    }

    /// Fails reads that touch `[bad, bad + 1)` while `failing` is set.
    struct Flaky {
        bytes: Vec<u8>,
        bad: u64,
        failing: std::cell::Cell<bool>,
    }

    impl Storage for Flaky {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let end = offset + buf.len() as u64;
            if self.failing.get() && offset <= self.bad && self.bad < end {
                return Err(io::Error::other("bad sector"));
            }
            Image::new(self.bytes.clone()).read_at(buf, offset)
        }

        fn write_at(&mut self, _: &[u8], _: u64) -> io::Result<()> {
            unreachable!("never written")
        }

        fn len(&self) -> io::Result<u64> {
            Ok(self.bytes.len() as u64)
        }
    }

    #[test]
    fn a_read_cache_recovers_from_a_failed_read_without_mixing_windows() {
        let file = striped(32 * WINDOW / CACHE_BLOCK as usize);
        let window = WINDOW as u64;
        let cache = ReadCache::new(Flaky {
            bytes: file.clone(),
            bad: 9 * window + 10,
            failing: std::cell::Cell::new(true),
        });
        let read = |at: u64| {
            let mut got = [0; 24];
            cache.read_at(&mut got, at).map(|()| got)
        };
        // Four windows held, then a fifth fails to load: one is evicted, its place left free.
        for i in 0..4 {
            read(i * window + 100).unwrap();
        }
        let error = read(9 * window + 20).unwrap_err();
        assert_eq!(error.to_string(), "bad sector");
        // Two more windows load into the free place and the evicted one's: none overwrites
        // another that is still held.
        cache
            .windows
            .borrow()
            .held
            .iter()
            .for_each(|held| assert!(held.2 < WINDOWS * WINDOW));
        for at in [
            20 * window + 8,
            3 * window + 200,
            30 * window + 8,
            window + 100,
            2 * window,
        ] {
            let at = at as usize;
            assert_eq!(read(at as u64).unwrap()[..], file[at..at + 24], "at {at}");
        }
        cache.base.failing.set(false);
        let at = 9 * WINDOW + 20;
        assert_eq!(read(at as u64).unwrap()[..], file[at..at + 24]);
    }

    #[test]
    fn an_overlay_keeps_zero_blocks_as_first_read_and_refuses_writes_between_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.wsp");
        let file = striped(8);
        std::fs::write(&path, &file).unwrap();
        let at = |i: usize| (4 + i * POINT_SIZE) as u64;
        let live = File::options().read(true).write(true).open(&path).unwrap();
        let mut overlay = Overlay::new(File::open(&path).unwrap());
        // Blocks 0, 3 and 6 are zeros: the scan keeps them as marks only (1 and 4 end in a 1).
        let mut scan = vec![0; 7 * CACHE_BLOCK as usize];
        overlay.read_at(&mut scan, 0).unwrap();
        assert_eq!(scan, file[..scan.len()]);
        // The live writer writes into a zero block and a held one after the scan.
        let (in_zero, in_held) = (3 * 4096 / POINT_SIZE + 2, 4 * 4096 / POINT_SIZE + 2);
        for i in [in_zero, in_held] {
            live.write_all_at(&[9; POINT_SIZE], at(i)).unwrap();
        }
        let mut again = vec![0; 7 * CACHE_BLOCK as usize];
        overlay.read_at(&mut again, 0).unwrap();
        assert_eq!(again, scan, "a second scan sees the first one's bytes");
        for i in [in_zero, in_held] {
            let mut point = [0; POINT_SIZE];
            overlay.read_at(&mut point, at(i)).unwrap();
            let first = at(i) as usize;
            assert_eq!(
                point[..],
                file[first..first + POINT_SIZE],
                "point {i} as first read"
            );
            overlay.write_at(&[5; POINT_SIZE], at(i)).unwrap();
        }
        let changed = overlay.changed_points();
        assert_eq!(changed.len(), 2);
        assert_eq!(
            changed[0].before, [0; POINT_SIZE],
            "the zero block's point as scanned"
        );
        // A write that does not start on a point of the file's grid would alias two points.
        let error = overlay.write_at(&[1; POINT_SIZE], at(5) + 1).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(overlay.changed_points(), changed);
    }
}
