//! Aggregates and windows: accumulators for COUNT, SUM, AVG, MIN, MAX and
//! the deviation family, and the window state of an aggregating step.
//! Tumbling, hopping and snapshot windows accumulate as events arrive;
//! sliding and session windows need events in time order, so they hold
//! events until the watermark passes them and then replay them in order.
//! A window `(start, end]` emits once, when the watermark passes `end`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use foldhash::fast::RandomState;
use serde::{Deserialize, Serialize};

use crate::plan::{AggregateCall, AggregateFunction, WindowPlan};
use crate::time;
use crate::value::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Accumulator {
    Count(i64),
    Sum {
        int: i64,
        float: f64,
        is_float: bool,
        seen: bool,
    },
    Avg {
        sum: f64,
        count: i64,
    },
    Min(Option<Value>),
    Max(Option<Value>),
    /// Welford's running mean and squared deviations.
    Moments {
        count: i64,
        mean: f64,
        m2: f64,
    },
    Distinct(#[serde(with = "crate::aggregate::pairs")] BTreeMap<Value, ()>),
}

impl Accumulator {
    pub fn new(call: &AggregateCall) -> Self {
        if call.distinct {
            return Accumulator::Distinct(BTreeMap::new());
        }
        Self::plain(call.function)
    }

    fn plain(function: AggregateFunction) -> Self {
        match function {
            AggregateFunction::Count => Accumulator::Count(0),
            AggregateFunction::Sum => Accumulator::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
                seen: false,
            },
            AggregateFunction::Avg => Accumulator::Avg { sum: 0.0, count: 0 },
            AggregateFunction::Min => Accumulator::Min(None),
            AggregateFunction::Max => Accumulator::Max(None),
            AggregateFunction::Stdev
            | AggregateFunction::StdevP
            | AggregateFunction::Var
            | AggregateFunction::VarP => Accumulator::Moments {
                count: 0,
                mean: 0.0,
                m2: 0.0,
            },
        }
    }

    /// Adds one value; `COUNT(*)` is given a non-NULL value for each row.
    pub fn update(&mut self, value: &Value) {
        if value.is_null() {
            return;
        }
        match self {
            Accumulator::Count(count) => *count += 1,
            Accumulator::Sum {
                int,
                float,
                is_float,
                seen,
            } => match value {
                Value::Int(add) if !*is_float => match int.checked_add(*add) {
                    Some(total) => {
                        *int = total;
                        *seen = true;
                    }
                    None => {
                        *float = *int as f64 + *add as f64;
                        *is_float = true;
                        *seen = true;
                    }
                },
                other => {
                    if let Some(add) = other.as_f64() {
                        if !*is_float {
                            *float = *int as f64;
                            *is_float = true;
                        }
                        *float += add;
                        *seen = true;
                    }
                }
            },
            Accumulator::Avg { sum, count } => {
                if let Some(add) = value.as_f64() {
                    *sum += add;
                    *count += 1;
                }
            }
            Accumulator::Min(current) => {
                if current.as_ref().is_none_or(|current| value < current) {
                    *current = Some(value.clone());
                }
            }
            Accumulator::Max(current) => {
                if current.as_ref().is_none_or(|current| value > current) {
                    *current = Some(value.clone());
                }
            }
            Accumulator::Moments { count, mean, m2 } => {
                if let Some(x) = value.as_f64() {
                    *count += 1;
                    let delta = x - *mean;
                    *mean += delta / *count as f64;
                    *m2 += delta * (x - *mean);
                }
            }
            Accumulator::Distinct(values) => {
                values.insert(value.clone(), ());
            }
        }
    }

    /// Whether accumulators of `call` can be merged (`merge`) to exactly
    /// the value one accumulator over all their rows would have.
    fn merges_exactly(call: &AggregateCall) -> bool {
        call.distinct
            || matches!(
                call.function,
                AggregateFunction::Count | AggregateFunction::Min | AggregateFunction::Max
            )
    }

    /// Adds the rows another accumulator of the same call has seen, when
    /// that gives exactly what one accumulator over all their rows would
    /// hold: always for calls that `merges_exactly`; for `SUM` while both
    /// sums are integers that add without overflow. False (and `self`
    /// unusable) otherwise.
    fn merge(&mut self, other: &Accumulator) -> bool {
        match (self, other) {
            (Accumulator::Count(count), Accumulator::Count(more)) => *count += more,
            (Accumulator::Min(current), Accumulator::Min(Some(value))) => {
                if current.as_ref().is_none_or(|current| value < current) {
                    *current = Some(value.clone());
                }
            }
            (Accumulator::Max(current), Accumulator::Max(Some(value))) => {
                if current.as_ref().is_none_or(|current| value > current) {
                    *current = Some(value.clone());
                }
            }
            (Accumulator::Min(_), Accumulator::Min(None))
            | (Accumulator::Max(_), Accumulator::Max(None)) => {}
            (Accumulator::Distinct(values), Accumulator::Distinct(more)) => {
                values.extend(more.keys().map(|value| (value.clone(), ())));
            }
            (
                Accumulator::Sum {
                    int,
                    is_float: false,
                    seen,
                    ..
                },
                Accumulator::Sum {
                    int: more,
                    is_float: false,
                    seen: more_seen,
                    ..
                },
            ) => match int.checked_add(*more) {
                Some(total) => {
                    *int = total;
                    *seen |= more_seen;
                }
                None => return false,
            },
            (Accumulator::Sum { .. }, Accumulator::Sum { .. }) => return false,
            (this, other) => unreachable!("{this:?} and {other:?} do not merge"),
        }
        true
    }

    pub fn finish(&self, call: &AggregateCall) -> Value {
        match self {
            Accumulator::Count(count) => Value::Int(*count),
            Accumulator::Sum { seen: false, .. } => Value::Null,
            Accumulator::Sum {
                int,
                float,
                is_float,
                ..
            } => {
                if *is_float {
                    Value::Float(*float)
                } else {
                    Value::Int(*int)
                }
            }
            Accumulator::Avg { count: 0, .. } => Value::Null,
            Accumulator::Avg { sum, count } => Value::Float(sum / *count as f64),
            Accumulator::Min(value) | Accumulator::Max(value) => {
                value.clone().unwrap_or(Value::Null)
            }
            Accumulator::Moments { count, m2, .. } => {
                let sample = matches!(
                    call.function,
                    AggregateFunction::Stdev | AggregateFunction::Var
                );
                let divisor = if sample { *count - 1 } else { *count };
                if divisor <= 0 {
                    return Value::Null;
                }
                let variance = m2 / divisor as f64;
                match call.function {
                    AggregateFunction::Stdev | AggregateFunction::StdevP => {
                        Value::Float(variance.sqrt())
                    }
                    _ => Value::Float(variance),
                }
            }
            Accumulator::Distinct(values) => {
                let mut inner = Self::plain(call.function);
                for value in values.keys() {
                    inner.update(value);
                }
                inner.finish(&AggregateCall {
                    distinct: false,
                    ..call.clone()
                })
            }
        }
    }
}

/// A row held until the watermark passes it (sliding and session
/// windows): its time, grouping keys, the arguments of each aggregate,
/// and (sessions) the session partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupRow {
    time: i64,
    keys: Vec<Value>,
    args: Vec<Value>,
    partition: Vec<Value>,
}

/// A closed group: the window end (its System.Timestamp()), keys and
/// finished aggregates.
#[derive(Debug, Clone)]
pub struct ClosedGroup {
    pub end: i64,
    pub keys: Vec<Value>,
    pub aggregates: Vec<Value>,
}

/// Accumulators per group key, hashed: a window's groups are looked up
/// once per event and put in key order once, when the window closes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Groups {
    #[serde(with = "crate::aggregate::pairs")]
    map: HashMap<Vec<Value>, Vec<Accumulator>, RandomState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowState {
    /// Open windows by end (tumbling, hopping, snapshot).
    #[serde(with = "crate::aggregate::pairs")]
    windows: BTreeMap<i64, Groups>,
    /// Events not yet passed by the watermark (sliding, session), by time
    /// and arrival sequence.
    #[serde(with = "crate::aggregate::pairs")]
    pending: BTreeMap<(i64, u64), GroupRow>,
    sequence: u64,
    /// Sliding: the events of the last window length per group, and the
    /// times at which each group's window content changes.
    #[serde(with = "crate::aggregate::pairs")]
    sliding: BTreeMap<Vec<Value>, SlidingGroup>,
    /// Sliding: every change still to come, with its group's keys.
    #[serde(default)]
    sliding_due: BTreeSet<(i64, Vec<Value>)>,
    /// Sessions by session partition.
    #[serde(with = "crate::aggregate::pairs")]
    sessions: BTreeMap<Vec<Value>, Session>,
    /// Sessions: each one's end (as it stands) with its partition.
    #[serde(default)]
    session_ends: BTreeSet<(i64, Vec<Value>)>,
    /// Hopping windows kept as panes (see `Panes`).
    #[serde(default)]
    panes: Panes,
    /// While the watermark is at most this, `advance` has nothing to do
    /// (tumbling, hopping, snapshot and sliding windows; for sessions it
    /// stays unknown).
    #[serde(skip)]
    quiet_until: QuietUntil,
}

#[derive(Debug, Clone, Copy)]
struct QuietUntil(i64);

impl Default for QuietUntil {
    /// Not known: `advance` is to look.
    fn default() -> Self {
        QuietUntil(i64::MIN)
    }
}

/// A hopping window whose size is a whole number of hops is the union of
/// that many panes, the tumbling windows of one hop. Each event updates
/// its one pane instead of every window it is in; a pane that has ended
/// is put in key order once, and a closing window merges its panes in
/// order. Only for aggregates that merge exactly (`merges_exactly`), so
/// that results are those of accumulating each window on its own (but
/// for which of two equal numbers of different types a MIN or MAX keeps
/// when their events arrived out of time order).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Panes {
    /// Panes not yet ended, by end.
    #[serde(with = "crate::aggregate::pairs")]
    open: BTreeMap<i64, Groups>,
    /// Ended panes still in a window to come, by end, groups in key order.
    #[serde(with = "crate::aggregate::pairs")]
    ended: BTreeMap<i64, KeyOrdered>,
    /// The end of the last window emitted.
    emitted: Option<i64>,
}

/// Groups (keys and accumulators) in key order.
type KeyOrdered = Vec<(Vec<Value>, Vec<Accumulator>)>;

/// Whether a hopping window of `size` every `hop` is kept as panes.
fn uses_panes(size: i64, hop: i64, calls: &[AggregateCall]) -> bool {
    hop > 0 && size > hop && size % hop == 0 && calls.iter().all(Accumulator::merges_exactly)
}

/// The order windows emit their groups in. Bigint keys (an id) are
/// compared without going through `Value`'s order, to the same result.
fn key_order(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    match (a, b) {
        ([Value::Int(a)], [Value::Int(b)]) => a.cmp(b),
        _ => a.cmp(b),
    }
}

/// Two lists of groups in key order merged into one, groups of equal
/// keys merged.
fn merge_in_order(a: KeyOrdered, b: &[(Vec<Value>, Vec<Accumulator>)]) -> KeyOrdered {
    let mut merged = Vec::with_capacity(a.len().max(b.len()));
    let mut b = b.iter().peekable();
    for (keys, mut accumulators) in a {
        while let Some((other, _)) = b.peek()
            && key_order(other, &keys).is_lt()
        {
            merged.push(b.next().expect("peeked").clone());
        }
        if let Some((other, more)) = b.peek()
            && key_order(other, &keys).is_eq()
        {
            for (accumulator, more) in accumulators.iter_mut().zip(more) {
                let exact = accumulator.merge(more);
                debug_assert!(exact, "panes hold aggregates that merge exactly");
            }
            b.next();
        }
        merged.push((keys, accumulators));
    }
    merged.extend(b.cloned());
    merged
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SlidingGroup {
    /// The group's rows in the last window length, in time order (unless
    /// `running.out_of_order`).
    rows: Vec<(i64, Vec<Value>)>,
    #[serde(with = "crate::aggregate::pairs")]
    changes: BTreeMap<i64, ()>,
    /// Aggregates kept as the window moves (rebuilt from `rows` after a
    /// restore).
    #[serde(skip)]
    running: Running,
}

/// A sliding window's rows as a queue aggregated with two stacks: rows
/// enter at the back, whose aggregate is kept running; rows leave from
/// the front, a stack of the aggregates of each front row and all rows
/// after it up to the back, built when the front runs empty. A window is
/// then the front's top merged with the back: each row is added about
/// twice in all, instead of once per change it is in. Only for
/// aggregates that merge without changing their result (`slides`); a
/// window whose merge is not exact (a sum that left integers) is
/// computed afresh.
#[derive(Debug, Clone, Default)]
struct Running {
    /// Rows removed from the front of the group's `rows` so far: row
    /// numbers below count from the first row ever kept.
    removed: usize,
    /// The window is rows `lo..hi`; the front holds `lo..mid`, the back
    /// `mid..hi`.
    lo: usize,
    mid: usize,
    hi: usize,
    front: Vec<Vec<Accumulator>>,
    back: Option<Vec<Accumulator>>,
    /// A row came before an earlier one, or a front could not be built
    /// exactly: every window of the group is computed afresh.
    out_of_order: bool,
}

/// Whether a sliding window of `calls` keeps running aggregates.
fn slides(calls: &[AggregateCall]) -> bool {
    calls.iter().all(|call| {
        !call.distinct
            && matches!(
                call.function,
                AggregateFunction::Count
                    | AggregateFunction::Sum
                    | AggregateFunction::Min
                    | AggregateFunction::Max
            )
    })
}

impl SlidingGroup {
    /// The aggregates of the group's rows in `(end - size, end]`, or
    /// `None` when it has none; from the running aggregates when
    /// `running`, else added up afresh.
    fn window(
        &mut self,
        end: i64,
        size: i64,
        calls: &[AggregateCall],
        running: bool,
    ) -> Option<Vec<Value>> {
        let start = end.saturating_sub(size);
        if running && !self.running.out_of_order {
            let lo = self.rows.partition_point(|(time, _)| *time <= start);
            let hi = self.rows.partition_point(|(time, _)| *time <= end);
            if lo == hi {
                return None;
            }
            if let Some(aggregates) = self.running.window(&self.rows, lo, hi, calls) {
                return Some(aggregates);
            }
        }
        let mut accumulators = new_accumulators(calls);
        let mut any = false;
        for (time, args) in &self.rows {
            if *time > start && *time <= end {
                any = true;
                for (accumulator, arg) in accumulators.iter_mut().zip(args) {
                    accumulator.update(arg);
                }
            }
        }
        any.then(|| finish_all(&accumulators, calls))
    }
}

impl Running {
    /// The aggregates of rows `lo..hi` of `rows` (indexes into `rows`),
    /// or `None` when they cannot be had exactly this way.
    fn window(
        &mut self,
        rows: &[(i64, Vec<Value>)],
        lo: usize,
        hi: usize,
        calls: &[AggregateCall],
    ) -> Option<Vec<Value>> {
        if self.out_of_order {
            return None;
        }
        let (lo, hi) = (self.removed + lo, self.removed + hi);
        let row = |at: usize| &rows[at - self.removed].1;
        if lo < self.lo || hi < self.hi || lo >= self.hi {
            // Windows only move forward; start over if not, or if none of
            // the rows kept is still in (they may be gone from `rows`).
            self.lo = lo;
            self.mid = lo;
            self.hi = lo;
            self.front.clear();
            self.back = None;
        }
        let back = self.back.get_or_insert_with(|| new_accumulators(calls));
        while self.hi < hi {
            for (accumulator, arg) in back.iter_mut().zip(row(self.hi)) {
                accumulator.update(arg);
            }
            self.hi += 1;
        }
        while self.lo < lo {
            if self.front.is_empty() {
                // The rows staying go to the front, newest first (those
                // before `lo` leave now, and may be gone from `rows`); each
                // aggregate merges the newer rows' into an older row's so
                // that ties keep the older value, as adding in order does.
                let mut newer: Option<Vec<Accumulator>> = None;
                for at in (lo..self.hi).rev() {
                    let mut accumulators = new_accumulators(calls);
                    for (accumulator, arg) in accumulators.iter_mut().zip(row(at)) {
                        accumulator.update(arg);
                    }
                    if let Some(newer) = &newer {
                        for (accumulator, more) in accumulators.iter_mut().zip(newer) {
                            if !accumulator.merge(more) {
                                self.out_of_order = true;
                                return None;
                            }
                        }
                    }
                    self.front.push(accumulators.clone());
                    newer = Some(accumulators);
                }
                self.mid = self.hi;
                self.back = Some(new_accumulators(calls));
                self.lo = lo;
                break;
            }
            self.front.pop();
            self.lo += 1;
        }
        let mut total = match self.front.last() {
            Some(front) => front.clone(),
            None => new_accumulators(calls),
        };
        let back = self.back.as_ref().expect("made above");
        for (accumulator, more) in total.iter_mut().zip(back) {
            if !accumulator.merge(more) {
                return None;
            }
        }
        Some(finish_all(&total, calls))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    start: i64,
    last: i64,
    /// The first maximum-duration check at which the session is too long.
    limit: i64,
    groups: Groups,
}

fn new_accumulators(calls: &[AggregateCall]) -> Vec<Accumulator> {
    calls.iter().map(Accumulator::new).collect()
}

/// The value of each aggregate.
fn finish_all(accumulators: &[Accumulator], calls: &[AggregateCall]) -> Vec<Value> {
    accumulators
        .iter()
        .zip(calls)
        .map(|(accumulator, call)| accumulator.finish(call))
        .collect()
}

/// Finishes a window's groups, in key order.
fn finish_groups(end: i64, groups: Groups, calls: &[AggregateCall], closed: &mut Vec<ClosedGroup>) {
    finish_in_order(end, in_key_order(groups), calls, closed);
}

fn in_key_order(groups: Groups) -> KeyOrdered {
    let mut groups: Vec<_> = groups.map.into_iter().collect();
    groups.sort_unstable_by(|(a, _), (b, _)| key_order(a, b));
    groups
}

/// Finishes groups already in key order.
fn finish_in_order(
    end: i64,
    groups: KeyOrdered,
    calls: &[AggregateCall],
    closed: &mut Vec<ClosedGroup>,
) {
    for (keys, accumulators) in groups {
        let aggregates = finish_all(&accumulators, calls);
        closed.push(ClosedGroup {
            end,
            keys,
            aggregates,
        });
    }
}

impl WindowState {
    /// Rows held in state, for the state-size metric.
    pub fn size(&self) -> usize {
        self.windows
            .values()
            .map(|groups| groups.map.len())
            .sum::<usize>()
            + self.pending.len()
            + self
                .sliding
                .values()
                .map(|group| group.rows.len())
                .sum::<usize>()
            + self
                .sessions
                .values()
                .map(|session| session.groups.map.len())
                .sum::<usize>()
            + self
                .panes
                .open
                .values()
                .map(|groups| groups.map.len())
                .sum::<usize>()
            + self.panes.ended.values().map(Vec::len).sum::<usize>()
    }

    /// Adds a row at `time` with its group `keys` and aggregate `args`;
    /// `partition` gives a session window's partition keys.
    pub fn add(
        &mut self,
        window: &WindowPlan,
        calls: &[AggregateCall],
        time: i64,
        keys: &[Value],
        args: &[Value],
        partition: impl FnOnce() -> Vec<Value>,
    ) {
        let add_to = |windows: &mut BTreeMap<i64, Groups>, end: i64| {
            let groups = &mut windows.entry(end).or_default().map;
            // Look up before inserting: most rows join an existing group.
            let accumulators = match groups.get_mut(keys) {
                Some(accumulators) => accumulators,
                None => groups
                    .entry(keys.to_vec())
                    .or_insert_with(|| new_accumulators(calls)),
            };
            for (accumulator, arg) in accumulators.iter_mut().zip(args) {
                accumulator.update(arg);
            }
        };
        let quiet_until = &mut self.quiet_until.0;
        let mut add_to = |windows: &mut BTreeMap<i64, Groups>, end: i64| {
            // A window closes once the watermark has passed its end.
            *quiet_until = (*quiet_until).min(end);
            add_to(windows, end);
        };
        match window {
            WindowPlan::Hopping { size, hop, offset } if uses_panes(*size, *hop, calls) => {
                add_to(&mut self.panes.open, time::align_up(time, *hop, *offset));
            }
            WindowPlan::Hopping { size, hop, offset } => {
                for end in time::window_ends(time, *size, *hop, *offset) {
                    add_to(&mut self.windows, end);
                }
            }
            WindowPlan::Snapshot => add_to(&mut self.windows, time),
            WindowPlan::Sliding { .. } | WindowPlan::Session { .. } => {
                self.sequence += 1;
                let row = GroupRow {
                    time,
                    keys: keys.to_vec(),
                    args: args.to_vec(),
                    partition: partition(),
                };
                self.pending.insert((time, self.sequence), row);
                self.quiet_until.0 = self.quiet_until.0.min(time);
            }
        }
    }

    /// Whether `advance` to `watermark` may close a window: false only
    /// when it surely has nothing to do.
    pub fn may_close(&self, watermark: i64) -> bool {
        watermark > self.quiet_until.0
    }

    /// Closes every window that ends before `watermark`, in end order and
    /// then key order.
    pub fn advance(
        &mut self,
        window: &WindowPlan,
        calls: &[AggregateCall],
        watermark: i64,
    ) -> Vec<ClosedGroup> {
        let mut closed = Vec::new();
        match window {
            WindowPlan::Hopping { size, hop, .. } if uses_panes(*size, *hop, calls) => {
                self.advance_panes(*size, *hop, calls, watermark, &mut closed)
            }
            WindowPlan::Hopping { .. } | WindowPlan::Snapshot => {
                while let Some(entry) = self.windows.first_entry() {
                    if *entry.key() >= watermark {
                        break;
                    }
                    let (end, groups) = entry.remove_entry();
                    finish_groups(end, groups, calls, &mut closed);
                }
                self.quiet_until.0 = self
                    .windows
                    .first_key_value()
                    .map_or(i64::MAX, |(end, _)| *end);
            }
            WindowPlan::Sliding { size } => {
                self.advance_sliding(*size, calls, watermark, &mut closed)
            }
            WindowPlan::Session {
                timeout,
                max_duration,
                ..
            } => self.advance_sessions(*timeout, *max_duration, calls, watermark, &mut closed),
        }
        closed
    }

    /// Closes the hopping windows kept as panes that end before
    /// `watermark`: every window holding a row, in end order.
    fn advance_panes(
        &mut self,
        size: i64,
        hop: i64,
        calls: &[AggregateCall],
        watermark: i64,
        closed: &mut Vec<ClosedGroup>,
    ) {
        let panes = &mut self.panes;
        while let Some(entry) = panes.open.first_entry()
            && *entry.key() < watermark
        {
            let (end, groups) = entry.remove_entry();
            let groups = in_key_order(groups);
            // (A pane ends once: rows come at or after the watermark.)
            let groups = match panes.ended.remove(&end) {
                Some(ended) => merge_in_order(groups, &ended),
                None => groups,
            };
            panes.ended.insert(end, groups);
        }
        // The end of the next window to emit, once known.
        let mut next = i64::MAX;
        while let Some((&first, _)) = panes.ended.first_key_value() {
            // The next window to emit is the first after the last one
            // emitted that holds the first pane still kept.
            let end = panes
                .emitted
                .map_or(first, |emitted| first.max(emitted.saturating_add(hop)));
            if end.saturating_sub(size) >= first {
                // In no window still to come.
                panes.ended.pop_first();
                continue;
            }
            if end >= watermark {
                next = end;
                break;
            }
            let mut in_window = panes.ended.range(end.saturating_sub(size) + 1..=end);
            let (_, first_groups) = in_window.next().expect("the first pane is in");
            let groups = in_window.fold(first_groups.clone(), |merged, (_, groups)| {
                merge_in_order(merged, groups)
            });
            finish_in_order(end, groups, calls, closed);
            panes.emitted = Some(end);
        }
        let first_open = panes
            .open
            .first_key_value()
            .map_or(i64::MAX, |(end, _)| *end);
        self.quiet_until.0 = next.min(first_open);
    }

    fn take_ready(&mut self, watermark: i64) -> Vec<GroupRow> {
        let mut ready = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 >= watermark {
                break;
            }
            ready.push(entry.remove());
        }
        ready
    }

    fn advance_sliding(
        &mut self,
        size: i64,
        calls: &[AggregateCall],
        watermark: i64,
        closed: &mut Vec<ClosedGroup>,
    ) {
        if self.sliding_due.is_empty() && !self.sliding.is_empty() {
            // State from before changes were indexed.
            for (keys, group) in &self.sliding {
                for &change in group.changes.keys() {
                    self.sliding_due.insert((change, keys.clone()));
                }
            }
        }
        for row in self.take_ready(watermark) {
            let leaves = row.time.saturating_add(size);
            self.sliding_due.insert((row.time, row.keys.clone()));
            self.sliding_due.insert((leaves, row.keys.clone()));
            let group = self.sliding.entry(row.keys).or_default();
            group.changes.insert(row.time, ());
            group.changes.insert(leaves, ());
            if group.rows.last().is_some_and(|(last, _)| *last > row.time) {
                group.running.out_of_order = true;
            }
            group.rows.push((row.time, row.args));
        }
        let running = slides(calls);
        // Only the groups with a change before the watermark are visited.
        let mut changing = BTreeMap::new();
        while let Some((change, _)) = self.sliding_due.first()
            && *change < watermark
        {
            let (_, keys) = self.sliding_due.pop_first().expect("looked at");
            changing.insert(keys, ());
        }
        let mut emitted = Vec::new();
        for keys in changing.into_keys() {
            let Some(group) = self.sliding.get_mut(&keys) else {
                continue;
            };
            while let Some(entry) = group.changes.first_entry() {
                let end = *entry.key();
                if end >= watermark {
                    break;
                }
                entry.remove();
                if let Some(aggregates) = group.window(end, size, calls, running) {
                    emitted.push(ClosedGroup {
                        end,
                        keys: keys.clone(),
                        aggregates,
                    });
                }
            }
            // Rows at or before watermark − size are in no future window.
            // (A group's last change is its last row leaving: until then
            // it is visited again.)
            let before = watermark.saturating_sub(size);
            if group.running.out_of_order {
                group.rows.retain(|(time, _)| *time > before);
            } else {
                let gone = group.rows.partition_point(|(time, _)| *time <= before);
                group.rows.drain(..gone);
                group.running.removed += gone;
            }
            if group.rows.is_empty() && group.changes.is_empty() {
                self.sliding.remove(&keys);
            }
        }
        let first_pending = self
            .pending
            .first_key_value()
            .map_or(i64::MAX, |(key, _)| key.0);
        let first_change = self
            .sliding_due
            .first()
            .map_or(i64::MAX, |(change, _)| *change);
        self.quiet_until.0 = first_pending.min(first_change);
        emitted.sort_by(|a, b| (a.end, &a.keys).cmp(&(b.end, &b.keys)));
        closed.extend(emitted);
    }

    fn advance_sessions(
        &mut self,
        timeout: i64,
        max_duration: i64,
        calls: &[AggregateCall],
        watermark: i64,
        closed: &mut Vec<ClosedGroup>,
    ) {
        let session_end =
            |session: &Session| session.last.saturating_add(timeout).min(session.limit);
        if self.session_ends.is_empty() && !self.sessions.is_empty() {
            // State from before session ends were indexed.
            for (partition, session) in &self.sessions {
                self.session_ends
                    .insert((session_end(session), partition.clone()));
            }
        }
        let mut emitted = Vec::new();
        for row in self.take_ready(watermark) {
            if let Some(end) = self.sessions.get(&row.partition).map(session_end) {
                self.session_ends.remove(&(end, row.partition.clone()));
                if row.time > end {
                    let session = self.sessions.remove(&row.partition).expect("present");
                    finish_groups(end, session.groups, calls, &mut emitted);
                }
            }
            let session = self
                .sessions
                .entry(row.partition.clone())
                .or_insert_with(|| Session {
                    start: row.time,
                    last: row.time,
                    // Maximum duration is checked at multiples of itself.
                    limit: time::align_up(row.time.saturating_add(max_duration), max_duration, 0),
                    groups: Groups::default(),
                });
            session.last = session.last.max(row.time);
            self.session_ends
                .insert((session_end(session), row.partition));
            let accumulators = session
                .groups
                .map
                .entry(row.keys)
                .or_insert_with(|| new_accumulators(calls));
            for (accumulator, arg) in accumulators.iter_mut().zip(&row.args) {
                accumulator.update(arg);
            }
        }
        while let Some((end, _)) = self.session_ends.first()
            && *end < watermark
        {
            let (end, partition) = self.session_ends.pop_first().expect("looked at");
            let session = self.sessions.remove(&partition).expect("indexed");
            finish_groups(end, session.groups, calls, &mut emitted);
        }
        let first_pending = self
            .pending
            .first_key_value()
            .map_or(i64::MAX, |(key, _)| key.0);
        let first_end = self.session_ends.first().map_or(i64::MAX, |(end, _)| *end);
        self.quiet_until.0 = first_pending.min(first_end);
        emitted.sort_by(|a, b| (a.end, &a.keys).cmp(&(b.end, &b.keys)));
        closed.extend(emitted);
    }
}

/// Serializes a map as a list of pairs, so that keys need not be strings.
pub(crate) mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<'a, S, K, V, M>(map: &'a M, serializer: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        K: Serialize + 'a,
        V: Serialize + 'a,
        &'a M: IntoIterator<Item = (&'a K, &'a V)>,
    {
        serializer.collect_seq(map)
    }

    pub fn deserialize<'de, D, K, V, M>(deserializer: D) -> Result<M, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        M: FromIterator<(K, V)>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// A hash index from key values to positions, used by joins.
pub type KeyIndex = HashMap<Vec<Value>, Vec<usize>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn call(function: AggregateFunction) -> AggregateCall {
        AggregateCall {
            function,
            arg: None,
            distinct: false,
        }
    }

    #[test]
    fn accumulators_skip_nulls_and_widen_on_overflow() {
        let sum = call(AggregateFunction::Sum);
        let mut accumulator = Accumulator::new(&sum);
        assert!(accumulator.finish(&sum).is_null());
        accumulator.update(&Value::Int(i64::MAX));
        accumulator.update(&Value::Null);
        accumulator.update(&Value::Int(1));
        assert!(matches!(accumulator.finish(&sum), Value::Float(_)));
        let stdev = call(AggregateFunction::Stdev);
        let mut accumulator = Accumulator::new(&stdev);
        for value in [2, 4, 4, 4, 5, 5, 7, 9] {
            accumulator.update(&Value::Int(value));
        }
        let Value::Float(sample) = accumulator.finish(&stdev) else {
            panic!()
        };
        assert!((sample - 2.138_089_935).abs() < 1e-6);
        let distinct = AggregateCall {
            distinct: true,
            ..call(AggregateFunction::Count)
        };
        let mut accumulator = Accumulator::new(&distinct);
        for value in [1, 1, 2] {
            accumulator.update(&Value::Int(value));
        }
        accumulator.update(&Value::Float(2.0));
        assert_eq!(accumulator.finish(&distinct), Value::Int(2));
    }

    fn add(state: &mut WindowState, window: &WindowPlan, calls: &[AggregateCall], time: i64) {
        state.add(
            window,
            calls,
            time,
            &[Value::str("k")],
            &[Value::Int(1)],
            Vec::new,
        );
    }

    fn counts(closed: &[ClosedGroup]) -> Vec<(i64, String, i64)> {
        closed
            .iter()
            .map(|group| {
                let Value::Int(count) = group.aggregates[0] else {
                    panic!()
                };
                (group.end, group.keys[0].to_string(), count)
            })
            .collect()
    }

    /// A small deterministic random source: `random(n)` is in `0..n`.
    fn random_source(mut seed: u64) -> impl FnMut(i64) -> i64 {
        move |below: i64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) % below as u64) as i64
        }
    }

    /// Advances `state` to `watermark` into `closed`, checking that a
    /// state that says it cannot close anything closes nothing.
    fn advance_checked(
        state: &mut WindowState,
        window: &WindowPlan,
        calls: &[AggregateCall],
        watermark: i64,
        closed: &mut Vec<ClosedGroup>,
    ) {
        let may_close = state.may_close(watermark);
        let now_closed = state.advance(window, calls, watermark);
        assert!(may_close || now_closed.is_empty(), "closed when quiet");
        closed.extend(now_closed);
    }

    /// Closes what is left, checking that nothing stays held.
    fn flush(
        state: &mut WindowState,
        window: &WindowPlan,
        calls: &[AggregateCall],
        closed: Vec<ClosedGroup>,
    ) -> Vec<(i64, Vec<Value>, Vec<Value>)> {
        let mut closed = closed;
        closed.extend(state.advance(window, calls, i64::MAX));
        assert_eq!(state.size(), 0, "a flush leaves nothing held");
        closed
            .into_iter()
            .map(|group| (group.end, group.keys, group.aggregates))
            .collect()
    }

    /// Hopping windows kept as panes give what each window accumulated on
    /// its own gives: rows in order and out of order (at or after the
    /// watermark, as the engine admits them), windows with and without
    /// offsets, gaps of empty windows, and a final flush.
    #[test]
    fn hopping_panes_equal_windows_accumulated_one_by_one() {
        let calls = [
            call(AggregateFunction::Count),
            call(AggregateFunction::Max),
            call(AggregateFunction::Min),
            AggregateCall {
                distinct: true,
                ..call(AggregateFunction::Count)
            },
        ];
        let mut random = random_source(7);
        for (size, hop, offset) in [(10, 2, 0), (12, 4, 1), (9, 3, 2)] {
            let window = WindowPlan::Hopping { size, hop, offset };
            assert!(uses_panes(size, hop, &calls));
            let mut panes = WindowState::default();
            let mut rows: Vec<(i64, Vec<Value>, Vec<Value>)> = Vec::new();
            let mut closed = Vec::new();
            let mut watermark = 0;
            let mut latest = 0;
            for _ in 0..3_000 {
                // Mostly forward, sometimes back to the watermark, and
                // now and then a gap of several windows.
                latest += match random(100) {
                    0 => 40,
                    _ => random(3),
                };
                let time = (latest - random(6)).max(watermark);
                let keys = vec![Value::Int(random(7))];
                let value = Value::Int(random(50));
                let args = vec![Value::Int(1), value.clone(), value.clone(), value];
                panes.add(&window, &calls, time, &keys, &args, Vec::new);
                rows.push((time, keys, args));
                if random(10) == 0 {
                    watermark = watermark.max(latest - 5);
                    advance_checked(&mut panes, &window, &calls, watermark, &mut closed);
                }
            }
            let got = flush(&mut panes, &window, &calls, closed);

            let mut one_by_one: BTreeMap<(i64, Vec<Value>), Vec<Accumulator>> = BTreeMap::new();
            for (time, keys, args) in &rows {
                for end in time::window_ends(*time, size, hop, offset) {
                    let accumulators = one_by_one
                        .entry((end, keys.clone()))
                        .or_insert_with(|| new_accumulators(&calls));
                    for (accumulator, arg) in accumulators.iter_mut().zip(args) {
                        accumulator.update(arg);
                    }
                }
            }
            let expected_rows: Vec<(i64, Vec<Value>, Vec<Value>)> = one_by_one
                .into_iter()
                .map(|((end, keys), accumulators)| {
                    let aggregates = finish_all(&accumulators, &calls);
                    (end, keys, aggregates)
                })
                .collect();
            assert_eq!(got.len(), expected_rows.len(), "{size}/{hop}/{offset}");
            assert_eq!(got, expected_rows, "{size}/{hop}/{offset}");
        }
    }

    /// Sliding windows visit only the groups that change and keep running
    /// aggregates, yet emit exactly what computing every group's window
    /// at every change from all its rows gives: equal numbers of either
    /// type (which of them a MIN or MAX keeps shows), sums that overflow
    /// or turn to floats (computed afresh), and AVG (always afresh).
    #[test]
    fn sliding_windows_equal_every_change_computed_from_all_rows() {
        let running = [
            call(AggregateFunction::Count),
            call(AggregateFunction::Sum),
            call(AggregateFunction::Min),
            call(AggregateFunction::Max),
        ];
        let averaged = [call(AggregateFunction::Avg), call(AggregateFunction::Max)];
        type Pick = fn(&mut dyn FnMut(i64) -> i64) -> Value;
        let cases: [(&[AggregateCall], Pick); 4] = [
            (&running, |random| Value::Int(random(100))),
            (&running, |random| match random(2) {
                0 => Value::Int(random(20)),
                _ => Value::Float(random(20) as f64),
            }),
            (&running, |random| Value::Int(i64::MAX / 3 - random(3))),
            (&averaged, |random| Value::Int(random(100))),
        ];
        for (case, (calls, pick)) in cases.into_iter().enumerate() {
            assert_eq!(slides(calls), case < 3);
            let size = 10;
            let window = WindowPlan::Sliding { size };
            let mut random = random_source(11 + case as u64);
            let mut state = WindowState::default();
            let mut rows: Vec<(i64, Vec<Value>, Vec<Value>)> = Vec::new();
            let mut closed = Vec::new();
            let (mut watermark, mut latest) = (0, 0);
            for _ in 0..2_000 {
                latest += if random(50) == 0 { 30 } else { random(3) };
                let time = (latest - random(4)).max(watermark);
                let keys = vec![Value::Int(random(30))];
                let value = pick(&mut random);
                let args: Vec<Value> = calls
                    .iter()
                    .map(|call| match call.function {
                        AggregateFunction::Count => Value::Int(1),
                        // Sums stay integers where the case is about MIN
                        // and MAX, so that the running aggregates serve.
                        AggregateFunction::Sum if case == 1 => {
                            Value::Int(value.as_f64().expect("a number") as i64)
                        }
                        _ => value.clone(),
                    })
                    .collect();
                state.add(&window, calls, time, &keys, &args, Vec::new);
                rows.push((time, keys, args));
                if random(4) == 0 {
                    watermark = watermark.max(latest - 3);
                    advance_checked(&mut state, &window, calls, watermark, &mut closed);
                }
            }
            let got = flush(&mut state, &window, calls, closed);

            // A sliding window adds its rows up in time order (arrival
            // order among equal times).
            rows.sort_by_key(|(time, _, _)| *time);
            let changes: BTreeSet<(i64, Vec<Value>)> = rows
                .iter()
                .flat_map(|(time, keys, _)| [(*time, keys.clone()), (time + size, keys.clone())])
                .collect();
            let expected: Vec<(i64, Vec<Value>, Vec<Value>)> = changes
                .into_iter()
                .filter_map(|(end, keys)| {
                    let mut accumulators = new_accumulators(calls);
                    let mut any = false;
                    for (time, row_keys, args) in &rows {
                        if *row_keys == keys && *time > end - size && *time <= end {
                            any = true;
                            for (accumulator, arg) in accumulators.iter_mut().zip(args) {
                                accumulator.update(arg);
                            }
                        }
                    }
                    any.then(|| (end, keys, finish_all(&accumulators, calls)))
                })
                .collect();
            assert_eq!(got.len(), expected.len(), "case {case}");
            // Compared as printed: 1 and 1.0 are equal values of two types.
            for (got, expected) in got.iter().zip(&expected) {
                assert_eq!(format!("{got:?}"), format!("{expected:?}"), "case {case}");
            }
        }
    }

    /// Sessions closed as the watermark passes their indexed ends are the
    /// sessions that chaining each partition's events in time order gives.
    #[test]
    fn sessions_equal_each_partitions_events_chained_in_time_order() {
        let (timeout, max_duration) = (5, 40);
        let calls = [call(AggregateFunction::Count), call(AggregateFunction::Max)];
        let window = WindowPlan::Session {
            timeout,
            max_duration,
            partition: Vec::new(),
        };
        let mut random = random_source(5);
        let mut state = WindowState::default();
        // (time, partition, keys, args)
        type Row = (i64, Vec<Value>, Vec<Value>, Vec<Value>);
        let mut rows: Vec<Row> = Vec::new();
        let mut closed = Vec::new();
        let (mut watermark, mut latest) = (0, 0);
        for _ in 0..3_000 {
            latest += random(2);
            let time = (latest - random(4)).max(watermark);
            let partition = vec![Value::Int(random(40))];
            let keys = vec![Value::Int(random(3))];
            let args = vec![Value::Int(1), Value::Int(random(100))];
            state.add(&window, &calls, time, &keys, &args, || partition.clone());
            rows.push((time, partition, keys, args));
            if random(4) == 0 {
                watermark = watermark.max(latest - 3);
                advance_checked(&mut state, &window, &calls, watermark, &mut closed);
            }
        }
        let got = flush(&mut state, &window, &calls, closed);

        // Each partition's events in time order (arrival order among equal
        // times), chained while they come within the timeout and the
        // session has not passed a maximum-duration check.
        let mut by_partition: BTreeMap<Vec<Value>, Vec<usize>> = BTreeMap::new();
        for (at, row) in rows.iter().enumerate() {
            by_partition.entry(row.1.clone()).or_default().push(at);
        }
        let mut expected: Vec<(i64, Vec<Value>, Vec<Value>)> = Vec::new();
        for indexes in by_partition.values_mut() {
            indexes.sort_by_key(|&at| (rows[at].0, at));
            // (last time, limit, groups)
            type Open = (i64, i64, BTreeMap<Vec<Value>, Vec<Accumulator>>);
            let mut session: Option<Open> = None;
            let mut finish = |(last, limit, groups): Open| {
                let end = (last + timeout).min(limit);
                for (keys, accumulators) in groups {
                    let aggregates = finish_all(&accumulators, &calls);
                    expected.push((end, keys, aggregates));
                }
            };
            for &at in indexes.iter() {
                let (time, _, keys, args) = &rows[at];
                if let Some((last, limit, _)) = &session
                    && *time > (last + timeout).min(*limit)
                {
                    finish(session.take().expect("open"));
                }
                let (last, _, groups) = session.get_or_insert_with(|| {
                    let limit = time::align_up(time + max_duration, max_duration, 0);
                    (*time, limit, BTreeMap::new())
                });
                *last = (*last).max(*time);
                let accumulators = groups
                    .entry(keys.clone())
                    .or_insert_with(|| new_accumulators(&calls));
                for (accumulator, arg) in accumulators.iter_mut().zip(args) {
                    accumulator.update(arg);
                }
            }
            if let Some(open) = session {
                finish(open);
            }
        }
        expected.sort();
        let mut got = got;
        got.sort();
        assert_eq!(got.len(), expected.len());
        assert_eq!(got, expected);
    }

    #[test]
    fn sessions_close_on_timeout_and_at_maximum_duration_checks() {
        let window = WindowPlan::Session {
            timeout: 5,
            max_duration: 10,
            partition: Vec::new(),
        };
        let calls = [call(AggregateFunction::Count)];
        let mut state = WindowState::default();
        for time in [1, 3, 7, 9, 11, 30] {
            add(&mut state, &window, &calls, time);
        }
        // 1..9 chain within the timeout; the check at 10 finds 9 units,
        // the one at 20 would close it, but 11 + 5 = 16 comes first.
        let closed = state.advance(&window, &calls, 31);
        assert_eq!(counts(&closed), vec![(16, "k".into(), 5)]);
        let closed = state.advance(&window, &calls, i64::MAX);
        assert_eq!(counts(&closed), vec![(35, "k".into(), 1)]);
        // A session kept alive past the check at 20 closes there.
        let mut state = WindowState::default();
        for time in [12, 16, 20, 24, 28, 32] {
            add(&mut state, &window, &calls, time);
        }
        let closed = state.advance(&window, &calls, i64::MAX);
        assert_eq!(
            counts(&closed),
            vec![(30, "k".into(), 5), (37, "k".into(), 1)]
        );
        let mut state = WindowState::default();
        for time in [2, 6, 10, 14] {
            add(&mut state, &window, &calls, time);
        }
        let closed = state.advance(&window, &calls, i64::MAX);
        assert_eq!(counts(&closed), vec![(19, "k".into(), 4)]);
    }

    #[test]
    fn sliding_windows_emit_when_events_enter_and_leave() {
        let window = WindowPlan::Sliding { size: 10 };
        let calls = [call(AggregateFunction::Count)];
        let mut state = WindowState::default();
        for time in [5, 8, 20] {
            add(&mut state, &window, &calls, time);
        }
        let closed = state.advance(&window, &calls, i64::MAX);
        // Enter 5 -> (−5, 5]: 1; enter 8: 2; leave 5 at 15: 1; leave 8 at
        // 18: empty, no output; enter 20: 1; leave 20 at 30: empty.
        assert_eq!(
            counts(&closed),
            vec![
                (5, "k".into(), 1),
                (8, "k".into(), 2),
                (15, "k".into(), 1),
                (20, "k".into(), 1)
            ]
        );
    }
}
