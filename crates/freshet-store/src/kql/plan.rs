//! A KQL tree into a DataFusion plan, operator by operator, with Data
//! Explorer's defaults: sorts descending, `innerunique` joins, columns
//! named as Data Explorer names them (`count_`, `dcount_MerchantId`,
//! `percentile_Amount_99`, the binned column's own name).
//!
//! Each operator is checked against the columns the previous one left,
//! so a misspelt column is reported where it is written, with the
//! columns that do exist.

use std::collections::{BTreeMap, HashMap};
use std::ops::Not;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano};
use datafusion::common::{Column, DFSchema, JoinType, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::functions_aggregate::approx_percentile_cont::approx_percentile_cont;
use datafusion::logical_expr::expr::Like;
use datafusion::logical_expr::{
    Expr as DfExpr, ExprFunctionExt, ExprSchemable, Operator as DfOp, SortExpr, binary_expr, cast,
    lit, try_cast, when,
};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use super::syntax::{
    BinaryOp, Expr, ExprKind, Item, JoinKind, KqlError, Literal, Name, Operator, Pos, Query,
    Result, SortKey, Source, TextOp,
};
use crate::spec::timestamp_type;

/// `render kind with (…)`: how the client should draw the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Render {
    pub kind: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// The visualizations `render` knows.
const RENDER_KINDS: [&str; 10] = [
    "table",
    "timechart",
    "linechart",
    "areachart",
    "stackedareachart",
    "barchart",
    "columnchart",
    "piechart",
    "scatterchart",
    "card",
];

/// Plans `query` against the tables and views registered in `context`.
pub async fn plan(context: &SessionContext, query: &Query) -> Result<(DataFrame, Option<Render>)> {
    let mut names = Vec::new();
    table_names(query, &mut names);
    let mut tables = HashMap::new();
    for name in names {
        if tables.contains_key(&name.text) {
            continue;
        }
        match context.table(name.text.as_str()).await {
            Ok(frame) => {
                tables.insert(name.text.clone(), frame);
            }
            Err(_) => {
                let mut known = context
                    .catalog("freshet")
                    .and_then(|c| c.schema("public"))
                    .map(|s| s.table_names())
                    .unwrap_or_default();
                known.sort();
                return Err(KqlError::new(
                    name.pos,
                    format!(
                        "no table or view named '{}'; there are: {}",
                        name.text,
                        listed(&known)
                    ),
                ));
            }
        }
    }
    let mut planner = Planner {
        context,
        tables,
        render: None,
    };
    let frame = planner.query(query, true)?;
    Ok((frame, planner.render))
}

fn table_names(query: &Query, names: &mut Vec<Name>) {
    match &query.source {
        Source::Table(name) => names.push(name.clone()),
        Source::Nested(inner) => table_names(inner, names),
    }
    for operator in &query.operators {
        if let Operator::Join { right, .. } = operator {
            table_names(right, names);
        }
    }
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

struct Planner<'a> {
    context: &'a SessionContext,
    tables: HashMap<String, DataFrame>,
    render: Option<Render>,
}

/// DataFusion's message for an error while planning `pos`.
fn at<T>(pos: Pos, result: std::result::Result<T, DataFusionError>) -> Result<T> {
    result.map_err(|error| {
        let message = match error.find_root() {
            DataFusionError::Plan(m) | DataFusionError::Execution(m) => m.clone(),
            DataFusionError::SchemaError(e, _) => e.to_string(),
            other => other.to_string(),
        };
        KqlError::new(pos, message)
    })
}

fn column(name: &str) -> DfExpr {
    DfExpr::Column(Column::new_unqualified(name))
}

/// Names of the columns, in order.
fn column_names(schema: &DFSchema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// `micros` as an interval; timespan literals are bounded so that their
/// nanoseconds fit.
fn micros_interval(micros: i64) -> DfExpr {
    lit(ScalarValue::IntervalMonthDayNano(Some(
        IntervalMonthDayNano::new(0, 0, micros.saturating_mul(1000)),
    )))
}

/// Data Explorer counts datetime bins from 0001-01-01, 719,162 days
/// before the Unix epoch: the origin `date_bin` needs for a bin of
/// `micros` to fall where Data Explorer's does (1d bins start at
/// midnight either way; 7d bins start on Mondays, not Thursdays).
fn bin_origin_micros(micros: i64) -> i64 {
    const DAYS_BEFORE_EPOCH: i128 = 719_162;
    let before = DAYS_BEFORE_EPOCH * 86_400_000_000;
    -((before % i128::from(micros)) as i64)
}

/// Picks `base`, or `base1`, `base2`, … when taken.
fn unique_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_string();
    }
    (1..)
        .map(|n| format!("{base}{n}"))
        .find(|candidate| !taken.iter().any(|t| t == candidate))
        .expect("some suffix is free")
}

fn is_aggregate(name: &str) -> bool {
    matches!(
        name,
        "count"
            | "countif"
            | "dcount"
            | "sum"
            | "sumif"
            | "avg"
            | "min"
            | "max"
            | "take_any"
            | "any"
            | "percentile"
            | "percentiles"
            | "stdev"
            | "variance"
            | "arg_max"
            | "arg_min"
    )
}

impl Planner<'_> {
    fn query(&mut self, query: &Query, outermost: bool) -> Result<DataFrame> {
        let mut frame = match &query.source {
            Source::Table(name) => self.tables[&name.text].clone(),
            Source::Nested(inner) => self.query(inner, false)?,
        };
        for (index, operator) in query.operators.iter().enumerate() {
            frame = match operator {
                Operator::Render {
                    kind,
                    properties,
                    pos,
                } => {
                    if !outermost || index + 1 != query.operators.len() {
                        return Err(KqlError::new(
                            *pos,
                            "render must be the last operator of the query",
                        ));
                    }
                    if !RENDER_KINDS.contains(&kind.as_str()) {
                        return Err(KqlError::new(
                            *pos,
                            format!(
                                "'{kind}' is not a visualization; use one of {}",
                                RENDER_KINDS.join(", ")
                            ),
                        ));
                    }
                    self.render = Some(Render {
                        kind: kind.clone(),
                        properties: properties.iter().cloned().collect(),
                    });
                    frame
                }
                other => self.operator(frame, other)?,
            };
        }
        Ok(frame)
    }

    fn operator(&mut self, frame: DataFrame, operator: &Operator) -> Result<DataFrame> {
        match operator {
            Operator::Where(condition) => {
                let predicate = self.expr(condition, frame.schema())?;
                self.expect_type(condition, &predicate, frame.schema(), "a condition", |t| {
                    *t == DataType::Boolean
                })?;
                at(condition.pos, frame.filter(predicate))
            }
            Operator::Project(items) => {
                let mut exprs = Vec::new();
                let mut names = Vec::new();
                for item in items {
                    let expr = self.expr(&item.expr, frame.schema())?;
                    let name = unique_name(&item_name(item, names.len()), &names);
                    names.push(name.clone());
                    exprs.push(expr.alias(name));
                }
                at(items[0].expr.pos, frame.select(exprs))
            }
            Operator::ProjectAway(names) => {
                let mut keep = column_names(frame.schema());
                for name in names {
                    self.check_column(&name.text, name.pos, frame.schema())?;
                    keep.retain(|c| *c != name.text);
                }
                let exprs: Vec<DfExpr> = keep.iter().map(|c| column(c)).collect();
                at(names[0].pos, frame.select(exprs))
            }
            Operator::ProjectRename(renames) => {
                let mut exprs: Vec<DfExpr> = Vec::new();
                for old in column_names(frame.schema()) {
                    let new = renames.iter().find(|(_, from)| from.text == old);
                    exprs.push(match new {
                        Some((to, _)) => column(&old).alias(to.text.clone()),
                        None => column(&old).alias(old.clone()),
                    });
                }
                for (_, from) in renames {
                    self.check_column(&from.text, from.pos, frame.schema())?;
                }
                at(renames[0].0.pos, frame.select(exprs))
            }
            Operator::Extend(items) => {
                let mut frame = frame;
                for (index, item) in items.iter().enumerate() {
                    let expr = self.expr(&item.expr, frame.schema())?;
                    let existing = column_names(frame.schema());
                    let name = match &item.name {
                        Some(name) => name.text.clone(),
                        None => unique_name(&format!("Column{}", index + 1), &existing),
                    };
                    let mut exprs: Vec<DfExpr> = Vec::new();
                    let mut replaced = false;
                    for old in &existing {
                        if *old == name {
                            exprs.push(expr.clone().alias(name.clone()));
                            replaced = true;
                        } else {
                            exprs.push(column(old).alias(old.clone()));
                        }
                    }
                    if !replaced {
                        exprs.push(expr.alias(name));
                    }
                    frame = at(item.expr.pos, frame.select(exprs))?;
                }
                Ok(frame)
            }
            Operator::Summarize {
                aggregates,
                by,
                pos,
            } => self.summarize(frame, aggregates, by, *pos),
            Operator::Count => {
                let count = self.aggregate("count", vec![lit(1i64)], Pos::default())?;
                let frame = at(
                    Pos::default(),
                    frame.aggregate(vec![], vec![count.alias("Count")]),
                )?;
                Ok(frame)
            }
            Operator::Distinct(names) => {
                let exprs: Vec<DfExpr> = if names.is_empty() {
                    column_names(frame.schema())
                        .iter()
                        .map(|c| column(c))
                        .collect()
                } else {
                    let mut exprs = Vec::new();
                    for name in names {
                        self.check_column(&name.text, name.pos, frame.schema())?;
                        exprs.push(column(&name.text));
                    }
                    exprs
                };
                at(Pos::default(), frame.aggregate(exprs, vec![]))
            }
            Operator::Top { count, by } => {
                let sorts = self.sort_keys(by, frame.schema())?;
                let frame = at(by[0].expr.pos, frame.sort(sorts))?;
                at(by[0].expr.pos, frame.limit(0, Some(*count as usize)))
            }
            Operator::Sort(keys) => {
                let sorts = self.sort_keys(keys, frame.schema())?;
                at(keys[0].expr.pos, frame.sort(sorts))
            }
            Operator::Take(count) => at(Pos::default(), frame.limit(0, Some(*count as usize))),
            Operator::Join {
                kind,
                right,
                on,
                pos,
            } => {
                let right = self.query(right, false)?;
                self.join(frame, right, *kind, on, *pos)
            }
            Operator::Render { .. } => unreachable!("render is handled by query()"),
        }
    }

    fn sort_keys(&self, keys: &[SortKey], schema: &DFSchema) -> Result<Vec<SortExpr>> {
        keys.iter()
            .map(|key| {
                Ok(self
                    .expr(&key.expr, schema)?
                    .sort(!key.descending, key.nulls_first))
            })
            .collect()
    }

    fn summarize(
        &self,
        frame: DataFrame,
        aggregates: &[Item],
        by: &[Item],
        pos: Pos,
    ) -> Result<DataFrame> {
        let schema = frame.schema().clone();
        let mut names: Vec<String> = Vec::new();
        let mut groups = Vec::new();
        for item in by {
            let expr = self.expr(&item.expr, &schema)?;
            let name = unique_name(&item_name(item, names.len()), &names);
            names.push(name.clone());
            groups.push(expr.alias(name));
        }
        // Aggregates are computed under hidden names, then the items
        // (which may be arithmetic over several) are projected over them.
        let mut hidden: Vec<DfExpr> = Vec::new();
        let mut outputs: Vec<DfExpr> = names.iter().map(|n| column(n)).collect();
        for item in aggregates {
            if let ExprKind::Call(function, args) = &item.expr.kind
                && let Some(expanded) =
                    self.multi_column_aggregate(function, args, item, &schema, &names, &mut hidden)?
            {
                for (name, expr) in expanded {
                    let name = unique_name(&name, &names);
                    names.push(name.clone());
                    outputs.push(expr.alias(name));
                }
                continue;
            }
            let expr = self.aggregate_expr(&item.expr, &schema, &mut hidden)?;
            let name = unique_name(&item_name(item, names.len()), &names);
            names.push(name.clone());
            outputs.push(expr.alias(name));
        }
        let frame = at(pos, frame.aggregate(groups, hidden))?;
        at(pos, frame.select(outputs))
    }

    /// `percentiles(x, 50, 99)` and `arg_max(x, a, b)` / `arg_max(x, *)`
    /// give several columns.
    fn multi_column_aggregate(
        &self,
        function: &str,
        args: &[Expr],
        item: &Item,
        schema: &DFSchema,
        groups: &[String],
        hidden: &mut Vec<DfExpr>,
    ) -> Result<Option<Vec<(String, DfExpr)>>> {
        let pos = item.expr.pos;
        let hide = |expr: DfExpr, hidden: &mut Vec<DfExpr>| {
            let name = format!("__kql_aggregate_{}", hidden.len());
            hidden.push(expr.alias(name.clone()));
            column(&name)
        };
        match function {
            "percentiles" => {
                if args.len() < 2 {
                    return Err(KqlError::new(
                        pos,
                        "percentiles(x, p1, p2, …) takes a column and percentages",
                    ));
                }
                let value = self.expr(&args[0], schema)?;
                let base = argument_name(&args[0]);
                let mut columns = Vec::new();
                for p in &args[1..] {
                    let percent = percentage(p)?;
                    let expr = hide(self.percentile(value.clone(), percent), hidden);
                    let suffix = format!("{percent}").replace('.', "_");
                    columns.push((format!("percentile_{base}_{suffix}"), expr));
                }
                Ok(Some(columns))
            }
            "arg_max" | "arg_min" => {
                if args.len() < 2 {
                    return Err(KqlError::new(
                        pos,
                        format!(
                            "{function}(x, column, …) or {function}(x, *): the row where x is extreme"
                        ),
                    ));
                }
                let extreme = self.expr(&args[0], schema)?;
                let extreme_name = match &item.name {
                    Some(name) => name.text.clone(),
                    None => argument_name(&args[0]),
                };
                let which = if function == "arg_max" { "max" } else { "min" };
                let mut columns = vec![(
                    extreme_name.clone(),
                    hide(self.aggregate(which, vec![extreme.clone()], pos)?, hidden),
                )];
                let mut picked: Vec<String> = Vec::new();
                for arg in &args[1..] {
                    if arg.kind == ExprKind::Column("*".into()) {
                        picked.extend(
                            column_names(schema)
                                .into_iter()
                                .filter(|c| !groups.contains(c) && *c != extreme_name),
                        );
                    } else {
                        let ExprKind::Column(name) = &arg.kind else {
                            return Err(KqlError::new(
                                arg.pos,
                                format!("{function} returns columns: name them, or write *"),
                            ));
                        };
                        self.check_column(name, arg.pos, schema)?;
                        picked.push(name.clone());
                    }
                }
                for name in picked {
                    let value =
                        self.aggregate(function, vec![extreme.clone(), column(&name)], pos)?;
                    columns.push((name, hide(value, hidden)));
                }
                Ok(Some(columns))
            }
            _ => Ok(None),
        }
    }

    fn percentile(&self, value: DfExpr, percent: f64) -> DfExpr {
        approx_percentile_cont(value.sort(true, false), lit(percent / 100.0), None)
    }

    /// An expression over aggregates: each aggregate call becomes a hidden
    /// aggregate column, the rest stays an expression over them.
    fn aggregate_expr(
        &self,
        expr: &Expr,
        schema: &DFSchema,
        hidden: &mut Vec<DfExpr>,
    ) -> Result<DfExpr> {
        match &expr.kind {
            ExprKind::Call(function, args) if is_aggregate(function) => {
                let value = self.aggregate_call(function, args, expr.pos, schema)?;
                let name = format!("__kql_aggregate_{}", hidden.len());
                hidden.push(value.alias(name.clone()));
                Ok(column(&name))
            }
            ExprKind::Column(name) => Err(KqlError::new(
                expr.pos,
                format!(
                    "'{name}' is neither aggregated nor in 'by': aggregate it (e.g. take_any({name})) or add it to 'by'"
                ),
            )),
            _ => {
                // Rebuild the expression with its aggregate parts replaced.
                let mut parts = Vec::new();
                let rewritten = replace_aggregates(expr, &mut parts);
                let mut aggregated = Vec::new();
                for part in &parts {
                    aggregated.push(self.aggregate_expr(part, schema, hidden)?);
                }
                self.expr_with(&rewritten, schema, &aggregated)
            }
        }
    }

    fn aggregate_call(
        &self,
        function: &str,
        args: &[Expr],
        pos: Pos,
        schema: &DFSchema,
    ) -> Result<DfExpr> {
        let values = args
            .iter()
            .map(|a| self.expr(a, schema))
            .collect::<Result<Vec<_>>>()?;
        let arity = |n: usize| -> Result<()> {
            if values.len() == n {
                Ok(())
            } else {
                Err(KqlError::new(
                    pos,
                    format!("{function}() takes {n} argument(s), not {}", values.len()),
                ))
            }
        };
        match function {
            "count" => {
                arity(0)?;
                self.aggregate("count", vec![lit(1i64)], pos)
            }
            "countif" => {
                arity(1)?;
                self.aggregate("countif", values, pos)
            }
            "dcount" => {
                if values.is_empty() || values.len() > 2 {
                    return Err(KqlError::new(pos, "dcount(x[, accuracy]) takes a column"));
                }
                self.aggregate("approx_distinct", values[..1].to_vec(), pos)
            }
            "sumif" => {
                arity(2)?;
                let value = when(values[1].clone(), values[0].clone())
                    .end()
                    .map_err(|e| KqlError::new(pos, e.to_string()))?;
                self.aggregate("sum", vec![value], pos)
            }
            "percentile" => {
                arity(2)?;
                Ok(self.percentile(values[0].clone(), percentage(&args[1])?))
            }
            "percentiles" | "arg_max" | "arg_min" => Err(KqlError::new(
                pos,
                format!("{function}() gives several columns: use it on its own in summarize"),
            )),
            "stdev" => {
                arity(1)?;
                self.aggregate("stddev", values, pos)
            }
            "variance" => {
                arity(1)?;
                self.aggregate("var", values, pos)
            }
            "any" | "take_any" => {
                arity(1)?;
                self.aggregate("take_any", values, pos)
            }
            other => {
                arity(1)?;
                self.aggregate(other, values, pos)
            }
        }
    }

    fn aggregate(&self, name: &str, args: Vec<DfExpr>, pos: Pos) -> Result<DfExpr> {
        let function = at(pos, self.context.udaf(name))?;
        Ok(function.call(args))
    }

    fn function(&self, name: &str, args: Vec<DfExpr>, pos: Pos) -> Result<DfExpr> {
        let function = at(pos, self.context.udf(name))?;
        Ok(function.call(args))
    }

    fn check_column(&self, name: &str, pos: Pos, schema: &DFSchema) -> Result<()> {
        if schema.fields().iter().any(|f| f.name() == name) {
            return Ok(());
        }
        let names = column_names(schema);
        let hint = names
            .iter()
            .find(|c| c.eq_ignore_ascii_case(name))
            .map(|c| format!(" (names are case-sensitive: did you mean '{c}'?)"))
            .unwrap_or_default();
        Err(KqlError::new(
            pos,
            format!(
                "no column named '{name}'{hint}; the columns here are: {}",
                listed(&names)
            ),
        ))
    }

    fn expect_type(
        &self,
        expr: &Expr,
        planned: &DfExpr,
        schema: &DFSchema,
        what: &str,
        ok: impl Fn(&DataType) -> bool,
    ) -> Result<()> {
        let data_type = at(expr.pos, planned.get_type(schema))?;
        if ok(&data_type) || data_type == DataType::Null {
            Ok(())
        } else {
            Err(KqlError::new(
                expr.pos,
                format!("{what} must be a bool, not {data_type}"),
            ))
        }
    }

    fn expr(&self, expr: &Expr, schema: &DFSchema) -> Result<DfExpr> {
        self.expr_with(expr, schema, &[])
    }

    /// `aggregated` holds what each `ExprKind::Part` stands for.
    fn expr_with(&self, expr: &Expr, schema: &DFSchema, aggregated: &[DfExpr]) -> Result<DfExpr> {
        let pos = expr.pos;
        let recurse = |e: &Expr| self.expr_with(e, schema, aggregated);
        Ok(match &expr.kind {
            ExprKind::Part(index) => aggregated
                .get(*index)
                .cloned()
                .ok_or_else(|| KqlError::new(pos, "an aggregate used outside summarize"))?,
            ExprKind::Column(name) => {
                self.check_column(name, pos, schema)?;
                column(name)
            }
            ExprKind::Literal(literal) => literal_expr(literal),
            ExprKind::Negate(inner) => DfExpr::Negative(Box::new(recurse(inner)?)),
            ExprKind::Binary(left, op, right) => {
                let (l, r) = (recurse(left)?, recurse(right)?);
                self.binary(l, *op, r, right, pos)?
            }
            ExprKind::In {
                expr,
                list,
                negated,
                case_insensitive,
            } => {
                let mut value = recurse(expr)?;
                let mut items = list.iter().map(recurse).collect::<Result<Vec<_>>>()?;
                if *case_insensitive {
                    value = self.function("lower", vec![value], pos)?;
                    items = items
                        .into_iter()
                        .map(|i| self.function("lower", vec![i], pos))
                        .collect::<Result<_>>()?;
                }
                value.in_list(items, *negated)
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let (value, low, high) = (recurse(expr)?, recurse(low)?, recurse(high)?);
                if *negated {
                    value.not_between(low, high)
                } else {
                    value.between(low, high)
                }
            }
            ExprKind::Call(function, args) => {
                if is_aggregate(function) {
                    return Err(KqlError::new(
                        pos,
                        format!("{function}() is an aggregate: use it in summarize"),
                    ));
                }
                let values = args.iter().map(recurse).collect::<Result<Vec<_>>>()?;
                self.scalar_call(function, args, values, schema, pos)?
            }
        })
    }

    fn binary(&self, l: DfExpr, op: BinaryOp, r: DfExpr, right: &Expr, pos: Pos) -> Result<DfExpr> {
        let lower = |e: DfExpr| self.function("lower", vec![e], pos);
        Ok(match op {
            BinaryOp::Or => l.or(r),
            BinaryOp::And => l.and(r),
            BinaryOp::Eq => l.eq(r),
            BinaryOp::NotEq => l.not_eq(r),
            BinaryOp::Lt => l.lt(r),
            BinaryOp::LtEq => l.lt_eq(r),
            BinaryOp::Gt => l.gt(r),
            BinaryOp::GtEq => l.gt_eq(r),
            BinaryOp::EqIgnoreCase => lower(l)?.eq(lower(r)?),
            BinaryOp::NotEqIgnoreCase => lower(l)?.not_eq(lower(r)?),
            BinaryOp::Plus => binary_expr(l, DfOp::Plus, r),
            BinaryOp::Minus => binary_expr(l, DfOp::Minus, r),
            BinaryOp::Multiply => binary_expr(l, DfOp::Multiply, r),
            BinaryOp::Divide => binary_expr(l, DfOp::Divide, r),
            BinaryOp::Modulo => binary_expr(l, DfOp::Modulo, r),
            BinaryOp::MatchesRegex => self.function("regexp_like", vec![l, r], pos)?,
            BinaryOp::Text(text, negated) => {
                let literal = match &right.kind {
                    ExprKind::Literal(Literal::String(s)) => Some(s.as_str()),
                    _ => None,
                };
                let matched = self.text_match(l, text, r, literal, pos)?;
                if negated { matched.not() } else { matched }
            }
        })
    }

    /// String operators. Data Explorer's `has` matches whole terms (runs
    /// of letters and digits); the others match any substring; all but the
    /// `_cs` forms ignore case.
    fn text_match(
        &self,
        value: DfExpr,
        op: TextOp,
        pattern: DfExpr,
        literal: Option<&str>,
        pos: Pos,
    ) -> Result<DfExpr> {
        let like = |prefix: &str, suffix: &str, case_insensitive: bool| {
            literal.map(|text| {
                DfExpr::Like(Like::new(
                    false,
                    Box::new(value.clone()),
                    Box::new(lit(format!("{prefix}{}{suffix}", like_escape(text)))),
                    Some('\\'),
                    case_insensitive,
                ))
            })
        };
        let lower = |e: DfExpr| self.function("lower", vec![e], pos);
        let position = |v: DfExpr, p: DfExpr| -> Result<DfExpr> {
            Ok(self.function("strpos", vec![v, p], pos)?.gt(lit(0i64)))
        };
        Ok(match op {
            TextOp::Has | TextOp::HasCs => {
                let flags = if op == TextOp::Has { "(?i)" } else { "" };
                match literal {
                    Some(term) => self.function(
                        "regexp_like",
                        vec![
                            value,
                            lit(format!(
                                "{flags}(^|[^[:alnum:]]){}($|[^[:alnum:]])",
                                regex_escape(term)
                            )),
                        ],
                        pos,
                    )?,
                    None => {
                        return Err(KqlError::new(
                            pos,
                            "has takes a string literal on its right (a whole term to look for); \
                             to search for another column's text use contains",
                        ));
                    }
                }
            }
            TextOp::Contains => match like("%", "%", true) {
                Some(e) => e,
                None => position(lower(value)?, lower(pattern)?)?,
            },
            TextOp::ContainsCs => match like("%", "%", false) {
                Some(e) => e,
                None => position(value, pattern)?,
            },
            TextOp::StartsWith => match like("", "%", true) {
                Some(e) => e,
                None => self.function("starts_with", vec![lower(value)?, lower(pattern)?], pos)?,
            },
            TextOp::StartsWithCs => self.function("starts_with", vec![value, pattern], pos)?,
            TextOp::EndsWith => match like("%", "", true) {
                Some(e) => e,
                None => self.function("ends_with", vec![lower(value)?, lower(pattern)?], pos)?,
            },
            TextOp::EndsWithCs => self.function("ends_with", vec![value, pattern], pos)?,
        })
    }

    fn scalar_call(
        &self,
        function: &str,
        args: &[Expr],
        mut values: Vec<DfExpr>,
        schema: &DFSchema,
        pos: Pos,
    ) -> Result<DfExpr> {
        Ok(match function {
            "bin" | "floor" if values.len() == 2 => {
                let data_type = at(pos, values[0].get_type(schema))?;
                let size = values.pop().expect("two arguments");
                let value = values.pop().expect("two arguments");
                if matches!(
                    data_type,
                    DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                ) {
                    let ExprKind::Literal(Literal::Timespan(micros)) = args[1].kind else {
                        return Err(KqlError::new(
                            args[1].pos,
                            "bin() over a datetime takes a timespan such as 1m or 1h",
                        ));
                    };
                    if micros <= 0 {
                        return Err(KqlError::new(args[1].pos, "the bin size must be positive"));
                    }
                    let mut arguments = vec![micros_interval(micros), value];
                    let origin = bin_origin_micros(micros);
                    if let (DataType::Timestamp(_, zone), true) = (&data_type, origin != 0) {
                        arguments.push(cast(
                            lit(ScalarValue::TimestampMicrosecond(
                                Some(origin),
                                zone.clone(),
                            )),
                            data_type.clone(),
                        ));
                    }
                    self.function("date_bin", arguments, pos)?
                } else if matches!(
                    args[1].kind,
                    ExprKind::Literal(Literal::Long(n)) if n <= 0
                ) || matches!(
                    args[1].kind,
                    ExprKind::Literal(Literal::Real(n)) if n.is_nan() || n <= 0.0
                ) {
                    return Err(KqlError::new(args[1].pos, "the bin size must be positive"));
                } else if data_type.is_integer() {
                    // Toward negative infinity, as Data Explorer bins.
                    let remainder = binary_expr(
                        binary_expr(
                            binary_expr(value.clone(), DfOp::Modulo, size.clone()),
                            DfOp::Plus,
                            size.clone(),
                        ),
                        DfOp::Modulo,
                        size,
                    );
                    binary_expr(value, DfOp::Minus, remainder)
                } else {
                    let quotient = self.function(
                        "floor",
                        vec![binary_expr(value, DfOp::Divide, size.clone())],
                        pos,
                    )?;
                    binary_expr(quotient, DfOp::Multiply, size)
                }
            }
            "floor" => self.unary(function, "floor", values, pos)?,
            "ceiling" => self.unary(function, "ceil", values, pos)?,
            "now" => {
                check_arity(function, values.len(), 0..=1, pos)?;
                let now = self.function("now", vec![], pos)?;
                match values.pop() {
                    Some(offset) => binary_expr(now, DfOp::Plus, offset),
                    None => now,
                }
            }
            "ago" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                let now = self.function("now", vec![], pos)?;
                binary_expr(now, DfOp::Minus, values.pop().expect("one argument"))
            }
            "todatetime" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                try_cast(values.pop().expect("one argument"), timestamp_type())
            }
            "tostring" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                try_cast(values.pop().expect("one argument"), DataType::Utf8)
            }
            "toint" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                try_cast(values.pop().expect("one argument"), DataType::Int32)
            }
            "tolong" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                try_cast(values.pop().expect("one argument"), DataType::Int64)
            }
            "todouble" | "toreal" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                try_cast(values.pop().expect("one argument"), DataType::Float64)
            }
            "tobool" | "toboolean" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                try_cast(values.pop().expect("one argument"), DataType::Boolean)
            }
            "tolower" => self.unary(function, "lower", values, pos)?,
            "toupper" => self.unary(function, "upper", values, pos)?,
            "strlen" => cast(
                self.unary(function, "character_length", values, pos)?,
                DataType::Int64,
            ),
            "strcat" => {
                if values.is_empty() {
                    return Err(KqlError::new(pos, "strcat() takes at least one argument"));
                }
                self.function("concat", values, pos)?
            }
            "substring" => {
                check_arity(function, values.len(), 2..=3, pos)?;
                // Data Explorer counts from 0, SQL from 1.
                values[1] = binary_expr(values[1].clone(), DfOp::Plus, lit(1i64));
                self.function("substr", values, pos)?
            }
            "replace_string" => {
                check_arity(function, values.len(), 3..=3, pos)?;
                self.function("replace", values, pos)?
            }
            "trim" | "trim_start" | "trim_end" => {
                return Err(KqlError::new(
                    pos,
                    format!(
                        "{function}() takes a regular expression, which is not supported; use replace_string()"
                    ),
                ));
            }
            "iff" | "iif" => {
                check_arity(function, values.len(), 3..=3, pos)?;
                let otherwise = values.pop().expect("three arguments");
                let then = values.pop().expect("three arguments");
                let condition = values.pop().expect("three arguments");
                at(pos, when(condition, then).otherwise(otherwise))?
            }
            "case" => {
                if values.len() < 3 || values.len().is_multiple_of(2) {
                    return Err(KqlError::new(
                        pos,
                        "case(condition1, value1, condition2, value2, …, else) takes an odd number of arguments",
                    ));
                }
                let otherwise = values.pop().expect("an else value");
                let mut pairs = values.chunks(2);
                let first = pairs.next().expect("one pair");
                let mut builder = when(first[0].clone(), first[1].clone());
                for pair in pairs {
                    builder = builder.when(pair[0].clone(), pair[1].clone());
                }
                at(pos, builder.otherwise(otherwise))?
            }
            "isnull" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                values.pop().expect("one argument").is_null()
            }
            "isnotnull" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                values.pop().expect("one argument").is_not_null()
            }
            "isempty" | "isnotempty" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                let value = values.pop().expect("one argument");
                let data_type = at(pos, value.get_type(schema))?;
                let empty = if matches!(
                    data_type,
                    DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
                ) {
                    value.clone().is_null().or(value.eq(lit("")))
                } else {
                    value.is_null()
                };
                if function == "isempty" {
                    empty
                } else {
                    empty.not()
                }
            }
            "not" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                values.pop().expect("one argument").not()
            }
            "coalesce" => self.function("coalesce", values, pos)?,
            "abs" | "sqrt" | "exp" | "log10" | "log2" => {
                self.unary(function, function, values, pos)?
            }
            "log" => self.unary(function, "ln", values, pos)?,
            "pow" => {
                check_arity(function, values.len(), 2..=2, pos)?;
                self.function("power", values, pos)?
            }
            "round" => {
                check_arity(function, values.len(), 1..=2, pos)?;
                self.function("round", values, pos)?
            }
            "startofday" | "startofmonth" | "startofyear" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                let unit = function.trim_start_matches("startof");
                let value = values.pop().expect("one argument");
                self.function("date_trunc", vec![lit(unit), value], pos)?
            }
            "hourofday" | "dayofmonth" | "getmonth" | "getyear" => {
                check_arity(function, values.len(), 1..=1, pos)?;
                let part = match function {
                    "hourofday" => "hour",
                    "dayofmonth" => "day",
                    "getmonth" => "month",
                    _ => "year",
                };
                let value = values.pop().expect("one argument");
                cast(
                    self.function("date_part", vec![lit(part), value], pos)?,
                    DataType::Int64,
                )
            }
            other => {
                return Err(KqlError::new(
                    pos,
                    format!(
                        "'{other}' is not a function this store knows; see docs/store.md for the KQL functions"
                    ),
                ));
            }
        })
    }

    fn unary(&self, function: &str, name: &str, values: Vec<DfExpr>, pos: Pos) -> Result<DfExpr> {
        check_arity(function, values.len(), 1..=1, pos)?;
        self.function(name, values, pos)
    }

    fn join(
        &self,
        left: DataFrame,
        right: DataFrame,
        kind: JoinKind,
        on: &[(Name, Name)],
        pos: Pos,
    ) -> Result<DataFrame> {
        for (l, r) in on {
            self.check_column(&l.text, l.pos, left.schema())?;
            self.check_column(&r.text, r.pos, right.schema())?;
        }
        let left_names = column_names(left.schema());
        let right_names = column_names(right.schema());
        // `innerunique`: one row per key from the left side, then inner.
        let left = if kind == JoinKind::InnerUnique {
            let keys: Vec<DfExpr> = on.iter().map(|(l, _)| column(&l.text)).collect();
            let row_number = at(pos, self.context.udwf("row_number"))?;
            let numbered = at(
                pos,
                row_number
                    .call(vec![])
                    .partition_by(keys)
                    .build()
                    .map(|e| e.alias("__kql_row")),
            )?;
            let left = at(pos, left.window(vec![numbered]))?;
            let left = at(pos, left.filter(column("__kql_row").eq(lit(1u64))))?;
            at(
                pos,
                left.select(left_names.iter().map(|c| column(c)).collect::<Vec<_>>()),
            )?
        } else {
            left
        };
        let left = at(pos, left.alias("__kql_left"))?;
        let right = at(pos, right.alias("__kql_right"))?;
        let join_type = match kind {
            JoinKind::InnerUnique | JoinKind::Inner => JoinType::Inner,
            JoinKind::LeftOuter => JoinType::Left,
            JoinKind::RightOuter => JoinType::Right,
            JoinKind::FullOuter => JoinType::Full,
            JoinKind::LeftSemi => JoinType::LeftSemi,
            JoinKind::LeftAnti => JoinType::LeftAnti,
            JoinKind::RightSemi => JoinType::RightSemi,
            JoinKind::RightAnti => JoinType::RightAnti,
        };
        let side = |side: &str, name: &str| DfExpr::Column(Column::new(Some(side), name));
        let conditions: Vec<DfExpr> = on
            .iter()
            .map(|(l, r)| side("__kql_left", &l.text).eq(side("__kql_right", &r.text)))
            .collect();
        let joined = at(pos, left.join_on(right, join_type, conditions))?;
        // Columns of both sides; a right column whose name the left has
        // gets a suffix (`Key1`), as in Data Explorer.
        let mut outputs = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let (keep_left, keep_right) = match kind {
            JoinKind::LeftSemi | JoinKind::LeftAnti => (true, false),
            JoinKind::RightSemi | JoinKind::RightAnti => (false, true),
            _ => (true, true),
        };
        if keep_left {
            for name in &left_names {
                names.push(name.clone());
                outputs.push(side("__kql_left", name).alias(name.clone()));
            }
        }
        if keep_right {
            for name in &right_names {
                let output = unique_name(name, &names);
                names.push(output.clone());
                outputs.push(side("__kql_right", name).alias(output));
            }
        }
        at(pos, joined.select(outputs))
    }
}

fn check_arity(
    function: &str,
    given: usize,
    range: std::ops::RangeInclusive<usize>,
    pos: Pos,
) -> Result<()> {
    if range.contains(&given) {
        return Ok(());
    }
    let wanted = if range.start() == range.end() {
        format!("{} argument(s)", range.start())
    } else {
        format!("{} to {} arguments", range.start(), range.end())
    };
    Err(KqlError::new(
        pos,
        format!("{function}() takes {wanted}, not {given}"),
    ))
}

/// Replaces each aggregate call in `expr` by its `ExprKind::Part` and
/// collects the calls.
fn replace_aggregates(expr: &Expr, parts: &mut Vec<Expr>) -> Expr {
    let kind = match &expr.kind {
        ExprKind::Call(function, _) if is_aggregate(function) => {
            parts.push(expr.clone());
            ExprKind::Part(parts.len() - 1)
        }
        ExprKind::Negate(inner) => ExprKind::Negate(Box::new(replace_aggregates(inner, parts))),
        ExprKind::Binary(l, op, r) => ExprKind::Binary(
            Box::new(replace_aggregates(l, parts)),
            *op,
            Box::new(replace_aggregates(r, parts)),
        ),
        ExprKind::Call(function, args) => ExprKind::Call(
            function.clone(),
            args.iter().map(|a| replace_aggregates(a, parts)).collect(),
        ),
        ExprKind::In {
            expr: inner,
            list,
            negated,
            case_insensitive,
        } => ExprKind::In {
            expr: Box::new(replace_aggregates(inner, parts)),
            list: list.iter().map(|a| replace_aggregates(a, parts)).collect(),
            negated: *negated,
            case_insensitive: *case_insensitive,
        },
        ExprKind::Between {
            expr: inner,
            low,
            high,
            negated,
        } => ExprKind::Between {
            expr: Box::new(replace_aggregates(inner, parts)),
            low: Box::new(replace_aggregates(low, parts)),
            high: Box::new(replace_aggregates(high, parts)),
            negated: *negated,
        },
        other => other.clone(),
    };
    Expr {
        kind,
        pos: expr.pos,
    }
}

fn percentage(expr: &Expr) -> Result<f64> {
    let value = match expr.kind {
        ExprKind::Literal(Literal::Long(n)) => n as f64,
        ExprKind::Literal(Literal::Real(n)) => n,
        _ => -1.0,
    };
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(KqlError::new(
            expr.pos,
            "a percentile is a number from 0 to 100",
        ))
    }
}

/// The name Data Explorer gives an unnamed column.
fn item_name(item: &Item, index: usize) -> String {
    if let Some(name) = &item.name {
        return name.text.clone();
    }
    match &item.expr.kind {
        ExprKind::Column(name) => name.clone(),
        ExprKind::Call(function, args) => match (function.as_str(), args.as_slice()) {
            ("bin" | "floor", [first, _]) if matches!(first.kind, ExprKind::Column(_)) => {
                argument_name(first)
            }
            ("count", []) => "count_".to_string(),
            ("countif", _) => "countif_".to_string(),
            ("percentile", [value, p]) => format!(
                "percentile_{}_{}",
                argument_name(value),
                percentage(p).map_or(String::new(), |p| p.to_string().replace('.', "_"))
            ),
            (function, [value, ..]) if is_aggregate(function) => {
                let function = if function == "any" {
                    "take_any"
                } else {
                    function
                };
                format!("{function}_{}", argument_name(value))
            }
            (function, []) if is_aggregate(function) => format!("{function}_"),
            _ => format!("Column{}", index + 1),
        },
        _ => format!("Column{}", index + 1),
    }
}

fn argument_name(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Column(name) => name.clone(),
        _ => String::new(),
    }
}

fn literal_expr(literal: &Literal) -> DfExpr {
    match literal {
        Literal::Long(n) => lit(*n),
        Literal::Real(n) => lit(*n),
        Literal::String(s) => lit(s.clone()),
        Literal::Bool(b) => lit(*b),
        Literal::Timespan(micros) => micros_interval(*micros),
        Literal::Datetime(micros) => lit(ScalarValue::TimestampMicrosecond(
            *micros,
            Some(Arc::from("UTC")),
        )),
    }
}

fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    #[test]
    fn datetime_literals_match_the_store_unit() {
        let DfExpr::Literal(value, _) = literal_expr(&Literal::Datetime(Some(1))) else {
            panic!()
        };
        assert_eq!(value.data_type(), timestamp_type());
        assert!(matches!(
            timestamp_type(),
            DataType::Timestamp(TimeUnit::Microsecond, _)
        ));
    }

    #[test]
    fn patterns_are_escaped() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
        assert_eq!(regex_escape("a.b(c)"), "a\\.b\\(c\\)");
        assert_eq!(unique_name("Key", &["Key".into(), "Key1".into()]), "Key2");
    }
}
