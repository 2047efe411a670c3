//! `bertkit embed`: sentence vectors from any encoder, as JSON.

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::json;
use tch::{Kind, Tensor};

use crate::device::{Autocast, DeviceFlags};
use crate::encoder::{ForwardOptions, Inputs};
use crate::pretrained::{self, LoadOptions, ModelDir, Pretrained};
use crate::task::{Bare, TaskModel};
use crate::values::sequence_length;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory or Hugging Face hub id.
    model: String,
    /// Text to embed (repeat for several).
    #[arg(long, required = true)]
    text: Vec<String>,
    /// cls: last hidden state at `[CLS]`; pooler: tanh(dense(CLS)) as BERT's pooler gives it;
    /// mean: average over real tokens (what sentence-transformers models such as MiniLM expect).
    #[arg(long, value_enum, default_value = "cls")]
    pooling: Pooling,
    /// Scale each vector to unit length.
    #[arg(long)]
    normalize: bool,
    /// Longest text in tokens (longer ones are truncated). Default: 512, or the model's
    /// positions if fewer.
    #[arg(long, value_parser = sequence_length)]
    max_len: Option<usize>,
    #[command(flatten)]
    run: DeviceFlags,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Pooling {
    Cls,
    Pooler,
    Mean,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.run.setup()?;
    let model = ModelDir::open(&args.model)?;
    let max_len = model.max_len(args.max_len)?;
    let options = LoadOptions::inference(device, Autocast::off());
    let texts: Vec<&str> = args.text.iter().map(String::as_str).collect();
    // Only --pooling pooler builds the pooler (a checkpoint without one would warn otherwise).
    let (vectors, tokens) = match args.pooling {
        Pooling::Pooler => {
            let encoder: Pretrained<Bare<true>> = pretrained::load(&model, &options)?;
            if encoder.report.initialised.iter().any(|n| n.contains("pooler")) {
                bail!("{}: has no pooler weights; use --pooling cls or mean", model.dir.display());
            }
            embed(&encoder, &texts, args.pooling, args.normalize, max_len)?
        }
        _ => embed(&pretrained::load::<Bare<false>>(&model, &options)?, &texts, args.pooling, args.normalize, max_len)?,
    };
    let rows: Vec<_> = args
        .text
        .iter()
        .zip(tokens)
        .zip(vectors)
        .map(|((text, (n, truncated)), v)| json!({"text": text, "tokens": n, "truncated": truncated, "vector": v}))
        .collect();
    let pooling = args.pooling.to_possible_value().map(|v| v.get_name().to_string());
    let report = json!({"model": model.dir, "pooling": pooling, "dim": model.dims.hidden_size, "embeddings": rows});
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Each text's vector, and its length in tokens and whether it was truncated.
pub type Embeddings = (Vec<Vec<f32>>, Vec<(usize, bool)>);

/// One vector per text (unit length if `normalize`), texts truncated at `max_len` tokens.
pub fn embed<const P: bool>(
    m: &Pretrained<Bare<P>>,
    texts: &[&str],
    pooling: Pooling,
    normalize: bool,
    max_len: usize,
) -> Result<Embeddings> {
    let encodings = m.tokenizer.encode_batch(texts, None, max_len)?;
    let inputs = m.collator().collate_encodings(&encodings).to_device(m.device);
    let out = tch::no_grad(|| m.model.encoder().forward(&inputs, ForwardOptions::eval()));
    let vectors = match pooling {
        Pooling::Cls => out.last_hidden_state.select(1, 0),
        Pooling::Pooler => out.pooled.context("this model has no pooler; use --pooling cls or mean")?,
        Pooling::Mean => mean_over_tokens(&out.last_hidden_state, &inputs),
    };
    let vectors =
        if normalize { &vectors / vectors.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12) } else { vectors };
    let vectors = Vec::<Vec<f32>>::try_from(vectors.to_kind(Kind::Float).to_device(tch::Device::Cpu))?;
    let tokens = encodings.iter().map(|e| (e.len(), !e.get_overflowing().is_empty())).collect();
    Ok((vectors, tokens))
}

/// The average of the real tokens' hidden states (what sentence-transformers models expect).
fn mean_over_tokens(hidden: &Tensor, inputs: &Inputs) -> Tensor {
    let mask = inputs.attention_mask.to_kind(Kind::Float).unsqueeze(-1);
    (hidden * &mask).sum_dim_intlist(1, false, Kind::Float)
        / mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-9)
}
