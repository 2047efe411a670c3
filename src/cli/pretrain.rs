use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::checkpoint::Checkpoint;
use crate::data::corpus::{Chunking, CorpusSpec, TokenCache};
use crate::device::{Autocast, parse_device, set_threads};
use crate::train::pretrain::{Blocks, MaskedLanguageModel, Pretrain};
use crate::train::trainer::prepare_output_dir;
use crate::train::{TrainConfig, train};

#[derive(clap::Args)]
pub struct CorpusFlags {
    /// Block length in tokens, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    #[arg(long, value_enum, default_value = "group")]
    pub chunking: Chunking,
    /// JSONL key or Parquet column with the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Drop repeated paragraphs (boilerplate such as licence texts).
    #[arg(long)]
    pub dedupe: bool,
}

impl CorpusFlags {
    pub fn spec(&self, paths: &[PathBuf]) -> CorpusSpec {
        CorpusSpec {
            paths: paths.to_vec(),
            chunking: self.chunking,
            max_len: self.max_len,
            text_field: self.text_field.clone(),
            dedupe: self.dedupe,
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Model to continue from: a directory or hub id (an MLM head is created if it has none).
    #[arg(long)]
    model: String,
    /// Unlabelled text: files (.txt, .jsonl, .parquet, optionally .gz) or directories of them.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Held-out text to evaluate on.
    #[arg(long, num_args = 1.., conflicts_with = "eval_split")]
    eval_corpus: Vec<PathBuf>,
    /// Hold out this fraction of the corpus blocks for evaluation.
    #[arg(long, default_value_t = 0.05)]
    eval_split: f64,
    /// Fraction of tokens chosen for prediction.
    #[arg(long, default_value_t = 0.15)]
    mlm_probability: f64,
    /// Choose whole words (a token and its ## pieces) rather than single tokens.
    #[arg(long)]
    whole_word_masking: bool,
    #[command(flatten)]
    corpus_flags: CorpusFlags,
    #[command(flatten)]
    cfg: TrainConfig,
}

/// Splits block indices into (train, held-out) by a seeded hash: stable, and the same blocks
/// are held out whatever the order of training.
pub fn split_blocks(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let threshold = (fraction * u32::MAX as f64) as u64;
    (0..n).partition(|&i| {
        let mut x = (i as u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 31;
        (x & 0xffff_ffff) >= threshold
    })
}

pub fn run(args: Args) -> Result<i32> {
    let cfg = args.cfg;
    set_threads(cfg.threads);
    let device = parse_device(&cfg.device)?;
    if !(0.0..1.0).contains(&args.mlm_probability) || args.mlm_probability == 0.0 {
        bail!("--mlm-probability must be in (0, 1), got {}", args.mlm_probability);
    }
    tch::manual_seed(cfg.seed as i64);
    let source = cfg.resume_from.as_ref().map_or(args.model.clone(), |p| p.display().to_string());
    let mut ckpt = Checkpoint::open(&source)?;
    if let Some(p) = cfg.dropout {
        ckpt.config.hidden_dropout_prob = p;
        ckpt.config.attention_probs_dropout_prob = p;
    }
    if args.corpus_flags.max_len as i64 > ckpt.config.max_position_embeddings {
        bail!(
            "--max-len {} exceeds the model's {} positions",
            args.corpus_flags.max_len,
            ckpt.config.max_position_embeddings
        );
    }
    let autocast = Autocast::new(cfg.precision, device);
    let mut mlm = MaskedLanguageModel::load(&ckpt, args.mlm_probability, args.whole_word_masking, device, autocast)?;
    mlm.model.bert.gradient_checkpointing = cfg.gradient_checkpointing;

    // The corpus is checked (and tokenised) before the output directory is touched; the cache
    // lives beside the output so a rerun or a resume finds it.
    let cache_root = cfg.output.with_extension("token-cache");
    let train_cache = TokenCache::open_or_build(
        &cache_root.join("train"),
        &args.corpus_flags.spec(&args.corpus),
        &mlm.tokenizer,
        &ckpt.dir,
    )?;
    let eval_cache = if args.eval_corpus.is_empty() {
        None
    } else {
        Some(TokenCache::open_or_build(
            &cache_root.join("eval"),
            &args.corpus_flags.spec(&args.eval_corpus),
            &mlm.tokenizer,
            &ckpt.dir,
        )?)
    };
    let (train_blocks, eval_blocks) = match &eval_cache {
        Some(cache) => (
            Blocks { cache: &train_cache, indices: (0..train_cache.len()).collect() },
            Some(Blocks { cache, indices: (0..cache.len()).collect() }),
        ),
        None if args.eval_split > 0.0 => {
            let (t, e) = split_blocks(train_cache.len(), args.eval_split, cfg.seed);
            if t.is_empty() || e.is_empty() {
                bail!("the corpus has {} blocks: too few to hold out {} of them", train_cache.len(), args.eval_split);
            }
            (Blocks { cache: &train_cache, indices: t }, Some(Blocks { cache: &train_cache, indices: e }))
        }
        None => (Blocks { cache: &train_cache, indices: (0..train_cache.len()).collect() }, None),
    };
    tracing::info!(
        "{} training blocks, {} held out | device {device:?} | precision {:?}",
        train_blocks.indices.len(),
        eval_blocks.as_ref().map_or(0, |b| b.indices.len()),
        cfg.precision
    );
    prepare_output_dir(&cfg)?;

    let num_batches = train_blocks.indices.len().div_ceil(cfg.batch_size);
    let task = Pretrain {
        mlm,
        train: train_blocks,
        eval: eval_blocks,
        batch_size: cfg.batch_size,
        bucketing: !cfg.no_bucketing,
    };
    let outcome = train(&task, &cfg, autocast, num_batches)?;
    Ok(super::conclude(&outcome, &cfg.output))
}
