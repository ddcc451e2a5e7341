//! What a table is: its source, its columns and how each is found in an
//! event, and its policies. Validated here so that every later stage can
//! trust it; `freshet-server` turns `[[table]]` sections into these.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The column every table gets: when the row was ingested (ms since the
/// epoch, UTC). Retention and caching key off it, as in Data Explorer.
pub const INGESTION_TIME: &str = "_ingestion_time";

/// Column types, named as Data Explorer names them (with common aliases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Long,
    Int,
    Real,
    Bool,
    /// ISO-8601 text or epoch milliseconds in the event; microseconds, UTC, in the table.
    Datetime,
}

impl ColumnType {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "string" | "text" | "utf8" => Self::String,
            "long" | "int64" | "bigint" => Self::Long,
            "int" | "int32" | "integer" => Self::Int,
            "real" | "double" | "float64" | "float" => Self::Real,
            "bool" | "boolean" => Self::Bool,
            "datetime" | "timestamp" | "date" => Self::Datetime,
            _ => return None,
        })
    }

    pub const NAMES: &str = "string, long, int, real, bool, datetime";

    pub fn data_type(self) -> DataType {
        match self {
            Self::String => DataType::Utf8View,
            Self::Long => DataType::Int64,
            Self::Int => DataType::Int32,
            Self::Real => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Datetime => timestamp_type(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Long => "long",
            Self::Int => "int",
            Self::Real => "real",
            Self::Bool => "bool",
            Self::Datetime => "datetime",
        }
    }
}

/// Event times are microseconds (seed 004 timestamps carry them), UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// One column: its name in the table, where it is in the JSON event
/// (a dotted path such as `complexData.moreData0`), its type and the
/// value used when the event lacks it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub path: Vec<String>,
    pub kind: ColumnType,
    pub default: Option<serde_json::Value>,
    /// Rows without a value (and no default) are dead letters.
    pub required: bool,
}

impl ColumnSpec {
    /// A nullable column read from the dotted `path`, without a default.
    pub fn at_path(name: &str, path: &str, kind: ColumnType) -> Self {
        Self {
            name: name.into(),
            path: path.split('.').map(String::from).collect(),
            kind,
            default: None,
            required: false,
        }
    }
}

/// Drop an event whose key was already seen within `window_ms` of
/// ingestion time.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupSpec {
    pub column: String,
    pub window_ms: i64,
    /// The most keys the window holds (about 60 bytes of memory each);
    /// beyond it the oldest are forgotten before their time.
    pub max_keys: usize,
}

/// Keys a dedup window holds unless told otherwise: about 1.2 GB.
pub const DEFAULT_DEDUP_MAX_KEYS: usize = 20_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub name: String,
    pub topic: String,
    /// The table's own consumer group; its committed offsets follow the
    /// data the table has made durable.
    pub group: String,
    pub columns: Vec<ColumnSpec>,
    /// The event-time column (a `datetime` column), used for extent
    /// statistics, pruning and time partitioning.
    pub time_column: Option<String>,
    pub dedup: Option<DedupSpec>,
    /// Soft-delete period from ingestion time; `None` keeps rows forever.
    pub retention_ms: Option<i64>,
    /// Rows ingested within this window stay in memory; older extents are
    /// read from disk. `None` keeps everything hot.
    pub hot_ms: Option<i64>,
    /// Extents never span more event time than this (Data Explorer's
    /// `MaxRangeInHours`); also the width of time partitions when sealing.
    pub extent_span_ms: i64,
    /// Where events that cannot be mapped go, with the reason.
    pub dead_letter_topic: String,
    pub seal: SealPolicy,
    /// Row-level security: a SQL condition over the table's columns; only
    /// rows it holds true for are visible, to every query and every view.
    pub row_level_security: Option<String>,
}

/// When the in-memory buffer becomes an immutable Parquet extent, and
/// when small extents are merged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SealPolicy {
    pub max_rows: usize,
    pub max_age_ms: i64,
    /// Extents smaller than this are merged with their neighbours.
    pub merge_below_rows: usize,
    /// How many extents one merge takes at most.
    pub max_extents_to_merge: usize,
}

impl Default for SealPolicy {
    fn default() -> Self {
        Self {
            max_rows: 1_000_000,
            max_age_ms: 30_000,
            merge_below_rows: 4_000_000,
            max_extents_to_merge: 16,
        }
    }
}

impl TableSpec {
    /// Whether `other` differs from this table only in its policies
    /// (retention, caching, sealing, extent span): those a running table
    /// takes without reopening.
    pub fn same_but_policies(&self, other: &TableSpec) -> bool {
        let structure = |spec: &TableSpec| TableSpec {
            retention_ms: None,
            hot_ms: None,
            extent_span_ms: 0,
            seal: SealPolicy::default(),
            ..spec.clone()
        };
        structure(self) == structure(other)
    }

    /// A table with defaults for everything but its name, topic and columns.
    pub fn new(name: &str, topic: &str, columns: Vec<ColumnSpec>) -> Self {
        Self {
            name: name.to_string(),
            topic: topic.to_string(),
            group: format!("freshet-store-{name}"),
            columns,
            time_column: None,
            dedup: None,
            retention_ms: None,
            hot_ms: None,
            extent_span_ms: 24 * 3_600_000,
            dead_letter_topic: format!("{topic}.deadletter"),
            seal: SealPolicy::default(),
            row_level_security: None,
        }
    }

    /// The simulator's payment authorisations (seed 001's `AuthEvents`),
    /// deduplicated by `eventId` within 10 minutes.
    pub fn payments(name: &str, topic: &str) -> Self {
        let mut spec = Self::new(
            name,
            topic,
            vec![
                ColumnSpec {
                    required: true,
                    ..ColumnSpec::at_path("eventId", "eventId", ColumnType::String)
                },
                ColumnSpec::at_path("BIN", "BIN", ColumnType::String),
                ColumnSpec::at_path("MerchantId", "MerchantId", ColumnType::String),
                ColumnSpec::at_path("Result", "Result", ColumnType::String),
                ColumnSpec::at_path("Amount", "Amount", ColumnType::Real),
                ColumnSpec::at_path("EventTime", "EventTime", ColumnType::Datetime),
            ],
        );
        spec.time_column = Some("EventTime".into());
        spec.dedup = Some(DedupSpec {
            column: "eventId".into(),
            window_ms: 10 * 60_000,
            max_keys: DEFAULT_DEDUP_MAX_KEYS,
        });
        spec
    }

    /// The table's columns as queries see them: the mapped columns, then
    /// `_ingestion_time`.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.data_type(), true))
            .collect();
        fields.push(Field::new(
            INGESTION_TIME,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ));
        Arc::new(Schema::new(fields))
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Checks names, paths and references; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        };
        if !valid_name(&self.name) {
            return Err(format!(
                "invalid table name '{}': use letters, digits and _, not starting with a digit",
                self.name
            ));
        }
        if self.columns.is_empty() {
            return Err("a table needs at least one column".into());
        }
        for (at, column) in self.columns.iter().enumerate() {
            if column.name == INGESTION_TIME || column.name.is_empty() {
                return Err(format!(
                    "column name '{}' is reserved or empty",
                    column.name
                ));
            }
            if self.columns[..at].iter().any(|c| c.name == column.name) {
                return Err(format!("column '{}' is declared twice", column.name));
            }
            if column.path.is_empty() || column.path.iter().any(|p| p.is_empty()) {
                return Err(format!(
                    "column '{}': the path must name a field, like 'a.b'",
                    column.name
                ));
            }
        }
        if let Some(time) = &self.time_column {
            match self.columns.iter().find(|c| &c.name == time) {
                Some(c) if c.kind == ColumnType::Datetime => {}
                Some(c) => {
                    return Err(format!(
                        "time_column '{time}' must be a datetime column, not {}",
                        c.kind.name()
                    ));
                }
                None => return Err(format!("time_column '{time}' is not a column of the table")),
            }
        }
        if let Some(dedup) = &self.dedup {
            match self.columns.iter().find(|c| c.name == dedup.column) {
                None => {
                    return Err(format!(
                        "dedup key '{}' is not a column of the table",
                        dedup.column
                    ));
                }
                Some(c) if matches!(c.kind, ColumnType::Real | ColumnType::Bool) => {
                    return Err(format!(
                        "dedup key '{}' must be a string, long, int or datetime column",
                        dedup.column
                    ));
                }
                Some(_) => {}
            }
            if dedup.window_ms <= 0 {
                return Err("the dedup window must be positive".into());
            }
            if dedup.max_keys == 0 {
                return Err("dedup_max_keys must be at least 1".into());
            }
        }
        for (what, value) in [("retention", self.retention_ms), ("hot cache", self.hot_ms)] {
            if value.is_some_and(|v| v <= 0) {
                return Err(format!("the {what} period must be positive"));
            }
        }
        if self.extent_span_ms <= 0 || self.seal.max_rows == 0 || self.seal.max_age_ms <= 0 {
            return Err("extent span, seal rows and seal age must be positive".into());
        }
        Ok(())
    }
}

/// Parses `30s`, `5m`, `2h`, `7d` or `250ms` into milliseconds.
pub fn parse_period(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a period like 30s, 5m, 2h or 7d"))?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit; use ms, s, m, h or d"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: ColumnType) -> ColumnSpec {
        ColumnSpec::at_path(name, name, kind)
    }

    #[test]
    fn periods_parse_with_units() {
        assert_eq!(parse_period("250ms"), Ok(250));
        assert_eq!(parse_period("30s"), Ok(30_000));
        assert_eq!(parse_period("5m"), Ok(300_000));
        assert_eq!(parse_period("7d"), Ok(7 * 86_400_000));
        assert!(
            parse_period("5 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_period("soon").is_err());
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let mut spec = TableSpec::new(
            "t",
            "topic",
            vec![
                column("a", ColumnType::String),
                column("ts", ColumnType::Long),
            ],
        );
        assert_eq!(spec.validate(), Ok(()));
        spec.time_column = Some("ts".into());
        assert!(spec.validate().unwrap_err().contains("must be a datetime"));
        spec.time_column = Some("nope".into());
        assert!(spec.validate().unwrap_err().contains("not a column"));
        spec.time_column = None;
        spec.dedup = Some(DedupSpec {
            column: "b".into(),
            window_ms: 10,
            max_keys: DEFAULT_DEDUP_MAX_KEYS,
        });
        assert!(spec.validate().unwrap_err().contains("dedup key 'b'"));
        spec.dedup = None;
        spec.columns.push(column("a", ColumnType::Real));
        assert!(spec.validate().unwrap_err().contains("declared twice"));
        let bad = TableSpec::new("1x", "t", vec![column("a", ColumnType::Bool)]);
        assert!(bad.validate().unwrap_err().contains("invalid table name"));
    }

    #[test]
    fn the_schema_ends_with_ingestion_time() {
        let spec = TableSpec::new("t", "topic", vec![column("a", ColumnType::Datetime)]);
        let schema = spec.schema();
        assert_eq!(schema.fields().len(), 2);
        assert_eq!(schema.field(0).data_type(), &timestamp_type());
        assert_eq!(schema.field(1).name(), INGESTION_TIME);
    }
}
