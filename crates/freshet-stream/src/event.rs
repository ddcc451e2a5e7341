//! Reads events: one JSON object per event, straight into a [`Record`].
//!
//! JSON is read by [`Reader`], an iterating reader: no document tree is
//! built, fields a job does not read (also inside nested records) are
//! skipped but still checked to be JSON, and strings without escapes are
//! seen in place. Two more things here are the hot path's own:
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
    fields: Option<Fields>,
    /// Names of fields read when every field is kept, and of fields
    /// inside nested records kept whole.
    names: Interner,
    /// Values of top-level fields when every field is kept.
    values: Interner,
    /// Where strings with escapes are unescaped; kept to reuse its
    /// allocation.
    unescaped: String,
}

#[derive(Debug)]
struct Field {
    name: Arc<str>,
    strings: Interner,
    /// The fields read of a nested record, or `None` for the whole value.
    inner: Option<Fields>,
}

/// The fields read of one record, and what the names of the last record
/// read here were found to be.
#[derive(Debug)]
struct Fields {
    list: Vec<Field>,
    /// Member by member, the last record's name and the field it matched
    /// (with whether exactly), or `None` when skipped. Events of a stream
    /// mostly repeat their layout, so a name is first compared with the
    /// one at its place last time: one comparison instead of a search.
    layout: Vec<(Box<str>, Found)>,
    /// The fields (by index) a record being read has kept so far, all
    /// under the plan's own names.
    kept: Vec<usize>,
    /// The fields kept by the last record read that way, and their names
    /// as that record holds them: the next record of the same fields
    /// shares the list.
    last_kept: Vec<usize>,
    last_names: Arc<[Arc<str>]>,
}

/// Whether two names are equal. Names are mostly short: up to 16 bytes
/// they are compared as two overlapping words, without a call.
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    fn word<const N: usize>(text: &[u8], at: usize) -> [u8; N] {
        *text[at..].first_chunk::<N>().expect("long enough")
    }
    match len {
        8..=16 => {
            word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, len - 8) == word::<8>(b, len - 8)
        }
        4..8 => {
            word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, len - 4) == word::<4>(b, len - 4)
        }
        _ => a == b,
    }
}

/// The field a name reads (its index, and whether the name matched
/// exactly rather than ignoring ASCII case), or `None` when skipped.
type Found = Option<(usize, bool)>;

/// Members of a record whose names are remembered in a layout.
const LAYOUT_MAX_MEMBERS: usize = 64;

impl Fields {
    fn new(selection: &FieldSelection) -> Self {
        Self {
            list: selection
                .0
                .iter()
                .map(|selected| Field {
                    name: selected.name.clone(),
                    strings: Interner::default(),
                    inner: selected.inner.as_ref().map(Fields::new),
                })
                .collect(),
            layout: Vec::new(),
            kept: Vec::new(),
            last_kept: Vec::new(),
            last_names: Arc::new([]),
        }
    }

    /// The names of the fields kept, shared with the last record of the
    /// same fields.
    fn kept_names(&mut self) -> Arc<[Arc<str>]> {
        if self.kept != self.last_kept {
            self.last_names = self
                .kept
                .iter()
                .map(|&at| self.list[at].name.clone())
                .collect();
            self.last_kept.clone_from(&self.kept);
        }
        self.last_names.clone()
    }

    /// What the `member`th name of a record, `text`, reads.
    fn find(&mut self, member: usize, text: &str) -> Found {
        if let Some((name, found)) = self.layout.get(member)
            && same_name(name.as_bytes(), text.as_bytes())
        {
            return *found;
        }
        let found = self
            .list
            .iter()
            .position(|field| *field.name == *text)
            .map(|at| (at, true))
            .or_else(|| {
                self.list
                    .iter()
                    .position(|field| field.name.eq_ignore_ascii_case(text))
                    .map(|at| (at, false))
            });
        if member < self.layout.len() {
            self.layout[member] = (Box::from(text), found);
        } else if member == self.layout.len() && member < LAYOUT_MAX_MEMBERS {
            self.layout.push((Box::from(text), found));
        }
        found
    }
}

impl EventParser {
    /// A parser keeping only the `fields` selected (names matched
    /// ignoring ASCII case) when given, or every field.
    pub fn new(fields: Option<&FieldSelection>) -> Self {
        Self {
            fields: fields.map(Fields::new),
            ..Self::default()
        }
    }

    /// Parses one event, which must be a JSON object.
    pub fn parse(&mut self, bytes: &[u8]) -> Result<Record, String> {
        let mut reader = Reader {
            bytes,
            at: 0,
            depth: 0,
            unescaped: &mut self.unescaped,
        };
        let result = match reader.peek() {
            Ok(b'{') => match &mut self.fields {
                None => reader.record(&mut self.names, Some(&mut self.values)),
                Some(fields) => reader.selected(fields, &mut self.names),
            },
            Ok(other) => {
                let found = match other {
                    b'[' => "an array",
                    b'"' => "a string",
                    b't' | b'f' => "a bit",
                    b'n' => "null",
                    b'-' | b'0'..=b'9' => "a number",
                    _ => return Err(reader.describe(reader.fail("expected a JSON value"))),
                };
                return Err(format!("an event must be a JSON object, not {found}"));
            }
            Err(error) => Err(error),
        };
        result
            .and_then(|record| {
                reader.skip_space();
                if reader.at < bytes.len() {
                    return Err(reader.fail("unexpected text after the event's object"));
                }
                Ok(record)
            })
            .map_err(|error| reader.describe(error))
    }
}

/// Nesting deeper than this is refused, as serde_json does, so that no
/// event can exhaust the stack.
const MAX_DEPTH: u32 = 128;

/// What is wrong with an event's JSON, and where (a byte offset).
struct JsonError {
    what: &'static str,
    at: usize,
}

/// A string read from the event: in place, or unescaped into the
/// reader's buffer.
enum Text<'a> {
    InPlace(&'a str),
    Unescaped,
}

/// A word with the high bit set in each byte that is a quote, a backslash,
/// below 0x20 or 0x80 and above; zero when none is. (Bytes above a
/// special one may be flagged too, which only ends the fast scan early.)
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
    // Below 0x20 or from 0x80: `(byte - 0x20) | byte` has its high bit set.
    zero_byte(word ^ (ONES * u64::from(b'"')))
        | zero_byte(word ^ (ONES * u64::from(b'\\')))
        | ((word.wrapping_sub(ONES * 0x20) | word) & HIGH)
}

/// Reads JSON (RFC 8259) from a byte slice, one value at a time, into
/// the hot path's values. Written here rather than taken from a JSON
/// crate because events are short objects whose strings are a few bytes:
/// `jiter` and `serde_json` spend some 200 instructions setting up each
/// key and string, more than reading its bytes; this reader compares
/// names in place, scans a string in one pass that also finds escapes,
/// control bytes and non-ASCII text (validated as UTF-8 only then), and
/// builds values straight away. It is checked against `serde_json` on
/// generated and broken documents (tests below).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: u32,
    unescaped: &'a mut String,
}

impl<'a> Reader<'a> {
    fn fail(&self, what: &'static str) -> JsonError {
        JsonError { what, at: self.at }
    }

    fn describe(&self, error: JsonError) -> String {
        let before = &self.bytes[..error.at.min(self.bytes.len())];
        let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|&byte| byte == b'\n')
                .map_or(0, |at| at + 1)
            + 1;
        format!("{} at line {line} column {column}", error.what)
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Result<u8, JsonError> {
        self.skip_space();
        match self.bytes.get(self.at) {
            Some(&byte) => Ok(byte),
            None => Err(self.fail("the event ends too early")),
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.fail("objects and arrays nest too deeply"));
        }
        self.at += 1;
        Ok(())
    }

    /// After the `{` or `[` (`first`) or after a member of an object or
    /// array: whether another member follows, or `close` ended it.
    fn next_member(&mut self, first: bool, close: u8) -> Result<bool, JsonError> {
        match self.peek()? {
            byte if byte == close => {
                self.at += 1;
                self.depth -= 1;
                Ok(false)
            }
            _ if first => Ok(true),
            b',' => {
                self.at += 1;
                Ok(true)
            }
            b'}' | b']' => Err(self.fail("brackets do not match")),
            _ if close == b'}' => Err(self.fail("expected ',' or '}' after a field")),
            _ => Err(self.fail("expected ',' or ']' after an item")),
        }
    }

    /// A field name in double quotes and the `:` after it.
    #[inline(always)]
    fn name(&mut self) -> Result<Text<'a>, JsonError> {
        if self.peek()? != b'"' {
            return Err(self.fail("expected a field name in double quotes"));
        }
        let name = self.string()?;
        match self.peek()? {
            b':' => {
                self.at += 1;
                Ok(name)
            }
            _ => Err(self.fail("expected ':' after a field name")),
        }
    }

    fn text<'s>(&'s self, text: &Text<'a>) -> &'s str {
        match text {
            Text::InPlace(text) => text,
            Text::Unescaped => self.unescaped,
        }
    }

    /// A string whose `"` is next. The usual string, short ASCII without
    /// escapes, is read here, inline where strings are read; the rest by
    /// `string_rest`.
    #[inline(always)]
    fn string(&mut self) -> Result<Text<'a>, JsonError> {
        let start = self.at + 1;
        let bytes = self.bytes;
        let mut at = start;
        // Eight bytes a step while none of them is special: a quote, a
        // backslash, a control byte or a byte of non-ASCII text.
        // The lowest byte flagged is the first special one; when it is the
        // closing quote the string was plain ASCII.
        while let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
            let special = special_bytes(u64::from_le_bytes(*chunk));
            if special == 0 {
                at += 8;
                continue;
            }
            at += special.trailing_zeros() as usize / 8;
            if bytes[at] == b'"' {
                self.at = at + 1;
                // SAFETY: no byte before `at` was flagged, so all are
                // below 0x80 (ASCII), and ASCII text is UTF-8.
                return Ok(Text::InPlace(unsafe {
                    std::str::from_utf8_unchecked(&bytes[start..at])
                }));
            }
            break;
        }
        self.string_rest(start, at)
    }

    /// The rest of a string from `start` whose bytes before `at` are
    /// ASCII without quote or backslash.
    #[inline(never)]
    fn string_rest(&mut self, start: usize, mut at: usize) -> Result<Text<'a>, JsonError> {
        let bytes = self.bytes;
        let mut high = 0u8;
        // Byte by byte from the first special byte (or near the end).
        loop {
            let Some(&byte) = bytes.get(at) else {
                self.at = at;
                return Err(self.fail("a string is not closed"));
            };
            match byte {
                b'"' => break,
                b'\\' => {
                    self.at = at;
                    return self.escaped(start);
                }
                0..=0x1f => {
                    self.at = at;
                    return Err(self.fail("a control character must be escaped in a string"));
                }
                _ => high |= byte,
            }
            at += 1;
        }
        self.at = at + 1;
        let raw = &bytes[start..at];
        if high < 0x80 {
            // SAFETY: every byte of `raw` is below 0x80 (ASCII): those
            // read one at a time went into `high`, those before had no
            // special byte. ASCII text is UTF-8.
            Ok(Text::InPlace(unsafe { std::str::from_utf8_unchecked(raw) }))
        } else {
            match std::str::from_utf8(raw) {
                Ok(text) => Ok(Text::InPlace(text)),
                Err(error) => {
                    self.at = start + error.valid_up_to();
                    Err(self.fail("a string is not valid UTF-8"))
                }
            }
        }
    }

    /// The rest of a string from `start`, which has an escape at `self.at`.
    fn escaped(&mut self, start: usize) -> Result<Text<'a>, JsonError> {
        let bytes = self.bytes;
        let mut out = std::mem::take(self.unescaped).into_bytes();
        out.clear();
        out.extend_from_slice(&bytes[start..self.at]);
        let result = loop {
            let Some(&byte) = bytes.get(self.at) else {
                break Err(self.fail("a string is not closed"));
            };
            self.at += 1;
            match byte {
                b'"' => break Ok(()),
                b'\\' => {
                    let Some(&escape) = bytes.get(self.at) else {
                        break Err(self.fail("a string is not closed"));
                    };
                    self.at += 1;
                    let plain = match escape {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => match self.unicode_escape() {
                            Ok(char) => {
                                out.extend_from_slice(char.encode_utf8(&mut [0; 4]).as_bytes());
                                continue;
                            }
                            Err(error) => break Err(error),
                        },
                        _ => {
                            self.at -= 1;
                            break Err(self.fail("unknown escape in a string"));
                        }
                    };
                    out.push(plain);
                }
                0..=0x1f => {
                    self.at -= 1;
                    break Err(self.fail("a control character must be escaped in a string"));
                }
                _ => out.push(byte),
            }
        };
        let text = result.and_then(|()| {
            String::from_utf8(out).map_err(|_| JsonError {
                what: "a string is not valid UTF-8",
                at: start,
            })
        })?;
        *self.unescaped = text;
        Ok(Text::Unescaped)
    }

    /// `XXXX` after `\u`, with the low half of a surrogate pair after it.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let high = self.hex4()?;
        let code = match high {
            0xd800..=0xdbff => {
                if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                    return Err(self.fail("a lone leading surrogate in a \\u escape"));
                }
                self.at += 2;
                let low = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&low) {
                    return Err(self.fail("a leading surrogate not followed by a trailing one"));
                }
                0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.fail("a lone trailing surrogate in a \\u escape")),
            code => code,
        };
        char::from_u32(code).ok_or_else(|| self.fail("an invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .bytes
                .get(self.at)
                .and_then(|&byte| (byte as char).to_digit(16))
                .ok_or_else(|| self.fail("expected four hex digits after \\u"))?;
            code = code * 16 + digit;
            self.at += 1;
        }
        Ok(code)
    }

    /// A number whose first byte is next: a bigint when it is an integer
    /// that fits, else a float (as most JSON readers do with big integers).
    /// Unless `keep`, only checked: the value is `Null` when it is surely
    /// in range.
    fn number(&mut self, keep: bool) -> Result<Value, JsonError> {
        let bytes = self.bytes;
        let start = self.at;
        let mut at = start;
        let negative = bytes[at] == b'-';
        if negative {
            at += 1;
        }
        let digits = |at: &mut usize| {
            let from = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at - from
        };
        let whole = at;
        match digits(&mut at) {
            0 => {
                self.at = at;
                return Err(self.fail("expected a digit"));
            }
            count if count > 1 && bytes[whole] == b'0' => {
                self.at = whole + 1;
                return Err(self.fail("a number must not start with 0"));
            }
            _ => {}
        }
        let whole_end = at;
        let mut integer = true;
        if bytes.get(at) == Some(&b'.') {
            integer = false;
            at += 1;
            if digits(&mut at) == 0 {
                self.at = at;
                return Err(self.fail("expected a digit after the decimal point"));
            }
        }
        let exponent = matches!(bytes.get(at), Some(b'e' | b'E'));
        if exponent {
            integer = false;
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            if digits(&mut at) == 0 {
                self.at = at;
                return Err(self.fail("expected a digit in the exponent"));
            }
        }
        self.at = at;
        if !keep && !exponent && whole_end - whole <= 308 {
            // Below 10^308 (f64 reaches 1.7 × 10^308).
            return Ok(Value::Null);
        }
        if integer && whole_end - whole <= 18 {
            // Up to 18 digits always fit.
            let magnitude = bytes[whole..whole_end]
                .iter()
                .fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0'));
            return Ok(Value::Int(if negative { -magnitude } else { magnitude }));
        }
        // SAFETY: the bytes were just matched against the number grammar
        // above: ASCII digits, signs, '.', 'e' and 'E', which are UTF-8.
        // That grammar is a subset of what Rust's parsers accept.
        let text = unsafe { std::str::from_utf8_unchecked(&bytes[start..at]) };
        if integer && let Ok(value) = text.parse::<i64>() {
            return Ok(Value::Int(value));
        }
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Value::Float(value)),
            _ => {
                self.at = start;
                Err(self.fail("a number is out of range"))
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), JsonError> {
        if self.bytes.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.fail("expected a JSON value"))
        }
    }

    /// Any value, interning a string in `strings`; nested records and
    /// arrays are read whole. Inline where values are read, so that the
    /// usual string or number is built in place rather than returned
    /// through memory; the rest is read by `other_value`.
    #[inline(always)]
    fn value(&mut self, names: &mut Interner, strings: &mut Interner) -> Result<Value, JsonError> {
        Ok(match self.peek()? {
            b'"' => {
                let text = self.string()?;
                Value::Str(strings.intern(self.text(&text)))
            }
            b'-' | b'0'..=b'9' => self.number(true)?,
            _ => self.other_value(names)?,
        })
    }

    /// A value that is not a string or a number.
    #[inline(never)]
    fn other_value(&mut self, names: &mut Interner) -> Result<Value, JsonError> {
        Ok(match self.peek()? {
            b'{' => Value::Record(Arc::new(self.record(names, None)?)),
            b'[' => {
                self.enter()?;
                let mut items = Vec::new();
                let mut first = true;
                while self.next_member(first, b']')? {
                    first = false;
                    items.push(self.value(names, &mut Interner::disabled())?);
                }
                Value::Array(Arc::new(items))
            }
            b't' => {
                self.literal(b"true")?;
                Value::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Value::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                Value::Null
            }
            _ => return Err(self.fail("expected a JSON value")),
        })
    }

    /// Checks a value and passes over it.
    fn skip(&mut self) -> Result<(), JsonError> {
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            open @ (b'{' | b'[') => {
                let object = open == b'{';
                self.enter()?;
                let mut first = true;
                while self.next_member(first, if object { b'}' } else { b']' })? {
                    first = false;
                    if object {
                        self.name()?;
                    }
                    self.skip()?;
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                self.number(false)?;
            }
            _ => return Err(self.fail("expected a JSON value")),
        }
        Ok(())
    }

    /// A whole object whose `{` is next. `values` interns the strings of
    /// its fields (top-level records only).
    fn record(
        &mut self,
        names: &mut Interner,
        mut values: Option<&mut Interner>,
    ) -> Result<Record, JsonError> {
        self.enter()?;
        let mut record = Record::new();
        let mut first = true;
        while self.next_member(first, b'}')? {
            first = false;
            let name = self.name()?;
            let name = names.intern(self.text(&name));
            let value = match values.as_deref_mut() {
                Some(values) => self.value(names, values)?,
                None => self.value(names, &mut Interner::disabled())?,
            };
            record.insert(name, value);
        }
        Ok(record)
    }

    /// An object whose `{` is next, keeping only `fields`.
    fn selected(&mut self, fields: &mut Fields, names: &mut Interner) -> Result<Record, JsonError> {
        self.enter()?;
        // The usual record has each field once, under the plan's own
        // name: its values are collected with the fields' indexes, and
        // it gets the names of the last such record when they are the
        // same. Any other record is built field by field (`spelled`).
        let mut values = Vec::with_capacity(fields.list.len());
        fields.kept.clear();
        let mut spelled: Option<Record> = None;
        // Fields (of the first 64) already read under the plan's own name.
        let mut read_exactly = 0u64;
        let mut member = 0;
        while self.next_member(member == 0, b'}')? {
            let name = self.name()?;
            let text = self.text(&name);
            let found = fields.find(member, text);
            member += 1;
            let Some((at, exact)) = found else {
                self.skip()?;
                continue;
            };
            // Exact names share the plan's copy; others keep the event's
            // spelling.
            let loose_name = (!exact).then(|| Arc::from(text));
            let field = &mut fields.list[at];
            let value = match &mut field.inner {
                Some(inner) if self.peek()? == b'{' => {
                    Value::Record(Arc::new(self.selected(inner, names)?))
                }
                _ => self.value(names, &mut field.strings)?,
            };
            let bit = 1u64.checked_shl(at as u32).unwrap_or(0);
            if spelled.is_none() && exact && bit != 0 && read_exactly & bit == 0 {
                // No other field has the plan's spelling: names read
                // loosely differ from it, and `FieldSelection` holds no
                // two names equal ignoring case.
                read_exactly |= bit;
                fields.kept.push(at);
                values.push(value);
                continue;
            }
            let record = spelled.get_or_insert_with(|| {
                let mut record = Record::with_capacity(fields.list.len());
                for (&kept, value) in fields.kept.iter().zip(values.drain(..)) {
                    record.push_new(fields.list[kept].name.clone(), value);
                }
                record
            });
            let name = loose_name.unwrap_or_else(|| fields.list[at].name.clone());
            record.insert(name, value);
        }
        Ok(match spelled {
            Some(record) => record,
            None => Record::with_names(fields.kept_names(), values),
        })
    }
}

/// Shared copies of the strings a field has seen; see the module notes.
#[derive(Debug)]
struct Interner {
    table: HashSet<Arc<str>, RandomState>,
    /// The string handed out last: a field often repeats the value of
    /// the event before (a type, a result code), found without hashing.
    last: Option<Arc<str>>,
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
            last: None,
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
        if let Some(last) = &self.last
            && **last == *text
        {
            self.hits += 1;
            let shared = last.clone();
            self.end_trial();
            return shared;
        }
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
        self.last = Some(shared.clone());
        self.end_trial();
        shared
    }

    /// At the end of a trial, keeps the table in use if enough lookups hit.
    fn end_trial(&mut self) {
        if self.lookups == TRIAL_LOOKUPS {
            if self.hits < TRIAL_LOOKUPS / 4 {
                self.on = false;
                self.table = HashSet::default();
                self.last = None;
                self.lookups = RETRY_AFTER;
            } else {
                self.lookups = 0;
            }
            self.hits = 0;
        }
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

    /// Whether our value is the one serde_json read.
    fn same(ours: &Value, theirs: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (ours, theirs) {
            (Value::Null, J::Null) => true,
            (Value::Bool(a), J::Bool(b)) => a == b,
            // serde_json reads `-0` as the float -0.0; it is the integer 0 here.
            (Value::Int(a), J::Number(b)) => {
                b.as_i64() == Some(*a) || (*a == 0 && b.as_f64() == Some(0.0))
            }
            (Value::Float(a), J::Number(b)) => {
                b.as_i64().is_none()
                    && b.as_f64().is_some_and(|b| {
                        // serde_json's default float reading may be off by an ulp.
                        (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs())
                    })
            }
            (Value::Str(a), J::String(b)) => **a == **b,
            (Value::Array(a), J::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
            }
            (Value::Record(a), J::Object(b)) => same_record(a, b),
            _ => false,
        }
    }

    fn same_record(ours: &Record, theirs: &serde_json::Map<String, serde_json::Value>) -> bool {
        ours.len() == theirs.len()
            && theirs.iter().all(|(name, theirs)| {
                ours.iter()
                    .find(|(ours, _)| ***ours == **name)
                    .is_some_and(|(_, ours)| same(ours, theirs))
            })
    }

    /// Reads `text` keeping every field and checks that serde_json reads
    /// the same, or that both refuse it.
    fn agrees_with_serde_json(text: &[u8]) {
        let ours = all_bytes(text);
        let theirs = serde_json::from_slice::<serde_json::Value>(text);
        let agree = match (&ours, &theirs) {
            (Ok(ours), Ok(serde_json::Value::Object(theirs))) => same_record(ours, theirs),
            (Err(_), Ok(theirs)) => !theirs.is_object(),
            (Err(_), Err(_)) => true,
            (Ok(_), _) => false,
        };
        assert!(
            agree,
            "{:?}: ours {ours:?}, serde_json {theirs:?}",
            String::from_utf8_lossy(text)
        );
        // Skipping every field checks just as much.
        let skipped =
            EventParser::new(Some(&[Arc::from("not a field")].into_iter().collect())).parse(text);
        assert_eq!(
            skipped.is_ok(),
            ours.is_ok(),
            "{:?}: skipped {skipped:?}, read {ours:?}",
            String::from_utf8_lossy(text)
        );
    }

    fn all_bytes(text: &[u8]) -> Result<Record, String> {
        EventParser::new(None).parse(text)
    }

    /// A small deterministic generator (xorshift64*).
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    fn space(random: &mut Random, out: &mut String) {
        out.push_str(random.pick(&["", "", "", " ", "\n", "\t ", "\r\n"]));
    }

    fn json_string(random: &mut Random, out: &mut String) {
        out.push('"');
        for _ in 0..random.below(5) {
            out.push_str(random.pick(&[
                "a",
                "BIN",
                "4111",
                " ",
                "é",
                "日本",
                "😀",
                "\\\"",
                "\\\\",
                "\\/",
                "\\b",
                "\\f",
                "\\n",
                "\\r",
                "\\t",
                "\\u00e9",
                "\\u0000",
                "\\ud83d\\ude00",
                "\\uD83D\\uDE00",
            ]));
        }
        out.push('"');
    }

    fn json_value(random: &mut Random, depth: u32, out: &mut String) {
        space(random, out);
        let kinds = if depth >= 4 { 6 } else { 8 };
        match random.below(kinds) {
            0 => out.push_str(random.pick(&["null", "true", "false"])),
            1 | 2 => out.push_str(random.pick(&[
                "0",
                "-0",
                "7",
                "-12",
                "123456789012345678",
                "-999999999999999999",
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "18446744073709551615",
                "123456789012345678901234567890",
            ])),
            3 => out.push_str(random.pick(&[
                "1.5",
                "-0.0",
                "0.1",
                "1e5",
                "2.5E-3",
                "-1E+2",
                "6.02214076e23",
                "1e-400",
                "3.141592653589793238462643383279",
            ])),
            4 | 5 => json_string(random, out),
            6 => {
                out.push('[');
                for index in 0..random.below(4) {
                    if index > 0 {
                        out.push(',');
                    }
                    json_value(random, depth + 1, out);
                }
                space(random, out);
                out.push(']');
            }
            _ => json_object(random, depth + 1, out),
        }
        space(random, out);
    }

    fn json_object(random: &mut Random, depth: u32, out: &mut String) {
        out.push('{');
        for index in 0..random.below(5) {
            if index > 0 {
                out.push(',');
            }
            space(random, out);
            if random.below(3) == 0 {
                out.push_str(random.pick(&["\"a\"", "\"A\"", "\"b\"", "\"\""]));
            } else {
                json_string(random, out);
            }
            space(random, out);
            out.push(':');
            json_value(random, depth, out);
        }
        space(random, out);
        out.push('}');
    }

    #[test]
    fn reads_what_serde_json_reads_and_refuses_what_it_refuses() {
        let mut random = Random(0x5eed_1234_abcd_0001);
        let breakers: &[&[u8]] = &[
            b"{", b"}", b"[", b"]", b",", b":", b"\"", b"\\", b" ", b"0", b"-", b".", b"e", b"x",
            b"\x01", b"\x1f", b"\x7f", b"\xff", b"\xc3", b"\\u", b"\\ud800", b"n", b"1e400",
        ];
        for _ in 0..20_000 {
            let mut text = String::new();
            space(&mut random, &mut text);
            if random.below(10) == 0 {
                json_value(&mut random, 0, &mut text);
            } else {
                json_object(&mut random, 0, &mut text);
            }
            space(&mut random, &mut text);
            agrees_with_serde_json(text.as_bytes());
            // Break it: insert, replace, delete or cut.
            let mut broken = text.into_bytes();
            let at = random.below(broken.len() + 1);
            match random.below(4) {
                0 => {
                    let insert = breakers[random.below(breakers.len())];
                    broken.splice(at..at, insert.iter().copied());
                }
                1 if at < broken.len() => {
                    broken[at] = breakers[random.below(breakers.len())][0];
                }
                2 if at < broken.len() => {
                    broken.remove(at);
                }
                _ => broken.truncate(at),
            }
            agrees_with_serde_json(&broken);
        }
    }

    #[test]
    fn a_word_is_special_exactly_when_one_of_its_bytes_is() {
        for at in 0..8 {
            for byte in 0..=255u8 {
                let mut bytes = *b"abcdefgh";
                bytes[at] = byte;
                let special = byte == b'"' || byte == b'\\' || !(0x20..0x80).contains(&byte);
                assert_eq!(
                    special_bytes(u64::from_le_bytes(bytes)) != 0,
                    special,
                    "byte {byte:#x} at {at}"
                );
            }
        }
        // The lowest byte flagged is the first special one, whatever
        // follows it (the string reader relies on that).
        let kinds = [
            0u8, 0x1f, b'"', b'\\', 0x80, 0xff, b'!', b'#', b'[', b']', 0x20, 0x7f,
        ];
        for first in 0..8 {
            for &one in &kinds {
                for &two in &kinds {
                    let mut bytes = *b"abcdefgh";
                    bytes[first] = one;
                    for later in &mut bytes[first + 1..] {
                        *later = two;
                    }
                    let special =
                        |byte: u8| byte == b'"' || byte == b'\\' || !(0x20..0x80).contains(&byte);
                    let expected = bytes.iter().position(|&byte| special(byte));
                    let flagged = special_bytes(u64::from_le_bytes(bytes));
                    let found = (flagged != 0).then(|| flagged.trailing_zeros() as usize / 8);
                    assert_eq!(found, expected, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(all(&deep).unwrap_err().contains("nest too deeply"));
        let mut parser = EventParser::new(Some(&[Arc::from("b")].into_iter().collect()));
        assert!(
            parser
                .parse(deep.as_bytes())
                .unwrap_err()
                .contains("nest too deeply")
        );
        let fine = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(all(&fine).is_ok());
    }

    #[test]
    fn errors_say_what_and_where() {
        let error = all("{\"a\":1,\n \"b\":tru}").unwrap_err();
        assert_eq!(error, "expected a JSON value at line 2 column 6");
        let error = all("{\"a\":\"x\u{1}\"}").unwrap_err();
        assert!(
            error.contains("control character") && error.contains("column 8"),
            "{error}"
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
    fn names_are_equal_exactly_when_their_bytes_are() {
        let names: Vec<String> = (0..=20)
            .flat_map(|len| {
                let base = "abcdefghijklmnopqrstu"[..len].to_string();
                let mut variants = vec![base.clone()];
                for at in 0..len {
                    let mut bytes = base.clone().into_bytes();
                    bytes[at] = b'Z';
                    variants.push(String::from_utf8(bytes).unwrap());
                }
                variants
            })
            .collect();
        for a in &names {
            for b in &names {
                assert_eq!(same_name(a.as_bytes(), b.as_bytes()), a == b, "{a} / {b}");
            }
        }
    }

    #[test]
    fn a_parser_reads_changing_layouts_as_a_new_one_would() {
        let mut selection = FieldSelection::default();
        for path in [&["a"][..], &["B"], &["n", "x"], &["n", "Y"]] {
            selection.add(&path.iter().map(|name| Arc::from(*name)).collect::<Vec<_>>());
        }
        let events = [
            r#"{"a":1,"b":2,"c":3,"n":{"x":1,"y":2,"z":3}}"#,
            r#"{"a":1,"b":2,"c":3,"n":{"x":1,"y":2,"z":3}}"#,
            // Same places, other names; names moved; fewer and more members.
            r#"{"c":1,"B":2,"a":3,"n":{"z":1,"Y":2,"x":3}}"#,
            r#"{"b":1,"a":2,"n":{"y":1},"c":3}"#,
            r#"{"a":1}"#,
            r#"{"A":1,"b":2,"c":3,"d":4,"n":{"X":1,"y":2,"w":{"x":0}},"e":5}"#,
            r#"{"c":1,"c":2,"a":3,"a":4,"n":{"x":1,"x":2}}"#,
            r#"{"a":1,"b":2,"c":3,"n":{"x":1,"y":2,"z":3}}"#,
        ];
        // A repeated name keeps its last value.
        assert_eq!(
            EventParser::new(Some(&selection))
                .parse(events[6].as_bytes())
                .unwrap()
                .to_json_string(),
            r#"{"a":4,"n":{"x":2}}"#
        );
        let mut kept = EventParser::new(Some(&selection));
        for (round, text) in events.iter().cycle().take(3 * events.len()).enumerate() {
            let fresh = EventParser::new(Some(&selection)).parse(text.as_bytes());
            assert_eq!(
                kept.parse(text.as_bytes())
                    .map(|record| record.to_json_string()),
                fresh.map(|record| record.to_json_string()),
                "event {round}: {text}"
            );
        }
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
        let tables = &parser.fields.as_ref().unwrap().list;
        assert!(tables[0].strings.on);
        assert!(!tables[1].strings.on, "unique times keep no table");
        assert!(tables[1].strings.table.is_empty());
    }
}
