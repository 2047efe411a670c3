//! Extractive question answering (`BertForQuestionAnswering` and its kin): one linear layer of
//! two outputs on every position's last hidden state (`qa_outputs`; ModernBERT: its prediction
//! head and dropout first, the layer named `classifier`; DistilBERT: `qa_dropout` first), read as
//! the logits of the answer starting and ending there. The loss is transformers': the mean of the
//! start and end cross-entropies.

use tch::nn::Path;
use tch::{Kind, Reduction, Tensor};

use super::{TaskModel, Transform, head_linear, prediction_head};
use crate::encoder::ModelConfig;
use crate::encoder::layers::{Linear, dropout};
use crate::encoder::{ClassifierKind, Dims, Encoder, Family, ForwardOptions, Inputs};

pub struct QuestionAnswerer {
    pub encoder: Box<dyn Encoder>,
    /// ModernBERT's prediction head on every position, before dropout and `qa_outputs`.
    transform: Option<Transform>,
    qa_outputs: Linear,
    dropout: f64,
}

impl TaskModel for QuestionAnswerer {
    const ARCHITECTURE: &'static str = "ForQuestionAnswering";

    /// transformers builds BERT and RoBERTa here without their poolers.
    fn pooler(_: &Family) -> bool {
        false
    }

    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, _config: &ModelConfig) -> Self {
        let transform = match family.heads.classifier_kind {
            ClassifierKind::PredictionHead { head } => Some(prediction_head(root, head, dims)),
            _ => None,
        };
        let std = dims.head.truncated_init.map_or(0.0, |t| t.classifier_std);
        let qa_outputs = head_linear(root, family.heads.qa_outputs, dims, (dims.hidden_size, 2), std, true);
        QuestionAnswerer { encoder, transform, qa_outputs, dropout: dims.qa_dropout }
    }
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn encoder_mut(&mut self) -> &mut dyn Encoder {
        self.encoder.as_mut()
    }
    fn head_path(family: &Family) -> Option<&'static str> {
        Some(family.heads.qa_outputs)
    }
}

/// The start and end logits of every position, `[batch, seq]` each.
pub struct SpanLogits {
    pub start: Tensor,
    pub end: Tensor,
}

impl QuestionAnswerer {
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> SpanLogits {
        let mut hidden = self.encoder.forward(inputs, opts).last_hidden_state;
        if let Some(transform) = &self.transform {
            hidden = transform.forward(&hidden);
        }
        let logits = self.qa_outputs.forward(&dropout(&hidden, self.dropout, opts.train));
        let parts = logits.split(1, -1);
        SpanLogits { start: parts[0].squeeze_dim(-1), end: parts[1].squeeze_dim(-1) }
    }

    /// transformers' loss, `(CE(start) + CE(end)) / 2`, each the mean over windows, with the
    /// padding of a batch left out of the softmax (`mask` `[batch, seq]`, 1 for real tokens): a
    /// window's loss is then what transformers computes for it alone, whatever the batch pads
    /// it to. `starts` and `ends` are `[batch]` positions.
    pub fn loss(logits: &SpanLogits, mask: &Tensor, starts: &Tensor, ends: &Tensor) -> Tensor {
        let pad = mask.eq(0);
        let ce = |logits: &Tensor, targets: &Tensor| {
            let masked = logits.to_kind(Kind::Float).masked_fill(&pad, f64::NEG_INFINITY);
            masked.cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, -100, 0.0)
        };
        (ce(&logits.start, starts) + ce(&logits.end, ends)) / 2.0
    }
}
