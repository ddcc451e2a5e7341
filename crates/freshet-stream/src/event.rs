//! Reads events: one JSON object per event, straight into a [`Record`].
//!
//! JSON is read with `jiter`, an iterating reader: no document tree is
//! built, fields a job does not read are skipped (still checked to be
//! JSON), and strings without escapes are seen in place. Two things
//! here are the hot path's own:
//! - Field names a job reads are matched once per event against its short
//!   list and shared (`Arc<str>`) with the plan, not allocated per event.
//! - String values repeat: a BIN, a device id, a result code. Each read
//!   field keeps a small table of the strings it has seen and hands out
//!   the shared copy, so a repeated value costs a hash lookup instead of
//!   an allocation and a free. A field whose values rarely repeat (a
//!   timestamp, an event id) stops using its table after a short trial,
//!   and tries again much later in case its values change character.

use std::collections::HashSet;
use std::sync::Arc;

use foldhash::fast::RandomState;
use jiter::{Jiter, JiterError, Peek};

use crate::value::{Record, Value};

/// Strings longer than this are never looked up in a table.
const INTERNED_MAX_LEN: usize = 64;
/// Distinct strings a table holds at most.
const INTERNED_MAX_STRINGS: usize = 4_096;
/// Lookups in a trial; a table stays in use if at least a quarter hit.
const TRIAL_LOOKUPS: u32 = 1_024;
/// Strings read without a table before a field tries one again.
const RETRY_AFTER: u32 = 1 << 20;

/// The fields of an event a job reads: each by name, either whole or,
/// for a nested record of which only some fields are read, just those.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelection(Vec<SelectedField>);

#[derive(Debug, Clone, PartialEq)]
struct SelectedField {
    name: Arc<str>,
    /// `None` keeps the whole value.
    inner: Option<FieldSelection>,
}

impl FieldSelection {
    /// Adds the field at `path` (names from the outside in), matching
    /// names already selected ignoring ASCII case.
    pub fn add(&mut self, path: &[Arc<str>]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let at = match self
            .0
            .iter()
            .position(|field| field.name.eq_ignore_ascii_case(first))
        {
            Some(at) => at,
            None => {
                self.0.push(SelectedField {
                    name: first.clone(),
                    inner: Some(FieldSelection::default()),
                });
                self.0.len() - 1
            }
        };
        let field = &mut self.0[at];
        match (&mut field.inner, rest.is_empty()) {
            (inner, true) => *inner = None,
            (Some(inner), false) => inner.add(rest),
            (None, false) => {}
        }
    }

    /// The number of top-level fields selected.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Arc<str>> for FieldSelection {
    /// Whole top-level fields.
    fn from_iter<I: IntoIterator<Item = Arc<str>>>(names: I) -> Self {
        let mut selection = Self::default();
        for name in names {
            selection.add(&[name]);
        }
        selection
    }
}

/// Parses events for one input of a job. Keep one per input and reuse it:
/// its tables are what make repeated values cheap.
#[derive(Debug, Default)]
pub struct EventParser {
    /// The fields the job reads, or `None` for every field.
    fields: Option<Vec<Field>>,
    /// Names of fields read when every field is kept, and of fields
    /// inside nested records kept whole.
    names: Interner,
    /// Values of top-level fields when every field is kept.
    values: Interner,
    /// Where `jiter` unescapes strings; kept to reuse its allocation.
    tape: Vec<u8>,
}

#[derive(Debug)]
struct Field {
    name: Arc<str>,
    strings: Interner,
    /// The fields read of a nested record, or `None` for the whole value.
    inner: Option<Vec<Field>>,
}

impl Field {
    fn list(selection: &FieldSelection) -> Vec<Field> {
        selection
            .0
            .iter()
            .map(|selected| Field {
                name: selected.name.clone(),
                strings: Interner::default(),
                inner: selected.inner.as_ref().map(Field::list),
            })
            .collect()
    }
}

impl EventParser {
    /// A parser keeping only the `fields` selected (names matched
    /// ignoring ASCII case) when given, or every field.
    pub fn new(fields: Option<&FieldSelection>) -> Self {
        Self {
            fields: fields.map(Field::list),
            ..Self::default()
        }
    }

    /// Parses one event, which must be a JSON object.
    pub fn parse(&mut self, bytes: &[u8]) -> Result<Record, String> {
        let mut jiter = Jiter::with_tape(bytes, std::mem::take(&mut self.tape));
        let result = self.object(&mut jiter);
        let result = match result {
            Ok(record) => jiter.finish().map(|()| record).map_err(Error::from),
            Err(error) => Err(error),
        };
        let result = result.map_err(|error| match error {
            Error::Json(error) => error.description(&jiter),
            Error::NotObject(found) => format!("an event must be a JSON object, not {found}"),
        });
        self.tape = jiter.into_tape();
        result
    }

    fn object(&mut self, jiter: &mut Jiter) -> Result<Record, Error> {
        let peek = jiter.peek()?;
        if peek != Peek::Object {
            return Err(Error::NotObject(match peek {
                Peek::Array => "an array",
                Peek::String => "a string",
                Peek::True | Peek::False => "a bit",
                Peek::Null => "null",
                _ if peek.is_num() => "a number",
                _ => match jiter.known_skip(peek) {
                    Err(error) => return Err(error.into()),
                    Ok(()) => "a value of another kind",
                },
            }));
        }
        Ok(match &mut self.fields {
            None => read_record(jiter, &mut self.names, Some(&mut self.values))?,
            Some(fields) => read_selected(jiter, fields, &mut self.names)?,
        })
    }
}

/// Reads an object whose `{` is next, keeping only `fields`.
fn read_selected(
    jiter: &mut Jiter,
    fields: &mut [Field],
    names: &mut Interner,
) -> Result<Record, JiterError> {
    let mut record = Record::with_capacity(fields.len());
    let mut key = jiter.known_object()?;
    while let Some(name) = key {
        let found = fields
            .iter()
            .position(|field| *field.name == *name)
            .map(|at| (at, true))
            .or_else(|| {
                fields
                    .iter()
                    .position(|field| field.name.eq_ignore_ascii_case(name))
                    .map(|at| (at, false))
            });
        match found {
            None => jiter.next_skip()?,
            Some((at, exact)) => {
                let field = &mut fields[at];
                // Exact names share the plan's copy; others keep the
                // event's spelling.
                let name = if exact {
                    field.name.clone()
                } else {
                    Arc::from(name)
                };
                let value = match &mut field.inner {
                    Some(inner) if jiter.peek()? == Peek::Object => {
                        Value::Record(Arc::new(read_selected(jiter, inner, names)?))
                    }
                    _ => read_value(jiter, names, &mut field.strings)?,
                };
                record.insert(name, value);
            }
        }
        key = jiter.next_key()?;
    }
    Ok(record)
}

enum Error {
    Json(JiterError),
    NotObject(&'static str),
}

impl From<JiterError> for Error {
    fn from(error: JiterError) -> Self {
        Error::Json(error)
    }
}

/// Reads an object whose `{` is next. `values` interns the strings of its
/// fields (top-level records only).
fn read_record(
    jiter: &mut Jiter,
    names: &mut Interner,
    mut values: Option<&mut Interner>,
) -> Result<Record, JiterError> {
    let mut record = Record::new();
    let mut key = jiter.known_object()?;
    while let Some(name) = key {
        let name = names.intern(name);
        let value = match values.as_deref_mut() {
            Some(values) => read_value(jiter, names, values)?,
            None => read_value(jiter, names, &mut Interner::disabled())?,
        };
        record.insert(name, value);
        key = jiter.next_key()?;
    }
    Ok(record)
}

fn read_value(
    jiter: &mut Jiter,
    names: &mut Interner,
    strings: &mut Interner,
) -> Result<Value, JiterError> {
    let peek = jiter.peek()?;
    Ok(match peek {
        Peek::Null => {
            jiter.known_null()?;
            Value::Null
        }
        Peek::True | Peek::False => Value::Bool(jiter.known_bool(peek)?),
        Peek::String => Value::Str(strings.intern(jiter.known_str()?)),
        Peek::Object => Value::Record(Arc::new(read_record(jiter, names, None)?)),
        Peek::Array => {
            let mut items = Vec::new();
            let mut next = jiter.known_array()?;
            while next.is_some() {
                items.push(read_value(jiter, names, &mut Interner::disabled())?);
                next = jiter.array_step()?;
            }
            Value::Array(Arc::new(items))
        }
        _ => number(jiter.known_number_bytes(peek)?),
    })
}

/// A JSON number: a bigint when it is an integer that fits, else a float
/// (as integers beyond 64 bits are read by most JSON readers).
fn number(text: &[u8]) -> Value {
    // jiter checked the number's syntax: it is ASCII.
    let text = std::str::from_utf8(text).expect("a JSON number is ASCII");
    if !text.contains(['.', 'e', 'E'])
        && let Ok(integer) = text.parse::<i64>()
    {
        return Value::Int(integer);
    }
    Value::Float(text.parse().expect("a JSON number parses as a float"))
}

/// Shared copies of the strings a field has seen; see the module notes.
#[derive(Debug)]
struct Interner {
    table: HashSet<Arc<str>, RandomState>,
    /// Lookups and hits in the current trial; while the table is off,
    /// `lookups` counts down to the next trial.
    lookups: u32,
    hits: u32,
    on: bool,
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            table: HashSet::default(),
            lookups: 0,
            hits: 0,
            on: true,
        }
    }
}

impl Interner {
    fn disabled() -> Self {
        Self {
            on: false,
            lookups: u32::MAX,
            ..Self::default()
        }
    }

    fn intern(&mut self, text: &str) -> Arc<str> {
        if !self.on || text.len() > INTERNED_MAX_LEN {
            if !self.on {
                self.lookups = self.lookups.saturating_sub(1);
                if self.lookups == 0 {
                    self.on = true;
                    self.hits = 0;
                }
            }
            return Arc::from(text);
        }
        self.lookups += 1;
        let shared = match self.table.get(text) {
            Some(shared) => {
                self.hits += 1;
                shared.clone()
            }
            None => {
                let shared: Arc<str> = Arc::from(text);
                if self.table.len() < INTERNED_MAX_STRINGS {
                    self.table.insert(shared.clone());
                }
                shared
            }
        };
        if self.lookups == TRIAL_LOOKUPS {
            if self.hits < TRIAL_LOOKUPS / 4 {
                self.on = false;
                self.table = HashSet::default();
                self.lookups = RETRY_AFTER;
            } else {
                self.lookups = 0;
            }
            self.hits = 0;
        }
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Record, String> {
        EventParser::new(None).parse(text.as_bytes())
    }

    #[test]
    fn reads_every_json_type_in_order() {
        let text =
            r#"{"b":1,"a":{"x":[1,2.5,"s",null,true,-3e2]},"c":"2026-01-01T00:00:00Z","d":false}"#;
        let record = all(text).unwrap();
        assert_eq!(
            record.to_json_string(),
            r#"{"b":1,"a":{"x":[1,2.5,"s",null,true,-300.0]},"c":"2026-01-01T00:00:00Z","d":false}"#
        );
    }

    #[test]
    fn big_integers_become_floats_and_escapes_are_read() {
        let record =
            all(r#"{"n":18446744073709551615,"m":-9223372036854775808,"s":"a\"\u00e9\n"}"#)
                .unwrap();
        assert!(
            matches!(record.get("n"), Some(Value::Float(value)) if *value == 18446744073709551615.0)
        );
        assert!(matches!(record.get("m"), Some(Value::Int(i64::MIN))));
        assert!(matches!(record.get("s"), Some(Value::Str(text)) if &**text == "a\"é\n"));
    }

    #[test]
    fn rejects_what_is_not_one_json_object() {
        for (text, message) in [
            ("[1]", "not an array"),
            ("\"x\"", "not a string"),
            ("12", "not a number"),
            ("null", "not null"),
            ("true", "not a bit"),
        ] {
            let error = all(text).unwrap_err();
            assert!(error.contains(message), "{text}: {error}");
        }
        for text in [
            "{\"a\":",
            "{\"a\":1}}",
            "{\"a\":1} x",
            "{\"a\":NaN}",
            "{\"a\" 1}",
            "{\"a\":[1,}",
            "",
            "@",
        ] {
            assert!(all(text).is_err(), "{text:?} was accepted");
        }
        // Skipped fields are still checked.
        let mut parser = EventParser::new(Some(&[Arc::from("a")].into_iter().collect()));
        assert!(parser.parse(br#"{"a":1,"b":[1,}"#).is_err());
        assert!(parser.parse(br#"{"a":1,"b":{"c":[1,{"d":"x"}]}}"#).is_ok());
    }

    #[test]
    fn keeps_only_the_asked_fields_matching_case_loosely() {
        let fields = [Arc::from("bin"), Arc::from("Result")];
        let mut parser = EventParser::new(Some(&fields.iter().cloned().collect()));
        let record = parser
            .parse(br#"{"eventId":"e1","BIN":"4111","Amount":3.5,"Result":"DECLINE","bin":"x"}"#)
            .unwrap();
        let names: Vec<&str> = record.iter().map(|(name, _)| &**name).collect();
        assert_eq!(names, ["BIN", "Result", "bin"]);
        assert!(matches!(record.get("BIN"), Some(Value::Str(text)) if &**text == "4111"));
        // The exact spelling shares the plan's name.
        let (name, _) = record.iter().nth(1).unwrap();
        assert!(Arc::ptr_eq(name, &fields[1]));
    }

    #[test]
    fn nested_records_keep_only_the_fields_read() {
        let path = |names: &[&str]| {
            names
                .iter()
                .map(|name| Arc::from(*name))
                .collect::<Vec<_>>()
        };
        let mut selection = FieldSelection::default();
        selection.add(&path(&["type"]));
        selection.add(&path(&["bid", "price"]));
        selection.add(&path(&["Bid", "dateTime"]));
        selection.add(&path(&["person", "name"]));
        selection.add(&path(&["person"]));
        selection.add(&path(&["auction"]));
        selection.add(&path(&["auction", "id"]));
        assert_eq!(selection.len(), 4);
        let mut parser = EventParser::new(Some(&selection));
        let record = parser
            .parse(br#"{"type":"bid","bid":{"auction":1,"price":5,"url":"u","DATETIME":"t","extra":{"a":[1]}},"x":2}"#)
            .unwrap();
        assert_eq!(
            record.to_json_string(),
            r#"{"type":"bid","bid":{"price":5,"DATETIME":"t"}}"#
        );
        // Skipped nested fields are still checked.
        assert!(parser.parse(br#"{"bid":{"price":5,"extra":[1,}}"#).is_err());
        // A record selected whole stays whole, also when one of its fields
        // was named first or after.
        for text in [
            r#"{"person":{"name":"n","city":"c"}}"#,
            r#"{"auction":{"id":1,"seller":2}}"#,
        ] {
            assert_eq!(
                parser.parse(text.as_bytes()).unwrap().to_json_string(),
                text
            );
        }
        // A field read inside a record that is not one is kept as it is.
        let record = parser.parse(br#"{"bid":[1,{"price":2}]}"#).unwrap();
        assert_eq!(record.to_json_string(), r#"{"bid":[1,{"price":2}]}"#);
    }

    #[test]
    fn repeated_values_share_one_copy_and_unique_ones_stop_the_table() {
        let fields = [Arc::from("k"), Arc::from("t")];
        let mut parser = EventParser::new(Some(&fields.iter().cloned().collect()));
        let mut first_key: Option<Arc<str>> = None;
        for sequence in 0..5_000 {
            let event = format!(r#"{{"k":"key-{}","t":"time-{sequence}"}}"#, sequence % 10);
            let record = parser.parse(event.as_bytes()).unwrap();
            // Values are right whatever the table does.
            let Some(Value::Str(key)) = record.get("k") else {
                panic!("k is a string")
            };
            assert_eq!(&**key, format!("key-{}", sequence % 10));
            assert!(
                matches!(record.get("t"), Some(Value::Str(time)) if **time == *format!("time-{sequence}"))
            );
            if sequence % 10 == 0 {
                match &first_key {
                    None => first_key = Some(key.clone()),
                    Some(first) => assert!(Arc::ptr_eq(first, key), "key-0 was copied again"),
                }
            }
        }
        let tables = parser.fields.as_ref().unwrap();
        assert!(tables[0].strings.on);
        assert!(!tables[1].strings.on, "unique times keep no table");
        assert!(tables[1].strings.table.is_empty());
    }
}
