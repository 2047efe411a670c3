//! The run directory a training command writes: preparing it, `checkpoint-N/` folders (saved
//! atomically, rotated, verified and read back to resume), and the finished run (best model,
//! trainer state, results, curves). The loop in `trainer.rs` calls these and nothing else
//! touches the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::Tensor;

use super::config::{HyperParams, RunControl};
use super::log::RunLog;
use super::optim::AdamW;
use super::trainer::Objective;
use crate::fsutil::{atomic_write, verify_manifest, write_manifest};
use crate::pretrained::write_safetensors;

/// Saved in every checkpoint beside the model and the optimizer state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainerState {
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
    /// The run's hyper-parameters, to refuse resuming with different ones. (Checkpoints of
    /// bertkit before 0.2 saved every flag as `config`; its hyper-parameters are read from there.)
    #[serde(alias = "config")]
    pub hyper: HyperParams,
    /// The training data and task settings (`fingerprint`); absent in earlier checkpoints.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Ranks of a data-parallel run (1 for one process): a step's batch spans them.
    #[serde(default = "one_rank")]
    pub world_size: usize,
    /// fp16 training's loss scale (`loss_scale.rs`); None in other precisions.
    #[serde(default)]
    pub loss_scale: Option<super::loss_scale::LossScale>,
}

fn one_rank() -> usize {
    1
}

/// Files of a finished run, removed by `--overwrite` with the checkpoints.
const RUN_FILES: [&str; 5] = ["log.jsonl", "curves.png", "curves.svg", "eval_results.json", "trainer_state.json"];
/// Files of a checkpoint that are not part of the model directory.
const CHECKPOINT_ONLY: [&str; 3] = ["optimizer.safetensors", "trainer_state.json", "manifest.json"];

pub(crate) struct RunDir {
    pub path: PathBuf,
    save_total_limit: Option<usize>,
    overwrite: bool,
    resuming: bool,
    /// False on every rank but 0 of a data-parallel run: only rank 0 writes.
    writes: bool,
}

impl RunDir {
    pub fn new(control: &RunControl) -> Self {
        RunDir {
            path: control.output.clone(),
            save_total_limit: control.save_total_limit,
            overwrite: control.overwrite,
            resuming: control.resume_from.is_some(),
            writes: crate::distributed::is_main(),
        }
    }

    /// Refuses a directory that holds another run, unless told to replace or resume it.
    /// Commands call it once their inputs are known to be good: it is the first thing written.
    pub fn prepare(&self) -> Result<()> {
        if !self.writes {
            return Ok(());
        }
        let out = &self.path;
        let has_run = ["log.jsonl", "config.json", "model.safetensors"].iter().any(|f| out.join(f).exists())
            || list_checkpoints(out).map(|c| !c.is_empty()).unwrap_or(false);
        if has_run && !self.resuming {
            if !self.overwrite {
                bail!(
                    "{}: holds another run; pass --overwrite to replace it or --resume-from to continue it",
                    out.display()
                );
            }
            for (_, dir) in list_checkpoints(out)? {
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            for f in RUN_FILES {
                let _ = std::fs::remove_file(out.join(f));
            }
            // The replaced run's TensorBoard events (a --logging-dir elsewhere is the user's).
            let _ = std::fs::remove_dir_all(out.join(super::config::DEFAULT_LOGGING_DIR));
        }
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
    }

    pub fn checkpoint(&self, step: usize) -> PathBuf {
        self.path.join(format!("checkpoint-{step}"))
    }

    /// Which checkpoint a failed run leaves to resume from.
    pub fn last_checkpoint_note(&self) -> String {
        match list_checkpoints(&self.path).ok().and_then(|c| c.last().cloned()) {
            Some((_, path)) => format!("{} is intact (continue with --resume-from)", path.display()),
            None => "no checkpoint was saved before it".into(),
        }
    }

    pub fn write_json(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        if !self.writes {
            return Ok(());
        }
        atomic_write(&self.path.join(name), serde_json::to_string_pretty(value)?.as_bytes())
    }

    /// Model + optimizer + trainer state + a manifest of checksums into `checkpoint-N`, written
    /// under a temporary name and renamed, so a crash leaves either no folder or a complete one.
    pub fn save_checkpoint<T: Objective>(&self, task: &T, opt: &AdamW, state: &TrainerState) -> Result<()> {
        if !self.writes {
            return Ok(());
        }
        let dir = self.checkpoint(state.global_step);
        let tmp = self.path.join(format!(".checkpoint-{}.tmp", state.global_step));
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
            return Err(e.context(format!("saving {} failed; {}", dir.display(), self.last_checkpoint_note())));
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
        }
        std::fs::rename(&tmp, &dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
        self.rotate(state)
    }

    /// Keeps at most `--save-total-limit` checkpoints: never the best one, nor the newest.
    fn rotate(&self, state: &TrainerState) -> Result<()> {
        let Some(limit) = self.save_total_limit else { return Ok(()) };
        let all = list_checkpoints(&self.path)?;
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
        Ok(())
    }

    /// The output directory's model: the best checkpoint's (as Trainer's load_best_model_at_end),
    /// or the final weights when nothing was evaluated; then the state, results and curves.
    /// `work` is what this process trained (steps, examples, tokens, seconds), for the end record.
    pub fn finish<T: Objective>(
        &self,
        task: &T,
        state: &TrainerState,
        log: &mut RunLog,
        work: serde_json::Value,
    ) -> Result<()> {
        if !self.writes {
            return Ok(());
        }
        match state.best_step {
            Some(step) if step != state.global_step => self.copy_best(step, state)?,
            _ => task.save_model(&self.path)?,
        }
        atomic_write(&self.path.join("trainer_state.json"), serde_json::to_string_pretty(state)?.as_bytes())?;
        if let Some(best) = &state.best_evaluation {
            let results = json!({"step": state.best_step, "metrics": best["metrics"], "report": best["report"]});
            self.write_json("eval_results.json", &results)?;
        }
        log.write(json!({"event": "end", "step": state.global_step, "best_step": state.best_step,
            "best_metric": state.best_metric, "metric_for_best": state.metric_for_best, "this_process": work}))?;
        let records = super::log::read_log(&self.path.join("log.jsonl"));
        if let Err(e) = records.and_then(|records| crate::viz::curves::plot_run(&records, &self.path)) {
            tracing::warn!("could not draw the training curves: {e:#}");
        }
        Ok(())
    }

    fn copy_best(&self, step: usize, state: &TrainerState) -> Result<()> {
        let best = self.checkpoint(step);
        tracing::info!(
            "best {} = {:.4} at step {step}: copying {} to {}",
            state.metric_for_best,
            state.best_metric.unwrap_or(f64::NAN),
            best.display(),
            self.path.display()
        );
        verify_manifest(&best)?;
        for entry in std::fs::read_dir(&best)?.flatten() {
            let name = entry.file_name();
            if CHECKPOINT_ONLY.iter().any(|n| name == *n) {
                continue;
            }
            atomic_write(&self.path.join(&name), &std::fs::read(entry.path())?)?;
        }
        Ok(())
    }
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

/// Earlier checkpoints saved `no_bucketing` (grouping by length was the default then);
/// it is `train_sampling_strategy` now, so such a run resumes with the batches it had.
fn upgrade_sampling_flag(mut state: serde_json::Value) -> serde_json::Value {
    for key in ["hyper", "config"] {
        if let Some(hyper) = state.get_mut(key).and_then(|h| h.as_object_mut())
            && let Some(no_bucketing) = hyper.remove("no_bucketing").and_then(|v| v.as_bool())
        {
            let sampling = if no_bucketing { "random" } else { "group_by_length" };
            hyper.insert("train_sampling_strategy".into(), sampling.into());
        }
    }
    state
}

/// The state saved in checkpoint `dir`, after checking its files and that it was trained with
/// the same hyper-parameters and data (`fresh` is this run's state at step 0); the optimizer
/// state goes into `opt`.
pub(crate) fn resume(dir: &Path, opt: &mut AdamW, fresh: &TrainerState) -> Result<TrainerState> {
    verify_manifest(dir)?;
    let path = dir.join("trainer_state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("{}: not a checkpoint folder", path.display()))?;
    let saved: TrainerState = serde_json::from_str(&text)
        .map(upgrade_sampling_flag)
        .and_then(serde_json::from_value)
        .with_context(|| format!("{}: unreadable", path.display()))?;
    fresh.hyper.check_same_as(&saved.hyper, dir)?;
    if saved.world_size != fresh.world_size {
        bail!(
            "{}: was trained on {} rank(s), this run has {}: a step's batch spans the ranks, so its steps would \
             not be the ones that were planned; resume with {} rank(s)",
            dir.display(),
            saved.world_size,
            fresh.world_size,
            saved.world_size
        );
    }
    if (saved.total_steps, saved.steps_per_epoch) != (fresh.total_steps, fresh.steps_per_epoch) {
        bail!(
            "{}: was trained on other data ({} steps of {} per epoch, now {} of {}); resume with the same data",
            dir.display(),
            saved.total_steps,
            saved.steps_per_epoch,
            fresh.total_steps,
            fresh.steps_per_epoch
        );
    }
    if saved.fingerprint.is_some() && saved.fingerprint != fresh.fingerprint {
        bail!(
            "{}: was trained on other examples or task settings (the data files, their labels, \
             --max-len, --long-text, --label-all-tokens, loss weights or masking differ); resume with the same",
            dir.display()
        );
    }
    let file = dir.join("optimizer.safetensors");
    let tensors = Tensor::read_safetensors(&file).with_context(|| format!("{}: unreadable", file.display()))?;
    let state: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    opt.load_state(state).with_context(|| format!("{}", file.display()))?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn earlier_checkpoints_resume_with_the_batches_they_had() {
        let upgraded =
            |no_bucketing: bool| upgrade_sampling_flag(json!({"hyper": {"seed": 1, "no_bucketing": no_bucketing}}));
        assert_eq!(upgraded(false)["hyper"], json!({"seed": 1, "train_sampling_strategy": "group_by_length"}));
        assert_eq!(upgraded(true)["hyper"], json!({"seed": 1, "train_sampling_strategy": "random"}));
        let now = json!({"hyper": {"train_sampling_strategy": "random"}});
        assert_eq!(upgrade_sampling_flag(now.clone()), now);
    }
}
