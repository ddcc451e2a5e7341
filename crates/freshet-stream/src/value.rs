//! The values a hot-path query computes with: Stream Analytics' loose,
//! per-record types (bigint, float, nvarchar(max), datetime, bit, record,
//! array), read from JSON and written back as JSON.
//!
//! Types belong to values, not columns: two events of one input may carry
//! a field with different types, as in Stream Analytics. That is why the
//! hot path evaluates over these values rather than over a fixed Arrow
//! schema.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{self, AtomicU8};

use serde::{Deserialize, Serialize, Serializer};

use crate::time;

/// One value. Datetimes are microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Time(i64),
    Record(Arc<Record>),
    Array(Arc<Vec<Value>>),
}

/// A record: named fields in the order they arrived. Field names are
/// matched exactly first, then ignoring ASCII case.
///
/// Names are kept apart from values so that records of one layout (the
/// rows of a step, events of one shape) share one list of names: making
/// or dropping such a record counts one reference for its names instead
/// of one per field.
#[derive(Debug, Clone, Default)]
pub struct Record {
    names: Names,
    values: Vec<Value>,
}

#[derive(Debug, Clone)]
enum Names {
    Shared(Arc<[Arc<str>]>),
    Own(Vec<Arc<str>>),
}

impl Default for Names {
    fn default() -> Self {
        Names::Own(Vec::new())
    }
}

impl Names {
    fn as_slice(&self) -> &[Arc<str>] {
        match self {
            Names::Shared(names) => names,
            Names::Own(names) => names,
        }
    }

    /// The names to add to, copied out of a shared list first.
    fn own(&mut self) -> &mut Vec<Arc<str>> {
        if let Names::Shared(names) = self {
            *self = Names::Own(names.to_vec());
        }
        match self {
            Names::Own(names) => names,
            Names::Shared(_) => unreachable!("made own above"),
        }
    }
}

impl Record {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            names: Names::Own(Vec::with_capacity(capacity)),
            values: Vec::with_capacity(capacity),
        }
    }

    /// A record of distinct `names` (shared with other records of this
    /// layout) and their `values`, in order.
    pub fn with_names(names: Arc<[Arc<str>]>, values: Vec<Value>) -> Self {
        assert_eq!(names.len(), values.len(), "one value per name");
        debug_assert!(
            names
                .iter()
                .enumerate()
                .all(|(at, name)| !names[..at].contains(name))
        );
        Self {
            names: Names::Shared(names),
            values,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).map(|at| &self.values[at])
    }

    /// `get` for a name read again and again (a query's field): `hint`
    /// remembers where it was last found, which for events of one shape
    /// is where it is next time.
    #[inline]
    pub fn get_hinted(&self, name: &str, hint: &AtomicU8) -> Option<&Value> {
        let at = usize::from(hint.load(atomic::Ordering::Relaxed));
        if let Some(field) = self.names.as_slice().get(at)
            && std::ptr::eq(&**field, name)
        {
            return Some(&self.values[at]);
        }
        let at = self.position(name)?;
        if let Ok(at) = u8::try_from(at) {
            hint.store(at, atomic::Ordering::Relaxed);
        }
        Some(&self.values[at])
    }

    fn position(&self, name: &str) -> Option<usize> {
        let names = self.names.as_slice();
        names
            .iter()
            // A query's names are mostly the very strings events were
            // read with (shared by the parser): pointers are compared
            // before any text.
            .position(|field| std::ptr::eq(&**field, name))
            .or_else(|| names.iter().position(|field| &**field == name))
            .or_else(|| {
                names
                    .iter()
                    .position(|field| field.eq_ignore_ascii_case(name))
            })
    }

    /// Sets `name`, replacing an existing field of the same name.
    pub fn insert(&mut self, name: Arc<str>, value: Value) {
        match self
            .names
            .as_slice()
            .iter()
            .position(|field| *field == name)
        {
            Some(at) => self.values[at] = value,
            None => self.push_new(name, value),
        }
    }

    /// Adds a field the caller knows the record does not have yet,
    /// without looking for one to replace.
    pub fn push_new(&mut self, name: Arc<str>, value: Value) {
        debug_assert!(self.names.as_slice().iter().all(|field| *field != name));
        self.names.own().push(name);
        self.values.push(value);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Value)> {
        self.names.as_slice().iter().zip(&self.values)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Parses one JSON object, keeping every field. Events of a job are
    /// read with an [`EventParser`](crate::event::EventParser) kept per
    /// input, which shares repeated strings.
    pub fn from_json(bytes: &[u8]) -> Result<Record, String> {
        crate::event::EventParser::new(None).parse(bytes)
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.names.as_slice() == other.names.as_slice() && self.values == other.values
    }
}

/// Stored (checkpoints) as a list of name and value pairs.
impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Pairs<'a>(&'a Record);
        impl Serialize for Pairs<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter())
            }
        }
        let mut record = serializer.serialize_struct("Record", 1)?;
        record.serialize_field("fields", &Pairs(self))?;
        record.end()
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "Record")]
        struct Stored {
            fields: Vec<(Arc<str>, Value)>,
        }
        let stored = Stored::deserialize(deserializer)?;
        let (names, values) = stored.fields.into_iter().unzip();
        Ok(Record {
            names: Names::Own(names),
            values,
        })
    }
}

impl Value {
    pub fn str(text: &str) -> Value {
        Value::Str(Arc::from(text))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The Stream Analytics name of the value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bit",
            Value::Int(_) => "bigint",
            Value::Float(_) => "float",
            Value::Str(_) => "nvarchar(max)",
            Value::Time(_) => "datetime",
            Value::Record(_) => "record",
            Value::Array(_) => "array",
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(value) => Some(*value as f64),
            Value::Float(value) => Some(*value),
            Value::Bool(value) => Some(f64::from(u8::from(*value))),
            _ => None,
        }
    }

    /// The value as a datetime: datetimes themselves, ISO-8601 strings,
    /// and numbers as milliseconds since the epoch.
    pub fn as_time(&self) -> Option<i64> {
        match self {
            Value::Time(micros) => Some(*micros),
            Value::Str(text) => time::parse_datetime(text),
            Value::Int(millis) => millis.checked_mul(1000),
            Value::Float(millis) if millis.is_finite() => Some((millis * 1000.0) as i64),
            _ => None,
        }
    }

    /// True only for a true bit or a non-zero number; NULL is not true.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Bool(value) => *value,
            Value::Int(value) => *value != 0,
            Value::Float(value) => *value != 0.0,
            _ => false,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Str(_) => 3,
            Value::Time(_) => 4,
            Value::Record(_) => 5,
            Value::Array(_) => 6,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(text) => formatter.write_str(text),
            other => formatter
                .write_str(&serde_json::to_string(&Json(other)).expect("values always serialize")),
        }
    }
}

/// A total order used for grouping, DISTINCT and MIN/MAX: by type rank
/// (NULL first), numbers compared by value across bigint and float.
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => compare_floats(*a, *b),
            (Value::Int(a), Value::Float(b)) => compare_floats(*a as f64, *b),
            (Value::Float(a), Value::Int(b)) => compare_floats(*a, *b as f64),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::Time(a), Value::Time(b)) => a.cmp(b),
            (Value::Record(a), Value::Record(b)) => a.iter().cmp(b.iter()),
            (Value::Array(a), Value::Array(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

/// Numeric order with -0 equal to 0, and NaN after every number.
fn compare_floats(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b)
        .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Record {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.iter().cmp(other.iter()))
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Value::Null => {}
            Value::Bool(value) => value.hash(state),
            // Equal numbers hash alike whatever their type.
            Value::Int(value) => (*value as f64).to_bits().hash(state),
            Value::Float(value) => {
                // -0 equals 0, and every NaN equals every other.
                let value = if *value == 0.0 {
                    0.0
                } else if value.is_nan() {
                    f64::NAN
                } else {
                    *value
                };
                value.to_bits().hash(state)
            }
            Value::Str(text) => text.hash(state),
            Value::Time(micros) => micros.hash(state),
            Value::Record(record) => {
                for (name, value) in record.iter() {
                    name.hash(state);
                    value.hash(state);
                }
            }
            Value::Array(items) => items.hash(state),
        }
    }
}

/// Writes a value as JSON, records with their fields in order (outputs
/// and `job test`): datetimes as ISO-8601 UTC strings, non-finite floats
/// as null.
pub struct Json<'a>(pub &'a Value);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(value) => serializer.serialize_bool(*value),
            Value::Int(value) => serializer.serialize_i64(*value),
            Value::Float(value) if value.is_finite() => serializer.serialize_f64(*value),
            Value::Float(_) => serializer.serialize_unit(),
            Value::Str(text) => serializer.serialize_str(text),
            Value::Time(micros) => serializer.serialize_str(&time::format_datetime(*micros)),
            Value::Record(record) => {
                let mut map = serializer.serialize_map(Some(record.len()))?;
                for (name, value) in record.iter() {
                    map.serialize_entry(&**name, &Json(value))?;
                }
                map.end()
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items.iter() {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
        }
    }
}

impl Record {
    /// The record as one line of JSON, fields in order.
    pub fn to_json_string(&self) -> String {
        let value = Value::Record(Arc::new(self.clone()));
        serde_json::to_string(&Json(&value)).expect("values always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_with_field_order_and_types() {
        let text = br#"{"b":1,"a":{"x":[1,2.5,"s",null,true]},"c":"2026-01-01T00:00:00Z"}"#;
        let record = Record::from_json(text).unwrap();
        assert_eq!(
            record.to_json_string(),
            r#"{"b":1,"a":{"x":[1,2.5,"s",null,true]},"c":"2026-01-01T00:00:00Z"}"#
        );
        assert!(matches!(record.get("B"), Some(Value::Int(1))));
        assert!(
            Record::from_json(b"[1]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(Record::from_json(b"{\"a\":").is_err());
    }

    #[test]
    fn records_sharing_names_store_and_compare_as_pairs() {
        let names: Arc<[Arc<str>]> = Arc::from(vec![Arc::from("a"), Arc::from("b")]);
        let shared = Record::with_names(names.clone(), vec![Value::Int(1), Value::str("x")]);
        let mut own = Record::new();
        own.insert(Arc::from("a"), Value::Int(1));
        own.insert(Arc::from("b"), Value::str("x"));
        assert_eq!(shared, own);
        // Checkpoints hold a record as its name and value pairs.
        let stored = serde_json::to_string(&shared).unwrap();
        assert_eq!(stored, r#"{"fields":[["a",{"Int":1}],["b",{"Str":"x"}]]}"#);
        assert_eq!(serde_json::from_str::<Record>(&stored).unwrap(), shared);
        // Adding to a record copies its shared names, not the other's.
        let mut grown = shared.clone();
        grown.insert(Arc::from("c"), Value::Null);
        assert_eq!(grown.len(), 3);
        assert_eq!(shared.len(), 2);
        assert!(grown.get("C").is_some_and(Value::is_null));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn numbers_group_by_value_across_types() {
        use std::collections::HashSet;
        let set: HashSet<Value> = [
            Value::Int(1),
            Value::Float(1.0),
            Value::Float(-0.0),
            Value::Int(0),
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 2);
        assert!(Value::Null < Value::Int(-5));
        assert!(Value::Int(2) < Value::Float(2.5));
    }
}
