//! Fine-tuning: a sequence-level head (one class, a set of classes or a score per text), a
//! token-classification head (`--task token-classification`, CoNLL data:
//! `token_classification.rs`), extractive question answering (`--task question-answering`,
//! SQuAD data: `question_answering.rs`) or sentence embeddings (`--task embedding`: `embedding.rs`), from
//! labelled files to a saved model with its model card.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::data_flags::DataFlags;
use super::session;
use crate::data::{Example, LabelSet, LongText, Targets, infer_task};
use crate::device::Autocast;
use crate::distributed::Spread;
use crate::predict::{Classifier, Decision, Evaluation, LabelledSet, read_thresholds, write_thresholds};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::task::embedding::EmbeddingLoss;
use crate::task::{RerankLoss, SIGMOID, TaskKind, set_cross_encoder};
use crate::train::SequenceClassification;
use crate::train::loss_weights::{WeightSpec, loss_weights};
use crate::train::model_card::{DataFile, ModelCard};
use crate::train::run_dir::RunDir;
use crate::train::{Outcome, Stop, TrainConfig, train};
use crate::values::open_fraction;

/// A fine-tuning run: the model, the data, how to read it, and the training configuration. Its
/// fields are `bertkit finetune`'s flags; [`FineTune::new`] gives their defaults in code. A run
/// sets libtorch's process-wide seed and thread count as it starts, as the command does: run
/// one training recipe at a time in a process.
///
/// ```
/// use bertkit::recipes::FineTune;
///
/// let output = tempfile::tempdir()?;
/// let mut run = FineTune::new("tests/fixtures/tiny-bert", "data/demo/imdb/train.csv", output.path())?;
/// run.data.text_column = "review".into(); // the file's columns: review, sentiment
/// run.data.label_column = "sentiment".into();
/// run.eval_split = Some(0.1);
/// run.new_head = true; // this data's labels, not the checkpoint's
/// run.cfg.hyper.max_steps = Some(2);
/// run.cfg.control.overwrite = true; // the directory exists (empty)
/// let trained = run.run()?;
/// assert!(trained.outcome.best.is_some());
/// assert!(output.path().join("model.safetensors").exists());
/// # anyhow::Ok(())
/// ```
#[derive(clap::Args, Clone, Debug)]
pub struct FineTune {
    /// Model to start from: a directory or a hub id (an MLM or classification checkpoint works).
    #[arg(long)]
    pub model: String,
    /// Labelled training data.
    #[arg(long)]
    pub train: PathBuf,
    /// Held-out labelled data for evaluation during training.
    #[arg(long, conflicts_with = "eval_split")]
    pub eval: Option<PathBuf>,
    /// Hold out this fraction of --train (shuffled with --seed) for evaluation instead.
    #[arg(long, value_parser = open_fraction)]
    pub eval_split: Option<f64>,
    /// What to predict. By default the model's head says, else the data: label lists or
    /// --label-separator/--label-columns mean multi-label, CoNLL files token classification;
    /// numeric labels that are not all integers need the flag.
    #[arg(long, value_enum)]
    pub task: Option<TaskKind>,
    /// Replace the checkpoint's classification head with a fresh one for this data's labels.
    #[arg(long)]
    pub new_head: bool,
    /// Weighted cross-entropy (classification): `balanced` (n / (classes x count), as
    /// scikit-learn) or a JSON file {label: weight}. Logged and saved as loss_weights.json.
    #[arg(long)]
    pub class_weights: Option<WeightSpec>,
    /// Positive-class weight per label (multi-label BCE): `balanced` (negatives / positives)
    /// or a JSON file {label: weight}.
    #[arg(long)]
    pub pos_weight: Option<WeightSpec>,
    /// Multi-label: after training, pick each label's threshold on the evaluation data (best F1)
    /// and save them beside the model (thresholds.json); evaluate and predict use them.
    #[arg(long)]
    pub tune_thresholds: bool,
    /// The loss of --task embedding: mnrl (the default: anchor, positive[, negatives], in-batch
    /// negatives), mnrl-symmetric, cosent or cosine-mse (two texts and a score in
    /// --label-column). Of --task rerank: bce (the default: each pair against its relevance)
    /// or listnet (each query's candidates as one list; --batch-size counts queries).
    #[arg(long, value_enum)]
    pub loss: Option<Loss>,
    #[command(flatten)]
    pub data: DataFlags,
    #[command(flatten)]
    pub tags: super::token_classification::TagFlags,
    #[command(flatten)]
    pub embedding: super::embedding::EmbeddingFlags,
    #[command(flatten)]
    pub qa: super::question_answering::QaFlags,
    #[command(flatten)]
    pub cfg: TrainConfig,
}

/// `--loss`: the losses of the tasks that have a choice (embedding, rerank).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    Mnrl,
    MnrlSymmetric,
    Cosent,
    CosineMse,
    Bce,
    Listnet,
}

impl Loss {
    /// The flag's spelling (`mnrl-symmetric`).
    fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map_or_else(String::new, |v| v.get_name().to_string())
    }
}

/// What a training run left: how it ended, where the model is, and (`--tune-thresholds`) the
/// evaluation at the tuned thresholds and the file beside the model that holds them.
pub struct Trained {
    pub outcome: Outcome,
    pub output: PathBuf,
    pub tuned: Option<(PathBuf, Evaluation)>,
}

impl FineTune {
    /// `model` (a directory or hub id) fine-tuned on `train` into `output`, every other setting
    /// at its flag's default (the task from the data, 3 epochs, batch 16, lr 5e-5, seed 42).
    pub fn new(model: &str, train: impl AsRef<Path>, output: impl AsRef<Path>) -> Result<FineTune> {
        let (train, output) = (train.as_ref().display().to_string(), output.as_ref().display().to_string());
        crate::values::from_flags(&["--model", model, "--train", &train, "--output", &output])
    }

    /// Trains and saves; data problems are reported before anything is written.
    pub fn run(&self) -> Result<Trained> {
        let cfg = &self.cfg;
        let device = session::start(cfg)?;
        // A checkpoint being resumed carries the head this run created.
        let new_head = self.new_head && cfg.control.resume_from.is_none();
        let mut model = session::open_model(cfg, &self.model)?;
        session::set_dropout(cfg, &mut model)?;
        if self.task == Some(TaskKind::Embedding) {
            return super::embedding::finetune(self, model, device);
        }
        // Before question answering: choices with a context and a question are not a span task.
        if super::multiple_choice::is_multiple_choice(self.task, &self.train, &model, new_head) {
            return super::multiple_choice::finetune(self, model, device, new_head);
        }
        if self.is_question_answering(&model, new_head) {
            return super::question_answering::finetune(self, model, device, new_head);
        }
        if super::token_classification::is_tagging(self, &model, new_head)? {
            return super::token_classification::finetune(self, model, device, new_head);
        }
        self.sequence_classification(model, device, new_head)
    }

    /// Whether this run trains a question-answering head: --task says so, else the training
    /// file holds questions with contexts, else the checkpoint's head is one.
    fn is_question_answering(&self, model: &ModelDir, new_head: bool) -> bool {
        if let Some(task) = self.task {
            return task == TaskKind::QuestionAnswering;
        }
        if crate::data::question_answering::is_question_answering(&self.train) {
            return true;
        }
        !new_head && TaskKind::of(&model.config) == TaskKind::QuestionAnswering
    }

    /// The loss of an embedding task (--loss, MNRL by default).
    pub fn embedding_loss(&self) -> Result<EmbeddingLoss> {
        Ok(match self.loss {
            None | Some(Loss::Mnrl) => EmbeddingLoss::Mnrl,
            Some(Loss::MnrlSymmetric) => EmbeddingLoss::MnrlSymmetric,
            Some(Loss::Cosent) => EmbeddingLoss::Cosent,
            Some(Loss::CosineMse) => EmbeddingLoss::CosineMse,
            Some(other) => {
                crate::error::refuse!(
                    "--loss {}: --task embedding takes mnrl, mnrl-symmetric, cosent or cosine-mse",
                    other.name()
                )
            }
        })
    }

    /// The loss of a sequence-level task: a reranker's (--loss, BCE by default); the others
    /// have their task's own loss and refuse the flag.
    fn rerank_loss(&self, kind: TaskKind) -> Result<RerankLoss> {
        match (kind, self.loss) {
            (TaskKind::Rerank, None | Some(Loss::Bce)) | (_, None) => Ok(RerankLoss::Bce),
            (TaskKind::Rerank, Some(Loss::Listnet)) => Ok(RerankLoss::Listnet),
            (TaskKind::Rerank, Some(other)) => {
                crate::error::refuse!("--loss {}: --task rerank takes bce or listnet", other.name())
            }
            (_, Some(other)) => crate::error::refuse!(
                "--loss {}: --task {} has its own loss (--loss is for --task embedding and rerank)",
                other.name(),
                kind.name()
            ),
        }
    }

    /// The model card's data files: --train's and the evaluation data's (where there is some),
    /// each described by `file` (role, path, the data).
    pub(crate) fn card_files<T: ?Sized>(
        &self,
        train: &T,
        eval: Option<&T>,
        file: impl Fn(&'static str, String, &T) -> DataFile,
    ) -> Vec<DataFile> {
        let mut data = vec![file("train", self.train.display().to_string(), train)];
        data.extend(eval.map(|eval| file("eval", self.eval_name(), eval)));
        data
    }

    /// The evaluation data as the model card names it: --eval, or the share held out of --train.
    pub fn eval_name(&self) -> String {
        self.eval.as_ref().map_or(format!("{} (held out)", self.train.display()), |e| e.display().to_string())
    }
}

/// Splits off `fraction` of the examples (at least one) after a seeded shuffle.
pub fn split<T>(mut examples: Vec<T>, fraction: f64, seed: u64) -> Result<(Vec<T>, Vec<T>)> {
    if examples.len() < 2 {
        crate::error::refuse!(
            "--eval-split: {} example(s) cannot be split into training and held-out data",
            examples.len()
        );
    }
    examples.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let held = ((examples.len() as f64 * fraction).round() as usize).clamp(1, examples.len().saturating_sub(1));
    let train = examples.split_off(held);
    Ok((train, examples))
}

/// Splits off `fraction` of the queries (at least one) with all their candidates, after a
/// seeded shuffle of the distinct query texts; the rows keep their order.
fn split_queries(examples: Vec<Example>, fraction: f64, seed: u64) -> Result<(Vec<Example>, Option<Vec<Example>>)> {
    let mut queries: Vec<&str> = vec![];
    let mut seen = std::collections::HashSet::new();
    for e in &examples {
        if seen.insert(e.text.as_str()) {
            queries.push(e.text.as_str());
        }
    }
    let (_, held) = split(queries, fraction, seed)?;
    let held: std::collections::HashSet<String> = held.into_iter().map(str::to_string).collect();
    let (eval, train): (Vec<Example>, Vec<Example>) = examples.into_iter().partition(|e| held.contains(&e.text));
    Ok((train, Some(eval)))
}

impl FineTune {
    /// One class, a set of classes or a score per text.
    fn sequence_classification(&self, mut model: ModelDir, device: tch::Device, new_head: bool) -> Result<Trained> {
        let cfg = &self.cfg;
        let max_len = model.max_len(self.data.max_len)?;
        let data = self.read_texts(&mut model, new_head)?;

        // Only now that the data is known to be good is anything written.
        let run = RunDir::new(&cfg.control);
        run.prepare()?;
        let options = session::load_options(cfg, device, new_head);
        let classifier: Classifier = pretrained::load(&model, &options)?;
        if let Some(odds) = data.train_targets.log_prior_odds() {
            start_at_prior_odds(&classifier, &odds);
        }
        warn_if_pooler_untrained(&classifier);
        let encode = |examples: &[Example], targets, role: &str| {
            self.data.encode(&classifier.tokenizer, examples, targets, max_len, role)
        };
        let train_set = encode(&data.train, data.train_targets, "train")?;
        let eval_set = data.eval.zip(data.eval_targets).map(|(e, t)| encode(&e, t, "eval")).transpose()?;
        let (kind, names) = (data.kind, data.labels.names());
        tracing::info!("task {} | labels: {} | device {device:?}", kind.name(), names.join(", "));
        if let Some(w) = &data.weights {
            tracing::info!("loss weights: {w:?}");
            run.write_json("loss_weights.json", &serde_json::json!({"labels": names, "weights": w}))?;
        }

        let batch_size = session::global_batch(cfg);
        let lists = match data.loss {
            RerankLoss::Listnet => Some(query_lists(&train_set)),
            RerankLoss::Bce => None,
        };
        let units = lists.as_ref().map_or(train_set.items.len(), Vec::len);
        let num_batches = units.div_ceil(batch_size);
        let task = SequenceClassification {
            classifier,
            train: train_set,
            eval: eval_set,
            batch_size,
            sampling: cfg.hyper.train_sampling_strategy,
            loss_weights: data.weights.map(|w| tch::Tensor::from_slice(&w).to_device(device)),
            pool: self.data.window_pool,
            lists,
        };
        let outcome = train(&task, cfg, options.autocast, num_batches)?;
        let finished = !matches!(outcome.stop, Stop::Interrupted { .. });
        let tuned = match self.tune_thresholds && crate::distributed::is_main() && finished {
            true => Some((
                cfg.control.output.join(crate::predict::THRESHOLDS_FILE),
                tune_thresholds(&cfg.control.output, task.eval.as_ref().expect("checked"), batch_size * 2, device)?,
            )),
            false => None,
        };
        let card = ModelCard {
            base_model: &self.model,
            pipeline_tag: if kind == TaskKind::Rerank { "text-ranking" } else { "text-classification" },
            task: kind.name(),
            data: data.card,
            hyper: &cfg.hyper,
        };
        Ok(Trained { tuned, ..session::finish(outcome, cfg, &card)? })
    }

    /// The texts, their task, labels and targets, read and checked before anything is written;
    /// the labels and `problem_type` go into `model`'s config.
    fn read_texts(&self, model: &mut ModelDir, new_head: bool) -> Result<TextData> {
        let (train, eval) = read_data(&self.data, &self.train, self.eval.as_deref(), None, self.cfg.hyper.seed)?;
        let kind = task_kind(self.task, &self.data, model, &train, new_head)?;
        let (train, eval) = match (self.eval_split, kind) {
            // A query's candidates stay together: held-out queries are unseen ones.
            (Some(fraction), TaskKind::Rerank) => split_queries(train, fraction, self.cfg.hyper.seed)?,
            (Some(fraction), _) => split(train, fraction, self.cfg.hyper.seed).map(|(t, e)| (t, Some(e)))?,
            (None, _) => (train, eval),
        };
        let loss = self.rerank_loss(kind)?;
        if kind == TaskKind::Rerank && self.data.long_text != LongText::Truncate {
            crate::error::refuse!("--long-text: a reranker reads each (query, passage) pair once, truncated");
        }
        let labels = label_set(kind, model, &train, new_head, &self.data, &self.train)?;
        model.config.set_labels(labels.names());
        model.config.set("problem_type", kind.problem_type().into());
        if kind == TaskKind::Rerank {
            set_cross_encoder(&mut model.config, SIGMOID);
        }
        let train_targets = Targets::new(kind, &train, &labels, "training")?;
        let eval_targets = eval.as_deref().map(|e| Targets::new(kind, e, &labels, "training")).transpose()?;
        let file = |role, path, examples: &[Example], targets| DataFile {
            role,
            path,
            examples: examples.len(),
            labels: label_counts(targets, &labels),
        };
        let mut card = vec![file("train", self.train.display().to_string(), &train, &train_targets)];
        if let (Some(examples), Some(targets)) = (&eval, &eval_targets) {
            card.push(file("eval", self.eval_name(), examples, targets));
        }
        let weights =
            loss_weights(kind, self.class_weights.as_ref(), self.pos_weight.as_ref(), &train_targets, &labels)?;
        if self.tune_thresholds && (kind != TaskKind::MultiLabel || eval_targets.is_none()) {
            crate::error::refuse!(
                "--tune-thresholds needs a multi-label task and evaluation data (--eval or --eval-split)"
            );
        }
        Ok(TextData { kind, loss, labels, train, train_targets, eval, eval_targets, weights, card })
    }
}

/// Each query's candidates (items of `set`), queries in order of first appearance.
fn query_lists(set: &LabelledSet) -> Vec<Vec<usize>> {
    let Targets::Relevance { query_of, .. } = &set.targets else { unreachable!("listnet is refused but for rerank") };
    let mut lists = vec![vec![]; query_of.iter().max().map_or(0, |&q| q + 1)];
    for (item, &example) in set.doc_of.iter().enumerate() {
        lists[query_of[example]].push(item);
    }
    lists
}

/// A text-level run's data, read and checked.
struct TextData {
    kind: TaskKind,
    labels: LabelSet,
    train: Vec<Example>,
    train_targets: Targets,
    eval: Option<Vec<Example>>,
    eval_targets: Option<Targets>,
    /// Class or positive weights of the loss (`--class-weights`, `--pos-weight`).
    weights: Option<Vec<f32>>,
    /// The data files as the model card lists them.
    card: Vec<DataFile>,
    /// A reranker's loss (BCE for the other tasks, whose loss is their own).
    loss: RerankLoss,
}

/// A fresh multi-label head starts each label's bias at its log prior odds in the training data
/// (as detection heads start rare classes), not at 0: at 0 every label starts at probability
/// 0.5, and binary cross-entropy spends the first steps pushing all of them down, on little
/// data until the model predicts no label at all. Still a plain bias of a transformers head.
fn start_at_prior_odds(classifier: &Classifier, odds: &[f32]) {
    let head = classifier.family.heads.classifier;
    if !classifier.report.initialised.iter().any(|name| name.starts_with(head)) {
        return; // the checkpoint's own head: trained already
    }
    classifier.model.start_bias_at(odds);
    let shown: Vec<String> = odds.iter().take(5).map(|o| format!("{o:.2}")).collect();
    tracing::info!(
        "multi-label head: biases start at each label's log prior odds in the training data ({}{})",
        shown.join(", "),
        if odds.len() > 5 { ", ..." } else { "" }
    );
}

/// A pooler whose bias is exactly zero was never trained (training moves every bias): so in
/// sentence-transformers models such as all-MiniLM-L6-v2, which pool the tokens otherwise. A
/// BERT-style classifier reads it all the same, and then learns more slowly.
fn warn_if_pooler_untrained(classifier: &Classifier) {
    let vars = classifier.vs.variables();
    let Some((name, bias)) = vars.iter().find(|(n, _)| n.ends_with("pooler.dense.bias")) else { return };
    if classifier.report.initialised.contains(name) || bias.abs().max().double_value(&[]) != 0.0 {
        return;
    }
    tracing::warn!(
        "{name} is all zeros, as initialised: this checkpoint's pooler, which the classifier reads, was \
         probably never trained (sentence-transformers models pool otherwise); expect the head to learn \
         slowly: more epochs or a higher --lr help"
    );
}

/// (label, examples carrying it) for the model card; nothing for scores.
fn label_counts(targets: &Targets, labels: &LabelSet) -> Vec<(String, u64)> {
    let names = labels.names().iter().enumerate();
    match targets {
        Targets::Classes(ids) => {
            names.map(|(i, n)| (n.clone(), ids.iter().filter(|&&x| x == i as i64).count() as u64)).collect()
        }
        Targets::Sets(rows) => {
            names.map(|(i, n)| (n.clone(), rows.iter().filter(|r| r[i] > 0.5).count() as u64)).collect()
        }
        Targets::Scores(_) => vec![],
        Targets::Relevance { relevance, .. } => {
            vec![("relevant".into(), relevance.iter().filter(|&&r| r > 0.5).count() as u64)]
        }
    }
}

/// Training examples and, from --eval or --eval-split, held-out ones.
pub fn read_data(
    data: &DataFlags,
    train: &Path,
    eval: Option<&Path>,
    eval_split: Option<f64>,
    seed: u64,
) -> Result<(Vec<Example>, Option<Vec<Example>>)> {
    let train_data = data.read(train, true)?.examples;
    Ok(match (eval, eval_split) {
        (Some(path), _) => (train_data, Some(data.read(path, true)?.examples)),
        (None, Some(fraction)) => {
            let (t, e) = split(train_data, fraction, seed)?;
            (t, Some(e))
        }
        (None, None) => (train_data, None),
    })
}

/// The task: --task, else the head the checkpoint has, else what the data says.
pub fn task_kind(
    task: Option<TaskKind>,
    data: &DataFlags,
    model: &ModelDir,
    train: &[Example],
    new_head: bool,
) -> Result<TaskKind> {
    let saved = (!new_head && model.has_classifier()?).then(|| TaskKind::of(&model.config));
    Ok(match (task, saved) {
        (Some(flag), Some(head)) if flag != head => crate::error::refuse!(
            "--task {} but {} has a {} head; pass --new-head to replace it",
            flag.name(),
            model.dir.display(),
            head.name()
        ),
        (Some(flag), _) => flag,
        (None, Some(head)) => head,
        (None, None) => infer_task(train, data.label_sets())?,
    })
}

/// A checkpoint's head keeps its label ids; otherwise the training data defines them (a
/// regression head has one output, named after the label column).
pub fn label_set(
    kind: TaskKind,
    model: &ModelDir,
    train: &[Example],
    new_head: bool,
    data: &DataFlags,
    train_path: &Path,
) -> Result<LabelSet> {
    let path = train_path.display();
    let labels = match (model.config.id2label(), !new_head && model.has_classifier()?) {
        (Some(names), true) => {
            let set = LabelSet::new(names.to_vec());
            Targets::new(kind, train, &set, "model's")
                .map_err(|e| e.context("the model already has a classification head; pass --new-head to replace it"))?;
            set
        }
        _ if kind == TaskKind::Regression => LabelSet::new(vec![data.label_column.clone()]),
        // sentence-transformers' CrossEncoder names its one output so.
        _ if kind == TaskKind::Rerank => LabelSet::new(vec!["LABEL_0".into()]),
        _ => LabelSet::from_examples(train),
    };
    match kind {
        TaskKind::Classification if labels.len() < 2 => {
            bail!("{path}: only one label ({}) in the training data", labels.names().join(", "))
        }
        TaskKind::MultiLabel if labels.is_empty() => bail!("{path}: no example carries a label"),
        _ => Ok(labels),
    }
}

/// Picks per-label thresholds for the saved (best) model on the evaluation set, writes them
/// beside it (`THRESHOLDS_FILE`), and returns the evaluation they give.
fn tune_thresholds(output: &Path, eval: &LabelledSet, batch_size: usize, device: tch::Device) -> Result<Evaluation> {
    let model = ModelDir::open(&output.display().to_string())?;
    let classifier: Classifier = pretrained::load(&model, &LoadOptions::inference(device, Autocast::off()))?;
    let probs =
        Vec::<Vec<f32>>::try_from(classifier.outputs(&classifier.logits(&eval.items, batch_size, Spread::Alone)?))?;
    let Targets::Sets(gold) = &eval.targets else {
        crate::error::refuse!("--tune-thresholds: not multi-label targets")
    };
    let gold: Vec<Vec<bool>> = gold.iter().map(|r| r.iter().map(|&v| v > 0.5).collect()).collect();
    let thresholds = crate::metrics::tune_thresholds(&probs, &gold);
    let names = model.config.label_names();
    write_thresholds(output, &names, &thresholds)?;
    let decision = Decision { thresholds: read_thresholds(output, &names)?, ..Decision::default() };
    classifier.evaluate_set(eval, batch_size, &decision, Spread::Alone)
}
