//! The newest bytes of every segment, in memory.
//!
//! An append is copied into a chunk: block-aligned memory standing for a
//! block-aligned range of the segment file. The active segment is written
//! from there straight to the device (`O_DIRECT`), behind the appends, by
//! the log's writer thread: the block holding the end is written whole,
//! its unused part zeros, and written again by the next write. The page cache is never filled with the log's writes, which
//! costs a copy into fresh kernel pages per byte (on a virtual machine whose
//! host takes freed guest memory back, a fault per page too); the chunks'
//! memory is reused instead. Readers of recent bytes get slices of the
//! chunks, whole batches only, since an append never spans two chunks.
//!
//! Chunks are kept up to a budget shared by the whole log and dropped
//! oldest first, but never the newest of an active segment, which is
//! being written. Older bytes are read from the
//! file: direct reads while the segment is active, so the page cache never
//! holds a block that a direct write changes, and a map once it is sealed.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;

/// The alignment of direct I/O: file offsets, lengths and memory. 4 KiB
/// suits devices with 512-byte and 4 KiB logical blocks alike.
pub(crate) const BLOCK: u64 = 4096;

/// The largest usual chunk; an append larger than this gets a chunk of its
/// own size.
pub(crate) const CHUNK_BYTES: usize = 8 << 20;

/// The most one `pwrite` of a chunk hands the kernel, a multiple of
/// [`BLOCK`].
const WRITE_MAX_BYTES: usize = 1 << 30;

/// A segment's first chunk; each next one is twice as large, up to
/// [`CHUNK_BYTES`], so quiet partitions hold little.
const FIRST_CHUNK_BYTES: usize = 64 << 10;

/// Free chunk buffers kept for reuse, so that memory once touched is what
/// the next chunk writes to.
const POOLED_BUFFERS_MAX: usize = 16;

pub(crate) fn align_down(position: u64) -> u64 {
    position & !(BLOCK - 1)
}

pub(crate) fn align_up(position: u64) -> u64 {
    position.next_multiple_of(BLOCK)
}

/// Block-aligned memory, zeroed when first allocated: an anonymous map,
/// whose pages the kernel provides as they are first touched, so a chunk
/// mostly unwritten holds little memory.
#[derive(Debug)]
pub(crate) struct Buffer {
    map: memmap2::MmapMut,
    /// Taken once from the map, for writes through a shared chunk.
    pointer: NonNull<u8>,
}

// SAFETY: the buffer owns its map; shared access is governed by `Chunk`,
// which only hands out bytes no one writes any more.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    /// `capacity` is a positive multiple of [`BLOCK`]. Fails when the
    /// system has no memory to map.
    pub fn zeroed(capacity: usize) -> std::io::Result<Self> {
        assert!(capacity > 0 && capacity.is_multiple_of(BLOCK as usize));
        let mut map = memmap2::MmapMut::map_anon(capacity)?;
        let pointer = NonNull::new(map.as_mut_ptr()).expect("a map is never at address 0");
        Ok(Self { map, pointer })
    }

    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    /// The whole buffer, for a direct read into it.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    fn pointer(&self) -> *mut u8 {
        self.pointer.as_ptr()
    }
}

/// A buffer read from a file, served as a `Bytes` slice of it.
struct Owned {
    buffer: Buffer,
    length: usize,
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.buffer.as_slice()[..self.length]
    }
}

/// The first `length` bytes of `buffer`, without a copy.
pub(crate) fn into_bytes(buffer: Buffer, length: usize) -> Bytes {
    Bytes::from_owner(Owned { buffer, length })
}

/// The bytes of the file from `file_start` (block-aligned) on, as far as
/// they are appended. Whole batches start at `first_batch`. Bytes up to
/// `written_end` are also in the file, and readable here.
#[derive(Debug)]
pub(crate) struct Chunk {
    buffer: Option<Buffer>,
    file_start: u64,
    first_batch: u64,
    appended_end: AtomicU64,
    written_end: AtomicU64,
    recent: Arc<Recent>,
}

impl Chunk {
    pub fn file_start(&self) -> u64 {
        self.file_start
    }

    pub fn written_end(&self) -> u64 {
        self.written_end.load(Ordering::Acquire)
    }

    pub fn appended_end(&self) -> u64 {
        self.appended_end.load(Ordering::Acquire)
    }

    fn capacity(&self) -> u64 {
        self.buffer().capacity() as u64
    }

    fn buffer(&self) -> &Buffer {
        self.buffer
            .as_ref()
            .expect("a chunk holds its buffer until dropped")
    }

    /// Whether `length` more bytes at `position` (the appended end) fit.
    pub fn fits(&self, position: u64, length: usize) -> bool {
        position == self.appended_end() && position + length as u64 <= self.end_of_capacity()
    }

    fn end_of_capacity(&self) -> u64 {
        self.file_start + self.capacity()
    }

    fn pointer(&self, position: u64) -> *mut u8 {
        assert!(position >= self.file_start && position <= self.end_of_capacity());
        // SAFETY: inside the allocation, checked above.
        unsafe {
            self.buffer()
                .pointer()
                .add((position - self.file_start) as usize)
        }
    }

    /// Copies `bytes` in at file position `position`, the appended end,
    /// lets `stamp` change the copy, and zeros what follows up to the next
    /// block boundary.
    ///
    /// # Safety
    /// Only the one appender of the segment calls this, and no reader is
    /// handed bytes at or past the written end until [`Chunk::published`].
    /// The writer thread may be copying the block that holds `position`
    /// to the device meanwhile (see [`Chunk::write_blocks`]).
    pub unsafe fn write(&self, position: u64, bytes: &[u8], stamp: impl FnOnce(&mut [u8])) {
        let end = position + bytes.len() as u64;
        assert!(position == self.appended_end() && align_up(end) <= self.end_of_capacity());
        // SAFETY: in bounds (asserted); no reader is handed these bytes yet,
        // and the writer thread copies none of them before the appended end
        // passes them (below).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.pointer(position), bytes.len());
            stamp(std::slice::from_raw_parts_mut(
                self.pointer(position),
                bytes.len(),
            ));
            std::ptr::write_bytes(self.pointer(end), 0, (align_up(end) - end) as usize);
        }
        self.appended_end.store(end, Ordering::Release);
    }

    /// Makes the bytes up to `end` readable: they are in the file.
    pub fn published(&self, end: u64) {
        self.written_end.fetch_max(end, Ordering::AcqRel);
    }

    /// Appended bytes from `from` to `to`: they are never changed again.
    pub fn appended(&self, from: u64, to: u64) -> &[u8] {
        assert!(from >= self.file_start && from <= to && to <= self.appended_end());
        // SAFETY: in bounds (asserted); bytes below the appended end are
        // written once, before that end moved past them.
        unsafe { std::slice::from_raw_parts(self.pointer(from), (to - from) as usize) }
    }

    /// Writes the chunk's blocks from `from` to `to` (block-aligned, within
    /// its capacity) to `file` at the same positions, with one `pwrite`
    /// per call the kernel makes of it. The last block may be changing
    /// as this runs: past the appended end the appender may be copying a
    /// next batch in. The kernel then takes each of those bytes old or
    /// new; either way the file holds the appended bytes below that end,
    /// and the next write of the block, which every later append brings,
    /// writes it again. The memory is handed to the kernel as a raw
    /// pointer: no reference to bytes being changed is ever made.
    pub fn write_blocks(&self, file: &File, from: u64, to: u64) -> std::io::Result<()> {
        assert!(from.is_multiple_of(BLOCK) && to.is_multiple_of(BLOCK));
        assert!(from >= self.file_start && from <= to && to <= self.end_of_capacity());
        let mut at = from;
        while at < to {
            let length = ((to - at) as usize).min(WRITE_MAX_BYTES);
            // SAFETY: the pointer and length are inside the chunk's buffer
            // (asserted), which lives as long as `self`.
            let written = unsafe {
                libc::pwrite(
                    file.as_raw_fd(),
                    self.pointer(at).cast(),
                    length,
                    at as libc::off_t,
                )
            };
            match written {
                -1 => {
                    let error = std::io::Error::last_os_error();
                    if error.kind() != std::io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                // A direct write stops short on a block boundary, if at all.
                written => at += written as u64,
            }
        }
        Ok(())
    }

    /// Written bytes from `from` to `to`, as a `Bytes` that keeps the chunk.
    pub fn slice(self: &Arc<Self>, from: u64, to: u64) -> Bytes {
        assert!(from >= self.file_start && from <= to && to <= self.written_end());
        Bytes::from_owner(ChunkSlice {
            chunk: Arc::clone(self),
            from,
            to,
        })
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.recent.give_back(buffer);
        }
    }
}

struct ChunkSlice {
    chunk: Arc<Chunk>,
    from: u64,
    to: u64,
}

impl AsRef<[u8]> for ChunkSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: written bytes are immutable (see `Chunk::write`).
        unsafe {
            std::slice::from_raw_parts(
                self.chunk.pointer(self.from),
                (self.to - self.from) as usize,
            )
        }
    }
}

/// One segment's chunks, oldest first.
#[derive(Debug)]
pub(crate) struct Chunks {
    list: RwLock<VecDeque<Arc<Chunk>>>,
    /// While set, the newest chunk is kept whatever the budget.
    active: AtomicBool,
    recent: Arc<Recent>,
}

impl Chunks {
    pub fn new(recent: &Arc<Recent>) -> Arc<Self> {
        Arc::new(Self {
            list: RwLock::new(VecDeque::new()),
            active: AtomicBool::new(false),
            recent: Arc::clone(recent),
        })
    }

    /// Whether the log writes active segments straight to the device.
    pub fn direct_writes(&self) -> bool {
        self.recent.direct_writes()
    }

    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    /// The newest chunk.
    pub fn newest(&self) -> Option<Arc<Chunk>> {
        self.list.read().expect("chunks lock").back().cloned()
    }

    /// The chunk holding the batch that starts at `position`, if any.
    pub fn holding(&self, position: u64) -> Option<Arc<Chunk>> {
        let list = self.list.read().expect("chunks lock");
        let at = list.partition_point(|chunk| chunk.first_batch <= position);
        let chunk = list.get(at.checked_sub(1)?)?;
        (position < chunk.written_end()).then(|| Arc::clone(chunk))
    }

    /// The chunks that hold the file's blocks from `from` to `to` (both
    /// block-aligned), each with the part of the range it holds the newest
    /// bytes of (a block two chunks share is the next one's head); `None`
    /// if some block of the range is in none of them.
    pub fn covering(&self, from: u64, to: u64) -> Option<Vec<(Arc<Chunk>, u64, u64)>> {
        let list = self.list.read().expect("chunks lock");
        let mut parts = Vec::new();
        let mut at = from;
        for (i, chunk) in list.iter().enumerate() {
            let end = list
                .get(i + 1)
                .map_or_else(|| align_up(chunk.appended_end()), |next| next.file_start);
            let (low, high) = (at.max(chunk.file_start), to.min(end));
            if low >= high {
                continue;
            }
            if low > at {
                return None;
            }
            parts.push((Arc::clone(chunk), low, high));
            at = high;
        }
        (at >= to).then_some(parts)
    }

    /// Makes every chunk's bytes below `end`, now in the file, readable.
    pub fn published_up_to(&self, end: u64) {
        for chunk in self.list.read().expect("chunks lock").iter() {
            chunk.published(end.min(chunk.appended_end()));
        }
    }

    /// Where the bytes in memory start; `None` if there are none.
    pub fn first_batch(&self) -> Option<u64> {
        self.list
            .read()
            .expect("chunks lock")
            .front()
            .map(|chunk| chunk.first_batch)
    }

    /// A new newest chunk for the file from `file_start` on, whose batches
    /// start at `first_batch`, with room for `length` bytes there; its
    /// bytes from `file_start` to `first_batch` are `head`.
    pub fn start(
        self: &Arc<Self>,
        file_start: u64,
        first_batch: u64,
        head: &[u8],
        length: usize,
    ) -> std::io::Result<Arc<Chunk>> {
        assert_eq!(file_start % BLOCK, 0);
        assert_eq!(first_batch - file_start, head.len() as u64);
        let needed = align_up(first_batch - file_start + length as u64) as usize;
        let usual = self.newest().map_or(FIRST_CHUNK_BYTES, |newest| {
            (newest.capacity() as usize * 2).clamp(FIRST_CHUNK_BYTES, CHUNK_BYTES)
        });
        let mut buffer = self.recent.take(needed.max(usual))?;
        buffer.as_mut_slice()[..head.len()].copy_from_slice(head);
        let chunk = Arc::new(Chunk {
            buffer: Some(buffer),
            file_start,
            first_batch,
            appended_end: AtomicU64::new(first_batch),
            written_end: AtomicU64::new(first_batch),
            recent: Arc::clone(&self.recent),
        });
        let capacity = chunk.capacity();
        self.list
            .write()
            .expect("chunks lock")
            .push_back(Arc::clone(&chunk));
        self.recent.admit(self, capacity);
        Ok(chunk)
    }

    /// Drops the oldest chunk unless it is the newest of an active segment
    /// or holds bytes not yet in the file; returns the bytes freed. Bytes the dropped chunk shared a
    /// block with are in the next chunk's head too, and are read from the
    /// file from then on: a direct read racing the direct write of that
    /// block gets each sector old or new, the same bytes below the end.
    fn drop_oldest(&self) -> Option<u64> {
        let mut list = self.list.write().expect("chunks lock");
        let kept = usize::from(self.active.load(Ordering::Acquire));
        let unwritten = |chunk: &Arc<Chunk>| chunk.written_end() < chunk.appended_end();
        if list.len() <= kept || list.front().is_some_and(unwritten) {
            return None;
        }
        list.pop_front().map(|chunk| chunk.capacity())
    }

    /// Drops every chunk (the segment is going away).
    pub fn clear(&self) {
        let freed: u64 = self
            .list
            .write()
            .expect("chunks lock")
            .drain(..)
            .map(|chunk| chunk.capacity())
            .sum();
        self.recent.release(freed);
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        let freed = self
            .list
            .get_mut()
            .expect("chunks lock")
            .iter()
            .map(|chunk| chunk.capacity())
            .sum();
        self.recent.release(freed);
    }
}

/// The budget for chunks across the log, and the free buffers.
#[derive(Debug)]
pub(crate) struct Recent {
    budget: u64,
    /// Whether active segments are written straight to the device, from
    /// chunks; if not, through the page cache, and no chunks are made.
    direct_writes: bool,
    state: Mutex<RecentState>,
    pool: Mutex<Vec<Buffer>>,
}

#[derive(Debug, Default)]
struct RecentState {
    held: u64,
    /// Segments in the order their chunks were started, one entry a chunk.
    order: VecDeque<Weak<Chunks>>,
}

impl Recent {
    pub fn new(budget: u64, direct_writes: bool) -> Arc<Self> {
        Arc::new(Self {
            budget,
            direct_writes,
            state: Mutex::new(RecentState::default()),
            pool: Mutex::new(Vec::new()),
        })
    }

    /// Whether the log writes active segments straight to the device.
    pub fn direct_writes(&self) -> bool {
        self.direct_writes
    }

    /// Bytes of chunks held now.
    #[cfg(test)]
    pub fn held(&self) -> u64 {
        self.state.lock().expect("recent lock").held
    }

    fn take(&self, capacity: usize) -> std::io::Result<Buffer> {
        if capacity == CHUNK_BYTES
            && let Some(buffer) = self.pool.lock().expect("pool lock").pop()
        {
            return Ok(buffer);
        }
        Buffer::zeroed(capacity)
    }

    fn give_back(&self, buffer: Buffer) {
        let mut pool = self.pool.lock().expect("pool lock");
        if buffer.capacity() == CHUNK_BYTES && pool.len() < POOLED_BUFFERS_MAX {
            pool.push(buffer);
        }
    }

    fn release(&self, bytes: u64) {
        let mut state = self.state.lock().expect("recent lock");
        state.held = state.held.saturating_sub(bytes);
    }

    /// Counts a chunk `chunks` just started, then drops the oldest chunks
    /// while the budget is exceeded.
    fn admit(&self, chunks: &Arc<Chunks>, capacity: u64) {
        // Handles taken here are dropped after the lock: the last handle
        // of a segment's chunks gives their bytes back, which takes it.
        let mut alive = Vec::new();
        let mut state = self.state.lock().expect("recent lock");
        state.held += capacity;
        state.order.push_back(Arc::downgrade(chunks));
        // Each entry is looked at once at most: kept ones go to the back.
        let mut looked = state.order.len();
        while state.held > self.budget && looked > 0 {
            looked -= 1;
            let Some(entry) = state.order.pop_front() else {
                break;
            };
            let Some(owner) = entry.upgrade() else {
                continue;
            };
            match owner.drop_oldest() {
                Some(freed) => state.held = state.held.saturating_sub(freed),
                None => state.order.push_back(entry),
            }
            alive.push(owner);
        }
        // Entries of segments gone or emptied are dropped as they come up;
        // keep the queue from growing past what could be held.
        if state.order.len() > 4 * (state.held / CHUNK_BYTES as u64 + 64) as usize {
            state.order.retain(|entry| {
                entry.upgrade().is_some_and(|owner| {
                    let holds = owner.first_batch().is_some();
                    alive.push(owner);
                    holds
                })
            });
        }
        drop(state);
        drop(alive);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(8192), 8192);
    }

    #[test]
    fn chunks_serve_written_bytes_and_zero_the_block_after_them() {
        let recent = Recent::new(1 << 30, true);
        let chunks = Chunks::new(&recent);
        let chunk = chunks.start(4096, 4100, b"head", 10).unwrap();
        // SAFETY: the only writer, before publishing.
        unsafe { chunk.write(4100, b"0123456789", |_| {}) };
        chunk.published(4110);
        assert_eq!(&chunk.slice(4100, 4110)[..], b"0123456789");
        assert_eq!(chunk.appended(4096, 4110), b"head0123456789");
        let file = tempfile::tempfile().unwrap();
        chunk.write_blocks(&file, 4096, 8192).unwrap();
        let mut block = vec![1u8; 4096];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut block, 4096).unwrap();
        assert_eq!(&block[..14], b"head0123456789");
        assert!(block[14..].iter().all(|&b| b == 0), "zeros after the end");
        assert!(chunks.holding(4100).is_some());
        assert!(chunks.holding(4110).is_none(), "nothing written there yet");
        assert!(chunks.holding(4099).is_none(), "before the first batch");
        assert!(chunk.fits(4110, FIRST_CHUNK_BYTES - 14));
        assert!(!chunk.fits(4110, FIRST_CHUNK_BYTES - 13));
        let next = chunks
            .start(
                4096 + FIRST_CHUNK_BYTES as u64,
                4096 + FIRST_CHUNK_BYTES as u64,
                &[],
                1,
            )
            .unwrap();
        assert_eq!(next.capacity(), 2 * FIRST_CHUNK_BYTES as u64, "chunks grow");
    }

    #[test]
    fn the_budget_drops_oldest_chunks_but_keeps_the_active_segments_newest() {
        let recent = Recent::new(3 * CHUNK_BYTES as u64, true);
        let sealed = Chunks::new(&recent);
        let active = Chunks::new(&recent);
        active.set_active(true);
        // The `i`th full-sized chunk of a segment.
        let full = |chunks: &Arc<Chunks>, i: u64| {
            let at = i * CHUNK_BYTES as u64;
            chunks.start(at, at, &[], CHUNK_BYTES).unwrap();
        };
        for i in 0..2u64 {
            full(&sealed, i);
        }
        for i in 0..4u64 {
            full(&active, i);
            assert!(recent.held() <= 3 * CHUNK_BYTES as u64);
        }
        assert!(
            sealed.first_batch().is_none(),
            "the sealed segment's went first"
        );
        assert_eq!(active.first_batch(), Some(CHUNK_BYTES as u64));
        // Over the budget rather than drop what is being written.
        let small = Recent::new(1, true);
        let only = Chunks::new(&small);
        only.set_active(true);
        only.start(0, 0, &[], 1).unwrap();
        assert_eq!(only.first_batch(), Some(0));
        only.start(FIRST_CHUNK_BYTES as u64, FIRST_CHUNK_BYTES as u64, &[], 1)
            .unwrap();
        assert_eq!(only.first_batch(), Some(FIRST_CHUNK_BYTES as u64));
        drop(only);
        assert_eq!(small.held(), 0, "a segment dropped gives its chunks back");
    }

    #[test]
    fn each_block_is_written_from_the_newest_chunk_that_holds_it_and_only_written_chunks_go() {
        let recent = Recent::new(1, true);
        let chunks = Chunks::new(&recent);
        chunks.set_active(true);
        let first = chunks.start(0, 0, &[], 100).unwrap();
        // SAFETY: the only writer, before publishing.
        unsafe { first.write(0, &[7; 100], |_| {}) };
        // The next chunk starts in the block the first ends in, with its head.
        let second = chunks.start(0, 100, first.appended(0, 100), 5000).unwrap();
        // SAFETY: the only writer, before publishing.
        unsafe { second.write(100, &[8; 5000], |_| {}) };
        let parts = chunks.covering(0, 8192).unwrap();
        let ranges: Vec<_> = parts.iter().map(|(_, low, high)| (*low, *high)).collect();
        assert_eq!(ranges, [(0, 8192)], "the shared block from the newer chunk");
        assert!(Arc::ptr_eq(&parts[0].0, &second));
        assert!(chunks.covering(0, 12288).is_none(), "past what is appended");
        // Over the budget, but nothing is in the file yet: both are kept.
        let third = chunks.start(8192, 8192, &[], 1).unwrap();
        assert_eq!(chunks.first_batch(), Some(0));
        // The first chunk's bytes went out as the second's head.
        chunks.published_up_to(5100);
        assert_eq!(first.written_end(), 100);
        assert_eq!(second.written_end(), 5100);
        drop(third);
        chunks.start(16384, 16384, &[], 1).unwrap();
        assert_eq!(
            chunks.first_batch(),
            Some(16384),
            "written (or empty) chunks go, the newest stays"
        );
    }

    #[test]
    fn a_slice_outlives_its_chunk_being_dropped() {
        let recent = Recent::new(1, true);
        let chunks = Chunks::new(&recent);
        let chunk = chunks.start(0, 0, &[], 3).unwrap();
        // SAFETY: the only writer, before publishing.
        unsafe { chunk.write(0, b"abc", |_| {}) };
        chunk.published(3);
        let slice = chunk.slice(0, 3);
        drop(chunk);
        chunks.clear();
        assert_eq!(&slice[..], b"abc");
    }
}
