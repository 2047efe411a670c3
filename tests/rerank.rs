//! Rerankers (`finetune --task rerank`): the BCE and ListNet losses and their gradients against
//! `scripts/make_reference.py rerank` (sentence-transformers' losses on transformers'
//! `AutoModelForSequenceClassification`) for every family; the measures against
//! sentence-transformers' CrossEncoderRerankingEvaluator; the saved directory loaded by
//! `CrossEncoder` with the same scores; evaluation; and the refusals of bad input.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bertkit::data::{Encoded, Sampling, Targets, tokenize};
use bertkit::encoder::ForwardOptions;
use bertkit::metrics::retrieval::reranking_metrics;
use bertkit::predict::{Classifier, LabelledSet};
use bertkit::pretrained::{self, LoadOptions, ModelDir};
use bertkit::task::{SIGMOID, SequenceClassifier, set_cross_encoder};
use bertkit::train::{Objective, SequenceClassification};
use common::{Drift, FIXTURES, Reference, bertkit, largest, ok, repo, rerank_scores, test_device, write_candidates};
use serde_json::json;
use tch::{Kind, Tensor};

/// make_reference.py's RERANK_ROWS: (query, passage, relevance).
const ROWS: [(&str, &str, f32); 5] = [
    ("How do I end the lease early?", "The tenant may terminate on sixty days' notice.", 1.0),
    ("How do I end the lease early?", "Rent is due monthly.", 0.0),
    ("How do I end the lease early?", "Either party may end the lease with notice.", 0.5),
    ("Which law governs the contract?", "This agreement is governed by the laws of Delaware.", 1.0),
    ("Which law governs the contract?", "Notices go by mail.", 0.0),
];

/// Every config key a family reads a head's dropout from: the reference runs without dropout.
const HEAD_DROPOUT_KEYS: [&str; 4] = ["classifier_dropout", "seq_classif_dropout", "pooler_dropout", "cls_dropout"];

/// libtorch's random generator is one per process: tests drawing from it take turns.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The fine-tuning objective on the reference rows: a one-output head started at the
/// reference's fresh head, no dropout; `listnet`: batches of whole queries.
fn objective(dir: &Path, r: &Reference, listnet: bool) -> SequenceClassification {
    let mut model = ModelDir::open(dir.to_str().unwrap()).unwrap();
    for key in HEAD_DROPOUT_KEYS {
        model.config.set(key, json!(0.0));
    }
    model.set_dropout(0.0).unwrap();
    model.config.set_labels(&["LABEL_0".to_string()]);
    model.config.set("problem_type", serde_json::Value::Null);
    set_cross_encoder(&mut model.config, SIGMOID);
    let options = LoadOptions { device: test_device(), new_head: true, ..LoadOptions::default() };
    let classifier: Classifier = pretrained::load(&model, &options).unwrap();
    let vars = classifier.vs.variables();
    for (name, want) in r.with_prefix("init") {
        tch::no_grad(|| vars.get(&name).unwrap_or_else(|| panic!("no {name}")).shallow_clone().copy_(want));
    }
    let items = tokenize(&classifier.tokenizer, &ROWS.map(|r| r.0), Some(&ROWS.map(|r| r.1)), 512).unwrap().items;
    let targets = Targets::Relevance { relevance: ROWS.map(|r| r.2).to_vec(), query_of: vec![0, 0, 0, 1, 1] };
    SequenceClassification {
        classifier,
        train: LabelledSet::new(items, targets),
        eval: None,
        batch_size: 5,
        sampling: Sampling::Random,
        loss_weights: None,
        pool: Default::default(),
        lists: listnet.then(|| vec![vec![0, 1, 2], vec![3, 4]]),
    }
}

#[test]
fn bce_and_listnet_losses_and_gradients_equal_the_reference_for_every_family() {
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for (name, fixture) in FIXTURES {
        let dir = repo().join("tests/fixtures").join(fixture);
        let r = Reference::load(&repo().join(format!("tests/fixtures/reference/{name}_rerank.safetensors")));
        for (loss, listnet, batch) in [("bce", false, vec![0, 1, 2, 3, 4]), ("listnet", true, vec![0, 1])] {
            let task = objective(&dir, &r, listnet);
            let want_ids = Vec::<Vec<i64>>::try_from(r.get("input_ids")).unwrap();
            for (item, want) in task.train.items.iter().zip(&want_ids) {
                let got: Vec<i64> = item.ids.iter().map(|&i| i as i64).collect();
                assert_eq!(got[..], want[..got.len()], "{name}: (query, passage) tokens");
            }
            let step = task.train_loss(&batch, 0).unwrap();
            let tokens: usize = task.train.items.iter().map(|e| e.len()).sum();
            let loss_drift = Drift::forward(&dir).summing(tokens);
            loss_drift.assert(&format!("{name} {loss} loss"), &step.loss.reshape([1]), r.get(&format!("loss.{loss}")));
            step.loss.backward();
            let want = r.with_prefix(&format!("grad.{loss}"));
            let vars = task.classifier.vs.variables();
            assert!(want.len() >= vars.len() - 2, "{name}: a gradient per trained parameter");
            let scale = largest(want.iter().map(|(_, w)| *w));
            let summands = if listnet { summand_scales(&objective(&dir, &r, true)) } else { BTreeMap::new() };
            let drift = Drift::forward(&dir).backward(tokens);
            for (pname, w) in want {
                let g = vars.get(&pname).unwrap_or_else(|| panic!("{name}: no parameter {pname}")).grad();
                let scale = scale.max(summands.get(&pname).copied().unwrap_or(0.0));
                drift.assert_at(&format!("{name} {loss} gradient {pname}"), &g, w, scale);
            }
        }
    }
}

/// ListNet's gradient sums, over each query's candidates, terms whose logit gradients
/// (softmax(logits) - softmax(relevance)) add up to zero: where the candidates look alike to the
/// model (a tiny random one), it is far smaller than its terms, and its rounding error is theirs.
/// Their scale, per parameter: its largest gradient from the same terms with every sign made
/// positive.
fn summand_scales(task: &SequenceClassification) -> BTreeMap<String, f64> {
    let c = &task.classifier;
    let refs: Vec<&Encoded> = task.train.items.iter().collect();
    let inputs = c.collator().collate(&refs).to_device(c.device);
    let logits = c.model.logits(&inputs, ForwardOptions::train()).view([-1]);
    let relevance = task.train.targets.all().to_device(c.device);
    let lists = [3, 2];
    let weights: Vec<Tensor> = logits
        .detach()
        .split_with_sizes(lists, 0)
        .iter()
        .zip(relevance.split_with_sizes(lists, 0))
        .map(|(l, r)| (l.softmax(0, Kind::Float) - r.softmax(0, Kind::Float)).abs() / lists.len() as f64)
        .collect();
    (logits * Tensor::cat(&weights, 0)).sum(Kind::Float).backward();
    let grads = c.vs.variables().into_iter().map(|(name, v)| (name, v.grad())).filter(|(_, g)| g.defined());
    grads.map(|(name, g)| (name, largest([&g]))).collect()
}

#[test]
fn the_losses_give_the_reference_gradient_of_the_logits() {
    let r = Reference::load(&repo().join("tests/fixtures/reference/tiny_rerank.safetensors"));
    let relevance = r.get("relevance");
    let mut classifier = ModelDir::open(repo().join("tests/fixtures/tiny-bert").to_str().unwrap()).unwrap();
    classifier.config.set_labels(&["LABEL_0".to_string()]);
    classifier.config.set("problem_type", serde_json::Value::Null);
    set_cross_encoder(&mut classifier.config, SIGMOID);
    let options = LoadOptions { new_head: true, ..LoadOptions::default() };
    let head: Classifier = pretrained::load(&classifier, &options).unwrap();
    for loss in ["bce", "listnet"] {
        let logits = r.get("logits").view([-1, 1]).detach().set_requires_grad(true);
        let value = match loss {
            "bce" => head.model.loss(&logits, relevance, None),
            _ => SequenceClassifier::listwise_loss(&logits, relevance, &[3, 2]),
        };
        common::assert_close(&format!("{loss} loss"), &value.reshape([1]), r.get(&format!("loss.{loss}")), 1e-6);
        value.backward();
        // Each element a difference of probabilities (at most 1) over the 5 pairs or 2 queries,
        // in float32: a few roundings of numbers at most 1.
        let grad = logits.grad().view([-1]);
        common::assert_close(
            &format!("{loss} logit gradient"),
            &grad,
            r.get(&format!("logit_grad.{loss}")),
            4.0 * f32::EPSILON as f64,
        );
    }
}

#[test]
fn reranking_measures_equal_sentence_transformers_evaluator() {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/reference/rerank.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Tied scores check NDCG's and MAP's tie handling; MRR is checked on distinct scores (the
    // evaluator orders ties as numpy's sort kernel on that CPU leaves them).
    for case in ["tied", "distinct"] {
        let r = &reference[case];
        let get = |k: &str| -> Vec<f64> { serde_json::from_value(r[k].clone()).unwrap() };
        let scores: Vec<f32> = get("scores").iter().map(|&x| x as f32).collect();
        let relevance: Vec<f32> = get("relevance").iter().map(|&x| x as f32).collect();
        let query_of: Vec<usize> = get("query_of").iter().map(|&x| x as usize).collect();
        let got = reranking_metrics(&scores, &relevance, &query_of);
        for (metric, want) in r["metrics"].as_object().unwrap() {
            let want = want.as_f64().unwrap();
            assert!(
                (got[metric] - want).abs() < 1e-12,
                "{case} {metric}: {} vs sentence-transformers {want}",
                got[metric]
            );
        }
        assert_eq!(got["queries"], 12.0, "a query without a relevant candidate counts (as 0)");
    }
}

fn finetune_rerank(train: &Path, output: &Path, flags: &[&str]) -> Vec<String> {
    let tiny = repo().join("tests/fixtures/tiny-bert");
    let mut args: Vec<String> = [
        "finetune",
        "--model",
        tiny.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--task",
        "rerank",
        "--new-head",
        "--text-column",
        "query",
        "--text-pair-column",
        "passage",
        "--label-column",
        "label",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--max-steps",
        "3",
        "--precision",
        "fp32",
    ]
    .map(String::from)
    .to_vec();
    args.extend(flags.iter().map(|f| f.to_string()));
    args
}

#[test]
fn a_trained_reranker_loads_in_cross_encoder_with_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (train, out) = (dir.path().join("candidates.csv"), dir.path().join("model"));
    write_candidates(&train, 12);
    ok(&finetune_rerank(&train, &out, &["--eval-split", "0.25", "--loss", "listnet", "--batch-size", "2"]));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_results.json")).unwrap()).unwrap();
    let queries = results["report"]["queries"].as_f64().unwrap();
    assert_eq!(queries, 3.0, "a quarter of the 12 questions held out whole: {results}");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("pipeline_tag: \"text-ranking\"") && card.contains("library_name: sentence-transformers"));

    let pairs = dir.path().join("pairs.csv");
    std::fs::write(&pairs, "query,passage\nquestion 1 about repairs,the clause on repairs\nwho keeps pets?,noise\n")
        .unwrap();
    let ours = rerank_scores(&out, &pairs);
    assert_eq!(ours.len(), 2);
    assert!(ours.iter().all(|s| (0.0..=1.0).contains(s)), "scores are the sigmoid of the logit: {ours:?}");
    if !common::python_available() {
        return;
    }
    let script = "import json, sys\nfrom sentence_transformers import CrossEncoder\n\
         m = CrossEncoder(sys.argv[1], device='cpu')\n\
         print(json.dumps(m.predict([('question 1 about repairs', 'the clause on repairs'), \
         ('who keeps pets?', 'noise')]).tolist()))";
    let py = std::process::Command::new("python3").args(["-c", script, out.to_str().unwrap()]).output().unwrap();
    assert!(py.status.success(), "sentence-transformers failed: {}", String::from_utf8_lossy(&py.stderr));
    let theirs: Vec<f64> = serde_json::from_str(String::from_utf8_lossy(&py.stdout).lines().last().unwrap()).unwrap();
    for (a, b) in ours.iter().zip(&theirs) {
        // Sigmoids of the same float32 logits, 2 layers deep (tiny-bert).
        assert!((a - b).abs() < 1e-5, "CrossEncoder(dir).predict {b} vs bertkit predict {a}");
    }
}

#[test]
fn evaluate_on_candidates_equals_the_evaluation_during_training() {
    let dir = tempfile::tempdir().unwrap();
    let (train, eval, out) = (dir.path().join("t.csv"), dir.path().join("e.csv"), dir.path().join("model"));
    write_candidates(&train, 8);
    write_candidates(&eval, 5);
    ok(&finetune_rerank(&train, &out, &["--eval", eval.to_str().unwrap(), "--batch-size", "8"]));
    let during: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_results.json")).unwrap()).unwrap();
    let json = dir.path().join("report.json");
    ok(&[
        "evaluate",
        "--model",
        out.to_str().unwrap(),
        "--data",
        eval.to_str().unwrap(),
        "--text-column",
        "query",
        "--text-pair-column",
        "passage",
        "--json",
        json.to_str().unwrap(),
    ]);
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(after["task"], "rerank");
    for metric in ["ndcg_at_10", "mrr_at_10", "map", "eval_loss"] {
        let (a, b) = (after["metrics"][metric].as_f64().unwrap(), during["metrics"][metric].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6, "{metric}: evaluate {a} vs training {b}");
    }
}

#[test]
fn bad_rerank_input_is_refused_in_one_line_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (train, out) = (dir.path().join("t.csv"), dir.path().join("model"));
    std::fs::write(&train, "query,passage,label\nq one,a passage,1\nq one,another,3\n").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&[], "t.csv:3: relevance 3 is outside [0, 1]"),
        (&["--loss", "mnrl"], "--loss mnrl: --task rerank takes bce or listnet"),
        (&["--long-text", "window"], "--long-text: a reranker reads each (query, passage) pair once"),
    ];
    for (flags, message) in cases {
        let run = bertkit(&finetune_rerank(&train, &out, flags));
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(message), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(!out.exists(), "{flags:?}: nothing written");
    }
    let mut no_pair = finetune_rerank(&train, &out, &[]);
    let at = no_pair.iter().position(|a| a == "--text-pair-column").unwrap();
    no_pair.drain(at..at + 2);
    let stderr = String::from_utf8_lossy(&bertkit(&no_pair).stderr).to_string();
    assert!(stderr.contains("t.csv:2: no passage: --task rerank reads (query, passage) pairs"), "{stderr}");
}

#[test]
fn mined_negatives_are_those_sentence_transformers_mines() {
    let dir = tempfile::tempdir().unwrap();
    let (pairs, corpus, mined) = (dir.path().join("qp.csv"), dir.path().join("c.txt"), dir.path().join("m.csv"));
    let topics = ["rent", "repairs", "notice", "deposit", "pets", "parking", "noise", "keys"];
    let mut rows = "query,positive\n".to_string();
    for (i, t) in topics.iter().enumerate() {
        rows += &format!("who handles {t} ({i})?,the clause on {t} says the tenant does {i}\n");
    }
    rows += "who handles rent (0)?,rent is paid monthly\n"; // a second positive of one query
    std::fs::write(&pairs, rows).unwrap();
    let passages: Vec<String> = (0..24).map(|i| format!("a clause on {} and more {i}", topics[i % 8])).collect();
    std::fs::write(&corpus, passages.join("\n") + "\n").unwrap();
    let tiny = repo().join("tests/fixtures/tiny-bert");
    let (tiny, pairs_s, corpus_s, mined_s) =
        (tiny.to_str().unwrap(), pairs.to_str().unwrap(), corpus.to_str().unwrap(), mined.to_str().unwrap());
    let mine = [
        "mine-negatives", "--model", tiny, "--input", pairs_s, "--corpus", corpus_s, "--output", mined_s,
        "--num-negatives", "3", "--range-min", "1", "--range-max", "10", "--margin", "0.0", "--device", "cpu",
    ];
    let report = ok(&mine);
    assert!(report.contains("negatives for 8 queries"), "{report}");
    let ours = std::fs::read_to_string(&mined).unwrap();
    assert_eq!(ours.lines().count(), 1 + 9 + 8 * 3, "every positive and three negatives a query:\n{ours}");
    if !common::python_available() {
        return;
    }
    // sentence-transformers wraps a plain checkpoint in mean pooling, as bertkit's fallback.
    let script = "import sys, csv, io\nfrom datasets import Dataset\n\
        from sentence_transformers import SentenceTransformer\n\
        from sentence_transformers.util import mine_hard_negatives\n\
        rows = list(csv.DictReader(open(sys.argv[2])))\n\
        ds = Dataset.from_dict({'query': [r['query'] for r in rows], 'positive': [r['positive'] for r in rows]})\n\
        corpus = [l.rstrip('\\n') for l in open(sys.argv[3])]\n\
        m = SentenceTransformer(sys.argv[1], device='cpu')\n\
        out = mine_hard_negatives(ds, m, corpus=corpus, num_negatives=3, range_min=1, range_max=10,\n\
            absolute_margin=0.0, output_format='labeled-pair', verbose=False)\n\
        w = csv.writer(sys.stdout, lineterminator='\\n'); w.writerow(['query', 'passage', 'label'])\n\
        [w.writerow([r['query'], r['positive'], int(r['label'])]) for r in out]";
    let py = std::process::Command::new("python3").args(["-c", script, tiny, pairs_s, corpus_s]).output().unwrap();
    assert!(py.status.success(), "sentence-transformers failed: {}", String::from_utf8_lossy(&py.stderr));
    assert_eq!(ours, String::from_utf8_lossy(&py.stdout), "the same rows as mine_hard_negatives");
}
