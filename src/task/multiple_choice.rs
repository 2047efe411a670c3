//! Multiple choice (`BertForMultipleChoice` and its kin): each (context, choice) pair read as one
//! sequence, one logit from a sentence head of the family's multiple-choice shape
//! (`HeadLayout::multiple_choice`: BERT's and RoBERTa's pooler, DistilBERT's pre_classifier,
//! DeBERTa's context pooler, ModernBERT's prediction head, ELECTRA's sequence summary), the
//! logits of a question's choices side by side. The loss is transformers': cross-entropy over
//! each question's choices.

use tch::nn::Path;
use tch::{Kind, Reduction, Tensor};

use super::classification::SentenceHead;
use super::{IGNORE_INDEX, TaskModel};
use crate::encoder::ModelConfig;
use crate::encoder::{ClassifierKind, Dims, Encoder, Family, ForwardOptions, Inputs};

pub struct MultipleChoice {
    pub encoder: Box<dyn Encoder>,
    head: SentenceHead,
}

impl TaskModel for MultipleChoice {
    const ARCHITECTURE: &'static str = "ForMultipleChoice";

    fn pooler(family: &Family) -> bool {
        family.heads.multiple_choice == ClassifierKind::Pooled
    }

    /// One output whatever the config's labels (transformers' `nn.Linear(hidden, 1)`).
    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, config: &ModelConfig) -> Self {
        let mut one = config.clone();
        one.set_labels(&["LABEL_0".to_string()]);
        MultipleChoice { encoder, head: SentenceHead::new(root, family, dims, family.heads.multiple_choice, &one) }
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

impl MultipleChoice {
    /// Logits `[questions, choices]` of `inputs` holding each question's `choices` pairs one
    /// after the other (`[questions x choices, seq]`).
    pub fn logits(&self, inputs: &Inputs, choices: usize, opts: ForwardOptions) -> Tensor {
        self.head.logits(self.encoder.as_ref(), inputs, opts).view([-1, choices as i64])
    }

    /// transformers' loss: the mean over questions of the cross-entropy of their choices'
    /// logits against the right one's index.
    pub fn loss(logits: &Tensor, labels: &Tensor) -> Tensor {
        logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, IGNORE_INDEX, 0.0)
    }
}
