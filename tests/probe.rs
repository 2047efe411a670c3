//! `bertkit probe`: the linear probe's fit against scikit-learn's LogisticRegression on the same
//! frozen all-MiniLM-L6-v2 features (`scripts/make_reference.py minilm-probe`), and the task
//! kinds and mistakes it handles.

mod common;

use common::bertkit;

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Same features, same penalty (C = 1), same optimum: the objective to 1e-4 relative, the
/// held-out loss to 1e-3, the same held-out accuracy.
#[test]
fn linear_probe_reaches_scikit_learns_optimum() {
    let Some((model, reference)) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("probe.json");
    let (train, eval) = (reference.join("minilm_probe_train.csv"), reference.join("minilm_probe_eval.csv"));
    let args = ["probe", "--model", model.to_str().unwrap(), "--train", train.to_str().unwrap()];
    let rest = ["--eval", eval.to_str().unwrap(), "--json", json.to_str().unwrap(), "--precision", "fp32"];
    let res = bertkit(&[&args[..], &rest, &["--device", "cpu"]].concat());
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let (ours, sklearn) = (read_json(&json), read_json(&reference.join("minilm_probe.json")));
    let objective = ours["fit_objective"].as_f64().unwrap();
    let expected = sklearn["objective"].as_f64().unwrap();
    assert!((objective - expected).abs() <= 1e-4 * expected, "objective {objective} vs scikit-learn {expected}");
    let loss = ours["metrics"]["eval_loss"].as_f64().unwrap();
    assert!((loss - sklearn["eval_loss"].as_f64().unwrap()).abs() < 1e-3, "{loss} vs {}", sklearn["eval_loss"]);
    assert_eq!(ours["metrics"]["accuracy"], sklearn["accuracy"]);
    assert_eq!(ours["train_examples"], 120);
}

/// Multi-label and regression data are probed with their own loss and metrics; a seeded sample
/// caps the training examples; token classification and a probe without held-out data are
/// refused in one line.
#[test]
fn probe_handles_every_sequence_task_and_refuses_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::tiny_model();
    let m = model.to_str().unwrap();
    let write = |name: &str, body: String| {
        let p = tmp.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let rows = |f: &dyn Fn(usize) -> String| (0..40).map(f).collect::<String>();
    let sets = write(
        "sets.jsonl",
        rows(&|i| {
            let labels = if i % 2 == 0 { r#"["a","b"]"# } else { r#"["b"]"# };
            format!("{{\"text\": \"the lessee {i} shall repair\", \"label\": {labels}}}\n")
        }),
    );
    let scores = write("scores.csv", format!("text,label\n{}", rows(&|i| format!("the premises {i},{}.5\n", i % 5))));
    let cpu = ["--device", "cpu", "--threads", "1", "--precision", "fp32", "--max-len", "16"];
    let probe = |data: &std::path::Path, extra: &[&str]| {
        let json = tmp.path().join("out.json");
        let base = ["probe", "--model", m, "--train", data.to_str().unwrap(), "--json", json.to_str().unwrap()];
        let res = bertkit(&[&base[..], extra, &cpu].concat());
        assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
        read_json(&json)
    };
    let multi = probe(&sets, &["--eval-split", "0.25", "--max-train-examples", "12"]);
    assert_eq!(multi["task"], "multi-label");
    assert_eq!(multi["train_examples"], 12);
    assert!(multi["metrics"]["micro_f1"].as_f64().unwrap() > 0.0, "{multi}");
    let regression = probe(&scores, &["--eval-split", "0.25", "--task", "regression"]);
    assert!(regression["metrics"]["pearson"].as_f64().is_some(), "{regression}");
    assert!(regression["metrics"]["mse"].as_f64().unwrap() >= 0.0);

    let conll = write("ner.conll", "EU B-ORG\nrejects O\n\nPeter B-PER\n".into());
    let tagged = bertkit(
        &[&["probe", "--model", m, "--train", conll.to_str().unwrap(), "--eval-split", "0.5"][..], &cpu].concat(),
    );
    let err = String::from_utf8_lossy(&tagged.stderr);
    assert!(!tagged.status.success() && err.contains("finetune") && err.lines().count() == 1, "{err}");
    let unscored = bertkit(&[&["probe", "--model", m, "--train", scores.to_str().unwrap()][..], &cpu].concat());
    let err = String::from_utf8_lossy(&unscored.stderr);
    assert!(!unscored.status.success() && err.contains("--eval"), "{err}");
}
