//! The objective of training sentence embeddings: rows of texts (anchor and positive, with
//! hard negatives; or two texts and their similarity score), each column embedded by the
//! encoder and pooled, the loss over the batch (`task::embedding`); evaluation as search over
//! the held-out rows (or, for scored pairs, the correlation of cosine and score); the model
//! saved with sentence-transformers' files beside it.

use std::path::Path;

use anyhow::Result;
use tch::Tensor;
use tch::nn::VarStore;

use super::fingerprint::Fingerprint;
use super::trainer::{Objective, OwnBackward, StepLoss};
use crate::data::{Encoded, Sampling, epoch_batches};
use crate::encoder::ForwardOptions;
use crate::predict::Evaluation;
use crate::predict::embedding::{PairSet, evaluate_pairs};
use crate::pretrained::{Pretrained, SentenceConfig};
use crate::task::Bare;
use crate::task::embedding::{BatchEmbeddings, Duplicates, EmbeddingLoss, matryoshka};

/// How the embedding is trained: the loss and its settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbeddingTraining {
    pub loss: EmbeddingLoss,
    /// Cosines are multiplied by this before the softmax (ranking losses, CoSENT).
    pub scale: f64,
    /// Matryoshka: the loss summed over these leading sizes of the vector (empty: whole only).
    pub matryoshka_dims: Vec<i64>,
    /// GradCache: the batch embedded and backpropagated this many rows at a time (None: all
    /// at once).
    pub mini_batch: Option<usize>,
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
        let share = crate::distributed::shard(batch);
        let (mut columns, mut counts) = (Vec::new(), Counts::default());
        for column in &self.train.columns {
            let own = self.embed(column, &share.examples, &mut counts)?;
            columns.push(crate::distributed::gather_shares(&own, batch.len())?);
        }
        Ok(counts.step(self.loss(batch, columns), share.examples.len()))
    }

    fn train_and_backward(&self, batch: &[usize], seed: u64, backward: &OwnBackward) -> Option<Result<StepLoss>> {
        let size = self.training.mini_batch?;
        Some(self.cached_step(batch, seed, backward, size))
    }

    /// Every anchor's negatives are the whole batch's candidates, on every rank.
    fn whole_batch_loss(&self) -> bool {
        true
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        let pooling = self.sentence.pooling;
        self.eval.as_ref().map(|set| evaluate_pairs(&self.model, set, pooling, self.batch_size * 2)).transpose()
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

/// Tokens seen and computed in a step.
#[derive(Default)]
struct Counts {
    tokens: usize,
    padded_tokens: usize,
}

impl Counts {
    fn step(self, loss: Tensor, examples: usize) -> StepLoss {
        let denominator = Tensor::from(examples as f64);
        StepLoss { loss, denominator, examples, tokens: self.tokens, padded_tokens: self.padded_tokens }
    }
}

/// The seed of mini-batch `part` of column `column` in a cached step: its dropout masks, drawn
/// once without a graph and again with one.
pub fn part_seed(seed: u64, column: usize, part: usize) -> i64 {
    (seed ^ ((column as u64) << 32 | part as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64
}

impl SentenceEmbedding {
    /// The pooled vectors of `rows` of one column, with dropout and a graph.
    fn embed(&self, column: &[Encoded], rows: &[usize], counts: &mut Counts) -> Result<Tensor> {
        let m = &self.model;
        let refs: Vec<&Encoded> = rows.iter().map(|&i| &column[i]).collect();
        let inputs = m.collator().collate(&refs).to_device(m.device);
        let out = m.model.encoder.forward(&inputs, ForwardOptions::train());
        counts.tokens += refs.iter().map(|e| e.len()).sum::<usize>();
        counts.padded_tokens += inputs.input_ids.numel();
        self.sentence.pooling.pool(&out, &inputs)
    }

    /// The loss of a batch from its columns' vectors.
    fn loss(&self, batch: &[usize], columns: Vec<Tensor>) -> Tensor {
        let ids: Vec<Vec<&[u32]>> =
            self.train.columns.iter().map(|c| batch.iter().map(|&i| c[i].ids.as_slice()).collect()).collect();
        let duplicates = Duplicates::of(&ids);
        let device = self.model.device;
        let scores = self
            .train
            .scores
            .as_ref()
            .map(|s| Tensor::from_slice(&batch.iter().map(|&i| s[i]).collect::<Vec<f32>>()).to_device(device));
        let t = &self.training;
        matryoshka(&BatchEmbeddings { columns }, &t.matryoshka_dims, |e| {
            t.loss.loss(e, scores.as_ref(), &duplicates, t.scale)
        })
    }

    /// GradCache (Gao et al. 2021), as sentence-transformers' cached losses do it: every column
    /// of this rank's share embedded `size` rows at a time without a graph; the loss over the
    /// whole batch (the other ranks' vectors gathered) and its gradient with respect to this
    /// rank's vectors; then each part embedded again with its graph (the same dropout masks,
    /// from `part_seed`) and backpropagated from its share of that gradient. The gradients equal
    /// the uncached loss's; memory holds one part's graph at a time.
    fn cached_step(&self, batch: &[usize], seed: u64, backward: &OwnBackward, size: usize) -> Result<StepLoss> {
        let share = crate::distributed::shard(batch);
        // Each rank's parts draw their own dropout masks (rank 0's are one process's).
        let seed = crate::distributed::rank_seed(seed);
        let parts: Vec<&[usize]> = share.examples.chunks(size).collect();
        let mut counts = Counts::default();
        let (mut own, mut columns) = (Vec::new(), Vec::new());
        for (c, column) in self.train.columns.iter().enumerate() {
            let mut vectors = Vec::new();
            for (k, part) in parts.iter().enumerate() {
                tch::manual_seed(part_seed(seed, c, k));
                vectors.push(tch::no_grad(|| self.embed(column, part, &mut counts))?);
            }
            let mine = Tensor::cat(&vectors, 0).set_requires_grad(true);
            columns.push(crate::distributed::gather_shares(&mine, batch.len())?);
            own.push(mine);
        }
        let loss = self.loss(batch, columns);
        let grads = Tensor::run_backward(&[&loss * backward.factor], &own, false, false);
        let last = (self.train.columns.len() - 1, parts.len() - 1);
        for (c, column) in self.train.columns.iter().enumerate() {
            for (k, part) in parts.iter().enumerate() {
                tch::manual_seed(part_seed(seed, c, k));
                // The same tokens again: counted once, in the first pass.
                let vectors = self.embed(column, part, &mut Counts::default())?;
                let part_grad = grads[c].narrow(0, (k * size) as i64, part.len() as i64);
                let product = (vectors * part_grad).sum(tch::Kind::Float);
                if (c, k) == last {
                    backward.before_last(&product)?;
                }
                product.backward();
            }
        }
        Ok(counts.step(loss.detach(), share.examples.len()))
    }
}
