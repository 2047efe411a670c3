//! The objective of further pretraining (masked-language modelling): blocks of a corpus masked
//! afresh each step, the loss at the masked positions, and held-out evaluation.

use std::path::Path;

use anyhow::Result;
use tch::Tensor;
use tch::nn::VarStore;

use super::fingerprint::Fingerprint;
use super::trainer::{Objective, StepLoss};
use crate::data::masking::Masker;
use crate::data::{Sampling, epoch_batches};
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::predict::{Blocks, Evaluation, MaskedLanguageModel};

/// Further pretraining = an MLM model, training blocks, optional held-out blocks.
pub struct MaskedLanguageModelling<'a> {
    pub mlm: MaskedLanguageModel,
    pub masker: Masker,
    pub train: Blocks<'a>,
    pub eval: Option<Blocks<'a>>,
    pub batch_size: usize,
    pub sampling: Sampling,
}

impl Objective for MaskedLanguageModelling<'_> {
    fn var_store(&self) -> &VarStore {
        &self.mlm.vs
    }

    fn epoch_batches(&self, epoch: usize, seed: u64) -> Vec<Vec<usize>> {
        epoch_batches(&self.train.lengths(), self.batch_size, seed, epoch, self.sampling)
    }

    fn train_loss(&self, batch: &[usize], seed: u64) -> Result<StepLoss> {
        // Dynamic masking: new masks every step, the same ones when a run is resumed.
        let (inputs, masked, tokens) = self.mlm.masked_batch(&self.masker, &self.train, batch, seed);
        let out = self.mlm.model.forward_masked(&inputs, &masked, ForwardOptions::train());
        let denominator = Tensor::from(out.targets.numel() as f64);
        Ok(StepLoss {
            loss: out.loss,
            denominator,
            examples: batch.len(),
            tokens,
            padded_tokens: inputs.input_ids.numel(),
        })
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        let spread = Spread::Ranks;
        self.eval.as_ref().map(|b| self.mlm.evaluate_blocks(&self.masker, b, self.batch_size * 2, spread)).transpose()
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.mlm.save(dir)
    }

    fn fingerprint(&self) -> String {
        let mut f = Fingerprint::new("masked-lm");
        f.text(&self.train.cache.meta.fingerprint).ints(self.train.indices.iter().map(|&i| i as i64));
        f.floats(&[self.masker.probability as f32]).text(if self.masker.whole_word { "whole words" } else { "tokens" });
        f.finish()
    }

    fn default_metric(&self) -> &'static str {
        "eval_loss"
    }

    fn evaluate_before_training(&self) -> bool {
        true
    }
}
