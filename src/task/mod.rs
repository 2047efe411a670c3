//! Task heads on top of any encoder, each shaped like the transformers class it saves as
//! (`{Family}ForSequenceClassification`, `{Family}ForTokenClassification`, `{Family}ForMaskedLM`,
//! `{Family}ForQuestionAnswering`, `{Family}ForMultipleChoice`),
//! with its loss. The training
//! commands use them, and so do evaluate, predict, fill-mask, embed, attention and bench.

pub mod classification;
pub mod embedding;
pub mod masked_lm;
pub mod multiple_choice;
pub mod question_answering;
pub mod token_classification;

use tch::nn::Path;
use tch::{Kind, Tensor};

pub use classification::{RerankLoss, SequenceClassifier};
pub use masked_lm::{MaskedLm, MaskedLmOutput, MaskedTargets};
pub use multiple_choice::MultipleChoice;
pub use question_answering::{QuestionAnswerer, SpanLogits};
pub use token_classification::TokenClassifier;

use crate::encoder::ModelConfig;
use crate::encoder::layers::{Activation, LayerNorm, Linear, path_at, truncated_normal};
use crate::encoder::{Dims, Encoder, Family};

/// The config.json key under which sentence-transformers (4 and later) records a CrossEncoder's
/// activation (`pretrained::sentence` also maps its other files there).
pub const CROSS_ENCODER_KEY: &str = "sentence_transformers";
/// The sigmoid, as sentence-transformers names an activation.
pub const SIGMOID: &str = "torch.nn.modules.activation.Sigmoid";

/// Records in `config` that it is a sentence-transformers CrossEncoder applying `activation` to
/// its logits, under the key its releases since 4 read (and `TaskKind::of` reads).
pub fn set_cross_encoder(config: &mut ModelConfig, activation: &str) {
    config.set(CROSS_ENCODER_KEY, serde_json::json!({ "activation_fn": activation }));
}

/// Label value that marks positions without a target, as in transformers.
pub const IGNORE_INDEX: i64 = -100;

/// What a fine-tuned model predicts. Saved the way transformers records it (`problem_type`,
/// the architecture), so `evaluate` and `predict` read it back from config.json and
/// `from_pretrained` computes the same loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// One class per text (cross-entropy).
    Classification,
    /// Any set of classes per text, possibly none (sigmoid per class, binary cross-entropy).
    MultiLabel,
    /// One number per text (mean squared error).
    Regression,
    /// One tag per word (NER and other tagging).
    TokenClassification,
    /// The span of a context that answers a question (extractive QA: SQuAD, CUAD).
    QuestionAnswering,
    /// Which of a context's N continuations or answers is right (SWAG, RACE): one logit per
    /// (context, choice) pair, cross-entropy over a question's choices.
    MultipleChoice,
    /// One vector per text, related texts close (sentence embeddings, for search and
    /// similarity; `task::embedding`).
    Embedding,
    /// How relevant a passage is to a query, read together (a cross-encoder reranker): one
    /// logit per pair, its sigmoid the score, binary cross-entropy against 0/1 (or graded)
    /// relevance. Saved as sentence-transformers' CrossEncoder saves it.
    Rerank,
}

impl TaskKind {
    /// The task of a fine-tuned model's config: transformers' `problem_type` where set, else
    /// what transformers infers (one label: regression). A sentence-transformers CrossEncoder
    /// with one label is a reranker where its activation is the sigmoid (its default), and a
    /// regression (the logit is the score) where it is the identity.
    pub fn of(config: &ModelConfig) -> TaskKind {
        let token = config.architectures().iter().any(|a| a.ends_with("ForTokenClassification"));
        let spans = config.architectures().iter().any(|a| a.ends_with("ForQuestionAnswering"));
        let choices = config.architectures().iter().any(|a| a.ends_with("ForMultipleChoice"));
        let activation = config.json().get(CROSS_ENCODER_KEY).map(|c| c["activation_fn"].as_str().unwrap_or(SIGMOID));
        match config.problem_type() {
            _ if token => TaskKind::TokenClassification,
            _ if spans => TaskKind::QuestionAnswering,
            _ if choices => TaskKind::MultipleChoice,
            None if config.num_labels() == 1 && activation == Some(SIGMOID) => TaskKind::Rerank,
            Some("multi_label_classification") => TaskKind::MultiLabel,
            Some("regression") => TaskKind::Regression,
            Some("single_label_classification") => TaskKind::Classification,
            _ if config.num_labels() == 1 => TaskKind::Regression,
            _ => TaskKind::Classification,
        }
    }

    /// transformers' `problem_type` (None: token classification has no such field).
    pub fn problem_type(self) -> Option<&'static str> {
        match self {
            TaskKind::Classification => Some("single_label_classification"),
            TaskKind::MultiLabel => Some("multi_label_classification"),
            TaskKind::Regression => Some("regression"),
            TaskKind::TokenClassification
            | TaskKind::QuestionAnswering
            | TaskKind::MultipleChoice
            | TaskKind::Embedding
            | TaskKind::Rerank => None,
        }
    }

    /// What the task outputs per label from its logits: class probabilities (softmax; per
    /// token for token classification), label probabilities (sigmoid, multi-label) or the score
    /// itself (regression), the relevance probability (rerank).
    pub fn outputs(self, logits: &Tensor) -> Tensor {
        match self {
            TaskKind::MultiLabel | TaskKind::Rerank => logits.sigmoid(),
            TaskKind::Regression | TaskKind::Embedding | TaskKind::QuestionAnswering => logits.shallow_clone(),
            TaskKind::Classification | TaskKind::TokenClassification | TaskKind::MultipleChoice => {
                logits.softmax(-1, Kind::Float)
            }
        }
    }

    /// The flag's spelling (`multi-label`).
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Classification => "classification",
            TaskKind::MultiLabel => "multi-label",
            TaskKind::Regression => "regression",
            TaskKind::TokenClassification => "token-classification",
            TaskKind::QuestionAnswering => "question-answering",
            TaskKind::MultipleChoice => "multiple-choice",
            TaskKind::Embedding => "embedding",
            TaskKind::Rerank => "rerank",
        }
    }
}

/// A layer of a head under `path`, `in_dim` to `out_dim`, initialised as the family does (`std`:
/// the truncated normal's deviation where the family draws those, `bias` whether it has one
/// there; BERT-shaped heads always have).
pub(crate) fn head_linear(root: &Path, path: &str, dims: &Dims, shape: (i64, i64), std: f64, bias: bool) -> Linear {
    let (p, (in_dim, out_dim)) = (path_at(root, path), shape);
    match dims.head.truncated_init {
        Some(t) => Linear::with_init(p, in_dim, out_dim, truncated_normal(out_dim, in_dim, std, t.cutoff), bias),
        None => Linear::new(p, in_dim, out_dim, dims.initializer_range),
    }
}

/// Dense, activation, layer norm: BERT's MLM transform, ModernBERT's prediction head.
pub(crate) struct Transform {
    dense: Linear,
    activation: Activation,
    norm: LayerNorm,
}

impl Transform {
    /// `dense` and `norm` are the layers' dotted paths; the output is `out_dim` wide.
    pub fn new(root: &Path, dense: &str, norm: &str, dims: &Dims, activation: Activation, out_dim: i64) -> Self {
        let std = dims.head.truncated_init.map_or(0.0, |t| t.dense_std);
        Transform {
            dense: head_linear(root, dense, dims, (dims.hidden_size, out_dim), std, dims.head.dense_bias),
            activation,
            norm: LayerNorm::with_bias(path_at(root, norm), out_dim, dims.layer_norm_eps, dims.head.norm_bias),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        self.norm.forward(&self.activation.apply(&self.dense.forward(xs)))
    }
}

/// ModernBERT's prediction head `{head}.dense`, the config's activation, `{head}.norm`.
pub(crate) fn prediction_head(root: &Path, head: &str, dims: &Dims) -> Transform {
    let activation = dims.head.activation.unwrap_or(dims.hidden_act);
    Transform::new(root, &format!("{head}.dense"), &format!("{head}.norm"), dims, activation, dims.hidden_size)
}

/// An encoder with a task head: what `pretrained::load` builds.
pub trait TaskModel: Sized {
    /// transformers class suffix (`ForSequenceClassification`; `Model` for a bare encoder).
    const ARCHITECTURE: &'static str;
    /// Whether the encoder is built with its pooler (BERT's `add_pooling_layer`).
    fn pooler(family: &Family) -> bool;
    /// Creates the head's parameters under the VarStore root (`family.heads` names them).
    fn new(root: &Path, encoder: Box<dyn Encoder>, family: &Family, dims: &Dims, config: &ModelConfig) -> Self;
    fn encoder(&self) -> &dyn Encoder;
    fn encoder_mut(&mut self) -> &mut dyn Encoder;
    /// The head's module, which `--new-head` starts fresh (None: nothing to replace).
    fn head_path(_family: &Family) -> Option<&'static str> {
        None
    }
}

/// An encoder alone (transformers' `AutoModel`), with or without its pooler.
pub struct Bare<const POOLER: bool> {
    pub encoder: Box<dyn Encoder>,
}

impl<const P: bool> TaskModel for Bare<P> {
    const ARCHITECTURE: &'static str = "Model";

    fn pooler(_: &Family) -> bool {
        P
    }

    fn new(_: &Path, encoder: Box<dyn Encoder>, _: &Family, _: &Dims, _: &ModelConfig) -> Self {
        Bare { encoder }
    }
    fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }
    fn encoder_mut(&mut self) -> &mut dyn Encoder {
        self.encoder.as_mut()
    }
}
