use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use crate::pretrained::ModelDir;
use crate::task::TaskKind;
use crate::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Inspect {
    /// Model directory (config.json + model.safetensors) or Hugging Face hub id.
    pub model: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Inspect {
    /// Runs the job as `bertkit inspect` does: the report as text, or as JSON (`--json`).
    pub fn run(self) -> Result<()> {
        let report = self.report()?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", text(&report));
        }
        Ok(())
    }

    /// What the model is: its config's sizes, parameter counts, heads, labels and tokenizer.
    pub fn report(&self) -> Result<serde_json::Value> {
        let model = ModelDir::open(&self.model)?;
        let tensors = model.tensor_index()?;
        let count = |pred: &dyn Fn(&str) -> bool| -> i64 {
            tensors.iter().filter(|(n, _)| pred(n)).map(|(_, t)| t.shape.iter().product::<i64>()).sum()
        };
        let family = model.family;
        let has = |prefix: &str| tensors.keys().any(|n| n.starts_with(prefix));
        // The task head as config.json records it (a token classifier, a QA head are named so).
        let (classifier, head) = match TaskKind::of(&model.config) {
            TaskKind::TokenClassification => ("token_classification", family.heads.classifier),
            TaskKind::QuestionAnswering => ("question_answering", family.heads.qa_outputs),
            TaskKind::MultipleChoice => ("multiple_choice", family.heads.classifier),
            _ => ("sequence_classification", family.heads.classifier),
        };
        let head = format!("{head}.");
        let heads = BTreeMap::from([
            ("pooler", tensors.keys().any(|n| n.contains("pooler."))),
            (classifier, has(&head)),
            ("masked_lm", has(family.heads.mlm_bias)),
        ]);
        let dtypes: std::collections::BTreeSet<String> = tensors.values().map(|t| format!("{:?}", t.dtype)).collect();
        let tokenizer = Tokenizer::from_dir(&model.dir).ok();
        let (c, d) = (model.config.json(), &model.dims);
        let architectures: Vec<&str> = c
            .get("architectures")
            .and_then(|a| a.as_array())
            .map_or(vec![], |a| a.iter().filter_map(|v| v.as_str()).collect());
        Ok(json!({
            "path": model.dir,
            "architectures": architectures,
            "model_type": family.model_type,
            "layers": d.num_layers,
            "hidden_size": d.hidden_size,
            "attention_heads": d.num_heads,
            "intermediate_size": c.get("intermediate_size"),
            "hidden_act": c.get("hidden_act").and_then(|v| v.as_str()).unwrap_or("gelu"),
            "max_position_embeddings": d.max_positions,
            "vocab_size": d.vocab_size,
            "parameters": count(&|_| true),
            "encoder_parameters": count(&|n| !family.is_head_tensor(n)),
            "heads": heads,
            "labels": model.config.id2label(),
            "task": has(&head).then(|| TaskKind::of(&model.config).name()),
            "dtypes": dtypes,
            "tokenizer_vocab_size": tokenizer.as_ref().map(|t| t.vocab_size()),
        }))
    }
}

/// The report as the lines `bertkit inspect` prints.
fn text(r: &serde_json::Value) -> String {
    let words = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().map_or(vec![], |a| a.iter().map(|x| x.as_str().map_or(x.to_string(), String::from)).collect())
    };
    let list = |v: &serde_json::Value, none: &str| {
        let w = words(v);
        if w.is_empty() { none.to_string() } else { w.join(", ") }
    };
    let (total, encoder) = (r["parameters"].as_i64().unwrap_or(0), r["encoder_parameters"].as_i64().unwrap_or(0));
    let present: Vec<&str> = r["heads"]
        .as_object()
        .map_or(vec![], |h| h.iter().filter(|(_, v)| v.as_bool() == Some(true)).map(|(k, _)| k.as_str()).collect());
    let mut out = format!("{}\n", r["path"].as_str().unwrap_or(""));
    out += &format!("  architecture  {}\n", list(&r["architectures"], "-"));
    out += &format!(
        "  encoder       {} {} layers x {} hidden, {} heads, {} intermediate, {} act, {} positions\n",
        r["model_type"].as_str().unwrap_or(""),
        r["layers"],
        r["hidden_size"],
        r["attention_heads"],
        r["intermediate_size"],
        r["hidden_act"].as_str().unwrap_or(""),
        r["max_position_embeddings"]
    );
    out += &format!("  parameters    {total} ({:.1} M; encoder {:.1} M)\n", total as f64 / 1e6, encoder as f64 / 1e6);
    out += &format!("  weights       {}\n", list(&r["dtypes"], ""));
    out += &format!("  heads         {}\n", if present.is_empty() { "none".to_string() } else { present.join(", ") });
    if let Some(task) = r["task"].as_str() {
        out += &format!("  task          {task}\n");
    }
    if r["labels"].is_array() {
        out += &format!("  labels        {}\n", list(&r["labels"], ""));
    }
    match r["tokenizer_vocab_size"].as_u64() {
        Some(n) => out += &format!("  tokenizer     {n} tokens (config vocab_size {})\n", r["vocab_size"]),
        None => out += "  tokenizer     none found\n",
    }
    out
}
