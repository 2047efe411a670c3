//! Recipes: whole jobs as one library call, the same ones the `bertkit` command runs. Each is a
//! struct whose fields are its command's flags (`new` gives their defaults in code) and a `run`.
//!
//! - [`FineTune`]: a model and labelled data to a fine-tuned model (text classification,
//!   multi-label, regression, token classification), with its model card;
//! - [`Pretrain`]: further pretraining (masked-language modelling) on unlabelled text;
//! - `token_classification`: evaluating and predicting a tagger from files.

mod attention;
mod bench;
mod compare_models;
mod data_flags;
mod domain_fit;
mod embed;
mod evaluate;
mod explain;
mod fill_mask;
mod finetune;
mod inspect;
mod predict;
mod pretrain;
mod probe;
mod session;
pub mod token_classification;

pub use attention::Attention;
pub use bench::Bench;
pub use compare_models::CompareModels;
pub use data_flags::DataFlags;
pub use domain_fit::DomainFit;
pub use embed::Embed;
pub use evaluate::Evaluate;
pub use explain::{Explain, Explanation};
pub use fill_mask::FillMask;
pub use finetune::{FineTune, Trained, label_set, read_data, split, task_kind};
pub use inspect::Inspect;
pub use predict::Predict;
pub use pretrain::{CorpusFlags, Pretrain, split_blocks};
pub use probe::Probe;
pub use token_classification::TagFlags;
