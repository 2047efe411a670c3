//! Hyper-parameters shared by fine-tuning and further pretraining, with Trainer's defaults
//! where transformers has one. Also the `--flag`s of both commands.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schedule::ScheduleKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    /// bf16 autocast with fp32 master weights.
    Bf16,
}

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Output directory: the final (best) model, log.jsonl, curves, checkpoint-N/ folders.
    #[arg(long)]
    pub output: PathBuf,
    /// Passes over the training data (ignored when --max-steps is given).
    #[arg(long, default_value_t = 3.0)]
    pub epochs: f64,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = batch-size x grad-accum).
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// Decoupled weight decay (never on biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Warmup as a fraction of all steps.
    #[arg(long, default_value_t = 0.0, conflicts_with = "warmup_steps")]
    pub warmup_ratio: f64,
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    #[arg(long, value_enum, default_value = "linear")]
    pub scheduler: ScheduleKind,
    /// Clip the global gradient norm to this (0 = no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Override the model's hidden/attention dropout.
    #[arg(long)]
    pub dropout: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Evaluate (and checkpoint) every N optimizer steps; default: at the end of every epoch.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Stop when the best metric has not improved for this many evaluations.
    #[arg(long)]
    pub early_stopping_patience: Option<usize>,
    /// Metric that picks the best checkpoint (a loss or perplexity is minimised, others maximised).
    #[arg(long)]
    pub metric_for_best: Option<String>,
    /// Keep at most this many checkpoint-N folders (the best one is always kept).
    #[arg(long)]
    pub save_total_limit: Option<usize>,
    /// Log training loss, learning rate and throughput every N optimizer steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Continue a run from one of its checkpoint-N folders (optimizer, schedule, data order).
    #[arg(long)]
    pub resume_from: Option<PathBuf>,
    /// Replace an output directory that holds another run.
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// CPU threads for libtorch (default: one per physical core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu, cuda, cuda:N, or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Batch examples in random order instead of grouping similar lengths (more padding).
    #[arg(long)]
    pub no_bucketing: bool,
    /// On a NaN/Inf loss or gradient, skip that step's update instead of stopping (the run still
    /// stops after 10 such steps in a row: then the weights themselves are broken).
    #[arg(long)]
    #[serde(default)]
    pub skip_nan_steps: bool,
    /// Keep only each layer's input and recompute its activations in backward: activation
    /// memory no longer grows with depth, for ~30% more compute (transformers'
    /// `gradient_checkpointing=True`).
    #[arg(long)]
    #[serde(default)]
    pub gradient_checkpointing: bool,
}

impl TrainConfig {
    /// Whether a bigger value of `metric` is better.
    pub fn greater_is_better(metric: &str) -> bool {
        !(metric.contains("loss") || metric.contains("perplexity"))
    }
}
