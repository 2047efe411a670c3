//! A model behind HTTP (`bertkit serve`, or [`Serve`] in code): `/predict` (classification, multi-label, regression,
//! token classification), `/embed`, `/rerank`, `/qa` or `/fill-mask` by what the model is; `/health`, `/info`,
//! `/metrics`. Request and response shapes follow text-embeddings-inference where they overlap,
//! so its clients work. Requests that arrive together run as one batch (`batcher.rs`); the HTTP
//! side is axum on tokio (`http.rs`).

mod batcher;
mod engine;
mod http;
mod metrics;
mod reader;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use self::engine::Engine;
use crate::device::{Autocast, DeviceFlags, Precision};
use crate::predict::Aggregation;
use crate::predict::read_thresholds;
use crate::predict::{Embedder, Pooling};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::task::TaskKind;
use crate::values::positive;

/// A server: the model and its settings. Its fields are `bertkit serve`'s flags; [`Serve::new`]
/// gives their defaults in code. `run` answers until SIGINT/SIGTERM.
///
/// ```no_run
/// use bertkit::serve::Serve;
///
/// let mut server = Serve::new("out/sentiment")?;
/// server.port = 8081;
/// server.run()?;
/// # anyhow::Ok(())
/// ```
#[derive(clap::Args, Clone, Debug)]
pub struct Serve {
    /// Model directory or hub id.
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// What to serve. Default: predict for a model with a task head, fill-mask for one with an
    /// MLM head, embed otherwise.
    #[arg(long, value_enum)]
    pub task: Option<ServeTask>,
    /// Tokens one model batch may hold (requests queued together are run together up to this).
    #[arg(long, default_value_t = 16384, value_parser = positive)]
    pub max_batch_tokens: usize,
    /// Inputs one request may carry.
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub max_client_batch_size: usize,
    /// Requests answered or queued at once; more get 429.
    #[arg(long, default_value_t = 512, value_parser = positive)]
    pub max_concurrent_requests: usize,
    /// Longest input in tokens (longer ones are refused, or cut with "truncate": true; a token
    /// classifier reads them in windows). Default: 512, or the model's positions if fewer.
    #[arg(long, value_parser = crate::values::sequence_length)]
    pub max_len: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 2_000_000, value_parser = positive)]
    pub payload_limit: usize,
    /// Cut over-long inputs instead of refusing them where a request does not say
    /// ("truncate" absent, and always on OpenAI's /v1/embeddings, which has no such field), as
    /// text-embeddings-inference's --auto-truncate.
    #[arg(long)]
    pub auto_truncate: bool,
    /// Embeddings: how token vectors become one. Default: as the checkpoint's
    /// sentence-transformers files say (`1_Pooling`), else mean.
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// Token classification: how a word's tokens make its tag.
    #[arg(long, value_enum, default_value = "first")]
    pub aggregation: Aggregation,
    /// Fill-mask: candidates per mask.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub top_k: usize,
    /// Token classification and question answering: tokens shared by consecutive windows of a
    /// long text (a context).
    #[arg(long, alias = "doc-stride", default_value_t = 128, value_parser = positive)]
    pub stride: usize,
    #[command(flatten)]
    pub decoding: crate::predict::question_answering::DecodingFlags,
    /// fp32 (the default: transformers' numbers), bf16 (autocast), or auto: bf16 where the
    /// device computes it natively (faster; probabilities move by ~1e-3).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    #[command(flatten)]
    pub run: DeviceFlags,
}

/// What a server answers.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum ServeTask {
    Predict,
    Embed,
    FillMask,
    /// TEI's `/rerank`: a query's passages ordered by a one-output sequence classifier (a
    /// cross-encoder reranker, or any model with one label, as TEI serves them).
    Rerank,
    /// `/qa`: the answer to a question in a context (a question-answering model).
    QuestionAnswering,
}

pub struct Settings {
    pub address: String,
    pub max_len: usize,
    pub max_batch_tokens: usize,
    pub max_client_batch_size: usize,
    pub max_concurrent_requests: usize,
    pub payload_limit: usize,
    pub model_id: String,
    /// `--auto-truncate`: what a request that does not say gets.
    pub auto_truncate: bool,
}

impl Serve {
    /// `model` (a directory or hub id) served on 127.0.0.1:8080, every other setting at its
    /// flag's default.
    pub fn new(model: &str) -> Result<Serve> {
        crate::values::from_flags(&["--model", model])
    }

    /// Loads the model and answers until SIGINT/SIGTERM.
    pub fn run(self) -> Result<()> {
        run(self)
    }
}

fn run(args: Serve) -> Result<()> {
    let device = args.run.setup()?;
    let model = ModelDir::open(&args.model)?;
    let max_len = model.max_len(args.max_len)?;
    let task = args.task.unwrap_or_else(|| default_task(&model));
    let kind = TaskKind::of(&model.config);
    if kind == TaskKind::MultipleChoice && args.task != Some(ServeTask::Embed) {
        crate::error::refuse!(
            "--model {}: a multiple-choice model has no route to serve it yet (bertkit predict chooses for a file \
             of questions; --task embed serves its encoder's sentence vectors)",
            model.dir.display()
        );
    }
    if (kind == TaskKind::QuestionAnswering) != (task == ServeTask::QuestionAnswering)
        && matches!(task, ServeTask::Predict | ServeTask::Rerank | ServeTask::QuestionAnswering)
    {
        crate::error::refuse!(
            "--task {}: {} is a {} model (serve a question-answering model with --task question-answering)",
            clap::ValueEnum::to_possible_value(&task).map_or_else(String::new, |v| v.get_name().to_string()),
            model.dir.display(),
            kind.name()
        );
    }
    if task == ServeTask::Rerank && (model.config.num_labels() != 1 || kind == TaskKind::TokenClassification) {
        crate::error::refuse!(
            "--task rerank: {} is a {} model with {} label(s); a reranker has one output per (query, passage) pair",
            model.dir.display(),
            kind.name(),
            model.config.num_labels()
        );
    }
    if task == ServeTask::Predict && model.config.id2label().is_none() {
        bail!(
            "{}: has no task head (config.json has no id2label); serve it with --task embed or fill-mask",
            model.dir.display()
        );
    }
    let settings = Settings {
        address: format!("{}:{}", args.host, args.port),
        max_len,
        max_batch_tokens: args.max_batch_tokens.max(max_len),
        max_client_batch_size: args.max_client_batch_size,
        max_concurrent_requests: args.max_concurrent_requests,
        payload_limit: args.payload_limit,
        model_id: args.model.clone(),
        auto_truncate: args.auto_truncate,
    };
    let options = LoadOptions::inference(device, Autocast::new(args.precision, device));
    let dir: PathBuf = model.dir.clone();
    let make = move || -> Result<Engine> {
        Ok(match task {
            ServeTask::Predict if TaskKind::of(&model.config) == TaskKind::TokenClassification => Engine::Tagger {
                model: pretrained::load(&model, &options)?,
                aggregation: args.aggregation,
                stride: args.stride,
            },
            ServeTask::Predict => {
                let names = model.config.label_names();
                let thresholds = read_thresholds(&dir, &names)?;
                Engine::Classifier { model: pretrained::load(&model, &options)?, names, thresholds }
            }
            ServeTask::Embed => {
                // Normalisation is the request's choice (`normalize`, true by default, as TEI).
                let embedder = Embedder::load_as_saved(&model, args.pooling, Pooling::Mean, &options)?;
                Engine::Embedder { model: embedder.normalized(false).max_len(max_len) }
            }
            ServeTask::FillMask => Engine::FillMask { model: pretrained::load(&model, &options)?, top_k: args.top_k },
            ServeTask::Rerank => Engine::Reranker { model: pretrained::load(&model, &options)? },
            ServeTask::QuestionAnswering => Engine::Answerer {
                model: pretrained::load(&model, &options)?,
                decoding: args.decoding.decoding(&dir)?,
                stride: args.stride,
            },
        })
    };
    http::serve(make, settings).context("serving")
}

fn default_task(model: &ModelDir) -> ServeTask {
    let architectures = model.config.architectures();
    if architectures.iter().any(|a| a.ends_with("ForMaskedLM")) {
        ServeTask::FillMask
    } else if TaskKind::of(&model.config) == TaskKind::Rerank {
        ServeTask::Rerank
    } else if TaskKind::of(&model.config) == TaskKind::QuestionAnswering {
        ServeTask::QuestionAnswering
    } else if model.config.id2label().is_some()
        && architectures
            .iter()
            .any(|a| a.ends_with("ForSequenceClassification") || a.ends_with("ForTokenClassification"))
    {
        ServeTask::Predict
    } else {
        ServeTask::Embed
    }
}
