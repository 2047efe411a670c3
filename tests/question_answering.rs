//! Extractive question answering (`finetune --task question-answering`): run_qa.py's windows
//! (token ids, the context's offsets, the start/end targets) and transformers'
//! `AutoModelForQuestionAnswering` (start and end logits, loss, every parameter's gradient) for
//! every family, against `scripts/make_reference.py qa`; `explain`'s span attributions against
//! the same; the measures against the official SQuAD v2.0 and CUAD definitions; and the
//! commands on a clean checkout.

mod common;

use std::path::{Path, PathBuf};

use bertkit::data::question_answering::{QaData, QaSet, read_questions};
use bertkit::data::{Encoded, OnBadRow, Sampling};
use bertkit::encoder::{ForwardOptions, Inputs};
use bertkit::explain::text::Document;
use bertkit::explain::{Output, Target, gradient_x_input};
use bertkit::metrics::question_answering::{Answered, cuad_report, qa_report};
use bertkit::predict::{Decoding, Reader};
use bertkit::pretrained::{self, LoadOptions, ModelDir};
use bertkit::train::{Objective, QuestionAnswering};
use common::{Drift, FIXTURES, Reference, largest, ok, repo, test_device};
use serde_json::json;
use tch::Tensor;

/// Every config key a family reads a head's dropout from: the reference runs without dropout.
const HEAD_DROPOUT_KEYS: [&str; 5] =
    ["classifier_dropout", "seq_classif_dropout", "pooler_dropout", "cls_dropout", "qa_dropout"];
/// make_reference.py's QA_MAX_LEN and QA_STRIDE.
const MAX_LEN: usize = 64;
const STRIDE: usize = 16;

fn examples() -> PathBuf {
    repo().join("tests/fixtures/reference/qa_examples.jsonl")
}

/// The fine-tuning objective on the reference's questions: a fresh head started at the
/// reference's, no dropout.
fn objective(dir: &Path, r: &Reference) -> QuestionAnswering {
    let mut model = ModelDir::open(dir.to_str().unwrap()).unwrap();
    for key in HEAD_DROPOUT_KEYS {
        model.config.set(key, json!(0.0));
    }
    model.set_dropout(0.0).unwrap();
    model.config.set_labels(&["LABEL_0".to_string(), "LABEL_1".to_string()]);
    let options = LoadOptions { device: test_device(), new_head: true, ..LoadOptions::default() };
    let reader: Reader = pretrained::load(&model, &options).unwrap();
    let vars = reader.vs.variables();
    for (name, want) in r.with_prefix("init") {
        tch::no_grad(|| vars.get(&name).unwrap_or_else(|| panic!("no {name}")).shallow_clone().copy_(want));
    }
    let (data, _) = read_questions(&examples(), OnBadRow::Error).unwrap();
    let train = QaSet::new(&reader.tokenizer, data, MAX_LEN, STRIDE).unwrap();
    let batch_size = train.windows.len();
    QuestionAnswering {
        reader,
        train,
        eval: None,
        decoding: Decoding::default(),
        cuad: false,
        batch_size,
        sampling: Sampling::Random,
    }
}

/// A window's character spans of the context, None outside it.
type Spans = Vec<Option<(usize, usize)>>;

/// The reference's windows: ids and offsets per window, (-1, -1) outside the context.
fn reference_windows(r: &Reference) -> Vec<(Vec<i64>, Spans)> {
    let lengths = Vec::<i64>::try_from(r.get("lengths")).unwrap();
    let ids = Vec::<i64>::try_from(r.get("input_ids")).unwrap();
    let offsets = Vec::<Vec<i64>>::try_from(r.get("offsets").view([-1, 2])).unwrap();
    let mut at = 0;
    lengths
        .iter()
        .map(|&n| {
            let (from, to) = (at, at + n as usize);
            at = to;
            let spans = offsets[from..to].iter().map(|o| (o[0] >= 0).then(|| (o[0] as usize, o[1] as usize))).collect();
            (ids[from..to].to_vec(), spans)
        })
        .collect()
}

#[test]
fn windows_logits_loss_and_gradients_equal_transformers_for_every_family() {
    for (name, fixture) in FIXTURES {
        let dir = repo().join("tests/fixtures").join(fixture);
        let r = Reference::load(&repo().join(format!("tests/fixtures/reference/{name}_qa.safetensors")));
        let task = objective(&dir, &r);
        let set = &task.train;
        let want = reference_windows(&r);
        let questions = Vec::<i64>::try_from(r.get("question")).unwrap();
        let (starts, ends) =
            (Vec::<i64>::try_from(r.get("starts")).unwrap(), Vec::<i64>::try_from(r.get("ends")).unwrap());
        assert_eq!(set.windows.len(), want.len(), "{name}: windows");
        for (w, (ids, spans)) in want.iter().enumerate() {
            let got: Vec<i64> =
                set.encoded(&task.reader.tokenizer, w).unwrap().ids.iter().map(|&i| i64::from(i)).collect();
            assert_eq!(&got, ids, "{name}: window {w}'s tokens");
            assert_eq!(&set.char_spans(w), spans, "{name}: window {w}'s context offsets");
            assert_eq!(set.windows[w].question as i64, questions[w], "{name}: window {w}'s question");
            assert_eq!(set.windows[w].target, (starts[w], ends[w]), "{name}: window {w}'s target");
        }

        // Logits of a padded batch at each window's own positions.
        let all: Vec<usize> = (0..set.windows.len()).collect();
        let encoded: Vec<Encoded> = all.iter().map(|&w| set.encoded(&task.reader.tokenizer, w).unwrap()).collect();
        let inputs = task.reader.collator().collate(&encoded.iter().collect::<Vec<_>>()).to_device(test_device());
        let logits = tch::no_grad(|| task.reader.model.forward(&inputs, ForwardOptions::eval()));
        let own = |t: &Tensor| {
            Tensor::cat(
                &encoded
                    .iter()
                    .enumerate()
                    .map(|(i, e)| t.get(i as i64).narrow(0, 0, e.len() as i64))
                    .collect::<Vec<_>>(),
                0,
            )
        };
        let drift = Drift::forward(&dir);
        drift.assert(&format!("{name} start logits"), &own(&logits.start), r.get("start_logits"));
        drift.assert(&format!("{name} end logits"), &own(&logits.end), r.get("end_logits"));

        let step = task.train_loss(&all, 0).unwrap();
        drift.summing(MAX_LEN).assert(&format!("{name} loss"), &step.loss.reshape([1]), r.get("loss"));
        step.loss.backward();
        let want = r.with_prefix("grad");
        let vars = task.reader.vs.variables();
        assert!(want.len() >= vars.len() - 2, "{name}: a gradient per trained parameter");
        let scale = largest(want.iter().map(|(_, w)| *w));
        let tokens: usize = encoded.iter().map(Encoded::len).sum();
        let drift = drift.backward(tokens);
        for (pname, w) in want {
            let g = vars.get(&pname).unwrap_or_else(|| panic!("{name}: no parameter {pname}")).grad();
            drift.assert_at(&format!("{name} gradient {pname}"), &g, w, scale);
        }
    }
}

fn answered(id: &str, gold: &[&str], predicted: &str, null_odds: f64, n_best: &[(&str, f64)]) -> Answered {
    Answered {
        id: id.into(),
        gold: gold.iter().map(|g| g.to_string()).collect(),
        predicted: predicted.into(),
        null_odds,
        n_best: n_best.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
    }
}

/// SQuAD v2.0's `evaluate-v2.0.py` on four questions, worked by hand from its definitions:
/// exact match and F1 are the best over the gold answers (after normalising), an unanswerable
/// question scores 1 only for an empty prediction, and `find_best_thresh` walks the questions in
/// order of their null odds.
#[test]
fn squad_scores_follow_the_official_definitions() {
    let qs = [
        answered("a", &["the laws of Delaware", "Delaware"], "Delaware.", -2.0, &[]),
        answered("b", &["sixty days' notice"], "on sixty days notice", -1.0, &[]),
        answered("c", &[], "the roof", 0.5, &[]),
        answered("d", &[], "", 3.0, &[]),
    ];
    let r = qa_report(&qs, false);
    // a: exact 1. b: "sixty days notice" vs "on sixty days notice": 3 shared, P 3/4, R 1, F1 6/7.
    // c: an answer where none is: 0. d: right to say nothing: 1.
    assert!((r.exact - 50.0).abs() < 1e-9, "{}", r.exact);
    assert!((r.f1 - 100.0 * (1.0 + 6.0 / 7.0 + 0.0 + 1.0) / 4.0).abs() < 1e-9, "{}", r.f1);
    assert_eq!((r.has_ans_total, r.no_ans_total), (2, 2));
    assert!((r.has_ans_f1.unwrap() - 100.0 * (1.0 + 6.0 / 7.0) / 2.0).abs() < 1e-9);
    assert_eq!(r.no_ans_exact, Some(50.0));
    // Walking a (-2), b (-1), c (0.5), d (3) from 2 (both no-answer questions right by saying
    // nothing): +1 -> 3 at -2, +6/7 -> 3.857 at -1, c answered wrongly: -1, d right: 0.
    assert!((r.best_f1 - 100.0 * (2.0 + 1.0 + 6.0 / 7.0) / 4.0).abs() < 1e-9);
    assert_eq!(r.best_f1_thresh, -1.0);
    assert!((r.best_exact - 75.0).abs() < 1e-9);
    assert_eq!(r.best_exact_thresh, -2.0);
}

/// CUAD's `evaluate.py` on two questions, worked by hand: a prediction matches a gold answer
/// where their word sets (after dropping `.,;:` and lower-casing) overlap by half or more; at
/// each threshold the distinct non-empty answers of higher probability are kept.
#[test]
fn cuad_scores_follow_the_official_definitions() {
    let qs = [
        // Two clauses: answers at .605 (the first), .305 (no match), .055 (the second).
        answered(
            "k__Governing Law",
            &["governed by the laws of Delaware", "venue is Wilmington"],
            "",
            0.0,
            &[
                ("governed by the laws of Delaware.", 0.605),
                ("the roof", 0.305),
                ("venue is Wilmington", 0.055),
                ("", 0.035),
            ],
        ),
        // No clause: an answer at .205 is a false positive below that.
        answered("k__Parties", &[], "", 0.0, &[("Acme Corp", 0.205), ("", 0.795)]),
    ];
    let r = cuad_report(&qs);
    // Thresholds .99 ... .61: nothing kept (precision undefined, recall 0); .60 ... .31: P 1,
    // R .5; .30 ... .21: P .5; .20 ... .06: P 1/3; .05 ... 0: P .5, R 1. The envelope (from the
    // highest recall, each precision raised to the best after it) is 1 up to recall .5 and .5
    // from there: the area 0.5 x 1 + 0.5 x 0.5.
    assert!((r.aupr - 0.75).abs() < 1e-12, "{r:?}");
    assert!((r.precision_at_80_recall - 0.5).abs() < 1e-12, "{r:?}");
    assert!((r.precision_at_90_recall - 0.5).abs() < 1e-12, "{r:?}");

    // A "Parties" answer also matches where it holds the gold text, whatever their overlap.
    let party = |id: &str| answered(id, &["Acme"], "", 0.0, &[("Acme Corporation and its affiliates", 0.9)]);
    assert_eq!(cuad_report(&[party("k__Parties")]).aupr, 1.0);
    assert_eq!(cuad_report(&[party("k__Licensee")]).aupr, 0.0);
}

/// qa_examples.jsonl as SQuAD v2.0's JSON: one article, one paragraph, its questions.
fn write_squad(path: &Path) {
    let mut qas = vec![];
    let mut context = String::new();
    for line in std::fs::read_to_string(examples()).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        context = row["context"].as_str().unwrap().to_string();
        let answers: Vec<serde_json::Value> = row["answers"]["text"]
            .as_array()
            .unwrap()
            .iter()
            .zip(row["answers"]["answer_start"].as_array().unwrap())
            .map(|(t, s)| json!({"text": t, "answer_start": s}))
            .collect();
        let impossible = answers.is_empty();
        qas.push(
            json!({"id": row["id"], "question": row["question"], "answers": answers, "is_impossible": impossible}),
        );
    }
    let squad =
        json!({"version": "v2.0", "data": [{"title": "lease", "paragraphs": [{"context": context, "qas": qas}]}]});
    std::fs::write(path, squad.to_string()).unwrap();
}

#[test]
fn squad_json_and_flat_jsonl_read_the_same_questions() {
    let dir = tempfile::tempdir().unwrap();
    let squad = dir.path().join("train.json");
    write_squad(&squad);
    let (a, _) = read_questions(&squad, OnBadRow::Error).unwrap();
    let (b, _) = read_questions(&examples(), OnBadRow::Error).unwrap();
    assert_eq!(a.contexts, b.contexts);
    assert_eq!(a.contexts.len(), 1, "one context however many questions ask about it");
    let view = |d: &bertkit::data::question_answering::QaData| -> Vec<String> {
        d.questions.iter().map(|q| format!("{} {} {:?}", q.id, q.question, q.answers)).collect()
    };
    assert_eq!(view(&a), view(&b));
    assert!(bertkit::data::question_answering::is_question_answering(&squad));
    assert!(bertkit::data::question_answering::is_question_answering(&examples()));
}

/// Fine-tuned from SQuAD JSON (the task found from the data), with the null threshold tuned on
/// the held-out questions: evaluate reads the threshold back and gives the tuned scores, and
/// predict's answers are spans of the context.
#[test]
fn finetune_evaluate_and_predict_answer_from_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let (squad, out) = (dir.path().join("train.json"), dir.path().join("model"));
    write_squad(&squad);
    let (o, s) = (out.to_str().unwrap(), squad.to_str().unwrap());
    let model = repo().join("tests/fixtures/tiny-bert");
    let window = ["--max-len", "64", "--doc-stride", "16"];
    let mut args = vec!["finetune", "--model", model.to_str().unwrap(), "--train", s, "--eval", s, "--output", o];
    args.extend(["--max-steps", "12", "--lr", "1e-3", "--batch-size", "4", "--tune-thresholds", "--threads", "1"]);
    // evaluate computes in float32: so does training's evaluation here (not bf16 where native).
    args.extend(["--precision", "fp32"]);
    args.extend(window);
    ok(&args);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertForQuestionAnswering");
    let inspected = ok(&["inspect", o]);
    assert!(
        inspected.contains("heads         question_answering")
            && inspected.contains("task          question-answering")
    );
    let tuned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("question_answering.json")).unwrap()).unwrap();

    let report = dir.path().join("eval.json");
    let mut args = vec!["evaluate", "--model", o, "--data", s, "--json", report.to_str().unwrap(), "--threads", "1"];
    args.extend(window);
    ok(&args);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["task"], "question-answering");
    assert!((report["metrics"]["f1"].as_f64().unwrap() - tuned["f1"].as_f64().unwrap()).abs() < 1e-9, "{report}");

    let mut args = vec!["predict", "--model", o, "--input", s, "--threads", "1"];
    args.extend(window);
    let lines: Vec<serde_json::Value> = ok(&args).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    let context: String = read_questions(&examples(), OnBadRow::Error).unwrap().0.contexts[0].clone();
    for line in &lines {
        for a in line["n_best"].as_array().unwrap() {
            let (start, end) = (a["start"].as_u64().unwrap() as usize, a["end"].as_u64().unwrap() as usize);
            let text: String = context.chars().skip(start).take(end - start).collect();
            assert_eq!(a["text"], text, "an answer is the context's characters it names");
        }
        let best = line["answer"].as_str().unwrap();
        let first = line["n_best"][0]["text"].as_str().unwrap_or("");
        assert!(best.is_empty() || best == first, "the answer is the best span or none: {line}");
    }

    explain_reads_the_answer(o, &lines[0], &context, &window, dir.path());
}

/// `explain` of a reader: predict's answer (or no answer) as its start and its end, each in the
/// one window it was read from, with a share for every token of the question and the context.
fn explain_reads_the_answer(model: &str, line: &serde_json::Value, context: &str, window: &[&str], dir: &Path) {
    let (question, answer) = (line["question"].as_str().unwrap(), line["answer"].as_str().unwrap());
    let (picture, json) = (dir.join("why.html"), dir.join("why.json"));
    let mut args = vec!["explain", "--model", model, "--question", question, "--text", context];
    args.extend(["--out", picture.to_str().unwrap(), "--json", json.to_str().unwrap(), "--threads", "1"]);
    args.extend(["--method", "gradient-x-input,rollout"]);
    args.extend(window);
    ok(&args);
    let why: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(why["text"].as_str().unwrap().starts_with(question), "the question, then the context");
    let targets = why["models"][0]["targets"].as_array().unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t["target"].as_str().unwrap()).collect();
    if answer.is_empty() {
        assert_eq!(names, ["no answer (start)", "no answer (end)"]);
    } else {
        assert!(names[0].starts_with(&format!("start of {answer:?}")), "{names:?}");
        assert!(names[1].starts_with(&format!("end of {answer:?}")), "{names:?}");
    }
    assert!(why["windows"].as_array().unwrap().len() > 1, "the context is read in windows");
    let tokens = why["tokens"].as_array().unwrap().len();
    for m in targets.iter().flat_map(|t| t["methods"].as_array().unwrap()) {
        assert_eq!(m["scores"].as_array().unwrap().len(), tokens);
        assert_eq!(m["windows"].as_array().unwrap().len(), 1, "a span is read from one window");
    }
    // --compare: the same targets through a second reader (here the same one: the same numbers).
    let mut compared = args.clone();
    compared.extend(["--compare", model]);
    ok(&compared);
    let both: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(both["models"][0]["targets"], both["models"][1]["targets"], "one reader twice");
    // A model of another head is no reader to compare with.
    let tiny = repo().join("tests/fixtures/tiny-bert");
    let mut other = args.clone();
    other.extend(["--compare", tiny.to_str().unwrap()]);
    let refused = common::bertkit(&other);
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && e.contains("one model answers questions and the other does not"), "{e}");
    args.extend(["--target", "no such answer"]);
    let refused = common::bertkit(&args);
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && e.contains(r#"--target "no such answer": not among"#), "{e}");
}

/// `explain`'s document of a question (the question, the whole context) gives each window the
/// tokens and token types the reader reads.
fn explained_windows_are_the_readers(reader: &Reader, train: &QaSet) {
    let q = &train.data.questions[0];
    let data = QaData::unanswered([(q.question.as_str(), train.data.contexts[q.context].as_str())]);
    let set = QaSet::new(&reader.tokenizer, data, MAX_LEN, STRIDE).unwrap();
    let doc = Document::question(&reader.tokenizer, &set).unwrap();
    assert!(doc.windows.len() > 1);
    for w in 0..set.windows.len() {
        let e = set.encoded(&reader.tokenizer, w).unwrap();
        let inputs = doc.window_inputs(w, tch::Device::Cpu);
        let ids: Vec<i64> = e.ids.iter().map(|&i| i64::from(i)).collect();
        assert_eq!(Vec::<i64>::try_from(inputs.input_ids.view([-1])).unwrap(), ids, "window {w}'s tokens");
        let types: Vec<i64> = e.type_ids.iter().map(|&t| i64::from(t)).collect();
        assert_eq!(Vec::<i64>::try_from(inputs.token_type_ids.view([-1])).unwrap(), types, "window {w}'s types");
    }
}

/// What `explain` attributes for an answer: gradient × input (on the word embeddings) of the
/// probability of starting at the first window's target start, and of ending at its end, for
/// every family against transformers' `AutoModelForQuestionAnswering` on `inputs_embeds`.
#[test]
fn span_attributions_equal_transformers_for_every_family() {
    for (name, fixture) in FIXTURES {
        let dir = repo().join("tests/fixtures").join(fixture);
        let r = Reference::load(&repo().join(format!("tests/fixtures/reference/{name}_qa.safetensors")));
        let task = objective(&dir, &r);
        let e = task.train.encoded(&task.reader.tokenizer, 0).unwrap();
        let row = |v: Vec<i64>| Tensor::from_slice(&v).view([1, -1]);
        let ids = row(e.ids.iter().map(|&i| i64::from(i)).collect());
        let types = row(e.type_ids.iter().map(|&t| i64::from(t)).collect());
        let inputs = Inputs::new(ids.ones_like(), ids.ones_like(), types).to_device(test_device());
        let inputs = Inputs { input_ids: ids.to_device(test_device()), ..inputs };
        explained_windows_are_the_readers(&task.reader, &task.train);
        let (start, end) = task.train.windows[0].target;
        for (label, side, at) in [(0, "start", start), (1, "end", end)] {
            let target = Target { name: side.into(), label, positions: vec![at], window: None };
            let got = gradient_x_input(&task.reader.model, &inputs, &target, Output::Probability).unwrap();
            // The terms each attribution sums: where the sum cancels, its rounding is theirs.
            let scale = r.get(&format!("explain.{side}_gxi_terms")).double_value(&[0]);
            let drift = Drift::forward(&dir).backward(e.len());
            let want = r.get(&format!("explain.{side}_gxi"));
            drift.assert_at(&format!("{name} {side} gradient x input"), &Tensor::from_slice(&got.scores), want, scale);
        }
    }
}

#[test]
fn bad_questions_are_refused_in_one_line_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let model = repo().join("tests/fixtures/tiny-bert");
    let refused = |name: &str, rows: &str, extra: &[&str]| {
        let data = dir.path().join(name);
        std::fs::write(&data, rows).unwrap();
        let mut args = vec!["finetune", "--model", model.to_str().unwrap(), "--train", data.to_str().unwrap()];
        args.extend(["--output", out.to_str().unwrap(), "--task", "question-answering"]);
        args.extend(extra);
        let o = common::bertkit(&args);
        assert!(!o.status.success());
        assert!(!out.exists(), "nothing written");
        String::from_utf8_lossy(&o.stderr).trim().to_string()
    };
    let moved = r#"{"id": "x", "question": "Who?", "context": "The tenant pays.", "answers": {"text": ["tenant"], "answer_start": [2]}}"#;
    let e = refused("moved.jsonl", moved, &[]);
    assert!(e.contains("moved.jsonl:1: question x") && e.contains("not at character 2"), "{e}");
    let long = r#"{"id": "y", "question": "Who pays the rent on the first day of every single month of the year?", "context": "The tenant pays.", "answers": []}"#;
    let e = refused("long.jsonl", long, &["--max-len", "16", "--doc-stride", "4"]);
    assert!(e.contains("question y") && e.contains("leaves no room for the context"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let unlabelled = r#"{"id": "z", "question": "Who?", "context": "The tenant pays."}"#;
    let e = refused("unlabelled.jsonl", unlabelled, &[]);
    assert!(e.contains("question z") && e.contains("needs \"answers\""), "{e}");
}

/// `adapt` on SQuAD-like data: TAPT reads the contexts (each once), the fine-tunes and the test
/// scores are question answering's, chosen and reported by CUAD's AUPR when asked.
#[test]
fn adapt_studies_a_reader_by_its_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (squad, study) = (dir.path().join("train.json"), dir.path().join("study"));
    write_squad(&squad);
    let tiny = repo().join("tests/fixtures/tiny-bert");
    let (s, t, o) = (squad.to_str().unwrap(), tiny.to_str().unwrap(), study.to_str().unwrap());
    let mut args = vec!["adapt", "--model", t, "--tapt", "--train", s, "--eval", s, "--test", s, "--output", o];
    args.extend(["--pretrain-steps", "2", "--pretrain-max-len", "16", "--pretrain-eval-split", "0.2"]);
    args.extend(["--finetune-epochs", "1"]);
    args.extend(["--finetune-max-len", "64", "--doc-stride", "16", "--cuad-metrics", "--batch-size", "8"]);
    args.extend(["--device", "cpu", "--threads", "1", "--precision", "fp32"]);
    let refused = common::bertkit(&[&args[..], &["--probe-every", "1"]].concat());
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--probe finetune"));
    ok(&args);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(study.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["checkpoint_metric"], "aupr");
    for arm in ["original", "tapt"] {
        let metrics = &report["downstream"][arm]["runs"][0]["metrics"];
        assert!(metrics["aupr"].as_f64().is_some() && metrics["f1"].as_f64().is_some(), "{arm}: {metrics}");
    }
    let text = std::fs::read_to_string(study.join("task-text.txt")).unwrap();
    let context = &read_questions(&examples(), OnBadRow::Error).unwrap().0.contexts[0];
    assert_eq!(text.trim(), context, "TAPT reads the one context once, no question");
}
