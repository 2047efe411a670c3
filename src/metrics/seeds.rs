//! Results over several seeds: mean and standard deviation, and whether one model beats
//! another (the paired t-test over seeds, as `scipy.stats.ttest_rel` computes it).

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean and sample standard deviation (n - 1; NaN for one value, as numpy's `std(ddof=1)`).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PairedTest {
    /// Mean of `b - a` over the pairs.
    pub mean_difference: f64,
    pub t: f64,
    /// Two-sided.
    pub p_value: f64,
    pub pairs: usize,
}

/// The paired t-test of `b` against `a` (pairs: the same seed); None with fewer than two pairs,
/// where there is no spread to test against. Identical differences give t = ±inf and p = 0
/// (NaN when they are all 0), as scipy.
pub fn paired_t(a: &[f64], b: &[f64]) -> Option<PairedTest> {
    let differences: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let pairs = differences.len();
    if pairs < 2 {
        return None;
    }
    let (mean, sd) = mean_sd(&differences);
    let t = mean / (sd / (pairs as f64).sqrt());
    let dist = StudentsT::new(0.0, 1.0, (pairs - 1) as f64).expect("degrees of freedom >= 1");
    let p_value = if t.is_nan() { f64::NAN } else { 2.0 * dist.cdf(-t.abs()) };
    Some(PairedTest { mean_difference: mean, t, p_value, pairs })
}
