//! Sentence vectors from any encoder: the hidden state at the first token, BERT's pooler, or the
//! mean of the real tokens (what sentence-transformers models such as all-MiniLM-L6-v2 expect).

use anyhow::{Result, bail};
use tch::{Kind, Tensor};

use crate::data::{Encoded, eval_batches};
use crate::encoder::ForwardOptions;
use crate::pretrained::{self, LoadOptions, ModelDir, Pretrained, SentenceConfig};
pub use crate::task::embedding::Pooling;
use crate::task::embedding::unit_rows;
use crate::task::{Bare, TaskModel};

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

    /// Loaded as its sentence-transformers files say (pooling, normalisation, `max_seq_length`),
    /// `pooling` overriding theirs; a checkpoint without them pools by `pooling`, else `fallback`.
    pub fn load_as_saved(
        model: &ModelDir,
        pooling: Option<Pooling>,
        fallback: Pooling,
        options: &LoadOptions,
    ) -> Result<Embedder> {
        let saved = SentenceConfig::read(&model.dir)?;
        let pooling = pooling.or(saved.map(|s| s.pooling)).unwrap_or(fallback);
        let embedder = Embedder::load(model, pooling, options)?;
        Ok(match saved {
            Some(s) => {
                let positions = model.dims.max_positions as usize;
                let max_len = s.max_seq_length.map_or(embedder.max_len, |n| n.min(positions));
                embedder.normalized(s.normalize).max_len(max_len)
            }
            None => embedder,
        })
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

    /// How the tokens' states become the vector.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether vectors are scaled to unit length.
    pub fn is_normalized(&self) -> bool {
        self.normalize
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
    let vectors = pooling.pool(&out, &inputs)?;
    let vectors = if normalize { unit_rows(&vectors) } else { vectors };
    let vectors = Vec::<Vec<f32>>::try_from(vectors.to_kind(Kind::Float).to_device(tch::Device::Cpu))?;
    let tokens = encodings.iter().map(|e| e.len()).collect();
    let truncated = encodings.iter().map(|e| !e.get_overflowing().is_empty()).collect();
    Ok(Embeddings { vectors, tokens, truncated })
}

/// The unit vectors of tokenised texts, `[items, hidden]` on the CPU, in batches of similar
/// lengths (least padding; the order of the rows is the items').
pub fn embed_items<const P: bool>(
    m: &Pretrained<Bare<P>>,
    items: &[Encoded],
    pooling: Pooling,
    batch_size: usize,
) -> Result<Tensor> {
    let lengths: Vec<usize> = items.iter().map(Encoded::len).collect();
    let mut out = Tensor::zeros([items.len() as i64, m.dims.hidden_size], (Kind::Float, tch::Device::Cpu));
    for batch in eval_batches(&lengths, batch_size) {
        let refs: Vec<&Encoded> = batch.iter().map(|&i| &items[i]).collect();
        let inputs = m.collator().collate(&refs).to_device(m.device);
        let hidden = tch::no_grad(|| m.model.encoder().forward(&inputs, ForwardOptions::eval()));
        let vectors = unit_rows(&pooling.pool(&hidden, &inputs)?).to_kind(Kind::Float).to_device(tch::Device::Cpu);
        let rows = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let _ = out.index_copy_(0, &rows, &vectors);
    }
    Ok(out)
}
