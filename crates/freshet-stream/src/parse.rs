//! Parses a job's query text (the Stream Analytics dialect) with
//! `sqlparser`'s MS SQL dialect, which already reads `[bracketed]` names,
//! `SELECT … INTO`, `System.Timestamp()` and `OVER (…)`.
//!
//! Two clauses are not SQL: `PARTITION BY keys` and `TIMESTAMP BY expr
//! [OVER keys]` after a source in FROM/JOIN. They are cut out of the token
//! stream before parsing and replaced by blanks of the same length, so
//! every line and column sqlparser reports is still a position in the
//! user's text; each cut clause is filed under the position where the
//! source before it ends, which is where the planner finds it again.
//! A job is several statements without separators, so statements are
//! read one after another until the text ends.

use std::collections::BTreeMap;
use std::fmt;

use sqlparser::ast::{Expr, Query};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// A query error with the place in the query text it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct QueryError {
    /// 1-based; 0 when the error is about the job as a whole.
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            formatter.write_str(&self.message)
        } else {
            write!(
                formatter,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        }
    }
}

impl QueryError {
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        Self {
            line: location.line,
            column: location.column,
            message: message.into(),
        }
    }

    pub fn whole(message: impl Into<String>) -> Self {
        Self {
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    fn from_parser(error: ParserError) -> Self {
        let text = match error {
            ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
            ParserError::RecursionLimitExceeded => {
                return Self::whole("the query nests too deeply");
            }
        };
        // sqlparser appends " at Line: L, Column: C".
        if let Some(at) = text.rfind(" at Line: ") {
            let place = &text[at + " at Line: ".len()..];
            if let Some((line, column)) = place.split_once(", Column: ")
                && let (Ok(line), Ok(column)) = (line.trim().parse(), column.trim().parse())
            {
                return Self {
                    line,
                    column,
                    message: text[..at].to_string(),
                };
            }
        }
        Self::whole(text)
    }
}

/// The clauses cut from after one source.
#[derive(Debug, Clone, Default)]
pub struct SourceClauses {
    pub timestamp_by: Option<Expr>,
    /// `TIMESTAMP BY … OVER keys`: substreams with their own watermarks.
    pub over: Vec<Expr>,
    pub partition_by: Vec<Expr>,
    /// Where `TIMESTAMP BY` starts, for errors about it.
    pub timestamp_by_at: Option<Location>,
}

#[derive(Debug)]
pub struct ParsedJob {
    pub statements: Vec<Query>,
    /// Keyed by the end of the source (name or alias) they follow.
    pub clauses: BTreeMap<(u64, u64), SourceClauses>,
}

pub fn dialect() -> MsSqlDialect {
    MsSqlDialect {}
}

pub fn parse_job(text: &str) -> Result<ParsedJob, QueryError> {
    let dialect = dialect();
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|error| QueryError::at(error.location, error.message))?;
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|token| !matches!(token.token, Token::Whitespace(_)))
        .collect();

    let positions = Positions::new(text);
    let mut blanked: Vec<char> = text.chars().collect();
    let mut clauses: BTreeMap<(u64, u64), SourceClauses> = BTreeMap::new();
    // Where the last clause ended and the source it belonged to: clauses
    // that follow each other belong to the same source.
    let mut previous: Option<(usize, Location)> = None;
    let mut index = 0;
    while index < significant.len() {
        let kind = clause_start(&significant, index);
        let Some(kind) = kind else {
            index += 1;
            continue;
        };
        let anchor = match previous {
            Some((end, anchor)) if end == index => anchor,
            _ => significant[index - 1].span.end,
        };
        let clause_begin = significant[index].span.start;
        let mut cursor = index + 2;
        let (first, after_first) = clause_body(&significant, cursor);
        if first.is_none() {
            return Err(QueryError::at(
                significant[index + 1].span.end,
                match kind {
                    Clause::TimestampBy => "TIMESTAMP BY needs an expression giving the event time",
                    Clause::PartitionBy => "PARTITION BY needs a key",
                },
            ));
        }
        cursor = after_first;
        let entry = clauses.entry((anchor.line, anchor.column)).or_default();
        match kind {
            Clause::TimestampBy => {
                let (begin, end) = first.expect("checked above");
                entry.timestamp_by = Some(parse_expr_at(text, &positions, begin, end)?);
                entry.timestamp_by_at = Some(clause_begin);
                if is_keyword(&significant, cursor, Keyword::OVER) {
                    let (keys, after) = clause_body(&significant, cursor + 1);
                    let Some((begin, end)) = keys else {
                        return Err(QueryError::at(
                            significant[cursor].span.end,
                            "OVER needs the keys of the substreams",
                        ));
                    };
                    entry.over = parse_exprs_at(text, &positions, begin, end)?;
                    cursor = after;
                }
            }
            Clause::PartitionBy => {
                let (begin, end) = first.expect("checked above");
                entry.partition_by = parse_exprs_at(text, &positions, begin, end)?;
            }
        }
        let clause_end = significant[cursor - 1].span.end;
        for slot in positions.char_range(clause_begin, clause_end) {
            if blanked[slot] != '\n' {
                blanked[slot] = ' ';
            }
        }
        previous = Some((cursor, anchor));
        index = cursor;
    }

    let blanked: String = blanked.into_iter().collect();
    let mut parser = Parser::new(&dialect)
        .try_with_sql(&blanked)
        .map_err(QueryError::from_parser)?;
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        let query = parser.parse_query().map_err(QueryError::from_parser)?;
        statements.push(*query);
    }
    if statements.is_empty() {
        return Err(QueryError::whole(
            "the query is empty: write at least one SELECT … INTO output FROM input",
        ));
    }
    Ok(ParsedJob {
        statements,
        clauses,
    })
}

#[derive(Clone, Copy)]
enum Clause {
    TimestampBy,
    PartitionBy,
}

fn clause_start(tokens: &[&TokenWithSpan], index: usize) -> Option<Clause> {
    if index == 0 || !is_keyword(tokens, index + 1, Keyword::BY) {
        return None;
    }
    if is_keyword(tokens, index, Keyword::TIMESTAMP) {
        return Some(Clause::TimestampBy);
    }
    // `OVER (PARTITION BY …)` is SQL and stays.
    if is_keyword(tokens, index, Keyword::PARTITION) && tokens[index - 1].token != Token::LParen {
        return Some(Clause::PartitionBy);
    }
    None
}

fn is_keyword(tokens: &[&TokenWithSpan], index: usize, keyword: Keyword) -> bool {
    matches!(tokens.get(index).map(|token| &token.token),
        Some(Token::Word(word)) if word.keyword == keyword && word.quote_style.is_none())
}

/// The extent of a clause's expression list starting at `start`: up to the
/// next clause keyword or closing parenthesis at its own depth. Returns the
/// text range and the index of the first token after it.
fn clause_body(tokens: &[&TokenWithSpan], start: usize) -> (Option<(Location, Location)>, usize) {
    const ENDS: &[Keyword] = &[
        Keyword::OVER,
        Keyword::PARTITION,
        Keyword::TIMESTAMP,
        Keyword::JOIN,
        Keyword::INNER,
        Keyword::LEFT,
        Keyword::RIGHT,
        Keyword::FULL,
        Keyword::CROSS,
        Keyword::OUTER,
        Keyword::ON,
        Keyword::WHERE,
        Keyword::GROUP,
        Keyword::HAVING,
        Keyword::UNION,
        Keyword::SELECT,
        Keyword::INTO,
        Keyword::WITH,
        Keyword::ORDER,
        Keyword::LIMIT,
    ];
    let mut depth = 0usize;
    let mut index = start;
    while let Some(token) = tokens.get(index) {
        match &token.token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => break,
            Token::RParen => depth -= 1,
            Token::SemiColon | Token::EOF if depth == 0 => break,
            // `BY` after PARTITION/TIMESTAMP only counts as an end when it
            // starts one of those clauses.
            Token::Word(word)
                if depth == 0
                    && word.quote_style.is_none()
                    && ENDS.contains(&word.keyword)
                    && (!matches!(word.keyword, Keyword::PARTITION | Keyword::TIMESTAMP)
                        || is_keyword(tokens, index + 1, Keyword::BY)) =>
            {
                break;
            }
            _ => {}
        }
        index += 1;
    }
    if index == start {
        (None, index)
    } else {
        (
            Some((tokens[start].span.start, tokens[index - 1].span.end)),
            index,
        )
    }
}

/// Parses one expression from `text[begin..end]`, with every other
/// character blanked so that positions in errors stay true.
fn parse_expr_at(
    text: &str,
    positions: &Positions,
    begin: Location,
    end: Location,
) -> Result<Expr, QueryError> {
    let mut exprs = parse_exprs_at(text, positions, begin, end)?;
    if exprs.len() != 1 {
        return Err(QueryError::at(begin, "expected one expression here"));
    }
    Ok(exprs.remove(0))
}

fn parse_exprs_at(
    text: &str,
    positions: &Positions,
    begin: Location,
    end: Location,
) -> Result<Vec<Expr>, QueryError> {
    let keep = positions.char_range(begin, end);
    let masked: String = text
        .chars()
        .enumerate()
        .map(|(slot, char)| {
            if keep.contains(&slot) || char == '\n' {
                char
            } else {
                ' '
            }
        })
        .collect();
    let dialect = dialect();
    let mut parser = Parser::new(&dialect)
        .try_with_sql(&masked)
        .map_err(QueryError::from_parser)?;
    let exprs = parser
        .parse_comma_separated(Parser::parse_expr)
        .map_err(QueryError::from_parser)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(QueryError::at(
            next.span.start,
            format!("unexpected {} here", next.token),
        ));
    }
    Ok(exprs)
}

/// Converts sqlparser's 1-based line/column positions to char indexes.
struct Positions {
    line_starts: Vec<usize>,
}

impl Positions {
    fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        for (slot, char) in text.chars().enumerate() {
            if char == '\n' {
                line_starts.push(slot + 1);
            }
        }
        Self { line_starts }
    }

    fn char_index(&self, location: Location) -> usize {
        let line = (location.line.max(1) - 1) as usize;
        self.line_starts.get(line).copied().unwrap_or(usize::MAX)
            + (location.column.max(1) - 1) as usize
    }

    fn char_range(&self, begin: Location, end: Location) -> std::ops::Range<usize> {
        self.char_index(begin)..self.char_index(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::SEED_DECLINE_RATE_QUERY as SEED_QUERY;

    #[test]
    fn the_seed_query_parses_with_its_source_clauses() {
        let job = parse_job(SEED_QUERY).unwrap();
        assert_eq!(job.statements.len(), 1);
        // `[auth-events]` ends at line 4, column 19.
        let clauses = &job.clauses[&(4, 19)];
        assert_eq!(
            clauses.timestamp_by.as_ref().unwrap().to_string(),
            "EventTime"
        );
        assert_eq!(clauses.partition_by[0].to_string(), "BIN");
        assert!(clauses.over.is_empty());
    }

    #[test]
    fn statements_follow_each_other_without_separators() {
        let text = "WITH a AS (SELECT x FROM i TIMESTAMP BY CAST(t AS datetime) OVER k, j)\n\
                    SELECT * INTO o1 FROM a\nSELECT x INTO o2 FROM a;";
        let job = parse_job(text).unwrap();
        assert_eq!(job.statements.len(), 2);
        let clauses = job.clauses.values().next().unwrap();
        assert_eq!(
            clauses.timestamp_by.as_ref().unwrap().to_string(),
            "CAST(t AS DATETIME)"
        );
        assert_eq!(clauses.over.len(), 2);
    }

    #[test]
    fn errors_point_at_the_users_line_and_column() {
        let error = parse_job("SELECT a\nINTO o\nFROM i TIMESTAMP BY t\nWHERE a >> 2").unwrap_err();
        assert_eq!((error.line, error.column), (4, 9), "{error}");
        let error = parse_job("SELECT a INTO o FROM i TIMESTAMP BY\nWHERE a > 2").unwrap_err();
        assert_eq!(error.line, 1, "{error}");
        assert!(error.message.contains("TIMESTAMP BY needs"), "{error}");
        let error = parse_job("SELECT a INTO o FROM i TIMESTAMP BY a b").unwrap_err();
        assert_eq!((error.line, error.column), (1, 39), "{error}");
        assert!(parse_job("  ").unwrap_err().message.contains("empty"));
    }

    #[test]
    fn partition_by_inside_over_is_left_to_sql() {
        let text = "SELECT k, COUNT(*) INTO o FROM i GROUP BY k, SessionWindow(minute, 5, 10) OVER (PARTITION BY k)";
        let job = parse_job(text).unwrap();
        assert!(job.clauses.is_empty());
    }
}
