//! JSON Lines: one object per line.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};

use super::{
    Columns, Label, LabelSource, Location, RawLabel, Sink, indicators, make_example, missing_column, open_text,
    split_labels,
};

/// A JSON value as label text: strings as they are, numbers and booleans as written.
fn json_label(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The label of a JSON object: a value, or a list of class names (multi-label).
fn json_labels(obj: &serde_json::Map<String, serde_json::Value>, source: &LabelSource) -> Option<RawLabel> {
    use serde_json::Value;
    let value = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => Err("missing label".to_string()),
        Some(v) => Ok(v),
    };
    let list = |items: &[Value]| -> RawLabel {
        let names: Option<Vec<String>> = items.iter().map(json_label).collect();
        names.map(Label::Many).ok_or_else(|| "a label list may hold only strings and numbers".to_string())
    };
    Some(match source {
        LabelSource::None => return None,
        LabelSource::Column(key) => value(key).and_then(|v| match v {
            Value::Array(items) => list(items),
            v => json_label(v).map(Label::One).ok_or_else(|| format!("label {key:?} is a JSON object")),
        }),
        LabelSource::Separated { column, separator } => value(column).and_then(|v| match v {
            Value::Array(items) => list(items),
            v => json_label(v)
                .map(|l| split_labels(&l, separator))
                .ok_or_else(|| format!("label {column:?} is a JSON object")),
        }),
        LabelSource::Indicators(names) => {
            let texts: Vec<Option<String>> = names.iter().map(|n| obj.get(n).and_then(json_label)).collect();
            indicators(names, |i| texts[i].as_deref())
        }
    })
}

/// Each non-blank line of a JSONL file with where it is; a line that is not UTF-8 as `Err`.
pub fn jsonl_lines(path: &Path, mut each: impl FnMut(Location, Result<String, String>) -> Result<()>) -> Result<()> {
    let reader = BufReader::new(open_text(path)?);
    for (i, line) in reader.split(b'\n').enumerate() {
        let at = Location { file: path.to_path_buf(), line: i as u64 + 1 };
        let line = line.with_context(|| format!("{at}: read error"))?;
        match String::from_utf8(line) {
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => each(at, Ok(line))?,
            Err(_) => each(at, Err("not valid UTF-8".into()))?,
        }
    }
    Ok(())
}

pub(super) fn read_jsonl(path: &Path, columns: &Columns, sink: &mut Sink) -> Result<()> {
    jsonl_lines(path, |at, line| {
        let line = match line {
            Ok(line) => line,
            Err(why) => return sink(Err((at, why))),
        };
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&line) {
            Ok(o) => o,
            Err(e) => return sink(Err((at, format!("not a JSON object: {e}")))),
        };
        let text_value = obj.get(&columns.text);
        if text_value.is_none() && at.line == 1 {
            let keys: Vec<String> = obj.keys().cloned().collect();
            return Err(missing_column(path, "text", &columns.text, &keys));
        }
        let text = text_value.and_then(|v| v.as_str());
        let pair = columns.pair.as_ref().map(|p| obj.get(p).and_then(|v| v.as_str()));
        sink(make_example(text, pair, json_labels(&obj, &columns.label), at))
    })
}
