//! The hot path's golden cases: each folder of `tests/cases` holds a job
//! (`job.sql`), its input events (`input.jsonl`, or `input.NAME.jsonl`
//! per input), reference data (`reference.NAME.csv|jsonl`), an optional
//! time policy (`policy.json`) and the rows it must produce
//! (`expected.jsonl`, as `freshet job test` prints them), plus optional
//! counters (`counters.json`). Every case also runs with a checkpoint and
//! a restore halfway through its events, and must give the same rows.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use freshet_stream::engine::{LatePolicy, TimePolicy};
use freshet_stream::local;
use freshet_stream::plan::JobPlan;
use freshet_stream::time::MICROS_PER_SECOND;

fn policy(case: &Path) -> TimePolicy {
    let mut policy = TimePolicy::default();
    let Ok(text) = fs::read_to_string(case.join("policy.json")) else {
        return policy;
    };
    let json: serde_json::Value = serde_json::from_str(&text).expect("policy.json is JSON");
    if let Some(seconds) = json["late_arrival_seconds"].as_i64() {
        policy.late_arrival_tolerance_micros = seconds * MICROS_PER_SECOND;
    }
    if let Some(seconds) = json["out_of_order_seconds"].as_i64() {
        policy.out_of_order_tolerance_micros = seconds * MICROS_PER_SECOND;
    }
    if json["on_late"] == "drop" {
        policy.on_late = LatePolicy::Drop;
    }
    policy
}

fn run_case(case: &Path) -> Result<(), String> {
    let job = fs::read_to_string(case.join("job.sql")).map_err(|error| error.to_string())?;
    let mut reference_names = Vec::new();
    let mut reference_files = Vec::new();
    let mut input_files = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(case)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            ["reference", reference, extension] => {
                reference_names.push(reference.to_string());
                reference_files.push((path.clone(), *extension == "csv"));
            }
            ["input", "jsonl"] => input_files.push((None, path.clone())),
            ["input", input, "jsonl"] => input_files.push((Some(input.to_string()), path.clone())),
            _ => {}
        }
    }
    let plan =
        Arc::new(JobPlan::new(&job, &reference_names).map_err(|error| format!("plan: {error}"))?);
    let references = reference_files
        .iter()
        .map(|(path, csv)| local::read_reference(&fs::read_to_string(path).unwrap(), *csv))
        .collect::<Result<Vec<_>, _>>()?;
    let mut events = Vec::new();
    for (name, path) in input_files {
        let input = match name {
            Some(name) => plan
                .input(&name)
                .ok_or_else(|| format!("the job has no input '{name}'"))?,
            None if plan.inputs.len() == 1 => 0,
            None => {
                return Err(
                    "input.jsonl is for a job with one input; name the files input.NAME.jsonl"
                        .into(),
                );
            }
        };
        let records = local::read_input(&plan, input, &fs::read_to_string(&path).unwrap())?;
        events.extend(local::local_events(&plan, input, records)?);
    }
    let events = local::merge_by_arrival(events);
    let expected =
        fs::read_to_string(case.join("expected.jsonl")).map_err(|error| error.to_string())?;
    let expected: Vec<&str> = expected
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let policy = policy(case);
    for checkpoint_after in [None, Some(events.len() / 2)] {
        let (rows, problems, engine) = local::run(
            Arc::clone(&plan),
            policy,
            references.clone(),
            &events,
            checkpoint_after,
        )?;
        let printed: Vec<String> = rows
            .iter()
            .map(|row| local::format_row(&plan, row))
            .collect();
        if printed != expected {
            return Err(format!(
                "{}: rows differ (checkpoint after {checkpoint_after:?})\n  got:\n    {}\n  expected:\n    {}",
                case.display(),
                printed.join("\n    "),
                expected.join("\n    ")
            ));
        }
        if !problems.is_empty() {
            return Err(format!(
                "{}: unexpected event problems: {problems:?}",
                case.display()
            ));
        }
        if let Ok(text) = fs::read_to_string(case.join("counters.json")) {
            let want: serde_json::Value = serde_json::from_str(&text).unwrap();
            let counters = engine.counters();
            let got = serde_json::json!({
                "late_adjusted": counters.late_adjusted,
                "late_dropped": counters.late_dropped,
            });
            if got != want {
                return Err(format!(
                    "{}: counters {got} != expected {want}",
                    case.display()
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut cases: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "the golden cases are missing");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| run_case(case).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
