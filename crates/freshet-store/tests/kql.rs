//! KQL over the store: simulator events in, answers checked against
//! answers computed here from the same events, names and defaults as Data
//! Explorer gives them, and errors that point into the query.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use freshet_core::SystemClock;
use freshet_sim::generator::Injection;
use freshet_sim::scenario::Scenario;
use freshet_store::QueryResult;
use serde_json::Value;

use common::{Fixture, generate, iot_table, options, produce, rows};

/// The telemetry table filled with unique simulator events, and those events.
fn filled(dir: &Path) -> (Fixture, Vec<Value>) {
    let fixture = Fixture::open(dir, "iot", 3, Arc::new(SystemClock));
    let events = generate(options(Scenario::Iot, 11), 6_000);
    fixture.store().apply(iot_table()).unwrap();
    produce(&fixture.log, "iot", &events);
    let unique: Vec<Value> = events
        .iter()
        .filter(|e| e.injection != Injection::Duplicate)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect();
    fixture.wait_for_rows("telemetry", unique.len() as i64);
    (fixture, unique)
}

fn names(result: &QueryResult) -> Vec<String> {
    result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap().to_string()
}

fn micros(value: &Value) -> i64 {
    let text = value.as_str().unwrap();
    freshet_store::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text).unwrap()
        / 1000
}

#[test]
fn kql_answers_match_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let (fixture, events) = filled(dir.path());

    // where … | count
    let expected = events
        .iter()
        .filter(|e| e["type"] == "TEMP" && e["value"].as_f64().unwrap() > 50.0)
        .count() as i64;
    let result = fixture.kql("telemetry | where type == 'TEMP' and value > 50 | count");
    assert_eq!(names(&result), ["Count"]);
    assert_eq!(rows(&result), [[Value::from(expected)]]);

    // summarize … by, sorted ascending; names as Data Explorer gives them.
    let mut by_type: BTreeMap<String, (i64, f64, BTreeSet<String>)> = BTreeMap::new();
    for event in &events {
        let entry = by_type.entry(text(&event["type"])).or_default();
        entry.0 += 1;
        entry.1 += event["value"].as_f64().unwrap();
        entry.2.insert(text(&event["deviceId"]));
    }
    let result = fixture.kql(
        "telemetry | summarize count(), total = sum(value), dcount(deviceId), avg(value) by type \
         | sort by type asc",
    );
    assert_eq!(
        names(&result),
        ["type", "count_", "total", "dcount_deviceId", "avg_value"]
    );
    let answered = rows(&result);
    assert_eq!(answered.len(), by_type.len());
    for (row, (kind, (count, total, devices))) in answered.iter().zip(&by_type) {
        assert_eq!(text(&row[0]), *kind);
        assert_eq!(row[1], Value::from(*count));
        assert!((row[2].as_f64().unwrap() - total).abs() < 1e-6 * total.abs());
        assert_eq!(row[3].as_u64().unwrap(), devices.len() as u64);
        let mean = total / *count as f64;
        assert!((row[4].as_f64().unwrap() - mean).abs() < 1e-9 * mean.abs().max(1.0));
    }

    // summarize by bin(), an expression over aggregates, sorted by default
    // (descending).
    let mut by_minute: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for event in &events {
        let minute = micros(&event["createdAt"]).div_euclid(60_000_000) * 60_000_000;
        let entry = by_minute.entry(minute).or_default();
        entry.0 += 1;
        entry.1 += i64::from(event["type"] == "TEMP");
    }
    let result = fixture.kql(
        "telemetry | summarize n = count(), share = 100.0 * countif(type == 'TEMP') / count() \
         by bin(createdAt, 1m) | order by createdAt",
    );
    assert_eq!(names(&result), ["createdAt", "n", "share"]);
    let answered = rows(&result);
    assert_eq!(answered.len(), by_minute.len());
    for (row, (minute, (count, temps))) in answered.iter().zip(by_minute.iter().rev()) {
        assert_eq!(micros(&row[0]), *minute);
        assert_eq!(row[1], Value::from(*count));
        let share = 100.0 * *temps as f64 / *count as f64;
        assert!((row[2].as_f64().unwrap() - share).abs() < 1e-9);
    }

    // top N by a column: descending unless told.
    let mut values: Vec<f64> = events
        .iter()
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    values.sort_by(|a, b| b.total_cmp(a));
    let result = fixture.kql("telemetry | top 3 by value | project value");
    let top: Vec<f64> = rows(&result)
        .iter()
        .map(|r| r[0].as_f64().unwrap())
        .collect();
    assert_eq!(top, values[..3]);
    let result = fixture.kql("telemetry | top 2 by value asc | project value");
    let bottom: Vec<f64> = rows(&result)
        .iter()
        .map(|r| r[0].as_f64().unwrap())
        .collect();
    assert_eq!(bottom, [values[values.len() - 1], values[values.len() - 2]]);

    // extend, project, take; a computed column without a name.
    let result = fixture.kql(
        "telemetry | extend doubled = value * 2, tripled = doubled / 2 * 3 \
         | project deviceId, doubled, tripled, strlen(type) | take 5",
    );
    assert_eq!(
        names(&result),
        ["deviceId", "doubled", "tripled", "Column4"]
    );
    let answered = rows(&result);
    assert_eq!(answered.len(), 5);
    for row in &answered {
        let doubled = row[1].as_f64().unwrap();
        assert!((row[2].as_f64().unwrap() - doubled * 1.5).abs() < 1e-9);
        assert!(row[3] == 4 || row[3] == 3);
    }

    // arg_max: the row where seq is largest, per device.
    let mut latest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for event in &events {
        let seq = event["deviceSequenceNumber"].as_i64().unwrap();
        let entry = latest
            .entry(text(&event["deviceId"]))
            .or_insert((i64::MIN, 0.0));
        if seq > entry.0 {
            *entry = (seq, event["value"].as_f64().unwrap());
        }
    }
    let result =
        fixture.kql("telemetry | summarize arg_max(seq, value) by deviceId | sort by deviceId asc");
    assert_eq!(names(&result), ["deviceId", "seq", "value"]);
    let answered = rows(&result);
    assert_eq!(answered.len(), latest.len());
    for (row, (device, (seq, value))) in answered.iter().zip(&latest) {
        assert_eq!(text(&row[0]), *device);
        assert_eq!(row[1], Value::from(*seq));
        assert_eq!(row[2].as_f64().unwrap(), *value);
    }

    // percentiles: Data Explorer's names, DataFusion's t-digest values.
    let result = fixture.kql("telemetry | summarize percentiles(value, 50, 99)");
    assert_eq!(
        names(&result),
        ["percentile_value_50", "percentile_value_99"]
    );
    let sql = fixture.query(
        "SELECT approx_percentile_cont(value, 0.5), approx_percentile_cont(value, 0.99) FROM telemetry",
    );
    assert_eq!(rows(&result), rows(&sql));
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let answered = rows(&result)[0][0].as_f64().unwrap();
    assert!(
        (answered - median).abs() < 2.0,
        "median {answered} vs {median}"
    );

    // String operators: has matches whole terms, contains any substring.
    let count = |kql: &str| rows(&fixture.kql(kql))[0][0].as_i64().unwrap();
    let total = events.len() as i64;
    assert_eq!(
        count("telemetry | where deviceId has 'DEVICE' | count"),
        total
    );
    assert_eq!(count("telemetry | where deviceId has 'evice' | count"), 0);
    assert_eq!(
        count("telemetry | where deviceId contains 'EVICE' | count"),
        total
    );
    assert_eq!(
        count("telemetry | where deviceId contains_cs 'EVICE' | count"),
        0
    );
    let ending = events
        .iter()
        .filter(|e| e["deviceId"].as_str().unwrap().ends_with("-7"))
        .count() as i64;
    assert_eq!(
        count("telemetry | where deviceId endswith '-7' | count"),
        ending
    );
    assert_eq!(
        count("telemetry | where deviceId !endswith '-7' | count"),
        total - ending
    );
    let temps = by_type["TEMP"].0;
    assert_eq!(count("telemetry | where type =~ 'temp' | count"), temps);
    assert_eq!(
        count("telemetry | where type in~ ('temp', 'x') | count"),
        temps
    );
    assert_eq!(
        count("telemetry | where type !in ('TEMP') | count"),
        total - temps
    );
    fixture.close();
}

#[test]
fn joins_follow_data_explorer_kinds_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let (fixture, events) = filled(dir.path());
    let mut per_device: BTreeMap<String, i64> = BTreeMap::new();
    let mut with_temp: BTreeSet<String> = BTreeSet::new();
    for event in &events {
        *per_device.entry(text(&event["deviceId"])).or_default() += 1;
        if event["value"].as_f64().unwrap() > 99.0 {
            with_temp.insert(text(&event["deviceId"]));
        }
    }

    // inner: every left row meets its key's one right row; the right
    // key column comes back as deviceId1.
    let result = fixture.kql(
        "telemetry | summarize n = count() by deviceId \
         | join kind=inner (telemetry | summarize high = max(value) by deviceId) on deviceId \
         | sort by deviceId asc",
    );
    assert_eq!(names(&result), ["deviceId", "n", "deviceId1", "high"]);
    let answered = rows(&result);
    assert_eq!(answered.len(), per_device.len());
    for (row, (device, n)) in answered.iter().zip(&per_device) {
        assert_eq!(text(&row[0]), *device);
        assert_eq!(row[1], Value::from(*n));
        assert_eq!(row[2], row[0]);
    }

    // innerunique (the default) keeps one left row per key; inner keeps all.
    let count = |kql: &str| rows(&fixture.kql(kql))[0][0].as_i64().unwrap();
    assert_eq!(
        count("telemetry | join (telemetry | summarize by deviceId) on deviceId | count"),
        per_device.len() as i64
    );
    assert_eq!(
        count(
            "telemetry | join kind=inner (telemetry | summarize by deviceId) on deviceId | count"
        ),
        events.len() as i64
    );

    // leftanti / leftsemi with $left/$right columns.
    let anti = fixture.kql(
        "telemetry | summarize by deviceId \
         | join kind=leftanti (telemetry | where value > 99 | project id = deviceId) on $left.deviceId == $right.id \
         | sort by deviceId asc",
    );
    assert_eq!(names(&anti), ["deviceId"]);
    let expected: Vec<String> = per_device
        .keys()
        .filter(|d| !with_temp.contains(*d))
        .cloned()
        .collect();
    let answered: Vec<String> = rows(&anti).iter().map(|r| text(&r[0])).collect();
    assert_eq!(answered, expected);
    assert_eq!(
        count(
            "telemetry | summarize by deviceId \
             | join kind=leftsemi (telemetry | where value > 99) on deviceId | count"
        ),
        with_temp.len() as i64
    );

    // leftouter keeps left rows without a match, with nulls on the right.
    let result = fixture.kql(
        "telemetry | summarize by deviceId \
         | join kind=leftouter (telemetry | where value > 99 | summarize hits = count() by deviceId) on deviceId \
         | where isnull(hits) | count",
    );
    assert_eq!(rows(&result), [[Value::from(expected.len() as i64)]]);
    fixture.close();
}

#[test]
fn render_is_returned_and_errors_point_into_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let (fixture, _) = filled(dir.path());

    let result = fixture.kql(
        "telemetry\n| summarize count() by bin(createdAt, 1m)\n| render timechart with (title='Events')",
    );
    let render = result.render.expect("a render hint");
    assert_eq!(render.kind, "timechart");
    assert_eq!(render.properties["title"], "Events");
    assert!(fixture.kql("telemetry | take 1").render.is_none());

    // Every operator, function and aggregate the subset lists plans and runs.
    for kql in [
        "telemetry | project-away md0, seq | project-rename device = deviceId | take 1",
        "telemetry | distinct type, deviceId | count",
        "telemetry | distinct * | take 1",
        "telemetry | where createdAt between (datetime(2025-01-01) .. datetime(2027-01-01)) | count",
        "telemetry | where createdAt > ago(3650d) and createdAt < now(1h) | count",
        "telemetry | where value !between (10 .. 20) and seq in (1, 2, 3) | count",
        "telemetry | where deviceId matches regex '[0-9]+$' | count",
        "telemetry | where deviceId has_cs 'device' and deviceId !has 'nothing' | count",
        "telemetry | where deviceId startswith 'CONTOSO' and deviceId !startswith 'x' | count",
        "telemetry | where deviceId endswith_cs '1' or deviceId !contains 'x' | count",
        "telemetry | where type !~ 'co2' and not(isnull(value)) and isnotnull(seq) | count",
        "telemetry | where isnotempty(type) and not(isempty(deviceId)) and isempty(md0) == false | count",
        "telemetry | extend a = bin(value, 2.5), b = floor(seq, 10), c = bin(createdAt, 1d) | take 3",
        "telemetry | extend s = strcat(type, '-', tostring(seq)), l = strlen(deviceId), u = toupper(type), w = tolower(type) | take 3",
        "telemetry | extend sub = substring(deviceId, 0, 7), r = replace_string(deviceId, 'contoso', 'x') | take 3",
        "telemetry | extend i = iff(value > 50, 'high', 'low'), j = iif(seq % 2 == 0, 1, 0), k = case(value > 90, 'a', value > 50, 'b', 'c') | take 3",
        "telemetry | extend n = toint(value), m = tolong(value), d = todouble(seq), e = toreal(seq), t = tobool(1), dt = todatetime('2026-01-01T00:00:00Z') | take 3",
        "telemetry | extend x = abs(-value), y = sqrt(value), z = exp(1.0), l = log(value + 1), l10 = log10(value + 1), l2 = log2(value + 1), p = pow(value, 2), r = round(value, 1), c = ceiling(value) | take 3",
        "telemetry | extend d = startofday(createdAt), m = startofmonth(createdAt), y = startofyear(createdAt), h = hourofday(createdAt), dm = dayofmonth(createdAt), gm = getmonth(createdAt), gy = getyear(createdAt) | take 3",
        "telemetry | extend c = coalesce(md0, value, 0.0), t = timespan(00:01:00) | take 3",
        "telemetry | summarize sumif(value, type == 'TEMP'), stdev(value), variance(value), take_any(type), min(createdAt), max(seq), percentile(value, 95) by type",
        "telemetry | summarize arg_min(value, *) by type",
        "telemetry | sort by type asc nulls last, value desc nulls first | take 2",
        "telemetry | join kind=rightouter (telemetry | summarize by deviceId) on deviceId | count",
        "telemetry | summarize by deviceId | join kind=fullouter (telemetry | summarize by deviceId) on deviceId | count",
        "telemetry | summarize by deviceId | join kind=rightsemi (telemetry | where value > 99) on deviceId | count",
        "telemetry | summarize by deviceId | join kind=rightanti telemetry on deviceId | count",
        "(telemetry | where value > 1) | limit 2",
        "telemetry // a comment\n| take 1;",
    ] {
        fixture.kql(kql);
    }

    let error = fixture.kql_error("telemetry\n| where Value > 1");
    assert_eq!(
        (error.code, error.line, error.column),
        ("plan", Some(2), Some(9))
    );
    assert!(
        error.message.contains("did you mean 'value'") && error.message.contains("deviceId"),
        "{}",
        error.message
    );
    let error = fixture.kql_error("telemetri | count");
    assert_eq!((error.line, error.column), (Some(1), Some(1)));
    assert!(error.message.contains("telemetry"), "{}", error.message);
    let error = fixture.kql_error("telemetry | where value = 1");
    assert_eq!((error.code, error.column), ("syntax", Some(25)));
    let error = fixture.kql_error("telemetry | extend n = count()");
    assert!(error.message.contains("summarize"), "{}", error.message);
    let error = fixture.kql_error("telemetry | render timechart | take 1");
    assert!(error.message.contains("last"), "{}", error.message);
    let error = fixture.kql_error("telemetry | summarize value by type");
    assert!(
        error.message.contains("take_any(value)"),
        "{}",
        error.message
    );
    let error = fixture.kql_error("telemetry | where value");
    assert!(error.message.contains("bool"), "{}", error.message);
    fixture.close();
}

#[test]
fn edge_cases_behave_as_data_explorer_or_say_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let (fixture, events) = filled(dir.path());

    // Conversions that fail give null, not a failed query.
    let result = fixture
        .kql("telemetry | extend n = toint('abc'), d = todouble(type) | project n, d | take 1");
    assert_eq!(rows(&result), vec![vec![Value::Null, Value::Null]]);

    // Week bins start on Mondays, counted as Data Explorer counts them.
    let result = fixture.kql("telemetry | summarize count() by w = bin(createdAt, 7d)");
    let total: i64 = rows(&result)
        .iter()
        .map(|row| row[1].as_i64().unwrap())
        .sum();
    assert_eq!(total, events.len() as i64);
    for row in rows(&result) {
        let days = micros(&row[0]).div_euclid(86_400_000_000);
        assert_eq!(days.rem_euclid(7), 4, "{row:?} is not a Monday");
    }

    // A long chain of alternatives plans and runs; bracketed names are names.
    let chain = (0..250)
        .map(|i| format!("seq == {i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let expected = events
        .iter()
        .filter(|e| e["deviceSequenceNumber"].as_i64().unwrap() < 250)
        .count();
    let result = fixture.kql(&format!("telemetry | where {chain} | count"));
    assert_eq!(rows(&result), vec![vec![Value::from(expected)]]);
    let result = fixture.kql("telemetry | project ['deviceId'] | take 1");
    assert_eq!(names(&result), ["deviceId"]);

    // Names that look like the planner's own are only column names.
    let error = fixture.kql_error("telemetry | where __kql_part_0 == 1");
    assert!(
        error.message.contains("no column named"),
        "{}",
        error.message
    );
    let error = fixture.kql_error("telemetry | summarize n = count() + __kql_part_0");
    assert!(
        error.message.contains("no column named"),
        "{}",
        error.message
    );
    let error = fixture.kql_error("telemetry | where deviceId has type");
    assert!(
        error.message.contains("string literal"),
        "{}",
        error.message
    );
    for kql in [
        "telemetry | extend b = bin(value, 0)",
        "telemetry | extend b = bin(seq, -5)",
    ] {
        let error = fixture.kql_error(kql);
        assert!(
            error.message.contains("positive"),
            "{kql}: {}",
            error.message
        );
    }
    let error = fixture.kql_error(&format!(
        "telemetry | where {}1{} == 1",
        "(".repeat(5_000),
        ")".repeat(5_000)
    ));
    assert!(error.message.contains("nests deeper"), "{}", error.message);
    fixture.close();
}
