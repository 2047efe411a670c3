//! Task heads on top of any encoder, each shaped like the transformers class it saves as
//! (`{Family}ForSequenceClassification`, `{Family}ForMaskedLM`), with its loss. The training
//! commands use them, and so do evaluate, predict, fill-mask, embed, attention and bench.

pub mod classification;
pub mod masked_lm;

use tch::nn::Path;

pub use classification::SequenceClassifier;
pub use masked_lm::{MaskedLm, MaskedLmOutput, MaskedTargets};

use crate::encoder::{Dims, Encoder, Family};
use crate::pretrained::ModelConfig;

/// Label value that marks positions without a target, as in transformers.
pub const IGNORE_INDEX: i64 = -100;

/// An encoder with a task head: what `pretrained::load` builds.
pub trait TaskModel: Sized {
    /// transformers class suffix (`ForSequenceClassification`; `Model` for a bare encoder).
    const ARCHITECTURE: &'static str;
    /// Whether the encoder is built with its pooler (BERT's `add_pooling_layer`).
    fn pooler(family: &Family) -> bool;
    /// Creates the head's parameters under the VarStore root (`family.heads` names them).
    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, config: &ModelConfig) -> Self;
    fn encoder(&self) -> &dyn Encoder;
    fn encoder_mut(&mut self) -> &mut dyn Encoder;
    /// The head's module, which `--new-head` starts fresh (None: nothing to replace).
    fn head_path(_family: &Family) -> Option<&'static str> {
        None
    }
}

/// An encoder alone (transformers' `AutoModel`), with or without its pooler.
pub struct Bare<const POOLER: bool> {
    pub encoder: Box<dyn Encoder>,
}

impl<const P: bool> TaskModel for Bare<P> {
    const ARCHITECTURE: &'static str = "Model";

    fn pooler(_: &Family) -> bool {
        P
    }

    fn new(_: &Path, encoder: Box<dyn Encoder>, _: &Family, _: &Dims, _: &ModelConfig) -> Self {
        Bare { encoder }
    }
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn encoder_mut(&mut self) -> &mut dyn Encoder {
        self.encoder.as_mut()
    }
}
