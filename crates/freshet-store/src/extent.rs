//! Extents: immutable Parquet files of a table's rows, and the manifest
//! that lists them together with the source positions they account for.
//!
//! The manifest is the table's commit point. An extent file is written and
//! made durable first; then a new manifest naming it and the positions after
//! its rows replaces the old one atomically. After a crash the table resumes
//! reading at the manifest's positions, so every event is in exactly one
//! listed extent or is read again; files no manifest names are removed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringViewArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::bloom_filter::Sbbf;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use datafusion::parquet::file::properties::WriterProperties;
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
            if !listed {
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
    bloom_columns: &[&str],
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
        let column = ColumnPath::from(*column);
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

/// An extent as queries see it: its description, and its rows when it is
/// in the hot cache.
#[derive(Debug, Clone)]
pub struct Extent {
    pub meta: ExtentMeta,
    pub path: PathBuf,
    pub hot: Option<Arc<HotExtent>>,
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
    /// Per bloom-filtered column: its name and one filter per row group
    /// (`None` where the file has none).
    blooms: Vec<(String, Vec<Option<Sbbf>>)>,
}

impl HotExtent {
    /// The extent at `path` read whole, shaped to `schema`.
    pub fn read(
        path: &Path,
        schema: &SchemaRef,
        bloom_columns: &[&str],
    ) -> Result<Self, StoreError> {
        let batches = read_parquet(path, schema)?;
        let rows = concat_batches(schema, &batches).map_err(|e| StoreError::Io(e.to_string()))?;
        Self::written(rows, path, bloom_columns)
    }

    /// `rows`, just written to the extent at `path`, cut the way the file
    /// cuts them into row groups, with the file's bloom filters.
    pub fn written(
        rows: RecordBatch,
        path: &Path,
        bloom_columns: &[&str],
    ) -> Result<Self, StoreError> {
        let rows = compact_strings(rows);
        let file = File::open(path).map_err(StoreError::io(path))?;
        let parquet_error = |e: datafusion::parquet::errors::ParquetError| {
            StoreError::Io(format!("{}: {e}", path.display()))
        };
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(parquet_error)?;
        let mut groups = Vec::with_capacity(metadata.num_row_groups());
        let mut offset = 0;
        for group in metadata.row_groups() {
            let count = usize::try_from(group.num_rows()).unwrap_or(usize::MAX);
            if offset + count > rows.num_rows() {
                return Err(StoreError::Corrupt(format!(
                    "{}: its row groups hold more rows than were written",
                    path.display()
                )));
            }
            groups.push(rows.slice(offset, count));
            offset += count;
        }
        if offset != rows.num_rows() {
            return Err(StoreError::Corrupt(format!(
                "{}: its row groups hold fewer rows than were written",
                path.display()
            )));
        }
        let mut blooms = Vec::new();
        for &column in bloom_columns {
            let Some(at) = metadata
                .file_metadata()
                .schema_descr()
                .columns()
                .iter()
                .position(|c| c.path().string() == column)
            else {
                continue;
            };
            let filters = metadata
                .row_groups()
                .iter()
                .map(|group| Sbbf::read_from_column_chunk(group.column(at), &file))
                .collect::<Result<Vec<_>, _>>()
                .map_err(parquet_error)?;
            blooms.push((column.to_string(), filters));
        }
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
mod tests {
    use datafusion::arrow::array::{Array, Int64Array, StringArray, StringViewArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

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
        write_parquet(&path, &old, &[batch], &["name"]).unwrap();
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
        write_parquet(&path, &schema, std::slice::from_ref(&batch), &["id"]).unwrap();
        let hot = HotExtent::written(batch, &path, &["id"]).unwrap();
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
