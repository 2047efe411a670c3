//! Sequence classification (`BertForSequenceClassification` and its kin), in the family's
//! shape (`ClassifierKind`): BERT's linear layer on the pooled output, RoBERTa's and ELECTRA's
//! dense + activation + out_proj on the first token, or DistilBERT's pre_classifier + ReLU;
//! cross-entropy, or mean squared error for one label (regression), as transformers picks the loss.

use tch::nn::Path;
use tch::{Kind, Reduction, Tensor};

use super::{IGNORE_INDEX, TaskModel};
use crate::encoder::layers::{Linear, dropout};
use crate::encoder::{ClassifierKind, Dims, Encoder, EncoderOutput, Family, ForwardOptions, Inputs};
use crate::pretrained::ModelConfig;

pub struct SequenceClassifier {
    pub encoder: Box<dyn Encoder>,
    kind: ClassifierKind,
    /// RoBERTa's and ELECTRA's `dense` (then tanh or GELU), DistilBERT's `pre_classifier` (then
    /// ReLU) on the first token; None for BERT, whose pooler does that.
    dense: Option<Linear>,
    /// The layer that gives the logits (`classifier`, `classifier.out_proj`).
    out: Linear,
    dropout: f64,
    regression: bool,
}

impl TaskModel for SequenceClassifier {
    const ARCHITECTURE: &'static str = "ForSequenceClassification";

    fn pooler(family: &Family) -> bool {
        family.heads.classifier_kind == ClassifierKind::Pooled
    }

    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, config: &ModelConfig) -> Self {
        let (h, r) = (dims.hidden_size, dims.initializer_range);
        let head = crate::encoder::layers::path_at(root, family.heads.classifier);
        let kind = family.heads.classifier_kind;
        let (dense, out) = match kind {
            ClassifierKind::Pooled => (None, Linear::new(head, h, config.num_labels(), r)),
            ClassifierKind::FirstTokenDense { .. } => {
                let dense = Linear::new(head.sub("dense"), h, h, r);
                (Some(dense), Linear::new(head.sub("out_proj"), h, config.num_labels(), r))
            }
            ClassifierKind::PreClassifier { dense } => {
                let dense = Linear::new(crate::encoder::layers::path_at(root, dense), h, h, r);
                (Some(dense), Linear::new(head, h, config.num_labels(), r))
            }
        };
        let regression = config.num_labels() == 1 || config.problem_type() == Some("regression");
        SequenceClassifier { encoder, kind, dense, out, dropout: dims.classifier_dropout, regression }
    }
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn encoder_mut(&mut self) -> &mut dyn Encoder {
        self.encoder.as_mut()
    }
    fn head_path(family: &Family) -> Option<&'static str> {
        Some(family.heads.classifier)
    }
}

impl SequenceClassifier {
    /// Logits `[batch, num_labels]` and the encoder output they came from.
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> (Tensor, EncoderOutput) {
        let out = self.encoder.forward(inputs, opts);
        let first = || out.last_hidden_state.select(1, 0);
        let features = match (&self.dense, self.kind) {
            (Some(dense), ClassifierKind::FirstTokenDense { activation }) => {
                activation.apply(&dense.forward(&dropout(&first(), self.dropout, opts.train)))
            }
            (Some(dense), ClassifierKind::PreClassifier { .. }) => dense.forward(&first()).relu(),
            _ => out.pooled.as_ref().expect("built with a pooler").shallow_clone(),
        };
        (self.out.forward(&dropout(&features, self.dropout, opts.train)), out)
    }

    /// Mean loss over the batch, as transformers computes it for this head.
    pub fn loss(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        if self.regression {
            logits.squeeze_dim(-1).mse_loss(&labels.to_kind(logits.kind()), Reduction::Mean)
        } else {
            logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, IGNORE_INDEX, 0.0)
        }
    }
}
