//! `bertkit compare-models`: a model against itself changes nothing (CKA 1 on every layer,
//! no attention change, no flipped prediction); against a random model of the same shape its
//! deep layers' CKA falls well below 1, predictions flip and pages are written for them; linear
//! CKA equals numpy's; the report works in a browser.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bertkit::explain::similarity::linear_cka;
use bertkit::pretrained::write_safetensors;
use common::browser::Browser;
use tch::Tensor;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The tiny BERT with every weight but the layer norms drawn afresh (seeded).
fn random_tiny(dir: &Path) -> PathBuf {
    let out = dir.join("tiny-random");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"] {
        std::fs::copy(common::tiny_model().join(f), out.join(f)).unwrap();
    }
    tch::manual_seed(3);
    let w: BTreeMap<String, Tensor> = common::bert_weights(&common::tiny_model())
        .into_iter()
        .map(|(name, t)| {
            let fresh = if name.contains("LayerNorm") { t } else { t.randn_like() * 0.5 };
            (name, fresh)
        })
        .collect();
    write_safetensors(&out.join("model.safetensors"), &w).unwrap();
    out
}

/// `bertkit compare-models` of `a` and `b` over `data`, its report in `out`.
fn run_compare(a: &Path, b: &Path, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["compare-models", "--model", s(a), "--model", s(b), "--data", s(data), "--out", s(out)];
    args.extend(["--device", "cpu", "--threads", "1", "--steps", "4"]);
    args.extend(extra);
    common::bertkit(&args)
}

fn compare(a: &Path, b: &Path, data: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let run = run_compare(a, b, data, out, extra);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(numbers).collect(),
        v => v.as_f64().into_iter().collect(),
    }
}

#[test]
fn a_model_against_itself_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.csv");
    std::fs::write(&data, "text,label\ngood film,positive\nbad plot,negative\nan ok movie,neutral\nawful,negative\n")
        .unwrap();
    let tiny = common::tiny_model();
    let r = compare(&tiny, &tiny, &data, &tmp.path().join("same"), &[]);
    assert_eq!(r["examples"], 4);
    assert_eq!(r["changes"].as_array().unwrap().len(), 0);
    let cka = r["cka"].as_array().unwrap();
    assert_eq!(cka.len(), 3, "embeddings and two layers");
    for (l, row) in cka.iter().enumerate() {
        assert!((row[l].as_f64().unwrap() - 1.0).abs() < 1e-6, "layer {l}: {}", row[l]);
    }
    assert!(numbers(&r["attention_divergence"]["all"]).iter().all(|v| v.abs() < 1e-6));
    assert_eq!(r["metrics"][0], r["metrics"][1]);
}

#[test]
fn a_random_model_differs_and_its_flips_get_pages_that_work_in_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.csv");
    common::synthetic_csv(&data, 60, 7);
    // The tiny checkpoint has a 3-label head (negative, neutral, positive): relabel the data.
    let csv = std::fs::read_to_string(&data).unwrap().replace(",pos\n", ",positive\n").replace(",neg\n", ",negative\n");
    std::fs::write(&data, csv).unwrap();
    let out = tmp.path().join("report");
    let r = compare(&common::tiny_model(), &random_tiny(tmp.path()), &data, &out, &["--explain-flipped", "2"]);
    let cka = r["cka"].as_array().unwrap();
    let last = cka.len() - 1;
    assert!(cka[last][last].as_f64().unwrap() < 0.9, "last layer CKA {}", cka[last][last]);
    assert!(numbers(&r["attention_divergence"]["all"]).iter().all(|&v| v > 0.0 && v <= 2f64.ln() + 1e-9));
    let by_label = r["attention_divergence"]["examples_by_label"].as_array().unwrap();
    assert_eq!(by_label.last().unwrap(), 60.0, "every example counted once in 'all'");
    let changes = r["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "a random model flips some predictions");
    for c in changes.iter().take(2) {
        for page in ["explain", "attention"] {
            assert!(out.join(c["pages"][page].as_str().unwrap()).exists(), "{page} page of {c}");
        }
    }
    assert!(changes.iter().skip(2).all(|c| c["pages"].is_null()));

    let Some(browser) = Browser::start() else { return };
    browser.open(&out.join("report.html"));
    let metric_rows = browser.run("return document.querySelectorAll('#metrics tr').length").as_u64().unwrap();
    assert_eq!(metric_rows as usize, 1 + r["metrics"][0].as_object().unwrap().len());
    assert_eq!(
        browser.run("return document.querySelectorAll('#changes tr').length").as_u64().unwrap() as usize,
        1 + changes.len()
    );
    assert_eq!(browser.run("return document.querySelectorAll('#cka tr').length"), 1 + cka.len() as u64);
    browser.run("const s = document.getElementById('label'); s.value = s.options[1].value; s.dispatchEvent(new Event('change'));");
    assert_ne!(browser.run("return document.body.dataset.divergence"), "all");
    // The first flipped example's attribution page draws one span per token per row.
    browser.run("document.querySelector('#changes a').click()");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        browser.run("return document.querySelectorAll('.row').length").as_u64().unwrap() >= 4,
        "two methods x two models"
    );
    assert!(browser.errors().is_empty());
}

#[test]
fn linear_cka_matches_numpy() {
    let path = common::repo().join("tests/fixtures/reference/metrics.json");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let matrix = |v: &serde_json::Value| {
        let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
        let n = rows.len() as i64;
        Tensor::from_slice(&rows.concat()).view([n, -1])
    };
    let got = linear_cka(&matrix(&r["cka"]["x"]), &matrix(&r["cka"]["y"]));
    let want = r["cka"]["cka"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-9, "{got} vs numpy {want}");
}

#[test]
fn a_tokenizer_that_reads_the_data_differently_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The tiny BERT with a tokenizer that keeps case: another tokenizer, which reads lower-case
    // text as the original does and capitals otherwise.
    let cased = tmp.path().join("cased");
    std::fs::create_dir_all(&cased).unwrap();
    for f in std::fs::read_dir(common::tiny_model()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, cased.join(f.file_name().unwrap())).unwrap();
    }
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cased.join("tokenizer.json")).unwrap()).unwrap();
    json["normalizer"]["lowercase"] = false.into();
    std::fs::write(cased.join("tokenizer.json"), json.to_string()).unwrap();
    let lower = tmp.path().join("lower.csv");
    std::fs::write(&lower, "text,label\ngood film,positive\nbad plot,negative\n").unwrap();
    let r = compare(&common::tiny_model(), &cased, &lower, &tmp.path().join("lower"), &[]);
    assert_eq!(r["examples"], 2);

    let upper = tmp.path().join("upper.csv");
    std::fs::write(&upper, "text,label\nGood film,positive\nbad plot,negative\n").unwrap();
    let out = tmp.path().join("upper");
    let run = run_compare(&common::tiny_model(), &cased, &upper, &out, &[]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("reads the data differently"), "{err}");
    assert!(!out.join("report.json").exists());
}
