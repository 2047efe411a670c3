//! What the server computes: one model, by what it was trained for, turning a batch of
//! sequences into one JSON answer each. It lives on the batching thread only (libtorch modules
//! are not shared between threads).

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::embed::{Pooling, embed};
use crate::data::{Example, Location, LongText, tokenize_long};
use crate::dist::Spread;
use crate::pretrained::Pretrained;
use crate::task::{Bare, TaskKind};
use crate::train::classify::{Classifier, decide};
use crate::train::pretrain::MaskedLanguageModel;
use crate::train::tag::{Aggregation, Tagger};

/// One input: a text, or a text pair (sentence-pair models).
#[derive(Debug, Clone)]
pub struct Sequence {
    pub text: String,
    pub pair: Option<String>,
}

pub enum Engine {
    /// Sequence classification, multi-label or regression: `/predict`.
    Classifier { model: Classifier, names: Vec<String>, thresholds: Option<Vec<f32>> },
    /// Token classification: `/predict` gives entities with character offsets.
    Tagger { model: Tagger, aggregation: Aggregation, stride: usize },
    /// Sentence vectors: `/embed`.
    Embedder { model: Pretrained<Bare<false>>, pooling: Pooling },
    /// A model with its MLM head: `/fill-mask`.
    FillMask { model: MaskedLanguageModel, top_k: usize },
}

/// The route each engine answers on.
impl Engine {
    pub fn route(&self) -> &'static str {
        match self {
            Engine::Classifier { .. } | Engine::Tagger { .. } => "/predict",
            Engine::Embedder { .. } => "/embed",
            Engine::FillMask { .. } => "/fill-mask",
        }
    }

    pub fn task(&self) -> &'static str {
        match self {
            Engine::Classifier { model, .. } => match model.model.kind {
                TaskKind::MultiLabel => "multi-label",
                TaskKind::Regression => "regression",
                _ => "classification",
            },
            Engine::Tagger { .. } => "token-classification",
            Engine::Embedder { .. } => "embeddings",
            Engine::FillMask { .. } => "fill-mask",
        }
    }

    fn tokenizer(&self) -> &crate::tokenizer::Tokenizer {
        match self {
            Engine::Classifier { model, .. } => &model.tokenizer,
            Engine::Tagger { model, .. } => &model.tokenizer,
            Engine::Embedder { model, .. } => &model.tokenizer,
            Engine::FillMask { model, .. } => &model.tokenizer,
        }
    }

    /// Each sequence's length in tokens with the model's special tokens (what batching counts
    /// and what --max-input-length limits). A tagger reads long texts in windows, so no limit
    /// applies there: its lengths are capped at `max_len` for counting.
    pub fn lengths(&self, seqs: &[Sequence], max_len: usize) -> Result<Vec<usize>> {
        let texts: Vec<&str> = seqs.iter().map(|s| s.text.as_str()).collect();
        let pairs: Vec<&str> = seqs.iter().map(|s| s.pair.as_deref().unwrap_or("")).collect();
        let has_pairs = seqs.iter().any(|s| s.pair.is_some());
        let encodings = self.tokenizer().encode_batch(&texts, has_pairs.then_some(&pairs[..]), usize::MAX >> 1)?;
        let cap = if matches!(self, Engine::Tagger { .. }) { max_len } else { usize::MAX };
        Ok(encodings.iter().map(|e| e.len().min(cap)).collect())
    }

    /// Why these sequences cannot be answered by this model, if they cannot: pairs where the
    /// task takes single texts, a fill-mask text without the mask token.
    pub fn check(&self, seqs: &[Sequence]) -> std::result::Result<(), String> {
        let pairs = seqs.iter().any(|s| s.pair.is_some());
        match self {
            Engine::Tagger { .. } | Engine::Embedder { .. } | Engine::FillMask { .. } if pairs => {
                Err(format!("{} takes single texts, not pairs", self.task()))
            }
            Engine::FillMask { model, .. } => {
                let mask = model.tokenizer.id_to_token(model.tokenizer.mask_id).unwrap_or_else(|| "[MASK]".into());
                match seqs.iter().position(|s| !s.text.contains(mask.as_str())) {
                    Some(i) => Err(format!("input {i} has no {mask} token")),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// One answer per sequence (all of them in one forward pass where the task allows).
    pub fn answer(&self, seqs: &[Sequence], max_len: usize) -> Result<Vec<Value>> {
        match self {
            Engine::Classifier { model, names, thresholds } => {
                classify(model, names, thresholds.as_deref(), seqs, max_len)
            }
            Engine::Tagger { model, aggregation, stride } => {
                let texts: Vec<String> = seqs.iter().map(|s| s.text.clone()).collect();
                let found =
                    crate::cli::tagging::entities_in_texts(model, &texts, max_len, *stride, *aggregation, texts.len())?;
                Ok(found.into_iter().map(Value::from).collect())
            }
            Engine::Embedder { model, pooling } => {
                let texts: Vec<&str> = seqs.iter().map(|s| s.text.as_str()).collect();
                let (vectors, _) = embed(model, &texts, *pooling, false, max_len)?;
                Ok(vectors.into_iter().map(Value::from).collect())
            }
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

/// TEI's `/predict` answer for each sequence: every label with its score, best first (softmax
/// probabilities; sigmoid ones for multi-label, with `predicted` at the model's thresholds; the
/// score itself for regression).
fn classify(
    model: &Classifier,
    names: &[String],
    thresholds: Option<&[f32]>,
    seqs: &[Sequence],
    max_len: usize,
) -> Result<Vec<Value>> {
    let at = Location { file: "request".into(), line: 0 };
    let examples: Vec<Example> = seqs
        .iter()
        .map(|s| Example { text: s.text.clone(), pair: s.pair.clone(), label: None, at: at.clone() })
        .collect();
    let pieces = tokenize_long(&model.tokenizer, &examples, max_len, LongText::Truncate, 0)?;
    let logits = model.logits(&pieces.items, pieces.items.len().max(1), Spread::Alone)?;
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
