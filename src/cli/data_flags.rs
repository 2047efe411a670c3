//! Flags that say how to read labelled data, shared by finetune, evaluate and predict.

use std::path::Path;

use anyhow::Result;

use crate::data::{Columns, Dataset, Format, OnBadRow, read_examples};

#[derive(clap::Args, Clone, Debug)]
pub struct DataFlags {
    /// Column (CSV header, JSON key, Parquet column) holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column holding a second text, for sentence-pair tasks.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// Column holding the label (strings or integers).
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// File format; by default from the extension (.csv .tsv .jsonl .parquet .txt, a folder = aclImdb layout).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// What to do with a bad row (empty text, missing label, broken line, invalid UTF-8).
    #[arg(long, value_enum, default_value = "error")]
    pub on_bad_row: OnBadRow,
    /// Longest sequence in tokens; longer texts are truncated (and counted). Default: 512, or
    /// the model's positions if fewer.
    #[arg(long, value_parser = super::checks::sequence_length)]
    pub max_len: Option<usize>,
}

impl DataFlags {
    pub fn columns(&self, with_label: bool) -> Columns {
        Columns {
            text: self.text_column.clone(),
            pair: self.text_pair_column.clone(),
            label: with_label.then(|| self.label_column.clone()),
        }
    }

    /// Reads a file, reporting skipped rows.
    pub fn read(&self, path: &Path, with_label: bool) -> Result<Dataset> {
        let data = read_examples(path, self.format, &self.columns(with_label), self.on_bad_row)?;
        if !data.skipped.is_empty() {
            tracing::warn!("{}: skipped {} bad rows, e.g. {}", path.display(), data.skipped.len(), data.skipped[0]);
        }
        Ok(data)
    }
}
