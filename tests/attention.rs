//! `bertkit attention`: the numbers drawn are the model's attention probabilities (checked
//! against transformers' reference), pictures are produced in every mode, and the HTML head view
//! works in a real browser (headless Chromium through chromedriver).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bertkit::pretrained::write_safetensors;
use common::Reference;
use common::browser::Browser;
use tch::Tensor;

fn bertkit(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bertkit")).args(args).output().unwrap();
    assert!(out.status.success(), "bertkit {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The reference text whose row in the padded "short" batch has no padding.
fn unpadded_reference_text() -> (String, i64) {
    let tokens: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/reference/tiny_tokens.json")).unwrap(),
    )
    .unwrap();
    let masks = tokens["short"]["attention_mask"].as_array().unwrap();
    let row = masks.iter().position(|m| m.as_array().unwrap().iter().all(|v| v == 1)).unwrap();
    (tokens["short"]["texts"][row].as_str().unwrap().to_string(), row as i64)
}

/// A copy of the tiny model with layer 1's attention changed: a "fine-tuned" model to compare.
fn perturbed_tiny(dir: &Path) -> PathBuf {
    let out = dir.join("tiny-changed");
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"] {
        std::fs::copy(common::tiny_model().join(f), out.join(f)).unwrap();
    }
    let mut w: BTreeMap<String, Tensor> = common::bert_weights(&common::tiny_model());
    let name = "bert.encoder.layer.1.attention.self.query.weight";
    let changed = &w[name] * 3.0;
    w.insert(name.into(), changed);
    write_safetensors(&out.join("model.safetensors"), &w).unwrap();
    out
}

#[test]
fn drawn_values_are_transformers_attention_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let (text, row) = unpadded_reference_text();
    let json = tmp.path().join("a.json");
    let png = tmp.path().join("a.png");
    bertkit(&[
        "attention",
        "--model",
        s(&common::tiny_model()),
        "--text",
        &text,
        "--layer",
        "1",
        "--head",
        "2",
        "--out",
        s(&png),
        "--json",
        s(&json),
    ]);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let got: Vec<Vec<f32>> = serde_json::from_value(v["attention"].clone()).unwrap();
    let r = Reference::load(&common::repo().join("tests/fixtures/reference/tiny.safetensors"));
    let want = r.get("short.attentions.1").get(row).get(2);
    let got = Tensor::from_slice2(&got);
    common::Drift::forward(&common::tiny_model()).assert("layer 1 head 2", &got, &want);
    let png_bytes = std::fs::read(&png).unwrap();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn every_picture_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = common::tiny_model();
    let changed = perturbed_tiny(tmp.path());
    let text = "I love this movie, it's fantastic!";
    for (name, extra) in [
        ("one.svg", vec![]),
        ("all.png", vec!["--all"]),
        ("cmp.png", vec!["--compare", s(&changed)]),
        ("cmp_all.svg", vec!["--all", "--compare", s(&changed)]),
        ("view.html", vec!["--compare", s(&changed)]),
    ] {
        let out = tmp.path().join(name);
        let mut args =
            vec!["attention", "--model", s(&tiny), "--text", text, "--layer", "1", "--head", "0", "--out", s(&out)];
        args.extend(extra.iter().copied());
        bertkit(&args);
        assert!(std::fs::metadata(&out).unwrap().len() > 1000, "{name} written");
    }
    let svg = std::fs::read_to_string(tmp.path().join("one.svg")).unwrap();
    assert!(svg.contains("fantastic") || svg.contains("##"), "token labels are drawn");
    // The ranking: only layer 1 was changed, so its heads lead and layer 0 is unchanged.
    let heads: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("cmp.heads.json")).unwrap()).unwrap();
    let ranked = heads["heads"].as_array().unwrap();
    assert_eq!(ranked.len(), 2 * 4);
    assert_eq!(ranked[0]["layer"], 1);
    for h in ranked.iter().filter(|h| h["layer"] == 0) {
        assert!(h["jensen_shannon"].as_f64().unwrap() < 1e-9, "layer 0 did not change: {h}");
    }
    // A layer or head that does not exist is a clear error.
    let bad = Command::new(env!("CARGO_BIN_EXE_bertkit"))
        .args(["attention", "--model", s(&tiny), "--text", text, "--layer", "5", "--out", s(&tmp.path().join("x.png"))])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("layers 0..1"));
}

#[test]
fn html_head_view_and_model_view_work_in_chromium() {
    let Some(browser) = Browser::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("view.html");
    let changed = perturbed_tiny(tmp.path());
    bertkit(&[
        "attention",
        "--model",
        s(&common::tiny_model()),
        "--compare",
        s(&changed),
        "--text",
        "the lessee shall <script>repair</script> it",
        "--layer",
        "0",
        "--head",
        "0",
        "--out",
        s(&page),
    ]);
    browser.open(&page);
    let run = |script: &str| browser.run(script);

    assert_eq!(run("return document.body.dataset.drawn"), "0/0");
    assert_eq!(run("return document.querySelectorAll('svg').length"), 2, "both models drawn side by side");
    let token_texts = run("return [...document.querySelectorAll('svg text')].map(t => t.textContent).join(' ')");
    assert!(token_texts.as_str().unwrap().contains('<'), "the <script> in the text shows as text");
    assert_eq!(run("return document.querySelectorAll('script').length"), 2, "no script injected by the text");
    let opacities = "return [...document.querySelectorAll('svg')[1].querySelectorAll('line')].map(l => l.getAttribute('stroke-opacity')).join(',')";
    let before = run(opacities);
    run("const s = document.getElementById('layer'); s.value = '1'; s.dispatchEvent(new Event('change'));");
    assert_eq!(run("return document.body.dataset.drawn"), "1/0");
    let after = run(opacities);
    assert_ne!(before, after, "switching the layer changes the lines drawn");
    run("const s = document.getElementById('head'); s.value = '3'; s.dispatchEvent(new Event('change'));");
    assert_ne!(run(opacities), after, "switching the head changes the lines drawn");
    run("const s = document.getElementById('head'); s.value = 'mean'; s.dispatchEvent(new Event('change'));");
    assert_eq!(run("return document.body.dataset.drawn"), "1/mean");

    // Model view: 2 models x 2 layers x 4 heads; a click opens that head above.
    assert_eq!(run("return document.body.dataset.thumbnails"), "16");
    run("document.querySelector('.grid canvas[data-layer=\"0\"][data-head=\"2\"]').click()");
    assert_eq!(run("return document.body.dataset.drawn"), "0/2");
    assert_eq!(
        run("return document.querySelectorAll('.grid canvas.chosen').length"),
        2,
        "the head marked in both grids"
    );

    std::fs::write(common::repo().join("target/attention-head-view.png"), browser.screenshot()).unwrap();
    let errors = browser.errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// A window of 512 tokens through MiniLM (every layer and head of two models) stays a page a
/// browser opens at once: a few MB, drawn on load. The load time is printed, not asserted.
#[test]
fn a_512_token_window_makes_a_small_page_that_draws() {
    let Some((minilm, _)) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("long.html");
    let text = ["the lessee shall repair the premises at its own cost"; 60].join(" ");
    bertkit(&["attention", "--model", s(&minilm), "--compare", s(&minilm), "--text", &text, "--out", s(&page)]);
    let size = std::fs::metadata(&page).unwrap().len();
    assert!(size < 12_000_000, "{size} bytes for 512 tokens");
    let Some(browser) = Browser::start() else { return };
    browser.open(&page);
    assert_eq!(browser.run("return document.body.dataset.thumbnails"), "144");
    assert_eq!(browser.run("return document.querySelectorAll('svg')[0].querySelectorAll('text').length"), 1024);
    let ms =
        browser.run("const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;");
    eprintln!("512-token head and model view: {size} bytes, loaded and drawn in {ms} ms");
    assert!(browser.errors().is_empty());
}

#[test]
fn long_text_draws_a_named_window_and_says_which() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::tiny_model();
    let text = ["the movie was good and the plot"; 20].join(" ");
    let out = tmp.path().join("w.png");
    let base = ["attention", "--model", s(&model), "--text", &text, "--max-len", "32", "--out", s(&out)];
    let run = |extra: &[&str]| common::bertkit(&[&base[..], extra, &["--device", "cpu"]].concat());
    let first = run(&[]);
    assert!(first.status.success());
    assert!(String::from_utf8_lossy(&first.stderr).contains("drawing window 0 of 13"), "{first:?}");
    let third = run(&["--window", "2"]);
    assert!(String::from_utf8_lossy(&third.stderr).contains("drawing window 2 of 13 (tokens 30..60)"));
    let beyond = run(&["--window", "13"]);
    assert!(String::from_utf8_lossy(&beyond.stderr).contains("--window 13: the text has 13 windows"));
    assert!(!beyond.status.success());

    // An HTML page without --window holds every window, chosen with a selector.
    let page = tmp.path().join("w.html");
    let html =
        ["attention", "--model", s(&model), "--text", &text, "--max-len", "32", "--out", s(&page), "--device", "cpu"];
    let run = common::bertkit(&html);
    assert!(String::from_utf8_lossy(&run.stderr).contains("all 13 windows of 32"), "{run:?}");
    let Some(browser) = Browser::start() else { return };
    browser.open(&page);
    assert_eq!(browser.run("return document.getElementById('window').options.length"), 13);
    let tokens =
        "return [...document.querySelectorAll('svg')[0].querySelectorAll('text')].map(t => t.textContent).join(' ')";
    let before = browser.run(tokens);
    browser.run("const s = document.getElementById('window'); s.value = '12'; s.dispatchEvent(new Event('change'));");
    assert_eq!(browser.run("return document.body.dataset.window"), "12");
    assert_ne!(browser.run(tokens), before, "the last window's tokens are drawn");
    assert_eq!(browser.run("return document.body.dataset.thumbnails"), "8", "the model view redrawn for the window");
    assert!(browser.errors().is_empty());
}
