//! Fine-tuning for sequence classification: the `Task` the trainer runs, plus batched
//! prediction and evaluation that `bertkit evaluate` / `predict` share.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::json;
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

use super::metrics::classification_report;
use super::trainer::{Evaluation, Objective, StepLoss};
use crate::data::{Encoded, epoch_batches, eval_batches};
use crate::encoder::ForwardOptions;
use crate::pretrained::Pretrained;
use crate::task::{IGNORE_INDEX, SequenceClassifier};

/// Tokenised examples with their class ids.
pub struct LabelledSet {
    pub items: Vec<Encoded>,
    pub labels: Vec<i64>,
}

impl LabelledSet {
    pub fn lengths(&self) -> Vec<usize> {
        self.items.iter().map(Encoded::len).collect()
    }
}

/// A model with a sequence-classification head, loaded.
pub type Classifier = Pretrained<SequenceClassifier>;

impl Classifier {
    /// Class probabilities `[n, classes]` (CPU, fp32) in the order of `items`, and the mean
    /// cross-entropy when `labels` are given.
    pub fn predict(
        &self,
        items: &[Encoded],
        labels: Option<&[i64]>,
        batch_size: usize,
    ) -> Result<(Tensor, Option<f64>)> {
        let lengths: Vec<usize> = items.iter().map(Encoded::len).collect();
        let mut probs = Tensor::zeros([items.len() as i64, self.config.num_labels()], (Kind::Float, Device::Cpu));
        let mut loss_sum = 0.0;
        let collator = self.collator();
        let bar = super::progress::items_bar(items.len() as u64, "examples");
        for batch in eval_batches(&lengths, batch_size) {
            let refs: Vec<&Encoded> = batch.iter().map(|&i| &items[i]).collect();
            let inputs = collator.collate(&refs).to_device(self.device);
            let logits = tch::no_grad(|| self.autocast.run(|| self.model.forward(&inputs, ForwardOptions::eval()).0));
            let logits = logits.to_kind(Kind::Float);
            if let Some(labels) = labels {
                let y: Vec<i64> = batch.iter().map(|&i| labels[i]).collect();
                let y = Tensor::from_slice(&y).to_device(self.device);
                let sum =
                    tch::no_grad(|| logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, IGNORE_INDEX, 0.0));
                loss_sum += sum.double_value(&[]);
            }
            let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let p = logits.softmax(-1, Kind::Float).to_device(Device::Cpu);
            let _ = probs.index_copy_(0, &index, &p);
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        Ok((probs, labels.map(|_| loss_sum / items.len().max(1) as f64)))
    }

    /// Loss, accuracy, macro-F1, per-class scores and confusion matrix on a labelled set.
    pub fn evaluate_set(&self, set: &LabelledSet, batch_size: usize) -> Result<Evaluation> {
        let (probs, loss) = self.predict(&set.items, Some(&set.labels), batch_size)?;
        let predicted = Vec::<i64>::try_from(probs.argmax(-1, false))?;
        let report = classification_report(&predicted, &set.labels, &self.config.label_names());
        let loss = loss.unwrap_or(f64::NAN);
        let metrics = BTreeMap::from([
            ("eval_loss".to_string(), loss),
            ("accuracy".to_string(), report.accuracy),
            ("macro_f1".to_string(), report.macro_f1),
        ]);
        let summary = format!("eval_loss {loss:.4}\n{}", report.table());
        let mut report = serde_json::to_value(&report)?;
        report["eval_loss"] = json!(loss);
        Ok(Evaluation { metrics, report, summary })
    }
}

/// Fine-tuning = a classifier, its training set and (optionally) held-out data.
pub struct FineTune {
    pub classifier: Classifier,
    pub train: LabelledSet,
    pub eval: Option<LabelledSet>,
    pub batch_size: usize,
    pub bucketing: bool,
}

impl Objective for FineTune {
    fn var_store(&self) -> &VarStore {
        &self.classifier.vs
    }

    fn epoch_batches(&self, epoch: usize, seed: u64) -> Vec<Vec<usize>> {
        epoch_batches(&self.train.lengths(), self.batch_size, seed, epoch, self.bucketing)
    }

    fn train_loss(&self, batch: &[usize], _seed: u64) -> Result<StepLoss> {
        let c = &self.classifier;
        let refs: Vec<&Encoded> = batch.iter().map(|&i| &self.train.items[i]).collect();
        let inputs = c.collator().collate(&refs).to_device(c.device);
        let labels: Vec<i64> = batch.iter().map(|&i| self.train.labels[i]).collect();
        let labels = Tensor::from_slice(&labels).to_device(c.device);
        let (logits, _) = c.model.forward(&inputs, ForwardOptions::train());
        Ok(StepLoss {
            loss: c.model.loss(&logits, &labels),
            examples: batch.len(),
            tokens: refs.iter().map(|e| e.len()).sum(),
            padded_tokens: inputs.input_ids.numel(),
        })
    }

    fn evaluate(&self) -> Result<Option<Evaluation>> {
        self.eval.as_ref().map(|set| self.classifier.evaluate_set(set, self.batch_size * 2)).transpose()
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        self.classifier.save(dir)
    }

    fn default_metric(&self) -> &'static str {
        "accuracy"
    }
}
