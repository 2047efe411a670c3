//! The flags of the training commands, in three groups that each mean one thing:
//! - [`HyperParams`]: what decides the weights a run reaches. Saved in every checkpoint; a run
//!   resumes only with the same ones (compared field by field, every field: a new one is
//!   checked as soon as it is added here).
//! - [`Placement`]: where and how fast it runs (device, threads, precision, recomputation).
//! - [`RunControl`]: the run directory, and how often it is evaluated, checkpointed and logged.
//!
//! Defaults are Trainer's where transformers has one. Every numeric flag is range-checked by
//! clap when parsed (`crate::values`), so a bad value is one line naming it.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::schedule::ScheduleKind;
use crate::data::Sampling;
use crate::device::{DeviceFlags, Precision};
use crate::encoder::Unpadding;
use crate::values::{decay_rate, directory, fraction, non_negative, positive, positive_float};

#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct HyperParams {
    /// Passes over the training data (ignored when --max-steps is given).
    #[arg(long, default_value_t = 3.0, value_parser = positive_float)]
    pub epochs: f64,
    /// Stop after this many optimizer steps.
    #[arg(long, value_parser = positive)]
    pub max_steps: Option<usize>,
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = batch-size x grad-accum).
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 5e-5, value_parser = positive_float)]
    pub lr: f64,
    /// Decoupled weight decay (never on biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub weight_decay: f64,
    /// AdamW's β1 (transformers' `adam_beta1`).
    #[arg(long, default_value_t = 0.9, value_parser = decay_rate)]
    #[serde(default = "default_beta1")]
    pub adam_beta1: f64,
    /// AdamW's β2 (`adam_beta2`).
    #[arg(long, default_value_t = 0.999, value_parser = decay_rate)]
    #[serde(default = "default_beta2")]
    pub adam_beta2: f64,
    /// AdamW's ε, added to the root of the second moment (`adam_epsilon`).
    #[arg(long, default_value_t = 1e-8, value_parser = positive_float)]
    #[serde(default = "default_epsilon")]
    pub adam_epsilon: f64,
    /// Warmup as a fraction of all steps.
    #[arg(long, default_value_t = 0.0, conflicts_with = "warmup_steps", value_parser = fraction)]
    pub warmup_ratio: f64,
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    #[arg(long, value_enum, default_value = "linear")]
    pub scheduler: ScheduleKind,
    /// Clip the global gradient norm to this (0 = no clipping).
    #[arg(long, default_value_t = 1.0, value_parser = non_negative)]
    pub max_grad_norm: f64,
    /// Override the model's hidden/attention dropout.
    #[arg(long, value_parser = fraction)]
    pub dropout: Option<f64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How training examples are put into batches (transformers' `train_sampling_strategy`).
    #[arg(long, value_enum, default_value = "random")]
    pub train_sampling_strategy: Sampling,
}

// Checkpoints from before the Adam flags were trained with Trainer's defaults.
fn default_beta1() -> f64 {
    0.9
}

fn default_beta2() -> f64 {
    0.999
}

fn default_epsilon() -> f64 {
    1e-8
}

impl HyperParams {
    /// Fails naming every field that differs from `saved` (the checkpoint's).
    pub fn check_same_as(&self, saved: &HyperParams, checkpoint: &std::path::Path) -> Result<()> {
        let (now, then) = (serde_json::to_value(self)?, serde_json::to_value(saved)?);
        let differ: Vec<String> = now
            .as_object()
            .expect("a struct serialises to an object")
            .iter()
            .filter(|(key, value)| then.get(key.as_str()) != Some(value))
            .map(|(key, value)| {
                let was = then.get(key.as_str()).map_or("unset".to_string(), |v| v.to_string());
                format!("--{} {value} (the checkpoint: {was})", key.replace('_', "-"))
            })
            .collect();
        if !differ.is_empty() {
            bail!(
                "{}: was trained with other settings: {}; resume with the same arguments",
                checkpoint.display(),
                differ.join(", ")
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct Placement {
    #[command(flatten)]
    #[serde(flatten)]
    pub device: DeviceFlags,
    /// fp32, bf16 (autocast), or auto: bf16 where the device computes it natively.
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: Precision,
    /// Keep only each layer's input and recompute its activations in backward: activation
    /// memory no longer grows with depth, for ~30% more compute (transformers'
    /// `gradient_checkpointing=True`).
    #[arg(long)]
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Run padded batches packed, the real tokens alone (`auto`: where the batch has enough
    /// padding to pay; the results are the padded path's to float32 rounding).
    #[arg(long, value_enum, default_value = "auto")]
    #[serde(default)]
    pub unpad: Unpadding,
    /// Data-parallel runs (torchrun, `bertkit launch`): seconds the rendezvous and each
    /// collective may wait for the other ranks; a rank that died stops the rest after this.
    #[arg(long, default_value_t = default_dist_timeout(), value_parser = clap::value_parser!(u64).range(1..))]
    #[serde(default = "default_dist_timeout")]
    pub dist_timeout: u64,
    /// Data-parallel runs: the collectives' backend. auto: NCCL on GPUs, gloo on the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    #[serde(default)]
    pub dist_backend: DistBackend,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistBackend {
    #[default]
    Auto,
    Gloo,
    Nccl,
}

fn default_dist_timeout() -> u64 {
    crate::distributed::DEFAULT_TIMEOUT.as_secs()
}

impl Placement {
    /// Joins the data-parallel group the environment describes (nothing for a plain run), with
    /// the backend for the run's device.
    pub fn join_group(&self, device: tch::Device) -> anyhow::Result<()> {
        use crate::distributed::Backend;
        let backend = match self.dist_backend {
            DistBackend::Auto if device.is_cuda() => Backend::Nccl,
            DistBackend::Auto | DistBackend::Gloo => Backend::Gloo,
            DistBackend::Nccl if !device.is_cuda() => crate::error::refuse!(
                "--dist-backend nccl: NCCL connects GPUs and this run is on the CPU (--device cuda, or --dist-backend gloo)"
            ),
            DistBackend::Nccl => Backend::Nccl,
        };
        crate::distributed::join(std::time::Duration::from_secs(self.dist_timeout), backend)
    }
}

/// Where event files go inside the output directory unless --logging-dir says otherwise.
pub(crate) const DEFAULT_LOGGING_DIR: &str = "runs";

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct RunControl {
    /// Output directory: the final (best) model, log.jsonl, curves, checkpoint-N/ folders.
    #[arg(long)]
    pub output: PathBuf,
    /// Continue a run from one of its checkpoint-N folders (optimizer, schedule, data order).
    #[arg(long)]
    pub resume_from: Option<PathBuf>,
    /// Replace an output directory that holds another run.
    #[arg(long)]
    pub overwrite: bool,
    /// Evaluate (and checkpoint) every N optimizer steps; default: at the end of every epoch.
    #[arg(long, value_parser = positive)]
    pub eval_every: Option<usize>,
    /// Stop when the best metric has not improved for this many evaluations.
    #[arg(long, value_parser = positive)]
    pub early_stopping_patience: Option<usize>,
    /// Metric that picks the best checkpoint (a loss, perplexity, mse, rmse or mae is minimised,
    /// others maximised). Default: accuracy, micro_f1 (multi-label), pearson (regression), f1
    /// (token classification), eval_loss (further pretraining).
    #[arg(long)]
    pub metric_for_best: Option<String>,
    /// Keep at most this many checkpoint-N folders (the best one is always kept).
    #[arg(long, value_parser = positive)]
    pub save_total_limit: Option<usize>,
    /// Log training loss, learning rate and throughput every N optimizer steps.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub log_every: usize,
    /// On a NaN/Inf loss or gradient, skip that step's update instead of stopping (the run still
    /// stops after 10 such steps in a row: then the weights themselves are broken).
    #[arg(long)]
    #[serde(default)]
    pub skip_nan_steps: bool,
    /// Where else the log goes: `tensorboard` writes event files to --logging-dir (default
    /// OUTPUT/runs). Default: none, or tensorboard when --logging-dir is given (as Trainer).
    #[arg(long, value_enum)]
    #[serde(default)]
    pub report_to: Option<ReportTo>,
    /// The TensorBoard log directory (implies --report-to tensorboard unless it says none).
    #[arg(long, value_parser = directory)]
    #[serde(default)]
    pub logging_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportTo {
    None,
    Tensorboard,
}

impl RunControl {
    /// The model a run loads: the checkpoint it resumes (which carries the head this run
    /// created), else `model`.
    pub fn model_source(&self, model: &str) -> String {
        self.resume_from.as_ref().map_or(model.to_string(), |p| p.display().to_string())
    }

    /// The directory TensorBoard event files go to, if they are written at all.
    pub fn tensorboard_dir(&self) -> Option<PathBuf> {
        match (self.report_to, &self.logging_dir) {
            (Some(ReportTo::None), _) | (None, None) => None,
            (_, Some(dir)) => Some(dir.clone()),
            (Some(ReportTo::Tensorboard), None) => Some(self.output.join(DEFAULT_LOGGING_DIR)),
        }
    }
}

/// Every flag of a training command.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct TrainConfig {
    #[command(flatten)]
    pub hyper: HyperParams,
    #[command(flatten)]
    pub placement: Placement,
    #[command(flatten)]
    pub control: RunControl,
}

impl TrainConfig {
    /// Whether a bigger value of `metric` is better (not for losses, perplexity and errors).
    pub fn greater_is_better(metric: &str) -> bool {
        !(metric.contains("loss") || metric.contains("perplexity") || ["mse", "rmse", "mae"].contains(&metric))
    }
}

#[cfg(test)]
mod tests {
    use super::TrainConfig;

    #[test]
    fn errors_and_losses_are_minimised_scores_maximised() {
        for metric in ["eval_loss", "perplexity", "mse", "rmse", "mae"] {
            assert!(!TrainConfig::greater_is_better(metric), "{metric}");
        }
        for metric in ["accuracy", "macro_f1", "micro_f1", "pearson", "spearman", "f1", "subset_accuracy"] {
            assert!(TrainConfig::greater_is_better(metric), "{metric}");
        }
    }
}
