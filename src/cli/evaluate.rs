use std::path::PathBuf;

use anyhow::{Context, Result};

use super::data_flags::DataFlags;
use super::run_flags::RunFlags;
use crate::checkpoint::Checkpoint;
use crate::data::{LabelSet, tokenize_examples};
use crate::device::Autocast;
use crate::fsutil::atomic_write;
use crate::train::Precision;
use crate::train::classify::{Classifier, LabelledSet};

#[derive(clap::Args)]
pub struct Args {
    /// A fine-tuned classification model (its config holds the labels).
    #[arg(long)]
    model: String,
    /// Labelled data to evaluate on.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    flags: DataFlags,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Also write the full report (metrics, per-class scores, confusion matrix) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "fp32")]
    precision: Precision,
    #[command(flatten)]
    run: RunFlags,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.run.setup()?;
    let ckpt = Checkpoint::open(&args.model)?;
    let names = ckpt.config.id2label.clone().with_context(|| {
        format!("{}: config.json has no id2label; is this a fine-tuned classifier?", ckpt.dir.display())
    })?;
    let labels = LabelSet::new(names.clone());
    let classifier = Classifier::load(&ckpt, &names, false, device, Autocast::new(args.precision, device))?;
    let examples = args.flags.read(&args.data, true)?.examples;
    let tokenized = tokenize_examples(&classifier.tokenizer, &examples, args.flags.max_len)?;
    tracing::info!(
        "{}: {} examples, {} truncated to {} tokens",
        args.data.display(),
        examples.len(),
        tokenized.truncated,
        args.flags.max_len
    );
    let set = LabelledSet { items: tokenized.items, labels: labels.ids(&examples, "model's")? };
    let evaluation = classifier.evaluate_set(&set, args.batch_size)?;
    println!("{}", evaluation.summary);
    if let Some(path) = &args.json {
        let json = serde_json::json!({"model": ckpt.dir, "data": args.data, "metrics": evaluation.metrics, "report": evaluation.report});
        atomic_write(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}
