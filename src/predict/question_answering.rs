//! A loaded extractive question-answering model (a reader): windows scored, and the scores
//! turned into answers as run_qa.py's post-processing does, with three changes that matter on
//! long documents:
//!
//! - A span's score is its start's and end's log-probabilities within its window (run_qa adds
//!   raw logits), so spans of different windows compare; within one window the order, and the
//!   gap to the no-answer score, are run_qa's.
//! - A span may start only at a token its window reads with the most context around it (the
//!   original SQuAD scripts' `token_is_max_context`), so overlapping windows do not answer twice.
//! - Every span the model prefers to no answer is an answer (`answers`), not only the best: a
//!   contract holds several clauses of a kind.
//!
//! The no-answer score of a question is its lowest over its windows (run_qa's choice: the window
//! most sure that the answer is in it), and a question is answered where its best span beats it
//! by more than `--null-threshold` (`null_odds`, SQuAD's `na_prob`, is that margin).

use std::collections::BTreeMap;

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use super::Evaluation;
use crate::data::question_answering::QaSet;
use crate::data::{Encoded, eval_batches};
use crate::distributed::Spread;
use crate::encoder::ForwardOptions;
use crate::metrics::question_answering::{Answered, qa_report};
use crate::pretrained::Pretrained;
use crate::task::QuestionAnswerer;
use crate::values::positive;

/// A model with a question-answering head, loaded.
pub type Reader = Pretrained<QuestionAnswerer>;

/// How windows' scores become answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decoding {
    /// Start and end positions considered per window, and answers kept per question.
    pub n_best: usize,
    /// The longest answer, in tokens.
    pub max_answer_len: usize,
    /// How much a span must beat the no-answer score by (log-probability) to be an answer.
    pub null_threshold: f64,
}

impl Default for Decoding {
    fn default() -> Self {
        Decoding { n_best: 20, max_answer_len: 30, null_threshold: 0.0 }
    }
}

/// The file beside a model that holds the decoding it was tuned with (`--tune-thresholds`).
pub const DECODING_FILE: &str = "question_answering.json";

/// How a question-answering model's window scores become answers (finetune's evaluation,
/// evaluate, predict, serve).
#[derive(clap::Args, Clone, Debug)]
pub struct DecodingFlags {
    /// Question answering: start and end positions considered per window, and answers kept
    /// per question (run_qa's n_best_size).
    #[arg(long, default_value_t = 20, value_parser = positive)]
    pub n_best: usize,
    /// Question answering: the longest answer, in tokens.
    #[arg(long, default_value_t = 30, value_parser = positive)]
    pub max_answer_len: usize,
    /// Question answering: answer "nothing" where no-answer's log-probability beats the best
    /// span's by more than this (run_qa's null_score_diff_threshold). Default: the threshold
    /// --tune-thresholds chose in training (question_answering.json beside the model), else 0.
    #[arg(long, allow_hyphen_values = true)]
    pub null_threshold: Option<f64>,
}

impl DecodingFlags {
    /// The decoding: the flags, the null threshold from the model's directory where not given.
    pub fn decoding(&self, model: &Path) -> Result<Decoding> {
        let saved = match (self.null_threshold, std::fs::read_to_string(model.join(DECODING_FILE))) {
            (None, Ok(text)) => {
                let json: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not JSON", model.join(DECODING_FILE).display()))?;
                json["null_threshold"].as_f64()
            }
            _ => None,
        };
        let null_threshold = self.null_threshold.or(saved).unwrap_or(0.0);
        Ok(Decoding { n_best: self.n_best, max_answer_len: self.max_answer_len, null_threshold })
    }
}

/// What a window offers: its no-answer score and its best starts and ends (position in the
/// window, log-probability), context positions only, starts only where the window is the one
/// with the most context around them.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowScores {
    pub null: f64,
    pub starts: Vec<(usize, f64)>,
    pub ends: Vec<(usize, f64)>,
}

/// An answer: the characters of the context it covers, its text and score; `probability` is its
/// share among the question's n-best spans and the empty answer (what CUAD's measures read).
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub score: f64,
    pub probability: f64,
    /// The window it was read from, and its first and last token there (what `explain` asks
    /// the model about).
    #[serde(skip)]
    pub window: usize,
    #[serde(skip)]
    pub tokens: (usize, usize),
}

/// A question's answers: the n best spans, best first, and its no-answer score.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionAnswers {
    pub id: String,
    pub n_best: Vec<Answer>,
    pub null_score: f64,
    pub null_probability: f64,
}

impl QuestionAnswers {
    /// `null_score` minus the best span's score: how sure the model is that there is no answer
    /// (large where no span was possible).
    pub fn null_odds(&self) -> f64 {
        self.n_best.first().map_or(1e9, |best| self.null_score - best.score)
    }

    /// The answer, or "" where no span beats no answer by more than `threshold`.
    pub fn best(&self, threshold: f64) -> &str {
        match self.n_best.first() {
            Some(best) if self.null_odds() <= threshold => &best.text,
            _ => "",
        }
    }

    /// Every span that beats no answer by more than `threshold`, best first, none overlapping
    /// a better one: all the clauses of a kind a document holds.
    pub fn answers(&self, threshold: f64) -> Vec<&Answer> {
        let mut kept: Vec<&Answer> = Vec::new();
        for a in self.n_best.iter().filter(|a| self.null_score - a.score <= threshold) {
            if kept.iter().all(|k| a.end <= k.start || a.start >= k.end) {
                kept.push(a);
            }
        }
        kept
    }
}

impl Reader {
    /// Every window's scores (spread over the ranks in the trainer), and the summed loss and
    /// count of the windows with targets (`with_loss`).
    pub fn window_scores(
        &self,
        set: &QaSet,
        decoding: &Decoding,
        batch_size: usize,
        spread: Spread,
    ) -> Result<(Vec<WindowScores>, f64)> {
        let lengths = set.lengths();
        let n = decoding.n_best;
        let width = 1 + 4 * n;
        // One row per window, zeros where another rank computed it, summed over the ranks.
        let rows = Tensor::zeros([lengths.len() as i64, width as i64], (Kind::Double, Device::Cpu));
        let batches = eval_batches(&lengths, batch_size);
        let sums = Tensor::zeros([batches.len() as i64, 1], (Kind::Double, Device::Cpu));
        let mine = spread.take(batches);
        let bar = crate::progress::items_bar(mine.iter().map(|(_, b)| b.len() as u64).sum(), "windows");
        let max_context = max_context(set);
        for (b, batch) in mine {
            let encoded: Vec<Encoded> =
                batch.iter().map(|&w| set.encoded(&self.tokenizer, w)).collect::<Result<_>>()?;
            let inputs = self.collator().collate(&encoded.iter().collect::<Vec<_>>()).to_device(self.device);
            let logits = tch::no_grad(|| self.autocast.run(|| self.model.forward(&inputs, ForwardOptions::eval())));
            let (starts, ends) = targets(set, &batch);
            let loss = tch::no_grad(|| {
                QuestionAnswerer::loss(
                    &logits,
                    &inputs.attention_mask,
                    &starts.to_device(self.device),
                    &ends.to_device(self.device),
                )
            });
            sums.get(b as i64).copy_(&Tensor::from_slice(&[loss.double_value(&[]) * batch.len() as f64]));
            let pad = inputs.attention_mask.eq(0);
            let log_probs = |l: &Tensor| {
                let l = l.to_kind(Kind::Float).masked_fill(&pad, f64::NEG_INFINITY).log_softmax(-1, Kind::Float);
                Vec::<Vec<f32>>::try_from(l.to_device(Device::Cpu))
            };
            let (start_lp, end_lp) = (log_probs(&logits.start)?, log_probs(&logits.end)?);
            for (row, &w) in batch.iter().enumerate() {
                let scores = window_row(set, w, &start_lp[row], &end_lp[row], &max_context[w], n);
                rows.get(w as i64).copy_(&Tensor::from_slice(&scores));
            }
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        spread.complete(&rows)?;
        let loss_sum = spread.totals(&sums)?[0];
        let rows = Vec::<Vec<f64>>::try_from(&rows)?;
        Ok((rows.iter().map(|r| read_row(r, n)).collect(), loss_sum))
    }

    /// Each question's n best answers from its windows' scores.
    pub fn answers(&self, set: &QaSet, scores: &[WindowScores], decoding: &Decoding) -> Vec<QuestionAnswers> {
        answers(set, scores, decoding)
    }

    /// SQuAD's exact match and F1 (and CUAD's measures with `cuad`), and the loss, on questions
    /// with gold answers.
    pub fn evaluate_set(
        &self,
        set: &QaSet,
        decoding: &Decoding,
        cuad: bool,
        batch_size: usize,
        spread: Spread,
    ) -> Result<Evaluation> {
        let (scores, loss_sum) = self.window_scores(set, decoding, batch_size, spread)?;
        let answered = self.answers(set, &scores, decoding);
        evaluation(set, &answered, decoding, cuad, loss_sum / set.windows.len().max(1) as f64)
    }
}

/// The evaluation of answers against the set's gold answers.
pub fn evaluation(
    set: &QaSet,
    answered: &[QuestionAnswers],
    decoding: &Decoding,
    cuad: bool,
    loss: f64,
) -> Result<Evaluation> {
    if let Some(q) = set.data.questions.iter().find(|q| !q.has_gold) {
        anyhow::bail!("{}: no answers given (every question of evaluation data needs \"answers\", maybe empty)", q.at);
    }
    let scored: Vec<Answered> = set
        .data
        .questions
        .iter()
        .zip(answered)
        .map(|(q, a)| Answered {
            id: q.id.clone(),
            gold: q.answers.iter().map(|g| g.text.clone()).collect(),
            predicted: a.best(decoding.null_threshold).to_string(),
            null_odds: a.null_odds(),
            n_best: a.n_best.iter().map(|b| (b.text.clone(), b.probability)).collect(),
        })
        .collect();
    let r = qa_report(&scored, cuad);
    let mut metrics: BTreeMap<String, f64> = BTreeMap::from([
        ("eval_loss".to_string(), loss),
        ("exact".to_string(), r.exact),
        ("f1".to_string(), r.f1),
        ("best_f1".to_string(), r.best_f1),
        ("best_f1_thresh".to_string(), r.best_f1_thresh),
    ]);
    for (name, value) in [("has_ans_f1", r.has_ans_f1), ("no_ans_f1", r.no_ans_f1)] {
        if let Some(v) = value {
            metrics.insert(name.to_string(), v);
        }
    }
    let mut summary = format!(
        "eval_loss {loss:.4}\nexact {:.2}  f1 {:.2}  ({} questions; best f1 {:.2} at null threshold {:.3})",
        r.exact, r.f1, r.total, r.best_f1, r.best_f1_thresh
    );
    if let (Some(h), Some(n)) = (r.has_ans_f1, r.no_ans_f1) {
        summary += &format!("\nhas-answer f1 {h:.2} ({})  no-answer f1 {n:.2} ({})", r.has_ans_total, r.no_ans_total);
    }
    if let Some(c) = &r.cuad {
        metrics.insert("aupr".into(), c.aupr);
        metrics.insert("precision_at_80_recall".into(), c.precision_at_80_recall);
        metrics.insert("precision_at_90_recall".into(), c.precision_at_90_recall);
        summary += &format!(
            "\nCUAD: AUPR {:.4}  precision at 80% recall {:.4}, at 90% {:.4}",
            c.aupr, c.precision_at_80_recall, c.precision_at_90_recall
        );
    }
    let mut report = serde_json::to_value(&r)?;
    report["eval_loss"] = serde_json::json!(loss);
    Ok(Evaluation { metrics, report, summary })
}

/// The targets of some windows: start and end positions, `[rows]` each.
pub(crate) fn targets(set: &QaSet, batch: &[usize]) -> (Tensor, Tensor) {
    let (s, e): (Vec<i64>, Vec<i64>) = batch.iter().map(|&w| set.windows[w].target).unzip();
    (Tensor::from_slice(&s), Tensor::from_slice(&e))
}

/// For each window, per context position: whether this window reads the token with the most
/// context around it among the windows of its question (the fewer tokens on its shorter side,
/// the less; ties to the longer window, then the earlier: SQuAD's `_check_is_max_context`).
fn max_context(set: &QaSet) -> Vec<Vec<bool>> {
    let context_score = |w: usize, t: usize| {
        let p = &set.windows[w].piece;
        (t - p.start).min(p.end - 1 - t) as f64 + 0.01 * p.len() as f64
    };
    let mut out = Vec::with_capacity(set.windows.len());
    for (w, window) in set.windows.iter().enumerate() {
        // A question's windows are consecutive with their pieces in order: those sharing
        // tokens with this one are its neighbours on either side.
        let overlaps = |v: usize| {
            let other = &set.windows[v];
            other.question == window.question
                && other.piece.start < window.piece.end
                && window.piece.start < other.piece.end
        };
        let before = (0..w).rev().take_while(|&v| overlaps(v));
        let neighbours: Vec<usize> =
            before.chain(w..set.windows.len()).take_while(|&v| v <= w || overlaps(v)).collect();
        let best = |t: usize| {
            let holding = neighbours.iter().copied().filter(|&v| set.windows[v].piece.contains(&t));
            holding.max_by(|&a, &b| context_score(a, t).total_cmp(&context_score(b, t)).then(b.cmp(&a)))
        };
        out.push(window.piece.clone().map(|t| best(t) == Some(w)).collect());
    }
    out
}

/// A window's scores as one row: the null score, then `n` start positions (-1: none), their
/// log-probabilities, `n` end positions, theirs.
fn window_row(set: &QaSet, w: usize, start_lp: &[f32], end_lp: &[f32], max_context: &[bool], n: usize) -> Vec<f64> {
    let window = &set.windows[w];
    let at = set.context_start(window.question);
    let context = at..at + window.piece.len();
    let top = |lp: &[f32], keep: &dyn Fn(usize) -> bool| {
        let mut positions: Vec<usize> = context.clone().filter(|&p| keep(p)).collect();
        positions.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]).then(a.cmp(&b)));
        positions.truncate(n);
        let mut pos: Vec<f64> = positions.iter().map(|&p| p as f64).collect();
        let mut val: Vec<f64> = positions.iter().map(|&p| f64::from(lp[p])).collect();
        pos.resize(n, -1.0);
        val.resize(n, 0.0);
        (pos, val)
    };
    let (sp, sv) = top(start_lp, &|p| max_context[p - at]);
    let (ep, ev) = top(end_lp, &|_| true);
    let mut row = vec![f64::from(start_lp[0]) + f64::from(end_lp[0])];
    row.extend(sp.into_iter().chain(sv).chain(ep).chain(ev));
    row
}

fn read_row(row: &[f64], n: usize) -> WindowScores {
    let pairs = |from: usize| {
        (0..n).filter(|&i| row[from + i] >= 0.0).map(|i| (row[from + i] as usize, row[from + n + i])).collect()
    };
    WindowScores { null: row[0], starts: pairs(1), ends: pairs(1 + 2 * n) }
}

/// Each question's n best spans over its windows, with probabilities among them and no answer.
fn answers(set: &QaSet, scores: &[WindowScores], decoding: &Decoding) -> Vec<QuestionAnswers> {
    let mut null = vec![f64::INFINITY; set.data.questions.len()];
    let mut spans: Vec<Vec<Answer>> = vec![vec![]; set.data.questions.len()];
    for (w, s) in scores.iter().enumerate() {
        let q = set.windows[w].question;
        null[q] = null[q].min(s.null);
        let chars = set.char_spans(w);
        for &(start, start_lp) in &s.starts {
            for &(end, end_lp) in s.ends.iter().filter(|(e, _)| *e >= start && e - start < decoding.max_answer_len) {
                let (Some(first), Some(last)) = (chars[start], chars[end]) else { continue };
                spans[q].push(Answer {
                    text: String::new(),
                    start: first.0,
                    end: last.1,
                    score: start_lp + end_lp,
                    probability: 0.0,
                    window: w,
                    tokens: (start, end),
                });
            }
        }
    }
    // Each context's characters' byte offsets, made once for all the questions about it.
    let mut char_starts: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let questions = set.data.questions.iter().zip(spans).zip(null);
    questions
        .map(|((q, found), null)| {
            let context = &set.data.contexts[q.context];
            let bytes = char_starts
                .entry(q.context)
                .or_insert_with(|| context.char_indices().map(|(b, _)| b).chain([context.len()]).collect());
            let text = |start: usize, end: usize| &context[bytes[start]..bytes[end]];
            n_best(&q.id, found, null, text, decoding.n_best)
        })
        .collect()
}

/// The best `n` spans (their text not yet filled in) of distinct texts, best first (the SQuAD
/// post-processing CUAD's measures were written for keeps a text once), each with its text and
/// its probability among them and no answer.
fn n_best<'a>(
    id: &str,
    mut found: Vec<Answer>,
    null: f64,
    text: impl Fn(usize, usize) -> &'a str,
    n: usize,
) -> QuestionAnswers {
    found.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.start.cmp(&b.start)));
    let mut seen = std::collections::HashSet::new();
    let kept: Vec<Answer> = found.into_iter().filter(|a| seen.insert(text(a.start, a.end))).take(n).collect();
    let top = kept.iter().map(|a| a.score).chain([null]).fold(f64::NEG_INFINITY, f64::max);
    let norm: f64 = kept.iter().map(|a| (a.score - top).exp()).sum::<f64>() + (null - top).exp();
    let n_best = kept
        .into_iter()
        .map(|a| Answer { text: text(a.start, a.end).to_string(), probability: (a.score - top).exp() / norm, ..a })
        .collect();
    QuestionAnswers { id: id.to_string(), n_best, null_score: null, null_probability: (null - top).exp() / norm }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::question_answering::{QaData, Question};

    fn set(context: &str, max_len: usize, stride: usize) -> QaSet {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        let tok = crate::tokenizer::Tokenizer::from_dir(&dir).unwrap();
        let question = Question {
            id: "q".into(),
            question: "Who pays?".into(),
            context: 0,
            answers: vec![],
            has_gold: true,
            at: "test".into(),
        };
        QaSet::new(&tok, QaData { contexts: vec![context.into()], questions: vec![question] }, max_len, stride).unwrap()
    }

    #[test]
    fn each_context_token_starts_answers_in_one_window_the_most_central() {
        let set = set(&"the tenant pays the rent and the landlord mends the roof ".repeat(6), 32, 12);
        assert!(set.windows.len() >= 3, "several overlapping windows");
        let owner = max_context(&set);
        let tokens = set.contexts[0].ids.len();
        for t in 0..tokens {
            let holding: Vec<usize> = (0..set.windows.len()).filter(|&w| set.windows[w].piece.contains(&t)).collect();
            let owners: Vec<usize> =
                holding.iter().copied().filter(|&w| owner[w][t - set.windows[w].piece.start]).collect();
            assert_eq!(owners.len(), 1, "token {t}: {owners:?} of {holding:?}");
            let side = |w: usize| {
                let p = &set.windows[w].piece;
                (t - p.start).min(p.end - 1 - t)
            };
            assert!(holding.iter().all(|&w| side(w) <= side(owners[0])), "token {t}: the most context");
        }
    }

    #[test]
    fn answers_are_distinct_texts_best_first_and_beat_no_answer_by_the_threshold() {
        let context = "the tenant pays. the landlord pays. the tenant pays.";
        let set = set(context, 64, 8);
        assert_eq!(set.windows.len(), 1);
        let at = set.context_start(0);
        let chars = set.char_spans(0);
        // A word's first and last token: "tenant" at 4, "landlord" at 21, "tenant" again at 40.
        let word = |from: usize, to: usize| {
            let inside: Vec<usize> = (at..at + set.windows[0].piece.len())
                .filter(|&p| chars[p].is_some_and(|(s, e)| s >= from && e <= to))
                .collect();
            (inside[0], *inside.last().unwrap())
        };
        let (tenant, landlord, tenant2) = (word(4, 10), word(21, 29), word(40, 46));
        let scores = WindowScores {
            null: -2.0,
            starts: vec![(tenant.0, -0.5), (landlord.0, -1.0), (tenant2.0, -0.6)],
            ends: vec![(tenant.1, -0.5), (landlord.1, -1.0), (tenant2.1, -0.6)],
        };
        // No span longer than the longest word: none runs from one word to another.
        let longest = [tenant, landlord].iter().map(|(a, b)| b - a + 1).max().unwrap();
        let decoding = Decoding { n_best: 20, max_answer_len: longest, null_threshold: 0.0 };
        let q = answers(&set, &[scores], &decoding).remove(0);
        let texts: Vec<&str> = q.n_best.iter().map(|a| a.text.as_str()).collect();
        // "tenant" twice is one answer, the better one.
        assert_eq!(texts, ["tenant", "landlord"]);
        assert_eq!((q.n_best[0].start, q.n_best[0].end), (4, 10));
        assert_eq!((q.n_best[0].window, q.n_best[0].tokens), (0, tenant), "where it was read");
        let total: f64 = q.n_best.iter().map(|a| a.probability).sum::<f64>() + q.null_probability;
        assert!((total - 1.0).abs() < 1e-12);
        // tenant -1.0, landlord -2.0, no answer -2.0.
        assert_eq!(q.best(0.0), "tenant");
        assert_eq!(q.answers(0.0).len(), 2, "landlord ties no answer: kept at threshold 0");
        assert_eq!(q.answers(-0.5).len(), 1);
        assert_eq!(q.best(-1.5), "", "no span beats no answer by 1.5");
        assert!((q.null_odds() - -1.0).abs() < 1e-12);
    }
}
