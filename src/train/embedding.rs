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
use super::trainer::{Objective, StepLoss};
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
