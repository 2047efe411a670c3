//! Choosing a further-pretraining checkpoint by the task (`--probe-every`): every saved
//! checkpoint of a pretraining, and the model it started from (step 0), is scored on the
//! downstream task's selection set by a linear probe on frozen features (`bertkit probe`) or a
//! short fixed-seed fine-tune (`--probe finetune`), beside its held-out perplexity.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::{Args, Commands, Pretraining, column_flags, path, placement_flags, read_json, task_flags};
use bertkit::data::token_classification::{is_conll, is_tagged_jsonl};
use bertkit::task::TaskKind;
use bertkit::train::log::read_log;
use bertkit::train::run_dir::list_checkpoints;
use bertkit::viz::curves::{Panel, plot_panels};

/// How each checkpoint is scored.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum ProbeKind {
    /// A linear layer fitted on frozen features (`bertkit probe`): sequence-level tasks.
    Linear,
    /// A short fine-tune of the whole model (`--probe-examples` examples, one pass): any task.
    Finetune,
}

/// One scored point of a pretraining: its step, the model there and what the probe measured.
pub struct Point {
    pub step: usize,
    pub model: String,
    pub metrics: Value,
    pub seconds: f64,
}

/// The probes of one pretraining, oldest first.
pub struct Series {
    pub points: Vec<Point>,
}

impl Series {
    /// The point with the best `metric` (the earliest of equals).
    pub fn best(&self, metric: &str) -> Option<&Point> {
        let greater = bertkit::train::TrainConfig::greater_is_better(metric);
        let value = |p: &Point| p.metrics[metric].as_f64().filter(|v| v.is_finite());
        self.points.iter().filter(|p| value(p).is_some()).fold(None, |best: Option<&Point>, p| match best {
            Some(b) if (greater && value(p) <= value(b)) || (!greater && value(p) >= value(b)) => Some(b),
            _ => Some(p),
        })
    }

    pub fn to_json(&self, metric: &str) -> Value {
        let points: Vec<Value> = self
            .points
            .iter()
            .map(|p| json!({"step": p.step, "model": p.model, "metrics": p.metrics, "seconds": p.seconds}))
            .collect();
        json!({"metric": metric, "points": points, "best_step": self.best(metric).map(|p| p.step)})
    }
}

/// Refuses, before anything runs, a probe that cannot score this task.
pub fn check(args: &Args) -> Result<()> {
    let tagged = is_conll(&args.train) || is_tagged_jsonl(&args.train);
    if args.probe_every.is_some() && args.probe == ProbeKind::Linear && tagged {
        bail!("--probe linear scores sequence-level tasks; for token classification pass --probe finetune");
    }
    let pairs = matches!(args.task, Some(TaskKind::Embedding | TaskKind::Rerank)) || super::question_answering(args);
    if args.probe_every.is_some() && args.probe == ProbeKind::Linear && pairs {
        bail!(
            "--probe linear fits a classifier; for --task embedding, rerank or question-answering pass --probe finetune"
        );
    }
    if args.adapted_checkpoint == super::AdaptedCheckpoint::Probe && args.probe_every.is_none() {
        bail!("--adapted-checkpoint probe: pass --probe-every N so that there are probe scores to choose by");
    }
    Ok(())
}

/// Probes the model `p` started from and each checkpoint its run saved. Scores of a model
/// already probed (the original, shared by DAPT and TAPT) are reused from `done`.
pub fn probe_pretraining(
    args: &Args,
    p: &Pretraining,
    commands: &mut Commands,
    done: &mut BTreeMap<String, Value>,
) -> Result<Series> {
    let dir = args.output.join("probes").join(p.name.replace('+', "-"));
    std::fs::create_dir_all(&dir)?;
    let mut models: Vec<(usize, String)> = vec![(0, p.from.clone())];
    models.extend(list_checkpoints(&p.output)?.into_iter().map(|(step, path)| (step, super::path(&path))));
    let mut points = Vec::new();
    for (step, model) in models {
        // A model probed before costs nothing more here.
        let seconds = match done.get(&model) {
            Some(_) => 0.0,
            None => {
                let seconds = probe_once(args, &model, &dir.join(format!("step-{step}")), commands)?;
                done.insert(model.clone(), read_json(&dir.join(format!("step-{step}.json")))?["metrics"].clone());
                seconds
            }
        };
        points.push(Point { step, metrics: done[&model].clone(), model, seconds });
    }
    Ok(Series { points })
}

/// Runs one probe of `model`, its result in `stem`.json; returns its wall time.
fn probe_once(args: &Args, model: &str, stem: &Path, commands: &mut Commands) -> Result<f64> {
    let json = stem.with_extension("json");
    let mut v: Vec<String> = match args.probe {
        ProbeKind::Linear => vec!["probe".into(), "--model".into(), model.into()],
        ProbeKind::Finetune => vec!["finetune".into(), "--new-head".into(), "--model".into(), model.into()],
    };
    v.extend(["--train".into(), path(&args.train)]);
    match &args.eval {
        Some(e) => v.extend(["--eval".into(), path(e)]),
        None => v.extend(["--eval-split".into(), args.eval_split.to_string()]),
    }
    v.extend(column_flags(args));
    match args.probe {
        ProbeKind::Linear => {
            v.extend(args.task.map(|t| ["--task".to_string(), t.name().to_string()]).into_iter().flatten())
        }
        ProbeKind::Finetune => v.extend(task_flags(args)),
    }
    v.extend(["--seed".into(), args.seed.to_string(), "--batch-size".into(), args.batch_size.to_string()]);
    v.extend(placement_flags(args));
    match args.probe {
        ProbeKind::Linear => {
            v.extend(["--max-train-examples".into(), args.probe_examples.to_string(), "--json".into(), path(&json)]);
            commands.run(v)
        }
        ProbeKind::Finetune => {
            let steps = args.probe_examples.div_ceil(args.batch_size).to_string();
            v.extend(["--max-steps".into(), steps, "--output".into(), path(stem), "--overwrite".into()]);
            let seconds = commands.run(v)?;
            bertkit::fsutil::atomic_write(&json, &std::fs::read(stem.join("eval_results.json"))?)?;
            Ok(seconds)
        }
    }
}

/// Held-out (step, perplexity) of a pretraining run, from its log (step 0: before training).
pub fn perplexities(output: &Path) -> Result<Vec<(f64, f64)>> {
    let log = read_log(&output.join("log.jsonl"))?;
    let mut points: Vec<(f64, f64)> = log
        .iter()
        .filter(|r| r["event"] == "eval")
        .filter_map(|r| Some((r["step"].as_f64()?, r["metrics"]["perplexity"].as_f64()?)))
        .collect();
    if !points.iter().any(|&(s, _)| s == 0.0) {
        let before = read_json(&output.join("eval_before.json"))?;
        points.extend(before["metrics"]["perplexity"].as_f64().map(|p| (0.0, p)));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(points)
}

/// The model the fine-tunes start from: pretrain's own choice (lowest held-out loss), or the
/// best-probed checkpoint.
pub fn chosen_model(p: &Pretraining, series: Option<&Series>, metric: &str) -> PathBuf {
    match series.and_then(|s| s.best(metric)) {
        Some(point) => PathBuf::from(&point.model),
        None => p.output.clone(),
    }
}

/// `curves.png` and `.svg`: held-out perplexity (log10) and probe score against pretraining
/// steps, one line per pretraining.
pub fn plot(adapted: &[super::Adapted], metric: &str, stem: &Path) -> Result<()> {
    // log10: a model without an MLM head starts from a fresh one, tens of thousands at step 0.
    let mut perplexity = Panel { title: "held-out perplexity (log10)".into(), series: vec![] };
    let mut score = Panel { title: format!("probe {metric}"), series: vec![] };
    for a in adapted {
        let name = a.pretraining.name.to_string();
        let log10 = perplexities(&a.pretraining.output)?.into_iter().map(|(step, p)| (step, p.log10())).collect();
        perplexity.series.push((name.clone(), log10));
        let points = a.probes.iter().flat_map(|s| &s.points);
        let values = points.filter_map(|p| Some((p.step as f64, p.metrics[metric].as_f64()?))).collect();
        score.series.push((name, values));
    }
    plot_panels(&[perplexity, score], "further pretraining, scored by the task", stem)
}
