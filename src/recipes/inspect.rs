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
    /// Runs the job as `bertkit inspect` does, its report on standard output.
    pub fn run(self) -> Result<()> {
        let args = self;
        let model = ModelDir::open(&args.model)?;
        let tensors = model.tensor_index()?;
        let count = |pred: &dyn Fn(&str) -> bool| -> i64 {
            tensors.iter().filter(|(n, _)| pred(n)).map(|(_, t)| t.shape.iter().product::<i64>()).sum()
        };
        let total = count(&|_| true);
        let family = model.family;
        let encoder = count(&|n| !family.is_head_tensor(n));
        let has = |prefix: &str| tensors.keys().any(|n| n.starts_with(prefix));
        // The classifier's task as config.json records it (a token classifier is named so).
        let classifier = match TaskKind::of(&model.config) {
            TaskKind::TokenClassification => "token_classification",
            _ => "sequence_classification",
        };
        let heads = BTreeMap::from([
            ("pooler", tensors.keys().any(|n| n.contains("pooler."))),
            (classifier, has(&format!("{}.", family.heads.classifier))),
            ("masked_lm", has(family.heads.mlm_bias)),
        ]);
        let dtypes: std::collections::BTreeSet<String> = tensors.values().map(|t| format!("{:?}", t.dtype)).collect();
        let tokenizer = Tokenizer::from_dir(&model.dir).ok();
        let (c, d) = (model.config.json(), &model.dims);
        let architectures: Vec<&str> = c
            .get("architectures")
            .and_then(|a| a.as_array())
            .map_or(vec![], |a| a.iter().filter_map(|v| v.as_str()).collect());
        let hidden_act = c.get("hidden_act").and_then(|v| v.as_str()).unwrap_or("gelu");
        let report = json!({
            "path": model.dir,
            "architectures": architectures,
            "model_type": family.model_type,
            "layers": d.num_layers,
            "hidden_size": d.hidden_size,
            "attention_heads": d.num_heads,
            "intermediate_size": c.get("intermediate_size"),
            "hidden_act": hidden_act,
            "max_position_embeddings": d.max_positions,
            "vocab_size": d.vocab_size,
            "parameters": total,
            "encoder_parameters": encoder,
            "heads": heads,
            "labels": model.config.id2label(),
            "task": has(&format!("{}.", family.heads.classifier)).then(|| TaskKind::of(&model.config).name()),
            "dtypes": dtypes,
            "tokenizer_vocab_size": tokenizer.as_ref().map(|t| t.vocab_size()),
        });
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        println!("{}", model.dir.display());
        println!("  architecture  {}", if architectures.is_empty() { "-".into() } else { architectures.join(", ") });
        println!(
            "  encoder       {} {} layers x {} hidden, {} heads, {} intermediate, {hidden_act} act, {} positions",
            family.model_type, d.num_layers, d.hidden_size, d.num_heads, report["intermediate_size"], d.max_positions
        );
        println!("  parameters    {} ({:.1} M; encoder {:.1} M)", total, total as f64 / 1e6, encoder as f64 / 1e6);
        println!("  weights       {}", dtypes.into_iter().collect::<Vec<_>>().join(", "));
        let present: Vec<&str> = heads.iter().filter(|(_, v)| **v).map(|(k, _)| *k).collect();
        println!("  heads         {}", if present.is_empty() { "none".to_string() } else { present.join(", ") });
        if let Some(task) = report["task"].as_str() {
            println!("  task          {task}");
        }
        if let Some(labels) = model.config.id2label() {
            println!("  labels        {}", labels.join(", "));
        }
        match &tokenizer {
            Some(t) => println!("  tokenizer     {} tokens (config vocab_size {})", t.vocab_size(), d.vocab_size),
            None => println!("  tokenizer     none found"),
        }
        Ok(())
    }
}
