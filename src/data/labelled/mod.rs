//! Labelled examples from CSV/TSV (`delimited.rs`), JSONL (`jsonl.rs`), Parquet (`parquet.rs`), the
//! aclImdb folder layout (`folder.rs`) or plain lines (`lines.rs`); the label set (`label_set.rs`).
//! What every format shares is here: the example, where it came from, and the checks of a row.
//!
//! Every bad row is reported as `file:line: what is wrong`, and either stops the run
//! (`--on-bad-row error`, the default) or is counted and skipped (`--on-bad-row skip`).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

mod delimited;
mod folder;
mod jsonl;
mod label_set;
mod lines;
mod parquet;

use anyhow::{Context, Result, bail};

use crate::error::Marked;

use self::delimited::read_delimited;
use self::folder::read_folder;
pub use self::jsonl::jsonl_lines;
use self::jsonl::read_jsonl;
pub use self::label_set::LabelSet;
use self::lines::read_lines;
use self::parquet::read_parquet;

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
    /// Tab-separated with quotes as ordinary characters (GLUE's files: STS-B, MNLI), which
    /// quote-aware reading would merge or split.
    TsvUnquoted,
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
pub(crate) fn open_text(path: &Path) -> Result<Box<dyn Read>> {
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
    read_any(path, format, columns, on_bad).data_error()
}

fn read_any(path: &Path, format: Option<Format>, columns: &Columns, on_bad: OnBadRow) -> Result<Dataset> {
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
        Format::Csv => read_delimited(path, b',', true, columns, &mut sink)?,
        Format::Tsv => read_delimited(path, b'\t', true, columns, &mut sink)?,
        Format::TsvUnquoted => read_delimited(path, b'\t', false, columns, &mut sink)?,
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
