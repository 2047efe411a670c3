//! What each labelled example is scored against, by task: a class id, a 0/1 row over the
//! label set (multi-label), a number (regression) or a passage's relevance to its query
//! (rerank). Every label is checked here, with the row it came from in the message.

use anyhow::{Result, bail};
use tch::Tensor;

use super::labelled::{Example, Label, LabelSet};
use crate::task::TaskKind;

#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    Classes(Vec<i64>),
    /// `[examples][labels]`, 1.0 where the example carries the label.
    Sets(Vec<Vec<f32>>),
    Scores(Vec<f32>),
    /// Each (query, passage) pair's relevance in [0, 1] and its query (by distinct query text,
    /// numbered in order of first appearance): a reranker is scored per query.
    Relevance {
        relevance: Vec<f32>,
        query_of: Vec<usize>,
    },
}

impl Targets {
    /// The targets of `examples` for a task; `labels` is the model's label set (`role` names it
    /// in messages: "training", "model's").
    pub fn new(kind: TaskKind, examples: &[Example], labels: &LabelSet, role: &str) -> Result<Targets> {
        Ok(match kind {
            TaskKind::Classification => Targets::Classes(labels.ids(examples, role)?),
            TaskKind::MultiLabel => Targets::Sets(labels.multi_hot(examples, role)?),
            TaskKind::Regression => Targets::Scores(examples.iter().map(score).collect::<Result<_>>()?),
            TaskKind::TokenClassification => bail!("token classification data has tags per word, not labels per text"),
            TaskKind::Embedding => bail!("embedding data has rows of texts (and scores), not labels per text"),
            TaskKind::QuestionAnswering => {
                bail!("question-answering data has questions and answer spans, not labels per text")
            }
            TaskKind::MultipleChoice => {
                bail!("multiple-choice data has a context and its choices, not labels per text")
            }
            TaskKind::Rerank => relevance(examples)?,
        })
    }

    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(v) => v.len(),
            Targets::Sets(v) => v.len(),
            Targets::Scores(v) => v.len(),
            Targets::Relevance { relevance, .. } => relevance.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The targets of some examples as a tensor: int64 `[n]`, float `[n, labels]` or float `[n]`.
    pub fn tensor(&self, rows: &[usize]) -> Tensor {
        match self {
            Targets::Classes(v) => Tensor::from_slice(&rows.iter().map(|&i| v[i]).collect::<Vec<_>>()),
            Targets::Sets(v) => {
                let flat: Vec<f32> = rows.iter().flat_map(|&i| v[i].iter().copied()).collect();
                Tensor::from_slice(&flat).view([rows.len() as i64, -1])
            }
            Targets::Scores(v) | Targets::Relevance { relevance: v, .. } => {
                Tensor::from_slice(&rows.iter().map(|&i| v[i]).collect::<Vec<_>>())
            }
        }
    }

    /// Each label's log prior odds ln(p / (1 - p)) among multi-label targets, with p smoothed
    /// as (carrying + 0.5) / (examples + 1) so that a label no example (or every example)
    /// carries stays finite; None for other targets.
    pub fn log_prior_odds(&self) -> Option<Vec<f32>> {
        let Targets::Sets(rows) = self else { return None };
        let labels = rows.first().map_or(0, Vec::len);
        let n = rows.len() as f64;
        let odds = (0..labels).map(|j| {
            let carrying = rows.iter().filter(|r| r[j] > 0.5).count() as f64;
            let p = (carrying + 0.5) / (n + 1.0);
            (p / (1.0 - p)).ln() as f32
        });
        Some(odds.collect())
    }

    /// Every example's targets, in order.
    pub fn all(&self) -> Tensor {
        self.tensor(&(0..self.len()).collect::<Vec<_>>())
    }
}

/// A regression label: a finite number.
fn score(e: &Example) -> Result<f32> {
    let text = match &e.label {
        Some(Label::One(l)) => l,
        Some(Label::Many(_)) => bail!("{}: a list of labels where a number is expected (--task regression)", e.at),
        None => bail!("{}: no label", e.at),
    };
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x as f32),
        Ok(_) => bail!("{}: label {text:?} is not a finite number", e.at),
        Err(_) => bail!("{}: label {text:?} is not a number (--task regression reads a number per row)", e.at),
    }
}

/// A reranker's targets: every row a (query, passage) pair whose label is a relevance in [0, 1]
/// (binary cross-entropy's target: 0 or 1, or a graded fraction).
fn relevance(examples: &[Example]) -> Result<Targets> {
    let mut queries = std::collections::HashMap::new();
    let (mut relevance, mut query_of) = (Vec::with_capacity(examples.len()), Vec::with_capacity(examples.len()));
    for e in examples {
        if e.pair.is_none() {
            bail!(
                "{}: no passage: --task rerank reads (query, passage) pairs (--text-column the query, \
                 --text-pair-column the passage, --label-column its relevance)",
                e.at
            );
        }
        let r = score(e)?;
        if !(0.0..=1.0).contains(&r) {
            bail!(
                "{}: relevance {r} is outside [0, 1] (a reranker learns the probability that a passage is relevant)",
                e.at
            );
        }
        let next = queries.len();
        query_of.push(*queries.entry(e.text.as_str()).or_insert(next));
        relevance.push(r);
    }
    Ok(Targets::Relevance { relevance, query_of })
}

/// The task data implies when no `--task` says it (`sets`: the flags read label sets), or an
/// error asking for `--task` when it could be either: never a silent guess.
pub fn infer_task(examples: &[Example], sets: bool) -> Result<TaskKind> {
    if sets || examples.iter().any(|e| matches!(e.label, Some(Label::Many(_)))) {
        return Ok(TaskKind::MultiLabel);
    }
    let labels: Vec<&str> = examples.iter().filter_map(Example::single_label).collect();
    let fractional = labels.iter().find(|l| l.parse::<i64>().is_err() && l.parse::<f64>().is_ok());
    let numeric = labels.iter().all(|l| l.parse::<f64>().is_ok());
    match fractional {
        Some(l) if numeric => {
            let at = examples.iter().find(|e| e.single_label() == Some(l)).map(|e| e.at.to_string());
            bail!(
                "{}: the labels are numbers such as {l:?}: pass --task regression to predict them, or --task classification to treat each value as a class",
                at.unwrap_or_default()
            )
        }
        _ => Ok(TaskKind::Classification),
    }
}
