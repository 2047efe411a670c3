//! The data pipeline: reading labelled examples and corpora, tokenising, batching.

pub mod batching;
pub mod corpus;
pub mod labelled;
pub mod long_text;
pub mod masking;
pub mod multiple_choice;
pub mod question_answering;
pub mod retrieval;
pub mod targets;
pub mod token_classification;
pub mod vectors;
pub mod vocabulary;

pub use batching::{
    Collator, Encoded, HostBatch, Sampling, Tokenized, epoch_batches, eval_batches, tokenize, tokenize_examples,
};
pub use labelled::{
    Columns, Dataset, Example, Format, Label, LabelSet, LabelSource, Location, OnBadRow, read_examples,
};
pub use long_text::{LongText, Pieces, WindowPool, tokenize_long};
pub use targets::{Targets, infer_task};
