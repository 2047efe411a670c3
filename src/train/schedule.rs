//! Learning-rate schedules with linear warmup, as transformers' `get_scheduler` defines them:
//! the update with index `step` (0-based) uses `base_lr * factor(step)`.

use std::f64::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Warm up, then decay linearly to 0 at the last step.
    Linear,
    /// Warm up, then half a cosine down to 0.
    Cosine,
    /// Warm up, then hold.
    Constant,
}

/// The learning rate of every step: linear warmup from 0 to `base_lr`, then `kind`'s decay.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    pub fn lr(&self, step: usize) -> f64 {
        self.base_lr * self.factor(step)
    }

    fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / decay_steps;
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => (1.0 - progress).max(0.0),
            ScheduleKind::Cosine => (0.5 * (1.0 + (PI * progress).cos())).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_transformers_schedules() {
        // Values of transformers' get_*_schedule_with_warmup(warmup=2, total=10) lambdas.
        let s = |kind| Schedule { kind, base_lr: 1.0, warmup_steps: 2, total_steps: 10 };
        let linear: Vec<f64> = (0..11).map(|i| s(ScheduleKind::Linear).lr(i)).collect();
        let want = [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0];
        for (g, w) in linear.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{linear:?}");
        }
        let cosine = s(ScheduleKind::Cosine);
        assert!((cosine.lr(6) - 0.5).abs() < 1e-12);
        assert!((cosine.lr(4) - 0.5 * (1.0 + (PI * 0.25).cos())).abs() < 1e-12);
        assert_eq!(s(ScheduleKind::Constant).lr(1), 0.5);
        assert_eq!(s(ScheduleKind::Constant).lr(9), 1.0);
    }
}
