//! Dynamic loss scaling for fp16 training, as PyTorch's `torch.amp.GradScaler` does it: fp16
//! holds nothing under 6e-8, so small gradients would flush to zero. The loss is multiplied by
//! a large scale before backward, the gradients divided by it again before clipping and the
//! optimiser step; a step whose gradients overflowed (an infinite or NaN norm) is skipped and the
//! scale halved, and after 2 000 steps in a row without overflow the scale doubles.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// GradScaler's defaults.
const INITIAL_SCALE: f64 = 65536.0;
const GROWTH_FACTOR: f64 = 2.0;
const BACKOFF_FACTOR: f64 = 0.5;
const GROWTH_INTERVAL: u32 = 2000;

/// The scaler's state, saved with each checkpoint so that a resumed run scales as the
/// uninterrupted one would.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct LossScale {
    pub scale: f64,
    /// Steps without overflow since the scale last changed.
    pub growth_tracker: u32,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale { scale: INITIAL_SCALE, growth_tracker: 0 }
    }
}

impl LossScale {
    /// Divides every gradient by the scale (`GradScaler.unscale_`): clipping and the optimiser
    /// then see the true gradients.
    pub fn unscale(&self, params: &[Tensor]) {
        tch::no_grad(|| {
            for g in params.iter().map(Tensor::grad).filter(Tensor::defined) {
                let _ = g.shallow_clone().g_mul_scalar_(1.0 / self.scale);
            }
        });
    }

    /// After a step: `overflowed` (the gradients held an infinity or NaN, so the step is
    /// skipped) halves the scale; otherwise the 2 000th good step in a row doubles it
    /// (`GradScaler.update`). Returns the scale before, when it changed.
    pub fn update(&mut self, overflowed: bool) -> Option<f64> {
        let before = self.scale;
        if overflowed {
            self.scale *= BACKOFF_FACTOR;
            self.growth_tracker = 0;
            return Some(before);
        }
        self.growth_tracker += 1;
        if self.growth_tracker == GROWTH_INTERVAL {
            self.scale *= GROWTH_FACTOR;
            self.growth_tracker = 0;
            return Some(before);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn overflow_halves_the_scale_and_two_thousand_good_steps_double_it() {
        let mut s = LossScale::default();
        assert_eq!(s.update(true), Some(65536.0));
        assert_eq!(s.scale, 32768.0);
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert_eq!(s.update(false), None);
        }
        assert_eq!(s.update(false), Some(32768.0));
        assert_eq!((s.scale, s.growth_tracker), (65536.0, 0));
        // An overflow restarts the count.
        for _ in 0..10 {
            s.update(false);
        }
        s.update(true);
        assert_eq!((s.scale, s.growth_tracker), (32768.0, 0));
    }

    #[test]
    fn unscaling_divides_every_gradient_and_keeps_an_injected_infinity() {
        let w = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&w * Tensor::from_slice(&[1.0f32, 2.0, 4.0]) * 65536.0).sum(Kind::Float).backward();
        let s = LossScale::default();
        s.unscale(std::slice::from_ref(&w));
        assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), [1.0, 2.0, 4.0]);
        // An overflow stays an overflow: the step's norm is then not finite and the step skipped.
        let _ = w.grad().get(0).fill_(f64::INFINITY);
        s.unscale(std::slice::from_ref(&w));
        assert!(!w.grad().norm().double_value(&[]).is_finite());
    }
}
