//! The training loop shared by fine-tuning and further pretraining, visible in one place:
//! batches -> forward/backward (with gradient accumulation) -> clip -> AdamW at the scheduled
//! learning rate -> log -> evaluate / checkpoint -> repeat.
//!
//! Determinism: the batches of an epoch are a function of (seed, epoch), and the dropout RNG is
//! reseeded from (seed, step) before every micro-batch, so a run resumed from `checkpoint-N`
//! reaches the same weights as one that never stopped (bit for bit on CPU).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::config::TrainConfig;
use super::log::RunLog;
use super::optim::{AdamW, AdamWConfig, clip_grad_norm};
use super::schedule::LinearWarmup;
use crate::checkpoint::{read_weights, write_safetensors};
use crate::device::{Autocast, gpu_peak_memory};
use crate::fsutil::{atomic_write, verify_manifest, write_manifest};
use crate::torch_failure::catch;

/// One training micro-batch's mean loss and its size.
pub struct StepLoss {
    pub loss: Tensor,
    pub examples: usize,
    /// Real (non-padding) tokens.
    pub tokens: usize,
    /// Positions computed, padding included (batch x longest).
    pub padded_tokens: usize,
}

/// What one optimizer step processed, summed over its micro-batches.
pub struct StepStats {
    /// Mean loss of the step, still on the device: reading it makes the host wait for the GPU,
    /// which `clip_and_read` does once per step.
    pub loss: Tensor,
    pub examples: usize,
    pub tokens: usize,
    pub padded_tokens: usize,
}

/// The numbers of a step the host needs: the loss, and the gradient norm before clipping.
#[derive(Debug, Clone, Copy)]
pub struct StepValues {
    pub loss: f64,
    /// None without clipping.
    pub grad_norm: Option<f64>,
}

/// Held-out results: flat metrics for logs and model selection, plus a full report.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: BTreeMap<String, f64>,
    pub report: serde_json::Value,
    /// Human-readable lines for the terminal.
    pub summary: String,
}

/// What differs between fine-tuning and further pretraining.
pub trait Task {
    fn var_store(&self) -> &VarStore;
    /// Training batches (indices into the training set) of one epoch.
    fn epoch_batches(&self, epoch: usize, seed: u64) -> Vec<Vec<usize>>;
    /// Forward pass with dropout and the loss of one micro-batch. `seed` is unique to this
    /// micro-batch of this step, for any randomness of the task's own (e.g. MLM masks).
    fn train_loss(&self, batch: &[usize], seed: u64) -> Result<StepLoss>;
    /// None when there is no held-out data.
    fn evaluate(&self) -> Result<Option<Evaluation>>;
    /// Writes the model as a Hugging Face directory.
    fn save_model(&self, dir: &Path) -> Result<()>;
    /// The metric that picks the best checkpoint unless the user chose one.
    fn default_metric(&self) -> &'static str;
    /// Whether to evaluate once before the first step (logged as step 0, saved as
    /// `eval_before.json`): further pretraining reports perplexity before and after.
    fn evaluate_before_training(&self) -> bool {
        false
    }
}

/// With `--skip-nan-steps`, this many non-finite steps in a row still stop the run.
const MAX_SKIPPED_IN_A_ROW: usize = 10;

/// Saved in every checkpoint beside the model and the optimizer state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub global_step: usize,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    pub metric_for_best: String,
    pub best_metric: Option<f64>,
    pub best_step: Option<usize>,
    /// The full evaluation at `best_step` (what `eval_results.json` reports), kept across resumes.
    #[serde(default)]
    pub best_evaluation: Option<serde_json::Value>,
    pub evals_without_improvement: usize,
    /// Hyper-parameters of the run, to refuse resuming with different ones.
    pub config: TrainConfig,
}

#[derive(Debug)]
pub enum Stop {
    Finished,
    EarlyStopped,
    /// By SIGINT (exit code 130) or SIGTERM (143), after saving a checkpoint.
    Interrupted {
        exit_code: i32,
    },
}

pub struct Outcome {
    pub stop: Stop,
    pub global_step: usize,
    pub metric_for_best: String,
    pub best: Option<(usize, f64)>,
    /// The evaluation of the model in the output directory (the best checkpoint's).
    pub best_evaluation: Option<Evaluation>,
}

/// Refuses to write into a directory that holds another run, unless told to replace or resume.
pub fn prepare_output_dir(cfg: &TrainConfig) -> Result<()> {
    let out = &cfg.output;
    let has_run = ["log.jsonl", "config.json", "model.safetensors"].iter().any(|f| out.join(f).exists())
        || list_checkpoints(out).map(|c| !c.is_empty()).unwrap_or(false);
    if has_run && cfg.resume_from.is_none() {
        if !cfg.overwrite {
            bail!(
                "{}: holds another run; pass --overwrite to replace it or --resume-from to continue it",
                out.display()
            );
        }
        for (_, dir) in list_checkpoints(out)? {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        for f in ["log.jsonl", "curves.png", "curves.svg", "eval_results.json", "trainer_state.json"] {
            let _ = std::fs::remove_file(out.join(f));
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}

/// `checkpoint-N` folders of an output directory, oldest first.
pub fn list_checkpoints(out: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else { return Ok(found) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(step) = name.strip_prefix("checkpoint-").and_then(|s| s.parse::<usize>().ok())
            && e.path().join("manifest.json").exists()
        {
            found.push((step, e.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// SIGINT/SIGTERM set a flag the loop checks between steps; a second Ctrl-C exits at once.
struct Signals {
    sigint: Arc<AtomicBool>,
    sigterm: Arc<AtomicBool>,
    handlers: Vec<signal_hook::SigId>,
}

impl Signals {
    fn install() -> Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let sigint = Arc::new(AtomicBool::new(false));
        let sigterm = Arc::new(AtomicBool::new(false));
        let handlers = vec![
            signal_hook::flag::register_conditional_shutdown(SIGINT, 130, sigint.clone())?,
            signal_hook::flag::register(SIGINT, sigint.clone())?,
            signal_hook::flag::register(SIGTERM, sigterm.clone())?,
        ];
        Ok(Signals { sigint, sigterm, handlers })
    }

    fn received(&self) -> Option<i32> {
        if self.sigint.load(Ordering::Relaxed) {
            Some(130)
        } else if self.sigterm.load(Ordering::Relaxed) {
            Some(143)
        } else {
            None
        }
    }
}

pub fn train<T: Task>(task: &T, cfg: &TrainConfig, autocast: Autocast, num_train_batches: usize) -> Result<Outcome> {
    let steps_per_epoch = num_train_batches.div_ceil(cfg.grad_accum).max(1);
    let total_steps = match cfg.max_steps {
        Some(n) => n,
        None => ((cfg.epochs * steps_per_epoch as f64).ceil() as usize).max(1),
    };
    let warmup_steps = cfg.warmup_steps.unwrap_or((cfg.warmup_ratio * total_steps as f64).ceil() as usize);
    let schedule = LinearWarmup { kind: cfg.scheduler, base_lr: cfg.lr, warmup_steps, total_steps };
    // In name order: the global gradient norm sums per-tensor norms, and HashMap order (random
    // per process) would change its last bits, the clipping, and so the weights run to run.
    let mut params: Vec<(String, Tensor)> = task.var_store().variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let trainable: Vec<Tensor> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut opt = AdamW::new(params, AdamWConfig { weight_decay: cfg.weight_decay, ..Default::default() });
    let metric = cfg.metric_for_best.clone().unwrap_or_else(|| task.default_metric().to_string());
    let greater = TrainConfig::greater_is_better(&metric);

    let mut state = TrainerState {
        global_step: 0,
        total_steps,
        steps_per_epoch,
        metric_for_best: metric.clone(),
        best_metric: None,
        best_step: None,
        best_evaluation: None,
        evals_without_improvement: 0,
        config: cfg.clone(),
    };
    if let Some(dir) = &cfg.resume_from {
        state = resume(dir, &mut opt, &state)?;
        tracing::info!("resuming from {} at step {}/{}", dir.display(), state.global_step, total_steps);
    }
    let mut log = RunLog::open(&cfg.output.join("log.jsonl"), state.global_step)?;
    let device = task.var_store().device();
    if state.global_step == 0 {
        log.write(json!({"event": "start", "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
            "warmup_steps": warmup_steps, "train_batches": num_train_batches, "config": cfg}))?;
    }
    if state.global_step == 0
        && task.evaluate_before_training()
        && let Some(ev) = task.evaluate()?
    {
        tracing::info!("before training: {}", ev.summary);
        log.write(json!({"event": "eval", "step": 0, "epoch": 0.0, "metrics": ev.metrics}))?;
        atomic_write(&cfg.output.join("eval_before.json"), serde_json::to_string_pretty(&ev.report)?.as_bytes())?;
    }
    let signals = Signals::install()?;
    let bar = super::progress::bar(total_steps as u64, state.global_step as u64);

    let mut epoch_cache: Option<(usize, Vec<Vec<usize>>)> = None;
    let mut window = Window { since: Some(Instant::now()), ..Default::default() };
    let mut totals = Window { since: Some(Instant::now()), ..Default::default() };
    let mut stop = Stop::Finished;
    let mut best_evaluation = None;
    let mut skipped_in_a_row = 0;
    while state.global_step < total_steps {
        let step = state.global_step;
        let epoch = step / steps_per_epoch;
        if epoch_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
            epoch_cache = Some((epoch, task.epoch_batches(epoch, cfg.seed)));
        }
        let batches = &epoch_cache.as_ref().unwrap().1;
        let first = (step % steps_per_epoch) * cfg.grad_accum;
        let micro: Vec<&Vec<usize>> = batches.iter().skip(first).take(cfg.grad_accum).collect();
        let lr = schedule.lr(step);

        let stats = accumulate_gradients(task, &micro, cfg.seed, step, autocast)
            .map_err(|e| anyhow!("{e:#}; {}", last_checkpoint_note(cfg)))?;
        let values = clip_and_read(&stats, &trainable, cfg.max_grad_norm);
        let non_finite = match values {
            StepValues { loss, .. } if !loss.is_finite() => Some(format!("the loss is {loss}")),
            StepValues { grad_norm: Some(norm), .. } if !norm.is_finite() => {
                Some(format!("the gradient norm is {norm}"))
            }
            _ => None,
        };
        let skipped = non_finite.is_some();
        match non_finite {
            None => {
                skipped_in_a_row = 0;
                opt.step(lr)?;
            }
            Some(what) if cfg.skip_nan_steps && skipped_in_a_row + 1 < MAX_SKIPPED_IN_A_ROW => {
                skipped_in_a_row += 1;
                bar.suspend(|| tracing::warn!("step {}: {what}; update skipped (--skip-nan-steps)", step + 1));
                log.write(json!({"event": "skipped_step", "step": step + 1, "reason": what}))?;
            }
            Some(what) => {
                let hint = if cfg.skip_nan_steps {
                    format!(" ({MAX_SKIPPED_IN_A_ROW} steps in a row)")
                } else {
                    "; --skip-nan-steps skips such steps instead".into()
                };
                bail!("step {}: {what} (learning rate {lr:.3e}){hint}; {}", step + 1, last_checkpoint_note(cfg));
            }
        }
        opt.zero_grad();
        state.global_step += 1;
        // A skipped step's loss is no loss of the model being trained: left out of the averages.
        let loss = (!skipped).then_some(values.loss);
        window.add(loss, &stats);
        totals.add(loss, &stats);
        bar.set_position(state.global_step as u64);

        let step = state.global_step;
        let epoch_f = step as f64 / steps_per_epoch as f64;
        if step.is_multiple_of(cfg.log_every.max(1)) || step == total_steps {
            let w = window.take();
            bar.set_message(format!(
                "loss {:.4}  lr {:.2e}  {:.1} ex/s  {:.0} tok/s",
                w.loss.unwrap_or(f64::NAN),
                lr,
                w.examples_per_s,
                w.tokens_per_s
            ));
            let mut record = json!({"event": "train", "step": step, "epoch": epoch_f, "loss": w.loss, "lr": lr,
                "grad_norm": values.grad_norm.filter(|n| n.is_finite()),
                "examples_per_s": w.examples_per_s, "tokens_per_s": w.tokens_per_s,
                "padded_tokens_per_s": w.padded_tokens_per_s});
            if let Some(memory) = gpu_peak_memory(device) {
                record["gpu_peak_memory"] = json!(memory);
            }
            log.write(record)?;
        }

        let end_of_epoch = step.is_multiple_of(steps_per_epoch);
        let due = match cfg.eval_every {
            Some(n) => step.is_multiple_of(n),
            None => end_of_epoch,
        } || step == total_steps;
        let interrupted = signals.received();
        if due {
            let evaluation =
                bar.suspend(|| catch(|| task.evaluate())).map_err(|f| anyhow!("evaluating at step {step}: {f}"))??;
            if let Some(ev) = &evaluation {
                bar.suspend(|| tracing::info!("step {step} (epoch {epoch_f:.2}) evaluation:\n{}", ev.summary));
                log.write(json!({"event": "eval", "step": step, "epoch": epoch_f, "metrics": ev.metrics}))?;
                let value = *ev.metrics.get(&metric).with_context(|| {
                    format!(
                        "--metric-for-best {metric}: evaluation reports {}",
                        ev.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?;
                let improved = state.best_metric.is_none_or(|b| if greater { value > b } else { value < b });
                if improved {
                    best_evaluation = Some(ev.clone());
                    state.best_evaluation = Some(json!({"metrics": ev.metrics, "report": ev.report}));
                    state.best_metric = Some(value);
                    state.best_step = Some(step);
                    state.evals_without_improvement = 0;
                } else {
                    state.evals_without_improvement += 1;
                }
            }
            save_checkpoint(task, &opt, &state, cfg)?;
            if cfg.early_stopping_patience.is_some_and(|p| state.evals_without_improvement >= p) {
                tracing::info!(
                    "early stopping at step {step}: {metric} has not improved for {} evaluations",
                    state.evals_without_improvement
                );
                stop = Stop::EarlyStopped;
                break;
            }
        }
        if let Some(exit_code) = interrupted {
            if !due {
                save_checkpoint(task, &opt, &state, cfg)?;
            }
            bar.abandon_with_message("interrupted");
            tracing::warn!(
                "interrupted at step {step}: saved {}; continue with --resume-from",
                checkpoint_dir(cfg, step).display()
            );
            log.write(json!({"event": "interrupted", "step": step}))?;
            return Ok(Outcome {
                metric_for_best: state.metric_for_best.clone(),
                stop: Stop::Interrupted { exit_code },
                global_step: step,
                best: best(&state),
                best_evaluation,
            });
        }
    }
    bar.finish();
    let work = json!({"steps": totals.steps, "examples": totals.examples, "tokens": totals.tokens,
        "padded_tokens": totals.padded_tokens, "seconds": totals.seconds(), "gpu_peak_memory": gpu_peak_memory(device)});
    finish(task, cfg, &state, &mut log, work)?;
    Ok(Outcome {
        metric_for_best: state.metric_for_best.clone(),
        stop,
        global_step: state.global_step,
        best: best(&state),
        best_evaluation,
    })
}

/// Forward and backward over the micro-batches of optimizer step `step`, leaving their mean
/// gradient in the parameters; returns the mean loss, examples and real tokens. Every random
/// draw (dropout, masks) is seeded from (seed, step, micro-batch), which makes runs repeatable.
pub fn accumulate_gradients<T: Task>(
    task: &T,
    micro: &[&Vec<usize>],
    seed: u64,
    step: usize,
    autocast: Autocast,
) -> Result<StepStats> {
    let mut stats = StepStats { loss: Tensor::new(), examples: 0, tokens: 0, padded_tokens: 0 };
    for (m, batch) in micro.iter().enumerate() {
        let seed = seed.wrapping_mul(1_000_003).wrapping_add((step * 64 + m) as u64);
        tch::manual_seed(seed as i64);
        // A batch that does not fit (libtorch panics through tch) becomes an error naming it.
        let (loss, out) = catch(|| -> Result<_> {
            let out = autocast.run(|| task.train_loss(batch, seed))?;
            let loss = &out.loss / micro.len() as f64;
            loss.backward();
            Ok((loss.detach().to_kind(Kind::Double), out))
        })
        .map_err(|f| anyhow!("step {}, a micro-batch of {} examples: {f}", step + 1, batch.len()))??;
        stats.loss = if stats.loss.defined() { &stats.loss + loss } else { loss };
        stats.examples += out.examples;
        stats.tokens += out.tokens;
        stats.padded_tokens += out.padded_tokens;
    }
    Ok(stats)
}

/// Clips the gradients (when `max_grad_norm` > 0) and reads the step's loss and gradient norm
/// back together: the one point of a step where the host waits for the device (Trainer waits
/// there too, for `grad_norm.item()`).
pub fn clip_and_read(stats: &StepStats, trainable: &[Tensor], max_grad_norm: f64) -> StepValues {
    if max_grad_norm <= 0.0 {
        return StepValues { loss: stats.loss.double_value(&[]), grad_norm: None };
    }
    let norm = clip_grad_norm(trainable, max_grad_norm).to_kind(Kind::Double).to_device(stats.loss.device());
    let both = Vec::<f64>::try_from(Tensor::stack(&[&stats.loss, &norm], 0).to_device(tch::Device::Cpu))
        .expect("two f64 values");
    StepValues { loss: both[0], grad_norm: Some(both[1]) }
}

fn best(state: &TrainerState) -> Option<(usize, f64)> {
    state.best_step.zip(state.best_metric)
}

impl Drop for Signals {
    /// Outside training, signals do what they normally do again.
    fn drop(&mut self) {
        for id in self.handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Running sums between two log lines (and over the whole run, for the end record).
#[derive(Default)]
struct Window {
    loss: f64,
    /// Steps whose loss counts (skipped ones do not).
    loss_steps: usize,
    steps: usize,
    examples: usize,
    tokens: usize,
    padded_tokens: usize,
    since: Option<Instant>,
}

struct WindowStats {
    /// None when every step of the window was skipped.
    loss: Option<f64>,
    examples_per_s: f64,
    tokens_per_s: f64,
    padded_tokens_per_s: f64,
}

impl Window {
    fn add(&mut self, loss: Option<f64>, s: &StepStats) {
        if let Some(loss) = loss {
            self.loss += loss;
            self.loss_steps += 1;
        }
        self.steps += 1;
        self.examples += s.examples;
        self.tokens += s.tokens;
        self.padded_tokens += s.padded_tokens;
    }

    fn seconds(&self) -> f64 {
        self.since.map_or(f64::NAN, |t| t.elapsed().as_secs_f64())
    }

    fn take(&mut self) -> WindowStats {
        let secs = self.seconds();
        let stats = WindowStats {
            loss: (self.loss_steps > 0).then(|| self.loss / self.loss_steps as f64),
            examples_per_s: self.examples as f64 / secs,
            tokens_per_s: self.tokens as f64 / secs,
            padded_tokens_per_s: self.padded_tokens as f64 / secs,
        };
        *self = Window { since: Some(Instant::now()), ..Default::default() };
        stats
    }
}

fn checkpoint_dir(cfg: &TrainConfig, step: usize) -> PathBuf {
    cfg.output.join(format!("checkpoint-{step}"))
}

/// Which checkpoint a failed run leaves to resume from.
fn last_checkpoint_note(cfg: &TrainConfig) -> String {
    match list_checkpoints(&cfg.output).ok().and_then(|c| c.last().cloned()) {
        Some((_, path)) => format!("{} is intact (continue with --resume-from)", path.display()),
        None => "no checkpoint was saved before it".into(),
    }
}

/// Model + optimizer + trainer state + a manifest of checksums into `checkpoint-N`, written under
/// a temporary name and renamed, so a crash leaves either no folder or a complete one.
fn save_checkpoint<T: Task>(task: &T, opt: &AdamW, state: &TrainerState, cfg: &TrainConfig) -> Result<()> {
    let dir = checkpoint_dir(cfg, state.global_step);
    let tmp = cfg.output.join(format!(".checkpoint-{}.tmp", state.global_step));
    let written = (|| -> Result<()> {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        task.save_model(&tmp)?;
        write_safetensors(&tmp.join("optimizer.safetensors"), &opt.state())?;
        atomic_write(&tmp.join("trainer_state.json"), serde_json::to_string_pretty(state)?.as_bytes())?;
        write_manifest(&tmp)
    })();
    if let Err(e) = written {
        // A full disk must not stay full of our half checkpoint.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("saving {} failed; {}", dir.display(), last_checkpoint_note(cfg))));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    if let Some(limit) = cfg.save_total_limit {
        let all = list_checkpoints(&cfg.output)?;
        let mut excess = all.len().saturating_sub(limit.max(1));
        for (step, path) in all {
            if excess == 0 {
                break;
            }
            if Some(step) != state.best_step && step != state.global_step {
                std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
                excess -= 1;
            }
        }
    }
    Ok(())
}

fn resume(dir: &Path, opt: &mut AdamW, fresh: &TrainerState) -> Result<TrainerState> {
    verify_manifest(dir)?;
    let path = dir.join("trainer_state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("{}: not a checkpoint folder", path.display()))?;
    let saved: TrainerState = serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))?;
    let (a, b) = (&saved.config, &fresh.config);
    let same = a.batch_size == b.batch_size
        && a.grad_accum == b.grad_accum
        && a.lr == b.lr
        && a.seed == b.seed
        && a.scheduler == b.scheduler
        && a.no_bucketing == b.no_bucketing
        && saved.total_steps == fresh.total_steps
        && saved.steps_per_epoch == fresh.steps_per_epoch;
    if !same {
        bail!(
            "{}: was trained with other settings or data (batch size, accumulation, lr, seed, schedule or number of steps differ); resume with the same arguments",
            dir.display()
        );
    }
    let state = read_weights_raw(&dir.join("optimizer.safetensors"))?;
    opt.load_state(state).with_context(|| format!("{}", dir.join("optimizer.safetensors").display()))?;
    Ok(TrainerState { config: fresh.config.clone(), ..saved })
}

/// Tensors of a safetensors file under their stored names and kinds.
fn read_weights_raw(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let tensors = Tensor::read_safetensors(path).with_context(|| format!("{}: unreadable", path.display()))?;
    Ok(tensors.into_iter().collect())
}

/// The output directory's model: the best checkpoint's (as Trainer's load_best_model_at_end),
/// or the final weights when nothing was evaluated. Then the curves.
/// `work` is what this process trained (steps, examples, tokens, seconds), for the end record.
fn finish<T: Task>(
    task: &T,
    cfg: &TrainConfig,
    state: &TrainerState,
    log: &mut RunLog,
    work: serde_json::Value,
) -> Result<()> {
    match state.best_step {
        Some(step) if step != state.global_step => {
            let best = checkpoint_dir(cfg, step);
            tracing::info!(
                "best {} = {:.4} at step {step}: copying {} to {}",
                state.metric_for_best,
                state.best_metric.unwrap(),
                best.display(),
                cfg.output.display()
            );
            for entry in std::fs::read_dir(&best)?.flatten() {
                let name = entry.file_name();
                if ["optimizer.safetensors", "trainer_state.json", "manifest.json"].iter().any(|n| name == *n) {
                    continue;
                }
                atomic_write(&cfg.output.join(&name), &std::fs::read(entry.path())?)?;
            }
            // Sanity: what we copied is loadable.
            read_weights(&cfg.output)?;
        }
        _ => task.save_model(&cfg.output)?,
    }
    atomic_write(&cfg.output.join("trainer_state.json"), serde_json::to_string_pretty(state)?.as_bytes())?;
    if let Some(best) = &state.best_evaluation {
        let results = json!({"step": state.best_step, "metrics": best["metrics"], "report": best["report"]});
        atomic_write(&cfg.output.join("eval_results.json"), serde_json::to_string_pretty(&results)?.as_bytes())?;
    }
    log.write(json!({"event": "end", "step": state.global_step, "best_step": state.best_step, "best_metric": state.best_metric, "metric_for_best": state.metric_for_best, "this_process": work}))?;
    if let Err(e) = crate::viz::curves::plot_run(&cfg.output.join("log.jsonl"), &cfg.output) {
        tracing::warn!("could not draw the training curves: {e:#}");
    }
    Ok(())
}
