//! A directory bertkit saves loads in Python transformers with `from_pretrained`, unchanged,
//! and gives the logits bertkit computed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bertkit::data::Collator;
use bertkit::device::Autocast;
use bertkit::encoder::{ForwardOptions, Inputs};
use bertkit::pretrained::{self, LoadOptions, ModelDir, Pretrained, write_safetensors};
use bertkit::task::{MaskedLm, MultipleChoice, QuestionAnswerer, SequenceClassifier, TaskModel, TokenClassifier};
use bertkit::tokenizer::Tokenizer;
use tch::{Device, Tensor};

fn short_texts() -> Vec<String> {
    let tokens: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/reference/tiny_tokens.json")).unwrap(),
    )
    .unwrap();
    serde_json::from_value(tokens["short"]["texts"].clone()).unwrap()
}

/// Saves `model` as bertkit does, has Python load it and recompute the logits (and, given
/// labels, the loss, which transformers chooses from the saved config).
fn python_agrees<M: TaskModel>(model: &Pretrained<M>, logits: &Tensor, ids: &Tensor, loss: Option<(&Tensor, Tensor)>) {
    let out = tempfile::tempdir().unwrap();
    model.save(out.path()).unwrap();
    let architecture = model.family.architecture(M::ARCHITECTURE);
    let expected = out.path().join("expected.safetensors");
    let mut tensors = BTreeMap::from([
        ("logits".to_string(), logits.shallow_clone()),
        ("input_ids".to_string(), ids.shallow_clone()),
    ]);
    if let Some((labels, loss)) = &loss {
        tensors.insert("labels".to_string(), labels.shallow_clone());
        tensors.insert("loss".to_string(), loss.reshape([1]));
    }
    write_safetensors(&expected, &tensors).unwrap();
    let output = std::process::Command::new("python3")
        .arg(common::repo().join("scripts/make_reference.py"))
        .args(["roundtrip", out.path().to_str().unwrap(), expected.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python failed: {}\n{}", stdout, String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["architecture"], architecture);
    assert_eq!(result["input_ids_equal"], true, "{result}");
    // The same weights through transformers' kernels: float32 rounding alone (common::Drift).
    let drift = common::Drift::forward(&out.path().join(""));
    let (diff, tol) = (result["max_abs_diff"].as_f64().unwrap(), drift.tolerance(common::largest([logits])));
    assert!(diff <= tol, "{architecture}: Python's logits differ by {diff:e} > {tol:e}");
    if let Some((_, loss)) = &loss {
        let (diff, tol) = (result["loss_diff"].as_f64().unwrap(), drift.tolerance(loss.abs().double_value(&[])));
        assert!(
            diff <= tol,
            "{architecture} ({}): Python's loss differs by {diff:e} > {tol:e}",
            result["problem_type"]
        );
    }
}

/// The short texts as `model_dir`'s tokenizer reads them, one batch.
fn short_inputs(model_dir: &Path) -> Inputs {
    let tok = Tokenizer::from_dir(model_dir).unwrap();
    let texts = short_texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    Collator { pad_id: tok.pad_id }.collate_encodings(&tok.encode_batch(&texts, None, 512).unwrap())
}

fn roundtrip(model_dir: &Path) {
    let inputs = short_inputs(model_dir);

    let cls = match common::load::<SequenceClassifier>(model_dir, Device::Cpu).unwrap() {
        // A checkpoint without labels gets two, as a fine-tune would give it.
        m if m.config.id2label().is_some() => m,
        _ => common::load_with_labels(model_dir, &["bad", "good"], Device::Cpu),
    };
    let (logits, _) = tch::no_grad(|| cls.model.forward(&inputs, ForwardOptions::eval()));
    python_agrees(&cls, &logits, &inputs.input_ids, None);

    // As further pretraining saves it: with the tensors it does not use (pooler, classifier).
    let mut mlm = common::load::<MaskedLm>(model_dir, Device::Cpu).unwrap();
    mlm.carry_unused().unwrap();
    let logits = tch::no_grad(|| mlm.model.forward(&inputs, ForwardOptions::eval()));
    python_agrees(&mlm, &logits, &inputs.input_ids, None);

    // Each task head, fresh: Python must pick the same loss from what the config says.
    let n = inputs.input_ids.size()[0];
    for (task, labels, targets) in [
        ("multi_label_classification", vec!["a", "b", "c"], Tensor::from_slice(&[1f32, 0., 1.]).repeat([n, 1])),
        ("regression", vec!["score"], Tensor::arange(n, (tch::Kind::Float, Device::Cpu)) * 0.5),
    ] {
        let head: Pretrained<SequenceClassifier> = with_task(model_dir, &labels, Some(task));
        let (logits, _) = tch::no_grad(|| head.model.forward(&inputs, ForwardOptions::eval()));
        let loss = head.model.loss(&logits, &targets, None);
        python_agrees(&head, &logits, &inputs.input_ids, Some((&targets, loss)));
    }
    let tagger: Pretrained<TokenClassifier> = with_task(model_dir, &["B-X", "I-X", "O"], None);
    let logits = tch::no_grad(|| tagger.model.forward(&inputs, ForwardOptions::eval()));
    let tags = inputs.input_ids.remainder(3).masked_fill(&inputs.attention_mask.eq(0), -100);
    let loss = tagger.model.loss(&logits, &tags, None);
    python_agrees(&tagger, &logits, &inputs.input_ids, Some((&tags, loss)));
    let reader: Pretrained<QuestionAnswerer> = with_task(model_dir, &["LABEL_0", "LABEL_1"], None);
    let spans = tch::no_grad(|| reader.model.forward(&inputs, ForwardOptions::eval()));
    python_agrees(&reader, &Tensor::stack(&[spans.start, spans.end], -1), &inputs.input_ids, None);
    // The texts as the choices of one question.
    let chooser: Pretrained<MultipleChoice> = with_task(model_dir, &["LABEL_0"], None);
    let logits = tch::no_grad(|| chooser.model.logits(&inputs, n as usize, ForwardOptions::eval()));
    let right = Tensor::from_slice(&[n - 1]);
    let loss = MultipleChoice::loss(&logits, &right);
    python_agrees(&chooser, &logits, &inputs.input_ids, Some((&right, loss)));
}

/// `model_dir` with a fresh head for `labels`, the task recorded as transformers records it.
fn with_task<M: TaskModel>(model_dir: &Path, labels: &[&str], problem_type: Option<&str>) -> Pretrained<M> {
    let mut dir = ModelDir::open(model_dir.to_str().unwrap()).unwrap();
    dir.config.set_labels(&labels.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    if let Some(p) = problem_type {
        dir.config.set("problem_type", p.into());
    }
    let options = LoadOptions { new_head: true, ..LoadOptions::inference(Device::Cpu, Autocast::off()) };
    pretrained::load(&dir, &options).unwrap()
}

#[test]
fn tiny_saved_model_loads_in_transformers() {
    if common::python_available() {
        roundtrip(&common::tiny_model());
    }
}

#[test]
fn other_families_saved_models_load_in_transformers() {
    if common::python_available() {
        for family in [
            "tiny-roberta", "tiny-xlm-roberta", "tiny-distilbert", "tiny-electra", "tiny-modernbert",
            "tiny-deberta-v3", "tiny-deberta-v2",
        ] {
            roundtrip(&common::repo().join("tests/fixtures").join(family));
        }
    }
}

/// The tiny DeBERTa-v3 with `legacy: false`: its MLM head under the names Microsoft's
/// checkpoints keep a pretrained one (`lm_predictions.lm_head.*`), the same weights.
fn deberta_with_lm_predictions(dir: &Path) -> std::path::PathBuf {
    let from = common::repo().join("tests/fixtures/tiny-deberta-v3");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(from.join(f), dir.join(f)).unwrap();
    }
    let weights = pretrained::read_weights(&from, &bertkit::encoder::deberta::FAMILY).unwrap();
    let renamed: BTreeMap<String, Tensor> = weights
        .into_iter()
        .map(|(name, t)| {
            let name = match name.strip_prefix("cls.predictions.") {
                Some(rest) => format!("lm_predictions.lm_head.{}", rest.trim_start_matches("transform.")),
                None => name,
            };
            (name, t)
        })
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &renamed).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("config.json")).unwrap()).unwrap();
    config["legacy"] = false.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.to_path_buf()
}

/// A `legacy: false` DeBERTa reads its `lm_predictions` head (nothing started fresh), computes
/// what the legacy head computes from the same weights (which the parity tests hold to
/// transformers), saves it under the same names, and transformers reads the result.
#[test]
fn deberta_lm_predictions_head_is_read_and_written_under_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let model = deberta_with_lm_predictions(dir.path());
    let legacy = common::load::<MaskedLm>(&common::repo().join("tests/fixtures/tiny-deberta-v3"), Device::Cpu).unwrap();
    let head = common::load::<MaskedLm>(&model, Device::Cpu).unwrap();
    assert!(head.report.initialised.is_empty(), "started fresh: {:?}", head.report.initialised);
    let inputs = short_inputs(&model);
    let logits = |m: &Pretrained<MaskedLm>| tch::no_grad(|| m.model.forward(&inputs, ForwardOptions::eval()));
    assert_eq!(common::max_abs_diff(&logits(&head), &logits(&legacy)), 0.0);
    let out = tempfile::tempdir().unwrap();
    head.save(out.path()).unwrap();
    let saved = pretrained::weights::tensor_index(out.path(), head.family).unwrap();
    assert!(saved.contains_key("lm_predictions.lm_head.dense.weight"), "{:?}", saved.keys());
    assert!(!saved.keys().any(|n| n.starts_with("cls.")), "{:?}", saved.keys());
    if common::python_available() {
        roundtrip(&model);
    }
}

/// MiniLM has neither a classifier nor an MLM head: both are created here, saved, and must
/// come back in Python exactly as bertkit initialised them.
#[test]
fn minilm_with_new_heads_loads_in_transformers() {
    let Some((model, _)) = common::minilm() else { return };
    if common::python_available() {
        roundtrip(&model);
    }
}

#[test]
fn saved_config_keeps_labels_and_unknown_keys() {
    let cls = common::load::<SequenceClassifier>(&common::tiny_model(), Device::Cpu).unwrap();
    let out = tempfile::tempdir().unwrap();
    cls.save(out.path()).unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["architectures"][0], "BertForSequenceClassification");
    assert_eq!(saved["id2label"]["2"], "positive");
    assert_eq!(saved["label2id"]["neutral"], 1);
    assert_eq!(saved["tie_word_embeddings"], true, "keys bertkit does not model survive");
    for f in ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "model.safetensors"] {
        assert!(out.path().join(f).exists(), "{f} written");
    }
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left behind");
}
