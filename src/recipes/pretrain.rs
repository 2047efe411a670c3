//! Further pretraining: masked-language modelling on unlabelled text (files or directories), with
//! optional vocabulary extension (`--add-vocab`), to a saved MLM model with its model card.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::data::corpus::{Chunking, CorpusFormat, CorpusSpec, TokenCache};
use crate::data::masking::Masker;
use crate::data::vocabulary::{NewWord, WordCounts, most_useful_words};
use crate::predict::{Blocks, MaskedLanguageModel};
use crate::pretrained::extend::{VocabSlots, extend_vocabulary};
use crate::pretrained::{self, ModelDir};
use crate::tokenizer::Tokenizer;
use crate::train::MaskedLanguageModelling;
use crate::train::model_card::{DataFile, ModelCard};
use crate::train::run_dir::RunDir;
use crate::train::{TrainConfig, train};

use super::finetune::Trained;
use super::session;
use crate::values::{fraction, open_fraction, sequence_length};

#[derive(clap::Args, Clone, Debug)]
pub struct CorpusFlags {
    /// Block length in tokens, `[CLS]` and `[SEP]` included.
    #[arg(long, default_value_t = 128, value_parser = sequence_length)]
    pub max_len: usize,
    #[arg(long, value_enum, default_value = "group")]
    pub chunking: Chunking,
    /// JSONL key or Parquet column with the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Drop repeated paragraphs (boilerplate such as licence texts).
    #[arg(long)]
    pub dedupe: bool,
    /// Read every corpus file as this format; by default from the name, and UTF-8 files whose
    /// name says nothing (LICENSE, GPL-2, COPYING) as plain text.
    #[arg(long, value_enum)]
    pub format: Option<CorpusFormat>,
}

impl CorpusFlags {
    pub fn spec(&self, paths: &[PathBuf]) -> CorpusSpec {
        CorpusSpec {
            paths: paths.to_vec(),
            format: self.format,
            chunking: self.chunking,
            max_len: self.max_len,
            text_field: self.text_field.clone(),
            dedupe: self.dedupe,
        }
    }
}

/// A further-pretraining run. Its fields are `bertkit pretrain`'s flags; [`Pretrain::new`] gives
/// their defaults in code.
///
/// ```
/// use bertkit::recipes::Pretrain;
///
/// let output = tempfile::tempdir()?;
/// let mut run = Pretrain::new("tests/fixtures/tiny-bert", &["data/demo/cuad"], output.path().join("legal"))?;
/// run.whole_word_masking = true;
/// run.cfg.hyper.max_steps = Some(2);
/// let trained = run.run()?;
/// assert!(trained.outcome.best.is_some()); // evaluated on the 5% of blocks held out
/// # anyhow::Ok(())
/// ```
#[derive(clap::Args, Clone, Debug)]
pub struct Pretrain {
    /// Model to continue from: a directory or hub id (an MLM head is created if it has none).
    #[arg(long)]
    pub model: String,
    /// Unlabelled text: files (.txt, .jsonl, .parquet, optionally .gz) or directories of them.
    #[arg(long, required = true, num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// Held-out text to evaluate on.
    #[arg(long, num_args = 1.., conflicts_with = "eval_split")]
    pub eval_corpus: Vec<PathBuf>,
    /// Hold out this fraction of the corpus blocks for evaluation (0: none).
    #[arg(long, default_value_t = 0.05, value_parser = fraction)]
    pub eval_split: f64,
    /// Fraction of tokens chosen for prediction.
    #[arg(long, default_value_t = 0.15, value_parser = open_fraction)]
    pub mlm_probability: f64,
    /// Choose whole words (a token and the pieces that continue it, as the tokenizer splits
    /// words: `##` pieces, BPE pieces without `Ġ`, SentencePiece pieces without `▁`).
    #[arg(long)]
    pub whole_word_masking: bool,
    /// Add to the WordPiece vocabulary the N corpus words whose own token saves the most tokens
    /// (frequency x (pieces - 1)); each starts as the mean of its old pieces' embeddings. The
    /// words and their ids are listed in OUTPUT/added_vocabulary.json. A resumed run keeps the
    /// checkpoint's vocabulary.
    #[arg(long, value_parser = crate::values::positive)]
    pub add_vocab: Option<usize>,
    /// Where the added words go: BERT's `[unusedK]` slots (the vocabulary keeps its size), new
    /// rows, or auto (the slots if there are enough).
    #[arg(long, value_enum, default_value = "auto", requires = "add_vocab")]
    pub add_vocab_into: VocabSlots,
    #[command(flatten)]
    pub corpus_flags: CorpusFlags,
    #[command(flatten)]
    pub cfg: TrainConfig,
}

/// The words `--add-vocab` added and their ids.
struct AddedVocabulary {
    words: Vec<NewWord>,
    ids: Vec<u32>,
}

/// Extends `model`'s vocabulary with the corpus's most useful words into `OUTPUT.vocab/` (beside
/// the output, as the token cache) and returns the extended model.
fn extend_for_corpus(
    model: &ModelDir,
    corpus: &CorpusSpec,
    n: usize,
    into: VocabSlots,
    dir: &std::path::Path,
) -> Result<(ModelDir, AddedVocabulary)> {
    let tokenizer = Tokenizer::from_dir(&model.dir)?;
    let words = most_useful_words(&tokenizer, &WordCounts::of_corpus(corpus)?, n)?;
    if words.len() < n {
        tracing::warn!("--add-vocab {n}: the corpus has only {} words cut into pieces; adding those", words.len());
    }
    let ids = extend_vocabulary(model, &words, into, dir)?;
    let shown: Vec<&str> = words.iter().take(12).map(|w| w.word.as_str()).collect();
    tracing::info!(
        "added {} words to the vocabulary ({}, ...), starting from {}",
        words.len(),
        shown.join(", "),
        dir.display()
    );
    Ok((ModelDir::open(&dir.display().to_string())?, AddedVocabulary { words, ids }))
}

/// OUTPUT/added_vocabulary.json: each added word, its id, its count and its old pieces.
fn write_added(out: &std::path::Path, added: &AddedVocabulary) -> Result<()> {
    let words: Vec<serde_json::Value> = added
        .words
        .iter()
        .zip(&added.ids)
        .map(|(w, id)| serde_json::json!({"word": w.word, "id": id, "count": w.count, "pieces": w.pieces}))
        .collect();
    crate::fsutil::atomic_write(&out.join("added_vocabulary.json"), serde_json::to_string_pretty(&words)?.as_bytes())
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

impl Pretrain {
    /// `model` further pretrained on `corpus` (files or directories) into `output`, every other
    /// setting at its flag's default (blocks of 128 tokens, 15% masked, 5% held out).
    pub fn new(
        model: &str,
        corpus: &[impl AsRef<std::path::Path>],
        output: impl AsRef<std::path::Path>,
    ) -> Result<Pretrain> {
        let paths: Vec<String> = corpus.iter().map(|p| p.as_ref().display().to_string()).collect();
        let output = output.as_ref().display().to_string();
        let mut flags = vec!["--model", model, "--output", &output, "--corpus"];
        flags.extend(paths.iter().map(String::as_str));
        crate::values::from_flags(&flags)
    }

    /// The training and held-out corpora as token caches. They are checked (and tokenised)
    /// before the output directory is touched, and live beside the output so that a rerun or a
    /// resume finds them. In a data-parallel run rank 0 tokenises; the others wait for it, then
    /// read its caches.
    fn token_caches(
        &self,
        tokenizer: &Tokenizer,
        model_dir: &std::path::Path,
    ) -> Result<(TokenCache, Option<TokenCache>)> {
        let cache_root = self.cfg.control.output.with_extension("token-cache");
        let open = |name: &str, paths: &[PathBuf]| {
            TokenCache::open_or_build(&cache_root.join(name), &self.corpus_flags.spec(paths), tokenizer, model_dir)
        };
        let group = crate::distributed::group();
        if let Some(g) = group.filter(|_| !crate::distributed::is_main()) {
            g.barrier().context("waiting for rank 0's token cache (raise --dist-timeout for a large corpus)")?;
        }
        let train = open("train", &self.corpus)?;
        let eval = (!self.eval_corpus.is_empty()).then(|| open("eval", &self.eval_corpus)).transpose()?;
        if let Some(g) = group.filter(|_| crate::distributed::is_main()) {
            g.barrier().context("telling the other ranks the token cache is built")?;
        }
        Ok((train, eval))
    }

    /// Tokenises the corpus (cached beside the output), trains and saves.
    pub fn run(&self) -> Result<Trained> {
        let (args, cfg) = (self, &self.cfg);
        let device = session::start(cfg)?;
        if args.add_vocab.is_some() && cfg.control.resume_from.is_none() && crate::distributed::world_size() > 1 {
            crate::error::refuse!(
                "--add-vocab: extend the vocabulary in a single process first (it writes the new model), then pretrain it on several ranks"
            );
        }
        let mut model = session::open_model(cfg, &args.model)?;
        let added = match (args.add_vocab, &cfg.control.resume_from) {
            (Some(n), None) => {
                let out = cfg.control.output.with_extension("vocab");
                let spec = CorpusSpec { chunking: Chunking::Document, ..args.corpus_flags.spec(&args.corpus) };
                let (extended, added) = extend_for_corpus(&model, &spec, n, args.add_vocab_into, &out)?;
                model = extended;
                Some(added)
            }
            _ => None,
        };
        session::set_dropout(cfg, &mut model)?;
        model.check_max_len("max-len", args.corpus_flags.max_len)?;
        let options = session::load_options(cfg, device, false);
        let mut mlm: MaskedLanguageModel = pretrained::load(&model, &options)?;
        mlm.carry_unused()?;

        let (train_cache, eval_cache) = self.token_caches(&mlm.tokenizer, &model.dir)?;
        let (train_blocks, eval_blocks) = blocks(&train_cache, eval_cache.as_ref(), args.eval_split, cfg.hyper.seed)?;
        tracing::info!(
            "{} training blocks, {} held out | device {device:?}",
            train_blocks.indices.len(),
            eval_blocks.as_ref().map_or(0, |b| b.indices.len())
        );
        RunDir::new(&cfg.control).prepare()?;
        if let Some(added) = &added {
            write_added(&cfg.control.output, added)?;
        }

        let batch_size = session::global_batch(cfg);
        let num_batches = train_blocks.indices.len().div_ceil(batch_size);
        let masker = Masker::new(&mlm.tokenizer, args.mlm_probability, args.whole_word_masking);
        let sampling = cfg.hyper.train_sampling_strategy;
        let data = card_data(&args.corpus, &args.eval_corpus, &train_blocks, eval_blocks.as_ref());
        let task =
            MaskedLanguageModelling { mlm, masker, train: train_blocks, eval: eval_blocks, batch_size, sampling };
        let outcome = train(&task, cfg, options.autocast, num_batches)?;
        let card = ModelCard {
            base_model: &args.model,
            pipeline_tag: "fill-mask",
            task: "further pretraining (masked LM)",
            data,
            hyper: &cfg.hyper,
        };
        session::finish(outcome, cfg, &card)
    }
}

/// The corpora for the model card, in blocks of --max-len tokens.
fn card_data(corpus: &[PathBuf], eval_corpus: &[PathBuf], train: &Blocks, eval: Option<&Blocks>) -> Vec<DataFile> {
    let paths = |p: &[PathBuf]| p.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let mut data = vec![DataFile { role: "train", path: paths(corpus), examples: train.indices.len(), labels: vec![] }];
    if let Some(eval) = eval {
        let path = if eval_corpus.is_empty() { format!("{} (held out)", paths(corpus)) } else { paths(eval_corpus) };
        data.push(DataFile { role: "eval", path, examples: eval.indices.len(), labels: vec![] });
    }
    data
}

/// Training and held-out blocks: a held-out corpus, else a seeded share of the training one.
fn blocks<'a>(
    train: &'a TokenCache,
    eval: Option<&'a TokenCache>,
    eval_split: f64,
    seed: u64,
) -> Result<(Blocks<'a>, Option<Blocks<'a>>)> {
    let all = |cache: &'a TokenCache| Blocks { cache, indices: (0..cache.len()).collect() };
    Ok(match eval {
        Some(cache) => (all(train), Some(all(cache))),
        None if eval_split > 0.0 => {
            let (t, e) = split_blocks(train.len(), eval_split, seed);
            if t.is_empty() || e.is_empty() {
                bail!("the corpus has {} blocks: too few to hold out {eval_split} of them", train.len());
            }
            (Blocks { cache: train, indices: t }, Some(Blocks { cache: train, indices: e }))
        }
        None => (all(train), None),
    })
}
