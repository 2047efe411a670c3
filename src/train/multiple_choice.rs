//! The objective of fine-tuning a multiple-choice head: each batch a set of questions with all
//! their choices, cross-entropy over each question's choices, accuracy on held-out questions.

use std::path::Path;

use anyhow::Result;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::fingerprint::Fingerprint;
use super::trainer::{Objective, StepLoss};
use crate::data::multiple_choice::ChoiceSet;
use crate::data::{Sampling, epoch_batches};
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::predict::Evaluation;
use crate::predict::multiple_choice::Chooser;
use crate::task::{MultipleChoice, TaskKind};

/// Multiple-choice fine-tuning: a chooser, its training questions and held-out ones.
pub struct MultipleChoiceTraining {
    pub chooser: Chooser,
    pub train: ChoiceSet,
    pub eval: Option<ChoiceSet>,
    /// Questions per batch.
    pub batch_size: usize,
    pub sampling: Sampling,
}

impl Objective for MultipleChoiceTraining {
    fn var_store(&self) -> &VarStore {
        &self.chooser.vs
    }

    fn epoch_batches(&self, epoch: usize, seed: u64) -> Vec<Vec<usize>> {
        epoch_batches(&self.train.lengths(), self.batch_size, seed, epoch, self.sampling)
    }

    fn train_loss(&self, batch: &[usize], _seed: u64) -> Result<StepLoss> {
        let c = &self.chooser;
        let pairs = self.train.batch_pairs(batch);
        let inputs = c.collator().collate(&pairs).to_device(c.device);
        let labels = Tensor::from_slice(&self.train.labels(batch)).to_device(c.device);
        let logits = c.model.logits(&inputs, self.train.choices, ForwardOptions::train());
        Ok(StepLoss {
            loss: MultipleChoice::loss(&logits, &labels),
            denominator: Tensor::from(batch.len() as f64).to_kind(Kind::Double),
            examples: batch.len(),
            tokens: pairs.iter().map(|e| e.len()).sum(),
            padded_tokens: inputs.input_ids.numel(),
        })
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        let Some(set) = &self.eval else { return Ok(None) };
        let pairs_per_batch = self.batch_size * 2 * set.choices;
        self.chooser.evaluate_set(set, pairs_per_batch, Spread::Ranks).map(Some)
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.chooser.save(dir)
    }

    fn fingerprint(&self) -> String {
        let mut f = Fingerprint::new(TaskKind::MultipleChoice.name());
        for (q, pairs) in self.train.questions.iter().zip(self.train.pairs.chunks(self.train.choices.max(1))) {
            f.text(&q.id).ints([q.label.map_or(-1, |l| l as i64)].into_iter());
            for p in pairs {
                f.ints(p.ids.iter().map(|&i| i64::from(i)));
            }
        }
        f.finish()
    }

    fn default_metric(&self) -> &'static str {
        "accuracy"
    }
}
