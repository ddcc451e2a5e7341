//! Running SQL over the store: a DataFusion session on its own small
//! runtime with a memory pool and a timeout, so a heavy query competes for
//! its own threads and never for ingestion's or the hot path's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::{TableProvider, provider_as_source};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures_util::StreamExt;
use serde::Serialize;

use crate::kql::{self, Render};
use crate::provider::StoreTable;
use crate::stats::QueryStats;
use crate::table::Table;
use crate::view::{ViewPlan, ViewTable};

/// Bounds on queries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryLimits {
    /// Threads of the query runtime (and DataFusion's target partitions).
    pub threads: usize,
    /// Memory all running queries may hold for sorts, joins and aggregations.
    pub memory_bytes: usize,
    pub timeout: Duration,
    /// Rows returned at most; more are cut and the result says so (as in Data Explorer).
    pub max_rows: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            threads: cores,
            memory_bytes: 2 << 30,
            timeout: Duration::from_secs(60),
            max_rows: 500_000,
        }
    }
}

/// What went wrong with a query, said so a person can act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// `syntax`, `plan`, `timeout`, `resources`, `forbidden` or `execution`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

impl QueryError {
    pub(crate) fn from_datafusion(error: &DataFusionError, sql: &str) -> Self {
        let root = error.find_root();
        let (code, mut message) = match root {
            DataFusionError::SQL(parser, _) => ("syntax", parser.to_string()),
            DataFusionError::ResourcesExhausted(m) => (
                "resources",
                format!("the query needs more memory than allowed: {m}"),
            ),
            DataFusionError::Plan(m) => ("plan", m.clone()),
            DataFusionError::SchemaError(e, _) => ("plan", e.to_string()),
            DataFusionError::NotImplemented(m) => ("plan", format!("not supported: {m}")),
            other => ("execution", other.to_string()),
        };
        if message.contains("DDL not supported")
            || message.contains("DML not supported")
            || message.contains("Statement not supported")
        {
            return Self {
                code: "forbidden",
                message: "queries are read-only: only SELECT (and EXPLAIN) can run".into(),
                line: None,
                column: None,
            };
        }
        let (mut line, mut column) = (None, None);
        if let Some(span) = error.diagnostic().and_then(|d| d.span)
            && span.start.line > 0
        {
            line = Some(span.start.line);
            column = Some(span.start.column);
        }
        if line.is_none()
            && let Some((l, c)) = parse_position(&message)
        {
            line = Some(l);
            column = Some(c);
        }
        if line.is_none() && code == "syntax" && message.contains("found: EOF") {
            let (l, c) = end_position(sql);
            line = Some(l);
            column = Some(c);
        }
        if let (Some(l), Some(c)) = (line, column)
            && !message.contains("Line:")
        {
            message = format!("{message} (at line {l}, column {c})");
        }
        Self {
            code,
            message,
            line,
            column,
        }
    }
}

impl QueryError {
    fn from_kql(code: &'static str) -> impl Fn(kql::KqlError) -> Self {
        move |error| Self {
            code,
            message: format!("{} (at {})", error.message, error.pos),
            line: Some(error.pos.line),
            column: Some(error.pos.column),
        }
    }
}

/// Line and column (1-based) just past the last non-blank character.
fn end_position(sql: &str) -> (u64, u64) {
    let text = sql.trim_end();
    let line = text.matches('\n').count() as u64 + 1;
    let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, column)
}

/// `… at Line: 1, Column: 8` as sqlparser writes it.
fn parse_position(message: &str) -> Option<(u64, u64)> {
    let at = message.rfind("Line: ")?;
    let rest = &message[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, column.parse().ok()?))
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// More rows matched than `max_rows`; the rest were cut.
    pub truncated: bool,
    pub elapsed: Duration,
    /// How a KQL query's `render` asked to draw the result.
    pub render: Option<Render>,
}

pub struct QueryEngine {
    /// Taken only by `Drop`.
    runtime: Option<tokio::runtime::Runtime>,
    context: SessionContext,
    limits: QueryLimits,
    stats: Arc<QueryStats>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The stack of each query thread.
const QUERY_STACK_BYTES: usize = 16 << 20;

impl QueryEngine {
    pub fn new(limits: QueryLimits) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads.max(1))
            .thread_name("freshet-query")
            // DataFusion's analyzer and optimizer walk a plan's expressions
            // recursively: a long chain of `or` needs more than the default
            // 2 MiB.
            .thread_stack_size(QUERY_STACK_BYTES)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        let mut config = SessionConfig::new()
            .with_target_partitions(limits.threads.max(1))
            .with_information_schema(true)
            .with_default_catalog_and_schema("freshet", "public");
        // Column names keep their case (`EventTime`, `BIN`) without quotes,
        // as in Data Explorer and Stream Analytics.
        config.options_mut().sql_parser.enable_ident_normalization = false;
        // Filters are not evaluated inside the Parquet decoder
        // (`pushdown_filters`): measured on the store benchmark it doubled
        // a filtered count and a time-range query read from Parquet, where
        // the filtered column is the one read. Row groups and pages are
        // still skipped by statistics, the page index and bloom filters.
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(limits.memory_bytes)))
            .build_arc()
            .map_err(std::io::Error::other)?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime_env)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::filtering::CodedFilterRule))
            .with_physical_optimizer_rule(Arc::new(crate::grouping::ShortKeysRule))
            .build();
        let context = SessionContext::new_with_state(state);
        crate::functions::register(&context).map_err(std::io::Error::other)?;
        Ok(Self {
            runtime: Some(runtime),
            context,
            limits,
            stats: Arc::default(),
        })
    }

    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    pub fn stats(&self) -> &QueryStats {
        &self.stats
    }

    /// Registers a table under its name; with row-level security, as the
    /// table filtered by its predicate, so no query reaches other rows.
    pub fn register(&self, table: Arc<Table>) {
        let name = table.name().to_string();
        let security = table.spec().row_level_security.clone();
        let schema = table.schema().clone();
        let provider = Arc::new(StoreTable::new(table));
        let Some(text) = security else {
            self.register_provider(&name, provider);
            return;
        };
        // Checked when the table was applied; if it no longer plans, no
        // row is shown rather than every row.
        let predicate = crate::security::predicate(&text, &name, &schema).unwrap_or_else(|error| {
            tracing::error!(table = %name, %error, "row_level_security does not plan; the table shows no rows");
            datafusion::logical_expr::lit(false)
        });
        let plan = LogicalPlanBuilder::scan(name.as_str(), provider_as_source(provider), None)
            .and_then(|scan| scan.filter(predicate))
            .and_then(|filtered| filtered.build())
            .expect("a filter over a scan of the table plans");
        self.register_provider(
            &name,
            Arc::new(datafusion::catalog::view::ViewTable::new(plan, Some(text))),
        );
    }

    pub fn register_view(&self, table: Arc<Table>, view: Arc<ViewPlan>) {
        let name = view.spec.name.clone();
        self.register_provider(&name, Arc::new(ViewTable::new(table, view)));
    }

    fn register_provider(&self, name: &str, provider: Arc<dyn TableProvider>) {
        let _ = self.context.deregister_table(name);
        self.context
            .register_table(name, provider)
            .expect("the store's catalog takes tables and views");
    }

    pub fn deregister(&self, name: &str) {
        let _ = self.context.deregister_table(name);
    }

    /// Plans and runs `sql` on the query runtime.
    pub async fn execute(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.run(Language::Sql, sql).await
    }

    /// Plans and runs a query in the KQL subset on the query runtime.
    pub async fn execute_kql(&self, kql: &str) -> Result<QueryResult, QueryError> {
        self.run(Language::Kql, kql).await
    }

    async fn run(&self, language: Language, text: &str) -> Result<QueryResult, QueryError> {
        let context = self.context.clone();
        let limits = self.limits;
        let text = text.to_string();
        let stats = self.stats.clone();
        let task = self
            .runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .spawn(async move {
                let started = Instant::now();
                let run = async {
                    let (frame, render) = match language {
                        Language::Sql => {
                            let options = SQLOptions::new()
                                .with_allow_ddl(false)
                                .with_allow_dml(false)
                                .with_allow_statements(false);
                            let frame = context
                                .sql_with_options(&text, options)
                                .await
                                .map_err(|e| QueryError::from_datafusion(&e, &text))?;
                            (frame, None)
                        }
                        Language::Kql => {
                            let query =
                                kql::parse(&text).map_err(QueryError::from_kql("syntax"))?;
                            kql::plan(&context, &query)
                                .await
                                .map_err(QueryError::from_kql("plan"))?
                        }
                    };
                    collect(frame, limits.max_rows, render)
                        .await
                        .map_err(|e| QueryError::from_datafusion(&e, &text))
                };
                match tokio::time::timeout(limits.timeout, run).await {
                    Err(_) => Err(QueryError {
                        code: "timeout",
                        message: format!(
                            "the query ran longer than {:?} and was stopped",
                            limits.timeout
                        ),
                        line: None,
                        column: None,
                    }),
                    Ok(Err(error)) => Err(error),
                    Ok(Ok(mut result)) => {
                        result.elapsed = started.elapsed();
                        stats.durations.observe(result.elapsed.as_millis() as u64);
                        Ok(result)
                    }
                }
            });
        let result = task.await.unwrap_or_else(|error| {
            Err(QueryError {
                code: "execution",
                message: format!("the query failed: {error}"),
                line: None,
                column: None,
            })
        });
        if result.is_err() {
            self.stats
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }
}

#[derive(Debug, Clone, Copy)]
enum Language {
    Sql,
    Kql,
}

/// Runs a planned query, keeping at most `max_rows` rows.
async fn collect(
    frame: datafusion::dataframe::DataFrame,
    max_rows: usize,
    render: Option<Render>,
) -> Result<QueryResult, DataFusionError> {
    let mut stream = frame.execute_stream().await?;
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut rows = 0;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if rows + batch.num_rows() > max_rows {
            batches.push(batch.slice(0, max_rows - rows));
            rows = max_rows;
            truncated = true;
            break;
        }
        rows += batch.num_rows();
        batches.push(batch);
    }
    Ok(QueryResult {
        schema,
        batches,
        rows,
        truncated,
        elapsed: Duration::ZERO,
        render,
    })
}

/// Query threads run at nice 10, below ingestion and the hot path (nice
/// 0): when the cores are busy, the scheduler gives a query only the CPU
/// they leave (about a tenth under contention), so a heavy query slows
/// itself, not freshness.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread's own id; on Linux
    // PRIO_PROCESS with a thread id changes that thread only.
    let thread = unsafe { libc::gettid() };
    unsafe { libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, 10) };
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        // Queries still running are abandoned rather than waited for; this
        // also makes dropping the store safe inside an async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_read_from_parser_messages() {
        assert_eq!(
            parse_position("Expected: an expression, found: FROM at Line: 2, Column: 8"),
            Some((2, 8))
        );
        assert_eq!(parse_position("no position"), None);
        assert_eq!(end_position("SELECT *\nFROM t WHERE  \n"), (2, 13));
    }
}
