//! Multiple choice (`finetune --task multiple-choice`): run_swag.py's pairs (token ids, cut
//! longest first at the maximum length) and transformers' `AutoModelForMultipleChoice` (logits
//! `[questions, choices]`, loss, every parameter's gradient) for every family, against
//! `scripts/make_reference.py mc`; and the commands on a clean checkout.

mod common;

use std::path::{Path, PathBuf};

use bertkit::data::multiple_choice::{ChoiceSet, read_choices};
use bertkit::data::{OnBadRow, Sampling};
use bertkit::encoder::ForwardOptions;
use bertkit::predict::Chooser;
use bertkit::pretrained::{self, LoadOptions, ModelDir};
use bertkit::train::{MultipleChoiceTraining, Objective};
use common::{Drift, Reference, largest, ok, repo, test_device};
use serde_json::json;

/// Every config key a family reads a head's dropout from: the reference runs without dropout.
const HEAD_DROPOUT_KEYS: [&str; 5] =
    ["classifier_dropout", "seq_classif_dropout", "pooler_dropout", "cls_dropout", "summary_last_dropout"];
/// make_reference.py's MC_MAX_LEN.
const MAX_LEN: usize = 40;

fn examples() -> PathBuf {
    repo().join("tests/fixtures/reference/mc_examples.jsonl")
}

/// The fine-tuning objective on the reference's questions: a fresh head started at the
/// reference's, no dropout.
fn objective(dir: &Path, r: &Reference) -> MultipleChoiceTraining {
    let mut model = ModelDir::open(dir.to_str().unwrap()).unwrap();
    for key in HEAD_DROPOUT_KEYS {
        model.config.set(key, json!(0.0));
    }
    model.set_dropout(0.0).unwrap();
    let options = LoadOptions { device: test_device(), new_head: true, ..LoadOptions::default() };
    let chooser: Chooser = pretrained::load(&model, &options).unwrap();
    let vars = chooser.vs.variables();
    for (name, want) in r.with_prefix("init") {
        tch::no_grad(|| vars.get(&name).unwrap_or_else(|| panic!("no {name}")).shallow_clone().copy_(want));
    }
    let (questions, _) = read_choices(&examples(), OnBadRow::Error).unwrap();
    let train = ChoiceSet::new(&chooser.tokenizer, questions, MAX_LEN).unwrap();
    let batch_size = train.questions.len();
    MultipleChoiceTraining { chooser, train, eval: None, batch_size, sampling: Sampling::Random }
}

/// Every model with its multiple-choice reference: the committed fixtures, and MiniLM where set
/// up (a trained encoder: its choices' states differ, so its gradients cancel little).
fn cases() -> Vec<(String, PathBuf, Reference)> {
    common::reference_cases("mc")
}

#[test]
fn pairs_logits_loss_and_gradients_equal_transformers_for_every_family() {
    for (name, dir, r) in cases() {
        let task = objective(&dir, &r);
        let set = &task.train;
        let lengths = Vec::<i64>::try_from(r.get("lengths")).unwrap();
        let ids = Vec::<i64>::try_from(r.get("input_ids")).unwrap();
        assert_eq!(set.pairs.len(), lengths.len(), "{name}: pairs");
        let mut at = 0;
        for (p, &n) in lengths.iter().enumerate() {
            let got: Vec<i64> = set.pairs[p].ids.iter().map(|&i| i64::from(i)).collect();
            assert_eq!(got, ids[at..at + n as usize], "{name}: pair {p}'s tokens");
            at += n as usize;
        }
        // The tiny vocabularies read the long context in more than MAX_LEN tokens; MiniLM's not.
        assert!(name == "minilm" || set.truncated > 0, "{name}: some pairs are cut at {MAX_LEN}");

        let all: Vec<usize> = (0..set.questions.len()).collect();
        let inputs = task.chooser.collator().collate(&set.batch_pairs(&all)).to_device(test_device());
        let logits = tch::no_grad(|| task.chooser.model.logits(&inputs, set.choices, ForwardOptions::eval()));
        let drift = Drift::forward(&dir);
        drift.assert(&format!("{name} logits"), &logits, r.get("logits"));

        let step = task.train_loss(&all, 0).unwrap();
        drift.summing(set.choices).assert(&format!("{name} loss"), &step.loss.reshape([1]), r.get("loss"));
        step.loss.backward();
        let want = r.with_prefix("grad");
        let vars = task.chooser.vs.variables();
        assert!(want.len() >= vars.len() - 2, "{name}: a gradient per trained parameter");
        let scale = largest(want.iter().map(|(_, w)| *w));
        let drift = drift.backward(inputs.input_ids.numel());
        for (pname, w) in want {
            let g = vars.get(&pname).unwrap_or_else(|| panic!("{name}: no parameter {pname}")).grad();
            // A gradient here is a sum over a question's choices weighted by p - y, which sums to
            // zero; the tiny random encoders give the choices [CLS] states equal to ~1e-3, so it
            // cancels to ~1e-3 of its terms and carries their rounding (the reference's
            // grad_terms: the same backward with |p - y|). The encoder's gradients are checked
            // at their own scale by the classification and question-answering parity tests.
            let terms = r.get(&format!("grad_terms.{pname}")).double_value(&[0]);
            drift.assert_at(&format!("{name} gradient {pname}"), &g, w, scale.max(terms));
        }
    }
}

/// finetune finds the task from SWAG-layout data, saves `BertForMultipleChoice`; evaluate gives
/// the accuracy training's evaluation gave, predict each question's choice and probabilities.
#[test]
fn finetune_evaluate_and_predict_choose_among_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let (o, data) = (out.to_str().unwrap(), examples());
    let d = data.to_str().unwrap();
    let model = repo().join("tests/fixtures/tiny-bert");
    let mut args = vec!["finetune", "--model", model.to_str().unwrap(), "--train", d, "--eval", d, "--output", o];
    args.extend(["--epochs", "3", "--lr", "1e-3", "--batch-size", "2", "--max-len", "40", "--threads", "1"]);
    args.extend(["--precision", "fp32"]);
    ok(&args);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertForMultipleChoice");
    let inspected = ok(&["inspect", o]);
    assert!(
        inspected.contains("multiple_choice") && inspected.contains("task          multiple-choice"),
        "{inspected}"
    );
    let trained: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_results.json")).unwrap()).unwrap();

    let report = dir.path().join("eval.json");
    ok(&["evaluate", "--model", o, "--data", d, "--json", report.to_str().unwrap(), "--max-len", "40"]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["task"], "multiple-choice");
    let accuracy = report["metrics"]["accuracy"].as_f64().unwrap();
    assert!((accuracy - trained["metrics"]["accuracy"].as_f64().unwrap()).abs() < 1e-9, "{report} vs {trained}");

    let lines: Vec<serde_json::Value> = ok(&["predict", "--model", o, "--input", d, "--max-len", "40"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let (questions, _) = read_choices(&data, OnBadRow::Error).unwrap();
    let mut right = 0;
    for (line, q) in lines.iter().zip(&questions) {
        let p: Vec<f64> = line["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(p.len(), 4);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6, "a softmax over the choices: {line}");
        let label = line["label"].as_u64().unwrap() as usize;
        assert!(p.iter().all(|&x| x <= p[label]), "the likeliest choice: {line}");
        assert_eq!(line["choice"], q.choices[label]);
        right += usize::from(q.label == Some(label));
    }
    assert!((right as f64 / 3.0 - accuracy).abs() < 1e-9, "predict chooses what evaluate scores");

    // What is not built for a chooser says so in one line.
    let study = dir.path().join("study");
    let m = model.to_str().unwrap();
    for args in [
        vec!["serve", "--model", o],
        vec!["explain", "--model", o, "--text", "a", "--out", "x.png"],
        vec!["adapt", "--model", m, "--train", d, "--tapt", "--output", study.to_str().unwrap()],
    ] {
        let refused = common::bertkit(&args);
        let e = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && e.contains("multiple") && e.trim().lines().count() == 1, "{e}");
    }
    assert!(!study.exists(), "nothing written");
}

#[test]
fn bad_questions_are_refused_in_one_line_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let model = repo().join("tests/fixtures/tiny-bert");
    let refused = |name: &str, rows: &str| {
        let data = dir.path().join(name);
        std::fs::write(&data, rows).unwrap();
        let mut args = vec!["finetune", "--model", model.to_str().unwrap(), "--train", data.to_str().unwrap()];
        args.extend(["--output", out.to_str().unwrap(), "--task", "multiple-choice"]);
        let o = common::bertkit(&args);
        assert!(!o.status.success());
        assert!(!out.exists(), "nothing written");
        let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    let row = |choices: &str, label: &str| {
        format!(r#"{{"context": "The tenant pays.", "choices": {choices}, "label": {label}}}"#)
    };
    let e = refused("label.jsonl", &format!("{}\n{}\n", row(r#"["a", "b"]"#, "0"), row(r#"["a", "b"]"#, "5")));
    assert!(e.contains("label.jsonl:2") && e.contains("label 5 is not one of the 2 choices"), "{e}");
    let e = refused("count.jsonl", &format!("{}\n{}\n", row(r#"["a", "b"]"#, "0"), row(r#"["a", "b", "c"]"#, "1")));
    assert!(e.contains("count.jsonl:2: 3 choices, where ") && e.contains("count.jsonl:1 has 2"), "{e}");
    let e = refused("unlabelled.jsonl", &format!("{}\n", row(r#"["a", "b"]"#, "null")));
    assert!(e.contains("unlabelled.jsonl:1") && e.contains("needs its right choice"), "{e}");
}
