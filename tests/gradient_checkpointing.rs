//! `--gradient-checkpointing` recomputes each layer's activations in backward: the loss and
//! every gradient must be those of the ordinary backward, dropout and bf16 autocast included.
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bertkit::data::Collator;
use bertkit::device::{Autocast, Precision};
use bertkit::encoder::recompute::recomputed;
use bertkit::encoder::{ForwardOptions, Inputs};
use bertkit::task::{IGNORE_INDEX, MaskedLm, MaskedTargets, SequenceClassifier};
use bertkit::tokenizer::Tokenizer;
use common::bertkit;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

const TEXTS: [&str; 3] = ["the lessee shall repair the premises at its own cost", "a good film", "bad"];

/// A padded batch (so the attention mask is exercised) from the tiny model's tokenizer.
fn batch() -> Inputs {
    batch_of(&common::tiny_model())
}

fn batch_of(model: &std::path::Path) -> Inputs {
    let tok = Tokenizer::from_dir(model).unwrap();
    let enc = tok.encode_batch(&TEXTS, None, 64).unwrap();
    Collator { pad_id: tok.pad_id }.collate_encodings(&enc).to_device(common::test_device())
}

/// libtorch's random generator is global: tests running at once (building models, drawing
/// dropout masks) would share its draws. Each test holds this while it runs.
fn serial() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The loss, and the gradient of every parameter by name, of one training forward/backward.
fn loss_and_grads(vs: &VarStore, run: impl FnOnce() -> Tensor) -> (f64, BTreeMap<String, Tensor>) {
    tch::manual_seed(7); // same dropout masks in both runs
    let loss = run();
    loss.backward();
    let grads = vs.variables().into_iter().map(|(name, t)| (name, t.grad().copy())).collect();
    (loss.double_value(&[]), grads)
}

/// Equal losses and gradients: exactly (`drift` None) where the recomputation repeats the same
/// operations on the same shapes in the same order, so every rounding is the same one; else
/// within `common::Drift` at the scale of the largest gradient.
fn assert_same(
    plain: &(f64, BTreeMap<String, Tensor>),
    recomputed: &(f64, BTreeMap<String, Tensor>),
    drift: Option<common::Drift>,
) {
    assert_eq!(plain.0, recomputed.0, "the loss is computed by the same forward");
    assert_eq!(plain.1.len(), recomputed.1.len());
    let scale = common::largest(plain.1.values());
    for (name, g) in &plain.1 {
        let r = &recomputed.1[name];
        assert!(g.defined() && r.defined(), "{name}: no gradient");
        match drift {
            None => assert!(g.equal(r), "{name}: gradients differ by {}", common::max_abs_diff(g, r)),
            Some(drift) => _ = drift.assert_at(name, r, g, scale),
        }
    }
}

/// Every family's tiny model: the same layer code, but each with its own dropout placement,
/// embeddings and head.
fn family_models() -> Vec<std::path::PathBuf> {
    let fixtures = common::repo().join("tests/fixtures");
    [
        "tiny-bert", "tiny-roberta", "tiny-xlm-roberta", "tiny-distilbert", "tiny-electra", "tiny-modernbert",
        "tiny-deberta-v3", "tiny-deberta-v2",
    ]
    .map(|m| fixtures.join(m))
    .to_vec()
}

fn classifier_grads_of(
    model: &std::path::Path,
    checkpointing: bool,
    precision: Precision,
) -> (f64, BTreeMap<String, Tensor>) {
    let inputs = batch_of(model);
    let device = common::test_device();
    let mut loaded = common::load::<SequenceClassifier>(model, device).unwrap();
    loaded.model.encoder.set_gradient_checkpointing(checkpointing);
    let (vs, model) = (&loaded.vs, &loaded.model);
    let labels = Tensor::from_slice(&[0i64, 2, 1]).to_device(device);
    let autocast = Autocast::new(precision, device);
    loss_and_grads(vs, || {
        autocast.run(|| {
            let (logits, _) = model.forward(&inputs, ForwardOptions::train());
            model.loss(&logits, &labels, None)
        })
    })
}

#[test]
fn a_recomputed_block_runs_again_in_backward_with_the_same_random_draws() {
    let _serial = serial();
    let calls = Arc::new(AtomicUsize::new(0));
    let device = common::test_device();
    let w = Tensor::randn([5, 5], (Kind::Float, device)).set_requires_grad(true);
    let block = || {
        let (calls, w) = (calls.clone(), w.shallow_clone());
        move |x: &Tensor| {
            calls.fetch_add(1, Ordering::SeqCst);
            x.matmul(&w).tanh().dropout(0.5, true) * 2.0
        }
    };
    let grads = |recompute: bool| {
        tch::manual_seed(11);
        let x = Tensor::randn([3, 5], (Kind::Float, device)).set_requires_grad(true);
        w.shallow_clone().zero_grad();
        let y = if recompute { recomputed(&x, block()) } else { block()(&x) };
        let loss = (y * 3.0).sum(Kind::Float);
        loss.backward();
        (loss.double_value(&[]), x.grad().copy(), w.grad().copy())
    };
    let before = calls.load(Ordering::SeqCst);
    let plain = grads(false);
    assert_eq!(calls.load(Ordering::SeqCst), before + 1);
    let recomputed_run = grads(true);
    assert_eq!(calls.load(Ordering::SeqCst), before + 3, "forward, then once more in backward");
    assert_eq!(plain.0, recomputed_run.0);
    // The block runs again with the same draws on the same values: the same roundings.
    assert!(plain.1.equal(&recomputed_run.1), "input gradients differ");
    assert!(plain.2.equal(&recomputed_run.2), "parameter gradients differ");
}

#[test]
fn classifier_gradients_are_unchanged_with_dropout() {
    let _serial = serial();
    for model in family_models() {
        let plain = classifier_grads_of(&model, false, Precision::Fp32);
        let recomputed = classifier_grads_of(&model, true, Precision::Fp32);
        assert_same(&plain, &recomputed, None);
    }
}

#[test]
fn classifier_gradients_are_unchanged_under_bf16_autocast() {
    let _serial = serial();
    for model in family_models() {
        let plain = classifier_grads_of(&model, false, Precision::Bf16);
        let recomputed = classifier_grads_of(&model, true, Precision::Bf16);
        // The recomputation runs under the same autocast, so the bf16 roundings are the same ones.
        assert_same(&plain, &recomputed, None);
    }
}

#[test]
fn masked_lm_gradients_are_unchanged() {
    let _serial = serial();
    let grads = |checkpointing: bool| {
        let inputs = batch();
        let mut loaded = common::load::<MaskedLm>(&common::tiny_model(), common::test_device()).unwrap();
        loaded.model.encoder.set_gradient_checkpointing(checkpointing);
        let (vs, model) = (&loaded.vs, &loaded.model);
        // Targets at every third real token.
        let every_third = Tensor::arange(inputs.input_ids.numel() as i64, (Kind::Int64, inputs.input_ids.device()))
            .remainder(3)
            .eq(0)
            .view(inputs.input_ids.size().as_slice())
            .logical_and(&inputs.attention_mask.eq(1));
        let labels = inputs.input_ids.where_self(&every_third, &Tensor::from(IGNORE_INDEX));
        let masked = MaskedTargets::from_labels(&labels).to_device(vs.device());
        loss_and_grads(vs, || model.forward_masked(&inputs, &masked, ForwardOptions::train()).loss)
    };
    // The word embeddings get gradient from the input side and the tied decoder, summed in
    // another order when the encoder's part arrives later: equal up to rounding.
    let drift = common::Drift::forward(&common::tiny_model()).backward(batch().input_ids.numel());
    assert_same(&grads(false), &grads(true), Some(drift));
}

#[test]
fn training_with_the_flag_reaches_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("train.csv");
    common::synthetic_csv(&data, 48, 3);
    let train = |out: &str, extra: &[&str]| {
        let out = tmp.path().join(out);
        let mut flags = vec!["--max-steps", "4", "--batch-size", "8", "--lr", "1e-3", "--log-every", "1"];
        flags.extend_from_slice(extra);
        let run = bertkit(&common::finetune_tiny(&data, &out, &flags));
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        Tensor::read_safetensors(out.join("model.safetensors")).unwrap().into_iter().collect::<BTreeMap<_, _>>()
    };
    let plain = train("plain", &[]);
    let recomputed = train("recomputed", &["--gradient-checkpointing"]);
    // The classifier's gradients are the same to the bit with the flag (above), so the same
    // optimiser steps give the same weights.
    for (name, w) in &plain {
        assert!(
            w.equal(&recomputed[name]),
            "{name}: weights differ by {} after 4 steps",
            common::max_abs_diff(w, &recomputed[name])
        );
    }
}
