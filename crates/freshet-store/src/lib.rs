//! Freshet's store: raw events from the log land in columnar tables and are
//! queryable within a second (Data Explorer semantics).
//!
//! Each table reads its source topic on its own thread through a
//! [`Source`], maps JSON events to typed columns, drops repeated keys within
//! the dedup window and appends to an in-memory Arrow buffer that queries
//! read at once. The buffer is sealed into immutable Parquet extents, each
//! committed together with the source positions it accounts for, so
//! `kill -9` neither loses nor repeats a row. Small extents are merged;
//! retention drops whole extents and filters at query time; the caching
//! policy keeps the hot window in memory. Queries are DataFusion SQL on a
//! runtime of their own.
//!
//! On disk: `store/{table}/manifest.json`, `store/{table}/columns.json` and
//! `store/{table}/extents/{id:020}.parquet`.

pub mod encode;
pub mod extent;
pub mod filtering;
pub mod functions;
pub mod grouping;
pub mod kql;
pub mod mapped;
pub mod mapping;
pub mod provider;
pub mod query;
pub mod security;
pub mod source;
pub mod spec;
pub mod stats;
pub mod table;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use freshet_core::Clock;
use freshet_log::Log;

pub use crate::query::{QueryEngine, QueryError, QueryLimits, QueryResult};
pub use crate::source::{DeadLetterSink, EmbeddedDeadLetters, EmbeddedSource, Source};
pub use crate::spec::{
    ColumnSpec, ColumnType, DEFAULT_DEDUP_MAX_KEYS, DedupSpec, SealPolicy, TableSpec, parse_period,
};
pub use crate::table::{Table, TableInfo};
pub use crate::view::{ViewInfo, ViewPlan, ViewSpec};
pub use datafusion::arrow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
    #[error("damaged store file: {0}")]
    Corrupt(String),
    #[error("no table named '{0}'")]
    NoTable(String),
}

impl StoreError {
    pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> Self + '_ {
        move |error| Self::Io(format!("{}: {error}", path.display()))
    }
}

/// Called after a table commits: the table's consumer group, its topic and
/// the positions now durable, so the group's committed offsets follow the data.
pub type CommitHook = Arc<dyn Fn(&str, &str, &BTreeMap<u32, i64>) + Send + Sync>;

struct Running {
    table: Arc<Table>,
    thread: Option<JoinHandle<()>>,
}

/// All tables of a server and the engine that queries them.
pub struct Store {
    dir: PathBuf,
    log: Arc<Log>,
    clock: Arc<dyn Clock>,
    runtime: tokio::runtime::Handle,
    engine: QueryEngine,
    tables: RwLock<BTreeMap<String, Running>>,
    /// Views by name, with the table each aggregates.
    views: RwLock<BTreeMap<String, Arc<ViewPlan>>>,
    commit_hook: Mutex<Option<CommitHook>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What `apply` did to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Applied {
    Created,
    Altered,
    Unchanged,
}

impl Store {
    /// `runtime` drives the log's tail waits for the ingestion threads.
    pub fn open(
        data_dir: &Path,
        log: Arc<Log>,
        clock: Arc<dyn Clock>,
        limits: QueryLimits,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, StoreError> {
        let dir = data_dir.join("store");
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        // Absolute and without `..`, because the query engine's object store reads extents
        // by absolute path: a relative data directory would otherwise fail
        // every query that reads an extent from disk.
        let dir = std::fs::canonicalize(&dir).map_err(StoreError::io(&dir))?;
        let engine =
            QueryEngine::new(limits).map_err(|e| StoreError::Io(format!("query runtime: {e}")))?;
        Ok(Self {
            dir,
            log,
            clock,
            runtime,
            engine,
            tables: RwLock::new(BTreeMap::new()),
            views: RwLock::new(BTreeMap::new()),
            commit_hook: Mutex::new(None),
        })
    }

    pub fn set_commit_hook(&self, hook: CommitHook) {
        *self.commit_hook.lock().expect("hook lock") = Some(hook);
    }

    /// Creates the table, or alters it: adding columns and changing
    /// policies keep every row; changing a column's type is refused.
    /// The table (re)starts ingesting from its committed positions.
    pub fn apply(&self, spec: TableSpec) -> Result<Applied, StoreError> {
        spec.validate()
            .map_err(|e| StoreError::Invalid(format!("table '{}': {e}", spec.name)))?;
        if let Some(text) = &spec.row_level_security {
            security::predicate(text, &spec.name, &spec.schema()).map_err(|e| {
                StoreError::Invalid(format!("table '{}': row_level_security {e}", spec.name))
            })?;
        }
        let mut tables = self.tables.write().expect("tables lock");
        let existing = tables
            .get(&spec.name)
            .map(|r| r.table.spec().as_ref().clone());
        if existing.as_ref() == Some(&spec) {
            return Ok(Applied::Unchanged);
        }
        if let Some(existing) = &existing
            && existing.same_but_policies(&spec)
        {
            // Policies change in place: ingestion goes on, and nothing
            // (dedup keys, hot extents) is loaded again.
            tables[&spec.name].table.set_policies(spec)?;
            return Ok(Applied::Altered);
        }
        let dir = self.dir.join(&spec.name);
        check_column_types(&dir, &spec)?;
        if let Some(mut running) = tables.remove(&spec.name) {
            running.table.stop();
            if let Some(thread) = running.thread.take() {
                let _ = thread.join();
            }
        }
        let table = Table::open(spec.clone(), &dir, self.clock.clone())?;
        if let Some(hook) = self.commit_hook.lock().expect("hook lock").clone() {
            table.set_commit_hook(hook);
        }
        save_column_types(&dir, &spec)?;
        let source = EmbeddedSource::new(self.log.clone(), &spec.topic, self.runtime.clone());
        let dead_letters = EmbeddedDeadLetters::new(self.log.clone(), &spec.dead_letter_topic);
        let runner = table.clone();
        let thread = std::thread::Builder::new()
            .name(format!("freshet-table-{}", spec.name))
            .spawn(move || runner.run(Box::new(source), Box::new(dead_letters)))
            .map_err(|e| StoreError::Io(format!("cannot start the ingestion thread: {e}")))?;
        self.engine.register(table.clone());
        tables.insert(
            spec.name.clone(),
            Running {
                table: table.clone(),
                thread: Some(thread),
            },
        );
        self.reattach_views(&tables, &table);
        Ok(if existing.is_some() {
            Applied::Altered
        } else {
            Applied::Created
        })
    }

    /// Plans the views over a table that was just (re)opened against its
    /// current columns and backfills them.
    fn reattach_views(&self, tables: &BTreeMap<String, Running>, table: &Arc<Table>) {
        let mut views = self.views.write().expect("views lock");
        let schemas = table_schemas(tables);
        for view in views.values_mut().filter(|v| v.table == table.name()) {
            let attached = ViewPlan::compile(view.spec.clone(), &schemas)
                .map(Arc::new)
                .and_then(|plan| {
                    table.add_view(plan.clone())?;
                    Ok(plan)
                });
            match attached {
                Ok(plan) => {
                    self.engine.register_view(table.clone(), plan.clone());
                    *view = plan;
                }
                Err(error) => {
                    tracing::error!(view = %view.spec.name, %error, "the view no longer fits its table")
                }
            }
        }
    }

    /// Creates or replaces a materialized view and backfills it from the
    /// table's sealed rows.
    pub fn apply_view(&self, spec: ViewSpec) -> Result<Applied, StoreError> {
        let tables = self.tables.read().expect("tables lock");
        if tables.contains_key(&spec.name) {
            return Err(StoreError::Invalid(format!(
                "view '{}': a table has that name",
                spec.name
            )));
        }
        let mut views = self.views.write().expect("views lock");
        let existing = views.get(&spec.name).cloned();
        if existing.as_ref().is_some_and(|v| v.spec == spec) {
            return Ok(Applied::Unchanged);
        }
        let plan = Arc::new(ViewPlan::compile(spec.clone(), &table_schemas(&tables))?);
        let table = tables[&plan.table].table.clone();
        if let Some(old) = &existing
            && let Some(running) = tables.get(&old.table)
        {
            running.table.remove_view(&spec.name);
        }
        table.add_view(plan.clone())?;
        self.engine.register_view(table, plan.clone());
        views.insert(spec.name.clone(), plan);
        Ok(if existing.is_some() {
            Applied::Altered
        } else {
            Applied::Created
        })
    }

    pub fn views(&self) -> Vec<ViewInfo> {
        let tables = self.tables.read().expect("tables lock");
        let views = self.views.read().expect("views lock");
        views
            .values()
            .filter_map(|view| {
                tables
                    .get(&view.table)
                    .map(|running| running.table.view_info(view))
            })
            .collect()
    }

    pub fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.tables
            .read()
            .expect("tables lock")
            .get(name)
            .map(|r| r.table.clone())
    }

    pub fn tables(&self) -> Vec<Arc<Table>> {
        self.tables
            .read()
            .expect("tables lock")
            .values()
            .map(|r| r.table.clone())
            .collect()
    }

    pub fn limits(&self) -> QueryLimits {
        self.engine.limits()
    }

    pub fn query_stats(&self) -> &stats::QueryStats {
        self.engine.stats()
    }

    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.engine.execute(sql).await
    }

    /// A query in the KQL subset (see [`kql`]).
    pub async fn query_kql(&self, kql: &str) -> Result<QueryResult, QueryError> {
        self.engine.execute_kql(kql).await
    }

    /// Stops every table without sealing, as a crash would (for crash
    /// tests): buffered rows are read from the log again at the next start.
    pub fn halt(&self) {
        self.stop_tables(Table::halt);
    }

    /// Stops every table after sealing what it buffered.
    pub fn shutdown(&self) {
        self.stop_tables(Table::stop);
    }

    fn stop_tables(&self, stop: fn(&Table)) {
        let mut tables = self.tables.write().expect("tables lock");
        for running in tables.values() {
            stop(&running.table);
        }
        for running in tables.values_mut() {
            if let Some(thread) = running.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn table_schemas(tables: &BTreeMap<String, Running>) -> Vec<view::ViewSource> {
    tables
        .iter()
        .map(|(name, running)| view::ViewSource {
            table: name.clone(),
            schema: running.table.schema().clone(),
            row_level_security: running.table.spec().row_level_security.clone(),
        })
        .collect()
}

const COLUMNS_FILE: &str = "columns.json";

/// Column types a table has had, so that an alter cannot reinterpret
/// stored data under another type.
fn check_column_types(dir: &Path, spec: &TableSpec) -> Result<(), StoreError> {
    let Ok(bytes) = std::fs::read(dir.join(COLUMNS_FILE)) else {
        return Ok(());
    };
    let known: HashMap<String, String> = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", dir.join(COLUMNS_FILE).display())))?;
    for column in &spec.columns {
        if let Some(kind) = known.get(&column.name)
            && kind != column.kind.name()
        {
            return Err(StoreError::Invalid(format!(
                "table '{}': column '{}' holds {kind} values; changing it to {} is not supported (add a new column instead)",
                spec.name,
                column.name,
                column.kind.name()
            )));
        }
    }
    Ok(())
}

fn save_column_types(dir: &Path, spec: &TableSpec) -> Result<(), StoreError> {
    let path = dir.join(COLUMNS_FILE);
    let mut known: HashMap<String, String> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    for column in &spec.columns {
        known.insert(column.name.clone(), column.kind.name().to_string());
    }
    let bytes = serde_json::to_vec_pretty(&known).expect("column types serialize");
    freshet_log::write_atomically(&path, &bytes).map_err(|e| StoreError::Io(e.to_string()))
}
