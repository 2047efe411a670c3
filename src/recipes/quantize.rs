//! `bertkit quantize`: a fine-tuned model's layers in int8 (`encoder::int8`, dynamic
//! quantisation), written only where it keeps its quality and is faster on this CPU.
//!
//! 1. Each layer's own error: the model runs the calibration texts in float32 while every
//!    linear layer also computes its int8 output from the same input (`Int8Linear::measuring`).
//! 2. The gate: the task's metric (`evaluate`'s, on `--data`) of the float model and of the int8
//!    one; while the drop passes `--max-drop`, the layers of largest error go back to float32
//!    (1, 2, 4, ... of them, up to `--max-fp32-layers`). Each candidate is a directory on disk,
//!    evaluated as `bertkit evaluate` would: what is checked is what is written.
//! 3. Speed: float32 and the chosen int8 model on the calibration batches, interleaved; int8
//!    must reach `--min-speedup` times float32's examples/s.
//!
//! A refusal names both numbers and writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tch::Tensor;

use crate::data::token_classification::read_tagged;
use crate::data::{Columns, Encoded, Format, LabelSource, OnBadRow, eval_batches, read_examples, tokenize};
use crate::encoder::int8::{Int8Linear, Int8Weight};
use crate::encoder::{ForwardOptions, ModelConfig};
use crate::error::refuse;
use crate::fsutil::atomic_write;
use crate::pretrained::int8::{QUANT_METHOD, int8_tensors, int8_weights, is_int8};
use crate::pretrained::{self, LoadOptions, ModelDir, Pretrained, read_weights};
use crate::recipes::Evaluate;
use crate::task::{Bare, TaskKind, TaskModel};
use crate::train::config::TrainConfig;
use crate::values::positive;

#[derive(clap::Args)]
pub struct Quantize {
    /// The float model and the data its metric is measured on (`--data`/`--eval`, or an
    /// embedding model's `--queries`, or `--corpus` for a masked LM), read as `evaluate` reads them.
    #[command(flatten)]
    pub evaluate: Evaluate,
    /// Where the int8 model goes (written only if it passes).
    #[arg(long)]
    pub out: PathBuf,
    /// The largest drop of the metric allowed, in points: percentage points for accuracy,
    /// F1, NDCG and the like; a loss's own units.
    #[arg(long, default_value_t = 0.5)]
    pub max_drop: f64,
    /// The metric the gate reads (default: the task's: accuracy, micro_f1, pearson, f1, aupr
    /// with --cuad-metrics, ndcg_at_10, spearman, eval_loss).
    #[arg(long)]
    pub metric: Option<String>,
    /// The int8 model must run at least this many times float32's examples/s on this CPU,
    /// measured on the calibration texts (0: not measured).
    #[arg(long, default_value_t = 1.0)]
    pub min_speedup: f64,
    /// Texts the layers' errors and the speed are measured on: one per line, or CSV / JSONL /
    /// Parquet with --text-column. Default: --data's texts (classification formats).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// How many calibration texts (the first ones).
    #[arg(long, default_value_t = 256, value_parser = positive)]
    pub calibration_size: usize,
    /// The most layers kept in float32 to pass the gate (default: every layer but one).
    #[arg(long)]
    pub max_fp32_layers: Option<usize>,
}

/// What `quantize` measured and decided.
pub struct Quantized {
    /// The JSON written beside the model as `quantization.json`.
    pub report: Value,
    pub summary: String,
}

/// One candidate the gate evaluated: how many layers stayed in float32, and its metric (of
/// `task`'s evaluation).
struct Try {
    fp32_layers: usize,
    value: f64,
    task: &'static str,
}

impl Quantize {
    /// `model` (fine-tuned) gated on the labelled `data`, written to `out`; every other
    /// setting at its flag's default.
    pub fn new(model: &str, data: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<Quantize> {
        let (data, out) = (data.as_ref().display().to_string(), out.as_ref().display().to_string());
        crate::values::from_flags(&["--model", model, "--data", &data, "--out", &out])
    }

    /// Runs the job as `bertkit quantize` does: the summary on standard output.
    pub fn run(self) -> Result<()> {
        let quantized = self.quantize()?;
        println!("{}", quantized.summary);
        Ok(())
    }

    /// Quantizes, gates and writes the model (or refuses, writing nothing).
    pub fn quantize(&self) -> Result<Quantized> {
        let model = ModelDir::open(&self.evaluate.model)?;
        self.check(&model)?;
        let rows = self.calibration_texts(&model)?;
        let mut bare: Pretrained<Bare<false>> = pretrained::load(&model, &LoadOptions::default())?;
        let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        let pairs: Option<Vec<&str>> = rows.iter().map(|(_, p)| p.as_deref()).collect();
        let max_len = model.max_len(self.evaluate.flags.max_len)?;
        let items = tokenize(&bare.tokenizer, &texts, pairs.as_deref(), max_len)?.items;
        let layers = Layers::of(&model, &mut bare)?;
        let errors = layers.errors(&mut bare, &items, self.evaluate.batch_size)?;
        let mut ranked: Vec<usize> = (0..errors.len()).collect();
        ranked.sort_by(|&a, &b| errors[b].total_cmp(&errors[a]));

        let (metric, reference, tries) = self.gate(&model, &layers, &ranked)?;
        let last = tries.last().expect("at least one candidate");
        let lost = drop(last.task, &metric, reference, last.value);
        if lost > self.max_drop {
            refuse!(
                "refused: {metric} {reference:.4} in float32, {:.4} in int8 with {} of {} layers kept in float32: a drop of {lost:.2} points, over --max-drop {}",
                last.value,
                last.fp32_layers,
                layers.names.len(),
                self.max_drop
            );
        }
        let kept: Vec<usize> = ranked[..last.fp32_layers].to_vec();
        let speed = self.speed(&layers, &mut bare, &items, &kept)?;
        if self.min_speedup > 0.0 && speed.speedup < self.min_speedup {
            refuse!(
                "refused: int8 runs {:.1} examples/s and float32 {:.1} on this CPU ({:.2}x), under --min-speedup {}",
                speed.int8,
                speed.fp32,
                speed.speedup,
                self.min_speedup
            );
        }
        let report = self.report(&model, &layers, &errors, &kept, (&metric, reference, &tries), &speed);
        layers.write(&model, &kept, &self.out, report.clone())?;
        atomic_write(&self.out.join("quantization.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
        let summary = summary(&self.out, &metric, reference, last, layers.names.len(), &speed);
        Ok(Quantized { report, summary })
    }

    /// The metric, its float32 value, and each candidate evaluated: 0, 1, 2, 4, ... of the
    /// layers `ranked` first kept in float32, until one is within --max-drop.
    fn gate(&self, model: &ModelDir, layers: &Layers, ranked: &[usize]) -> Result<(String, f64, Vec<Try>)> {
        // Every evaluation on the CPU, where the int8 candidates run.
        let mut on_cpu = self.evaluate.clone();
        on_cpu.run.device = "cpu".into();
        let (_, task, fp32) = on_cpu.evaluate()?;
        let metric = self.metric.clone().unwrap_or_else(|| default_metric(task, &fp32.metrics).to_string());
        let Some(&reference) = fp32.metrics.get(&metric) else {
            let known = fp32.metrics.keys().cloned().collect::<Vec<_>>().join(", ");
            refuse!("--metric {metric}: the {task} evaluation has {known}")
        };
        let staging = tempfile::tempdir().context("creating a directory for the candidates")?;
        let mut tries = Vec::new();
        let max_fp32 = self.max_fp32_layers.unwrap_or(layers.names.len() - 1).min(layers.names.len());
        for fp32_layers in fallback_steps(max_fp32) {
            let dir = staging.path().join(format!("fp32-{fp32_layers}"));
            layers.write(model, &ranked[..fp32_layers], &dir, json!({}))?;
            let candidate = Evaluate { model: dir.display().to_string(), ..on_cpu.clone() };
            let value = candidate.evaluate()?.2.metrics[&metric];
            tries.push(Try { fp32_layers, value, task });
            if drop(task, &metric, reference, value) <= self.max_drop {
                break;
            }
        }
        Ok((metric, reference, tries))
    }

    /// Refusals that need no computation.
    fn check(&self, model: &ModelDir) -> Result<()> {
        if is_int8(&model.config)? {
            refuse!("--model {}: already an int8 model", model.dir.display());
        }
        if self.evaluate.run.device.starts_with("cuda") {
            refuse!("--device: int8 models run on the CPU (libtorch's quantized kernels)");
        }
        if self.out.canonicalize().ok().is_some_and(|o| model.dir.canonicalize().ok() == Some(o)) {
            refuse!("--out {}: the float model's own directory", self.out.display());
        }
        if self.max_drop < 0.0 {
            refuse!("--max-drop {}: must be 0 or more", self.max_drop);
        }
        Ok(())
    }

    /// The first --calibration-size texts (and second texts, --text-pair-column) of
    /// --calibration, else of --data (a tagger's sentences, their words joined by spaces;
    /// other tasks' labelled rows).
    fn calibration_texts(&self, model: &ModelDir) -> Result<Vec<(String, Option<String>)>> {
        let flags = &self.evaluate.flags;
        let texts: Vec<(String, Option<String>)> = match (&self.calibration, &self.evaluate.data) {
            (Some(path), _) => {
                let (text, pair) = (flags.text_column.clone(), flags.text_pair_column.clone());
                let columns = Columns { text, pair, label: LabelSource::None };
                let examples = read_examples(path, Some(Format::detect(path)?), &columns, OnBadRow::Error)?.examples;
                examples.into_iter().map(|e| (e.text, e.pair)).collect()
            }
            (None, Some(data)) if TaskKind::of(&model.config) == TaskKind::TokenClassification => {
                let (sentences, _) = read_tagged(data, self.evaluate.tags.column(), false, flags.on_bad_row)?;
                sentences.into_iter().map(|s| (s.words.join(" "), None)).collect()
            }
            (None, Some(data)) => {
                let read = flags.read(data, false).with_context(|| {
                    format!("reading calibration texts from {} (name --calibration FILE for this data)", data.display())
                })?;
                read.examples.into_iter().map(|e| (e.text, e.pair)).collect()
            }
            (None, None) => refuse!("--calibration FILE: texts to measure {} on", model.dir.display()),
        };
        Ok(texts.into_iter().take(self.calibration_size).collect())
    }

    /// Examples/s of float32 and of int8 (`kept` layers in float32) on the calibration
    /// batches: two rounds each, interleaved, the better of each.
    fn speed(
        &self,
        layers: &Layers,
        bare: &mut Pretrained<Bare<false>>,
        items: &[Encoded],
        kept: &[usize],
    ) -> Result<Speed> {
        let int8: Vec<Option<Arc<Int8Linear>>> = layers
            .weights
            .iter()
            .zip(bare.model.encoder_mut().linears())
            .enumerate()
            .map(|(i, (w, l))| {
                Ok((!kept.contains(&i)).then(|| Int8Linear::new(w, l.bias.as_ref())).transpose()?.map(Arc::new))
            })
            .collect::<Result<_>>()?;
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..2 {
            layers.set(bare, |_| None);
            best.0 = best.0.min(forward_seconds(bare, items, self.evaluate.batch_size));
            layers.set(bare, |i| int8[i].clone());
            best.1 = best.1.min(forward_seconds(bare, items, self.evaluate.batch_size));
        }
        let n = items.len() as f64;
        Ok(Speed { fp32: n / best.0, int8: n / best.1, speedup: best.0 / best.1 })
    }

    fn report(
        &self,
        model: &ModelDir,
        layers: &Layers,
        errors: &[f64],
        kept: &[usize],
        (metric, reference, tries): (&str, f64, &[Try]),
        speed: &Speed,
    ) -> Value {
        let last = tries.last().expect("at least one candidate");
        json!({
            "quant_method": QUANT_METHOD,
            "mode": "dynamic",
            "weights": "int8, a scale per output row (symmetric, zero point 0)",
            "activations": "quantized at every call from their range, 7 bits (PyTorch's reduce_range on x86)",
            "from": model.dir,
            "layers": layers.names.len(),
            "fp32_layers": kept.iter().map(|&i| &layers.names[i]).collect::<Vec<_>>(),
            "layer_errors": layers.names.iter().zip(errors).map(|(n, e)| (n.clone(), json!(e))).collect::<serde_json::Map<_, _>>(),
            "gate": {"metric": metric, "fp32": reference, "int8": last.value, "max_drop": self.max_drop,
                "data": self.evaluate.data, "tries": tries.iter().map(|t| json!({"fp32_layers": t.fp32_layers, "value": t.value})).collect::<Vec<_>>()},
            "speed": {"fp32_examples_per_s": speed.fp32, "int8_examples_per_s": speed.int8, "speedup": speed.speedup,
                "min_speedup": self.min_speedup, "cpu": crate::device::cpu_features()},
        })
    }
}

struct Speed {
    fp32: f64,
    int8: f64,
    speedup: f64,
}

/// The encoder's linear layers: their names and int8 weights, in `Encoder::linears` order, and
/// the float model's tensors (read once, for every candidate written).
struct Layers {
    names: Vec<String>,
    weights: Vec<Int8Weight>,
    tensors: BTreeMap<String, Tensor>,
}

impl Layers {
    fn of(model: &ModelDir, bare: &mut Pretrained<Bare<false>>) -> Result<Layers> {
        let (names, weights) = int8_weights(&bare.vs, bare.model.encoder_mut()).into_iter().unzip();
        Ok(Layers { names, weights, tensors: read_weights(&model.dir, model.family)? })
    }

    /// Gives layer `i` the int8 form `int8(i)` (None: float32).
    fn set(&self, bare: &mut Pretrained<Bare<false>>, int8: impl Fn(usize) -> Option<Arc<Int8Linear>>) {
        for (i, linear) in bare.model.encoder_mut().linears().into_iter().enumerate() {
            linear.set_int8(int8(i));
        }
    }

    /// Each layer's relative error (int8 against float32 output, same input) on `items`.
    fn errors(&self, bare: &mut Pretrained<Bare<false>>, items: &[Encoded], batch_size: usize) -> Result<Vec<f64>> {
        let measuring: Vec<Arc<Int8Linear>> = self
            .weights
            .iter()
            .zip(bare.model.encoder_mut().linears())
            .map(|(w, l)| Int8Linear::measuring(w, l.bias.as_ref()).map(Arc::new))
            .collect::<Result<_>>()?;
        self.set(bare, |i| Some(measuring[i].clone()));
        forward_seconds(bare, items, batch_size);
        self.set(bare, |_| None);
        Ok(measuring.iter().map(|m| m.relative_error()).collect())
    }

    /// Writes the model with every layer but `kept` in int8, `report` as its
    /// `quantization_config` (beside `quant_method`).
    fn write(&self, model: &ModelDir, kept: &[usize], out: &Path, report: Value) -> Result<()> {
        let int8: BTreeMap<String, Int8Weight> = (0..self.names.len())
            .filter(|i| !kept.contains(i))
            .map(|i| (self.names[i].clone(), self.weights[i].shallow_clone()))
            .collect();
        let float = self.tensors.iter().map(|(name, t)| (name.clone(), t.shallow_clone())).collect();
        let tensors = int8_tensors(float, &int8);
        let mut config: ModelConfig = model.config.clone();
        let mut q = if report.is_object() { report } else { json!({}) };
        q["quant_method"] = json!(QUANT_METHOD);
        config.set("quantization_config", q);
        let architecture = config.architectures().first().map(|a| a.to_string()).unwrap_or_default();
        pretrained::save_pretrained(out, &tensors, &config, &architecture, &model.dir)?;
        copy_companions(&model.dir, out)
    }
}

/// Runs the encoder over `items` in batches; seconds taken.
fn forward_seconds(bare: &Pretrained<Bare<false>>, items: &[Encoded], batch_size: usize) -> f64 {
    let lengths: Vec<usize> = items.iter().map(Encoded::len).collect();
    let start = Instant::now();
    for batch in eval_batches(&lengths, batch_size) {
        let refs: Vec<&Encoded> = batch.iter().map(|&i| &items[i]).collect();
        let inputs = bare.collator().collate(&refs);
        tch::no_grad(|| bare.model.encoder().forward(&inputs, ForwardOptions::eval()));
    }
    start.elapsed().as_secs_f64()
}

/// How many layers stay in float32 at each try: 0, 1, 2, 4, ... up to `max`.
fn fallback_steps(max: usize) -> Vec<usize> {
    let mut steps = vec![0];
    let mut k = 1;
    while k < max {
        steps.push(k);
        k *= 2;
    }
    if max > 0 {
        steps.push(max);
    }
    steps
}

/// The metric the gate reads for a task, as training picks its best model.
fn default_metric(task: &str, metrics: &BTreeMap<String, f64>) -> &'static str {
    match task {
        "multi-label" => "micro_f1",
        "regression" => "pearson",
        "rerank" => "ndcg_at_10",
        "token-classification" => "f1",
        "question-answering" if metrics.contains_key("aupr") => "aupr",
        "question-answering" => "f1",
        "embedding" if metrics.contains_key("spearman") => "spearman",
        "embedding" => "ndcg_at_10",
        "masked-lm" => "eval_loss",
        _ => "accuracy",
    }
}

/// How much worse `int8` is than `fp32`, in points: metrics in [0, 1] times 100 (SQuAD's exact
/// and F1 are percentages already), losses in their own units and the other way round.
fn drop(task: &str, metric: &str, fp32: f64, int8: f64) -> f64 {
    if !TrainConfig::greater_is_better(metric) {
        return int8 - fp32;
    }
    let percent =
        task == "question-answering" && ["exact", "f1", "best_f1", "has_ans_f1", "no_ans_f1"].contains(&metric);
    (fp32 - int8) * if percent { 1.0 } else { 100.0 }
}

/// Copies what a model directory holds besides its weights, config, tokenizer and training
/// run (model card, thresholds, sentence-transformers' modules) into `out`.
fn copy_companions(from: &Path, out: &Path) -> Result<()> {
    const LEFT: [&str; 9] = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "model.safetensors.index.json",
        "quantization.json",
        "log.jsonl",
        "trainer_state.json",
        "curves.png",
        "curves.svg",
    ];
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let target = out.join(&name);
        if LEFT.iter().any(|w| name == *w) || name.to_string_lossy().starts_with("events.out") || target.exists() {
            continue;
        }
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), &target).with_context(|| format!("copying {}", entry.path().display()))?;
        } else if entry.file_type()?.is_dir()
            && name.to_string_lossy().split_once('_').is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        {
            // sentence-transformers' modules (`1_Pooling`, `2_Normalize`).
            std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            for file in std::fs::read_dir(entry.path())? {
                let file = file?;
                std::fs::copy(file.path(), target.join(file.file_name()))
                    .with_context(|| format!("copying {}", file.path().display()))?;
            }
        }
    }
    Ok(())
}

fn summary(out: &Path, metric: &str, reference: f64, last: &Try, layers: usize, speed: &Speed) -> String {
    format!(
        "{metric}: {reference:.4} float32, {:.4} int8 ({} of {layers} layers int8)\nspeed on this CPU: {:.1} examples/s float32, {:.1} int8 ({:.2}x)\nwrote {}",
        last.value,
        layers - last.fp32_layers,
        speed.fp32,
        speed.int8,
        speed.speedup,
        out.display()
    )
}
