//! `bertkit compare-models`: two models (before and after fine-tuning or further pretraining) over
//! one labelled set. Each batch goes through both once, with attentions and hidden states: the
//! logits give each model's metrics and the examples whose prediction flipped; the attentions,
//! how far every head moved (per gold label too); the hidden states, how alike each layer's
//! representations are (linear CKA). The most changed flips get an attribution page and an
//! attention view of their own. One HTML page and report.json in `--out`.

mod flips;

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::data::{Encoded, LabelSet, Targets, eval_batches};
use crate::device::{Autocast, DeviceFlags};
use crate::encoder::ForwardOptions;
use crate::explain::comparison::{AttentionDivergence, KeptAttention, SetStatistics, mean_pooled};
use crate::fsutil::atomic_write;
use crate::predict::{Classifier, Decision, LabelledSet, pool_documents};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::progress::items_bar;
use crate::recipes::DataFlags;
use crate::task::TaskKind;
use crate::values::positive;
use crate::viz::comparison::page;

#[derive(clap::Args)]
pub struct CompareModels {
    /// The two models, before then after (give --model twice). The second may lack the first's
    /// head (a base model): it then gets a fresh one with the first's labels.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// Labelled data, read as `evaluate` reads it.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub flags: DataFlags,
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,
    /// Directory for report.html, report.json and the flipped examples' pages.
    #[arg(long)]
    pub out: PathBuf,
    /// Flipped examples that get their own attribution and attention pages (most changed first).
    #[arg(long, default_value_t = 10)]
    pub explain_flipped: usize,
    /// Integration points of the flipped examples' integrated gradients.
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub steps: usize,
    /// Seed of a fresh head for a model without one.
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    #[command(flatten)]
    pub run: DeviceFlags,
}

/// The outputs of both models over the set: per item logits, the statistics of the pass.
struct Pass {
    logits: [Tensor; 2],
    statistics: SetStatistics,
}

/// What `CompareModels::compare` wrote: the report (as report.json holds it) and each model's
/// evaluation summary.
pub struct Comparison {
    pub report: serde_json::Value,
    pub summaries: [String; 2],
}

impl CompareModels {
    /// Runs the job as `bertkit compare-models` does: the report in `--out`, its summary on
    /// standard output.
    pub fn run(self) -> Result<()> {
        let Comparison { report, summaries } = self.compare()?;
        print_summary(&report, &summaries);
        let seconds = report["seconds"].as_f64().unwrap_or(0.0);
        println!("wrote {} ({seconds:.1} s for both models over the set)", self.out.join("report.html").display());
        Ok(())
    }

    /// Both models over the set in one pass: their metrics, the flipped predictions (each with
    /// its pages in `--out/flipped`), per-layer CKA and per-head attention divergence; writes
    /// report.json and report.html into `--out`.
    pub fn compare(&self) -> Result<Comparison> {
        let args = self;
        let device = args.run.setup()?;
        let [a_spec, b_spec] = <[String; 2]>::try_from(args.models.clone())
            .map_err(|m| anyhow::anyhow!("--model: give exactly two models (before, after), not {}", m.len()))?;
        let (a_dir, b_dir) = open_pair(&a_spec, &b_spec, args.seed)?;
        let kind = TaskKind::of(&a_dir.config);
        let max_len = a_dir.max_len(args.flags.max_len)?;
        let names = a_dir.config.label_names();
        let examples = args.flags.read(&args.data, true)?.examples;
        let targets = Targets::new(kind, &examples, &LabelSet::new(names.clone()), "first model's")?;
        let options = LoadOptions::inference(device, Autocast::off());
        let a: Classifier = pretrained::load(&a_dir, &options)?;
        let b: Classifier = pretrained::load(&b_dir, &options)?;
        check_alike(&a, &b, &a_spec, &b_spec)?;
        let set = args.flags.encode(&a.tokenizer, &examples, targets, max_len, &args.data.display().to_string())?;
        self.check_read_alike([&a, &b], &examples, &set, max_len, [&a_spec, &b_spec])?;
        std::fs::create_dir_all(args.out.join("flipped")).with_context(|| format!("--out {}", args.out.display()))?;
        let start = std::time::Instant::now();
        let pass = run_both(&a, &b, &set, args.batch_size, names.len(), device)?;
        let pool = |l: &Tensor| pool_documents(l, &set.doc_of, set.targets.len(), args.flags.window_pool);
        let logits = [pool(&pass.logits[0]), pool(&pass.logits[1])];
        let decision = Decision { pool: args.flags.window_pool, ..Default::default() };
        let evaluations = [
            a.evaluate_logits(&logits[0], &set.targets, &decision)?,
            b.evaluate_logits(&logits[1], &set.targets, &decision)?,
        ];
        let outputs = [a.outputs(&logits[0]), b.outputs(&logits[1])];
        let changes = flips::changes(&outputs, &set.targets, &names)?;
        let seconds = start.elapsed().as_secs_f64();
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let pages = flips::write_pages(args, [&a, &b], [&a_dir, &b_dir], &changes, &texts, max_len, device)?;
        let report = json!({
            "models": [a_dir.display_name(), b_dir.display_name()],
            "paths": [a_spec, b_spec],
            "data": args.data, "examples": set.targets.len(), "task": kind.name(), "labels": names,
            "metrics": [evaluations[0].metrics, evaluations[1].metrics],
            "changes": changes.iter().zip(&pages).map(|(c, p)| json!({"change": c, "text": preview(texts[c.example]), "pages": p})).collect::<Vec<_>>(),
            "cka": pass.statistics.cka(),
            "attention_divergence": {
                "all": pass.statistics.mean_divergence(None),
                "by_label": (0..names.len()).map(|l| pass.statistics.mean_divergence(Some(l))).collect::<Vec<_>>(),
                "examples_by_label": pass.statistics.examples(),
            },
            "seconds": seconds,
        });
        atomic_write(&args.out.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
        atomic_write(&args.out.join("report.html"), page(&report).as_bytes())?;
        Ok(Comparison { report, summaries: evaluations.map(|e| e.summary) })
    }

    /// The second model's tokenizer reads the data as the first's did (two tokenizers alike
    /// do; others are tried on it): one vocabulary, or the comparison means nothing.
    fn check_read_alike(
        &self,
        [a, b]: [&Classifier; 2],
        examples: &[crate::data::Example],
        set: &crate::predict::LabelledSet,
        max_len: usize,
        [a_spec, b_spec]: [&str; 2],
    ) -> Result<()> {
        if a.tokenizer.reads_like(&b.tokenizer) {
            return Ok(());
        }
        let (role, scores) = (self.data.display().to_string(), Targets::Scores(vec![0.0; examples.len()]));
        if self.flags.encode(&b.tokenizer, examples, scores, max_len, &role)?.items != set.items {
            crate::error::refuse!(
                "--model {b_spec}: its tokenizer reads the data differently from {a_spec}'s; compare-models needs one vocabulary"
            );
        }
        Ok(())
    }
}

/// Both models, the one without a head (a base model, before fine-tuning) given the other's
/// labels; at least one must be a fine-tuned sequence-level model.
fn open_pair(a_spec: &str, b_spec: &str, seed: i64) -> Result<(ModelDir, ModelDir)> {
    let (mut a, mut b) = (ModelDir::open(a_spec)?, ModelDir::open(b_spec)?);
    let fine_tuned = |m: &ModelDir| -> Result<bool> {
        let per_token = matches!(
            TaskKind::of(&m.config),
            TaskKind::TokenClassification | TaskKind::QuestionAnswering | TaskKind::MultipleChoice
        );
        Ok(m.has_classifier()? && !per_token)
    };
    if fine_tuned(&a)? {
        b.adopt_head(&a, seed)?;
    } else if fine_tuned(&b)? {
        a.adopt_head(&b, seed)?;
    } else {
        crate::error::refuse!(
            "--model: neither {a_spec} nor {b_spec} is a fine-tuned sequence-level model (classification, multi-label, regression)"
        );
    }
    if TaskKind::of(&a.config) != TaskKind::of(&b.config) || a.config.label_names() != b.config.label_names() {
        crate::error::refuse!(
            "--model {b_spec}: its task or labels differ from {a_spec}'s ({:?} vs {:?})",
            b.config.label_names(),
            a.config.label_names()
        );
    }
    Ok((a, b))
}

/// The start of a text, for tables.
fn preview(text: &str) -> String {
    const CHARS: usize = 300;
    match text.char_indices().nth(CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Attention and representations can only be set side by side with the same shape.
fn check_alike(a: &Classifier, b: &Classifier, a_spec: &str, b_spec: &str) -> Result<()> {
    let (x, y) = (&a.dims, &b.dims);
    if (x.num_layers, x.num_heads) != (y.num_layers, y.num_heads) {
        crate::error::refuse!(
            "--model {b_spec}: {} layers x {} heads, but {a_spec} has {} x {}; compare-models compares head by head",
            y.num_layers,
            y.num_heads,
            x.num_layers,
            x.num_heads
        );
    }
    if a.config.num_labels() != b.config.num_labels() {
        crate::error::refuse!(
            "--model {b_spec}: {} labels, {a_spec} has {}",
            b.config.num_labels(),
            a.config.num_labels()
        );
    }
    Ok(())
}

/// Every batch through both models once (fp32, dropout off), with attentions and hidden states.
fn run_both(
    a: &Classifier,
    b: &Classifier,
    set: &LabelledSet,
    batch_size: usize,
    labels: usize,
    device: Device,
) -> Result<Pass> {
    let n = set.items.len() as i64;
    let mut logits = [0, 1].map(|_| Tensor::zeros([n, a.config.num_labels()], (Kind::Float, Device::Cpu)));
    let mut statistics = SetStatistics::new(labels, a.dims.num_layers, a.dims.num_heads);
    let hidden = ForwardOptions { output_hidden_states: true, ..ForwardOptions::eval() };
    let bar = items_bar(n as u64, "examples");
    let mut kept = KeptAttention::new(batch_size as i64);
    for batch in eval_batches(&set.lengths(), batch_size) {
        let items: Vec<&Encoded> = batch.iter().map(|&i| &set.items[i]).collect();
        let inputs = a.collator().collate(&items).to_device(device);
        kept.next_batch(batch.len() as i64);
        let (la, oa) =
            tch::no_grad(|| a.model.forward(&inputs, ForwardOptions { attention_sink: Some(&kept), ..hidden }));
        // The second model's attention is compared with the first's as each layer makes it.
        let first = kept.layers();
        let sink = AttentionDivergence::new(&first, &inputs.attention_mask);
        let (lb, ob) =
            tch::no_grad(|| b.model.forward(&inputs, ForwardOptions { attention_sink: Some(&sink), ..hidden }));
        let divergence = sink.into_divergence();
        let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
        for (all, l) in logits.iter_mut().zip([la, lb]) {
            let _ = all.index_copy_(0, &index, &l.to_kind(Kind::Float).to_device(Device::Cpu));
        }
        let gold: Vec<Option<usize>> = batch.iter().map(|&i| gold_class(&set.targets, set.doc_of[i])).collect();
        let pooled = [
            mean_pooled(&oa.hidden_states, &inputs.attention_mask),
            mean_pooled(&ob.hidden_states, &inputs.attention_mask),
        ];
        statistics.add(&divergence, &gold, pooled);
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Pass { logits, statistics })
}

/// The one gold class of an example (None for label sets and scores).
fn gold_class(targets: &Targets, example: usize) -> Option<usize> {
    match targets {
        Targets::Classes(v) => Some(v[example] as usize),
        _ => None,
    }
}

fn print_summary(report: &serde_json::Value, summaries: &[String; 2]) {
    let models = &report["models"];
    for (i, summary) in summaries.iter().enumerate() {
        println!("{}:\n{summary}", models[i].as_str().unwrap_or_default());
    }
    let changes = report["changes"].as_array().map_or(0, Vec::len);
    println!("{changes} examples changed prediction ({} -> {})", models[0], models[1]);
    if let Some(cka) = report["cka"].as_array() {
        let diagonal: Vec<String> =
            cka.iter().enumerate().map(|(l, row)| format!("{:.3}", row[l].as_f64().unwrap_or(f64::NAN))).collect();
        println!("linear CKA per layer (embeddings first): {}", diagonal.join(" "));
    }
}
