//! Runs the declared hot-path jobs, each on its own thread: reads its
//! input topics from the log, feeds the engine, streams output rows live
//! (server-sent events) and writes topic outputs exactly once.
//!
//! Exactly once: positions, engine state and the rows for topic outputs
//! produced since the last checkpoint are written together to the job's
//! checkpoint file first, and only then appended to their topics as an
//! idempotent producer whose sequence numbers are in that same file. After
//! a crash the job resumes from the file and appends its rows again: the
//! log answers a batch it already has as a duplicate, so nothing is lost
//! or doubled. Rows produced after the last checkpoint were never
//! appended, and are produced again from the saved positions.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use freshet_log::batch::{self, ProducerStamp, Record as LogRecord};
use freshet_log::{Log, TopicConfig};
use freshet_store::source::{EmbeddedSource, Source, SourceError, SourceRecord};
use freshet_stream::engine::{Engine, OutputRow};
use freshet_stream::event::EventParser;
use freshet_stream::local;
use freshet_stream::plan::JobPlan;
use freshet_stream::value::{Json, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::config::JobSpec;

/// Rows kept per output for a live stream's new subscribers.
const RECENT_ROWS_MAX: usize = 100;
/// Bytes read from one partition per pass.
const READ_BYTES_MAX: usize = 1 << 20;
/// Largest batch appended to an output topic.
const OUTPUT_BATCH_BYTES_MAX: usize = 512 * 1024;
/// How often reference files are checked for changes.
const REFERENCE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Checkpoint durations, upper bounds in milliseconds.
pub const CHECKPOINT_BUCKETS_MS: [u64; 10] = [1, 5, 10, 25, 50, 100, 250, 500, 1_000, 5_000];

/// A job output's live stream.
pub struct OutputStream {
    pub name: String,
    pub topic: Option<String>,
    sender: broadcast::Sender<Arc<str>>,
    recent: Mutex<VecDeque<Arc<str>>>,
}

impl OutputStream {
    /// The recent rows, oldest first, and a receiver for what follows.
    pub fn subscribe(&self) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        let recent = self.recent.lock().expect("recent lock");
        (recent.iter().cloned().collect(), self.sender.subscribe())
    }

    fn publish(&self, row: Arc<str>) {
        let mut recent = self.recent.lock().expect("recent lock");
        if recent.len() == RECENT_ROWS_MAX {
            recent.pop_front();
        }
        recent.push_back(row.clone());
        let _ = self.sender.send(row);
    }
}

/// A job's numbers, read by `/metrics` and `/api/v1/jobs`.
#[derive(Default)]
pub struct JobStats {
    pub input_events: AtomicU64,
    pub output_rows: AtomicU64,
    pub late_adjusted: AtomicU64,
    pub late_dropped: AtomicU64,
    /// Events that were not JSON objects or had no event time.
    pub invalid_events: AtomicU64,
    /// µs since the epoch; i64::MIN before the first.
    pub watermark_micros: AtomicI64,
    pub state_rows: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_duration_buckets: [AtomicU64; CHECKPOINT_BUCKETS_MS.len() + 1],
    pub checkpoint_duration_micros_sum: AtomicU64,
    pub running: AtomicBool,
    pub error: Mutex<Option<String>>,
}

impl JobStats {
    fn record_checkpoint(&self, elapsed: Duration) {
        let ms = elapsed.as_millis() as u64;
        let bucket = CHECKPOINT_BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(CHECKPOINT_BUCKETS_MS.len());
        self.checkpoint_duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.checkpoint_duration_micros_sum
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct JobRuntime {
    pub spec: JobSpec,
    pub plan: Arc<JobPlan>,
    pub stats: JobStats,
    pub outputs: Vec<OutputStream>,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl JobRuntime {
    fn new(spec: &JobSpec, plan: Arc<JobPlan>) -> Arc<Self> {
        let outputs = plan
            .outputs
            .iter()
            .map(|name| OutputStream {
                name: name.clone(),
                topic: spec
                    .output_topics
                    .iter()
                    .find(|(output, _)| output == name)
                    .map(|(_, topic)| topic.clone()),
                sender: broadcast::channel(1024).0,
                recent: Mutex::new(VecDeque::new()),
            })
            .collect();
        Arc::new(JobRuntime {
            spec: spec.clone(),
            plan,
            stats: JobStats {
                watermark_micros: AtomicI64::new(i64::MIN),
                ..JobStats::default()
            },
            outputs,
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        })
    }

    pub fn output(&self, name: &str) -> Option<&OutputStream> {
        self.outputs
            .iter()
            .find(|output| output.name.eq_ignore_ascii_case(name))
    }

    /// Stops the job after a final checkpoint.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().expect("thread lock").take() {
            let _ = thread.join();
        }
    }
}

/// Starts every job of the config.
pub fn start(
    specs: &[JobSpec],
    log: &Arc<Log>,
    data_dir: &Path,
    runtime: tokio::runtime::Handle,
    offsets: freshet_store::CommitHook,
) -> anyhow::Result<Vec<Arc<JobRuntime>>> {
    let mut jobs = Vec::new();
    for spec in specs {
        let plan = Arc::new(
            spec.plan()
                .map_err(|error| anyhow::anyhow!("job '{}': {error}", spec.name))?,
        );
        for (_, topic) in spec.inputs.iter().chain(&spec.output_topics) {
            if log.topic(topic).is_err() {
                log.ensure_topic(topic, TopicConfig::default())
                    .with_context(|| format!("creating topic '{topic}' for job '{}'", spec.name))?;
            }
        }
        if let Some(topic) = &spec.late_events_topic {
            log.ensure_topic(topic, TopicConfig::default())
                .with_context(|| format!("creating topic '{topic}' for job '{}'", spec.name))?;
        }
        let job = JobRuntime::new(spec, plan);
        let mut runner = Runner::open(Arc::clone(&job), Arc::clone(log), data_dir, runtime.clone())
            .with_context(|| format!("starting job '{}'", spec.name))?;
        runner.offsets = Some(Arc::clone(&offsets));
        let thread = std::thread::Builder::new()
            .name(format!("job-{}", spec.name))
            .spawn(move || runner.run())
            .context("spawning a job thread")?;
        *job.thread.lock().expect("thread lock") = Some(thread);
        job.stats.running.store(true, Ordering::SeqCst);
        jobs.push(job);
    }
    Ok(jobs)
}

/// What a checkpoint file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    /// The query the state belongs to.
    query: String,
    id: u64,
    engine: serde_json::Value,
    /// Input name → partition → next offset.
    positions: BTreeMap<String, BTreeMap<u32, i64>>,
    producer_id: i64,
    /// Output topic → next sequence (partition 0).
    sequences: BTreeMap<String, i32>,
    /// Rows to append when this checkpoint is committed.
    pending: Vec<PendingBatch>,
}

/// A checkpoint as written: the same fields as `Checkpoint`, borrowed.
#[derive(Serialize)]
struct CheckpointRef<'a, E: Serialize> {
    query: &'a str,
    id: u64,
    engine: &'a E,
    positions: BTreeMap<&'a str, &'a BTreeMap<u32, i64>>,
    producer_id: i64,
    sequences: &'a BTreeMap<String, i32>,
    pending: &'a [PendingBatch],
}

/// A row for an output topic: (record timestamp ms, JSON row, headers).
type TopicRow = (i64, String, Vec<(String, String)>);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingBatch {
    topic: String,
    base_sequence: i32,
    rows: Vec<TopicRow>,
}

struct Runner {
    job: Arc<JobRuntime>,
    log: Arc<Log>,
    runtime: tokio::runtime::Handle,
    file: PathBuf,
    engine: Engine,
    sources: Vec<EmbeddedSource>,
    /// When each reference file was read (modified time and length).
    reference_versions: Vec<Option<(std::time::SystemTime, u64)>>,
    /// Per input, reads events keeping the fields the query reads.
    parsers: Vec<EventParser>,
    /// The events as read from their input, of the late events the engine
    /// dropped and holds (in its order): the late-events topic gets them
    /// whole, not only the fields the query reads.
    late_payloads: Vec<Bytes>,
    positions: Vec<BTreeMap<u32, i64>>,
    producer_id: i64,
    sequences: BTreeMap<String, i32>,
    /// Rows for topics since the last checkpoint, per topic.
    unsent: BTreeMap<String, Vec<TopicRow>>,
    checkpoint_id: u64,
    dirty: bool,
    /// Mirrors the checkpointed positions into the job's consumer group.
    offsets: Option<freshet_store::CommitHook>,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl Runner {
    fn open(
        job: Arc<JobRuntime>,
        log: Arc<Log>,
        data_dir: &Path,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let folder = data_dir.join("jobs").join(&job.spec.name);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let file = folder.join("checkpoint.json");
        let sources = job
            .spec
            .inputs
            .iter()
            .map(|(_, topic)| EmbeddedSource::new(Arc::clone(&log), topic, runtime.clone()))
            .collect();
        let parsers = (0..job.plan.inputs.len())
            .map(|input| EventParser::new(job.plan.input_fields(input).as_ref()))
            .collect();
        let mut runner = Runner {
            reference_versions: vec![None; job.spec.references.len()],
            parsers,
            late_payloads: Vec::new(),
            engine: Engine::new(Arc::clone(&job.plan), job.spec.policy),
            positions: vec![BTreeMap::new(); job.plan.inputs.len()],
            producer_id: -1,
            sequences: BTreeMap::new(),
            unsent: BTreeMap::new(),
            checkpoint_id: 0,
            dirty: false,
            offsets: None,
            job,
            log,
            runtime,
            file,
            sources,
        };
        runner.load_references()?;
        runner.recover()?;
        if runner.producer_id < 0 {
            runner.producer_id = runner.log.allocate_producer_id()?;
        }
        for (input, source) in runner.sources.iter_mut().enumerate() {
            for partition in source.partitions().unwrap_or_default() {
                runner.positions[input].entry(partition).or_insert(0);
            }
        }
        runner
            .engine
            .set_processing_time(now_micros(), &mut Vec::new());
        for (input, partitions) in runner.positions.iter().enumerate() {
            for partition in partitions.keys() {
                runner.engine.register_partition(input, *partition);
            }
        }
        Ok(runner)
    }

    fn load_references(&mut self) -> anyhow::Result<()> {
        for index in 0..self.job.spec.references.len() {
            self.load_reference(index)?;
        }
        Ok(())
    }

    fn load_reference(&mut self, index: usize) -> anyhow::Result<()> {
        let (name, path) = self.job.spec.references[index].clone();
        let version = file_version(&path);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading reference '{name}' from {}", path.display()))?;
        let csv = path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("csv"));
        let rows = local::read_reference(&text, csv)
            .map_err(|error| anyhow::anyhow!("reference '{name}' ({}): {error}", path.display()))?;
        self.engine.set_reference(index, rows);
        self.reference_versions[index] = version;
        Ok(())
    }

    /// Reloads reference files that changed since they were read; a file
    /// that cannot be read keeps the rows already loaded.
    fn reload_changed_references(&mut self) {
        for index in 0..self.job.spec.references.len() {
            let path = self.job.spec.references[index].1.clone();
            if file_version(&path) == self.reference_versions[index] {
                continue;
            }
            match self.load_reference(index) {
                Ok(()) => {
                    tracing::info!(job = %self.job.spec.name, file = %path.display(), "reference data reloaded")
                }
                Err(error) => {
                    tracing::warn!(job = %self.job.spec.name, "{error:#}; keeping the rows loaded before");
                    self.reference_versions[index] = file_version(&path);
                }
            }
        }
    }

    /// Resumes from the checkpoint file, committing its pending rows.
    fn recover(&mut self) -> anyhow::Result<()> {
        let text = match std::fs::read(&self.file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", self.file.display()));
            }
        };
        let checkpoint: Checkpoint = serde_json::from_slice(&text)
            .with_context(|| format!("{} is damaged", self.file.display()))?;
        self.producer_id = checkpoint.producer_id;
        self.sequences = checkpoint.sequences;
        self.checkpoint_id = checkpoint.id;
        for (input, plan_input) in self.job.plan.inputs.iter().enumerate() {
            if let Some(positions) = checkpoint.positions.get(&plan_input.name) {
                self.positions[input] = positions.clone();
            }
        }
        if checkpoint.query == self.job.spec.query {
            let bytes = serde_json::to_vec(&checkpoint.engine)?;
            self.engine = Engine::restore(Arc::clone(&self.job.plan), self.job.spec.policy, &bytes)
                .map_err(|error| anyhow::anyhow!(error))?;
            self.load_references()?;
        } else {
            tracing::warn!(job = %self.job.spec.name, "the query changed since the last checkpoint: windows start empty, reading resumes at the saved positions");
        }
        self.append(&checkpoint.pending)?;
        tracing::info!(job = %self.job.spec.name, checkpoint = checkpoint.id, "job resumed from its checkpoint");
        Ok(())
    }

    fn run(&mut self) {
        let interval = Duration::from_millis(self.job.spec.checkpoint_interval_ms as u64);
        let mut last_checkpoint = Instant::now();
        let mut last_reference_check = Instant::now();
        let mut out = Vec::new();
        let mut records = Vec::new();
        loop {
            let stopping = self.job.stop.load(Ordering::SeqCst);
            if last_reference_check.elapsed() >= REFERENCE_CHECK_INTERVAL {
                self.reload_changed_references();
                last_reference_check = Instant::now();
            }
            self.engine.set_processing_time(now_micros(), &mut out);
            let mut read_any = false;
            for input in 0..self.sources.len() {
                let partitions: Vec<(u32, i64)> = self.positions[input]
                    .iter()
                    .map(|(p, o)| (*p, *o))
                    .collect();
                for (partition, offset) in partitions {
                    records.clear();
                    match self.sources[input].read(partition, offset, READ_BYTES_MAX, &mut records)
                    {
                        Ok(next) => {
                            self.positions[input].insert(partition, next);
                        }
                        Err(SourceError::Truncated { start, .. }) => {
                            tracing::warn!(job = %self.job.spec.name, partition, offset, start, "input events expired before the job read them; skipping ahead");
                            self.positions[input].insert(partition, start);
                        }
                        Err(error) => {
                            self.fail(format!(
                                "reading input '{}': {error}",
                                self.job.plan.inputs[input].name
                            ));
                            continue;
                        }
                    }
                    read_any |= !records.is_empty();
                    self.push(input, &records, &mut out);
                }
            }
            self.route(&mut out);
            self.publish_stats();
            if stopping || (self.dirty && last_checkpoint.elapsed() >= interval) {
                let started = Instant::now();
                match self.checkpoint() {
                    Ok(()) => self.job.stats.record_checkpoint(started.elapsed()),
                    Err(error) => self.fail(format!("checkpoint failed: {error:#}")),
                }
                last_checkpoint = Instant::now();
            }
            if stopping {
                self.job.stats.running.store(false, Ordering::SeqCst);
                return;
            }
            if !read_any {
                let first = self
                    .positions
                    .first()
                    .and_then(|positions| positions.iter().next())
                    .map(|(p, o)| (*p, *o));
                match first {
                    Some((partition, offset))
                        if self.positions.iter().map(BTreeMap::len).sum::<usize>() == 1 =>
                    {
                        self.sources[0].wait(partition, offset, Duration::from_millis(100));
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    fn push(&mut self, input: usize, records: &[SourceRecord], out: &mut Vec<OutputRow>) {
        for record in records {
            self.dirty = true;
            let Some(value) = &record.value else {
                self.job
                    .stats
                    .invalid_events
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let parsed = match self.parsers[input].parse(value) {
                Ok(parsed) => parsed,
                Err(error) => {
                    self.job
                        .stats
                        .invalid_events
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(job = %self.job.spec.name, offset = record.offset, %error, "skipping an event that is not a JSON object");
                    continue;
                }
            };
            let arrival = record.timestamp.saturating_mul(1_000);
            let late_before = self.engine.late_event_count();
            let pushed = self
                .engine
                .push(input, record.partition, arrival, Arc::new(parsed), out);
            if self.engine.late_event_count() > late_before {
                self.late_payloads.push(value.clone());
            }
            if let Err(error) = pushed {
                self.job
                    .stats
                    .invalid_events
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(job = %self.job.spec.name, offset = record.offset, %error, "skipping an event");
            }
        }
    }

    /// Sends new rows to live streams and queues those for topics.
    /// Records are stamped with the time they were produced (as a Kafka
    /// producer's create time); the row's System.Timestamp() is in the row.
    fn route(&mut self, out: &mut Vec<OutputRow>) {
        let produced_ms = now_micros() / 1_000;
        for row in out.drain(..) {
            let record = Value::Record(Arc::new(row.record));
            let json = serde_json::to_string(&Json(&record)).expect("values serialize");
            let output = &self.job.outputs[row.output];
            if let Some(topic) = &output.topic {
                self.unsent.entry(topic.clone()).or_default().push((
                    produced_ms,
                    json.clone(),
                    Vec::new(),
                ));
            }
            output.publish(Arc::from(json));
            self.dirty = true;
        }
        let late = self.engine.take_late_events();
        let payloads = std::mem::take(&mut self.late_payloads);
        debug_assert_eq!(late.len(), payloads.len());
        if let Some(topic) = &self.job.spec.late_events_topic {
            for (event, payload) in late.into_iter().zip(payloads) {
                // Events are JSON objects, so their bytes are UTF-8.
                let json = String::from_utf8_lossy(&payload).into_owned();
                let headers = vec![
                    ("freshet.job".to_string(), self.job.spec.name.clone()),
                    (
                        "freshet.input".to_string(),
                        self.job.plan.inputs[event.input].name.clone(),
                    ),
                    (
                        "freshet.reason".to_string(),
                        format!(
                            "event time {} behind watermark {}",
                            freshet_stream::time::format_datetime(event.event_time),
                            freshet_stream::time::format_datetime(event.watermark)
                        ),
                    ),
                ];
                self.unsent
                    .entry(topic.clone())
                    .or_default()
                    .push((produced_ms, json, headers));
            }
        }
    }

    fn publish_stats(&self) {
        let counters = self.engine.counters();
        let stats = &self.job.stats;
        stats
            .input_events
            .store(counters.input_events, Ordering::Relaxed);
        stats
            .output_rows
            .store(counters.output_rows, Ordering::Relaxed);
        stats
            .late_adjusted
            .store(counters.late_adjusted, Ordering::Relaxed);
        stats
            .late_dropped
            .store(counters.late_dropped, Ordering::Relaxed);
        stats
            .watermark_micros
            .store(self.engine.watermark(), Ordering::Relaxed);
        stats
            .state_rows
            .store(self.engine.state_size() as u64, Ordering::Relaxed);
    }

    fn fail(&self, message: String) {
        tracing::error!(job = %self.job.spec.name, "{message}");
        *self.job.stats.error.lock().expect("error lock") = Some(message);
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Writes the checkpoint file, then appends its rows to their topics.
    fn checkpoint(&mut self) -> anyhow::Result<()> {
        let mut pending = Vec::new();
        // The queues keep their capacity from one checkpoint to the next.
        for (topic, rows) in &mut self.unsent {
            let mut batch_rows = Vec::new();
            let mut batch_bytes = 0;
            for row in rows.drain(..) {
                let size = row.1.len() + 64;
                if !batch_rows.is_empty() && batch_bytes + size > OUTPUT_BATCH_BYTES_MAX {
                    pending.push(batch(
                        &mut self.sequences,
                        topic,
                        std::mem::take(&mut batch_rows),
                    ));
                    batch_bytes = 0;
                }
                batch_bytes += size;
                batch_rows.push(row);
            }
            if !batch_rows.is_empty() {
                pending.push(batch(&mut self.sequences, topic, batch_rows));
            }
        }
        self.checkpoint_id += 1;
        let checkpoint = CheckpointRef {
            query: &self.job.spec.query,
            id: self.checkpoint_id,
            engine: self.engine.checkpoint_state(),
            positions: self
                .job
                .plan
                .inputs
                .iter()
                .zip(&self.positions)
                .map(|(input, positions)| (input.name.as_str(), positions))
                .collect(),
            producer_id: self.producer_id,
            sequences: &self.sequences,
            pending: &pending,
        };
        write_atomically(&self.file, |file| {
            serde_json::to_writer(file, &checkpoint).map_err(Into::into)
        })?;
        self.append(&pending)?;
        self.dirty = false;
        if let Some(offsets) = &self.offsets {
            let group = self.job.spec.group();
            for ((_, topic), positions) in self.job.spec.inputs.iter().zip(&self.positions) {
                offsets(&group, topic, positions);
            }
        }
        Ok(())
    }

    /// Appends batches as this job's idempotent producer and waits until
    /// they are durable; a batch the log already has is a duplicate.
    fn append(&self, batches: &[PendingBatch]) -> anyhow::Result<()> {
        for pending in batches {
            let records: Vec<LogRecord> = pending
                .rows
                .iter()
                .map(|(timestamp, json, headers)| LogRecord {
                    timestamp: *timestamp,
                    key: None,
                    value: Some(json.clone().into_bytes()),
                    headers: headers
                        .iter()
                        .map(|(key, value)| (key.clone(), Some(value.clone().into_bytes())))
                        .collect(),
                })
                .collect();
            let stamp = ProducerStamp {
                producer_id: self.producer_id,
                producer_epoch: 0,
                base_sequence: pending.base_sequence,
            };
            let partition = self.log.partition(&pending.topic, 0)?;
            let info = partition.append(batch::encode(&records, stamp))?;
            self.runtime
                .block_on(partition.wait_durable(info.last_offset + 1))?;
        }
        Ok(())
    }
}

/// The next batch of `topic`'s rows, numbered after the ones before it.
fn batch(sequences: &mut BTreeMap<String, i32>, topic: &str, rows: Vec<TopicRow>) -> PendingBatch {
    let sequence = sequences.entry(topic.to_string()).or_insert(0);
    let base_sequence = *sequence;
    // Sequences wrap at i32::MAX, as Kafka's do.
    *sequence = ((i64::from(*sequence) + rows.len() as i64) % (i64::from(i32::MAX) + 1)) as i32;
    PendingBatch {
        topic: topic.to_string(),
        base_sequence,
        rows,
    }
}

fn file_version(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Replaces `path` with what `write` writes so that a crash leaves the old
/// file or the new one, never a mix.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let file = std::fs::File::create(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    write(&mut writer)?;
    writer.flush()?;
    writer.get_ref().sync_all()?;
    drop(writer);
    std::fs::rename(&temporary, path)?;
    if let Some(folder) = path.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshet_log::LogOptions;
    use freshet_stream::engine::TimePolicy;

    /// A crash after the checkpoint file is written but before (or after)
    /// its rows are appended: every recovery appends them again, and the
    /// log keeps one copy.
    #[test]
    fn a_checkpoints_rows_land_once_however_often_recovery_runs() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
        log.ensure_topic("readings", TopicConfig::default())
            .unwrap();
        log.ensure_topic("alerts", TopicConfig::default()).unwrap();
        let mut spec =
            JobSpec::new("j", "SELECT a INTO o FROM readings", TimePolicy::default()).unwrap();
        spec.output_topics.push(("o".into(), "alerts".into()));
        let job = JobRuntime::new(&spec, Arc::new(spec.plan().unwrap()));
        let engine = Engine::new(Arc::clone(&job.plan), spec.policy);
        let row = |a: i64| (1_000, format!("{{\"a\":{a}}}"), Vec::new());
        let checkpoint = Checkpoint {
            query: spec.query.clone(),
            id: 1,
            engine: serde_json::from_slice(&engine.checkpoint()).unwrap(),
            positions: BTreeMap::new(),
            producer_id: log.allocate_producer_id().unwrap(),
            sequences: BTreeMap::from([("alerts".to_string(), 2)]),
            pending: vec![PendingBatch {
                topic: "alerts".into(),
                base_sequence: 0,
                rows: vec![row(1), row(2)],
            }],
        };
        let folder = dir.path().join("jobs").join("j");
        std::fs::create_dir_all(&folder).unwrap();
        write_atomically(&folder.join("checkpoint.json"), |file| {
            serde_json::to_writer(file, &checkpoint).map_err(Into::into)
        })
        .unwrap();
        let alerts = log.partition("alerts", 0).unwrap();
        for _ in 0..3 {
            Runner::open(
                Arc::clone(&job),
                Arc::clone(&log),
                dir.path(),
                runtime.handle().clone(),
            )
            .unwrap();
            assert_eq!(alerts.end_offset(), 2);
        }
        // The next checkpoint continues the producer's sequence.
        let mut runner = Runner::open(
            Arc::clone(&job),
            Arc::clone(&log),
            dir.path(),
            runtime.handle().clone(),
        )
        .unwrap();
        runner.unsent.insert("alerts".into(), vec![row(3)]);
        runner.checkpoint().unwrap();
        assert_eq!(alerts.end_offset(), 3);
    }
}
