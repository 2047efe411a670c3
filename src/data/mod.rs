//! The data pipeline: reading labelled examples and corpora, tokenising, batching.

pub mod batching;
pub mod corpus;
pub mod labelled;
pub mod masking;

pub use batching::{Collator, Encoded, HostBatch, Tokenized, epoch_batches, eval_batches, tokenize, tokenize_examples};
pub use labelled::{Columns, Dataset, Example, Format, LabelSet, Location, OnBadRow, read_examples};
