use anyhow::{Result, bail};
use clap::ValueEnum;
use serde_json::json;
use tch::Kind;
use tch::nn::VarStore;

use super::run_flags::RunFlags;
use crate::checkpoint::Checkpoint;
use crate::data::Collator;
use crate::model::{Bert, ForwardOptions};
use crate::tokenizer::BertTokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory or Hugging Face hub id.
    model: String,
    /// Text to embed (repeat for several).
    #[arg(long, required = true)]
    text: Vec<String>,
    /// cls: last hidden state at [CLS]; pooler: tanh(dense(CLS)) as BERT's pooler gives it;
    /// mean: average over real tokens (what sentence-transformers models such as MiniLM expect).
    #[arg(long, value_enum, default_value = "cls")]
    pooling: Pooling,
    /// Scale each vector to unit length.
    #[arg(long)]
    normalize: bool,
    #[arg(long, default_value_t = 512)]
    max_len: usize,
    #[command(flatten)]
    run: RunFlags,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum Pooling {
    Cls,
    Pooler,
    Mean,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.run.setup()?;
    let ckpt = Checkpoint::open(&args.model)?;
    let tokenizer = BertTokenizer::from_dir(&ckpt.dir)?;
    tokenizer.check_fits(ckpt.config.vocab_size, &ckpt.dir)?;
    let with_pooler = matches!(args.pooling, Pooling::Pooler);
    let vs = VarStore::new(device);
    let bert = Bert::new(vs.root().sub("bert"), &ckpt.config, with_pooler);
    let report = ckpt.load_into(&vs)?;
    if with_pooler && report.initialised.iter().any(|n| n.starts_with("bert.pooler.")) {
        bail!("{}: has no pooler weights; use --pooling cls or mean", ckpt.dir.display());
    }
    let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
    let encodings = tokenizer.encode_batch(&texts, None, args.max_len)?;
    let inputs = Collator { pad_id: tokenizer.pad_id }.collate_encodings(&encodings).to_device(device);
    let out = tch::no_grad(|| bert.forward(&inputs, ForwardOptions::eval()));
    let vectors = match args.pooling {
        Pooling::Cls => out.last_hidden_state.select(1, 0),
        Pooling::Pooler => out.pooled.expect("built with a pooler"),
        Pooling::Mean => {
            let mask = inputs.attention_mask.to_kind(Kind::Float).unsqueeze(-1);
            (&out.last_hidden_state * &mask).sum_dim_intlist(1, false, Kind::Float)
                / mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-9)
        }
    };
    let vectors = if args.normalize {
        let norm = vectors.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        vectors / norm
    } else {
        vectors
    };
    let vectors = Vec::<Vec<f32>>::try_from(vectors.to_kind(Kind::Float).to_device(tch::Device::Cpu))?;
    let rows: Vec<_> = texts
        .iter()
        .zip(&encodings)
        .zip(vectors)
        .map(|((text, enc), v)| json!({"text": text, "tokens": enc.len(), "truncated": !enc.get_overflowing().is_empty(), "vector": v}))
        .collect();
    println!(
        "{}",
        serde_json::to_string(
            &json!({"model": ckpt.dir, "pooling": args.pooling.to_possible_value().map(|v| v.get_name().to_string()), "dim": ckpt.config.hidden_size, "embeddings": rows})
        )?
    );
    Ok(())
}
