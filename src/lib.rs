//! bertkit: fine-tune and further-pretrain BERT-family encoders on libtorch, reading and writing
//! Hugging Face checkpoints. `docs/architecture.md` draws how data flows through these modules.
//!
//! Where things live:
//! - [`encoder`]: the `Encoder` interface, the family registry, one module per family;
//! - [`task`]: heads on top of any encoder (classification, masked LM) and their losses;
//! - [`pretrained`]: model directories in and out, and the one loader;
//! - [`tokenizer`]: the model's tokenizer;
//! - [`data`]: reading examples, tokenising, length-bucketed batches, padding, masking;
//! - [`metrics`]: evaluation metrics of every task, as scikit-learn, scipy and seqeval define them;
//! - [`train`]: the training loop, its run directory, optimiser and schedule;
//! - [`device`]: CPU/CUDA selection, threads, precision (bf16 autocast);
//! - [`dist`]: data-parallel training on c10d (rank, process group, DDP's Reducer, `launch`);
//! - [`ffi`]: every call into `csrc/`, wrapped safely;
//! - [`torch_failure`]: libtorch failures (out of memory) as one-line errors;
//! - [`viz`]: pictures (training curves, attention maps) from tensors it is given;

pub mod data;
pub mod device;
pub mod distributed;
pub mod encoder;
pub mod error;
pub mod explain;
pub mod ffi;
pub mod fsutil;
pub mod metrics;
pub mod predict;
pub mod pretrained;
pub mod progress;
pub mod recipes;
pub mod serve;
pub mod task;
pub mod tokenizer;
pub mod torch_failure;
pub mod train;
pub mod values;
pub mod viz;

pub use error::Error;
