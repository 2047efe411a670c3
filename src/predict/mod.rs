//! Loaded models answering: a sequence classifier's labels and scores, a token classifier's tags
//! and entities, a masked-language model's fill-mask and held-out loss, sentence embeddings; with
//! the evaluation each gives on labelled data. Training (`crate::train`) runs these same types.

pub mod embedding;
pub mod masked_lm;
pub mod multiple_choice;
pub mod question_answering;
pub mod retrieval;
pub mod sequence_classification;
pub mod token_classification;

use std::collections::BTreeMap;

pub use embedding::{Embedder, Pooling};
pub use masked_lm::{Blocks, EVAL_MASK_SEED, MaskedLanguageModel};
pub use multiple_choice::Chooser;
pub use question_answering::{Decoding, Reader};
pub use sequence_classification::{
    Classifier, Decision, LabelledSet, Prediction, THRESHOLDS_FILE, decide, pool_documents, read_thresholds,
    write_thresholds,
};
pub use token_classification::{Aggregation, Entity, TaggedSet, Tagger, WordTag, entities_in_texts};

/// Held-out results: flat metrics for logs and model selection, plus a full report.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: BTreeMap<String, f64>,
    pub report: serde_json::Value,
    /// Human-readable lines for the terminal.
    pub summary: String,
}

/// The index of the largest score (the first of equals; 0 for none): the predicted class.
pub fn argmax(scores: &[f32]) -> usize {
    (0..scores.len()).max_by(|&i, &j| scores[i].total_cmp(&scores[j])).unwrap_or(0)
}
