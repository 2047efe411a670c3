//! Recipes: whole jobs as one library call, the same ones the `bertkit` command runs. Each is a
//! struct whose fields are its command's flags (`new` gives their defaults in code) and a `run`.
//!
//! - [`FineTune`]: a model and labelled data to a fine-tuned model (text classification,
//!   multi-label, regression, token classification), with its model card;
//! - [`Pretrain`]: further pretraining (masked-language modelling) on unlabelled text;
//! - `token_classification`: evaluating and predicting a tagger from files.

mod data_flags;
mod finetune;
mod pretrain;
mod session;
pub mod token_classification;

pub use data_flags::DataFlags;
pub use finetune::{FineTune, Trained, label_set, read_data, split, task_kind};
pub use pretrain::{CorpusFlags, Pretrain, split_blocks};
pub use token_classification::TagFlags;
