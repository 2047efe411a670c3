//! Unpadded execution (`encoder::packing`): a batch of very different lengths run packed must
//! give what the padded path gives at every real position (logits, losses, every gradient, the
//! hidden states), for every family and every way a head reads the encoder: the
//! whole sequence (token classification), the first token alone (`forward_at`, classifiers),
//! masked positions (MLM), with gradient checkpointing too.
mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bertkit::data::Collator;
use bertkit::encoder::{ForwardOptions, Inputs, Unpadding};
use bertkit::pretrained::Pretrained;
use bertkit::task::{Bare, MaskedLm, MaskedTargets, SequenceClassifier, TaskModel, TokenClassifier};
use bertkit::tokenizer::Tokenizer;
use common::Drift;
use tch::{Kind, Tensor};

/// Every family, each with its positions and token types (DeBERTa-v2's fixture has absolute
/// positions, token types, a narrower embedding and the convolution; v3's log-bucketed
/// relative positions).
fn fixtures() -> Vec<PathBuf> {
    let dir = common::repo().join("tests/fixtures");
    [
        "tiny-bert", "tiny-roberta", "tiny-xlm-roberta", "tiny-distilbert", "tiny-electra", "tiny-modernbert",
        "tiny-deberta-v3", "tiny-deberta-v2",
    ]
    .map(|m| dir.join(m))
    .to_vec()
}

fn name(model: &Path) -> String {
    model.file_name().unwrap().to_string_lossy().to_string()
}

/// Pairs of very different lengths (4 to 64 tokens: over half the batch is padding), so that
/// token types, positions and every sequence's own attention are exercised; for ModernBERT's
/// local layers (a window of ±8 in the fixture) a sequence inside the window, one longer than
/// it, and ones attended by blocks.
fn batch(model: &Path) -> (Inputs, i64) {
    let tok = Tokenizer::from_dir(model).unwrap();
    let long = "the lessee shall repair and maintain the premises at its own cost and expense ".repeat(6);
    let texts = ["bad", "a good film", long.as_str(), "the tenant pays rent", "the landlord may enter"];
    let pairs = ["x", "it was", "the landlord may enter", long.as_str(), "the premises to inspect them"];
    let enc = tok.encode_batch(&texts, Some(&pairs), 64).unwrap();
    let inputs = Collator { pad_id: tok.pad_id }.collate_encodings(&enc);
    assert!(inputs.padded);
    let real = inputs.attention_mask.sum(Kind::Int64).int64_value(&[]);
    (inputs.to_device(common::test_device()), real)
}

/// The model with `unpadding`; a head the checkpoint lacks starts from the same draw each time
/// (libtorch's generator is global: the tests running beside this one must not draw between the
/// seed and the load).
fn load<M: TaskModel>(model: &Path, unpadding: Unpadding) -> Pretrained<M> {
    static SEEDED: Mutex<()> = Mutex::new(());
    let _alone = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let mut loaded = common::load_with_labels::<M>(model, &["a", "b", "c"], common::test_device());
    loaded.model.encoder_mut().set_unpadding(unpadding);
    loaded
}

/// Every parameter's gradient, by name.
fn gradients<M>(loaded: &Pretrained<M>) -> Vec<(String, Tensor)> {
    let mut grads: Vec<(String, Tensor)> = (loaded.vs.variables().into_iter())
        .filter(|(_, t)| t.grad().defined())
        .map(|(n, t)| (n, t.grad().copy()))
        .collect();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    grads
}

/// Outputs and gradients of the padded and the packed runs, held to float32 rounding: the same
/// sums, over fewer rows (a GEMM may block them differently).
fn assert_same(
    model: &Path,
    what: &str,
    real: i64,
    padded: (Tensor, Vec<(String, Tensor)>),
    packed: (Tensor, Vec<(String, Tensor)>),
) -> f64 {
    let label = format!("{} {what}", name(model));
    let drift = Drift::forward(model);
    let mut worst = drift.assert(&format!("{label}: output"), &packed.0, &padded.0);
    let names = |g: &[(String, Tensor)]| g.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&packed.1), names(&padded.1), "{label}: the same parameters get gradients");
    let (backward, scale) = (drift.backward(real as usize), common::largest(padded.1.iter().map(|(_, g)| g)));
    for ((n, want), (_, got)) in padded.1.iter().zip(&packed.1) {
        worst = worst.max(backward.assert_at(&format!("{label} {n}: gradient"), got, want, scale));
    }
    worst
}

#[test]
fn classifier_logits_loss_and_gradients_equal_the_padded_path() {
    let tmp = tempfile::tempdir().unwrap();
    for model in fixtures().into_iter().chain([common::modernbert_cls(tmp.path())]) {
        let (inputs, real) = batch(&model);
        let labels = Tensor::from_slice(&[0i64, 2, 1, 1, 0]).to_device(inputs.input_ids.device());
        let run = |unpadding, first_token_only: bool| {
            let loaded = load::<SequenceClassifier>(&model, unpadding);
            let m = &loaded.model;
            let opts = ForwardOptions::default();
            let logits = if first_token_only { m.logits(&inputs, opts) } else { m.forward(&inputs, opts).0 };
            let loss = m.loss(&logits, &labels, None);
            loss.backward();
            (Tensor::cat(&[logits.detach().flatten(0, -1), loss.detach().view([1])], 0), gradients(&loaded))
        };
        for first_token_only in [false, true] {
            let what = if first_token_only { "classifier (first token)" } else { "classifier" };
            assert_same(
                &model,
                what,
                real,
                run(Unpadding::Never, first_token_only),
                run(Unpadding::Always, first_token_only),
            );
        }
    }
}

#[test]
fn token_logits_and_gradients_equal_the_padded_path_at_real_tokens() {
    for model in fixtures() {
        let (inputs, real) = batch(&model);
        let mask = inputs.attention_mask.ne(0);
        // A tag for every real token, none at padding (as the collator's -100).
        let labels = (Tensor::arange(mask.numel() as i64, (Kind::Int64, mask.device()))
            .view(mask.size().as_slice())
            .remainder(3))
        .masked_fill(&mask.logical_not(), -100);
        let run = |unpadding| {
            let loaded = load::<TokenClassifier>(&model, unpadding);
            let logits = loaded.model.forward(&inputs, ForwardOptions::default());
            let loss = loaded.model.loss(&logits, &labels, None);
            loss.backward();
            let at_real = logits.detach().index(&[Some(&mask)]);
            (Tensor::cat(&[at_real.flatten(0, -1), loss.detach().view([1])], 0), gradients(&loaded))
        };
        assert_same(&model, "tagger", real, run(Unpadding::Never), run(Unpadding::Always));
    }
}

#[test]
fn masked_lm_loss_and_gradients_equal_the_padded_path() {
    for model in fixtures() {
        let (inputs, real) = batch(&model);
        // Every third real token scored (none in the shortest row's second half).
        let mask = Vec::<i64>::try_from(inputs.attention_mask.to_device(tch::Device::Cpu).flatten(0, 1)).unwrap();
        let ids = Vec::<i64>::try_from(inputs.input_ids.to_device(tch::Device::Cpu).flatten(0, 1)).unwrap();
        let labels: Vec<i64> = (0..ids.len()).map(|i| if mask[i] == 1 && i % 3 == 1 { ids[i] } else { -100 }).collect();
        let masked = MaskedTargets::from_label_slice(&labels, inputs.input_ids.size()[0] as usize)
            .to_device(inputs.input_ids.device());
        let run = |unpadding| {
            let loaded = load::<MaskedLm>(&model, unpadding);
            let out = loaded.model.forward_masked(&inputs, &masked, ForwardOptions::default());
            out.loss.backward();
            (Tensor::cat(&[out.logits.detach().flatten(0, -1), out.loss.detach().view([1])], 0), gradients(&loaded))
        };
        // The loss is a mean over the vocabulary's softmax: the longest sum behind it.
        assert_same(&model, "masked LM", real, run(Unpadding::Never), run(Unpadding::Always));
    }
}

#[test]
fn every_hidden_state_equals_the_padded_path_at_real_tokens_and_is_zero_at_padding() {
    for model in fixtures() {
        let (inputs, _) = batch(&model);
        let mask = inputs.attention_mask.ne(0);
        let opts = ForwardOptions { output_hidden_states: true, ..Default::default() };
        let states = |unpadding| {
            let loaded = load::<Bare<false>>(&model, unpadding);
            let out = tch::no_grad(|| loaded.model.encoder().forward(&inputs, opts));
            assert_eq!(out.last_hidden_state.size(), out.hidden_states.last().unwrap().size());
            out.hidden_states
        };
        let (padded, packed) = (states(Unpadding::Never), states(Unpadding::Always));
        assert_eq!(padded.len(), packed.len());
        let drift = Drift::forward(&model);
        for (i, (want, got)) in padded.iter().zip(&packed).enumerate() {
            assert_eq!(got.size(), want.size());
            let label = format!("{} hidden state {i}", name(&model));
            drift.assert(&label, &got.index(&[Some(&mask)]), &want.index(&[Some(&mask)]));
            let at_padding = got.index(&[Some(&mask.logical_not())]).abs().max().double_value(&[]);
            assert_eq!(at_padding, 0.0, "{label}: zeros at padding");
        }
    }
}

#[test]
fn gradient_checkpointing_recomputes_the_packed_layers() {
    for model in fixtures() {
        let (inputs, real) = batch(&model);
        let labels = Tensor::from_slice(&[1i64, 0, 2, 0, 1]).to_device(inputs.input_ids.device());
        let run = |unpadding, checkpointing| {
            let mut loaded = load::<SequenceClassifier>(&model, unpadding);
            loaded.model.encoder_mut().set_gradient_checkpointing(checkpointing);
            let logits = loaded.model.logits(&inputs, ForwardOptions::default());
            let loss = loaded.model.loss(&logits, &labels, None);
            loss.backward();
            (loss.detach().view([1]), gradients(&loaded))
        };
        assert_same(&model, "checkpointed", real, run(Unpadding::Never, false), run(Unpadding::Always, true));
    }
}

#[test]
fn auto_packs_a_padded_batch_unless_attention_maps_are_asked() {
    // What Auto does is seen in the zeros at padding: a packed run writes nothing there.
    let model = &fixtures()[0];
    let (inputs, _) = batch(model);
    let loaded = load::<Bare<false>>(model, Unpadding::Auto);
    let out = tch::no_grad(|| loaded.model.encoder().forward(&inputs, ForwardOptions::default()));
    let padding = inputs.attention_mask.eq(0);
    assert_eq!(out.last_hidden_state.index(&[Some(&padding)]).abs().max().double_value(&[]), 0.0);
    let never = load::<Bare<false>>(model, Unpadding::Never);
    let out = tch::no_grad(|| never.model.encoder().forward(&inputs, ForwardOptions::default()));
    assert!(out.last_hidden_state.index(&[Some(&padding)]).abs().max().double_value(&[]) > 0.0);
    // Attention maps keep the padded path whatever the setting: [batch, heads, seq, seq].
    let opts = ForwardOptions { output_attentions: true, ..Default::default() };
    let out = tch::no_grad(|| loaded.model.encoder().forward(&inputs, opts));
    let seq = inputs.input_ids.size()[1];
    assert_eq!(out.attentions[0].size()[2..], [seq, seq]);
    assert!(out.last_hidden_state.index(&[Some(&padding)]).abs().max().double_value(&[]) > 0.0);
}
