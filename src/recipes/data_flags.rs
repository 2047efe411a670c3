//! Flags that say how to read labelled data, shared by finetune, evaluate and predict.

use std::path::Path;

use anyhow::Result;

use crate::data::{
    Columns, Dataset, Example, Format, LabelSource, LongText, OnBadRow, Targets, WindowPool, read_examples,
    tokenize_long,
};
use crate::predict::LabelledSet;
use crate::tokenizer::Tokenizer;

#[derive(clap::Args, Clone, Debug)]
pub struct DataFlags {
    /// Column (CSV header, JSON key, Parquet column) holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Column holding a second text, for sentence-pair tasks.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// Column holding the label: a class name, a number, or (multi-label) a JSON/Parquet list.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Multi-label data: the label column holds class names joined by this (`a;b`; empty = none).
    #[arg(long, conflicts_with = "label_columns", value_parser = crate::values::non_empty)]
    pub label_separator: Option<String>,
    /// Multi-label data: one 0/1 column per class, named by the class (`--label-columns A,B,C`).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub label_columns: Option<Vec<String>>,
    /// File format; by default from the extension (.csv .tsv .jsonl .parquet .txt, a folder = aclImdb layout).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// What to do with a bad row (empty text, missing label, broken line, invalid UTF-8).
    #[arg(long, value_enum, default_value = "error")]
    pub on_bad_row: OnBadRow,
    /// Longest sequence in tokens; longer texts are handled by --long-text (and counted).
    /// Default: 512, or the model's positions if fewer.
    #[arg(long, value_parser = crate::values::sequence_length)]
    pub max_len: Option<usize>,
    /// Texts longer than --max-len: truncate, head-tail (first quarter + end), or window
    /// (every token, windows pooled per text; metrics per text).
    #[arg(long, value_enum, default_value = "truncate")]
    pub long_text: LongText,
    /// Tokens shared by consecutive windows (--long-text window, sentences of token
    /// classification, and contexts of question answering: run_qa's --doc-stride).
    #[arg(long, alias = "doc-stride", default_value_t = 128, value_parser = crate::values::positive)]
    pub stride: usize,
    /// How the windows' outputs become one per text (--long-text window).
    #[arg(long, value_enum, default_value = "mean")]
    pub window_pool: WindowPool,
}

impl DataFlags {
    pub fn columns(&self, with_label: bool) -> Columns {
        let label = match (with_label, &self.label_separator, &self.label_columns) {
            (false, ..) => LabelSource::None,
            (true, _, Some(names)) => LabelSource::Indicators(names.clone()),
            (true, Some(separator), None) => {
                LabelSource::Separated { column: self.label_column.clone(), separator: separator.clone() }
            }
            (true, None, None) => LabelSource::Column(self.label_column.clone()),
        };
        Columns { text: self.text_column.clone(), pair: self.text_pair_column.clone(), label }
    }

    /// Whether the flags say the labels are sets (multi-label).
    pub fn label_sets(&self) -> bool {
        self.label_separator.is_some() || self.label_columns.is_some()
    }

    /// Tokenised examples with their targets, long texts handled by --long-text (and counted in
    /// the log under `role`).
    pub fn encode(
        &self,
        tok: &Tokenizer,
        examples: &[Example],
        targets: Targets,
        max_len: usize,
        role: &str,
    ) -> Result<LabelledSet> {
        let pieces = tokenize_long(tok, examples, max_len, self.long_text, self.stride)?;
        let how = match self.long_text {
            LongText::Truncate => "truncated to",
            LongText::HeadTail => "cut to their head and tail,",
            LongText::Window => "split into windows of",
        };
        let (n, long, items) = (examples.len(), pieces.long, pieces.items.len());
        tracing::info!("{role}: {n} examples, {long} {how} {max_len} tokens ({items} model inputs)");
        Ok(LabelledSet { items: pieces.items, doc_of: pieces.doc_of, targets })
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
