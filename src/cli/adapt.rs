//! `bertkit adapt`: the whole domain-adaptation study as one command. It runs the same
//! commands a user would type (printed as it goes, so the chain can be rerun by hand):
//!
//! 1. `pretrain` the model on the domain corpus (held-out perplexity before and after);
//! 2. `finetune` the original model on the labelled task;
//! 3. `finetune` the adapted model on the same task, same seed and settings;
//!
//! then writes `report.md` and `report.json` comparing them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::checks::{open_fraction, positive, positive_float, sequence_length};
use crate::fsutil::atomic_write;

#[derive(clap::Args)]
pub struct Args {
    /// The general-purpose model to adapt.
    #[arg(long)]
    model: String,
    /// Unlabelled domain text (files or directories).
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Labelled training data of the downstream task.
    #[arg(long)]
    train: PathBuf,
    /// Labelled held-out data of the downstream task.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Or hold out this fraction of --train.
    #[arg(long, default_value_t = 0.2, value_parser = open_fraction)]
    eval_split: f64,
    #[arg(long, default_value = "text")]
    text_column: String,
    #[arg(long, default_value = "label")]
    label_column: String,
    /// The downstream task (see `finetune --task`); by default what the data says.
    #[arg(long, value_enum)]
    task: Option<crate::task::TaskKind>,
    /// Study directory: adapted/, baseline/, adapted-finetuned/, report.md, report.json.
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
    #[arg(long, default_value_t = 3.0, value_parser = positive_float)]
    finetune_epochs: f64,
    #[arg(long, default_value_t = 256, value_parser = sequence_length)]
    finetune_max_len: usize,
    #[arg(long, default_value_t = 5e-5, value_parser = positive_float)]
    finetune_lr: f64,
    #[arg(long, default_value_t = 16, value_parser = positive)]
    batch_size: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    device: String,
    /// fp32, bf16 (autocast), or auto: bf16 where the device computes it natively.
    #[arg(long, value_enum, default_value = "auto")]
    precision: crate::device::Precision,
    #[arg(long, value_parser = positive)]
    threads: Option<usize>,
    /// Recompute layer activations in backward instead of keeping them (less memory).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Replace an existing study directory.
    #[arg(long)]
    overwrite: bool,
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Runs one bertkit command line in this process, after printing it.
fn step(argv: Vec<String>) -> Result<()> {
    eprintln!(
        "\n$ bertkit {}",
        argv.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }).collect::<Vec<_>>().join(" ")
    );
    let code = super::run_args(std::iter::once("bertkit".to_string()).chain(argv.iter().cloned()))?;
    if code != 0 {
        bail!("bertkit {} stopped with exit code {code}", argv[0]);
    }
    Ok(())
}

fn read_json(p: &Path) -> Result<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        .with_context(|| format!("{}: not JSON", p.display()))
}

pub fn run(args: Args) -> Result<()> {
    let out = &args.output;
    if out.join("report.json").exists() && !args.overwrite {
        bail!("{}: holds a finished study; pass --overwrite to redo it", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (adapted, baseline, adapted_ft) = (out.join("adapted"), out.join("baseline"), out.join("adapted-finetuned"));
    step(pretrain_command(&args, &adapted))?;
    step(finetune_command(&args, args.model.clone(), &baseline))?;
    step(finetune_command(&args, path(&adapted), &adapted_ft))?;
    write_report(&args, &adapted, &baseline, &adapted_ft)
}

/// The flags every step of the study shares.
fn common_flags(args: &Args) -> Vec<String> {
    let mut common = vec!["--seed".to_string(), args.seed.to_string(), "--device".into(), args.device.clone()];
    common.extend(["--precision".into(), format!("{:?}", args.precision).to_lowercase()]);
    if let Some(t) = args.threads {
        common.extend(["--threads".into(), t.to_string()]);
    }
    if args.overwrite {
        common.push("--overwrite".into());
    }
    if args.gradient_checkpointing {
        common.push("--gradient-checkpointing".into());
    }
    common
}

/// `bertkit pretrain` of the model on the corpus, into `adapted`.
fn pretrain_command(args: &Args, adapted: &Path) -> Vec<String> {
    let mut pretrain: Vec<String> = vec!["pretrain".into(), "--model".into(), args.model.clone(), "--corpus".into()];
    pretrain.extend(args.corpus.iter().map(|p| path(p)));
    pretrain.extend([
        "--output".into(),
        path(adapted),
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
        (args.pretrain_steps / 4).max(1).to_string(),
    ]);
    if args.dedupe {
        pretrain.push("--dedupe".into());
    }
    pretrain.extend(common_flags(args));
    pretrain
}

/// `bertkit finetune` of `model` on the task, with a fresh head, into `output`.
fn finetune_command(args: &Args, model: String, output: &Path) -> Vec<String> {
    let mut v: Vec<String> = vec![
        // The study trains a fresh head for the task on both models.
        "finetune".into(),
        "--new-head".into(),
        "--model".into(),
        model,
        "--train".into(),
        path(&args.train),
        "--output".into(),
        path(output),
        "--text-column".into(),
        args.text_column.clone(),
        "--label-column".into(),
        args.label_column.clone(),
        "--epochs".into(),
        args.finetune_epochs.to_string(),
        "--max-len".into(),
        args.finetune_max_len.to_string(),
        "--lr".into(),
        args.finetune_lr.to_string(),
        "--batch-size".into(),
        args.batch_size.to_string(),
    ];
    if let Some(task) = args.task {
        v.extend(["--task".into(), task.name().into()]);
    }
    match &args.eval {
        Some(e) => v.extend(["--eval".into(), path(e)]),
        None => v.extend(["--eval-split".into(), args.eval_split.to_string()]),
    }
    v.extend(common_flags(args));
    v
}

/// `report.json` and `report.md` from the three runs' results.
fn write_report(args: &Args, adapted: &Path, baseline: &Path, adapted_ft: &Path) -> Result<()> {
    let out = &args.output;
    let before = read_json(&adapted.join("eval_before.json"))?;
    let after = read_json(&adapted.join("eval_results.json"))?;
    let base = read_json(&baseline.join("eval_results.json"))?;
    let ours = read_json(&adapted_ft.join("eval_results.json"))?;
    let metric = |v: &Value, k: &str| v["metrics"][k].as_f64().unwrap_or(f64::NAN);
    let report = json!({
        "model": args.model,
        "corpus": args.corpus,
        "task": {"train": args.train, "eval": args.eval, "eval_split": if args.eval.is_none() { Some(args.eval_split) } else { None }},
        "domain_heldout": {
            "before": before["metrics"],
            "after": after["metrics"],
        },
        "downstream": {
            "original": base["metrics"],
            "adapted": ours["metrics"],
        },
        "directories": {"adapted": adapted, "baseline": baseline, "adapted_finetuned": adapted_ft},
    });
    atomic_write(&out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;

    let row = |name: &str, a: &Value, b: &Value, key: &str| {
        let (x, y) = (metric(a, key), metric(b, key));
        format!("| {name} | {x:.4} | {y:.4} | {:+.4} |\n", y - x)
    };
    let mut md = format!(
        "# Domain adaptation of {}\n\nCorpus: {}. Task: {}.\n\n## Held-out domain text (masked-token prediction)\n\n| | before | after | change |\n|---|---|---|---|\n",
        args.model,
        args.corpus.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "),
        args.train.display()
    );
    let beforev = json!({"metrics": before["metrics"]});
    let afterv = json!({"metrics": after["metrics"]});
    md += &row("loss", &beforev, &afterv, "eval_loss");
    md += &row("perplexity", &beforev, &afterv, "perplexity");
    md += &row("accuracy", &beforev, &afterv, "accuracy");
    md += "\nA model published without an MLM head (such as all-MiniLM-L6-v2) starts from a freshly initialised head, so its \"before\" perplexity measures that head, not the encoder.\n";
    md +=
        "\n## Downstream task (same data, seed and settings)\n\n| | original | adapted | change |\n|---|---|---|---|\n";
    // The task's own metrics (accuracy, micro-F1, Pearson, entity F1, ...), loss last.
    let keys = base["metrics"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    for key in keys.iter().filter(|k| *k != "eval_loss").chain(keys.iter().filter(|k| *k == "eval_loss")) {
        md += &row(key, &base, &ours, key);
    }
    atomic_write(&out.join("report.md"), md.as_bytes())?;
    println!("{md}");
    Ok(())
}
