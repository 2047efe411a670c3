//! Sentence vectors from any encoder: the hidden state at the first token, BERT's pooler, or the
//! mean of the real tokens (what sentence-transformers models such as all-MiniLM-L6-v2 expect).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use serde_json::json;
use tch::{Kind, Tensor};

use super::Evaluation;
use super::retrieval::evaluate_search;
use crate::data::{Encoded, eval_batches, tokenize};
use crate::encoder::{EncoderOutput, ForwardOptions, Inputs};
use crate::metrics::regression_report;
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
                let max_len = model.input_len(None, s.max_seq_length)?;
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

    /// The vectors of many texts, `batch_size` at a time in batches of similar lengths, in the
    /// texts' order.
    pub fn embed_many(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let items = tokenize(self.tokenizer(), texts, None, self.max_len)?.items;
        let (pooling, normalize) = (self.pooling, self.normalize);
        let vectors = match &self.model {
            Encoder::WithPooler(m) => embed_items(m, &items, pooling, batch_size, normalize)?,
            Encoder::Plain(m) => embed_items(m, &items, pooling, batch_size, normalize)?,
        };
        Ok(Vec::<Vec<f32>>::try_from(vectors)?)
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
    let vectors = pooling.pool(&states(m, &inputs), &inputs)?;
    let vectors = if normalize { unit_rows(&vectors) } else { vectors };
    let vectors = Vec::<Vec<f32>>::try_from(vectors.to_kind(Kind::Float).to_device(tch::Device::Cpu))?;
    let tokens = encodings.iter().map(|e| e.len()).collect();
    let truncated = encodings.iter().map(|e| !e.get_overflowing().is_empty()).collect();
    Ok(Embeddings { vectors, tokens, truncated })
}

/// The encoder's states for a batch, in the model's precision (`--precision`: autocast).
fn states<const P: bool>(m: &Pretrained<Bare<P>>, inputs: &Inputs) -> EncoderOutput {
    tch::no_grad(|| m.autocast.run(|| m.model.encoder().forward(inputs, ForwardOptions::eval())))
}

/// The vectors of tokenised texts (unit length if `normalize`), `[items, hidden]` on the CPU, in
/// batches of similar lengths (least padding; the order of the rows is the items').
pub fn embed_items<const P: bool>(
    m: &Pretrained<Bare<P>>,
    items: &[Encoded],
    pooling: Pooling,
    batch_size: usize,
    normalize: bool,
) -> Result<Tensor> {
    let lengths: Vec<usize> = items.iter().map(Encoded::len).collect();
    let mut out = Tensor::zeros([items.len() as i64, m.dims.hidden_size], (Kind::Float, tch::Device::Cpu));
    for batch in eval_batches(&lengths, batch_size) {
        let refs: Vec<&Encoded> = batch.iter().map(|&i| &items[i]).collect();
        let inputs = m.collator().collate(&refs).to_device(m.device);
        let vectors = pooling.pool(&states(m, &inputs), &inputs)?;
        let vectors = if normalize { unit_rows(&vectors) } else { vectors };
        let vectors = vectors.to_kind(Kind::Float).to_device(tch::Device::Cpu);
        let rows = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let _ = out.index_copy_(0, &rows, &vectors);
    }
    Ok(out)
}

/// Tokenised rows: one list per column (anchors or first texts, positives or second texts,
/// then each hard-negative column), and the pairs' scores for a scored loss.
pub struct PairSet {
    pub columns: Vec<Vec<Encoded>>,
    pub scores: Option<Vec<f32>>,
}

impl PairSet {
    pub fn len(&self) -> usize {
        self.columns[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens per row, all columns together (what `group_by_length` sorts by).
    pub fn lengths(&self) -> Vec<usize> {
        (0..self.len()).map(|i| self.columns.iter().map(|c| c[i].len()).sum()).collect()
    }
}

/// Held-out rows evaluated as `finetune --task embedding` and `evaluate` do: scored pairs by
/// the correlation of cosine and score, other rows as a search (`SearchSet`).
pub fn evaluate_pairs<const P: bool>(
    m: &Pretrained<Bare<P>>,
    set: &PairSet,
    pooling: Pooling,
    batch_size: usize,
) -> Result<Evaluation> {
    let embed = |items: &[Encoded]| embed_items(m, items, pooling, batch_size, true);
    Ok(match &set.scores {
        Some(gold) => similarity_evaluation(&embed(&set.columns[0])?, &embed(&set.columns[1])?, gold),
        None => {
            let search = SearchSet::of(set);
            evaluate_search(&embed(&search.queries)?, &embed(&search.corpus)?, &search.relevant)
        }
    })
}

/// Held-out scored pairs: Pearson and Spearman of each pair's cosine against its score (the
/// STS measures).
fn similarity_evaluation(a: &Tensor, b: &Tensor, gold: &[f32]) -> Evaluation {
    let cosine = Vec::<f64>::try_from((a * b).sum_dim_intlist(1, false, Kind::Double)).expect("1-d");
    let gold: Vec<f64> = gold.iter().map(|&g| g as f64).collect();
    let r = regression_report(&cosine, &gold);
    let metrics = BTreeMap::from([("pearson".to_string(), r.pearson), ("spearman".to_string(), r.spearman)]);
    let summary = format!("pairs {} | spearman {:.4} | pearson {:.4}", r.examples, r.spearman, r.pearson);
    Evaluation { report: json!({"pairs": r.examples, "metrics": metrics}), metrics, summary }
}

/// Held-out rows as a search: each distinct anchor a query, each distinct positive or hard
/// negative a passage, relevant where some row pairs the two.
struct SearchSet {
    queries: Vec<Encoded>,
    corpus: Vec<Encoded>,
    relevant: Vec<BTreeSet<usize>>,
}

impl SearchSet {
    fn of(set: &PairSet) -> SearchSet {
        let mut queries = Distinct::default();
        let mut corpus = Distinct::default();
        let mut relevant: Vec<BTreeSet<usize>> = Vec::new();
        for row in 0..set.len() {
            let q = queries.index(&set.columns[0][row]);
            let p = corpus.index(&set.columns[1][row]);
            for negatives in &set.columns[2..] {
                corpus.index(&negatives[row]);
            }
            relevant.resize(queries.items.len(), BTreeSet::new());
            relevant[q].insert(p);
        }
        SearchSet { queries: queries.items, corpus: corpus.items, relevant }
    }
}

/// Texts numbered in the order first seen, each once (the same ids: the same text).
#[derive(Default)]
struct Distinct {
    items: Vec<Encoded>,
    seen: BTreeMap<Vec<u32>, usize>,
}

impl Distinct {
    fn index(&mut self, item: &Encoded) -> usize {
        *self.seen.entry(item.ids.clone()).or_insert_with(|| {
            self.items.push(item.clone());
            self.items.len() - 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(id: u32) -> Encoded {
        Encoded { ids: vec![101, id, 102], type_ids: vec![0; 3] }
    }

    #[test]
    fn held_out_rows_become_queries_passages_and_judgements() {
        // Two rows share an anchor; a hard negative repeats another row's positive.
        let set = PairSet {
            columns: vec![
                vec![text(1), text(1), text(2)],
                vec![text(10), text(11), text(12)],
                vec![text(12), text(13), text(10)],
            ],
            scores: None,
        };
        let s = SearchSet::of(&set);
        assert_eq!((s.queries.len(), s.corpus.len()), (2, 4));
        assert_eq!(s.relevant, vec![BTreeSet::from([0, 2]), BTreeSet::from([1])]);
    }
}
