//! Row-level security: a table's predicate (`row_level_security` in its
//! `[[table]]`), a SQL condition over its columns, applied to every query
//! of the table whoever runs it, in SQL and KQL alike, and to the rows its
//! materialized views aggregate. Rows it rejects are not visible anywhere.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result as DataFusionResult;
use datafusion::logical_expr::{Expr, ExprSchemable, Filter, LogicalPlan};

/// Parses and checks `text` against the table's columns: a condition that
/// reads only them, with no aggregate, window or subquery.
pub fn predicate(text: &str, table: &str, schema: &SchemaRef) -> Result<Expr, String> {
    let context = crate::view::planning_context().map_err(|e| e.to_string())?;
    let df_schema =
        DFSchema::try_from_qualified_schema(table, schema).map_err(|e| e.to_string())?;
    let expr = context
        .state()
        .create_logical_expr(text, &df_schema)
        .map_err(|e| format!("'{text}': {}", e.find_root()))?;
    let mut nested = None;
    expr.apply(|e| {
        if matches!(
            e,
            Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
                | Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
        ) {
            nested = Some(e.to_string());
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })
    .map_err(|e| e.to_string())?;
    if let Some(nested) = nested {
        return Err(format!(
            "'{text}': a row condition reads one row; {nested} is not allowed"
        ));
    }
    let data_type = expr.get_type(&df_schema).map_err(|e| e.to_string())?;
    if data_type != DataType::Boolean {
        return Err(format!(
            "'{text}' is a {data_type}, not a condition (true for the rows to show)"
        ));
    }
    Ok(expr)
}

/// Puts `predicate` over every scan of `table` in `plan`.
pub fn restrict(plan: LogicalPlan, table: &str, predicate: &Expr) -> DataFusionResult<LogicalPlan> {
    plan.transform_up(|node| match &node {
        LogicalPlan::TableScan(scan) if scan.table_name.table() == table => {
            let filtered = Filter::try_new(predicate.clone(), Arc::new(node))?;
            Ok(Transformed::yes(LogicalPlan::Filter(filtered)))
        }
        _ => Ok(Transformed::no(node)),
    })
    .map(|t| t.data)
}
