//! sentence-transformers' files beside a model: `modules.json` (Transformer, Pooling, optionally
//! Normalize), `1_Pooling/config.json`, `sentence_bert_config.json` and
//! `config_sentence_transformers.json`. Read, they say how the checkpoint pools and whether it
//! normalises; written, they make `SentenceTransformer(dir)` compute the vectors bertkit does.
//! Written in the layout of the hub's checkpoints, which every sentence-transformers release
//! since 2.0 reads. A reranker (`TaskKind::Rerank`) is written as a CrossEncoder: its
//! activation in config.json, as releases 4 and 5 read it, and the module files release 6
//! writes.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::encoder::ModelConfig;
use crate::fsutil::atomic_write;
use crate::task::embedding::Pooling;
use crate::task::{CROSS_ENCODER_KEY, SIGMOID};

/// How a sentence-transformers model turns the encoder's output into its vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    pub normalize: bool,
    /// `max_seq_length`: longer texts are truncated.
    pub max_seq_length: Option<usize>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

impl SentenceConfig {
    /// The configuration of `dir`, None when it is not a sentence-transformers embedding model
    /// (no `modules.json`, or one without a Pooling module: a CrossEncoder's). A module bertkit
    /// does not compute (Dense, max pooling, ...) is an error: its vectors would differ from
    /// sentence-transformers' without a word.
    pub fn read(dir: &Path) -> Result<Option<SentenceConfig>> {
        let path = dir.join("modules.json");
        if !path.exists() {
            return Ok(None);
        }
        let modules = read_json(&path)?;
        let modules = modules.as_array().with_context(|| format!("{}: not a list of modules", path.display()))?;
        let mut config = SentenceConfig { pooling: Pooling::Cls, normalize: false, max_seq_length: None };
        let mut pooled = false;
        for module in modules {
            let kind = module["type"].as_str().unwrap_or_default();
            let at = dir.join(module["path"].as_str().unwrap_or_default());
            match kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => {}
                "Pooling" => (config.pooling, pooled) = (pooling_of(&at.join("config.json"))?, true),
                "Normalize" => config.normalize = true,
                other => bail!(
                    "{}: module {other} ({kind}) is not computed by bertkit (it reads Transformer, Pooling \
                     and Normalize); its vectors would not be this model's",
                    path.display()
                ),
            }
        }
        if !pooled {
            return Ok(None);
        }
        let bert_config = dir.join("sentence_bert_config.json");
        if bert_config.exists() {
            config.max_seq_length = read_json(&bert_config)?["max_seq_length"].as_u64().map(|n| n as usize);
        }
        Ok(Some(config))
    }

    /// Writes the sentence-transformers files into `dir` (beside the model's own), for vectors
    /// `dim` wide.
    pub fn write(&self, dir: &Path, dim: i64) -> Result<()> {
        let mut modules = vec![
            json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
            json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
        ];
        if self.normalize {
            modules.push(
                json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}),
            );
            std::fs::create_dir_all(dir.join("2_Normalize"))?;
        }
        let mode = |p: Pooling| self.pooling == p;
        let pooling = json!({
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": mode(Pooling::Cls),
            "pooling_mode_mean_tokens": mode(Pooling::Mean),
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": mode(Pooling::Last),
            "include_prompt": true,
        });
        std::fs::create_dir_all(dir.join("1_Pooling")).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, value: &Value| -> Result<()> {
            atomic_write(&dir.join(name), serde_json::to_string_pretty(value)?.as_bytes())
        };
        write("modules.json", &Value::from(modules))?;
        write("1_Pooling/config.json", &pooling)?;
        write("sentence_bert_config.json", &json!({"max_seq_length": self.max_seq_length, "do_lower_case": false}))?;
        write(
            "config_sentence_transformers.json",
            &json!({"prompts": {}, "default_prompt_name": null, "similarity_fn_name": "cosine"}),
        )
    }
}

/// The activation of a sentence-transformers CrossEncoder in `dir` where its config.json does
/// not record it under `sentence_transformers` (4 and later): release 6's
/// `config_sentence_transformers.json` (`model_type: CrossEncoder`), or the key releases before
/// 4 wrote (`sbert_ce_default_activation_function`). None: not a CrossEncoder, or recorded.
pub fn cross_encoder_activation(dir: &Path, config: &ModelConfig) -> Result<Option<String>> {
    if config.json().contains_key(CROSS_ENCODER_KEY) {
        return Ok(None);
    }
    if let Some(old) = config.json().get("sbert_ce_default_activation_function").and_then(Value::as_str) {
        return Ok(Some(old.to_string()));
    }
    let path = dir.join("config_sentence_transformers.json");
    if !path.exists() {
        return Ok(None);
    }
    let saved = read_json(&path)?;
    if saved["model_type"].as_str() != Some("CrossEncoder") {
        return Ok(None);
    }
    // A CrossEncoder with one label applies the sigmoid unless it says otherwise.
    Ok(Some(saved["activation_fn"].as_str().unwrap_or(SIGMOID).to_string()))
}

/// Writes a reranker's CrossEncoder files into `dir` (its config.json carries the activation
/// already): `modules.json` of one Transformer for sequence classification, as
/// sentence-transformers 6 saves a CrossEncoder, with the sigmoid as its activation.
pub fn write_cross_encoder(dir: &Path) -> Result<()> {
    let write = |name: &str, value: &Value| -> Result<()> {
        atomic_write(&dir.join(name), serde_json::to_string_pretty(value)?.as_bytes())
    };
    let transformer = "sentence_transformers.base.modules.transformer.Transformer";
    write("modules.json", &json!([{"idx": 0, "name": "0", "path": "", "type": transformer}]))?;
    write(
        "sentence_bert_config.json",
        &json!({
            "transformer_task": "sequence-classification",
            "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
            "module_output_name": "scores",
        }),
    )?;
    write(
        "config_sentence_transformers.json",
        &json!({"model_type": "CrossEncoder", "activation_fn": SIGMOID, "prompts": {}, "default_prompt_name": null}),
    )
}

/// The pooling a `1_Pooling/config.json` names: the classic flags (`pooling_mode_mean_tokens`)
/// or the newer `pooling_mode` ("mean", or a list of one).
fn pooling_of(path: &Path) -> Result<Pooling> {
    let config = read_json(path)?;
    let mut modes: Vec<String> = match &config["pooling_mode"] {
        Value::String(m) => vec![m.clone()],
        Value::Array(list) => list.iter().filter_map(|m| m.as_str().map(str::to_string)).collect(),
        _ => vec![],
    };
    if let Some(flags) = config.as_object() {
        let set = flags.iter().filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true));
        modes.extend(set.map(|(k, _)| k.trim_start_matches("pooling_mode_").to_string()));
    }
    match modes.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["cls" | "cls_token"] => Ok(Pooling::Cls),
        ["mean" | "mean_tokens"] => Ok(Pooling::Mean),
        ["lasttoken"] => Ok(Pooling::Last),
        [other] => {
            bail!("{}: pooling mode {other:?} is not computed by bertkit (cls, mean, lasttoken)", path.display())
        }
        _ => bail!("{}: expected exactly one pooling mode, found {modes:?}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        for (pooling, normalize) in [(Pooling::Mean, true), (Pooling::Cls, false), (Pooling::Last, true)] {
            let config = SentenceConfig { pooling, normalize, max_seq_length: Some(128) };
            config.write(dir.path(), 32).unwrap();
            assert_eq!(SentenceConfig::read(dir.path()).unwrap(), Some(config));
        }
    }

    #[test]
    fn a_cross_encoder_is_no_embedding_model() {
        let dir = tempfile::tempdir().unwrap();
        let transformer_only = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}]"#;
        std::fs::write(dir.path().join("modules.json"), transformer_only).unwrap();
        assert_eq!(SentenceConfig::read(dir.path()).unwrap(), None);
    }

    #[test]
    fn the_newer_pooling_layout_and_unsupported_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"embedding_dimension": 8, "pooling_mode": "mean"}"#).unwrap();
        assert_eq!(pooling_of(&path).unwrap(), Pooling::Mean);
        std::fs::write(&path, r#"{"pooling_mode_max_tokens": true}"#).unwrap();
        assert!(pooling_of(&path).unwrap_err().to_string().contains("\"max_tokens\" is not computed"));
    }
}
