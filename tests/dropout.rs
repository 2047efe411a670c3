//! The CPU dropout mask (`encoder::layers::dropout`): the asked fraction, nn.Dropout's scale, and
//! the global generator's seed. In a test binary of its own: it seeds libtorch's global
//! generator and draws from it twice, which a test drawing random numbers on another thread of
//! the same process (the library's unit tests run side by side) can get in between.

use bertkit::encoder::layers::dropout;
use tch::{Kind, Tensor};

#[test]
fn cpu_dropout_keeps_the_asked_fraction_and_follows_the_seed() {
    let x = Tensor::ones([64, 12, 128, 128], (Kind::Float, tch::Device::Cpu));
    tch::manual_seed(3);
    let a = dropout(&x, 0.1, true);
    tch::manual_seed(3);
    let b = dropout(&x, 0.1, true);
    let c = dropout(&x, 0.1, true);
    assert!(a.equal(&b), "same seed, same mask");
    assert!(!b.equal(&c), "the next call draws a new mask");
    // Kept elements are scaled by 1 / (1 - p), as nn.Dropout does.
    let kept = a.ne(0.0);
    assert!(a.masked_select(&kept).allclose(&Tensor::from(1.0f32 / 0.9), 1e-6, 1e-6, false));
    // 12.6M Bernoulli(0.9) draws: the kept fraction is within 5 standard deviations of 0.9.
    let n = x.numel() as f64;
    let fraction = kept.sum(Kind::Float).double_value(&[]) / n;
    assert!((fraction - 0.9).abs() < 5.0 * (0.9 * 0.1 / n).sqrt(), "kept fraction {fraction}");
    // Neighbouring elements are independent: both kept as often as 0.9^2.
    let flat = kept.flatten(0, -1).to_kind(Kind::Float);
    let pairs = (flat.narrow(0, 0, x.numel() as i64 - 1) * flat.narrow(0, 1, x.numel() as i64 - 1)).mean(Kind::Float);
    assert!((pairs.double_value(&[]) - 0.81).abs() < 1e-3);
    // Gradient: the same mask, the same scale.
    let w = x.copy().set_requires_grad(true);
    tch::manual_seed(3);
    dropout(&w, 0.1, true).sum(Kind::Float).backward();
    assert!(w.grad().equal(&a));
}
