//! ModernBERT's config.json, as transformers 5.24 reads it: today's keys (`layer_types`,
//! `rope_parameters`) and the hub checkpoints' older ones (`global_attn_every_n_layers`,
//! `global_rope_theta`, `local_rope_theta`), with transformers' defaults.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::encoder::ModelConfig;
use crate::encoder::{Activation, Dims, HeadShape, TruncatedInit};

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct ModernBertConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub hidden_activation: String,
    pub max_position_embeddings: i64,
    pub initializer_range: f64,
    pub initializer_cutoff_factor: Option<f64>,
    pub norm_eps: f64,
    pub norm_bias: bool,
    pub pad_token_id: i64,
    pub attention_bias: bool,
    pub attention_dropout: f64,
    pub layer_types: Option<Vec<String>>,
    pub global_attn_every_n_layers: i64,
    pub rope_parameters: Option<Value>,
    pub global_rope_theta: Option<f64>,
    pub local_rope_theta: Option<f64>,
    pub local_attention: i64,
    pub embedding_dropout: f64,
    pub mlp_bias: bool,
    pub mlp_dropout: f64,
    pub decoder_bias: bool,
    pub classifier_pooling: String,
    pub classifier_dropout: f64,
    pub classifier_bias: bool,
    pub classifier_activation: String,
    pub tie_word_embeddings: bool,
}

impl Default for ModernBertConfig {
    fn default() -> Self {
        ModernBertConfig {
            vocab_size: 50368,
            hidden_size: 768,
            intermediate_size: 1152,
            num_hidden_layers: 22,
            num_attention_heads: 12,
            hidden_activation: "gelu".into(),
            max_position_embeddings: 8192,
            initializer_range: 0.02,
            initializer_cutoff_factor: Some(2.0),
            norm_eps: 1e-5,
            norm_bias: false,
            pad_token_id: 50283,
            attention_bias: false,
            attention_dropout: 0.0,
            layer_types: None,
            global_attn_every_n_layers: 3,
            rope_parameters: None,
            global_rope_theta: None,
            local_rope_theta: None,
            local_attention: 128,
            embedding_dropout: 0.0,
            mlp_bias: false,
            mlp_dropout: 0.0,
            decoder_bias: true,
            classifier_pooling: "cls".into(),
            classifier_dropout: 0.0,
            classifier_bias: false,
            classifier_activation: "gelu".into(),
            tie_word_embeddings: true,
        }
    }
}

impl ModernBertConfig {
    pub fn from_model_config(config: &ModelConfig) -> Result<Self> {
        let c: ModernBertConfig = config.parse()?;
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
        Activation::parse(&self.hidden_activation)?;
        Activation::parse(&self.classifier_activation).context("classifier_activation")?;
        if !["cls", "mean"].contains(&self.classifier_pooling.as_str()) {
            bail!("classifier_pooling {:?}: transformers knows \"cls\" and \"mean\"", self.classifier_pooling);
        }
        if !self.tie_word_embeddings {
            bail!("tie_word_embeddings is false: a ModernBERT decoder of its own is not supported");
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers as usize {
                bail!("layer_types has {} entries for {} layers", types.len(), self.num_hidden_layers);
            }
            if let Some(t) = types.iter().find(|t| !["full_attention", "sliding_attention"].contains(&t.as_str())) {
                bail!("layer_types: {t:?} is neither full_attention nor sliding_attention");
            }
        }
        for kind in ["full_attention", "sliding_attention"] {
            let rope_type = self.rope_parameters.as_ref().and_then(|r| r[kind]["rope_type"].as_str());
            if rope_type.is_some_and(|t| t != "default") {
                bail!("rope_parameters.{kind}.rope_type {rope_type:?}: only the default RoPE is supported");
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Whether layer `index` attends within a sliding window (transformers: every layer but
    /// each `global_attn_every_n_layers`-th, unless `layer_types` says otherwise).
    pub fn is_local(&self, index: i64) -> bool {
        match &self.layer_types {
            Some(types) => types[index as usize] == "sliding_attention",
            None => index % self.global_attn_every_n_layers.max(1) != 0,
        }
    }

    fn theta(&self, kind: &str, old_key: Option<f64>, default: f64) -> f64 {
        let new_key = self.rope_parameters.as_ref().and_then(|r| r[kind]["rope_theta"].as_f64());
        new_key.or(old_key).unwrap_or(default)
    }

    pub fn global_theta(&self) -> f64 {
        self.theta("full_attention", self.global_rope_theta, 160_000.0)
    }

    pub fn local_theta(&self) -> f64 {
        self.theta("sliding_attention", self.local_rope_theta, 10_000.0)
    }

    /// Where `_init_weights` truncates its normals, in standard deviations (3 when unset).
    pub fn cutoff(&self) -> f64 {
        self.initializer_cutoff_factor.unwrap_or(3.0)
    }

    pub fn dims(&self) -> Dims {
        let activation = |name: &str| Activation::parse(name).expect("validated");
        Dims {
            hidden_size: self.hidden_size,
            embedding_size: self.hidden_size,
            vocab_size: self.vocab_size,
            max_positions: self.max_position_embeddings,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            initializer_range: self.initializer_range,
            layer_norm_eps: self.norm_eps,
            hidden_act: activation(&self.hidden_activation),
            classifier_dropout: self.classifier_dropout,
            token_classifier_dropout: self.classifier_dropout,
            qa_dropout: self.classifier_dropout,
            head: HeadShape {
                dense_bias: self.classifier_bias,
                norm_bias: self.norm_bias,
                decoder_bias: self.decoder_bias,
                activation: Some(activation(&self.classifier_activation)),
                mean_pooling: self.classifier_pooling == "mean",
                truncated_init: Some(TruncatedInit {
                    cutoff: self.cutoff(),
                    dense_std: self.initializer_range / (2.0 * self.num_hidden_layers as f64).sqrt(),
                    classifier_std: (self.hidden_size as f64).powf(-0.5),
                }),
                ..HeadShape::BERT
            },
        }
    }
}
