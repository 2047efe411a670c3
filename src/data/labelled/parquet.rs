//! Parquet files (string, number or list columns).

use std::path::Path;

use anyhow::{Context, Result};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use super::{
    Columns, Label, LabelSource, Location, RawLabel, Sink, indicators, make_example, missing_column, split_labels,
};

/// A Parquet column by name, or an error naming the columns there are.
fn parquet_column<'a>(
    batch: &'a RecordBatch,
    what: &str,
    name: &str,
    path: &Path,
) -> Result<&'a arrow_array::ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        missing_column(path, what, name, &names)
    })
}

/// Values of an Arrow array as optional strings; labels (`allow_numbers`) may also be
/// integers or booleans, written as their text.
fn array_strings(col: &dyn Array, allow_numbers: bool) -> Result<Vec<Option<String>>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    let get = |i: usize| !col.is_null(i);
    let n = col.len();
    macro_rules! collect {
        ($arr:expr) => {{
            let a = $arr;
            (0..n).map(|i| get(i).then(|| a.value(i).to_string())).collect()
        }};
    }
    Ok(match col.data_type() {
        DataType::Utf8 => collect!(col.as_string::<i32>()),
        DataType::LargeUtf8 => collect!(col.as_string::<i64>()),
        DataType::Utf8View => collect!(col.as_string_view()),
        DataType::Int8 if allow_numbers => collect!(col.as_primitive::<Int8Type>()),
        DataType::Int16 if allow_numbers => collect!(col.as_primitive::<Int16Type>()),
        DataType::Int32 if allow_numbers => collect!(col.as_primitive::<Int32Type>()),
        DataType::Int64 if allow_numbers => collect!(col.as_primitive::<Int64Type>()),
        DataType::UInt8 if allow_numbers => collect!(col.as_primitive::<UInt8Type>()),
        DataType::UInt16 if allow_numbers => collect!(col.as_primitive::<UInt16Type>()),
        DataType::UInt32 if allow_numbers => collect!(col.as_primitive::<UInt32Type>()),
        DataType::UInt64 if allow_numbers => collect!(col.as_primitive::<UInt64Type>()),
        DataType::Float32 if allow_numbers => collect!(col.as_primitive::<Float32Type>()),
        DataType::Float64 if allow_numbers => collect!(col.as_primitive::<Float64Type>()),
        DataType::Boolean if allow_numbers => collect!(col.as_boolean()),
        other => {
            let expected = if allow_numbers { "strings, numbers or booleans" } else { "strings" };
            return Err(format!("has type {other}, expected {expected}"));
        }
    })
}

/// A text column of a Parquet batch; `what` names its role in messages (`text`, `text-pair`).
fn string_values(batch: &RecordBatch, what: &str, name: &str, path: &Path) -> Result<Vec<Option<String>>> {
    let col = parquet_column(batch, what, name, path)?;
    array_strings(col.as_ref(), false).map_err(|why| anyhow::anyhow!("{}: column {name:?} {why}", path.display()))
}

/// The labels of a Parquet batch, row by row: values, list columns (multi-label) or indicators.
fn parquet_labels(batch: &RecordBatch, source: &LabelSource, path: &Path) -> Result<Option<Vec<RawLabel>>> {
    use arrow_array::cast::AsArray;
    let column = |name: &str| -> Result<Vec<Option<String>>> {
        let col = parquet_column(batch, "label", name, path)?;
        array_strings(col.as_ref(), true).map_err(|why| anyhow::anyhow!("{}: column {name:?} {why}", path.display()))
    };
    let missing = || "missing label".to_string();
    Ok(Some(match source {
        LabelSource::None => return Ok(None),
        LabelSource::Column(name) | LabelSource::Separated { column: name, .. }
            if matches!(
                parquet_column(batch, "label", name, path)?.data_type(),
                DataType::List(_) | DataType::LargeList(_)
            ) =>
        {
            let col = parquet_column(batch, "label", name, path)?;
            let row = |i: usize| -> RawLabel {
                if col.is_null(i) {
                    return Err(missing());
                }
                let items = match col.data_type() {
                    DataType::List(_) => col.as_list::<i32>().value(i),
                    _ => col.as_list::<i64>().value(i),
                };
                let names = array_strings(items.as_ref(), true).map_err(|why| format!("label list {why}"))?;
                Ok(Label::Many(names.into_iter().flatten().collect()))
            };
            (0..batch.num_rows()).map(row).collect()
        }
        LabelSource::Column(name) => column(name)?.into_iter().map(|l| l.map(Label::One).ok_or_else(missing)).collect(),
        LabelSource::Separated { column: name, separator } => {
            column(name)?.into_iter().map(|l| l.map(|l| split_labels(&l, separator)).ok_or_else(missing)).collect()
        }
        LabelSource::Indicators(names) => {
            let values: Vec<Vec<Option<String>>> = names.iter().map(|n| column(n)).collect::<Result<_>>()?;
            (0..batch.num_rows()).map(|i| indicators(names, |c| values[c][i].as_deref())).collect()
        }
    }))
}

pub(super) fn read_parquet(path: &Path, columns: &Columns, sink: &mut Sink) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?
        .build()?;
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.with_context(|| format!("{}: corrupt row group", path.display()))?;
        let texts = string_values(&batch, "text", &columns.text, path)?;
        let pairs = columns.pair.as_ref().map(|p| string_values(&batch, "text-pair", p, path)).transpose()?;
        let mut labels = parquet_labels(&batch, &columns.label, path)?.map(Vec::into_iter);
        for i in 0..batch.num_rows() {
            row += 1;
            let at = Location { file: path.to_path_buf(), line: row };
            let pair = pairs.as_ref().map(|p| p[i].as_deref());
            let label = labels.as_mut().and_then(Iterator::next);
            sink(make_example(texts[i].as_deref(), pair, label, at))?;
        }
    }
    Ok(())
}
