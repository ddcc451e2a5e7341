//! `freshet.toml`: parsed into a raw form that mirrors the file (unknown
//! keys rejected), then validated into the typed form the server runs.
//! Every error names the file, the line and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use freshet_log::{Durability, TopicConfig, validate_topic_name};
use freshet_store::{
    ColumnSpec, ColumnType, DEFAULT_DEDUP_MAX_KEYS, DedupSpec, TableSpec, ViewSpec, parse_period,
};
use freshet_stream::engine::{LatePolicy, TimePolicy};
use freshet_stream::plan::JobPlan;
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
    #[serde(default)]
    job: Vec<Spanned<RawJob>>,
    #[serde(default)]
    dashboard: Vec<Spanned<RawDashboard>>,
}

/// `[[dashboard]]`: a named page of tiles in the web UI.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    name: String,
    title: Option<String>,
    #[serde(default)]
    tile: Vec<RawTile>,
}

/// `[[dashboard.tile]]`: one tile, bound to a job output (live) or to a
/// store query (refreshed on an interval).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTile {
    title: String,
    /// `value`, `timeseries`, `top`, `alerts` or `table`.
    kind: String,
    /// A job output's name: rows arrive live over its stream.
    output: Option<String>,
    /// Store SQL, re-run every `refresh`.
    query: Option<String>,
    /// Or a store query in KQL.
    kql: Option<String>,
    refresh: Option<String>,
    /// Time field of a time series (default: the first time-valued field).
    x: Option<String>,
    /// Plotted or shown fields (default: every numeric field).
    #[serde(default)]
    y: Vec<String>,
    /// Splits a time series into one line per value of this field.
    series: Option<String>,
    /// A top list's label field and the field it ranks by.
    key: Option<String>,
    value: Option<String>,
    /// Rows kept by `top`, `alerts` and `table` (default 10).
    limit: Option<usize>,
    /// Shown after a value (`%`, `/s`).
    unit: Option<String>,
}

/// `[[job]]`: a hot-path query, its time policy, inputs and outputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    query: Option<String>,
    /// Relative to the config file's folder.
    query_file: Option<PathBuf>,
    /// Events whose time is further behind their arrival are late (`5s`).
    late_arrival: Option<String>,
    /// How far behind its partition's newest event an event may be (`0s`).
    out_of_order: Option<String>,
    /// `adjust` (default) or `drop`.
    on_late: Option<String>,
    /// Where dropped late events go, if anywhere.
    late_events_topic: Option<String>,
    /// How often state, positions and topic outputs are committed (`1s`).
    checkpoint_interval: Option<String>,
    #[serde(default)]
    input: Vec<RawJobInput>,
    #[serde(default)]
    reference: Vec<RawJobReference>,
    #[serde(default)]
    output: Vec<RawJobOutput>,
}

/// Maps an input name of the query to a topic (by default, the topic of
/// the same name).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobInput {
    name: String,
    topic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobReference {
    name: String,
    /// CSV with a header row, or JSON lines; relative to the config file.
    file: PathBuf,
}

/// Where an output of the query goes besides its live stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobOutput {
    name: String,
    topic: Option<String>,
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
    /// Memory for the log's recent appends, across every partition.
    recent_log_bytes: Option<u64>,
    /// Write the log's active segments straight to the device (`O_DIRECT`).
    direct_log_writes: Option<bool>,
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
    /// The most keys the dedup window holds; beyond it the oldest are
    /// forgotten early.
    dedup_max_keys: Option<usize>,
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
    /// Row-level security: a SQL condition over the columns; queries and
    /// views see only the rows it holds true for.
    row_level_security: Option<String>,
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
    pub jobs: Vec<JobSpec>,
    pub dashboards: Vec<DashboardSpec>,
}

/// A validated `[[dashboard]]`, served to the web UI as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DashboardSpec {
    pub name: String,
    pub title: String,
    pub tiles: Vec<TileSpec>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TileSpec {
    pub title: String,
    pub kind: TileKind,
    /// Set for live tiles: the job output they follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Set for query tiles (SQL in `query` or KQL in `kql`), with their
    /// refresh interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kql: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    pub y: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TileKind {
    /// The newest value of one field.
    Value,
    /// Lines over time.
    Timeseries,
    /// The latest window's rows ranked by a field.
    Top,
    /// The newest rows first, as a feed.
    Alerts,
    /// Rows as a table.
    Table,
}

/// A validated `[[job]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub query: String,
    pub policy: TimePolicy,
    /// Query input name → topic.
    pub inputs: Vec<(String, String)>,
    /// Reference input name → file.
    pub references: Vec<(String, PathBuf)>,
    /// Every output the query writes INTO (each has a live stream).
    pub outputs: Vec<String>,
    /// Query output name → topic, for outputs that go to a topic.
    pub output_topics: Vec<(String, String)>,
    pub late_events_topic: Option<String>,
    pub checkpoint_interval_ms: i64,
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
    pub recent_log_bytes: u64,
    pub direct_log_writes: bool,
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
            recent_log_bytes: freshet_core::limits::RECENT_BYTES_DEFAULT,
            direct_log_writes: false,
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
            recent_log_bytes: raw
                .server
                .recent_log_bytes
                .unwrap_or(defaults.recent_log_bytes),
            direct_log_writes: raw
                .server
                .direct_log_writes
                .unwrap_or(defaults.direct_log_writes),
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
            let folder = Path::new(file).parent().unwrap_or(Path::new("."));
            let query =
                read_query(raw.query, raw.query_file, folder, "view's SQL").map_err(error)?;
            views.push(ViewSpec {
                name: raw.name,
                query,
            });
        }
        let mut jobs: Vec<JobSpec> = Vec::new();
        for spanned in raw.job {
            let line = line_of(spanned.span().start);
            let raw = spanned.into_inner();
            let name = raw.name.clone();
            let error = |message: String| section_error(file, line, "job", &name, message);
            if jobs.iter().any(|job| job.name == raw.name) {
                return Err(error("declared twice".into()));
            }
            let spec = job_spec(raw, Path::new(file)).map_err(error)?;
            if let Some((output, other)) = spec.output_names().find_map(|output| {
                jobs.iter()
                    .find(|job| {
                        job.output_names()
                            .any(|known| known.eq_ignore_ascii_case(output))
                    })
                    .map(|other| (output.to_string(), other.name.clone()))
            }) {
                return Err(error(format!(
                    "output '{output}' is also an output of job '{other}'; outputs are streamed by name, so names must differ"
                )));
            }
            jobs.push(spec);
        }
        let mut dashboards: Vec<DashboardSpec> = Vec::new();
        for spanned in raw.dashboard {
            let line = line_of(spanned.span().start);
            let raw = spanned.into_inner();
            let name = raw.name.clone();
            let error = |message: String| section_error(file, line, "dashboard", &name, message);
            if dashboards.iter().any(|d| d.name == raw.name) {
                return Err(error("declared twice".into()));
            }
            dashboards.push(dashboard_spec(raw, &jobs).map_err(error)?);
        }
        Ok(Self {
            server,
            topics,
            tables,
            views,
            jobs,
            dashboards,
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

impl JobSpec {
    /// The consumer group the job's positions are shown under (the job
    /// keeps its true positions in its checkpoint).
    pub fn group(&self) -> String {
        format!("freshet-job-{}", self.name)
    }

    /// A job reading topics named as its inputs, with its outputs only
    /// streamed live (add `output_topics` to also write topics).
    pub fn new(name: &str, query: &str, policy: TimePolicy) -> Result<JobSpec, String> {
        let raw = RawJob {
            name: name.to_string(),
            query: Some(query.to_string()),
            query_file: None,
            late_arrival: None,
            out_of_order: None,
            on_late: None,
            late_events_topic: None,
            checkpoint_interval: None,
            input: Vec::new(),
            reference: Vec::new(),
            output: Vec::new(),
        };
        let mut spec = job_spec(raw, Path::new("."))?;
        spec.policy = policy;
        Ok(spec)
    }

    /// The plan of the job's query (validated when the config is read).
    pub fn plan(&self) -> Result<JobPlan, freshet_stream::QueryError> {
        let references: Vec<String> = self
            .references
            .iter()
            .map(|(name, _)| name.clone())
            .collect();
        JobPlan::new(&self.query, &references)
    }

    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.outputs.iter().map(String::as_str)
    }
}

fn dashboard_spec(raw: RawDashboard, jobs: &[JobSpec]) -> Result<DashboardSpec, String> {
    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("the name may use letters, digits, '-' and '_' (it appears in URLs)".into());
    }
    let mut tiles = Vec::with_capacity(raw.tile.len());
    for (index, tile) in raw.tile.into_iter().enumerate() {
        let spec =
            tile_spec(tile, jobs).map_err(|message| format!("tile {}: {message}", index + 1))?;
        tiles.push(spec);
    }
    Ok(DashboardSpec {
        title: raw.title.unwrap_or_else(|| raw.name.clone()),
        name: raw.name,
        tiles,
    })
}

fn tile_spec(raw: RawTile, jobs: &[JobSpec]) -> Result<TileSpec, String> {
    let kind = match raw.kind.as_str() {
        "value" => TileKind::Value,
        "timeseries" => TileKind::Timeseries,
        "top" => TileKind::Top,
        "alerts" => TileKind::Alerts,
        "table" => TileKind::Table,
        other => {
            return Err(format!(
                "kind '{other}' is not one of value, timeseries, top, alerts, table"
            ));
        }
    };
    let store_query = match (&raw.query, &raw.kql) {
        (Some(_), Some(_)) => {
            return Err("set one of 'query' (SQL) or 'kql', not both".into());
        }
        (query, kql) => query.as_ref().or(kql.as_ref()),
    };
    let refresh_ms = match (&raw.output, store_query) {
        (Some(output), None) => {
            if raw.refresh.is_some() {
                return Err(
                    "'refresh' is for query tiles; a live tile updates as rows arrive".into(),
                );
            }
            let known = jobs
                .iter()
                .flat_map(JobSpec::output_names)
                .any(|known| known.eq_ignore_ascii_case(output));
            if !known {
                let outputs: Vec<&str> = jobs.iter().flat_map(JobSpec::output_names).collect();
                return Err(format!(
                    "output '{output}' is not written by any [[job]] (outputs: {})",
                    names(outputs.into_iter())
                ));
            }
            None
        }
        (None, Some(_)) => {
            let refresh = raw.refresh.as_deref().unwrap_or("5s");
            let period = parse_period(refresh).map_err(|error| format!("refresh: {error}"))?;
            if period < 500 {
                return Err(format!("refresh '{refresh}' is below the 500ms floor"));
            }
            Some(period as u64)
        }
        _ => {
            return Err(
                "set exactly one of 'output' (a job output), 'query' (store SQL) or 'kql' (store KQL)"
                    .into(),
            );
        }
    };
    if kind == TileKind::Top && raw.key.is_none() {
        return Err("a 'top' tile needs 'key' (the label) and 'value' (what it ranks by)".into());
    }
    if kind == TileKind::Top && raw.value.is_none() {
        return Err("a 'top' tile needs 'value' (the field it ranks by)".into());
    }
    Ok(TileSpec {
        title: raw.title,
        kind,
        output: raw.output,
        query: raw.query,
        kql: raw.kql,
        refresh_ms,
        x: raw.x,
        y: raw.y,
        series: raw.series,
        key: raw.key,
        value: raw.value,
        limit: raw.limit.unwrap_or(10).clamp(1, 1_000),
        unit: raw.unit,
    })
}

fn job_spec(raw: RawJob, config_file: &Path) -> Result<JobSpec, String> {
    let folder = config_file.parent().unwrap_or(Path::new("."));
    let query = read_query(raw.query, raw.query_file, folder, "job's query")?;
    let micros = |key: &str, value: &Option<String>, default_ms: i64| -> Result<i64, String> {
        let ms = value
            .as_deref()
            .map(parse_period)
            .transpose()
            .map_err(|e| format!("{key}: {e}"))?
            .unwrap_or(default_ms);
        Ok(ms.saturating_mul(1_000))
    };
    let defaults = TimePolicy::default();
    let policy = TimePolicy {
        late_arrival_tolerance_micros: micros(
            "late_arrival",
            &raw.late_arrival,
            defaults.late_arrival_tolerance_micros / 1_000,
        )?,
        out_of_order_tolerance_micros: micros(
            "out_of_order",
            &raw.out_of_order,
            defaults.out_of_order_tolerance_micros / 1_000,
        )?,
        on_late: match raw.on_late.as_deref() {
            None | Some("adjust") => LatePolicy::Adjust,
            Some("drop") => LatePolicy::Drop,
            Some(other) => return Err(format!("on_late: '{other}' is not adjust or drop")),
        },
    };
    let checkpoint_interval_ms =
        micros("checkpoint_interval", &raw.checkpoint_interval, 1_000)? / 1_000;
    if checkpoint_interval_ms <= 0 {
        return Err("checkpoint_interval must be positive".into());
    }
    let references: Vec<(String, PathBuf)> = raw
        .reference
        .into_iter()
        .map(|reference| (reference.name, folder.join(reference.file)))
        .collect();
    let mut spec = JobSpec {
        name: raw.name,
        query,
        policy,
        inputs: Vec::new(),
        references,
        outputs: Vec::new(),
        output_topics: Vec::new(),
        late_events_topic: raw.late_events_topic,
        checkpoint_interval_ms,
    };
    let plan = spec.plan().map_err(|e| format!("query: {e}"))?;
    spec.outputs = plan.outputs.clone();
    for input in &raw.input {
        if plan.input(&input.name).is_none() {
            return Err(format!(
                "[[job.input]] '{}' is not read by the query (it reads: {})",
                input.name,
                names(plan.inputs.iter().map(|input| input.name.as_str()))
            ));
        }
    }
    for input in &plan.inputs {
        let topic = raw
            .input
            .iter()
            .find(|declared| declared.name.eq_ignore_ascii_case(&input.name))
            .map_or(input.name.clone(), |declared| declared.topic.clone());
        validate_topic_name(&topic).map_err(|e| format!("input '{}': topic: {e}", input.name))?;
        spec.inputs.push((input.name.clone(), topic));
    }
    for output in raw.output {
        let Some(index) = plan.output(&output.name) else {
            return Err(format!(
                "[[job.output]] '{}' is not written by the query (it writes INTO: {})",
                output.name,
                names(plan.outputs.iter().map(String::as_str))
            ));
        };
        if let Some(topic) = output.topic {
            validate_topic_name(&topic)
                .map_err(|e| format!("output '{}': topic: {e}", output.name))?;
            spec.output_topics
                .push((plan.outputs[index].clone(), topic));
        }
    }
    if let Some(topic) = &spec.late_events_topic {
        validate_topic_name(topic).map_err(|e| format!("late_events_topic: {e}"))?;
    }
    Ok(spec)
}

/// A section's query, given inline or in a file relative to the config.
fn read_query(
    inline: Option<String>,
    file: Option<PathBuf>,
    folder: &Path,
    what: &str,
) -> Result<String, String> {
    match (inline, file) {
        (Some(query), None) => Ok(query),
        (None, Some(path)) => {
            let path = folder.join(path);
            std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read query_file {}: {e}", path.display()))
        }
        _ => Err(format!(
            "give the {what} as exactly one of query or query_file"
        )),
    }
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
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
    spec.row_level_security = raw.row_level_security;
    spec.dedup = match (raw.dedup_key, period("dedup_window", &raw.dedup_window)?) {
        (Some(column), window) => Some(DedupSpec {
            column,
            window_ms: window.unwrap_or(10 * 60_000),
            max_keys: raw.dedup_max_keys.unwrap_or(DEFAULT_DEDUP_MAX_KEYS),
        }),
        (None, Some(_)) => return Err("dedup_window needs a dedup_key".into()),
        (None, None) if raw.dedup_max_keys.is_some() => {
            return Err("dedup_max_keys needs a dedup_key".into());
        }
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
dedup_max_keys = 5000000
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
                window_ms: 600_000,
                max_keys: 5_000_000,
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

    #[test]
    fn jobs_take_their_query_policy_inputs_and_outputs() {
        let text = r#"
[[job]]
name = "decline-rate"
query = """
SELECT BIN, COUNT(*) AS n INTO [alerts] FROM [payments] TIMESTAMP BY EventTime
GROUP BY BIN, TumblingWindow(second, 30)"""
late_arrival = "10s"
out_of_order = "2s"
on_late = "drop"

[[job.input]]
name = "payments"
topic = "auth-events"

[[job.output]]
name = "alerts"
topic = "decline-alerts"
"#;
        let config = Config::parse(text, "freshet.toml").unwrap();
        let job = &config.jobs[0];
        assert_eq!(
            job.inputs,
            vec![("payments".to_string(), "auth-events".to_string())]
        );
        assert_eq!(
            job.output_topics,
            vec![("alerts".to_string(), "decline-alerts".to_string())]
        );
        assert_eq!(job.policy.late_arrival_tolerance_micros, 10_000_000);
        assert_eq!(job.policy.out_of_order_tolerance_micros, 2_000_000);
        assert_eq!(job.policy.on_late, LatePolicy::Drop);
        assert_eq!(job.checkpoint_interval_ms, 1_000);

        let error = Config::parse(
            &text.replace("name = \"alerts\"", "name = \"alert\""),
            "freshet.toml",
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("'alert' is not written by the query"),
            "{error}"
        );
        assert_eq!(error.line, 2, "{error}");
        let error = Config::parse(
            &text.replace("COUNT(*) AS n", "COUNT(*) AS n, Amount"),
            "freshet.toml",
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("query: line 1, column 28"),
            "{error}"
        );
    }

    #[test]
    fn dashboards_take_live_and_query_tiles_and_name_what_is_wrong() {
        let text = r#"
[[job]]
name = "per-page"
query = "SELECT page, COUNT(*) AS hits INTO [page-hits] FROM clicks TIMESTAMP BY ts GROUP BY page, TumblingWindow(second, 1)"

[[dashboard]]
name = "web"
title = "Web traffic"

[[dashboard.tile]]
title = "Top pages"
kind = "top"
output = "page-hits"
key = "page"
value = "hits"

[[dashboard.tile]]
title = "Clicks"
kind = "timeseries"
query = "SELECT 1"
refresh = "2s"
y = ["clicks"]
"#;
        let config = Config::parse(text, "freshet.toml").unwrap();
        let dashboard = &config.dashboards[0];
        assert_eq!(
            (dashboard.name.as_str(), dashboard.title.as_str()),
            ("web", "Web traffic")
        );
        let [top, clicks] = &dashboard.tiles[..] else {
            panic!("two tiles: {dashboard:?}");
        };
        assert_eq!(top.kind, TileKind::Top);
        assert_eq!(top.output.as_deref(), Some("page-hits"));
        assert_eq!((top.refresh_ms, top.limit), (None, 10));
        assert_eq!(clicks.kind, TileKind::Timeseries);
        assert_eq!(clicks.refresh_ms, Some(2_000));
        assert_eq!(clicks.y, ["clicks"]);

        let wrong = |from: &str, to: &str| {
            let error = Config::parse(&text.replacen(from, to, 1), "freshet.toml").unwrap_err();
            assert_eq!(error.line, 6, "{error}");
            error.to_string()
        };
        let error = wrong("output = \"page-hits\"", "output = \"page-hit\"");
        assert!(error.contains("[[dashboard]] 'web': tile 1: output 'page-hit' is not written by any [[job]] (outputs: page-hits)"), "{error}");
        let error = wrong("kind = \"top\"", "kind = \"pie\"");
        assert!(
            error.contains("tile 1: kind 'pie' is not one of"),
            "{error}"
        );
        let error = wrong("key = \"page\"", "");
        assert!(
            error.contains("tile 1: a 'top' tile needs 'key'"),
            "{error}"
        );
        let error = wrong(
            "query = \"SELECT 1\"",
            "query = \"SELECT 1\"\noutput = \"page-hits\"",
        );
        assert!(
            error.contains("tile 2: set exactly one of 'output'"),
            "{error}"
        );
        let error = wrong("refresh = \"2s\"", "refresh = \"100ms\"");
        assert!(
            error.contains("tile 2: refresh '100ms' is below the 500ms floor"),
            "{error}"
        );
        let error = wrong("name = \"web\"", "name = \"web traffic\"");
        assert!(error.contains("letters, digits"), "{error}");
        let error = Config::parse(
            &text.replace("value = \"hits\"", "value = \"hits\"\ncolour = \"red\""),
            "freshet.toml",
        )
        .unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
    }
}
