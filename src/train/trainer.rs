//! The training loop shared by fine-tuning and further pretraining, on one screen (`train`):
//! batches -> forward/backward (with gradient accumulation) -> clip -> AdamW at the scheduled
//! learning rate -> log -> evaluate / checkpoint -> repeat. What the run directory holds is
//! `run_dir.rs`; what differs between the two tasks is an `Objective`.
//!
//! Determinism: the batches of an epoch are a function of (seed, epoch), and the dropout RNG is
//! reseeded from (seed, step) before every micro-batch, so a run resumed from `checkpoint-N`
//! reaches the same weights as one that never stopped (bit for bit on CPU).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use indicatif::ProgressBar;
use serde_json::json;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::config::{HyperParams, TrainConfig};
use super::log::RunLog;
use super::optim::{AdamW, AdamWConfig, clip_grad_norm};
use super::run_dir::{RunDir, TrainerState, resume};
use super::schedule::Schedule;
use crate::device::{Autocast, Precision, gpu_peak_memory, peak_rss};
use crate::distributed::Reducer;
use crate::predict::Evaluation;
use crate::torch_failure::catch;

/// One training micro-batch's mean loss and its size.
pub struct StepLoss {
    pub loss: Tensor,
    /// What the mean loss divides by (a 0-d tensor): examples, labelled or masked tokens, or the
    /// class weights of the targets (weighted cross-entropy). Ranks weigh their losses by it
    /// (`loss_weight`); a single process never reads it, so it costs no wait for the device.
    pub denominator: Tensor,
    pub examples: usize,
    /// Real (non-padding) tokens.
    pub tokens: usize,
    /// Positions computed, padding included (batch x longest).
    pub padded_tokens: usize,
}

/// What one optimizer step processed, summed over its micro-batches.
pub(crate) struct StepStats {
    /// Mean loss of the step, still on the device: reading it makes the host wait for the GPU,
    /// which `clip_and_read` does once per step.
    pub loss: Tensor,
    pub examples: usize,
    pub tokens: usize,
    pub padded_tokens: usize,
}

/// The numbers of a step the host needs: the loss, and the gradient norm before clipping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepValues {
    pub loss: f64,
    /// None without clipping.
    pub grad_norm: Option<f64>,
}

/// What differs between fine-tuning and further pretraining: the model, its data, its loss.
pub trait Objective {
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
    /// The training data and task settings as one hash (`fingerprint`): a checkpoint resumes
    /// only on the same.
    fn fingerprint(&self) -> String;
    /// The metric that picks the best checkpoint unless the user chose one.
    fn default_metric(&self) -> &'static str;
    /// Whether to evaluate once before the first step (logged as step 0, saved as
    /// `eval_before.json`): further pretraining reports perplexity before and after.
    fn evaluate_before_training(&self) -> bool {
        false
    }
    /// Forward and backward of a micro-batch for an objective that runs the backward pass
    /// itself (a cached contrastive loss, which recomputes the batch a part at a time so that
    /// its graph never holds the whole batch): the gradient of `backward.factor` x the loss
    /// accumulated into the parameters, the loss returned detached. None (the default): the
    /// trainer calls `train_loss` and backpropagates.
    fn train_and_backward(&self, _batch: &[usize], _seed: u64, _backward: &OwnBackward) -> Option<Result<StepLoss>> {
        None
    }
    /// Whether an example's loss depends on the whole batch (in-batch negatives). Under a
    /// launcher every rank is then handed the whole micro-batch rather than its share: it
    /// computes its share (`distributed::shard`), gathers the other ranks' outputs
    /// (`distributed::gather_shares`) and returns the whole batch's loss, the same on every rank,
    /// whose gradient reaches its own share only. The trainer multiplies that gradient by the
    /// number of ranks, so the Reducer's average is one process's gradient over the whole batch.
    fn whole_batch_loss(&self) -> bool {
        false
    }
}

/// How an objective that runs its own backward (`Objective::train_and_backward`) runs it.
pub struct OwnBackward<'a> {
    /// What the loss's gradient is multiplied by (the micro-batch's share of the step, fp16's
    /// loss scale, the number of ranks for a whole-batch loss).
    pub factor: f64,
    /// DDP's Reducer where this micro-batch is the step's last under a launcher.
    reducer: Option<&'a Reducer>,
}

impl OwnBackward<'_> {
    /// A backward in one process, of `factor` x the loss.
    pub fn new(factor: f64) -> Self {
        OwnBackward { factor, reducer: None }
    }

    /// Call before the micro-batch's last backward (`loss` is what it starts from): under a
    /// launcher the Reducer then averages the accumulated gradients over the ranks as that
    /// backward produces them.
    pub fn before_last(&self, loss: &Tensor) -> Result<()> {
        self.reducer.map_or(Ok(()), |r| r.prepare(loss))
    }
}

/// With `--skip-nan-steps`, this many non-finite steps in a row still stop the run.
const MAX_SKIPPED_IN_A_ROW: usize = 10;

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

/// How many steps a run takes and the learning rate of each, from the hyper-parameters and
/// the number of training batches.
pub(crate) struct Plan {
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    pub schedule: Schedule,
}

impl Plan {
    pub fn new(h: &HyperParams, num_train_batches: usize) -> Self {
        let steps_per_epoch = num_train_batches.div_ceil(h.grad_accum).max(1);
        let total_steps = match h.max_steps {
            Some(n) => n,
            None => ((h.epochs * steps_per_epoch as f64).ceil() as usize).max(1),
        };
        let warmup_steps = h.warmup_steps.unwrap_or((h.warmup_ratio * total_steps as f64).ceil() as usize);
        let schedule = Schedule { kind: h.scheduler, base_lr: h.lr, warmup_steps, total_steps };
        Plan { total_steps, steps_per_epoch, schedule }
    }
}

pub fn train<T: Objective>(
    task: &T,
    cfg: &TrainConfig,
    autocast: Autocast,
    num_train_batches: usize,
) -> Result<Outcome> {
    let (h, dir) = (&cfg.hyper, RunDir::new(&cfg.control));
    let plan = Plan::new(h, num_train_batches);
    let params = sorted_params(task.var_store());
    let trainable: Vec<Tensor> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
    if let Some(g) = crate::distributed::group() {
        let settings = serde_json::to_string(&json!({"bertkit": env!("CARGO_PKG_VERSION"), "hyper": h}))?;
        g.agree("bertkit version and hyper-parameters", &settings)?;
    }
    let reducer = Reducer::new(&trainable)?;
    let mut opt = AdamW::new(
        params,
        AdamWConfig { beta1: h.adam_beta1, beta2: h.adam_beta2, eps: h.adam_epsilon, weight_decay: h.weight_decay },
    );
    let state = start_state(task, cfg, &plan, &mut opt, autocast)?;
    let mut log =
        RunLog::open(&dir.path.join("log.jsonl"), state.global_step, cfg.control.tensorboard_dir().as_deref())?;
    if state.global_step == 0 {
        begin(task, cfg, &plan, num_train_batches, autocast, &dir, &mut log)?;
    }
    let mut run = Loop::new(task, cfg, &plan, dir, log, state)?;
    while run.state.global_step < plan.total_steps {
        let step = run.state.global_step;
        let micro = run.micro_batches(step);
        let scale = run.state.loss_scale.map_or(1.0, |s| s.scale);
        let stats = accumulate_gradients(task, &micro, h.seed, step, autocast, scale, reducer.as_ref())
            .map_err(|e| anyhow!("{e:#}; {}", run.dir.last_checkpoint_note()))?;
        let (stats, interrupted) = gather_step(stats, run.signals.received())?;
        let values = run.unscale_and_clip(&stats, &trainable);
        let lr = plan.schedule.lr(step);
        let applied = run.update(&mut opt, values, lr)?;
        opt.zero_grad();
        run.state.global_step += 1;
        run.record(applied, values, &stats, lr)?;
        let evaluated = run.due_for_evaluation();
        if evaluated && run.evaluate_and_checkpoint(&opt)? {
            return run.finish(Stop::EarlyStopped);
        }
        if let Some(exit_code) = interrupted {
            return run.interrupt(&opt, evaluated, exit_code);
        }
    }
    run.finish(Stop::Finished)
}

/// Where the run starts: step 0, or the checkpoint being resumed (its optimiser moments loaded
/// into `opt`); fp16 scales the loss (a resumed run from where its checkpoint left the scale).
fn start_state<T: Objective>(
    task: &T,
    cfg: &TrainConfig,
    plan: &Plan,
    opt: &mut AdamW,
    autocast: Autocast,
) -> Result<TrainerState> {
    let metric = cfg.control.metric_for_best.clone().unwrap_or_else(|| task.default_metric().to_string());
    let mut state = TrainerState {
        global_step: 0,
        total_steps: plan.total_steps,
        steps_per_epoch: plan.steps_per_epoch,
        metric_for_best: metric,
        best_metric: None,
        best_step: None,
        best_evaluation: None,
        evals_without_improvement: 0,
        hyper: cfg.hyper.clone(),
        fingerprint: Some(task.fingerprint()),
        world_size: crate::distributed::world_size(),
        loss_scale: None,
    };
    if let Some(checkpoint) = &cfg.control.resume_from {
        state = resume(checkpoint, opt, &state)?;
        tracing::info!("resuming from {} at step {}/{}", checkpoint.display(), state.global_step, plan.total_steps);
    }
    let fp16 = autocast.precision() == Precision::Fp16;
    state.loss_scale = if fp16 { Some(state.loss_scale.unwrap_or_default()) } else { None };
    Ok(state)
}

/// Parameters in name order: the global gradient norm sums per-tensor norms, and HashMap order
/// (random per process) would change its last bits, the clipping, and so the weights run to run.
pub(crate) fn sorted_params(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// The first records of a fresh run: its plan, and the evaluation before training if asked.
fn begin<T: Objective>(
    task: &T,
    cfg: &TrainConfig,
    plan: &Plan,
    num_train_batches: usize,
    autocast: Autocast,
    run: &RunDir,
    log: &mut RunLog,
) -> Result<()> {
    let h = &cfg.hyper;
    tracing::info!(
        "{} steps ({} per epoch), effective batch {} ({} x {} rank(s) x {} accumulated), precision {}",
        plan.total_steps,
        plan.steps_per_epoch,
        h.batch_size * crate::distributed::world_size() * h.grad_accum,
        h.batch_size,
        crate::distributed::world_size(),
        h.grad_accum,
        format!("{:?}", autocast.precision()).to_lowercase()
    );
    log.write(json!({"event": "start", "total_steps": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch,
        "warmup_steps": plan.schedule.warmup_steps, "train_batches": num_train_batches,
        "precision": autocast.precision(), "config": cfg}))?;
    if task.evaluate_before_training()
        && let Some(ev) = task.evaluate()?
    {
        tracing::info!("before training: {}", ev.summary);
        log.write(json!({"event": "eval", "step": 0, "epoch": 0.0, "metrics": ev.metrics}))?;
        run.write_json("eval_before.json", &ev.report)?;
    }
    Ok(())
}

/// A run between steps: what the loop reads and updates besides the model and optimizer.
struct Loop<'a, T: Objective> {
    task: &'a T,
    cfg: &'a TrainConfig,
    plan: &'a Plan,
    dir: RunDir,
    log: RunLog,
    state: TrainerState,
    signals: Signals,
    bar: ProgressBar,
    /// The batches of the current epoch.
    epoch: Option<(usize, Vec<Vec<usize>>)>,
    /// Sums since the last log line, and over the whole process.
    window: Tally,
    totals: Tally,
    skipped_in_a_row: usize,
    best_evaluation: Option<Evaluation>,
}

impl<'a, T: Objective> Loop<'a, T> {
    fn new(
        task: &'a T,
        cfg: &'a TrainConfig,
        plan: &'a Plan,
        dir: RunDir,
        log: RunLog,
        state: TrainerState,
    ) -> Result<Self> {
        let bar = crate::progress::bar(plan.total_steps as u64, state.global_step as u64);
        Ok(Loop {
            task,
            cfg,
            plan,
            dir,
            log,
            state,
            signals: Signals::install()?,
            bar,
            epoch: None,
            window: Tally::started(),
            totals: Tally::started(),
            skipped_in_a_row: 0,
            best_evaluation: None,
        })
    }

    /// The micro-batches of optimizer step `step` (0-based).
    fn micro_batches(&mut self, step: usize) -> Vec<Vec<usize>> {
        let epoch = step / self.plan.steps_per_epoch;
        if self.epoch.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.epoch = Some((epoch, self.task.epoch_batches(epoch, self.cfg.hyper.seed)));
        }
        let batches = &self.epoch.as_ref().expect("set above").1;
        let accum = self.cfg.hyper.grad_accum;
        batches.iter().skip((step % self.plan.steps_per_epoch) * accum).take(accum).cloned().collect()
    }

    /// The step's loss and gradient norm. Under fp16 the gradients are unscaled first (before
    /// clipping, as `GradScaler.unscale_`), and their norm is taken even without clipping: it
    /// says whether they overflowed.
    fn unscale_and_clip(&self, stats: &StepStats, trainable: &[Tensor]) -> StepValues {
        let max_norm = self.cfg.hyper.max_grad_norm;
        match &self.state.loss_scale {
            None => clip_and_read(stats, trainable, max_norm),
            Some(scale) => {
                scale.unscale(trainable);
                clip_and_read(stats, trainable, if max_norm > 0.0 { max_norm } else { f64::INFINITY })
            }
        }
    }

    /// fp16 only: whether the step overflowed (the loss or a gradient not finite at this loss
    /// scale), which skips it and halves the scale, as GradScaler does: no divergence unless no
    /// scale helps. Every step updates the scale.
    fn fp16_overflowed(&mut self, values: StepValues, step: usize) -> Result<bool> {
        let Some(scale) = self.state.loss_scale.as_mut() else { return Ok(false) };
        let overflowed = !values.loss.is_finite() || values.grad_norm.is_some_and(|n| !n.is_finite());
        let Some(before) = scale.update(overflowed) else { return Ok(false) };
        let now = scale.scale;
        self.bar.suspend(|| tracing::info!("step {step}: loss scale {before} -> {now}"));
        if !overflowed {
            return Ok(false);
        }
        if now < f64::from(f32::EPSILON) {
            bail!(
                "step {step}: the loss or its gradients are not finite at any loss scale (now {now:e}): the run \
                 diverged; {}",
                self.dir.last_checkpoint_note()
            );
        }
        let reason = format!("fp16 overflow; loss scale {before} -> {now}");
        self.log.write(json!({"event": "skipped_step", "step": step, "reason": reason}))?;
        Ok(true)
    }

    /// Applies the AdamW update, or, for a non-finite loss or gradient norm, skips it
    /// (`--skip-nan-steps`) or stops naming the checkpoint to resume from. Returns whether the
    /// update was applied.
    fn update(&mut self, opt: &mut AdamW, values: StepValues, lr: f64) -> Result<bool> {
        let step = self.state.global_step + 1;
        if self.fp16_overflowed(values, step)? {
            return Ok(false);
        }
        let non_finite = match values {
            StepValues { loss, .. } if !loss.is_finite() => format!("the loss is {loss}"),
            StepValues { grad_norm: Some(norm), .. } if !norm.is_finite() => format!("the gradient norm is {norm}"),
            _ => {
                self.skipped_in_a_row = 0;
                opt.step(lr)?;
                return Ok(true);
            }
        };
        if !self.cfg.control.skip_nan_steps || self.skipped_in_a_row + 1 >= MAX_SKIPPED_IN_A_ROW {
            let hint = if self.cfg.control.skip_nan_steps {
                format!(" ({MAX_SKIPPED_IN_A_ROW} steps in a row)")
            } else {
                "; --skip-nan-steps skips such steps instead".into()
            };
            bail!("step {step}: {non_finite} (learning rate {lr:.3e}){hint}; {}", self.dir.last_checkpoint_note());
        }
        self.skipped_in_a_row += 1;
        self.bar.suspend(|| tracing::warn!("step {step}: {non_finite}; update skipped (--skip-nan-steps)"));
        self.log.write(json!({"event": "skipped_step", "step": step, "reason": non_finite}))?;
        Ok(false)
    }

    /// Adds a finished step to the sums; every `--log-every` steps, a log line and the bar's text.
    fn record(&mut self, applied: bool, values: StepValues, stats: &StepStats, lr: f64) -> Result<()> {
        // A skipped step's loss is no loss of the model being trained: left out of the averages.
        let loss = applied.then_some(values.loss);
        self.window.add(loss, stats);
        self.totals.add(loss, stats);
        let step = self.state.global_step;
        self.bar.set_position(step as u64);
        if !(step.is_multiple_of(self.cfg.control.log_every) || step == self.plan.total_steps) {
            return Ok(());
        }
        let w = self.window.take();
        self.bar.set_message(format!(
            "loss {:.4}  lr {lr:.2e}  {:.1} ex/s  {:.0} tok/s",
            w.loss.unwrap_or(f64::NAN),
            w.examples_per_s,
            w.tokens_per_s
        ));
        let mut record = json!({"event": "train", "step": step, "epoch": self.epoch_progress(), "loss": w.loss,
            "lr": lr, "grad_norm": values.grad_norm.filter(|n| n.is_finite()),
            "examples_per_s": w.examples_per_s, "tokens_per_s": w.tokens_per_s,
            "padded_tokens_per_s": w.padded_tokens_per_s, "peak_rss": peak_rss()});
        if let Some(memory) = gpu_peak_memory(self.task.var_store().device()) {
            record["gpu_peak_memory"] = json!(memory);
        }
        self.log.write(record)
    }

    fn epoch_progress(&self) -> f64 {
        self.state.global_step as f64 / self.plan.steps_per_epoch as f64
    }

    /// Every `--eval-every` steps (default: each epoch's end), and after the last step.
    fn due_for_evaluation(&self) -> bool {
        let step = self.state.global_step;
        let every = self.cfg.control.eval_every.unwrap_or(self.plan.steps_per_epoch);
        step.is_multiple_of(every) || step == self.plan.total_steps
    }

    /// Evaluates, tracks the best metric, saves `checkpoint-N`; true when early stopping is due.
    fn evaluate_and_checkpoint(&mut self, opt: &AdamW) -> Result<bool> {
        let step = self.state.global_step;
        let task = self.task;
        let evaluation =
            self.bar.suspend(|| catch(|| task.evaluate())).map_err(|f| anyhow!("evaluating at step {step}: {f}"))??;
        if let Some(ev) = evaluation {
            let epoch = self.epoch_progress();
            self.bar.suspend(|| tracing::info!("step {step} (epoch {epoch:.2}) evaluation:\n{}", ev.summary));
            self.log.write(json!({"event": "eval", "step": step, "epoch": epoch, "metrics": ev.metrics}))?;
            self.track_best(ev)?;
        }
        self.dir.save_checkpoint(self.task, opt, &self.state)?;
        let patience = self.cfg.control.early_stopping_patience;
        let stop = patience.is_some_and(|p| self.state.evals_without_improvement >= p);
        if stop {
            tracing::info!(
                "early stopping at step {step}: {} has not improved for {} evaluations",
                self.state.metric_for_best,
                self.state.evals_without_improvement
            );
        }
        Ok(stop)
    }

    fn track_best(&mut self, ev: Evaluation) -> Result<()> {
        let metric = &self.state.metric_for_best;
        let value = *ev.metrics.get(metric).with_context(|| {
            let known: Vec<&str> = ev.metrics.keys().map(String::as_str).collect();
            format!("--metric-for-best {metric}: evaluation reports {}", known.join(", "))
        })?;
        let greater = TrainConfig::greater_is_better(metric);
        // An undefined value (Pearson of constant predictions) is worse than any number.
        let better = match self.state.best_metric {
            None => true,
            Some(best) if best.is_nan() => !value.is_nan(),
            Some(best) => (greater && value > best) || (!greater && value < best),
        };
        if better {
            self.state.best_evaluation = Some(json!({"metrics": ev.metrics, "report": ev.report}));
            self.state.best_metric = Some(value);
            self.state.best_step = Some(self.state.global_step);
            self.state.evals_without_improvement = 0;
            self.best_evaluation = Some(ev);
        } else {
            self.state.evals_without_improvement += 1;
        }
        Ok(())
    }

    /// After SIGINT/SIGTERM: a checkpoint of this step (unless one was just saved), then stop.
    fn interrupt(mut self, opt: &AdamW, saved: bool, exit_code: i32) -> Result<Outcome> {
        let step = self.state.global_step;
        if !saved {
            self.dir.save_checkpoint(self.task, opt, &self.state)?;
        }
        self.bar.abandon_with_message("interrupted");
        let at = self.dir.checkpoint(step);
        tracing::warn!("interrupted at step {step}: saved {}; continue with --resume-from", at.display());
        self.log.write(json!({"event": "interrupted", "step": step}))?;
        Ok(self.outcome(Stop::Interrupted { exit_code }))
    }

    fn finish(mut self, stop: Stop) -> Result<Outcome> {
        self.bar.finish();
        let t = &self.totals;
        let work = json!({"steps": t.steps, "examples": t.examples, "tokens": t.tokens,
            "padded_tokens": t.padded_tokens, "seconds": t.seconds(),
            "gpu_peak_memory": gpu_peak_memory(self.task.var_store().device())});
        self.dir.finish(self.task, &self.state, &mut self.log, work)?;
        Ok(self.outcome(stop))
    }

    fn outcome(self, stop: Stop) -> Outcome {
        Outcome {
            stop,
            global_step: self.state.global_step,
            best: self.state.best_step.zip(self.state.best_metric),
            metric_for_best: self.state.metric_for_best,
            best_evaluation: self.best_evaluation,
        }
    }
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

impl Drop for Signals {
    /// Outside training, signals do what they normally do again.
    fn drop(&mut self) {
        for id in self.handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Forward and backward over the micro-batches of optimizer step `step`, leaving their mean
/// gradient in the parameters; returns the mean loss, examples and real tokens. Every random
/// draw is seeded from (seed, step, micro-batch), which makes runs repeatable: the task's own
/// (MLM masks) from that alone, so that they do not depend on how the ranks split a batch;
/// dropout from it and the rank. In a data-parallel run each rank takes its share of every
/// micro-batch (`dist::shard`), weighs its loss by its share of the loss's denominator, and the
/// Reducer averages the gradients over ranks during the last backward; an objective whose loss
/// spans the batch (`Objective::whole_batch_loss`) is handed the whole micro-batch instead.
pub(crate) fn accumulate_gradients<T: Objective>(
    task: &T,
    micro: &[Vec<usize>],
    seed: u64,
    step: usize,
    autocast: Autocast,
    loss_scale: f64,
    reducer: Option<&Reducer>,
) -> Result<StepStats> {
    let mut stats = StepStats { loss: Tensor::new(), examples: 0, tokens: 0, padded_tokens: 0 };
    let whole = task.whole_batch_loss() && crate::distributed::group().is_some();
    for (m, batch) in micro.iter().enumerate() {
        let seed = seed.wrapping_mul(1_000_003).wrapping_add((step * 64 + m) as u64);
        tch::manual_seed(crate::distributed::rank_seed(seed) as i64);
        let share = crate::distributed::shard(batch);
        let examples = if whole { batch } else { &share.examples };
        let last = reducer.filter(|_| m + 1 == micro.len());
        // A whole-batch loss is the same on every rank, its gradient through this rank's share
        // alone: the world's sum of those, which the Reducer's average needs, is world x it.
        let grad_scale = loss_scale * if whole { crate::distributed::world_size() as f64 } else { 1.0 };
        // A batch that does not fit (libtorch panics through tch) becomes an error naming it.
        let (loss, out) = catch(|| -> Result<_> {
            let own = OwnBackward { factor: grad_scale / micro.len() as f64, reducer: last };
            if let Some(out) = autocast.run(|| task.train_and_backward(examples, seed, &own)) {
                let out = out?;
                return Ok(((&out.loss / micro.len() as f64).to_kind(Kind::Double), out));
            }
            let out = autocast.run(|| task.train_loss(examples, seed))?;
            let weight = match whole {
                true => 1.0,
                false => crate::distributed::loss_weight((!share.stand_in).then_some(&out.denominator))?,
            };
            let loss = &out.loss * (weight / micro.len() as f64);
            // fp16's loss scale (1 otherwise) multiplies what backward starts from, not the loss.
            let scaled = if grad_scale == 1.0 { loss.shallow_clone() } else { &loss * grad_scale };
            if let Some(r) = last {
                r.prepare(&scaled)?;
            }
            scaled.backward();
            // A share without terms (a stand-in, an MLM block without masks) has a NaN mean.
            let loss = if weight > 0.0 { loss.detach() } else { loss.zeros_like() };
            Ok((loss.to_kind(Kind::Double), out))
        })
        .map_err(|f| anyhow!("step {}, a micro-batch of {} examples: {f}", step + 1, share.examples.len()))??;
        stats.loss = if stats.loss.defined() { &stats.loss + loss } else { loss };
        if !share.stand_in {
            stats.examples += out.examples;
            stats.tokens += out.tokens;
            stats.padded_tokens += out.padded_tokens;
        }
    }
    Ok(stats)
}

/// In a data-parallel run, the step as a whole: loss and counts summed over ranks (each rank's
/// loss is its weighted share of the mean), and whether any rank was signalled, so that all
/// stop at the same step. Elsewhere the step and this process's signal as they are.
fn gather_step(stats: StepStats, signal: Option<i32>) -> Result<(StepStats, Option<i32>)> {
    let Some(g) = crate::distributed::group() else { return Ok((stats, signal)) };
    let device = stats.loss.device();
    let counts = [stats.examples, stats.tokens, stats.padded_tokens].map(|c| c as f64);
    let local = [stats.loss.to_device(tch::Device::Cpu).double_value(&[]), counts[0], counts[1], counts[2]];
    let sums = Tensor::from_slice(&local);
    g.all_reduce_sum(&sums)?;
    let signals = Tensor::from_slice(&[signal.unwrap_or(0) as i64]);
    g.all_reduce_max(&signals)?;
    let v = Vec::<f64>::try_from(&sums)?;
    let signal = Some(signals.int64_value(&[0]) as i32).filter(|&s| s != 0);
    let loss = Tensor::from(v[0] / g.world.size as f64).to_device(device);
    Ok((StepStats { loss, examples: v[1] as usize, tokens: v[2] as usize, padded_tokens: v[3] as usize }, signal))
}

/// Clips the gradients (when `max_grad_norm` > 0) and reads the step's loss and gradient norm
/// back together: the one point of a step where the host waits for the device (Trainer waits
/// there too, for `grad_norm.item()`).
pub(crate) fn clip_and_read(stats: &StepStats, trainable: &[Tensor], max_grad_norm: f64) -> StepValues {
    if max_grad_norm <= 0.0 {
        return StepValues { loss: stats.loss.double_value(&[]), grad_norm: None };
    }
    let norm = clip_grad_norm(trainable, max_grad_norm).to_kind(Kind::Double).to_device(stats.loss.device());
    let both = Vec::<f64>::try_from(Tensor::stack(&[&stats.loss, &norm], 0).to_device(tch::Device::Cpu))
        .expect("two f64 values");
    StepValues { loss: both[0], grad_norm: Some(both[1]) }
}

/// Running sums between two log lines (and over the whole run, for the end record).
#[derive(Default)]
struct Tally {
    loss: f64,
    /// Steps whose loss counts (skipped ones do not).
    loss_steps: usize,
    steps: usize,
    examples: usize,
    tokens: usize,
    padded_tokens: usize,
    since: Option<Instant>,
}

struct TallyStats {
    /// None when every step of the window was skipped.
    loss: Option<f64>,
    examples_per_s: f64,
    tokens_per_s: f64,
    padded_tokens_per_s: f64,
}

impl Tally {
    fn started() -> Self {
        Tally { since: Some(Instant::now()), ..Default::default() }
    }

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

    fn take(&mut self) -> TallyStats {
        let secs = self.seconds();
        let stats = TallyStats {
            loss: (self.loss_steps > 0).then(|| self.loss / self.loss_steps as f64),
            examples_per_s: self.examples as f64 / secs,
            tokens_per_s: self.tokens as f64 / secs,
            padded_tokens_per_s: self.padded_tokens as f64 / secs,
        };
        *self = Tally { since: Some(Instant::now()), ..Default::default() };
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// One weight; the loss is w x the step's factor: 1e34 on the first step, so that the
    /// scaled loss's gradient (1e34 x 65 536) is infinite, 1 after.
    struct Overflowing {
        vs: VarStore,
        w: Tensor,
    }

    impl Objective for Overflowing {
        fn var_store(&self) -> &VarStore {
            &self.vs
        }
        fn epoch_batches(&self, _: usize, _: u64) -> Vec<Vec<usize>> {
            vec![vec![0], vec![1], vec![2]]
        }
        fn train_loss(&self, batch: &[usize], _: u64) -> Result<StepLoss> {
            let factor = if batch[0] == 0 { 1e34 } else { 1.0 };
            let one = Tensor::from(1.0f32);
            Ok(StepLoss { loss: &self.w * factor, denominator: one, examples: 1, tokens: 1, padded_tokens: 1 })
        }
        fn evaluate(&self) -> Result<Option<Evaluation>> {
            Ok(None)
        }
        fn save_model(&self, dir: &Path) -> Result<()> {
            Ok(self.vs.save(dir.join("w.safetensors"))?)
        }
        fn fingerprint(&self) -> String {
            "overflowing".into()
        }
        fn default_metric(&self) -> &'static str {
            "loss"
        }
    }

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        cfg: TrainConfig,
    }

    #[test]
    fn an_fp16_overflow_skips_the_step_and_halves_the_loss_scale() {
        let tmp = tempfile::tempdir().unwrap();
        let output = tmp.path().join("run");
        let args =
            ["t", "--output", output.to_str().unwrap(), "--max-steps", "3", "--lr", "0.1", "--warmup-steps", "0"];
        let cfg = Flags::parse_from(args).cfg;
        RunDir::new(&cfg.control).prepare().unwrap();
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var("w", &[], tch::nn::Init::Const(1.0));
        let task = Overflowing { vs, w };
        train(&task, &cfg, Autocast::new(crate::device::Precision::Fp16, tch::Device::Cpu), 3).unwrap();

        let log = std::fs::read_to_string(output.join("log.jsonl")).unwrap();
        let skipped: Vec<&str> = log.lines().filter(|l| l.contains("skipped_step")).collect();
        assert_eq!(skipped.len(), 1, "{log}");
        assert!(skipped[0].contains("\"step\":1") && skipped[0].contains("loss scale 65536 -> 32768"), "{log}");
        // Two AdamW steps on the unscaled gradient 1, at the linear schedule's 0.1 x 2/3 and
        // 0.1 x 1/3 (the schedule follows the step count, the skipped step included): with a constant gradient
        // each moves the weight by its learning rate (no weight decay by default), up to Adam's
        // eps (1e-8) and float32 rounding.
        let w = task.w.double_value(&[]);
        assert!((w - (1.0 - 0.1 * (2.0 / 3.0) - 0.1 * (1.0 / 3.0))).abs() < 1e-6, "w = {w}");
    }
}
