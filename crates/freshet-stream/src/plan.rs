//! Turns a parsed job into a plan: the inputs it reads (with their event
//! time), the outputs it writes, and one step per `WITH` step or
//! `SELECT … INTO`, each a source (or a join of two), a filter, and either
//! a projection or a windowed aggregation. Names are resolved here, so the
//! operators never look anything up by name.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use sqlparser::ast::{
    self, BinaryOperator, CastKind, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    JoinConstraint, JoinOperator, ObjectNamePart, SelectItem, SetExpr, Spanned, TableFactor,
    UnaryOperator, WindowType,
};
use sqlparser::tokenizer::Location;

use crate::event::FieldSelection;
use crate::expr::{BinaryOp, DateUnit, Expr, Function, Type};
use crate::parse::{self, ParsedJob, QueryError, SourceClauses};
use crate::time;
use crate::value::Value;

/// The longest window, join span or tolerance a job may ask for.
pub const WINDOW_MICROS_MAX: i64 = 7 * 86_400 * time::MICROS_PER_SECOND;

#[derive(Debug, Clone)]
pub struct JobPlan {
    pub inputs: Vec<InputPlan>,
    pub references: Vec<String>,
    pub steps: Vec<StepPlan>,
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct InputPlan {
    pub name: String,
    /// `TIMESTAMP BY`; without it, events are timed by their arrival.
    pub timestamp_by: Option<Expr>,
    /// `TIMESTAMP BY … OVER fields`: the fields whose values name an
    /// event's substream, a timeline of its own. Empty: one timeline.
    pub over: Vec<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamRef {
    Input(usize),
    Step(usize),
    Reference(usize),
}

#[derive(Debug, Clone)]
pub struct StepPlan {
    pub name: String,
    /// The output (index into `JobPlan::outputs`) a `SELECT … INTO` writes.
    pub into: Option<usize>,
    pub sources: Vec<SourcePlan>,
    pub join: Option<JoinPlan>,
    pub filter: Option<Expr>,
    pub body: StepBody,
}

#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub stream: StreamRef,
    pub alias: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    LeftOuter,
}

#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub kind: JoinKind,
    pub on: Expr,
    /// Equalities `left = right` of the ON condition, used as a hash key.
    pub equi_keys: Vec<(Expr, Expr)>,
    /// For a join of two streams: how far (µs) a right event may be
    /// before or after a left one and still match (from DATEDIFF).
    pub span: Option<JoinSpan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinSpan {
    pub right_before_left_micros: i64,
    pub right_after_left_micros: i64,
}

#[derive(Debug, Clone)]
pub enum StepBody {
    Project(Vec<Projection>),
    Aggregate(AggregatePlan),
}

#[derive(Debug, Clone)]
pub enum Projection {
    Column {
        name: Arc<str>,
        expr: Expr,
    },
    /// `*` (all sources) or `alias.*`.
    All(Option<usize>),
}

#[derive(Debug, Clone)]
pub struct AggregatePlan {
    pub keys: Vec<Expr>,
    pub window: WindowPlan,
    pub aggregates: Vec<AggregateCall>,
    pub outputs: Vec<(Arc<str>, Expr)>,
    pub having: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowPlan {
    Hopping {
        size: i64,
        hop: i64,
        offset: i64,
    },
    Sliding {
        size: i64,
    },
    Session {
        timeout: i64,
        max_duration: i64,
        partition: Vec<Expr>,
    },
    Snapshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Stdev,
    StdevP,
    Var,
    VarP,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregateCall {
    pub function: AggregateFunction,
    /// `None` for `COUNT(*)`.
    pub arg: Option<Expr>,
    pub distinct: bool,
}

impl AggregateFunction {
    fn by_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "COUNT" => Self::Count,
            "SUM" => Self::Sum,
            "AVG" => Self::Avg,
            "MIN" => Self::Min,
            "MAX" => Self::Max,
            "STDEV" => Self::Stdev,
            "STDEVP" => Self::StdevP,
            "VAR" => Self::Var,
            "VARP" => Self::VarP,
            _ => return None,
        })
    }
}

impl JobPlan {
    /// Plans `text`; `references` names the job's reference-data inputs.
    pub fn new(text: &str, references: &[String]) -> Result<JobPlan, QueryError> {
        let parsed = parse::parse_job(text)?;
        let mut planner = Planner {
            parsed: &parsed,
            plan: JobPlan {
                inputs: Vec::new(),
                references: references.to_vec(),
                steps: Vec::new(),
                outputs: Vec::new(),
            },
            input_timestamps: Vec::new(),
            input_over: Vec::new(),
        };
        for statement in &parsed.statements {
            if let Some(with) = &statement.with {
                for cte in &with.cte_tables {
                    let name = cte.alias.name.value.clone();
                    if planner.stream_by_name(&name).is_some() {
                        return Err(QueryError::at(
                            cte.alias.name.span.start,
                            format!("'{name}' is already the name of an input or step"),
                        ));
                    }
                    planner.plan_query(&cte.query, Some(name))?;
                }
            }
            planner.plan_query(statement, None)?;
        }
        if planner.plan.outputs.is_empty() {
            return Err(QueryError::whole(
                "the job writes nothing: a job needs at least one SELECT … INTO output",
            ));
        }
        planner.check_substreams()?;
        Ok(planner.plan)
    }

    pub fn input(&self, name: &str) -> Option<usize> {
        self.inputs
            .iter()
            .position(|input| input.name.eq_ignore_ascii_case(name))
    }

    /// The fields of `input`'s events the job reads (down into nested
    /// records), or `None` when it needs them all (`SELECT *`, a whole
    /// record).
    pub fn input_fields(&self, input: usize) -> Option<FieldSelection> {
        let mut fields = FieldSelection::default();
        let mut all = false;
        let note = |expr: &Expr, source: usize, fields: &mut FieldSelection, all: &mut bool| {
            expr.visit(&mut |inner| match inner {
                Expr::Field { source: read, path } if *read == source => fields.add(path),
                Expr::SourceRecord(read) if *read == source => *all = true,
                _ => {}
            });
        };
        for expr in self.inputs[input]
            .timestamp_by
            .iter()
            .chain(&self.inputs[input].over)
        {
            note(expr, 0, &mut fields, &mut all);
        }
        for step in &self.steps {
            for (source, plan) in step.sources.iter().enumerate() {
                if plan.stream != StreamRef::Input(input) {
                    continue;
                }
                let mut exprs: Vec<&Expr> = step.filter.iter().collect();
                if let Some(join) = &step.join {
                    exprs.push(&join.on);
                    exprs.extend(
                        join.equi_keys
                            .iter()
                            .flat_map(|(left, right)| [left, right]),
                    );
                }
                match &step.body {
                    StepBody::Project(projections) => {
                        for projection in projections {
                            match projection {
                                Projection::Column { expr, .. } => exprs.push(expr),
                                Projection::All(None) => all = true,
                                Projection::All(Some(only)) if *only == source => all = true,
                                Projection::All(Some(_)) => {}
                            }
                        }
                    }
                    StepBody::Aggregate(aggregate) => {
                        exprs.extend(&aggregate.keys);
                        exprs.extend(
                            aggregate
                                .aggregates
                                .iter()
                                .filter_map(|call| call.arg.as_ref()),
                        );
                        if let WindowPlan::Session { partition, .. } = &aggregate.window {
                            exprs.extend(partition);
                        }
                    }
                }
                for expr in exprs {
                    note(expr, source, &mut fields, &mut all);
                }
            }
        }
        if all { None } else { Some(fields) }
    }

    pub fn output(&self, name: &str) -> Option<usize> {
        self.outputs
            .iter()
            .position(|output| output.eq_ignore_ascii_case(name))
    }
}

struct Planner<'a> {
    parsed: &'a ParsedJob,
    plan: JobPlan,
    /// Where each input's TIMESTAMP BY was first seen (for conflicts).
    input_timestamps: Vec<Option<Location>>,
    /// Where each input's OVER list starts, when it has one.
    input_over: Vec<Option<Location>>,
}

/// One shared copy of each field name queries use, across every plan:
/// the parser hands these very copies to the records it reads, and
/// [`Record::get`](crate::value::Record::get) finds a field by comparing
/// pointers before any text. Names come from query text, so the set
/// stays small.
fn shared_name(text: &str) -> Arc<str> {
    static NAMES: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Mutex::default);
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match names.get(text) {
        Some(name) => name.clone(),
        None => {
            let name: Arc<str> = Arc::from(text);
            names.insert(name.clone());
            name
        }
    }
}

fn error_at<T: Spanned + ?Sized>(node: &T, message: impl Into<String>) -> QueryError {
    let start = node.span().start;
    if start.line == 0 {
        QueryError::whole(message)
    } else {
        QueryError::at(start, message)
    }
}

fn object_name(name: &ast::ObjectName) -> Option<&ast::Ident> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident),
        _ => None,
    }
}

fn name_parts(name: &ast::ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect()
}

impl Planner<'_> {
    fn stream_by_name(&self, name: &str) -> Option<StreamRef> {
        if let Some(step) = self
            .plan
            .steps
            .iter()
            .position(|step| step.into.is_none() && step.name.eq_ignore_ascii_case(name))
        {
            return Some(StreamRef::Step(step));
        }
        if let Some(reference) = self
            .plan
            .references
            .iter()
            .position(|reference| reference.eq_ignore_ascii_case(name))
        {
            return Some(StreamRef::Reference(reference));
        }
        self.plan.input(name).map(StreamRef::Input)
    }

    fn plan_query(
        &mut self,
        query: &ast::Query,
        step_name: Option<String>,
    ) -> Result<(), QueryError> {
        if let Some(order_by) = &query.order_by {
            return Err(error_at(
                order_by,
                "ORDER BY has no meaning over an unbounded stream",
            ));
        }
        if query.limit_clause.is_some() {
            return Err(error_at(
                query,
                "LIMIT has no meaning over an unbounded stream",
            ));
        }
        let select = match &*query.body {
            SetExpr::Select(select) => select,
            other => {
                return Err(error_at(
                    other,
                    "only SELECT is supported here (UNION: write one SELECT … INTO per input)",
                ));
            }
        };
        if select.distinct.is_some() || select.top.is_some() {
            return Err(error_at(
                &**select,
                "DISTINCT and TOP are not supported in a streaming step",
            ));
        }
        let into = match (&select.into, &step_name) {
            (Some(into), None) => {
                let parts = name_parts(&into.name);
                let output = parts.join(".");
                let index = match self.plan.output(&output) {
                    Some(index) => index,
                    None => {
                        self.plan.outputs.push(output);
                        self.plan.outputs.len() - 1
                    }
                };
                Some(index)
            }
            (Some(into), Some(_)) => {
                return Err(error_at(
                    &into.name,
                    "a WITH step cannot write INTO an output; select from the step instead",
                ));
            }
            (None, None) => {
                return Err(error_at(
                    &**select,
                    "this SELECT has no INTO: name the output it writes, e.g. SELECT … INTO [alerts] FROM …",
                ));
            }
            (None, Some(_)) => None,
        };
        let name = match (&step_name, into) {
            (Some(name), _) => name.clone(),
            (None, Some(output)) => {
                format!("{}#{}", self.plan.outputs[output], self.plan.steps.len())
            }
            (None, None) => unreachable!("checked above"),
        };

        // FROM and JOIN.
        let [from] = select.from.as_slice() else {
            return Err(error_at(
                &**select,
                "a step reads exactly one FROM source (join others with JOIN)",
            ));
        };
        let mut sources = vec![self.plan_source(&from.relation)?];
        let mut join = None;
        match from.joins.as_slice() {
            [] => {}
            [joined] => {
                sources.push(self.plan_source(&joined.relation)?);
                join = Some(joined);
            }
            [_, extra, ..] => {
                return Err(error_at(
                    &extra.relation,
                    "one JOIN per step is supported; join a third source in a further WITH step",
                ));
            }
        }
        let scope = Scope { sources: &sources };
        if let StreamRef::Reference(_) = sources[0].stream {
            return Err(error_at(
                &from.relation,
                "reference data cannot be the first source; read the stream first and JOIN the reference data",
            ));
        }
        let join = match join {
            None => None,
            Some(joined) => Some(self.plan_join(joined, &scope)?),
        };

        let filter = match &select.selection {
            Some(selection) => Some(scope.row(selection)?),
            None => None,
        };

        let group_by = match &select.group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs.as_slice(),
            other => {
                return Err(error_at(
                    other,
                    "GROUP BY ALL and grouping modifiers are not supported",
                ));
            }
        };
        let has_aggregate = select.projection.iter().any(|item| match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                contains_aggregate(expr)
            }
            _ => false,
        }) || select.having.as_ref().is_some_and(contains_aggregate);

        let body = if group_by.is_empty() && !has_aggregate {
            if let Some(having) = &select.having {
                return Err(error_at(
                    having,
                    "HAVING needs GROUP BY with a window; use WHERE to filter events",
                ));
            }
            StepBody::Project(self.plan_projection(select, &scope)?)
        } else {
            StepBody::Aggregate(self.plan_aggregate(select, group_by, &scope)?)
        };

        self.plan.steps.push(StepPlan {
            name,
            into,
            sources,
            join,
            filter,
            body,
        });
        Ok(())
    }

    fn plan_source(&mut self, factor: &TableFactor) -> Result<SourcePlan, QueryError> {
        let TableFactor::Table {
            name, alias, args, ..
        } = factor
        else {
            return Err(error_at(
                factor,
                "a source must be an input or step name (sub-queries go in WITH steps)",
            ));
        };
        if args.is_some() {
            return Err(error_at(
                factor,
                "a source must be an input or step name, not a function",
            ));
        }
        let Some(ident) = object_name(name) else {
            return Err(error_at(
                name,
                "a source name has one part, e.g. [auth-events]",
            ));
        };
        let end = match alias {
            Some(alias) => alias.name.span.end,
            None => ident.span.end,
        };
        let clauses = self
            .parsed
            .clauses
            .get(&(end.line, end.column))
            .cloned()
            .unwrap_or_default();
        let alias_name = alias
            .as_ref()
            .map(|alias| alias.name.value.clone())
            .unwrap_or_else(|| ident.value.clone());
        let stream = match self.stream_by_name(&ident.value) {
            Some(StreamRef::Input(input)) => {
                self.check_timestamp(input, &clauses, &alias_name, &ident.value)?;
                StreamRef::Input(input)
            }
            Some(other) => {
                if clauses.timestamp_by.is_some() {
                    return Err(QueryError::at(
                        clauses.timestamp_by_at.unwrap_or(ident.span.start),
                        "TIMESTAMP BY applies to inputs only; a step's events keep the time they were given",
                    ));
                }
                other
            }
            None => {
                self.plan.inputs.push(InputPlan {
                    name: ident.value.clone(),
                    timestamp_by: None,
                    over: Vec::new(),
                });
                self.input_timestamps.push(None);
                self.input_over.push(None);
                let input = self.plan.inputs.len() - 1;
                self.check_timestamp(input, &clauses, &alias_name, &ident.value)?;
                StreamRef::Input(input)
            }
        };
        Ok(SourcePlan {
            stream,
            alias: alias_name,
        })
    }

    /// Records an input's TIMESTAMP BY; every read of one input must use
    /// the same event time, since the input has one watermark.
    fn check_timestamp(
        &mut self,
        input: usize,
        clauses: &SourceClauses,
        alias: &str,
        name: &str,
    ) -> Result<(), QueryError> {
        let sources = [SourcePlan {
            stream: StreamRef::Input(input),
            alias: alias.to_string(),
        }];
        let compiled = match &clauses.timestamp_by {
            Some(expr) => Some(Scope { sources: &sources }.row(expr)?),
            None => None,
        };
        let seen = self.input_timestamps[input].is_some()
            || self.plan.steps.iter().any(|step| {
                step.sources
                    .iter()
                    .any(|source| source.stream == StreamRef::Input(input))
            });
        if seen && self.plan.inputs[input].timestamp_by != compiled {
            let at = clauses
                .timestamp_by_at
                .unwrap_or(Location { line: 0, column: 0 });
            return Err(QueryError::at(
                at,
                format!(
                    "input '{name}' is read with a different TIMESTAMP BY elsewhere; an input has one event time, so use the same TIMESTAMP BY everywhere it is read"
                ),
            ));
        }
        let mut over = Vec::with_capacity(clauses.over.len());
        for key in &clauses.over {
            let field = Scope { sources: &sources }.row(key)?;
            if !matches!(field, Expr::Field { .. }) {
                return Err(error_at(
                    key,
                    "OVER takes fields of the event (e.g. OVER DeviceId), whose values name its substream",
                ));
            }
            over.push(field);
        }
        if seen && self.plan.inputs[input].over != over {
            let at = clauses.over.first().map_or(
                clauses
                    .timestamp_by_at
                    .unwrap_or(Location { line: 0, column: 0 }),
                |key| key.span().start,
            );
            return Err(QueryError::at(
                at,
                format!(
                    "input '{name}' is read with a different OVER elsewhere; an input has one set of substreams, so use the same OVER everywhere it is read"
                ),
            ));
        }
        self.plan.inputs[input].timestamp_by = compiled;
        self.plan.inputs[input].over = over;
        if clauses.timestamp_by_at.is_some() {
            self.input_timestamps[input] = clauses.timestamp_by_at;
        }
        if let Some(key) = clauses.over.first() {
            self.input_over[input] = Some(key.span().start);
        }
        Ok(())
    }

    /// Stream Analytics' rules for substreams: OVER on every input or on
    /// none, the same number of fields on each (an event's substream is
    /// the tuple of their values), and every step that groups or joins an
    /// input's events keeps its OVER fields among its keys, so that each
    /// group or match lies within one substream.
    fn check_substreams(&self) -> Result<(), QueryError> {
        let Some((first, at)) = self
            .input_over
            .iter()
            .enumerate()
            .find_map(|(input, at)| at.map(|at| (input, at)))
        else {
            return Ok(());
        };
        let inputs = &self.plan.inputs;
        if let Some(bare) = inputs.iter().find(|input| input.over.is_empty()) {
            return Err(QueryError::at(
                at,
                format!(
                    "TIMESTAMP BY … OVER must be used on every input of the job or on none; input '{}' has no OVER",
                    bare.name
                ),
            ));
        }
        if let Some(other) = inputs
            .iter()
            .find(|input| input.over.len() != inputs[first].over.len())
        {
            return Err(QueryError::at(
                at,
                format!(
                    "inputs '{}' and '{}' name their substreams with different numbers of OVER fields; a substream is the tuple of their values",
                    inputs[first].name, other.name
                ),
            ));
        }
        let same_field = |expr: &Expr, source: usize, path: &[Arc<str>]| match expr {
            Expr::Field {
                source: found,
                path: found_path,
            } => {
                *found == source
                    && found_path.len() == path.len()
                    && found_path
                        .iter()
                        .zip(path)
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
            }
            _ => false,
        };
        for step in &self.plan.steps {
            for (side, source) in step.sources.iter().enumerate() {
                let StreamRef::Input(input) = source.stream else {
                    continue;
                };
                let over_at = self.input_over[input].unwrap_or(at);
                for key in &inputs[input].over {
                    let Expr::Field { path, .. } = key else {
                        continue;
                    };
                    let shown = path.join(".");
                    if let StepBody::Aggregate(aggregate) = &step.body
                        && !aggregate.keys.iter().any(|k| same_field(k, side, path))
                    {
                        return Err(QueryError::at(
                            over_at,
                            format!(
                                "events of '{}' form substreams OVER {shown}, so step '{}' must GROUP BY {shown} too: each group has to lie within one substream",
                                inputs[input].name, step.name
                            ),
                        ));
                    }
                    if let Some(join) = &step.join
                        && join.span.is_some()
                        && !join.equi_keys.iter().any(|(left, right)| {
                            same_field(if side == 0 { left } else { right }, side, path)
                        })
                    {
                        return Err(QueryError::at(
                            over_at,
                            format!(
                                "events of '{}' form substreams OVER {shown}, so the join in step '{}' must match on {shown} too: each match has to lie within one substream",
                                inputs[input].name, step.name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn plan_join(&self, joined: &ast::Join, scope: &Scope) -> Result<JoinPlan, QueryError> {
        let (kind, constraint) = match &joined.join_operator {
            JoinOperator::Join(constraint) | JoinOperator::Inner(constraint) => {
                (JoinKind::Inner, constraint)
            }
            JoinOperator::Left(constraint) | JoinOperator::LeftOuter(constraint) => {
                (JoinKind::LeftOuter, constraint)
            }
            _ => {
                return Err(error_at(
                    &joined.relation,
                    "only JOIN and LEFT OUTER JOIN are supported",
                ));
            }
        };
        let JoinConstraint::On(on) = constraint else {
            return Err(error_at(
                &joined.relation,
                "a JOIN needs ON with the keys to match",
            ));
        };
        let compiled = scope.row(on)?;
        let mut equi_keys = Vec::new();
        let mut span = None;
        for conjunct in conjuncts(on) {
            if let ast::Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } = conjunct
            {
                let (left, right) = (scope.row(left)?, scope.row(right)?);
                let reads = |expr: &Expr| (expr.reads_source(0), expr.reads_source(1));
                match (reads(&left), reads(&right)) {
                    ((true, false), (false, true)) => equi_keys.push((left, right)),
                    ((false, true), (true, false)) => equi_keys.push((right, left)),
                    _ => {}
                }
            }
            if let Some(found) = datediff_span(conjunct, scope)? {
                span = Some(found);
            }
        }
        let right_is_stream = !matches!(scope.sources[1].stream, StreamRef::Reference(_));
        if right_is_stream && span.is_none() {
            return Err(error_at(
                on,
                "a JOIN of two streams needs a time bound in ON, e.g. AND DATEDIFF(second, a, b) BETWEEN 0 AND 10, so that events wait a bounded time for their match",
            ));
        }
        if !right_is_stream && span.is_some() {
            return Err(error_at(
                on,
                "a JOIN with reference data takes no DATEDIFF bound; reference data has no time",
            ));
        }
        Ok(JoinPlan {
            kind,
            on: compiled,
            equi_keys,
            span: if right_is_stream { span } else { None },
        })
    }

    fn plan_projection(
        &self,
        select: &ast::Select,
        scope: &Scope,
    ) -> Result<Vec<Projection>, QueryError> {
        let mut projections = Vec::new();
        for item in &select.projection {
            projections.push(match item {
                SelectItem::UnnamedExpr(expr) => Projection::Column {
                    name: shared_name(&column_name(expr)),
                    expr: scope.row(expr)?,
                },
                SelectItem::ExprWithAlias { expr, alias } => Projection::Column {
                    name: shared_name(&alias.value),
                    expr: scope.row(expr)?,
                },
                SelectItem::Wildcard(_) => Projection::All(None),
                SelectItem::QualifiedWildcard(kind, _) => {
                    let ast::SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                        return Err(error_at(item, "write alias.* with a source name"));
                    };
                    let source = object_name(name)
                        .and_then(|ident| scope.source(&ident.value))
                        .ok_or_else(|| {
                            error_at(name, format!("'{name}' is not a source of this step"))
                        })?;
                    Projection::All(Some(source))
                }
                other => return Err(error_at(other, "this kind of select item is not supported")),
            });
        }
        Ok(projections)
    }

    fn plan_aggregate(
        &self,
        select: &ast::Select,
        group_by: &[ast::Expr],
        scope: &Scope,
    ) -> Result<AggregatePlan, QueryError> {
        let mut keys = Vec::new();
        let mut window = None;
        for expr in group_by {
            match plan_window(expr, scope)? {
                Some(found) => {
                    if window.is_some() {
                        return Err(error_at(expr, "GROUP BY takes one window"));
                    }
                    window = Some(found);
                }
                None => keys.push(scope.row(expr)?),
            }
        }
        let Some(window) = window else {
            let at: &dyn Spanned = group_by
                .first()
                .map(|expr| expr as &dyn Spanned)
                .unwrap_or(select);
            return Err(error_at(
                at,
                "aggregating a stream needs a window in GROUP BY, e.g. GROUP BY key, TumblingWindow(second, 30)",
            ));
        };
        let mut grouped = Grouped {
            scope,
            keys: &keys,
            aggregates: Vec::new(),
            aliases: Vec::new(),
        };
        let mut outputs: Vec<(Arc<str>, Expr)> = Vec::new();
        for item in &select.projection {
            let (name, expr) = match item {
                SelectItem::UnnamedExpr(expr) => (column_name(expr), expr),
                SelectItem::ExprWithAlias { expr, alias } => (alias.value.clone(), expr),
                other => {
                    return Err(error_at(
                        other,
                        "SELECT * cannot be aggregated; name the grouped keys and aggregates",
                    ));
                }
            };
            outputs.push((shared_name(&name), grouped.compile(expr)?));
        }
        grouped.aliases = outputs.iter().map(|(name, _)| name.clone()).collect();
        let having = match &select.having {
            Some(having) => Some(grouped.compile(having)?),
            None => None,
        };
        let aggregates = grouped.aggregates;
        Ok(AggregatePlan {
            keys,
            window,
            aggregates,
            outputs,
            having,
        })
    }
}

fn conjuncts(expr: &ast::Expr) -> Vec<&ast::Expr> {
    match expr {
        ast::Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        ast::Expr::Nested(inner) => conjuncts(inner),
        other => vec![other],
    }
}

/// `DATEDIFF(unit, a, b) BETWEEN low AND high` with `a` from the left
/// source and `b` from the right: b − a lies within [low, high] units.
fn datediff_span(expr: &ast::Expr, scope: &Scope) -> Result<Option<JoinSpan>, QueryError> {
    let ast::Expr::Between {
        expr: inner,
        negated: false,
        low,
        high,
    } = expr
    else {
        return Ok(None);
    };
    let ast::Expr::Function(function) = &**inner else {
        return Ok(None);
    };
    if !name_parts(&function.name)
        .join(".")
        .eq_ignore_ascii_case("DATEDIFF")
    {
        return Ok(None);
    }
    let args = function_args(function)?;
    let [unit, start, end] = args.as_slice() else {
        return Err(error_at(&**inner, "DATEDIFF takes (unit, start, end)"));
    };
    let unit = fixed_unit(unit)?;
    let (low, high) = (integer(low)?, integer(high)?);
    let (start, end) = (scope.row(start)?, scope.row(end)?);
    // b − a within [low, high]: a right event may come up to `high` after
    // and `-low` before a left one; swap when the arguments are swapped.
    let (before, after) = if start.reads_source(0) && end.reads_source(1) {
        (-low, high)
    } else if start.reads_source(1) && end.reads_source(0) {
        (high, -low)
    } else {
        return Err(error_at(
            &**inner,
            "DATEDIFF in a JOIN compares a time of each source, e.g. DATEDIFF(second, a, b)",
        ));
    };
    // DATEDIFF counts unit boundaries, so a difference of n units spans
    // up to n + 1 units of time.
    let widen = |amount: i64| amount.saturating_add(1).saturating_mul(unit).max(0);
    let span = JoinSpan {
        right_before_left_micros: widen(before),
        right_after_left_micros: widen(after),
    };
    if span
        .right_before_left_micros
        .max(span.right_after_left_micros)
        > WINDOW_MICROS_MAX + unit
    {
        return Err(error_at(
            expr,
            "a JOIN's DATEDIFF bound may span at most 7 days",
        ));
    }
    Ok(Some(span))
}

fn function_args(function: &ast::Function) -> Result<Vec<&ast::Expr>, QueryError> {
    match &function.args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Ok(expr),
                other => Err(error_at(other, "expected an expression argument")),
            })
            .collect(),
        FunctionArguments::Subquery(query) => {
            Err(error_at(&**query, "sub-queries are not supported"))
        }
    }
}

fn integer(expr: &ast::Expr) -> Result<i64, QueryError> {
    match expr {
        ast::Expr::Value(value) => match &value.value {
            ast::Value::Number(text, _) => text
                .parse()
                .map_err(|_| error_at(expr, format!("expected a whole number, found {text}"))),
            _ => Err(error_at(expr, "expected a whole number")),
        },
        ast::Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: inner,
        } => Ok(-integer(inner)?),
        ast::Expr::Nested(inner) => integer(inner),
        _ => Err(error_at(expr, "expected a whole number")),
    }
}

fn unit_name(expr: &ast::Expr) -> Option<&str> {
    match expr {
        ast::Expr::Identifier(ident) if ident.quote_style.is_none() => Some(&ident.value),
        _ => None,
    }
}

fn fixed_unit(expr: &ast::Expr) -> Result<i64, QueryError> {
    unit_name(expr).and_then(time::unit_micros).ok_or_else(|| {
        error_at(
            expr,
            "expected a time unit: day, hour, minute, second, millisecond or microsecond",
        )
    })
}

/// A window function of GROUP BY, or `None` for a grouping key.
fn plan_window(expr: &ast::Expr, scope: &Scope) -> Result<Option<WindowPlan>, QueryError> {
    let ast::Expr::Function(function) = expr else {
        return Ok(None);
    };
    let name = name_parts(&function.name).join(".").to_ascii_uppercase();
    if name == "SYSTEM.TIMESTAMP" {
        return Ok(Some(WindowPlan::Snapshot));
    }
    if !matches!(
        name.as_str(),
        "TUMBLINGWINDOW" | "HOPPINGWINDOW" | "SLIDINGWINDOW" | "SESSIONWINDOW"
    ) {
        return Ok(None);
    }
    let args = function_args(function)?;
    // Either (unit, n, …) or named parts such as Duration(unit, n).
    let mut lengths = Vec::new();
    if let Some(first) = args.first()
        && unit_name(first).is_some()
    {
        let unit = fixed_unit(first)?;
        for arg in &args[1..] {
            lengths.push(integer(arg)?.saturating_mul(unit));
        }
    } else {
        for arg in &args {
            let ast::Expr::Function(part) = arg else {
                return Err(error_at(
                    *arg,
                    "expected a time unit or a part such as Duration(second, 10)",
                ));
            };
            let part_args = function_args(part)?;
            let [unit, amount] = part_args.as_slice() else {
                return Err(error_at(*arg, "a window part takes (unit, amount)"));
            };
            lengths.push(integer(amount)?.saturating_mul(fixed_unit(unit)?));
        }
    }
    let usage = match name.as_str() {
        "TUMBLINGWINDOW" => "TumblingWindow(unit, size[, offset])",
        "HOPPINGWINDOW" => "HoppingWindow(unit, size, hop[, offset])",
        "SLIDINGWINDOW" => "SlidingWindow(unit, size)",
        _ => "SessionWindow(unit, timeout, max_duration)",
    };
    let positive = |length: i64| length > 0 && length <= WINDOW_MICROS_MAX;
    let window = match (name.as_str(), lengths.as_slice()) {
        ("TUMBLINGWINDOW", [size]) => WindowPlan::Hopping {
            size: *size,
            hop: *size,
            offset: 0,
        },
        ("TUMBLINGWINDOW", [size, offset]) => WindowPlan::Hopping {
            size: *size,
            hop: *size,
            offset: *offset,
        },
        ("HOPPINGWINDOW", [size, hop]) => WindowPlan::Hopping {
            size: *size,
            hop: *hop,
            offset: 0,
        },
        ("HOPPINGWINDOW", [size, hop, offset]) => WindowPlan::Hopping {
            size: *size,
            hop: *hop,
            offset: *offset,
        },
        ("SLIDINGWINDOW", [size]) => WindowPlan::Sliding { size: *size },
        ("SESSIONWINDOW", [timeout, max_duration]) => {
            let partition = match &function.over {
                None => Vec::new(),
                Some(WindowType::WindowSpec(spec)) if spec.order_by.is_empty() => spec
                    .partition_by
                    .iter()
                    .map(|key| scope.row(key))
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(error_at(
                        expr,
                        format!("a session window takes OVER (PARTITION BY keys), not {other}"),
                    ));
                }
            };
            if timeout > max_duration {
                return Err(error_at(
                    expr,
                    "a session's timeout cannot be longer than its maximum duration",
                ));
            }
            WindowPlan::Session {
                timeout: *timeout,
                max_duration: *max_duration,
                partition,
            }
        }
        _ => return Err(error_at(expr, format!("expected {usage}"))),
    };
    let lengths_ok = match &window {
        WindowPlan::Hopping { size, hop, offset } => {
            positive(*size) && positive(*hop) && offset.abs() <= *hop
        }
        WindowPlan::Sliding { size } => positive(*size),
        WindowPlan::Session {
            timeout,
            max_duration,
            ..
        } => positive(*timeout) && positive(*max_duration),
        WindowPlan::Snapshot => true,
    };
    if !lengths_ok {
        return Err(error_at(
            expr,
            format!(
                "window lengths must be positive and at most 7 days (offsets at most one hop): {usage}"
            ),
        ));
    }
    if function.over.is_some() && !matches!(window, WindowPlan::Session { .. }) {
        return Err(error_at(
            expr,
            "only a session window takes OVER (PARTITION BY …)",
        ));
    }
    Ok(Some(window))
}

fn contains_aggregate(expr: &ast::Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(expr, |inner| {
        if let ast::Expr::Function(function) = inner
            && AggregateFunction::by_name(&name_parts(&function.name).join(".")).is_some()
        {
            found = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// The name of an unnamed output column: a field's own name, otherwise
/// the expression's text.
fn column_name(expr: &ast::Expr) -> String {
    match expr {
        ast::Expr::Identifier(ident) => ident.value.clone(),
        ast::Expr::CompoundIdentifier(idents) => idents
            .last()
            .map(|ident| ident.value.clone())
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

/// The sources a step's expressions can read.
struct Scope<'a> {
    sources: &'a [SourcePlan],
}

impl Scope<'_> {
    fn source(&self, name: &str) -> Option<usize> {
        self.sources
            .iter()
            .position(|source| source.alias.eq_ignore_ascii_case(name))
    }

    fn field(&self, idents: &[ast::Ident]) -> Result<Expr, QueryError> {
        // A bare source name stands for its event's time, as in
        // DATEDIFF(second, a, b) of a join.
        if let [ident] = idents
            && let Some(source) = self.source(&ident.value)
        {
            return Ok(Expr::SourceTime(source));
        }
        let path = |idents: &[ast::Ident]| {
            idents
                .iter()
                .map(|ident| shared_name(&ident.value))
                .collect()
        };
        if idents.len() > 1
            && let Some(source) = self.source(&idents[0].value)
        {
            return Ok(Expr::Field {
                source,
                path: path(&idents[1..]),
            });
        }
        if self.sources.len() == 1 {
            return Ok(Expr::Field {
                source: 0,
                path: path(idents),
            });
        }
        let names: Vec<&str> = self
            .sources
            .iter()
            .map(|source| source.alias.as_str())
            .collect();
        Err(QueryError::at(
            idents[0].span.start,
            format!(
                "'{}' could come from {}; qualify it with a source, e.g. {}.{}",
                idents
                    .iter()
                    .map(|ident| ident.value.as_str())
                    .collect::<Vec<_>>()
                    .join("."),
                names.join(" or "),
                names[0],
                idents[0].value
            ),
        ))
    }

    /// Compiles an expression over one event (no aggregates).
    fn row(&self, expr: &ast::Expr) -> Result<Expr, QueryError> {
        compile(expr, &mut |inner| match inner {
            ast::Expr::Identifier(ident) => Some(self.field(std::slice::from_ref(ident))),
            ast::Expr::CompoundIdentifier(idents) => Some(self.field(idents)),
            ast::Expr::Function(function)
                if AggregateFunction::by_name(&name_parts(&function.name).join(".")).is_some() =>
            {
                Some(Err(error_at(
                    inner,
                    "an aggregate is not allowed here; aggregates go in SELECT or HAVING of a step with GROUP BY and a window",
                )))
            }
            _ => None,
        })
    }
}

/// Compiles an expression over a group: its keys, its aggregates, the
/// window end, and (in HAVING) the step's output columns.
struct Grouped<'a> {
    scope: &'a Scope<'a>,
    keys: &'a [Expr],
    aggregates: Vec<AggregateCall>,
    aliases: Vec<Arc<str>>,
}

impl Grouped<'_> {
    fn compile(&mut self, expr: &ast::Expr) -> Result<Expr, QueryError> {
        let scope = self.scope;
        let keys = self.keys;
        let aliases = self.aliases.clone();
        let aggregates = &mut self.aggregates;
        compile(expr, &mut |inner| {
            if let Ok(row) = scope.row(inner)
                && let Some(key) = keys.iter().position(|key| *key == row)
            {
                return Some(Ok(Expr::Key(key)));
            }
            match inner {
                ast::Expr::Function(function) => {
                    let function_name = name_parts(&function.name).join(".");
                    let aggregate = AggregateFunction::by_name(&function_name)?;
                    Some(aggregate_call(function, aggregate, scope).map(|call| {
                        let index = match aggregates.iter().position(|known| *known == call) {
                            Some(index) => index,
                            None => {
                                aggregates.push(call);
                                aggregates.len() - 1
                            }
                        };
                        Expr::Aggregate(index)
                    }))
                }
                ast::Expr::Identifier(ident) => {
                    if let Some(output) = aliases
                        .iter()
                        .position(|alias| alias.eq_ignore_ascii_case(&ident.value))
                    {
                        return Some(Ok(Expr::Output(output)));
                    }
                    Some(Err(not_grouped(inner)))
                }
                ast::Expr::CompoundIdentifier(_) => Some(Err(not_grouped(inner))),
                _ => None,
            }
        })
    }
}

fn not_grouped(expr: &ast::Expr) -> QueryError {
    error_at(
        expr,
        format!(
            "'{expr}' is neither in GROUP BY nor inside an aggregate such as COUNT, SUM, MIN or MAX"
        ),
    )
}

fn aggregate_call(
    function: &ast::Function,
    aggregate: AggregateFunction,
    scope: &Scope,
) -> Result<AggregateCall, QueryError> {
    let ast::FunctionArguments::List(list) = &function.args else {
        return Err(error_at(function, "an aggregate takes one argument"));
    };
    let distinct = matches!(
        list.duplicate_treatment,
        Some(ast::DuplicateTreatment::Distinct)
    );
    if function.over.is_some() || function.filter.is_some() {
        return Err(error_at(
            function,
            "OVER and FILTER are not supported on aggregates; use CASE inside the aggregate",
        ));
    }
    let arg = match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
            if aggregate == AggregateFunction::Count && !distinct =>
        {
            None
        }
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))] => Some(scope.row(expr)?),
        _ => {
            return Err(error_at(
                function,
                "an aggregate takes one argument (COUNT also takes *)",
            ));
        }
    };
    Ok(AggregateCall {
        function: aggregate,
        arg,
        distinct,
    })
}

/// Compiles `expr`, asking `special` first at every node; `special`
/// answers `None` for nodes it leaves to the common rules.
fn compile(
    expr: &ast::Expr,
    special: &mut dyn FnMut(&ast::Expr) -> Option<Result<Expr, QueryError>>,
) -> Result<Expr, QueryError> {
    if let Some(result) = special(expr) {
        return result;
    }
    macro_rules! sub {
        ($inner:expr) => {
            compile($inner, special).map(Box::new)
        };
    }
    Ok(match expr {
        ast::Expr::Nested(inner) => *sub!(inner)?,
        ast::Expr::Value(value) => Expr::Literal(literal(&value.value, expr)?),
        ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
            return Err(error_at(expr, "unexpected name here"));
        }
        ast::Expr::UnaryOp { op, expr: inner } => match op {
            UnaryOperator::Not => Expr::Not(sub!(inner)?),
            UnaryOperator::Minus => Expr::Negate(sub!(inner)?),
            UnaryOperator::Plus => *sub!(inner)?,
            other => {
                return Err(error_at(
                    expr,
                    format!("the operator {other} is not supported"),
                ));
            }
        },
        ast::Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::And => return Ok(Expr::And(sub!(left)?, sub!(right)?)),
                BinaryOperator::Or => return Ok(Expr::Or(sub!(left)?, sub!(right)?)),
                BinaryOperator::Plus => BinaryOp::Plus,
                BinaryOperator::Minus => BinaryOp::Minus,
                BinaryOperator::Multiply => BinaryOp::Multiply,
                BinaryOperator::Divide => BinaryOp::Divide,
                BinaryOperator::Modulo => BinaryOp::Modulo,
                BinaryOperator::Eq => BinaryOp::Eq,
                BinaryOperator::NotEq => BinaryOp::NotEq,
                BinaryOperator::Lt => BinaryOp::Lt,
                BinaryOperator::LtEq => BinaryOp::LtEq,
                BinaryOperator::Gt => BinaryOp::Gt,
                BinaryOperator::GtEq => BinaryOp::GtEq,
                BinaryOperator::StringConcat => BinaryOp::Concat,
                other => {
                    return Err(error_at(
                        expr,
                        format!("the operator {other} is not supported"),
                    ));
                }
            };
            Expr::Binary(op, sub!(left)?, sub!(right)?)
        }
        ast::Expr::IsNull(inner) => Expr::IsNull {
            expr: sub!(inner)?,
            negated: false,
        },
        ast::Expr::IsNotNull(inner) => Expr::IsNull {
            expr: sub!(inner)?,
            negated: true,
        },
        ast::Expr::InList {
            expr: inner,
            list,
            negated,
        } => Expr::InList {
            expr: sub!(inner)?,
            list: list
                .iter()
                .map(|item| compile(item, special))
                .collect::<Result<_, _>>()?,
            negated: *negated,
        },
        ast::Expr::Between {
            expr: inner,
            negated,
            low,
            high,
        } => Expr::Between {
            expr: sub!(inner)?,
            low: sub!(low)?,
            high: sub!(high)?,
            negated: *negated,
        },
        ast::Expr::Like {
            negated,
            any: false,
            expr: inner,
            pattern,
            escape_char: None,
        } => Expr::Like {
            expr: sub!(inner)?,
            pattern: sub!(pattern)?,
            negated: *negated,
        },
        ast::Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => Expr::Case {
            operand: match operand.as_deref() {
                Some(operand) => Some(sub!(operand)?),
                None => None,
            },
            branches: conditions
                .iter()
                .map(|when| {
                    Ok((
                        compile(&when.condition, special)?,
                        compile(&when.result, special)?,
                    ))
                })
                .collect::<Result<_, QueryError>>()?,
            otherwise: match else_result.as_deref() {
                Some(other) => Some(sub!(other)?),
                None => None,
            },
        },
        ast::Expr::Cast {
            kind,
            expr: inner,
            data_type,
            ..
        } => {
            let to = cast_type(data_type).ok_or_else(|| {
                error_at(expr, format!("cannot cast to {data_type}; the types are bigint, float, nvarchar(max), datetime, bit, record and array"))
            })?;
            Expr::Cast {
                expr: sub!(inner)?,
                to,
                lenient: matches!(kind, CastKind::TryCast | CastKind::SafeCast),
            }
        }
        ast::Expr::Substring {
            expr: inner,
            substring_from: Some(from),
            substring_for: Some(length),
            ..
        } => Expr::Call(
            Function::Substring,
            vec![*sub!(inner)?, *sub!(from)?, *sub!(length)?],
        ),
        ast::Expr::Trim {
            trim_where: None,
            trim_what: None,
            expr: inner,
            trim_characters: None,
        } => Expr::Call(Function::Trim, vec![*sub!(inner)?]),
        ast::Expr::Ceil {
            expr: inner,
            field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
        } => Expr::Call(Function::Ceiling, vec![*sub!(inner)?]),
        ast::Expr::Floor {
            expr: inner,
            field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
        } => Expr::Call(Function::Floor, vec![*sub!(inner)?]),
        ast::Expr::Function(function) => compile_function(function, expr, special)?,
        other => {
            return Err(error_at(
                other,
                format!("'{other}' is not supported in a streaming query"),
            ));
        }
    })
}

fn compile_function(
    function: &ast::Function,
    expr: &ast::Expr,
    special: &mut dyn FnMut(&ast::Expr) -> Option<Result<Expr, QueryError>>,
) -> Result<Expr, QueryError> {
    let name = name_parts(&function.name).join(".");
    if function.over.is_some() {
        // Analytic functions (LAG, LAST, ISFIRST) and anomaly detection are
        // outside the hot path's first scope; they are refused clearly.
        return Err(error_at(
            expr,
            format!("{name}(…) OVER (…) is not supported yet"),
        ));
    }
    let args = function_args(function)?;
    let upper = name.to_ascii_uppercase();
    if upper == "SYSTEM.TIMESTAMP" {
        if !args.is_empty() {
            return Err(error_at(expr, "System.Timestamp() takes no arguments"));
        }
        return Ok(Expr::Timestamp);
    }
    let unit = |arg: &ast::Expr| {
        unit_name(arg).and_then(DateUnit::by_name).ok_or_else(|| {
            error_at(arg, "expected a date part: year, quarter, month, dayofyear, day, week, weekday, hour, minute, second, millisecond or microsecond")
        })
    };
    match (upper.as_str(), args.as_slice()) {
        ("DATEADD", [part, amount, time]) => {
            return Ok(Expr::DateAdd {
                unit: unit(part)?,
                amount: Box::new(compile(amount, special)?),
                time: Box::new(compile(time, special)?),
            });
        }
        ("DATEDIFF", [part, start, end]) => {
            return Ok(Expr::DateDiff {
                unit: unit(part)?,
                start: Box::new(compile(start, special)?),
                end: Box::new(compile(end, special)?),
            });
        }
        ("DATEPART", [part, time]) => {
            return Ok(Expr::DatePart {
                unit: unit(part)?,
                time: Box::new(compile(time, special)?),
            });
        }
        ("DATEADD" | "DATEDIFF" | "DATEPART", _) => {
            return Err(error_at(
                expr,
                format!(
                    "{name} takes (datepart, …): DATEADD(part, n, time), DATEDIFF(part, start, end), DATEPART(part, time)"
                ),
            ));
        }
        _ => {}
    }
    if upper.starts_with("UDF.") {
        return Err(error_at(
            expr,
            format!("{name}: user-defined functions are not supported"),
        ));
    }
    let Some((function_kind, min, max)) = Function::by_name(&name) else {
        return Err(error_at(expr, format!("unknown function {name}")));
    };
    if args.len() < min || args.len() > max {
        let count = if min == max {
            min.to_string()
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(error_at(
            expr,
            format!("{name} takes {count} argument(s), not {}", args.len()),
        ));
    }
    let args = args
        .into_iter()
        .map(|arg| compile(arg, special))
        .collect::<Result<_, _>>()?;
    Ok(Expr::Call(function_kind, args))
}

fn literal(value: &ast::Value, at: &ast::Expr) -> Result<Value, QueryError> {
    Ok(match value {
        ast::Value::Number(text, _) => match text.parse::<i64>() {
            Ok(integer) => Value::Int(integer),
            Err(_) => text
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| error_at(at, format!("'{text}' is not a number")))?,
        },
        ast::Value::SingleQuotedString(text) | ast::Value::NationalStringLiteral(text) => {
            Value::str(text)
        }
        ast::Value::Boolean(value) => Value::Bool(*value),
        ast::Value::Null => Value::Null,
        other => {
            return Err(error_at(
                at,
                format!("the literal {other} is not supported"),
            ));
        }
    })
}

fn cast_type(data_type: &ast::DataType) -> Option<Type> {
    let text = data_type.to_string().to_ascii_lowercase();
    let base = text.split('(').next().unwrap_or_default().trim();
    Some(match base {
        "bigint" | "int" | "integer" => Type::BigInt,
        "float" | "real" | "double" => Type::Float,
        "nvarchar" | "varchar" | "string" => Type::Str,
        "datetime" | "datetime2" | "timestamp" => Type::DateTime,
        "bit" | "boolean" => Type::Bit,
        "record" => Type::Record,
        "array" => Type::Array,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::SEED_DECLINE_RATE_QUERY as SEED_QUERY;

    #[test]
    fn the_seed_query_plans_into_one_windowed_step() {
        let plan = JobPlan::new(SEED_QUERY, &[]).unwrap();
        assert_eq!(plan.inputs.len(), 1);
        assert_eq!(plan.inputs[0].name, "auth-events");
        assert!(plan.inputs[0].timestamp_by.is_some());
        assert_eq!(plan.outputs, vec!["powerbi-live".to_string()]);
        let StepBody::Aggregate(aggregate) = &plan.steps[0].body else {
            panic!("expected an aggregate");
        };
        assert_eq!(
            aggregate.window,
            WindowPlan::Hopping {
                size: 30_000_000,
                hop: 30_000_000,
                offset: 0
            }
        );
        assert_eq!(aggregate.keys.len(), 1);
        // COUNT(*) appears twice but is computed once.
        assert_eq!(aggregate.aggregates.len(), 2);
        assert!(
            matches!(aggregate.having, Some(Expr::Binary(BinaryOp::Gt, ref left, _)) if **left == Expr::Output(3))
        );
    }

    fn error(text: &str) -> QueryError {
        JobPlan::new(text, &["ref".to_string()]).unwrap_err()
    }

    #[test]
    fn mistakes_are_explained_where_they_are() {
        let e = error("SELECT a, COUNT(*) INTO o FROM i GROUP BY TumblingWindow(second, 10)");
        assert_eq!((e.line, e.column), (1, 8), "{e}");
        assert!(e.message.contains("neither in GROUP BY"), "{e}");
        let e = error("SELECT a, COUNT(*) INTO o FROM i GROUP BY a");
        assert!(e.message.contains("needs a window"), "{e}");
        let e = error("SELECT a INTO o FROM i JOIN j ON i.a = j.a");
        assert!(e.message.contains("time bound"), "{e}");
        let e = error("SELECT a INTO o FROM i\nWHERE NOSUCH(a) > 1");
        assert_eq!((e.line, e.column), (2, 7), "{e}");
        let e = error("SELECT a FROM i");
        assert!(e.message.contains("no INTO"), "{e}");
        let e = error("SELECT i.a INTO o FROM i GROUP BY a, TumblingWindow(fortnight, 1)");
        assert!(e.message.contains("time unit"), "{e}");
        let e =
            error("SELECT a INTO o FROM i TIMESTAMP BY t SELECT a INTO p FROM i TIMESTAMP BY u");
        assert!(e.message.contains("different TIMESTAMP BY"), "{e}");
        let e = error("SELECT a INTO o FROM i TIMESTAMP BY t SELECT a INTO p FROM i");
        assert!(e.message.contains("different TIMESTAMP BY"), "{e}");
        let e = error(
            "SELECT a INTO o FROM i JOIN ref ON i.a = ref.a AND DATEDIFF(second, i, ref) BETWEEN 0 AND 5",
        );
        assert!(e.message.contains("reference data"), "{e}");
    }

    #[test]
    fn input_fields_reach_into_nested_records() {
        let plan = JobPlan::new(
            "SELECT bid.price AS p, bid.dateTime AS t, person INTO o FROM i TIMESTAMP BY COALESCE(bid.dateTime, auction.dateTime) WHERE type = 'bid'",
            &[],
        )
        .unwrap();
        let mut expected = FieldSelection::default();
        for path in [
            &["bid", "dateTime"][..],
            &["auction", "dateTime"],
            &["type"],
            &["bid", "price"],
            &["person"],
        ] {
            expected.add(&path.iter().map(|name| Arc::from(*name)).collect::<Vec<_>>());
        }
        assert_eq!(plan.input_fields(0), Some(expected));
        let plan = JobPlan::new("SELECT *, bid.price AS p INTO o FROM i", &[]).unwrap();
        assert_eq!(plan.input_fields(0), None);
    }

    #[test]
    fn substreams_follow_stream_analytics_rules() {
        let plan = JobPlan::new(
            "SELECT d, COUNT(*) INTO o FROM i TIMESTAMP BY t OVER d GROUP BY d, TumblingWindow(second, 10)",
            &[],
        )
        .unwrap();
        assert_eq!(plan.inputs[0].over.len(), 1);
        assert_eq!(plan.input_fields(0).unwrap().len(), 2, "t and d are read");
        // A join of two streams with substreams on both, matched on the key.
        JobPlan::new(
            "SELECT a.d INTO o FROM a TIMESTAMP BY t OVER d JOIN b TIMESTAMP BY t OVER d ON a.d = b.d AND DATEDIFF(second, a, b) BETWEEN 0 AND 10",
            &[],
        )
        .unwrap();
        let e = error(
            "SELECT COUNT(*) INTO o FROM i TIMESTAMP BY t OVER d GROUP BY TumblingWindow(second, 10)",
        );
        assert_eq!((e.line, e.column), (1, 51), "{e}");
        assert!(e.message.contains("must GROUP BY d"), "{e}");
        let e = error(
            "SELECT a.d INTO o FROM a TIMESTAMP BY t OVER d JOIN b TIMESTAMP BY t ON a.d = b.d AND DATEDIFF(second, a, b) BETWEEN 0 AND 10",
        );
        assert!(
            e.message.contains("every input of the job or on none"),
            "{e}"
        );
        let e = error(
            "SELECT a.d INTO o FROM a TIMESTAMP BY t OVER d JOIN b TIMESTAMP BY t OVER d ON a.x = b.x AND DATEDIFF(second, a, b) BETWEEN 0 AND 10",
        );
        assert!(e.message.contains("must match on d"), "{e}");
        let e = error(
            "SELECT a.d INTO o FROM a TIMESTAMP BY t OVER d, e JOIN b TIMESTAMP BY t OVER d ON a.d = b.d AND DATEDIFF(second, a, b) BETWEEN 0 AND 10",
        );
        assert!(
            e.message.contains("different numbers of OVER fields"),
            "{e}"
        );
        let e = error("SELECT d INTO o FROM i TIMESTAMP BY t OVER UPPER(d)");
        assert!(e.message.contains("OVER takes fields"), "{e}");
        let e = error(
            "SELECT d INTO o FROM i TIMESTAMP BY t OVER d SELECT d INTO p FROM i TIMESTAMP BY t OVER e",
        );
        assert!(e.message.contains("different OVER"), "{e}");
    }

    #[test]
    fn joins_find_their_keys_and_time_bounds() {
        let plan = JobPlan::new(
            "SELECT a.k, b.v INTO o FROM a TIMESTAMP BY t JOIN b TIMESTAMP BY t ON a.k = b.k AND DATEDIFF(second, a, b) BETWEEN 0 AND 10",
            &[],
        )
        .unwrap();
        let join = plan.steps[0].join.as_ref().unwrap();
        assert_eq!(join.equi_keys.len(), 1);
        assert_eq!(
            join.span,
            Some(JoinSpan {
                right_before_left_micros: 1_000_000,
                right_after_left_micros: 11_000_000
            })
        );
        let plan = JobPlan::new(
            "SELECT s.k, r.name INTO o FROM s JOIN ref r ON r.k = s.k",
            &["ref".to_string()],
        )
        .unwrap();
        assert_eq!(plan.steps[0].sources[1].stream, StreamRef::Reference(0));
        assert_eq!(plan.inputs.len(), 1);
    }
}
