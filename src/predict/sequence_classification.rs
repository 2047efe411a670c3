//! A loaded sequence-level model (one class, a set of classes, or a score per text): batched
//! logits, probabilities, decisions with per-label thresholds, and evaluation, as `evaluate`,
//! `predict`, `serve` and training share them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::Evaluation;
use crate::data::{Encoded, Targets, WindowPool, eval_batches};
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::fsutil::atomic_write;
use crate::metrics::retrieval::{reranking_metrics, reranking_summary};
use crate::metrics::{classification_report, multi_label_report, regression_report};
use crate::pretrained::Pretrained;
use crate::task::{SequenceClassifier, TaskKind};

/// Where `--tune-thresholds` keeps the per-label decision thresholds, beside the model.
pub const THRESHOLDS_FILE: &str = "thresholds.json";

/// Tokenised examples with their targets. An example longer than the window may be several
/// items (`--long-text window`): `doc_of` says whose each item is, and targets are per example.
pub struct LabelledSet {
    pub items: Vec<Encoded>,
    pub doc_of: Vec<usize>,
    pub targets: Targets,
}

impl LabelledSet {
    /// One item per example.
    pub fn new(items: Vec<Encoded>, targets: Targets) -> Self {
        LabelledSet { doc_of: (0..items.len()).collect(), items, targets }
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.items.iter().map(Encoded::len).collect()
    }

    /// The targets of some items (each its example's).
    pub(crate) fn item_targets(&self, items: &[usize]) -> Tensor {
        self.targets.tensor(&items.iter().map(|&i| self.doc_of[i]).collect::<Vec<_>>())
    }
}

/// Per-example logits `[examples, labels]` from per-item ones: the mean or maximum over each
/// example's windows.
pub fn pool_documents(logits: &Tensor, doc_of: &[usize], examples: usize, pool: WindowPool) -> Tensor {
    if doc_of.len() == examples {
        return logits.shallow_clone();
    }
    let index = Tensor::from_slice(&doc_of.iter().map(|&d| d as i64).collect::<Vec<_>>());
    let init = Tensor::zeros([examples as i64, logits.size()[1]], (Kind::Float, Device::Cpu));
    let reduce = match pool {
        WindowPool::Mean => "mean",
        WindowPool::Max => "amax",
    };
    init.index_reduce(0, &index, logits, reduce, false)
}

/// A model with a sequence-classification head, loaded.
pub type Classifier = Pretrained<SequenceClassifier>;

/// What a classifier says of one text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// The labels chosen: the most probable one (classification), every one at or above its
    /// threshold (multi-label: `thresholds.json` beside the model, else 0.5), none (regression).
    pub labels: Vec<String>,
    /// Every label's probability (softmax; sigmoid for multi-label), or a regression's score.
    pub scores: Vec<(String, f32)>,
}

impl Classifier {
    /// The fine-tuned model in `dir`, on the CPU in float32 (`pretrained::load` takes a device
    /// and precision).
    ///
    /// ```
    /// use bertkit::predict::Classifier;
    ///
    /// let classifier = Classifier::load("tests/fixtures/tiny-bert")?; // a tiny random model
    /// let predictions = classifier.predict(&["a fine film", "a dull one"])?;
    /// assert_eq!(predictions.len(), 2);
    /// assert_eq!(predictions[0].labels.len(), 1);
    /// # anyhow::Ok(())
    /// ```
    pub fn load(dir: impl AsRef<Path>) -> Result<Classifier> {
        let model = crate::pretrained::ModelDir::open(&dir.as_ref().display().to_string())?;
        if model.config.id2label().is_none() {
            anyhow::bail!("{}: has no classification head (config.json has no id2label)", model.dir.display());
        }
        crate::pretrained::load(&model, &crate::pretrained::LoadOptions::default())
    }

    /// Labels and scores of each text, texts longer than the model's default length truncated
    /// (`bertkit predict --long-text` reads them whole).
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        let max_len = self.dims.max_positions.min(512) as usize;
        let items: Vec<Encoded> =
            self.tokenizer.encode_batch(texts, None, max_len)?.iter().map(Encoded::from).collect();
        let outputs = Vec::<Vec<f32>>::try_from(self.outputs(&self.logits(&items, 32, Spread::Alone)?))?;
        let names = self.config.label_names();
        let thresholds = read_thresholds(self.dir(), &names)?;
        let chosen = decide(&outputs, thresholds.as_deref());
        Ok(outputs
            .iter()
            .zip(chosen)
            .map(|(scores, on)| {
                let best = super::argmax(scores);
                let labels = match self.model.kind {
                    TaskKind::Regression => vec![],
                    TaskKind::MultiLabel => {
                        names.iter().zip(&on).filter(|(_, on)| **on).map(|(n, _)| n.clone()).collect()
                    }
                    _ => vec![names[best].clone()],
                };
                Prediction { labels, scores: names.iter().cloned().zip(scores.iter().copied()).collect() }
            })
            .collect())
    }

    /// Logits `[n, num_labels]` (CPU, fp32) in the order of `items`.
    pub fn logits(&self, items: &[Encoded], batch_size: usize, spread: Spread) -> Result<Tensor> {
        let lengths: Vec<usize> = items.iter().map(Encoded::len).collect();
        let mut logits = Tensor::zeros([items.len() as i64, self.config.num_labels()], (Kind::Float, Device::Cpu));
        let collator = self.collator();
        let mine = spread.take(eval_batches(&lengths, batch_size));
        let bar = crate::progress::items_bar(mine.iter().map(|(_, b)| b.len() as u64).sum(), "examples");
        for (_, batch) in mine {
            let refs: Vec<&Encoded> = batch.iter().map(|&i| &items[i]).collect();
            let inputs = collator.collate(&refs).to_device(self.device);
            let out = tch::no_grad(|| self.autocast.run(|| self.model.logits(&inputs, ForwardOptions::eval())));
            let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let _ = logits.index_copy_(0, &index, &out.to_kind(Kind::Float).to_device(Device::Cpu));
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        spread.complete(&logits)?;
        Ok(logits)
    }

    /// What the task outputs per label (`TaskKind::outputs`).
    pub fn outputs(&self, logits: &Tensor) -> Tensor {
        self.model.kind.outputs(logits)
    }

    /// Loss and the task's metrics on a labelled set, per example (windows pooled).
    pub fn evaluate_set(
        &self,
        set: &LabelledSet,
        batch_size: usize,
        decision: &Decision,
        spread: Spread,
    ) -> Result<Evaluation> {
        let logits = self.logits(&set.items, batch_size, spread)?;
        let logits = pool_documents(&logits, &set.doc_of, set.targets.len(), decision.pool);
        self.evaluate_logits(&logits, &set.targets, decision)
    }

    /// Loss and metrics of per-example logits (`[examples, labels]`, CPU) against `targets`.
    pub fn evaluate_logits(&self, logits: &Tensor, targets: &Targets, decision: &Decision) -> Result<Evaluation> {
        let loss = tch::no_grad(|| self.model.loss(logits, &targets.all(), None)).double_value(&[]);
        let outputs = self.outputs(logits);
        let names = self.config.label_names();
        let (mut metrics, summary, mut report) = match targets {
            Targets::Classes(gold) => {
                let r = classification_report(&Vec::<i64>::try_from(outputs.argmax(-1, false))?, gold, &names);
                (vec![("accuracy", r.accuracy), ("macro_f1", r.macro_f1)], r.table(), serde_json::to_value(&r)?)
            }
            Targets::Sets(gold) => {
                let predicted = decide(&Vec::<Vec<f32>>::try_from(&outputs)?, decision.thresholds.as_deref());
                let gold: Vec<Vec<bool>> = gold.iter().map(|r| r.iter().map(|&v| v > 0.5).collect()).collect();
                let r = multi_label_report(&predicted, &gold, &names, decision.count_no_label);
                let m =
                    vec![("micro_f1", r.micro_f1), ("macro_f1", r.macro_f1), ("subset_accuracy", r.subset_accuracy)];
                (m, r.table(), serde_json::to_value(&r)?)
            }
            Targets::Scores(gold) => {
                let predicted = Vec::<f64>::try_from(outputs.select(1, 0).to_kind(Kind::Double))?;
                let gold: Vec<f64> = gold.iter().map(|&g| g as f64).collect();
                let r = regression_report(&predicted, &gold);
                let m = vec![
                    ("mse", r.mse),
                    ("rmse", r.rmse),
                    ("mae", r.mae),
                    ("pearson", r.pearson),
                    ("spearman", r.spearman),
                ];
                (m, r.table(), serde_json::to_value(&r)?)
            }
            Targets::Relevance { relevance, query_of } => {
                let scores = Vec::<f32>::try_from(outputs.select(1, 0))?;
                let r = reranking_metrics(&scores, relevance, query_of);
                let m = vec![("ndcg_at_10", r["ndcg_at_10"]), ("mrr_at_10", r["mrr_at_10"]), ("map", r["map"])];
                (m, reranking_summary(&r), serde_json::to_value(&r)?)
            }
        };
        metrics.push(("eval_loss", loss));
        report["eval_loss"] = json!(loss);
        let metrics: BTreeMap<String, f64> = metrics.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Ok(Evaluation { metrics, report, summary: format!("eval_loss {loss:.4}\n{summary}") })
    }
}

/// How multi-label decisions are made and counted.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Per label; 0.5 for every label without them.
    pub thresholds: Option<Vec<f32>>,
    /// Count "no label" as a class of its own (LexGLUE).
    pub count_no_label: bool,
    /// How the windows of a long example are pooled.
    pub pool: WindowPool,
}

/// Label sets from per-label probabilities: those at or above the label's threshold.
pub fn decide(probs: &[Vec<f32>], thresholds: Option<&[f32]>) -> Vec<Vec<bool>> {
    let at = |c: usize| thresholds.map_or(0.5, |t| t[c]);
    probs.iter().map(|row| row.iter().enumerate().map(|(c, &p)| p >= at(c)).collect()).collect()
}

/// Writes per-label thresholds beside a model, by label name.
pub fn write_thresholds(dir: &Path, names: &[String], thresholds: &[f32]) -> Result<()> {
    let map: serde_json::Map<String, serde_json::Value> =
        names.iter().zip(thresholds).map(|(n, t)| (n.clone(), json!(t))).collect();
    atomic_write(&dir.join(THRESHOLDS_FILE), serde_json::to_string_pretty(&map)?.as_bytes())
}

/// A model's tuned thresholds in label order, if it has them; every label must have one.
pub fn read_thresholds(dir: &Path, names: &[String]) -> Result<Option<Vec<f32>>> {
    let path = dir.join(THRESHOLDS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let map: BTreeMap<String, f32> =
        serde_json::from_str(&text).with_context(|| format!("{}: expected {{label: threshold}}", path.display()))?;
    let list = names
        .iter()
        .map(|n| map.get(n).copied().with_context(|| format!("{}: no threshold for label {n:?}", path.display())));
    Ok(Some(list.collect::<Result<_>>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_pool_into_their_documents() {
        let logits = Tensor::from_slice(&[1f32, -4., 3., -2., 5., 0.]).view([3, 2]);
        // Items 0 and 1 are document 0's windows, item 2 is document 1.
        let mean = pool_documents(&logits, &[0, 0, 1], 2, WindowPool::Mean);
        assert_eq!(Vec::<Vec<f32>>::try_from(mean).unwrap(), vec![vec![2., -3.], vec![5., 0.]]);
        let max = pool_documents(&logits, &[0, 0, 1], 2, WindowPool::Max);
        assert_eq!(Vec::<Vec<f32>>::try_from(max).unwrap(), vec![vec![3., -2.], vec![5., 0.]]);
    }
}
