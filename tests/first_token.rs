//! Training reads a classifier's logits through `SequenceClassifier::logits`, which runs the
//! last layer at the first token alone where the head reads nothing else: the logits and every
//! gradient must be those of the whole forward pass, for every family's head.
mod common;

use std::path::{Path, PathBuf};

use bertkit::data::Collator;
use bertkit::encoder::ForwardOptions;
use bertkit::task::SequenceClassifier;
use bertkit::tokenizer::Tokenizer;
use tch::Tensor;

fn fixtures() -> Vec<PathBuf> {
    let dir = common::repo().join("tests/fixtures");
    ["tiny-bert", "tiny-roberta", "tiny-distilbert", "tiny-electra", "tiny-modernbert", "tiny-deberta-v3"]
        .map(|m| dir.join(m))
        .to_vec()
}

/// Logits and parameter gradients of one loss, through the whole pass or through `logits`.
fn run(model: &Path, shortcut: bool) -> (Tensor, Vec<(String, Tensor)>) {
    let tok = Tokenizer::from_dir(model).unwrap();
    let texts = ["the lessee shall repair the premises at its own cost", "a good film", "bad"];
    let enc = tok.encode_batch(&texts, None, 64).unwrap();
    let device = common::test_device();
    let inputs = Collator { pad_id: tok.pad_id }.collate_encodings(&enc).to_device(device);
    let loaded = common::load::<SequenceClassifier>(model, device).unwrap();
    let m = &loaded.model;
    let opts = ForwardOptions::default();
    let logits = if shortcut { m.logits(&inputs, opts) } else { m.forward(&inputs, opts).0 };
    let labels = Tensor::from_slice(&[0i64, 2, 1]).to_device(device);
    m.loss(&logits, &labels, None).backward();
    let mut grads: Vec<(String, Tensor)> = loaded
        .vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.grad().defined())
        .map(|(n, t)| (n, t.grad().copy()))
        .collect();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    (logits.detach(), grads)
}

#[test]
fn logits_from_the_first_token_alone_equal_the_whole_pass() {
    let tmp = tempfile::tempdir().unwrap();
    for model in fixtures().into_iter().chain([common::modernbert_cls(tmp.path())]) {
        let (whole, g_whole) = run(&model, false);
        let (short, g_short) = run(&model, true);
        let name = model.file_name().unwrap().to_string_lossy().to_string();
        // The same arithmetic on fewer rows: the last layer's products may sum in another order.
        let drift = common::Drift::forward(&model);
        drift.assert(&format!("{name}: logits"), &short, &whole);
        assert_eq!(g_whole.len(), g_short.len(), "{name}: the same parameters get gradients");
        // Gradients at the scale of the whole backward pass: a weight's gradient sums over the
        // batch's tokens (3 texts cut at 64), and some cancel to nearly nothing.
        let (backward, scale) = (drift.backward(3 * 64), common::largest(g_whole.iter().map(|(_, g)| g)));
        for ((n, a), (_, b)) in g_whole.iter().zip(&g_short) {
            backward.assert_at(&format!("{name} {n}: gradient"), b, a, scale);
        }
    }
}
