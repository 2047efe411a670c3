use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use crate::checkpoint::{self, Checkpoint};
use crate::tokenizer::BertTokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (config.json + model.safetensors) or Hugging Face hub id.
    model: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let ckpt = Checkpoint::open(&args.model)?;
    let tensors = checkpoint::tensor_index(&ckpt.dir)?;
    let count = |pred: &dyn Fn(&str) -> bool| -> i64 {
        tensors.iter().filter(|(n, _)| pred(n)).map(|(_, t)| t.shape.iter().product::<i64>()).sum()
    };
    let total = count(&|_| true);
    let encoder = count(&|n| n.starts_with("bert.") && !n.starts_with("bert.pooler."));
    let has = |prefix: &str| tensors.keys().any(|n| n.starts_with(prefix));
    let mut heads = BTreeMap::new();
    heads.insert("pooler", has("bert.pooler."));
    heads.insert("sequence_classification", has("classifier."));
    heads.insert("masked_lm", has("cls.predictions."));
    heads.insert("next_sentence", has("cls.seq_relationship."));
    let dtypes: std::collections::BTreeSet<String> = tensors.values().map(|t| format!("{:?}", t.dtype)).collect();
    let tokenizer = BertTokenizer::from_dir(&ckpt.dir).ok();
    let c = &ckpt.config;
    let report = json!({
        "path": ckpt.dir,
        "architectures": c.architectures,
        "model_type": c.model_type,
        "layers": c.num_hidden_layers,
        "hidden_size": c.hidden_size,
        "attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "hidden_act": c.hidden_act,
        "max_position_embeddings": c.max_position_embeddings,
        "vocab_size": c.vocab_size,
        "parameters": total,
        "encoder_parameters": encoder,
        "heads": heads,
        "labels": c.id2label,
        "dtypes": dtypes,
        "tokenizer_vocab_size": tokenizer.as_ref().map(|t| t.vocab_size()),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{}", ckpt.dir.display());
    println!("  architecture  {}", if c.architectures.is_empty() { "-".into() } else { c.architectures.join(", ") });
    println!(
        "  encoder       {} layers x {} hidden, {} heads, {} intermediate, {} act, {} positions",
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.intermediate_size,
        c.hidden_act,
        c.max_position_embeddings
    );
    println!("  parameters    {} ({:.1} M; encoder {:.1} M)", total, total as f64 / 1e6, encoder as f64 / 1e6);
    println!("  weights       {}", dtypes.into_iter().collect::<Vec<_>>().join(", "));
    let present: Vec<&str> = heads.iter().filter(|(_, v)| **v).map(|(k, _)| *k).collect();
    println!("  heads         {}", if present.is_empty() { "none".to_string() } else { present.join(", ") });
    if let Some(labels) = &c.id2label {
        println!("  labels        {}", labels.join(", "));
    }
    match &tokenizer {
        Some(t) => println!("  tokenizer     {} tokens (config vocab_size {})", t.vocab_size(), c.vocab_size),
        None => println!("  tokenizer     none found"),
    }
    Ok(())
}
