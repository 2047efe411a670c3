//! Multiple choice from files: fine-tuning (`FineTune` hands over here for `--task
//! multiple-choice`, SWAG/RACE-style data or a `{Family}ForMultipleChoice` checkpoint),
//! evaluating (accuracy) and predicting (each question's choice and every choice's probability).

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::finetune::{FineTune as FinetuneArgs, Trained};
use super::session;
use crate::data::OnBadRow;
use crate::data::multiple_choice::{ChoiceQuestion, ChoiceSet, read_choices};
use crate::distributed::Spread;
use crate::predict::Evaluation;
use crate::predict::multiple_choice::Chooser;
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::task::TaskKind;
use crate::tokenizer::Tokenizer;
use crate::train::MultipleChoiceTraining;
use crate::train::model_card::{DataFile, ModelCard};
use crate::train::run_dir::RunDir;
use crate::train::train;

/// Reads questions, reporting skipped ones.
fn read(path: &Path, on_bad: OnBadRow) -> Result<Vec<ChoiceQuestion>> {
    let (questions, skipped) = read_choices(path, on_bad)?;
    if !skipped.is_empty() {
        tracing::warn!("{}: skipped {} bad questions, e.g. {}", path.display(), skipped.len(), skipped[0]);
    }
    Ok(questions)
}

/// Questions tokenised at `max_len`, saying how many pairs were cut.
fn tokenised(tok: &Tokenizer, questions: Vec<ChoiceQuestion>, max_len: usize, role: &str) -> Result<ChoiceSet> {
    let set = ChoiceSet::new(tok, questions, max_len)?;
    tracing::info!("{role}: {} questions of {} choices", set.questions.len(), set.choices);
    if set.truncated > 0 {
        tracing::warn!("{role}: {} of {} pairs longer than --max-len {max_len}, cut", set.truncated, set.pairs.len());
    }
    Ok(set)
}

pub(crate) fn finetune(
    args: &FinetuneArgs,
    mut model: ModelDir,
    device: tch::Device,
    new_head: bool,
) -> Result<Trained> {
    let cfg = &args.cfg;
    if args.class_weights.is_some() || args.pos_weight.is_some() || args.loss.is_some() || args.tune_thresholds {
        crate::error::refuse!(
            "--class-weights, --pos-weight, --loss and --tune-thresholds do not apply to multiple choice"
        );
    }
    let max_len = model.max_len(args.data.max_len)?;
    let on_bad = args.data.on_bad_row;
    let train_questions = read(&args.train, on_bad)?;
    let (train_questions, eval_questions) = match (&args.eval, args.eval_split) {
        (Some(path), _) => (train_questions, Some(read(path, on_bad)?)),
        (None, Some(f)) => super::finetune::split(train_questions, f, cfg.hyper.seed).map(|(t, e)| (t, Some(e)))?,
        (None, None) => (train_questions, None),
    };
    if let Some(q) = train_questions.iter().find(|q| q.label.is_none()) {
        crate::error::refuse!("{}: a training question needs its right choice (\"label\")", q.at);
    }
    // Another task's head is never read as this one's (a one-logit classifier would load).
    let new_head = new_head || TaskKind::of(&model.config) != TaskKind::MultipleChoice;
    // The head has one output whatever the checkpoint's labels were: say so as transformers'
    // default config does, not with a classifier's label names.
    model.config.set_labels(&["LABEL_0".to_string(), "LABEL_1".to_string()]);
    model.config.remove("problem_type");
    let card = card_data(args, &train_questions, eval_questions.as_deref());
    // Pairs first: a bad question stops the run before anything is written.
    let tokenizer = Tokenizer::from_dir(&model.dir)?;
    let train_set = tokenised(&tokenizer, train_questions, max_len, "train")?;
    let eval_set = eval_questions.map(|q| tokenised(&tokenizer, q, max_len, "eval")).transpose()?;
    if let Some(e) = eval_set.as_ref().filter(|e| e.choices != train_set.choices) {
        crate::error::refuse!(
            "{}: {} choices a question, where the training data has {}",
            args.eval_name(),
            e.choices,
            train_set.choices
        );
    }

    let run = RunDir::new(&cfg.control);
    run.prepare()?;
    let options = session::load_options(cfg, device, new_head);
    let chooser: Chooser = pretrained::load(&model, &options)?;
    let batch_size = session::global_batch(cfg);
    let num_batches = train_set.questions.len().div_ceil(batch_size);
    let task = MultipleChoiceTraining {
        chooser,
        train: train_set,
        eval: eval_set,
        batch_size,
        sampling: cfg.hyper.train_sampling_strategy,
    };
    let outcome = train(&task, cfg, options.autocast, num_batches)?;
    let card = ModelCard {
        base_model: &args.model,
        pipeline_tag: "multiple-choice",
        task: "multiple-choice",
        data: card,
        hyper: &cfg.hyper,
    };
    session::finish(outcome, cfg, &card)
}

/// The data files for the model card: questions, by their right choice's index.
fn card_data(args: &FinetuneArgs, train: &[ChoiceQuestion], eval: Option<&[ChoiceQuestion]>) -> Vec<DataFile> {
    args.card_files(train, eval, |role, path, questions| {
        let mut counts = std::collections::BTreeMap::new();
        for q in questions {
            *counts.entry(q.label.map_or("none".to_string(), |l| format!("choice {l}"))).or_insert(0u64) += 1;
        }
        DataFile { role, path, examples: questions.len(), labels: counts.into_iter().collect() }
    })
}

/// `evaluate` of a chooser: accuracy and the loss.
pub fn evaluate(
    model: &ModelDir,
    data: &Path,
    max_len: usize,
    on_bad: OnBadRow,
    options: &LoadOptions,
    batch_size: usize,
) -> Result<Evaluation> {
    let questions = read(data, on_bad)?;
    let chooser: Chooser = pretrained::load(model, options)?;
    let set = tokenised(&chooser.tokenizer, questions, max_len, &data.display().to_string())?;
    chooser.evaluate_set(&set, batch_size, Spread::Ranks)
}

/// `predict` of a chooser: a JSON line per question with the chosen index and text, and every
/// choice's probability.
pub fn predict(
    chooser: &Chooser,
    input: &Path,
    max_len: usize,
    on_bad: OnBadRow,
    batch_size: usize,
) -> Result<Vec<u8>> {
    let questions = read(input, on_bad)?;
    let set = tokenised(&chooser.tokenizer, questions, max_len, &input.display().to_string())?;
    let (probs, _) = chooser.probabilities(&set, batch_size, Spread::Alone)?;
    let probs = Vec::<Vec<f64>>::try_from(&probs)?;
    let mut out = Vec::new();
    for (q, p) in set.questions.iter().zip(probs) {
        let best = crate::predict::argmax(&p.iter().map(|&x| x as f32).collect::<Vec<_>>());
        let line = json!({"id": q.id, "label": best, "choice": q.choices[best], "probabilities": p});
        writeln!(out, "{line}")?;
    }
    Ok(out)
}

/// Whether a fine-tuning run trains a multiple-choice head: --task says so, else the training
/// file holds choices, else (for data of no task of its own) the checkpoint's head is one.
pub(crate) fn is_multiple_choice(task: Option<TaskKind>, train: &Path, model: &ModelDir, new_head: bool) -> bool {
    use crate::data::{multiple_choice, question_answering};
    match task {
        Some(task) => task == TaskKind::MultipleChoice,
        None if multiple_choice::is_multiple_choice(train) => true,
        None if question_answering::is_question_answering(train) => false,
        None => !new_head && TaskKind::of(&model.config) == TaskKind::MultipleChoice,
    }
}
