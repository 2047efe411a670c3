//! `bertkit mine-negatives`: hard negatives for (query, positive) pairs, found by a bi-encoder
//! (the passages it ranks highest that are not the query's positives), written as training data
//! for a reranker (`--task rerank`: query, passage, label rows) or for embeddings (`--task
//! embedding --negative-columns`: anchor, positive, negative_1..n rows). As sentence-transformers'
//! `mine_hard_negatives` ("top" sampling) does, per distinct query: every positive of a query is
//! skipped, and the query's own text; a hit scoring above the query's weakest positive less
//! `--margin` is not taken; the first `--range-min` others are skipped too (near-duplicates of
//! positives, often unlabelled positives). The passages are those of `--corpus` then the
//! positives, each text once.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tch::Tensor;

use crate::data::{Columns, Format, LabelSource, OnBadRow, read_examples};
use crate::device::{Autocast, DeviceFlags};
use crate::error::refuse;
use crate::fsutil::atomic_write;
use crate::predict::retrieval::search;
use crate::predict::{Embedder, Pooling};
use crate::pretrained::{LoadOptions, ModelDir};
use crate::values::{positive, sequence_length};

#[derive(clap::Args)]
pub struct MineNegatives {
    /// The bi-encoder that ranks the passages (an embedding model; pooled as its files say).
    #[arg(long)]
    pub model: String,
    /// (query, positive) pairs: CSV, TSV, JSONL or Parquet.
    #[arg(long)]
    pub input: PathBuf,
    /// The column of --input holding the query.
    #[arg(long, default_value = "query")]
    pub text_column: String,
    /// The column of --input holding the query's positive passage.
    #[arg(long, default_value = "positive")]
    pub text_pair_column: String,
    /// More passages to mine from, beside every positive of --input (a column --corpus-column of
    /// a CSV, TSV, JSONL or Parquet file, or one per line of a .txt).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    #[arg(long, default_value = "text")]
    pub corpus_column: String,
    /// Negatives per query.
    #[arg(long, default_value_t = 4, value_parser = positive)]
    pub num_negatives: usize,
    /// Skip this many of each query's best non-positive hits first.
    #[arg(long, default_value_t = 0)]
    pub range_min: usize,
    /// Take negatives from this many best candidates (positives and the query's own text not
    /// counted).
    #[arg(long, default_value_t = 100, value_parser = positive)]
    pub range_max: usize,
    /// A negative's cosine may not exceed the query's weakest positive's less this (0: at
    /// most the positive's; negative values let near-positives through).
    #[arg(long, allow_negative_numbers = true)]
    pub margin: Option<f64>,
    /// Where the mined rows go (CSV).
    #[arg(long)]
    pub output: PathBuf,
    /// pairs: `query,passage,label` (each positive 1, each negative 0: `finetune --task rerank`);
    /// triplets: `anchor,positive,negative_1..n`, one row per input pair whose query has all its
    /// negatives (`finetune --task embedding --negative-columns`).
    #[arg(long, value_enum, default_value = "pairs")]
    pub output_format: MinedFormat,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub batch_size: usize,
    /// Longest text in tokens. Default: the model's `max_seq_length`, else 512 or its positions.
    #[arg(long, value_parser = sequence_length)]
    pub max_len: Option<usize>,
    #[command(flatten)]
    pub run: DeviceFlags,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinedFormat {
    Pairs,
    Triplets,
}

/// The distinct queries and passages of the pairs, and which passages answer which query.
struct Pool {
    queries: Vec<String>,
    passages: Vec<String>,
    /// Each query's positives, in the order of --input.
    positives: Vec<Vec<usize>>,
    /// Each input pair as (query, passage) indices.
    pairs: Vec<(usize, usize)>,
}

impl MineNegatives {
    /// Mines and writes; bad input is reported before the model loads.
    pub fn run(self) -> Result<()> {
        let args = self;
        let device = args.run.setup()?;
        if args.output.extension().and_then(|e| e.to_str()) != Some("csv") {
            refuse!("--output {}: mined rows are written as CSV (.csv)", args.output.display());
        }
        let pool = read_pool(&args)?;
        let model = ModelDir::open(&args.model)?;
        let options = LoadOptions::inference(device, Autocast::off());
        let mut embedder = Embedder::load_as_saved(&model, None, Pooling::Mean, &options)?.normalized(true);
        if let Some(max_len) = args.max_len {
            model.check_max_len("max-len", max_len)?;
            embedder = embedder.max_len(max_len);
        }
        tracing::info!("{} queries, {} passages to mine from", pool.queries.len(), pool.passages.len());
        let embed = |texts: &[String]| -> Result<Tensor> {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let rows = embedder.embed_many(&refs, args.batch_size)?;
            Ok(Tensor::from_slice(&rows.concat()).view([texts.len() as i64, -1]))
        };
        let (queries, passages) = (embed(&pool.queries)?, embed(&pool.passages)?);
        let negatives = mine(&args, &pool, &queries, &passages);
        let short = negatives.iter().filter(|n| n.len() < args.num_negatives).count();
        let found: usize = negatives.iter().map(Vec::len).sum();
        let csv = match args.output_format {
            MinedFormat::Pairs => pairs_csv(&pool, &negatives)?,
            MinedFormat::Triplets => triplets_csv(&pool, &negatives, args.num_negatives)?,
        };
        atomic_write(&args.output, &csv)?;
        println!(
            "{found} negatives for {} queries ({short} with fewer than {}) written to {}",
            pool.queries.len(),
            args.num_negatives,
            args.output.display()
        );
        Ok(())
    }
}

/// The passages of --corpus, then the pairs of --input, each text once.
fn read_pool(args: &MineNegatives) -> Result<Pool> {
    let mut pool = Pool { queries: vec![], passages: vec![], positives: vec![], pairs: vec![] };
    let (mut query_ids, mut passage_ids) = (HashMap::new(), HashMap::new());
    if let Some(path) = &args.corpus {
        let format = Format::detect(path)?;
        let columns = Columns { text: args.corpus_column.clone(), pair: None, label: LabelSource::None };
        for passage in read_examples(path, Some(format), &columns, OnBadRow::Error)?.examples {
            intern(&mut passage_ids, &mut pool.passages, &passage.text);
        }
    }
    let columns =
        Columns { text: args.text_column.clone(), pair: Some(args.text_pair_column.clone()), label: LabelSource::None };
    for row in read_examples(&args.input, None, &columns, OnBadRow::Error)?.examples {
        let positive = row.pair.as_deref().filter(|p| !p.is_empty());
        let positive = positive.with_context(|| format!("{}: no positive passage", row.at))?;
        let q = *query_ids.entry(row.text.clone()).or_insert_with(|| {
            pool.queries.push(row.text.clone());
            pool.positives.push(vec![]);
            pool.queries.len() - 1
        });
        let p = intern(&mut passage_ids, &mut pool.passages, positive);
        if !pool.positives[q].contains(&p) {
            pool.positives[q].push(p);
        }
        pool.pairs.push((q, p));
    }
    if pool.pairs.is_empty() {
        refuse!("{}: no (query, positive) pairs", args.input.display());
    }
    Ok(pool)
}

/// The index of `text` among `texts`, added at the end if new.
fn intern(ids: &mut HashMap<String, usize>, texts: &mut Vec<String>, text: &str) -> usize {
    *ids.entry(text.to_string()).or_insert_with(|| {
        texts.push(text.to_string());
        texts.len() - 1
    })
}

/// Each query's negatives (passage indices), best-ranked first: among its hits that are not
/// its positives, nor its own text, nor (--margin) too close to its weakest positive, the
/// best --range-max, less the first --range-min, up to --num-negatives.
fn mine(args: &MineNegatives, pool: &Pool, queries: &Tensor, passages: &Tensor) -> Vec<Vec<usize>> {
    let most_positives = pool.positives.iter().map(Vec::len).max().unwrap_or(0);
    let depth = (args.range_max + most_positives + 1).min(pool.passages.len());
    let hits = search(queries, passages, depth);
    hits.iter()
        .enumerate()
        .map(|(q, hits)| {
            let weakest = pool.positives[q]
                .iter()
                .map(|&p| queries.get(q as i64).dot(&passages.get(p as i64)).double_value(&[]))
                .fold(f64::INFINITY, f64::min);
            let ceiling = args.margin.map_or(f64::INFINITY, |m| weakest - m);
            hits.iter()
                .filter(|(p, score)| {
                    !pool.positives[q].contains(p) && pool.passages[*p] != pool.queries[q] && *score as f64 <= ceiling
                })
                .take(args.range_max)
                .skip(args.range_min)
                .take(args.num_negatives)
                .map(|&(p, _)| p)
                .collect()
        })
        .collect()
}

/// `query,passage,label`: per query, its positives (1) then its negatives (0).
fn pairs_csv(pool: &Pool, negatives: &[Vec<usize>]) -> Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(vec![]);
    out.write_record(["query", "passage", "label"])?;
    for (q, query) in pool.queries.iter().enumerate() {
        for &p in &pool.positives[q] {
            out.write_record([query, &pool.passages[p], "1"])?;
        }
        for &n in &negatives[q] {
            out.write_record([query, &pool.passages[n], "0"])?;
        }
    }
    Ok(out.into_inner()?)
}

/// `anchor,positive,negative_1..n`: one row per input pair whose query has `n` negatives.
fn triplets_csv(pool: &Pool, negatives: &[Vec<usize>], n: usize) -> Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(vec![]);
    let header = ["anchor".to_string(), "positive".into()].into_iter().chain((1..=n).map(|i| format!("negative_{i}")));
    out.write_record(header)?;
    for &(q, p) in pool.pairs.iter().filter(|(q, _)| negatives[*q].len() == n) {
        let row =
            [&pool.queries[q], &pool.passages[p]].into_iter().chain(negatives[q].iter().map(|&i| &pool.passages[i]));
        out.write_record(row)?;
    }
    Ok(out.into_inner()?)
}
