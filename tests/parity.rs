//! bertkit against Python transformers on the same weights and inputs: tokenisation, every
//! hidden state, attention probabilities, pooled output, both heads' logits and losses, the
//! gradient of every parameter and the weights after one AdamW step.
//!
//! Reference files come from `scripts/make_reference.py` (tiny model: committed; MiniLM: made by
//! `scripts/setup.sh`). Tolerances: 1e-5 absolute on activations, logits and losses; 1e-4
//! relative to each tensor's largest entry on gradients and post-step weights.

mod common;

use std::path::Path;

use bertkit::checkpoint::Checkpoint;
use bertkit::data::Collator;
use bertkit::model::{ForwardOptions, Inputs, MaskedLm, MaskedTargets, SequenceClassifier};
use bertkit::tokenizer::BertTokenizer;
use bertkit::train::optim::{AdamW, AdamWConfig};
use common::{Reference, assert_close, assert_rel};
use serde_json::Value;
use tch::Tensor;
use tch::nn::VarStore;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;
/// What make_reference.py uses for its AdamW step.
const LR: f64 = 1e-3;
const WEIGHT_DECAY: f64 = 0.01;

fn inputs(r: &Reference, batch: &str, ids: &str) -> Inputs {
    Inputs::new(
        r.get(&format!("{batch}.{ids}")).shallow_clone(),
        r.get(&format!("{batch}.attention_mask")).shallow_clone(),
        r.get(&format!("{batch}.token_type_ids")).shallow_clone(),
    )
}

/// Heads transformers created at random must start where Python's did; heads the checkpoint
/// had must have loaded to the values Python loaded.
fn align_heads(vs: &VarStore, r: &Reference, initialised: &[String]) {
    let vars = vs.variables();
    for (name, want) in r.with_prefix("init") {
        let Some(var) = vars.get(&name) else { continue };
        if initialised.contains(&name) {
            tch::no_grad(|| var.shallow_clone().copy_(want));
        } else {
            assert_close(&format!("loaded {name}"), var, want, 0.0);
        }
    }
}

fn check_tokenizer(tok: &BertTokenizer, tokens: &Value, label: &str) {
    for (batch, want) in tokens.as_object().unwrap() {
        let texts: Vec<&str> = want["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let pairs: Option<Vec<&str>> =
            want.get("pairs").map(|p| p.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect());
        let enc = tok.encode_batch(&texts, pairs.as_deref(), 512).unwrap();
        let got = Collator { pad_id: tok.pad_id }.collate_encodings(&enc);
        let as_vec = |t: &Tensor| Vec::<Vec<i64>>::try_from(t).unwrap();
        let json = |k: &str| -> Vec<Vec<i64>> { serde_json::from_value(want[k].clone()).unwrap() };
        assert_eq!(as_vec(&got.input_ids), json("input_ids"), "{label} {batch}: input_ids");
        assert_eq!(as_vec(&got.attention_mask), json("attention_mask"), "{label} {batch}: attention_mask");
        assert_eq!(as_vec(&got.token_type_ids), json("token_type_ids"), "{label} {batch}: token_type_ids");
        let want_offsets: Vec<Vec<[usize; 2]>> = serde_json::from_value(want["offset_mapping"].clone()).unwrap();
        for (row, (e, w)) in enc.iter().zip(&want_offsets).enumerate() {
            let got: Vec<[usize; 2]> = e.get_offsets().iter().map(|&(a, b)| [a, b]).collect();
            assert_eq!(got, w[..got.len()], "{label} {batch} row {row}: offsets");
        }
    }
}

fn check_model(model_dir: &Path, reference: &Path, name: &str) {
    tch::manual_seed(0);
    let r = Reference::load(&reference.join(format!("{name}.safetensors")));
    let tokens: Value =
        serde_json::from_str(&std::fs::read_to_string(reference.join(format!("{name}_tokens.json"))).unwrap()).unwrap();

    let ckpt = Checkpoint::open(model_dir.to_str().unwrap()).unwrap();
    let tok = BertTokenizer::from_dir(model_dir).unwrap();
    check_tokenizer(&tok, &tokens, "tokenizer.json");

    // The reference used three labels; a checkpoint without them gets them here, as in Python.
    let mut config = ckpt.config.clone();
    config.set_labels(&["negative".into(), "neutral".into(), "positive".into()]);
    let device = common::test_device();
    let cls_vs = VarStore::new(device);
    let cls = SequenceClassifier::new(&cls_vs.root(), &config);
    let report = ckpt.load_into(&cls_vs).unwrap();
    align_heads(&cls_vs, &r, &report.initialised);
    let mlm_vs = VarStore::new(device);
    let mlm = MaskedLm::new(&mlm_vs.root(), &config);
    let report = ckpt.load_into(&mlm_vs).unwrap();
    align_heads(&mlm_vs, &r, &report.initialised);

    let all = ForwardOptions { train: false, output_hidden_states: true, output_attentions: true };
    for batch in ["short", "pairs", "long"] {
        let x = inputs(&r, batch, "input_ids");
        let labels = r.get(&format!("{batch}.labels"));
        tch::no_grad(|| {
            let (logits, out) = cls.forward(&x, all);
            for (i, h) in out.hidden_states.iter().enumerate() {
                assert_close(
                    &format!("{name} {batch} hidden_states.{i}"),
                    h,
                    r.get(&format!("{batch}.hidden_states.{i}")),
                    ATOL,
                );
            }
            let mut seen_attentions = 0;
            for (i, a) in out.attentions.iter().enumerate() {
                if let Some(want) = r.try_get(&format!("{batch}.attentions.{i}")) {
                    assert_close(&format!("{name} {batch} attentions.{i}"), a, want, ATOL);
                    seen_attentions += 1;
                }
            }
            assert!(batch == "long" || seen_attentions == config.num_hidden_layers, "{batch}: attentions compared");
            assert_close(
                &format!("{name} {batch} pooled"),
                out.pooled.as_ref().unwrap(),
                r.get(&format!("{batch}.pooled")),
                ATOL,
            );
            assert_close(&format!("{name} {batch} cls_logits"), &logits, r.get(&format!("{batch}.cls_logits")), ATOL);
            let loss = cls.loss(&logits, labels);
            assert_close(
                &format!("{name} {batch} cls_loss"),
                &loss.reshape([1]),
                r.get(&format!("{batch}.cls_loss")),
                ATOL,
            );

            // The fused (SDPA) attention path, used whenever probabilities are not asked for.
            let (fast_logits, fast) = cls.forward(&x, ForwardOptions::eval());
            let want = r.get(&format!("{batch}.sdpa.last_hidden_state"));
            assert_close(&format!("{name} {batch} SDPA last hidden"), &fast.last_hidden_state, want, ATOL);
            let want = r.get(&format!("{batch}.sdpa.cls_logits"));
            assert_close(&format!("{name} {batch} SDPA logits"), &fast_logits, want, ATOL);

            let mx = inputs(&r, batch, "mlm_input_ids");
            let mlm_labels = r.get(&format!("{batch}.mlm_labels"));
            // The reference MLM model runs transformers' eager attention, as `all` does here.
            let masked = mlm.forward_masked(&mx, &MaskedTargets::from_labels(mlm_labels).to_device(device), all);
            assert_close(
                &format!("{name} {batch} mlm_loss"),
                &masked.loss.reshape([1]),
                r.get(&format!("{batch}.mlm_loss")),
                ATOL,
            );
            if let Some(want) = r.try_get(&format!("{batch}.mlm_logits")) {
                let full = mlm.forward(&mx, all);
                assert_close(&format!("{name} {batch} mlm_logits"), &full, want, ATOL);
                // Masked-only projection (and last layer) = transformers' rows at the masked
                // positions. Relative to the logits' scale: the last layer's matrix products run
                // on fewer rows, which may sum in another order (MiniLM's logits reach ~20).
                let positions = mlm_labels.flatten(0, 1).ne(-100).nonzero().squeeze_dim(1);
                let rows = want.flatten(0, 1).index_select(0, &positions);
                let err = assert_rel(&format!("{name} {batch} masked-only logits"), &masked.logits, &rows, 5e-6);
                eprintln!("{name} {batch} masked-only logits: max error {err:.1e} of the largest logit");
            }
        });
    }

    // Gradients after one backward (dropout off, as in the reference).
    let x = inputs(&r, "short", "mlm_input_ids");
    mlm.forward_masked(
        &x,
        &MaskedTargets::from_labels(r.get("short.mlm_labels")).to_device(device),
        ForwardOptions::eval(),
    )
    .loss
    .backward();
    check_grads(&mlm_vs, &r, "grad.mlm", name);

    let x = inputs(&r, "short", "input_ids");
    let (logits, _) = cls.forward(&x, ForwardOptions::eval());
    cls.loss(&logits, r.get("short.labels")).backward();
    check_grads(&cls_vs, &r, "grad.cls", name);

    // The optimiser is checked on transformers' own gradients: a single Adam step divides each
    // gradient by its magnitude, so entries near eps would turn last-digit gradient rounding
    // (checked above) into visible weight differences that say nothing about the optimiser.
    for (pname, var) in cls_vs.variables() {
        tch::no_grad(|| var.grad().copy_(r.get(&format!("grad.cls.{pname}"))));
    }
    let params: Vec<(String, Tensor)> = cls_vs.variables().into_iter().collect();
    let mut opt = AdamW::new(params, AdamWConfig { weight_decay: WEIGHT_DECAY, ..Default::default() });
    opt.step(LR).unwrap();
    let vars = cls_vs.variables();
    let want = r.with_prefix("step.cls");
    assert_eq!(want.len(), vars.len(), "{name}: every parameter stepped");
    for (pname, w) in want {
        assert_rel(&format!("{name} after AdamW step {pname}"), &vars[&pname], w, RTOL);
    }
}

fn check_grads(vs: &VarStore, r: &Reference, prefix: &str, name: &str) {
    let vars = vs.variables();
    let want = r.with_prefix(prefix);
    assert_eq!(want.len(), vars.len(), "{name} {prefix}: one gradient per parameter");
    let mut worst = 0f64;
    for (pname, w) in want {
        let var = vars.get(&pname).unwrap_or_else(|| panic!("{name}: no parameter {pname}"));
        let g = var.grad();
        assert!(g.defined(), "{name} {prefix}: {pname} got no gradient");
        if pname.ends_with("attention.self.key.bias") {
            // Adding a constant to every key score leaves softmax unchanged, so this gradient is
            // exactly zero in exact arithmetic; both sides hold rounding noise only.
            assert_close(&format!("{name} {prefix}.{pname} (zero)"), &g, &w.zeros_like(), 1e-6);
            assert_close(&format!("{name} {prefix}.{pname} (reference zero)"), w, &w.zeros_like(), 1e-6);
            continue;
        }
        worst = worst.max(assert_rel(&format!("{name} {prefix}.{pname}"), &g, w, RTOL));
    }
    eprintln!("{name} {prefix}: worst relative gradient error {worst:.2e}");
}

#[test]
fn tiny_model_matches_transformers() {
    let dir = common::repo().join("tests/fixtures/reference");
    check_model(&common::tiny_model(), &dir, "tiny");
}

#[test]
fn minilm_matches_transformers() {
    let Some((model, reference)) = common::minilm() else { return };
    tch::set_num_threads(2);
    check_model(&model, &reference, "minilm");
}

#[test]
fn vocab_txt_tokenizer_matches_tokenizer_json() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(common::tiny_model().join("vocab.txt"), tmp.path().join("vocab.txt")).unwrap();
    std::fs::copy(common::tiny_model().join("tokenizer_config.json"), tmp.path().join("tokenizer_config.json"))
        .unwrap();
    let tok = BertTokenizer::from_dir(tmp.path()).unwrap();
    let tokens: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/reference/tiny_tokens.json")).unwrap(),
    )
    .unwrap();
    check_tokenizer(&tok, &tokens, "vocab.txt");
    // Special tokens typed in the text stay whole.
    let enc = tok.encode_batch(&["the lessee shall [MASK] the premises"], None, 32).unwrap();
    assert!(enc[0].get_ids().contains(&tok.mask_id));
}
