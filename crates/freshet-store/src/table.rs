//! One table: its ingestion loop (source → mapping → dedup → buffer), its
//! sealing of the buffer into extents, merging, retention and the hot cache.
//!
//! Queries read a snapshot: the buffered batches plus the listed extents.
//! A seal swaps buffered rows for the extent that holds them under one
//! write lock, so a query sees every row exactly once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    StringViewArray, TimestampMicrosecondArray, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use freshet_core::Clock;

use crate::extent::{
    Extent, ExtentFile, ExtentMeta, HotExtent, Manifest, extent_path, read_parquet, write_parquet,
};
use crate::mapping::Mapper;
use crate::source::{DeadLetter, DeadLetterSink, Source, SourceError, SourceRecord};
use crate::spec::TableSpec;
use crate::stats::TableStats;
use crate::view::{ViewInfo, ViewPlan};
use crate::{CommitHook, StoreError};

/// How much one read of a partition takes.
const READ_BYTES: usize = 4 << 20;
/// How long the loop waits for new events when there are none.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// How often the sealing thread looks whether the buffer is due.
const UPKEEP_TICK: Duration = Duration::from_millis(20);
/// State batches a view collects from seals before they are merged into one.
const VIEW_COMPACT_AFTER: usize = 16;

/// A batch of buffered rows and the source positions after it.
#[derive(Debug, Clone)]
struct Buffered {
    batch: RecordBatch,
    positions: BTreeMap<u32, i64>,
    ingested_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    buffer: Vec<Buffered>,
    buffer_rows: usize,
    manifest: Manifest,
    hot: HashMap<u64, Arc<HotExtent>>,
    /// Each view's materialized part: accumulator states of every sealed
    /// row, or why folding stopped.
    materialized: HashMap<String, Result<Vec<RecordBatch>, String>>,
}

/// What a query reads of a table at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub schema: SchemaRef,
    pub spec: Arc<TableSpec>,
    pub buffer: Vec<RecordBatch>,
    pub extents: Vec<Extent>,
    /// Rows ingested before this are past retention and not shown.
    pub retention_cutoff_ms: Option<i64>,
}

pub struct Table {
    name: String,
    /// Swapped whole when only policies change (`set_policies`).
    spec: RwLock<Arc<TableSpec>>,
    schema: SchemaRef,
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    /// Held while a new manifest is computed and written (seal, merge, retention).
    committing: Mutex<()>,
    pub stats: TableStats,
    stop: AtomicBool,
    halted: AtomicBool,
    lag: AtomicU64,
    commit_hook: Mutex<Option<CommitHook>>,
    views: RwLock<Vec<Arc<ViewPlan>>>,
    /// Held while the hot cache is brought in line with the caching policy.
    refreshing: Mutex<()>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Summary for `GET /api/v1/tables`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableInfo {
    pub name: String,
    pub topic: String,
    pub group: String,
    pub rows: u64,
    pub buffered_rows: u64,
    pub extents: usize,
    pub hot_extents: usize,
    pub extent_bytes: u64,
    /// Bytes (on disk) of the extents the caching policy keeps in memory.
    pub hot_extent_bytes: u64,
    pub lag: u64,
    pub columns: Vec<ColumnInfo>,
    pub time_column: Option<String>,
    pub dedup: Option<String>,
    pub dedup_window_ms: Option<i64>,
    pub dedup_max_keys: Option<usize>,
    pub retention_ms: Option<i64>,
    pub hot_ms: Option<i64>,
    /// The row-level security predicate queries and views see rows through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_level_security: Option<String>,
    pub dead_letter_topic: String,
    pub ingested_rows: u64,
    pub duplicates_dropped: u64,
    /// Keys the dedup window forgot early to stay within `dedup_max_keys`.
    pub dedup_keys_forgotten: u64,
    pub dead_letters: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl Table {
    /// Opens (or creates) the table's directory and loads its manifest and
    /// hot extents.
    pub fn open(
        spec: TableSpec,
        dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        spec.validate().map_err(StoreError::Invalid)?;
        let manifest = Manifest::open(dir)?;
        let schema = spec.schema();
        let table = Arc::new(Self {
            name: spec.name.clone(),
            spec: RwLock::new(Arc::new(spec)),
            schema,
            dir: dir.to_path_buf(),
            clock,
            state: RwLock::new(State {
                manifest,
                ..State::default()
            }),
            committing: Mutex::new(()),
            stats: TableStats::default(),
            stop: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            lag: AtomicU64::new(0),
            commit_hook: Mutex::new(None),
            views: RwLock::new(Vec::new()),
            refreshing: Mutex::new(()),
        });
        table.refresh_hot_cache()?;
        Ok(table)
    }

    pub fn set_commit_hook(&self, hook: CommitHook) {
        *self.commit_hook.lock().expect("hook lock") = Some(hook);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn spec(&self) -> Arc<TableSpec> {
        self.spec.read().expect("spec lock").clone()
    }

    /// Takes new policies (retention, caching, sealing, extent span) while
    /// ingestion runs: nothing is reloaded or rebuilt, and the caching
    /// policy takes effect at once. Any other change needs the table
    /// reopened (`spec.same_but_policies` tells which).
    pub fn set_policies(&self, spec: TableSpec) -> Result<(), StoreError> {
        spec.validate().map_err(StoreError::Invalid)?;
        if !spec.same_but_policies(&self.spec()) {
            return Err(StoreError::Invalid(format!(
                "table '{}': more than its policies changed",
                self.name
            )));
        }
        *self.spec.write().expect("spec lock") = Arc::new(spec);
        // The policy is in place either way; the sealing thread's next
        // refresh tries again.
        if let Err(error) = self.refresh_hot_cache() {
            tracing::warn!(table = %self.name, %error, "applying the caching policy failed");
        }
        Ok(())
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The durable source positions (what the consumer group has committed).
    pub fn committed_positions(&self) -> BTreeMap<u32, i64> {
        self.state
            .read()
            .expect("table lock")
            .manifest
            .positions
            .clone()
    }

    pub fn snapshot(&self) -> Snapshot {
        let spec = self.spec();
        let state = self.state.read().expect("table lock");
        // Files are taken while the manifest cannot change, so a file
        // retired after this snapshot stays until the snapshot is dropped.
        let extents = state
            .manifest
            .extents
            .iter()
            .map(|meta| Extent {
                meta: meta.clone(),
                file: ExtentFile::hold(extent_path(&self.dir, meta.id)),
                hot: state.hot.get(&meta.id).cloned(),
            })
            .collect();
        Snapshot {
            schema: self.schema.clone(),
            retention_cutoff_ms: spec.retention_ms.map(|r| self.clock.now_ms() - r),
            spec,
            buffer: state
                .buffer
                .iter()
                .filter(|b| b.batch.num_rows() > 0)
                .map(|b| b.batch.clone())
                .collect(),
            extents,
        }
    }

    pub fn info(&self) -> TableInfo {
        let spec = self.spec();
        let state = self.state.read().expect("table lock");
        let extent_rows: u64 = state.manifest.extents.iter().map(|e| e.rows).sum();
        TableInfo {
            name: self.name.clone(),
            topic: spec.topic.clone(),
            group: spec.group.clone(),
            rows: extent_rows + state.buffer_rows as u64,
            buffered_rows: state.buffer_rows as u64,
            extents: state.manifest.extents.len(),
            hot_extents: state.hot.len(),
            extent_bytes: state.manifest.extents.iter().map(|e| e.bytes).sum(),
            hot_extent_bytes: state
                .manifest
                .extents
                .iter()
                .filter(|e| state.hot.contains_key(&e.id))
                .map(|e| e.bytes)
                .sum(),
            lag: self.lag.load(Ordering::Relaxed),
            columns: spec
                .columns
                .iter()
                .map(|c| ColumnInfo {
                    name: c.name.clone(),
                    path: c.path.join("."),
                    kind: c.kind.name(),
                })
                .collect(),
            time_column: spec.time_column.clone(),
            dedup: spec.dedup.as_ref().map(|d| d.column.clone()),
            dedup_window_ms: spec.dedup.as_ref().map(|d| d.window_ms),
            dedup_max_keys: spec.dedup.as_ref().map(|d| d.max_keys),
            retention_ms: spec.retention_ms,
            hot_ms: spec.hot_ms,
            row_level_security: spec.row_level_security.clone(),
            dead_letter_topic: spec.dead_letter_topic.clone(),
            ingested_rows: self.stats.rows_ingested.load(Ordering::Relaxed),
            duplicates_dropped: self.stats.duplicates_dropped.load(Ordering::Relaxed),
            dedup_keys_forgotten: self.stats.dedup_keys_forgotten.load(Ordering::Relaxed),
            dead_letters: self.stats.dead_letters.load(Ordering::Relaxed),
        }
    }

    /// Asks the ingestion loop to finish (it seals what it buffered).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Asks the ingestion loop to finish without sealing, as a crash
    /// would leave it: buffered rows are read again at the next start.
    pub fn halt(&self) {
        self.halted.store(true, Ordering::Release);
        self.stop.store(true, Ordering::Release);
    }

    /// Runs ingestion until `stop`; seals what is buffered before returning.
    ///
    /// Sealing and maintenance (retention, the hot cache, merging) run on
    /// a thread of their own beside ingestion: writing an extent takes
    /// seconds for a million rows, and rows arriving meanwhile must still
    /// become queryable at once. The rows being sealed stay in the buffer,
    /// visible to queries, until the extent holding them is committed.
    pub fn run(
        self: &Arc<Self>,
        mut source: Box<dyn Source>,
        mut dead_letters: Box<dyn DeadLetterSink>,
    ) {
        let mut ingest = match Ingest::new(self, dead_letters.as_mut()) {
            Ok(ingest) => ingest,
            Err(error) => {
                tracing::error!(table = %self.name, %error, "the table cannot start ingesting");
                return;
            }
        };
        let ingesting = AtomicBool::new(true);
        std::thread::scope(|scope| {
            // Tells the sealing thread to end however ingestion ends
            // (also by a panic, which the scope would otherwise wait on).
            struct Ended<'a>(&'a AtomicBool);
            impl Drop for Ended<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let _ended = Ended(&ingesting);
            let upkeep = std::thread::Builder::new()
                .name(format!("freshet-seal-{}", self.name))
                .spawn_scoped(scope, || self.upkeep(&ingesting))
                .inspect_err(|error| {
                    tracing::error!(table = %self.name, %error, "cannot start the sealing thread; ingestion seals itself");
                })
                .ok();
            self.ingest_until_stopped(
                &mut ingest,
                source.as_mut(),
                dead_letters.as_mut(),
                upkeep.as_ref(),
            );
        });
        if !self.halted.load(Ordering::Acquire)
            && let Err(error) = self.seal()
        {
            tracing::error!(table = %self.name, %error, "final seal failed; the rows will be read again");
        }
    }

    /// The ingestion loop. Without a sealing thread (it could not start,
    /// or it ended), the loop seals and maintains the table itself.
    fn ingest_until_stopped(
        &self,
        ingest: &mut Ingest,
        source: &mut dyn Source,
        dead_letters: &mut dyn DeadLetterSink,
        upkeep: Option<&std::thread::ScopedJoinHandle<'_, ()>>,
    ) {
        let mut last_lag = self.clock.now_ms();
        let mut last_maintenance = self.clock.now_ms();
        let mut records = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let progressed = match ingest.poll(self, source, dead_letters, &mut records) {
                Ok(progressed) => progressed,
                Err(error) => {
                    tracing::warn!(table = %self.name, %error, "ingestion step failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    false
                }
            };
            if upkeep.is_none_or(|thread| thread.is_finished()) {
                self.upkeep_step(&mut last_maintenance);
            }
            let now = self.clock.now_ms();
            if now - last_lag >= 1_000 {
                last_lag = now;
                let mut lag = 0;
                for (&partition, &position) in &ingest.positions {
                    if let Ok(end) = source.end_offset(partition) {
                        lag += (end - position).max(0) as u64;
                    }
                }
                self.lag.store(lag, Ordering::Relaxed);
            }
            if !progressed {
                let partition = ingest.positions.keys().next().copied();
                match partition {
                    Some(partition) if ingest.positions.len() == 1 => {
                        source.wait(partition, ingest.positions[&partition], IDLE_WAIT)
                    }
                    _ => std::thread::sleep(IDLE_WAIT),
                }
            }
        }
    }

    /// The sealing thread: seals when the buffer is due and maintains the
    /// table once a second, while `ingesting`. A panic ends it with a
    /// log line; ingestion then does this work itself.
    fn upkeep(&self, ingesting: &AtomicBool) {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut last_maintenance = self.clock.now_ms();
            while ingesting.load(Ordering::Acquire) && !self.stop.load(Ordering::Acquire) {
                if !self.upkeep_step(&mut last_maintenance) {
                    std::thread::sleep(UPKEEP_TICK);
                }
            }
        }));
        if run.is_err() {
            tracing::error!(table = %self.name, "the sealing thread failed; ingestion seals itself");
        }
    }

    /// Seals if the buffer is due, then maintains the table if a second
    /// has passed since `last_maintenance`; whether it did either.
    fn upkeep_step(&self, last_maintenance: &mut i64) -> bool {
        let mut worked = false;
        if self.should_seal(self.clock.now_ms()) {
            worked = true;
            if let Err(error) = self.seal() {
                tracing::error!(table = %self.name, %error, "sealing failed; rows stay buffered");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        let now = self.clock.now_ms();
        if now - *last_maintenance >= 1_000 {
            worked = true;
            *last_maintenance = now;
            if let Err(error) = self.maintain() {
                tracing::warn!(table = %self.name, %error, "table maintenance failed");
            }
        }
        worked
    }

    fn should_seal(&self, now: i64) -> bool {
        let state = self.state.read().expect("table lock");
        let Some(oldest) = state.buffer.first() else {
            return false;
        };
        let seal = self.spec().seal;
        state.buffer_rows >= seal.max_rows || now - oldest.ingested_ms >= seal.max_age_ms
    }

    /// Whether ingestion waits for a seal before reading more: at twice
    /// the rows that start one, so that a seal in progress (whose rows
    /// stay buffered until it commits) does not stop ingestion.
    fn buffer_full(&self) -> bool {
        self.state.read().expect("table lock").buffer_rows >= 2 * self.spec().seal.max_rows
    }

    /// Makes the buffered rows an extent (one per time partition) and
    /// commits the positions after them.
    pub fn seal(&self) -> Result<(), StoreError> {
        let _commit = self.committing.lock().expect("commit lock");
        let (taken, mut manifest) = {
            let state = self.state.read().expect("table lock");
            (state.buffer.clone(), state.manifest.clone())
        };
        let Some(last) = taken.last() else {
            return Ok(());
        };
        let positions = last.positions.clone();
        let batches: Vec<RecordBatch> = taken
            .iter()
            .map(|b| b.batch.clone())
            .filter(|b| b.num_rows() > 0)
            .collect();
        let mut new_extents = Vec::new();
        if !batches.is_empty() {
            let all = concat_batches(&self.schema, &batches)
                .map_err(|e| StoreError::Io(e.to_string()))?;
            for part in self.split_by_time(all)? {
                let id = manifest.next_extent_id;
                manifest.next_extent_id += 1;
                let meta = self.write_extent(id, &part)?;
                let hot =
                    HotExtent::written(part, &extent_path(&self.dir, id), &self.bloom_columns())?;
                new_extents.push((meta, Arc::new(hot)));
            }
        }
        manifest.positions.extend(positions);
        manifest
            .extents
            .extend(new_extents.iter().map(|(meta, _)| meta.clone()));
        manifest.save(&self.dir)?;
        let views = self.views.read().expect("views lock").clone();
        let folded: Vec<_> = views
            .iter()
            .map(|view| {
                if batches.is_empty() {
                    Ok(Vec::new())
                } else {
                    view.fold(batches.clone()).map_err(|e| e.to_string())
                }
            })
            .collect();
        let mut state = self.state.write().expect("table lock");
        let sealed_rows: usize = taken.iter().map(|b| b.batch.num_rows()).sum();
        state.buffer.drain(..taken.len());
        state.buffer_rows -= sealed_rows;
        for (meta, part) in new_extents {
            state.hot.insert(meta.id, part);
        }
        // The sealed rows leave the buffer (the views' delta) and enter the
        // views' materialized parts under the same lock.
        for (view, folded) in views.iter().zip(folded) {
            let Some(Ok(materialized)) = state.materialized.get_mut(&view.spec.name) else {
                continue;
            };
            match folded {
                Ok(batches) => materialized.extend(batches),
                Err(error) => {
                    tracing::error!(view = %view.spec.name, %error, "the view cannot fold new rows; it answers with this error until re-applied");
                    state.materialized.insert(
                        view.spec.name.clone(),
                        Err(format!(
                            "view '{}' stopped updating: {error}",
                            view.spec.name
                        )),
                    );
                }
            }
        }
        let committed = manifest.positions.clone();
        state.manifest = manifest;
        drop(state);
        for view in &views {
            self.compact_view(view);
        }
        self.stats.seals.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = self.commit_hook.lock().expect("hook lock").as_ref() {
            let spec = self.spec();
            hook(&spec.group, &spec.topic, &committed);
        }
        Ok(())
    }

    /// Merges a view's collected state batches into one once there are many.
    /// Runs under the commit lock, so no seal adds batches meanwhile.
    fn compact_view(&self, view: &ViewPlan) {
        let batches = match self
            .state
            .read()
            .expect("table lock")
            .materialized
            .get(&view.spec.name)
        {
            Some(Ok(batches)) if batches.len() > VIEW_COMPACT_AFTER => batches.clone(),
            _ => return,
        };
        match view.compact(&batches) {
            Ok(merged) => {
                let mut state = self.state.write().expect("table lock");
                if let Some(Ok(current)) = state.materialized.get_mut(&view.spec.name) {
                    current.splice(..batches.len(), [merged]);
                }
            }
            Err(error) => {
                tracing::warn!(view = %view.spec.name, %error, "merging a view's states failed; they stay apart")
            }
        }
    }

    /// Adds (or replaces) a view over this table and folds in every row
    /// the table's extents hold (the backfill); buffered rows are the
    /// view's delta until they are sealed.
    pub fn add_view(&self, view: Arc<ViewPlan>) -> Result<(), StoreError> {
        let _commit = self.committing.lock().expect("commit lock");
        let extents = self.snapshot().extents;
        let mut states = Vec::new();
        for extent in extents {
            let rows = match &extent.hot {
                Some(hot) => hot.batches().to_vec(),
                None => read_parquet(extent.file.path(), &self.schema)?,
            };
            states.extend(
                view.fold(rows)
                    .map_err(|e| StoreError::Invalid(format!("view '{}': {e}", view.spec.name)))?,
            );
            if states.len() > VIEW_COMPACT_AFTER {
                states =
                    vec![view.compact(&states).map_err(|e| {
                        StoreError::Invalid(format!("view '{}': {e}", view.spec.name))
                    })?];
            }
        }
        let name = view.spec.name.clone();
        let mut views = self.views.write().expect("views lock");
        views.retain(|v| v.spec.name != name);
        views.push(view);
        self.state
            .write()
            .expect("table lock")
            .materialized
            .insert(name, Ok(states));
        Ok(())
    }

    pub fn remove_view(&self, name: &str) {
        let _commit = self.committing.lock().expect("commit lock");
        self.views
            .write()
            .expect("views lock")
            .retain(|v| v.spec.name != name);
        self.state
            .write()
            .expect("table lock")
            .materialized
            .remove(name);
    }

    /// A view's materialized states and its delta (the buffered rows), read together.
    pub fn view_snapshot(
        &self,
        name: &str,
    ) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>), String> {
        let state = self.state.read().expect("table lock");
        let materialized = match state.materialized.get(name) {
            Some(Ok(batches)) => batches.clone(),
            Some(Err(error)) => return Err(error.clone()),
            None => {
                return Err(format!("view '{name}' is not on table '{}'", self.name));
            }
        };
        let delta = state
            .buffer
            .iter()
            .filter(|b| b.batch.num_rows() > 0)
            .map(|b| b.batch.clone())
            .collect();
        Ok((materialized, delta))
    }

    pub fn view_info(&self, view: &ViewPlan) -> ViewInfo {
        let state = self.state.read().expect("table lock");
        let (materialized_rows, error) = match state.materialized.get(&view.spec.name) {
            Some(Ok(batches)) => (batches.iter().map(|b| b.num_rows() as u64).sum(), None),
            Some(Err(error)) => (0, Some(error.clone())),
            None => (0, Some("not ready".to_string())),
        };
        ViewInfo {
            name: view.spec.name.clone(),
            table: self.name.clone(),
            query: view.spec.query.clone(),
            materialized_rows,
            delta_rows: state.buffer_rows as u64,
            error,
        }
    }

    /// The columns whose extents carry bloom filters: the dedup key.
    fn bloom_columns(&self) -> Vec<String> {
        self.spec()
            .dedup
            .iter()
            .map(|dedup| dedup.column.clone())
            .collect()
    }

    fn write_extent(&self, id: u64, batch: &RecordBatch) -> Result<ExtentMeta, StoreError> {
        let path = extent_path(&self.dir, id);
        let bytes = write_parquet(
            &path,
            &self.schema,
            std::slice::from_ref(batch),
            &self.bloom_columns(),
        )?;
        let ingestion = batch
            .column(self.schema.fields().len() - 1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("the last column is the ingestion time");
        let (min_event_us, max_event_us) = match self.time_column(batch) {
            Some(times) => (
                datafusion::arrow::compute::min(times),
                datafusion::arrow::compute::max(times),
            ),
            None => (None, None),
        };
        Ok(ExtentMeta {
            id,
            rows: batch.num_rows() as u64,
            bytes,
            min_ingestion_ms: datafusion::arrow::compute::min(ingestion).unwrap_or(0),
            max_ingestion_ms: datafusion::arrow::compute::max(ingestion).unwrap_or(0),
            min_event_us,
            max_event_us,
            created_ms: self.clock.now_ms(),
        })
    }

    fn time_column<'a>(&self, batch: &'a RecordBatch) -> Option<&'a TimestampMicrosecondArray> {
        let spec = self.spec();
        batch
            .column_by_name(spec.time_column.as_ref()?)?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
    }

    /// Splits rows by event-time partition (`extent_span_ms` wide); rows
    /// without an event time go with the first partition.
    fn split_by_time(&self, batch: RecordBatch) -> Result<Vec<RecordBatch>, StoreError> {
        let Some(times) = self.time_column(&batch) else {
            return Ok(vec![batch]);
        };
        let span_us = self.spec().extent_span_ms * 1000;
        let bins: Vec<Option<i64>> = times
            .iter()
            .map(|t| t.map(|t| t.div_euclid(span_us)))
            .collect();
        let mut distinct: Vec<i64> = bins.iter().flatten().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() <= 1 {
            return Ok(vec![batch]);
        }
        let first = distinct[0];
        distinct
            .iter()
            .map(|&bin| {
                let mask: BooleanArray = bins
                    .iter()
                    .map(|b| Some(b.unwrap_or(first) == bin))
                    .collect();
                filter_record_batch(&batch, &mask).map_err(|e| StoreError::Io(e.to_string()))
            })
            .collect()
    }

    /// Retention, the hot cache and merging.
    pub fn maintain(&self) -> Result<(), StoreError> {
        self.apply_retention()?;
        self.refresh_hot_cache()?;
        self.merge_small_extents()?;
        Ok(())
    }

    /// Drops extents whose every row is past the soft-delete period.
    pub fn apply_retention(&self) -> Result<usize, StoreError> {
        let Some(retention) = self.spec().retention_ms else {
            return Ok(0);
        };
        let _commit = self.committing.lock().expect("commit lock");
        let cutoff = self.clock.now_ms() - retention;
        let mut manifest = self.state.read().expect("table lock").manifest.clone();
        let (expired, kept): (Vec<_>, Vec<_>) = manifest
            .extents
            .drain(..)
            .partition(|e| e.max_ingestion_ms < cutoff);
        if expired.is_empty() {
            return Ok(0);
        }
        manifest.extents = kept;
        manifest.save(&self.dir)?;
        {
            let mut state = self.state.write().expect("table lock");
            for extent in &expired {
                state.hot.remove(&extent.id);
            }
            state.manifest = manifest;
        }
        for extent in &expired {
            ExtentFile::retire(&extent_path(&self.dir, extent.id));
        }
        self.stats
            .extents_dropped
            .fetch_add(expired.len() as u64, Ordering::Relaxed);
        Ok(expired.len())
    }

    /// Keeps extents with rows inside the hot window in memory; evicts the rest.
    pub fn refresh_hot_cache(&self) -> Result<(), StoreError> {
        // One refresh at a time (the sealing thread's and a policy
        // change's), each with the policy current when it starts.
        let _refreshing = self.refreshing.lock().expect("refresh lock");
        let now = self.clock.now_ms();
        let hot_ms = self.spec().hot_ms;
        let is_hot =
            |meta: &ExtentMeta| hot_ms.is_none_or(|hot| meta.max_ingestion_ms >= now - hot);
        let (to_load, to_evict): (Vec<(u64, Arc<ExtentFile>)>, Vec<u64>) = {
            let state = self.state.read().expect("table lock");
            // Held, so that a merge meanwhile does not remove them.
            let to_load = state
                .manifest
                .extents
                .iter()
                .filter(|m| is_hot(m) && !state.hot.contains_key(&m.id))
                .map(|m| (m.id, ExtentFile::hold(extent_path(&self.dir, m.id))))
                .collect();
            let to_evict = state
                .hot
                .keys()
                .filter(|id| {
                    state
                        .manifest
                        .extents
                        .iter()
                        .find(|m| m.id == **id)
                        .is_none_or(|m| !is_hot(m))
                })
                .copied()
                .collect();
            (to_load, to_evict)
        };
        let mut loaded = Vec::new();
        let bloom_columns = self.bloom_columns();
        for (id, file) in to_load {
            loaded.push((
                id,
                HotExtent::read(file.path(), &self.schema, &bloom_columns)?,
            ));
        }
        let mut state = self.state.write().expect("table lock");
        for id in to_evict {
            state.hot.remove(&id);
        }
        for (id, hot) in loaded {
            if state.manifest.extents.iter().any(|m| m.id == id) {
                state.hot.insert(id, Arc::new(hot));
            }
        }
        Ok(())
    }

    /// Merges small extents of the same time partition: at least four, or
    /// at least two when the newest is older than five seal intervals.
    pub fn merge_small_extents(&self) -> Result<usize, StoreError> {
        let seal = self.spec().seal;
        let now = self.clock.now_ms();
        let span_us = self.spec().extent_span_ms * 1000;
        let chosen: Vec<ExtentMeta> = {
            let state = self.state.read().expect("table lock");
            let mut by_bin: BTreeMap<Option<i64>, Vec<&ExtentMeta>> = BTreeMap::new();
            for meta in &state.manifest.extents {
                if (meta.rows as usize) < seal.merge_below_rows {
                    by_bin
                        .entry(meta.min_event_us.map(|t| t.div_euclid(span_us)))
                        .or_default()
                        .push(meta);
                }
            }
            let mut chosen = Vec::new();
            for group in by_bin.into_values() {
                let newest = group.iter().map(|m| m.created_ms).max().unwrap_or(now);
                let quiet = now - newest >= 5 * seal.max_age_ms;
                if group.len() >= 4 || (group.len() >= 2 && quiet) {
                    let mut rows = 0usize;
                    for meta in group.into_iter().take(seal.max_extents_to_merge) {
                        if rows + meta.rows as usize > 4 * seal.merge_below_rows
                            && !chosen.is_empty()
                        {
                            break;
                        }
                        rows += meta.rows as usize;
                        chosen.push(meta.clone());
                    }
                    break;
                }
            }
            chosen
        };
        if chosen.len() < 2 {
            return Ok(0);
        }
        let mut batches = Vec::new();
        for meta in &chosen {
            let hot = self
                .state
                .read()
                .expect("table lock")
                .hot
                .get(&meta.id)
                .cloned();
            match hot {
                Some(hot) => batches.extend(hot.batches().iter().cloned()),
                None => batches.extend(read_parquet(
                    &extent_path(&self.dir, meta.id),
                    &self.schema,
                )?),
            }
        }
        let merged =
            concat_batches(&self.schema, &batches).map_err(|e| StoreError::Io(e.to_string()))?;
        let _commit = self.committing.lock().expect("commit lock");
        let mut manifest = self.state.read().expect("table lock").manifest.clone();
        if !chosen
            .iter()
            .all(|c| manifest.extents.iter().any(|m| m.id == c.id))
        {
            return Ok(0); // retention dropped one meanwhile; try again later
        }
        let id = manifest.next_extent_id;
        manifest.next_extent_id += 1;
        let mut meta = self.write_extent(id, &merged)?;
        let merged = Arc::new(HotExtent::written(
            merged,
            &extent_path(&self.dir, id),
            &self.bloom_columns(),
        )?);
        meta.min_ingestion_ms = chosen
            .iter()
            .map(|m| m.min_ingestion_ms)
            .min()
            .unwrap_or(meta.min_ingestion_ms);
        manifest
            .extents
            .retain(|m| !chosen.iter().any(|c| c.id == m.id));
        let at = manifest.extents.partition_point(|m| m.id < chosen[0].id);
        manifest.extents.insert(at, meta.clone());
        manifest.save(&self.dir)?;
        {
            let mut state = self.state.write().expect("table lock");
            for old in &chosen {
                state.hot.remove(&old.id);
            }
            let is_hot = self
                .spec()
                .hot_ms
                .is_none_or(|hot| meta.max_ingestion_ms >= now - hot);
            if is_hot {
                state.hot.insert(id, merged);
            }
            state.manifest = manifest;
        }
        for old in &chosen {
            ExtentFile::retire(&extent_path(&self.dir, old.id));
        }
        self.stats.merges.fetch_add(1, Ordering::Relaxed);
        Ok(chosen.len())
    }

    fn push(&self, buffered: Buffered) {
        let mut state = self.state.write().expect("table lock");
        state.buffer_rows += buffered.batch.num_rows();
        state.buffer.push(buffered);
    }
}

/// The ingestion loop's working state: positions read so far, the mapper,
/// the dedup window and how far dead letters were already sent.
struct Ingest {
    mapper: Mapper,
    positions: BTreeMap<u32, i64>,
    dedup: Option<DedupWindow>,
    dead_letter_marks: BTreeMap<u32, i64>,
}

impl Ingest {
    fn new(table: &Table, dead_letters: &mut dyn DeadLetterSink) -> Result<Self, StoreError> {
        let mapper = Mapper::new(&table.spec()).map_err(StoreError::Invalid)?;
        let positions = table.committed_positions();
        let spec = table.spec();
        let dedup = match &spec.dedup {
            None => None,
            Some(dedup) => {
                let column = spec.column_index(&dedup.column).expect("validated");
                let mut window = DedupWindow::new(dedup.window_ms, dedup.max_keys, column);
                window.rebuild(table)?;
                Some(window)
            }
        };
        let dead_letter_marks = dead_letters
            .sent_marks(&table.name)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Self {
            mapper,
            positions,
            dedup,
            dead_letter_marks,
        })
    }

    /// Reads once from every partition; true when anything was read.
    fn poll(
        &mut self,
        table: &Table,
        source: &mut dyn Source,
        dead_letters: &mut dyn DeadLetterSink,
        records: &mut Vec<SourceRecord>,
    ) -> Result<bool, SourceError> {
        let partitions = source.partitions()?;
        let mut progressed = false;
        for partition in partitions {
            if table.buffer_full() {
                // Back-pressure: the sealing thread catches up first.
                break;
            }
            let position = *self.positions.entry(partition).or_insert(0);
            records.clear();
            let next = match source.read(partition, position, READ_BYTES, records) {
                Ok(next) => next,
                Err(SourceError::Truncated { start, .. }) => {
                    tracing::warn!(table = %table.name, partition, lost = start - position,
                        "events were deleted by the topic's retention before the table read them");
                    table
                        .stats
                        .events_missed
                        .fetch_add((start - position) as u64, Ordering::Relaxed);
                    self.positions.insert(partition, start);
                    continue;
                }
                Err(error) => return Err(error),
            };
            if next == position && records.is_empty() {
                continue;
            }
            progressed = true;
            self.ingest(table, records, dead_letters)?;
            self.positions.insert(partition, next);
            // The positions after this read, committed with the rows before them.
            table.push(Buffered {
                batch: RecordBatch::new_empty(table.schema.clone()),
                positions: self.positions.clone(),
                ingested_ms: table.clock.now_ms(),
            });
        }
        Ok(progressed)
    }

    fn ingest(
        &mut self,
        table: &Table,
        records: &[SourceRecord],
        dead_letters: &mut dyn DeadLetterSink,
    ) -> Result<(), SourceError> {
        if records.is_empty() {
            return Ok(());
        }
        let now = table.clock.now_ms();
        let bytes: u64 = records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64))
            .sum();
        let events: Vec<&[u8]> = records
            .iter()
            .map(|r| r.value.as_deref().unwrap_or(b""))
            .collect();
        let mapped = self.mapper.map(&events);
        let letters: Vec<DeadLetter> = mapped
            .rejected
            .iter()
            .map(|(at, reason)| (&records[*at], reason))
            .filter(|(record, _)| {
                self.dead_letter_marks
                    .get(&record.partition)
                    .is_none_or(|&mark| record.offset > mark)
            })
            .map(|(record, reason)| DeadLetter {
                table: table.name.clone(),
                partition: record.partition,
                offset: record.offset,
                reason: if record.value.is_none() {
                    "the event has no value".into()
                } else {
                    reason.clone()
                },
                value: record.value.clone(),
            })
            .collect();
        dead_letters.send(&letters)?;
        table
            .stats
            .dead_letters
            .fetch_add(mapped.rejected.len() as u64, Ordering::Relaxed);
        let mut batch = mapped.batch;
        if let Some(dedup) = &mut self.dedup {
            let keep = dedup.filter(&batch, now);
            let forgotten = dedup.forget_beyond_capacity();
            if forgotten > 0 {
                if table.stats.dedup_keys_forgotten.load(Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        table = %table.name,
                        max_keys = dedup.max_keys,
                        "the dedup window holds more keys than dedup_max_keys: the oldest are \
                         forgotten early, and a repeat of one of them is kept"
                    );
                }
                table
                    .stats
                    .dedup_keys_forgotten
                    .fetch_add(forgotten, Ordering::Relaxed);
            }
            let dropped = keep.false_count();
            if dropped > 0 {
                batch = filter_record_batch(&batch, &keep).expect("filter keeps the schema");
                table
                    .stats
                    .duplicates_dropped
                    .fetch_add(dropped as u64, Ordering::Relaxed);
            }
        }
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        columns.push(
            Arc::new(TimestampMillisecondArray::from(vec![now; rows]).with_timezone("UTC"))
                as ArrayRef,
        );
        let batch = RecordBatch::try_new(table.schema.clone(), columns)
            .expect("mapped columns and ingestion time fit the table");
        // Freshness: from the event's log timestamp to queryable.
        for at in &mapped.kept {
            table
                .stats
                .freshness
                .observe((now - records[*at].timestamp).max(0) as u64);
        }
        table
            .stats
            .rows_ingested
            .fetch_add(rows as u64, Ordering::Relaxed);
        table
            .stats
            .bytes_ingested
            .fetch_add(bytes, Ordering::Relaxed);
        if rows > 0 {
            let last = records.last().expect("not empty");
            let mut positions = self.positions.clone();
            positions.insert(last.partition, last.offset + 1);
            table.push(Buffered {
                batch,
                positions,
                ingested_ms: now,
            });
        }
        Ok(())
    }
}

/// Keys seen within the window of ingestion time, as 128-bit hashes; at
/// most `max_keys` of them, the oldest forgotten first.
struct DedupWindow {
    window_ms: i64,
    max_keys: usize,
    column: usize,
    seen: HashMap<u128, i64>,
    order: VecDeque<(i64, u128)>,
}

impl DedupWindow {
    fn new(window_ms: i64, max_keys: usize, column: usize) -> Self {
        Self {
            window_ms,
            max_keys,
            column,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Forgets the oldest keys until at most `max_keys` are held; returns
    /// how many were forgotten.
    fn forget_beyond_capacity(&mut self) -> u64 {
        let mut forgotten = 0;
        while self.seen.len() > self.max_keys {
            let Some((at, key)) = self.order.pop_front() else {
                break;
            };
            if self.seen.get(&key) == Some(&at) {
                self.seen.remove(&key);
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Loads the keys of extents still inside the window.
    fn rebuild(&mut self, table: &Table) -> Result<(), StoreError> {
        let since = table.clock.now_ms() - self.window_ms;
        let snapshot = table.snapshot();
        for extent in snapshot
            .extents
            .iter()
            .filter(|e| e.meta.max_ingestion_ms >= since)
        {
            let batches = match &extent.hot {
                Some(hot) => hot.batches().to_vec(),
                None => read_parquet(extent.file.path(), &snapshot.schema)?,
            };
            for batch in batches {
                let times = batch
                    .column(batch.num_columns() - 1)
                    .as_any()
                    .downcast_ref::<TimestampMillisecondArray>()
                    .expect("ingestion time")
                    .clone();
                let keys = key_hashes(batch.column(self.column));
                for (key, time) in keys.into_iter().zip(times.values().iter()) {
                    if let Some(key) = key
                        && *time >= since
                    {
                        self.remember(key, *time);
                    }
                }
            }
        }
        let mut entries: Vec<_> = self.order.drain(..).collect();
        entries.sort_unstable();
        self.order = entries.into();
        self.forget_beyond_capacity();
        Ok(())
    }

    fn remember(&mut self, key: u128, at: i64) {
        self.seen.insert(key, at);
        self.order.push_back((at, key));
    }

    /// Which rows are first seen (true) rather than repeats (false).
    fn filter(&mut self, batch: &RecordBatch, now: i64) -> BooleanArray {
        while let Some(&(at, key)) = self.order.front() {
            if at >= now - self.window_ms {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key) == Some(&at) {
                self.seen.remove(&key);
            }
        }
        key_hashes(batch.column(self.column))
            .into_iter()
            .map(|key| match key {
                None => Some(true),
                Some(key) if self.seen.contains_key(&key) => Some(false),
                Some(key) => {
                    self.remember(key, now);
                    Some(true)
                }
            })
            .collect()
    }
}

fn key_hashes(column: &ArrayRef) -> Vec<Option<u128>> {
    use xxhash_rust::xxh3::xxh3_128;
    if let Some(strings) = column.as_any().downcast_ref::<StringViewArray>() {
        return strings
            .iter()
            .map(|s| s.map(|s| xxh3_128(s.as_bytes())))
            .collect();
    }
    if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
        return strings
            .iter()
            .map(|s| s.map(|s| xxh3_128(s.as_bytes())))
            .collect();
    }
    if let Some(longs) = column.as_any().downcast_ref::<Int64Array>() {
        return longs
            .iter()
            .map(|v| v.map(|v| xxh3_128(&v.to_le_bytes())))
            .collect();
    }
    if let Some(ints) = column.as_any().downcast_ref::<Int32Array>() {
        return ints
            .iter()
            .map(|v| v.map(|v| xxh3_128(&v.to_le_bytes())))
            .collect();
    }
    if let Some(times) = column.as_any().downcast_ref::<TimestampMicrosecondArray>() {
        return times
            .iter()
            .map(|v| v.map(|v| xxh3_128(&v.to_le_bytes())))
            .collect();
    }
    // Reals and bools make poor keys; every row is kept.
    vec![None; column.len()]
}
