//! Linear centred kernel alignment (Kornblith et al. 2019, "Similarity of Neural Network
//! Representations Revisited"): how alike two models' representations of the same examples
//! are, invariant to rotation and scale of either. 1 for a representation with itself (or a
//! rotated, rescaled copy), near 0 for unrelated ones.

use tch::{Kind, Tensor};

/// Linear CKA of `x` `[n, d1]` and `y` `[n, d2]` (the same n examples in the same order):
/// ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F) after centring each feature, in double precision.
pub fn linear_cka(x: &Tensor, y: &Tensor) -> f64 {
    linear_cka_all(std::slice::from_ref(x), std::slice::from_ref(y))[0][0]
}

/// Linear CKA of every representation in `xs` with every one in `ys` (`[xs][ys]`): each centred
/// and its own ‖Xᵀ X‖_F taken once, not once per pair (a 7 x 7 grid of 1 000 x 384 layers: 63
/// products of two layers instead of 147).
pub(crate) fn linear_cka_all(xs: &[Tensor], ys: &[Tensor]) -> Vec<Vec<f64>> {
    let centre = |t: &Tensor| {
        let t = t.to_kind(Kind::Double);
        &t - t.mean_dim(0, true, Kind::Double)
    };
    let frobenius_sq = |a: &Tensor, b: &Tensor| a.tr().matmul(b).square().sum(Kind::Double).double_value(&[]);
    let centred = |ts: &[Tensor]| -> Vec<(Tensor, f64)> {
        ts.iter()
            .map(|t| {
                let t = centre(t);
                let norm = frobenius_sq(&t, &t);
                (t, norm)
            })
            .collect()
    };
    let (xs, ys) = (centred(xs), centred(ys));
    xs.iter()
        .map(|(x, xx)| {
            ys.iter()
                .map(|(y, yy)| {
                    let denominator = (xx * yy).sqrt();
                    if denominator == 0.0 { 0.0 } else { frobenius_sq(y, x) / denominator }
                })
                .collect()
        })
        .collect()
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

    #[test]
    fn the_grid_holds_each_pairs_cka() {
        tch::manual_seed(1);
        let opts = (Kind::Float, tch::Device::Cpu);
        let xs: Vec<Tensor> = (0..3).map(|_| Tensor::randn([50, 8], opts)).collect();
        let ys: Vec<Tensor> =
            (0..2).map(|i| xs[i].matmul(&Tensor::randn([8, 5], opts)) + Tensor::randn([50, 5], opts)).collect();
        let grid = linear_cka_all(&xs, &ys);
        assert_eq!((grid.len(), grid[0].len()), (3, 2));
        for (i, x) in xs.iter().enumerate() {
            for (j, y) in ys.iter().enumerate() {
                let centre = |t: &Tensor| {
                    let t = t.to_kind(Kind::Double);
                    &t - t.mean_dim(0, true, Kind::Double)
                };
                let (x, y) = (centre(x), centre(y));
                let f = |a: &Tensor, b: &Tensor| a.tr().matmul(b).square().sum(Kind::Double).double_value(&[]);
                assert_eq!(grid[i][j], f(&y, &x) / (f(&x, &x) * f(&y, &y)).sqrt(), "[{i}][{j}]");
            }
        }
        assert_eq!(linear_cka_all(&xs[..1], &[Tensor::ones([50, 4], opts)]), [[0.0]], "a constant has no spread");
    }
}
