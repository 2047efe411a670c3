//! `config.json` of a Hugging Face BERT checkpoint, as a plain struct.
//!
//! Keys we do not model are kept in `extra` and written back unchanged, so a config that went
//! through bertkit still means the same thing to transformers.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BertConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
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
    /// Label names by class index; serialised with string keys as transformers does.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "id2label_serde")]
    pub id2label: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

fn default_model_type() -> String {
    "bert".into()
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
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: BertConfig =
            serde_json::from_str(&text).with_context(|| format!("{}: not a BERT config", path.display()))?;
        config.validate().with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if self.model_type != "bert" {
            bail!(
                "model_type {:?} is not supported yet (only \"bert\"; RoBERTa and DistilBERT are planned)",
                self.model_type
            );
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

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Number of classes of a classification head: from id2label, else transformers' default 2.
    pub fn num_labels(&self) -> i64 {
        self.id2label.as_ref().map_or(2, |l| l.len() as i64)
    }

    /// Sets the label names (index = class id) and the matching label2id.
    pub fn set_labels(&mut self, labels: &[String]) {
        self.label2id = Some(labels.iter().enumerate().map(|(i, l)| (l.clone(), i as i64)).collect());
        self.id2label = Some(labels.to_vec());
    }

    /// Label names, with transformers' `LABEL_i` defaults when the config has none.
    pub fn label_names(&self) -> Vec<String> {
        match &self.id2label {
            Some(labels) => labels.clone(),
            None => (0..self.num_labels()).map(|i| format!("LABEL_{i}")).collect(),
        }
    }

    pub fn classifier_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }
}

/// The activations transformers' `ACT2FN` maps BERT's `hidden_act` names to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Gelu,
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => bail!("hidden_act {other:?} is not supported"),
        })
    }

    pub fn apply(self, xs: &tch::Tensor) -> tch::Tensor {
        match self {
            Activation::Gelu => xs.gelu("none"),
            Activation::GeluTanh => xs.gelu("tanh"),
            Activation::Relu => xs.relu(),
            Activation::Silu => xs.silu(),
        }
    }
}

/// transformers writes `id2label` as `{"0": "neg", "1": "pos"}`; we hold it as a list.
mod id2label_serde {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<String, &String> =
            v.as_ref().expect("skipped when None").iter().enumerate().map(|(i, l)| (i.to_string(), l)).collect();
        // BTreeMap orders "10" before "2"; order by index instead so the file reads naturally.
        let mut entries: Vec<_> = map.into_iter().collect();
        entries.sort_by_key(|(k, _)| k.parse::<usize>().unwrap_or(usize::MAX));
        s.collect_map(entries)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        let Some(map) = Option::<BTreeMap<String, String>>::deserialize(d)? else {
            return Ok(None);
        };
        let mut labels = vec![None; map.len()];
        for (k, v) in map {
            let i: usize = k.parse().map_err(|_| D::Error::custom(format!("id2label key {k:?}")))?;
            let slot =
                labels.get_mut(i).ok_or_else(|| D::Error::custom(format!("id2label ids must be 0..n, got {i}")))?;
            *slot = Some(v);
        }
        Ok(Some(labels.into_iter().map(|l| l.expect("n distinct keys in 0..n")).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id2label_roundtrips_in_transformers_format() {
        let text = r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16,
            "id2label": {"0": "a", "1": "b", "2": "c", "3": "d", "4": "e", "5": "f", "6": "g",
                         "7": "h", "8": "i", "9": "j", "10": "k"},
            "some_future_key": [1, 2]}"#;
        let cfg: BertConfig = serde_json::from_str(text).unwrap();
        assert_eq!(cfg.num_labels(), 11);
        assert_eq!(cfg.id2label.as_ref().unwrap()[10], "k");
        let out = serde_json::to_string(&cfg).unwrap();
        assert!(out.contains(r#""id2label":{"0":"a","1":"b","2":"c""#), "{out}");
        assert!(out.contains(r#""some_future_key":[1,2]"#));
        let back: BertConfig = serde_json::from_str(&out).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn gap_in_label_ids_is_an_error() {
        let text = r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "id2label": {"0": "a", "2": "c"}}"#;
        assert!(serde_json::from_str::<BertConfig>(text).is_err());
    }
}
