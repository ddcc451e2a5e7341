//! Filtering by a string column through its dictionary codes.
//!
//! A filter such as `Result = 'DECLINE'` over extents read from Parquet
//! would decode a 16-byte view a row and compare each with the literal.
//! Extent columns with few values per row group are stored as codes into
//! each row group's dictionary, so [`CodedFilter`] has the scan read the
//! column as codes, decides the filter's conditions on that column once
//! per dictionary value, and lets rows through by their code.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{PhysicalExpr, conjunction, split_conjunction};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::Partitioning;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

use crate::grouping::Codes;

/// Replaces a filter over an extent scan with a [`CodedFilter`] when some
/// of its conditions read one string column alone and the scan can read
/// that column as dictionary codes.
#[derive(Debug, Default)]
pub struct CodedFilterRule;

impl PhysicalOptimizerRule for CodedFilterRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| {
            let Some(filter) = plan.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(plan));
            };
            match CodedFilter::over(filter)? {
                Some(coded) => Ok(Transformed::yes(Arc::new(coded))),
                None => Ok(Transformed::no(plan)),
            }
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "filter_by_dictionary_codes"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The column a condition reads when it reads exactly one, of string
/// views, and gives the same answer for the same value every time.
fn sole_view_column(condition: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<usize> {
    let columns = collect_columns(condition);
    let column = match columns.len() {
        1 => columns.into_iter().next()?.index(),
        _ => return None,
    };
    (schema.fields().get(column)?.data_type() == &DataType::Utf8View && !is_volatile(condition))
        .then_some(column)
}

/// A filter whose conditions on one string column are decided once per
/// value of each dictionary its input reads the column as; rows pass by
/// their code, then by the other conditions. Its output is that of the
/// filter it replaces (the column as string views again, if kept).
#[derive(Debug)]
pub struct CodedFilter {
    input: Arc<dyn ExecutionPlan>,
    column: usize,
    /// The conditions on the column, reading it as the only column of a
    /// batch of string views.
    on_codes: Arc<dyn PhysicalExpr>,
    /// The other conditions, reading the input's rows.
    rest: Option<Arc<dyn PhysicalExpr>>,
    /// The input columns passed on, as the filter's projection.
    projection: Option<Vec<usize>>,
    /// Shown in plans: the filter's whole predicate.
    predicate: Arc<dyn PhysicalExpr>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CodedFilter {
    /// The coded form of `filter`, when it has one.
    fn over(filter: &FilterExec) -> Result<Option<Self>> {
        if filter.fetch().is_some() {
            return Ok(None);
        }
        let input = filter.input();
        let schema = input.schema();
        let conditions = split_conjunction(filter.predicate());
        // The scan, or the scan spread over more partitions batch by batch
        // (beside rows in memory, a table's few extent files are).
        let coded_input = |column: usize| -> Option<Arc<dyn ExecutionPlan>> {
            if let Some(coded) = crate::provider::read_as_dictionary(input, column) {
                return Some(coded);
            }
            let spread = input.downcast_ref::<RepartitionExec>()?;
            let partitioning = spread.partitioning().clone();
            if !matches!(partitioning, Partitioning::RoundRobinBatch(_)) || spread.preserve_order()
            {
                return None;
            }
            let coded = crate::provider::read_as_dictionary(spread.input(), column)?;
            Some(Arc::new(
                RepartitionExec::try_new(coded, partitioning).ok()?,
            ))
        };
        let Some((column, coded)) = conditions.iter().find_map(|condition| {
            let column = sole_view_column(condition, &schema)?;
            Some((column, coded_input(column)?))
        }) else {
            return Ok(None);
        };
        let (on_column, rest): (Vec<_>, Vec<_>) = conditions
            .into_iter()
            .cloned()
            .partition(|condition| sole_view_column(condition, &schema) == Some(column));
        let alone = |expr: Arc<dyn PhysicalExpr>| {
            expr.transform(|expr| match expr.downcast_ref::<Column>() {
                Some(found) if found.index() == column => Ok(Transformed::yes(
                    Arc::new(Column::new(found.name(), 0)) as Arc<dyn PhysicalExpr>,
                )),
                _ => Ok(Transformed::no(expr)),
            })
            .map(|transformed| transformed.data)
        };
        Ok(Some(Self {
            input: coded,
            column,
            on_codes: alone(conjunction(on_column))?,
            rest: (!rest.is_empty()).then(|| conjunction(rest)),
            projection: filter.projection().as_ref().map(|p| p.to_vec()),
            predicate: filter.predicate().clone(),
            properties: filter.properties().clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

impl DisplayAs for CodedFilter {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let name = self.input.schema().field(self.column).name().clone();
        write!(f, "CodedFilter: {}, {name} (codes)", self.predicate)?;
        if let Some(projection) = &self.projection {
            write!(f, ", projection={projection:?}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for CodedFilter {
    fn name(&self) -> &str {
        "CodedFilter"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.predicate)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            input: children.swap_remove(0),
            column: self.column,
            on_codes: self.on_codes.clone(),
            rest: self.rest.clone(),
            projection: self.projection.clone(),
            predicate: self.predicate.clone(),
            properties: self.properties.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let name = self.input.schema().field(self.column).name().clone();
        let values = Arc::new(Schema::new(vec![Field::new(
            name,
            DataType::Utf8View,
            true,
        )]));
        // What the conditions say of a missing value (`IS NULL` passes it).
        let null = RecordBatch::try_new(
            values.clone(),
            vec![datafusion::arrow::array::new_null_array(
                &DataType::Utf8View,
                1,
            )],
        )?;
        let null_passes = passes(&self.on_codes, &null)?.value(0);
        Ok(Box::pin(CodedFilterStream {
            input: self.input.execute(partition, context)?,
            column: self.column,
            on_codes: self.on_codes.clone(),
            rest: self.rest.clone(),
            projection: self.projection.clone(),
            values,
            null_passes,
            schema: self.properties.eq_properties.schema().clone(),
            codes: Codes::default(),
            pass: Pass::Nothing,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Which rows of `batch` pass `condition`: a missing answer does not.
fn passes(condition: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanBuffer> {
    let answer = condition.evaluate(batch)?.into_array(batch.num_rows())?;
    let Some(answer) = answer.as_boolean_opt() else {
        return Err(DataFusionError::Internal(format!(
            "a filter's condition gave {}, not booleans",
            answer.data_type()
        )));
    };
    Ok(match answer.nulls() {
        Some(nulls) => answer.values() & nulls.inner(),
        None => answer.values().clone(),
    })
}

struct CodedFilterStream {
    input: SendableRecordBatchStream,
    column: usize,
    on_codes: Arc<dyn PhysicalExpr>,
    rest: Option<Arc<dyn PhysicalExpr>>,
    projection: Option<Vec<usize>>,
    /// The schema of a dictionary's values as the conditions read them.
    values: SchemaRef,
    null_passes: bool,
    /// The output's.
    schema: SchemaRef,
    /// The dictionary being read; a code is marked when its value passes.
    codes: Codes,
    pass: Pass,
    metrics: BaselineMetrics,
}

impl CodedFilterStream {
    /// The rows of `batch` that pass, projected; `None` when none does.
    fn filter(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let Some(coded) = batch.column(self.column).as_dictionary_opt::<Int32Type>() else {
            return Err(DataFusionError::Internal(
                "CodedFilter reads dictionary codes".into(),
            ));
        };
        if !self.codes.holds(coded.values()) {
            self.codes.follow(coded.values());
            let views = cast(coded.values(), &DataType::Utf8View)?;
            let values = RecordBatch::try_new(self.values.clone(), vec![views])?;
            let passing = passes(&self.on_codes, &values)?;
            for (mark, pass) in self.codes.marks.iter_mut().zip(passing.iter()) {
                *mark = pass;
            }
            self.pass = Pass::of(&self.codes.marks);
        }
        let keys = coded.keys();
        let keep = self.pass.bits(keys.values(), &self.codes.marks);
        let keep = match keys.nulls() {
            Some(nulls) if self.null_passes => &keep | &!nulls.inner(),
            Some(nulls) => &keep & nulls.inner(),
            None => keep,
        };
        // Without other conditions, only the columns passed on are filtered.
        let (batch, projected) = match (&self.rest, &self.projection) {
            (None, Some(projection)) => (batch.project(projection)?, None),
            _ => (batch.clone(), self.projection.as_ref()),
        };
        let Some(mut kept) = keep_rows(&batch, keep)? else {
            return Ok(None);
        };
        if let Some(rest) = &self.rest {
            // Other conditions may read the coded column too (`type = 'a'
            // AND (type = 'b' OR value < 10)`): they see it as strings.
            kept = views_at(&kept, self.column)?;
            let keep = passes(rest, &kept)?;
            match keep_rows(&kept, keep)? {
                Some(more) => kept = more,
                None => return Ok(None),
            }
        }
        let sources: Vec<usize> = match (&self.rest, &self.projection) {
            (None, Some(projection)) => projection.clone(),
            _ => (0..batch.num_columns()).collect(),
        };
        let columns: Vec<_> = match projected {
            Some(projection) => projection.iter().map(|&at| (at, kept.column(at))).collect(),
            None => sources.iter().copied().zip(kept.columns()).collect(),
        };
        let columns = columns
            .into_iter()
            .map(|(at, column)| match at == self.column {
                true => cast(column, &DataType::Utf8View),
                false => Ok(column.clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(kept.num_rows()));
        Ok(Some(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?))
    }
}

/// `batch` with its dictionary-coded column `at` as string views.
fn views_at(batch: &RecordBatch, at: usize) -> Result<RecordBatch> {
    let mut fields: Vec<_> = batch.schema().fields().iter().cloned().collect();
    fields[at] = Arc::new(
        fields[at]
            .as_ref()
            .clone()
            .with_data_type(DataType::Utf8View),
    );
    let mut columns = batch.columns().to_vec();
    columns[at] = cast(&columns[at], &DataType::Utf8View)?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
        columns,
        &options,
    )?)
}

/// Which codes of a dictionary pass, in the form quickest to test.
#[derive(Clone, Copy)]
enum Pass {
    Nothing,
    /// One code (an equality).
    One(i32),
    /// A bit a code, of a dictionary of at most 64 values.
    Word(u64),
    /// As the dictionary's marks say.
    Marked,
}

impl Pass {
    fn of(marks: &[bool]) -> Self {
        let mut passing = marks.iter().enumerate().filter(|(_, pass)| **pass);
        match (passing.next(), passing.next()) {
            (None, _) => Pass::Nothing,
            (Some((only, _)), None) => Pass::One(only as i32),
            _ if marks.len() <= 64 => Pass::Word(
                marks
                    .iter()
                    .enumerate()
                    .fold(0, |word, (at, &mark)| word | (u64::from(mark) << at)),
            ),
            _ => Pass::Marked,
        }
    }

    /// A bit a code, set where the code passes (`marks` are those this was
    /// made of).
    fn bits(self, codes: &[i32], marks: &[bool]) -> BooleanBuffer {
        match self {
            Pass::Nothing => BooleanBuffer::new_unset(codes.len()),
            Pass::One(only) => bits_where(codes, |code| code == only),
            Pass::Word(word) => bits_where(codes, |code| (word >> (code as u32 & 63)) & 1 == 1),
            Pass::Marked => bits_where(codes, |code| {
                marks.get(code as usize).copied().unwrap_or(false)
            }),
        }
    }
}

/// The bits of the codes that `pass`, a word of 64 at a time.
fn bits_where(codes: &[i32], pass: impl Fn(i32) -> bool) -> BooleanBuffer {
    let mut words = Vec::with_capacity(codes.len().div_ceil(64));
    for chunk in codes.chunks(64) {
        let word = chunk.iter().enumerate().fold(0u64, |word, (bit, &code)| {
            word | (u64::from(pass(code)) << bit)
        });
        words.push(word);
    }
    BooleanBuffer::new(Buffer::from_vec(words), 0, codes.len())
}

/// The rows of `batch` that `keep` marks; `None` when it marks none.
fn keep_rows(batch: &RecordBatch, keep: BooleanBuffer) -> Result<Option<RecordBatch>> {
    match keep.count_set_bits() {
        0 => Ok(None),
        all if all == batch.num_rows() => Ok(Some(batch.clone())),
        _ => Ok(Some(filter_record_batch(
            batch,
            &BooleanArray::new(keep, None),
        )?)),
    }
}

impl Stream for CodedFilterStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let batch = match self.input.poll_next_unpin(context) {
                Poll::Ready(Some(Ok(batch))) => batch,
                other => return other,
            };
            let this = &mut *self;
            let elapsed = this.metrics.elapsed_compute().clone();
            let timer = elapsed.timer();
            let filtered = this.filter(&batch);
            timer.done();
            match filtered {
                Ok(None) => continue,
                Ok(Some(batch)) => {
                    this.metrics.record_output(batch.num_rows());
                    return Poll::Ready(Some(Ok(batch)));
                }
                Err(error) => return Poll::Ready(Some(Err(error))),
            }
        }
    }
}

impl RecordBatchStream for CodedFilterStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_pass_as_their_marks_say() {
        let codes: Vec<i32> = (0..1_000).map(|at| at * 7 % 131).collect();
        for marks in [
            vec![false; 131],
            (0..131).map(|code| code == 17).collect(),
            (0..40).map(|code| code % 5 == 1).collect(),
            (0..131).map(|code| code % 3 == 0).collect(),
        ] {
            let codes: Vec<i32> = codes.iter().map(|&c| c % marks.len() as i32).collect();
            let bits = Pass::of(&marks).bits(&codes, &marks);
            let expected: Vec<bool> = codes.iter().map(|&code| marks[code as usize]).collect();
            assert_eq!(bits.iter().collect::<Vec<_>>(), expected);
        }
    }
}
