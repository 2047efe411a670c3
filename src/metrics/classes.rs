//! Single-label classification: accuracy, per-class precision/recall/F1, macro-F1 and the
//! confusion matrix.

use serde::Serialize;

use super::{f1, ratio};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of true examples of this class.
    pub support: u64,
}

impl ClassScores {
    /// From counts: true positives, predicted positives, actual positives (the support).
    pub fn new(label: &str, true_positives: u64, predicted: u64, support: u64) -> Self {
        let precision = ratio(true_positives, predicted);
        let recall = ratio(true_positives, support);
        ClassScores { label: label.to_string(), precision, recall, f1: f1(precision, recall), support }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassificationReport {
    pub examples: u64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[true][predicted]`, in label order.
    pub confusion: Vec<Vec<u64>>,
}

pub fn classification_report(predicted: &[i64], gold: &[i64], labels: &[String]) -> ClassificationReport {
    assert_eq!(predicted.len(), gold.len());
    let n = labels.len();
    let mut confusion = vec![vec![0u64; n]; n];
    for (&p, &g) in predicted.iter().zip(gold) {
        confusion[g as usize][p as usize] += 1;
    }
    let per_class: Vec<ClassScores> = (0..n)
        .map(|c| {
            let predicted_c: u64 = (0..n).map(|g| confusion[g][c]).sum();
            let support: u64 = confusion[c].iter().sum();
            ClassScores::new(&labels[c], confusion[c][c], predicted_c, support)
        })
        .collect();
    let correct: u64 = (0..n).map(|c| confusion[c][c]).sum();
    ClassificationReport {
        examples: gold.len() as u64,
        accuracy: ratio(correct, gold.len() as u64),
        macro_f1: super::mean(per_class.iter().map(|c| c.f1)),
        per_class,
        confusion,
    }
}

impl ClassificationReport {
    /// A fixed-width table for the terminal.
    pub fn table(&self) -> String {
        let (mut out, width) = super::scores_table(&self.per_class);
        out += &format!(
            "{:>width$}  accuracy {:.4}   macro-F1 {:.4}   ({} examples)\n",
            "", self.accuracy, self.macro_f1, self.examples
        );
        out += &format!("{:>width$}  confusion (rows: true, columns: predicted)\n", "");
        for (c, row) in self.per_class.iter().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:6}")).collect();
            out += &format!("{:>width$}  {}\n", c.label, cells.join(""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_three_classes() {
        // gold:      a a a b b c
        // predicted: a a b b c c
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = classification_report(&[0, 0, 1, 1, 2, 2], &[0, 0, 0, 1, 1, 2], &labels);
        assert_eq!(r.confusion, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // a: p=2/2 r=2/3 f1=0.8; b: p=1/2 r=1/2 f1=0.5; c: p=1/2 r=1 f1=2/3
        let f1: Vec<f64> = r.per_class.iter().map(|c| c.f1).collect();
        for (g, w) in f1.iter().zip([0.8, 0.5, 2.0 / 3.0]) {
            assert!((g - w).abs() < 1e-12, "{f1:?}");
        }
        assert!((r.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(r.per_class[0].support, 3);
        assert!((r.per_class[0].recall - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn never_predicted_class_scores_zero_not_nan() {
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let r = classification_report(&[1, 1, 1], &[0, 1, 1], &labels);
        assert_eq!(r.per_class[0].precision, 0.0);
        assert_eq!(r.per_class[0].f1, 0.0);
        assert!(r.macro_f1.is_finite());
    }
}
