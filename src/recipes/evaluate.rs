//! `bertkit evaluate`: the metrics of a fine-tuned model on labelled data, by the task its
//! config.json records (classification, multi-label, regression, token classification), an
//! embedding model's search or similarity measures (`embedding.rs`), or a model's masked-token
//! loss and perplexity on unlabelled text (`--corpus`).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::data::corpus::{Chunking, CorpusSpec, TokenCache};
use crate::data::masking::Masker;
use crate::data::{LabelSet, Targets};
use crate::device::{Autocast, DeviceFlags, Precision};
use crate::distributed::Spread;
use crate::fsutil::atomic_write;
use crate::predict::Evaluation;
use crate::predict::{Blocks, MaskedLanguageModel};
use crate::predict::{Classifier, Decision, read_thresholds};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::recipes::DataFlags;
use crate::recipes::TagFlags;
use crate::recipes::token_classification::Reading;
use crate::task::TaskKind;
use crate::values::positive;

#[derive(clap::Args, Clone)]
pub struct Evaluate {
    /// A fine-tuned model (its config holds the task and the labels).
    #[arg(long)]
    pub model: String,
    /// Labelled data to evaluate on.
    #[arg(long, visible_alias = "eval", required_unless_present = "corpus")]
    pub data: Option<PathBuf>,
    /// Unlabelled text instead: masked-token loss, accuracy and perplexity (15% of tokens
    /// masked with a fixed seed, as further pretraining's held-out evaluation), in blocks of
    /// --max-len tokens (default 128). An MLM head is created for a model without one. With
    /// --queries: the passages of a search benchmark (JSONL: `_id`, `text`, optional `title`).
    #[arg(long, num_args = 1.., conflicts_with = "data")]
    pub corpus: Vec<PathBuf>,
    /// Embedding models: a search benchmark in BEIR's layout, these queries (JSONL: `_id`,
    /// `text`) against the passages in --corpus, judged by --qrels: NDCG@10, MRR@10, MAP@100,
    /// recall@k.
    #[arg(long, requires_all = ["qrels", "corpus"], conflicts_with = "data")]
    pub queries: Option<PathBuf>,
    /// The relevance judgements of --queries: TSV `query-id corpus-id score` with a header.
    #[arg(long, requires = "queries")]
    pub qrels: Option<PathBuf>,
    /// With --queries: write the passages' vectors to this `.npy` file (their ids beside it) a
    /// chunk at a time as they are computed, and search the file memory-mapped, so that memory
    /// never holds the whole corpus's vectors.
    #[arg(long, requires = "queries")]
    pub corpus_vectors: Option<PathBuf>,
    /// Embedding models: --data holds pairs (--text-column, --text-pair-column) with their
    /// gold similarity in this column: Spearman and Pearson of the cosine (STS). Without it,
    /// the pairs are evaluated as a search (each first text a query, its second the answer).
    #[arg(long)]
    pub score_column: Option<String>,
    #[command(flatten)]
    pub flags: DataFlags,
    #[command(flatten)]
    pub tags: TagFlags,
    #[command(flatten)]
    pub decoding: crate::predict::question_answering::DecodingFlags,
    /// Question answering: also CUAD's measures (AUPR, precision at 80% and 90% recall).
    #[arg(long)]
    pub cuad_metrics: bool,
    /// Multi-label: count "no label" as one more class in micro- and macro-F1 (LexGLUE's convention).
    #[arg(long)]
    pub count_no_label: bool,
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,
    /// Also write the full report (metrics, per-class scores, confusion matrix) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// fp32 (the default: transformers' numbers), bf16 (autocast), or auto: bf16 where the
    /// device computes it natively (faster; probabilities move by ~1e-3).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    #[command(flatten)]
    pub run: DeviceFlags,
}

impl Evaluate {
    /// `model` (fine-tuned: its config.json holds the task and labels) on the labelled `data`,
    /// every other setting at its flag's default.
    pub fn new(model: &str, data: impl AsRef<std::path::Path>) -> Result<Evaluate> {
        crate::values::from_flags(&["--model", model, "--data", &data.as_ref().display().to_string()])
    }

    /// Runs the job as `bertkit evaluate` does: the summary on standard output, the report in
    /// `--json` (rank 0 of a data-parallel run).
    pub fn run(self) -> Result<()> {
        let (model, task, evaluation) = self.evaluate()?;
        report(&self, &model, task, &evaluation)
    }

    /// The metrics (and the full report) of the model on the data, and the task they are of.
    ///
    /// ```
    /// use bertkit::recipes::Evaluate;
    ///
    /// let data = tempfile::NamedTempFile::with_suffix(".csv")?;
    /// std::fs::write(&data, "text,label\na fine film,positive\na dull one,negative\nso-so,neutral\n")?;
    /// let (_, task, evaluation) = Evaluate::new("tests/fixtures/tiny-bert", data.path())?.evaluate()?;
    /// assert_eq!(task, "classification");
    /// assert!((0.0..=1.0).contains(&evaluation.metrics["accuracy"]));
    /// # anyhow::Ok(())
    /// ```
    pub fn evaluate(&self) -> Result<(ModelDir, &'static str, Evaluation)> {
        let args = self;
        // Under `bertkit launch` / torchrun the ranks split the batches, gathered on the host (so
        // gloo on any device); rank 0 reports.
        crate::distributed::join(crate::distributed::DEFAULT_TIMEOUT, crate::distributed::Backend::Gloo)?;
        let device = args.run.setup()?;
        let model = ModelDir::open(&args.model)?;
        let options = LoadOptions::inference(device, Autocast::new(args.precision, device));
        if super::embedding::is_embedding_model(args, &model)? {
            return Ok((model.clone(), "embedding", super::embedding::evaluate(args, &model, &options)?));
        }
        let Some(data) = &args.data else {
            let evaluation = masked_lm(args, &model, &options)?;
            return Ok((model, "masked-lm", evaluation));
        };
        let max_len = model.max_len(args.flags.max_len)?;
        if TaskKind::of(&model.config) == TaskKind::MultipleChoice {
            let on_bad = args.flags.on_bad_row;
            let evaluation =
                crate::recipes::multiple_choice::evaluate(&model, data, max_len, on_bad, &options, args.batch_size)?;
            return Ok((model, TaskKind::MultipleChoice.name(), evaluation));
        }
        if TaskKind::of(&model.config) == TaskKind::QuestionAnswering {
            let (stride, on_bad) = (args.flags.stride, args.flags.on_bad_row);
            let how = crate::recipes::question_answering::Reading { decoding: &args.decoding, max_len, stride, on_bad };
            let (cuad, batch_size) = (args.cuad_metrics, args.batch_size);
            let evaluation =
                crate::recipes::question_answering::evaluate(&model, data, &how, cuad, &options, batch_size)?;
            return Ok((model, TaskKind::QuestionAnswering.name(), evaluation));
        }
        let names = model.config.id2label().map(<[String]>::to_vec).with_context(|| {
            format!("{}: config.json has no id2label; is this a fine-tuned model?", model.dir.display())
        })?;
        let kind = TaskKind::of(&model.config);
        let evaluation = if kind == TaskKind::TokenClassification {
            let stride = args.flags.stride;
            let how = Reading { tags: &args.tags, max_len, stride, on_bad: args.flags.on_bad_row };
            crate::recipes::token_classification::evaluate(&model, data, &how, &options, args.batch_size)?
        } else {
            let labels = LabelSet::new(names.clone());
            let examples = args.flags.read(data, true)?.examples;
            let targets = Targets::new(kind, &examples, &labels, "model's")?;
            let classifier: Classifier = pretrained::load(&model, &options)?;
            let set =
                args.flags.encode(&classifier.tokenizer, &examples, targets, max_len, &data.display().to_string())?;
            let thresholds = read_thresholds(&model.dir, &names)?;
            if thresholds.is_some() {
                tracing::info!(
                    "multi-label decisions at the thresholds of {}",
                    model.dir.join("thresholds.json").display()
                );
            }
            let decision = Decision { thresholds, count_no_label: args.count_no_label, pool: args.flags.window_pool };
            classifier.evaluate_set(&set, args.batch_size, &decision, Spread::Ranks)?
        };
        Ok((model, kind.name(), evaluation))
    }
}

/// The masked-token scores of the model on `--corpus`, tokenised into a cache that lives as
/// long as this command.
fn masked_lm(args: &Evaluate, model: &ModelDir, options: &LoadOptions) -> Result<Evaluation> {
    let max_len = args.flags.max_len.unwrap_or(128);
    model.check_max_len("max-len", max_len)?;
    let mlm: MaskedLanguageModel = pretrained::load(model, options)?;
    let spec = CorpusSpec {
        paths: args.corpus.clone(),
        format: None,
        chunking: Chunking::Group,
        max_len,
        text_field: "text".into(),
        dedupe: false,
    };
    let cache_dir = tempfile::tempdir().context("creating a directory for the token cache")?;
    let cache = TokenCache::open_or_build(cache_dir.path(), &spec, &mlm.tokenizer, &model.dir)?;
    let blocks = Blocks { cache: &cache, indices: (0..cache.len()).collect() };
    let masker = Masker::new(&mlm.tokenizer, 0.15, false);
    mlm.evaluate_blocks(&masker, &blocks, args.batch_size, Spread::Ranks)
}

fn report(args: &Evaluate, model: &ModelDir, task: &str, evaluation: &Evaluation) -> Result<()> {
    if !crate::distributed::is_main() {
        return Ok(());
    }
    println!("{}", evaluation.summary);
    if let Some(path) = &args.json {
        let data = args.data.as_ref().map_or(serde_json::json!(args.corpus), |d| serde_json::json!(d));
        let json = serde_json::json!({"model": model.dir, "task": task,
            "data": data, "metrics": evaluation.metrics, "report": evaluation.report});
        atomic_write(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
    }
    Ok(())
}
