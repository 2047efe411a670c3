//! Training: the loop every objective shares (`trainer`), the run directory it writes
//! (`run_dir`), and the objectives that use it: `sequence_classification`,
//! `token_classification`, `question_answering`, `embedding` (sentence embeddings) and `masked_lm` (further
//! pretraining).

pub mod config;
pub mod embedding;
pub mod fingerprint;
pub mod log;
pub mod loss_scale;
pub mod loss_weights;
pub mod masked_lm;
pub mod model_card;
pub mod multiple_choice;
pub mod optim;
pub mod probe;
pub mod question_answering;
pub mod run_dir;
pub mod schedule;
pub mod sequence_classification;
pub mod tensorboard;
pub mod token_classification;
pub mod trainer;

pub use config::{HyperParams, Placement, RunControl, TrainConfig};
pub use embedding::SentenceEmbedding;
pub use masked_lm::MaskedLanguageModelling;
pub use multiple_choice::MultipleChoiceTraining;
pub use question_answering::QuestionAnswering;
pub use sequence_classification::SequenceClassification;
pub use token_classification::TokenClassification;
pub use trainer::{Objective, Outcome, OwnBackward, StepLoss, Stop, train};

pub use crate::predict::Evaluation;
