//! Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"):
//! how much of each token reaches each position through every layer's attention, counting the
//! residual connection. Per layer, the mean over heads A, then 0.5·A + 0.5·I with rows
//! renormalised; the rollout is the product of the layers' matrices, last layer leftmost.

use tch::{Kind, Tensor};

use crate::encoder::{Encoder, ForwardOptions, Inputs};

/// The rollout `[seq, seq]` of one text's attention probabilities (each `[1, heads, seq, seq]`,
/// first layer first): row i is how much of each token reaches position i at the top.
pub fn rollout(attentions: &[Tensor]) -> Tensor {
    let mut joint: Option<Tensor> = None;
    for a in attentions {
        let a = a.get(0).to_kind(Kind::Double).mean_dim(0, false, Kind::Double);
        let eye = Tensor::eye(a.size()[0], (Kind::Double, a.device()));
        let a = a * 0.5 + eye * 0.5;
        let a = &a / a.sum_dim_intlist(-1, true, Kind::Double);
        joint = Some(match joint {
            None => a,
            Some(below) => a.matmul(&below),
        });
    }
    joint.expect("an encoder has layers").to_kind(Kind::Float)
}

/// Rollout on one text (`inputs`, one row), read at `rows` (their mean): the first token for a
/// sequence-level head, an entity's tokens for a token-level one.
pub(crate) fn rollout_at(encoder: &dyn Encoder, inputs: &Inputs, rows: &[i64]) -> anyhow::Result<Vec<f32>> {
    let opts = ForwardOptions { output_attentions: true, ..ForwardOptions::eval() };
    let attentions = tch::no_grad(|| encoder.forward(inputs, opts)).attentions;
    let joint = rollout(&attentions);
    let rows = Tensor::from_slice(rows).to_device(joint.device());
    let mean = joint.index_select(0, &rows).mean_dim(0, false, Kind::Float);
    Ok(Vec::<f32>::try_from(mean.to_device(tch::Device::Cpu))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_attention_rolls_out_to_identity_and_rows_stay_distributions() {
        let eye = Tensor::eye(3, (Kind::Float, tch::Device::Cpu)).view([1, 1, 3, 3]);
        let r = rollout(&[eye.shallow_clone(), eye]);
        assert!(r.allclose(&Tensor::eye(3, (Kind::Float, tch::Device::Cpu)), 1e-6, 1e-6, false));
        let uniform = Tensor::full([1, 2, 3, 3], 1.0 / 3.0, (Kind::Float, tch::Device::Cpu));
        let r = rollout(&[uniform.shallow_clone(), uniform]);
        // Each row sums to 1; (0.5·U + 0.5·I)² has 0.25 + 0.75/3 on the diagonal.
        let sums = Vec::<f32>::try_from(r.sum_dim_intlist(-1, false, Kind::Float)).unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
        assert!((r.double_value(&[0, 0]) - (0.25 + 0.75 / 3.0)).abs() < 1e-6);
    }
}
