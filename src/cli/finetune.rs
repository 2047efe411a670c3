use std::path::PathBuf;

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::checks::{open_fraction, resolve_max_len};
use super::data_flags::DataFlags;
use crate::data::{Example, LabelSet, tokenize_examples};
use crate::device::Autocast;
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::train::classify::{Classifier, FineTune, LabelledSet};
use crate::train::run_dir::RunDir;
use crate::train::{TrainConfig, train};

#[derive(clap::Args)]
pub struct Args {
    /// Model to start from: a directory or a hub id (an MLM or classification checkpoint works).
    #[arg(long)]
    model: String,
    /// Labelled training data.
    #[arg(long)]
    train: PathBuf,
    /// Held-out labelled data for evaluation during training.
    #[arg(long, conflicts_with = "eval_split")]
    eval: Option<PathBuf>,
    /// Hold out this fraction of --train (shuffled with --seed) for evaluation instead.
    #[arg(long, value_parser = open_fraction)]
    eval_split: Option<f64>,
    /// Replace the checkpoint's classification head with a fresh one for this data's labels.
    #[arg(long)]
    new_head: bool,
    #[command(flatten)]
    data: DataFlags,
    #[command(flatten)]
    cfg: TrainConfig,
}

/// Splits off `fraction` of the examples (at least one) after a seeded shuffle.
pub fn split(mut examples: Vec<Example>, fraction: f64, seed: u64) -> Result<(Vec<Example>, Vec<Example>)> {
    if examples.len() < 2 {
        bail!("--eval-split: {} example(s) cannot be split into training and held-out data", examples.len());
    }
    examples.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let held = ((examples.len() as f64 * fraction).round() as usize).clamp(1, examples.len().saturating_sub(1));
    let train = examples.split_off(held);
    Ok((train, examples))
}

pub fn run(args: Args) -> Result<i32> {
    let cfg = &args.cfg;
    let device = cfg.placement.device.setup()?;
    // Fresh heads start from the seed, as with Trainer's set_seed before the model is built.
    tch::manual_seed(cfg.hyper.seed as i64);
    // A checkpoint being resumed carries the head this run created.
    let new_head = args.new_head && cfg.control.resume_from.is_none();
    let mut model = ModelDir::open(&cfg.control.model_source(&args.model))?;
    if let Some(p) = cfg.hyper.dropout {
        model.set_dropout(p)?;
    }
    let max_len = resolve_max_len(args.data.max_len, &model)?;

    let (train_examples, eval_examples) = read_data(&args, cfg.hyper.seed)?;
    let labels = label_set(&model, &train_examples, new_head, &args.train)?;
    model.config.set_labels(labels.names());

    // Only now that the data is known to be good is anything written.
    let run = RunDir::new(&cfg.control);
    run.prepare()?;
    let autocast = Autocast::new(cfg.placement.precision, device);
    let gradient_checkpointing = cfg.placement.gradient_checkpointing;
    let classifier: Classifier =
        pretrained::load(&model, &LoadOptions { device, autocast, gradient_checkpointing, new_head })?;
    let encode = |examples: &[Example], role: &str| -> Result<LabelledSet> {
        let tokenized = tokenize_examples(&classifier.tokenizer, examples, max_len)?;
        tracing::info!("{role}: {} examples, {} truncated to {} tokens", examples.len(), tokenized.truncated, max_len);
        Ok(LabelledSet { items: tokenized.items, labels: labels.ids(examples, "training")? })
    };
    let train_set = encode(&train_examples, "train")?;
    let eval_set = eval_examples.as_deref().map(|e| encode(e, "eval")).transpose()?;
    tracing::info!("labels: {} | device {device:?}", labels.names().join(", "));

    let num_batches = train_set.items.len().div_ceil(cfg.hyper.batch_size);
    let (batch_size, bucketing) = (cfg.hyper.batch_size, !cfg.hyper.no_bucketing);
    let task = FineTune { classifier, train: train_set, eval: eval_set, batch_size, bucketing };
    let outcome = train(&task, cfg, autocast, num_batches)?;
    Ok(super::conclude(&outcome, &cfg.control.output))
}

/// Training examples and, from --eval or --eval-split, held-out ones.
fn read_data(args: &Args, seed: u64) -> Result<(Vec<Example>, Option<Vec<Example>>)> {
    let train_data = args.data.read(&args.train, true)?.examples;
    Ok(match (&args.eval, args.eval_split) {
        (Some(path), _) => (train_data, Some(args.data.read(path, true)?.examples)),
        (None, Some(fraction)) => {
            let (t, e) = split(train_data, fraction, seed)?;
            (t, Some(e))
        }
        (None, None) => (train_data, None),
    })
}

/// A classification checkpoint keeps its label ids; otherwise the training data defines them.
fn label_set(model: &ModelDir, train: &[Example], new_head: bool, path: &std::path::Path) -> Result<LabelSet> {
    let labels = match (model.config.id2label(), !new_head && model.has_classifier()?) {
        (Some(names), true) => {
            let set = LabelSet::new(names.to_vec());
            set.ids(train, "model's")
                .map_err(|e| e.context("the model already has a classification head; pass --new-head to replace it"))?;
            set
        }
        _ => LabelSet::from_examples(train),
    };
    if labels.len() < 2 {
        bail!("{}: only one label ({}) in the training data", path.display(), labels.names().join(", "));
    }
    Ok(labels)
}
