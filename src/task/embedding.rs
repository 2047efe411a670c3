//! Sentence embeddings: how a sequence's hidden states become one vector (`Pooling`), and the
//! losses that train an encoder to place related texts close together, defined as
//! sentence-transformers defines them (MultipleNegativesRankingLoss, CoSENTLoss,
//! CosineSimilarityLoss, MatryoshkaLoss) so the same data and settings train the same model.

use anyhow::{Context, Result};
use tch::{Kind, Reduction, Tensor};

use crate::encoder::{EncoderOutput, Inputs};

/// How a sequence's hidden states become one vector.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The last hidden state at the first token (`[CLS]`).
    Cls,
    /// tanh(dense(CLS)), as BERT's pooler gives it (the checkpoint must have one).
    Pooler,
    /// The average over the real tokens.
    Mean,
    /// The last hidden state at the last real token (sentence-transformers' `lasttoken`).
    Last,
}

impl Pooling {
    /// The vector of each sequence of a forward pass, `[batch, hidden]`.
    pub fn pool(self, out: &EncoderOutput, inputs: &Inputs) -> Result<Tensor> {
        let hidden = &out.last_hidden_state;
        Ok(match self {
            Pooling::Cls => hidden.select(1, 0),
            Pooling::Pooler => {
                out.pooled.as_ref().context("this model has no pooler; use --pooling cls or mean")?.shallow_clone()
            }
            Pooling::Mean => {
                let mask = inputs.attention_mask.to_kind(hidden.kind()).unsqueeze(-1);
                (hidden * &mask).sum_dim_intlist(1, false, hidden.kind())
                    / mask.sum_dim_intlist(1, false, hidden.kind()).clamp_min(1e-9)
            }
            Pooling::Last => {
                // Padding is on the right: the last real token is at length - 1.
                let last = inputs.attention_mask.sum_dim_intlist(1, false, Kind::Int64) - 1;
                let index = last.view([-1, 1, 1]).expand([-1, 1, hidden.size()[2]], false);
                hidden.gather(1, &index, false).squeeze_dim(1)
            }
        })
    }

    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Pooler => "pooler",
            Pooling::Mean => "mean",
            Pooling::Last => "last",
        }
    }
}

/// Each row scaled to unit length (cosine similarity is then a dot product).
pub fn unit_rows(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}

/// The cosine similarity of every row of `a` with every row of `b`, `[a rows, b rows]`.
pub fn cosine_matrix(a: &Tensor, b: &Tensor) -> Tensor {
    unit_rows(a).matmul(&unit_rows(b).tr())
}

/// What an embedding model is trained on, and with which loss.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddingLoss {
    /// (anchor, positive[, hard negatives]) rows; every other row's positive and every hard
    /// negative in the batch is a negative of the anchor (MultipleNegativesRankingLoss).
    Mnrl,
    /// The same, plus each positive choosing its anchor among the batch's anchors, the two
    /// cross-entropies averaged (MultipleNegativesSymmetricRankingLoss).
    MnrlSymmetric,
    /// Scored pairs: every pair of pairs in the batch ranked by their cosines as by their
    /// scores (CoSENTLoss).
    Cosent,
    /// Scored pairs: mean squared error between the cosine and the score (CosineSimilarityLoss).
    CosineMse,
}

impl EmbeddingLoss {
    /// Whether the rows carry a score (scored pairs) rather than a positive.
    pub fn scored(self) -> bool {
        matches!(self, EmbeddingLoss::Cosent | EmbeddingLoss::CosineMse)
    }
}

/// The embeddings of one training batch: one `[batch, dim]` tensor per column (anchor,
/// positive or second text, then each hard-negative column).
pub struct BatchEmbeddings {
    pub columns: Vec<Tensor>,
}

/// Which candidates of a ranking batch are not negatives of an anchor although they are not its
/// own positive: the same text as its positive, or the positive of another row with the same
/// anchor text (a query asked twice). Backwards (symmetric), rows that share the anchor or the
/// positive text are not each other's negatives. sentence-transformers leaves this to its
/// `NO_DUPLICATES` sampler, which keeps such rows out of one batch.
pub struct Duplicates {
    /// `[batch, batch x candidate columns]`, true where masked.
    pub candidates: Tensor,
    /// `[batch, batch]`: positive i against anchor j, true where masked.
    pub anchors: Tensor,
}

impl Duplicates {
    /// From each column's token ids (`columns[0]` anchors, `columns[1]` positives, then hard
    /// negatives): equal ids are the same text as the model reads it.
    pub fn of<T: PartialEq>(columns: &[Vec<T>]) -> Duplicates {
        let (anchor, positive) = (&columns[0], &columns[1]);
        let batch = anchor.len();
        let candidates: Vec<&T> = columns[1..].iter().flatten().collect();
        let mut masked = vec![false; batch * candidates.len()];
        for i in 0..batch {
            for (j, c) in candidates.iter().enumerate() {
                let same_query = j < batch && anchor[j] == anchor[i];
                masked[i * candidates.len() + j] = j != i && (**c == positive[i] || same_query);
            }
        }
        let same_pair = |i: usize, j: usize| i != j && (anchor[i] == anchor[j] || positive[i] == positive[j]);
        let anchors: Vec<bool> = (0..batch * batch).map(|k| same_pair(k / batch, k % batch)).collect();
        let mask = |v: &[bool], cols: usize| Tensor::from_slice(v).view([batch as i64, cols as i64]);
        Duplicates { candidates: mask(&masked, candidates.len()), anchors: mask(&anchors, batch) }
    }
}

impl EmbeddingLoss {
    /// The mean loss of a batch. `scores` holds the pairs' gold similarity (scored losses);
    /// `scale` multiplies cosines before a softmax (ranking losses and CoSENT).
    pub fn loss(self, e: &BatchEmbeddings, scores: Option<&Tensor>, duplicates: &Duplicates, scale: f64) -> Tensor {
        match self {
            EmbeddingLoss::Mnrl => ranking_loss(e, duplicates, scale, false),
            EmbeddingLoss::MnrlSymmetric => ranking_loss(e, duplicates, scale, true),
            EmbeddingLoss::Cosent => cosent_loss(&e.columns[0], &e.columns[1], scores.expect("scored"), scale),
            EmbeddingLoss::CosineMse => {
                let cosine =
                    (unit_rows(&e.columns[0]) * unit_rows(&e.columns[1])).sum_dim_intlist(1, false, Kind::Float);
                cosine.mse_loss(scores.expect("scored"), Reduction::Mean)
            }
        }
    }
}

/// Cross-entropy of each anchor choosing its positive among all candidates (positives, then
/// each hard-negative column), candidates that repeat its positive masked out; symmetric also
/// averages in each positive choosing its anchor among the anchors.
fn ranking_loss(e: &BatchEmbeddings, duplicates: &Duplicates, scale: f64, symmetric: bool) -> Tensor {
    let (anchors, positives) = (&e.columns[0], &e.columns[1]);
    let candidates = Tensor::cat(&e.columns[1..], 0);
    let batch = anchors.size()[0];
    let rows = Tensor::arange(batch, (Kind::Int64, anchors.device()));
    let forward = (cosine_matrix(anchors, &candidates) * scale)
        .to_kind(Kind::Float)
        .masked_fill(&duplicates.candidates.to_device(anchors.device()), f64::NEG_INFINITY);
    let positive = forward.gather(1, &rows.unsqueeze(1), false).squeeze_dim(1);
    let mut log_z = forward.logsumexp([1], false);
    if symmetric {
        let backward = (cosine_matrix(positives, anchors) * scale)
            .to_kind(Kind::Float)
            .masked_fill(&duplicates.anchors.to_device(anchors.device()), f64::NEG_INFINITY);
        log_z = (log_z + backward.logsumexp([1], false)) / 2.0;
    }
    (log_z - positive).mean(Kind::Float)
}

/// CoSENT: log(1 + sum over pairs (i, j) with score_i > score_j of exp(scale (cos_j - cos_i))).
fn cosent_loss(a: &Tensor, b: &Tensor, scores: &Tensor, scale: f64) -> Tensor {
    let cosine = (unit_rows(a) * unit_rows(b)).sum_dim_intlist(1, false, Kind::Float) * scale;
    let differences = cosine.unsqueeze(0) - cosine.unsqueeze(1); // [i, j] = cos_j - cos_i
    let ranked = scores.unsqueeze(1).gt_tensor(&scores.unsqueeze(0)); // score_i > score_j
    let terms = differences.masked_fill(&ranked.logical_not(), f64::NEG_INFINITY).view([-1]);
    Tensor::cat(&[Tensor::zeros([1], (Kind::Float, a.device())), terms], 0).logsumexp([0], false)
}

/// The loss summed over the leading `dims` of every embedding (Matryoshka representation
/// learning: each prefix of the vector is itself an embedding); the whole vector alone without.
pub fn matryoshka(e: &BatchEmbeddings, dims: &[i64], loss: impl Fn(&BatchEmbeddings) -> Tensor) -> Tensor {
    if dims.is_empty() {
        return loss(e);
    }
    let truncated = |d: i64| BatchEmbeddings { columns: e.columns.iter().map(|c| c.narrow(1, 0, d)).collect() };
    dims.iter().map(|&d| loss(&truncated(d))).reduce(|a, b| a + b).expect("at least one dimension")
}
