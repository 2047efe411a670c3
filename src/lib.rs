//! bertkit: fine-tune and further-pretrain BERT-family encoders on libtorch, reading and writing
//! Hugging Face checkpoints.
//!
//! Where things live:
//! - [`model`]: the network (config, embeddings, encoder, heads), one file to read top to bottom;
//! - [`checkpoint`]: HF directories in and out, weight names mapped in one spot;
//! - [`tokenizer`]: the model's tokenizer;
//! - [`data`]: reading examples, tokenising, length-bucketed batches, padding;
//! - [`train`]: optimiser and training loops;
//! - [`device`]: CPU/CUDA selection, threads, bf16 autocast;
//! - [`torch_failure`]: libtorch failures (out of memory) as one-line errors;
//! - [`viz`]: pictures (training curves, attention maps);
//! - [`cli`]: the `bertkit` command, one module per subcommand.

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod device;
pub mod fsutil;
pub mod model;
pub mod tokenizer;
pub mod torch_failure;
pub mod train;
pub mod viz;
