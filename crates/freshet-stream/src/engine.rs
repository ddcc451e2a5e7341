//! Runs a planned job: events come in per input partition with their
//! arrival time, go through the time policy (late arrival, out of order,
//! adjust or drop), flow through the steps, and come out as output rows.
//! The watermark is the minimum over input partitions of (max event time
//! − out-of-order tolerance); an idle partition stops holding it back
//! after the late-arrival tolerance of processing time. Every step sees
//! the new watermark after the steps before it, so rows a step emits on a
//! watermark reach later steps before those close their own windows.
//! With `TIMESTAMP BY … OVER key` every substream (events with one value
//! of the key) runs on a timeline of its own, as in Stream Analytics: its
//! own partitions' times, watermark and window state, so one slow device
//! holds back only itself. The out-of-order tolerance applies within a
//! substream; the late-arrival tolerance to every event alike.
//! All state is plain data and serializes into a checkpoint.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aggregate::{KeyIndex, WindowState};
use crate::expr::Row;
use crate::plan::{JobPlan, JoinKind, JoinPlan, Projection, StepBody, StepPlan, StreamRef};
use crate::time;
use crate::value::{Record, Value};

/// How often processing time visits every substream.
const SUBSTREAM_SWEEP_MICROS: i64 = 100 * time::MICROS_PER_MILLI;

/// How a job treats event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimePolicy {
    /// Events whose time is this far behind their arrival are late.
    pub late_arrival_tolerance_micros: i64,
    /// How far behind the newest event of its partition an event may be.
    pub out_of_order_tolerance_micros: i64,
    pub on_late: LatePolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatePolicy {
    /// Move the event's time up to the earliest time still accepted.
    Adjust,
    Drop,
}

impl Default for TimePolicy {
    fn default() -> Self {
        Self {
            late_arrival_tolerance_micros: 5 * time::MICROS_PER_SECOND,
            out_of_order_tolerance_micros: 0,
            on_late: LatePolicy::Adjust,
        }
    }
}

/// A row for an output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRow {
    pub output: usize,
    /// System.Timestamp() of the row: event time, or window end.
    pub timestamp: i64,
    pub record: Record,
}

/// An event the time policy dropped, for a late-events output (which
/// writes the event as its input holds it, not the fields read of it).
#[derive(Debug, Clone, PartialEq)]
pub struct LateEvent {
    pub input: usize,
    pub partition: u32,
    pub event_time: i64,
    pub watermark: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub input_events: u64,
    pub output_rows: u64,
    pub late_adjusted: u64,
    pub late_dropped: u64,
    /// Events whose TIMESTAMP BY gave no datetime.
    pub untimed_dropped: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("TIMESTAMP BY gave {found} for this event, not a datetime; the event was dropped")]
    NoEventTime { found: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PartitionTime {
    max_event_time: Option<i64>,
    /// Processing time of the last event (or of registration).
    last_active: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StepState {
    windows: WindowState,
    /// Buffered events of a join of two streams, per side.
    join_sides: [JoinSide; 2],
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct JoinSide {
    #[serde(with = "crate::aggregate::pairs")]
    rows: BTreeMap<(i64, u64), JoinRow>,
    sequence: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JoinRow {
    keys: Vec<Value>,
    record: Arc<Record>,
    matched: bool,
}

/// Everything a checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineState {
    /// The timeline being run: the job's, or while a substream's event is
    /// handled, that substream's (swapped in from `substreams`).
    #[serde(with = "crate::aggregate::pairs")]
    partitions: BTreeMap<(usize, u32), PartitionTime>,
    watermark: i64,
    steps: Vec<StepState>,
    /// With TIMESTAMP BY … OVER: each substream's timeline, by key (in
    /// key order, so that runs are repeatable).
    #[serde(default, with = "crate::aggregate::pairs")]
    substreams: BTreeMap<Vec<Value>, Timeline>,
    pub counters: Counters,
}

/// A substream's own time and state (see `EngineState`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Timeline {
    #[serde(with = "crate::aggregate::pairs")]
    partitions: BTreeMap<(usize, u32), PartitionTime>,
    watermark: i64,
    steps: Vec<StepState>,
}

impl Timeline {
    fn new(steps: usize) -> Self {
        Self {
            partitions: BTreeMap::new(),
            watermark: i64::MIN,
            steps: vec![StepState::default(); steps],
        }
    }
}

struct ReferenceTable {
    rows: Vec<Arc<Record>>,
    /// Per step that joins this table: its equi-key index.
    indexes: HashMap<usize, KeyIndex>,
}

pub struct Engine {
    plan: Arc<JobPlan>,
    policy: TimePolicy,
    /// The inputs are read with TIMESTAMP BY … OVER.
    substreams: bool,
    /// With substreams: when they were last all visited for processing
    /// time, and the earliest watermark and the state rows found then.
    last_sweep: i64,
    swept: (i64, usize),
    /// Per step that projects named columns only, each name once: those
    /// names, shared by all its rows.
    column_names: Vec<Option<Arc<[Arc<str>]>>>,
    /// The steps a watermark can make emit: those with windows or with
    /// a join of two streams.
    watermark_steps: Vec<usize>,
    /// Which steps read each stream, and as which source.
    consumers: Consumers,
    references: Vec<ReferenceTable>,
    processing_time: i64,
    state: EngineState,
    late_events: Vec<LateEvent>,
    /// Reused buffers: a grouping step's keys and arguments, and the
    /// queue of events between steps.
    scratch: (Vec<Value>, Vec<Value>),
    queue: VecDeque<Flow>,
    /// Rows a step made of one event, reused.
    produced: Vec<(i64, Record)>,
}

/// A partition's time record, made when first seen.
fn partition_time(
    partitions: &mut BTreeMap<(usize, u32), PartitionTime>,
    input: usize,
    partition: u32,
    now: i64,
) -> &mut PartitionTime {
    partitions
        .entry((input, partition))
        .or_insert(PartitionTime {
            max_event_time: None,
            last_active: now,
        })
}

/// Which steps read each stream, and as which source (side of a join).
struct Consumers {
    of_inputs: Vec<Vec<(usize, usize)>>,
    of_steps: Vec<Vec<(usize, usize)>>,
}

impl Consumers {
    fn of(&self, stream: StreamRef) -> &[(usize, usize)] {
        match stream {
            StreamRef::Input(input) => &self.of_inputs[input],
            StreamRef::Step(step) => &self.of_steps[step],
            StreamRef::Reference(_) => &[],
        }
    }
}

/// An event on its way between steps.
struct Flow {
    stream: StreamRef,
    time: i64,
    record: Arc<Record>,
}

impl Engine {
    pub fn new(plan: Arc<JobPlan>, policy: TimePolicy) -> Self {
        let state = EngineState {
            partitions: BTreeMap::new(),
            watermark: i64::MIN,
            steps: vec![StepState::default(); plan.steps.len()],
            substreams: BTreeMap::new(),
            counters: Counters::default(),
        };
        Self::with_state(plan, policy, state).expect("a fresh state fits its plan")
    }

    /// Resumes from a checkpoint taken by [`Engine::checkpoint`] for the
    /// same plan.
    pub fn restore(
        plan: Arc<JobPlan>,
        policy: TimePolicy,
        checkpoint: &[u8],
    ) -> Result<Self, String> {
        let state: EngineState = serde_json::from_slice(checkpoint)
            .map_err(|error| format!("unreadable checkpoint: {error}"))?;
        Self::with_state(plan, policy, state)
    }

    fn with_state(
        plan: Arc<JobPlan>,
        policy: TimePolicy,
        state: EngineState,
    ) -> Result<Self, String> {
        if state.steps.len() != plan.steps.len()
            || state
                .substreams
                .values()
                .any(|timeline| timeline.steps.len() != plan.steps.len())
        {
            return Err(format!(
                "the checkpoint has {} steps but the query has {}: it was taken for another query",
                state.steps.len(),
                plan.steps.len()
            ));
        }
        let mut consumers = Consumers {
            of_inputs: vec![Vec::new(); plan.inputs.len()],
            of_steps: vec![Vec::new(); plan.steps.len()],
        };
        for (index, step) in plan.steps.iter().enumerate() {
            for (side, source) in step.sources.iter().enumerate() {
                match source.stream {
                    StreamRef::Input(input) => consumers.of_inputs[input].push((index, side)),
                    StreamRef::Step(step) => consumers.of_steps[step].push((index, side)),
                    StreamRef::Reference(_) => {}
                }
            }
        }
        let references = plan
            .references
            .iter()
            .map(|_| ReferenceTable {
                rows: Vec::new(),
                indexes: HashMap::new(),
            })
            .collect();
        let column_names = plan
            .steps
            .iter()
            .map(|step| match &step.body {
                StepBody::Project(projections) => {
                    let mut names = Vec::with_capacity(projections.len());
                    for projection in projections {
                        match projection {
                            Projection::Column { name, .. } if !names.contains(name) => {
                                names.push(name.clone())
                            }
                            _ => return None,
                        }
                    }
                    Some(Arc::from(names))
                }
                StepBody::Aggregate(_) => None,
            })
            .collect();
        let watermark_steps = plan
            .steps
            .iter()
            .enumerate()
            .filter(|(_, step)| {
                matches!(step.body, StepBody::Aggregate(_))
                    || step.join.as_ref().is_some_and(|join| join.span.is_some())
            })
            .map(|(index, _)| index)
            .collect();
        let substreams = plan.inputs.iter().any(|input| !input.over.is_empty());
        Ok(Self {
            column_names,
            watermark_steps,
            plan,
            policy,
            substreams,
            last_sweep: i64::MIN,
            swept: (i64::MIN, 0),
            consumers,
            references,
            processing_time: i64::MIN,
            state,
            late_events: Vec::new(),
            scratch: Default::default(),
            queue: VecDeque::new(),
            produced: Vec::new(),
        })
    }

    pub fn plan(&self) -> &JobPlan {
        &self.plan
    }

    pub fn checkpoint(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state).expect("engine state always serializes")
    }

    /// The state `checkpoint` serializes, for writing it inside a larger
    /// document without an intermediate copy; `restore` reads it back.
    pub fn checkpoint_state(&self) -> &impl serde::Serialize {
        &self.state
    }

    pub fn counters(&self) -> &Counters {
        &self.state.counters
    }

    /// The job's watermark; with substreams, the earliest of theirs as of
    /// the last time processing time visited them all.
    pub fn watermark(&self) -> i64 {
        if self.substreams {
            return self.swept.0;
        }
        self.state.watermark
    }

    /// Substreams seen so far (0 without TIMESTAMP BY … OVER).
    pub fn substream_count(&self) -> usize {
        self.state.substreams.len()
    }

    /// Rows and events held in windows and join buffers (with substreams,
    /// as of the last time processing time visited them all).
    pub fn state_size(&self) -> usize {
        if self.substreams {
            return self.swept.1;
        }
        Self::steps_size(&self.state.steps)
    }

    fn steps_size(steps: &[StepState]) -> usize {
        steps
            .iter()
            .map(|step| {
                step.windows.size()
                    + step
                        .join_sides
                        .iter()
                        .map(|side| side.rows.len())
                        .sum::<usize>()
            })
            .sum()
    }

    /// Late events dropped and not yet taken.
    pub fn late_event_count(&self) -> usize {
        self.late_events.len()
    }

    pub fn take_late_events(&mut self) -> Vec<LateEvent> {
        std::mem::take(&mut self.late_events)
    }

    /// Replaces the rows of reference input `reference`.
    pub fn set_reference(&mut self, reference: usize, rows: Vec<Record>) {
        let rows: Vec<Arc<Record>> = rows.into_iter().map(Arc::new).collect();
        let mut indexes = HashMap::new();
        for (index, step) in self.plan.steps.iter().enumerate() {
            let Some(join) = &step.join else { continue };
            if step.sources[1].stream != StreamRef::Reference(reference)
                || join.equi_keys.is_empty()
            {
                continue;
            }
            let mut key_index = KeyIndex::new();
            for (position, row) in rows.iter().enumerate() {
                let sources = [None, Some(&**row)];
                let times = [0, 0];
                let context = Row::event(&sources, &times, 0);
                let keys: Vec<Value> = join
                    .equi_keys
                    .iter()
                    .map(|(_, right)| right.eval(&context))
                    .collect();
                if keys.iter().any(Value::is_null) {
                    continue;
                }
                key_index.entry(keys).or_default().push(position);
            }
            indexes.insert(index, key_index);
        }
        self.references[reference] = ReferenceTable { rows, indexes };
    }

    /// Declares a partition of an input before it has events, so that
    /// the watermark waits for it (until it is idle).
    /// With substreams a partition holds back only the substreams that
    /// have events in it, so nothing is declared.
    pub fn register_partition(&mut self, input: usize, partition: u32) {
        if self.substreams {
            return;
        }
        partition_time(
            &mut self.state.partitions,
            input,
            partition,
            self.processing_time,
        );
    }

    /// Sets the processing time (wall clock, µs); idle partitions advance
    /// the watermark from it.
    pub fn set_processing_time(&mut self, now: i64, out: &mut Vec<OutputRow>) {
        self.processing_time = now;
        if self.substreams {
            // Idle substreams advance by processing time in steps of
            // `SUBSTREAM_SWEEP`, so a job with many keys does not visit
            // them all on every read.
            if now != i64::MIN && now < self.last_sweep.saturating_add(SUBSTREAM_SWEEP_MICROS) {
                return;
            }
            self.last_sweep = now;
            let mut swept = (i64::MAX, 0);
            self.each_substream(|engine| {
                engine.update_watermark(out);
                swept.0 = swept.0.min(engine.state.watermark);
                swept.1 += Self::steps_size(&engine.state.steps);
            });
            self.swept = if swept.0 == i64::MAX {
                (i64::MIN, 0)
            } else {
                swept
            };
        } else {
            self.update_watermark(out);
        }
    }

    /// Runs `work` on every substream's timeline in turn.
    fn each_substream(&mut self, mut work: impl FnMut(&mut Self)) {
        let mut substreams = std::mem::take(&mut self.state.substreams);
        for timeline in substreams.values_mut() {
            self.swap_timeline(timeline);
            work(self);
            self.swap_timeline(timeline);
        }
        self.state.substreams = substreams;
    }

    /// Runs `work` on the timeline of substream `key`, made when new.
    fn in_substream<R>(&mut self, key: Vec<Value>, work: impl FnOnce(&mut Self) -> R) -> R {
        let mut timeline = self
            .state
            .substreams
            .remove(&key)
            .unwrap_or_else(|| Timeline::new(self.plan.steps.len()));
        self.swap_timeline(&mut timeline);
        let result = work(self);
        self.swap_timeline(&mut timeline);
        self.state.substreams.insert(key, timeline);
        result
    }

    /// Exchanges the running timeline with `timeline`.
    fn swap_timeline(&mut self, timeline: &mut Timeline) {
        std::mem::swap(&mut self.state.partitions, &mut timeline.partitions);
        std::mem::swap(&mut self.state.watermark, &mut timeline.watermark);
        std::mem::swap(&mut self.state.steps, &mut timeline.steps);
    }

    /// Takes one event of `input`'s `partition` that arrived at
    /// `arrival_time` (µs).
    pub fn push(
        &mut self,
        input: usize,
        partition: u32,
        arrival_time: i64,
        record: Arc<Record>,
        out: &mut Vec<OutputRow>,
    ) -> Result<(), EventError> {
        if self.substreams {
            let sources = [Some(&*record)];
            let times = [arrival_time];
            let context = Row::event(&sources, &times, arrival_time);
            let key: Vec<Value> = self.plan.inputs[input]
                .over
                .iter()
                .map(|field| field.eval(&context))
                .collect();
            return self.in_substream(key, |engine| {
                engine.push_timed(input, partition, arrival_time, record, out)
            });
        }
        self.push_timed(input, partition, arrival_time, record, out)
    }

    /// `push` on the running timeline.
    fn push_timed(
        &mut self,
        input: usize,
        partition: u32,
        arrival_time: i64,
        record: Arc<Record>,
        out: &mut Vec<OutputRow>,
    ) -> Result<(), EventError> {
        self.state.counters.input_events += 1;
        let mut event_time = match &self.plan.inputs[input].timestamp_by {
            Some(expr) => {
                let sources = [Some(&*record)];
                match expr.eval_time(&Row::event(&sources, &[arrival_time], arrival_time)) {
                    Ok(time) => time,
                    Err(value) => {
                        self.state.counters.untimed_dropped += 1;
                        return Err(EventError::NoEventTime {
                            found: value.to_string(),
                        });
                    }
                }
            }
            None => arrival_time,
        };
        let now = self.processing_time;
        let global_watermark = self.state.watermark;
        let policy = self.policy;
        let partition_time = partition_time(&mut self.state.partitions, input, partition, now);
        partition_time.last_active = now;
        // The earliest time this event may have: not older than its
        // arrival minus the late tolerance, nor than its partition's
        // newest event minus the out-of-order tolerance, nor than the
        // watermark windows were already closed at.
        let mut earliest = arrival_time.saturating_sub(policy.late_arrival_tolerance_micros);
        if let Some(max_event_time) = partition_time.max_event_time {
            earliest =
                earliest.max(max_event_time.saturating_sub(policy.out_of_order_tolerance_micros));
        }
        earliest = earliest.max(global_watermark);
        if event_time < earliest {
            match policy.on_late {
                LatePolicy::Adjust => {
                    self.state.counters.late_adjusted += 1;
                    event_time = earliest;
                }
                LatePolicy::Drop => {
                    self.state.counters.late_dropped += 1;
                    self.late_events.push(LateEvent {
                        input,
                        partition,
                        event_time,
                        watermark: earliest,
                    });
                    return Ok(());
                }
            }
        }
        let advanced = partition_time
            .max_event_time
            .is_none_or(|max| event_time > max);
        if advanced {
            partition_time.max_event_time = Some(event_time);
        }
        self.flow(
            Flow {
                stream: StreamRef::Input(input),
                time: event_time,
                record,
            },
            out,
        );
        if advanced {
            self.update_watermark(out);
        }
        Ok(())
    }

    /// Ends the input: every window closes and emits.
    pub fn finish(&mut self, out: &mut Vec<OutputRow>) {
        if self.substreams {
            self.each_substream(|engine| engine.advance_watermark(i64::MAX, out));
        } else {
            self.advance_watermark(i64::MAX, out);
        }
    }

    fn update_watermark(&mut self, out: &mut Vec<OutputRow>) {
        let late_tolerance = self.policy.late_arrival_tolerance_micros;
        let now = self.processing_time;
        let idle_watermark = if now == i64::MIN {
            i64::MIN
        } else {
            now.saturating_sub(late_tolerance)
        };
        let mut watermark = i64::MAX;
        for partition in self.state.partitions.values() {
            let mut partition_watermark = partition
                .max_event_time
                .map(|max| max.saturating_sub(self.policy.out_of_order_tolerance_micros))
                .unwrap_or(i64::MIN);
            let idle =
                now != i64::MIN && now.saturating_sub(partition.last_active) >= late_tolerance;
            if idle {
                partition_watermark = partition_watermark.max(idle_watermark);
            }
            watermark = watermark.min(partition_watermark);
        }
        if watermark == i64::MAX {
            // No partition known yet: only processing time can move it.
            watermark = idle_watermark;
        }
        self.advance_watermark(watermark, out);
    }

    fn advance_watermark(&mut self, watermark: i64, out: &mut Vec<OutputRow>) {
        if watermark <= self.state.watermark {
            return;
        }
        self.state.watermark = watermark;
        for at in 0..self.watermark_steps.len() {
            let index = self.watermark_steps[at];
            let joins_streams = self.plan.steps[index]
                .join
                .as_ref()
                .is_some_and(|join| join.span.is_some());
            if !joins_streams && !self.state.steps[index].windows.may_close(watermark) {
                continue;
            }
            let mut produced = Vec::new();
            self.step_watermark(index, watermark, &mut produced);
            for (time, record) in produced {
                self.emit(index, time, record, out);
            }
        }
    }

    /// Sends an event into every step that reads `stream`, and what those
    /// steps produce onward, breadth first.
    fn flow(&mut self, first: Flow, out: &mut Vec<OutputRow>) {
        // A step's window may close inside this loop and start a flow of
        // its own; that one finds the buffer taken and makes another.
        let mut queue = std::mem::take(&mut self.queue);
        let mut produced = std::mem::take(&mut self.produced);
        queue.push_back(first);
        while let Some(flow) = queue.pop_front() {
            let count = self.consumers.of(flow.stream).len();
            let mut record = Some(flow.record);
            for at in 0..count {
                let (index, side) = self.consumers.of(flow.stream)[at];
                // The last step to read the event takes it.
                let record = if at + 1 == count {
                    record.take()
                } else {
                    record.clone()
                }
                .expect("taken only by the last");
                self.step_event(index, side, flow.time, record, &mut produced);
                for (time, record) in produced.drain(..) {
                    if let Some(record) = self.deliver(index, time, record, out) {
                        queue.push_back(Flow {
                            stream: StreamRef::Step(index),
                            time,
                            record,
                        });
                    }
                }
            }
        }
        self.queue = queue;
        self.produced = produced;
    }

    /// A row produced by step `index`: to its output, or onward.
    fn deliver(
        &mut self,
        index: usize,
        time: i64,
        record: Record,
        out: &mut Vec<OutputRow>,
    ) -> Option<Arc<Record>> {
        match self.plan.steps[index].into {
            Some(output) => {
                self.state.counters.output_rows += 1;
                out.push(OutputRow {
                    output,
                    timestamp: time,
                    record,
                });
                None
            }
            None => Some(Arc::new(record)),
        }
    }

    fn emit(&mut self, index: usize, time: i64, record: Record, out: &mut Vec<OutputRow>) {
        if let Some(record) = self.deliver(index, time, record, out) {
            self.flow(
                Flow {
                    stream: StreamRef::Step(index),
                    time,
                    record,
                },
                out,
            );
        }
    }

    fn step_event(
        &mut self,
        index: usize,
        side: usize,
        time: i64,
        record: Arc<Record>,
        produced: &mut Vec<(i64, Record)>,
    ) {
        let plan = Arc::clone(&self.plan);
        let step = &plan.steps[index];
        match &step.join {
            None => self.step_row(index, step, &[Some(&*record)], &[time], time, produced),
            Some(join) => match step.sources[1].stream {
                StreamRef::Reference(reference) => {
                    self.reference_join(index, step, join, reference, time, &record, produced)
                }
                _ => self.stream_join(index, step, join, side, time, record, produced),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reference_join(
        &mut self,
        index: usize,
        step: &StepPlan,
        join: &JoinPlan,
        reference: usize,
        time: i64,
        record: &Arc<Record>,
        produced: &mut Vec<(i64, Record)>,
    ) {
        let table = &self.references[reference];
        let left_only = [Some(&**record), None];
        let candidates: Vec<Arc<Record>> = match table.indexes.get(&index) {
            Some(key_index) => {
                let times = [time, time];
                let context = Row::event(&left_only, &times, time);
                let keys: Vec<Value> = join
                    .equi_keys
                    .iter()
                    .map(|(left, _)| left.eval(&context))
                    .collect();
                key_index
                    .get(&keys)
                    .map(|positions| {
                        positions
                            .iter()
                            .map(|position| table.rows[*position].clone())
                            .collect()
                    })
                    .unwrap_or_default()
            }
            None => table.rows.clone(),
        };
        let mut matched = false;
        for candidate in candidates {
            let sources = [Some(&**record), Some(&*candidate)];
            if join
                .on
                .eval(&Row::event(&sources, &[time, time], time))
                .is_true()
            {
                matched = true;
                self.step_row(index, step, &sources, &[time, time], time, produced);
            }
        }
        if !matched && join.kind == JoinKind::LeftOuter {
            self.step_row(index, step, &left_only, &[time, time], time, produced);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn stream_join(
        &mut self,
        index: usize,
        step: &StepPlan,
        join: &JoinPlan,
        side: usize,
        time: i64,
        record: Arc<Record>,
        produced: &mut Vec<(i64, Record)>,
    ) {
        let span = join.span.expect("a join of two streams has a time bound");
        let keys: Vec<Value> = {
            let sources: [Option<&Record>; 2] = if side == 0 {
                [Some(&*record), None]
            } else {
                [None, Some(&*record)]
            };
            let times = [time, time];
            let context = Row::event(&sources, &times, time);
            join.equi_keys
                .iter()
                .map(|(left, right)| {
                    if side == 0 {
                        left.eval(&context)
                    } else {
                        right.eval(&context)
                    }
                })
                .collect()
        };
        // The other side's rows that could match, by time.
        let (low, high) = if side == 0 {
            (
                time.saturating_sub(span.right_before_left_micros),
                time.saturating_add(span.right_after_left_micros),
            )
        } else {
            (
                time.saturating_sub(span.right_after_left_micros),
                time.saturating_add(span.right_before_left_micros),
            )
        };
        let other = 1 - side;
        let mut matches = Vec::new();
        for ((other_time, sequence), row) in self.state.steps[index].join_sides[other]
            .rows
            .range((low, 0)..=(high, u64::MAX))
        {
            if row.keys != keys {
                continue;
            }
            let (left, right, times) = if side == 0 {
                (&*record, &*row.record, [time, *other_time])
            } else {
                (&*row.record, &*record, [*other_time, time])
            };
            let sources = [Some(left), Some(right)];
            if join
                .on
                .eval(&Row::event(&sources, &times, time.max(*other_time)))
                .is_true()
            {
                matches.push(((*other_time, *sequence), times));
            }
        }
        let matched_now = !matches.is_empty();
        for (position, times) in matches {
            let row = self.state.steps[index].join_sides[other]
                .rows
                .get_mut(&position)
                .expect("found above");
            row.matched = true;
            let other_record = row.record.clone();
            let sources = if side == 0 {
                [Some(&*record), Some(&*other_record)]
            } else {
                [Some(&*other_record), Some(&*record)]
            };
            self.step_row(
                index,
                step,
                &sources,
                &times,
                times[0].max(times[1]),
                produced,
            );
        }
        let join_side = &mut self.state.steps[index].join_sides[side];
        join_side.sequence += 1;
        let sequence = join_side.sequence;
        join_side.rows.insert(
            (time, sequence),
            JoinRow {
                keys,
                record,
                matched: matched_now,
            },
        );
    }

    /// One (possibly joined) row through the step's filter and body.
    fn step_row(
        &mut self,
        index: usize,
        step: &StepPlan,
        sources: &[Option<&Record>],
        source_times: &[i64],
        time: i64,
        produced: &mut Vec<(i64, Record)>,
    ) {
        let row = Row::event(sources, source_times, time);
        if let Some(filter) = &step.filter
            && !filter.eval(&row).is_true()
        {
            return;
        }
        match &step.body {
            StepBody::Project(projections) if let Some(names) = &self.column_names[index] => {
                let values = projections
                    .iter()
                    .map(|projection| match projection {
                        Projection::Column { expr, .. } => expr.eval(&row),
                        Projection::All(_) => unreachable!("steps with named columns only"),
                    })
                    .collect();
                produced.push((time, Record::with_names(names.clone(), values)));
            }
            StepBody::Project(projections) => {
                let mut record = Record::with_capacity(projections.len());
                for projection in projections {
                    match projection {
                        Projection::Column { name, expr } => {
                            record.insert(name.clone(), expr.eval(&row))
                        }
                        Projection::All(only) => {
                            for (source, fields) in sources.iter().enumerate() {
                                if only.is_some_and(|only| only != source) {
                                    continue;
                                }
                                for (name, value) in fields.iter().flat_map(|fields| fields.iter())
                                {
                                    record.insert(name.clone(), value.clone());
                                }
                            }
                        }
                    }
                }
                produced.push((time, record));
            }
            StepBody::Aggregate(aggregate) => {
                // Keys and arguments are evaluated into reused buffers:
                // a row joining an existing group allocates nothing.
                let (mut keys, mut args) = std::mem::take(&mut self.scratch);
                keys.extend(aggregate.keys.iter().map(|key| key.eval(&row)));
                args.extend(aggregate.aggregates.iter().map(|call| {
                    call.arg
                        .as_ref()
                        .map(|arg| arg.eval(&row))
                        .unwrap_or(Value::Int(1))
                }));
                self.state.steps[index].windows.add(
                    &aggregate.window,
                    &aggregate.aggregates,
                    time,
                    &keys,
                    &args,
                    || match &aggregate.window {
                        crate::plan::WindowPlan::Session { partition, .. } => {
                            partition.iter().map(|key| key.eval(&row)).collect()
                        }
                        _ => Vec::new(),
                    },
                );
                keys.clear();
                args.clear();
                self.scratch = (keys, args);
            }
        }
    }

    fn step_watermark(&mut self, index: usize, watermark: i64, produced: &mut Vec<(i64, Record)>) {
        let plan = Arc::clone(&self.plan);
        let step = &plan.steps[index];
        if let Some(join) = &step.join
            && let Some(span) = join.span
        {
            // Left rows wait for right rows up to `after`; right rows for
            // left rows up to `before`. Unmatched left rows of an outer
            // join come out when their wait ends.
            let waits = [span.right_after_left_micros, span.right_before_left_micros];
            for side in 0..2 {
                let mut expired = Vec::new();
                let rows = &mut self.state.steps[index].join_sides[side].rows;
                while let Some(entry) = rows.first_entry() {
                    if entry.key().0.saturating_add(waits[side]) > watermark {
                        break;
                    }
                    let ((time, _), row) = entry.remove_entry();
                    expired.push((time, row));
                }
                if side == 0 && join.kind == JoinKind::LeftOuter {
                    for (time, row) in expired.into_iter().filter(|(_, row)| !row.matched) {
                        let sources = [Some(&*row.record), None];
                        let end = time.saturating_add(waits[0]);
                        self.step_row(index, step, &sources, &[time, end], end, produced);
                    }
                }
            }
        }
        if let StepBody::Aggregate(aggregate) = &step.body {
            for group in self.state.steps[index].windows.advance(
                &aggregate.window,
                &aggregate.aggregates,
                watermark,
            ) {
                let row = Row {
                    sources: &[],
                    timestamp: group.end,
                    source_times: &[],
                    keys: &group.keys,
                    aggregates: &group.aggregates,
                    outputs: &[],
                };
                let mut outputs = Vec::with_capacity(aggregate.outputs.len());
                for (_, expr) in &aggregate.outputs {
                    let value = expr.eval(&Row {
                        outputs: &outputs,
                        ..row
                    });
                    outputs.push(value);
                }
                if let Some(having) = &aggregate.having
                    && !having
                        .eval(&Row {
                            outputs: &outputs,
                            ..row
                        })
                        .is_true()
                {
                    continue;
                }
                let mut record = Record::with_capacity(outputs.len());
                for ((name, _), value) in aggregate.outputs.iter().zip(outputs) {
                    record.insert(name.clone(), value);
                }
                produced.push((group.end, record));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = time::MICROS_PER_SECOND;

    fn event(device: &str, seconds: i64) -> Arc<Record> {
        let time = time::format_datetime(seconds * SECOND);
        Arc::new(
            Record::from_json(format!(r#"{{"d":"{device}","t":"{time}"}}"#).as_bytes()).unwrap(),
        )
    }

    fn windows(out: &[OutputRow]) -> Vec<(String, i64)> {
        out.iter()
            .map(|row| {
                let device = row.record.get("d").unwrap().to_string();
                (device, row.timestamp / SECOND)
            })
            .collect()
    }

    fn engine_for(query: &str) -> Engine {
        Engine::new(
            Arc::new(JobPlan::new(query, &[]).unwrap()),
            TimePolicy::default(),
        )
    }

    fn push_json(
        engine: &mut Engine,
        text: &str,
        out: &mut Vec<OutputRow>,
    ) -> Result<(), EventError> {
        let record = Arc::new(Record::from_json(text.as_bytes()).unwrap());
        engine.push(0, 0, 0, record, out)
    }

    #[test]
    fn an_event_without_a_datetime_is_dropped_with_what_was_found() {
        let found = |found: &str| {
            Err(EventError::NoEventTime {
                found: found.to_string(),
            })
        };
        let mut out = Vec::new();
        let mut engine = engine_for(
            "SELECT COUNT(*) AS n INTO o FROM i TIMESTAMP BY e.t GROUP BY TumblingWindow(second, 10)",
        );
        let mut push = |text: &str| push_json(&mut engine, text, &mut out);
        assert_eq!(push(r#"{"e":{"t":"soon"}}"#), found("soon"));
        assert_eq!(push(r#"{"e":{"t":[1]}}"#), found("[1]"));
        assert_eq!(push(r#"{"e":{"u":1}}"#), found("null"));
        assert_eq!(push(r#"{"e":5}"#), found("null"));
        assert_eq!(push(r#"{"e":{"t":"2026-01-01T00:00:01Z"}}"#), Ok(()));
        // Numbers are milliseconds since the epoch.
        assert_eq!(push(r#"{"e":{"t":1767225602000}}"#), Ok(()));
        assert_eq!(engine.counters().untimed_dropped, 4);
        assert_eq!(engine.counters().input_events, 6);
        engine.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0].record.get("n"), Some(Value::Int(2))));

        // COALESCE: the first argument that is not NULL must be a datetime.
        let mut engine = engine_for("SELECT a INTO o FROM i TIMESTAMP BY COALESCE(a.t, b.t)");
        let mut push = |text: &str| push_json(&mut engine, text, &mut out);
        assert_eq!(
            push(r#"{"a":{"t":"x"},"b":{"t":"2026-01-01T00:00:00Z"}}"#),
            found("x")
        );
        assert_eq!(push(r#"{"b":{"t":"2026-01-01T00:00:00Z"}}"#), Ok(()));
        assert_eq!(push(r#"{"a":{"t":null},"b":{"t":7}}"#), Ok(()));
        assert_eq!(push(r#"{"c":1}"#), found("null"));
    }

    #[test]
    fn an_idle_substream_closes_its_windows_by_processing_time_alone() {
        let plan = Arc::new(
            JobPlan::new(
                "SELECT d, COUNT(*) AS n INTO o FROM i TIMESTAMP BY t OVER d GROUP BY d, TumblingWindow(second, 10)",
                &[],
            )
            .unwrap(),
        );
        let mut engine = Engine::new(Arc::clone(&plan), TimePolicy::default());
        let mut out = Vec::new();
        let at = |engine: &mut Engine, seconds: i64, out: &mut Vec<OutputRow>| {
            engine.set_processing_time(seconds * SECOND, out)
        };
        at(&mut engine, 1, &mut out);
        engine.push(0, 0, SECOND, event("A", 1), &mut out).unwrap();
        at(&mut engine, 2, &mut out);
        engine
            .push(0, 0, 2 * SECOND, event("B", 2), &mut out)
            .unwrap();
        at(&mut engine, 12, &mut out);
        engine
            .push(0, 0, 12 * SECOND, event("A", 12), &mut out)
            .unwrap();
        // A's own event closes A's window; B's waits for B.
        assert_eq!(windows(&out), vec![("A".into(), 10)]);
        assert_eq!(engine.substream_count(), 2);
        // Restored from a checkpoint, the substreams carry on.
        let mut engine = Engine::restore(
            Arc::clone(&plan),
            TimePolicy::default(),
            &engine.checkpoint(),
        )
        .unwrap();
        at(&mut engine, 13, &mut out);
        assert_eq!(out.len(), 1, "B has been idle 11 s: its watermark is 8 s");
        assert_eq!(engine.watermark(), 8 * SECOND, "the earliest substream's");
        assert_eq!(engine.state_size(), 2, "A's second window and B's first");
        at(&mut engine, 16, &mut out);
        assert_eq!(windows(&out), vec![("A".into(), 10), ("B".into(), 10)]);
        engine.finish(&mut out);
        assert_eq!(
            windows(&out),
            vec![("A".into(), 10), ("B".into(), 10), ("A".into(), 20)]
        );
    }
}
