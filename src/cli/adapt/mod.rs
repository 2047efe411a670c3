//! `bertkit adapt`: the whole domain-adaptation study as one command. It runs the same
//! commands a user would type (printed as it goes and listed in the report, so every number can
//! be reproduced by hand):
//!
//! 1. `pretrain` the model on the domain corpus (DAPT), on the task's own training text
//!    (TAPT, `--tapt`), or both in sequence (DAPT+TAPT), held-out perplexity before and after
//!    (Gururangan et al. 2020);
//! 2. for each seed, `finetune` the original and every adapted model on the labelled task,
//!    each checkpoint chosen on `--eval`, then `evaluate` each on `--test` (never used to
//!    choose);
//!
//! then writes `report.md` and `report.json`: mean ± sd over seeds and, for each adapted model,
//! a paired t-test against the original; with `--general-corpus`, every model's perplexity on
//! general-domain text (`evaluate --corpus`), what adaptation cost elsewhere; with
//! `--probe-every`, every checkpoint's downstream probe score beside its held-out perplexity
//! (`probes.rs`, drawn in `curves.png`), the best one named, and optionally fine-tuned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::Value;

mod probes;
mod report;

use bertkit::data::labelled::{Columns, LabelSource, OnBadRow, read_examples};
use bertkit::data::token_classification::{TagColumn, is_conll, is_tagged_jsonl, read_tagged};
use bertkit::fsutil::atomic_write;
use bertkit::pretrained::extend::VocabSlots;
use bertkit::task::TaskKind;
use bertkit::values::{open_fraction, positive, positive_float, sequence_length};
use probes::{ProbeKind, Series};
use report::write_report;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("pretraining").required(true).multiple(true).args(["corpus", "tapt"])))]
pub struct Args {
    /// The general-purpose model to adapt.
    #[arg(long)]
    model: String,
    /// Unlabelled domain text (files or directories): domain-adaptive pretraining (DAPT).
    #[arg(long, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Task-adaptive pretraining (TAPT): also pretrain on the text of --train (its labels are
    /// never read); with --corpus, DAPT then TAPT as a third model.
    #[arg(long)]
    tapt: bool,
    /// General-domain text (e.g. unlabelled reviews) every model is scored on before and after
    /// adaptation (masked-token perplexity): the cost of adaptation, or forgetting.
    #[arg(long, num_args = 1..)]
    general_corpus: Vec<PathBuf>,
    /// Labelled training data of the downstream task.
    #[arg(long)]
    train: PathBuf,
    /// Labelled data that chooses each fine-tune's checkpoint (and stops it early).
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Or hold out this fraction of --train for that.
    #[arg(long, default_value_t = 0.2, value_parser = open_fraction)]
    eval_split: f64,
    /// Labelled test data: every fine-tuned model is scored on it once, never chosen by it.
    /// Without it the report's numbers come from the set that chose the checkpoints.
    #[arg(long)]
    test: Option<PathBuf>,
    /// The metric that chooses each fine-tune's checkpoint. Default: macro_f1 for single- and
    /// multi-label classification (accuracy flatters a model that ignores a rare class), the
    /// task's own otherwise (pearson, entity f1).
    #[arg(long)]
    metric_for_best: Option<String>,
    /// Fine-tune each model with this many seeds (--seed, --seed + 1, ...): the report gives
    /// mean ± sd and a paired t-test of adapted against original.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    seeds: usize,
    #[arg(long, default_value = "text")]
    text_column: String,
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Multi-label data: the label column holds class names joined by this (see `finetune`).
    #[arg(long, conflicts_with = "label_columns", value_parser = bertkit::values::non_empty)]
    label_separator: Option<String>,
    /// Multi-label data: one 0/1 column per class (see `finetune`).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    label_columns: Option<Vec<String>>,
    /// The downstream task (see `finetune --task`); by default what the data says.
    #[arg(long, value_enum)]
    task: Option<TaskKind>,
    /// Study directory: pretrained/{dapt,tapt,dapt-tapt}/, finetuned/{model}-seedN/,
    /// report.md, report.json.
    #[arg(long)]
    output: PathBuf,
    /// Further-pretraining steps.
    #[arg(long, default_value_t = 2000, value_parser = positive)]
    pretrain_steps: usize,
    #[arg(long, default_value_t = 128, value_parser = sequence_length)]
    pretrain_max_len: usize,
    #[arg(long, default_value_t = 5e-5, value_parser = positive_float)]
    pretrain_lr: f64,
    #[arg(long, default_value_t = 0.05, value_parser = open_fraction)]
    pretrain_eval_split: f64,
    /// Drop repeated paragraphs of the corpus.
    #[arg(long)]
    dedupe: bool,
    /// Add this many domain words to the vocabulary of each pretraining that starts from --model
    /// (see `pretrain --add-vocab`; DAPT+TAPT inherits DAPT's).
    #[arg(long, value_parser = positive)]
    add_vocab: Option<usize>,
    #[arg(long, value_enum, default_value = "auto", requires = "add_vocab")]
    add_vocab_into: VocabSlots,
    /// Save a checkpoint every N pretraining steps and score each (and the starting model) on
    /// the task: fitted on --train, scored on the selection set (--eval / --eval-split).
    #[arg(long, value_parser = positive)]
    probe_every: Option<usize>,
    /// How: a linear probe on frozen features (cheap; sequence-level tasks) or a short
    /// fine-tune of the whole model (any task).
    #[arg(long, value_enum, default_value = "linear")]
    probe: ProbeKind,
    /// Training examples per probe (a seeded sample for the linear probe; one pass of this
    /// many for the fine-tune probe).
    #[arg(long, default_value_t = 1000, value_parser = positive)]
    probe_examples: usize,
    /// The further-pretraining checkpoint the fine-tunes start from: the lowest held-out
    /// masked-token loss (pretrain's own choice) or the best probe score (needs --probe-every).
    #[arg(long, value_enum, default_value = "loss")]
    adapted_checkpoint: AdaptedCheckpoint,
    #[arg(long, default_value_t = 3.0, value_parser = positive_float)]
    finetune_epochs: f64,
    #[arg(long, default_value_t = 256, value_parser = sequence_length)]
    finetune_max_len: usize,
    #[arg(long, default_value_t = 5e-5, value_parser = positive_float)]
    finetune_lr: f64,
    #[arg(long, default_value_t = 16, value_parser = positive)]
    batch_size: usize,
    /// How each fine-tune batches its examples (see `finetune`): group_by_length pads less.
    #[arg(long, value_enum, default_value = "random")]
    train_sampling_strategy: bertkit::data::Sampling,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    device: String,
    /// fp32, bf16 (autocast), or auto: bf16 where the device computes it natively.
    #[arg(long, value_enum, default_value = "auto")]
    precision: bertkit::device::Precision,
    #[arg(long, value_parser = positive)]
    threads: Option<usize>,
    /// Recompute layer activations in backward instead of keeping them (less memory).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Replace an existing study directory.
    #[arg(long)]
    overwrite: bool,
}

/// Which checkpoint of a further pretraining stands for it downstream.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum AdaptedCheckpoint {
    Loss,
    Probe,
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The command lines the study ran, in order (for the report).
#[derive(Default)]
struct Commands(Vec<String>);

impl Commands {
    /// Runs one bertkit command line in this process, after printing it; returns its wall time
    /// in seconds.
    fn run(&mut self, argv: Vec<String>) -> Result<f64> {
        let start = Instant::now();
        let quoted = |a: &String| if a.contains(' ') { format!("'{a}'") } else { a.clone() };
        let line = format!("bertkit {}", argv.iter().map(quoted).collect::<Vec<_>>().join(" "));
        eprintln!("\n$ {line}");
        self.0.push(line);
        let code = super::run_args(std::iter::once("bertkit".to_string()).chain(argv.iter().cloned()))?;
        if code != 0 {
            bail!("bertkit {} stopped with exit code {code}", argv[0]);
        }
        Ok(start.elapsed().as_secs_f64())
    }
}

fn read_json(p: &Path) -> Result<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("{}: not JSON", p.display()))
}

/// One model fine-tuned with each seed: its scores on the reported set.
struct Arm {
    name: &'static str,
    model: String,
    runs: Vec<(u64, Value)>,
}

impl Arm {
    /// The metrics each run reports (every run of a task reports the same).
    fn metric_names(&self) -> Vec<String> {
        self.runs[0].1.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// The values of `metric` over the seeds.
    fn values(&self, metric: &str) -> Vec<f64> {
        self.runs.iter().map(|(_, m)| m[metric].as_f64().unwrap_or(f64::NAN)).collect()
    }
}

/// One further pretraining of the study: `name` (dapt, tapt, dapt+tapt), from the model
/// `from`, on `corpus`.
struct Pretraining {
    name: &'static str,
    from: String,
    corpus: Vec<PathBuf>,
    output: PathBuf,
}

/// A pretraining done: how long it took, its probes, and the model that stands for it.
struct Adapted {
    pretraining: Pretraining,
    seconds: f64,
    probes: Option<Series>,
    model: PathBuf,
}

/// DAPT on --corpus, TAPT on the task text, and DAPT+TAPT (TAPT from the DAPT model) when both.
fn pretrainings(args: &Args, task_text: &Path) -> Vec<Pretraining> {
    let dir = args.output.join("pretrained");
    let task_text = vec![task_text.to_path_buf()];
    let dapt =
        Pretraining { name: "dapt", from: args.model.clone(), corpus: args.corpus.clone(), output: dir.join("dapt") };
    let tapt =
        Pretraining { name: "tapt", from: args.model.clone(), corpus: task_text.clone(), output: dir.join("tapt") };
    let both =
        Pretraining { name: "dapt+tapt", from: path(&dapt.output), corpus: task_text, output: dir.join("dapt-tapt") };
    match (args.corpus.is_empty(), args.tapt) {
        (false, false) => vec![dapt],
        (true, _) => vec![tapt],
        (false, true) => vec![dapt, tapt, both],
    }
}

/// The task's own training text for TAPT: each example's text as one paragraph (a tagged
/// sentence's words joined by spaces); labels are never read.
fn write_task_text(args: &Args, out: &Path) -> Result<()> {
    let texts: Vec<String> = if is_conll(&args.train) || is_tagged_jsonl(&args.train) {
        let (sentences, _) = read_tagged(&args.train, TagColumn::Last, false, OnBadRow::Skip)?;
        sentences.into_iter().map(|s| s.words.join(" ")).collect()
    } else {
        let columns = Columns { text: args.text_column.clone(), pair: None, label: LabelSource::None };
        read_examples(&args.train, None, &columns, OnBadRow::Skip)?.examples.into_iter().map(|e| e.text).collect()
    };
    tracing::info!("TAPT corpus: {} texts of {} in {}", texts.len(), args.train.display(), out.display());
    atomic_write(out, texts.join("\n\n").as_bytes())
}

pub fn run(args: Args) -> Result<()> {
    probes::check(&args)?;
    let out = &args.output;
    if out.join("report.json").exists() && !args.overwrite {
        bail!("{}: holds a finished study; pass --overwrite to redo it", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let task_text = out.join("task-text.txt");
    if args.tapt {
        write_task_text(&args, &task_text)?;
    }
    let mut commands = Commands::default();
    let domain_fit = domain_fit(&args, &task_text, &mut commands)?;
    let adapted = further_pretrain(&args, pretrainings(&args, &task_text), &mut commands)?;
    let forgetting = general_domain_scores(&args, &adapted, &mut commands)?;
    let original = Arm { name: "original", model: args.model.clone(), runs: vec![] };
    let others = adapted.iter().map(|a| Arm { name: a.pretraining.name, model: path(&a.model), runs: vec![] });
    let mut arms: Vec<Arm> = std::iter::once(original).chain(others).collect();
    let metric = selection_metric(&args);
    for seed in (args.seed..).take(args.seeds) {
        for arm in &mut arms {
            let dir = out.join("finetuned").join(format!("{}-seed{seed}", arm.name.replace('+', "-")));
            commands.run(finetune_command(&args, &arm.model, &dir, seed, metric.as_deref()))?;
            let scores = match &args.test {
                Some(test) => {
                    let json = dir.join("test_results.json");
                    commands.run(evaluate_command(&args, &dir, test, &json))?;
                    read_json(&json)?
                }
                None => read_json(&dir.join("eval_results.json"))?,
            };
            arm.runs.push((seed, scores["metrics"].clone()));
        }
    }
    let chosen_by = read_json(&out.join(format!("finetuned/original-seed{}/trainer_state.json", args.seed)))?;
    let chosen_by = chosen_by["metric_for_best"].as_str().unwrap_or("eval_loss").to_string();
    let measured = report::Measured { forgetting, domain_fit };
    write_report(&args, &adapted, &arms, &chosen_by, &measured, &commands.0)
}

/// `domain-fit` of the domain corpus (the task text for TAPT alone) against the general-domain
/// text, before any training: whether adaptation is likely to pay.
fn domain_fit(args: &Args, task_text: &Path, commands: &mut Commands) -> Result<Value> {
    let json = args.output.join("domain-fit.json");
    let mut v: Vec<String> = vec!["domain-fit".into(), "--model".into(), args.model.clone(), "--corpus".into()];
    match args.corpus.is_empty() {
        true => v.push(path(task_text)),
        false => v.extend(args.corpus.iter().map(|c| path(c))),
    }
    if !args.general_corpus.is_empty() {
        v.push("--reference".into());
        v.extend(args.general_corpus.iter().map(|c| path(c)));
    }
    v.extend(["--json".into(), path(&json)]);
    commands.run(v)?;
    read_json(&json)
}

/// Runs each pretraining of the plan (DAPT+TAPT from the model that stands for DAPT), probes
/// its checkpoints when asked, and picks the model that stands for it downstream.
fn further_pretrain(args: &Args, plan: Vec<Pretraining>, commands: &mut Commands) -> Result<Vec<Adapted>> {
    let metric = probe_metric(args);
    let mut probed = BTreeMap::new();
    let mut adapted: Vec<Adapted> = Vec::new();
    for mut pretraining in plan {
        if let (true, Some(dapt)) = (pretraining.name == "dapt+tapt", adapted.first()) {
            pretraining.from = path(&dapt.model);
        }
        let seconds = commands.run(pretrain_command(args, &pretraining))?;
        let probes = match args.probe_every {
            Some(_) => Some(probes::probe_pretraining(args, &pretraining, commands, &mut probed)?),
            None => None,
        };
        let model = match args.adapted_checkpoint {
            AdaptedCheckpoint::Loss => pretraining.output.clone(),
            AdaptedCheckpoint::Probe => probes::chosen_model(&pretraining, probes.as_ref(), &metric),
        };
        adapted.push(Adapted { pretraining, seconds, probes, model });
    }
    Ok(adapted)
}

/// The metric probes are compared by: the fine-tunes' checkpoint metric, else the task's own.
fn probe_metric(args: &Args) -> String {
    let tagged = is_conll(&args.train) || is_tagged_jsonl(&args.train);
    selection_metric(args).unwrap_or_else(|| if tagged { "f1".into() } else { "pearson".into() })
}

/// Each model's masked-token scores on `--general-corpus` (empty without it), by model name.
fn general_domain_scores(
    args: &Args,
    adapted: &[Adapted],
    commands: &mut Commands,
) -> Result<serde_json::Map<String, Value>> {
    let mut scores = serde_json::Map::new();
    if args.general_corpus.is_empty() {
        return Ok(scores);
    }
    let dir = args.output.join("general");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let models = std::iter::once(("original", args.model.clone()))
        .chain(adapted.iter().map(|a| (a.pretraining.name, path(&a.model))));
    for (name, model) in models {
        let json = dir.join(format!("{}.json", name.replace('+', "-")));
        let mut v: Vec<String> = vec!["evaluate".into(), "--model".into(), model, "--corpus".into()];
        v.extend(args.general_corpus.iter().map(|c| path(c)));
        v.extend(["--max-len".into(), args.pretrain_max_len.to_string(), "--json".into(), path(&json)]);
        v.extend(placement_flags(args));
        commands.run(v)?;
        scores.insert(name.into(), read_json(&json)?["metrics"].clone());
    }
    Ok(scores)
}

/// macro_f1 for single- and multi-label classification unless told otherwise; None leaves
/// `finetune` its task's default (pearson for regression, entity f1 for tagging).
fn selection_metric(args: &Args) -> Option<String> {
    if args.metric_for_best.is_some() {
        return args.metric_for_best.clone();
    }
    let tagged = is_conll(&args.train) || is_tagged_jsonl(&args.train);
    match args.task {
        Some(TaskKind::Classification | TaskKind::MultiLabel) => Some("macro_f1".into()),
        None if !tagged => Some("macro_f1".into()),
        _ => None,
    }
}

/// Where and how every step runs.
fn placement_flags(args: &Args) -> Vec<String> {
    let mut flags = vec!["--device".to_string(), args.device.clone()];
    flags.extend(["--precision".into(), format!("{:?}", args.precision).to_lowercase()]);
    if let Some(t) = args.threads {
        flags.extend(["--threads".into(), t.to_string()]);
    }
    flags
}

/// The flags every training step shares.
fn training_flags(args: &Args, seed: u64) -> Vec<String> {
    let mut flags = vec!["--seed".to_string(), seed.to_string()];
    flags.extend(placement_flags(args));
    if args.overwrite {
        flags.push("--overwrite".into());
    }
    if args.gradient_checkpointing {
        flags.push("--gradient-checkpointing".into());
    }
    flags
}

/// `bertkit pretrain` of one pretraining of the study.
fn pretrain_command(args: &Args, p: &Pretraining) -> Vec<String> {
    let mut pretrain: Vec<String> = vec!["pretrain".into(), "--model".into(), p.from.clone(), "--corpus".into()];
    pretrain.extend(p.corpus.iter().map(|c| path(c)));
    pretrain.extend([
        "--output".into(),
        path(&p.output),
        "--max-steps".into(),
        args.pretrain_steps.to_string(),
        "--max-len".into(),
        args.pretrain_max_len.to_string(),
        "--lr".into(),
        args.pretrain_lr.to_string(),
        "--eval-split".into(),
        args.pretrain_eval_split.to_string(),
        "--batch-size".into(),
        args.batch_size.to_string(),
        "--eval-every".into(),
        args.probe_every.unwrap_or((args.pretrain_steps / 4).max(1)).to_string(),
    ]);
    if args.dedupe {
        pretrain.push("--dedupe".into());
    }
    if let (Some(n), true) = (args.add_vocab, p.from == args.model) {
        let into = args.add_vocab_into.to_possible_value().expect("no skipped variants");
        pretrain.extend(["--add-vocab".into(), n.to_string(), "--add-vocab-into".into(), into.get_name().to_string()]);
    }
    pretrain.extend(training_flags(args, args.seed));
    pretrain
}

/// The task data's columns, for `finetune` and `evaluate`.
fn column_flags(args: &Args) -> Vec<String> {
    let mut flags = vec!["--text-column".to_string(), args.text_column.clone()];
    flags.extend(["--label-column".into(), args.label_column.clone()]);
    if let Some(separator) = &args.label_separator {
        flags.extend(["--label-separator".into(), separator.clone()]);
    }
    if let Some(columns) = &args.label_columns {
        flags.extend(["--label-columns".into(), columns.join(",")]);
    }
    flags.extend(["--max-len".into(), args.finetune_max_len.to_string()]);
    flags
}

/// `bertkit finetune` of `model` on the task with a fresh head (both models get one), into
/// `output`, the checkpoint chosen by `metric` on the selection set.
fn finetune_command(args: &Args, model: &str, output: &Path, seed: u64, metric: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = vec!["finetune".into(), "--new-head".into(), "--model".into(), model.into()];
    v.extend(["--train".into(), path(&args.train), "--output".into(), path(output)]);
    v.extend(column_flags(args));
    v.extend(["--epochs".into(), args.finetune_epochs.to_string(), "--lr".into(), args.finetune_lr.to_string()]);
    v.extend(["--batch-size".into(), args.batch_size.to_string()]);
    let sampling = args.train_sampling_strategy.to_possible_value().expect("no skipped variants");
    v.extend(["--train-sampling-strategy".into(), sampling.get_name().to_string()]);
    if let Some(task) = args.task {
        v.extend(["--task".into(), task.name().into()]);
    }
    if let Some(metric) = metric {
        v.extend(["--metric-for-best".into(), metric.into()]);
    }
    match &args.eval {
        Some(e) => v.extend(["--eval".into(), path(e)]),
        None => v.extend(["--eval-split".into(), args.eval_split.to_string()]),
    }
    v.extend(training_flags(args, seed));
    v
}

/// `bertkit evaluate` of a fine-tuned model on the test set, into `json`.
fn evaluate_command(args: &Args, model: &Path, test: &Path, json: &Path) -> Vec<String> {
    let mut v: Vec<String> = vec!["evaluate".into(), "--model".into(), path(model), "--data".into(), path(test)];
    v.extend(column_flags(args));
    v.extend(["--json".into(), path(json)]);
    v.extend(placement_flags(args));
    v
}
