//! Which input tokens an output of a fine-tuned model depends on: integrated gradients and
//! gradient × input on the word embeddings (transformers' `inputs_embeds`), and attention
//! rollout (`rollout.rs`), for one text of any length (`text.rs`). Also what changed between two
//! models over a whole set (`comparison.rs`: attention divergence per head, computed in
//! `divergence.rs`, representations compared by linear CKA in `similarity.rs`).
//!
//! An attribution explains one `Target`: a class (or a label of a multi-label head, or the score
//! of a regression head) of a sequence-level head, a tag at some positions of a token-level
//! head (an entity), or where a question-answering head starts or ends an answer (label 0 or 1
//! at one position of one window). The function explained is the output people read: the class
//! probability (softmax; sigmoid for multi-label; for a span, the probability of starting or
//! ending there, a softmax over the window's positions), or with `Output::Logit` the logit.
//!
//! Only the word embeddings vary along the integration path; position and token-type
//! embeddings stay those of the input, as in Captum's usual BERT recipe.

pub mod comparison;
mod divergence;
pub mod rollout;
pub mod similarity;
pub mod text;

use anyhow::{Result, ensure};
use tch::{Device, Kind, Tensor};

use crate::encoder::{Encoder, ForwardOptions, Inputs};
use crate::task::{QuestionAnswerer, SequenceClassifier, TaskKind, TokenClassifier};

/// What number of the head is explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// Class probability (softmax), label probability (sigmoid, multi-label), the score itself
    /// (regression).
    Probability,
    /// The raw logit.
    Logit,
}

/// One output of the model to explain.
#[derive(Debug, Clone)]
pub struct Target {
    /// How reports name it (a label, or an entity with its label).
    pub name: String,
    /// Column of the logits (0 for regression).
    pub label: i64,
    /// Token positions whose tag is explained (their mean); empty for a sequence-level head.
    pub positions: Vec<i64>,
    /// The one window of a long text to explain it in (a span is read from one window); None:
    /// every window that holds the positions.
    pub window: Option<usize>,
}

impl Target {
    /// A label of a sequence-level head.
    pub fn label(name: &str, label: i64) -> Target {
        Target { name: name.to_string(), label, positions: vec![], window: None }
    }
}

/// A model whose outputs can be explained: a task head on an encoder.
pub trait Explained {
    fn encoder(&self) -> &dyn Encoder;
    fn kind(&self) -> TaskKind;
    /// Logits, fp32: `[batch, labels]` (sequence-level head) or `[batch, seq, labels]`.
    fn logits(&self, inputs: &Inputs) -> Tensor;
}

impl Explained for SequenceClassifier {
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn kind(&self) -> TaskKind {
        self.kind
    }
    fn logits(&self, inputs: &Inputs) -> Tensor {
        self.forward(inputs, ForwardOptions::eval()).0.to_kind(Kind::Float)
    }
}

impl Explained for TokenClassifier {
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn kind(&self) -> TaskKind {
        TaskKind::TokenClassification
    }
    fn logits(&self, inputs: &Inputs) -> Tensor {
        self.forward(inputs, ForwardOptions::eval()).to_kind(Kind::Float)
    }
}

/// Start and end logits as the labels 0 and 1 of every position: `[batch, seq, 2]`.
impl Explained for QuestionAnswerer {
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn kind(&self) -> TaskKind {
        TaskKind::QuestionAnswering
    }
    fn logits(&self, inputs: &Inputs) -> Tensor {
        let spans = self.forward(inputs, ForwardOptions::eval());
        Tensor::stack(&[spans.start, spans.end], -1).to_kind(Kind::Float)
    }
}

/// The outputs people read from logits (`TaskKind::outputs`; a span's start and end
/// probabilities over the positions), or the logits themselves.
pub(crate) fn outputs(logits: &Tensor, kind: TaskKind, output: Output) -> Tensor {
    match output {
        Output::Probability if kind == TaskKind::QuestionAnswering => logits.softmax(1, Kind::Float),
        Output::Probability => kind.outputs(logits),
        Output::Logit => logits.shallow_clone(),
    }
}

/// The target's output for each row of `inputs`: `[batch]`, fp32 (for a token-level head, the
/// mean over the target's positions).
pub(crate) fn target_scores(model: &dyn Explained, inputs: &Inputs, target: &Target, output: Output) -> Tensor {
    let outputs = outputs(&model.logits(inputs), model.kind(), output);
    if target.positions.is_empty() {
        return outputs.select(1, target.label);
    }
    let positions = Tensor::from_slice(&target.positions).to_device(outputs.device());
    outputs.index_select(1, &positions).select(2, target.label).mean_dim(1, false, Kind::Float)
}

/// Per-token attributions of one target on one text, and the outputs they account for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attribution {
    pub scores: Vec<f32>,
    /// The target's output at the input and at the baseline (IG; gradient × input: both at the
    /// input).
    pub at_input: f64,
    pub at_baseline: f64,
}

impl Attribution {
    /// Integrated gradients' completeness: |Σ attributions − (f(x) − f(baseline))|, relative to
    /// |f(x) − f(baseline)|.
    pub fn completeness_error(&self) -> f64 {
        let sum: f64 = self.scores.iter().map(|&s| s as f64).sum();
        let delta = self.at_input - self.at_baseline;
        (sum - delta).abs() / delta.abs().max(1e-12)
    }
}

/// The text (one row, no padding) with its word embeddings replaced by `embeds` (`[n, seq,
/// dim]`), repeated for each of the n rows.
fn with_embeddings(inputs: &Inputs, embeds: &Tensor) -> Inputs {
    let n = embeds.size()[0];
    let repeat = |t: &Tensor| t.expand([n, -1], false);
    Inputs {
        input_ids: repeat(&inputs.input_ids),
        attention_mask: repeat(&inputs.attention_mask),
        token_type_ids: repeat(&inputs.token_type_ids),
        padded: inputs.padded,
        lengths: inputs.lengths.as_ref().map(|l| l.repeat(n as usize)),
        inputs_embeds: Some(embeds.shallow_clone()),
    }
}

/// The target's outputs at `embeds` (`[n, seq, dim]`) and their gradients with respect to them.
fn outputs_and_gradients(
    model: &dyn Explained,
    inputs: &Inputs,
    embeds: &Tensor,
    target: &Target,
    output: Output,
) -> (Tensor, Tensor) {
    let embeds = embeds.detach().set_requires_grad(true);
    let scores = target_scores(model, &with_embeddings(inputs, &embeds), target, output);
    let grads = Tensor::run_backward(&[scores.sum(Kind::Float)], &[&embeds], false, false).remove(0);
    (scores.detach(), grads)
}

fn word_embeddings(model: &dyn Explained, ids: &Tensor) -> Tensor {
    Tensor::embedding(model.encoder().word_embeddings(), ids, -1, false, false).detach()
}

/// The trapezoidal rule on [0, 1] with `steps` points (Captum's `riemann_trapezoid`): the
/// points and their weights.
fn trapezoid(steps: usize) -> (Vec<f64>, Vec<f64>) {
    let h = 1.0 / (steps - 1) as f64;
    let alphas = (0..steps).map(|k| k as f64 * h).collect();
    let weights = (0..steps).map(|k| if k == 0 || k == steps - 1 { h / 2.0 } else { h }).collect();
    (alphas, weights)
}

/// Integrated gradients (Sundararajan et al. 2017) of `target` on one text: the path from the
/// baseline's word embeddings (`baseline_ids`, `[1, seq]`) to the text's, `steps` points
/// (trapezoidal rule), `chunk` points per forward pass; per token, the sum over the embedding
/// of (x − x') × the mean gradient.
pub fn integrated_gradients(
    model: &dyn Explained,
    inputs: &Inputs,
    baseline_ids: &Tensor,
    target: &Target,
    output: Output,
    steps: usize,
    chunk: usize,
) -> Result<Attribution> {
    ensure!(steps >= 2, "integrated gradients needs at least 2 steps");
    let x = word_embeddings(model, &inputs.input_ids);
    let x0 = word_embeddings(model, baseline_ids);
    let delta = &x - &x0;
    let (alphas, weights) = trapezoid(steps);
    let mut mean_grad = Tensor::zeros_like(&x);
    let mut outputs = Vec::with_capacity(steps);
    for (alphas, weights) in alphas.chunks(chunk).zip(weights.chunks(chunk)) {
        let column = |v: &[f64]| Tensor::from_slice(v).to_kind(Kind::Float).to_device(x.device()).view([-1, 1, 1]);
        let path = &x0 + column(alphas) * &delta;
        let (scores, grads) = outputs_and_gradients(model, inputs, &path, target, output);
        mean_grad += (grads * column(weights)).sum_dim_intlist(0, true, Kind::Float);
        outputs.extend(Vec::<f32>::try_from(scores.to_device(Device::Cpu))?);
    }
    let scores = (mean_grad * delta).sum_dim_intlist(-1, false, Kind::Float).get(0);
    Ok(Attribution {
        scores: Vec::<f32>::try_from(scores.to_device(Device::Cpu))?,
        at_input: outputs[steps - 1] as f64,
        at_baseline: outputs[0] as f64,
    })
}

/// Gradient × input (Shrikumar et al. 2016): per token, the sum over the embedding of the
/// word embedding times the target's gradient there.
pub fn gradient_x_input(
    model: &dyn Explained,
    inputs: &Inputs,
    target: &Target,
    output: Output,
) -> Result<Attribution> {
    let x = word_embeddings(model, &inputs.input_ids);
    let (score, grads) = outputs_and_gradients(model, inputs, &x, target, output);
    let scores = (grads * x).sum_dim_intlist(-1, false, Kind::Float).get(0);
    let at_input = score.double_value(&[0]);
    Ok(Attribution { scores: Vec::<f32>::try_from(scores.to_device(Device::Cpu))?, at_input, at_baseline: at_input })
}

/// The baseline of integrated gradients: the text's ids with every token that is not special
/// (`special[i]`) replaced by `fill` (the padding or mask token).
pub(crate) fn baseline_ids(ids: &[u32], special: &[u32], fill: u32) -> Vec<i64> {
    ids.iter().zip(special).map(|(&id, &s)| if s == 1 { id as i64 } else { fill as i64 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapezoid_weights_integrate_exactly_up_to_lines() {
        let (a, w) = trapezoid(5);
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // ∫0^1 (3x + 1) dx = 2.5: exact for a line.
        let integral: f64 = a.iter().zip(&w).map(|(x, w)| (3.0 * x + 1.0) * w).sum();
        assert!((integral - 2.5).abs() < 1e-12);
    }

    #[test]
    fn baseline_keeps_special_tokens() {
        assert_eq!(baseline_ids(&[101, 7, 8, 102], &[1, 0, 0, 1], 0), vec![101, 0, 0, 102]);
    }

    #[test]
    fn completeness_error_is_relative() {
        let a = Attribution { scores: vec![0.25, 0.25], at_input: 0.8, at_baseline: 0.3 };
        assert!(a.completeness_error() < 1e-6);
        let b = Attribution { scores: vec![0.5, 0.05], ..a };
        assert!((b.completeness_error() - 0.1).abs() < 1e-6);
    }
}
