//! AdamW with decoupled weight decay, step for step the algorithm of `torch.optim.AdamW`
//! (its single-tensor path, which PyTorch uses on CPU), and gradient-norm clipping.
//!
//! Our own rather than libtorch's C++ optimizer because its state must be saved in checkpoints
//! and restored exactly for `--resume-from`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// transformers' Trainer defaults.
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

struct ParamState {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    decay: bool,
}

pub struct AdamW {
    params: Vec<ParamState>,
    config: AdamWConfig,
    step: i64,
}

/// Trainer's grouping: no weight decay on biases and LayerNorm weights.
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm"))
}

impl AdamW {
    /// `params` are (HF name, trainable tensor); the name decides the weight-decay group.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> Self {
        let mut params: Vec<ParamState> = params
            .into_iter()
            .map(|(name, param)| ParamState {
                decay: decays(&name),
                exp_avg: param.zeros_like(),
                exp_avg_sq: param.zeros_like(),
                name,
                param,
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        AdamW { params, config, step: 0 }
    }

    pub fn steps_taken(&self) -> i64 {
        self.step
    }

    /// One update at learning rate `lr`. Parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let c = self.config;
        let bias_correction1 = 1.0 - c.beta1.powi(self.step as i32);
        let bias_correction2_sqrt = (1.0 - c.beta2.powi(self.step as i32)).sqrt();
        let step_size = lr / bias_correction1;
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.param.grad();
                if !grad.defined() {
                    continue;
                }
                if p.decay && c.weight_decay != 0.0 {
                    let _ = p.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = p.exp_avg.lerp_(&grad, 1.0 - c.beta1);
                // ATen's addcmul/addcdiv evaluate value * t1 (op) t2; same order here.
                let _ = p.exp_avg_sq.g_mul_scalar_(c.beta2).addcmul_(&(&grad * (1.0 - c.beta2)), &grad);
                let denom = (p.exp_avg_sq.sqrt() / bias_correction2_sqrt).g_add_scalar(c.eps);
                let _ = p.param.addcdiv_(&(&p.exp_avg * -step_size), &denom);
            }
        });
    }

    /// Moment estimates and step count, for a checkpoint (`exp_avg.NAME`, `exp_avg_sq.NAME`, `step`).
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for p in &self.params {
            out.insert(format!("exp_avg.{}", p.name), p.exp_avg.shallow_clone());
            out.insert(format!("exp_avg_sq.{}", p.name), p.exp_avg_sq.shallow_clone());
        }
        out.insert("step".into(), Tensor::from_slice(&[self.step]));
        out
    }

    /// Restores what `state` saved; every parameter must be there with its shape.
    pub fn load_state(&mut self, mut state: BTreeMap<String, Tensor>) -> Result<()> {
        let step = state.remove("step").context("optimizer state has no step")?;
        for p in &mut self.params {
            for (slot, key) in [(&mut p.exp_avg, "exp_avg"), (&mut p.exp_avg_sq, "exp_avg_sq")] {
                let name = format!("{key}.{}", p.name);
                let saved = state.remove(&name).with_context(|| format!("optimizer state has no {name}"))?;
                if saved.size() != slot.size() {
                    bail!("optimizer state {name} has shape {:?}, the parameter {:?}", saved.size(), slot.size());
                }
                tch::no_grad(|| slot.copy_(&saved));
            }
        }
        if let Some(extra) = state.keys().next() {
            bail!("optimizer state has {extra}, which is no parameter of this model");
        }
        self.step = step.int64_value(&[0]);
        Ok(())
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.param.zero_grad();
        }
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does; returns the norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let coef = (max_norm / (total.double_value(&[]) + 1e-6)).min(1.0);
        if coef < 1.0 {
            for g in &grads {
                let _ = g.shallow_clone().g_mul_scalar_(coef);
            }
        }
        total.double_value(&[])
    })
}
