//! Labelled examples from CSV/TSV, JSONL, Parquet or the aclImdb folder layout.
//!
//! Every bad row is reported as `file:line: what is wrong`, and either stops the run
//! (`--on-bad-row error`, the default) or is counted and skipped (`--on-bad-row skip`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

/// Where an example came from, for messages: `reviews.csv:17`.
#[derive(Debug, Clone)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based line (CSV, JSONL), row (Parquet), or 0 for one-file-per-example layouts.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Example {
    pub text: String,
    pub pair: Option<String>,
    /// None without a label column (texts to predict).
    pub label: Option<Label>,
    pub at: Location,
}

impl Example {
    /// The label of a one-label example, as written (numbers as their decimal text).
    pub fn single_label(&self) -> Option<&str> {
        match &self.label {
            Some(Label::One(l)) => Some(l),
            _ => None,
        }
    }
}

/// A label as the file writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// One value: a class name, or a score as its text.
    One(String),
    /// A set of class names (multi-label data): a JSON or Parquet list, a separated field or
    /// indicator columns. Empty is valid (an example with none of the labels).
    Many(Vec<String>),
}

/// Where the labels are.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSource {
    /// No labels (texts to predict).
    None,
    /// One column: a value, or a JSON/Parquet list of class names.
    Column(String),
    /// One column holding class names joined by a separator (`a;b`; empty = no label).
    Separated { column: String, separator: String },
    /// One 0/1 column per class, named by the class.
    Indicators(Vec<String>),
}

/// Which columns (CSV header names, JSON keys, Parquet columns) hold what.
#[derive(Debug, Clone)]
pub struct Columns {
    pub text: String,
    pub pair: Option<String>,
    pub label: LabelSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnBadRow {
    Error,
    Skip,
}

/// Examples read, and the bad rows skipped (message per row) under `OnBadRow::Skip`.
#[derive(Debug, Default)]
pub struct Dataset {
    pub examples: Vec<Example>,
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
    Parquet,
    /// aclImdb layout: `DIR/pos/*.txt`, `DIR/neg/*.txt` (labels `pos`, `neg`).
    Folder,
    /// One text per line (for predict).
    Lines,
}

impl Format {
    /// From the path: a directory is the folder layout; else by extension (under `.gz`).
    pub fn detect(path: &Path) -> Result<Format> {
        if path.is_dir() {
            return Ok(Format::Folder);
        }
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        Ok(match Path::new(name).extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("tsv" | "tab") => Format::Tsv,
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            Some("parquet" | "pq") => Format::Parquet,
            Some("txt") => Format::Lines,
            _ => bail!(
                "{}: cannot tell the format from the name (.csv, .tsv, .jsonl, .parquet, .txt, or an aclImdb-style folder); pass --format",
                path.display()
            ),
        })
    }
}

/// Opens a file for reading, decompressing `.gz` on the fly; `-` is standard input.
pub fn open_text(path: &Path) -> Result<Box<dyn Read>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

/// Reads examples from `path` in `format` (or the one its name implies).
pub fn read_examples(path: &Path, format: Option<Format>, columns: &Columns, on_bad: OnBadRow) -> Result<Dataset> {
    let format = match format {
        Some(f) => f,
        None => Format::detect(path)?,
    };
    if format == Format::Lines && !matches!(columns.label, LabelSource::None) {
        bail!(
            "{}: read as plain text lines, which carry no labels; labelled texts come as CSV, TSV, JSONL, \
             Parquet or an aclImdb-style folder, and tagged words as CoNLL (`word ... tag` a line, a blank \
             line between sentences), read from .conll/.iob/.bio files, from a .txt that starts with \
             -DOCSTART-, or from any .txt with --task token-classification",
            path.display()
        );
    }
    let mut data = Dataset::default();
    let mut sink = |row: Result<Example, (Location, String)>| -> Result<()> {
        match row {
            Ok(ex) => data.examples.push(ex),
            Err((at, why)) => match on_bad {
                OnBadRow::Error => bail!("{at}: {why} (pass --on-bad-row skip to skip such rows)"),
                OnBadRow::Skip => data.skipped.push(format!("{at}: {why}")),
            },
        }
        Ok(())
    };
    match format {
        Format::Csv => read_delimited(path, b',', columns, &mut sink)?,
        Format::Tsv => read_delimited(path, b'\t', columns, &mut sink)?,
        Format::Jsonl => read_jsonl(path, columns, &mut sink)?,
        Format::Parquet => read_parquet(path, columns, &mut sink)?,
        Format::Folder => read_folder(path, columns, &mut sink)?,
        Format::Lines => read_lines(path, &mut sink)?,
    }
    if data.examples.is_empty() {
        bail!(
            "{}: no usable examples{}",
            path.display(),
            if data.skipped.is_empty() { String::new() } else { format!(" ({} bad rows skipped)", data.skipped.len()) }
        );
    }
    Ok(data)
}

type Sink<'a> = dyn FnMut(Result<Example, (Location, String)>) -> Result<()> + 'a;

/// A label as a reader found it: a value, or why the row has none usable.
type RawLabel = Result<Label, String>;

/// Builds an example from raw field values, checking what every format must satisfy.
/// `label` is None when no labels are read.
fn make_example(
    text: Option<&str>,
    pair: Option<Option<&str>>,
    label: Option<RawLabel>,
    at: Location,
) -> Result<Example, (Location, String)> {
    let text = text.unwrap_or("");
    if text.trim().is_empty() {
        return Err((at, "empty text".into()));
    }
    let pair = match pair {
        None => None,
        Some(p) => match p {
            Some(p) if !p.trim().is_empty() => Some(p.to_string()),
            _ => return Err((at, "empty second text (--text-pair-column)".into())),
        },
    };
    let label = match label {
        None => None,
        Some(Err(why)) => return Err((at, why)),
        Some(Ok(Label::One(l))) if l.trim().is_empty() => return Err((at, "missing label".into())),
        Some(Ok(Label::One(l))) => Some(Label::One(l.trim().to_string())),
        Some(Ok(Label::Many(names))) => {
            let mut set: Vec<String> = names.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
            set.dedup();
            Some(Label::Many(set))
        }
    };
    Ok(Example { text: text.to_string(), pair, label, at })
}

/// `a;b;c` as a label set (an empty field: no label).
fn split_labels(field: &str, separator: &str) -> Label {
    Label::Many(field.split(separator).map(str::to_string).collect())
}

/// An indicator column's value: 1/0, true/false (1.0/0.0 as pandas writes them).
fn indicator(column: &str, value: Option<&str>) -> Result<bool, String> {
    match value.map(str::trim) {
        Some("1" | "1.0" | "true" | "True") => Ok(true),
        Some("0" | "0.0" | "false" | "False") => Ok(false),
        Some(v) => Err(format!("label column {column:?} holds {v:?}, not 0 or 1")),
        None => Err(format!("no value in label column {column:?}")),
    }
}

/// The label set of indicator columns from each column's value.
fn indicators<'a>(names: &[String], mut value: impl FnMut(usize) -> Option<&'a str>) -> RawLabel {
    let mut set = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if indicator(name, value(i))? {
            set.push(name.clone());
        }
    }
    Ok(Label::Many(set))
}

fn missing_column(path: &Path, what: &str, name: &str, available: &[String]) -> anyhow::Error {
    // Quoted headers can hold newlines; the message stays one line.
    let shown: Vec<String> =
        available.iter().map(|c| if c.contains(char::is_control) { format!("{c:?}") } else { c.clone() }).collect();
    anyhow::anyhow!(
        "{}: no {what} column {name:?} (columns: {}); choose one with --{what}-column",
        path.display(),
        shown.join(", ")
    )
}

/// The label columns of a delimited file, by position.
enum LabelFields {
    None,
    One(usize),
    Separated(usize, String),
    Indicators(Vec<usize>, Vec<String>),
}

fn read_delimited(path: &Path, delimiter: u8, columns: &Columns, sink: &mut Sink) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(open_text(path)?);
    let header: Vec<String> = reader
        .byte_headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim_start_matches('\u{feff}').to_string())
        .collect();
    let find = |what: &str, name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| missing_column(path, what, name, &header))
    };
    let text_col = find("text", &columns.text)?;
    let pair_col = columns.pair.as_deref().map(|p| find("text-pair", p)).transpose()?;
    let labels = match &columns.label {
        LabelSource::None => LabelFields::None,
        LabelSource::Column(c) => LabelFields::One(find("label", c)?),
        LabelSource::Separated { column, separator } => {
            LabelFields::Separated(find("label", column)?, separator.clone())
        }
        LabelSource::Indicators(names) => {
            LabelFields::Indicators(names.iter().map(|n| find("label", n)).collect::<Result<_>>()?, names.clone())
        }
    };
    let mut record = csv::ByteRecord::new();
    loop {
        let at_line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => bail!("{}:{}: {e}", path.display(), at_line),
        }
        let at = Location { file: path.to_path_buf(), line: record.position().map_or(at_line, |p| p.line()) };
        if record.len() != header.len() {
            let hint = if record.iter().any(|f| f.contains(&b'\n')) { " (an unbalanced quote?)" } else { "" };
            sink(Err((at, format!("{} fields, the header has {}{hint}", record.len(), header.len()))))?;
            continue;
        }
        sink(delimited_row(&record, &header, text_col, pair_col, &labels, at))?;
    }
    Ok(())
}

/// One CSV/TSV record as an example.
fn delimited_row(
    record: &csv::ByteRecord,
    header: &[String],
    text_col: usize,
    pair_col: Option<usize>,
    labels: &LabelFields,
    at: Location,
) -> Result<Example, (Location, String)> {
    let field = |i: usize| {
        std::str::from_utf8(&record[i])
            .map_err(|e| format!("column {:?} is not valid UTF-8 (byte {})", header[i], e.valid_up_to()))
    };
    let text = field(text_col).map_err(|why| (at.clone(), why))?;
    let pair = pair_col.map(field).transpose().map_err(|why| (at.clone(), why))?;
    let label = match labels {
        LabelFields::None => None,
        LabelFields::One(c) => Some(field(*c).map(|l| Label::One(l.to_string()))),
        LabelFields::Separated(c, separator) => Some(field(*c).map(|l| split_labels(l, separator))),
        LabelFields::Indicators(cols, names) => Some(indicators(names, |i| field(cols[i]).ok())),
    };
    make_example(Some(text), pair.map(Some), label, at)
}

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

fn read_jsonl(path: &Path, columns: &Columns, sink: &mut Sink) -> Result<()> {
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

fn read_parquet(path: &Path, columns: &Columns, sink: &mut Sink) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
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

/// `DIR/<label>/*.txt`: the aclImdb layout (`pos`, `neg`), or any folder of class folders.
fn read_folder(dir: &Path, columns: &Columns, sink: &mut Sink) -> Result<()> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "unsup"))
        .collect();
    classes.sort();
    let with_labels = match &columns.label {
        LabelSource::None => false,
        LabelSource::Column(_) => true,
        _ => bail!(
            "{}: a folder of class folders has one label per text (no --label-separator or --label-columns)",
            dir.display()
        ),
    };
    if classes.is_empty() {
        bail!("{}: no class folders (expected e.g. pos/ and neg/ with one .txt per example)", dir.display());
    }
    for class in classes {
        let label = class.file_name().unwrap().to_string_lossy().to_string();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        if files.is_empty() && ["train", "test"].contains(&label.as_str()) {
            bail!("{}: holds {label}/ rather than class folders; point at {}", dir.display(), class.display());
        }
        for file in files {
            let at = Location { file: file.clone(), line: 0 };
            let bytes = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
            let row = match String::from_utf8(bytes) {
                Ok(text) => make_example(Some(&text), None, with_labels.then(|| Ok(Label::One(label.clone()))), at),
                Err(_) => Err((at, "not valid UTF-8".into())),
            };
            sink(row)?;
        }
    }
    Ok(())
}

fn read_lines(path: &Path, sink: &mut Sink) -> Result<()> {
    let reader = BufReader::new(open_text(path)?);
    for (i, line) in reader.split(b'\n').enumerate() {
        let at = Location { file: path.to_path_buf(), line: i as u64 + 1 };
        let line = line.with_context(|| format!("{at}: read error"))?;
        let row = match String::from_utf8(line) {
            Ok(text) => make_example(Some(text.trim_end_matches('\r')), None, None, at),
            Err(_) => Err((at, "not valid UTF-8".into())),
        };
        sink(row)?;
    }
    Ok(())
}

/// The classes of a task and their ids, as `id2label`/`label2id` hold them.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSet {
    names: Vec<String>,
    index: HashMap<String, i64>,
}

impl LabelSet {
    pub fn new(names: Vec<String>) -> Self {
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i as i64)).collect();
        LabelSet { names, index }
    }

    /// The labels seen in training data (every name of multi-label sets): numeric order when
    /// all are integers ("0" < "2" < "10"), else sorted as text, as transformers' example
    /// scripts do.
    pub fn from_examples(examples: &[Example]) -> Self {
        let set: BTreeSet<&str> = examples
            .iter()
            .flat_map(|e| match &e.label {
                Some(Label::One(l)) => std::slice::from_ref(l),
                Some(Label::Many(names)) => names.as_slice(),
                None => &[],
            })
            .map(String::as_str)
            .collect();
        let mut names: Vec<String> = set.into_iter().map(String::from).collect();
        if names.iter().all(|n| n.parse::<i64>().is_ok()) {
            names.sort_by_key(|n| n.parse::<i64>().unwrap());
        }
        LabelSet::new(names)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn get(&self, label: &str) -> Option<i64> {
        self.index.get(label).copied()
    }

    /// Class ids of labelled examples; a label outside the set is an error naming the row.
    pub fn ids(&self, examples: &[Example], role: &str) -> Result<Vec<i64>> {
        examples
            .iter()
            .map(|e| match &e.label {
                Some(Label::One(label)) => self.known(label, e, role),
                Some(Label::Many(names)) => bail!(
                    "{}: {} labels where one is expected ({}); pass --task multi-label",
                    e.at,
                    names.len(),
                    names.join(", ")
                ),
                None => bail!("{}: no label", e.at),
            })
            .collect()
    }

    /// Multi-label targets, `[examples][labels]` 0/1 rows; a single label is a set of one.
    pub fn multi_hot(&self, examples: &[Example], role: &str) -> Result<Vec<Vec<f32>>> {
        examples
            .iter()
            .map(|e| {
                let names = match &e.label {
                    Some(Label::One(l)) => std::slice::from_ref(l),
                    Some(Label::Many(names)) => names.as_slice(),
                    None => bail!("{}: no label", e.at),
                };
                let mut row = vec![0.0; self.len()];
                for name in names {
                    row[self.known(name, e, role)? as usize] = 1.0;
                }
                Ok(row)
            })
            .collect()
    }

    fn known(&self, label: &str, e: &Example, role: &str) -> Result<i64> {
        self.get(label).with_context(|| {
            format!("{}: label {label:?} is not among the {role} labels ({})", e.at, self.names.join(", "))
        })
    }
}
