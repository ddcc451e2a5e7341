//! Grouping by one string column, by the strings' views.
//!
//! Dashboards group millions of rows by short keys (a BIN, a merchant, a
//! device type), where almost every row repeats a key seen a moment ago.
//! DataFusion's group table hashes every row's bytes and probes for them.
//! A string of up to 12 bytes is held whole in its 16-byte Arrow view, so
//! two such strings are equal exactly when their views are: the nodes
//! here find them by the view, a multiply and a probe per row.
//!
//! - [`CountByKey`] stands in for a partial aggregation that groups by one
//!   string-view column and computes only `COUNT(*)`.
//! - [`DropRepeats`] sits under an aggregation that only groups
//!   (`count(DISTINCT x)`, `SELECT DISTINCT x`, a `GROUP BY` without
//!   aggregates) and drops the rows whose short string it has passed on.
//!
//! Longer strings and nulls are grouped by their bytes or passed through.
//! Each holds at most [`SEEN_MAX`] short keys per partition, so memory is
//! bounded: past that, `CountByKey` hands its groups on and starts afresh
//! (the final aggregation adds the parts) and `DropRepeats` lets new
//! values through unremembered. The answers are the same either way.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::builder::make_view;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringViewBuilder,
};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer};
use datafusion::arrow::compute::{cast, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

/// Values one partition remembers at most (the table holds twice as
/// many slots of 16 bytes: 1 MiB).
pub const SEEN_MAX: usize = 32 * 1024;
const SLOTS: usize = SEEN_MAX * 2;

/// Puts [`DropRepeats`] under every partial (or single) aggregation that
/// groups by one string-view column and computes nothing else, and
/// replaces such a partial aggregation that only counts rows with
/// [`CountByKey`].
#[derive(Debug, Default)]
pub struct ShortKeysRule;

impl PhysicalOptimizerRule for ShortKeysRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|plan| {
            let Some(aggregate) = plan.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(plan));
            };
            let Some(column) = grouped_view_column(aggregate) else {
                return Ok(Transformed::no(plan));
            };
            let input = aggregate.input().clone();
            let coded = crate::provider::read_as_dictionary(&input, column);
            if aggregate.aggr_expr().is_empty() {
                let input = Arc::new(match coded {
                    Some(coded) => DropRepeats::reading(coded, column, input.properties().clone()),
                    None => DropRepeats::new(input, column),
                });
                #[expect(
                    deprecated,
                    reason = "the aggregation's properties follow from its new input"
                )]
                let plan = plan.clone().with_new_children(vec![input])?;
                return Ok(Transformed::yes(plan));
            }
            if only_counts_rows(aggregate) {
                return Ok(Transformed::yes(Arc::new(CountByKey {
                    input: coded.unwrap_or(input),
                    column,
                    schema: aggregate.schema(),
                    properties: aggregate.properties().clone(),
                })));
            }
            Ok(Transformed::no(plan))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "short_strings_before_grouping"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The input column `aggregate` groups by, when it groups by exactly one
/// `Utf8View` column and reads its input whole (not a final aggregation,
/// which reads partial states).
fn grouped_view_column(aggregate: &AggregateExec) -> Option<usize> {
    if !matches!(
        aggregate.mode(),
        AggregateMode::Partial | AggregateMode::Single
    ) || aggregate.group_expr().has_grouping_set()
        || aggregate.input().is::<DropRepeats>()
    {
        return None;
    }
    let [(expr, _)] = aggregate.group_expr().expr() else {
        return None;
    };
    let column = expr.downcast_ref::<Column>()?;
    let schema = aggregate.input().schema();
    (schema.fields().get(column.index())?.data_type() == &DataType::Utf8View)
        .then_some(column.index())
}

/// Whether `aggregate` is partial and computes only counts of constants
/// (`COUNT(*)`), each kept as an `Int64` state after the group column.
fn only_counts_rows(aggregate: &AggregateExec) -> bool {
    let schema = aggregate.schema();
    *aggregate.mode() == AggregateMode::Partial
        && schema.fields().len() == 1 + aggregate.aggr_expr().len()
        && aggregate.filter_expr().iter().all(Option::is_none)
        && aggregate.aggr_expr().iter().enumerate().all(|(at, count)| {
            count.fun().name() == "count"
                && !count.is_distinct()
                && count.order_bys().is_empty()
                && schema.field(1 + at).data_type() == &DataType::Int64
                && count.expressions().iter().all(|argument| {
                    argument
                        .downcast_ref::<Literal>()
                        .is_some_and(|literal| !literal.value().is_null())
                })
        })
}

/// Passes on its input's rows except those whose short string in
/// `column` it has passed on before. An input that reads the column as
/// dictionary codes (see [`crate::provider::read_as_dictionary`]) is
/// looked at a code at a time: each code's string is looked up once per
/// dictionary, and the rows passed on carry it as a string view again.
#[derive(Debug)]
pub struct DropRepeats {
    input: Arc<dyn ExecutionPlan>,
    column: usize,
    /// Those of the input with the column as string views.
    properties: Arc<PlanProperties>,
}

impl DropRepeats {
    pub fn new(input: Arc<dyn ExecutionPlan>, column: usize) -> Self {
        let properties = input.properties().clone();
        Self {
            input,
            column,
            properties,
        }
    }

    /// Over `input`, which reads `column` as dictionary codes where the
    /// plan it replaces, with `properties`, read string views.
    pub fn reading(
        input: Arc<dyn ExecutionPlan>,
        column: usize,
        properties: Arc<PlanProperties>,
    ) -> Self {
        Self {
            input,
            column,
            properties,
        }
    }
}

/// How a grouping node names its column in a plan: `(codes)` when it
/// reads dictionary codes.
fn column_label(input: &Arc<dyn ExecutionPlan>, column: usize) -> String {
    let field = input.schema().field(column).clone();
    match field.data_type() {
        DataType::Dictionary(_, _) => format!("{} (codes)", field.name()),
        _ => field.name().clone(),
    }
}

impl DisplayAs for DropRepeats {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DropRepeats: {}", column_label(&self.input, self.column))
    }
}

impl ExecutionPlan for DropRepeats {
    fn name(&self) -> &str {
        "DropRepeats"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        // Dropping rows keeps the input's order, partitioning and schema.
        &self.properties
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
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
        Ok(Arc::new(Self::reading(
            children.swap_remove(0),
            self.column,
            self.properties.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(DropRepeatsStream {
            input: self.input.execute(partition, context)?,
            column: self.column,
            schema: self.properties.eq_properties.schema().clone(),
            seen: Seen::default(),
            codes: Codes::default(),
        }))
    }
}

struct DropRepeatsStream {
    input: SendableRecordBatchStream,
    column: usize,
    /// The output's: the column as string views.
    schema: SchemaRef,
    seen: Seen,
    codes: Codes,
}

impl DropRepeatsStream {
    /// The rows of `batch`, whose column holds dictionary codes, with
    /// codes not seen before in this dictionary and strings not passed on
    /// before; the column as string views. `None` when no row is left.
    fn keep_coded(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let Some(coded) = batch.column(self.column).as_dictionary_opt::<Int32Type>() else {
            return Err(DataFusionError::Internal(
                "DropRepeats reads string views or dictionary codes".into(),
            ));
        };
        let Some(values) = coded.values().as_string_opt::<i32>() else {
            return Err(DataFusionError::Internal(
                "DropRepeats reads dictionaries of strings".into(),
            ));
        };
        self.codes.follow(coded.values());
        let keys = coded.keys();
        let decided = &mut self.codes.marks;
        let seen = &mut self.seen;
        let keep = BooleanBuffer::collect_bool(keys.len(), |at| {
            if keys.is_null(at) {
                return true;
            }
            let code = keys.values()[at] as usize;
            if decided[code] {
                return false;
            }
            decided[code] = true;
            if values.is_null(code) {
                return true;
            }
            match inline_view(values.value(code).as_bytes()) {
                Some(view) => seen.0.find_or_add(view, 0).is_none_or(|(_, new)| new),
                None => true,
            }
        });
        if keep.count_set_bits() == 0 {
            return Ok(None);
        }
        let kept = filter_record_batch(batch, &BooleanArray::new(keep, None))?;
        let coded = kept.column(self.column).as_dictionary::<Int32Type>();
        let strings = take(coded.values().as_ref(), coded.keys(), None)?;
        let mut columns = kept.columns().to_vec();
        columns[self.column] = cast(&strings, &DataType::Utf8View)?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

/// The view of `bytes` when they are short enough to sit in it whole.
fn inline_view(bytes: &[u8]) -> Option<u128> {
    (bytes.len() <= 12).then(|| make_view(bytes, 0, 0))
}

/// The dictionary being read, followed across batches, with a mark per
/// code (which codes were looked at, which pass a filter): a file's row
/// group shares one dictionary across its batches (each batch holds its
/// own array of it, over the same buffers).
#[derive(Default)]
pub(crate) struct Codes {
    /// Where the dictionary's offsets and bytes are, and its length; the
    /// dictionary is held so that no other takes its place in memory.
    held: Option<(usize, usize, usize)>,
    values: Option<ArrayRef>,
    /// One a code, all `false` when a dictionary is first followed.
    pub(crate) marks: Vec<bool>,
}

impl Codes {
    fn identity(values: &ArrayRef) -> Option<(usize, usize, usize)> {
        values.as_string_opt::<i32>().map(|strings| {
            (
                strings.offsets().inner().inner().as_ptr() as usize,
                strings.values().as_ptr() as usize,
                strings.len(),
            )
        })
    }

    /// Whether `values` are the dictionary followed now.
    pub(crate) fn holds(&self, values: &ArrayRef) -> bool {
        let identity = Self::identity(values);
        identity.is_some() && identity == self.held
    }

    /// Follows `values`, afresh when they are another dictionary (or not
    /// strings).
    pub(crate) fn follow(&mut self, values: &ArrayRef) {
        if self.holds(values) {
            return;
        }
        self.held = Self::identity(values);
        self.values = Some(values.clone());
        self.marks.clear();
        self.marks.resize(values.len(), false);
    }

    /// Stops following the dictionary; returns it.
    fn release(&mut self) -> Option<ArrayRef> {
        self.held = None;
        self.values.take()
    }
}

impl Stream for DropRepeatsStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let batch = match self.input.as_mut().poll_next(context) {
                Poll::Ready(Some(Ok(batch))) => batch,
                other => return other,
            };
            let column = self.column;
            let this = &mut *self;
            let Some(views) = batch.column(column).as_string_view_opt() else {
                match this.keep_coded(&batch) {
                    Ok(None) => continue,
                    kept => return Poll::Ready(kept.transpose()),
                }
            };
            let keep = this.seen.keep(views.views(), views.nulls());
            match keep.count_set_bits() {
                0 => continue,
                kept if kept == batch.num_rows() => return Poll::Ready(Some(Ok(batch))),
                _ => {
                    let kept = filter_record_batch(&batch, &BooleanArray::new(keep, None));
                    return Poll::Ready(Some(kept.map_err(Into::into)));
                }
            }
        }
    }
}

impl RecordBatchStream for DropRepeatsStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Counts the rows of each value of `column`, standing in for a partial
/// aggregation that groups by that column and computes only `COUNT(*)`
/// (or counts of other constants): its output is that aggregation's,
/// states of one count per group for the final aggregation to add up.
/// Short strings are found by their views, long ones by their bytes.
/// Once it holds [`SEEN_MAX`] groups it passes them on and starts afresh,
/// as a partial aggregation may: the final one adds the parts.
#[derive(Debug)]
pub struct CountByKey {
    input: Arc<dyn ExecutionPlan>,
    column: usize,
    /// The replaced aggregation's output and properties.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for CountByKey {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CountByKey: {}", column_label(&self.input, self.column))
    }
}

impl ExecutionPlan for CountByKey {
    fn name(&self) -> &str {
        "CountByKey"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            input: children.swap_remove(0),
            column: self.column,
            schema: self.schema.clone(),
            properties: self.properties.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        struct State {
            input: SendableRecordBatchStream,
            counts: Counts,
            done: bool,
        }
        let state = State {
            input: self.input.execute(partition, context)?,
            counts: Counts::new(self.column, self.schema.clone()),
            done: false,
        };
        let batches = futures::stream::unfold(state, |mut state| async move {
            loop {
                if let Some(full) = state.counts.full.pop() {
                    return Some((Ok(full), state));
                }
                if state.done {
                    return None;
                }
                match state.input.next().await {
                    Some(Ok(batch)) => {
                        if let Err(error) = state.counts.add(&batch) {
                            state.done = true;
                            return Some((Err(error), state));
                        }
                    }
                    Some(Err(error)) => {
                        state.done = true;
                        return Some((Err(error), state));
                    }
                    None => {
                        state.done = true;
                        if let Err(error) = state.counts.settle() {
                            return Some((Err(error), state));
                        }
                        if !state.counts.is_empty() {
                            let last = state.counts.take();
                            return Some((last, state));
                        }
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            batches,
        )))
    }
}

/// A group of [`Counts`].
enum Key {
    Short(u128),
    Long(Box<[u8]>),
    Null,
}

/// A key to count, as a row holds it.
enum Lookup<'a> {
    Short(u128),
    Long(&'a [u8]),
    Null,
}

/// Row counts by key, in the order keys were first seen.
struct Counts {
    column: usize,
    schema: SchemaRef,
    /// The dictionary being read, and its rows counted by code (and the
    /// rows with no code) not yet added to the groups.
    codes: Codes,
    code_counts: Vec<i64>,
    null_codes: i64,
    short: ShortKeys,
    long: HashMap<Box<[u8]>, u32>,
    null: Option<u32>,
    keys: Vec<Key>,
    counts: Vec<i64>,
    /// The groups passed on when there was no more room, not yet sent.
    full: Vec<RecordBatch>,
}

impl Counts {
    fn new(column: usize, schema: SchemaRef) -> Self {
        Self {
            column,
            schema,
            codes: Codes::default(),
            code_counts: Vec::new(),
            null_codes: 0,
            short: ShortKeys::default(),
            long: HashMap::new(),
            null: None,
            keys: Vec::new(),
            counts: Vec::new(),
            full: Vec::new(),
        }
    }

    /// Whether no group is held (after [`Counts::settle`]).
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Counts `batch`'s rows. When the groups (short, long and null
    /// together) reach [`SEEN_MAX`] they go to `full` and counting starts
    /// afresh, so memory stays bounded whatever the column holds. Rows
    /// of dictionary codes are counted by code, and the codes' counts
    /// added to their strings' when the dictionary changes
    /// ([`Counts::settle`]).
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = batch.column(self.column);
        if let Some(coded) = column.as_dictionary_opt::<Int32Type>() {
            if !self.codes.holds(coded.values()) {
                self.settle()?;
                self.codes.follow(coded.values());
                self.code_counts.clear();
                self.code_counts.resize(coded.values().len(), 0);
            }
            let keys = coded.keys();
            match keys.nulls() {
                None => {
                    for &code in keys.values() {
                        self.code_counts[code as usize] += 1;
                    }
                }
                Some(nulls) => {
                    for (at, &code) in keys.values().iter().enumerate() {
                        if nulls.is_null(at) {
                            self.null_codes += 1;
                        } else {
                            self.code_counts[code as usize] += 1;
                        }
                    }
                }
            }
            return Ok(());
        }
        let Some(strings) = column.as_string_view_opt() else {
            return Err(DataFusionError::Internal(
                "CountByKey reads string views or dictionary codes".into(),
            ));
        };
        for (at, &view) in strings.views().iter().enumerate() {
            let key = if strings.is_null(at) {
                Lookup::Null
            } else if view as u32 > 12 {
                Lookup::Long(strings.value(at).as_bytes())
            } else {
                Lookup::Short(view)
            };
            self.count(key, 1)?;
        }
        Ok(())
    }

    /// Adds `n` rows to the group of `key`. Inlined into the loop over
    /// a batch's views, where it runs once a row.
    #[inline(always)]
    fn count(&mut self, key: Lookup<'_>, n: i64) -> Result<()> {
        if self.keys.len() == SEEN_MAX {
            // No room: pass the groups so far on, count afresh.
            let full = self.take()?;
            self.full.insert(0, full);
        }
        let next = self.keys.len() as u32;
        let group = match key {
            Lookup::Null => *self.null.get_or_insert_with(|| {
                self.keys.push(Key::Null);
                next
            }),
            Lookup::Long(bytes) => match self.long.get(bytes) {
                Some(&group) => group,
                None => {
                    self.long.insert(bytes.into(), next);
                    self.keys.push(Key::Long(bytes.into()));
                    next
                }
            },
            Lookup::Short(view) => {
                let (group, new) = self
                    .short
                    .find_or_add(view, next)
                    .expect("the table has room for as many keys as a part holds");
                if new {
                    self.keys.push(Key::Short(view));
                }
                group
            }
        };
        match self.counts.get_mut(group as usize) {
            Some(count) => *count += n,
            None => self.counts.push(n),
        }
        Ok(())
    }

    /// Adds the counts by code of the dictionary read so far to their
    /// strings' groups.
    fn settle(&mut self) -> Result<()> {
        let counts = std::mem::take(&mut self.code_counts);
        let nulls = std::mem::take(&mut self.null_codes);
        if let Some(values) = self.codes.release() {
            let Some(values) = values.as_string_opt::<i32>() else {
                return Err(DataFusionError::Internal(
                    "CountByKey reads dictionaries of strings".into(),
                ));
            };
            for (code, &n) in counts.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let key = if values.is_null(code) {
                    Lookup::Null
                } else {
                    let bytes = values.value(code).as_bytes();
                    match inline_view(bytes) {
                        Some(view) => Lookup::Short(view),
                        None => Lookup::Long(bytes),
                    }
                };
                self.count(key, n)?;
            }
        }
        if nulls > 0 {
            self.count(Lookup::Null, nulls)?;
        }
        Ok(())
    }

    /// The groups so far as the partial aggregation's rows; starts afresh.
    fn take(&mut self) -> Result<RecordBatch> {
        let mut keys = StringViewBuilder::with_capacity(self.keys.len());
        for key in self.keys.drain(..) {
            match key {
                Key::Short(view) => {
                    let bytes = view.to_le_bytes();
                    let text = std::str::from_utf8(&bytes[4..4 + view as u32 as usize])
                        .map_err(|error| DataFusionError::Internal(error.to_string()))?;
                    keys.append_value(text);
                }
                Key::Long(bytes) => keys.append_value(
                    std::str::from_utf8(&bytes)
                        .map_err(|error| DataFusionError::Internal(error.to_string()))?,
                ),
                Key::Null => keys.append_null(),
            }
        }
        let counts: ArrayRef = Arc::new(Int64Array::from(std::mem::take(&mut self.counts)));
        let mut columns: Vec<ArrayRef> = vec![Arc::new(keys.finish())];
        columns.resize(self.schema.fields().len(), counts);
        self.short.clear();
        self.long.clear();
        self.null = None;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Short strings' views, each numbered in the order first seen: an
/// open-addressing table of `SLOTS` views, zero marking a free slot (the
/// empty string's view is zero, so it has a number of its own).
struct ShortKeys {
    slots: Box<[(u128, u32)]>,
    len: usize,
    empty: Option<u32>,
}

impl Default for ShortKeys {
    fn default() -> Self {
        Self {
            slots: vec![(0, 0); SLOTS].into_boxed_slice(),
            len: 0,
            empty: None,
        }
    }
}

impl ShortKeys {
    /// The number of the inline `view` and whether it is new, numbering
    /// it `next` if so; `None` when it is new and there is no room.
    #[inline]
    fn find_or_add(&mut self, view: u128, next: u32) -> Option<(u32, bool)> {
        if view == 0 {
            return Some(match self.empty {
                Some(number) => (number, false),
                None => {
                    self.empty = Some(next);
                    (next, true)
                }
            });
        }
        // Inline views are the length and the bytes, zero-padded: equal
        // views are equal strings.
        // Every byte of the view moves the slot: the two halves multiplied
        // into 128 bits, folded (as foldhash and wyhash mix), top bits.
        let product = u128::from((view as u64) ^ 0x243f_6a88_85a3_08d3)
            * u128::from(((view >> 64) as u64) ^ 0x1319_8a2e_0370_7344);
        let mixed = (product as u64) ^ ((product >> 64) as u64);
        let mask = SLOTS - 1;
        let mut slot = (mixed >> (64 - SLOTS.trailing_zeros())) as usize;
        loop {
            let (held, number) = self.slots[slot];
            if held == view {
                return Some((number, false));
            }
            if held == 0 {
                if self.len == SEEN_MAX {
                    return None;
                }
                self.slots[slot] = (view, next);
                self.len += 1;
                return Some((next, true));
            }
            slot = (slot + 1) & mask;
        }
    }

    fn clear(&mut self) {
        self.slots.fill((0, 0));
        self.len = 0;
        self.empty = None;
    }
}

/// Short strings passed on so far, for [`DropRepeats`].
#[derive(Default)]
struct Seen(ShortKeys);

impl Seen {
    /// For each row, whether to pass it on: a null, a long string, or a
    /// short one not passed on before (remembered from now on while there
    /// is room).
    fn keep(&mut self, views: &[u128], nulls: Option<&NullBuffer>) -> BooleanBuffer {
        BooleanBuffer::collect_bool(views.len(), |at| {
            let view = views[at];
            if view as u32 > 12 || nulls.is_some_and(|nulls| nulls.is_null(at)) {
                return true;
            }
            self.0.find_or_add(view, 0).is_none_or(|(_, new)| new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringViewArray;

    fn kept(seen: &mut Seen, values: &[Option<&str>]) -> Vec<Option<String>> {
        let array = StringViewArray::from(values.to_vec());
        let keep = seen.keep(array.views(), array.nulls());
        (0..array.len())
            .filter(|&at| keep.value(at))
            .map(|at| array.is_valid(at).then(|| array.value(at).to_string()))
            .collect()
    }

    #[test]
    fn short_strings_pass_once_long_ones_and_nulls_always() {
        let mut seen = Seen::default();
        let long = "a string longer than twelve bytes";
        let first = kept(
            &mut seen,
            &[
                Some("M001"),
                Some("M002"),
                Some("M001"),
                None,
                Some(""),
                Some(""),
                Some(long),
                Some(long),
                None,
            ],
        );
        assert_eq!(
            first,
            vec![
                Some("M001".into()),
                Some("M002".into()),
                None,
                Some("".into()),
                Some(long.into()),
                Some(long.into()),
                None
            ]
        );
        // A later batch remembers the earlier one's values.
        let second = kept(
            &mut seen,
            &[Some("M002"), Some("M003"), Some("twelve bytes")],
        );
        assert_eq!(
            second,
            vec![Some("M003".into()), Some("twelve bytes".into())]
        );
    }

    #[test]
    fn counts_add_up_across_the_parts_passed_on_when_full() {
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let mut counts = Counts::new(0, schema.clone());
        let long = "a value longer than twelve bytes";
        // Every short value three times, in batches, with long values and nulls.
        let shorts: Vec<String> = (0..SEEN_MAX + 100).map(|n| format!("k{n}")).collect();
        let mut expected: HashMap<Option<String>, i64> = HashMap::new();
        for _ in 0..3 {
            for chunk in shorts.chunks(5_000) {
                let mut values: Vec<Option<&str>> =
                    chunk.iter().map(|v| Some(v.as_str())).collect();
                values.extend([Some(long), None, Some("")]);
                for value in &values {
                    *expected.entry(value.map(str::to_string)).or_default() += 1;
                }
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringViewArray::from(values.clone())),
                        Arc::new(Int64Array::from(vec![0; values.len()])),
                    ],
                )
                .unwrap();
                counts.add(&batch).unwrap();
            }
        }
        let mut parts = std::mem::take(&mut counts.full);
        parts.push(counts.take().unwrap());
        assert!(parts.len() > 1, "the groups overflowed the table");
        let mut answered: HashMap<Option<String>, i64> = HashMap::new();
        for part in &parts {
            let keys = part.column(0).as_string_view();
            let numbers = part
                .column(1)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            for at in 0..part.num_rows() {
                let key = keys.is_valid(at).then(|| keys.value(at).to_string());
                *answered.entry(key).or_default() += numbers.value(at);
            }
        }
        assert_eq!(answered, expected);
    }

    #[test]
    fn long_keys_count_against_the_room_too() {
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8View, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let mut counts = Counts::new(0, schema.clone());
        let values: Vec<String> = (0..2 * SEEN_MAX + 1)
            .map(|n| format!("an event id longer than twelve bytes {n}"))
            .collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringViewArray::from_iter_values(&values)),
                Arc::new(Int64Array::from(vec![0; values.len()])),
            ],
        )
        .unwrap();
        counts.add(&batch).unwrap();
        assert_eq!(counts.full.len(), 2);
        assert!(counts.full.iter().all(|part| part.num_rows() == SEEN_MAX));
        assert_eq!(counts.take().unwrap().num_rows(), 1);
    }

    #[test]
    fn beyond_its_room_new_values_pass_every_time() {
        let mut seen = Seen::default();
        let values: Vec<String> = (0..SEEN_MAX + 10).map(|n| format!("v{n}")).collect();
        let all: Vec<Option<&str>> = values.iter().map(|v| Some(v.as_str())).collect();
        assert_eq!(kept(&mut seen, &all).len(), values.len());
        let again = kept(&mut seen, &all);
        // The remembered ones are dropped, the ones past the room pass again.
        assert_eq!(again.len(), 10);
        assert_eq!(seen.0.len, SEEN_MAX);
    }
}
