//! The README.md every trained model directory gets: a Hugging Face model card. Its YAML front
//! matter is what the Hub reads (pipeline tag, base model, metric names, `model-index` with the
//! evaluation results); the body says how the model was trained, on what, and how it scored.
//! YAML is a superset of JSON, so every value is written as JSON: quoting is always right.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use super::{HyperParams, Outcome};
use crate::fsutil::atomic_write;

/// One data file of the run: its role (train, eval, corpus), size, and label counts.
pub(crate) struct DataFile {
    pub role: &'static str,
    pub path: String,
    pub examples: usize,
    /// (label, examples or tokens carrying it); empty where labels are scores or absent.
    pub labels: Vec<(String, u64)>,
}

pub(crate) struct ModelCard<'a> {
    /// The `--model` the run started from (a hub id goes into `base_model`).
    pub base_model: &'a str,
    /// The Hub's pipeline: text-classification, token-classification, fill-mask,
    /// sentence-similarity.
    pub pipeline_tag: &'static str,
    pub task: &'a str,
    pub data: Vec<DataFile>,
    pub hyper: &'a HyperParams,
}

impl ModelCard<'_> {
    /// Writes `dir/README.md` for the model the run left there (`outcome`'s best evaluation).
    pub fn write(&self, dir: &Path, outcome: &Outcome) -> Result<()> {
        let metrics = outcome.best_evaluation.as_ref().map(|e| e.metrics.clone()).unwrap_or_default();
        let before: Option<Value> = std::fs::read_to_string(dir.join("eval_before.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| v["metrics"].clone());
        let name = dir.file_name().map_or("model".into(), |n| n.to_string_lossy().to_string());
        let mut card = self.front_matter(&name, &metrics);
        card += &format!(
            "\n# {name}\n\n{} of `{}`, trained with bertkit; it loads in {} with {}.\n",
            self.task,
            self.base_model,
            self.library(),
            if self.library() == "transformers" { "`from_pretrained`" } else { "`SentenceTransformer(dir)`" }
        );
        card += &self.data_section();
        card += &results_section(&outcome.metric_for_best, &metrics, before.as_ref());
        card +=
            &format!("\n## Training hyper-parameters\n\n```json\n{}\n```\n", serde_json::to_string_pretty(self.hyper)?);
        atomic_write(&dir.join("README.md"), card.as_bytes())
    }

    fn front_matter(&self, name: &str, metrics: &std::collections::BTreeMap<String, f64>) -> String {
        let results: Vec<Value> = metrics.iter().map(|(k, v)| json!({"type": k, "value": v, "name": k})).collect();
        let eval = self.data.iter().find(|d| d.role == "eval").map_or("held-out split".to_string(), |d| d.path.clone());
        let index = json!([{"name": name, "results": [{
            "task": {"type": self.pipeline_tag},
            "dataset": {"name": eval, "type": eval},
            "metrics": results,
        }]}]);
        let mut fm = format!(
            "---\nlibrary_name: {}\ntags: [\"bertkit\"]\npipeline_tag: {}\n",
            self.library(),
            json!(self.pipeline_tag)
        );
        // A hub id, not a local path, is what the Hub links to.
        if crate::pretrained::is_hub_id(self.base_model) {
            fm += &format!("base_model: {}\n", json!(self.base_model));
        }
        fm += &format!("metrics: {}\nmodel-index: {}\n---\n", json!(metrics.keys().collect::<Vec<_>>()), index);
        fm
    }

    /// The Python library the Hub lists the model under: sentence embeddings load in
    /// sentence-transformers (which reads the files written beside the model), the rest in
    /// transformers.
    fn library(&self) -> &'static str {
        match self.pipeline_tag {
            "sentence-similarity" | "text-ranking" => "sentence-transformers",
            _ => "transformers",
        }
    }

    fn data_section(&self) -> String {
        let mut md = "\n## Data\n\n| role | file | examples |\n|---|---|---|\n".to_string();
        for d in &self.data {
            md += &format!("| {} | `{}` | {} |\n", d.role, d.path, d.examples);
        }
        for d in self.data.iter().filter(|d| !d.labels.is_empty()) {
            md += &format!("\nLabels in {} (`{}`): ", d.role, d.path);
            md += &d.labels.iter().map(|(l, n)| format!("{l} {n}")).collect::<Vec<_>>().join(", ");
            md += "\n";
        }
        md
    }
}

fn results_section(metric: &str, metrics: &std::collections::BTreeMap<String, f64>, before: Option<&Value>) -> String {
    if metrics.is_empty() {
        return "\n## Results\n\nNo held-out data was given, so the run was not evaluated.\n".into();
    }
    let mut md =
        format!("\n## Results\n\nOn the held-out data, at the checkpoint chosen by `{metric}`:\n\n| metric | value |");
    md += if before.is_some() { " before training |\n|---|---|---|\n" } else { "\n|---|---|\n" };
    for (k, v) in metrics {
        let was = before.and_then(|b| b[k].as_f64()).map_or(String::new(), |b| format!(" {b:.4} |"));
        md += &format!("| {k} | {v:.4} |{was}\n");
    }
    md
}
