//! `bertkit embed`: sentence vectors from any encoder, as JSON for `--text` arguments, or for a
//! whole file (`--input`) written batch by batch to `.npy`, `.parquet` or `.jsonl`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;

use crate::data::vectors::VectorWriter;
use crate::data::{Columns, Example, Format, LabelSource, OnBadRow, read_examples};
use crate::device::{Autocast, DeviceFlags};
use crate::error::refuse;
use crate::predict::{Embedder, Pooling};
use crate::pretrained::{LoadOptions, ModelDir};
use crate::values::{positive, sequence_length};

/// Texts embedded from a file at a time: what one progress step and one write cover.
const CHUNK: usize = 1024;

#[derive(clap::Args)]
pub struct Embed {
    /// Model directory or Hugging Face hub id.
    pub model: String,
    /// Text to embed (repeat for several).
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    pub text: Vec<String>,
    /// Texts from a file instead: one per line (.txt), or a column (--text-column) of a CSV,
    /// TSV, JSONL or Parquet file; the vectors go to --output.
    #[arg(long, requires = "output")]
    pub input: Option<PathBuf>,
    /// Where the vectors of --input go: .npy (float32 rows in the input's order, the ids beside
    /// it in FILE.ids.json), .parquet (columns id, embedding) or .jsonl ({"id", "vector"}).
    #[arg(long, requires = "input")]
    pub output: Option<PathBuf>,
    /// --input: the column holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// --input: the column whose value names each row in the output (default: the row's number,
    /// from 0).
    #[arg(long)]
    pub id_column: Option<String>,
    /// --input's format; by default from its extension.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// --input: texts per forward pass.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,
    /// cls: last hidden state at `[CLS]`; pooler: tanh(dense(CLS)) as BERT's pooler gives it;
    /// mean: average over real tokens; last: the last real token. Default: as the checkpoint's
    /// sentence-transformers files say (`1_Pooling`), else cls.
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// Scale each vector to unit length (a sentence-transformers checkpoint with a Normalize
    /// module is normalised without it).
    #[arg(long)]
    pub normalize: bool,
    /// Longest text in tokens (longer ones are truncated). Default: 512, or the model's
    /// positions if fewer.
    #[arg(long, value_parser = sequence_length)]
    pub max_len: Option<usize>,
    #[command(flatten)]
    pub run: DeviceFlags,
}

impl Embed {
    /// Runs the job as `bertkit embed` does: the report on standard output, or the vectors of
    /// --input in --output.
    pub fn run(self) -> Result<()> {
        let args = self;
        let device = args.run.setup()?;
        let model = ModelDir::open(&args.model)?;
        let (input, output) = (args.input.as_deref(), args.output.as_deref());
        // The output and the data are checked before the model loads and anything is written.
        output.map(VectorWriter::check).transpose()?;
        let texts = input.map(|path| read_texts(&args, path)).transpose()?;
        let options = LoadOptions::inference(device, Autocast::off());
        let mut embedder = Embedder::load_as_saved(&model, args.pooling, Pooling::Cls, &options)?;
        if args.normalize {
            embedder = embedder.normalized(true);
        }
        if let Some(max_len) = args.max_len {
            model.check_max_len("max-len", max_len)?;
            embedder = embedder.max_len(max_len);
        }
        if let (Some(rows), Some(output)) = (texts, output) {
            return embed_file(&embedder, &rows, output, args.batch_size);
        }
        let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
        let out = embedder.embed(&texts)?;
        let rows: Vec<_> = (args.text.iter().zip(out.vectors).enumerate())
            .map(
                |(i, (text, v))| json!({"text": text, "tokens": out.tokens[i], "truncated": out.truncated[i], "vector": v}),
            )
            .collect();
        let report = json!({"model": model.dir, "pooling": embedder.pooling().name(),
            "normalized": embedder.is_normalized(), "dim": model.dims.hidden_size, "embeddings": rows});
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}

/// The rows of --input: the text, and the id column's value read as the example's second text.
fn read_texts(args: &Embed, path: &Path) -> Result<Vec<Example>> {
    let format = match args.format {
        Some(f) => f,
        None => Format::detect(path)?,
    };
    if format == Format::Lines && args.id_column.is_some() {
        refuse!("--id-column: {} is read as plain lines, which have no columns", path.display());
    }
    let columns = Columns { text: args.text_column.clone(), pair: args.id_column.clone(), label: LabelSource::None };
    let data = read_examples(path, Some(format), &columns, OnBadRow::Error)?;
    Ok(data.examples)
}

/// Embeds the rows a chunk at a time, each chunk written as it is done, with a progress bar.
fn embed_file(embedder: &Embedder, rows: &[Example], output: &Path, batch_size: usize) -> Result<()> {
    let mut writer = VectorWriter::create(output, rows.len(), embedder.dim() as usize)?;
    let bar = crate::progress::items_bar(rows.len() as u64, "texts");
    for (c, chunk) in rows.chunks(CHUNK).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        let ids: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, e)| e.pair.clone().unwrap_or_else(|| (c * CHUNK + i).to_string()))
            .collect();
        writer.write(&ids, &embedder.embed_many(&texts, batch_size)?)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    writer.finish()?;
    tracing::info!("wrote {} vectors of {} to {}", rows.len(), embedder.dim(), output.display());
    Ok(())
}
