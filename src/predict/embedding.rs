//! Sentence vectors from any encoder: the hidden state at the first token, BERT's pooler, or the
//! mean of the real tokens (what sentence-transformers models such as all-MiniLM-L6-v2 expect).

use anyhow::{Context, Result, bail};
use tch::{Kind, Tensor};

use crate::encoder::{ForwardOptions, Inputs};
use crate::pretrained::{self, LoadOptions, ModelDir, Pretrained};
use crate::task::{Bare, TaskModel};

/// How a sequence's hidden states become one vector.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Pooling {
    /// The last hidden state at the first token (`[CLS]`).
    Cls,
    /// tanh(dense(CLS)), as BERT's pooler gives it (the checkpoint must have one).
    Pooler,
    /// The average over the real tokens.
    Mean,
}

/// Each text's vector, its length in tokens and whether it was truncated.
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: Vec<usize>,
    pub truncated: Vec<bool>,
}

/// An encoder loaded to embed texts. Only `Pooling::Pooler` builds the pooler, so a checkpoint
/// without one loads silently for the other two.
///
/// ```
/// use bertkit::predict::{Embedder, Pooling};
/// use bertkit::pretrained::{LoadOptions, ModelDir};
///
/// let model = ModelDir::open("tests/fixtures/tiny-bert")?;
/// let embedder = Embedder::load(&model, Pooling::Mean, &LoadOptions::default())?.normalized(true);
/// let out = embedder.embed(&["a short text", "another one"])?;
/// assert_eq!(out.vectors.len(), 2);
/// assert_eq!(out.vectors[0].len() as i64, embedder.dim());
/// # anyhow::Ok(())
/// ```
pub struct Embedder {
    model: Encoder,
    pooling: Pooling,
    normalize: bool,
    max_len: usize,
}

enum Encoder {
    WithPooler(Pretrained<Bare<true>>),
    Plain(Pretrained<Bare<false>>),
}

impl Embedder {
    /// Loads the encoder of `model` (any head it has is ignored); texts are truncated at the
    /// model's default length (`ModelDir::max_len`).
    pub fn load(model: &ModelDir, pooling: Pooling, options: &LoadOptions) -> Result<Embedder> {
        let max_len = model.max_len(None)?;
        let encoder = if pooling == Pooling::Pooler {
            let encoder: Pretrained<Bare<true>> = pretrained::load(model, options)?;
            if encoder.report.initialised.iter().any(|n| n.contains("pooler")) {
                bail!("{}: has no pooler weights; use --pooling cls or mean", model.dir.display());
            }
            Encoder::WithPooler(encoder)
        } else {
            Encoder::Plain(pretrained::load(model, options)?)
        };
        Ok(Embedder { model: encoder, pooling, normalize: false, max_len })
    }

    /// Scales each vector to unit length (cosine similarity is then a dot product).
    pub fn normalized(mut self, normalize: bool) -> Self {
        self.normalize = normalize;
        self
    }

    /// Truncates texts at `max_len` tokens instead of the model's default.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The length of each vector.
    pub fn dim(&self) -> i64 {
        match &self.model {
            Encoder::WithPooler(m) => m.dims.hidden_size,
            Encoder::Plain(m) => m.dims.hidden_size,
        }
    }

    /// The tokenizer the texts go through.
    pub fn tokenizer(&self) -> &crate::tokenizer::Tokenizer {
        match &self.model {
            Encoder::WithPooler(m) => &m.tokenizer,
            Encoder::Plain(m) => &m.tokenizer,
        }
    }

    /// One vector per text, all texts in one forward pass.
    pub fn embed(&self, texts: &[&str]) -> Result<Embeddings> {
        match &self.model {
            Encoder::WithPooler(m) => embed(m, texts, self.pooling, self.normalize, self.max_len),
            Encoder::Plain(m) => embed(m, texts, self.pooling, self.normalize, self.max_len),
        }
    }
}

fn embed<const P: bool>(
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
    let tokens = encodings.iter().map(|e| e.len()).collect();
    let truncated = encodings.iter().map(|e| !e.get_overflowing().is_empty()).collect();
    Ok(Embeddings { vectors, tokens, truncated })
}

/// The average of the real tokens' hidden states (what sentence-transformers models expect).
fn mean_over_tokens(hidden: &Tensor, inputs: &Inputs) -> Tensor {
    let mask = inputs.attention_mask.to_kind(Kind::Float).unsqueeze(-1);
    (hidden * &mask).sum_dim_intlist(1, false, Kind::Float)
        / mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-9)
}
