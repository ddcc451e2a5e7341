//! KQL text into a tree: tokens, then a recursive-descent parser with
//! operator precedence. Every node keeps the line and column it starts
//! at, so planning errors point into the query as written.

use std::fmt;

/// A 1-based line and column (in characters) in the query text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A syntax or planning error at a place in the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KqlError {
    pub message: String,
    pub pos: Pos,
}

impl KqlError {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            pos,
        }
    }
}

pub type Result<T> = std::result::Result<T, KqlError>;

/// A tabular expression: a source and the operators piped after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub source: Source,
    pub operators: Vec<Operator>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Table(Name),
    Nested(Box<Query>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub text: String,
    pub pos: Pos,
}

/// `name = expression`, or an expression alone (then named after it).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub name: Option<Name>,
    pub expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub expr: Expr,
    pub descending: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    InnerUnique,
    Inner,
    LeftOuter,
    RightOuter,
    FullOuter,
    LeftSemi,
    LeftAnti,
    RightSemi,
    RightAnti,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    Where(Expr),
    Project(Vec<Item>),
    ProjectAway(Vec<Name>),
    ProjectRename(Vec<(Name, Name)>),
    Extend(Vec<Item>),
    Summarize {
        aggregates: Vec<Item>,
        by: Vec<Item>,
        pos: Pos,
    },
    Count,
    Distinct(Vec<Name>),
    Top {
        count: u64,
        by: Vec<SortKey>,
    },
    Sort(Vec<SortKey>),
    Take(u64),
    Join {
        kind: JoinKind,
        right: Box<Query>,
        on: Vec<(Name, Name)>,
        pos: Pos,
    },
    Render {
        kind: String,
        properties: Vec<(String, String)>,
        pos: Pos,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Column(String),
    Literal(Literal),
    Negate(Box<Expr>),
    Binary(Box<Expr>, BinaryOp, Box<Expr>),
    /// `x in (…)`, `x !in (…)`, `x in~ (…)`.
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        case_insensitive: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Call(String, Vec<Expr>),
    /// The `i`th aggregate of a `summarize` expression, once the planner
    /// has taken the aggregates out of it; never written by a user.
    Part(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Long(i64),
    Real(f64),
    String(String),
    Bool(bool),
    /// A `timespan`, in microseconds.
    Timespan(i64),
    /// A `datetime`, in microseconds since the epoch (UTC).
    Datetime(Option<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    /// `=~` / `!~`: equal ignoring case.
    EqIgnoreCase,
    NotEqIgnoreCase,
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    /// A string operator (`has`, `contains_cs`, …) and whether it was negated with `!`.
    Text(TextOp, bool),
    MatchesRegex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Has,
    HasCs,
    Contains,
    ContainsCs,
    StartsWith,
    StartsWithCs,
    EndsWith,
    EndsWithCs,
}

impl TextOp {
    fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "has" => Self::Has,
            "has_cs" => Self::HasCs,
            "contains" => Self::Contains,
            "contains_cs" => Self::ContainsCs,
            "startswith" => Self::StartsWith,
            "startswith_cs" => Self::StartsWithCs,
            "endswith" => Self::EndsWith,
            "endswith_cs" => Self::EndsWithCs,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    /// `$left` / `$right`.
    Side(String),
    Long(i64),
    Real(f64),
    Timespan(i64),
    String(String),
    /// The raw text inside `datetime(…)`.
    Datetime(String),
    Symbol(&'static str),
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "'{w}'"),
            Token::Side(s) => write!(f, "'${s}'"),
            Token::Long(n) => write!(f, "{n}"),
            Token::Real(n) => write!(f, "{n}"),
            Token::Timespan(_) => write!(f, "a timespan"),
            Token::String(s) => write!(f, "the string {s:?}"),
            Token::Datetime(s) => write!(f, "datetime({s})"),
            Token::Symbol(s) => write!(f, "'{s}'"),
            Token::End => write!(f, "the end of the query"),
        }
    }
}

/// Longest first, so `==` is not read as `=` `=`.
const SYMBOLS: [&str; 24] = [
    "..", "==", "!=", "<>", "<=", ">=", "=~", "!~", "|", ",", "(", ")", "=", "<", ">", "+", "-",
    "*", "/", "%", ";", ".", "[", "]",
];

/// How deep a query may nest: each parenthesis, call, sign and subquery
/// costs `NESTING` of it, each further term an operator joins in a row
/// (`a or b or c` leans two deep) costs one. Parsing and planning walk
/// expressions recursively, so their depth must stay bounded.
const MAX_DEPTH: usize = 256;
const NESTING: usize = 4;

/// A timespan's bound, in microseconds: about ±106,751 days, the span
/// that nanoseconds in 64 bits hold, as the planner's intervals need.
const MAX_TIMESPAN_MICROS: f64 = (i64::MAX / 1000) as f64;

/// `value` of a unit worth `micros`, in microseconds, if it is in bounds.
fn timespan_micros(value: f64, micros: i64) -> Option<i64> {
    let total = (value * micros as f64).round();
    (total.is_finite() && total.abs() <= MAX_TIMESPAN_MICROS).then_some(total as i64)
}

/// Operator names written with a dash.
const DASHED: [&str; 2] = ["project-away", "project-rename"];

fn tokenize(text: &str) -> Result<Vec<(Token, Pos)>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line, mut line_start) = (0, 1u64, 0usize);
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos {
            line,
            column: (i - line_start) as u64 + 1,
        };
        if c == '\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let mut word: String = chars[start..i].iter().collect();
            for dashed in DASHED {
                let rest: String = chars[start..chars.len().min(start + dashed.len())]
                    .iter()
                    .collect();
                if rest == dashed
                    && chars
                        .get(start + dashed.len())
                        .is_none_or(|c| !c.is_ascii_alphanumeric())
                {
                    word = rest;
                    i = start + dashed.len();
                }
            }
            if let Some(side) = word.strip_prefix('$') {
                tokens.push((Token::Side(side.to_string()), pos));
                continue;
            }
            // `datetime(…)` holds text, not tokens.
            if (word == "datetime" || word == "timespan") && chars.get(i) == Some(&'(') {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ')')
                    .ok_or_else(|| KqlError::new(pos, format!("{word}( is never closed")))?;
                let inner: String = chars[i + 1..i + close].iter().collect();
                i += close + 1;
                let token = if word == "datetime" {
                    Token::Datetime(inner.trim().to_string())
                } else {
                    Token::Timespan(parse_timespan_text(inner.trim()).ok_or_else(|| {
                        KqlError::new(pos, format!("'{inner}' is not a timespan, e.g. 1h or 30s"))
                    })?)
                };
                tokens.push((token, pos));
                continue;
            }
            if word == "in" && chars.get(i) == Some(&'~') {
                word.push('~');
                i += 1;
            }
            tokens.push((Token::Word(word), pos));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut real = false;
            if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                real = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if matches!(chars.get(i), Some('e' | 'E'))
                && chars
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '-' || *c == '+')
            {
                real = true;
                i += 2;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let number: String = chars[start..i].iter().collect();
            let unit_start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit: String = chars[unit_start..i].iter().collect();
            let value: f64 = number
                .parse()
                .map_err(|_| KqlError::new(pos, format!("'{number}' is not a number")))?;
            let token = if !unit.is_empty() {
                let micros = unit_micros(&unit).ok_or_else(|| {
                    KqlError::new(
                        pos,
                        format!("'{number}{unit}': timespan units are d, h, m, s, ms, microsecond"),
                    )
                })?;
                Token::Timespan(timespan_micros(value, micros).ok_or_else(|| {
                    KqlError::new(
                        pos,
                        format!("'{number}{unit}' is out of range: timespans reach ±106,751 days"),
                    )
                })?)
            } else if real {
                Token::Real(value)
            } else {
                Token::Long(
                    number.parse().map_err(|_| {
                        KqlError::new(pos, format!("{number} does not fit in a long"))
                    })?,
                )
            };
            tokens.push((token, pos));
            continue;
        }
        if c == '\'' || c == '"' || (c == '@' && matches!(chars.get(i + 1), Some('\'' | '"'))) {
            let verbatim = c == '@';
            if verbatim {
                i += 1;
            }
            let quote = chars[i];
            i += 1;
            let mut value = String::new();
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err(KqlError::new(pos, "this string is never closed"));
                };
                i += 1;
                if c == quote {
                    break;
                }
                if c == '\\' && !verbatim {
                    let escaped = chars
                        .get(i)
                        .ok_or_else(|| KqlError::new(pos, "this string is never closed"))?;
                    i += 1;
                    value.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => *other,
                    });
                } else {
                    value.push(c);
                }
            }
            tokens.push((Token::String(value), pos));
            continue;
        }
        // `!has`, `!in`, `!contains`: negated operators are one token.
        if c == '!' && chars.get(i + 1).is_some_and(char::is_ascii_alphabetic) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let mut word: String = chars[start..i].iter().collect();
            if word == "!in" && chars.get(i) == Some(&'~') {
                word.push('~');
                i += 1;
            }
            tokens.push((Token::Word(word), pos));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let Some(symbol) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) else {
            return Err(KqlError::new(pos, format!("unexpected character '{c}'")));
        };
        i += symbol.len();
        tokens.push((Token::Symbol(symbol), pos));
    }
    let end = Pos {
        line,
        column: (chars.len() - line_start) as u64 + 1,
    };
    tokens.push((Token::End, end));
    Ok(tokens)
}

fn unit_micros(unit: &str) -> Option<i64> {
    Some(match unit {
        "d" | "day" | "days" => 86_400_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000,
        "m" | "min" | "minute" | "minutes" => 60_000_000,
        "s" | "sec" | "second" | "seconds" => 1_000_000,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000,
        "microsecond" | "microseconds" => 1,
        _ => return None,
    })
}

/// `1h`, `30 s`, `[-][d.]hh:mm[:ss[.fff]]` inside `timespan(…)`, in
/// microseconds; `None` if it is not one or is out of range.
fn parse_timespan_text(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.contains(':') {
        let (negative, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (hours, rest) = text.split_once(':')?;
        let (days, hours) = hours.split_once('.').unwrap_or(("0", hours));
        let (minutes, seconds) = rest.split_once(':').unwrap_or((rest, "0"));
        let whole = |part: &str| -> Option<f64> {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<f64>().ok())
                .flatten()
        };
        let seconds: f64 = match seconds.split_once('.') {
            Some((s, fraction)) if fraction.bytes().all(|b| b.is_ascii_digit()) => {
                whole(s)? + format!("0.{fraction}").parse::<f64>().ok()?
            }
            Some(_) => return None,
            None => whole(seconds)?,
        };
        let total =
            ((whole(days)? * 24.0 + whole(hours)?) * 60.0 + whole(minutes)?) * 60.0 + seconds;
        let micros = timespan_micros(total, 1_000_000)?;
        return Some(if negative { -micros } else { micros });
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let unit = unit.trim();
    let micros = if unit.is_empty() {
        86_400_000_000
    } else {
        unit_micros(unit)?
    };
    timespan_micros(value, micros)
}

/// Parses a whole query: one tabular expression, optionally ended by `;`.
pub fn parse(text: &str) -> Result<Query> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
        depth: 0,
    };
    let query = parser.query()?;
    parser.eat_symbol(";");
    if parser.peek() != &Token::End {
        return Err(parser.unexpected("'|' or the end of the query"));
    }
    Ok(query)
}

struct Parser {
    tokens: Vec<(Token, Pos)>,
    at: usize,
    /// How deep the parse is nested now (see `MAX_DEPTH`).
    depth: usize,
}

impl Parser {
    /// Goes one nesting level deeper, refusing to go past `MAX_DEPTH`. A
    /// failed parse is abandoned, so only a successful level calls `leave`.
    fn enter(&mut self) -> Result<()> {
        self.deeper(NESTING)
    }

    fn leave(&mut self) {
        self.depth -= NESTING;
    }

    fn deeper(&mut self, cost: usize) -> Result<()> {
        self.depth += cost;
        if self.depth > MAX_DEPTH {
            return Err(KqlError::new(
                self.pos(),
                format!(
                    "the query nests deeper than the planner allows here (at most {} levels of \
                     parentheses, calls and signs, or {MAX_DEPTH} terms joined in a row); for \
                     many alternatives use in (…)",
                    MAX_DEPTH / NESTING
                ),
            ));
        }
        Ok(())
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.at].0
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.at + ahead).min(self.tokens.len() - 1)].0
    }

    fn pos(&self) -> Pos {
        self.tokens[self.at].1
    }

    fn next(&mut self) -> (Token, Pos) {
        let token = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn unexpected(&self, wanted: &str) -> KqlError {
        KqlError::new(
            self.pos(),
            format!("expected {wanted}, found {}", self.peek()),
        )
    }

    fn is_symbol(&self, symbol: &str) -> bool {
        matches!(self.peek(), Token::Symbol(s) if *s == symbol)
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = self.is_symbol(symbol);
        if found {
            self.next();
        }
        found
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<()> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{symbol}'")))
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Token::Word(w) if w == word)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.is_word(word);
        if found {
            self.next();
        }
        found
    }

    fn expect_word(&mut self, word: &str) -> Result<()> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{word}'")))
        }
    }

    fn name(&mut self, what: &str) -> Result<Name> {
        match self.peek().clone() {
            Token::Word(text) if !text.starts_with('!') => {
                let pos = self.next().1;
                Ok(Name { text, pos })
            }
            // `['column name']`
            Token::Symbol("[") => {
                let pos = self.next().1;
                let Token::String(text) = self.next().0 else {
                    return Err(KqlError::new(pos, "expected a quoted name inside [ ]"));
                };
                self.expect_symbol("]")?;
                Ok(Name { text, pos })
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn count(&mut self) -> Result<u64> {
        match self.next() {
            (Token::Long(n), _) if n >= 0 => Ok(n as u64),
            (token, pos) => Err(KqlError::new(
                pos,
                format!("expected a row count, found {token}"),
            )),
        }
    }

    fn query(&mut self) -> Result<Query> {
        let source = if self.eat_symbol("(") {
            self.enter()?;
            let inner = self.query()?;
            self.leave();
            self.expect_symbol(")")?;
            Source::Nested(Box::new(inner))
        } else {
            Source::Table(self.name("a table name")?)
        };
        let mut operators = Vec::new();
        while self.eat_symbol("|") {
            operators.push(self.operator()?);
        }
        Ok(Query { source, operators })
    }

    fn operator(&mut self) -> Result<Operator> {
        let pos = self.pos();
        let Token::Word(word) = self.next().0 else {
            return Err(KqlError::new(pos, "expected an operator after '|'"));
        };
        Ok(match word.as_str() {
            "where" | "filter" => Operator::Where(self.expr()?),
            "project" => Operator::Project(self.items()?),
            "project-away" => Operator::ProjectAway(self.names()?),
            "project-rename" => {
                let mut renames = Vec::new();
                loop {
                    let new = self.name("a new column name")?;
                    self.expect_symbol("=")?;
                    renames.push((new, self.name("a column name")?));
                    if !self.eat_symbol(",") {
                        break;
                    }
                }
                Operator::ProjectRename(renames)
            }
            "extend" => Operator::Extend(self.items()?),
            "summarize" => {
                let aggregates = if self.is_word("by") {
                    Vec::new()
                } else {
                    self.items()?
                };
                let by = if self.eat_word("by") {
                    self.items()?
                } else {
                    Vec::new()
                };
                if aggregates.is_empty() && by.is_empty() {
                    return Err(KqlError::new(
                        pos,
                        "summarize needs aggregates, 'by' columns or both",
                    ));
                }
                Operator::Summarize {
                    aggregates,
                    by,
                    pos,
                }
            }
            "count" => Operator::Count,
            "distinct" => {
                if self.eat_symbol("*") {
                    Operator::Distinct(Vec::new())
                } else {
                    Operator::Distinct(self.names()?)
                }
            }
            "top" => {
                let count = self.count()?;
                self.expect_word("by")?;
                Operator::Top {
                    count,
                    by: self.sort_keys()?,
                }
            }
            "sort" | "order" => {
                self.expect_word("by")?;
                Operator::Sort(self.sort_keys()?)
            }
            "take" | "limit" => Operator::Take(self.count()?),
            "join" => self.join(pos)?,
            "render" => {
                let kind = self.name("a visualization such as timechart")?.text;
                let mut properties = Vec::new();
                if self.eat_word("with") {
                    self.expect_symbol("(")?;
                    loop {
                        let key = self.name("a property name")?.text;
                        self.expect_symbol("=")?;
                        let value = match self.next() {
                            (Token::String(s) | Token::Word(s), _) => s,
                            (Token::Long(n), _) => n.to_string(),
                            (Token::Real(n), _) => n.to_string(),
                            (token, pos) => {
                                return Err(KqlError::new(
                                    pos,
                                    format!("expected a property value, found {token}"),
                                ));
                            }
                        };
                        properties.push((key, value));
                        if !self.eat_symbol(",") {
                            break;
                        }
                    }
                    self.expect_symbol(")")?;
                }
                Operator::Render {
                    kind,
                    properties,
                    pos,
                }
            }
            other => {
                return Err(KqlError::new(
                    pos,
                    format!(
                        "'{other}' is not an operator here; the operators are where, project, \
                         project-away, project-rename, extend, summarize, count, distinct, top, \
                         sort/order by, take/limit, join and render"
                    ),
                ));
            }
        })
    }

    fn join(&mut self, pos: Pos) -> Result<Operator> {
        let mut kind = JoinKind::InnerUnique;
        if self.is_word("kind") {
            self.next();
            self.expect_symbol("=")?;
            let (token, kind_pos) = self.next();
            let Token::Word(word) = token else {
                return Err(KqlError::new(kind_pos, "expected a join kind"));
            };
            kind = match word.as_str() {
                "innerunique" => JoinKind::InnerUnique,
                "inner" => JoinKind::Inner,
                "leftouter" => JoinKind::LeftOuter,
                "rightouter" => JoinKind::RightOuter,
                "fullouter" => JoinKind::FullOuter,
                "leftsemi" => JoinKind::LeftSemi,
                "leftanti" | "anti" | "leftantisemi" => JoinKind::LeftAnti,
                "rightsemi" => JoinKind::RightSemi,
                "rightanti" | "rightantisemi" => JoinKind::RightAnti,
                other => {
                    return Err(KqlError::new(
                        kind_pos,
                        format!(
                            "'{other}' is not a join kind; use innerunique, inner, leftouter, \
                             rightouter, fullouter, leftsemi, leftanti, rightsemi or rightanti"
                        ),
                    ));
                }
            };
        }
        let right = if self.eat_symbol("(") {
            let inner = self.query()?;
            self.expect_symbol(")")?;
            inner
        } else {
            Query {
                source: Source::Table(self.name("the right side of the join")?),
                operators: Vec::new(),
            }
        };
        self.expect_word("on")?;
        let mut on = Vec::new();
        loop {
            if matches!(self.peek(), Token::Side(_)) {
                let (first_side, first) = self.side_column()?;
                self.expect_symbol("==")?;
                let (second_side, second) = self.side_column()?;
                match (first_side.as_str(), second_side.as_str()) {
                    ("left", "right") => on.push((first, second)),
                    ("right", "left") => on.push((second, first)),
                    _ => {
                        return Err(KqlError::new(
                            first.pos,
                            "a join condition compares $left.column == $right.column",
                        ));
                    }
                }
            } else {
                let name = self.name("a join column")?;
                on.push((name.clone(), name));
            }
            if !self.eat_symbol(",") {
                break;
            }
        }
        Ok(Operator::Join {
            kind,
            right: Box::new(right),
            on,
            pos,
        })
    }

    fn side_column(&mut self) -> Result<(String, Name)> {
        let (token, pos) = self.next();
        let Token::Side(side) = token else {
            return Err(KqlError::new(pos, "expected $left or $right"));
        };
        if side != "left" && side != "right" {
            return Err(KqlError::new(pos, format!("${side}: use $left or $right")));
        }
        self.expect_symbol(".")?;
        Ok((side, self.name("a column name")?))
    }

    fn names(&mut self) -> Result<Vec<Name>> {
        let mut names = vec![self.name("a column name")?];
        while self.eat_symbol(",") {
            names.push(self.name("a column name")?);
        }
        Ok(names)
    }

    fn items(&mut self) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        loop {
            let named = matches!(self.peek(), Token::Word(_) | Token::Symbol("["))
                && matches!(self.peek_at(1), Token::Symbol("="))
                || matches!(self.peek(), Token::Symbol("["))
                    && matches!(self.peek_at(3), Token::Symbol("="));
            let name = if named {
                let name = self.name("a column name")?;
                self.expect_symbol("=")?;
                Some(name)
            } else {
                None
            };
            items.push(Item {
                name,
                expr: self.expr()?,
            });
            if !self.eat_symbol(",") {
                break;
            }
        }
        Ok(items)
    }

    fn sort_keys(&mut self) -> Result<Vec<SortKey>> {
        let mut keys = Vec::new();
        loop {
            let expr = self.expr()?;
            // Data Explorer sorts descending unless told otherwise; nulls
            // come first when ascending and last when descending.
            let descending = if self.eat_word("asc") {
                false
            } else {
                self.eat_word("desc");
                true
            };
            let mut nulls_first = !descending;
            if self.eat_word("nulls") {
                nulls_first = if self.eat_word("first") {
                    true
                } else {
                    self.expect_word("last")?;
                    false
                };
            }
            keys.push(SortKey {
                expr,
                descending,
                nulls_first,
            });
            if !self.eat_symbol(",") {
                break;
            }
        }
        Ok(keys)
    }

    fn expr(&mut self) -> Result<Expr> {
        self.binary(0)
    }

    /// Precedence climbing: `or` < `and` < comparisons < `+ -` < `* / %`.
    fn binary(&mut self, level: u8) -> Result<Expr> {
        if level == 2 {
            return self.comparison();
        }
        let mut left = if level == 4 {
            self.unary()?
        } else {
            self.binary(level + 1)?
        };
        // Each term joined makes the tree one deeper (it leans left).
        let mut terms = 0;
        loop {
            let pos = self.pos();
            let op = match (level, self.peek()) {
                (0, Token::Word(w)) if w == "or" => BinaryOp::Or,
                (1, Token::Word(w)) if w == "and" => BinaryOp::And,
                (3, Token::Symbol("+")) => BinaryOp::Plus,
                (3, Token::Symbol("-")) => BinaryOp::Minus,
                (4, Token::Symbol("*")) => BinaryOp::Multiply,
                (4, Token::Symbol("/")) => BinaryOp::Divide,
                (4, Token::Symbol("%")) => BinaryOp::Modulo,
                _ => {
                    self.depth -= terms;
                    return Ok(left);
                }
            };
            self.deeper(1)?;
            terms += 1;
            self.next();
            let right = if level == 4 {
                self.unary()?
            } else {
                self.binary(level + 1)?
            };
            left = Expr {
                kind: ExprKind::Binary(Box::new(left), op, Box::new(right)),
                pos,
            };
        }
    }

    fn comparison(&mut self) -> Result<Expr> {
        let left = self.binary(3)?;
        let pos = self.pos();
        let op = match self.peek().clone() {
            Token::Symbol("==") => BinaryOp::Eq,
            Token::Symbol("!=" | "<>") => BinaryOp::NotEq,
            Token::Symbol("<") => BinaryOp::Lt,
            Token::Symbol("<=") => BinaryOp::LtEq,
            Token::Symbol(">") => BinaryOp::Gt,
            Token::Symbol(">=") => BinaryOp::GtEq,
            Token::Symbol("=~") => BinaryOp::EqIgnoreCase,
            Token::Symbol("!~") => BinaryOp::NotEqIgnoreCase,
            Token::Symbol("=") => {
                return Err(KqlError::new(pos, "compare with '==', not '='"));
            }
            Token::Word(word) => {
                let (negated, bare) = match word.strip_prefix('!') {
                    Some(bare) => (true, bare.to_string()),
                    None => (false, word.clone()),
                };
                if bare == "in" || bare == "in~" {
                    return self.in_list(left, negated, bare == "in~", pos);
                }
                if bare == "between" {
                    return self.between(left, negated, pos);
                }
                if bare == "matches" && !negated {
                    self.next();
                    self.expect_word("regex")?;
                    let right = self.binary(3)?;
                    return Ok(Expr {
                        kind: ExprKind::Binary(
                            Box::new(left),
                            BinaryOp::MatchesRegex,
                            Box::new(right),
                        ),
                        pos,
                    });
                }
                match TextOp::from_word(&bare) {
                    Some(op) => BinaryOp::Text(op, negated),
                    None => return Ok(left),
                }
            }
            _ => return Ok(left),
        };
        self.next();
        let right = self.binary(3)?;
        Ok(Expr {
            kind: ExprKind::Binary(Box::new(left), op, Box::new(right)),
            pos,
        })
    }

    fn in_list(
        &mut self,
        left: Expr,
        negated: bool,
        case_insensitive: bool,
        pos: Pos,
    ) -> Result<Expr> {
        self.next();
        self.expect_symbol("(")?;
        let mut list = vec![self.expr()?];
        while self.eat_symbol(",") {
            list.push(self.expr()?);
        }
        self.expect_symbol(")")?;
        Ok(Expr {
            kind: ExprKind::In {
                expr: Box::new(left),
                list,
                negated,
                case_insensitive,
            },
            pos,
        })
    }

    fn between(&mut self, left: Expr, negated: bool, pos: Pos) -> Result<Expr> {
        self.next();
        self.expect_symbol("(")?;
        let low = self.binary(3)?;
        self.expect_symbol("..")?;
        let high = self.binary(3)?;
        self.expect_symbol(")")?;
        Ok(Expr {
            kind: ExprKind::Between {
                expr: Box::new(left),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            },
            pos,
        })
    }

    fn unary(&mut self) -> Result<Expr> {
        let pos = self.pos();
        if self.eat_symbol("-") {
            self.enter()?;
            let inner = self.unary()?;
            self.leave();
            return Ok(Expr {
                kind: match inner.kind {
                    ExprKind::Literal(Literal::Long(n)) => ExprKind::Literal(Literal::Long(-n)),
                    ExprKind::Literal(Literal::Real(n)) => ExprKind::Literal(Literal::Real(-n)),
                    ExprKind::Literal(Literal::Timespan(n)) => {
                        ExprKind::Literal(Literal::Timespan(-n))
                    }
                    other => ExprKind::Negate(Box::new(Expr { kind: other, pos })),
                },
                pos,
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr> {
        let (token, pos) = self.next();
        let kind = match token {
            Token::Long(n) => ExprKind::Literal(Literal::Long(n)),
            Token::Real(n) => ExprKind::Literal(Literal::Real(n)),
            Token::Timespan(n) => ExprKind::Literal(Literal::Timespan(n)),
            Token::String(s) => ExprKind::Literal(Literal::String(s)),
            Token::Datetime(text) => {
                ExprKind::Literal(Literal::Datetime(parse_datetime(&text, pos)?))
            }
            Token::Symbol("(") => {
                self.enter()?;
                let inner = self.expr()?;
                self.leave();
                self.expect_symbol(")")?;
                return Ok(inner);
            }
            // `arg_max(x, *)`: every column.
            Token::Symbol("*") => ExprKind::Column("*".into()),
            Token::Symbol("[") => {
                self.at -= 1;
                ExprKind::Column(self.name("a column")?.text)
            }
            Token::Word(word) if word == "true" || word == "false" => {
                ExprKind::Literal(Literal::Bool(word == "true"))
            }
            Token::Word(word) if !word.starts_with('!') => {
                if self.eat_symbol("(") {
                    self.enter()?;
                    let mut args = Vec::new();
                    if !self.eat_symbol(")") {
                        args.push(self.expr()?);
                        while self.eat_symbol(",") {
                            args.push(self.expr()?);
                        }
                        self.expect_symbol(")")?;
                    }
                    self.leave();
                    ExprKind::Call(word, args)
                } else {
                    ExprKind::Column(word)
                }
            }
            other => {
                return Err(KqlError::new(
                    pos,
                    format!("expected an expression, found {other}"),
                ));
            }
        };
        Ok(Expr { kind, pos })
    }
}

fn parse_datetime(text: &str, pos: Pos) -> Result<Option<i64>> {
    if text == "null" {
        return Ok(None);
    }
    let mut normalized = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.replace(' ', "T")
    };
    // `2026-12-01T10:00`: minutes without seconds.
    if normalized.len() == 16 && normalized.as_bytes()[13] == b':' {
        normalized.push_str(":00");
    }
    // Through chrono rather than nanoseconds, so that 0001-01-01 and
    // 9999-12-31 (the usual sentinels) are datetimes too.
    let utc: datafusion::arrow::array::timezone::Tz = "+00:00".parse().expect("UTC is a zone");
    datafusion::arrow::compute::kernels::cast_utils::string_to_datetime(&utc, &normalized)
        .map(|datetime| Some(datetime.timestamp_micros()))
        .map_err(|_| {
            KqlError::new(
                pos,
                format!("'{text}' is not a datetime; write e.g. datetime(2026-12-01T10:00:00Z)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_parse_into_operators() {
        let query = parse(
            "auth | where Result == 'DECLINE' and Amount > 10.5\n\
             | summarize declines = count(), dcount(MerchantId) by BIN, bin(EventTime, 1m)\n\
             | top 3 by declines",
        )
        .unwrap();
        assert_eq!(
            query.source,
            Source::Table(Name {
                text: "auth".into(),
                pos: Pos { line: 1, column: 1 }
            })
        );
        assert_eq!(query.operators.len(), 3);
        let Operator::Summarize { aggregates, by, .. } = &query.operators[1] else {
            panic!("{:?}", query.operators[1]);
        };
        assert_eq!(aggregates[0].name.as_ref().unwrap().text, "declines");
        assert!(aggregates[1].name.is_none());
        let ExprKind::Call(bin, args) = &by[1].expr.kind else {
            panic!()
        };
        assert_eq!(bin, "bin");
        assert_eq!(
            args[1].kind,
            ExprKind::Literal(Literal::Timespan(60_000_000))
        );
        let Operator::Top { count, by } = &query.operators[2] else {
            panic!()
        };
        assert_eq!(*count, 3);
        assert!(by[0].descending && !by[0].nulls_first);
    }

    #[test]
    fn precedence_binds_and_before_or_and_products_before_sums() {
        let query = parse("t | where a == 1 or b == 2 and c + 2 * 3 > 4").unwrap();
        let Operator::Where(expr) = &query.operators[0] else {
            panic!()
        };
        let ExprKind::Binary(_, BinaryOp::Or, right) = &expr.kind else {
            panic!("{expr:?}")
        };
        let ExprKind::Binary(_, BinaryOp::And, compare) = &right.kind else {
            panic!()
        };
        let ExprKind::Binary(sum, BinaryOp::Gt, _) = &compare.kind else {
            panic!()
        };
        let ExprKind::Binary(_, BinaryOp::Plus, product) = &sum.kind else {
            panic!()
        };
        assert!(matches!(
            product.kind,
            ExprKind::Binary(_, BinaryOp::Multiply, _)
        ));
    }

    #[test]
    fn literals_read_as_data_explorer_writes_them() {
        let query = parse(
            "t | where ts > datetime(2019-05-16T17:16:40Z) and d < 1.5h and s !has \"a\\\"b\" \
             and x !in (1, 2) and y between (1 .. 10) and @'c:\\dir' == p",
        )
        .unwrap();
        let text = format!("{:?}", query.operators[0]);
        assert!(text.contains("Datetime(Some(1558027000000000))"), "{text}");
        assert!(text.contains("Timespan(5400000000)"), "{text}");
        assert!(text.contains("Text(Has, true)"), "{text}");
        assert!(text.contains(r#"String("a\"b")"#), "{text}");
        assert!(text.contains("negated: true"), "{text}");
        assert!(text.contains(r#"String("c:\\dir")"#), "{text}");
    }

    #[test]
    fn joins_take_kinds_and_side_columns() {
        let query =
            parse("a | join kind=leftouter (b | where x > 1) on $left.k == $right.id, z").unwrap();
        let Operator::Join {
            kind, on, right, ..
        } = &query.operators[0]
        else {
            panic!()
        };
        assert_eq!(*kind, JoinKind::LeftOuter);
        assert_eq!(on[0].0.text, "k");
        assert_eq!(on[0].1.text, "id");
        assert_eq!(on[1].0.text, "z");
        assert_eq!(right.operators.len(), 1);
        let Operator::Join { kind, .. } = &parse("a | join (b) on k").unwrap().operators[0] else {
            panic!()
        };
        assert_eq!(*kind, JoinKind::InnerUnique);
    }

    #[test]
    fn errors_point_at_the_token() {
        let error = parse("t\n| where a = 1").unwrap_err();
        assert_eq!(
            error.pos,
            Pos {
                line: 2,
                column: 11
            }
        );
        assert!(error.message.contains("'=='"), "{}", error.message);
        let error = parse("t | frobnicate").unwrap_err();
        assert_eq!(error.pos, Pos { line: 1, column: 5 });
        let error = parse("t | take").unwrap_err();
        assert!(
            error.message.contains("the end of the query"),
            "{}",
            error.message
        );
        let error = parse("t | where s == 'open").unwrap_err();
        assert_eq!(
            error.pos,
            Pos {
                line: 1,
                column: 16
            }
        );
    }

    #[test]
    fn render_keeps_its_kind_and_properties() {
        let query = parse("t | render timechart with (title='Declines', ysplit=axes)").unwrap();
        let Operator::Render {
            kind, properties, ..
        } = &query.operators[0]
        else {
            panic!()
        };
        assert_eq!(kind, "timechart");
        assert_eq!(properties[0], ("title".to_string(), "Declines".to_string()));
    }

    #[test]
    fn timespans_and_datetimes_keep_to_their_ranges() {
        assert_eq!(parse_timespan_text("1:30:00"), Some(5_400_000_000));
        assert_eq!(parse_timespan_text("-1:30:00"), Some(-5_400_000_000));
        assert_eq!(parse_timespan_text("2.01:00:00.5"), Some(176_400_500_000));
        assert_eq!(parse_timespan_text("99999999999999:00:00"), None);
        assert_eq!(parse_timespan_text("1:00:1e300"), None);
        assert_eq!(parse_timespan_text("1:x:00"), None);
        assert_eq!(parse_timespan_text("90s"), Some(90_000_000));
        assert!(parse("t | where ts > ago(106000d)").is_ok());
        for text in ["t | where ts > ago(200000d)", "t | where d < 100000000000d"] {
            let error = parse(text).unwrap_err();
            assert!(error.message.contains("out of range"), "{}", error.message);
        }
        let text = format!(
            "{:?}",
            parse("t | where a > datetime(0001-01-01) and b < datetime(9999-12-31) and c == datetime(2026-12-01 10:30)")
                .unwrap()
                .operators[0]
        );
        assert!(
            text.contains("Datetime(Some(-62135596800000000))"),
            "{text}"
        );
        assert!(
            text.contains("Datetime(Some(253402214400000000))"),
            "{text}"
        );
        assert!(text.contains("Datetime(Some(1796121000000000))"), "{text}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let parens = format!(
            "t | where {}1{} == 1",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        let signs = format!("t | where {}1 == 1", "-".repeat(100_000));
        let calls = format!(
            "t | where {}1{} == 1",
            "abs(".repeat(10_000),
            ")".repeat(10_000)
        );
        let tables = format!("{}t{}", "(".repeat(10_000), ")".repeat(10_000));
        let chain = format!("t | where x == 1{}", " or x == 1".repeat(300_000));
        for text in [parens, signs, calls, tables, chain] {
            let error = parse(&text).unwrap_err();
            assert!(error.message.contains("nests deeper"), "{}", error.message);
        }
        let fine = format!("t | where x == 0{}", " or x == 1".repeat(100));
        assert!(parse(&fine).is_ok());
        let fine = format!("t | where {}x{} == 1", "(".repeat(60), ")".repeat(60));
        assert!(parse(&fine).is_ok());
        let fine = format!("t | where {}x{} == 1", "abs(".repeat(60), ")".repeat(60));
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn bracketed_names_are_names() {
        let query = parse("t | project ['my col'], [\"other one\"]").unwrap();
        let text = format!("{:?}", query.operators[0]);
        assert!(
            text.contains("my col") && text.contains("other one"),
            "{text}"
        );
    }
}
