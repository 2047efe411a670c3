//! Sentence embeddings from files: training (`finetune --task embedding`) on rows of (anchor,
//! positive[, hard negatives]) or (text, text, score) read from CSV, TSV, JSONL or Parquet,
//! checked before anything is written, trained (`train::SentenceEmbedding`) and saved as
//! sentence-transformers saves a model; and evaluating one (`evaluate`) on pairs, scored pairs
//! or a search benchmark in BEIR's layout.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use tch::Tensor;

use super::finetune::{FineTune, Trained, split};
use super::session;
use super::{DataFlags, Evaluate};
use crate::data::retrieval::SearchData;
use crate::data::vectors::{MappedVectors, VectorWriter};
use crate::data::{LongText, tokenize};
use crate::error::{Marked, refuse};
use crate::predict::Evaluation;
use crate::predict::embedding::{PairSet, embed_items, evaluate_pairs};
use crate::predict::retrieval::evaluate_search;
use crate::pretrained::{self, LoadOptions, ModelDir, Pretrained, SentenceConfig};
use crate::task::Bare;
use crate::task::embedding::{EmbeddingLoss, Pooling};
use crate::tokenizer::Tokenizer;
use crate::train::embedding::EmbeddingTraining;
use crate::train::model_card::{DataFile, ModelCard};
use crate::train::run_dir::RunDir;
use crate::train::{SentenceEmbedding, train};
use crate::values::positive;

#[derive(clap::Args, Clone, Debug)]
pub struct EmbeddingFlags {
    /// --task embedding: cosines are multiplied by this before the softmax (mnrl, cosent).
    #[arg(long, default_value_t = 20.0, value_parser = crate::values::positive_float)]
    pub scale: f64,
    /// --task embedding: columns holding hard negatives of the row's anchor (mnrl).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub negative_columns: Vec<String>,
    /// --task embedding: how token states become the vector. Default: as the checkpoint's
    /// sentence-transformers files say (`1_Pooling`), else mean.
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// --task embedding: whether the saved model normalises its vectors (`2_Normalize`).
    /// Default: as the checkpoint does. Training compares cosines either way.
    #[arg(long)]
    pub normalize: Option<bool>,
    /// --task embedding: Matryoshka training, the loss summed over these leading sizes of the
    /// vector (`768,512,256,128,64`).
    #[arg(long, value_delimiter = ',', num_args = 1.., value_parser = positive)]
    pub matryoshka_dims: Vec<usize>,
    /// --task embedding: GradCache (a cached loss): the batch is embedded and backpropagated
    /// this many rows at a time, so a large --batch-size (more in-batch negatives) needs the
    /// memory of this one; the gradients are the uncached loss's.
    #[arg(long, value_parser = positive)]
    pub mini_batch_size: Option<usize>,
}

/// One row of the data as read: its texts (anchor, positive, negatives) and score.
struct Row {
    texts: Vec<String>,
    score: Option<f32>,
}

/// Trains an embedding model as `finetune --task embedding` asks.
pub fn finetune(args: &FineTune, model: ModelDir, device: tch::Device) -> Result<Trained> {
    let cfg = &args.cfg;
    let flags = &args.embedding;
    let loss = args.embedding_loss()?;
    let sentence = sentence_config(args, &model)?;
    check_flags(args, &model, loss)?;
    let rows = read_rows(args, &args.train, loss)?;
    let (train_rows, eval_rows) = match (&args.eval, args.eval_split) {
        (Some(path), _) => (rows, Some(read_rows(args, path, loss)?)),
        (None, Some(fraction)) => split(rows, fraction, cfg.hyper.seed).map(|(t, e)| (t, Some(e)))?,
        (None, None) => (rows, None),
    };

    // Only now that the data is known to be good is anything written.
    let run = RunDir::new(&cfg.control);
    run.prepare()?;
    let options = session::load_options(cfg, device, false);
    let mut encoder: Pretrained<Bare<false>> = pretrained::load(&model, &options)?;
    // Pooling does not read BERT's pooler, but AutoModel has one: it goes back as it came.
    encoder.carry_unused_where(|name| name.contains("pooler."))?;
    let max_len = sentence.max_seq_length.expect("set by sentence_config");
    let train_set = encode(&encoder.tokenizer, &train_rows, max_len, "train")?;
    let eval_set = eval_rows.as_deref().map(|r| encode(&encoder.tokenizer, r, max_len, "eval")).transpose()?;
    tracing::info!(
        "task embedding | loss {:?} | pooling {} | normalize {} | device {device:?}",
        loss,
        sentence.pooling.name(),
        sentence.normalize
    );
    let mut card = vec![data_file("train", args.train.display().to_string(), train_set.len())];
    if let Some(set) = &eval_set {
        card.push(data_file("eval", args.eval_name(), set.len()));
    }
    let batch_size = session::global_batch(cfg);
    let num_batches = train_set.len().div_ceil(batch_size);
    let task = SentenceEmbedding {
        model: encoder,
        sentence,
        training: EmbeddingTraining {
            loss,
            scale: flags.scale,
            matryoshka_dims: flags.matryoshka_dims.iter().map(|&d| d as i64).collect(),
            mini_batch: flags.mini_batch_size,
        },
        train: train_set,
        eval: eval_set,
        batch_size,
        sampling: cfg.hyper.train_sampling_strategy,
    };
    let outcome = train(&task, cfg, options.autocast, num_batches)?;
    let card = ModelCard {
        base_model: &args.model,
        pipeline_tag: "sentence-similarity",
        task: "embedding",
        data: card,
        hyper: &cfg.hyper,
    };
    session::finish(outcome, cfg, &card)
}

fn data_file(role: &'static str, path: String, examples: usize) -> DataFile {
    DataFile { role, path, examples, labels: vec![] }
}

/// Pooling, normalisation and length: the flags, else the checkpoint's sentence-transformers
/// files, else mean pooling, unnormalised, the model's default length.
fn sentence_config(args: &FineTune, model: &ModelDir) -> Result<SentenceConfig> {
    let saved = SentenceConfig::read(&model.dir)?;
    let pooling = args.embedding.pooling.or(saved.map(|s| s.pooling)).unwrap_or(Pooling::Mean);
    if pooling == Pooling::Pooler {
        refuse!("--pooling pooler: sentence-transformers models pool by cls, mean or last; choose one of those");
    }
    let max_len = model.input_len(args.data.max_len, saved.and_then(|s| s.max_seq_length))?;
    let normalize = args.embedding.normalize.unwrap_or(saved.is_some_and(|s| s.normalize));
    Ok(SentenceConfig { pooling, normalize, max_seq_length: Some(max_len) })
}

/// The flags that do not fit an embedding task, refused before anything is read.
fn check_flags(args: &FineTune, model: &ModelDir, loss: EmbeddingLoss) -> Result<()> {
    let flags = &args.embedding;
    if args.data.text_pair_column.is_none() {
        refuse!(
            "--task embedding reads two texts a row: --text-column (anchor or first text) and \
             --text-pair-column (positive or second text)"
        );
    }
    if loss.scored() && !flags.negative_columns.is_empty() {
        refuse!("--negative-columns: the {loss:?} loss compares scored pairs; hard negatives go with mnrl");
    }
    if let Some(&d) = flags.matryoshka_dims.iter().find(|&&d| d as i64 > model.dims.hidden_size) {
        refuse!("--matryoshka-dims {d}: larger than the model's {} dimensions", model.dims.hidden_size);
    }
    if args.data.long_text != LongText::Truncate || args.data.label_sets() || args.class_weights.is_some() {
        refuse!("--task embedding truncates long texts and has no classes: drop --long-text, label and weight flags");
    }
    Ok(())
}

/// The rows of `path` for training.
fn read_rows(args: &FineTune, path: &Path, loss: EmbeddingLoss) -> Result<Vec<Row>> {
    rows_of(&args.data, path, &args.embedding.negative_columns, loss.scored()).data_error()
}

/// The rows of `path`: the two text columns (and, `scored`, the score in the label column) in
/// one pass, each hard-negative column in another, joined on the row's line.
fn rows_of(data: &DataFlags, path: &Path, negative_columns: &[String], scored: bool) -> Result<Vec<Row>> {
    let main = data.read(path, scored)?.examples;
    let mut negatives: Vec<BTreeMap<u64, String>> = Vec::new();
    for column in negative_columns {
        let mut flags = data.clone();
        flags.text_pair_column = Some(column.clone());
        let rows = flags.read(path, false)?.examples;
        negatives.push(rows.into_iter().map(|e| (e.at.line, e.pair.expect("read with a pair column"))).collect());
    }
    let mut rows = Vec::with_capacity(main.len());
    for e in main {
        let score = match (scored, e.single_label()) {
            (false, _) => None,
            (true, Some(value)) => match value.parse::<f32>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => bail!("{}: score {value:?} (--label-column) is not a number", e.at),
            },
            (true, None) => bail!("{}: no score in --label-column", e.at),
        };
        let negs: Option<Vec<String>> = negatives.iter().map(|n| n.get(&e.at.line).cloned()).collect();
        let Some(negs) = negs else { continue }; // a bad negative skipped under --on-bad-row skip
        rows.push(Row { texts: [vec![e.text, e.pair.expect("read with a pair column")], negs].concat(), score });
    }
    Ok(rows)
}

/// Whether `evaluate` reads `model` as an embedding model: a search benchmark is given, or
/// labelled data for a sentence-transformers model (`modules.json`) without a classification
/// head.
pub fn is_embedding_model(args: &Evaluate, model: &ModelDir) -> Result<bool> {
    let sentence_model =
        || Ok::<_, anyhow::Error>(SentenceConfig::read(&model.dir)?.is_some() && !model.has_classifier()?);
    Ok(args.queries.is_some() || (args.data.is_some() && sentence_model()?))
}

/// The passages' vectors written to the `.npy` file `path` (ids beside it) a chunk at a time,
/// with a progress bar.
fn embed_corpus_to(
    path: &Path,
    data: &SearchData,
    dim: usize,
    embed: impl Fn(&[String]) -> Result<Tensor>,
) -> Result<()> {
    const CHUNK: usize = 4096;
    let mut writer = VectorWriter::create(path, data.passages.len(), dim)?;
    let bar = crate::progress::items_bar(data.passages.len() as u64, "passages");
    for (texts, ids) in data.passages.chunks(CHUNK).zip(data.passage_ids.chunks(CHUNK)) {
        writer.write(ids, &Vec::<Vec<f32>>::try_from(embed(texts)?)?)?;
        bar.inc(texts.len() as u64);
    }
    bar.finish_and_clear();
    writer.finish()
}

/// `evaluate` of an embedding model, pooled as its sentence-transformers files say (else by the
/// mean): on a search benchmark (--queries, --corpus, --qrels), on scored pairs
/// (--score-column), or on pairs as a search.
pub fn evaluate(args: &Evaluate, model: &ModelDir, options: &LoadOptions) -> Result<Evaluation> {
    let saved = SentenceConfig::read(&model.dir)?;
    let pooling = saved.map_or(Pooling::Mean, |s| s.pooling);
    let max_len = model.input_len(args.flags.max_len, saved.and_then(|s| s.max_seq_length))?;
    let encoder: Pretrained<Bare<false>> = pretrained::load(model, options)?;
    if let (Some(queries), Some(qrels)) = (&args.queries, &args.qrels) {
        let [corpus] = &args.corpus[..] else { refuse!("--queries takes one --corpus file (the passages)") };
        if let Some(path) = &args.corpus_vectors
            && path.extension().is_none_or(|e| e != "npy")
        {
            refuse!("--corpus-vectors {}: the vectors are written as .npy", path.display());
        }
        let data = SearchData::read(queries, corpus, qrels)?;
        tracing::info!("{} queries, {} passages", data.queries.len(), data.passages.len());
        let embed = |texts: &[String]| {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            embed_items(
                &encoder,
                &tokenize(&encoder.tokenizer, &texts, None, max_len)?.items,
                pooling,
                args.batch_size,
                true,
            )
        };
        let queries = embed(&data.queries)?;
        return Ok(match &args.corpus_vectors {
            None => evaluate_search(&queries, &embed(&data.passages)?, &data.relevant),
            Some(path) => {
                embed_corpus_to(path, &data, encoder.dims.hidden_size as usize, embed)?;
                evaluate_search(&queries, &MappedVectors::open(path)?, &data.relevant)
            }
        });
    }
    let Some(path) = &args.data else { refuse!("an embedding model is evaluated on --data pairs or --queries") };
    if args.flags.text_pair_column.is_none() {
        refuse!("an embedding model is evaluated on pairs: --text-column and --text-pair-column");
    }
    let mut flags = args.flags.clone();
    if let Some(column) = &args.score_column {
        flags.label_column = column.clone();
    }
    let rows = rows_of(&flags, path, &[], args.score_column.is_some()).data_error()?;
    let set = encode(&encoder.tokenizer, &rows, max_len, &path.display().to_string())?;
    evaluate_pairs(&encoder, &set, pooling, args.batch_size)
}

/// Tokenises each column of the rows (truncated at `max_len`, counted in the log).
fn encode(tokenizer: &Tokenizer, rows: &[Row], max_len: usize, role: &str) -> Result<PairSet> {
    let mut columns = Vec::new();
    let mut truncated = 0;
    for c in 0..rows[0].texts.len() {
        let texts: Vec<&str> = rows.iter().map(|r| r.texts[c].as_str()).collect();
        let tokenized = tokenize(tokenizer, &texts, None, max_len)?;
        truncated += tokenized.truncated;
        columns.push(tokenized.items);
    }
    tracing::info!(
        "{role}: {} rows of {} texts, {truncated} texts truncated to {max_len} tokens",
        rows.len(),
        columns.len()
    );
    let scores = rows.iter().map(|r| r.score).collect();
    Ok(PairSet { columns, scores })
}
