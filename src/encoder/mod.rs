//! The encoder interface every family implements, and the registry of families.
//!
//! `Encoder` is a trait (used as `Box<dyn Encoder>`), not an enum: a family is one module that
//! implements it plus one line in `FAMILIES`, and nothing else in the crate matches on the
//! family, so adding one touches no other file. The price, a virtual call per forward pass, is
//! nothing beside the matrix products behind it.
//!
//! What a family provides is `Family`: its config.json reader (`dims`), its constructor
//! (`build`), its weight-name map (`canonical_name`), and where transformers keeps its task
//! heads (`HeadLayout`); the heads themselves are built by `crate::task` from that layout. A
//! family whose config chooses between two head layouts has an entry for each (`selects`).

pub mod bert;
pub mod config;
pub mod deberta;
pub mod distilbert;
pub mod electra;
pub mod int8;
pub mod layers;
pub mod modernbert;
pub mod packing;
pub mod recompute;
pub mod roberta;

use anyhow::{Result, bail};
use tch::Tensor;
use tch::nn::Path;

pub use config::ModelConfig;
pub use layers::Activation;
pub use packing::Unpadding;

use crate::device::upload;

/// Every family bertkit reads, by `model_type`.
pub(crate) const FAMILIES: &[Family] = &[
    bert::FAMILY,
    roberta::FAMILY,
    roberta::XLM_FAMILY,
    distilbert::FAMILY,
    electra::FAMILY,
    modernbert::FAMILY,
    deberta::LM_PREDICTIONS_FAMILY,
    deberta::FAMILY,
];

/// The family of a config.json, or an error listing the ones there are.
pub(crate) fn family_of(config: &ModelConfig) -> Result<&'static Family> {
    let model_type = config.model_type();
    match FAMILIES.iter().find(|f| f.model_type == model_type && f.selects.as_ref().is_none_or(|s| (s.reads)(config))) {
        Some(family) => Ok(family),
        None => {
            let mut known: Vec<&str> = FAMILIES.iter().map(|f| f.model_type).collect();
            known.dedup();
            bail!("model_type {model_type:?} is not supported (supported: {})", known.join(", "))
        }
    }
}

/// An encoder family: how to read its config, build it, and name its weights.
pub struct Family {
    /// `model_type` in config.json.
    pub model_type: &'static str,
    /// Where one `model_type` keeps its heads in more than one layout (DeBERTa's `legacy`): the
    /// configs this entry reads; None: every config of its `model_type`.
    pub selects: Option<Selector>,
    /// Stem of its transformers classes: `{stem}ForSequenceClassification`, `{stem}ForMaskedLM`.
    pub class_stem: &'static str,
    /// config.json keys that `--dropout` sets (hidden and attention dropout).
    pub dropout_keys: &'static [&'static str],
    /// Checks config.json and reads what the rest of bertkit needs from it.
    pub dims: fn(&ModelConfig) -> Result<Dims>,
    /// Creates the encoder's parameters under the VarStore root, with transformers' init.
    pub build: fn(&Path, &ModelConfig, bool) -> Result<Box<dyn Encoder>>,
    /// A tensor name as found in a checkpoint -> the name bertkit's VarStore uses.
    pub canonical_name: fn(&str) -> Mapped,
    pub heads: HeadLayout,
}

impl Family {
    /// The transformers class of this family with `head` (`ForSequenceClassification`).
    pub fn architecture(&self, head: &str) -> String {
        format!("{}{head}", self.class_stem)
    }

    /// Whether a (canonical) tensor belongs to a task head rather than the encoder: missing,
    /// it is created fresh; present but unused by the task loaded, it is dropped with a note.
    pub fn is_head_tensor(&self, name: &str) -> bool {
        self.heads.prefixes.iter().any(|p| name.starts_with(p))
    }

    /// Where a load started this entry's MLM head fresh (`initialised`) while the checkpoint
    /// holds one under another entry's names (`unused`): which setting would have read it.
    pub fn mlm_head_elsewhere(&self, initialised: &[String], unused: &[String]) -> Option<String> {
        if !initialised.iter().any(|n| n.starts_with(self.heads.mlm_dense)) {
            return None;
        }
        FAMILIES.iter().filter(|f| f.model_type == self.model_type).find_map(|other| {
            let selector = other.selects.as_ref()?;
            let held = unused.iter().any(|n| n.starts_with(other.heads.mlm_dense));
            // The head's module: where its bias lies (`cls.predictions`, `lm_predictions.lm_head`).
            let module = |f: &Family| f.heads.mlm_bias.rsplit_once('.').map_or(f.heads.mlm_bias, |(m, _)| m);
            (held && other.heads.mlm_dense != self.heads.mlm_dense).then(|| {
                format!(
                    "the checkpoint's MLM head is {}, which this config does not read: set {} in config.json \
                     to start from it (as transformers then does) instead of a fresh {}",
                    module(other),
                    selector.setting,
                    module(self)
                )
            })
        })
    }
}

/// Which configs of its `model_type` a registry entry reads.
pub struct Selector {
    pub reads: fn(&ModelConfig) -> bool,
    /// The config.json setting that chooses it, for messages (`"legacy": false`).
    pub setting: &'static str,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Family({})", self.model_type)
    }
}

/// Where a family's transformers models keep their task heads (canonical names).
pub struct HeadLayout {
    /// The sequence-classification head's module, and its shape.
    pub classifier: &'static str,
    pub classifier_kind: ClassifierKind,
    /// Masked-LM head: transform (dense, activation, layer norm), then the decoder tied to the
    /// word embeddings plus this bias.
    pub mlm_dense: &'static str,
    pub mlm_layer_norm: &'static str,
    pub mlm_bias: &'static str,
    /// The transform's activation; None: the config's `hidden_act` (BERT's choice).
    pub mlm_activation: Option<Activation>,
    /// The multiple-choice head's shape (`{Family}ForMultipleChoice`: one logit per choice from
    /// `{classifier}`); RoBERTa's and ELECTRA's differ from their sequence classifiers'.
    pub multiple_choice: ClassifierKind,
    /// The question-answering head's layer (transformers' `qa_outputs`; ModernBERT's `classifier`,
    /// after its prediction head as in token classification).
    pub qa_outputs: &'static str,
    /// Name prefixes of every task-head tensor (pooler included where the encoder's is optional).
    pub prefixes: &'static [&'static str],
}

/// The shapes transformers gives sequence classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierKind {
    /// BERT: dropout, then `{classifier}` (one linear layer) on the pooler's output.
    Pooled,
    /// RoBERTa (tanh), ELECTRA (GELU): on the first token's state, dropout,
    /// `{classifier}.dense`, the activation, dropout, `{classifier}.out_proj`; no pooler.
    FirstTokenDense { activation: Activation },
    /// DistilBERT: on the first token's state, `{dense}`, ReLU, dropout, `{classifier}`.
    PreClassifier { dense: &'static str },
    /// ModernBERT: on the first token's state or the mean over real tokens (the config's
    /// `classifier_pooling`), `{head}` (dense, activation, layer norm), dropout, `{classifier}`;
    /// its token classifier puts the same `{head}` before dropout and `{classifier}`.
    PredictionHead { head: &'static str },
    /// DeBERTa: on the first token, dropout (`pooler_dropout`), `{dense}` and the config's
    /// `pooler_hidden_act` (transformers' `ContextPooler`), dropout, `{classifier}`.
    ContextPooler { dense: &'static str },
    /// ELECTRA's multiple choice (its `SequenceSummary`): on the first token, `{dense}`, the
    /// config's `summary_activation`, dropout (`summary_last_dropout`), `{classifier}`.
    Summary { dense: &'static str },
}

/// What to do with a tensor found in a checkpoint file.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapped {
    /// Load it under this canonical name.
    Param(String),
    /// A buffer or a tied copy that carries no information of its own.
    Skip,
}

/// The sizes and settings of a family's config that heads, data and flag checks need.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub hidden_size: i64,
    /// Width of the embeddings (and the tied MLM decoder): hidden_size except in ELECTRA.
    pub embedding_size: i64,
    pub vocab_size: i64,
    /// Longest sequence the position embeddings cover.
    pub max_positions: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub hidden_act: Activation,
    /// Dropout before a sequence-classification head's layers.
    pub classifier_dropout: f64,
    /// Dropout before the token-classification layer (DistilBERT: its hidden dropout).
    pub token_classifier_dropout: f64,
    /// Dropout before the question-answering layer (DistilBERT: `qa_dropout`; ModernBERT:
    /// `classifier_dropout`; the others have none there).
    pub qa_dropout: f64,
    pub head: HeadShape,
}

/// What the task heads' layers look like where a config decides it (ModernBERT's); every
/// BERT-shaped family has `HeadShape::BERT`.
#[derive(Debug, Clone, Copy)]
pub struct HeadShape {
    /// The heads' dense layers have biases (ModernBERT: `classifier_bias`).
    pub dense_bias: bool,
    /// The heads' layer norms have biases (ModernBERT: `norm_bias`).
    pub norm_bias: bool,
    /// The MLM decoder adds a bias (ModernBERT: `decoder_bias`).
    pub decoder_bias: bool,
    /// The transform's activation when the config names one (ModernBERT: `classifier_activation`).
    pub activation: Option<Activation>,
    /// Sentence vector of `PredictionHead`: the mean over real tokens (else the first token).
    pub mean_pooling: bool,
    /// ModernBERT's initialisation of fresh heads (truncated normals); None: normal(0, range).
    pub truncated_init: Option<TruncatedInit>,
    /// `ContextPooler`'s activation (DeBERTa's `pooler_hidden_act`) and the dropout before its
    /// dense layer (`pooler_dropout`); other shapes have no such layer.
    pub pooler_activation: Activation,
    pub pooler_dropout: f64,
}

/// Standard deviations of ModernBERT's `_init_weights`, each normal truncated at `cutoff` of them.
#[derive(Debug, Clone, Copy)]
pub struct TruncatedInit {
    pub cutoff: f64,
    /// The heads' dense layer (`initializer_range / sqrt(2 num_layers)`).
    pub dense_std: f64,
    /// The classifier (`hidden_size ** -0.5`).
    pub classifier_std: f64,
}

impl HeadShape {
    pub const BERT: HeadShape = HeadShape {
        dense_bias: true,
        norm_bias: true,
        decoder_bias: true,
        activation: None,
        mean_pooling: false,
        truncated_init: None,
        pooler_activation: Activation::Gelu,
        pooler_dropout: 0.0,
    };
}

/// An encoder: token ids in, hidden states (and attention probabilities) out.
pub trait Encoder {
    fn forward(&self, inputs: &Inputs, opts: ForwardOptions) -> EncoderOutput;

    /// The last layer's output at `positions` only (`[batch, m]` positions of each sequence):
    /// `[batch, m, hidden]`. Masked-language modelling needs nothing else, and the last layer's
    /// feed-forward and attention output then run on ~15% of the positions.
    fn forward_at(&self, inputs: &Inputs, opts: ForwardOptions, positions: &Tensor) -> Tensor;

    /// The word-embedding matrix, which the MLM decoder shares.
    fn word_embeddings(&self) -> &Tensor;

    /// The pooler's output (`[batch, hidden]`) from the first token's last hidden state, for
    /// encoders that have one (BERT's `pooler.dense` and tanh); `EncoderOutput::pooled` is this.
    fn pool(&self, _first: &Tensor) -> Option<Tensor> {
        None
    }

    /// Recompute each layer's activations in backward instead of keeping them (training only).
    fn set_gradient_checkpointing(&mut self, on: bool);

    /// Whether padded batches run packed (`packing.rs`).
    fn set_unpadding(&mut self, unpadding: Unpadding);

    /// Every layer's linear projections (attention and feed-forward), layer by layer: what int8
    /// quantisation (`int8.rs`) replaces. Embeddings, the pooler and task heads are not among them.
    fn linears(&mut self) -> Vec<&mut layers::Linear>;
}

/// One batch of token ids, as the tokenizer and collator produce it. All `[batch, seq]`, int64.
#[derive(Debug)]
pub struct Inputs {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Tensor,
    /// Whether any position is padding. Known where the batch is built; asking the mask on a GPU
    /// would make the host wait for it at every forward pass.
    pub padded: bool,
    /// Each row's number of real tokens, where the batch was built on the host with its real
    /// tokens first (the collator's): packing a batch (`packing.rs`) then reads nothing back from
    /// the device. None: any mask, read when needed.
    pub lengths: Option<Vec<i64>>,
    /// transformers' `inputs_embeds`: word embeddings (`[batch, seq, embedding_size]`) used
    /// instead of looking `input_ids` up, which then still give positions. Attributions
    /// (`crate::explain`) differentiate the model with respect to them.
    pub inputs_embeds: Option<Tensor>,
}

impl Inputs {
    /// Inputs from their tensors, reading the mask once to see whether anything is padded.
    pub fn new(input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Self {
        let padded = attention_mask.eq(0).any().int64_value(&[]) != 0;
        Inputs { input_ids, attention_mask, token_type_ids, padded, lengths: None, inputs_embeds: None }
    }

    pub fn to_device(&self, device: tch::Device) -> Inputs {
        Inputs {
            input_ids: upload(&self.input_ids, device),
            attention_mask: upload(&self.attention_mask, device),
            token_type_ids: upload(&self.token_type_ids, device),
            padded: self.padded,
            lengths: self.lengths.clone(),
            inputs_embeds: self.inputs_embeds.as_ref().map(|e| upload(e, device)),
        }
    }
}

/// What a forward pass should compute beyond the last hidden state.
#[derive(Clone, Copy, Default)]
pub struct ForwardOptions<'a> {
    /// Dropout on (training) or off (evaluation).
    pub train: bool,
    pub output_hidden_states: bool,
    pub output_attentions: bool,
    /// Every layer's attention probabilities handed here as they are made, not returned (it
    /// takes precedence over `output_attentions`).
    pub attention_sink: Option<&'a dyn AttentionSink>,
}

impl<'a> ForwardOptions<'a> {
    pub fn train() -> Self {
        ForwardOptions { train: true, ..Default::default() }
    }
    pub fn eval() -> Self {
        ForwardOptions::default()
    }

    /// Whether the layers must compute attention probabilities (no fused kernel).
    pub fn wants_probs(&self) -> bool {
        self.output_attentions || self.attention_sink.is_some()
    }

    /// Where layer `layer`'s attention probabilities go.
    pub fn probs(&self, layer: usize) -> Probs<'a> {
        match (self.attention_sink, self.output_attentions) {
            (Some(sink), _) => Probs::Sunk(sink, layer),
            (None, true) => Probs::Returned,
            (None, false) => Probs::Unwanted,
        }
    }
}

/// Takes attention probabilities as a forward pass makes them, a few examples at a time,
/// instead of the pass returning every layer's `[batch, heads, seq, seq]`: compare-models
/// reduces the second model's against the first's as they come, in cache and never kept.
/// Several threads may hand over a layer's chunks at once, in any order.
pub trait AttentionSink: Sync {
    /// Layer `layer`'s probabilities (`[examples, heads, seq, seq]`) of the batch's examples
    /// `first..first + examples`.
    fn take(&self, layer: usize, first: i64, probs: &Tensor);
}

/// What a layer does with its attention probabilities.
#[derive(Clone, Copy)]
pub enum Probs<'a> {
    /// Nothing: the fused kernel runs where it can.
    Unwanted,
    /// Returned with the layer's output (`output_attentions`).
    Returned,
    /// Handed to the sink as the layer (the `usize`) makes them.
    Sunk(&'a dyn AttentionSink, usize),
}

impl Probs<'_> {
    pub fn wanted(self) -> bool {
        !matches!(self, Probs::Unwanted)
    }

    /// A whole batch's probabilities sent where they go: returned, to the sink, or dropped.
    pub fn deliver(self, probs: Tensor) -> Option<Tensor> {
        match self {
            Probs::Unwanted => None,
            Probs::Returned => Some(probs),
            Probs::Sunk(sink, layer) => {
                sink.take(layer, 0, &probs);
                None
            }
        }
    }
}

#[derive(Debug)]
pub struct EncoderOutput {
    pub last_hidden_state: Tensor,
    /// Embedding output then every layer's output (`num_hidden_layers + 1` tensors) when asked.
    pub hidden_states: Vec<Tensor>,
    /// `[batch, heads, seq, seq]` softmax probabilities of every layer when asked.
    pub attentions: Vec<Tensor>,
    /// The sentence vector of a family with a pooler (BERT: `tanh(dense(h[CLS]))`), when built.
    pub pooled: Option<Tensor>,
}
