//! bertkit against Python transformers on the same weights and inputs, one test per aspect so
//! that a failure names what diverged: tokenisation, the forward pass (every hidden state,
//! attention probabilities, pooled output, classification logits and loss, the fused attention
//! path), masked-LM logits and loss (the masked-only projection too), the gradient of every
//! parameter, and the weights after one AdamW step. Each for the tiny model and for MiniLM.
//!
//! Reference files come from `scripts/make_reference.py` (tiny model: committed; MiniLM: made by
//! `scripts/setup.sh`). Tolerances follow the rule of `common::Drift`: float32 rounding (ε) times
//! the square root of the longest sum and the depth of the pass, at the scale of the terms.

mod common;

use std::path::{Path, PathBuf};

use bertkit::data::Collator;
use bertkit::data::token_classification::TaggedSentence;
use bertkit::data::{LabelSet, Location};
use bertkit::device::Autocast;
use bertkit::encoder::{ForwardOptions, Inputs};
use bertkit::explain::comparison::KeptAttention;
use bertkit::predict::TaggedSet;
use bertkit::pretrained::Pretrained;
use bertkit::pretrained::{self, LoadOptions, ModelDir};
use bertkit::task::{MaskedLm, MaskedTargets, SequenceClassifier, TaskModel, TokenClassifier};
use bertkit::tokenizer::Tokenizer;
use bertkit::train::optim::{AdamW, AdamWConfig};
use common::{Drift, Reference, assert_close, largest};
use serde_json::Value;
use tch::Tensor;
use tch::nn::VarStore;

/// What make_reference.py uses for its AdamW step.
const LR: f64 = 1e-3;
const WEIGHT_DECAY: f64 = 0.01;
/// The labels the reference classifier was built with.
const LABELS: [&str; 3] = ["negative", "neutral", "positive"];
/// The reference's batches.
const BATCHES: [&str; 3] = ["short", "pairs", "long"];

/// A model and its reference outputs.
struct Case {
    name: &'static str,
    model: PathBuf,
    r: Reference,
    /// Tokenisation reference: ids, masks and offsets of each batch's texts.
    tokens: Value,
}

impl Case {
    fn new(name: &'static str, model: PathBuf, reference: &Path) -> Case {
        let r = Reference::load(&reference.join(format!("{name}.safetensors")));
        let tokens = std::fs::read_to_string(reference.join(format!("{name}_tokens.json"))).unwrap();
        Case { name, model, r, tokens: serde_json::from_str(&tokens).unwrap() }
    }

    fn tiny() -> Option<Case> {
        Some(Case::new("tiny", common::tiny_model(), &common::repo().join("tests/fixtures/reference")))
    }

    /// A tiny model of another family: `tests/fixtures/{name}` and its reference.
    fn fixture(name: &'static str) -> Option<Case> {
        let fixtures = common::repo().join("tests/fixtures");
        Some(Case::new(name, fixtures.join(name), &fixtures.join("reference")))
    }

    /// None (the test passes, saying so) where MiniLM is absent and not required.
    fn minilm() -> Option<Case> {
        let (model, reference) = common::minilm()?;
        tch::set_num_threads(2);
        Some(Case::new("minilm", model, &reference))
    }

    /// The classifier, its fresh head set to the reference's starting values.
    fn classifier(&self) -> Pretrained<SequenceClassifier> {
        tch::manual_seed(0);
        let m = common::load_with_labels(&self.model, &LABELS, common::test_device());
        align_heads(&m.vs, &self.r, &m.report.initialised);
        m
    }

    /// What rounding may change in this model's forward pass (`common::Drift`).
    fn drift(&self) -> Drift {
        Drift::forward(&self.model)
    }

    fn masked_lm(&self) -> Pretrained<MaskedLm> {
        tch::manual_seed(0);
        let m = common::load_with_labels(&self.model, &LABELS, common::test_device());
        align_heads(&m.vs, &self.r, &m.report.initialised);
        m
    }
}

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

fn check_tokenizer(tok: &Tokenizer, tokens: &Value, label: &str) {
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
        // Word ids: what whole-word masking's words come from (null at special tokens).
        let want_words: Vec<Vec<Option<u32>>> = serde_json::from_value(want["word_ids"].clone()).unwrap();
        for (row, e) in enc.iter().enumerate() {
            let got: Vec<[usize; 2]> = e.get_offsets().iter().map(|&(a, b)| [a, b]).collect();
            assert_eq!(got, want_offsets[row][..got.len()], "{label} {batch} row {row}: offsets");
            assert_eq!(e.get_word_ids(), &want_words[row][..e.len()], "{label} {batch} row {row}: word ids");
        }
    }
}

fn check_tokenizer_json(case: Option<Case>) {
    let Some(case) = case else { return };
    let tok = Tokenizer::from_dir(&case.model).unwrap();
    check_tokenizer(&tok, &case.tokens, &format!("{} tokenizer.json", case.name));
}

/// An XLM-R tokenizer.json of either vintage on the hub (converted today, or the older files'
/// Metaspace alone, which makes a token of each extra space), read as transformers 5 reads it:
/// the ids of `AutoTokenizer`, which are SentencePiece's own, on texts where pipelines differ.
#[test]
fn xlm_roberta_tokenizer_files_of_either_vintage_give_transformers_ids() {
    let dir = common::repo().join("tests/fixtures/xlmr-tokenizer");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let texts: Vec<String> = serde_json::from_value(reference["texts"].clone()).unwrap();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let sentencepiece: Vec<Vec<u32>> = serde_json::from_value(reference["sentencepiece"].clone()).unwrap();
    for vintage in ["current", "hub-2020"] {
        let want: Vec<Vec<u32>> = serde_json::from_value(reference[vintage].clone()).unwrap();
        assert_eq!(want, sentencepiece, "{vintage}: transformers tokenizes as SentencePiece does");
        let tok = Tokenizer::from_dir(&dir.join(vintage)).unwrap();
        for (i, e) in tok.encode_batch_whole(&texts, None).unwrap().iter().enumerate() {
            assert_eq!(e.get_ids(), &want[i][..], "{vintage}: {:?}", texts[i]);
        }
    }
}

/// Every hidden state, attention map, the pooled output, logits and loss, with attention
/// probabilities asked for (eager attention) and without (the fused SDPA path).
fn check_forward(case: Option<Case>) {
    let Some(case) = case else { return };
    let (name, r, cls, drift) = (case.name, &case.r, case.classifier(), case.drift());
    let all = ForwardOptions { output_hidden_states: true, output_attentions: true, ..ForwardOptions::eval() };
    for batch in BATCHES {
        let x = inputs(r, batch, "input_ids");
        let at = |what: &str| format!("{name} {batch} {what}");
        tch::no_grad(|| {
            let (logits, out) = cls.model.forward(&x, all);
            for (i, h) in out.hidden_states.iter().enumerate() {
                drift.assert(&at(&format!("hidden_states.{i}")), h, r.get(&format!("{batch}.hidden_states.{i}")));
            }
            let mut seen_attentions = 0;
            for (i, a) in out.attentions.iter().enumerate() {
                if let Some(want) = r.try_get(&format!("{batch}.attentions.{i}")) {
                    drift.assert(&at(&format!("attentions.{i}")), a, want);
                    seen_attentions += 1;
                }
            }
            assert!(batch == "long" || seen_attentions == cls.dims.num_layers, "{batch}: attentions compared");
            // Families whose classifier reads the first token (RoBERTa) build no pooler.
            match r.try_get(&format!("{batch}.pooled")) {
                Some(want) => _ = drift.assert(&at("pooled"), out.pooled.as_ref().unwrap(), want),
                None => assert!(out.pooled.is_none(), "{name}: a pooler the reference does not have"),
            }
            drift.assert(&at("cls_logits"), &logits, r.get(&format!("{batch}.cls_logits")));
            let loss = cls.model.loss(&logits, r.get(&format!("{batch}.labels")), None);
            drift.assert(&at("cls_loss"), &loss.reshape([1]), r.get(&format!("{batch}.cls_loss")));

            // A sink gets the same probabilities, layer by layer, and the pass the same result.
            let sink = KeptAttention::new(x.input_ids.size()[0]);
            let sunk = ForwardOptions { attention_sink: Some(&sink), ..all };
            let (sunk_logits, sunk_out) = cls.model.forward(&x, sunk);
            assert!(sunk_out.attentions.is_empty(), "{name}: probabilities both sunk and returned");
            drift.assert(&at("sunk logits"), &sunk_logits, r.get(&format!("{batch}.cls_logits")));
            let layers = sink.layers();
            assert_eq!(layers.len(), out.attentions.len(), "{name} {batch}: layers sunk");
            for (i, (got, want)) in layers.iter().zip(&out.attentions).enumerate() {
                drift.assert(&at(&format!("sunk attentions.{i}")), got, want);
            }

            // The fused (SDPA) attention path, used whenever probabilities are not asked for;
            // a padded batch runs packed (`Unpadding::Auto`), which leaves zeros at padding.
            let (fast_logits, fast) = cls.model.forward(&x, ForwardOptions::eval());
            let want = r.get(&format!("{batch}.sdpa.last_hidden_state"));
            let real = |t: &Tensor| at_real_tokens(t, &x.attention_mask);
            drift.assert(&at("SDPA last hidden"), &real(&fast.last_hidden_state), &real(want));
            drift.assert(&at("SDPA logits"), &fast_logits, r.get(&format!("{batch}.sdpa.cls_logits")));
        });
    }
}

/// The rows of `[batch, seq, ...]` at real tokens: what every head reads. At padding transformers
/// computes values nothing reads, and a packed batch (`encoder::packing`) none.
fn at_real_tokens(t: &Tensor, attention_mask: &Tensor) -> Tensor {
    t.index(&[Some(&attention_mask.ne(0))])
}

/// MLM loss from the masked-only forward, full logits, and the masked-only logits against the
/// reference's rows at the masked positions.
fn check_masked_lm(case: Option<Case>) {
    let Some(case) = case else { return };
    let (name, r, mlm) = (case.name, &case.r, case.masked_lm());
    // The loss normalises over the whole vocabulary.
    let drift = case.drift().summing(mlm.dims.vocab_size as usize);
    // The reference MLM model runs transformers' eager attention, as `all` does here.
    let all = ForwardOptions { output_hidden_states: true, output_attentions: true, ..ForwardOptions::eval() };
    for batch in BATCHES {
        let mx = inputs(r, batch, "mlm_input_ids");
        let labels = r.get(&format!("{batch}.mlm_labels"));
        tch::no_grad(|| {
            let targets = MaskedTargets::from_labels(labels).to_device(mlm.device);
            let masked = mlm.model.forward_masked(&mx, &targets, all);
            let want = r.get(&format!("{batch}.mlm_loss"));
            drift.assert(&format!("{name} {batch} mlm_loss"), &masked.loss.reshape([1]), want);
            let Some(want) = r.try_get(&format!("{batch}.mlm_logits")) else { return };
            drift.assert(&format!("{name} {batch} mlm_logits"), &mlm.model.forward(&mx, all), want);
            // Masked-only projection (and last layer) = transformers' rows at the masked
            // positions: the last layer's matrix products run on fewer rows, which may sum in
            // another order.
            let positions = labels.flatten(0, 1).ne(-100).nonzero().squeeze_dim(1);
            let rows = want.flatten(0, 1).index_select(0, &positions);
            let used = drift.assert(&format!("{name} {batch} masked-only logits"), &masked.logits, &rows);
            eprintln!("{name} {batch} masked-only logits: {:.0}% of the allowed drift", used * 100.0);
        });
    }
}

/// The gradient of every parameter after one backward of each head (dropout off, as in the
/// reference).
fn check_gradients(case: Option<Case>) {
    let Some(case) = case else { return };
    let (name, r) = (case.name, &case.r);
    let mlm = case.masked_lm();
    let targets = MaskedTargets::from_labels(r.get("short.mlm_labels")).to_device(mlm.device);
    let x = inputs(r, "short", "mlm_input_ids");
    mlm.model.forward_masked(&x, &targets, ForwardOptions::eval()).loss.backward();
    // A weight's gradient sums over every token of the batch.
    let drift = case.drift().summing(mlm.dims.vocab_size as usize).backward(x.input_ids.numel());
    check_grads(&mlm.vs, r, "grad.mlm", name, drift);

    let cls = case.classifier();
    let (logits, _) = cls.model.forward(&inputs(r, "short", "input_ids"), ForwardOptions::eval());
    cls.model.loss(&logits, r.get("short.labels"), None).backward();
    check_grads(&cls.vs, r, "grad.cls", name, case.drift().backward(x.input_ids.numel()));
}

/// The weights after one AdamW step, taken on transformers' own gradients: a single Adam step
/// divides each gradient by its magnitude, so entries near eps would turn last-digit gradient
/// rounding (checked above) into visible weight differences that say nothing about the optimiser.
fn check_adamw_step(case: Option<Case>) {
    let Some(case) = case else { return };
    let (name, r, cls) = (case.name, &case.r, case.classifier());
    let (logits, _) = cls.model.forward(&inputs(r, "short", "input_ids"), ForwardOptions::eval());
    cls.model.loss(&logits, r.get("short.labels"), None).backward(); // gives every parameter a .grad
    for (pname, var) in cls.vs.variables() {
        tch::no_grad(|| var.grad().copy_(r.get(&format!("grad.cls.{pname}"))));
    }
    let params: Vec<(String, Tensor)> = cls.vs.variables().into_iter().collect();
    let mut opt = AdamW::new(params, AdamWConfig { weight_decay: WEIGHT_DECAY, ..Default::default() });
    opt.step(LR).unwrap();
    let vars = cls.vs.variables();
    let want = r.with_prefix("step.cls");
    assert_eq!(want.len(), vars.len(), "{name}: every parameter stepped");
    // Elementwise arithmetic on the same gradients: no sum (k = 1), four operations deep (the
    // two moments, their ratio, the decayed weight).
    let step = Drift { k: 1, depth: 4 };
    for (pname, w) in want {
        step.assert(&format!("{name} after AdamW step {pname}"), &vars[&pname], w);
    }
}

fn check_grads(vs: &VarStore, r: &Reference, prefix: &str, name: &str, drift: Drift) {
    let vars = vs.variables();
    let want = r.with_prefix(prefix);
    assert_eq!(want.len(), vars.len(), "{name} {prefix}: one gradient per parameter");
    let scale = largest(want.iter().map(|(_, w)| *w));
    let mut worst = 0f64;
    for (pname, w) in want {
        let var = vars.get(&pname).unwrap_or_else(|| panic!("{name}: no parameter {pname}"));
        let g = var.grad();
        assert!(g.defined(), "{name} {prefix}: {pname} got no gradient");
        let zero = ["attention.self.key.bias", "attention.k_lin.bias", "attention.self.pos_key_proj.bias"];
        if zero.iter().any(|z| pname.ends_with(z)) {
            // Adding a constant to every key score leaves softmax unchanged, so this gradient is
            // exactly zero in exact arithmetic; both sides hold rounding noise only. (DeBERTa's
            // position-key bias adds q.b to a query's every c2p score, a constant too.)
            drift.assert_at(&format!("{name} {prefix}.{pname} (zero)"), &g, &w.zeros_like(), scale);
            drift.assert_at(&format!("{name} {prefix}.{pname} (reference zero)"), w, &w.zeros_like(), scale);
            continue;
        }
        worst = worst.max(drift.assert_at(&format!("{name} {prefix}.{pname}"), &g, w, scale));
    }
    eprintln!("{name} {prefix}: worst gradient at {:.0}% of the allowed drift", worst * 100.0);
}

/// The task-head reference of a tiny model (`make_reference.py tasks`); None for MiniLM.
fn task_reference(case: &Case) -> Option<Reference> {
    let path = common::repo().join(format!("tests/fixtures/reference/{}_tasks.safetensors", case.name));
    path.exists().then(|| Reference::load(&path))
}

/// `model` with `labels` (and `problem_type`) and a fresh head set to the reference's `init`.
fn load_task<M: TaskModel>(
    model: &Path,
    labels: &[&str],
    problem_type: Option<&str>,
    r: &Reference,
    init: &str,
) -> Pretrained<M> {
    let mut dir = ModelDir::open(model.to_str().unwrap()).unwrap();
    dir.config.set_labels(&labels.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    if let Some(p) = problem_type {
        dir.config.set("problem_type", p.into());
    }
    let options = LoadOptions { new_head: true, ..LoadOptions::inference(common::test_device(), Autocast::off()) };
    let m = pretrained::load::<M>(&dir, &options).unwrap();
    let vars = m.vs.variables();
    for (name, want) in r.with_prefix(init) {
        tch::no_grad(|| vars.get(&name).unwrap_or_else(|| panic!("no {name}")).shallow_clone().copy_(want));
    }
    m
}

/// Words tokenised as transformers' `is_split_into_words` does, first sub-tokens labelled, and
/// the token-classification logits and loss.
fn check_token_classification(case: Option<Case>) {
    let Some(case) = case else { return };
    let Some(r) = task_reference(&case) else { return };
    let tags = ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"];
    let tagger: Pretrained<TokenClassifier> = load_task(&case.model, &tags, None, &r, "tok_init");
    let sentences: Vec<TaggedSentence> = TAGGED
        .iter()
        .map(|(words, t)| TaggedSentence {
            words: words.split(' ').map(String::from).collect(),
            tags: Some(t.split(' ').map(String::from).collect()),
            at: Location { file: "reference".into(), line: 1 },
        })
        .collect();
    let label_set = LabelSet::new(tags.iter().map(|t| t.to_string()).collect());
    let set = TaggedSet::new(&tagger.tokenizer, &sentences, &label_set, 512, 128, false).unwrap();
    let (ids, mask) = (r.get("tok.input_ids"), r.get("tok.attention_mask"));
    for (i, w) in set.windows.iter().enumerate() {
        let n = mask.get(i as i64).sum(tch::Kind::Int64).int64_value(&[]);
        let want = |t: &Tensor| Vec::<i64>::try_from(t.get(i as i64).narrow(0, 0, n)).unwrap();
        let got: Vec<i64> = w.encoded.ids.iter().map(|&x| x as i64).collect();
        assert_eq!(got, want(ids), "{} sentence {i}: input ids", case.name);
        let words: Vec<i64> = w.word_ids.iter().map(|x| x.map_or(-1, |x| x as i64)).collect();
        assert_eq!(words, want(r.get("tok.word_ids")), "{} sentence {i}: word ids", case.name);
        assert_eq!(set.labels[i], want(r.get("tok.labels")), "{} sentence {i}: labels", case.name);
    }
    let refs: Vec<&bertkit::data::Encoded> = set.windows.iter().map(|w| &w.encoded).collect();
    let x = Collator { pad_id: tagger.tokenizer.pad_id }.collate(&refs).to_device(tagger.device);
    let logits = tch::no_grad(|| tagger.model.forward(&x, ForwardOptions::eval()));
    let real = |t: &Tensor| at_real_tokens(t, &x.attention_mask);
    case.drift().assert(&format!("{} token logits", case.name), &real(&logits), &real(r.get("tok.logits")));
    let loss = tagger.model.loss(&logits, &r.get("tok.labels").to_device(tagger.device), None);
    case.drift().assert(&format!("{} token loss", case.name), &loss.reshape([1]), r.get("tok.loss"));
}

/// BCE-with-logits of a multi-label head and MSE of a one-output regression head, as
/// transformers picks them from `problem_type`.
fn check_multi_label_and_regression(case: Option<Case>) {
    let Some(case) = case else { return };
    let Some(r) = task_reference(&case) else { return };
    let x = inputs(&case.r, "short", "input_ids").to_device(common::test_device());
    let multi: Pretrained<SequenceClassifier> = {
        let mut dir = ModelDir::open(case.model.to_str().unwrap()).unwrap();
        dir.config.set_labels(&LABELS.map(String::from));
        dir.config.set("problem_type", "multi_label_classification".into());
        pretrained::load(&dir, &LoadOptions::inference(common::test_device(), Autocast::off())).unwrap()
    };
    let (logits, _) = tch::no_grad(|| multi.model.forward(&x, ForwardOptions::eval()));
    case.drift().assert(&format!("{} multi-label logits", case.name), &logits, r.get("multi.logits"));
    let loss = multi.model.loss(&logits, &r.get("multi.multi_hot").to_device(multi.device), None);
    case.drift().assert(&format!("{} multi-label loss", case.name), &loss.reshape([1]), r.get("multi.loss"));

    let reg: Pretrained<SequenceClassifier> = load_task(&case.model, &["score"], Some("regression"), &r, "reg_init");
    let (logits, _) = tch::no_grad(|| reg.model.forward(&x, ForwardOptions::eval()));
    case.drift().assert(&format!("{} regression logits", case.name), &logits, r.get("reg.logits"));
    let loss = reg.model.loss(&logits, &r.get("reg.scores").to_device(reg.device), None);
    case.drift().assert(&format!("{} regression loss", case.name), &loss.reshape([1]), r.get("reg.loss"));
}

/// `make_reference.py`'s TAGGED sentences (words, tags), space-separated.
const TAGGED: [(&str, &str); 3] = [
    ("John Smith lives in New York .", "B-PER I-PER O O B-LOC I-LOC O"),
    ("The lessee shall maintain the premises .", "O O O O O O O"),
    ("Café naïve 東京 über résumé", "O O B-LOC O O"),
];

/// The five parity tests of one model, in a module named after it (`tiny_roberta::forward`).
macro_rules! parity_tests {
    ($model:ident, $case:expr) => {
        mod $model {
            use super::*;

            #[test]
            fn tokenizer() {
                check_tokenizer_json($case);
            }
            #[test]
            fn forward() {
                check_forward($case);
            }
            #[test]
            fn masked_lm() {
                check_masked_lm($case);
            }
            #[test]
            fn gradients() {
                check_gradients($case);
            }
            #[test]
            fn adamw_step() {
                check_adamw_step($case);
            }
            #[test]
            fn token_classification() {
                check_token_classification($case);
            }
            #[test]
            fn multi_label_and_regression() {
                check_multi_label_and_regression($case);
            }
        }
    };
}

parity_tests!(tiny, Case::tiny());
parity_tests!(tiny_roberta, Case::fixture("tiny-roberta"));
parity_tests!(tiny_xlm_roberta, Case::fixture("tiny-xlm-roberta"));
parity_tests!(tiny_distilbert, Case::fixture("tiny-distilbert"));
parity_tests!(tiny_electra, Case::fixture("tiny-electra"));
parity_tests!(tiny_modernbert, Case::fixture("tiny-modernbert"));
parity_tests!(tiny_deberta_v3, Case::fixture("tiny-deberta-v3"));
parity_tests!(tiny_deberta_v2, Case::fixture("tiny-deberta-v2"));
parity_tests!(minilm, Case::minilm());

#[test]
fn vocab_txt_tokenizer_matches_tokenizer_json() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(common::tiny_model().join("vocab.txt"), tmp.path().join("vocab.txt")).unwrap();
    std::fs::copy(common::tiny_model().join("tokenizer_config.json"), tmp.path().join("tokenizer_config.json"))
        .unwrap();
    let tok = Tokenizer::from_dir(tmp.path()).unwrap();
    let tokens: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/reference/tiny_tokens.json")).unwrap(),
    )
    .unwrap();
    check_tokenizer(&tok, &tokens, "vocab.txt");
    // Special tokens typed in the text stay whole.
    let enc = tok.encode_batch(&["the lessee shall [MASK] the premises"], None, 32).unwrap();
    assert!(enc[0].get_ids().contains(&tok.mask_id));
}
