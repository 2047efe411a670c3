//! What the server computes: one model, by what it was trained for, turning a batch of
//! sequences into one JSON answer each. It lives on the batching thread only (libtorch modules
//! are not shared between threads).

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::reader::{Reader, Reading};
use crate::data::Encoded;
use crate::data::question_answering::{QaData, QaSet};
use crate::distributed::Spread;
use crate::predict::Decoding;
use crate::predict::Embedder;
use crate::predict::MaskedLanguageModel;
use crate::predict::{Aggregation, Tagger};
use crate::predict::{Classifier, decide};
use crate::task::TaskKind;

/// One input: a text, or a text pair (sentence-pair models).
#[derive(Debug, Clone)]
pub(crate) struct Sequence {
    pub text: String,
    pub pair: Option<String>,
}

pub(crate) enum Engine {
    /// Sequence classification, multi-label or regression: `/predict`.
    Classifier { model: Classifier, names: Vec<String>, thresholds: Option<Vec<f32>> },
    /// Token classification: `/predict` gives entities with character offsets.
    Tagger { model: Tagger, aggregation: Aggregation, stride: usize },
    /// Sentence vectors: `/embed`.
    Embedder { model: Embedder },
    /// A model with its MLM head: `/fill-mask`.
    FillMask { model: MaskedLanguageModel, top_k: usize },
    /// A one-output sequence classifier on (query, passage) pairs: `/rerank` (the raw logit of
    /// each pair; the route applies the sigmoid unless asked for raw scores).
    Reranker { model: Classifier },
    /// Extractive question answering on (question, context) pairs, contexts of any length in
    /// windows sharing `stride` tokens: `/qa`.
    Answerer { model: crate::predict::Reader, decoding: Decoding, stride: usize },
}

/// The route each engine answers on.
impl Engine {
    pub fn route(&self) -> &'static str {
        match self {
            Engine::Classifier { .. } | Engine::Tagger { .. } => "/predict",
            Engine::Embedder { .. } => "/embed",
            Engine::FillMask { .. } => "/fill-mask",
            Engine::Reranker { .. } => "/rerank",
            Engine::Answerer { .. } => "/qa",
        }
    }

    pub fn task(&self) -> &'static str {
        match self {
            Engine::Classifier { model, .. } => match model.model.kind {
                TaskKind::MultiLabel => "multi-label",
                TaskKind::Regression => "regression",
                TaskKind::Rerank => "rerank",
                _ => "classification",
            },
            Engine::Tagger { .. } => "token-classification",
            Engine::Embedder { .. } => "embeddings",
            Engine::FillMask { .. } => "fill-mask",
            Engine::Reranker { .. } => "rerank",
            Engine::Answerer { .. } => "question-answering",
        }
    }

    /// The request side: how this engine's requests are checked and tokenised (on the HTTP
    /// threads, with a copy of the tokenizer).
    pub fn reader(&self, max_len: usize) -> Reader {
        let (tokenizer, mask_token) = match self {
            Engine::Classifier { model, .. } | Engine::Reranker { model } => (model.tokenizer.clone(), None),
            Engine::Tagger { model, .. } => (model.tokenizer.clone(), None),
            Engine::Embedder { model } => (model.tokenizer().clone(), None),
            Engine::Answerer { model, .. } => (model.tokenizer.clone(), None),
            Engine::FillMask { model, .. } => {
                let t = &model.tokenizer;
                (t.clone(), Some(t.id_to_token(t.mask_id).unwrap_or_else(|| "[MASK]".into())))
            }
        };
        let how = Reading {
            windows: matches!(self, Engine::Tagger { .. } | Engine::Answerer { .. }),
            encodes: matches!(self, Engine::Classifier { .. } | Engine::Reranker { .. }),
            singles_only: !matches!(
                self,
                Engine::Classifier { .. } | Engine::Reranker { .. } | Engine::Answerer { .. }
            ),
            mask_token,
            question_stride: match self {
                Engine::Answerer { stride, .. } => Some(*stride),
                _ => None,
            },
        };
        Reader::new(self.route(), self.task(), tokenizer, max_len, how)
    }

    /// One answer per sequence (all of them in one forward pass where the task allows);
    /// `encoded`: their model inputs, for the engines that take them (`Reader::prepare`).
    pub fn answer(&self, seqs: &[Sequence], encoded: &[Encoded], max_len: usize) -> Result<Vec<Value>> {
        match self {
            Engine::Classifier { model, names, thresholds } => classify(model, names, thresholds.as_deref(), encoded),
            Engine::Reranker { model } => {
                let logits = model.logits(encoded, encoded.len().max(1), Spread::Alone)?.select(1, 0);
                Ok(Vec::<f32>::try_from(logits)?.into_iter().map(Value::from).collect())
            }
            Engine::Tagger { model, aggregation, stride } => {
                let texts: Vec<&str> = seqs.iter().map(|s| s.text.as_str()).collect();
                let found =
                    crate::predict::entities_in_texts(model, &texts, max_len, *stride, *aggregation, texts.len())?;
                found.iter().map(|e| Ok(serde_json::to_value(e)?)).collect()
            }
            Engine::Embedder { model } => {
                let texts: Vec<&str> = seqs.iter().map(|s| s.text.as_str()).collect();
                Ok(model.embed(&texts)?.vectors.into_iter().map(Value::from).collect())
            }
            Engine::Answerer { model, decoding, stride } => answer_questions(model, decoding, seqs, max_len, *stride),
            Engine::FillMask { model, top_k } => seqs
                .iter()
                .map(|s| {
                    let fills = model.fill_mask(&s.text, *top_k)?;
                    if fills.is_empty() {
                        bail!("{:?} has no mask token", s.text);
                    }
                    let masks =
                        fills.iter().map(|c| c.iter().map(|(t, p)| json!({"token_str": t, "score": p})).collect());
                    Ok(Value::Array(masks.collect()))
                })
                .collect(),
        }
    }
}

/// Each (question, context)'s answer as transformers' question-answering pipeline gives it
/// (`answer`, `score`, `start`, `end`; "" with the no-answer probability where no span beats no
/// answer), with every answer that does (`answers`).
fn answer_questions(
    model: &crate::predict::Reader,
    decoding: &Decoding,
    seqs: &[Sequence],
    max_len: usize,
    stride: usize,
) -> Result<Vec<Value>> {
    let data = QaData::unanswered(seqs.iter().map(|s| (s.text.as_str(), s.pair.as_deref().unwrap_or_default())));
    let set = QaSet::new(&model.tokenizer, data, max_len, stride)?;
    let (scores, _) = model.window_scores(&set, decoding, set.windows.len().max(1), Spread::Alone)?;
    let threshold = decoding.null_threshold;
    Ok(model
        .answers(&set, &scores, decoding)
        .iter()
        .map(|q| {
            let answers = q.answers(threshold);
            match answers.first() {
                Some(a) => json!({"answer": a.text, "score": a.probability, "start": a.start, "end": a.end, "answers": answers}),
                None => json!({"answer": "", "score": q.null_probability, "start": 0, "end": 0, "answers": answers}),
            }
        })
        .collect())
}

/// TEI's `/predict` answer for each sequence: every label with its score, best first (softmax
/// probabilities; sigmoid ones for multi-label, with `predicted` at the model's thresholds; the
/// score itself for regression).
fn classify(model: &Classifier, names: &[String], thresholds: Option<&[f32]>, items: &[Encoded]) -> Result<Vec<Value>> {
    let logits = model.logits(items, items.len().max(1), Spread::Alone)?;
    let outputs = Vec::<Vec<f32>>::try_from(model.outputs(&logits))?;
    let multi_label = model.model.kind == TaskKind::MultiLabel;
    let decisions = decide(&outputs, thresholds);
    Ok(outputs
        .iter()
        .zip(&decisions)
        .map(|(scores, chosen)| {
            let mut labels: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
            labels.sort_by(|a, b| b.1.total_cmp(&a.1));
            let rows = labels.iter().map(|&(c, score)| match multi_label {
                true => json!({"score": score, "label": names[c], "predicted": chosen[c]}),
                false => json!({"score": score, "label": names[c]}),
            });
            Value::Array(rows.collect())
        })
        .collect())
}
