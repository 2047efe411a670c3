//! `bertkit bench`: times training or inference steps of a model on synthetic full-length
//! batches, through the same code the real commands run (collation, masking, forward/backward,
//! clipping, AdamW). Prints one JSON line; `bench/run.py` runs it beside the PyTorch reference.

use std::time::Instant;

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tch::Device;

use super::run_flags::RunFlags;
use crate::checkpoint::Checkpoint;
use crate::data::Encoded;
use crate::data::corpus::{Chunking, CorpusSpec, TokenCache};
use crate::device::{Autocast, gpu_peak_memory};
use crate::tokenizer::BertTokenizer;
use crate::train::classify::{Classifier, FineTune, LabelledSet};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::pretrain::{Blocks, MaskedLanguageModel, Pretrain};
use crate::train::trainer::{accumulate_gradients, clip_and_read};
use crate::train::{Precision, Task};

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
pub struct Args {
    /// Model directory or hub id (its weights are used as they are; heads are created if absent).
    #[arg(long)]
    model: String,
    #[arg(long, value_enum)]
    workload: Workload,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Tokens per example, [CLS] and [SEP] included (every example is this long).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, value_enum, default_value = "fp32")]
    precision: Precision,
    /// Recompute layer activations in backward instead of keeping them (training workloads).
    #[arg(long)]
    gradient_checkpointing: bool,
    #[command(flatten)]
    run: RunFlags,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.run.setup()?;
    let autocast = Autocast::new(args.precision, device);
    let ckpt = Checkpoint::open(&args.model)?;
    if args.seq_len < 3 || args.seq_len as i64 > ckpt.config.max_position_embeddings {
        bail!("--seq-len must be between 3 and the model's {} positions", ckpt.config.max_position_embeddings);
    }
    let total = args.warmup + args.steps;
    let n = args.batch_size * total;
    let batches: Vec<Vec<usize>> =
        (0..total).map(|s| (s * args.batch_size..(s + 1) * args.batch_size).collect()).collect();
    let mut watch = Stopwatch { warmup: args.warmup, device, seconds: Vec::with_capacity(args.steps) };

    match args.workload {
        Workload::Finetune | Workload::Inference => {
            // The checkpoint's own labels (a classifier keeps its head), else config.json's default.
            let labels = ckpt.config.label_names();
            let mut classifier = Classifier::load(&ckpt, &labels, false, device, autocast)?;
            classifier.model.bert.gradient_checkpointing = args.gradient_checkpointing;
            let items = random_examples(&classifier.tokenizer, n, args.seq_len);
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let classes = labels.len() as i64;
            let set = LabelledSet { items, labels: (0..n).map(|_| rng.random_range(0..classes)).collect() };
            if args.workload == Workload::Inference {
                for (step, batch) in batches.iter().enumerate() {
                    let items: Vec<Encoded> = batch.iter().map(|&i| set.items[i].clone()).collect();
                    watch.time(step, || classifier.predict(&items, None, args.batch_size).map(|_| ()))?;
                }
            } else {
                let task =
                    FineTune { classifier, train: set, eval: None, batch_size: args.batch_size, bucketing: false };
                train_steps(&task, &batches, autocast, &mut watch)?;
            }
        }
        Workload::Mlm => {
            let mut mlm = MaskedLanguageModel::load(&ckpt, 0.15, false, device, autocast)?;
            mlm.model.bert.gradient_checkpointing = args.gradient_checkpointing;
            let tmp = tempfile::tempdir()?;
            let corpus = tmp.path().join("corpus.txt");
            std::fs::write(&corpus, random_text(&mlm.tokenizer, n * args.seq_len))?;
            let spec = CorpusSpec {
                paths: vec![corpus],
                chunking: Chunking::Group,
                max_len: args.seq_len,
                text_field: "text".into(),
                dedupe: false,
            };
            let cache = TokenCache::open_or_build(&tmp.path().join("cache"), &spec, &mlm.tokenizer, &ckpt.dir)?;
            if cache.len() < n {
                bail!("the synthetic corpus made {} blocks, {n} needed", cache.len());
            }
            let train = Blocks { cache: &cache, indices: (0..n).collect() };
            let task = Pretrain { mlm, train, eval: None, batch_size: args.batch_size, bucketing: false };
            train_steps(&task, &batches, autocast, &mut watch)?;
        }
    }

    let mut seconds = watch.seconds;
    seconds.sort_by(f64::total_cmp);
    let median = seconds.get(seconds.len() / 2).copied().unwrap_or(f64::NAN);
    let tokens = (args.batch_size * args.seq_len) as f64;
    println!(
        "{}",
        json!({
            "tool": "bertkit",
            "workload": format!("{:?}", args.workload).to_lowercase(),
            "precision": format!("{:?}", args.precision).to_lowercase(),
            "device": format!("{device:?}"),
            "threads": tch::get_num_threads(),
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "gradient_checkpointing": args.gradient_checkpointing,
            "step_seconds": seconds,
            "median_step_seconds": median,
            "tokens_per_s": tokens / median,
            "examples_per_s": args.batch_size as f64 / median,
            "gpu_peak_memory": gpu_peak_memory(device),
        })
    );
    Ok(())
}

/// Times steps, leaving out the warm-up ones; waits for the GPU before reading the clock.
struct Stopwatch {
    warmup: usize,
    device: Device,
    seconds: Vec<f64>,
}

impl Stopwatch {
    fn time(&mut self, step: usize, f: impl FnOnce() -> Result<()>) -> Result<()> {
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
fn train_steps<T: Task>(task: &T, batches: &[Vec<usize>], autocast: Autocast, watch: &mut Stopwatch) -> Result<()> {
    let mut params: Vec<_> = task.var_store().variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let trainable: Vec<_> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut opt = AdamW::new(params, AdamWConfig::default());
    for (step, batch) in batches.iter().enumerate() {
        watch.time(step, || {
            let stats = accumulate_gradients(task, &[batch], 42, step, autocast)?;
            clip_and_read(&stats, &trainable, 1.0);
            opt.step(5e-5)?;
            opt.zero_grad();
            Ok(())
        })?;
    }
    Ok(())
}

/// Words of the vocabulary (no pieces, no specials) in random order.
fn vocabulary_words(tokenizer: &BertTokenizer) -> Vec<String> {
    (0..tokenizer.vocab_size() as u32)
        .filter(|&id| !tokenizer.is_special(id))
        .filter_map(|id| tokenizer.id_to_token(id))
        .filter(|t| t.chars().all(|c| c.is_ascii_lowercase()))
        .collect()
}

/// `[CLS] random words [SEP]` examples of exactly `len` tokens.
fn random_examples(tokenizer: &BertTokenizer, n: usize, len: usize) -> Vec<Encoded> {
    let words: Vec<u32> = vocabulary_words(tokenizer).iter().filter_map(|w| tokenizer.token_to_id(w)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..n)
        .map(|_| {
            let mut ids = vec![tokenizer.cls_id];
            ids.extend((0..len - 2).map(|_| words[rng.random_range(0..words.len())]));
            ids.push(tokenizer.sep_id);
            Encoded { type_ids: vec![0; len], ids }
        })
        .collect()
}

/// About `tokens` tokens of random vocabulary words, in paragraphs.
fn random_text(tokenizer: &BertTokenizer, tokens: usize) -> String {
    let words = vocabulary_words(tokenizer);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut text = String::new();
    for i in 0..tokens {
        text.push_str(&words[rng.random_range(0..words.len())]);
        text.push(if i % 100 == 99 { '\n' } else { ' ' });
    }
    text
}
