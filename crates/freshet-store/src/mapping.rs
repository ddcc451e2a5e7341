//! JSON events to typed Arrow columns.
//!
//! The events of a chunk are decoded together by `arrow-json`'s tape
//! decoder against a nested schema built from the column paths, then the
//! leaves are lifted out into the table's flat columns. If the chunk fails
//! as a whole (a syntax error, a type that does not fit, a record holding
//! two objects), each record is decoded on its own so the bad ones are set
//! aside with their reason and the good ones still land.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_json::ReaderBuilder;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, new_null_array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{filter_record_batch, is_not_null};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::scalar::ScalarValue;

use crate::spec::{ColumnSpec, ColumnType, TableSpec, timestamp_type};

/// Events mapped to rows: `batch` holds the table's columns (without
/// `_ingestion_time`) for the events listed in `kept`, in order.
#[derive(Debug)]
pub struct Mapped {
    pub batch: RecordBatch,
    pub kept: Vec<usize>,
    /// Events that did not map, by their index in the input, with why.
    pub rejected: Vec<(usize, String)>,
}

/// Maps events for one table; built once, used for every chunk.
#[derive(Debug)]
pub struct Mapper {
    columns: Vec<ColumnSpec>,
    /// What arrow-json decodes: the paths as nested structs; datetimes as text.
    json_schema: SchemaRef,
    /// The mapped columns (no ingestion time).
    schema: SchemaRef,
    defaults: Vec<Option<ArrayRef>>,
}

/// A tree of the JSON fields the columns read.
#[derive(Default)]
struct PathTree {
    leaf: Option<DataType>,
    children: BTreeMap<String, PathTree>,
}

impl PathTree {
    fn insert(&mut self, path: &[String], leaf: DataType, column: &str) -> Result<(), String> {
        let conflict = || {
            format!(
                "column '{column}': path '{}' is also read by another column or holds one",
                path.join(".")
            )
        };
        let mut node = &mut *self;
        for part in path {
            if node.leaf.is_some() {
                return Err(conflict());
            }
            node = node.children.entry(part.clone()).or_default();
        }
        if node.leaf.is_some() || !node.children.is_empty() {
            return Err(conflict());
        }
        node.leaf = Some(leaf);
        Ok(())
    }

    fn fields(&self) -> Result<Fields, String> {
        self.children
            .iter()
            .map(|(name, child)| {
                if child.leaf.is_some() && !child.children.is_empty() {
                    return Err(format!("'{name}' is read both as a value and as an object"));
                }
                let data_type = match &child.leaf {
                    Some(leaf) => leaf.clone(),
                    None => DataType::Struct(child.fields()?),
                };
                Ok(Arc::new(Field::new(name, data_type, true)))
            })
            .collect()
    }
}

impl Mapper {
    pub fn new(spec: &TableSpec) -> Result<Self, String> {
        let mut tree = PathTree::default();
        for column in &spec.columns {
            let decoded = match column.kind {
                ColumnType::Datetime => DataType::Utf8,
                other => other.data_type(),
            };
            tree.insert(&column.path, decoded, &column.name)?;
        }
        let json_schema = Arc::new(Schema::new(tree.fields()?));
        let schema = Arc::new(Schema::new(
            spec.columns
                .iter()
                .map(|c| Field::new(&c.name, c.kind.data_type(), true))
                .collect::<Vec<_>>(),
        ));
        let defaults = spec
            .columns
            .iter()
            .map(|column| {
                column
                    .default
                    .as_ref()
                    .map(|value| default_array(column, value))
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            columns: spec.columns.clone(),
            json_schema,
            schema,
            defaults,
        })
    }

    /// The mapped columns' schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn map(&self, events: &[&[u8]]) -> Mapped {
        let all: Vec<usize> = (0..events.len()).collect();
        match self.decode(events) {
            Ok(decoded) => self.finish(decoded, all, Vec::new()),
            Err(_) => {
                let mut kept = Vec::new();
                let mut rejected = Vec::new();
                for (at, event) in events.iter().enumerate() {
                    match self.decode(std::slice::from_ref(event)) {
                        Ok(_) => kept.push(at),
                        Err(reason) => rejected.push((at, reason)),
                    }
                }
                let good: Vec<&[u8]> = kept.iter().map(|&at| events[at]).collect();
                let decoded = self
                    .decode(&good)
                    .expect("records that decode alone decode together");
                self.finish(decoded, kept, rejected)
            }
        }
    }

    /// Decodes events into one struct row each; an error if any event is
    /// not exactly one JSON object of fitting types.
    fn decode(&self, events: &[&[u8]]) -> Result<Vec<ArrayRef>, String> {
        let rows = events.len();
        if rows == 0 {
            return Ok(self
                .columns
                .iter()
                .map(|c| new_null_array(&decoded_type(c), 0))
                .collect());
        }
        let mut decoder = ReaderBuilder::new(self.json_schema.clone())
            .with_batch_size(rows + 1)
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for event in events {
            let mut rest: &[u8] = event;
            while !rest.is_empty() {
                let used = decoder.decode(rest).map_err(describe)?;
                if used == 0 {
                    return Err("more than one JSON value in the event".into());
                }
                rest = &rest[used..];
            }
            decoder.decode(b"\n").map_err(describe)?;
        }
        let batch = decoder.flush().map_err(describe)?;
        let Some(batch) = batch else {
            return Err("the event is empty".into());
        };
        if batch.num_rows() != rows {
            return Err("an event is not exactly one JSON object".into());
        }
        let root = StructArray::from(batch);
        self.columns
            .iter()
            .map(|column| Ok(leaf(&root, &column.path)))
            .collect()
    }

    /// Converts datetimes, applies defaults and drops rows that miss a
    /// required value or hold an unreadable datetime.
    fn finish(
        &self,
        decoded: Vec<ArrayRef>,
        kept: Vec<usize>,
        mut rejected: Vec<(usize, String)>,
    ) -> Mapped {
        let rows = kept.len();
        let mut bad: Vec<Option<String>> = vec![None; rows];
        let mut arrays = Vec::with_capacity(self.columns.len());
        for ((column, array), default) in self.columns.iter().zip(decoded).zip(&self.defaults) {
            let mut array = if column.kind == ColumnType::Datetime {
                parse_datetimes(&column.name, &array, &mut bad)
            } else {
                array
            };
            if let Some(default) = default
                && array.null_count() > 0
            {
                let present = is_not_null(&array).expect("is_not_null works on every type");
                let scalar = datafusion::arrow::array::Scalar::new(default.clone());
                array = zip(&present, &array, &scalar).expect("default has the column's type");
            }
            if column.required && array.null_count() > 0 {
                for (row, reason) in bad.iter_mut().enumerate().take(rows) {
                    if array.is_null(row) && reason.is_none() {
                        *reason = Some(format!(
                            "required field '{}' is missing or null",
                            column.path.join(".")
                        ));
                    }
                }
            }
            arrays.push(array);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .expect("mapped columns fit the schema");
        if bad.iter().all(Option::is_none) {
            return Mapped {
                batch,
                kept,
                rejected,
            };
        }
        let keep = BooleanArray::from(bad.iter().map(|b| b.is_none()).collect::<Vec<_>>());
        let batch = filter_record_batch(&batch, &keep).expect("filter keeps the schema");
        let mut still_kept = Vec::with_capacity(rows);
        for (row, reason) in bad.into_iter().enumerate() {
            match reason {
                None => still_kept.push(kept[row]),
                Some(reason) => rejected.push((kept[row], reason)),
            }
        }
        rejected.sort_by_key(|(at, _)| *at);
        Mapped {
            batch,
            kept: still_kept,
            rejected,
        }
    }
}

fn decoded_type(column: &ColumnSpec) -> DataType {
    match column.kind {
        ColumnType::Datetime => DataType::Utf8,
        other => other.data_type(),
    }
}

fn describe(error: ArrowError) -> String {
    match error {
        ArrowError::JsonError(message)
        | ArrowError::ParseError(message)
        | ArrowError::CastError(message) => message,
        other => other.to_string(),
    }
}

/// The array at `path` inside `root`, null wherever a parent object was
/// missing or null.
fn leaf(root: &StructArray, path: &[String]) -> ArrayRef {
    let mut current = root
        .column_by_name(&path[0])
        .expect("path is in the decode schema")
        .clone();
    let mut nulls = current.logical_nulls();
    for part in &path[1..] {
        let parent = current
            .as_any()
            .downcast_ref::<StructArray>()
            .expect("inner path parts are structs");
        let child = parent
            .column_by_name(part)
            .expect("path is in the decode schema")
            .clone();
        nulls = NullBuffer::union(nulls.as_ref(), child.logical_nulls().as_ref());
        current = child;
    }
    if nulls.as_ref().map(NullBuffer::null_count)
        == current.logical_nulls().as_ref().map(NullBuffer::null_count)
    {
        return current;
    }
    let data = current
        .to_data()
        .into_builder()
        .nulls(nulls)
        .build()
        .expect("same length and type");
    datafusion::arrow::array::make_array(data)
}

/// ISO-8601 text (with or without zone; UTC assumed) or epoch milliseconds.
fn parse_datetimes(name: &str, text: &ArrayRef, bad: &mut [Option<String>]) -> ArrayRef {
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("datetimes decode as text");
    let values: TimestampMicrosecondArray = text
        .iter()
        .enumerate()
        .map(|(row, value)| {
            let value = value?;
            let parsed = match value.parse::<i64>() {
                Ok(ms) => ms.checked_mul(1000),
                Err(_) => string_to_timestamp_nanos(value).ok().map(|ns| ns.div_euclid(1000)),
            };
            if parsed.is_none() && bad[row].is_none() {
                bad[row] = Some(format!("'{name}': cannot read '{value}' as a datetime (use ISO-8601 or epoch milliseconds)"));
            }
            parsed
        })
        .collect();
    Arc::new(values.with_timezone("UTC"))
}

fn default_array(column: &ColumnSpec, value: &serde_json::Value) -> Result<ArrayRef, String> {
    use serde_json::Value;
    let wrong = || {
        format!(
            "column '{}': default {value} is not a {}",
            column.name,
            column.kind.name()
        )
    };
    let scalar = match (column.kind, value) {
        (ColumnType::String, Value::String(s)) => ScalarValue::Utf8View(Some(s.clone())),
        (ColumnType::Long, Value::Number(n)) => {
            ScalarValue::Int64(Some(n.as_i64().ok_or_else(wrong)?))
        }
        (ColumnType::Int, Value::Number(n)) => ScalarValue::Int32(Some(
            n.as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(wrong)?,
        )),
        (ColumnType::Real, Value::Number(n)) => {
            ScalarValue::Float64(Some(n.as_f64().ok_or_else(wrong)?))
        }
        (ColumnType::Bool, Value::Bool(b)) => ScalarValue::Boolean(Some(*b)),
        (ColumnType::Datetime, Value::String(s)) => {
            let ns = string_to_timestamp_nanos(s).map_err(|_| wrong())?;
            ScalarValue::TimestampMicrosecond(Some(ns.div_euclid(1000)), Some("UTC".into()))
        }
        (ColumnType::Datetime, Value::Number(n)) => ScalarValue::TimestampMicrosecond(
            Some(n.as_i64().ok_or_else(wrong)? * 1000),
            Some("UTC".into()),
        ),
        _ => return Err(wrong()),
    };
    let array = scalar.to_array().map_err(|e| e.to_string())?;
    debug_assert_eq!(
        array.data_type(),
        &if column.kind == ColumnType::Datetime {
            timestamp_type()
        } else {
            column.kind.data_type()
        }
    );
    Ok(array)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int64Array};

    use super::*;

    fn column(name: &str, path: &str, kind: ColumnType) -> ColumnSpec {
        ColumnSpec::at_path(name, path, kind)
    }

    fn spec() -> TableSpec {
        TableSpec::new(
            "t",
            "topic",
            vec![
                column("id", "eventId", ColumnType::String),
                column("md0", "complexData.moreData0", ColumnType::Real),
                column("seq", "deviceSequenceNumber", ColumnType::Long),
                column("at", "createdAt", ColumnType::Datetime),
            ],
        )
    }

    #[test]
    fn nested_paths_become_flat_columns() {
        let mapper = Mapper::new(&spec()).unwrap();
        let events: Vec<&[u8]> = vec![
            br#"{"eventId":"a","complexData":{"moreData0":1.5,"moreData1":2},"deviceSequenceNumber":7,"createdAt":"2019-05-16T17:16:40.000003Z","extra":[1]}"#,
            br#"{"eventId":"b","deviceSequenceNumber":"8","createdAt":1558027000000}"#,
        ];
        let mapped = mapper.map(&events);
        assert!(mapped.rejected.is_empty(), "{:?}", mapped.rejected);
        let batch = mapped.batch;
        assert_eq!(batch.num_rows(), 2);
        let md0 = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(md0.value(0), 1.5);
        assert!(md0.is_null(1));
        let seq = batch
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(seq.values(), &[7, 8]);
        let at = batch
            .column(3)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(at.value(0), 1_558_027_000_000_003);
        assert_eq!(at.value(1), 1_558_027_000_000_000);
    }

    #[test]
    fn bad_events_are_set_aside_with_their_reason() {
        let mut spec = spec();
        spec.columns[0].required = true;
        spec.columns[2].default = Some(serde_json::json!(-1));
        let mapper = Mapper::new(&spec).unwrap();
        let events: Vec<&[u8]> = vec![
            br#"{"eventId":"a","deviceSequenceNumber":1}"#,
            br#"{"eventId":"b","deviceSeq"#,
            br#"{"deviceSequenceNumber":3}"#,
            br#"{"eventId":"d","createdAt":"yesterday"}"#,
            br#"{"eventId":"e"}{"eventId":"f"}"#,
            br#"{"eventId":"g","complexData":{"moreData0":"many"}}"#,
            br#"{"eventId":"h"}"#,
        ];
        let mapped = mapper.map(&events);
        assert_eq!(mapped.kept, vec![0, 6]);
        let reasons: Vec<usize> = mapped.rejected.iter().map(|(at, _)| *at).collect();
        assert_eq!(reasons, vec![1, 2, 3, 4, 5]);
        assert!(
            mapped.rejected[1].1.contains("required field 'eventId'"),
            "{:?}",
            mapped.rejected
        );
        assert!(
            mapped.rejected[2].1.contains("yesterday"),
            "{:?}",
            mapped.rejected
        );
        let seq = mapped
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(seq.values(), &[1, -1], "the default fills a missing value");
    }

    #[test]
    fn conflicting_paths_are_refused() {
        let spec = TableSpec::new(
            "t",
            "topic",
            vec![
                column("a", "x", ColumnType::String),
                column("b", "x.y", ColumnType::String),
            ],
        );
        assert!(Mapper::new(&spec).unwrap_err().contains("path"));
    }
}
