//! Model ids like `bert-base-uncased`, fetched through the Hugging Face hub cache
//! (`~/.cache/huggingface/hub`, or `HF_HOME`), so files Python already downloaded are reused.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Downloads (or finds in the cache) what bertkit needs of a hub model; returns the snapshot dir.
pub(crate) fn download(repo_id: &str) -> Result<PathBuf> {
    let api = hf_hub::api::sync::Api::new().context("setting up the Hugging Face hub client")?;
    let repo = api.model(repo_id.to_string());
    let config = repo.get("config.json").with_context(|| {
        format!("{repo_id}: not a local directory, and fetching it from the Hugging Face hub failed")
    })?;
    for optional in ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"] {
        let _ = repo.get(optional); // not every model has every tokenizer file
    }
    if repo.get("model.safetensors").is_err() {
        let index = repo
            .get("model.safetensors.index.json")
            .with_context(|| format!("{repo_id}: no model.safetensors on the hub"))?;
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index)?)?;
        let shards: std::collections::BTreeSet<&str> = json["weight_map"]
            .as_object()
            .context("index without weight_map")?
            .values()
            .filter_map(|v| v.as_str())
            .collect();
        for shard in shards {
            repo.get(shard).with_context(|| format!("{repo_id}: fetching {shard}"))?;
        }
    }
    Ok(config.parent().expect("a file has a parent").to_path_buf())
}
