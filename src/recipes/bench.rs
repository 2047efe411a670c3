//! `bertkit bench`: times training or inference steps of a model on synthetic full-length
//! batches, through the same code the real commands run (collation, masking, forward/backward,
//! clipping, AdamW). Prints one JSON line; `bench/run.py` runs it beside the PyTorch reference.

use std::time::Instant;

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tch::Device;

use crate::data::corpus::{Chunking, CorpusSpec, TokenCache};
use crate::data::masking::Masker;
use crate::data::token_classification::TagWindow;
use crate::data::{Encoded, Sampling, Targets};
use crate::device::{Autocast, DeviceFlags, Precision, gpu_peak_memory};
use crate::distributed::Spread;
use crate::encoder::Unpadding;
use crate::predict::{Blocks, MaskedLanguageModel};
use crate::predict::{Classifier, LabelledSet};
use crate::predict::{TaggedSet, Tagger};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::task::{IGNORE_INDEX, SIGMOID, TaskKind, set_cross_encoder};
use crate::tokenizer::Tokenizer;
use crate::train::Objective;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::trainer::{accumulate_gradients, clip_and_read, sorted_params};
use crate::train::{MaskedLanguageModelling, SequenceClassification, TokenClassification};
use crate::values::{positive, sequence_length};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// A fine-tuning step: sequence classification, backward, clipping, AdamW.
    Finetune,
    /// A masked-language-model step (15% masked), backward, clipping, AdamW.
    Mlm,
    /// A forward pass of the classifier without gradients, with class probabilities.
    Inference,
}

#[derive(clap::Args)]
pub struct Bench {
    /// Model directory or hub id (its weights are used as they are; heads are created if absent).
    #[arg(long)]
    pub model: String,
    #[arg(long, value_enum)]
    pub workload: Workload,
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,
    /// Tokens per example, `[CLS]` and `[SEP]` included (every example is this long, unless
    /// `--min-len` is given).
    #[arg(long, default_value_t = 128, value_parser = sequence_length)]
    pub seq_len: usize,
    /// Examples of random lengths, uniform from this many tokens to `--seq-len`: batches padded
    /// as real data is (default: every example `--seq-len` long).
    #[arg(long, value_parser = sequence_length)]
    pub min_len: Option<usize>,
    /// Run padded batches packed (`auto`, `always`) or padded (`never`).
    #[arg(long, value_enum, default_value = "auto")]
    pub unpad: Unpadding,
    /// Timed steps.
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub steps: usize,
    /// Untimed steps first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// fp32 (the default here, as the benchmark's reference runs), bf16 autocast, or auto.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// Recompute layer activations in backward instead of keeping them (training workloads).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Also sum each libtorch operator's own time over the timed steps (libtorch's
    /// RecordFunction hook, as torch.profiler uses; it slows every operator call a little) and
    /// report where the time goes: the largest operators and the matrix products' share.
    #[arg(long)]
    pub profile: bool,
    /// The head and loss of the finetune workload (random targets of that kind).
    #[arg(long, value_enum, default_value = "classification")]
    pub task: TaskKind,
    #[command(flatten)]
    pub run: DeviceFlags,
}

impl Bench {
    /// Runs the job as `bertkit bench` does, its report on standard output.
    pub fn run(self) -> Result<()> {
        let args = self;
        let device = args.run.setup()?;
        let model = ModelDir::open(&args.model)?;
        model.check_max_len("seq-len", args.seq_len)?;
        let autocast = Autocast::new(args.precision, device);
        let total = args.warmup + args.steps;
        let batches: Vec<Vec<usize>> =
            (0..total).map(|s| (s * args.batch_size..(s + 1) * args.batch_size).collect()).collect();
        let seconds = Vec::with_capacity(args.steps);
        let mut watch = Stopwatch { warmup: args.warmup, device, seconds, profile: args.profile };
        if args.min_len.is_some_and(|min| min > args.seq_len) {
            crate::error::refuse!("--min-len {} is longer than --seq-len {}", args.min_len.unwrap_or(0), args.seq_len);
        }
        if args.min_len.is_some() && args.workload == Workload::Mlm {
            crate::error::refuse!(
                "--min-len: MLM trains on full blocks of --seq-len tokens (group_texts), never padded"
            );
        }
        let options = LoadOptions {
            device,
            autocast,
            gradient_checkpointing: args.gradient_checkpointing,
            new_head: false,
            unpadding: args.unpad,
        };
        // Every example's length (MLM's blocks are all --seq-len: --min-len is refused there).
        let lengths = example_lengths(args.batch_size * total, args.min_len, args.seq_len);
        match args.workload {
            Workload::Finetune if args.task == TaskKind::TokenClassification => {
                tagger_steps(&args, &model, &options, &batches, &lengths, &mut watch)?
            }
            Workload::Finetune | Workload::Inference => {
                classifier_steps(&args, &model, &options, &batches, &lengths, &mut watch)?
            }
            Workload::Mlm => mlm_steps(&args, &model, &options, &batches, &mut watch)?,
        }

        let mut seconds = watch.seconds;
        let profile = match args.profile {
            true => Some(profile_report(crate::ffi::profile_stop()?, seconds.iter().sum())),
            false => None,
        };
        seconds.sort_by(f64::total_cmp);
        let median = seconds.get(seconds.len() / 2).copied().unwrap_or(f64::NAN);
        // Real tokens per timed step, on average.
        let timed = &batches[args.warmup..];
        let real: usize = timed.iter().flatten().map(|&i| lengths[i]).sum();
        let tokens = real as f64 / args.steps as f64;
        let padding = padding_share(&lengths, timed);
        println!(
            "{}",
            json!({
                "tool": "bertkit",
                "workload": format!("{:?}", args.workload).to_lowercase(),
                "task": args.task.name(),
                "precision": format!("{:?}", autocast.precision()).to_lowercase(),
                "device": format!("{device:?}"),
                "threads": tch::get_num_threads(),
                "batch_size": args.batch_size,
                "seq_len": args.seq_len,
                "min_len": args.min_len.unwrap_or(args.seq_len),
                "padding": padding,
                "unpad": format!("{:?}", args.unpad).to_lowercase(),
                "gradient_checkpointing": args.gradient_checkpointing,
                "step_seconds": seconds,
                "median_step_seconds": median,
                "tokens_per_s": tokens / median,
                "examples_per_s": args.batch_size as f64 / median,
                "gpu_peak_memory": gpu_peak_memory(device),
                "profile": profile,
            })
        );
        Ok(())
    }
}

/// Fine-tuning or inference steps of a classifier on random full-length examples.
fn classifier_steps(
    args: &Bench,
    model: &ModelDir,
    options: &LoadOptions,
    batches: &[Vec<usize>],
    lengths: &[usize],
    watch: &mut Stopwatch,
) -> Result<()> {
    // The checkpoint's own labels (a classifier keeps its head), else config.json's default;
    // one output for regression (a fresh head for a task the checkpoint's head is not).
    let mut model = model.clone();
    let labels = match args.task {
        TaskKind::Regression | TaskKind::Rerank => vec!["score".into()],
        _ => model.config.label_names(),
    };
    model.config.set_labels(&labels);
    if let Some(problem_type) = args.task.problem_type() {
        model.config.set("problem_type", problem_type.into());
    }
    if args.task == TaskKind::Rerank {
        set_cross_encoder(&mut model.config, SIGMOID);
    }
    let new_head = args.task != TaskKind::Classification;
    let classifier: Classifier = pretrained::load(&model, &LoadOptions { new_head, ..*options })?;
    let n = lengths.len();
    let items = random_examples(&classifier.tokenizer, lengths);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let k = labels.len();
    let targets = match args.task {
        TaskKind::MultiLabel => {
            Targets::Sets((0..n).map(|_| (0..k).map(|_| rng.random_range(0..2) as f32).collect()).collect())
        }
        TaskKind::Regression => Targets::Scores((0..n).map(|_| rng.random_range(0.0..5.0)).collect()),
        TaskKind::Rerank => Targets::Relevance {
            relevance: (0..n).map(|_| rng.random_range(0..2) as f32).collect(),
            query_of: (0..n).map(|i| i / 8).collect(),
        },
        _ => Targets::Classes((0..n).map(|_| rng.random_range(0..k as i64)).collect()),
    };
    let set = LabelledSet::new(items, targets);
    if args.workload == Workload::Inference {
        for (step, batch) in batches.iter().enumerate() {
            let items: Vec<Encoded> = batch.iter().map(|&i| set.items[i].clone()).collect();
            watch.time(step, || classifier.logits(&items, args.batch_size, Spread::Alone).map(|_| ()))?;
        }
        return Ok(());
    }
    let (batch_size, loss_weights) = (args.batch_size, None);
    let pool = Default::default();
    let task = SequenceClassification {
        classifier,
        train: set,
        eval: None,
        batch_size,
        sampling: Sampling::Random,
        loss_weights,
        pool,
        lists: None,
    };
    train_steps(&task, batches, options.autocast, watch)
}

/// Token-classification steps: a tag for every token but the special ones (nine tags, as
/// CoNLL-2003's).
fn tagger_steps(
    args: &Bench,
    model: &ModelDir,
    options: &LoadOptions,
    batches: &[Vec<usize>],
    lengths: &[usize],
    watch: &mut Stopwatch,
) -> Result<()> {
    let mut model = model.clone();
    model.config.set_labels(&(0..9).map(|i| format!("TAG_{i}")).collect::<Vec<_>>());
    let tagger: Tagger = pretrained::load(&model, &LoadOptions { new_head: true, ..*options })?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut set = TaggedSet { windows: vec![], labels: vec![], sentence_words: vec![], gold: None };
    for (i, encoded) in random_examples(&tagger.tokenizer, lengths).into_iter().enumerate() {
        let len = encoded.len();
        let inside = |p: usize| p > 0 && p + 1 < len;
        set.labels.push((0..len).map(|p| if inside(p) { rng.random_range(0..9) } else { IGNORE_INDEX }).collect());
        let word_ids = (0..len).map(|p| inside(p).then_some(p)).collect();
        set.windows.push(TagWindow { encoded, sentence: i, word_ids, predicts: vec![] });
        set.sentence_words.push(len);
    }
    let task =
        TokenClassification { tagger, train: set, eval: None, batch_size: args.batch_size, sampling: Sampling::Random };
    train_steps(&task, batches, options.autocast, watch)
}

/// MLM steps on blocks of a random-word corpus, masked as in training.
fn mlm_steps(
    args: &Bench,
    model: &ModelDir,
    options: &LoadOptions,
    batches: &[Vec<usize>],
    watch: &mut Stopwatch,
) -> Result<()> {
    let mlm: MaskedLanguageModel = pretrained::load(model, options)?;
    let n = args.batch_size * batches.len();
    let tmp = tempfile::tempdir()?;
    let corpus = tmp.path().join("corpus.txt");
    std::fs::write(&corpus, random_text(&mlm.tokenizer, n * args.seq_len))?;
    let spec = CorpusSpec {
        paths: vec![corpus],
        format: None,
        chunking: Chunking::Group,
        max_len: args.seq_len,
        text_field: "text".into(),
        dedupe: false,
    };
    let cache = TokenCache::open_or_build(&tmp.path().join("cache"), &spec, &mlm.tokenizer, &model.dir)?;
    if cache.len() < n {
        bail!("the synthetic corpus made {} blocks, {n} needed", cache.len());
    }
    let train = Blocks { cache: &cache, indices: (0..n).collect() };
    let masker = Masker::new(&mlm.tokenizer, 0.15, false);
    let task = MaskedLanguageModelling {
        mlm,
        masker,
        train,
        eval: None,
        batch_size: args.batch_size,
        sampling: Sampling::Random,
    };
    train_steps(&task, batches, options.autocast, watch)
}

/// Times steps, leaving out the warm-up ones; waits for the GPU before reading the clock.
struct Stopwatch {
    warmup: usize,
    device: Device,
    seconds: Vec<f64>,
    /// Sum the operators' times from the first timed step on (`--profile`).
    profile: bool,
}

impl Stopwatch {
    fn time(&mut self, step: usize, f: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.profile && step == self.warmup {
            crate::ffi::profile_start()?;
        }
        let start = Instant::now();
        f()?;
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
        if step >= self.warmup {
            self.seconds.push(start.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

/// What the trainer does per step, minus logging and checkpoints.
fn train_steps<T: Objective>(
    task: &T,
    batches: &[Vec<usize>],
    autocast: Autocast,
    watch: &mut Stopwatch,
) -> Result<()> {
    let params = sorted_params(task.var_store());
    let trainable: Vec<_> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut opt = AdamW::new(params, AdamWConfig::default());
    for (step, batch) in batches.iter().enumerate() {
        watch.time(step, || {
            let stats = accumulate_gradients(task, std::slice::from_ref(batch), 42, step, autocast, 1.0, None)?;
            clip_and_read(&stats, &trainable, 1.0);
            opt.step(5e-5)?;
            opt.zero_grad();
            Ok(())
        })?;
    }
    Ok(())
}

/// Words of the vocabulary (no pieces, no specials) in random order.
fn vocabulary_words(tokenizer: &Tokenizer) -> Vec<String> {
    (0..tokenizer.vocab_size() as u32)
        .filter(|&id| !tokenizer.is_special(id))
        .filter_map(|id| tokenizer.id_to_token(id))
        .filter(|t| t.chars().all(|c| c.is_ascii_lowercase()))
        .collect()
}

/// `[CLS] random words [SEP]` examples of these lengths.
fn random_examples(tokenizer: &Tokenizer, lengths: &[usize]) -> Vec<Encoded> {
    let words: Vec<u32> = vocabulary_words(tokenizer).iter().filter_map(|w| tokenizer.token_to_id(w)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (lengths.iter())
        .map(|&len| {
            let mut ids = vec![tokenizer.cls_id];
            ids.extend((0..len - 2).map(|_| words[rng.random_range(0..words.len())]));
            ids.push(tokenizer.sep_id);
            Encoded { type_ids: vec![0; len], ids }
        })
        .collect()
}

/// The examples' lengths: all `len`, or drawn uniformly from `min_len..=len`.
fn example_lengths(n: usize, min_len: Option<usize>, len: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    (0..n).map(|_| min_len.map_or(len, |min| rng.random_range(min..=len))).collect()
}

/// The share of the batches' positions that are padding (each batch padded to its longest).
fn padding_share(lengths: &[usize], batches: &[Vec<usize>]) -> f64 {
    let (mut real, mut padded) = (0, 0);
    for batch in batches {
        let longest = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
        real += batch.iter().map(|&i| lengths[i]).sum::<usize>();
        padded += longest * batch.len();
    }
    1.0 - real as f64 / padded.max(1) as f64
}

/// About `tokens` tokens of random vocabulary words, in paragraphs.
fn random_text(tokenizer: &Tokenizer, tokens: usize) -> String {
    let words = vocabulary_words(tokenizer);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut text = String::new();
    for i in 0..tokens {
        text.push_str(&words[rng.random_range(0..words.len())]);
        text.push(if i % 100 == 99 { '\n' } else { ' ' });
    }
    text
}

/// `--profile`'s report from each operator's (name, self seconds, calls) over the timed steps'
/// `wall` seconds: the twelve largest, and the share of the operators' time in matrix products
/// (float GEMMs and batched ones, int8 linear layers).
fn profile_report(mut ops: Vec<(String, f64, i64)>, wall: f64) -> serde_json::Value {
    const MATMUL: [&str; 5] = ["aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "quantized::linear_dynamic"];
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = ops.iter().map(|o| o.1).sum();
    let matmul: f64 = ops.iter().filter(|o| MATMUL.contains(&o.0.as_str())).map(|o| o.1).sum();
    let top: Vec<_> = ops
        .iter()
        .take(12)
        .map(|(name, s, calls)| json!({"op": name, "seconds": s, "share": s / total, "calls": calls}))
        .collect();
    json!({"wall_seconds": wall, "op_seconds": total, "matmul_share": matmul / total, "top": top})
}
