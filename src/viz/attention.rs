//! Attention probabilities of every layer and head for one text, as transformers returns them
//! with `output_attentions=True`, and how much each head changed between two models.

use anyhow::{Result, bail};
use serde::Serialize;
use tch::{Device, Kind};

use crate::encoder::{Encoder, ForwardOptions, Inputs};

/// `maps[layer][head][query][key]` for the tokens of one text.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AttentionMaps {
    pub model: String,
    pub tokens: Vec<String>,
    pub maps: Vec<Vec<Vec<Vec<f32>>>>,
}

/// A matrix of one head (or an average of heads): `[query][key]`.
pub(crate) type Matrix = Vec<Vec<f32>>;

impl AttentionMaps {
    /// The attention of `encoder` on one text (`inputs`, one row; `tokens` its tokens), under
    /// the name `model` in titles.
    pub fn compute(model: String, encoder: &dyn Encoder, inputs: &Inputs, tokens: Vec<String>) -> Result<Self> {
        let opts = ForwardOptions { output_attentions: true, ..ForwardOptions::eval() };
        let out = tch::no_grad(|| encoder.forward(inputs, opts));
        let mut maps = Vec::with_capacity(out.attentions.len());
        for a in &out.attentions {
            let a = a.get(0).to_kind(Kind::Float).to_device(Device::Cpu);
            maps.push(Vec::<Vec<Vec<f32>>>::try_from(a)?);
        }
        Ok(AttentionMaps { model, tokens, maps })
    }

    pub fn layers(&self) -> usize {
        self.maps.len()
    }

    pub fn heads(&self) -> usize {
        self.maps.first().map_or(0, Vec::len)
    }

    pub fn check(&self, layer: usize, head: usize) -> Result<()> {
        if layer >= self.layers() || head >= self.heads() {
            bail!(
                "{} has layers 0..{} and heads 0..{} (0-based, as transformers counts them); asked for layer {layer} head {head}",
                self.model,
                self.layers() - 1,
                self.heads() - 1
            );
        }
        Ok(())
    }

    pub fn head(&self, layer: usize, head: usize) -> &Matrix {
        &self.maps[layer][head]
    }

    pub fn mean_over_heads(&self, layer: usize) -> Matrix {
        let heads = &self.maps[layer];
        let n = self.tokens.len();
        (0..n)
            .map(|q| (0..n).map(|k| heads.iter().map(|h| h[q][k]).sum::<f32>() / heads.len() as f32).collect())
            .collect()
    }
}

/// `b - a`, elementwise.
pub(crate) fn difference(a: &Matrix, b: &Matrix) -> Matrix {
    a.iter().zip(b).map(|(ra, rb)| ra.iter().zip(rb).map(|(x, y)| y - x).collect()).collect()
}

/// How much one head's attention changed between two models, averaged over query tokens.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HeadChange {
    pub layer: usize,
    pub head: usize,
    /// Mean Jensen–Shannon divergence (natural log, in [0, ln 2]) between the rows.
    pub jensen_shannon: f64,
    /// Mean L1 distance between the rows (in [0, 2]).
    pub l1: f64,
}

fn js_divergence(p: &[f32], q: &[f32]) -> f64 {
    let kl = |a: &[f32], m: &[f64]| -> f64 {
        a.iter().zip(m).filter(|(x, _)| **x > 0.0).map(|(&x, &mm)| x as f64 * (x as f64 / mm).ln()).sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(&a, &b)| 0.5 * (a as f64 + b as f64)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).max(0.0)
}

/// Every head of `a` against the same head of `b`, most changed first.
pub(crate) fn head_changes(a: &AttentionMaps, b: &AttentionMaps) -> Result<Vec<HeadChange>> {
    if a.tokens != b.tokens {
        bail!(
            "{} and {} tokenise the text differently; their attention cannot be compared token by token",
            a.model,
            b.model
        );
    }
    if a.layers() != b.layers() || a.heads() != b.heads() {
        bail!(
            "{} has {}x{} layers x heads, {} has {}x{}",
            a.model,
            a.layers(),
            a.heads(),
            b.model,
            b.layers(),
            b.heads()
        );
    }
    let mut out = Vec::new();
    for layer in 0..a.layers() {
        for head in 0..a.heads() {
            let (ha, hb) = (a.head(layer, head), b.head(layer, head));
            let n = ha.len() as f64;
            let jensen_shannon = ha.iter().zip(hb).map(|(p, q)| js_divergence(p, q)).sum::<f64>() / n;
            let l1 = ha
                .iter()
                .zip(hb)
                .map(|(p, q)| p.iter().zip(q).map(|(x, y)| (x - y).abs() as f64).sum::<f64>())
                .sum::<f64>()
                / n;
            out.push(HeadChange { layer, head, jensen_shannon, l1 });
        }
    }
    out.sort_by(|x, y| y.jensen_shannon.total_cmp(&x.jensen_shannon));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_divergence_bounds() {
        assert!(js_divergence(&[0.5, 0.5], &[0.5, 0.5]).abs() < 1e-12);
        let max = js_divergence(&[1.0, 0.0], &[0.0, 1.0]);
        assert!((max - 2f64.ln()).abs() < 1e-9, "{max}");
    }
}
