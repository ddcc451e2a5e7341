//! File-system helpers the log relies on for crash safety, and the bounded
//! cache of read handles and memory maps for sealed segments.

use std::fs::{self, File};
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// Read handles and memory maps of sealed segments, at most `capacity` of
/// each at once; the least recently used is closed (unmapped) first, and
/// readers still holding it finish.
#[derive(Debug)]
pub struct FileCache {
    open: Mutex<LruCache<PathBuf, Arc<File>>>,
    mapped: Mutex<LruCache<PathBuf, Bytes>>,
}

impl FileCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).expect("file cache capacity is positive");
        Self {
            open: Mutex::new(LruCache::new(capacity)),
            mapped: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The whole sealed file at `path`, mapped read-only: at least its
    /// first `end` bytes (a file that was read before it became the active
    /// segment again has grown since). A map stays valid for as long as a
    /// reader holds a slice of it, even after the file is deleted.
    pub fn map(&self, path: &Path, end: usize) -> Result<Bytes> {
        let cached = self.mapped.lock().expect("map cache lock").get(path).cloned();
        if let Some(map) = cached.filter(|map| map.len() >= end) {
            return Ok(map);
        }
        let file = self.open(path)?;
        let length = file.metadata().map_err(LogError::io(path))?.len();
        let map = map_file(&file, length as usize).map_err(LogError::io(path))?;
        self.mapped
            .lock()
            .expect("map cache lock")
            .put(path.to_path_buf(), map.clone());
        Ok(map)
    }

    pub fn open(&self, path: &Path) -> Result<Arc<File>> {
        let mut open = self.open.lock().expect("file cache lock");
        if let Some(file) = open.get(path) {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(File::open(path).map_err(LogError::io(path))?);
        open.put(path.to_path_buf(), Arc::clone(&file));
        Ok(file)
    }

    pub fn forget(&self, path: &Path) {
        self.open.lock().expect("file cache lock").pop(path);
        self.mapped.lock().expect("map cache lock").pop(path);
    }

    pub fn len(&self) -> usize {
        self.open.lock().expect("file cache lock").len()
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
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(3);
        for i in 0..10 {
            let path = dir.path().join(format!("{i}.log"));
            fs::write(&path, b"x").unwrap();
            cache.open(&path).unwrap();
            assert!(cache.len() <= 3);
        }
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
