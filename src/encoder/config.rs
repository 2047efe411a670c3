//! `config.json` as transformers writes it. Every key is kept, in its order, and written back
//! unchanged, so a config that went through bertkit means the same thing to transformers; what
//! every family shares (model_type, labels) is read here, the rest by the family's own config
//! type (`encoder::bert::BertConfig`, ...).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    json: Map<String, Value>,
    /// `id2label` as a list (index = class id), checked to be 0..n.
    labels: Option<Vec<String>>,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value = serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
        Self::from_json(value).with_context(|| format!("{}", path.display()))
    }

    pub fn from_json(value: Value) -> Result<Self> {
        let Value::Object(json) = value else { bail!("config.json must be a JSON object") };
        let labels = json.get("id2label").map(parse_id2label).transpose()?;
        Ok(ModelConfig { json, labels })
    }

    /// The whole config, as it will be written.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }

    /// The family's own view of the config (its serde defaults fill what the file omits). An
    /// error names the key (`legacy: invalid type: string "no", expected a boolean`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_path_to_error::deserialize(Value::Object(self.json.clone())).context("config.json")
    }

    /// transformers' `model_type`; configs written before it existed are BERT's.
    pub fn model_type(&self) -> &str {
        self.json.get("model_type").and_then(Value::as_str).unwrap_or("bert")
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_string(), value);
    }

    pub fn remove(&mut self, key: &str) {
        self.json.shift_remove(key);
    }

    pub fn id2label(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }

    /// Number of classes of a classification head: from id2label, else transformers' default 2.
    pub fn num_labels(&self) -> i64 {
        self.labels.as_ref().map_or(2, |l| l.len() as i64)
    }

    /// Label names, with transformers' `LABEL_i` defaults when the config has none.
    pub fn label_names(&self) -> Vec<String> {
        match &self.labels {
            Some(labels) => labels.clone(),
            None => (0..self.num_labels()).map(|i| format!("LABEL_{i}")).collect(),
        }
    }

    /// Sets the label names (index = class id) and the matching label2id.
    pub fn set_labels(&mut self, labels: &[String]) {
        let id2label: Map<String, Value> = labels.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
        let label2id: Map<String, Value> = labels.iter().enumerate().map(|(i, l)| (l.clone(), json!(i))).collect();
        self.set("id2label", Value::Object(id2label));
        self.set("label2id", Value::Object(label2id));
        self.labels = Some(labels.to_vec());
    }

    pub fn problem_type(&self) -> Option<&str> {
        self.json.get("problem_type").and_then(Value::as_str)
    }

    /// `architectures` (empty when absent).
    pub fn architectures(&self) -> Vec<&str> {
        let list = self.json.get("architectures").and_then(Value::as_array);
        list.map_or_else(Vec::new, |a| a.iter().filter_map(Value::as_str).collect())
    }
}

/// transformers writes `id2label` as `{"0": "neg", "1": "pos"}`; ids must be exactly 0..n.
fn parse_id2label(value: &Value) -> Result<Vec<String>> {
    let map: BTreeMap<String, String> =
        serde_json::from_value(value.clone()).context("id2label must map ids to label names")?;
    let mut labels = vec![None; map.len()];
    for (k, v) in map {
        let i: usize = k.parse().with_context(|| format!("id2label key {k:?} is not a class id"))?;
        let slot = labels.get_mut(i).with_context(|| format!("id2label ids must be 0..n, got {i}"))?;
        *slot = Some(v);
    }
    Ok(labels.into_iter().map(|l| l.expect("n distinct keys in 0..n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id2label_roundtrips_in_transformers_format() {
        let text = r#"{"vocab_size": 10, "hidden_size": 8,
            "id2label": {"0": "a", "1": "b", "2": "c", "3": "d", "4": "e", "5": "f", "6": "g",
                         "7": "h", "8": "i", "9": "j", "10": "k"},
            "some_future_key": [1, 2]}"#;
        let mut cfg = ModelConfig::from_json(serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(cfg.num_labels(), 11);
        assert_eq!(cfg.id2label().unwrap()[10], "k");
        let names = cfg.label_names();
        cfg.set_labels(&names);
        let out = serde_json::to_string(cfg.json()).unwrap();
        assert!(out.contains(r#""id2label":{"0":"a","1":"b","2":"c""#), "{out}");
        assert!(out.contains(r#""some_future_key":[1,2]"#));
        assert!(out.starts_with(r#"{"vocab_size":10,"hidden_size":8"#), "key order kept: {out}");
        let back = ModelConfig::from_json(serde_json::from_str(&out).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn gap_in_label_ids_is_an_error() {
        let text = r#"{"id2label": {"0": "a", "2": "c"}}"#;
        assert!(ModelConfig::from_json(serde_json::from_str(text).unwrap()).is_err());
    }
}
