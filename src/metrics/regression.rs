//! Regression: errors (MSE, RMSE, MAE) and correlations (Pearson, and Spearman on average ranks
//! of ties, as `scipy.stats.spearmanr` computes it).

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegressionReport {
    pub examples: u64,
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    /// NaN when either side is constant (scipy returns NaN there too).
    pub pearson: f64,
    pub spearman: f64,
}

pub fn regression_report(predicted: &[f64], gold: &[f64]) -> RegressionReport {
    assert_eq!(predicted.len(), gold.len());
    let n = gold.len().max(1) as f64;
    let mse = predicted.iter().zip(gold).map(|(p, g)| (p - g).powi(2)).sum::<f64>() / n;
    let mae = predicted.iter().zip(gold).map(|(p, g)| (p - g).abs()).sum::<f64>() / n;
    RegressionReport {
        examples: gold.len() as u64,
        mse,
        rmse: mse.sqrt(),
        mae,
        pearson: pearson(predicted, gold),
        spearman: pearson(&ranks(predicted), &ranks(gold)),
    }
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// 1-based ranks, ties sharing their average rank.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut rank = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let j = (i..order.len()).find(|&j| x[order[j]] != x[order[i]]).unwrap_or(order.len());
        let average = (i + j + 1) as f64 / 2.0;
        for &k in &order[i..j] {
            rank[k] = average;
        }
        i = j;
    }
    rank
}

impl RegressionReport {
    pub fn table(&self) -> String {
        format!(
            "mse {:.4}  rmse {:.4}  mae {:.4}  pearson {:.4}  spearman {:.4}  ({} examples)\n",
            self.mse, self.rmse, self.mae, self.pearson, self.spearman, self.examples
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_on_ties() {
        // scipy.stats.pearsonr([1,2,3,4,5],[2,1,4,3,5]) = 0.8; spearmanr([1,2,2,3],[1,3,2,4]) = 0.9486832980505138
        let r = regression_report(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]);
        assert!((r.pearson - 0.8).abs() < 1e-12, "{r:?}");
        assert!((r.mse - 0.8).abs() < 1e-12 && (r.mae - 0.8).abs() < 1e-12);
        let r = regression_report(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!((r.spearman - 0.9486832980505138).abs() < 1e-12, "{r:?}");
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }
}
