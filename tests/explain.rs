//! Attributions against Python: gradient × input and integrated gradients of the predicted
//! class probability (the same inputs_embeds arithmetic in transformers and torch), attention
//! rollout against the paper's formula on transformers' attentions, a token classifier's
//! gradient × input, and integrated gradients' completeness (Σ attributions = f(x) − f(x'),
//! within 1% at 50 steps). Reference: `scripts/make_reference.py explain` / `minilm-explain`.

mod common;

use std::path::{Path, PathBuf};

use bertkit::device::Autocast;
use bertkit::encoder::{ForwardOptions, Inputs};
use bertkit::explain::rollout::rollout;
use bertkit::explain::{Output, Target, gradient_x_input, integrated_gradients};
use bertkit::pretrained::{self, LoadOptions, ModelDir, Pretrained};
use bertkit::task::{SequenceClassifier, TaskModel, TokenClassifier};
use common::{Drift, Reference, largest, tiny_as, tiny_tagger};
use tch::Tensor;

const LABELS: [&str; 3] = ["negative", "neutral", "positive"];
const TAGS: [&str; 5] = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"];

/// Every model with its explain reference: the committed fixtures, and MiniLM where set up.
fn cases() -> Vec<(String, PathBuf, Reference)> {
    let cases = common::reference_cases("explain");
    if cases.iter().any(|(name, ..)| name == "minilm") {
        tch::set_num_threads(2);
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
    Target::label("predicted", r.get("explain.target").int64_value(&[0]))
}

fn as_tensor(v: &[f32]) -> Tensor {
    Tensor::from_slice(v).to_device(common::test_device())
}

/// How far rounding may move an attribution of `model` (`common::Drift`): a backward pass through
/// the encoder over the reference's few tokens, with terms of the size of the largest attribution
/// the reference holds for this encoder and input. Gradient x input and integrated gradients
/// are made of the same gradients (integrated gradients averages them along the path from the
/// baseline), so where the gradient at the input cancels to almost nothing (tiny DeBERTa-v3:
/// 2e-8, against 2e-3 along the path) its rounding is still that of the larger terms.
fn attribution_drift(model: &Path, r: &Reference) -> (Drift, f64) {
    let tokens = r.get("explain.input_ids").numel();
    let scale = largest([r.get("explain.gxi"), r.get("explain.ig"), r.get("explain.tok_gxi")]);
    (Drift::forward(model).backward(tokens), scale)
}

#[test]
fn gradient_x_input_matches_transformers() {
    for (name, dir, r) in cases() {
        let m = with_heads::<SequenceClassifier>(&dir, &LABELS, &r, "init");
        let got = gradient_x_input(&m.model, &inputs(&r), &target(&r), Output::Probability).unwrap();
        let (drift, scale) = attribution_drift(&dir, &r);
        drift.assert_at(&format!("{name} gradient x input"), &as_tensor(&got.scores), r.get("explain.gxi"), scale);
    }
}

#[test]
fn integrated_gradients_match_python_and_are_complete() {
    for (name, dir, r) in cases() {
        let m = with_heads::<SequenceClassifier>(&dir, &LABELS, &r, "init");
        let baseline = r.get("explain.baseline_ids");
        let got =
            integrated_gradients(&m.model, &inputs(&r), baseline, &target(&r), Output::Probability, 50, 16).unwrap();
        let (drift, scale) = attribution_drift(&dir, &r);
        drift.assert_at(&format!("{name} integrated gradients"), &as_tensor(&got.scores), r.get("explain.ig"), scale);
        // The outputs are probabilities: scale 1.
        let outputs = r.get("explain.ig_outputs");
        let tol = Drift::forward(&dir).tolerance(1.0);
        assert!((got.at_input - outputs.double_value(&[0])).abs() <= tol, "{name}: f(x)");
        assert!((got.at_baseline - outputs.double_value(&[1])).abs() <= tol, "{name}: f(baseline)");
        let error = got.completeness_error();
        assert!(error < 0.01, "{name}: completeness error {error} at 50 steps");
        eprintln!(
            "{name}: completeness error {:.4}%, f(x) - f(x') = {:.6}",
            error * 100.0,
            got.at_input - got.at_baseline
        );
    }
}

#[test]
fn rollout_matches_the_papers_formula() {
    for (name, dir, r) in cases() {
        let m = with_heads::<SequenceClassifier>(&dir, &LABELS, &r, "init");
        let opts = ForwardOptions { output_attentions: true, ..ForwardOptions::eval() };
        let attentions = tch::no_grad(|| TaskModel::encoder(&m.model).forward(&inputs(&r), opts)).attentions;
        // Products of the layers' attention matrices: one more sum over the tokens per layer.
        let drift = Drift::forward(&dir).summing(r.get("explain.input_ids").numel());
        drift.assert(&format!("{name} rollout"), &rollout(&attentions), r.get("explain.rollout"));
    }
}

#[test]
fn token_classifier_gradient_x_input_matches_transformers() {
    for (name, dir, r) in cases() {
        let m = with_heads::<TokenClassifier>(&dir, &TAGS, &r, "tok_init");
        let t = Target { name: "B-PER at 1..2".into(), label: 1, positions: vec![1, 2], window: None };
        let got = gradient_x_input(&m.model, &inputs(&r), &t, Output::Probability).unwrap();
        let (drift, scale) = attribution_drift(&dir, &r);
        let name = format!("{name} tagger gradient x input");
        drift.assert_at(&name, &as_tensor(&got.scores), r.get("explain.tok_gxi"), scale);
    }
}

fn explain_cli(model: &Path, out: &Path, extra: &[&str]) -> (serde_json::Value, String) {
    let json = out.with_extension("json");
    let mut args: Vec<String> = ["explain", "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap()]
        .into_iter()
        .chain(["--json", json.to_str().unwrap(), "--device", "cpu", "--threads", "1"])
        .map(String::from)
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = common::bertkit(&args);
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "explain failed: {stderr}");
    (
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap(),
        String::from_utf8_lossy(&run.stdout).to_string(),
    )
}

#[test]
fn explain_command_writes_every_method_and_escapes_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_as(tmp.path(), |c| c["architectures"] = serde_json::json!(["BertForSequenceClassification"]));
    let text = "great </script><b>film</b> & \"plot\"";
    let out = tmp.path().join("view.html");
    let (json, stdout) = explain_cli(&model, &out, &["--text", text, "--steps", "20"]);
    let targets = json["models"][0]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "one predicted class");
    let methods = targets[0]["methods"].as_array().unwrap();
    let names: Vec<&str> = methods.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(names, ["integrated-gradients", "gradient-x-input", "rollout"]);
    let tokens = json["tokens"].as_array().unwrap().len();
    assert!(methods.iter().all(|m| m["scores"].as_array().unwrap().len() == tokens));
    assert!(methods[0]["completeness_error"].as_f64().unwrap() < 0.05, "{}", methods[0]);
    // Rollout of the first token is a distribution over the tokens.
    let rollout: f64 = methods[2]["scores"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((rollout - 1.0).abs() < 1e-4, "rollout sums to {rollout}");
    assert!(stdout.contains("integrated gradients"), "{stdout}");
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(!page.contains("</script><b>"), "the text reached the page unescaped");
    assert!(page.contains("\\u003c"), "the text's pieces are in the page's data, escaped");
    // PNG and SVG from the same numbers.
    for ext in ["png", "svg"] {
        explain_cli(&model, &tmp.path().join(format!("view.{ext}")), &["--text", text, "--method", "gradient-x-input"]);
        assert!(std::fs::metadata(tmp.path().join(format!("view.{ext}"))).unwrap().len() > 1000);
    }
}

#[test]
fn explain_multi_label_and_tagger_targets_and_long_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let multi = tiny_as(&tmp.path().join("multi"), |c| {
        c["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
        c["problem_type"] = serde_json::json!("multi_label_classification");
    });
    let out = tmp.path().join("multi.png");
    let args = ["--text", "bad plot, great cast", "--target", "negative", "--target", "2", "--output", "logit"];
    let (json, _) = explain_cli(&multi, &out, &args);
    let names: Vec<&str> =
        json["models"][0]["targets"].as_array().unwrap().iter().map(|t| t["target"].as_str().unwrap()).collect();
    assert_eq!(names, ["negative", "positive"]);

    // Every tag an entity, so the random head finds some; each explained at its own tokens.
    let tagger = tiny_tagger(&tmp.path().join("tagger"));
    let (json, _) = explain_cli(&tagger, &tmp.path().join("tags.html"), &["--text", "John Smith lives in New York"]);
    let targets = json["models"][0]["targets"].as_array().unwrap();
    assert!(!targets.is_empty());
    assert!(targets.iter().all(|t| t["target"].as_str().unwrap().contains(" [")), "entities are named with their span");

    // A text of many windows: one score per token of the whole text, each window explained.
    let long = ["the film was good and the plot was bad"; 12].join(" ");
    let (json, _) = explain_cli(
        &multi,
        &tmp.path().join("long.html"),
        &["--text", &long, "--max-len", "32", "--stride", "8", "--steps", "8"],
    );
    let windows = json["windows"].as_array().unwrap().len();
    assert!(windows > 3, "{windows} windows");
    let target = &json["models"][0]["targets"][0];
    for m in target["methods"].as_array().unwrap() {
        assert_eq!(m["scores"].as_array().unwrap().len(), json["tokens"].as_array().unwrap().len());
        assert_eq!(m["windows"].as_array().unwrap().len(), windows);
    }
}

#[test]
fn explain_refuses_bad_requests_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_as(tmp.path(), |c| c["architectures"] = serde_json::json!(["BertForSequenceClassification"]));
    let m = model.to_str().unwrap();
    let out = tmp.path().join("x.png");
    let o = out.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--out", o, "--text", "hi", "--target", "joy"],
            "--target joy: the model's labels are negative, neutral, positive",
        ),
        (vec!["--out", o, "--text", "hi", "--steps", "1"], "--steps"),
        (vec!["--out", "x.txt", "--text", "hi"], "--out must end in"),
        (vec!["--out", o, "--text", "hi", "--compare", "/nonexistent/model"], "/nonexistent/model"),
    ] {
        let mut full = vec!["explain", "--model", m];
        full.extend(args);
        let run = common::bertkit(&full);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(says), "{full:?}: {stderr}");
        assert!(!out.exists(), "nothing written on a refused request");
    }
    // The encoder alone, saved without any head.
    let base = tmp.path().join("base");
    let bare: Pretrained<bertkit::task::Bare<true>> = common::load(&common::tiny_model(), tch::Device::Cpu).unwrap();
    bare.save(&base).unwrap();
    let run = common::bertkit(&["explain", "--model", base.to_str().unwrap(), "--text", "hi", "--out", o]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("has no task head"), "{stderr}");
    assert!(!out.exists());
}

/// A text of over 4 096 tokens: attributions over every window, one page that a browser draws
/// at once (one span per token per row). The load time is printed, not asserted.
#[test]
fn a_4096_token_text_explains_in_windows_and_its_page_draws() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_as(tmp.path(), |c| c["architectures"] = serde_json::json!(["BertForSequenceClassification"]));
    let text = ["the lessee shall repair the premises at its own cost"; 400].join(" ");
    let out = tmp.path().join("long.html");
    let (json, _) = explain_cli(&model, &out, &["--text", &text, "--method", "gradient-x-input,rollout"]);
    let tokens = json["tokens"].as_array().unwrap().len();
    assert!(tokens >= 4000, "{tokens} tokens");
    assert!(json["windows"].as_array().unwrap().len() >= 9);
    let Some(browser) = common::browser::Browser::start() else { return };
    browser.open(&out);
    let spans = browser.run("return document.querySelectorAll('.tok').length").as_u64().unwrap() as usize;
    assert_eq!(spans, 2 * tokens, "two rows of every token");
    let ms =
        browser.run("const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;");
    eprintln!(
        "{tokens}-token attribution page: {} bytes, loaded and drawn in {ms} ms",
        std::fs::metadata(&out).unwrap().len()
    );
    assert!(browser.errors().is_empty());
}
