use std::path::PathBuf;

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::data_flags::DataFlags;
use crate::checkpoint::{Checkpoint, tensor_index};
use crate::data::{Example, LabelSet, tokenize_examples};
use crate::device::{Autocast, parse_device, set_threads};
use crate::train::classify::{Classifier, FineTune, LabelledSet};
use crate::train::trainer::prepare_output_dir;
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
    #[arg(long)]
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
    if !(0.0..1.0).contains(&fraction) || fraction == 0.0 {
        bail!("--eval-split must be between 0 and 1, got {fraction}");
    }
    examples.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let held = ((examples.len() as f64 * fraction).round() as usize).clamp(1, examples.len().saturating_sub(1));
    let train = examples.split_off(held);
    Ok((train, examples))
}

pub fn run(args: Args) -> Result<i32> {
    let cfg = args.cfg;
    set_threads(cfg.threads);
    let device = parse_device(&cfg.device)?;
    // Fresh heads start from the seed, as with Trainer's set_seed before the model is built.
    tch::manual_seed(cfg.seed as i64);
    let source = cfg.resume_from.as_ref().map_or(args.model.clone(), |p| p.display().to_string());
    // A checkpoint being resumed carries the head this run created.
    let new_head = args.new_head && cfg.resume_from.is_none();
    let mut ckpt = Checkpoint::open(&source)?;
    if let Some(p) = cfg.dropout {
        ckpt.config.hidden_dropout_prob = p;
        ckpt.config.attention_probs_dropout_prob = p;
    }

    let train_data = args.data.read(&args.train, true)?.examples;
    let (train_examples, eval_examples) = match (&args.eval, args.eval_split) {
        (Some(path), _) => (train_data, Some(args.data.read(path, true)?.examples)),
        (None, Some(fraction)) => {
            let (t, e) = split(train_data, fraction, cfg.seed)?;
            (t, Some(e))
        }
        (None, None) => (train_data, None),
    };

    // A classification checkpoint keeps its label ids; otherwise the training data defines them.
    let has_classifier = tensor_index(&ckpt.dir)?.contains_key("classifier.weight");
    let labels = match (&ckpt.config.id2label, has_classifier && !new_head) {
        (Some(names), true) => {
            let set = LabelSet::new(names.clone());
            set.ids(&train_examples, "model's")
                .map_err(|e| e.context("the model already has a classification head; pass --new-head to replace it"))?;
            set
        }
        _ => LabelSet::from_examples(&train_examples),
    };
    if labels.len() < 2 {
        bail!("{}: only one label ({}) in the training data", args.train.display(), labels.names().join(", "));
    }

    // Only now that the data is known to be good is anything written.
    prepare_output_dir(&cfg)?;
    let autocast = Autocast::new(cfg.precision, device);
    let mut classifier = Classifier::load(&ckpt, labels.names(), new_head, device, autocast)?;
    classifier.model.bert.gradient_checkpointing = cfg.gradient_checkpointing;
    let encode = |examples: &[Example], role: &str| -> Result<LabelledSet> {
        let tokenized = tokenize_examples(&classifier.tokenizer, examples, args.data.max_len)?;
        tracing::info!(
            "{role}: {} examples, {} truncated to {} tokens",
            examples.len(),
            tokenized.truncated,
            args.data.max_len
        );
        Ok(LabelledSet { items: tokenized.items, labels: labels.ids(examples, "training")? })
    };
    let train_set = encode(&train_examples, "train")?;
    let eval_set = eval_examples.as_deref().map(|e| encode(e, "eval")).transpose()?;
    tracing::info!("labels: {} | device {device:?} | precision {:?}", labels.names().join(", "), cfg.precision);

    let num_batches = train_set.items.len().div_ceil(cfg.batch_size);
    let task = FineTune {
        classifier,
        train: train_set,
        eval: eval_set,
        batch_size: cfg.batch_size,
        bucketing: !cfg.no_bucketing,
    };
    let outcome = train(&task, &cfg, autocast, num_batches)?;
    Ok(super::conclude(&outcome, &cfg.output))
}
