//! `bertkit explain`: which tokens of a text a fine-tuned model's output depends on, by
//! integrated gradients, gradient × input and attention rollout, for any head and any text
//! length (a reader: which tokens of the question and context its answer's start and end depend
//! on); with `--compare`, the same text and targets through a second model (before and after
//! fine-tuning).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::data::question_answering::{QaData, QaSet};
use crate::device::{Autocast, DeviceFlags};
use crate::distributed::Spread;
use crate::explain::text::{
    Baseline, Document, Method, Settings, TargetExplanation, explain, method_name, predicted_targets, question_text,
};
use crate::explain::{Explained, Output, Target};
use crate::fsutil::atomic_write;
use crate::predict::question_answering::{Answer, DecodingFlags, Reader};
use crate::pretrained::{self, LoadOptions, ModelDir, Pretrained};
use crate::task::{SequenceClassifier, TaskKind, TokenClassifier};
use crate::tokenizer::Tokenizer;
use crate::values::{positive, sequence_length};
use crate::viz::attribution::{page, render_text};

#[derive(clap::Args)]
pub struct Explain {
    /// A fine-tuned model directory or hub id (classification, multi-label, regression, token
    /// classification or question answering).
    #[arg(long)]
    pub model: String,
    /// The text to explain (a question-answering model: the context).
    #[arg(long, required_unless_present = "text_file", conflicts_with = "text_file")]
    pub text: Option<String>,
    /// Read the text from this file instead (UTF-8).
    #[arg(long)]
    pub text_file: Option<PathBuf>,
    /// The question asked about the text (a question-answering model; required there).
    #[arg(long)]
    pub question: Option<String>,
    /// What to explain: a label (name or index) of a sequence-level head, an entity type of a
    /// token-level one, an answer (its text, one of the n best) of a reader; repeat for
    /// several. Default: the prediction (every predicted label, every entity, every answer that
    /// beats no answer, else no answer).
    #[arg(long)]
    pub target: Vec<String>,
    /// Methods, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Method::IntegratedGradients, Method::GradientXInput, Method::Rollout])]
    pub method: Vec<Method>,
    /// Integration points of integrated gradients (trapezoidal rule).
    #[arg(long, default_value_t = 50, value_parser = at_least_two)]
    pub steps: usize,
    /// What integrated gradients starts from: the text's words replaced by padding or mask.
    #[arg(long, value_enum, default_value_t = Baseline::Pad)]
    pub baseline: Baseline,
    /// The output explained: the probability people read, or the logit.
    #[arg(long, value_enum, default_value_t = Output::Probability)]
    pub output: Output,
    /// Integration points per forward pass (memory against speed).
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub chunk: usize,
    /// A second model (e.g. before fine-tuning) explained on the same targets; one without the
    /// head gets a fresh one with the first model's labels (seeded by --seed).
    #[arg(long)]
    pub compare: Option<String>,
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    /// The picture: .png, .svg or .html.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write every number (per window too) as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Window length in tokens; a longer text is read in windows. Default: 512, or the model's
    /// positions if fewer.
    #[arg(long, value_parser = sequence_length)]
    pub max_len: Option<usize>,
    /// Tokens shared by consecutive windows (at most half a window; a reader's --doc-stride).
    #[arg(long, alias = "doc-stride", default_value_t = 128, value_parser = positive)]
    pub stride: usize,
    #[command(flatten)]
    pub decoding: DecodingFlags,
    #[command(flatten)]
    pub run: DeviceFlags,
}

fn at_least_two(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 2")),
    }
}

/// A model with the head it was fine-tuned with.
enum Head {
    Sequence(Pretrained<SequenceClassifier>),
    Tokens(Pretrained<TokenClassifier>),
    Spans(Reader),
}

/// What a reader's targets are called: the start and end logits (labels 0 and 1).
const SPAN_LABELS: [&str; 2] = ["start", "end"];

impl Head {
    fn load(model: &ModelDir, device: tch::Device) -> Result<Head> {
        let opts = LoadOptions::inference(device, Autocast::off());
        Ok(match TaskKind::of(&model.config) {
            TaskKind::TokenClassification => Head::Tokens(pretrained::load(model, &opts)?),
            TaskKind::QuestionAnswering => Head::Spans(pretrained::load(model, &opts)?),
            TaskKind::MultipleChoice => crate::error::refuse!(
                "--model {}: explaining a multiple-choice model is not supported yet",
                model.dir.display()
            ),
            _ => Head::Sequence(pretrained::load(model, &opts)?),
        })
    }
    fn explained(&self) -> &dyn Explained {
        match self {
            Head::Sequence(m) => &m.model,
            Head::Tokens(m) => &m.model,
            Head::Spans(m) => &m.model,
        }
    }
    fn tokenizer(&self) -> &Tokenizer {
        match self {
            Head::Sequence(m) => &m.tokenizer,
            Head::Tokens(m) => &m.tokenizer,
            Head::Spans(m) => &m.tokenizer,
        }
    }
    fn labels(&self) -> Vec<String> {
        match self {
            Head::Sequence(m) => m.config.label_names(),
            Head::Tokens(m) => m.config.label_names(),
            Head::Spans(_) => SPAN_LABELS.map(String::from).to_vec(),
        }
    }
}

/// The first model: it must have been fine-tuned (a head to explain).
fn open_fine_tuned(spec: &str) -> Result<ModelDir> {
    let model = ModelDir::open(spec)?;
    if !model.has_task_head()? {
        crate::error::refuse!(
            "--model {spec}: has no task head to explain (fine-tune it first; --compare takes a model without one)"
        );
    }
    Ok(model)
}

fn read_text(args: &Explain) -> Result<String> {
    match (&args.text, &args.text_file) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(p)) => std::fs::read_to_string(p).with_context(|| format!("--text-file {}", p.display())),
        (None, None) => crate::error::refuse!("--text or --text-file is required"),
    }
}

/// The targets named by --target, or the prediction's.
fn choose_targets(args: &Explain, head: &Head, doc: &Document, device: tch::Device) -> Result<Vec<Target>> {
    let labels = head.labels();
    // Named labels of a sequence-level head need no prediction; entities are found first.
    if args.target.is_empty() || matches!(head, Head::Tokens(_)) {
        let predicted = predicted_targets(head.explained(), doc, &labels, device);
        let named = |t: &Target| args.target.iter().any(|k| t.name.starts_with(&format!("{k} [")));
        return Ok(predicted.into_iter().filter(|t| args.target.is_empty() || named(t)).collect());
    }
    args.target
        .iter()
        .map(|name| {
            let label = labels
                .iter()
                .position(|l| l == name)
                .or_else(|| name.parse().ok().filter(|&i: &usize| i < labels.len()));
            let Some(label) = label else {
                crate::error::refuse!("--target {name}: the model's labels are {}", labels.join(", "))
            };
            Ok(Target::label(&labels[label], label as i64))
        })
        .collect()
}

/// The first model's targets in the second model's label numbering (by label name).
fn targets_in(targets: &[Target], first_labels: &[String], head: &Head, spec: &str) -> Result<Vec<Target>> {
    let labels = head.labels();
    targets
        .iter()
        .map(|t| {
            let name = &first_labels[t.label as usize];
            let Some(label) = labels.iter().position(|l| l == name) else {
                crate::error::refuse!("--compare {spec}: has no label {name:?} (its labels: {})", labels.join(", "))
            };
            Ok(Target { label: label as i64, ..t.clone() })
        })
        .collect()
}

/// What `Explain::explain` found: the text in windows and, per model, each target's scores by
/// each method.
pub struct Explanation {
    pub text: String,
    pub doc: Document,
    pub explained: Vec<(String, Vec<TargetExplanation>)>,
    pub settings: Settings,
}

impl Explain {
    /// Runs the job as `bertkit explain` does: the summary on standard output, the picture in
    /// `--out`, the scores in `--json`.
    pub fn run(self) -> Result<()> {
        let ext = crate::viz::picture_format(&self.out)?;
        let Explanation { text, doc, explained, settings } = self.explain()?;
        print_summary(&doc, &explained);
        let figure = crate::explain::text::figure(&text, &doc, &explained, &settings);
        match ext {
            "html" => atomic_write(&self.out, page(&figure).as_bytes())?,
            _ => render_text(&self.out, &figure)?,
        }
        eprintln!("wrote {}", self.out.display());
        if let Some(path) = &self.json {
            write_json(path, &text, &doc, &explained, &settings)?;
        }
        Ok(())
    }

    /// The attributions of the text's targets, by every method asked, through the model and
    /// (`--compare`) the second one.
    pub fn explain(&self) -> Result<Explanation> {
        let args = self;
        let device = args.run.setup()?;
        let text = read_text(args)?;
        let model = open_fine_tuned(&args.model)?;
        let compared = match &args.compare {
            Some(spec) => {
                let mut other = ModelDir::open(spec)?;
                other.adopt_head(&model, args.seed)?;
                Some(other)
            }
            None => None,
        };
        let max_len = model.max_len(args.max_len)?;
        let head = Head::load(&model, device)?;
        let settings = Settings {
            methods: args.method.clone(),
            output: args.output,
            steps: args.steps,
            chunk: args.chunk,
            baseline_id: args.baseline.token_id(head.tokenizer()),
        };
        let (doc, set, shown) = self.document(&head, &text, max_len)?;
        if doc.windows.len() > 1 {
            tracing::info!(
                "the text has {} tokens: explained in {} windows of {max_len}",
                doc.ids.len(),
                doc.windows.len()
            );
        }
        let targets = self.targets(&head, &doc, set.as_ref(), &settings, device)?;
        let mut explained = vec![(model.display_name(), explain(head.explained(), &doc, &targets, &settings, device)?)];
        if let (Some(spec), Some(dir)) = (&args.compare, &compared) {
            let other = Head::load(dir, device)?;
            if matches!(head, Head::Spans(_)) != matches!(other, Head::Spans(_)) {
                crate::error::refuse!(
                    "--compare {spec}: one model answers questions and the other does not; compare a reader with a \
                     reader, or with a base model without a head"
                );
            }
            if self.document(&other, &text, max_len)?.0.ids != doc.ids {
                crate::error::refuse!(
                    "--compare {spec}: its tokenizer reads the text differently from {}'s; attributions could not be set side by side",
                    args.model
                );
            }
            let targets = targets_in(&targets, &head.labels(), &other, spec)?;
            explained.push((dir.display_name(), explain(other.explained(), &doc, &targets, &settings, device)?));
        }
        Ok(Explanation { text: shown, doc, explained, settings })
    }

    /// The text as `head`'s model reads it, in windows of `max_len` tokens, and the text its
    /// offsets count in: a reader's is the question and the text as its context (and the
    /// windows it answers from).
    fn document(&self, head: &Head, text: &str, max_len: usize) -> Result<(Document, Option<QaSet>, String)> {
        let tok = head.tokenizer();
        match (head, &self.question) {
            (Head::Spans(_), Some(question)) => {
                let set = QaSet::new(tok, QaData::unanswered([(question.as_str(), text)]), max_len, self.stride)?;
                if set.windows.is_empty() {
                    crate::error::refuse!("--text: the context is empty; there is nothing to answer from");
                }
                Ok((Document::question(tok, &set)?, Some(set), question_text(question, text)))
            }
            (Head::Spans(_), None) => crate::error::refuse!(
                "--model {}: a question-answering model explains its answer to a question: --question is required",
                self.model
            ),
            (_, Some(_)) => crate::error::refuse!("--question: {} is not a question-answering model", self.model),
            (_, None) => Ok((Document::new(tok, text, max_len, self.stride)?, None, text.to_string())),
        }
    }

    /// The targets to explain (`--target`, else the prediction), with a warning when they make
    /// many integrated-gradient runs.
    fn targets(
        &self,
        head: &Head,
        doc: &Document,
        set: Option<&QaSet>,
        settings: &Settings,
        device: tch::Device,
    ) -> Result<Vec<Target>> {
        let targets = match (head, set) {
            (Head::Spans(reader), Some(set)) => span_targets(self, reader, set, doc)?,
            _ => choose_targets(self, head, doc, device)?,
        };
        if targets.is_empty() {
            bail!(
                "nothing to explain: the model finds no entity in the text{}",
                if self.target.is_empty() { "" } else { " of the --target types" }
            );
        }
        let runs: usize = targets.iter().map(|t| t.window.map_or(doc.windows.len(), |_| 1)).sum();
        if runs > 20 && settings.methods.contains(&Method::IntegratedGradients) {
            tracing::warn!(
                "{} targets in {} windows: up to {runs} integrated-gradient runs of {} steps each (--target narrows them)",
                targets.len(),
                doc.windows.len(),
                settings.steps
            );
        }
        Ok(targets)
    }
}

/// A reader's targets: where each answer named by --target (else each answer it gives) starts
/// and ends, in the window it was read from; where it gives none, what no answer is read from
/// (start and end at the first token) in the window surest of it, whose score is the question's.
fn span_targets(args: &Explain, reader: &Reader, set: &QaSet, doc: &Document) -> Result<Vec<Target>> {
    let decoding = args.decoding.decoding(reader.dir())?;
    let (scores, _) = reader.window_scores(set, &decoding, 8, Spread::Alone)?;
    let found = reader.answers(set, &scores, &decoding).remove(0);
    let chosen: Vec<&Answer> = if args.target.is_empty() {
        found.answers(decoding.null_threshold)
    } else {
        let named = |text: &String| found.n_best.iter().find(|a| &a.text == text);
        let best: Vec<String> = found.n_best.iter().take(5).map(|a| format!("{:?}", a.text)).collect();
        args.target
            .iter()
            .map(|t| match named(t) {
                Some(a) => Ok(a),
                None => crate::error::refuse!(
                    "--target {t:?}: not among the model's {} best answers (the first: {})",
                    decoding.n_best,
                    if best.is_empty() { "none".to_string() } else { best.join(", ") }
                ),
            })
            .collect::<Result<_>>()?
    };
    let side = |label: usize, name: String, position: usize, window: usize| Target {
        name,
        label: label as i64,
        positions: vec![doc.windows[window][position] as i64],
        window: Some(window),
    };
    if chosen.is_empty() {
        let surest = (0..scores.len()).min_by(|&a, &b| scores[a].null.total_cmp(&scores[b].null)).unwrap_or(0);
        return Ok((0..2).map(|l| side(l, format!("no answer ({})", SPAN_LABELS[l]), 0, surest)).collect());
    }
    Ok(chosen
        .iter()
        .flat_map(|a| {
            let positions = [a.tokens.0, a.tokens.1];
            (0..2).map(move |l| {
                side(l, format!("{} of {:?} [{}..{}]", SPAN_LABELS[l], a.text, a.start, a.end), positions[l], a.window)
            })
        })
        .collect())
}

/// Per model, target and method, the tokens that count most.
fn print_summary(doc: &Document, explained: &[(String, Vec<TargetExplanation>)]) {
    for (model, targets) in explained {
        for t in targets {
            println!("{model} · {} (output {:.4})", t.target, t.output);
            for m in &t.methods {
                let mut order: Vec<usize> = (0..m.scores.len()).filter(|&i| doc.special[i] == 0).collect();
                order.sort_by(|&a, &b| m.scores[b].abs().total_cmp(&m.scores[a].abs()));
                let top: Vec<String> =
                    order.iter().take(5).map(|&i| format!("{} {:+.4}", doc.tokens[i], m.scores[i])).collect();
                let completeness =
                    m.completeness_error.map_or(String::new(), |e| format!(" [completeness error {:.2}%]", e * 100.0));
                println!("  {:22} {}{completeness}", method_name(m.method), top.join(", "));
                if let Some(e) = m.completeness_error.filter(|&e| e > 0.05) {
                    // DeBERTa-v3's padding row is zero and no positions are added: after the
                    // layer norm, every point of the path but the first is the same input.
                    tracing::warn!(
                        "{model}: integrated gradients miss {:.0}% of the output's change: raise --steps, or try \
                         --baseline mask (a padding baseline whose embedding is zero jumps at its start)",
                        e * 100.0
                    );
                }
            }
        }
    }
}

fn write_json(
    path: &Path,
    text: &str,
    doc: &Document,
    explained: &[(String, Vec<TargetExplanation>)],
    s: &Settings,
) -> Result<()> {
    let models: Vec<_> = explained.iter().map(|(m, t)| json!({"model": m, "targets": t})).collect();
    let out = json!({
        "text": text,
        "tokens": doc.tokens,
        "offsets": doc.offsets,
        "windows": doc.windows.iter().map(|w| runs(w)).collect::<Vec<_>>(),
        "output": s.output,
        "steps": s.steps,
        "models": models,
    });
    atomic_write(path, serde_json::to_string(&out)?.as_bytes())
}

/// Document positions as runs of consecutive ones, `[first, last]` each: how the JSON says which
/// tokens a window holds (the template's, the question's, its piece of the text).
fn runs(positions: &[usize]) -> Vec<[usize; 2]> {
    let mut out: Vec<[usize; 2]> = Vec::new();
    for &p in positions {
        match out.last_mut() {
            Some(run) if run[1] + 1 == p => run[1] = p,
            _ => out.push([p, p]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows_are_written_as_runs_of_positions() {
        assert_eq!(super::runs(&[0, 5, 6, 7, 12]), vec![[0, 0], [5, 7], [12, 12]]);
        assert_eq!(super::runs(&[]), Vec::<[usize; 2]>::new());
    }
}
