use std::path::PathBuf;

use anyhow::{Context, Result};

use super::checks::{positive, resolve_max_len};
use super::data_flags::DataFlags;
use crate::data::{LabelSet, tokenize_examples};
use crate::device::{Autocast, DeviceFlags, Precision};
use crate::fsutil::atomic_write;
use crate::pretrained::{self, LoadOptions, ModelDir};
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
    #[arg(long, default_value_t = 32, value_parser = positive)]
    batch_size: usize,
    /// Also write the full report (metrics, per-class scores, confusion matrix) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// fp32, bf16 (autocast), or auto: bf16 where the device computes it natively.
    #[arg(long, value_enum, default_value = "auto")]
    precision: Precision,
    #[command(flatten)]
    run: DeviceFlags,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.run.setup()?;
    let model = ModelDir::open(&args.model)?;
    let max_len = resolve_max_len(args.flags.max_len, &model)?;
    let names = model.config.id2label().map(<[String]>::to_vec).with_context(|| {
        format!("{}: config.json has no id2label; is this a fine-tuned classifier?", model.dir.display())
    })?;
    let labels = LabelSet::new(names);
    let options = LoadOptions::inference(device, Autocast::new(args.precision, device));
    let classifier: Classifier = pretrained::load(&model, &options)?;
    let examples = args.flags.read(&args.data, true)?.examples;
    let tokenized = tokenize_examples(&classifier.tokenizer, &examples, max_len)?;
    tracing::info!(
        "{}: {} examples, {} truncated to {} tokens",
        args.data.display(),
        examples.len(),
        tokenized.truncated,
        max_len
    );
    let set = LabelledSet { items: tokenized.items, labels: labels.ids(&examples, "model's")? };
    let evaluation = classifier.evaluate_set(&set, args.batch_size)?;
    println!("{}", evaluation.summary);
    if let Some(path) = &args.json {
        let json = serde_json::json!({"model": model.dir, "data": args.data, "metrics": evaluation.metrics, "report": evaluation.report});
        atomic_write(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}
