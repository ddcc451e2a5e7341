//! `freshet query`: SQL or KQL against the store of a running server, over the
//! HTTP API, printed as a table (or passed through as JSON or CSV).

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use freshet_store::arrow::ipc::reader::StreamReader;
use freshet_store::arrow::util::pretty::pretty_format_batches;

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The query: SQL (DataFusion dialect), e.g. "SELECT count(*) FROM auth",
    /// or with --kql a query in the KQL subset, e.g. "auth | summarize count() by BIN".
    #[arg(value_name = "QUERY")]
    query: String,
    /// The server's HTTP address.
    #[arg(long, env = "FRESHET_HTTP", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The query is KQL (Data Explorer's query language), not SQL.
    #[arg(long)]
    kql: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

pub fn query(args: QueryArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/query", args.server.trim_end_matches('/'));
    let accept = match args.format {
        Format::Table => "application/vnd.apache.arrow.stream",
        Format::Json => "application/json",
        Format::Csv => "text/csv",
    };
    let body = if args.kql {
        serde_json::json!({ "kql": args.query })
    } else {
        serde_json::json!({ "sql": args.query })
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&url)
        .header("Accept", accept)
        .send_json(&body)
        .with_context(|| format!("cannot reach the server at {}", args.server))?;
    let status = response.status();
    let truncated = response
        .headers()
        .get("x-freshet-truncated")
        .is_some_and(|v| v == "true");
    let bytes = response
        .body_mut()
        .with_config()
        .limit(4 << 30)
        .read_to_vec()
        .context("reading the answer")?;
    if !status.is_success() {
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = error["error"]["message"]
            .as_str()
            .unwrap_or("the server gave no reason");
        let mut text = format!("query failed ({status}): {message}");
        if let (Some(line), Some(column)) = (
            error["error"]["line"].as_u64(),
            error["error"]["column"].as_u64(),
        ) {
            text.push_str(&point_at(&args.query, line, column));
        }
        bail!(text);
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json | Format::Csv => out.write_all(&bytes)?,
        Format::Table => {
            let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)
                .context("reading the Arrow answer")?;
            let batches = reader.collect::<Result<Vec<_>, _>>()?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            writeln!(out, "{}", pretty_format_batches(&batches)?)?;
            writeln!(
                out,
                "{rows} row{}{}",
                if rows == 1 { "" } else { "s" },
                if truncated { " (truncated)" } else { "" }
            )?;
        }
    }
    Ok(())
}

/// The query's line with a caret under `column` (both 1-based).
fn point_at(sql: &str, line: u64, column: u64) -> String {
    let Some(text) = sql.lines().nth(line.saturating_sub(1) as usize) else {
        return String::new();
    };
    format!(
        "\n  {text}\n  {}^",
        " ".repeat(column.saturating_sub(1) as usize)
    )
}
