//! Running a job over files, as `freshet job test` does: events from
//! JSON lines (one file per input), reference data from JSON lines or
//! CSV, every window flushed at the end. An event's arrival time is its
//! `EventEnqueuedUtcTime` field when it has one, else its event time; its
//! partition is its `PartitionId` field, else 0. Events of several inputs
//! are merged in arrival order.

use std::sync::Arc;

use crate::engine::{Engine, OutputRow, TimePolicy};
use crate::event::EventParser;
use crate::expr::Row;
use crate::plan::JobPlan;
use crate::value::{Json, Record, Value};

/// One event of a local input.
#[derive(Debug, Clone)]
pub struct LocalEvent {
    pub input: usize,
    pub partition: u32,
    pub arrival_time: i64,
    pub record: Arc<Record>,
}

/// Reads JSON lines; errors name the line.
pub fn read_json_lines(text: &str) -> Result<Vec<Record>, String> {
    let mut parser = EventParser::new(None);
    let mut records = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        records.push(
            parser
                .parse(line.as_bytes())
                .map_err(|error| format!("line {}: {error}", number + 1))?,
        );
    }
    Ok(records)
}

/// Reads reference data: CSV with a header row (numbers become numbers),
/// or JSON lines.
pub fn read_reference(text: &str, csv: bool) -> Result<Vec<Record>, String> {
    if !csv {
        return read_json_lines(text);
    }
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<Arc<str>> = reader
        .headers()
        .map_err(|error| format!("CSV header: {error}"))?
        .iter()
        .map(Arc::from)
        .collect();
    let mut records = Vec::new();
    for (number, row) in reader.records().enumerate() {
        let row = row.map_err(|error| format!("CSV row {}: {error}", number + 2))?;
        let mut record = Record::with_capacity(headers.len());
        for (name, field) in headers.iter().zip(row.iter()) {
            let value = if let Ok(integer) = field.parse::<i64>() {
                Value::Int(integer)
            } else if let Ok(float) = field.parse::<f64>() {
                Value::Float(float)
            } else {
                Value::str(field)
            };
            record.insert(name.clone(), value);
        }
        records.push(record);
    }
    Ok(records)
}

/// Reads JSON lines of `input`'s events, keeping the fields the job reads
/// (and `EventEnqueuedUtcTime` and `PartitionId`).
pub fn read_input(plan: &JobPlan, input: usize, text: &str) -> Result<Vec<Record>, String> {
    let fields = plan.input_fields(input).map(|mut fields| {
        fields.add(&[Arc::from("EventEnqueuedUtcTime")]);
        fields.add(&[Arc::from("PartitionId")]);
        fields
    });
    let mut parser = EventParser::new(fields.as_ref());
    let mut records = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        records.push(
            parser
                .parse(line.as_bytes())
                .map_err(|error| format!("line {}: {error}", number + 1))?,
        );
    }
    Ok(records)
}

/// Gives each record of `input` its partition and arrival time.
pub fn local_events(
    plan: &JobPlan,
    input: usize,
    records: Vec<Record>,
) -> Result<Vec<LocalEvent>, String> {
    let mut events = Vec::with_capacity(records.len());
    for (number, record) in records.into_iter().enumerate() {
        let enqueued = record.get("EventEnqueuedUtcTime").and_then(Value::as_time);
        let arrival_time = match (enqueued, &plan.inputs[input].timestamp_by) {
            (Some(time), _) => time,
            (None, Some(expr)) => {
                let sources = [Some(&record)];
                expr.eval(&Row::event(&sources, &[0], 0))
                    .as_time()
                    .unwrap_or(i64::MIN)
            }
            (None, None) => {
                return Err(format!(
                    "event {} of input '{}' has no time: give it an EventEnqueuedUtcTime field, or read the input with TIMESTAMP BY",
                    number + 1,
                    plan.inputs[input].name
                ));
            }
        };
        let partition = match record.get("PartitionId") {
            Some(Value::Int(partition)) => u32::try_from(*partition).unwrap_or(0),
            _ => 0,
        };
        events.push(LocalEvent {
            input,
            partition,
            arrival_time,
            record: Arc::new(record),
        });
    }
    Ok(events)
}

/// Interleaves the inputs' events by arrival time while keeping each
/// input's own order (out-of-order events stay out of order).
pub fn merge_by_arrival(events: Vec<LocalEvent>) -> Vec<LocalEvent> {
    let inputs = events
        .iter()
        .map(|event| event.input + 1)
        .max()
        .unwrap_or(0);
    let mut queues: Vec<std::collections::VecDeque<LocalEvent>> =
        (0..inputs).map(|_| Default::default()).collect();
    let total = events.len();
    for event in events {
        queues[event.input].push_back(event);
    }
    let mut merged = Vec::with_capacity(total);
    while let Some(next) = queues
        .iter()
        .enumerate()
        .filter_map(|(input, queue)| queue.front().map(|event| (event.arrival_time, input)))
        .min()
    {
        merged.push(queues[next.1].pop_front().expect("non-empty"));
    }
    merged
}

/// Runs `events` through a new engine and flushes it. With
/// `checkpoint_after`, the engine is checkpointed after that many events
/// and the run continues on an engine restored from the checkpoint.
/// Returns the output rows and, per event the job dropped for having no
/// event time, its position and reason.
pub fn run(
    plan: Arc<JobPlan>,
    policy: TimePolicy,
    references: Vec<Vec<Record>>,
    events: &[LocalEvent],
    checkpoint_after: Option<usize>,
) -> Result<(Vec<OutputRow>, Vec<String>, Engine), String> {
    let load = |engine: &mut Engine| {
        for (reference, rows) in references.iter().enumerate() {
            engine.set_reference(reference, rows.clone());
        }
    };
    let mut engine = Engine::new(Arc::clone(&plan), policy);
    load(&mut engine);
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (position, event) in events.iter().enumerate() {
        if checkpoint_after == Some(position) {
            let checkpoint = engine.checkpoint();
            engine = Engine::restore(Arc::clone(&plan), policy, &checkpoint)?;
            load(&mut engine);
        }
        if let Err(error) = engine.push(
            event.input,
            event.partition,
            event.arrival_time,
            event.record.clone(),
            &mut out,
        ) {
            problems.push(format!(
                "event {} of input '{}': {error}",
                position + 1,
                plan.inputs[event.input].name
            ));
        }
    }
    engine.finish(&mut out);
    Ok((out, problems, engine))
}

/// One output row as `job test` prints it: the row alone when the job has
/// one output, else `{"output": name, "row": {…}}`.
pub fn format_row(plan: &JobPlan, row: &OutputRow) -> String {
    let record = Value::Record(Arc::new(row.record.clone()));
    if plan.outputs.len() == 1 {
        return serde_json::to_string(&Json(&record)).expect("values serialize");
    }
    let mut wrapper = Record::with_capacity(2);
    wrapper.insert(Arc::from("output"), Value::str(&plan.outputs[row.output]));
    wrapper.insert(Arc::from("row"), record);
    serde_json::to_string(&Json(&Value::Record(Arc::new(wrapper)))).expect("values serialize")
}
