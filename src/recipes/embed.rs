//! `bertkit embed`: sentence vectors from any encoder, as JSON.

use anyhow::Result;
use serde_json::json;

use crate::device::{Autocast, DeviceFlags};
use crate::predict::{Embedder, Pooling};
use crate::pretrained::{LoadOptions, ModelDir};
use crate::values::sequence_length;

#[derive(clap::Args)]
pub struct Embed {
    /// Model directory or Hugging Face hub id.
    pub model: String,
    /// Text to embed (repeat for several).
    #[arg(long, required = true)]
    pub text: Vec<String>,
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
    /// Runs the job as `bertkit embed` does, its report on standard output.
    pub fn run(self) -> Result<()> {
        let args = self;
        let device = args.run.setup()?;
        let model = ModelDir::open(&args.model)?;
        let options = LoadOptions::inference(device, Autocast::off());
        let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
        let mut embedder = Embedder::load_as_saved(&model, args.pooling, Pooling::Cls, &options)?;
        if args.normalize {
            embedder = embedder.normalized(true);
        }
        if let Some(max_len) = args.max_len {
            model.check_max_len("max-len", max_len)?;
            embedder = embedder.max_len(max_len);
        }
        let out = embedder.embed(&texts)?;
        let rows: Vec<_> = (args.text.iter().zip(out.vectors).enumerate())
            .map(
                |(i, (text, v))| json!({"text": text, "tokens": out.tokens[i], "truncated": out.truncated[i], "vector": v}),
            )
            .collect();
        let report = json!({"model": model.dir, "pooling": embedder.pooling().name(), "normalized": embedder.is_normalized(), "dim": model.dims.hidden_size, "embeddings": rows});
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    }
}
