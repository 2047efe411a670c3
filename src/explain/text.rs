//! One text explained by one model, whatever its length: the text as tokens with their character
//! offsets, cut into windows of `max_len` tokens where it is longer (each window `[CLS] … [SEP]`,
//! consecutive ones sharing `stride` tokens); every method run on every window, and each token's
//! attribution the mean over the windows that hold it. A question and its context are one
//! document too (`Document::question`): run_qa's windows, each the question and a piece of the
//! context.

use std::ops::Range;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use super::rollout::rollout_at;
use super::{Attribution, Explained, Output, Target, baseline_ids, gradient_x_input, integrated_gradients, outputs};
use crate::data::long_text::{window_ranges, window_room};
use crate::data::question_answering::QaSet;
use crate::encoder::Inputs;
use crate::task::TaskKind;
use crate::tokenizer::Tokenizer;
use crate::viz::attribution::{Figure, Row};

/// The ways a token's share in an output is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Integrated gradients on the word embeddings.
    IntegratedGradients,
    /// Gradient × input on the word embeddings.
    GradientXInput,
    /// Attention rollout (no target: what reaches the target's positions).
    Rollout,
}

/// What integrated gradients starts from: the text with its words replaced by padding or mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    Pad,
    Mask,
}

impl Baseline {
    pub fn token_id(self, tok: &Tokenizer) -> u32 {
        match self {
            Baseline::Pad => tok.pad_id,
            Baseline::Mask => tok.mask_id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub methods: Vec<Method>,
    pub output: Output,
    pub steps: usize,
    /// Integration points per forward pass.
    pub chunk: usize,
    /// The token that replaces the words in integrated gradients' baseline.
    pub baseline_id: u32,
}

/// A text as the model reads it.
pub struct Document {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// Character offsets of each token in the text ((0, 0) for special tokens).
    pub offsets: Vec<(usize, usize)>,
    /// 1 at special tokens.
    pub special: Vec<u32>,
    /// Which word each token belongs to (None at special tokens, and in a question's document).
    pub word_ids: Vec<Option<u32>>,
    /// The token type ids (a question's context is the second segment).
    pub type_ids: Vec<u32>,
    /// Each window's token positions in the document.
    pub windows: Vec<Vec<usize>>,
}

/// The text of a question's document: its offsets are characters of this.
pub fn question_text(question: &str, context: &str) -> String {
    format!("{question}\n{context}")
}

impl Document {
    /// The text tokenised: whole with the tokenizer's own special tokens where it fits in
    /// `max_len`, else `[CLS]` + its tokens + `[SEP]` read in windows.
    pub fn new(tok: &Tokenizer, text: &str, max_len: usize, stride: usize) -> Result<Document> {
        let plain = tok.encode_plain(&[text])?.remove(0);
        let e = if plain.len() <= window_room(max_len) {
            tok.encode_batch(&[text], None, max_len)?.remove(0)
        } else {
            plain
        };
        let mut doc = Document {
            ids: e.get_ids().to_vec(),
            tokens: e.get_tokens().to_vec(),
            offsets: e.get_offsets().to_vec(),
            special: e.get_special_tokens_mask().to_vec(),
            word_ids: e.get_word_ids().to_vec(),
            type_ids: vec![0; e.len()],
            windows: vec![(0..e.len()).collect()],
        };
        if e.len() > window_room(max_len) {
            doc.wrap(tok, window_ranges(e.len(), max_len, stride));
        }
        Ok(doc)
    }

    /// Adds `[CLS]` and `[SEP]` around the plain tokens and one window per range.
    fn wrap(&mut self, tok: &Tokenizer, ranges: Vec<Range<usize>>) {
        let name = |id: u32| tok.id_to_token(id).unwrap_or_default();
        let n = self.ids.len();
        self.ids = [&[tok.cls_id][..], &self.ids, &[tok.sep_id]].concat();
        self.tokens = [vec![name(tok.cls_id)], std::mem::take(&mut self.tokens), vec![name(tok.sep_id)]].concat();
        self.offsets = [vec![(0, 0)], std::mem::take(&mut self.offsets), vec![(0, 0)]].concat();
        self.special = [vec![1], vec![0; n], vec![1]].concat();
        self.word_ids = [vec![None], std::mem::take(&mut self.word_ids), vec![None]].concat();
        self.type_ids = vec![0; n + 2];
        self.windows =
            ranges.into_iter().map(|r| [vec![0], (r.start + 1..r.end + 1).collect(), vec![n + 1]].concat()).collect();
    }

    /// The one question of `set` and its context, as a reader reads them: the template and the
    /// question, the whole context, the template's end; window `w` of the set is the template
    /// and question, its piece of the context, the end. Offsets are characters of
    /// `question_text`.
    pub fn question(tok: &Tokenizer, set: &QaSet) -> Result<Document> {
        let first = set.encoding(tok, 0)?;
        let q = &set.data.questions[0];
        let context = &set.contexts[q.context];
        let (at, n) = (set.context_start(0), context.ids.len());
        let tail = first.len() - at - set.windows[0].piece.len();
        let ends = first.len() - tail..first.len();
        let shift = q.question.chars().count() + 1;
        let template = |v: &[u32], middle: Vec<u32>| [&v[..at], &middle, &v[ends.clone()]].concat();
        let question_offsets = first
            .get_offsets()
            .iter()
            .zip(first.get_sequence_ids())
            .map(|(&o, s)| if s == Some(0) { o } else { (0, 0) });
        let question_offsets: Vec<(usize, usize)> = question_offsets.collect();
        let ids = template(first.get_ids(), context.ids.clone());
        Ok(Document {
            tokens: ids.iter().map(|&id| tok.id_to_token(id).unwrap_or_default()).collect(),
            offsets: [
                &question_offsets[..at],
                &context.offsets.iter().map(|&(a, b)| (a + shift, b + shift)).collect::<Vec<_>>(),
                &question_offsets[ends.clone()],
            ]
            .concat(),
            special: template(first.get_special_tokens_mask(), vec![0; n]),
            word_ids: vec![None; ids.len()],
            type_ids: template(first.get_type_ids(), vec![first.get_type_ids().get(at).copied().unwrap_or(0); n]),
            windows: set
                .windows
                .iter()
                .map(|w| (0..at).chain(at + w.piece.start..at + w.piece.end).chain(at + n..at + n + tail).collect())
                .collect(),
            ids,
        })
    }

    /// Each token as shown in a picture: its characters of the text, after a space where the
    /// text had a gap before it; special tokens by name.
    pub fn pieces(&self, text: &str) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut end = 0;
        (0..self.ids.len())
            .map(|i| {
                let (a, b) = self.offsets[i];
                if self.special[i] == 1 || b <= a || b > chars.len() {
                    return if i == 0 { format!("{} ", self.tokens[i]) } else { format!(" {}", self.tokens[i]) };
                }
                let gap = if a > end && end > 0 { " " } else { "" };
                end = end.max(b);
                format!("{gap}{}", chars[a..b].iter().collect::<String>())
            })
            .collect()
    }

    /// One window as model inputs (one row, no padding).
    pub fn window_inputs(&self, w: usize, device: Device) -> Inputs {
        let row = |v: &[u32]| Tensor::from_slice(&self.windows[w].iter().map(|&p| v[p] as i64).collect::<Vec<_>>());
        let ids = row(&self.ids).view([1, -1]);
        Inputs::new(ids.shallow_clone(), ids.ones_like(), row(&self.type_ids).view([1, -1])).to_device(device)
    }

    /// Per document token, the mean over the windows that hold it of their values
    /// (`per_window[i]`, `[window length, ...]`, from window `windows[i]`): `[tokens, ...]`,
    /// 0 where no window gave one.
    fn mean_over_windows(&self, windows: &[usize], per_window: &[Tensor]) -> Tensor {
        let mut shape = per_window[0].size();
        shape[0] = self.ids.len() as i64;
        let mut sum = Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu));
        let mut count = sum.zeros_like();
        for (&w, values) in windows.iter().zip(per_window) {
            let index = Tensor::from_slice(&self.windows[w].iter().map(|&p| p as i64).collect::<Vec<_>>());
            let _ = sum.index_add_(0, &index, values);
            let _ = count.index_add_(0, &index, &values.ones_like());
        }
        sum / count.clamp_min(1.0)
    }

    /// The text's logits: the mean over windows (sequence-level head, `[labels]`), or per token
    /// the mean over the windows that hold it (`[seq, labels]`).
    pub fn logits(&self, model: &dyn Explained, device: Device) -> Tensor {
        let per_window: Vec<Tensor> = (0..self.windows.len())
            .map(|w| tch::no_grad(|| model.logits(&self.window_inputs(w, device))).get(0).to_device(Device::Cpu))
            .collect();
        if per_window[0].dim() == 1 {
            return Tensor::stack(&per_window, 0).mean_dim(0, false, Kind::Float);
        }
        self.mean_over_windows(&(0..self.windows.len()).collect::<Vec<_>>(), &per_window)
    }
}

/// Per target, per method: the document's attributions and each window's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetExplanation {
    pub target: String,
    /// The target's output on the whole text (mean over windows).
    pub output: f64,
    pub methods: Vec<MethodResult>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodResult {
    pub method: Method,
    /// One per document token (0 where no window explained it).
    pub scores: Vec<f32>,
    /// The windows that hold the target, in order, with their own attributions.
    pub windows: Vec<Attribution>,
    /// Integrated gradients: the largest completeness error over the windows.
    pub completeness_error: Option<f64>,
}

/// Explains each target on the document with every method of `settings`.
pub fn explain(
    model: &dyn Explained,
    doc: &Document,
    targets: &[Target],
    settings: &Settings,
    device: Device,
) -> Result<Vec<TargetExplanation>> {
    targets.iter().map(|t| explain_target(model, doc, t, settings, device)).collect()
}

fn explain_target(
    model: &dyn Explained,
    doc: &Document,
    target: &Target,
    s: &Settings,
    device: Device,
) -> Result<TargetExplanation> {
    // The windows holding the target (every window for a sequence-level head), with the target's
    // positions counted in each.
    let windows: Vec<(usize, Target)> = (0..doc.windows.len())
        .filter_map(|w| {
            let at = |p: &i64| doc.windows[w].iter().position(|&q| q as i64 == *p).map(|i| i as i64);
            let positions: Vec<i64> = target.positions.iter().filter_map(at).collect();
            let holds = target.positions.is_empty() || !positions.is_empty();
            (holds && target.window.is_none_or(|v| v == w)).then(|| (w, Target { positions, ..target.clone() }))
        })
        .collect();
    let mut methods = Vec::new();
    let mut output = 0.0;
    for &method in &s.methods {
        let mut per_window = Vec::new();
        for (w, t) in &windows {
            per_window.push(run_method(model, doc, *w, t, method, s, device)?);
        }
        let scores: Vec<Tensor> = per_window.iter().map(|a| Tensor::from_slice(&a.scores)).collect();
        let scores = doc.mean_over_windows(&windows.iter().map(|(w, _)| *w).collect::<Vec<_>>(), &scores);
        let scores = Vec::<f32>::try_from(scores)?;
        output = per_window.iter().map(|a| a.at_input).sum::<f64>() / per_window.len() as f64;
        let completeness_error = (method == Method::IntegratedGradients)
            .then(|| per_window.iter().map(Attribution::completeness_error).fold(0.0, f64::max));
        methods.push(MethodResult { method, scores, windows: per_window, completeness_error });
    }
    Ok(TargetExplanation { target: target.name.clone(), output, methods })
}

fn run_method(
    model: &dyn Explained,
    doc: &Document,
    w: usize,
    t: &Target,
    method: Method,
    s: &Settings,
    device: Device,
) -> Result<Attribution> {
    let inputs = doc.window_inputs(w, device);
    match method {
        Method::IntegratedGradients => {
            let positions = &doc.windows[w];
            let ids: Vec<u32> = positions.iter().map(|&p| doc.ids[p]).collect();
            let special: Vec<u32> = positions.iter().map(|&p| doc.special[p]).collect();
            let baseline =
                Tensor::from_slice(&baseline_ids(&ids, &special, s.baseline_id)).view([1, -1]).to_device(device);
            integrated_gradients(model, &inputs, &baseline, t, s.output, s.steps, s.chunk)
        }
        Method::GradientXInput => gradient_x_input(model, &inputs, t, s.output),
        Method::Rollout => {
            let rows = if t.positions.is_empty() { vec![0] } else { t.positions.clone() };
            let scores = rollout_at(model.encoder(), &inputs, &rows)?;
            let at_input = tch::no_grad(|| super::target_scores(model, &inputs, t, s.output)).double_value(&[0]);
            Ok(Attribution { scores, at_input, at_baseline: at_input })
        }
    }
}

/// The targets to explain when none are named: the predicted class; the predicted labels of a
/// multi-label head (the likeliest one if none reaches 0.5); the score of a regression head or
/// a reranker; every predicted entity of a token-level head.
pub(crate) fn predicted_targets(
    model: &dyn Explained,
    doc: &Document,
    labels: &[String],
    device: Device,
) -> Vec<Target> {
    let logits = doc.logits(model, device);
    let sequence = |label: i64| Target::label(labels.get(label as usize).map_or("score", String::as_str), label);
    match model.kind() {
        TaskKind::Regression | TaskKind::Rerank => vec![sequence(0)],
        TaskKind::Classification => vec![sequence(logits.argmax(0, false).int64_value(&[]))],
        TaskKind::MultiLabel => {
            let probs =
                Vec::<f32>::try_from(outputs(&logits, TaskKind::MultiLabel, Output::Probability)).unwrap_or_default();
            let mut chosen: Vec<i64> = (0..probs.len() as i64).filter(|&i| probs[i as usize] >= 0.5).collect();
            if chosen.is_empty() {
                chosen.push(logits.argmax(0, false).int64_value(&[]));
            }
            chosen.into_iter().map(sequence).collect()
        }
        TaskKind::TokenClassification => entities(doc, &logits, labels),
        TaskKind::Embedding => unreachable!("a model's head is never read as an embedding task (TaskKind::of)"),
        TaskKind::QuestionAnswering => unreachable!("a reader's targets are its answers (recipes/explain.rs)"),
        TaskKind::MultipleChoice => unreachable!("explain refuses a multiple-choice model (recipes/explain.rs)"),
    }
}

/// Entities from per-token logits: each word takes its first token's tag; a `B-` tag or a
/// change of type starts an entity, `I-` of the same type continues it, `O` ends it.
fn entities(doc: &Document, logits: &Tensor, labels: &[String]) -> Vec<Target> {
    let tags = Vec::<i64>::try_from(logits.argmax(-1, false)).unwrap_or_default();
    let mut found: Vec<(String, i64, Vec<i64>, Option<u32>)> = Vec::new(); // type, tag, positions, last word
    let mut word_tag: Option<(u32, i64)> = None;
    for (p, word) in doc.word_ids.iter().enumerate() {
        let Some(word) = *word else { continue };
        let tag = match word_tag {
            Some((w, t)) if w == word => t,
            _ => tags[p],
        };
        let continues = word_tag.is_some_and(|(w, _)| w == word);
        word_tag = Some((word, tag));
        let name = labels.get(tag as usize).map_or("O", String::as_str);
        if name == "O" {
            continue;
        }
        let (prefix, kind) = name.split_once('-').unwrap_or(("I", name));
        match found.last_mut() {
            Some(e) if continues && e.3 == Some(word) => e.2.push(p as i64),
            Some(e) if e.0 == kind && prefix != "B" && e.3.is_some_and(|w| w + 1 == word) => {
                e.2.push(p as i64);
                e.3 = Some(word);
            }
            _ => found.push((kind.to_string(), tag, vec![p as i64], Some(word))),
        }
    }
    found
        .into_iter()
        .map(|(kind, tag, positions, _)| {
            let (a, b) = (doc.offsets[positions[0] as usize].0, doc.offsets[*positions.last().unwrap() as usize].1);
            Target { name: format!("{kind} [{a}..{b}]"), label: tag, positions, window: None }
        })
        .collect()
}

pub(crate) fn method_name(m: Method) -> &'static str {
    match m {
        Method::IntegratedGradients => "integrated gradients",
        Method::GradientXInput => "gradient × input",
        Method::Rollout => "attention rollout",
    }
}

/// The picture of a text's explanations: one row of coloured tokens per model, target and method.
pub(crate) fn figure(
    text: &str,
    doc: &Document,
    explained: &[(String, Vec<TargetExplanation>)],
    s: &Settings,
) -> Figure {
    let mut rows = Vec::new();
    for (model, targets) in explained {
        for t in targets {
            for m in &t.methods {
                let detail = match m.completeness_error {
                    Some(e) => format!(" ({} steps, completeness error {:.2}%)", s.steps, e * 100.0),
                    None => String::new(),
                };
                let caption =
                    format!("{model} · {} (output {:.4}) · {}{detail}", t.target, t.output, method_name(m.method));
                rows.push(Row { caption, scores: m.scores.clone(), signed: m.method != Method::Rollout });
            }
        }
    }
    let models: Vec<&str> = explained.iter().map(|(m, _)| m.as_str()).collect();
    Figure {
        title: format!("What the output depends on: {}", models.join(" vs ")),
        pieces: doc.pieces(text),
        special: doc.special.iter().map(|&s| s == 1).collect(),
        rows,
    }
}
