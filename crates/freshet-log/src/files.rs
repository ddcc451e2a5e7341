//! File-system helpers the log relies on for crash safety, and the bounded
//! cache of read handles for sealed segments.

use std::fs::{self, File};
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// Read handles of sealed segments, at most `capacity` open at once; the
/// least recently used is closed first (readers holding it finish).
#[derive(Debug)]
pub struct FileCache {
    open: Mutex<LruCache<PathBuf, Arc<File>>>,
}

impl FileCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).expect("file cache capacity is positive");
        Self {
            open: Mutex::new(LruCache::new(capacity)),
        }
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
    }

    pub fn len(&self) -> usize {
        self.open.lock().expect("file cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
