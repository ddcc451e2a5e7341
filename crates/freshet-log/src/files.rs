//! File-system helpers the log relies on for crash safety, memory maps of
//! segment files, and the bound on how many sealed segments are mapped.

use std::fs::{self, File};
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use lru::LruCache;

use crate::error::{LogError, Result};

/// Makes a directory entry change (create, rename, delete) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(LogError::io(dir))
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or
/// the new content, never a mix: write a temporary file, fsync, rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(LogError::io(&temporary))?;
    file.write_all(bytes).map_err(LogError::io(&temporary))?;
    file.sync_all().map_err(LogError::io(&temporary))?;
    drop(file);
    fs::rename(&temporary, path).map_err(LogError::io(path))?;
    sync_dir(path.parent().expect("files live in a directory"))
}

/// A segment's file mapped for reading, once a read needs it.
pub(crate) type MapSlot = RwLock<Option<Bytes>>;

/// Bounds how many sealed segments are mapped at once across the log: at
/// most `capacity`; the least recently read loses its map first (readers
/// still holding slices of it finish). Each map lives in its segment, so
/// it goes with the segment, and a topic deleted and created again under
/// the same name can never be served another file's map.
#[derive(Debug)]
pub struct FileCache {
    mapped: Mutex<LruCache<u64, Weak<MapSlot>>>,
}

impl FileCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).expect("file cache capacity is positive");
        Self {
            mapped: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Counts segment `id`'s map (in `slot`) among those held; if that is
    /// one too many, unmaps the least recently read. Call it without
    /// holding any slot's lock.
    pub(crate) fn mapped(&self, id: u64, slot: &Arc<MapSlot>) {
        let evicted = self
            .mapped
            .lock()
            .expect("map cache lock")
            .push(id, Arc::downgrade(slot));
        if let Some((evicted, slot)) = evicted.filter(|(evicted, _)| *evicted != id)
            && let Some(slot) = slot.upgrade()
        {
            tracing::trace!(
                segment = evicted,
                "unmapping the least recently read segment"
            );
            *slot.write().expect("map lock") = None;
        }
    }

    /// Marks segment `id`'s map as just read.
    pub(crate) fn touch(&self, id: u64) {
        self.mapped.lock().expect("map cache lock").get(&id);
    }

    pub(crate) fn forget(&self, id: u64) {
        self.mapped.lock().expect("map cache lock").pop(&id);
    }

    /// Sealed segments mapped now.
    pub fn len(&self) -> usize {
        self.mapped.lock().expect("map cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Maps `length` bytes of `file` read-only (an empty map for 0 bytes).
///
/// The log only ever reads bytes its index covers, which are always
/// inside the file, so no access can reach past the end of the file
/// even when `length` does (a map of the active segment grows ahead of
/// it); and the log never shrinks a file that is mapped: files are only
/// cut back while a partition opens, before any reader.
pub(crate) fn map_file(file: &File, length: usize) -> std::io::Result<Bytes> {
    if length == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: see above; the bytes are only read.
    let map = unsafe { memmap2::MmapOptions::new().len(length).map(file)? };
    Ok(Bytes::from_owner(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_never_holds_more_than_its_capacity() {
        let cache = FileCache::new(3);
        let slots: Vec<Arc<MapSlot>> = (0..10)
            .map(|_| Arc::new(RwLock::new(Some(Bytes::from_static(b"x")))))
            .collect();
        for (id, slot) in slots.iter().enumerate() {
            cache.mapped(id as u64, slot);
            assert!(cache.len() <= 3);
        }
        let held = |slot: &Arc<MapSlot>| slot.read().unwrap().is_some();
        assert!(
            slots[..7].iter().all(|slot| !held(slot)),
            "the least recent lost their maps"
        );
        assert!(slots[7..].iter().all(held));
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join("state.tmp").exists());
    }
}
