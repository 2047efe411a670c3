//! A linear probe: how much of a labelled task a frozen encoder's features already solve, the
//! cheap way to score a further-pretraining checkpoint by the task (`bertkit probe`, `adapt
//! --probe-every`). Each text becomes one vector (the mean of its real tokens' last hidden
//! states, averaged over its windows), standardised with the training set's statistics; one
//! linear layer is fitted to the task's own loss over the whole set at once, with scikit-learn
//! LogisticRegression's default L2 penalty (C = 1: ½‖W‖² added to the summed loss), and scored
//! with the task's own metrics.

use anyhow::Result;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::data::{Encoded, Targets, WindowPool, eval_batches};
use crate::encoder::ForwardOptions;
use crate::predict::{Classifier, LabelledSet, pool_documents};

/// Full-batch Adam steps: the objective is convex and the features standardised, so this many
/// reach its optimum to well within the metrics' resolution (checked against scikit-learn).
const FIT_STEPS: usize = 500;
const FIT_LR: f64 = 0.02;

/// One vector per example, `[examples, hidden]` (CPU, fp32): the mean over real tokens of the
/// encoder's last hidden states, averaged over the example's windows.
pub(crate) fn features(classifier: &Classifier, set: &LabelledSet, batch_size: usize) -> Result<Tensor> {
    let items: &[Encoded] = &set.items;
    let lengths: Vec<usize> = items.iter().map(Encoded::len).collect();
    let hidden = classifier.dims.hidden_size;
    let mut pooled = Tensor::zeros([items.len() as i64, hidden], (Kind::Float, Device::Cpu));
    let collator = classifier.collator();
    let bar = crate::progress::items_bar(items.len() as u64, "examples");
    bar.set_message("features");
    for batch in eval_batches(&lengths, batch_size) {
        let refs: Vec<&Encoded> = batch.iter().map(|&i| &items[i]).collect();
        let inputs = collator.collate(&refs).to_device(classifier.device);
        let out =
            tch::no_grad(|| classifier.autocast.run(|| classifier.model.forward(&inputs, ForwardOptions::eval()).1));
        let mask = inputs.attention_mask.to_kind(Kind::Float).unsqueeze(-1);
        let mean = (out.last_hidden_state.to_kind(Kind::Float) * &mask).sum_dim_intlist(1, false, Kind::Float)
            / mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0);
        let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let _ = pooled.index_copy_(0, &index, &mean.to_device(Device::Cpu));
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(pool_documents(&pooled, &set.doc_of, set.targets.len(), WindowPool::Mean))
}

/// A fitted probe: the training features' statistics and the linear layer over them.
pub(crate) struct LinearProbe {
    mean: Tensor,
    scale: Tensor,
    linear: nn::Linear,
    _vs: nn::VarStore,
    /// The objective (mean task loss + penalty / n) at the end of fitting.
    pub final_objective: f64,
}

impl LinearProbe {
    /// Fits the probe to `features` (`[examples, hidden]`) and their targets with the loss of
    /// `classifier`'s task. Starts from zero weights, so the result depends on nothing random.
    pub fn fit(classifier: &Classifier, features: &Tensor, targets: &Targets) -> Result<LinearProbe> {
        let mean = features.mean_dim(0, true, Kind::Float);
        let scale = features.std_dim(0, false, true).clamp_min(1e-6);
        let x = (features - &mean) / &scale;
        let vs = nn::VarStore::new(Device::Cpu);
        let zero = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
        let linear = nn::linear(vs.root(), x.size()[1], classifier.config.num_labels(), zero);
        let labels = targets.all();
        let n = x.size()[0] as f64;
        let mut opt = nn::Adam::default().build(&vs, FIT_LR)?;
        let objective = || {
            let loss = classifier.model.loss(&linear.forward(&x), &labels, None);
            loss + linear.ws.square().sum(Kind::Float) * (0.5 / n)
        };
        for _ in 0..FIT_STEPS {
            opt.backward_step(&objective());
        }
        let final_objective = tch::no_grad(|| objective().double_value(&[]));
        Ok(LinearProbe { mean, scale, linear, _vs: vs, final_objective })
    }

    /// Logits `[examples, labels]` of other features.
    pub fn logits(&self, features: &Tensor) -> Tensor {
        tch::no_grad(|| self.linear.forward(&((features - &self.mean) / &self.scale)))
    }
}
