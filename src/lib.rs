//! bertkit: fine-tune and further-pretrain BERT-family encoders on libtorch, reading and writing
//! Hugging Face checkpoints.
//!
//! Where things live:
//! - [`model`]: the network (config, embeddings, encoder, heads), one file to read top to bottom;
//! - [`checkpoint`]: HF directories in and out, weight names mapped in one spot;
//! - [`tokenizer`]: the model's tokenizer and batch padding;
//! - [`train`]: optimiser and training loops;
//! - [`device`]: CPU/CUDA selection and thread settings;
//! - [`cli`]: the `bertkit` command, one module per subcommand.

pub mod checkpoint;
pub mod cli;
pub mod device;
pub mod fsutil;
pub mod model;
pub mod tokenizer;
pub mod train;
