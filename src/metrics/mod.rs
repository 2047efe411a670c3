//! Evaluation metrics, defined as the Python tools people compare with define them:
//! scikit-learn for classification (an undefined precision or recall counts as 0), scipy for
//! correlations, seqeval for entities. One module per kind of task.

pub mod classes;
pub mod entities;
pub mod multi_label;
pub mod regression;

pub use classes::{ClassScores, ClassificationReport, classification_report};
pub use entities::{EntityReport, entity_report};
pub use multi_label::{MultiLabelReport, multi_label_report, tune_thresholds};
pub use regression::{RegressionReport, regression_report};

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
