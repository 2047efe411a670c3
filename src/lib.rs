//! bertkit: fine-tune and further-pretrain BERT-family encoders on libtorch, reading and writing
//! Hugging Face checkpoints. `docs/architecture.md` draws how data flows through these modules.
//!
//! Where things live, bottom to top (a module uses only those above it in this list's reverse):
//! - [`error`]: the failure kinds a caller branches on ([`Error`]); [`values`]: flag value parsers
//!   and [`values::from_flags`] (a recipe's defaults in code); `progress`, `fsutil`, `ffi`,
//!   `torch_failure`: plumbing (public for the binary, hidden from these pages);
//! - [`device`]: CPU/CUDA selection, threads, precision; [`distributed`]: data-parallel training
//!   on c10d (rank, process group, DDP's Reducer);
//! - [`tokenizer`]: the model's tokenizer; [`metrics`]: every task's metrics, as scikit-learn,
//!   scipy and seqeval define them;
//! - [`encoder`]: the `Encoder` interface, `ModelConfig`, the family registry, one module per family;
//! - [`task`]: heads on top of any encoder and their losses;
//! - [`data`]: reading examples, tokenising, length-bucketed batches, padding, masking;
//! - [`pretrained`]: model directories in and out, and the one loader;
//! - [`viz`]: pictures from numbers it is given; [`explain`]: attributions and set statistics;
//! - [`predict`]: loaded models answering ([`predict::Classifier`], [`predict::Tagger`],
//!   [`predict::Embedder`], [`predict::MaskedLanguageModel`]); [`serve`]: the HTTP server;
//! - [`train`]: the training loop, its run directory, the three objectives;
//! - [`recipes`]: whole jobs, the ones the `bertkit` command runs ([`recipes::FineTune`],
//!   [`recipes::Pretrain`], ...).
//!
//! ```
//! use bertkit::predict::Classifier;
//!
//! let classifier = Classifier::load("tests/fixtures/tiny-bert")?; // a tiny random model
//! for prediction in classifier.predict(&["a fine film"])? {
//!     println!("{:?} {:?}", prediction.labels, prediction.scores);
//! }
//! # anyhow::Ok(())
//! ```

pub mod data;
pub mod device;
pub mod distributed;
pub mod encoder;
pub mod error;
pub mod explain;
#[doc(hidden)] // plumbing: public for the binary and the tests, not the API
pub mod ffi;
#[doc(hidden)]
pub mod fsutil;
pub mod metrics;
pub mod predict;
pub mod pretrained;
#[doc(hidden)]
pub mod progress;
pub mod recipes;
pub mod serve;
pub mod task;
pub mod tokenizer;
#[doc(hidden)]
pub mod torch_failure;
pub mod train;
pub mod values;
pub mod viz;

pub use error::Error;
// The calls most programs need, at the crate root.
pub use predict::{Classifier, Embedder, Tagger};
pub use recipes::{Evaluate, FineTune, Pretrain};
pub use serve::Serve;
