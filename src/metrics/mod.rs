//! Evaluation metrics, defined as the Python tools people compare with define them:
//! scikit-learn for classification (an undefined precision or recall counts as 0), scipy for
//! correlations and tests, seqeval for entities. One module per kind of task, and `seeds` for
//! results over several seeds.

pub mod classes;
pub mod entities;
pub mod multi_label;
pub mod question_answering;
pub mod regression;
pub mod retrieval;
pub mod seeds;

pub use classes::{ClassScores, ClassificationReport, classification_report};
pub use entities::{EntityReport, entity_report};
pub use multi_label::{MultiLabelReport, multi_label_report, tune_thresholds};
pub use regression::{RegressionReport, regression_report};
pub use seeds::{PairedTest, mean_sd, paired_t};

/// The per-class rows every report prints (label, precision, recall, F1, support), and the
/// label column's width for the summary lines below them.
fn scores_table(rows: &[ClassScores]) -> (String, usize) {
    let width = rows.iter().map(|c| c.label.len()).max().unwrap_or(5).max(9);
    let mut out = format!("{:>width$}  precision  recall     f1  support\n", "");
    for c in rows {
        out += &format!("{:>width$}  {:9.4}  {:6.4}  {:.4}  {:7}\n", c.label, c.precision, c.recall, c.f1, c.support);
    }
    (out, width)
}

/// `a / b`, 0 when `b` is 0 (scikit-learn's `zero_division=0`).
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Harmonic mean of precision and recall, 0 when both are.
fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) }
}

/// Mean of the values, 0 for none.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}
