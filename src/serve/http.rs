//! The HTTP side: axum routes on a tokio runtime, limits (body size, inputs per request,
//! requests at once), errors as TEI writes them (`{"error": ..., "error_type": ...}`), and a
//! graceful shutdown on SIGINT/SIGTERM (no new connections; requests in flight are answered).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot};

use super::Settings;
use super::batcher::{self, Job, Limits, Refusal};
use super::engine::{Engine, Sequence};
use super::metrics::Metrics;
use super::reader::Reader;

struct App {
    jobs: mpsc::Sender<Job>,
    permits: Semaphore,
    metrics: Metrics,
    /// Checks and tokenises requests here, so the model thread only runs batches.
    reader: Reader,
    settings: Settings,
    /// False once the model thread has stopped (it panicked or failed to start).
    alive: Arc<AtomicBool>,
}

/// TEI's request: `inputs` is a text, a list, or (for /predict) a list of one- or two-text lists.
/// The settings come at the top level (TEI's clients) or under `parameters` (huggingface_hub's
/// `InferenceClient`); under `parameters` they win, and keys a route does not use are ignored.
#[derive(Deserialize)]
struct Request {
    inputs: Inputs,
    /// Absent: the server's `--auto-truncate`.
    truncate: Option<bool>,
    /// /embed: unit-length vectors (TEI's default).
    #[serde(default = "yes")]
    normalize: bool,
    #[serde(default)]
    parameters: Parameters,
}

#[derive(Deserialize, Default)]
struct Parameters {
    truncate: Option<bool>,
    normalize: Option<bool>,
}

/// OpenAI's embeddings request (`POST /v1/embeddings`), as the `openai` client and LangChain send it.
#[derive(Deserialize)]
struct OpenAiRequest {
    input: OpenAiInput,
    model: Option<String>,
    /// `float` (the default) or `base64` (little-endian float32, what the `openai` client asks for).
    encoding_format: Option<String>,
    /// Keep the first N dimensions, scaled back to unit length (as OpenAI's own models do).
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OpenAiInput {
    Text(String),
    List(Vec<String>),
}

/// A question-answering request (`POST /qa`), as huggingface_hub's `InferenceClient.question_answering`
/// sends it: `inputs` one `{question, context}` or a list of them.
#[derive(Deserialize)]
struct QaRequest {
    inputs: QaInputs,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QaInputs {
    One(QaInput),
    Many(Vec<QaInput>),
}

#[derive(Deserialize)]
struct QaInput {
    question: String,
    context: String,
}

/// TEI's rerank request (`POST /rerank`): one query and the passages to order. The settings
/// may also come under `parameters`, where they win.
#[derive(Deserialize)]
struct RerankRequest {
    query: String,
    texts: Vec<String>,
    /// The logits themselves instead of their sigmoid.
    #[serde(default)]
    raw_scores: bool,
    /// Each answer carries its passage.
    #[serde(default)]
    return_text: bool,
    truncate: Option<bool>,
    #[serde(default)]
    parameters: RerankParameters,
}

#[derive(Deserialize, Default)]
struct RerankParameters {
    raw_scores: Option<bool>,
    return_text: Option<bool>,
    truncate: Option<bool>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Inputs {
    Text(String),
    List(Vec<String>),
    Batch(Vec<Vec<String>>),
}

/// An error answer: the status and TEI's `{"error", "error_type"}` body.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let kind = match self.0 {
            StatusCode::TOO_MANY_REQUESTS => "Overloaded",
            StatusCode::INTERNAL_SERVER_ERROR | StatusCode::SERVICE_UNAVAILABLE => "Backend",
            _ => "Validation",
        };
        (self.0, Json(json!({"error": self.1, "error_type": kind}))).into_response()
    }
}

/// Starts the model thread, waits for the model, then serves until SIGINT/SIGTERM.
pub fn serve(make: impl FnOnce() -> Result<Engine> + Send + 'static, settings: Settings) -> Result<()> {
    let metrics = Metrics::new();
    let (jobs, queue) = mpsc::channel();
    let (ready_tx, ready) = mpsc::channel();
    let alive = Arc::new(AtomicBool::new(true));
    let limits = Limits { max_len: settings.max_len, max_batch_tokens: settings.max_batch_tokens };
    let (batch_metrics, flag) = (metrics.clone(), alive.clone());
    let worker = std::thread::spawn(move || {
        let _mark = Dead(flag);
        batcher::run(make, queue, limits, batch_metrics, ready_tx)
    });
    let reader = ready.recv().context("the model thread stopped while loading")??;
    let permits = Semaphore::new(settings.max_concurrent_requests);
    let app = Arc::new(App { jobs, permits, metrics, reader, settings, alive });
    // Requests are tokenised on the blocking pool: as many threads as HTTP workers (each thread
    // that allocates gets a malloc arena of its own; 32 of them cost 170 MB resident).
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(2).enable_all().build()?;
    runtime.block_on(listen(app))?;
    drop(runtime); // the last sender of the queue: the model thread's loop ends
    worker.join().map_err(|_| anyhow::anyhow!("the model thread panicked"))
}

/// Marks the model thread dead when it ends, however it ends.
struct Dead(Arc<AtomicBool>);

impl Drop for Dead {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

async fn listen(app: Arc<App>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&app.settings.address)
        .await
        .with_context(|| format!("listening on {}", app.settings.address))?;
    let (route, limit) = (app.reader.route, app.settings.payload_limit);
    // `POST /` answers the model's own task, as TEI does for clients given only the server's URL.
    let openai = if route == "/embed" { " /v1/embeddings" } else { "" };
    println!("listening on http://{} (POST {route} /{openai}, GET /health /info /metrics)", listener.local_addr()?);
    let mut router = match route {
        "/rerank" => Router::new().route(route, post(rerank)).route("/", post(rerank)),
        "/qa" => Router::new().route(route, post(qa)).route("/", post(qa)),
        _ => Router::new().route(route, post(answer)).route("/", post(answer)),
    };
    if route == "/embed" {
        router = router.route("/v1/embeddings", post(openai_embeddings));
    }
    let router = router
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    axum::serve(listener, router).with_graceful_shutdown(shutdown()).await?;
    tracing::info!("stopped: every request in flight was answered");
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: answering the requests in flight");
}

async fn health(State(app): State<Arc<App>>) -> Response {
    match app.alive.load(Ordering::SeqCst) {
        true => Json(json!({"status": "ok"})).into_response(),
        false => Failure(StatusCode::SERVICE_UNAVAILABLE, "the model thread has stopped".into()).into_response(),
    }
}

async fn info(State(app): State<Arc<App>>) -> Json<Value> {
    let s = &app.settings;
    Json(json!({
        "model_id": s.model_id, "task": app.reader.task, "route": app.reader.route,
        "max_input_length": s.max_len, "max_batch_tokens": s.max_batch_tokens,
        "max_client_batch_size": s.max_client_batch_size, "max_concurrent_requests": s.max_concurrent_requests,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics(State(app): State<Arc<App>>) -> String {
    app.metrics.text()
}

/// The model route: validate, queue, wait for the batch, shape the answer as TEI does.
async fn answer(State(app): State<Arc<App>>, body: Result<Json<Request>, JsonRejection>) -> Response {
    let start = Instant::now();
    let _counted = InFlight::new(&app.metrics.in_flight);
    let response = match respond(&app, body).await {
        Ok(value) => Json(value).into_response(),
        Err(failure) => failure.into_response(),
    };
    app.metrics.observe_request(app.reader.route, response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

/// Counts a request in flight until it is answered or its client goes away (axum then drops
/// the handler mid-await, so the count is undone on drop, not at the end of the handler).
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn respond(app: &App, body: Result<Json<Request>, JsonRejection>) -> Result<Value, Failure> {
    let Json(request) = body.map_err(|r| Failure(r.status(), r.body_text()))?;
    let truncate = request.parameters.truncate.or(request.truncate).unwrap_or(app.settings.auto_truncate);
    let normalize = request.parameters.normalize.unwrap_or(request.normalize);
    let (seqs, single) = sequences(app.reader.route, request.inputs)?;
    let (answers, _) = run_sequences(app, seqs, truncate).await?;
    let answers = if app.reader.route == "/embed" && normalize {
        answers.into_iter().map(unit_length).collect()
    } else {
        answers
    };
    Ok(match (single, app.reader.route) {
        (_, "/embed") => Value::Array(answers),
        (true, _) => answers.into_iter().next().unwrap_or(Value::Null),
        (false, _) => Value::Array(answers),
    })
}

/// The sequences checked, tokenised, queued and answered by the model thread: one answer per
/// sequence, and the tokens they came to.
async fn run_sequences(app: &App, seqs: Vec<Sequence>, truncate: bool) -> Result<(Vec<Value>, usize), Failure> {
    let _permit = app.permits.try_acquire().map_err(|_| {
        Failure(
            StatusCode::TOO_MANY_REQUESTS,
            format!("more than {} requests at once", app.settings.max_concurrent_requests),
        )
    })?;
    if seqs.is_empty() || seqs.len() > app.settings.max_client_batch_size {
        let most = app.settings.max_client_batch_size;
        return Err(Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{} inputs: a request carries 1 to {most}", seqs.len()),
        ));
    }
    let reader = app.reader.clone();
    let prepared = tokio::task::spawn_blocking(move || reader.prepare(seqs, truncate))
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the request: {e}")))?
        .map_err(refused)?;
    let tokens = prepared.tokens;
    let (reply, answer) = oneshot::channel();
    let job = Job { request: prepared, reply };
    app.jobs.send(job).map_err(|_| Failure(StatusCode::SERVICE_UNAVAILABLE, "the model thread has stopped".into()))?;
    match answer.await {
        Ok(Ok(answers)) => Ok((answers, tokens)),
        Ok(Err(refusal)) => Err(refused(refusal)),
        Err(_) => Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, "the model thread dropped the request".into())),
    }
}

/// `POST /rerank` as TEI answers it: every passage as `{index, score[, text]}`, best first; the
/// score is the sigmoid of the pair's logit (`raw_scores`: the logit).
async fn rerank(State(app): State<Arc<App>>, body: Result<Json<RerankRequest>, JsonRejection>) -> Response {
    let start = Instant::now();
    let _counted = InFlight::new(&app.metrics.in_flight);
    let response = match ranked(&app, body).await {
        Ok(value) => Json(value).into_response(),
        Err(failure) => failure.into_response(),
    };
    app.metrics.observe_request("/rerank", response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

async fn ranked(app: &App, body: Result<Json<RerankRequest>, JsonRejection>) -> Result<Value, Failure> {
    let Json(request) = body.map_err(|r| Failure(r.status(), r.body_text()))?;
    let settings = &request.parameters;
    let raw = settings.raw_scores.unwrap_or(request.raw_scores);
    let return_text = settings.return_text.unwrap_or(request.return_text);
    let truncate = settings.truncate.or(request.truncate).unwrap_or(app.settings.auto_truncate);
    let seqs = request.texts.iter().map(|t| Sequence { text: request.query.clone(), pair: Some(t.clone()) }).collect();
    let (logits, _) = run_sequences(app, seqs, truncate).await?;
    let mut scored: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let logit = l.as_f64().unwrap_or(f64::NAN);
            (i, if raw { logit } else { 1.0 / (1.0 + (-logit).exp()) })
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let answers = scored.into_iter().map(|(index, score)| match return_text {
        true => json!({"index": index, "score": score, "text": request.texts[index]}),
        false => json!({"index": index, "score": score}),
    });
    Ok(Value::Array(answers.collect()))
}

/// `POST /qa`: each question's answer in its context (`Engine::Answerer`); one input, one
/// answer, a list, a list.
async fn qa(State(app): State<Arc<App>>, body: Result<Json<QaRequest>, JsonRejection>) -> Response {
    let start = Instant::now();
    let _counted = InFlight::new(&app.metrics.in_flight);
    let response = match answered(&app, body).await {
        Ok(value) => Json(value).into_response(),
        Err(failure) => failure.into_response(),
    };
    app.metrics.observe_request("/qa", response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

async fn answered(app: &App, body: Result<Json<QaRequest>, JsonRejection>) -> Result<Value, Failure> {
    let Json(request) = body.map_err(|r| Failure(r.status(), r.body_text()))?;
    let (inputs, single) = match request.inputs {
        QaInputs::One(input) => (vec![input], true),
        QaInputs::Many(inputs) => (inputs, false),
    };
    let seqs = inputs.into_iter().map(|i| Sequence { text: i.question, pair: Some(i.context) }).collect();
    // Contexts are read whole, in windows: nothing is cut.
    let (answers, _) = run_sequences(app, seqs, true).await?;
    Ok(if single { answers.into_iter().next().unwrap_or(Value::Null) } else { Value::Array(answers) })
}

/// `POST /v1/embeddings` in OpenAI's shape: unit-length vectors as floats or base64, with the
/// tokens counted in `usage`; errors as OpenAI writes them (`{"error": {"message", "type"}}`).
async fn openai_embeddings(State(app): State<Arc<App>>, body: Result<Json<OpenAiRequest>, JsonRejection>) -> Response {
    let start = Instant::now();
    let _counted = InFlight::new(&app.metrics.in_flight);
    let response = match embeddings(&app, body).await {
        Ok(value) => Json(value).into_response(),
        Err(Failure(status, message)) => {
            let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
            (status, Json(json!({"error": {"message": message, "type": kind, "param": null, "code": null}})))
                .into_response()
        }
    };
    app.metrics.observe_request("/v1/embeddings", response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

async fn embeddings(app: &App, body: Result<Json<OpenAiRequest>, JsonRejection>) -> Result<Value, Failure> {
    let Json(request) = body.map_err(|r| Failure(r.status(), r.body_text()))?;
    let invalid = |why: String| Failure(StatusCode::UNPROCESSABLE_ENTITY, why);
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(invalid(format!("encoding_format {other:?}: float or base64"))),
    };
    let texts = match request.input {
        OpenAiInput::Text(text) => vec![text],
        OpenAiInput::List(texts) => texts,
    };
    let seqs = texts.into_iter().map(|text| Sequence { text, pair: None }).collect();
    let (answers, tokens) = run_sequences(app, seqs, app.settings.auto_truncate).await?;
    let mut data = Vec::with_capacity(answers.len());
    for (index, mut answer) in answers.into_iter().enumerate() {
        if let (Some(d), Some(vector)) = (request.dimensions, answer.as_array_mut()) {
            if d == 0 || d > vector.len() {
                return Err(invalid(format!("dimensions {d}: this model's vectors have 1 to {}", vector.len())));
            }
            vector.truncate(d);
        }
        let unit = unit_length(answer);
        let vector: Vec<f32> =
            unit.as_array().into_iter().flatten().filter_map(Value::as_f64).map(|x| x as f32).collect();
        let embedding = match base64 {
            true => {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes))
            }
            false => json!(vector),
        };
        data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
    }
    let model = request.model.unwrap_or_else(|| app.settings.model_id.clone());
    Ok(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
}

/// A refusal as the HTTP status that says whose fault it is.
fn refused(refusal: Refusal) -> Failure {
    match refusal {
        Refusal::TooLong(why) => Failure(StatusCode::PAYLOAD_TOO_LARGE, why),
        Refusal::Invalid(why) => Failure(StatusCode::UNPROCESSABLE_ENTITY, why),
        Refusal::Failed(why) => Failure(StatusCode::INTERNAL_SERVER_ERROR, why),
    }
}

/// The request's sequences, and whether it was one input (answered with one answer, not a list).
/// `/predict` reads a list as one sequence (a text, or a pair) and a list of lists as a batch;
/// `/embed` and `/fill-mask` read a list as a batch of texts.
fn sequences(route: &str, inputs: Inputs) -> Result<(Vec<Sequence>, bool), Failure> {
    let one = |text: String| Sequence { text, pair: None };
    let pair_or_text = |mut v: Vec<String>| match v.len() {
        1 => Ok(one(v.remove(0))),
        2 => Ok(Sequence { pair: v.pop(), text: v.remove(0) }),
        n => Err(Failure(StatusCode::UNPROCESSABLE_ENTITY, format!("a sequence is one text or a pair, not {n} texts"))),
    };
    match (route, inputs) {
        (_, Inputs::Text(text)) => Ok((vec![one(text)], true)),
        ("/predict", Inputs::List(v)) => Ok((vec![pair_or_text(v)?], true)),
        (_, Inputs::List(v)) => Ok((v.into_iter().map(one).collect(), false)),
        ("/predict", Inputs::Batch(vv)) => Ok((vv.into_iter().map(pair_or_text).collect::<Result<_, _>>()?, false)),
        (_, Inputs::Batch(_)) => {
            Err(Failure(StatusCode::UNPROCESSABLE_ENTITY, "inputs: a text or a list of texts".into()))
        }
    }
}

/// A vector scaled to length 1 (as TEI's `normalize`).
fn unit_length(v: Value) -> Value {
    let xs: Vec<f64> = v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    let norm = xs.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    Value::Array(xs.iter().map(|x| json!(x / norm)).collect())
}
