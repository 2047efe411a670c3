//! Linear centred kernel alignment (Kornblith et al. 2019, "Similarity of Neural Network
//! Representations Revisited"): how alike two models' representations of the same examples
//! are, invariant to rotation and scale of either. 1 for a representation with itself (or a
//! rotated, rescaled copy), near 0 for unrelated ones.

use tch::{Kind, Tensor};

/// Linear CKA of `x` `[n, d1]` and `y` `[n, d2]` (the same n examples in the same order):
/// ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F) after centring each feature, in double precision.
pub fn linear_cka(x: &Tensor, y: &Tensor) -> f64 {
    let centre = |t: &Tensor| {
        let t = t.to_kind(Kind::Double);
        &t - t.mean_dim(0, true, Kind::Double)
    };
    let (x, y) = (centre(x), centre(y));
    let frobenius_sq = |a: &Tensor, b: &Tensor| a.tr().matmul(b).square().sum(Kind::Double).double_value(&[]);
    let cross = frobenius_sq(&y, &x);
    let denominator = (frobenius_sq(&x, &x) * frobenius_sq(&y, &y)).sqrt();
    if denominator == 0.0 { 0.0 } else { cross / denominator }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cka_is_one_for_itself_and_rotations_and_low_for_noise() {
        tch::manual_seed(0);
        let opts = (Kind::Float, tch::Device::Cpu);
        let x = Tensor::randn([200, 16], opts);
        assert!((linear_cka(&x, &x) - 1.0).abs() < 1e-9);
        let (q, _) = Tensor::linalg_qr(&Tensor::randn([16, 16], opts), "reduced");
        assert!((linear_cka(&x, &(x.matmul(&q) * 3.0 + 1.0)) - 1.0).abs() < 1e-6);
        let noise = Tensor::randn([200, 16], opts);
        assert!(linear_cka(&x, &noise) < 0.2);
    }
}
