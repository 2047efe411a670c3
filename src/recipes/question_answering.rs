//! Extractive question answering from files: fine-tuning (`FineTune` hands over here for
//! `--task question-answering` or a `{Family}ForQuestionAnswering` checkpoint), evaluating and
//! predicting, on SQuAD JSON or flat JSONL. The decoding settings a model was tuned with (its
//! null threshold) are kept beside it in `question_answering.json`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::finetune::{FineTune as FinetuneArgs, Trained};
use super::session;
use crate::data::OnBadRow;
use crate::data::question_answering::{NullWindows, QaData, QaSet, read_questions};
use crate::distributed::Spread;
use crate::fsutil::atomic_write;
use crate::predict::Evaluation;
use crate::predict::question_answering::{DECODING_FILE, Decoding, DecodingFlags, Reader};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::train::QuestionAnswering;
use crate::train::model_card::{DataFile, ModelCard};
use crate::train::run_dir::RunDir;
use crate::train::train;

/// Question-answering training's own flags.
#[derive(clap::Args, Clone, Debug)]
pub struct QaFlags {
    #[command(flatten)]
    pub decoding: DecodingFlags,
    /// Question answering: training windows that hold no answer to keep: all, balanced (as
    /// many as hold one, as CUAD trains), or a share in (0, 1], drawn with --seed.
    #[arg(long, default_value = "all")]
    pub null_windows: NullWindows,
    /// Question answering: also CUAD's measures (AUPR, precision at 80% and 90% recall over
    /// the n-best answers' probabilities); the best checkpoint is then the one of best AUPR.
    #[arg(long)]
    pub cuad_metrics: bool,
}

/// Reads questions, reporting skipped ones.
fn read(path: &Path, on_bad: OnBadRow) -> Result<QaData> {
    let (data, skipped) = read_questions(path, on_bad)?;
    if !skipped.is_empty() {
        tracing::warn!("{}: skipped {} bad questions, e.g. {}", path.display(), skipped.len(), skipped[0]);
    }
    Ok(data)
}

/// Splits off `fraction` of the contexts (at least one) with all their questions, after a
/// seeded shuffle: held-out questions ask about unseen contexts.
fn split_contexts(data: QaData, fraction: f64, seed: u64) -> Result<(QaData, QaData)> {
    let (_, held) = super::finetune::split((0..data.contexts.len()).collect(), fraction, seed)?;
    let held: std::collections::HashSet<usize> = held.into_iter().collect();
    let part = |keep: bool| {
        let mut out = QaData::default();
        let mut index = std::collections::HashMap::new();
        for q in data.questions.iter().filter(|q| held.contains(&q.context) == keep) {
            let c = *index.entry(q.context).or_insert_with(|| {
                out.contexts.push(data.contexts[q.context].clone());
                out.contexts.len() - 1
            });
            out.questions.push(crate::data::question_answering::Question { context: c, ..q.clone() });
        }
        out
    };
    Ok((part(false), part(true)))
}

pub(crate) fn finetune(
    args: &FinetuneArgs,
    mut model: ModelDir,
    device: tch::Device,
    new_head: bool,
) -> Result<Trained> {
    let cfg = &args.cfg;
    if args.class_weights.is_some() || args.pos_weight.is_some() || args.loss.is_some() {
        crate::error::refuse!("--class-weights, --pos-weight and --loss do not apply to question answering");
    }
    let max_len = model.max_len(args.data.max_len)?;
    let stride = args.data.stride;
    let on_bad = args.data.on_bad_row;
    let train_data = read(&args.train, on_bad)?;
    let (train_data, eval_data) = match (&args.eval, args.eval_split) {
        (Some(path), _) => (train_data, Some(read(path, on_bad)?)),
        (None, Some(f)) => split_contexts(train_data, f, cfg.hyper.seed).map(|(t, e)| (t, Some(e)))?,
        (None, None) => (train_data, None),
    };
    if let Some(q) = train_data.questions.iter().find(|q| !q.has_gold) {
        crate::error::refuse!("{}: a training question needs \"answers\" (an empty list where it has none)", q.at);
    }
    if args.tune_thresholds && eval_data.is_none() {
        crate::error::refuse!("--tune-thresholds needs evaluation data (--eval or --eval-split)");
    }
    // Another task's head is never read as this one's (ModernBERT names both `classifier`: a
    // two-class classifier's weights would load silently).
    let new_head = new_head || crate::task::TaskKind::of(&model.config) != crate::task::TaskKind::QuestionAnswering;
    // transformers' question-answering heads have two outputs, whatever the checkpoint had.
    model.config.set_labels(&["LABEL_0".to_string(), "LABEL_1".to_string()]);
    model.config.remove("problem_type");
    let decoding = args.qa.decoding.decoding(&model.dir)?;
    let card = card_data(args, &train_data, eval_data.as_ref());
    // Windows first: a question too long for --max-len stops the run before anything is written.
    let tokenizer = crate::tokenizer::Tokenizer::from_dir(&model.dir)?;
    let mut train_set = QaSet::new(&tokenizer, train_data, max_len, stride)?;
    let eval_set = eval_data.map(|d| QaSet::new(&tokenizer, d, max_len, stride)).transpose()?;

    let run = RunDir::new(&cfg.control);
    run.prepare()?;
    let options = session::load_options(cfg, device, new_head);
    let reader: Reader = pretrained::load(&model, &options)?;
    let dropped = train_set.thin_null_windows(args.qa.null_windows, cfg.hyper.seed);
    let answered = train_set.windows.iter().filter(|w| w.target != (0, 0)).count();
    tracing::info!(
        "train: {} questions in {} windows of at most {max_len} tokens ({answered} hold an answer; {dropped} without one left out)",
        train_set.data.questions.len(),
        train_set.windows.len()
    );
    if let Some(e) = &eval_set {
        tracing::info!("eval: {} questions in {} windows", e.data.questions.len(), e.windows.len());
    }
    let batch_size = session::global_batch(cfg);
    let num_batches = train_set.windows.len().div_ceil(batch_size);
    let task = QuestionAnswering {
        reader,
        train: train_set,
        eval: eval_set,
        decoding,
        cuad: args.qa.cuad_metrics,
        batch_size,
        sampling: cfg.hyper.train_sampling_strategy,
    };
    let outcome = train(&task, cfg, options.autocast, num_batches)?;
    let finished = !matches!(outcome.stop, crate::train::Stop::Interrupted { .. });
    let tuned = match (args.tune_thresholds && finished && crate::distributed::is_main(), &task.eval) {
        (true, Some(eval)) => Some((
            cfg.control.output.join(DECODING_FILE),
            tune_null_threshold(&cfg.control.output, eval, &task, device)?,
        )),
        _ => None,
    };
    let card = ModelCard {
        base_model: &args.model,
        pipeline_tag: "question-answering",
        task: "question-answering",
        data: card,
        hyper: &cfg.hyper,
    };
    Ok(Trained { tuned, ..session::finish(outcome, cfg, &card)? })
}

/// The saved model's null threshold of best F1 on the evaluation questions (SQuAD's
/// `best_f1_thresh`), written to question_answering.json; the evaluation at that threshold.
fn tune_null_threshold(
    output: &Path,
    eval: &QaSet,
    task: &QuestionAnswering,
    device: tch::Device,
) -> Result<Evaluation> {
    let model = ModelDir::open(&output.display().to_string())?;
    let reader: Reader = pretrained::load(&model, &LoadOptions::inference(device, task.reader.autocast))?;
    let (scores, loss_sum) = reader.window_scores(eval, &task.decoding, task.batch_size * 2, Spread::Alone)?;
    let answered = reader.answers(eval, &scores, &task.decoding);
    let loss = loss_sum / eval.windows.len().max(1) as f64;
    let first = crate::predict::question_answering::evaluation(eval, &answered, &task.decoding, task.cuad, loss)?;
    let decoding = Decoding { null_threshold: first.metrics["best_f1_thresh"], ..task.decoding };
    let tuned = crate::predict::question_answering::evaluation(eval, &answered, &decoding, task.cuad, loss)?;
    let json = json!({"null_threshold": decoding.null_threshold, "n_best": decoding.n_best,
        "max_answer_len": decoding.max_answer_len, "f1": tuned.metrics["f1"]});
    atomic_write(&output.join(DECODING_FILE), serde_json::to_string_pretty(&json)?.as_bytes())?;
    tracing::info!(
        "null threshold {:.4}: F1 {:.2} on the evaluation questions",
        decoding.null_threshold,
        tuned.metrics["f1"]
    );
    Ok(tuned)
}

/// The data files for the model card: questions, and how many have an answer.
fn card_data(args: &FinetuneArgs, train: &QaData, eval: Option<&QaData>) -> Vec<DataFile> {
    args.card_files(train, eval, |role, path, data| {
        let answered = data.questions.iter().filter(|q| !q.answers.is_empty()).count() as u64;
        let unanswerable = data.questions.len() as u64 - answered;
        let labels = vec![("answered".to_string(), answered), ("unanswerable".to_string(), unanswerable)];
        DataFile { role, path, examples: data.questions.len(), labels }
    })
}

/// How evaluate and predict read questions, cut windows and decode.
pub struct Reading<'a> {
    pub decoding: &'a DecodingFlags,
    pub max_len: usize,
    pub stride: usize,
    pub on_bad: OnBadRow,
}

/// `evaluate` of a reader: SQuAD's exact match and F1 (CUAD's measures with `cuad`).
pub fn evaluate(
    model: &ModelDir,
    data: &Path,
    how: &Reading,
    cuad: bool,
    options: &LoadOptions,
    batch_size: usize,
) -> Result<Evaluation> {
    let questions = read(data, how.on_bad)?;
    let reader: Reader = pretrained::load(model, options)?;
    let set = QaSet::new(&reader.tokenizer, questions, how.max_len, how.stride)?;
    tracing::info!("{}: {} questions in {} windows", data.display(), set.data.questions.len(), set.windows.len());
    let decoding = how.decoding.decoding(&model.dir)?;
    reader.evaluate_set(&set, &decoding, cuad, batch_size, Spread::Ranks)
}

/// `predict` of a reader: a JSON line per question with its answer ("" for none), every answer
/// that beats no answer (`answers`), and the n best with their probabilities.
pub fn predict(reader: &Reader, input: &Path, how: &Reading, batch_size: usize) -> Result<Vec<u8>> {
    let questions = read(input, how.on_bad)?;
    let set = QaSet::new(&reader.tokenizer, questions, how.max_len, how.stride)?;
    let decoding = how.decoding.decoding(reader.dir())?;
    let (scores, _) = reader.window_scores(&set, &decoding, batch_size, Spread::Alone)?;
    let mut out = Vec::new();
    for (q, a) in set.data.questions.iter().zip(reader.answers(&set, &scores, &decoding)) {
        let line = json!({"id": q.id, "question": q.question, "answer": a.best(decoding.null_threshold),
            "answers": a.answers(decoding.null_threshold), "n_best": a.n_best,
            "null_score": a.null_score, "null_probability": a.null_probability});
        writeln!(out, "{line}")?;
    }
    Ok(out)
}
