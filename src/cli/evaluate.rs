//! `bertkit evaluate`: the metrics of a fine-tuned model on labelled data, by the task its
//! config.json records (classification, multi-label, regression, token classification).

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::checks::{positive, resolve_max_len};
use super::data_flags::DataFlags;
use super::tagging::{Reading, TagFlags};
use crate::data::{LabelSet, Targets};
use crate::device::{Autocast, DeviceFlags, Precision};
use crate::fsutil::atomic_write;
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::task::TaskKind;
use crate::train::Evaluation;
use crate::train::classify::{Classifier, Decision, read_thresholds};

#[derive(clap::Args)]
pub struct Args {
    /// A fine-tuned model (its config holds the task and the labels).
    #[arg(long)]
    model: String,
    /// Labelled data to evaluate on.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    flags: DataFlags,
    #[command(flatten)]
    tags: TagFlags,
    /// Multi-label: count "no label" as one more class in micro- and macro-F1 (LexGLUE's convention).
    #[arg(long)]
    count_no_label: bool,
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
        format!("{}: config.json has no id2label; is this a fine-tuned model?", model.dir.display())
    })?;
    let kind = TaskKind::of(&model.config);
    let options = LoadOptions::inference(device, Autocast::new(args.precision, device));
    let evaluation = if kind == TaskKind::TokenClassification {
        let stride = args.flags.stride;
        let how = Reading { tags: &args.tags, max_len, stride, on_bad: args.flags.on_bad_row };
        super::tagging::evaluate(&model, &args.data, &how, &options, args.batch_size)?
    } else {
        let labels = LabelSet::new(names.clone());
        let examples = args.flags.read(&args.data, true)?.examples;
        let targets = Targets::new(kind, &examples, &labels, "model's")?;
        let classifier: Classifier = pretrained::load(&model, &options)?;
        let set =
            args.flags.encode(&classifier.tokenizer, &examples, targets, max_len, &args.data.display().to_string())?;
        let thresholds = read_thresholds(&model.dir, &names)?;
        if thresholds.is_some() {
            tracing::info!(
                "multi-label decisions at the thresholds of {}",
                model.dir.join("thresholds.json").display()
            );
        }
        let decision = Decision { thresholds, count_no_label: args.count_no_label, pool: args.flags.window_pool };
        classifier.evaluate_set(&set, args.batch_size, &decision)?
    };
    report(&args, &model, &evaluation)
}

fn report(args: &Args, model: &ModelDir, evaluation: &Evaluation) -> Result<()> {
    println!("{}", evaluation.summary);
    if let Some(path) = &args.json {
        let json = serde_json::json!({"model": model.dir, "task": TaskKind::of(&model.config).name(),
            "data": args.data, "metrics": evaluation.metrics, "report": evaluation.report});
        atomic_write(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}
