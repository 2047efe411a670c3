//! Sequence classification (`BertForSequenceClassification` and its kin): dropout and a
//! linear layer on the encoder's pooled output; cross-entropy, or mean squared error for one
//! label (regression), as transformers picks the loss.

use tch::nn::Path;
use tch::{Kind, Reduction, Tensor};

use super::{IGNORE_INDEX, TaskModel};
use crate::encoder::layers::{Linear, dropout};
use crate::encoder::{Dims, Encoder, EncoderOutput, Family, ForwardOptions, Inputs};
use crate::pretrained::ModelConfig;

pub struct SequenceClassifier {
    pub encoder: Box<dyn Encoder>,
    classifier: Linear,
    dropout: f64,
    regression: bool,
}

impl TaskModel for SequenceClassifier {
    const ARCHITECTURE: &'static str = "ForSequenceClassification";
    const POOLER: bool = true;

    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, config: &ModelConfig) -> Self {
        let num_labels = config.num_labels();
        let path = super::path_at(root, family.heads.classifier);
        SequenceClassifier {
            encoder,
            classifier: Linear::new(path, dims.hidden_size, num_labels, dims.initializer_range),
            dropout: dims.classifier_dropout,
            regression: num_labels == 1 || config.problem_type() == Some("regression"),
        }
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
        let pooled = out.pooled.as_ref().expect("a classifier's encoder has a pooler");
        (self.classifier.forward(&dropout(pooled, self.dropout, opts.train)), out)
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
