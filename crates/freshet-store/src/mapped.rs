//! Cold extents read through memory maps.
//!
//! DataFusion's own reader asks the object store for each byte range a
//! query needs, and the local store answers each one on a blocking thread
//! with a freshly allocated buffer: the kernel zeroes its pages, the read
//! copies the file into them. For a selective query that is most of the
//! work (a lookup by the dedup key reads every row group's bloom filter
//! and a whole column chunk, then keeps one row). Here a range is a slice
//! of the file's pages in the page cache, shared, not copied.
//!
//! Extents are written to a temporary file and renamed into place, then
//! never written again: a mapping cannot see a file change under it, and
//! stays readable when a merge or retention deletes its extent. Pages not
//! in the page cache are read by the page fault, on the query thread.
//! Extents are not encrypted, so the reader has no decryption to set up.

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{ParquetFileMetrics, ParquetFileReaderFactory};
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::object_store::ObjectStore;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use memmap2::Mmap;

use crate::extent::ExtentFile;

/// Opens each file a scan reads as a memory map. Footers and page
/// indexes still come through the session's metadata cache (and, when
/// not cached yet, through `store`).
#[derive(Debug)]
pub struct MappedReaderFactory {
    store: Arc<dyn ObjectStore>,
    metadata_cache: Arc<FileMetadataCache>,
}

impl MappedReaderFactory {
    pub fn new(store: Arc<dyn ObjectStore>, metadata_cache: Arc<FileMetadataCache>) -> Self {
        Self {
            store,
            metadata_cache,
        }
    }
}

impl ParquetFileReaderFactory for MappedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        // The store's scans carry the extent's file; a location is the
        // local store's percent-encoded form of the path.
        let path = match file.extension::<Arc<ExtentFile>>() {
            Some(extent) => extent.path().to_path_buf(),
            None => LocalFileSystem::new().path_to_filesystem(&file.object_meta.location)?,
        };
        let opened = File::open(&path).map_err(|e| {
            DataFusionError::External(format!("opening {}: {e}", path.display()).into())
        })?;
        // Safety: the extents this process writes are renamed into place
        // complete and never written again (see the module comment). Were
        // another process to truncate one, or the disk fail under it, a read
        // would fault (SIGBUS) instead of failing the query.
        let map = unsafe { Mmap::map(&opened) }.map_err(|e| {
            DataFusionError::External(format!("mapping {}: {e}", path.display()).into())
        })?;
        Ok(Box::new(MappedReader {
            map: Arc::new(map),
            metrics: ParquetFileMetrics::new(
                partition_index,
                file.object_meta.location.as_ref(),
                metrics,
            ),
            file,
            store: self.store.clone(),
            metadata_cache: self.metadata_cache.clone(),
        }))
    }
}

struct MappedReader {
    map: Arc<Mmap>,
    metrics: ParquetFileMetrics,
    file: PartitionedFile,
    store: Arc<dyn ObjectStore>,
    metadata_cache: Arc<FileMetadataCache>,
}

/// A range of a mapped file, owning its share of the mapping.
struct Mapped {
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

impl MappedReader {
    fn slice(&self, range: Range<u64>) -> Result<Bytes, ParquetError> {
        let (start, end) = (range.start as usize, range.end as usize);
        if start > end || end > self.map.len() {
            return Err(ParquetError::EOF(format!(
                "{}: bytes {start}..{end} asked of a file of {} bytes",
                self.file.object_meta.location,
                self.map.len()
            )));
        }
        self.metrics.bytes_scanned.add(end - start);
        Ok(Bytes::from_owner(Mapped {
            map: self.map.clone(),
            range: start..end,
        }))
    }
}

impl Drop for MappedReader {
    /// Fills the scan's bytes-read-of-file-size ratio, as DataFusion's own
    /// reader does.
    fn drop(&mut self) {
        let ratio = &self.metrics.scan_efficiency_ratio;
        ratio.add_part(self.metrics.bytes_scanned.value());
        ratio.set_total(self.file.object_meta.size as usize);
    }
}

impl AsyncFileReader for MappedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        futures::future::ready(self.slice(range)).boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, ParquetError>> {
        let slices = ranges.into_iter().map(|range| self.slice(range)).collect();
        futures::future::ready(slices).boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>, ParquetError>> {
        async move {
            DFParquetMetadata::new(self.store.as_ref(), &self.file.object_meta)
                .with_file_metadata_cache(Some(self.metadata_cache.clone()))
                .with_page_index_policy(options.map(|o| o.column_index_policy()))
                .fetch_metadata()
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::runtime_env::RuntimeEnv;
    use datafusion::object_store::local::LocalFileSystem;
    use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
    use futures::TryStreamExt;

    use super::*;
    use crate::extent::tests::{numbers, numbers_of};
    use crate::extent::write_parquet;

    /// Rows read through the mapping equal those written, also when the
    /// file is deleted after its footer was read; a range past the end is
    /// an error.
    #[test]
    fn mapped_extents_read_back_even_once_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.parquet");
        let values: Vec<i64> = (0..100_000).collect();
        let (schema, batch) = numbers(&values);
        let bytes = write_parquet(&path, &schema, &[batch], &[]).unwrap();
        let factory = MappedReaderFactory::new(
            Arc::new(LocalFileSystem::new()),
            RuntimeEnv::default()
                .cache_manager
                .get_file_metadata_cache(),
        );
        let file = PartitionedFile::new(path.to_string_lossy(), bytes);
        let metrics = ExecutionPlanMetricsSet::new();
        let mut reader: Box<dyn AsyncFileReader> =
            factory.create_reader(0, file, None, &metrics).unwrap();

        let past_end = futures::executor::block_on(reader.get_bytes(bytes - 4..bytes + 1));
        assert!(past_end.is_err());
        let read = futures::executor::block_on(async {
            let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
            std::fs::remove_file(&path).unwrap();
            builder.build()?.try_collect::<Vec<_>>().await
        })
        .unwrap();
        let read = numbers_of(&read);
        assert_eq!(read, values);
    }
}
