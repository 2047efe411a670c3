//! AdamW with decoupled weight decay through libtorch's fused kernel, the one
//! `torch.optim.AdamW(fused=True)` (transformers Trainer's default optimizer) runs: one pass
//! over each tensor, no temporaries. And gradient-norm clipping.
//!
//! The state (moments, step) is ours rather than libtorch's C++ optimizer's because it must be
//! saved in checkpoints and restored exactly for `--resume-from`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use tch::{Kind, Tensor};

use crate::ffi::{self, AdamWGroup, AdamWUpdate};

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
    /// `step` as the fused kernel reads it: a float scalar on the parameters' device.
    step_tensor: Tensor,
}

/// Trainer's grouping (`get_decay_parameter_names`): no weight decay on biases, nor on norm
/// layers' weights by any of their names (`LayerNorm`, DistilBERT's `sa_layer_norm`,
/// ModernBERT's `norm`, `attn_norm`, `final_norm`).
pub(crate) fn decays(name: &str) -> bool {
    let name = name.to_lowercase();
    let norm = name.split('.').any(|part| part == "norm" || part.ends_with("_norm"));
    !(norm || ["bias", "layernorm", "rmsnorm"].iter().any(|p| name.contains(p)))
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
        let device = params.first().map_or(tch::Device::Cpu, |p| p.param.device());
        AdamW { params, config, step: 0, step_tensor: Tensor::zeros([], (Kind::Float, device)) }
    }

    pub fn steps_taken(&self) -> i64 {
        self.step
    }

    /// One update at learning rate `lr`. Parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.step += 1;
        let _ = tch::no_grad(|| self.step_tensor.fill_(self.step as f64));
        let c = self.config;
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.param.grad()).collect();
        for decay in [true, false] {
            let weight_decay = if decay { c.weight_decay } else { 0.0 };
            let group: Vec<(&ParamState, &Tensor)> =
                self.params.iter().zip(&grads).filter(|(p, g)| p.decay == decay && g.defined()).collect();
            if group.is_empty() {
                continue;
            }
            let group = AdamWGroup {
                params: group.iter().map(|(p, _)| &p.param).collect(),
                grads: group.iter().map(|(_, g)| *g).collect(),
                exp_avgs: group.iter().map(|(p, _)| &p.exp_avg).collect(),
                exp_avg_sqs: group.iter().map(|(p, _)| &p.exp_avg_sq).collect(),
                step: &self.step_tensor,
            };
            let update = AdamWUpdate { lr, beta1: c.beta1, beta2: c.beta2, weight_decay, eps: c.eps };
            ffi::fused_adamw(&group, update).with_context(|| format!("AdamW step {} failed in libtorch", self.step))?;
        }
        Ok(())
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

    /// Drops the gradients (as `zero_grad(set_to_none=True)`), freeing their memory until the
    /// next backward pass.
    pub fn zero_grad(&mut self) {
        ffi::clear_grads(self.params.iter().map(|p| &p.param));
    }
}

/// Scales all gradients so their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does (the same arithmetic, on the device: nothing is read
/// back); returns the norm before clipping, a scalar on the device.
pub(crate) fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Tensor {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
        let total = Tensor::stack(&norms, 0).norm();
        // max_norm / (total + 1e-6) as PyTorch evaluates it (reciprocal, then product); scaling
        // by exactly 1 leaves gradients under the limit as they are.
        let coef = ((&total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
        for g in &grads {
            let _ = g.shallow_clone().g_mul_(&coef);
        }
        total
    })
}
