//! The objective of fine-tuning a token-classification head: windows of tagged sentences, the
//! loss over their labelled tokens, and entity-level evaluation.

use std::path::Path;

use anyhow::Result;
use tch::Kind;
use tch::nn::VarStore;

use super::fingerprint::Fingerprint;
use super::trainer::{Objective, StepLoss};
use crate::data::{Encoded, Sampling, epoch_batches};
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::predict::{Evaluation, TaggedSet, Tagger};
use crate::task::{IGNORE_INDEX, TaskKind};

/// Token-classification fine-tuning: a tagger, its training windows and held-out sentences.
pub struct TokenClassification {
    pub tagger: Tagger,
    pub train: TaggedSet,
    pub eval: Option<TaggedSet>,
    pub batch_size: usize,
    pub sampling: Sampling,
}

impl Objective for TokenClassification {
    fn var_store(&self) -> &VarStore {
        &self.tagger.vs
    }

    fn epoch_batches(&self, epoch: usize, seed: u64) -> Vec<Vec<usize>> {
        epoch_batches(&self.train.lengths(), self.batch_size, seed, epoch, self.sampling)
    }

    fn train_loss(&self, batch: &[usize], _seed: u64) -> Result<StepLoss> {
        let t = &self.tagger;
        let refs: Vec<&Encoded> = batch.iter().map(|&i| &self.train.windows[i].encoded).collect();
        let inputs = t.collator().collate(&refs).to_device(t.device);
        let labels = self.train.label_tensor(batch);
        let denominator = labels.ne(IGNORE_INDEX).sum(Kind::Double);
        let logits = t.model.forward(&inputs, ForwardOptions::train());
        Ok(StepLoss {
            loss: t.model.loss(&logits, &labels.to_device(t.device), None),
            denominator,
            examples: batch.len(),
            tokens: refs.iter().map(|e| e.len()).sum(),
            padded_tokens: inputs.input_ids.numel(),
        })
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        self.eval.as_ref().map(|set| self.tagger.evaluate_set(set, self.batch_size * 2, Spread::Ranks)).transpose()
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.tagger.save(dir)
    }

    fn fingerprint(&self) -> String {
        let mut f = Fingerprint::new(TaskKind::TokenClassification.name());
        f.encoded(self.train.windows.iter().map(|w| &w.encoded));
        for labels in &self.train.labels {
            f.ints(labels.iter().copied());
        }
        f.finish()
    }

    fn default_metric(&self) -> &'static str {
        "f1"
    }
}
