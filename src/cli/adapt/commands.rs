//! The command lines the study runs (`pretrain`, `finetune`, `evaluate`, `domain-fit`), built
//! from the study's flags, and `Commands`, which runs each in this process and keeps the list
//! for the report.

use super::*;
use bertkit::recipes::Loss;

/// The command lines the study ran, in order (for the report).
#[derive(Default)]
pub(super) struct Commands(pub(super) Vec<String>);

impl Commands {
    /// Runs one bertkit command line in this process, after printing it; returns its wall time
    /// in seconds.
    pub(super) fn run(&mut self, argv: Vec<String>) -> Result<f64> {
        let start = Instant::now();
        let quoted = |a: &String| if a.contains(' ') { format!("'{a}'") } else { a.clone() };
        let line = format!("bertkit {}", argv.iter().map(quoted).collect::<Vec<_>>().join(" "));
        eprintln!("\n$ {line}");
        self.0.push(line);
        let code = crate::cli::run_args(std::iter::once("bertkit".to_string()).chain(argv.iter().cloned()))?;
        if code != 0 {
            bail!("bertkit {} stopped with exit code {code}", argv[0]);
        }
        Ok(start.elapsed().as_secs_f64())
    }
}

/// The metric probes are compared by: the fine-tunes' checkpoint metric, else the task's own.
pub(super) fn probe_metric(args: &Args) -> String {
    let tagged = is_conll(&args.train) || is_tagged_jsonl(&args.train);
    let scored = matches!(args.loss, Some(Loss::Cosent | Loss::CosineMse));
    let own = match args.task {
        _ if question_answering(args) && args.cuad_metrics => "aupr",
        _ if question_answering(args) => "f1",
        Some(TaskKind::Embedding) if scored => "spearman",
        Some(TaskKind::Embedding | TaskKind::Rerank) => "ndcg_at_10",
        _ if tagged => "f1",
        _ => "pearson",
    };
    selection_metric(args).unwrap_or_else(|| own.into())
}

/// macro_f1 for single- and multi-label classification unless told otherwise; None leaves
/// `finetune` its task's default (pearson for regression, entity f1 for tagging).
pub(super) fn selection_metric(args: &Args) -> Option<String> {
    if args.metric_for_best.is_some() {
        return args.metric_for_best.clone();
    }
    let tagged = is_conll(&args.train) || is_tagged_jsonl(&args.train);
    match args.task {
        _ if question_answering(args) => None,
        Some(TaskKind::Classification | TaskKind::MultiLabel) => Some("macro_f1".into()),
        None if !tagged => Some("macro_f1".into()),
        _ => None,
    }
}

/// Where and how every step runs.
pub(super) fn placement_flags(args: &Args) -> Vec<String> {
    let mut flags = vec!["--device".to_string(), args.device.clone()];
    flags.extend(["--precision".into(), format!("{:?}", args.precision).to_lowercase()]);
    if let Some(t) = args.threads {
        flags.extend(["--threads".into(), t.to_string()]);
    }
    flags
}

/// The flags every training step shares.
pub(super) fn training_flags(args: &Args, seed: u64) -> Vec<String> {
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
pub(super) fn pretrain_command(args: &Args, p: &Pretraining) -> Vec<String> {
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
pub(super) fn column_flags(args: &Args) -> Vec<String> {
    let mut flags = vec!["--text-column".to_string(), args.text_column.clone()];
    if let Some(pair) = &args.text_pair_column {
        flags.extend(["--text-pair-column".into(), pair.clone()]);
    }
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

/// The task and its loss, for `finetune` (the fine-tunes and the fine-tune probes).
pub(super) fn task_flags(args: &Args) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(task) = args.task {
        flags.extend(["--task".into(), task.name().into()]);
    }
    if !args.negative_columns.is_empty() {
        flags.extend(["--negative-columns".into(), args.negative_columns.join(",")]);
    }
    if let Some(loss) = args.loss {
        let name = loss.to_possible_value().expect("no skipped variants");
        flags.extend(["--loss".into(), name.get_name().to_string()]);
    }
    if let Some(keep) = &args.null_windows {
        flags.extend(["--null-windows".into(), keep.to_string()]);
    }
    flags.extend(reading_flags(args));
    flags
}

/// How a question-answering study's `finetune` and `evaluate` read contexts and score answers.
fn reading_flags(args: &Args) -> Vec<String> {
    let mut flags = Vec::new();
    if let Some(stride) = args.doc_stride {
        flags.extend(["--doc-stride".into(), stride.to_string()]);
    }
    if args.cuad_metrics {
        flags.push("--cuad-metrics".into());
    }
    flags
}

/// `bertkit finetune` of `model` on the task with a fresh head (both models get one), into
/// `output`, the checkpoint chosen by `metric` on the selection set.
pub(super) fn finetune_command(
    args: &Args,
    model: &str,
    output: &Path,
    seed: u64,
    metric: Option<&str>,
) -> Vec<String> {
    let mut v: Vec<String> = vec!["finetune".into(), "--new-head".into(), "--model".into(), model.into()];
    v.extend(["--train".into(), path(&args.train), "--output".into(), path(output)]);
    v.extend(column_flags(args));
    v.extend(["--epochs".into(), args.finetune_epochs.to_string(), "--lr".into(), args.finetune_lr.to_string()]);
    v.extend(["--batch-size".into(), args.batch_size.to_string()]);
    let sampling = args.train_sampling_strategy.to_possible_value().expect("no skipped variants");
    v.extend(["--train-sampling-strategy".into(), sampling.get_name().to_string()]);
    v.extend(task_flags(args));
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

/// `bertkit evaluate` of a fine-tuned model in `dir` on the test set (--test, or the search
/// benchmark of --test-queries), into `dir/test_results.json`; None without a test set.
pub(super) fn evaluate_command(args: &Args, dir: &Path) -> Option<Vec<String>> {
    let mut v: Vec<String> = vec!["evaluate".into(), "--model".into(), path(dir)];
    match (&args.test, &args.test_queries, &args.test_corpus, &args.test_qrels) {
        (Some(test), ..) => {
            v.extend(["--data".into(), path(test)]);
            v.extend(column_flags(args));
            v.extend(reading_flags(args));
        }
        (None, Some(queries), Some(corpus), Some(qrels)) => {
            v.extend(["--queries".into(), path(queries), "--corpus".into(), path(corpus)]);
            v.extend(["--qrels".into(), path(qrels), "--max-len".into(), args.finetune_max_len.to_string()]);
        }
        _ => return None,
    }
    v.extend(["--json".into(), path(&dir.join("test_results.json"))]);
    v.extend(placement_flags(args));
    Some(v)
}
