//! Materialized views: one aggregation over one table, kept as a
//! materialized part of mergeable aggregate states plus a delta (the
//! table's buffered rows) aggregated when the view is queried, so a view
//! is always as fresh as its table and equal to running its query over the
//! raw rows (Data Explorer's model).
//!
//! A view's SQL is planned once by DataFusion and cut at its aggregation:
//! the operators below it (WHERE, the expressions grouped by, such as
//! `date_bin`) run over new rows in DataFusion's `Partial` mode, which
//! yields accumulator states (HyperLogLog sketches, t-digests, sums and
//! counts); the operators above it (HAVING, the SELECT list, ORDER BY) run
//! over the `Final` merge of those states at query time.
//!
//! Each seal folds the sealed rows' states into the view before the rows
//! leave the buffer, so materialized part and delta never overlap.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Accumulator, Expr, LogicalPlan};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
    collect, replace_children_if_necessary,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::StoreError;
use crate::query::QueryError;
use crate::table::Table;

/// `[[view]]`: a name and an aggregating query over one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSpec {
    pub name: String,
    pub query: String,
}

/// Summary for `GET /api/v1/views`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewInfo {
    pub name: String,
    pub table: String,
    pub query: String,
    /// Rows of accumulator states in the materialized part (at least one per group).
    pub materialized_rows: u64,
    /// Table rows not yet folded in, aggregated at query time.
    pub delta_rows: u64,
    /// Set when folding new rows failed; the view answers with this error.
    pub error: Option<String>,
}

/// A view's query cut into the parts that evaluate it incrementally.
pub struct ViewPlan {
    pub spec: ViewSpec,
    /// The table the view aggregates.
    pub table: String,
    table_schema: SchemaRef,
    /// The table columns the view reads.
    projection: Option<Vec<usize>>,
    /// What feeds the aggregation, with a [`ViewInput`] leaf for the rows.
    below: Arc<dyn ExecutionPlan>,
    group_by: PhysicalGroupBy,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The schema of `below`'s output.
    input_schema: SchemaRef,
    /// Group columns followed by each aggregate's state columns.
    pub states_schema: SchemaRef,
    /// The operators above the aggregation, innermost first.
    above: Vec<Arc<dyn ExecutionPlan>>,
    pub schema: SchemaRef,
}

impl fmt::Debug for ViewPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewPlan")
            .field("name", &self.spec.name)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// A table a view may read: its columns and its row-level security.
#[derive(Debug, Clone)]
pub struct ViewSource {
    pub table: String,
    pub schema: SchemaRef,
    pub row_level_security: Option<String>,
}

impl ViewPlan {
    /// Plans the view's query against the tables' schemas. Errors say why
    /// a query cannot be a view, with its position where there is one.
    pub fn compile(spec: ViewSpec, tables: &[ViewSource]) -> Result<Self, StoreError> {
        let invalid =
            |message: String| StoreError::Invalid(format!("view '{}': {message}", spec.name));
        let context = planning_context().map_err(|e| invalid(e.to_string()))?;
        for input in tables {
            let provider = ViewInputTable {
                schema: input.schema.clone(),
            };
            context
                .register_table(input.table.as_str(), Arc::new(provider))
                .map_err(|e| invalid(e.to_string()))?;
        }
        let state = context.state();
        let planned = futures::executor::block_on(async {
            let mut logical = state.create_logical_plan(&spec.query).await?;
            let table = source_table(&logical)?;
            // A view aggregates only the rows its table's security shows.
            if let Some(input) = tables.iter().find(|t| t.table == table)
                && let Some(text) = &input.row_level_security
            {
                let predicate = crate::security::predicate(text, &table, &input.schema)
                    .map_err(DataFusionError::Plan)?;
                logical = crate::security::restrict(logical, &table, &predicate)?;
            }
            let physical = state.create_physical_plan(&logical).await?;
            Ok::<_, DataFusionError>((table, physical))
        });
        let (table, physical) =
            planned.map_err(|e| invalid(QueryError::from_datafusion(&e, &spec.query).message))?;
        let table_schema = tables
            .iter()
            .find(|t| t.table == table)
            .map(|t| t.schema.clone())
            .ok_or_else(|| invalid(format!("no table '{table}'")))?;

        let mut above = Vec::new();
        let mut node = physical.clone();
        let top = loop {
            if node.downcast_ref::<AggregateExec>().is_some() {
                break node;
            }
            let children = node.children();
            if children.len() != 1 {
                return Err(invalid(shape_error()));
            }
            above.push(node.clone());
            node = children[0].clone();
        };
        above.reverse();
        let aggregate = partial_or_single(&top).ok_or_else(|| invalid(shape_error()))?;
        if !aggregate.group_expr().is_single() {
            return Err(invalid(
                "GROUPING SETS, CUBE and ROLLUP cannot be materialized".into(),
            ));
        }
        let below = aggregate.input().clone();
        let projection = find_input(&below).map_err(|e| invalid(e.to_string()))?;
        let partial = AggregateExec::try_new(
            AggregateMode::Partial,
            aggregate.group_expr().clone(),
            aggregate.aggr_expr().to_vec(),
            aggregate.filter_expr().to_vec(),
            below.clone(),
            aggregate.input_schema(),
        )
        .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            table,
            table_schema,
            projection,
            group_by: aggregate.group_expr().clone(),
            aggregates: aggregate.aggr_expr().to_vec(),
            filters: aggregate.filter_expr().to_vec(),
            input_schema: aggregate.input_schema(),
            states_schema: partial.schema(),
            below,
            above,
            schema: physical.schema(),
            spec,
        })
    }

    /// The aggregation's states over `rows` (rows of the table), in `Partial` mode.
    fn partial(&self, rows: Vec<RecordBatch>) -> Result<Arc<dyn ExecutionPlan>> {
        let source = MemorySourceConfig::try_new_exec(
            &[rows],
            self.table_schema.clone(),
            self.projection.clone(),
        )?;
        let below = replace_input(self.below.clone(), source)?;
        Ok(Arc::new(AggregateExec::try_new(
            AggregateMode::Partial,
            self.group_by.clone(),
            self.aggregates.clone(),
            self.filters.clone(),
            below,
            self.input_schema.clone(),
        )?))
    }

    /// Computes the states of `rows` (run on the calling thread).
    pub fn fold(&self, rows: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let plan = self.partial(rows)?;
        let batches = futures::executor::block_on(collect(plan, Arc::new(TaskContext::default())))?;
        Ok(batches.into_iter().filter(|b| b.num_rows() > 0).collect())
    }

    /// The view's answer: the `Final` merge of the materialized states and
    /// the states of the delta rows, then the operators above.
    pub fn plan(
        &self,
        materialized: Vec<RecordBatch>,
        delta: Vec<RecordBatch>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = vec![MemorySourceConfig::try_new_exec(
            &[materialized],
            self.states_schema.clone(),
            None,
        )?];
        if !delta.is_empty() {
            inputs.push(self.partial(delta)?);
        }
        let states: Arc<dyn ExecutionPlan> = if inputs.len() == 1 {
            inputs.pop().expect("one input")
        } else {
            Arc::new(CoalescePartitionsExec::new(UnionExec::try_new(inputs)?))
        };
        let mut plan: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
            AggregateMode::Final,
            self.group_by.as_final(),
            self.aggregates.clone(),
            self.filters.clone(),
            states,
            self.input_schema.clone(),
        )?);
        for node in &self.above {
            plan = replace_children_if_necessary(node.clone(), vec![plan])?;
        }
        Ok(plan)
    }

    /// Merges state rows of the same group into one row per group.
    pub fn compact(&self, batches: &[RecordBatch]) -> Result<RecordBatch> {
        let groups = self.group_by.expr().len();
        let key_fields: Vec<SortField> = self.states_schema.fields()[..groups]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(key_fields)?;
        let mut widths = Vec::with_capacity(self.aggregates.len());
        for aggregate in &self.aggregates {
            widths.push(aggregate.state_fields()?.len());
        }
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut keys: Vec<OwnedRow> = Vec::new();
        let mut accumulators: Vec<Vec<Box<dyn Accumulator>>> = Vec::new();
        for batch in batches {
            let rows = converter.convert_columns(&batch.columns()[..groups])?;
            for row in 0..batch.num_rows() {
                let key = rows.row(row);
                let at = match index.get(key.as_ref()) {
                    Some(&at) => at,
                    None => {
                        let fresh = self
                            .aggregates
                            .iter()
                            .map(|a| a.create_accumulator())
                            .collect::<Result<Vec<_>>>()?;
                        index.insert(key.as_ref().to_vec(), keys.len());
                        keys.push(key.owned());
                        accumulators.push(fresh);
                        keys.len() - 1
                    }
                };
                let mut column = groups;
                for (accumulator, &width) in accumulators[at].iter_mut().zip(&widths) {
                    let states: Vec<ArrayRef> = batch.columns()[column..column + width]
                        .iter()
                        .map(|c| c.slice(row, 1))
                        .collect();
                    accumulator.merge_batch(&states)?;
                    column += width;
                }
            }
        }
        let mut columns = converter.convert_rows(keys.iter().map(|k| k.row()))?;
        let mut per_column: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(keys.len()); self.states_schema.fields().len() - groups];
        for group in &mut accumulators {
            let mut column = 0;
            for accumulator in group {
                for value in accumulator.state()? {
                    per_column[column].push(value);
                    column += 1;
                }
            }
        }
        for (values, field) in per_column
            .into_iter()
            .zip(&self.states_schema.fields()[groups..])
        {
            let array = if values.is_empty() {
                datafusion::arrow::array::new_empty_array(field.data_type())
            } else {
                ScalarValue::iter_to_array(values)?
            };
            let array = if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type())?
            };
            columns.push(array);
        }
        Ok(RecordBatch::try_new(self.states_schema.clone(), columns)?)
    }
}

fn shape_error() -> String {
    "a view is one aggregation (GROUP BY) over one table; joins, unions, window functions, nested aggregations \
     and count(DISTINCT …) cannot be materialized (approx_distinct/dcount can)"
        .into()
}

/// A session like the query engine's (same functions and identifier rules),
/// planning on one partition.
pub(crate) fn planning_context() -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_default_catalog_and_schema("freshet", "public");
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let context = SessionContext::new_with_config(config);
    crate::functions::register(&context)?;
    Ok(context)
}

/// The one table a view's plan reads.
fn source_table(plan: &LogicalPlan) -> Result<String> {
    let mut tables = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            tables.push(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    tables.dedup();
    match tables.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(DataFusionError::Plan(shape_error())),
    }
}

/// The aggregation that sees the rows: `top` itself when it aggregates in
/// one step, or the `Partial` under a `Final`.
fn partial_or_single(top: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    let aggregate = top.downcast_ref::<AggregateExec>()?;
    match aggregate.mode() {
        AggregateMode::Single | AggregateMode::SinglePartitioned => Some(aggregate),
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            let mut node = aggregate.input();
            loop {
                if let Some(partial) = node.downcast_ref::<AggregateExec>() {
                    return (*partial.mode() == AggregateMode::Partial).then_some(partial);
                }
                let children = node.children();
                if children.len() != 1 {
                    return None;
                }
                node = children[0];
            }
        }
        _ => None,
    }
}

/// Checks that `below` is a chain ending in the [`ViewInput`] and returns its projection.
fn find_input(below: &Arc<dyn ExecutionPlan>) -> Result<Option<Vec<usize>>> {
    let mut node = below;
    loop {
        if let Some(input) = node.downcast_ref::<ViewInput>() {
            return Ok(input.projection.clone());
        }
        let children = node.children();
        if children.len() != 1 || node.downcast_ref::<AggregateExec>().is_some() {
            return Err(DataFusionError::Plan(shape_error()));
        }
        node = children[0];
    }
}

fn replace_input(
    plan: Arc<dyn ExecutionPlan>,
    rows: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.downcast_ref::<ViewInput>().is_some() {
        return Ok(rows);
    }
    let child = plan.children()[0].clone();
    let child = replace_input(child, rows)?;
    replace_children_if_necessary(plan, vec![child])
}

/// Stands for a table while a view is planned.
#[derive(Debug)]
struct ViewInputTable {
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for ViewInputTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(ViewInput {
            projection: projection.cloned(),
            properties: Arc::new(properties),
        }))
    }
}

/// The leaf of a view's plan where table rows come in; replaced by the
/// rows themselves before the plan runs. It has no statistics, so the
/// planner cannot fold an aggregation into a constant.
#[derive(Debug)]
struct ViewInput {
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for ViewInput {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ViewInput")
    }
}

impl ExecutionPlan for ViewInput {
    fn name(&self) -> &str {
        "ViewInput"
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
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Err(DataFusionError::Internal(
            "a view's input runs only after its rows are put in".into(),
        ))
    }
}

/// A view as DataFusion sees it.
#[derive(Debug)]
pub struct ViewTable {
    table: Arc<Table>,
    view: Arc<ViewPlan>,
}

impl ViewTable {
    pub fn new(table: Arc<Table>, view: Arc<ViewPlan>) -> Self {
        Self { table, view }
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (materialized, delta) = self
            .table
            .view_snapshot(&self.view.spec.name)
            .map_err(DataFusionError::Execution)?;
        let plan = self.view.plan(materialized, delta)?;
        let Some(projection) = projection else {
            return Ok(plan);
        };
        let schema = plan.schema();
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
            .iter()
            .map(|&at| {
                let name = schema.field(at).name().clone();
                let column: Arc<dyn PhysicalExpr> = Arc::new(
                    datafusion::physical_expr::expressions::Column::new(&name, at),
                );
                (column, name)
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
    }
}
