//! `bertkit probe`: a linear probe of a frozen encoder on a labelled sequence-level task
//! (`crate::train::probe`): the score a linear layer over the model's features reaches without
//! changing the model. `adapt --probe-every` runs it on every further-pretraining checkpoint to
//! choose one by the task at a fraction of a fine-tune's cost.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::data::Targets;
use crate::data::token_classification::{is_conll, is_tagged_jsonl};
use crate::device::{Autocast, DeviceFlags, Precision};
use crate::fsutil::atomic_write;
use crate::predict::{Classifier, Decision};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::recipes::DataFlags;
use crate::recipes::{label_set, read_data, task_kind};
use crate::task::TaskKind;
use crate::train::probe::{LinearProbe, features};
use crate::values::{open_fraction, positive};

#[derive(clap::Args)]
pub struct Probe {
    /// The encoder to probe (any checkpoint: its own head, if any, is not used).
    #[arg(long)]
    pub model: String,
    /// Labelled data the probe is fitted on.
    #[arg(long)]
    pub train: PathBuf,
    /// Labelled data it is scored on.
    #[arg(long, conflicts_with = "eval_split")]
    pub eval: Option<PathBuf>,
    /// Or hold out this fraction of --train (shuffled with --seed), as `finetune`.
    #[arg(long, value_parser = open_fraction)]
    pub eval_split: Option<f64>,
    /// Fit on at most this many training examples (a seeded sample): the cost of a probe is
    /// one forward pass over them.
    #[arg(long, value_parser = positive)]
    pub max_train_examples: Option<usize>,
    /// What to predict (classification, multi-label, regression); by default what the data says.
    #[arg(long, value_enum)]
    pub task: Option<TaskKind>,
    #[command(flatten)]
    pub data: DataFlags,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,
    /// Write the metrics and the probe's settings as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: Precision,
    #[command(flatten)]
    pub run: DeviceFlags,
}

impl Probe {
    /// Runs the job as `bertkit probe` does, its report on standard output.
    pub fn run(self) -> Result<()> {
        let args = self;
        let start = Instant::now();
        if is_conll(&args.train) || is_tagged_jsonl(&args.train) || args.task == Some(TaskKind::TokenClassification) {
            bail!(
                "{}: a linear probe scores sequence-level tasks; probe token classification by a short `finetune`",
                args.train.display()
            );
        }
        if args.eval.is_none() && args.eval_split.is_none() {
            crate::error::refuse!("--eval or --eval-split: the probe needs held-out data to be scored on");
        }
        let device = args.run.setup()?;
        let mut model = ModelDir::open(&args.model)?;
        let max_len = model.max_len(args.data.max_len)?;
        let (mut train, eval) = read_data(&args.data, &args.train, args.eval.as_deref(), args.eval_split, args.seed)?;
        let eval = eval.expect("checked above");
        if let Some(n) = args.max_train_examples.filter(|&n| n < train.len()) {
            train.shuffle(&mut ChaCha8Rng::seed_from_u64(args.seed));
            train.truncate(n);
        }
        let kind = task_kind(args.task, &args.data, &model, &train, true)?;
        let labels = label_set(kind, &model, &train, true, &args.data, &args.train)?;
        model.config.set_labels(labels.names());
        model.config.set("problem_type", kind.problem_type().into());
        let train_targets = Targets::new(kind, &train, &labels, "training")?;
        let eval_targets = Targets::new(kind, &eval, &labels, "training")?;
        let options =
            LoadOptions { new_head: true, ..LoadOptions::inference(device, Autocast::new(args.precision, device)) };
        let classifier: Classifier = pretrained::load(&model, &options)?;
        let encode =
            |examples, targets, role: &str| args.data.encode(&classifier.tokenizer, examples, targets, max_len, role);
        let (train_set, eval_set) = (encode(&train, train_targets, "train")?, encode(&eval, eval_targets, "eval")?);
        let probe =
            LinearProbe::fit(&classifier, &features(&classifier, &train_set, args.batch_size)?, &train_set.targets)?;
        let logits = probe.logits(&features(&classifier, &eval_set, args.batch_size)?);
        let evaluation = classifier.evaluate_logits(&logits, &eval_set.targets, &Decision::default())?;
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "linear probe of {} ({} training examples, {seconds:.1} s)\n{}",
            args.model,
            train.len(),
            evaluation.summary
        );
        if let Some(path) = &args.json {
            let json = json!({"model": args.model, "task": kind.name(), "train": args.train, "eval": args.eval,
                "train_examples": train.len(), "eval_examples": eval.len(), "features": "mean of last hidden states",
                "fit_objective": probe.final_objective, "seconds": seconds,
                "metrics": evaluation.metrics, "report": evaluation.report});
            atomic_write(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
        }
        Ok(())
    }
}
