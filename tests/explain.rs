//! Attributions against Python: gradient × input and integrated gradients of the predicted
//! class probability (the same inputs_embeds arithmetic in transformers and torch), attention
//! rollout against the paper's formula on transformers' attentions, a token classifier's
//! gradient × input, and integrated gradients' completeness (Σ attributions = f(x) − f(x'),
//! within 1% at 50 steps). Reference: `scripts/make_reference.py explain` / `minilm-explain`.

mod common;

use std::path::{Path, PathBuf};

use bertkit::encoder::{ForwardOptions, Inputs};
use bertkit::explain::rollout::rollout;
use bertkit::explain::{Explained, Output, Target, gradient_x_input, integrated_gradients};
use bertkit::device::Autocast;
use bertkit::pretrained::{self, LoadOptions, ModelDir, Pretrained};
use bertkit::task::{SequenceClassifier, TaskModel, TokenClassifier};
use common::{Reference, assert_close};
use tch::Tensor;

const LABELS: [&str; 3] = ["negative", "neutral", "positive"];
const TAGS: [&str; 5] = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"];
const FIXTURES: [(&str, &str); 5] = [
    ("tiny", "tiny-bert"),
    ("tiny-roberta", "tiny-roberta"),
    ("tiny-xlm-roberta", "tiny-xlm-roberta"),
    ("tiny-distilbert", "tiny-distilbert"),
    ("tiny-electra", "tiny-electra"),
];

/// Every model with its explain reference: the committed fixtures, and MiniLM where set up.
fn cases() -> Vec<(String, PathBuf, Reference)> {
    let fixtures = common::repo().join("tests/fixtures");
    let mut cases: Vec<_> = FIXTURES
        .iter()
        .map(|(name, dir)| {
            let r = Reference::load(&fixtures.join(format!("reference/{name}_explain.safetensors")));
            (name.to_string(), fixtures.join(dir), r)
        })
        .collect();
    if let Some((model, reference)) = common::minilm() {
        tch::set_num_threads(2);
        cases.push(("minilm".into(), model, Reference::load(&reference.join("minilm_explain.safetensors"))));
    }
    cases
}

/// The model with head `M` and Python's head values (`prefix.*` in the reference).
fn with_heads<M: TaskModel>(dir: &Path, labels: &[&str], r: &Reference, prefix: &str) -> Pretrained<M> {
    let mut model = ModelDir::open(dir.to_str().unwrap()).unwrap();
    model.config.set_labels(&labels.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    let options = LoadOptions { new_head: true, ..LoadOptions::inference(common::test_device(), Autocast::off()) };
    let m = pretrained::load::<M>(&model, &options).unwrap();
    let vars = m.vs.variables();
    for (name, want) in r.with_prefix(prefix) {
        let var = vars.get(&name).unwrap_or_else(|| panic!("no variable {name}"));
        tch::no_grad(|| var.shallow_clone().copy_(want));
    }
    m
}

fn inputs(r: &Reference) -> Inputs {
    let ids = r.get("explain.input_ids").shallow_clone();
    Inputs::new(ids.shallow_clone(), ids.ones_like(), r.get("explain.token_type_ids").shallow_clone())
}

fn target(r: &Reference) -> Target {
    Target { name: "predicted".into(), label: r.get("explain.target").int64_value(&[0]), positions: vec![] }
}

fn as_tensor(v: &[f32]) -> Tensor {
    Tensor::from_slice(v).to_device(common::test_device())
}

#[test]
fn gradient_x_input_matches_transformers() {
    for (name, dir, r) in cases() {
        let m = with_heads::<SequenceClassifier>(&dir, &LABELS, &r, "init");
        let got = gradient_x_input(&m.model, &inputs(&r), &target(&r), Output::Probability).unwrap();
        assert_close(&format!("{name} gradient x input"), &as_tensor(&got.scores), r.get("explain.gxi"), 1e-5);
    }
}

#[test]
fn integrated_gradients_match_python_and_are_complete() {
    for (name, dir, r) in cases() {
        let m = with_heads::<SequenceClassifier>(&dir, &LABELS, &r, "init");
        let baseline = r.get("explain.baseline_ids");
        let got = integrated_gradients(&m.model, &inputs(&r), baseline, &target(&r), Output::Probability, 50, 16).unwrap();
        assert_close(&format!("{name} integrated gradients"), &as_tensor(&got.scores), r.get("explain.ig"), 1e-5);
        let outputs = r.get("explain.ig_outputs");
        assert!((got.at_input - outputs.double_value(&[0])).abs() < 1e-5, "{name}: f(x)");
        assert!((got.at_baseline - outputs.double_value(&[1])).abs() < 1e-5, "{name}: f(baseline)");
        let error = got.completeness_error();
        assert!(error < 0.01, "{name}: completeness error {error} at 50 steps");
        eprintln!("{name}: completeness error {:.4}%, f(x) - f(x') = {:.6}", error * 100.0, got.at_input - got.at_baseline);
    }
}

#[test]
fn rollout_matches_the_papers_formula() {
    for (name, dir, r) in cases() {
        let m = with_heads::<SequenceClassifier>(&dir, &LABELS, &r, "init");
        let opts = ForwardOptions { output_attentions: true, ..ForwardOptions::eval() };
        let attentions = tch::no_grad(|| TaskModel::encoder(&m.model).forward(&inputs(&r), opts)).attentions;
        assert_close(&format!("{name} rollout"), &rollout(&attentions), r.get("explain.rollout"), 1e-5);
    }
}

#[test]
fn token_classifier_gradient_x_input_matches_transformers() {
    for (name, dir, r) in cases() {
        let m = with_heads::<TokenClassifier>(&dir, &TAGS, &r, "tok_init");
        let t = Target { name: "B-PER at 1..2".into(), label: 1, positions: vec![1, 2] };
        let got = gradient_x_input(&m.model, &inputs(&r), &t, Output::Probability).unwrap();
        assert_close(&format!("{name} tagger gradient x input"), &as_tensor(&got.scores), r.get("explain.tok_gxi"), 1e-5);
    }
}
