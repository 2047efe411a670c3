//! Token classification (`BertForTokenClassification` and its kin): dropout and one linear layer
//! on every position's last hidden state (ModernBERT: its prediction head first), named
//! `classifier` in every family; cross-entropy over
//! the positions that carry a tag (the others hold `IGNORE_INDEX`).

use tch::nn::Path;
use tch::{Kind, Reduction, Tensor};

use super::{IGNORE_INDEX, TaskModel, Transform, head_linear, prediction_head};
use crate::encoder::ModelConfig;
use crate::encoder::layers::{Linear, dropout};
use crate::encoder::{ClassifierKind, Dims, Encoder, Family, ForwardOptions, Inputs};

pub struct TokenClassifier {
    pub encoder: Box<dyn Encoder>,
    /// ModernBERT's prediction head on every position, before dropout and the classifier.
    transform: Option<Transform>,
    classifier: Linear,
    dropout: f64,
}

impl TaskModel for TokenClassifier {
    const ARCHITECTURE: &'static str = "ForTokenClassification";

    /// transformers builds BERT here without its pooler (`add_pooling_layer=False`).
    fn pooler(_: &Family) -> bool {
        false
    }

    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, config: &ModelConfig) -> Self {
        let transform = match family.heads.classifier_kind {
            ClassifierKind::PredictionHead { head } => Some(prediction_head(root, head, dims)),
            _ => None,
        };
        let std = dims.head.truncated_init.map_or(0.0, |t| t.classifier_std);
        let shape = (dims.hidden_size, config.num_labels());
        let classifier = head_linear(root, family.heads.classifier, dims, shape, std, true);
        TokenClassifier { encoder, transform, classifier, dropout: dims.token_classifier_dropout }
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

impl TokenClassifier {
    /// Logits `[batch, seq, num_labels]`.
    pub fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> Tensor {
        let mut hidden = self.encoder.forward(inputs, opts).last_hidden_state;
        if let Some(transform) = &self.transform {
            hidden = transform.forward(&hidden);
        }
        self.classifier.forward(&dropout(&hidden, self.dropout, opts.train))
    }

    /// Mean cross-entropy over tagged positions (`labels` `[batch, seq]`, `IGNORE_INDEX` elsewhere).
    pub fn loss(&self, logits: &Tensor, labels: &Tensor, weights: Option<&Tensor>) -> Tensor {
        let classes = logits.size()[2];
        logits.to_kind(Kind::Float).view([-1, classes]).cross_entropy_loss(
            &labels.view([-1]),
            weights,
            Reduction::Mean,
            IGNORE_INDEX,
            0.0,
        )
    }
}
