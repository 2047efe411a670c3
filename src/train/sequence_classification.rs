//! The objective of fine-tuning a sequence-level head: batches of labelled texts, the loss of a
//! micro-batch against each text's target, and evaluation (windows pooled per text).

use std::path::Path;

use anyhow::Result;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::fingerprint::Fingerprint;
use super::trainer::{Objective, StepLoss};
use crate::data::{Encoded, Sampling, Targets, WindowPool, epoch_batches};
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::predict::{Classifier, Decision, Evaluation, LabelledSet};
use crate::task::{SequenceClassifier, TaskKind};

/// Fine-tuning = a classifier, its training set and (optionally) held-out data.
pub struct SequenceClassification {
    pub classifier: Classifier,
    pub train: LabelledSet,
    pub eval: Option<LabelledSet>,
    pub batch_size: usize,
    pub sampling: Sampling,
    /// Class weights (cross-entropy) or positive weights (multi-label), on the model's device.
    pub loss_weights: Option<Tensor>,
    /// How evaluation pools the windows of long examples.
    pub pool: WindowPool,
    /// A listwise reranker (ListNet): each query's candidates (items of `train`). Batches are
    /// then of queries, `batch_size` of them, so a query's list is never split between
    /// micro-batches or ranks.
    pub lists: Option<Vec<Vec<usize>>>,
}

impl Objective for SequenceClassification {
    fn var_store(&self) -> &VarStore {
        &self.classifier.vs
    }

    fn epoch_batches(&self, epoch: usize, seed: u64) -> Vec<Vec<usize>> {
        let lengths = match &self.lists {
            Some(lists) => lists.iter().map(|l| l.iter().map(|&i| self.train.items[i].len()).sum()).collect(),
            None => self.train.lengths(),
        };
        epoch_batches(&lengths, self.batch_size, seed, epoch, self.sampling)
    }

    fn train_loss(&self, batch: &[usize], _seed: u64) -> Result<StepLoss> {
        match &self.lists {
            Some(lists) => self.listwise_loss(&batch.iter().map(|&q| lists[q].as_slice()).collect::<Vec<_>>()),
            None => self.pointwise_loss(batch),
        }
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        let decision = Decision { pool: self.pool, ..Decision::default() };
        let batch_size = self.batch_size * 2;
        self.eval
            .as_ref()
            .map(|set| self.classifier.evaluate_set(set, batch_size, &decision, Spread::Ranks))
            .transpose()
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.classifier.save(dir)?;
        if self.classifier.model.kind == TaskKind::Rerank {
            crate::pretrained::sentence::write_cross_encoder(dir)?;
        }
        Ok(())
    }

    fn fingerprint(&self) -> String {
        let mut f = Fingerprint::new(self.classifier.model.kind.name());
        f.encoded(self.train.items.iter()).ints(self.train.doc_of.iter().map(|&d| d as i64));
        match &self.train.targets {
            Targets::Classes(ids) => f.ints(ids.iter().copied()),
            Targets::Sets(rows) => f.floats(&rows.concat()),
            Targets::Scores(scores) => f.floats(scores),
            Targets::Relevance { relevance, query_of } => f.floats(relevance).ints(query_of.iter().map(|&q| q as i64)),
        };
        if self.lists.is_some() {
            f.text("listnet over whole queries");
        }
        if let Some(w) = &self.loss_weights {
            let weights =
                Vec::<f32>::try_from(w.to_kind(Kind::Float).to_device(Device::Cpu)).expect("loss weights are 1-d");
            f.text("loss weights").floats(&weights);
        }
        f.finish()
    }

    fn default_metric(&self) -> &'static str {
        match self.classifier.model.kind {
            TaskKind::MultiLabel => "micro_f1",
            TaskKind::Regression => "pearson",
            TaskKind::Rerank => "ndcg_at_10",
            _ => "accuracy",
        }
    }
}

impl SequenceClassification {
    /// Each item's loss against its text's target.
    fn pointwise_loss(&self, batch: &[usize]) -> Result<StepLoss> {
        let c = &self.classifier;
        let (logits, targets, step) = self.forward(batch);
        // Weighted cross-entropy divides by the weights of the targets, not by their number.
        let denominator = match (&self.loss_weights, c.model.kind) {
            (Some(w), TaskKind::Classification) => w.index_select(0, &targets).sum(Kind::Double),
            _ => Tensor::from(batch.len() as f64),
        };
        Ok(StepLoss { loss: c.model.loss(&logits, &targets, self.loss_weights.as_ref()), denominator, ..step })
    }

    /// ListNet over whole queries: `lists` holds each query's candidates.
    fn listwise_loss(&self, lists: &[&[usize]]) -> Result<StepLoss> {
        let (logits, relevance, step) = self.forward(&lists.concat());
        let sizes: Vec<i64> = lists.iter().map(|l| l.len() as i64).collect();
        let loss = SequenceClassifier::listwise_loss(&logits, &relevance, &sizes);
        Ok(StepLoss { loss, denominator: Tensor::from(lists.len() as f64), ..step })
    }

    /// The logits of some items with dropout and their targets, on the model's device, and the
    /// step's counts (its loss and denominator left for the caller).
    fn forward(&self, items: &[usize]) -> (Tensor, Tensor, StepLoss) {
        let c = &self.classifier;
        let refs: Vec<&Encoded> = items.iter().map(|&i| &self.train.items[i]).collect();
        let inputs = c.collator().collate(&refs).to_device(c.device);
        let targets = self.train.item_targets(items).to_device(c.device);
        let logits = c.model.logits(&inputs, ForwardOptions::train());
        let step = StepLoss {
            loss: Tensor::new(),
            denominator: Tensor::new(),
            examples: items.len(),
            tokens: refs.iter().map(|e| e.len()).sum(),
            padded_tokens: inputs.input_ids.numel(),
        };
        (logits, targets, step)
    }
}
