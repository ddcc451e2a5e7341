//! `freshet.toml`: parsed into a raw form that mirrors the file (unknown
//! keys rejected), then validated into the typed form the server runs.
//! Every error names the file, the line and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use freshet_log::{Durability, TopicConfig, validate_topic_name};
use freshet_store::{ColumnSpec, ColumnType, DedupSpec, TableSpec, ViewSpec, parse_period};
use serde::Deserialize;
use toml::Spanned;

/// A config problem, said so a person can fix it.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    topic: Vec<Spanned<RawTopic>>,
    #[serde(default)]
    table: Vec<Spanned<RawTable>>,
    #[serde(default)]
    view: Vec<Spanned<RawView>>,
}

/// `[[view]]`: a materialized view, its SQL inline or in a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawView {
    name: String,
    query: Option<String>,
    /// Relative to the config file's folder.
    query_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// Where the log and all state live.
    data_dir: Option<PathBuf>,
    /// Kafka protocol listener.
    kafka_listen: Option<SocketAddr>,
    /// host:port Kafka clients are told to connect to; defaults to the bound address.
    kafka_advertised: Option<String>,
    /// HTTP API, dashboard, /metrics and /healthz.
    http_listen: Option<SocketAddr>,
    /// Create unknown topics when a client produces to or asks for them.
    auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics.
    default_partitions: Option<u32>,
    /// How often segment rolling by age and retention run.
    retention_check_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: String,
    partitions: Option<u32>,
    /// -1 keeps data forever.
    retention_ms: Option<i64>,
    /// -1 (the default) means no size limit.
    retention_bytes: Option<i64>,
    segment_bytes: Option<u64>,
    segment_ms: Option<i64>,
    max_message_bytes: Option<u32>,
    durability: Option<Durability>,
    flush_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: String,
    /// The topic the table reads.
    topic: String,
    /// The table's consumer group; `freshet-store-{name}` by default.
    group: Option<String>,
    columns: Vec<RawColumn>,
    /// The event-time column (a datetime column).
    time_column: Option<String>,
    /// Drop events whose value in this column was seen within `dedup_window`.
    dedup_key: Option<String>,
    dedup_window: Option<String>,
    /// Soft-delete period, from ingestion time (`30d`); forever if absent.
    retention: Option<String>,
    /// Hot window kept in memory (`1d`); everything if absent.
    hot_cache: Option<String>,
    /// Widest event-time range of one extent (`1h`, default `1d`).
    extent_span: Option<String>,
    dead_letter_topic: Option<String>,
    /// Seal the buffer into an extent at this many rows…
    seal_rows: Option<usize>,
    /// …or when its oldest row is this old.
    seal_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: String,
    /// Dotted path in the JSON event; the name by default.
    path: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    default: Option<toml::Value>,
    #[serde(default)]
    required: bool,
}

/// How this server runs and what it serves, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub server: ServerConfig,
    pub topics: Vec<(String, TopicConfig)>,
    pub tables: Vec<TableSpec>,
    pub views: Vec<ViewSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub kafka_listen: SocketAddr,
    pub kafka_advertised: Option<String>,
    pub http_listen: SocketAddr,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    pub retention_check_interval_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("freshet-data"),
            kafka_listen: "127.0.0.1:9092".parse().expect("valid address"),
            kafka_advertised: None,
            http_listen: "127.0.0.1:8080".parse().expect("valid address"),
            auto_create_topics: true,
            default_partitions: 1,
            retention_check_interval_ms: 30_000,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read the config file: {error}"),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError {
            file: file.to_string(),
            line: error.span().map_or(0, |span| line_of(span.start)),
            message: error.message().to_string(),
        })?;
        let defaults = ServerConfig::default();
        let server = ServerConfig {
            data_dir: raw.server.data_dir.unwrap_or(defaults.data_dir),
            kafka_listen: raw.server.kafka_listen.unwrap_or(defaults.kafka_listen),
            kafka_advertised: raw.server.kafka_advertised,
            http_listen: raw.server.http_listen.unwrap_or(defaults.http_listen),
            auto_create_topics: raw
                .server
                .auto_create_topics
                .unwrap_or(defaults.auto_create_topics),
            default_partitions: raw
                .server
                .default_partitions
                .unwrap_or(defaults.default_partitions),
            retention_check_interval_ms: raw
                .server
                .retention_check_interval_ms
                .unwrap_or(defaults.retention_check_interval_ms),
        };
        let server_error = |message: String| ConfigError {
            file: file.to_string(),
            line: 0,
            message,
        };
        if server.default_partitions == 0 {
            return Err(server_error(
                "[server] default_partitions must be at least 1".into(),
            ));
        }
        if server.retention_check_interval_ms == 0 {
            return Err(server_error(
                "[server] retention_check_interval_ms must be positive".into(),
            ));
        }
        let mut topics: Vec<(String, TopicConfig)> = Vec::new();
        for spanned in raw.topic {
            let line = line_of(spanned.span().start);
            let raw = spanned.into_inner();
            let error = |message: String| ConfigError {
                file: file.to_string(),
                line,
                message: format!("[[topic]] '{}': {message}", raw.name),
            };
            validate_topic_name(&raw.name).map_err(|e| error(e.to_string()))?;
            if topics.iter().any(|(name, _)| *name == raw.name) {
                return Err(error("declared twice".into()));
            }
            let defaults = TopicConfig::default();
            let retention_ms = match raw.retention_ms {
                None => defaults.retention_ms,
                Some(-1) => None,
                Some(ms) if ms > 0 => Some(ms),
                Some(ms) => {
                    return Err(error(format!(
                        "retention_ms must be positive or -1 (forever), got {ms}"
                    )));
                }
            };
            let retention_bytes = match raw.retention_bytes {
                None | Some(-1) => None,
                Some(bytes) if bytes > 0 => Some(bytes as u64),
                Some(bytes) => {
                    return Err(error(format!(
                        "retention_bytes must be positive or -1 (no limit), got {bytes}"
                    )));
                }
            };
            let config = TopicConfig {
                partitions: raw.partitions.unwrap_or(server.default_partitions),
                retention_ms,
                retention_bytes,
                segment_bytes: raw.segment_bytes.unwrap_or(defaults.segment_bytes),
                segment_ms: raw.segment_ms.unwrap_or(defaults.segment_ms),
                max_message_bytes: raw.max_message_bytes.unwrap_or(defaults.max_message_bytes),
                durability: raw.durability.unwrap_or(defaults.durability),
                flush_interval_ms: raw.flush_interval_ms.unwrap_or(defaults.flush_interval_ms),
            };
            config.validate().map_err(|e| error(e.to_string()))?;
            topics.push((raw.name, config));
        }
        let mut tables: Vec<TableSpec> = Vec::new();
        for spanned in raw.table {
            let line = line_of(spanned.span().start);
            let raw = spanned.into_inner();
            let name = raw.name.clone();
            let error = |message: String| section_error(file, line, "table", &name, message);
            if tables.iter().any(|t| t.name == raw.name) {
                return Err(error("declared twice".into()));
            }
            let spec = table_spec(raw).map_err(error)?;
            tables.push(spec);
        }
        let mut views: Vec<ViewSpec> = Vec::new();
        for spanned in raw.view {
            let line = line_of(spanned.span().start);
            let raw = spanned.into_inner();
            let name = raw.name.clone();
            let error = |message: String| section_error(file, line, "view", &name, message);
            if views.iter().any(|v| v.name == raw.name) || tables.iter().any(|t| t.name == raw.name)
            {
                return Err(error(
                    "the name is already taken by another view or table".into(),
                ));
            }
            let query = match (raw.query, raw.query_file) {
                (Some(query), None) => query,
                (None, Some(path)) => {
                    let path = Path::new(file)
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join(path);
                    std::fs::read_to_string(&path).map_err(|e| {
                        error(format!("cannot read query_file {}: {e}", path.display()))
                    })?
                }
                _ => {
                    return Err(error(
                        "give the view's SQL as exactly one of query or query_file".into(),
                    ));
                }
            };
            views.push(ViewSpec {
                name: raw.name,
                query,
            });
        }
        Ok(Self {
            server,
            topics,
            tables,
            views,
        })
    }
}

/// An error in one `[[kind]]` section, at its line.
fn section_error(file: &str, line: usize, kind: &str, name: &str, message: String) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        line,
        message: format!("[[{kind}]] '{name}': {message}"),
    }
}

fn table_spec(raw: RawTable) -> Result<TableSpec, String> {
    validate_topic_name(&raw.topic).map_err(|e| format!("topic: {e}"))?;
    let period = |key: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(parse_period)
            .transpose()
            .map_err(|e| format!("{key}: {e}"))
    };
    let mut columns = Vec::new();
    for column in raw.columns {
        let kind = ColumnType::parse(&column.kind).ok_or_else(|| {
            format!(
                "column '{}': unknown type '{}'; use one of {}",
                column.name,
                column.kind,
                ColumnType::NAMES
            )
        })?;
        let path = column
            .path
            .as_deref()
            .unwrap_or(&column.name)
            .split('.')
            .map(str::to_string)
            .collect();
        let default = column
            .default
            .map(|value| {
                serde_json::to_value(value)
                    .map_err(|e| format!("column '{}': default: {e}", column.name))
            })
            .transpose()?;
        columns.push(ColumnSpec {
            name: column.name,
            path,
            kind,
            default,
            required: column.required,
        });
    }
    let mut spec = TableSpec::new(&raw.name, &raw.topic, columns);
    if let Some(group) = raw.group {
        spec.group = group;
    }
    spec.time_column = raw.time_column;
    spec.dedup = match (raw.dedup_key, period("dedup_window", &raw.dedup_window)?) {
        (Some(column), window) => Some(DedupSpec {
            column,
            window_ms: window.unwrap_or(10 * 60_000),
        }),
        (None, Some(_)) => return Err("dedup_window needs a dedup_key".into()),
        (None, None) => None,
    };
    spec.retention_ms = period("retention", &raw.retention)?;
    spec.hot_ms = period("hot_cache", &raw.hot_cache)?;
    if let Some(span) = period("extent_span", &raw.extent_span)? {
        spec.extent_span_ms = span;
    }
    if let Some(topic) = raw.dead_letter_topic {
        validate_topic_name(&topic).map_err(|e| format!("dead_letter_topic: {e}"))?;
        spec.dead_letter_topic = topic;
    }
    if let Some(rows) = raw.seal_rows {
        spec.seal.max_rows = rows;
    }
    if let Some(age) = period("seal_interval", &raw.seal_interval)? {
        spec.seal.max_age_ms = age;
    }
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_working_defaults() {
        let config = Config::parse("", "freshet.toml").unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn topics_take_their_settings_and_server_defaults() {
        let text = r#"
[server]
default_partitions = 3

[[topic]]
name = "auth-events"
retention_ms = -1
retention_bytes = 1000000
durability = "every-batch"

[[topic]]
name = "alerts"
partitions = 1
"#;
        let config = Config::parse(text, "freshet.toml").unwrap();
        let (name, auth) = &config.topics[0];
        assert_eq!(name, "auth-events");
        assert_eq!(auth.partitions, 3);
        assert_eq!(auth.retention_ms, None);
        assert_eq!(auth.retention_bytes, Some(1_000_000));
        assert_eq!(auth.durability, Durability::EveryBatch);
        assert_eq!(config.topics[1].1.partitions, 1);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = "[server]\ndata_dir = \"x\"\n\n[[topic]]\nname = \"t\"\nretension_ms = 5\n";
        let error = Config::parse(text, "freshet.toml").unwrap_err();
        assert_eq!(error.line, 6, "{error}");
        assert!(error.to_string().contains("retension_ms"), "{error}");
        assert!(error.to_string().starts_with("freshet.toml:6:"), "{error}");
        let error = Config::parse("[sever]\n", "f.toml").unwrap_err();
        assert!(
            error.to_string().contains("sever") && error.line == 1,
            "{error}"
        );
    }

    #[test]
    fn tables_take_columns_paths_and_policies() {
        let text = r#"
[[table]]
name = "telemetry"
topic = "iot"
time_column = "createdAt"
dedup_key = "eventId"
retention = "7d"
hot_cache = "1h"
columns = [
  { name = "eventId", type = "string", required = true },
  { name = "md0", path = "complexData.moreData0", type = "real", default = 0.0 },
  { name = "createdAt", type = "datetime" },
]
"#;
        let config = Config::parse(text, "freshet.toml").unwrap();
        let table = &config.tables[0];
        assert_eq!(table.group, "freshet-store-telemetry");
        assert_eq!(
            table.columns[1].path,
            vec!["complexData".to_string(), "moreData0".to_string()]
        );
        assert_eq!(table.columns[1].default, Some(serde_json::json!(0.0)));
        assert_eq!(
            table.dedup,
            Some(DedupSpec {
                column: "eventId".into(),
                window_ms: 600_000
            })
        );
        assert_eq!(table.retention_ms, Some(7 * 86_400_000));
        assert_eq!(table.hot_ms, Some(3_600_000));
        let bad = "\n[[table]]\nname = \"t\"\ntopic = \"x\"\ncolumns = [{ name = \"a\", type = \"decimal\" }]\n";
        let error = Config::parse(bad, "f.toml").unwrap_err();
        assert_eq!(error.line, 2, "{error}");
        assert!(error.message.contains("unknown type 'decimal'"), "{error}");
        let bad = "[[table]]\nname = \"t\"\ntopic = \"x\"\nretention = \"soon\"\ncolumns = [{ name = \"a\", type = \"long\" }]\n";
        assert!(
            Config::parse(bad, "f.toml")
                .unwrap_err()
                .message
                .contains("retention")
        );
    }

    #[test]
    fn invalid_values_name_the_topic_and_line() {
        let text = "[[topic]]\nname = \"ok\"\n\n[[topic]]\nname = \"bad\"\npartitions = 0\n";
        let error = Config::parse(text, "freshet.toml").unwrap_err();
        assert_eq!(error.line, 4, "{error}");
        assert!(
            error.message.contains("'bad'") && error.message.contains("partitions"),
            "{error}"
        );
        let error = Config::parse("[[topic]]\nname = \"a b\"\n", "f").unwrap_err();
        assert!(error.message.contains("invalid topic name"), "{error}");
        let error = Config::parse("[[topic]]\nname = \"t\"\ndurability = \"sometimes\"\n", "f")
            .unwrap_err();
        assert_eq!(error.line, 3, "{error}");
        assert!(error.message.contains("sometimes"), "{error}");
    }

    #[test]
    fn views_take_their_sql_inline_or_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("v.sql"),
            "SELECT a, count(*) FROM t GROUP BY a",
        )
        .unwrap();
        let text = "[[view]]\nname = \"inline\"\nquery = \"SELECT count(*) FROM t\"\n\n[[view]]\nname = \"filed\"\nquery_file = \"v.sql\"\n";
        let file = dir.path().join("freshet.toml");
        let config = Config::parse(text, &file.display().to_string()).unwrap();
        assert_eq!(
            config.views[0],
            ViewSpec {
                name: "inline".into(),
                query: "SELECT count(*) FROM t".into()
            }
        );
        assert_eq!(
            config.views[1].query,
            "SELECT a, count(*) FROM t GROUP BY a"
        );
        let error = Config::parse("[[view]]\nname = \"v\"\n", "f.toml").unwrap_err();
        assert!(
            error.message.contains("exactly one of query or query_file"),
            "{error}"
        );
        let error = Config::parse(
            "[[view]]\nname = \"v\"\nquery_file = \"missing.sql\"\n",
            "f.toml",
        )
        .unwrap_err();
        assert!(error.message.contains("missing.sql"), "{error}");
    }
}
