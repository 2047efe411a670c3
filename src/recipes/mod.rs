//! Recipes: whole jobs as one library call, the same ones the `bertkit` command runs. Each is a
//! struct whose fields are its command's flags and a `run()`; `new(..)` (`FineTune`, `Pretrain`, `Evaluate`, `Predict`) or
//! [`crate::values::from_flags`] gives the flags' defaults in code, so the command and the
//! library cannot drift.
//!
//! - training: [`FineTune`] (text classification, multi-label, regression, token
//!   classification, extractive question answering, sentence embeddings, rerankers) and [`Pretrain`] (further pretraining), each returning [`Trained`];
//! - measuring: [`Evaluate`] (`evaluate()` returns the numbers), [`Probe`], [`DomainFit`],
//!   [`Bench`];
//! - using: [`Predict`] (files in, predictions out), [`FillMask`], [`Embed`],
//!   [`MineNegatives`] (training rows for rerankers and embeddings), [`Inspect`]
//!   (`report()` returns the JSON);
//! - seeing: [`Explain`] (`explain()` returns the attributions), [`Attention`],
//!   [`CompareModels`].
//!
//! The ones that report write their files and print their summary as the command does; the
//! loaded models underneath (`crate::predict`) return values.

mod attention;
mod bench;
mod compare_models;
mod data_flags;
mod domain_fit;
mod embed;
pub mod embedding;
mod evaluate;
mod explain;
mod fill_mask;
mod finetune;
mod inspect;
mod mine_negatives;
pub mod multiple_choice;
mod predict;
mod pretrain;
mod probe;
mod quantize;
pub mod question_answering;
mod session;
pub mod token_classification;

pub use attention::Attention;
pub use bench::Bench;
pub use compare_models::{CompareModels, Comparison};
pub use data_flags::DataFlags;
pub use domain_fit::DomainFit;
pub use embed::Embed;
pub use embedding::EmbeddingFlags;
pub use evaluate::Evaluate;
pub use explain::{Explain, Explanation};
pub use fill_mask::FillMask;
pub use finetune::{FineTune, Loss, Trained, label_set, read_data, split, task_kind};
pub use inspect::Inspect;
pub use mine_negatives::{MineNegatives, MinedFormat};
pub use predict::Predict;
pub use pretrain::{CorpusFlags, Pretrain, split_blocks};
pub use probe::Probe;
pub use quantize::{Quantize, Quantized};
pub use question_answering::QaFlags;
pub use token_classification::TagFlags;
