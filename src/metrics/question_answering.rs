//! Extractive question answering, scored as the official scripts score it: SQuAD's exact match
//! and F1 (v2.0's `evaluate-v2.0.py`: answers normalised, the best over the gold answers, an
//! unanswerable question right only when the prediction is empty, HasAns/NoAns splits, and the
//! best null threshold), and CUAD's `evaluate.py` (precision and recall of every answer over a
//! sweep of confidence thresholds, the area under that curve, precision at 80% and 90% recall).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// SQuAD's normal form of an answer: lower case, ASCII punctuation removed, the words "a", "an"
/// and "the" removed, whitespace collapsed (`normalize_answer`).
pub fn normalize_answer(text: &str) -> String {
    let kept: String = text.to_lowercase().chars().filter(|c| !c.is_ascii_punctuation()).collect();
    remove_articles(&kept).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `re.sub(r"\b(a|an|the)\b", " ", text)`: each article standing as a word becomes a space.
fn remove_articles(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let word = |i: usize| chars.get(i).is_some_and(|c| c.is_alphanumeric() || *c == '_');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let at_boundary = i == 0 || !word(i - 1);
        let article = ["a", "an", "the"].iter().map(|a| a.len()).find(|&n| {
            at_boundary && chars[i..].len() >= n && {
                let candidate: String = chars[i..i + n].iter().collect();
                ["a", "an", "the"].contains(&candidate.as_str()) && !word(i + n)
            }
        });
        match article {
            Some(n) => {
                out.push(' ');
                i += n;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// 1 when the normal forms are equal (`compute_exact`).
pub fn exact(gold: &str, predicted: &str) -> f64 {
    f64::from(u8::from(normalize_answer(gold) == normalize_answer(predicted)))
}

/// Token-level F1 of the normal forms (`compute_f1`); an empty side scores 1 only if both are.
pub fn f1(gold: &str, predicted: &str) -> f64 {
    let (gold, predicted) = (normalize_answer(gold), normalize_answer(predicted));
    let (gold, predicted): (Vec<&str>, Vec<&str>) =
        (gold.split_whitespace().collect(), predicted.split_whitespace().collect());
    if gold.is_empty() || predicted.is_empty() {
        return f64::from(u8::from(gold == predicted));
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &gold {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0;
    for t in &predicted {
        if let Some(n) = counts.get_mut(t)
            && *n > 0
        {
            *n -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let (precision, recall) = (same as f64 / predicted.len() as f64, same as f64 / gold.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// One question's gold answers and the model's: the text it answers ("" for no answer), how
/// sure it is that there is none (`null_odds`: the null score minus the best span's, the
/// `na_prob` SQuAD's script reads), and its n-best answers with their probabilities (CUAD).
#[derive(Debug, Clone)]
pub struct Answered {
    pub id: String,
    pub gold: Vec<String>,
    pub predicted: String,
    pub null_odds: f64,
    pub n_best: Vec<(String, f64)>,
}

/// SQuAD v2.0's report (percentages), with CUAD's measures where asked.
#[derive(Debug, Clone, Serialize)]
pub struct QaReport {
    pub exact: f64,
    pub f1: f64,
    pub total: usize,
    pub has_ans_exact: Option<f64>,
    pub has_ans_f1: Option<f64>,
    pub has_ans_total: usize,
    pub no_ans_exact: Option<f64>,
    pub no_ans_f1: Option<f64>,
    pub no_ans_total: usize,
    /// The best exact match and F1 over null thresholds, and those thresholds (`find_best_thresh`).
    pub best_exact: f64,
    pub best_exact_thresh: f64,
    pub best_f1: f64,
    pub best_f1_thresh: f64,
    pub cuad: Option<CuadReport>,
}

/// SQuAD's exact match and F1 of each question: the best over its gold answers that normalise
/// to something, or against "" where none does (an unanswerable question).
fn raw_scores(q: &Answered) -> (f64, f64) {
    let gold: Vec<&str> = q.gold.iter().map(String::as_str).filter(|a| !normalize_answer(a).is_empty()).collect();
    let gold = if gold.is_empty() { vec![""] } else { gold };
    let best = |score: fn(&str, &str) -> f64| gold.iter().map(|g| score(g, &q.predicted)).fold(0.0, f64::max);
    (best(exact), best(f1))
}

/// The report of `evaluate-v2.0.py` on these answers (v1.1's exact match and F1 are the same
/// numbers where every question has an answer), and CUAD's with `cuad`.
pub fn qa_report(answered: &[Answered], cuad: bool) -> QaReport {
    let scores: Vec<(f64, f64)> = answered.iter().map(raw_scores).collect();
    let has_answer: Vec<bool> =
        answered.iter().map(|q| q.gold.iter().any(|a| !normalize_answer(a).is_empty())).collect();
    let mean = |keep: &dyn Fn(usize) -> bool, pick: fn(&(f64, f64)) -> f64| {
        let picked: Vec<f64> = (0..scores.len()).filter(|&i| keep(i)).map(|i| pick(&scores[i])).collect();
        (!picked.is_empty()).then(|| 100.0 * picked.iter().sum::<f64>() / picked.len() as f64)
    };
    type Keep<'a> = &'a dyn Fn(usize) -> bool;
    let (all, has, none): (Keep, Keep, Keep) = (&|_| true, &|i| has_answer[i], &|i| !has_answer[i]);
    let (best_exact, best_exact_thresh) = best_threshold(answered, &has_answer, |i| scores[i].0);
    let (best_f1, best_f1_thresh) = best_threshold(answered, &has_answer, |i| scores[i].1);
    QaReport {
        exact: mean(all, |s| s.0).unwrap_or(0.0),
        f1: mean(all, |s| s.1).unwrap_or(0.0),
        total: answered.len(),
        has_ans_exact: mean(has, |s| s.0),
        has_ans_f1: mean(has, |s| s.1),
        has_ans_total: has_answer.iter().filter(|&&h| h).count(),
        no_ans_exact: mean(none, |s| s.0),
        no_ans_f1: mean(none, |s| s.1),
        no_ans_total: has_answer.iter().filter(|&&h| !h).count(),
        best_exact,
        best_exact_thresh,
        best_f1,
        best_f1_thresh,
        cuad: cuad.then(|| cuad_report(answered)),
    }
}

/// `find_best_thresh`: walking the questions from the least to the most sure that there is no
/// answer, the score had every question past that point been answered with nothing.
fn best_threshold(answered: &[Answered], has_answer: &[bool], score: impl Fn(usize) -> f64) -> (f64, f64) {
    if answered.is_empty() {
        return (0.0, 0.0);
    }
    let mut order: Vec<usize> = (0..answered.len()).collect();
    // Python's sorted is stable: equal odds keep the order of the predictions.
    order.sort_by(|&a, &b| answered[a].null_odds.total_cmp(&answered[b].null_odds));
    let mut current = has_answer.iter().filter(|&&h| !h).count() as f64;
    let (mut best, mut threshold) = (current, 0.0);
    for i in order {
        current += match (has_answer[i], answered[i].predicted.is_empty()) {
            (true, _) => score(i),
            (false, false) => -1.0,
            (false, true) => 0.0,
        };
        if current > best {
            best = current;
            threshold = answered[i].null_odds;
        }
    }
    (100.0 * best / answered.len() as f64, threshold)
}

/// CUAD's measures: the area under the precision-recall curve swept over confidence thresholds,
/// and the precision at 80% and 90% recall.
#[derive(Debug, Clone, Serialize)]
pub struct CuadReport {
    pub aupr: f64,
    pub precision_at_80_recall: f64,
    pub precision_at_90_recall: f64,
}

/// CUAD's overlap of two answers: the Jaccard index of their word sets after removing `.,;:`,
/// lower-casing and reading `/` as a space (`get_jaccard`; words split on single spaces).
pub fn cuad_jaccard(gold: &str, predicted: &str) -> f64 {
    let words = |text: &str| -> std::collections::HashSet<String> {
        let text: String = text.chars().filter(|c| !".,;:".contains(*c)).collect();
        text.to_lowercase().replace('/', " ").split(' ').map(str::to_string).collect()
    };
    let (gold, predicted) = (words(gold), words(predicted));
    gold.intersection(&predicted).count() as f64 / gold.union(&predicted).count() as f64
}

/// Whether a prediction matches a gold answer (`compute_precision_recall`): half the words
/// shared, or for the "Parties" questions the gold text inside the prediction.
fn cuad_match(id: &str, gold: &str, predicted: &str) -> bool {
    cuad_jaccard(gold, predicted) >= 0.5 || (id.contains("Parties") && predicted.contains(gold))
}

/// Precision and recall (NaN where undefined, as CUAD's script leaves them) of the answers kept
/// at this confidence: each question's distinct non-empty n-best texts of probability above it.
fn cuad_precision_recall(answered: &[Answered], confidence: f64) -> (f64, f64) {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for q in answered {
        let mut kept: BTreeMap<&str, f64> = BTreeMap::new();
        for (text, p) in q.n_best.iter().filter(|(t, _)| !t.is_empty()) {
            kept.insert(text, *p);
        }
        let preds: Vec<&str> = kept.into_iter().filter(|(_, p)| *p > confidence).map(|(t, _)| t).collect();
        if q.gold.is_empty() {
            fp += preds.len();
            continue;
        }
        for gold in &q.gold {
            if preds.iter().any(|p| cuad_match(&q.id, gold, p)) {
                tp += 1;
            } else {
                fn_ += 1;
            }
        }
        fp += preds.iter().filter(|p| !q.gold.iter().any(|g| cuad_match(&q.id, g, p))).count();
    }
    let div = |a: usize, b: usize| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    (div(tp, tp + fp), div(tp, tp + fn_))
}

/// `process_precisions`: from the highest recall down, each precision raised to the best seen,
/// with Python's `max` (which keeps its first argument when either is NaN).
fn envelope(precisions: &[f64]) -> Vec<f64> {
    let mut out = precisions.to_vec();
    for i in (0..out.len().saturating_sub(1)).rev() {
        let (later, here) = (out[i + 1], out[i]);
        out[i] = if here > later { here } else { later };
    }
    out
}

/// CUAD's report: thresholds 0.99, 0.98, ... 0.01 (as `np.arange(0.99, 0, -0.01)` makes them),
/// 0.001 and 0, after a first point of precision 1 at recall 0; the area by the trapezoidal rule
/// (0 where undefined); the precision at a recall from the first point reaching it, the last
/// threshold (0) not among those searched, as `zip` with the thresholds leaves it out.
pub fn cuad_report(answered: &[Answered]) -> CuadReport {
    let confidences: Vec<f64> = (0..99).map(|i| 0.99 + i as f64 * -0.01).chain([0.001, 0.0]).collect();
    let (mut precisions, mut recalls) = (vec![1.0], vec![0.0]);
    for &c in &confidences {
        let (p, r) = cuad_precision_recall(answered, c);
        precisions.push(p);
        recalls.push(r);
    }
    let processed = envelope(&precisions);
    let at_recall = |threshold: f64| {
        let searched = processed.iter().zip(&recalls).take(confidences.len());
        searched.into_iter().find(|(_, r)| **r >= threshold).map_or(0.0, |(p, _)| *p)
    };
    CuadReport {
        aupr: area(&recalls, &processed),
        precision_at_80_recall: at_recall(0.8),
        precision_at_90_recall: at_recall(0.9),
    }
}

/// `sklearn.metrics.auc`: the trapezoidal area under y(x) for x monotonic (signed by its
/// direction); 0 where a value is NaN, as CUAD's script maps a NaN area.
fn area(x: &[f64], y: &[f64]) -> f64 {
    let decreasing = x.windows(2).all(|w| w[1] <= w[0]) && x.windows(2).any(|w| w[1] < w[0]);
    let sum: f64 = x.windows(2).zip(y.windows(2)).map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0).sum();
    let sum = if decreasing { -sum } else { sum };
    if sum.is_nan() { 0.0 } else { sum }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_normalise_as_squad_does() {
        assert_eq!(normalize_answer("The  Cat, sat on a mat!"), "cat sat on mat");
        assert_eq!(normalize_answer("Anathema and the theory"), "anathema and theory");
        assert_eq!(normalize_answer("an"), "");
        assert_eq!(exact("the Delaware", "Delaware."), 1.0);
        assert!((f1("laws of Delaware", "the laws of the State of Delaware") - 2.0 * 0.6 * 1.0 / 1.6).abs() < 1e-12);
        assert_eq!(f1("", ""), 1.0);
        assert_eq!(f1("", "Delaware"), 0.0);
    }

    #[test]
    fn the_envelope_reads_nan_as_python_max_does() {
        // Undefined precisions (nothing kept) at the highest thresholds take the best after them.
        let p = envelope(&[1.0, f64::NAN, f64::NAN, 0.6, 0.5]);
        assert_eq!(p, [1.0, 0.6, 0.6, 0.6, 0.5]);
        // max(nan, x) is nan in Python: a NaN at the highest recall reaches every point before it.
        assert!(envelope(&[1.0, 0.7, f64::NAN]).iter().all(|p| p.is_nan()));
    }
}
