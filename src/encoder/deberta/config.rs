//! DeBERTa-v2/v3's config.json (`model_type` "deberta-v2"), as transformers 5.24 reads it, with
//! its defaults (`DebertaV2Config` and the `getattr` defaults of the modeling file).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::encoder::ModelConfig;
use crate::encoder::{Activation, Dims, HeadShape};

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct DebertaConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub attention_head_size: Option<i64>,
    pub intermediate_size: i64,
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub relative_attention: bool,
    pub max_relative_positions: i64,
    pub position_buckets: i64,
    pub share_att_key: bool,
    /// "p2c|c2p" or a list (transformers accepts both).
    pub pos_att_type: Option<Value>,
    pub norm_rel_ebd: String,
    pub pad_token_id: Option<i64>,
    pub position_biased_input: bool,
    pub embedding_size: Option<i64>,
    pub conv_kernel_size: i64,
    pub conv_groups: i64,
    pub conv_act: String,
    pub pooler_dropout: f64,
    pub pooler_hidden_act: String,
    pub pooler_hidden_size: Option<i64>,
    pub cls_dropout: Option<f64>,
    pub legacy: bool,
    pub tie_word_embeddings: bool,
}

impl Default for DebertaConfig {
    fn default() -> Self {
        DebertaConfig {
            vocab_size: 128100,
            hidden_size: 1536,
            num_hidden_layers: 24,
            num_attention_heads: 24,
            attention_head_size: None,
            intermediate_size: 6144,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-7,
            relative_attention: false,
            max_relative_positions: -1,
            position_buckets: -1,
            share_att_key: false,
            pos_att_type: None,
            norm_rel_ebd: "none".into(),
            pad_token_id: Some(0),
            position_biased_input: true,
            embedding_size: None,
            conv_kernel_size: 0,
            conv_groups: 1,
            conv_act: "tanh".into(),
            pooler_dropout: 0.0,
            pooler_hidden_act: "gelu".into(),
            pooler_hidden_size: None,
            cls_dropout: None,
            legacy: true,
            tie_word_embeddings: true,
        }
    }
}

impl DebertaConfig {
    pub fn from_model_config(config: &ModelConfig) -> Result<Self> {
        let c: DebertaConfig = config.parse()?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        if self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.attention_head_size.is_some_and(|d| d * self.num_attention_heads != self.hidden_size) {
            bail!(
                "attention_head_size x num_attention_heads must equal hidden_size (transformers' output layer needs it)"
            );
        }
        Activation::parse(&self.hidden_act)?;
        Activation::parse(&self.pooler_hidden_act).context("pooler_hidden_act")?;
        Activation::parse(&self.conv_act).context("conv_act")?;
        if self.pooler_hidden_size.is_some_and(|p| p != self.hidden_size) {
            bail!("pooler_hidden_size differs from hidden_size: transformers' classifier would not fit it");
        }
        if !self.legacy && self.embedding_size.is_some_and(|e| e != self.hidden_size) {
            bail!(
                "legacy = false with embedding_size {} != hidden_size {}: the lm_predictions head multiplies \
                 the hidden state by the word embeddings, which needs them equal (transformers fails too)",
                self.embedding_size.unwrap_or_default(),
                self.hidden_size
            );
        }
        if !self.tie_word_embeddings {
            bail!("tie_word_embeddings is false: a DeBERTa decoder of its own is not supported");
        }
        if let Some(kind) = self.attention_kinds()?.iter().find(|k| !["c2p", "p2c"].contains(&k.as_str())) {
            bail!("pos_att_type {kind:?}: transformers' DeBERTa-v2 knows c2p and p2c");
        }
        Ok(())
    }

    /// `pos_att_type` as a list (`"p2c|c2p"` split as transformers splits it).
    fn attention_kinds(&self) -> Result<Vec<String>> {
        Ok(match &self.pos_att_type {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.to_lowercase().split('|').map(|k| k.trim().to_string()).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|k| k.as_str().map(str::to_string).context("pos_att_type: not a string"))
                .collect::<Result<_>>()?,
            Some(other) => bail!("pos_att_type {other}: expected a string or a list"),
        })
    }

    pub fn c2p(&self) -> bool {
        self.attention_kinds().expect("validated").iter().any(|k| k == "c2p")
    }

    pub fn p2c(&self) -> bool {
        self.attention_kinds().expect("validated").iter().any(|k| k == "p2c")
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    pub fn embedding_size(&self) -> i64 {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    /// The largest distance the relative positions tell apart (`max_position_embeddings` when unset).
    pub fn max_relative_positions(&self) -> i64 {
        if self.max_relative_positions < 1 { self.max_position_embeddings } else { self.max_relative_positions }
    }

    /// Distances each side of zero with an embedding of their own (`att_span`): the buckets
    /// where positions are bucketed, else every distance.
    pub fn attention_span(&self) -> i64 {
        if self.position_buckets > 0 { self.position_buckets } else { self.max_relative_positions() }
    }

    /// Whether the relative embeddings go through the encoder's layer norm (`norm_rel_ebd`).
    pub fn norm_relative_embeddings(&self) -> bool {
        self.norm_rel_ebd.to_lowercase().split('|').any(|k| k.trim() == "layer_norm")
    }

    pub fn dims(&self) -> Dims {
        let activation = |name: &str| Activation::parse(name).expect("validated");
        Dims {
            hidden_size: self.hidden_size,
            embedding_size: self.embedding_size(),
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            initializer_range: self.initializer_range,
            layer_norm_eps: self.layer_norm_eps,
            hidden_act: activation(&self.hidden_act),
            classifier_dropout: self.cls_dropout.unwrap_or(self.hidden_dropout_prob),
            token_classifier_dropout: self.hidden_dropout_prob,
            qa_dropout: 0.0,
            head: HeadShape {
                pooler_activation: activation(&self.pooler_hidden_act),
                pooler_dropout: self.pooler_dropout,
                ..HeadShape::BERT
            },
        }
    }
}
