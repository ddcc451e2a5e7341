//! A table as DataFusion sees it: the in-memory rows (buffer and hot
//! extents) unioned with the cold extents read from Parquet, pruned by the
//! query's event-time bounds and by retention.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileSource;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfig, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, col, lit};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{conjunction as physical_conjunction, split_conjunction};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;

use crate::extent::ExtentFile;
use crate::mapped::MappedReaderFactory;
use crate::spec::{ColumnType, INGESTION_TIME};
use crate::table::{Snapshot, Table};

/// The DataFusion face of a [`Table`].
#[derive(Debug)]
pub struct StoreTable {
    table: Arc<Table>,
}

impl StoreTable {
    pub fn new(table: Arc<Table>) -> Self {
        Self { table }
    }
}

/// Inclusive event-time bounds (µs) implied by a query's filters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimeBounds {
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl TimeBounds {
    /// Whether rows in `[lo, hi]` can match.
    fn overlaps(&self, lo: Option<i64>, hi: Option<i64>) -> bool {
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return true;
        };
        self.min.is_none_or(|min| hi >= min) && self.max.is_none_or(|max| lo <= max)
    }

    /// Narrows the bounds by the conjuncts that compare `column` with a
    /// timestamp literal; others are ignored (kept for row filtering).
    pub fn from_filters(filters: &[Expr], column: &str) -> Self {
        let mut bounds = Self::default();
        for filter in filters {
            bounds.narrow(filter, column);
        }
        bounds
    }

    fn narrow(&mut self, expr: &Expr, column: &str) {
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) => {
                self.narrow(left, column);
                self.narrow(right, column);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, value) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => (*op, v),
                    (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => match op.swap() {
                        Some(swapped) => (swapped, v),
                        None => return,
                    },
                    _ => return,
                };
                let Some(micros) = micros(value) else { return };
                match op {
                    Operator::Gt | Operator::GtEq => {
                        self.min = Some(self.min.map_or(micros, |m| m.max(micros)))
                    }
                    Operator::Lt | Operator::LtEq => {
                        self.max = Some(self.max.map_or(micros, |m| m.min(micros)))
                    }
                    Operator::Eq => {
                        self.min = Some(self.min.map_or(micros, |m| m.max(micros)));
                        self.max = Some(self.max.map_or(micros, |m| m.min(micros)));
                    }
                    _ => {}
                }
            }
            Expr::Between(between) if !between.negated => {
                if let (Expr::Column(c), Expr::Literal(lo, _), Expr::Literal(hi, _)) = (
                    between.expr.as_ref(),
                    between.low.as_ref(),
                    between.high.as_ref(),
                ) && c.name == column
                {
                    if let Some(lo) = micros(lo) {
                        self.min = Some(self.min.map_or(lo, |m| m.max(lo)));
                    }
                    if let Some(hi) = micros(hi) {
                        self.max = Some(self.max.map_or(hi, |m| m.min(hi)));
                    }
                }
            }
            _ => {}
        }
    }
}

/// `(column, value)` for each conjunct of `filters` that says `column`
/// equals a string literal. (DataFusion folds casts of literals before a
/// scan sees its filters; a cast left in place is not looked through.)
fn equal_strings(filters: &[Expr], column: &str) -> Vec<(String, String)> {
    fn literal(expr: &Expr) -> Option<&str> {
        match expr {
            Expr::Literal(
                ScalarValue::Utf8(Some(text))
                | ScalarValue::Utf8View(Some(text))
                | ScalarValue::LargeUtf8(Some(text)),
                _,
            ) => Some(text),
            _ => None,
        }
    }
    fn collect(expr: &Expr, column: &str, out: &mut Vec<(String, String)>) {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
            return;
        };
        match op {
            Operator::And => {
                collect(left, column, out);
                collect(right, column, out);
            }
            Operator::Eq => {
                let value = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), other) | (other, Expr::Column(c)) if c.name == column => {
                        literal(other)
                    }
                    _ => None,
                };
                if let Some(value) = value {
                    out.push((column.to_string(), value.to_string()));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for filter in filters {
        collect(filter, column, &mut out);
    }
    out
}

fn micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = self.table.snapshot();
        plan_scan(state, &snapshot, projection, filters).await
    }
}

async fn plan_scan(
    state: &dyn Session,
    snapshot: &Snapshot,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = &snapshot.schema;
    let bounds = match &snapshot.spec.time_column {
        Some(column) => TimeBounds::from_filters(filters, column),
        None => TimeBounds::default(),
    };
    let cutoff = snapshot.retention_cutoff_ms;
    let extents: Vec<_> = snapshot
        .extents
        .iter()
        .filter(|e| bounds.overlaps(e.meta.min_event_us, e.meta.max_event_us))
        .filter(|e| cutoff.is_none_or(|cutoff| e.meta.max_ingestion_ms >= cutoff))
        .collect();
    // Retention filters rows at query time only where an extent straddles the cutoff.
    let retention_filter =
        cutoff.filter(|&cutoff| extents.iter().any(|e| e.meta.min_ingestion_ms < cutoff));
    let ingestion_index = schema.fields().len() - 1;
    let scan_projection: Option<Vec<usize>> = match (projection, retention_filter) {
        (Some(p), Some(_)) if !p.contains(&ingestion_index) => {
            Some(p.iter().copied().chain([ingestion_index]).collect())
        }
        (p, _) => p.cloned(),
    };
    let target_partitions = state.config().target_partitions().max(1);

    // Bloom filters hash a value's bytes: only string keys are looked up
    // by their text.
    let lookups: Vec<(String, String)> = snapshot
        .spec
        .dedup
        .iter()
        .filter(|dedup| {
            snapshot
                .spec
                .columns
                .iter()
                .any(|c| c.name == dedup.column && c.kind == ColumnType::String)
        })
        .flat_map(|dedup| equal_strings(filters, &dedup.column))
        .collect();
    let mut in_memory: Vec<RecordBatch> = snapshot.buffer.clone();
    let mut cold = Vec::new();
    for extent in &extents {
        match &extent.hot {
            Some(hot) if lookups.is_empty() => in_memory.extend(hot.batches().iter().cloned()),
            Some(hot) => in_memory.extend(hot.batches_where(&lookups)),
            None => cold.push(*extent),
        }
    }
    let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    if !in_memory.is_empty() {
        let mut partitions: Vec<Vec<RecordBatch>> =
            vec![Vec::new(); target_partitions.min(in_memory.len())];
        for (at, batch) in split_large(in_memory).into_iter().enumerate() {
            let count = partitions.len();
            partitions[at % count].push(batch);
        }
        inputs.push(MemorySourceConfig::try_new_exec(
            &partitions,
            schema.clone(),
            scan_projection.clone(),
        )?);
    }
    // Of an extent that a time range cuts, only the bytes of the row groups
    // that can hold rows in it: scans split by bytes then share those.
    let time_column = snapshot.spec.time_column.as_deref().filter(|column| {
        (bounds.min.is_some() || bounds.max.is_some())
            && schema.field_with_name(column).is_ok_and(|field| {
                matches!(
                    field.data_type(),
                    DataType::Timestamp(TimeUnit::Microsecond, _)
                )
            })
    });
    let mut files = Vec::with_capacity(cold.len());
    for extent in &cold {
        let path = extent.file.path().to_string_lossy().to_string();
        // The plan holds the extent's file until it has run: a merge
        // or retention meanwhile does not remove it from under the scan.
        let file =
            PartitionedFile::new(path, extent.meta.bytes).with_extension(extent.file.clone());
        let span = match (time_column, extent.file.layout()) {
            (Some(column), Some(layout)) => match layout.span_where(column, bounds.min, bounds.max)
            {
                Some(span) => Some(span),
                None => continue,
            },
            _ => None,
        };
        files.push(match span {
            Some(span) if span != (0..extent.meta.bytes) => {
                file.with_range(span.start as i64, span.end as i64)
            }
            _ => file,
        });
    }
    if !files.is_empty() {
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); target_partitions.min(files.len())];
        for (at, file) in files.into_iter().enumerate() {
            let count = groups.len();
            groups[at % count].push(file);
        }
        let options = state.table_options().parquet.clone();
        let runtime = state.runtime_env();
        let reader = MappedReaderFactory::new(
            runtime.object_store(ObjectStoreUrl::local_filesystem())?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let mut source = ParquetSource::new(schema.clone())
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(reader));
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        if let Some(predicate) = conjunction(filters.iter().cloned()) {
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_groups(groups.into_iter().map(FileGroup::from).collect())
                .with_projection_indices(scan_projection.clone())?
                .build();
        inputs.push(DataSourceExec::from_data_source(config));
    }
    let projected = match &scan_projection {
        Some(p) => Arc::new(schema.project(p)?),
        None => schema.clone(),
    };
    if inputs.is_empty() {
        let wanted = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        return Ok(Arc::new(EmptyExec::new(wanted)));
    }
    let mut plan = UnionExec::try_new(inputs)?;
    if let Some(cutoff) = retention_filter {
        let keep = Expr::BinaryExpr(BinaryExpr::new(
            Box::new(col(INGESTION_TIME)),
            Operator::GtEq,
            Box::new(lit(ScalarValue::TimestampMillisecond(
                Some(cutoff),
                Some("UTC".into()),
            ))),
        ));
        let df_schema = DFSchema::try_from(projected.as_ref().clone())?;
        plan = Arc::new(FilterExec::try_new(
            state.create_physical_expr(keep, &df_schema)?,
            plan,
        )?);
        if let Some(wanted) = projection
            && !wanted.contains(&ingestion_index)
        {
            let exprs: Vec<_> = (0..wanted.len())
                .map(|at| {
                    let field = projected.field(at);
                    let column: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
                        datafusion::physical_expr::expressions::Column::new(field.name(), at),
                    );
                    (column, field.name().clone())
                })
                .collect();
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }
    }
    Ok(plan)
}

/// `plan` again, reading the string column at `column` of its output as
/// dictionary codes (`Dictionary(Int32, Utf8)`: each row group's values
/// once, then a code a row) instead of a view a row. Only for a scan of
/// extents that projects plain columns and whose files hold it
/// dictionary-coded in every page (or not at all); `None` otherwise. The
/// grouping nodes and the coded filter read such scans.
pub fn read_as_dictionary(
    plan: &Arc<dyn ExecutionPlan>,
    column: usize,
) -> Option<Arc<dyn ExecutionPlan>> {
    let exec = plan.downcast_ref::<DataSourceExec>()?;
    let config = exec.data_source().downcast_ref::<FileScanConfig>()?;
    let source = config.file_source().downcast_ref::<ParquetSource>()?;
    if !source.table_schema().table_partition_cols().is_empty() {
        return None;
    }
    let table_schema = source.table_schema().table_schema().clone();
    let projection: Vec<usize> = match source.projection() {
        Some(projection) => projection
            .iter()
            .map(|expr| {
                let column = expr.expr.downcast_ref::<Column>()?;
                (table_schema.fields().get(column.index())?.name() == &expr.alias)
                    .then_some(column.index())
            })
            .collect::<Option<_>>()?,
        None => (0..table_schema.fields().len()).collect(),
    };
    let field = table_schema.field(*projection.get(column)?);
    if field.data_type() != &DataType::Utf8View {
        return None;
    }
    let name = field.name().clone();
    // The scan's predicate only prunes (rows are filtered above it, not in
    // the decoder): what it says of the coded column, typed for views, is
    // left out; the rest still prunes.
    if source.table_parquet_options().global.pushdown_filters {
        return None;
    }
    let predicate = source.filter().and_then(|predicate| {
        let kept: Vec<_> = split_conjunction(&predicate)
            .into_iter()
            .filter(|conjunct| !collect_columns(conjunct).iter().any(|c| c.name() == name))
            .cloned()
            .collect();
        (!kept.is_empty()).then(|| physical_conjunction(kept))
    });
    let coded = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let with_coded = |schema: &Schema| {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| match f.name() == &name {
                true => f.as_ref().clone().with_data_type(coded.clone()),
                false => f.as_ref().clone(),
            })
            .collect();
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
    };
    let mut groups = Vec::with_capacity(config.file_groups.len());
    for group in &config.file_groups {
        let mut files = Vec::with_capacity(group.len());
        for file in group.iter() {
            let layout = file.extension::<Arc<ExtentFile>>()?.layout()?;
            let file = match layout.schema.field_with_name(&name) {
                Err(_) => file.clone(),
                Ok(_) if layout.dictionary_columns.contains(&name) => {
                    file.clone().with_arrow_schema(with_coded(&layout.schema))
                }
                Ok(_) => return None,
            };
            files.push(file);
        }
        groups.push(FileGroup::new(files));
    }
    let mut coded_source = ParquetSource::new(with_coded(&table_schema))
        .with_table_parquet_options(source.table_parquet_options().clone());
    if let Some(reader) = source.parquet_file_reader_factory() {
        coded_source = coded_source.with_parquet_file_reader_factory(reader.clone());
    }
    if let Some(predicate) = predicate {
        coded_source = coded_source.with_predicate(predicate);
    }
    let coded_config =
        FileScanConfigBuilder::new(config.object_store_url.clone(), Arc::new(coded_source))
            .with_file_groups(groups)
            .with_limit(config.limit)
            .with_projection_indices(Some(projection))
            .ok()?
            .build();
    Some(DataSourceExec::from_data_source(coded_config))
}

/// Slices batches to at most 64 Ki rows so that partitions balance.
fn split_large(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    const ROWS: usize = 64 * 1024;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let length = ROWS.min(batch.num_rows() - offset);
            out.push(batch.slice(offset, length));
            offset += length;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::col;

    use super::*;

    fn ts(us: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_bounds_come_from_comparisons_and_between() {
        let filters = vec![
            col("t").gt_eq(ts(100)),
            ts(500).gt(col("t")),
            col("x").eq(lit(1)),
        ];
        let bounds = TimeBounds::from_filters(&filters, "t");
        assert_eq!(
            bounds,
            TimeBounds {
                min: Some(100),
                max: Some(500)
            }
        );
        assert!(bounds.overlaps(Some(400), Some(900)));
        assert!(!bounds.overlaps(Some(501), Some(900)));
        assert!(!bounds.overlaps(Some(0), Some(99)));
        let between = vec![col("t").between(ts(10), ts(20))];
        assert_eq!(
            TimeBounds::from_filters(&between, "t"),
            TimeBounds {
                min: Some(10),
                max: Some(20)
            }
        );
        assert_eq!(
            TimeBounds::from_filters(&between, "other"),
            TimeBounds::default()
        );
    }
}
