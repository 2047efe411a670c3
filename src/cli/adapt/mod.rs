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

mod commands;
mod pretraining;
mod probes;
mod report;

use bertkit::data::labelled::{Columns, LabelSource, OnBadRow, read_examples};
use bertkit::data::token_classification::{TagColumn, is_conll, is_tagged_jsonl, read_tagged};
use bertkit::fsutil::atomic_write;
use bertkit::pretrained::extend::VocabSlots;
use bertkit::task::TaskKind;
use bertkit::values::{open_fraction, positive, positive_float, sequence_length};
use commands::{
    Commands, column_flags, evaluate_command, finetune_command, placement_flags, pretrain_command, probe_metric,
    selection_metric, task_flags,
};
use pretraining::{
    Adapted, Pretraining, domain_fit, further_pretrain, general_domain_scores, pretrainings, write_task_text,
};
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
    /// Each row's second text (see `finetune --text-pair-column`): the positive or passage of
    /// `--task embedding` and `rerank`, a sentence pair's second sentence.
    #[arg(long)]
    text_pair_column: Option<String>,
    /// `--task embedding`: hard-negative columns (see `finetune --negative-columns`).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    negative_columns: Vec<String>,
    /// The fine-tunes' loss (see `finetune --loss`).
    #[arg(long, value_enum)]
    loss: Option<bertkit::recipes::Loss>,
    /// `--task embedding`: a search benchmark every fine-tuned model is scored on instead of
    /// --test, in BEIR's layout (see `evaluate --queries`): these queries...
    #[arg(long, requires_all = ["test_corpus", "test_qrels"], conflicts_with = "test")]
    test_queries: Option<PathBuf>,
    /// ...against these passages...
    #[arg(long, requires = "test_queries")]
    test_corpus: Option<PathBuf>,
    /// ...judged by these relevance judgements.
    #[arg(long, requires = "test_queries")]
    test_qrels: Option<PathBuf>,
    /// Question answering: tokens shared by consecutive windows of a context (see `finetune
    /// --doc-stride`).
    #[arg(long, value_parser = positive)]
    doc_stride: Option<usize>,
    /// Question answering: training windows without an answer to keep (see `finetune
    /// --null-windows`).
    #[arg(long)]
    null_windows: Option<bertkit::data::question_answering::NullWindows>,
    /// Question answering: score with CUAD's measures too, and choose checkpoints by AUPR.
    #[arg(long)]
    cuad_metrics: bool,
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

/// Whether the study's task is extractive question answering (said, or SQuAD-like data).
fn question_answering(args: &Args) -> bool {
    match args.task {
        Some(task) => task == TaskKind::QuestionAnswering,
        None => bertkit::data::question_answering::is_question_answering(&args.train),
    }
}

/// The set the report's numbers come from, as the report names it (None: the selection set).
fn test_set(args: &Args) -> Option<String> {
    match (&args.test, &args.test_queries, &args.test_corpus) {
        (Some(test), ..) => Some(format!("`{}`", test.display())),
        (None, Some(queries), Some(corpus)) => {
            Some(format!("`{}` searching `{}`", queries.display(), corpus.display()))
        }
        _ => None,
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

pub fn run(args: Args) -> Result<()> {
    let multiple_choice = args.task == Some(TaskKind::MultipleChoice)
        || (args.task.is_none() && bertkit::data::multiple_choice::is_multiple_choice(&args.train));
    if multiple_choice {
        bail!("--train {}: the adapt study is not built for multiple choice yet", args.train.display());
    }
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
            let scores = match evaluate_command(&args, &dir) {
                Some(evaluate) => {
                    commands.run(evaluate)?;
                    read_json(&dir.join("test_results.json"))?
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
