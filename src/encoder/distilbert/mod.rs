//! DistilBERT: BERT's layer arithmetic under its own names (`distilbert.transformer.layer.N.
//! attention.q_lin`, `sa_layer_norm`, `ffn.lin1`, ...), with no token types, no pooler, no
//! dropout after the attention's output projection, a `pre_classifier` + ReLU head on the first
//! token, and its own config keys (`dim`, `n_layers`, ...), read here into BERT's.

mod names;

use anyhow::{Result, bail};
use serde::Deserialize;
use tch::nn::Path;

use super::bert::{Bert, BertConfig, Layout, Positions};
use super::{ClassifierKind, Dims, Encoder, Family, HeadLayout};
use crate::encoder::ModelConfig;

/// DistilBERT in the registry (`encoder::FAMILIES`).
pub const FAMILY: Family = Family {
    model_type: "distilbert",
    selects: None,
    class_stem: "DistilBert",
    dropout_keys: &["dropout", "attention_dropout"],
    dims: |config| {
        let c = config_of(config)?;
        let qa_dropout = config.parse::<DistilBertConfig>()?.qa_dropout;
        Ok(Dims { token_classifier_dropout: c.hidden_dropout_prob, qa_dropout, ..c.dims() })
    },
    build,
    canonical_name: names::canonical,
    heads: HeadLayout {
        classifier: "classifier",
        classifier_kind: ClassifierKind::PreClassifier { dense: "pre_classifier" },
        multiple_choice: ClassifierKind::PreClassifier { dense: "pre_classifier" },
        mlm_dense: "vocab_transform",
        mlm_layer_norm: "vocab_layer_norm",
        mlm_bias: "vocab_projector.bias",
        mlm_activation: None,
        qa_outputs: "qa_outputs",
        prefixes: &[
            "qa_outputs.", "vocab_transform.", "vocab_layer_norm.", "vocab_projector.", "pre_classifier.",
            "classifier.",
        ],
    },
};

const LAYOUT: Layout = Layout {
    layers: "transformer.layer",
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attention_output: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    intermediate: "ffn.lin1",
    output: "ffn.lin2",
    output_norm: "output_layer_norm",
    token_types: false,
    attention_output_dropout: false,
};

/// DistilBERT's config.json keys, with transformers' defaults.
#[derive(Debug, Deserialize)]
struct DistilBertConfig {
    vocab_size: i64,
    #[serde(default = "d_positions")]
    max_position_embeddings: i64,
    #[serde(default)]
    sinusoidal_pos_embds: bool,
    #[serde(default = "d_layers")]
    n_layers: i64,
    #[serde(default = "d_heads")]
    n_heads: i64,
    #[serde(default = "d_dim")]
    dim: i64,
    #[serde(default = "d_hidden")]
    hidden_dim: i64,
    #[serde(default = "d_dropout")]
    dropout: f64,
    #[serde(default = "d_dropout")]
    attention_dropout: f64,
    #[serde(default = "d_activation")]
    activation: String,
    #[serde(default = "d_init")]
    initializer_range: f64,
    #[serde(default = "d_classifier_dropout")]
    seq_classif_dropout: f64,
    #[serde(default = "d_dropout")]
    qa_dropout: f64,
    #[serde(default)]
    pad_token_id: i64,
}

fn d_positions() -> i64 {
    512
}
fn d_layers() -> i64 {
    6
}
fn d_heads() -> i64 {
    12
}
fn d_dim() -> i64 {
    768
}
fn d_hidden() -> i64 {
    3072
}
fn d_dropout() -> f64 {
    0.1
}
fn d_activation() -> String {
    "gelu".into()
}
fn d_init() -> f64 {
    0.02
}
fn d_classifier_dropout() -> f64 {
    0.2
}

/// The config in BERT's terms (DistilBERT's layer norms all use eps 1e-12).
fn config_of(config: &ModelConfig) -> Result<BertConfig> {
    let d: DistilBertConfig = config.parse()?;
    if d.sinusoidal_pos_embds {
        bail!("sinusoidal_pos_embds is true: DistilBERT with fixed sinusoidal positions is not supported yet");
    }
    let c = BertConfig {
        vocab_size: d.vocab_size,
        hidden_size: d.dim,
        num_hidden_layers: d.n_layers,
        num_attention_heads: d.n_heads,
        intermediate_size: d.hidden_dim,
        hidden_act: d.activation,
        hidden_dropout_prob: d.dropout,
        attention_probs_dropout_prob: d.attention_dropout,
        classifier_dropout: Some(d.seq_classif_dropout),
        max_position_embeddings: d.max_position_embeddings,
        type_vocab_size: 1,
        initializer_range: d.initializer_range,
        layer_norm_eps: 1e-12,
        pad_token_id: d.pad_token_id,
        position_embedding_type: "absolute".into(),
        embedding_size: None,
    };
    c.validate()?;
    Ok(c)
}

fn build(root: &Path, config: &ModelConfig, _with_pooler: bool) -> Result<Box<dyn Encoder>> {
    let c = config_of(config)?;
    // DistilBERT has no pooler: `embed --pooling pooler` says so.
    Ok(Box::new(Bert::new(root.sub("distilbert"), &c, false, Positions::Absolute, &LAYOUT)))
}
