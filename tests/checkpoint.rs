//! Checkpoint directories: naming variants, shards, fresh heads, and every way a checkpoint can
//! be wrong (each a one-line error naming the file or tensor).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bertkit::pretrained::{LoadReport, write_safetensors};
use bertkit::task::{MaskedLm, SequenceClassifier};
use bertkit::tokenizer::Tokenizer;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// A copy of the tiny model directory whose weights are `tensors` (raw names as given).
fn tiny_with(tensors: &BTreeMap<String, Tensor>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"] {
        std::fs::copy(common::tiny_model().join(f), dir.path().join(f)).unwrap();
    }
    write_safetensors(&dir.path().join("model.safetensors"), tensors).unwrap();
    dir
}

fn tiny_weights() -> BTreeMap<String, Tensor> {
    common::bert_weights(&common::tiny_model())
}

fn load_classifier(dir: &Path) -> anyhow::Result<(VarStore, LoadReport)> {
    let loaded = common::load::<SequenceClassifier>(dir, Device::Cpu)?;
    Ok((loaded.vs, loaded.report))
}

fn error_of(dir: &Path) -> String {
    match load_classifier(dir) {
        Ok(_) => panic!("{} loaded but should not have", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_same_weights(vs: &VarStore, want: &BTreeMap<String, Tensor>) {
    for (name, var) in vs.variables() {
        let w = want.get(&name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(var.equal(w), "{name} differs");
    }
}

#[test]
fn legacy_names_without_prefix_load_the_same() {
    let original = tiny_weights();
    let renamed: BTreeMap<String, Tensor> = original
        .iter()
        .map(|(k, v)| {
            let k = k.strip_prefix("bert.").unwrap_or(k);
            let k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta");
            let k = if k == "cls.predictions.bias" { "cls.predictions.decoder.bias".to_string() } else { k };
            (k, v.shallow_clone())
        })
        .chain([("embeddings.position_ids".to_string(), Tensor::arange(512, (Kind::Int64, Device::Cpu)))])
        .collect();
    assert!(renamed.contains_key("encoder.layer.0.output.LayerNorm.gamma"));
    let dir = tiny_with(&renamed);
    let (vs, report) = load_classifier(dir.path()).unwrap();
    assert!(report.initialised.is_empty(), "{:?}", report.initialised);
    assert_same_weights(&vs, &original);
    assert!(report.unused.iter().any(|n| n.starts_with("cls.predictions.")), "MLM head reported unused");
}

#[test]
fn sharded_checkpoint_loads() {
    let original = tiny_weights();
    let dir = tiny_with(&BTreeMap::new());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let (a, b): (BTreeMap<_, _>, BTreeMap<_, _>) =
        original.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).partition(|(k, _)| k.contains("layer.1"));
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [("model-00001-of-00002.safetensors", &a), ("model-00002-of-00002.safetensors", &b)] {
        write_safetensors(&dir.path().join(file), part).unwrap();
        for k in part.keys() {
            weight_map.insert(k.clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let (vs, _) = load_classifier(dir.path()).unwrap();
    assert_same_weights(&vs, &original);
}

#[test]
fn missing_heads_are_created_like_transformers() {
    let base: BTreeMap<String, Tensor> =
        tiny_weights().into_iter().filter(|(k, _)| !k.starts_with("classifier.") && !k.starts_with("cls.")).collect();
    let dir = tiny_with(&base);
    let (vs, report) = load_classifier(dir.path()).unwrap();
    assert_eq!(report.initialised, vec!["classifier.bias".to_string(), "classifier.weight".to_string()]);
    let vars = vs.variables();
    assert_eq!(vars["classifier.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    let std = vars["classifier.weight"].std(true).double_value(&[]);
    assert!((0.01..0.03).contains(&std), "classifier.weight std {std}, want ~initializer_range 0.02");

    let mlm = common::load::<MaskedLm>(dir.path(), Device::Cpu).unwrap();
    let (vars, report) = (mlm.vs.variables(), mlm.report);
    assert!(report.initialised.contains(&"cls.predictions.transform.dense.weight".to_string()));
    assert!(vars["cls.predictions.transform.LayerNorm.weight"].equal(&Tensor::ones([32], (Kind::Float, Device::Cpu))));
    assert_eq!(vars["cls.predictions.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert!(!vars.contains_key("cls.predictions.decoder.weight"), "decoder is tied, not a parameter of its own");
    assert!(report.unused.contains(&"bert.pooler.dense.weight".to_string()), "BertForMaskedLM has no pooler");
}

#[test]
fn truncated_file_is_named() {
    let dir = tiny_with(&tiny_weights());
    let file = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 1000]).unwrap();
    let err = error_of(dir.path());
    assert!(err.contains("model.safetensors") && err.contains("truncated"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn misshaped_tensor_is_named() {
    let mut w = tiny_weights();
    w.insert(
        "bert.encoder.layer.1.intermediate.dense.weight".into(),
        Tensor::zeros([65, 32], (Kind::Float, Device::Cpu)),
    );
    let dir = tiny_with(&w);
    let err = error_of(dir.path());
    assert!(err.contains("bert.encoder.layer.1.intermediate.dense.weight") && err.contains("[65, 32]"), "{err}");
}

#[test]
fn tensor_beyond_config_is_an_error() {
    let mut w = tiny_weights();
    w.insert("bert.encoder.layer.2.output.dense.bias".into(), Tensor::zeros([32], (Kind::Float, Device::Cpu)));
    let err = error_of(tiny_with(&w).path());
    assert!(err.contains("unexpected tensor bert.encoder.layer.2.output.dense.bias"), "{err}");
}

#[test]
fn missing_encoder_tensor_is_an_error() {
    let mut w = tiny_weights();
    w.remove("bert.encoder.layer.1.attention.self.value.weight");
    let err = error_of(tiny_with(&w).path());
    assert!(err.contains("bert.encoder.layer.1.attention.self.value.weight") && err.contains("config.json"), "{err}");
}

#[test]
fn pickle_checkpoints_are_refused() {
    let dir = tiny_with(&BTreeMap::new());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"\x80\x02not really a pickle").unwrap();
    let err = error_of(dir.path());
    assert!(err.contains("pytorch_model.bin") && err.contains("safetensors only"), "{err}");
}

#[test]
fn tokenizer_larger_than_embeddings_is_an_error() {
    let mut w = tiny_weights();
    let emb = w["bert.embeddings.word_embeddings.weight"].narrow(0, 0, 300);
    w.insert("bert.embeddings.word_embeddings.weight".into(), emb);
    let dir = tiny_with(&w);
    let cfg = std::fs::read_to_string(dir.path().join("config.json"))
        .unwrap()
        .replace("\"vocab_size\": 355", "\"vocab_size\": 300");
    std::fs::write(dir.path().join("config.json"), cfg).unwrap();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    let err = format!("{:#}", tok.check_fits(300, dir.path()).unwrap_err());
    assert!(err.contains("355 tokens") && err.contains("300"), "{err}");
}

#[test]
fn config_errors_name_the_file() {
    let dir = tiny_with(&tiny_weights());
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2", "vocab_size": 1}"#).unwrap();
    let err = error_of(dir.path());
    assert!(err.contains("config.json"), "{err}");
}
