//! `freshet job test`: runs a hot-path query over files of sample events,
//! as if they streamed, and prints its output rows as JSON lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use freshet_stream::engine::{LatePolicy, TimePolicy};
use freshet_stream::local;
use freshet_stream::plan::JobPlan;

use crate::simulate::parse_duration;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a query over sample events (JSON lines) and print its output rows; flushes every window at the end.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The job's query file (.sql).
    query: PathBuf,
    /// Input events as JSON lines: FILE for a job with one input, or NAME=FILE per input.
    #[arg(long = "input", required = true)]
    inputs: Vec<String>,
    /// Reference data as NAME=FILE: CSV with a header row, or JSON lines.
    #[arg(long = "reference")]
    references: Vec<String>,
    /// The rows the query must print (JSON lines); exits 1 on a difference.
    #[arg(long)]
    expected: Option<PathBuf>,
    /// Events whose time is further behind their arrival are late.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    late_arrival: std::time::Duration,
    /// How far behind the newest event of its partition an event may be.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    out_of_order: std::time::Duration,
    /// What happens to late events.
    #[arg(long, value_enum, default_value = "adjust")]
    on_late: OnLate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnLate {
    Adjust,
    Drop,
}

pub fn run(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Test(args) => test(args),
    }
}

fn named(argument: &str) -> Option<(&str, &str)> {
    argument
        .split_once('=')
        .filter(|(name, _)| !name.is_empty() && !name.contains('/'))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn test(args: TestArgs) -> anyhow::Result<()> {
    let text = read(&args.query)?;
    let mut reference_names = Vec::new();
    let mut reference_rows = Vec::new();
    for argument in &args.references {
        let Some((name, file)) = named(argument) else {
            bail!("--reference takes NAME=FILE, got '{argument}'");
        };
        let path = Path::new(file);
        let csv = path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("csv"));
        let rows = local::read_reference(&read(path)?, csv)
            .map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
        reference_names.push(name.to_string());
        reference_rows.push(rows);
    }
    let plan = JobPlan::new(&text, &reference_names).map_err(|error| {
        if error.line == 0 {
            anyhow::anyhow!("{}: {}", args.query.display(), error.message)
        } else {
            anyhow::anyhow!(
                "{}:{}:{}: {}",
                args.query.display(),
                error.line,
                error.column,
                error.message
            )
        }
    })?;
    let plan = Arc::new(plan);

    let mut events = Vec::new();
    for argument in &args.inputs {
        let (input, file) = match named(argument) {
            Some((name, file)) => {
                let Some(input) = plan.input(name) else {
                    let known: Vec<&str> = plan
                        .inputs
                        .iter()
                        .map(|input| input.name.as_str())
                        .collect();
                    bail!(
                        "the query reads no input '{name}'; its inputs are: {}",
                        known.join(", ")
                    );
                };
                (input, file)
            }
            None if plan.inputs.len() == 1 => (0, argument.as_str()),
            None => bail!("the query reads several inputs; give each as --input NAME=FILE"),
        };
        let records = local::read_json_lines(&read(Path::new(file))?)
            .map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
        events.extend(
            local::local_events(&plan, input, records)
                .map_err(|error| anyhow::anyhow!("{file}: {error}"))?,
        );
    }
    let events = local::merge_by_arrival(events);

    let policy = TimePolicy {
        late_arrival_tolerance_micros: args.late_arrival.as_micros() as i64,
        out_of_order_tolerance_micros: args.out_of_order.as_micros() as i64,
        on_late: match args.on_late {
            OnLate::Adjust => LatePolicy::Adjust,
            OnLate::Drop => LatePolicy::Drop,
        },
    };
    let (rows, problems, engine) =
        local::run(Arc::clone(&plan), policy, reference_rows, &events, None)
            .map_err(|error| anyhow::anyhow!(error))?;
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    let printed: Vec<String> = rows
        .iter()
        .map(|row| local::format_row(&plan, row))
        .collect();
    for line in &printed {
        println!("{line}");
    }
    let counters = engine.counters();
    eprintln!(
        "{} events in, {} rows out; late events adjusted {}, dropped {}",
        counters.input_events, counters.output_rows, counters.late_adjusted, counters.late_dropped
    );

    if let Some(path) = &args.expected {
        let expected_text = read(path)?;
        let expected: Vec<&str> = expected_text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        let same = printed.len() == expected.len()
            && printed
                .iter()
                .zip(&expected)
                .all(|(got, want)| same_json(got, want));
        if !same {
            let first = printed
                .iter()
                .zip(&expected)
                .position(|(got, want)| !same_json(got, want))
                .unwrap_or(printed.len().min(expected.len()));
            bail!(
                "the output differs from {} at row {}:\n  got:      {}\n  expected: {}\n({} rows printed, {} expected)",
                path.display(),
                first + 1,
                printed.get(first).map_or("(no row)", String::as_str),
                expected.get(first).copied().unwrap_or("(no row)"),
                printed.len(),
                expected.len()
            );
        }
        eprintln!("the output matches {}", path.display());
    }
    Ok(())
}

/// Rows compare as JSON values: key order and spacing do not matter.
fn same_json(got: &str, want: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(got),
        serde_json::from_str::<serde_json::Value>(want),
    ) {
        (Ok(got), Ok(want)) => got == want,
        _ => got.trim() == want.trim(),
    }
}
