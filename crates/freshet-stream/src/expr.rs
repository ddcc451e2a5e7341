//! Compiled scalar expressions and how they evaluate: operators, CASE,
//! casts and the Stream Analytics built-in functions, with its NULL rules
//! (any NULL operand gives NULL; WHERE and HAVING keep only true rows).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;

use crate::time;
use crate::value::{Record, Value};

/// What an expression reads from.
pub struct Row<'a> {
    /// One record per source of the step (two for a join; `None` for the
    /// missing side of an outer join).
    pub sources: &'a [Option<&'a Record>],
    /// `System.Timestamp()`: the event's time, or the window end.
    pub timestamp: i64,
    /// The time of each source's event (a join has two).
    pub source_times: &'a [i64],
    /// Group keys, aggregate results and already computed output columns
    /// of an aggregating step.
    pub keys: &'a [Value],
    pub aggregates: &'a [Value],
    pub outputs: &'a [Value],
}

impl<'a> Row<'a> {
    pub fn event(
        sources: &'a [Option<&'a Record>],
        source_times: &'a [i64],
        timestamp: i64,
    ) -> Self {
        Self {
            sources,
            timestamp,
            source_times,
            keys: &[],
            aggregates: &[],
            outputs: &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// A field of source `source`, down a path of nested record fields.
    Field {
        source: usize,
        path: FieldPath,
    },
    /// The whole record of a source (`alias.*`-like uses and `SELECT *`).
    SourceRecord(usize),
    Timestamp,
    /// The event time of a source's event (a bare source name).
    SourceTime(usize),
    Key(usize),
    Aggregate(usize),
    Output(usize),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast {
        expr: Box<Expr>,
        to: Type,
        lenient: bool,
    },
    Call(Function, Vec<Expr>),
    /// DATEADD/DATEDIFF/DATEPART with their unit, in microseconds or a part.
    DateAdd {
        unit: DateUnit,
        amount: Box<Expr>,
        time: Box<Expr>,
    },
    DateDiff {
        unit: DateUnit,
        start: Box<Expr>,
        end: Box<Expr>,
    },
    DatePart {
        unit: DateUnit,
        time: Box<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Concat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    BigInt,
    Float,
    Str,
    DateTime,
    Bit,
    Record,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateUnit {
    Year,
    Quarter,
    Month,
    DayOfYear,
    Day,
    Week,
    Weekday,
    /// Fixed-length units, in microseconds.
    Fixed(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Len,
    Upper,
    Lower,
    Substring,
    Concat,
    CharIndex,
    Replace,
    Trim,
    LTrim,
    RTrim,
    StartsWith,
    EndsWith,
    Abs,
    Ceiling,
    Floor,
    Round,
    Power,
    Sqrt,
    Square,
    Sign,
    Exp,
    Log,
    Log10,
    Coalesce,
    Year,
    Month,
    Day,
    GetRecordPropertyValue,
    GetArrayElement,
    GetArrayLength,
    GetType,
}

impl Function {
    /// The function of this name and how many arguments it takes.
    pub fn by_name(name: &str) -> Option<(Function, usize, usize)> {
        use Function::*;
        let (function, min, max) = match name.to_ascii_uppercase().as_str() {
            "LEN" => (Len, 1, 1),
            "UPPER" => (Upper, 1, 1),
            "LOWER" => (Lower, 1, 1),
            "SUBSTRING" => (Substring, 3, 3),
            "CONCAT" => (Concat, 1, usize::MAX),
            "CHARINDEX" => (CharIndex, 2, 3),
            "REPLACE" => (Replace, 3, 3),
            "TRIM" => (Trim, 1, 1),
            "LTRIM" => (LTrim, 1, 1),
            "RTRIM" => (RTrim, 1, 1),
            "STARTSWITH" => (StartsWith, 2, 2),
            "ENDSWITH" => (EndsWith, 2, 2),
            "ABS" => (Abs, 1, 1),
            "CEILING" => (Ceiling, 1, 1),
            "FLOOR" => (Floor, 1, 1),
            "ROUND" => (Round, 2, 2),
            "POWER" => (Power, 2, 2),
            "SQRT" => (Sqrt, 1, 1),
            "SQUARE" => (Square, 1, 1),
            "SIGN" => (Sign, 1, 1),
            "EXP" => (Exp, 1, 1),
            "LOG" => (Log, 1, 2),
            "LOG10" => (Log10, 1, 1),
            "COALESCE" => (Coalesce, 1, usize::MAX),
            "YEAR" => (Year, 1, 1),
            "MONTH" => (Month, 1, 1),
            "DAY" => (Day, 1, 1),
            "GETRECORDPROPERTYVALUE" => (GetRecordPropertyValue, 2, 2),
            "GETARRAYELEMENT" => (GetArrayElement, 2, 2),
            "GETARRAYLENGTH" => (GetArrayLength, 1, 1),
            "GETTYPE" => (GetType, 1, 1),
            _ => return None,
        };
        Some((function, min, max))
    }
}

impl DateUnit {
    pub fn by_name(name: &str) -> Option<DateUnit> {
        let unit = match name.to_ascii_lowercase().as_str() {
            "year" | "yy" | "yyyy" => DateUnit::Year,
            "quarter" | "qq" | "q" => DateUnit::Quarter,
            "month" | "mm" | "m" => DateUnit::Month,
            "dayofyear" | "dy" | "y" => DateUnit::DayOfYear,
            "week" | "wk" | "ww" => DateUnit::Week,
            "weekday" | "dw" | "w" => DateUnit::Weekday,
            "day" | "dd" | "d" => DateUnit::Day,
            other => DateUnit::Fixed(time::unit_micros(other)?),
        };
        Some(unit)
    }
}

impl Expr {
    /// The value as a datetime ([`Value::as_time`]), or the value when it
    /// is not one. A field is read where it is, without a copy.
    pub fn eval_time(&self, row: &Row) -> Result<i64, Value> {
        let value = match self {
            // The first non-null argument, as in `eval`.
            Expr::Call(Function::Coalesce, args) => args
                .iter()
                .map(|arg| arg.operand(row))
                .find(|value| !value.is_null())
                .unwrap_or(Cow::Owned(Value::Null)),
            other => other.operand(row),
        };
        value.as_time().ok_or_else(|| value.into_owned())
    }

    /// The value, borrowed where it already is (a field, a literal, a
    /// key or aggregate): comparing a field copies nothing.
    fn operand<'r>(&'r self, row: &Row<'r>) -> Cow<'r, Value> {
        match self {
            Expr::Literal(value) => Cow::Borrowed(value),
            Expr::Field { source, path } => match row.sources.get(*source) {
                Some(Some(record)) => path
                    .find(record)
                    .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
                _ => Cow::Owned(Value::Null),
            },
            Expr::Key(index) => Cow::Borrowed(&row.keys[*index]),
            Expr::Aggregate(index) => Cow::Borrowed(&row.aggregates[*index]),
            Expr::Output(index) => Cow::Borrowed(&row.outputs[*index]),
            other => Cow::Owned(other.eval(row)),
        }
    }

    pub fn eval(&self, row: &Row) -> Value {
        match self {
            Expr::Literal(value) => value.clone(),
            Expr::Field { source, path } => {
                let Some(Some(record)) = row.sources.get(*source) else {
                    return Value::Null;
                };
                path.find(record).cloned().unwrap_or(Value::Null)
            }
            Expr::SourceRecord(source) => match row.sources.get(*source) {
                Some(Some(record)) => Value::Record(Arc::new((*record).clone())),
                _ => Value::Null,
            },
            Expr::Timestamp => Value::Time(row.timestamp),
            Expr::SourceTime(source) => match row.sources.get(*source) {
                Some(Some(_)) => row
                    .source_times
                    .get(*source)
                    .copied()
                    .map(Value::Time)
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            },
            Expr::Key(index) => row.keys[*index].clone(),
            Expr::Aggregate(index) => row.aggregates[*index].clone(),
            Expr::Output(index) => row.outputs[*index].clone(),
            Expr::Not(expr) => match expr.eval(row) {
                Value::Null => Value::Null,
                value => Value::Bool(!value.is_true()),
            },
            Expr::Negate(expr) => match expr.eval(row) {
                Value::Int(value) => value.checked_neg().map(Value::Int).unwrap_or(Value::Null),
                Value::Float(value) => Value::Float(-value),
                _ => Value::Null,
            },
            Expr::Binary(
                op @ (BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq),
                left,
                right,
            ) => comparison(*op, &left.operand(row), &right.operand(row)),
            Expr::Binary(op, left, right) => binary(*op, left.eval(row), right.eval(row)),
            Expr::And(left, right) => {
                let left = left.eval(row);
                if !left.is_null() && !left.is_true() {
                    return Value::Bool(false);
                }
                let right = right.eval(row);
                match (left.is_null(), right.is_null()) {
                    (_, false) if !right.is_true() => Value::Bool(false),
                    (false, false) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Expr::Or(left, right) => {
                let left = left.eval(row);
                if left.is_true() {
                    return Value::Bool(true);
                }
                let right = right.eval(row);
                if right.is_true() {
                    Value::Bool(true)
                } else if left.is_null() || right.is_null() {
                    Value::Null
                } else {
                    Value::Bool(false)
                }
            }
            Expr::IsNull { expr, negated } => Value::Bool(expr.operand(row).is_null() != *negated),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let value = expr.eval(row);
                if value.is_null() {
                    return Value::Null;
                }
                let found = list.iter().any(|item| {
                    compare(&value, &item.eval(row)) == Some(std::cmp::Ordering::Equal)
                });
                Value::Bool(found != *negated)
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let value = expr.eval(row);
                let (low, high) = (low.eval(row), high.eval(row));
                match (compare(&value, &low), compare(&value, &high)) {
                    (Some(above), Some(below)) => {
                        Value::Bool((above.is_ge() && below.is_le()) != *negated)
                    }
                    _ => Value::Null,
                }
            }
            Expr::Like {
                expr,
                pattern,
                negated,
            } => match (expr.eval(row), pattern.eval(row)) {
                (Value::Str(text), Value::Str(pattern)) => {
                    Value::Bool(like(&text, &pattern) != *negated)
                }
                _ => Value::Null,
            },
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => {
                let operand = operand.as_ref().map(|operand| operand.operand(row));
                for (when, then) in branches {
                    let hit = match &operand {
                        Some(operand) => {
                            compare(operand, &when.operand(row)) == Some(std::cmp::Ordering::Equal)
                        }
                        None => when.operand(row).is_true(),
                    };
                    if hit {
                        return then.eval(row);
                    }
                }
                otherwise
                    .as_ref()
                    .map(|expr| expr.eval(row))
                    .unwrap_or(Value::Null)
            }
            Expr::Cast { expr, to, .. } => cast(expr.eval(row), *to),
            // The first non-null argument: the rest are not evaluated.
            Expr::Call(Function::Coalesce, args) => args
                .iter()
                .map(|arg| arg.eval(row))
                .find(|value| !value.is_null())
                .unwrap_or(Value::Null),
            Expr::Call(function, args) => {
                let args: Vec<Value> = args.iter().map(|arg| arg.eval(row)).collect();
                call(*function, args)
            }
            Expr::DateAdd { unit, amount, time } => {
                match (amount.eval(row), time.eval(row).as_time()) {
                    (Value::Int(amount), Some(micros)) => date_add(*unit, amount, micros)
                        .map(Value::Time)
                        .unwrap_or(Value::Null),
                    (Value::Float(amount), Some(micros)) => {
                        date_add(*unit, amount.trunc() as i64, micros)
                            .map(Value::Time)
                            .unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                }
            }
            Expr::DateDiff { unit, start, end } => {
                match (start.eval(row).as_time(), end.eval(row).as_time()) {
                    (Some(start), Some(end)) => Value::Int(date_diff(*unit, start, end)),
                    _ => Value::Null,
                }
            }
            Expr::DatePart { unit, time } => match time.eval(row).as_time() {
                Some(micros) => date_part(*unit, micros)
                    .map(Value::Int)
                    .unwrap_or(Value::Null),
                None => Value::Null,
            },
        }
    }

    /// Whether the expression reads anything of source `source`.
    pub fn reads_source(&self, source: usize) -> bool {
        let mut found = false;
        self.visit(&mut |expr| {
            if matches!(expr, Expr::Field { source: read, .. } | Expr::SourceRecord(read) | Expr::SourceTime(read) if *read == source)
            {
                found = true;
            }
        });
        found
    }

    /// Calls `visit` on this expression and every expression inside it.
    pub fn visit(&self, visit: &mut dyn FnMut(&Expr)) {
        visit(self);
        let children: Vec<&Expr> = match self {
            Expr::Not(expr) | Expr::Negate(expr) => vec![expr],
            Expr::IsNull { expr, .. } | Expr::Cast { expr, .. } => vec![expr],
            Expr::Binary(_, left, right) | Expr::And(left, right) | Expr::Or(left, right) => {
                vec![left, right]
            }
            Expr::InList { expr, list, .. } => std::iter::once(&**expr).chain(list).collect(),
            Expr::Between {
                expr, low, high, ..
            } => vec![expr, low, high],
            Expr::Like { expr, pattern, .. } => vec![expr, pattern],
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => operand
                .iter()
                .map(|expr| &**expr)
                .chain(branches.iter().flat_map(|(when, then)| [when, then]))
                .chain(otherwise.iter().map(|expr| &**expr))
                .collect(),
            Expr::Call(_, args) => args.iter().collect(),
            Expr::DateAdd { amount, time, .. } => vec![amount, time],
            Expr::DateDiff { start, end, .. } => vec![start, end],
            Expr::DatePart { time, .. } => vec![time],
            _ => Vec::new(),
        };
        for child in children {
            child.visit(visit);
        }
    }
}

/// The names of a field down nested records, each with where it was
/// found last time (see [`Record::get_hinted`]).
pub struct FieldPath {
    names: Vec<Arc<str>>,
    found_at: Box<[AtomicU8]>,
}

impl FieldPath {
    /// The value down this path of nested records, if there is one.
    fn find<'r>(&self, record: &'r Record) -> Option<&'r Value> {
        let mut record = record;
        let mut steps = self.names.iter().zip(&self.found_at);
        let (name, found_at) = steps.next()?;
        let mut value = record.get_hinted(name, found_at)?;
        for (name, found_at) in steps {
            record = match value {
                Value::Record(inner) => inner,
                _ => return None,
            };
            value = record.get_hinted(name, found_at)?;
        }
        Some(value)
    }
}

impl From<Vec<Arc<str>>> for FieldPath {
    fn from(names: Vec<Arc<str>>) -> Self {
        let found_at = names.iter().map(|_| AtomicU8::new(0)).collect();
        Self { names, found_at }
    }
}

impl FromIterator<Arc<str>> for FieldPath {
    fn from_iter<I: IntoIterator<Item = Arc<str>>>(names: I) -> Self {
        names.into_iter().collect::<Vec<_>>().into()
    }
}

impl std::ops::Deref for FieldPath {
    type Target = [Arc<str>];

    fn deref(&self) -> &[Arc<str>] {
        &self.names
    }
}

impl Clone for FieldPath {
    fn clone(&self) -> Self {
        self.names.clone().into()
    }
}

impl PartialEq for FieldPath {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.names.fmt(formatter)
    }
}

fn field_path(record: &Record, path: &[Arc<str>]) -> Value {
    field_ref(record, path).cloned().unwrap_or(Value::Null)
}

/// The value down `path` of nested records, if there is one.
fn field_ref<'r>(record: &'r Record, path: &[Arc<str>]) -> Option<&'r Value> {
    let (first, rest) = path.split_first()?;
    let mut value = record.get(first)?;
    for name in rest {
        value = match value {
            Value::Record(inner) => inner.get(name)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Compares two values the way SQL comparisons do: numbers across types,
/// strings with datetimes as datetimes; `None` when either is NULL or
/// they cannot be compared.
pub fn compare(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    use Value::*;
    match (left, right) {
        (Null, _) | (_, Null) => None,
        (Int(_) | Float(_), Int(_) | Float(_)) | (Str(_), Str(_)) | (Bool(_), Bool(_)) => {
            Some(left.cmp(right))
        }
        (Time(a), Time(b)) => Some(a.cmp(b)),
        (Time(a), Str(_)) => right.as_time().map(|b| a.cmp(&b)),
        (Str(_), Time(b)) => left.as_time().map(|a| a.cmp(b)),
        (Bool(a), Int(_) | Float(_)) => Some(Float(f64::from(u8::from(*a))).cmp(right)),
        (Int(_) | Float(_), Bool(b)) => Some(left.cmp(&Float(f64::from(u8::from(*b))))),
        (Record(_), Record(_)) | (Array(_), Array(_)) => Some(left.cmp(right)),
        _ => None,
    }
}

/// `left op right` for a comparison `op`; NULL when they cannot be
/// compared.
fn comparison(op: BinaryOp, left: &Value, right: &Value) -> Value {
    use BinaryOp::*;
    let Some(order) = compare(left, right) else {
        return Value::Null;
    };
    Value::Bool(match op {
        Eq => order.is_eq(),
        NotEq => order.is_ne(),
        Lt => order.is_lt(),
        LtEq => order.is_le(),
        Gt => order.is_gt(),
        _ => order.is_ge(),
    })
}

/// `left op right` for arithmetic and concatenation.
fn binary(op: BinaryOp, left: Value, right: Value) -> Value {
    use BinaryOp::*;
    use Value::*;
    if left.is_null() || right.is_null() {
        return Null;
    }
    match op {
        Eq | NotEq | Lt | LtEq | Gt | GtEq => {
            unreachable!("comparisons read their operands in place (`comparison`)")
        }
        Concat => Str(Arc::from(format!("{left}{right}"))),
        Plus | Minus | Multiply | Divide | Modulo => match (left, right) {
            (Str(a), Str(b)) if op == Plus => Str(Arc::from(format!("{a}{b}"))),
            (Int(a), Int(b)) => match op {
                Plus => a
                    .checked_add(b)
                    .map(Int)
                    .unwrap_or(Float(a as f64 + b as f64)),
                Minus => a
                    .checked_sub(b)
                    .map(Int)
                    .unwrap_or(Float(a as f64 - b as f64)),
                Multiply => a
                    .checked_mul(b)
                    .map(Int)
                    .unwrap_or(Float(a as f64 * b as f64)),
                // Stream Analytics divides bigints as floats.
                Divide if b == 0 => Null,
                Divide => Float(a as f64 / b as f64),
                _ if b == 0 => Null,
                _ => Int(a.wrapping_rem(b)),
            },
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => match op {
                    Plus => Float(a + b),
                    Minus => Float(a - b),
                    Multiply => Float(a * b),
                    Divide if b == 0.0 => Null,
                    Divide => Float(a / b),
                    _ if b == 0.0 => Null,
                    _ => Float(a % b),
                },
                _ => Null,
            },
        },
    }
}

/// `LIKE` with `%` and `_`, compared by characters.
fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    // Iterative matching with backtracking to the last `%`.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '_' || pattern[p] == text[t]) {
            t += 1;
            p += 1;
        } else if p < pattern.len() && pattern[p] == '%' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|char| *char == '%')
}

pub fn cast(value: Value, to: Type) -> Value {
    use Value::*;
    match (to, value) {
        (_, Null) => Null,
        (Type::BigInt, Int(value)) => Int(value),
        (Type::BigInt, Float(value)) if value.is_finite() => Int(value.trunc() as i64),
        (Type::BigInt, Bool(value)) => Int(i64::from(value)),
        (Type::BigInt, Str(text)) => text.trim().parse().map(Int).unwrap_or(Null),
        (Type::Float, Int(value)) => Float(value as f64),
        (Type::Float, Float(value)) => Float(value),
        (Type::Float, Bool(value)) => Float(f64::from(u8::from(value))),
        (Type::Float, Str(text)) => text.trim().parse().map(Float).unwrap_or(Null),
        (Type::Str, Str(text)) => Str(text),
        (Type::Str, other) => Str(Arc::from(other.to_string())),
        (Type::DateTime, value) => value.as_time().map(Time).unwrap_or(Null),
        (Type::Bit, Bool(value)) => Bool(value),
        (Type::Bit, Int(value)) => Bool(value != 0),
        (Type::Bit, Float(value)) => Bool(value != 0.0),
        (Type::Bit, Str(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Bool(true),
            "false" | "0" => Bool(false),
            _ => Null,
        },
        (Type::Record, Record(record)) => Record(record),
        (Type::Array, Array(items)) => Array(items),
        _ => Null,
    }
}

fn call(function: Function, args: Vec<Value>) -> Value {
    use Function::*;
    use Value::*;
    let text = |index: usize| -> Option<String> {
        match args.get(index) {
            Some(Null) | None => None,
            Some(value) => Some(value.to_string()),
        }
    };
    let number = |index: usize| args.get(index).and_then(Value::as_f64);
    let string = |text: String| Str(Arc::from(text));
    match function {
        Len => text(0)
            .map(|text| Int(text.chars().count() as i64))
            .unwrap_or(Null),
        Upper => text(0)
            .map(|text| string(text.to_uppercase()))
            .unwrap_or(Null),
        Lower => text(0)
            .map(|text| string(text.to_lowercase()))
            .unwrap_or(Null),
        Trim => text(0)
            .map(|text| string(text.trim().to_string()))
            .unwrap_or(Null),
        LTrim => text(0)
            .map(|text| string(text.trim_start().to_string()))
            .unwrap_or(Null),
        RTrim => text(0)
            .map(|text| string(text.trim_end().to_string()))
            .unwrap_or(Null),
        Substring => match (text(0), number(1), number(2)) {
            (Some(text), Some(start), Some(length)) if length >= 0.0 => {
                // 1-based; a start before 1 eats into the length.
                let start = start as i64;
                let end = start + length as i64;
                let skip = (start - 1).max(0) as usize;
                let take = (end - start.max(1)).max(0) as usize;
                string(text.chars().skip(skip).take(take).collect())
            }
            _ => Null,
        },
        Concat => string(
            args.iter()
                .filter(|value| !value.is_null())
                .map(Value::to_string)
                .collect(),
        ),
        CharIndex => match (text(0), text(1)) {
            (Some(needle), Some(haystack)) => {
                let start = number(2)
                    .map(|start| (start as i64 - 1).max(0) as usize)
                    .unwrap_or(0);
                let chars: Vec<char> = haystack.chars().collect();
                let needle: Vec<char> = needle.chars().collect();
                if needle.is_empty() {
                    return Int(0);
                }
                let found = (start..chars.len().saturating_sub(needle.len() - 1))
                    .find(|at| chars[*at..].starts_with(&needle));
                Int(found.map(|at| at as i64 + 1).unwrap_or(0))
            }
            _ => Null,
        },
        Replace => match (text(0), text(1), text(2)) {
            (Some(text), Some(from), Some(to)) if !from.is_empty() => {
                string(text.replace(&from, &to))
            }
            (Some(text), Some(_), Some(_)) => string(text),
            _ => Null,
        },
        StartsWith => match (text(0), text(1)) {
            (Some(text), Some(prefix)) => Bool(text.starts_with(&prefix)),
            _ => Null,
        },
        EndsWith => match (text(0), text(1)) {
            (Some(text), Some(suffix)) => Bool(text.ends_with(&suffix)),
            _ => Null,
        },
        Abs => match args.first() {
            Some(Int(value)) => value.checked_abs().map(Int).unwrap_or(Null),
            Some(Float(value)) => Float(value.abs()),
            _ => Null,
        },
        Ceiling | Floor => match args.first() {
            Some(Int(value)) => Int(*value),
            Some(Float(value)) if function == Ceiling => Float(value.ceil()),
            Some(Float(value)) => Float(value.floor()),
            _ => Null,
        },
        Round => match (args.first(), number(1)) {
            (Some(Int(value)), Some(_)) => Int(*value),
            (Some(Float(value)), Some(digits)) => {
                let scale = 10f64.powi(digits as i32);
                Float((value * scale).round() / scale)
            }
            _ => Null,
        },
        Power => match (number(0), number(1)) {
            (Some(base), Some(exponent)) => Float(base.powf(exponent)),
            _ => Null,
        },
        Sqrt => number(0)
            .filter(|value| *value >= 0.0)
            .map(|value| Float(value.sqrt()))
            .unwrap_or(Null),
        Square => number(0).map(|value| Float(value * value)).unwrap_or(Null),
        Sign => match args.first() {
            Some(Int(value)) => Int(value.signum()),
            Some(Float(value)) if *value == 0.0 => Float(0.0),
            Some(Float(value)) => Float(value.signum()),
            _ => Null,
        },
        Exp => number(0).map(|value| Float(value.exp())).unwrap_or(Null),
        Log => match (number(0), args.get(1)) {
            (Some(value), None) if value > 0.0 => Float(value.ln()),
            (Some(value), Some(_)) if value > 0.0 => match number(1) {
                Some(base) if base > 0.0 && base != 1.0 => Float(value.log(base)),
                _ => Null,
            },
            _ => Null,
        },
        Log10 => number(0)
            .filter(|value| *value > 0.0)
            .map(|value| Float(value.log10()))
            .unwrap_or(Null),
        Coalesce => args
            .into_iter()
            .find(|value| !value.is_null())
            .unwrap_or(Null),
        Year => date_value(&args, DateUnit::Year),
        Month => date_value(&args, DateUnit::Month),
        Day => date_value(&args, DateUnit::Day),
        GetRecordPropertyValue => match (args.first(), text(1)) {
            (Some(Record(record)), Some(path)) => {
                let path: Vec<Arc<str>> = path.split('.').map(Arc::from).collect();
                field_path(record, &path)
            }
            _ => Null,
        },
        GetArrayElement => match (args.first(), args.get(1)) {
            (Some(Array(items)), Some(Int(index))) => usize::try_from(*index)
                .ok()
                .and_then(|index| items.get(index).cloned())
                .unwrap_or(Null),
            _ => Null,
        },
        GetArrayLength => match args.first() {
            Some(Array(items)) => Int(items.len() as i64),
            _ => Null,
        },
        GetType => string(
            args.first()
                .map(Value::type_name)
                .unwrap_or("null")
                .to_string(),
        ),
    }
}

fn date_value(args: &[Value], unit: DateUnit) -> Value {
    args.first()
        .and_then(Value::as_time)
        .and_then(|micros| date_part(unit, micros))
        .map(Value::Int)
        .unwrap_or(Value::Null)
}

fn to_datetime(micros: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(micros)
}

fn date_add(unit: DateUnit, amount: i64, micros: i64) -> Option<i64> {
    use chrono::{Datelike, Months};
    match unit {
        DateUnit::Fixed(length) => micros.checked_add(amount.checked_mul(length)?),
        DateUnit::Day | DateUnit::DayOfYear | DateUnit::Weekday => {
            micros.checked_add(amount.checked_mul(86_400 * time::MICROS_PER_SECOND)?)
        }
        DateUnit::Week => {
            micros.checked_add(amount.checked_mul(7 * 86_400 * time::MICROS_PER_SECOND)?)
        }
        DateUnit::Year | DateUnit::Quarter | DateUnit::Month => {
            let months = match unit {
                DateUnit::Year => amount.checked_mul(12)?,
                DateUnit::Quarter => amount.checked_mul(3)?,
                _ => amount,
            };
            let time = to_datetime(micros)?;
            let moved = if months >= 0 {
                time.checked_add_months(Months::new(u32::try_from(months).ok()?))?
            } else {
                time.checked_sub_months(Months::new(u32::try_from(-months).ok()?))?
            };
            let _ = moved.year();
            Some(moved.timestamp_micros())
        }
    }
}

/// T-SQL's DATEDIFF: the number of `unit` boundaries crossed from `start`
/// to `end`.
pub fn date_diff(unit: DateUnit, start: i64, end: i64) -> i64 {
    use chrono::Datelike;
    let day = 86_400 * time::MICROS_PER_SECOND;
    match unit {
        DateUnit::Fixed(length) => end.div_euclid(length) - start.div_euclid(length),
        DateUnit::Day | DateUnit::DayOfYear | DateUnit::Weekday => {
            end.div_euclid(day) - start.div_euclid(day)
        }
        // Weeks start on Sunday; 1970-01-04 was a Sunday.
        DateUnit::Week => {
            (end - 3 * day).div_euclid(7 * day) - (start - 3 * day).div_euclid(7 * day)
        }
        DateUnit::Year | DateUnit::Quarter | DateUnit::Month => {
            let (Some(start), Some(end)) = (to_datetime(start), to_datetime(end)) else {
                return 0;
            };
            let months = |time: chrono::DateTime<chrono::Utc>| {
                i64::from(time.year()) * 12 + i64::from(time.month0())
            };
            match unit {
                DateUnit::Year => i64::from(end.year()) - i64::from(start.year()),
                DateUnit::Quarter => months(end).div_euclid(3) - months(start).div_euclid(3),
                _ => months(end) - months(start),
            }
        }
    }
}

fn date_part(unit: DateUnit, micros: i64) -> Option<i64> {
    use chrono::{Datelike, Timelike};
    let time = to_datetime(micros)?;
    let part = match unit {
        DateUnit::Year => i64::from(time.year()),
        DateUnit::Quarter => i64::from(time.month0() / 3 + 1),
        DateUnit::Month => i64::from(time.month()),
        DateUnit::DayOfYear => i64::from(time.ordinal()),
        DateUnit::Day => i64::from(time.day()),
        DateUnit::Week => i64::from(time.iso_week().week()),
        DateUnit::Weekday => i64::from(time.weekday().num_days_from_sunday() + 1),
        DateUnit::Fixed(length) => match length {
            3_600_000_000 => i64::from(time.hour()),
            60_000_000 => i64::from(time.minute()),
            1_000_000 => i64::from(time.second()),
            1_000 => i64::from(time.nanosecond() / 1_000_000),
            1 => i64::from(time.nanosecond() / 1_000),
            _ => return None,
        },
    };
    Some(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &Expr) -> Value {
        expr.eval(&Row::event(&[], &[], 0))
    }

    fn lit(value: Value) -> Box<Expr> {
        Box::new(Expr::Literal(value))
    }

    #[test]
    fn arithmetic_follows_the_dialect() {
        let divide = Expr::Binary(BinaryOp::Divide, lit(Value::Int(1)), lit(Value::Int(4)));
        assert_eq!(eval(&divide), Value::Float(0.25));
        let by_zero = Expr::Binary(BinaryOp::Divide, lit(Value::Int(1)), lit(Value::Int(0)));
        assert!(eval(&by_zero).is_null());
        let with_null = Expr::Binary(BinaryOp::Plus, lit(Value::Int(1)), lit(Value::Null));
        assert!(eval(&with_null).is_null());
        let overflow = Expr::Binary(
            BinaryOp::Plus,
            lit(Value::Int(i64::MAX)),
            lit(Value::Int(1)),
        );
        assert!(matches!(eval(&overflow), Value::Float(_)));
    }

    #[test]
    fn three_valued_logic() {
        let null_and_false = Expr::And(lit(Value::Null), lit(Value::Bool(false)));
        assert_eq!(eval(&null_and_false), Value::Bool(false));
        let null_or_true = Expr::Or(lit(Value::Null), lit(Value::Bool(true)));
        assert_eq!(eval(&null_or_true), Value::Bool(true));
        let null_and_true = Expr::And(lit(Value::Null), lit(Value::Bool(true)));
        assert!(eval(&null_and_true).is_null());
    }

    #[test]
    fn like_and_strings() {
        assert!(like("contoso://device-id-7", "contoso://%-7"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("", "%"));
        assert_eq!(
            call(
                Function::Substring,
                vec![Value::str("abcdef"), Value::Int(2), Value::Int(3)]
            ),
            Value::str("bcd")
        );
        assert_eq!(
            call(
                Function::CharIndex,
                vec![Value::str("cd"), Value::str("abcdef")]
            ),
            Value::Int(3)
        );
        assert_eq!(
            call(
                Function::CharIndex,
                vec![Value::str("x"), Value::str("abc")]
            ),
            Value::Int(0)
        );
    }

    #[test]
    fn date_diff_counts_boundaries_crossed() {
        let second = DateUnit::Fixed(time::MICROS_PER_SECOND);
        assert_eq!(date_diff(second, 999_999, 1_000_000), 1);
        assert_eq!(date_diff(second, 0, 999_999), 0);
        assert_eq!(date_diff(second, 1_000_000, 0), -1);
        let start = time::parse_datetime("2026-12-31T23:59:59Z").unwrap();
        let end = time::parse_datetime("2027-01-01T00:00:00Z").unwrap();
        assert_eq!(date_diff(DateUnit::Year, start, end), 1);
        assert_eq!(date_diff(DateUnit::Month, start, end), 1);
        assert_eq!(
            date_add(
                DateUnit::Month,
                1,
                time::parse_datetime("2026-01-31T00:00:00Z").unwrap()
            )
            .map(time::format_datetime),
            Some("2026-02-28T00:00:00.000Z".to_string())
        );
        assert_eq!(date_part(DateUnit::Fixed(60_000_000), end), Some(0));
    }
}
