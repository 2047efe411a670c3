//! BERT's keys of `config.json`, typed. The file itself is `pretrained::ModelConfig`, which
//! keeps every key; this struct is the view the BERT modules are built from.

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::encoder::ModelConfig;
use crate::encoder::{Activation, Dims, HeadShape};

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BertConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: i64,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// ELECTRA's embeddings are narrower than its layers (then projected up); None: hidden_size.
    #[serde(default)]
    pub embedding_size: Option<i64>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_positions() -> i64 {
    512
}
fn default_type_vocab() -> i64 {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    pub fn from_model_config(config: &ModelConfig) -> Result<Self> {
        let c: BertConfig = config.parse()?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("embedding_size", self.embedding_size()),
        ];
        if let Some((key, value)) = positive.iter().find(|(_, v)| *v <= 0) {
            bail!("config.json: {key} is {value}, must be positive");
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.position_embedding_type != "absolute" {
            bail!("position_embedding_type {:?} is not supported", self.position_embedding_type);
        }
        Activation::parse(&self.hidden_act)?;
        Ok(())
    }

    pub fn embedding_size(&self) -> i64 {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    pub fn dims(&self) -> Dims {
        Dims {
            hidden_size: self.hidden_size,
            embedding_size: self.embedding_size(),
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            initializer_range: self.initializer_range,
            layer_norm_eps: self.layer_norm_eps,
            hidden_act: Activation::parse(&self.hidden_act).expect("validated"),
            classifier_dropout: self.classifier_dropout.unwrap_or(self.hidden_dropout_prob),
            token_classifier_dropout: self.classifier_dropout.unwrap_or(self.hidden_dropout_prob),
            qa_dropout: 0.0,
            head: HeadShape::BERT,
        }
    }
}
