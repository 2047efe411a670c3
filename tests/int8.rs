//! Int8 inference (`encoder::int8`, `bertkit quantize`): the int8 layers are PyTorch's own
//! `quantize_dynamic` (same bytes, same kernels, so the same outputs), each layer's error against
//! float32 stays within what 8-bit weights and 7-bit inputs allow, and the gate refuses a model
//! that loses accuracy (naming both numbers, writing nothing) or keeps its worst layers in float32.
mod common;

use std::collections::BTreeSet;
use std::path::Path;

use bertkit::encoder::{ForwardOptions, Inputs};
use bertkit::pretrained::int8::quantize_in_place;
use bertkit::pretrained::{self, Pretrained};
use bertkit::recipes::{Evaluate, Quantize};
use bertkit::task::{Bare, SequenceClassifier, TaskModel};
use bertkit::{Classifier, FineTune};
use common::Reference;
use tch::{Device, Tensor};

/// Each text of the reference alone (a batch of one: no padding to widen an input's range),
/// the last hidden states' rows concatenated.
fn hidden_states(model: &Pretrained<Bare<false>>, r: &Reference) -> Tensor {
    let ids = r.get("input_ids").to_device(Device::Cpu);
    let lengths = Vec::<i64>::try_from(r.get("lengths").to_device(Device::Cpu)).unwrap();
    let mut rows = Vec::new();
    let mut start = 0;
    for n in lengths {
        let text = ids.narrow(0, start, n).unsqueeze(0);
        let inputs = Inputs::new(text.shallow_clone(), text.ones_like(), text.zeros_like());
        let out = tch::no_grad(|| model.model.encoder().forward(&inputs, ForwardOptions::eval()));
        rows.push(out.last_hidden_state.get(0));
        start += n;
    }
    Tensor::cat(&rows, 0)
}

#[test]
fn int8_layers_are_pytorchs_quantize_dynamic() {
    let Some((model_dir, reference)) = common::minilm() else { return };
    let r = Reference::load(&reference.join("minilm_int8.safetensors"));
    let mut model: Pretrained<Bare<false>> = common::load(&model_dir, Device::Cpu).unwrap();
    let fp32 = hidden_states(&model, &r);
    let weights = quantize_in_place(&mut model).unwrap();
    let torch_layers = r.with_prefix("int8");
    assert_eq!(torch_layers.len(), weights.len(), "PyTorch quantized every linear layer we did");
    for (name, values) in torch_layers {
        let (_, ours) = weights.iter().find(|(n, _)| n.ends_with(&name)).unwrap_or_else(|| panic!("no layer {name}"));
        assert!(ours.values.equal(&values.to_device(Device::Cpu)), "{name}: int8 values differ from PyTorch's");
        let scales = r.get(&format!("scale.{name}")).to_device(Device::Cpu);
        assert!(ours.scales.equal(&scales), "{name}: scales differ from PyTorch's");
    }
    // The float models agree to ~1e-6; the int8 ones then take the same kernels on inputs that
    // differ by as little, so they agree far more closely than either does with float32: a
    // rounding of an input to the other 7-bit step is the largest difference possible.
    let int8 = hidden_states(&model, &r);
    let want = r.get("int8").to_device(Device::Cpu);
    let quantization = common::max_abs_diff(&want, &r.get("fp32").to_device(Device::Cpu));
    let ours = common::max_abs_diff(&int8, &want);
    eprintln!("int8 vs PyTorch int8: {ours:.2e}; PyTorch int8 vs float32: {quantization:.2e}");
    assert!(common::max_abs_diff(&fp32, &r.get("fp32").to_device(Device::Cpu)) < 1e-4, "float32 as transformers");
    assert!(ours <= 0.1 * quantization, "int8 {ours} from PyTorch's int8, whose own error is {quantization}");
}

/// Texts of a few words each.
fn texts() -> Vec<String> {
    let words = ["good", "bad", "film", "plot", "dull", "great", "acting", "long", "the", "a", "not", "fine"];
    let text = |i: usize| (0..3 + i % 7).map(|k| words[(i * 7 + k * 5 + k * k) % words.len()]).collect::<Vec<_>>();
    (0..60).map(|i| text(i).join(" ")).collect()
}

/// tiny-bert as a three-label classifier in `dir`, with the feed-forward input of both layers
/// made to break int8 and nothing else: one hidden dimension is zeroed by the attention
/// output's layer norm (weight and bias 0 there) and given weights of 1000 in the intermediate
/// layer. Float32 multiplies them by 0; int8's scale for each row is then set by the 1000, and
/// every other weight of the row rounds to 0. The random classifier is scaled up and its bias
/// set against each label's mean log-probability over `texts`, so that the labels depend on
/// the text (a random tiny encoder gives every text nearly the same first-token state).
fn broken_classifier(dir: &Path, texts: &[&str]) -> Vec<String> {
    let fixture = common::repo().join("tests/fixtures/tiny-bert");
    let classifier: Pretrained<SequenceClassifier> = common::load(&fixture, Device::Cpu).unwrap();
    classifier.save(dir).unwrap();
    let weights = pretrained::read_weights(dir, &bertkit::encoder::bert::FAMILY).unwrap();
    let mut broken = Vec::new();
    for layer in 0..2 {
        let norm = format!("bert.encoder.layer.{layer}.attention.output.LayerNorm");
        let intermediate = format!("bert.encoder.layer.{layer}.intermediate.dense");
        for part in ["weight", "bias"] {
            let _ = weights[&format!("{norm}.{part}")].get(5).fill_(0.0);
        }
        let _ = weights[&format!("{intermediate}.weight")].select(1, 5).fill_(1000.0);
        broken.push(intermediate);
    }
    let _ = weights["classifier.weight"].shallow_clone().g_mul_scalar_(5000.0);
    pretrained::write_safetensors(&dir.join("model.safetensors"), &weights).unwrap();
    let predictions = Classifier::load(dir).unwrap().predict(texts).unwrap();
    let log_p: Vec<Vec<f64>> =
        predictions.iter().map(|p| p.scores.iter().map(|(_, s)| f64::from(*s).max(1e-30).ln()).collect()).collect();
    let mean: Vec<f64> = (0..3).map(|c| log_p.iter().map(|row| row[c]).sum::<f64>() / log_p.len() as f64).collect();
    let _ = weights["classifier.bias"].shallow_clone().g_sub_(&Tensor::from_slice(&mean).to_kind(tch::Kind::Float));
    pretrained::write_safetensors(&dir.join("model.safetensors"), &weights).unwrap();
    broken
}

/// The `texts` the float model is sure of (its two likeliest labels 0.3 apart), labelled with
/// its own predictions: its accuracy is 1, and a prediction int8 changes costs accuracy. Close
/// calls are left out: a 1% error of any layer would turn some of them.
fn self_labelled(model: &Path, texts: &[&str], csv: &Path) {
    let mut rows = String::from("text,label\n");
    let mut labels = BTreeSet::new();
    for (text, p) in texts.iter().zip(Classifier::load(model).unwrap().predict(texts).unwrap()) {
        let mut probabilities: Vec<f32> = p.scores.iter().map(|(_, s)| *s).collect();
        probabilities.sort_by(|a, b| b.total_cmp(a));
        if probabilities[0] - probabilities[1] > 0.06 {
            rows += &format!("{text},{}\n", p.labels[0]);
            labels.insert(p.labels[0].clone());
        }
    }
    assert!(labels.len() > 1, "the texts get different labels");
    std::fs::write(csv, rows).unwrap();
}

#[test]
fn the_gate_refuses_a_model_int8_breaks_and_keeps_its_broken_layers_in_float32() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, out) = (tmp.path().join("model"), tmp.path().join("eval.csv"), tmp.path().join("int8"));
    let texts = texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let broken = broken_classifier(&model, &texts);
    self_labelled(&model, &texts, &data);
    let model_arg = model.display().to_string();
    let quantize = |max_fp32_layers: Option<usize>| {
        let mut q = Quantize::new(&model_arg, &data, &out).unwrap();
        (q.min_speedup, q.max_fp32_layers) = (0.0, max_fp32_layers);
        q.quantize()
    };

    let refused = quantize(Some(0)).err().expect("int8 loses accuracy: refused");
    let message = refused.to_string();
    assert!(message.contains("refused: accuracy 1.0000 in float32, 0."), "{message}");
    assert!(message.contains("--max-drop 0.5"), "{message}");
    assert!(!out.exists(), "nothing written when refused");

    let passed = quantize(None).unwrap();
    let kept: Vec<String> = serde_json::from_value(passed.report["fp32_layers"].clone()).unwrap();
    assert_eq!(kept.iter().collect::<BTreeSet<_>>(), broken.iter().collect(), "the broken layers stay in float32");
    let errors = &passed.report["layer_errors"];
    for (name, error) in errors.as_object().unwrap() {
        let error = error.as_f64().unwrap();
        if broken.contains(name) {
            assert!(error > 0.5, "{name}: int8 loses the row's small weights, error {error}");
        } else {
            assert!(error < 0.05, "{name}: 8-bit weights and 7-bit inputs, error {error}");
        }
    }
    assert_eq!(passed.report["gate"]["int8"], 1.0, "{}", passed.report);
    // What was written loads as an int8 model and answers as the gate measured.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization_config"]["quant_method"], "bertkit-int8");
    let evaluation = Evaluate::new(&out.display().to_string(), &data).unwrap().evaluate().unwrap().2;
    assert_eq!(evaluation.metrics["accuracy"], 1.0);
    // Training from it is refused before anything is written.
    let trained = tmp.path().join("trained");
    let refused = FineTune::new(&out.display().to_string(), &data, &trained).unwrap().run().err().unwrap();
    assert!(refused.to_string().contains("an int8 model is for inference"), "{refused}");
    assert!(!trained.exists());
}
