//! The BERT model: its config and its modules.

mod bert;
mod config;
pub mod recompute;

pub use bert::{
    Bert, EncoderOutput, ForwardOptions, IGNORE_INDEX, Inputs, MaskedLm, MaskedLmOutput, MaskedTargets,
    SequenceClassifier,
};
pub use config::{Activation, BertConfig};
