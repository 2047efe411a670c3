//! CSV and TSV files with a header row.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{
    Columns, Example, Label, LabelSource, Location, Sink, indicators, make_example, missing_column, open_text,
    split_labels,
};

/// The label columns of a delimited file, by position.
enum LabelFields {
    None,
    One(usize),
    Separated(usize, String),
    Indicators(Vec<usize>, Vec<String>),
}

/// Reads a header row and records; `quoting`: `"` encloses fields (else it is plain text).
pub(super) fn read_delimited(
    path: &Path,
    delimiter: u8,
    quoting: bool,
    columns: &Columns,
    sink: &mut Sink,
) -> Result<()> {
    let mut reader =
        csv::ReaderBuilder::new().delimiter(delimiter).quoting(quoting).flexible(true).from_reader(open_text(path)?);
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
            // A quoted field that swallowed a delimiter or a line break.
            let merged = quoting && record.iter().any(|f| f.contains(&delimiter) || f.contains(&b'\n'));
            let hint = match (merged, delimiter) {
                (true, b'\t') => {
                    " (an unbalanced quote? where quotes are plain text, as in GLUE's files, pass --format tsv-unquoted)"
                }
                (true, _) => " (an unbalanced quote?)",
                _ => "",
            };
            sink(Err((at, format!("{} fields, the header has {}{hint}", record.len(), header.len()))))?;
            continue;
        }
        if quoting && delimiter == b'\t' && record.iter().any(|f| f.contains(&b'\t')) {
            // Quote-aware reading merged lines: the quotes were plain text.
            let why = "a quoted field holds a tab: where quotes are plain text, as in GLUE's files, pass --format tsv-unquoted";
            sink(Err((at, why.into())))?;
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
