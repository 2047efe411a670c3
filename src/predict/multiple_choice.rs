//! A loaded multiple-choice model (a chooser): each question's choices scored together, the
//! probabilities a softmax over them (what transformers' logits mean), accuracy on held-out
//! questions.

use std::collections::BTreeMap;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use super::Evaluation;
use crate::data::eval_batches;
use crate::data::multiple_choice::ChoiceSet;
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::pretrained::Pretrained;
use crate::task::MultipleChoice;

/// A model with a multiple-choice head, loaded.
pub type Chooser = Pretrained<MultipleChoice>;

impl Chooser {
    /// Every question's choice probabilities (`[questions, choices]`, spread over the ranks in
    /// the trainer), and the summed loss over the questions with a right choice.
    pub fn probabilities(&self, set: &ChoiceSet, batch_size: usize, spread: Spread) -> Result<(Tensor, f64)> {
        let lengths = set.lengths();
        let mut probs = Tensor::zeros([lengths.len() as i64, set.choices as i64], (Kind::Double, Device::Cpu));
        // Questions per batch: batch_size pairs' worth.
        let batches = eval_batches(&lengths, (batch_size / set.choices.max(1)).max(1));
        let sums = Tensor::zeros([batches.len() as i64, 1], (Kind::Double, Device::Cpu));
        let mine = spread.take(batches);
        let bar = crate::progress::items_bar(mine.iter().map(|(_, b)| b.len() as u64).sum(), "questions");
        for (b, batch) in mine {
            let inputs = self.collator().collate(&set.batch_pairs(&batch)).to_device(self.device);
            let logits =
                tch::no_grad(|| self.autocast.run(|| self.model.logits(&inputs, set.choices, ForwardOptions::eval())));
            let labels = Tensor::from_slice(&set.labels(&batch)).to_device(self.device);
            let answered = set.labels(&batch).iter().filter(|&&l| l >= 0).count();
            if answered > 0 {
                let loss = tch::no_grad(|| MultipleChoice::loss(&logits, &labels)).double_value(&[]);
                sums.get(b as i64).copy_(&Tensor::from_slice(&[loss * answered as f64]));
            }
            let p = logits.to_kind(Kind::Float).softmax(-1, Kind::Double).to_device(Device::Cpu);
            let index = Tensor::from_slice(&batch.iter().map(|&q| q as i64).collect::<Vec<_>>());
            let _ = probs.index_copy_(0, &index, &p);
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        spread.complete(&probs)?;
        Ok((probs, spread.totals(&sums)?[0]))
    }

    /// Accuracy and the loss on questions whose right choice is known.
    pub fn evaluate_set(&self, set: &ChoiceSet, batch_size: usize, spread: Spread) -> Result<Evaluation> {
        let (probs, loss_sum) = self.probabilities(set, batch_size, spread)?;
        evaluation(set, &probs, loss_sum)
    }
}

/// Accuracy (transformers' run_swag: the argmax against the label) and the mean loss.
pub fn evaluation(set: &ChoiceSet, probs: &Tensor, loss_sum: f64) -> Result<Evaluation> {
    if let Some(q) = set.questions.iter().find(|q| q.label.is_none()) {
        anyhow::bail!("{}: no label (every question of evaluation data needs the right choice)", q.at);
    }
    let chosen = Vec::<i64>::try_from(probs.argmax(-1, false))?;
    let right = set.questions.iter().zip(&chosen).filter(|(q, c)| q.label == Some(**c as usize)).count();
    let n = set.questions.len();
    let (accuracy, loss) = (right as f64 / n.max(1) as f64, loss_sum / n.max(1) as f64);
    let metrics = BTreeMap::from([("accuracy".to_string(), accuracy), ("eval_loss".to_string(), loss)]);
    let report = serde_json::json!({"accuracy": accuracy, "eval_loss": loss, "questions": n, "right": right,
        "choices": set.choices});
    let summary =
        format!("eval_loss {loss:.4}\naccuracy {accuracy:.4} ({right} of {n} questions, {} choices each)", set.choices);
    Ok(Evaluation { metrics, report, summary })
}
