//! One segment: a file of record batches named by its base offset, with its
//! sparse offset and time index. Appends go to the segment's newest chunk
//! in memory and from there to the file past the visible end (see
//! [`crate::recent`]); readers only ever see bytes the index already covers.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_BYTES, LEADER_EPOCH};
use crate::error::{LogError, Result};
use crate::files::{self, FileCache, MapSlot};
use crate::index::SegmentIndex;
use crate::recent::{self, BLOCK, Buffer, Chunk, Chunks, Recent};

/// Writes each batch's base offset and leader epoch from `headers` into
/// `bytes`, the batches they describe.
fn stamp(bytes: &mut [u8], headers: &[BatchHeader]) {
    let mut at = 0;
    for header in headers {
        batch::assign_offset(&mut bytes[at..], header.base_offset);
        at += header.size_bytes as usize;
    }
}

/// Bytes read at once when scanning a segment during recovery.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// The least a read from the file of an active segment asks for.
const FILE_READ_MIN_BYTES: usize = 256 << 10;

/// The smallest map of a segment written through the page cache. It is
/// made this long, or the next power of two past what is written, so that
/// reads at the tail find it made while appends go on.
const ACTIVE_MAP_MIN_BYTES: usize = 64 << 20;

/// Tells segments apart in the [`FileCache`], across topics and partitions
/// and a topic deleted and created again.
static NEXT_SEGMENT_ID: AtomicU64 = AtomicU64::new(0);

pub(crate) fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}
fn offset_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}
fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

/// What a recovery scan of one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanReport {
    /// Bytes cut off the end because they were torn or corrupt.
    pub truncated_bytes: u64,
    pub reason: Option<String>,
    /// Zeros after the last batch, up to a block boundary: what a direct
    /// write leaves when the process stops before the segment is sealed.
    pub padding_bytes: u64,
}

/// Opens the active segment's file for writing, straight to the device if
/// `direct` and the file system allows it. The flag says whether it does.
fn open_writer(path: &Path, create: bool, direct: bool) -> Result<(File, bool)> {
    let open = |direct: bool| {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if create {
            options.create(true).truncate(true);
        }
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        options.open(path)
    };
    if !direct {
        return Ok((open(false).map_err(LogError::io(path))?, false));
    }
    match open(true) {
        Ok(file) => Ok((file, true)),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!(path = %path.display(), "the file system refuses direct I/O; writing through the page cache");
            Ok((open(false).map_err(LogError::io(path))?, false))
        }
        Err(error) => Err(LogError::Io {
            path: path.to_path_buf(),
            source: error,
        }),
    }
}

/// Bytes of a segment from file position `start` on: a slice of its map,
/// of a chunk in memory, or of a read of the file.
struct View {
    bytes: Bytes,
    start: u64,
}

impl View {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    fn from(&self, position: u64) -> &[u8] {
        &self.bytes[(position - self.start) as usize..]
    }

    /// Whether the view holds the batch header at `position`.
    fn holds_header(&self, position: u64) -> bool {
        position >= self.start && position + HEADER_BYTES as u64 <= self.end()
    }
}

#[derive(Debug)]
pub(crate) struct Segment {
    id: u64,
    base_offset: i64,
    path: PathBuf,
    dir: PathBuf,
    index: RwLock<SegmentIndex>,
    /// The write handle while this is the active segment.
    writer: RwLock<Option<Arc<File>>>,
    /// Whether the write handle writes straight to the device.
    direct: AtomicBool,
    /// How far the file holds what was appended; writes to the file
    /// happen under this lock, and the write handle is swapped under it.
    written: Mutex<u64>,
    /// The same, for readers, who never look past it.
    written_bytes: AtomicU64,
    /// The newest bytes, in memory (see [`crate::recent`]).
    chunks: Arc<Chunks>,
    /// The file mapped for reading: once sealed, the whole file, counted in
    /// the [`FileCache`]; while active and written through the page cache,
    /// ahead of its end.
    map: Arc<MapSlot>,
    /// Wall-clock time of the first append, for rolling by age.
    first_append_ms: RwLock<Option<i64>>,
    files: Arc<FileCache>,
}

impl Segment {
    /// Creates a new, empty active segment.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        interval_bytes: u64,
        files: Arc<FileCache>,
        recent: &Arc<Recent>,
    ) -> Result<Self> {
        let path = log_path(dir, base_offset);
        let (file, direct) = open_writer(&path, true, recent.direct_writes())?;
        files::sync_dir(dir)?;
        let segment = Self::assemble(
            dir,
            base_offset,
            SegmentIndex::new(base_offset, interval_bytes),
            files,
            recent,
        );
        segment.direct.store(direct, Ordering::Release);
        *segment.writer.write().expect("writer lock") = Some(Arc::new(file));
        segment.chunks.set_active(true);
        Ok(segment)
    }

    fn assemble(
        dir: &Path,
        base_offset: i64,
        index: SegmentIndex,
        files: Arc<FileCache>,
        recent: &Arc<Recent>,
    ) -> Self {
        let covered = index.covered_bytes();
        Self {
            id: NEXT_SEGMENT_ID.fetch_add(1, Ordering::Relaxed),
            base_offset,
            path: log_path(dir, base_offset),
            dir: dir.to_path_buf(),
            index: RwLock::new(index),
            writer: RwLock::new(None),
            direct: AtomicBool::new(false),
            written: Mutex::new(covered),
            written_bytes: AtomicU64::new(covered),
            chunks: Chunks::new(recent),
            map: Arc::new(RwLock::new(None)),
            first_append_ms: RwLock::new(None),
            files,
        }
    }

    /// Opens an existing segment. With `trust_index`, a valid index file
    /// pair that covers the whole file is used as is; otherwise, or when the
    /// files are damaged, every batch is read and checked, and the file is
    /// truncated before the first torn or corrupt one.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        interval_bytes: u64,
        files: Arc<FileCache>,
        recent: &Arc<Recent>,
        trust_index: bool,
    ) -> Result<(Self, Option<ScanReport>)> {
        let path = log_path(dir, base_offset);
        let length = fs::metadata(&path).map_err(LogError::io(&path))?.len();
        if trust_index {
            let offset_file = fs::read(offset_index_path(dir, base_offset)).unwrap_or_default();
            let time_file = fs::read(time_index_path(dir, base_offset)).unwrap_or_default();
            if let Some(index) = SegmentIndex::decode(
                base_offset,
                interval_bytes,
                length,
                &offset_file,
                &time_file,
            ) {
                return Ok((Self::assemble(dir, base_offset, index, files, recent), None));
            }
            tracing::warn!(segment = %path.display(), "index missing or damaged; rebuilding it from the segment");
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(LogError::io(&path))?;
        let (index, report) = scan(&file, &path, base_offset, interval_bytes, length)?;
        if index.covered_bytes() < length {
            file.set_len(index.covered_bytes())
                .map_err(LogError::io(&path))?;
            file.sync_all().map_err(LogError::io(&path))?;
        }
        // A rebuilt index may differ from the files on disk; drop them so a
        // later trusted open cannot pick up a stale pair.
        let _ = fs::remove_file(offset_index_path(dir, base_offset));
        let _ = fs::remove_file(time_index_path(dir, base_offset));
        Ok((
            Self::assemble(dir, base_offset, index, files, recent),
            Some(report),
        ))
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> i64 {
        self.index.read().expect("index lock").next_offset()
    }

    pub fn size_bytes(&self) -> u64 {
        self.index.read().expect("index lock").covered_bytes()
    }

    /// How far readers may read: what the index covers and the file holds.
    fn readable(&self, index: &SegmentIndex) -> u64 {
        index
            .covered_bytes()
            .min(self.written_bytes.load(Ordering::Acquire))
    }

    pub fn max_timestamp(&self) -> i64 {
        self.index.read().expect("index lock").max_timestamp()
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes() == 0
    }

    pub fn first_append_ms(&self) -> Option<i64> {
        *self.first_append_ms.read().expect("first append lock")
    }

    /// Makes this the active segment: opens its write handle.
    pub fn activate(&self) -> Result<()> {
        let (file, direct) = open_writer(&self.path, false, self.chunks.direct_writes())?;
        self.direct.store(direct, Ordering::Release);
        *self.writer.write().expect("writer lock") = Some(Arc::new(file));
        *self.map.write().expect("map lock") = None;
        self.files.forget(self.id);
        self.chunks.set_active(true);
        Ok(())
    }

    fn is_direct(&self) -> bool {
        self.direct.load(Ordering::Acquire)
    }

    /// The segment's first `end` bytes (all covered by its index), mapped
    /// read-only.
    fn mapped(&self, end: u64) -> Result<Bytes> {
        let end = end as usize;
        let fits = |map: &Option<Bytes>| map.as_ref().filter(|map| map.len() >= end).cloned();
        let held = fits(&self.map.read().expect("map lock"));
        let (map, sealed) = match held {
            Some(map) => (map, false),
            None => {
                let mut slot = self.map.write().expect("map lock");
                match fits(&slot) {
                    Some(map) => (map, false),
                    None => {
                        // Under the slot's lock, so a seal meanwhile is seen.
                        let writer = self.writer.read().expect("writer lock").clone();
                        let map = self.map_file(writer.as_deref())?;
                        if map.len() < end {
                            let reason = format!(
                                "the file holds {} bytes, its index covers {end}",
                                map.len()
                            );
                            return Err(self.corrupt(map.len() as u64, reason));
                        }
                        *slot = Some(map.clone());
                        (map, writer.is_none())
                    }
                }
            }
        };
        if sealed {
            self.files.mapped(self.id, &self.map);
        } else if self.writer.read().expect("writer lock").is_none() {
            self.files.touch(self.id);
        }
        Ok(map.slice(..end))
    }

    /// Maps the active segment (`writer`) ahead of its end, or the whole
    /// sealed file.
    fn map_file(&self, writer: Option<&File>) -> Result<Bytes> {
        let mapped = match writer {
            Some(file) => {
                let written = self.size_bytes() as usize;
                files::map_file(file, written.max(ACTIVE_MAP_MIN_BYTES).next_power_of_two())
            }
            None => File::open(&self.path).and_then(|file| {
                let length = file.metadata()?.len();
                files::map_file(&file, length as usize)
            }),
        };
        mapped.map_err(LogError::io(&self.path))
    }

    /// Reads the file from `from` to `to` with the write handle, in whole
    /// blocks into block-aligned memory: a direct read when the handle
    /// writes directly, so no block of the active segment enters the page
    /// cache. A direct read the device refuses is made through the page
    /// cache instead.
    fn read_file(&self, file: &File, from: u64, to: u64) -> Result<Bytes> {
        let (start, stop) = (recent::align_down(from), recent::align_up(to));
        let mut buffer = Buffer::zeroed(recent::align_up(stop - start).max(BLOCK) as usize)
            .map_err(LogError::io(&self.path))?;
        let target = &mut buffer.as_mut_slice()[..(stop - start) as usize];
        let mut buffered = None;
        let mut filled = 0;
        while filled < target.len() {
            let handle = buffered.as_ref().unwrap_or(file);
            match handle.read_at(&mut target[filled..], start + filled as u64) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) && buffered.is_none() => {
                    tracing::warn!(segment = %self.path.display(), %error, "direct read refused; reading through the page cache");
                    buffered = Some(File::open(&self.path).map_err(LogError::io(&self.path))?);
                }
                Err(error) => return Err(LogError::io(&self.path)(error)),
            }
        }
        let needed = (to - start) as usize;
        if filled < needed {
            let reason = format!("the file ends before byte {to}, which its index covers");
            return Err(self.corrupt(start + filled as u64, reason));
        }
        Ok(recent::into_bytes(buffer, needed).slice((from - start) as usize..))
    }

    /// Bytes from `position`, where a batch starts, on: whole batches up to
    /// the view's end, at least the first of them. `want` is how much the
    /// caller would like.
    fn view(&self, position: u64, end: u64, want: usize) -> Result<View> {
        if let Some(chunk) = self.chunks.holding(position) {
            let to = chunk.written_end().min(end);
            return Ok(View {
                bytes: chunk.slice(position, to),
                start: position,
            });
        }
        let writer = self.writer.read().expect("writer lock").clone();
        let Some(file) = writer.filter(|_| self.is_direct()) else {
            return Ok(View {
                bytes: self.mapped(end)?,
                start: 0,
            });
        };
        // Older bytes of the active segment: read them, up to where the
        // chunks start.
        let limit = self
            .chunks
            .first_batch()
            .filter(|&first| first > position)
            .map_or(end, |first| first.min(end));
        let mut length = (want.max(FILE_READ_MIN_BYTES) as u64).min(limit.saturating_sub(position));
        loop {
            let bytes = self.read_file(&file, position, position + length)?;
            let whole = batch::parse_header(&bytes).map(|h| u64::from(h.size_bytes));
            match whole {
                Ok(size) if size > length && position + size <= limit => length = size,
                _ => {
                    return Ok(View {
                        bytes,
                        start: position,
                    });
                }
            }
        }
    }

    /// The chunk the append of `length` bytes at `position` goes to: the
    /// newest if they fit, else a new one from the block holding `position`.
    fn chunk_for(&self, position: u64, length: usize) -> Result<Arc<Chunk>> {
        let newest = self.chunks.newest();
        if let Some(chunk) = &newest
            && chunk.fits(position, length)
        {
            return Ok(Arc::clone(chunk));
        }
        let file_start = recent::align_down(position);
        let head = match newest {
            _ if file_start == position => Bytes::new(),
            Some(chunk) if chunk.appended_end() == position && chunk.file_start() <= file_start => {
                Bytes::copy_from_slice(chunk.appended(file_start, position))
            }
            _ => {
                // No chunk ends here (the segment was opened from its
                // file): the file holds what comes before.
                self.write_behind(position)?;
                let file = self.writer_handle();
                self.read_file(&file, file_start, position)?
            }
        };
        self.chunks
            .start(file_start, position, &head, length)
            .map_err(LogError::io(&self.path))
    }

    fn writer_handle(&self) -> Arc<File> {
        self.writer
            .read()
            .expect("writer lock")
            .clone()
            .expect("append to the active segment only")
    }

    /// Appends already-validated batches at the end, each stamped with the
    /// base offset and leader epoch of its header in `headers`. The caller
    /// serialises appends to one partition. Returns whether the
    /// bytes are in the file already; if not (direct writes), they are in
    /// memory and [`Segment::write_behind`] takes them there.
    pub fn append(&self, bytes: &[u8], headers: &[BatchHeader], now_ms: i64) -> Result<bool> {
        let position = self.size_bytes();
        let end = position + bytes.len() as u64;
        let in_file = if self.is_direct() {
            let chunk = self.chunk_for(position, bytes.len())?;
            // SAFETY: appends to a segment are serialised by the caller, and
            // readers see the bytes only once written and published.
            unsafe { chunk.write(position, bytes, |copy| stamp(copy, headers)) };
            false
        } else {
            let mut written = self.written.lock().expect("written lock");
            // Under the lock, the handle is the one writes use now.
            let writer = self.writer_handle();
            self.write_pending(&writer, &mut written, position)?;
            let mut stamped = bytes.to_vec();
            stamp(&mut stamped, headers);
            writer
                .write_all_at(&stamped, position)
                .map_err(LogError::io(&self.path))?;
            *written = end;
            self.written_bytes.store(end, Ordering::Release);
            true
        };
        let mut first = self.first_append_ms.write().expect("first append lock");
        first.get_or_insert(now_ms);
        drop(first);
        let mut index = self.index.write().expect("index lock");
        let mut at = position;
        for header in headers {
            index.observe(at, header);
            at += u64::from(header.size_bytes);
        }
        Ok(in_file)
    }

    /// Writes what was appended up to `upto` from the chunks to the file,
    /// if it is not there yet, and makes it readable.
    pub fn write_behind(&self, upto: u64) -> Result<()> {
        let mut written = self.written.lock().expect("written lock");
        if *written >= upto {
            return Ok(());
        }
        let Some(writer) = self.writer.read().expect("writer lock").clone() else {
            // A sealed segment's bytes were all written before the seal.
            return Ok(());
        };
        self.write_pending(&writer, &mut written, upto)
    }

    /// Writes the appended bytes from `*written` to `upto` from the chunks
    /// to the file, as `writer` writes: the blocks they touch whole,
    /// straight to the device, or just those bytes through the page cache.
    /// A direct write the file system refuses is made through the page
    /// cache, which the segment then keeps to.
    fn write_pending(&self, writer: &File, written: &mut u64, upto: u64) -> Result<()> {
        if *written >= upto {
            return Ok(());
        }
        let (from, to) = (recent::align_down(*written), recent::align_up(upto));
        let parts = self.chunks.covering(from, to).ok_or_else(|| {
            let reason = format!("appended bytes {from}..{to} are no longer in memory");
            self.corrupt(from, reason)
        })?;
        let mut refused = !self.is_direct();
        for (chunk, low, high) in &parts {
            if refused {
                break;
            }
            match chunk.write_blocks(writer, *low, *high) {
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::warn!(segment = %self.path.display(), %error, "direct write refused; writing through the page cache");
                    let buffered = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&self.path)
                        .map_err(LogError::io(&self.path))?;
                    *self.writer.write().expect("writer lock") = Some(Arc::new(buffered));
                    self.direct.store(false, Ordering::Release);
                    refused = true;
                }
                done => done.map_err(LogError::io(&self.path))?,
            }
        }
        if refused {
            let writer = self.writer_handle();
            for (chunk, low, high) in &parts {
                let (low, high) = ((*low).max(*written), (*high).min(upto));
                if low < high {
                    writer
                        .write_all_at(chunk.appended(low, high), low)
                        .map_err(LogError::io(&self.path))?;
                }
            }
        }
        // Every chunk, not only those written from: a chunk's last bytes
        // may have gone out as the head of the next one.
        self.chunks.published_up_to(upto);
        *written = upto;
        self.written_bytes.store(upto, Ordering::Release);
        Ok(())
    }

    /// Flushes appended bytes to stable storage.
    pub fn sync(&self) -> Result<()> {
        if let Some(writer) = self.writer.read().expect("writer lock").clone() {
            writer.sync_data().map_err(LogError::io(&self.path))?;
        }
        Ok(())
    }

    /// Cuts the zeros a direct write leaves after the last batch, then
    /// flushes: the file is then exactly what the index covers.
    pub fn finish(&self) -> Result<()> {
        self.write_behind(self.size_bytes())?;
        if let Some(writer) = self.writer.read().expect("writer lock").clone() {
            let covered = self.size_bytes();
            let length = writer.metadata().map_err(LogError::io(&self.path))?.len();
            if length > covered {
                writer.set_len(covered).map_err(LogError::io(&self.path))?;
            }
            writer.sync_data().map_err(LogError::io(&self.path))?;
        }
        Ok(())
    }

    /// Writes the index files describing the segment as it is now.
    pub fn write_index(&self) -> Result<()> {
        let (offsets, times) = self.index.read().expect("index lock").encode();
        files::write_atomically(&offset_index_path(&self.dir, self.base_offset), &offsets)?;
        files::write_atomically(&time_index_path(&self.dir, self.base_offset), &times)?;
        Ok(())
    }

    /// Seals the segment: no more appends; its data is synced and its index
    /// written, and the next read of bytes no longer in memory maps the
    /// sealed file.
    pub fn seal(&self) -> Result<()> {
        self.finish()?;
        self.write_index()?;
        *self.writer.write().expect("writer lock") = None;
        self.chunks.set_active(false);
        // The next read maps the sealed file as it is.
        *self.map.write().expect("map lock") = None;
        Ok(())
    }

    /// Deletes the segment's files. Readers holding its handle finish.
    pub fn delete(&self) -> Result<()> {
        self.files.forget(self.id);
        self.chunks.clear();
        for path in [
            self.path.clone(),
            offset_index_path(&self.dir, self.base_offset),
            time_index_path(&self.dir, self.base_offset),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(LogError::Io {
                        path,
                        source: error,
                    });
                }
            }
        }
        Ok(())
    }

    /// Whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (but at least one batch), each checked, and the offset
    /// after the last; `None` when the segment holds nothing at or after
    /// `offset`. The bytes are a slice of memory the log holds anyway (a
    /// chunk, the mapped file), not a copy, unless they had to be read.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<(Bytes, i64)>> {
        let (mut position, mut expected_base, end) = {
            let index = self.index.read().expect("index lock");
            if offset >= index.next_offset() {
                return Ok(None);
            }
            let (position, base) = index.position_for_offset(offset);
            (position, base, self.readable(&index))
        };
        let mut view = self.view(position, end, max_bytes)?;
        // Skip batches that end before `offset` (at most one index interval),
        // checking that offsets run on without a gap.
        let first = loop {
            if position >= end {
                return Ok(None);
            }
            let header = self.header_at(&mut view, position, end, expected_base, max_bytes)?;
            if header.last_offset() >= offset {
                break header;
            }
            position += u64::from(header.size_bytes);
            expected_base = header.last_offset() + 1;
        };
        if position < view.start || position + u64::from(first.size_bytes) > view.end() {
            view = self.view(position, end, max_bytes)?;
        }
        let start = position;
        let available = view.end() - start;
        let limit = start + (max_bytes.max(first.size_bytes as usize) as u64).min(available);
        // Whole batches only, each checked before it is served.
        while position < limit && view.holds_header(position) {
            let header = self.read_header(&view, position, end, expected_base)?;
            let next = position + u64::from(header.size_bytes);
            if next > limit {
                break;
            }
            batch::validate(&view.from(position)[..header.size_bytes as usize])
                .map_err(|e| self.corrupt(position, e.to_string()))?;
            expected_base = header.last_offset() + 1;
            position = next;
        }
        let slice = (start - view.start) as usize..(position - view.start) as usize;
        Ok(Some((view.bytes.slice(slice), expected_base)))
    }

    /// Appends to `headers` those of the batches from the one holding
    /// `offset` to the end. On a damaged batch, the headers before it are
    /// there and the error says where it is.
    pub fn headers_from(&self, offset: i64, headers: &mut Vec<BatchHeader>) -> Result<()> {
        let (mut position, mut expected_base, end) = {
            let index = self.index.read().expect("index lock");
            let (position, base) = index.position_for_offset(offset);
            (position, base, self.readable(&index))
        };
        let mut view = self.view(position, end, SCAN_CHUNK_BYTES)?;
        while position < end {
            let header =
                self.header_at(&mut view, position, end, expected_base, SCAN_CHUNK_BYTES)?;
            if header.last_offset() >= offset {
                headers.push(header);
            }
            position += u64::from(header.size_bytes);
            expected_base = header.last_offset() + 1;
        }
        Ok(())
    }

    /// Base offset and max timestamp of the first batch whose max timestamp
    /// is at least `timestamp`.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let (mut position, mut expected_base, end) = {
            let index = self.index.read().expect("index lock");
            if index.max_timestamp() < timestamp {
                return Ok(None);
            }
            let (position, base) = index.position_for_timestamp(timestamp);
            (position, base, self.readable(&index))
        };
        let mut view = self.view(position, end, SCAN_CHUNK_BYTES)?;
        while position < end {
            let header =
                self.header_at(&mut view, position, end, expected_base, SCAN_CHUNK_BYTES)?;
            if header.max_timestamp >= timestamp {
                return Ok(Some((header.base_offset, header.max_timestamp)));
            }
            position += u64::from(header.size_bytes);
            expected_base = header.last_offset() + 1;
        }
        Ok(None)
    }

    /// The batch header at `position`, moving `view` there first if it does
    /// not hold it.
    fn header_at(
        &self,
        view: &mut View,
        position: u64,
        end: u64,
        expected_base: i64,
        want: usize,
    ) -> Result<BatchHeader> {
        if !view.holds_header(position) {
            *view = self.view(position, end, want)?;
        }
        self.read_header(view, position, end, expected_base)
    }

    /// Reads the batch header at `position`, which must carry `expected_base`
    /// and the log's leader epoch (fields the CRC does not cover). `end` is
    /// where the segment's batches end.
    fn read_header(
        &self,
        view: &View,
        position: u64,
        end: u64,
        expected_base: i64,
    ) -> Result<BatchHeader> {
        let header = batch::parse_header(view.from(position))
            .map_err(|e| self.corrupt(position, e.to_string()))?;
        if header.base_offset != expected_base || header.leader_epoch != LEADER_EPOCH {
            let reason = format!(
                "batch has base offset {} and epoch {}, expected offset {expected_base}",
                header.base_offset, header.leader_epoch
            );
            return Err(self.corrupt(position, reason));
        }
        // A damaged length would otherwise read as a batch too big to serve
        // (a reader stuck at its offset) or skip the batches after it.
        if position + u64::from(header.size_bytes) > end {
            let reason = format!(
                "batch of {} bytes runs past the {end} bytes the segment holds",
                header.size_bytes
            );
            return Err(self.corrupt(position, reason));
        }
        Ok(header)
    }

    fn corrupt(&self, position: u64, reason: String) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }
}

/// Reads every batch of a segment file, checking each one's header, CRC,
/// offset continuity and epoch, and builds the index of the valid prefix.
fn scan(
    file: &File,
    path: &Path,
    base_offset: i64,
    interval_bytes: u64,
    length: u64,
) -> Result<(SegmentIndex, ScanReport)> {
    let mut index = SegmentIndex::new(base_offset, interval_bytes);
    let mut buffer: Vec<u8> = Vec::with_capacity(SCAN_CHUNK_BYTES);
    let mut buffer_position = 0u64; // file position of buffer[0]
    let mut position = 0u64;
    let mut reason = None;
    while position < length {
        let needed_from = (position - buffer_position) as usize;
        // Make sure the buffer holds at least the header at `position`.
        if buffer.len() < needed_from + HEADER_BYTES {
            refill(
                file,
                path,
                &mut buffer,
                &mut buffer_position,
                position,
                HEADER_BYTES,
                length,
            )?;
        }
        let at = (position - buffer_position) as usize;
        if buffer.len() - at < HEADER_BYTES {
            reason = Some(format!("torn batch header at byte {position}"));
            break;
        }
        let header = match batch::parse_header(&buffer[at..]) {
            Ok(header) => header,
            Err(error) => {
                reason = Some(format!("bad batch header at byte {position}: {error}"));
                break;
            }
        };
        let size = header.size_bytes as usize;
        if buffer.len() - at < size {
            refill(
                file,
                path,
                &mut buffer,
                &mut buffer_position,
                position,
                size,
                length,
            )?;
        }
        let at = (position - buffer_position) as usize;
        if buffer.len() - at < size {
            reason = Some(format!(
                "torn batch at byte {position}: {size} bytes expected, {} present",
                buffer.len() - at
            ));
            break;
        }
        let checked = match batch::validate(&buffer[at..at + size]) {
            Ok(checked) => checked,
            Err(error) => {
                reason = Some(format!("bad batch at byte {position}: {error}"));
                break;
            }
        };
        if checked.base_offset != index.next_offset() || checked.leader_epoch != LEADER_EPOCH {
            reason = Some(format!(
                "batch at byte {position} has base offset {} and epoch {}, expected offset {}",
                checked.base_offset,
                checked.leader_epoch,
                index.next_offset()
            ));
            break;
        }
        index.observe(position, &checked);
        position += size as u64;
    }
    let mut padding_bytes = 0;
    if reason.is_some() && length - position < BLOCK {
        let mut rest = vec![0u8; (length - position) as usize];
        file.read_exact_at(&mut rest, position)
            .map_err(LogError::io(path))?;
        if rest.iter().all(|&byte| byte == 0) {
            padding_bytes = rest.len() as u64;
            reason = None;
        }
    }
    let truncated_bytes = length - index.covered_bytes() - padding_bytes;
    if let Some(reason) = &reason {
        tracing::warn!(segment = %path.display(), truncated_bytes, %reason, "truncating segment before a torn or corrupt batch");
    }
    Ok((
        index,
        ScanReport {
            truncated_bytes,
            reason,
            padding_bytes,
        },
    ))
}

/// Refills `buffer` so it starts at `position` and holds at least `needed`
/// bytes (or up to the end of the file).
fn refill(
    file: &File,
    path: &Path,
    buffer: &mut Vec<u8>,
    buffer_position: &mut u64,
    position: u64,
    needed: usize,
    length: u64,
) -> Result<()> {
    let want = needed
        .max(SCAN_CHUNK_BYTES)
        .min((length - position) as usize);
    buffer.resize(want, 0);
    file.read_exact_at(buffer, position)
        .map_err(LogError::io(path))?;
    *buffer_position = position;
    Ok(())
}
