//! Multi-label classification: micro- and macro-F1 over the labels, per-label scores, subset
//! accuracy (scikit-learn's `f1_score(average=...)` and `accuracy_score` on indicator rows), and
//! per-label decision thresholds tuned on held-out data.

use serde::Serialize;

use super::{ClassScores, f1, mean, ratio};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MultiLabelReport {
    pub examples: u64,
    pub micro_precision: f64,
    pub micro_recall: f64,
    pub micro_f1: f64,
    pub macro_f1: f64,
    /// Fraction of examples whose predicted set is exactly the true set.
    pub subset_accuracy: f64,
    /// Per label; with `count_no_label`, a last row `(no label)` (LexGLUE's convention).
    pub per_label: Vec<ClassScores>,
}

/// Scores of predicted label sets against true ones (`[examples][labels]`). With
/// `count_no_label`, "no label" is one more class (true when a row has none), as LexGLUE's
/// evaluation counts it in micro- and macro-F1.
pub fn multi_label_report(
    predicted: &[Vec<bool>],
    gold: &[Vec<bool>],
    labels: &[String],
    count_no_label: bool,
) -> MultiLabelReport {
    assert_eq!(predicted.len(), gold.len());
    let with_none = |rows: &[Vec<bool>]| -> Vec<Vec<bool>> {
        rows.iter().map(|r| r.iter().copied().chain(count_no_label.then(|| !r.contains(&true))).collect()).collect()
    };
    let (p, g) = (with_none(predicted), with_none(gold));
    let mut names = labels.to_vec();
    if count_no_label {
        names.push("(no label)".into());
    }
    let count =
        |c: usize, f: &dyn Fn(bool, bool) -> bool| p.iter().zip(&g).filter(|(p, g)| f(p[c], g[c])).count() as u64;
    let per_label: Vec<ClassScores> = (0..names.len())
        .map(|c| ClassScores::new(&names[c], count(c, &|p, g| p && g), count(c, &|p, _| p), count(c, &|_, g| g)))
        .collect();
    let tp: u64 = (0..names.len()).map(|c| count(c, &|p, g| p && g)).sum();
    let predicted_all: u64 = (0..names.len()).map(|c| count(c, &|p, _| p)).sum();
    let support: u64 = per_label.iter().map(|c| c.support).sum();
    let (micro_precision, micro_recall) = (ratio(tp, predicted_all), ratio(tp, support));
    let exact = predicted.iter().zip(gold).filter(|(p, g)| p == g).count() as u64;
    MultiLabelReport {
        examples: gold.len() as u64,
        micro_precision,
        micro_recall,
        micro_f1: f1(micro_precision, micro_recall),
        macro_f1: mean(per_label.iter().map(|c| c.f1)),
        subset_accuracy: ratio(exact, gold.len() as u64),
        per_label,
    }
}

/// For each label, the threshold on its probability that maximises that label's F1 on held-out
/// data: the candidates are the midpoints between consecutive distinct probabilities (and 0.5,
/// the default, which wins ties so a label without positives keeps it).
pub fn tune_thresholds(probs: &[Vec<f32>], gold: &[Vec<bool>]) -> Vec<f32> {
    let labels = probs.first().map_or(0, Vec::len);
    (0..labels)
        .map(|c| {
            let mut scored: Vec<(f32, bool)> = probs.iter().zip(gold).map(|(p, g)| (p[c], g[c])).collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let support = scored.iter().filter(|s| s.1).count() as u64;
            let f1_at = |threshold: f32| {
                let predicted = scored.iter().filter(|s| s.0 >= threshold);
                let (n, tp) = predicted.fold((0u64, 0u64), |(n, tp), s| (n + 1, tp + s.1 as u64));
                f1(ratio(tp, n), ratio(tp, support))
            };
            let mut best = (f1_at(0.5), 0.5f32);
            for pair in scored.windows(2).filter(|w| w[0].0 > w[1].0) {
                let threshold = (pair[0].0 + pair[1].0) / 2.0;
                let score = f1_at(threshold);
                if score > best.0 {
                    best = (score, threshold);
                }
            }
            best.1
        })
        .collect()
}

impl MultiLabelReport {
    /// A fixed-width table for the terminal.
    pub fn table(&self) -> String {
        let (mut out, width) = super::scores_table(&self.per_label);
        out += &format!(
            "{:>width$}  micro-F1 {:.4}   macro-F1 {:.4}   subset accuracy {:.4}   ({} examples)\n",
            "", self.micro_f1, self.macro_f1, self.subset_accuracy, self.examples
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&[u8]]) -> Vec<Vec<bool>> {
        v.iter().map(|r| r.iter().map(|&x| x == 1).collect()).collect()
    }

    #[test]
    fn hand_computed_against_sklearn_definitions() {
        // sklearn: f1_score(g, p, average="micro") = 2*3/(2*3+1+2) = 0.6667,
        // per label a: tp 2 fp 0 fn 0 -> 1.0; b: tp 1 fp 1 fn 1 -> 0.5; c: tp 0 fp 0 fn 1 -> 0.
        let gold = rows(&[&[1, 1, 0], &[1, 0, 1], &[0, 0, 0], &[0, 1, 0]]);
        let pred = rows(&[&[1, 1, 0], &[1, 0, 0], &[0, 1, 0], &[0, 0, 0]]);
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = multi_label_report(&pred, &gold, &names, false);
        assert!((r.micro_f1 - 2.0 * 3.0 / (6.0 + 1.0 + 2.0)).abs() < 1e-12, "{r:?}");
        assert!((r.macro_f1 - 0.5).abs() < 1e-12);
        assert!((r.subset_accuracy - 0.25).abs() < 1e-12);
        assert_eq!(r.per_label[2].support, 1);
        // No-label as a class (LexGLUE): true for row 3, predicted for row 4 -> F1 0; sklearn on
        // the rows with that column appended: micro 6/11, macro 0.375.
        let r = multi_label_report(&pred, &gold, &names, true);
        assert_eq!(r.per_label[3].f1, 0.0, "{:?}", r.per_label[3]);
        assert!((r.micro_f1 - 6.0 / 11.0).abs() < 1e-12 && (r.macro_f1 - 0.375).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn tuned_threshold_separates_and_empty_label_keeps_default() {
        let probs = vec![vec![0.30, 0.9], vec![0.20, 0.8], vec![0.10, 0.7]];
        let gold = rows(&[&[1, 0], &[1, 0], &[0, 0]]);
        let t = tune_thresholds(&probs, &gold);
        assert!((t[0] - 0.15).abs() < 1e-6, "{t:?}");
        assert_eq!(t[1], 0.5);
    }
}
