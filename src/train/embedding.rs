//! The objective of training sentence embeddings: rows of texts (anchor and positive, with
//! hard negatives; or two texts and their similarity score), each column embedded by the
//! encoder and pooled, the loss over the batch (`task::embedding`); evaluation as search over
//! the held-out rows (or, for scored pairs, the correlation of cosine and score); the model
//! saved with sentence-transformers' files beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use serde_json::json;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::fingerprint::Fingerprint;
use super::trainer::{Objective, StepLoss};
use crate::data::{Encoded, Sampling, epoch_batches};
use crate::encoder::ForwardOptions;
use crate::metrics::regression_report;
use crate::predict::Evaluation;
use crate::predict::embedding::embed_items;
use crate::predict::retrieval::evaluate_search;
use crate::pretrained::{Pretrained, SentenceConfig};
use crate::task::Bare;
use crate::task::embedding::{BatchEmbeddings, Duplicates, EmbeddingLoss, matryoshka};

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
    fn lengths(&self) -> Vec<usize> {
        (0..self.len()).map(|i| self.columns.iter().map(|c| c[i].len()).sum()).collect()
    }
}

/// How the embedding is trained: the loss and its settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbeddingTraining {
    pub loss: EmbeddingLoss,
    /// Cosines are multiplied by this before the softmax (ranking losses, CoSENT).
    pub scale: f64,
    /// Matryoshka: the loss summed over these leading sizes of the vector (empty: whole only).
    pub matryoshka_dims: Vec<i64>,
}

/// Training = an encoder, how it pools, its rows and (optionally) held-out rows.
pub struct SentenceEmbedding {
    pub model: Pretrained<Bare<false>>,
    /// How the model is used and saved (`1_Pooling`, `2_Normalize`, `max_seq_length`).
    pub sentence: SentenceConfig,
    pub training: EmbeddingTraining,
    pub train: PairSet,
    pub eval: Option<PairSet>,
    pub batch_size: usize,
    pub sampling: Sampling,
}

impl Objective for SentenceEmbedding {
    fn var_store(&self) -> &VarStore {
        &self.model.vs
    }

    fn epoch_batches(&self, epoch: usize, seed: u64) -> Vec<Vec<usize>> {
        epoch_batches(&self.train.lengths(), self.batch_size, seed, epoch, self.sampling)
    }

    fn train_loss(&self, batch: &[usize], _seed: u64) -> Result<StepLoss> {
        let m = &self.model;
        let (mut columns, mut tokens, mut padded_tokens) = (Vec::new(), 0, 0);
        for column in &self.train.columns {
            let refs: Vec<&Encoded> = batch.iter().map(|&i| &column[i]).collect();
            let inputs = m.collator().collate(&refs).to_device(m.device);
            let out = m.model.encoder.forward(&inputs, ForwardOptions::train());
            columns.push(self.sentence.pooling.pool(&out, &inputs)?);
            tokens += refs.iter().map(|e| e.len()).sum::<usize>();
            padded_tokens += inputs.input_ids.numel();
        }
        let ids: Vec<Vec<&[u32]>> =
            self.train.columns.iter().map(|c| batch.iter().map(|&i| c[i].ids.as_slice()).collect()).collect();
        let duplicates = Duplicates::of(&ids);
        let scores = self
            .train
            .scores
            .as_ref()
            .map(|s| Tensor::from_slice(&batch.iter().map(|&i| s[i]).collect::<Vec<f32>>()).to_device(m.device));
        let t = &self.training;
        let loss = matryoshka(&BatchEmbeddings { columns }, &t.matryoshka_dims, |e| {
            t.loss.loss(e, scores.as_ref(), &duplicates, t.scale)
        });
        Ok(StepLoss {
            loss,
            denominator: Tensor::from(batch.len() as f64),
            examples: batch.len(),
            tokens,
            padded_tokens,
        })
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        let Some(set) = &self.eval else { return Ok(None) };
        let embed = |items: &[Encoded]| embed_items(&self.model, items, self.sentence.pooling, self.batch_size * 2);
        Ok(Some(match &set.scores {
            Some(gold) => similarity_evaluation(&embed(&set.columns[0])?, &embed(&set.columns[1])?, gold),
            None => {
                let search = SearchSet::of(set);
                evaluate_search(&embed(&search.queries)?, &embed(&search.corpus)?, &search.relevant)
            }
        }))
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.model.save(dir)?;
        self.sentence.write(dir, self.model.dims.hidden_size)
    }

    fn fingerprint(&self) -> String {
        let mut f = Fingerprint::new("embedding");
        for column in &self.train.columns {
            f.encoded(column.iter());
        }
        if let Some(scores) = &self.train.scores {
            f.floats(scores);
        }
        f.text(&serde_json::to_string(&self.training).expect("plain settings"));
        f.text(self.sentence.pooling.name());
        f.finish()
    }

    fn default_metric(&self) -> &'static str {
        if self.training.loss.scored() { "spearman" } else { "ndcg_at_10" }
    }
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
