//! Query results as the HTTP API returns them: JSON (columns and rows),
//! CSV with a header, or an Arrow IPC stream.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use serde_json::{Map, Value, json};

use crate::query::QueryResult;

/// `{"columns": [{"name", "type"}], "rows": [[…]], "row_count", "truncated", "elapsed_ms"}`,
/// and `"render": {"kind", "properties"}` when a KQL query asked for a chart;
/// timestamps as ISO-8601 UTC text.
pub fn to_json(result: &QueryResult) -> Value {
    let columns: Vec<Value> = result
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let rows = rows_as_arrays(&result.schema, &result.batches);
    let mut answer = json!({
        "columns": columns,
        "rows": rows,
        "row_count": result.rows,
        "truncated": result.truncated,
        "elapsed_ms": result.elapsed.as_secs_f64() * 1000.0,
    });
    if let Some(render) = &result.render {
        answer["render"] = json!(render);
    }
    answer
}

/// Each row as an array of JSON values in column order.
pub fn rows_as_arrays(schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<Value> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(&mut buffer);
        for batch in batches {
            writer
                .write(batch)
                .expect("every Arrow type the store produces writes as JSON");
        }
        writer.finish().expect("JSON writer finishes");
    }
    if buffer.is_empty() {
        return Vec::new();
    }
    let objects: Vec<Map<String, Value>> =
        serde_json::from_slice(&buffer).expect("the writer wrote JSON objects");
    objects
        .into_iter()
        .map(|mut object| {
            Value::Array(
                schema
                    .fields()
                    .iter()
                    .map(|f| object.remove(f.name()).unwrap_or(Value::Null))
                    .collect(),
            )
        })
        .collect()
}

pub fn to_csv(result: &QueryResult) -> Vec<u8> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buffer);
        if result.batches.is_empty() {
            writer
                .write(&RecordBatch::new_empty(result.schema.clone()))
                .expect("CSV header");
        }
        for batch in &result.batches {
            writer
                .write(batch)
                .expect("every Arrow type the store produces writes as CSV");
        }
    }
    buffer
}

pub fn to_arrow_ipc(result: &QueryResult) -> Vec<u8> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut buffer, &result.schema)
            .expect("IPC schema");
        for batch in &result.batches {
            writer.write(batch).expect("IPC batch");
        }
        writer.finish().expect("IPC end");
    }
    buffer
}
