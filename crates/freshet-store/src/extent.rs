//! Extents: immutable Parquet files of a table's rows, and the manifest
//! that lists them together with the source positions they account for.
//!
//! The manifest is the table's commit point. An extent file is written and
//! made durable first; then a new manifest naming it and the positions after
//! its rows replaces the old one atomically. After a crash the table resumes
//! reading at the manifest's positions, so every event is in exactly one
//! listed extent or is read again; files no manifest names are removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringViewArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::{ArrowWriter, parquet_to_arrow_schema};
use datafusion::parquet::basic::{Compression, Encoding};
use datafusion::parquet::bloom_filter::Sbbf;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::statistics::Statistics;
use datafusion::parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// What the manifest knows of one extent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtentMeta {
    pub id: u64,
    pub rows: u64,
    /// Size of the Parquet file.
    pub bytes: u64,
    pub min_ingestion_ms: i64,
    pub max_ingestion_ms: i64,
    /// Event-time range (µs), when the table has a time column.
    pub min_event_us: Option<i64>,
    pub max_event_us: Option<i64>,
    pub created_ms: i64,
}

impl ExtentMeta {
    pub fn file_name(id: u64) -> String {
        format!("{id:020}.parquet")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub next_extent_id: u64,
    /// Next source offset per partition: everything before it is in an
    /// extent, was a duplicate, or went to the dead-letter topic.
    pub positions: BTreeMap<u32, i64>,
    pub extents: Vec<ExtentMeta>,
}

const MANIFEST: &str = "manifest.json";

impl Manifest {
    /// Loads the manifest of the table in `dir` (empty if none) and removes
    /// extent files it does not list (left by a crash before their commit).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let extents_dir = dir.join("extents");
        fs::create_dir_all(&extents_dir).map_err(StoreError::io(&extents_dir))?;
        let path = dir.join(MANIFEST);
        let manifest: Manifest = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(error) => return Err(StoreError::io(&path)(error)),
        };
        for entry in fs::read_dir(&extents_dir).map_err(StoreError::io(&extents_dir))? {
            let entry = entry.map_err(StoreError::io(&extents_dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let listed = manifest
                .extents
                .iter()
                .any(|e| ExtentMeta::file_name(e.id) == name);
            // A file a query of this table's previous opening still reads
            // is removed by its last reader.
            if !listed && !ExtentFile::is_held(&entry.path()) {
                tracing::info!(file = %entry.path().display(), "removing an extent no manifest lists");
                fs::remove_file(entry.path()).map_err(StoreError::io(&entry.path()))?;
            }
        }
        for extent in &manifest.extents {
            let file = extents_dir.join(ExtentMeta::file_name(extent.id));
            if !file.exists() {
                return Err(StoreError::Corrupt(format!(
                    "the manifest lists {} but it is missing",
                    file.display()
                )));
            }
        }
        Ok(manifest)
    }

    /// Replaces the manifest in `dir` durably.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        freshet_log::write_atomically(&dir.join(MANIFEST), &bytes)
            .map_err(|e| StoreError::Io(e.to_string()))
    }
}

pub fn extent_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("extents").join(ExtentMeta::file_name(id))
}

/// Rows in a Parquet row group of an extent.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Writes `batches` as one Parquet file, durably; returns its size.
/// `bloom_columns` get a bloom filter per row group, so that a lookup of
/// one value (an event id) reads only the row groups that may hold it.
pub fn write_parquet(
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    bloom_columns: &[String],
) -> Result<u64, StoreError> {
    let temporary = path.with_extension("parquet.tmp");
    let file = File::create(&temporary).map_err(StoreError::io(&temporary))?;
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Pages of at most 16 Ki rows, each with min/max in the page index:
        // events arrive nearly in time order, so a time range (or a value
        // found through the bloom filter) decodes a few pages, not 256 Ki rows.
        .set_data_page_row_count_limit(16 * 1024);
    for column in bloom_columns {
        let column = ColumnPath::from(column.as_str());
        properties = properties
            .set_column_bloom_filter_enabled(column.clone(), true)
            .set_column_bloom_filter_max_ndv(column.clone(), ROW_GROUP_ROWS as u64)
            .set_column_bloom_filter_fpp(column, 0.01);
    }
    let properties = properties.build();
    let parquet_error = |e: datafusion::parquet::errors::ParquetError| {
        StoreError::Io(format!("{}: {e}", temporary.display()))
    };
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(parquet_error)?;
    for batch in batches {
        writer.write(batch).map_err(parquet_error)?;
    }
    let file = writer.into_inner().map_err(parquet_error)?;
    file.sync_all().map_err(StoreError::io(&temporary))?;
    let bytes = file.metadata().map_err(StoreError::io(&temporary))?.len();
    drop(file);
    fs::rename(&temporary, path).map_err(StoreError::io(path))?;
    freshet_log::sync_dir(path.parent().expect("extents live in a directory"))
        .map_err(|e| StoreError::Io(e.to_string()))?;
    Ok(bytes)
}

/// Reads a whole extent into memory, shaped to `schema` (columns added to
/// the table after the extent was written read as nulls).
pub fn read_parquet(path: &Path, schema: &SchemaRef) -> Result<Vec<RecordBatch>, StoreError> {
    let file = File::open(path).map_err(StoreError::io(path))?;
    let parquet_error = |e: datafusion::parquet::errors::ParquetError| {
        StoreError::Io(format!("{}: {e}", path.display()))
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet_error)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(parquet_error)?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        batches.push(conform(batch, schema));
    }
    Ok(batches)
}

/// `batch` with the columns of `schema`, by name; missing ones are nulls.
pub fn conform(batch: RecordBatch, schema: &SchemaRef) -> RecordBatch {
    if batch.schema() == *schema {
        return batch;
    }
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => column.clone(),
            // Strings written before they were read as views.
            Some(column) => datafusion::arrow::compute::cast(column, field.data_type())
                .unwrap_or_else(|_| {
                    datafusion::arrow::array::new_null_array(field.data_type(), rows)
                }),
            None => datafusion::arrow::array::new_null_array(field.data_type(), rows),
        })
        .collect();
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .expect("every table column is nullable except the ingestion time, which every extent has")
}

/// An extent as queries see it: its description, its file, and its rows
/// when it is in the hot cache.
#[derive(Debug, Clone)]
pub struct Extent {
    pub meta: ExtentMeta,
    pub file: Arc<ExtentFile>,
    pub hot: Option<Arc<HotExtent>>,
}

/// An extent's file, shared by the snapshots that read it. A merge or
/// retention that drops the extent from the manifest retires its file:
/// the file is removed when the last snapshot holding it is done, so a
/// query planned just before the change still reads every extent it chose.
/// Handles are shared process-wide by path, so a table reopened by an
/// alter and its old self agree on which files are still read.
#[derive(Debug)]
pub struct ExtentFile {
    path: PathBuf,
    retired: AtomicBool,
    /// Read from the footer when first asked for (`None`: unreadable).
    layout: OnceLock<Option<Arc<ExtentLayout>>>,
}

/// What an extent's footer says of its columns.
#[derive(Debug)]
pub struct ExtentLayout {
    /// The Arrow schema the file was written with.
    pub schema: SchemaRef,
    /// Columns every page of which, in every row group, holds codes into
    /// the row group's dictionary: they can be read as Arrow dictionaries.
    pub dictionary_columns: HashSet<String>,
    /// Where each row group starts (its first column's first page) and the
    /// bounds of its top-level 64-bit integer columns, such as timestamps.
    row_groups: Vec<RowGroupSpan>,
    /// The file's length in bytes.
    length: u64,
}

#[derive(Debug)]
struct RowGroupSpan {
    start: u64,
    /// `(min, max)` by column name, where the statistics give both.
    bounds: HashMap<String, (i64, i64)>,
}

impl ExtentLayout {
    fn read(path: &Path) -> Result<Self, StoreError> {
        let (_, metadata) = open_with_metadata(path)?;
        let file_metadata = metadata.file_metadata();
        let schema = parquet_to_arrow_schema(
            file_metadata.schema_descr(),
            file_metadata.key_value_metadata(),
        )
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
        let row_groups = metadata
            .row_groups()
            .iter()
            .map(|group| {
                let first = group.column(0);
                let start = first
                    .dictionary_page_offset()
                    .unwrap_or_else(|| first.data_page_offset());
                let bounds = group
                    .columns()
                    .iter()
                    .filter(|chunk| chunk.column_path().parts().len() == 1)
                    .filter_map(|chunk| match chunk.statistics()? {
                        Statistics::Int64(stats) => Some((
                            chunk.column_path().parts()[0].clone(),
                            (*stats.min_opt()?, *stats.max_opt()?),
                        )),
                        _ => None,
                    })
                    .collect();
                RowGroupSpan {
                    start: start.max(0) as u64,
                    bounds,
                }
            })
            .collect();
        let mut dictionary_columns = HashSet::new();
        for (at, column) in file_metadata.schema_descr().columns().iter().enumerate() {
            let coded = metadata.row_groups().iter().all(|group| {
                let chunk = group.column(at);
                chunk.dictionary_page_offset().is_some()
                    && chunk.page_encoding_stats_mask().is_some_and(|mask| {
                        mask.is_only(Encoding::RLE_DICTIONARY)
                            || mask.is_only(Encoding::PLAIN_DICTIONARY)
                    })
            });
            if coded && column.path().parts().len() == 1 {
                dictionary_columns.insert(column.name().to_string());
            }
        }
        Ok(Self {
            schema: Arc::new(schema),
            dictionary_columns,
            row_groups,
            length: fs::metadata(path).map_err(StoreError::io(path))?.len(),
        })
    }

    /// The bytes of the file to scan for rows whose 64-bit integer
    /// `column` may lie in `[min, max]`: from the first row group that can
    /// hold one to the start of the row group after the last (a scan of a
    /// byte range reads the row groups whose first page lies in it). `None`
    /// when no row group can; the whole file when its statistics do not say.
    /// Scans split by bytes then share the work of the row groups that
    /// match instead of the whole file's.
    pub fn span_where(
        &self,
        column: &str,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Option<Range<u64>> {
        let may_hold = |group: &RowGroupSpan| match group.bounds.get(column) {
            Some(&(lo, hi)) => min.is_none_or(|min| hi >= min) && max.is_none_or(|max| lo <= max),
            None => true,
        };
        let first = self.row_groups.iter().position(may_hold)?;
        let last = self.row_groups.iter().rposition(may_hold)?;
        let end = self
            .row_groups
            .get(last + 1)
            .map_or(self.length, |next| next.start);
        let start = match first {
            0 => 0,
            _ => self.row_groups[first].start,
        };
        Some(start..end)
    }
}

/// The files snapshots hold, by path.
static HELD: LazyLock<Mutex<HashMap<PathBuf, Weak<ExtentFile>>>> = LazyLock::new(Mutex::default);

impl ExtentFile {
    /// The shared handle of the file at `path`.
    pub fn hold(path: PathBuf) -> Arc<ExtentFile> {
        let mut held = HELD.lock().expect("held files lock");
        if let Some(file) = held.get(&path).and_then(Weak::upgrade) {
            return file;
        }
        let file = Arc::new(ExtentFile {
            path: path.clone(),
            retired: AtomicBool::new(false),
            layout: OnceLock::new(),
        });
        held.insert(path, Arc::downgrade(&file));
        file
    }

    /// Removes the file at `path` now or, if a snapshot holds it, when the
    /// last one is dropped.
    pub fn retire(path: &Path) {
        let held = {
            let mut held = HELD.lock().expect("held files lock");
            let file = held.get(path).and_then(Weak::upgrade);
            if file.is_none() {
                held.remove(path);
            }
            file
        };
        // Outside the lock: dropping the last handle locks it again.
        match held {
            Some(file) => file.retired.store(true, Ordering::Release),
            None => {
                let _ = fs::remove_file(path);
            }
        }
    }

    /// Whether a snapshot holds the file at `path`.
    pub fn is_held(path: &Path) -> bool {
        HELD.lock()
            .expect("held files lock")
            .get(path)
            .is_some_and(|file| file.strong_count() > 0)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's schema and dictionary-coded columns, read once.
    pub fn layout(&self) -> Option<Arc<ExtentLayout>> {
        self.layout
            .get_or_init(|| match ExtentLayout::read(&self.path) {
                Ok(layout) => Some(Arc::new(layout)),
                Err(error) => {
                    tracing::warn!(%error, "reading an extent's footer");
                    None
                }
            })
            .clone()
    }
}

impl Drop for ExtentFile {
    fn drop(&mut self) {
        if *self.retired.get_mut() {
            let _ = fs::remove_file(&self.path);
            let mut held = HELD.lock().expect("held files lock");
            if held
                .get(&self.path)
                .is_some_and(|file| file.strong_count() == 0)
            {
                held.remove(&self.path);
            }
        }
    }
}

/// `batch` with string columns whose buffers hold only the strings they
/// use. Arrow's filter, slice and concat keep whole buffers, so a part of
/// a seal (one time partition) or rows left after dedup would otherwise
/// keep every string of the seal in memory for as long as they are hot.
fn compact_strings(batch: RecordBatch) -> RecordBatch {
    let columns = batch
        .columns()
        .iter()
        .map(
            |column| match column.as_any().downcast_ref::<StringViewArray>() {
                Some(strings)
                    if strings
                        .data_buffers()
                        .iter()
                        .map(|b| b.len())
                        .sum::<usize>()
                        > 2 * strings.total_buffer_bytes_used() =>
                {
                    Arc::new(strings.gc()) as ArrayRef
                }
                _ => column.clone(),
            },
        )
        .collect();
    RecordBatch::try_new(batch.schema(), columns).expect("the same columns, compacted")
}

/// An extent's rows in memory (the hot cache): one batch per Parquet row
/// group, with the row groups' bloom filters, so that a lookup of one key
/// (an event id) scans only the row groups that may hold it, as a read of
/// the file would.
#[derive(Debug)]
pub struct HotExtent {
    groups: Vec<RecordBatch>,
    blooms: Vec<ColumnBlooms>,
}

/// A bloom-filtered column: its name and one filter per row group (`None`
/// where the file has none).
type ColumnBlooms = (String, Vec<Option<Sbbf>>);

fn open_with_metadata(path: &Path) -> Result<(File, ParquetMetaData), StoreError> {
    let file = File::open(path).map_err(StoreError::io(path))?;
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
    Ok((file, metadata))
}

fn row_group_rows(metadata: &ParquetMetaData) -> Vec<usize> {
    metadata
        .row_groups()
        .iter()
        .map(|group| usize::try_from(group.num_rows()).unwrap_or(usize::MAX))
        .collect()
}

/// Each of `columns`' bloom filters, one per row group.
fn read_blooms(
    file: &File,
    metadata: &ParquetMetaData,
    columns: &[String],
    path: &Path,
) -> Result<Vec<ColumnBlooms>, StoreError> {
    let mut blooms = Vec::new();
    for column in columns {
        let Some(at) = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| &c.path().string() == column)
        else {
            continue;
        };
        let filters = metadata
            .row_groups()
            .iter()
            .map(|group| Sbbf::read_from_column_chunk(group.column(at), file))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        blooms.push((column.to_string(), filters));
    }
    Ok(blooms)
}

impl HotExtent {
    /// The extent at `path` read whole, shaped to `schema`. Rows are
    /// gathered one row group at a time, so loading an extent needs little
    /// more memory than the extent itself.
    pub fn read(
        path: &Path,
        schema: &SchemaRef,
        bloom_columns: &[String],
    ) -> Result<Self, StoreError> {
        let (file, metadata) = open_with_metadata(path)?;
        let mut counts = row_group_rows(&metadata).into_iter();
        let mut groups = Vec::with_capacity(metadata.num_row_groups());
        let mut gathered: Vec<RecordBatch> = Vec::new();
        let mut wanted = counts.next().unwrap_or(0);
        let corrupt = || {
            StoreError::Corrupt(format!(
                "{}: its rows do not add up to its row groups",
                path.display()
            ))
        };
        for batch in read_parquet(path, schema)? {
            let mut batch = batch;
            while batch.num_rows() > 0 {
                let held: usize = gathered.iter().map(RecordBatch::num_rows).sum();
                let take = batch.num_rows().min(wanted - held);
                if take == 0 {
                    return Err(corrupt());
                }
                gathered.push(batch.slice(0, take));
                batch = batch.slice(take, batch.num_rows() - take);
                if held + take == wanted {
                    let group = concat_batches(schema, &gathered)
                        .map_err(|e| StoreError::Io(e.to_string()))?;
                    groups.push(group);
                    gathered.clear();
                    wanted = counts.next().unwrap_or(0);
                }
            }
        }
        if !gathered.is_empty() || wanted != 0 {
            return Err(corrupt());
        }
        let blooms = read_blooms(&file, &metadata, bloom_columns, path)?;
        Ok(Self { groups, blooms })
    }

    /// `rows`, just written to the extent at `path`, cut the way the file
    /// cuts them into row groups, with the file's bloom filters.
    pub fn written(
        rows: RecordBatch,
        path: &Path,
        bloom_columns: &[String],
    ) -> Result<Self, StoreError> {
        let rows = compact_strings(rows);
        let (file, metadata) = open_with_metadata(path)?;
        let counts = row_group_rows(&metadata);
        let total = counts.iter().try_fold(0usize, |sum, &n| sum.checked_add(n));
        if total != Some(rows.num_rows()) {
            return Err(StoreError::Corrupt(format!(
                "{}: its row groups hold {} rows, {} were written",
                path.display(),
                total.map_or("too many".to_string(), |n| n.to_string()),
                rows.num_rows()
            )));
        }
        let mut groups = Vec::with_capacity(counts.len());
        let mut offset = 0;
        for count in counts {
            groups.push(rows.slice(offset, count));
            offset += count;
        }
        let blooms = read_blooms(&file, &metadata, bloom_columns, path)?;
        Ok(Self { groups, blooms })
    }

    /// Every row, one batch per row group.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.groups
    }

    /// The row groups that may hold rows where each `(column, value)` of
    /// `equal` holds (the others are surely without such rows).
    pub fn batches_where(&self, equal: &[(String, String)]) -> Vec<RecordBatch> {
        self.groups
            .iter()
            .enumerate()
            .filter(|(at, _)| {
                equal.iter().all(|(column, value)| {
                    self.blooms
                        .iter()
                        .find(|(name, _)| name == column)
                        .and_then(|(_, filters)| filters[*at].as_ref())
                        .is_none_or(|filter| filter.check(value.as_str()))
                })
            })
            .map(|(_, batch)| batch.clone())
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use datafusion::arrow::array::{Array, Int64Array, StringArray, StringViewArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// One `n` column of `values` (the schema and the batch).
    pub(crate) fn numbers(values: &[i64]) -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let column = Arc::new(Int64Array::from(values.to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
        (schema, batch)
    }

    /// The first column of `batches`, in order.
    pub(crate) fn numbers_of(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    /// Extents written while string columns were plain `Utf8` read back
    /// as the views tables now use, and a column added later as nulls.
    #[test]
    fn extents_written_with_plain_strings_read_as_views() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.parquet");
        let old = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            old.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("approve"),
                    None,
                    Some("a longer value than twelve bytes"),
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        write_parquet(&path, &old, &[batch], &["name".into()]).unwrap();
        let now = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, true),
            Field::new("added", DataType::Utf8View, true),
        ]));
        let read = read_parquet(&path, &now).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].schema(), now);
        let names = read[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringViewArray>()
            .unwrap();
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            [
                Some("approve"),
                None,
                Some("a longer value than twelve bytes")
            ]
        );
        assert_eq!(read[0].column(2).null_count(), 3);
    }

    /// An extent read back into the hot cache comes as its row groups,
    /// whatever batches the reader decodes it in.
    #[test]
    fn extents_read_back_as_their_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.parquet");
        let rows = ROW_GROUP_ROWS + 37_856;
        let values: Vec<i64> = (0..rows as i64).collect();
        let (schema, batch) = numbers(&values);
        write_parquet(&path, &schema, &[batch], &[]).unwrap();
        let hot = HotExtent::read(&path, &schema, &[]).unwrap();
        let sizes: Vec<usize> = hot.batches().iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, vec![ROW_GROUP_ROWS, 37_856]);
        let read = numbers_of(hot.batches());
        assert_eq!(read, values);
    }

    /// The span of a range of values covers the row groups that can hold
    /// them: a byte range holds a row group when its first page lies in it.
    #[test]
    fn spans_cover_the_row_groups_a_range_can_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.parquet");
        let r = ROW_GROUP_ROWS as i64;
        let values: Vec<i64> = (0..3 * r + 100).collect();
        let (schema, batch) = numbers(&values);
        let length = write_parquet(&path, &schema, &[batch], &[]).unwrap();
        let layout = ExtentLayout::read(&path).unwrap();
        let starts: Vec<u64> = layout.row_groups.iter().map(|g| g.start).collect();
        assert_eq!(starts.len(), 4);
        let held = |span: &Range<u64>| -> Vec<usize> {
            (0..starts.len())
                .filter(|&at| span.contains(&starts[at]))
                .collect()
        };
        let span = |min, max| layout.span_where("n", min, max);
        assert_eq!(held(&span(Some(r + 10), Some(r + 20)).unwrap()), [1]);
        assert_eq!(span(None, Some(5)).unwrap(), 0..starts[1]);
        assert_eq!(span(Some(3 * r + 50), None).unwrap(), starts[3]..length);
        assert_eq!(held(&span(Some(r - 1), Some(2 * r)).unwrap()), [0, 1, 2]);
        assert_eq!(span(None, None).unwrap(), 0..length);
        assert!(span(Some(10 * r), None).is_none());
        assert!(span(None, Some(-1)).is_none());
        // A column without 64-bit integer statistics says nothing.
        assert_eq!(
            layout.span_where("other", Some(0), Some(1)).unwrap(),
            0..length
        );
    }

    /// A hot extent keeps the file's row groups and bloom filters: a lookup
    /// keeps every row group holding the key, and drops most that do not.
    #[test]
    fn hot_lookups_skip_row_groups_by_their_bloom_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new(
            "id",
            DataType::Utf8View,
            true,
        )]));
        let rows = ROW_GROUP_ROWS + 1_000;
        let ids: StringViewArray = (0..rows).map(|at| Some(format!("id-{at}"))).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap();
        write_parquet(&path, &schema, std::slice::from_ref(&batch), &["id".into()]).unwrap();
        let hot = HotExtent::written(batch, &path, &["id".into()]).unwrap();
        let sizes: Vec<usize> = hot.batches().iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [ROW_GROUP_ROWS, 1_000]);
        let holds = |batches: &[RecordBatch], id: &str| {
            batches.iter().any(|batch| {
                let ids = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<StringViewArray>()
                    .unwrap();
                ids.iter().any(|value| value == Some(id))
            })
        };
        for at in [0, 17, ROW_GROUP_ROWS - 1, ROW_GROUP_ROWS, rows - 1] {
            let id = format!("id-{at}");
            let kept = hot.batches_where(&[("id".into(), id.clone())]);
            assert!(holds(&kept, &id), "{id} must be kept");
            assert!(kept.len() <= 2);
        }
        let kept: usize = (0..100)
            .map(|at| {
                hot.batches_where(&[("id".into(), format!("absent-{at}"))])
                    .len()
            })
            .sum();
        assert!(kept < 20, "{kept} of 200 row groups kept for absent ids");
        // A column without a bloom filter keeps every row group.
        assert_eq!(hot.batches_where(&[("other".into(), "x".into())]).len(), 2);
    }
}
