//! The objective of fine-tuning an extractive question-answering head: windows of questions and
//! contexts, the start/end loss against each window's answer (or its first token where it holds
//! none), and SQuAD's (or CUAD's) measures on held-out questions.

use std::path::Path;

use anyhow::Result;
use tch::Kind;
use tch::nn::VarStore;

use super::fingerprint::Fingerprint;
use super::trainer::{Objective, StepLoss};
use crate::data::question_answering::QaSet;
use crate::data::{Encoded, Sampling, epoch_batches};
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::predict::Evaluation;
use crate::predict::question_answering::{Decoding, Reader, targets};
use crate::task::{QuestionAnswerer, TaskKind};

/// Question-answering fine-tuning: a reader, its training windows and held-out questions.
pub struct QuestionAnswering {
    pub reader: Reader,
    pub train: QaSet,
    pub eval: Option<QaSet>,
    pub decoding: Decoding,
    /// Score the held-out questions with CUAD's measures too.
    pub cuad: bool,
    pub batch_size: usize,
    pub sampling: Sampling,
}

impl Objective for QuestionAnswering {
    fn var_store(&self) -> &VarStore {
        &self.reader.vs
    }

    fn epoch_batches(&self, epoch: usize, seed: u64) -> Vec<Vec<usize>> {
        epoch_batches(&self.train.lengths(), self.batch_size, seed, epoch, self.sampling)
    }

    fn train_loss(&self, batch: &[usize], _seed: u64) -> Result<StepLoss> {
        let r = &self.reader;
        let encoded: Vec<Encoded> =
            batch.iter().map(|&w| self.train.encoded(&r.tokenizer, w)).collect::<Result<_>>()?;
        let inputs = r.collator().collate(&encoded.iter().collect::<Vec<_>>()).to_device(r.device);
        let (starts, ends) = targets(&self.train, batch);
        let logits = r.model.forward(&inputs, ForwardOptions::train());
        let loss = QuestionAnswerer::loss(
            &logits,
            &inputs.attention_mask,
            &starts.to_device(r.device),
            &ends.to_device(r.device),
        );
        Ok(StepLoss {
            loss,
            denominator: tch::Tensor::from(batch.len() as f64).to_kind(Kind::Double),
            examples: batch.len(),
            tokens: encoded.iter().map(Encoded::len).sum(),
            padded_tokens: inputs.input_ids.numel(),
        })
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        let Some(set) = &self.eval else { return Ok(None) };
        self.reader.evaluate_set(set, &self.decoding, self.cuad, self.batch_size * 2, Spread::Ranks).map(Some)
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.reader.save(dir)
    }

    fn fingerprint(&self) -> String {
        let mut f = Fingerprint::new(TaskKind::QuestionAnswering.name());
        for w in &self.train.windows {
            let q = &self.train.data.questions[w.question];
            f.text(&q.id).ints([w.piece.start as i64, w.piece.end as i64, w.target.0, w.target.1].into_iter());
        }
        for context in &self.train.contexts {
            f.ints(context.ids.iter().map(|&i| i64::from(i)));
        }
        f.finish()
    }

    fn default_metric(&self) -> &'static str {
        if self.cuad { "aupr" } else { "f1" }
    }
}
