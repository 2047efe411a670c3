//! Shared by the integration tests: fixture paths, reference files, tensor comparisons.
#![allow(dead_code)] // each test binary uses its own subset

pub mod browser;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use bertkit::device::Autocast;
use bertkit::pretrained::{self, LoadOptions, ModelDir, Pretrained};
use bertkit::task::TaskModel;
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

/// The repository: where the tests were built, unless BERTKIT_REPO says where it is now (test
/// binaries copied to a GPU machine).
pub fn repo() -> PathBuf {
    std::env::var("BERTKIT_REPO").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Runs the `bertkit` binary built for these tests.
pub fn bertkit<S: AsRef<OsStr>>(args: &[S]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bertkit")).args(args).env("RUST_BACKTRACE", "0").output().unwrap()
}

/// Runs bertkit with `input` on its standard input.
pub fn bertkit_with_stdin<S: AsRef<OsStr>>(args: &[S], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bertkit"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs bertkit, failing the test with the command line, stdout and stderr unless it succeeds;
/// returns stdout.
pub fn ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = bertkit(args);
    let shown: Vec<String> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    assert!(
        out.status.success(),
        "bertkit {} failed:\n{}\n{}",
        shown.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fine-tuning command most tests run: the tiny model with a fresh head on `train`, written
/// to `output`, on the CPU with one thread; `flags` are what the test varies.
pub fn finetune_tiny(train: &Path, output: &Path, flags: &[&str]) -> Vec<String> {
    let [model, train, output] = [tiny_model().as_path(), train, output].map(|p| p.display().to_string());
    let base = ["finetune", "--new-head", "--model", &model, "--train", &train, "--output", &output];
    // fp32 unless a test asks otherwise: numbers must not depend on whether this CPU has native bf16.
    let precision = if flags.contains(&"--precision") { &[][..] } else { &["--precision", "fp32"][..] };
    base.into_iter()
        .chain(["--device", "cpu", "--threads", "1"])
        .chain(precision.iter().copied())
        .chain(flags.iter().copied())
        .map(String::from)
        .collect()
}

/// Texts of filler words; the label says whether "good" or "bad" appears (one of them always does).
pub fn synthetic_csv(path: &Path, n: usize, seed: u64) {
    let filler = ["the", "movie", "film", "was", "and", "this", "of", "it", "plot", "a", "to", "with"];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut csv = String::from("text,label\n");
    for _ in 0..n {
        let positive = rng.random_bool(0.5);
        let len = rng.random_range(4..12);
        let mut words: Vec<&str> = (0..len).map(|_| filler[rng.random_range(0..filler.len())]).collect();
        let at = rng.random_range(0..=words.len());
        words.insert(at, if positive { "good" } else { "bad" });
        csv += &format!("\"{}\",{}\n", words.join(" "), if positive { "pos" } else { "neg" });
    }
    std::fs::write(path, csv).unwrap();
}

/// CoNLL sentences: names tagged by type, filler words O; one very long sentence.
pub fn conll(path: &Path, n: usize, seed: u64) {
    let names = [("John", "PER"), ("Mary", "PER"), ("Paris", "LOC"), ("London", "LOC"), ("Acme", "ORG")];
    let filler = ["the", "movie", "was", "and", "this", "of", "it", "plot", "a", "with"];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = String::from("-DOCSTART- -X- -X- O\n\n");
    for i in 0..n {
        let len = if i == 0 { 40 } else { rng.random_range(3..10) };
        for _ in 0..len {
            if rng.random_bool(0.3) {
                let (name, kind) = names[rng.random_range(0..names.len())];
                out += &format!("{name} NNP B-NP B-{kind}\n");
                if kind == "ORG" {
                    out += &format!("Corp NNP I-NP I-{kind}\n");
                }
            } else {
                out += &format!("{} NN I-NP O\n", filler[rng.random_range(0..filler.len())]);
            }
        }
        out += "\n";
    }
    std::fs::write(path, out).unwrap();
}

pub fn tiny_model() -> PathBuf {
    repo().join("tests/fixtures/tiny-bert")
}

/// A copy of the tiny BERT in `dir/model` (its checkpoint has a 3-label classifier) with
/// config.json edited: another task over the same head.
pub fn tiny_as(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let out = dir.join("model");
    std::fs::create_dir_all(&out).unwrap();
    for entry in std::fs::read_dir(tiny_model()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), out.join(entry.file_name())).unwrap();
    }
    let path = out.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    out
}

/// The tiny ModernBERT in `tmp/modernbert-cls` as ModernBERT-base classifies: the first token,
/// a global last layer (which `Encoder::forward_at` then runs at that token alone).
pub fn modernbert_cls(tmp: &Path) -> PathBuf {
    let dst = tmp.join("modernbert-cls");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(repo().join("tests/fixtures/tiny-modernbert")).unwrap().flatten() {
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("config.json")).unwrap()).unwrap();
    config["classifier_pooling"] = "cls".into();
    config["layer_types"] = serde_json::json!(["full_attention", "sliding_attention", "full_attention"]);
    std::fs::write(dst.join("config.json"), config.to_string()).unwrap();
    dst
}

/// The tiny BERT as a token classifier: its checkpoint's 3-row head read as three entity tags
/// (no `O`, so a random head finds entities).
pub fn tiny_tagger(dir: &Path) -> PathBuf {
    tiny_as(dir, |c| {
        c["architectures"] = serde_json::json!(["BertForTokenClassification"]);
        c["id2label"] = serde_json::json!({"0": "B-PER", "1": "I-PER", "2": "B-LOC"});
        c["label2id"] = serde_json::json!({"B-PER": 0, "I-PER": 1, "B-LOC": 2});
    })
}

/// Every tiny fixture as (reference name in `tests/fixtures/reference/`, model directory in
/// `tests/fixtures/`): one per family `make_reference.py` builds.
pub const FIXTURES: [(&str, &str); 8] = [
    ("tiny", "tiny-bert"),
    ("tiny-roberta", "tiny-roberta"),
    ("tiny-xlm-roberta", "tiny-xlm-roberta"),
    ("tiny-distilbert", "tiny-distilbert"),
    ("tiny-electra", "tiny-electra"),
    ("tiny-modernbert", "tiny-modernbert"),
    ("tiny-deberta-v3", "tiny-deberta-v3"),
    ("tiny-deberta-v2", "tiny-deberta-v2"),
];

/// Every fixture with its reference `tests/fixtures/reference/{name}_{suffix}.safetensors`, and
/// all-MiniLM-L6-v2 with `minilm_{suffix}.safetensors` where setup.sh made it: (name, model
/// directory, reference).
pub fn reference_cases(suffix: &str) -> Vec<(String, PathBuf, Reference)> {
    let fixtures = repo().join("tests/fixtures");
    let mut cases: Vec<_> = FIXTURES
        .iter()
        .map(|(name, dir)| {
            let r = Reference::load(&fixtures.join(format!("reference/{name}_{suffix}.safetensors")));
            (name.to_string(), fixtures.join(dir), r)
        })
        .collect();
    if let Some((model, reference)) = minilm() {
        cases.push(("minilm".into(), model, Reference::load(&reference.join(format!("minilm_{suffix}.safetensors")))));
    }
    cases
}

/// The model at `dir` with head `M`, as the commands load it (fp32, the checkpoint's own head).
pub fn load<M: TaskModel>(dir: &Path, device: Device) -> anyhow::Result<Pretrained<M>> {
    pretrained::load(&ModelDir::open(dir.to_str().unwrap())?, &LoadOptions::inference(device, Autocast::off()))
}

/// The same with the config's labels set to `labels` first (a classifier for them).
pub fn load_with_labels<M: TaskModel>(dir: &Path, labels: &[&str], device: Device) -> Pretrained<M> {
    let mut model = ModelDir::open(dir.to_str().unwrap()).unwrap();
    model.config.set_labels(&labels.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    pretrained::load(&model, &LoadOptions::inference(device, Autocast::off())).unwrap()
}

/// Every tensor of a BERT checkpoint directory, under its canonical name.
pub fn bert_weights(dir: &Path) -> BTreeMap<String, Tensor> {
    pretrained::read_weights(dir, &bertkit::encoder::bert::FAMILY).unwrap()
}

/// all-MiniLM-L6-v2 and its reference outputs, made by `.ci/run` (see the README). Absent on a
/// bare checkout: the test then says so and passes, unless BERTKIT_REQUIRE_MINILM=1 (as in CI).
pub fn minilm() -> Option<(PathBuf, PathBuf)> {
    let model = std::env::var("BERTKIT_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".models/all-MiniLM-L6-v2"));
    let reference =
        std::env::var("BERTKIT_MINILM_REFERENCE").map(PathBuf::from).unwrap_or_else(|_| repo().join(".reference"));
    if model.join("config.json").exists() && reference.join("minilm.safetensors").exists() {
        return Some((model, reference));
    }
    let msg = format!(
        "all-MiniLM-L6-v2 or its reference is missing ({} / {}): run `bash scripts/setup.sh`",
        model.display(),
        reference.display()
    );
    if std::env::var("BERTKIT_REQUIRE_MINILM").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// True when Python with torch and transformers is there; else the caller skips, unless
/// BERTKIT_REQUIRE_PYTHON=1 (as in CI), where its absence is a failure.
pub fn python_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import torch, transformers"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("BERTKIT_REQUIRE_PYTHON").as_deref() == Ok("1") {
            panic!("python3 with torch and transformers is required (BERTKIT_REQUIRE_PYTHON=1)");
        }
        eprintln!("SKIPPED: python3 with torch + transformers not found");
    }
    ok
}

pub struct Reference(BTreeMap<String, Tensor>);

/// Where the model tests run: the CPU, or `BERTKIT_TEST_DEVICE` (`cuda` on a GPU machine:
/// bench/gpu_session.sh runs the test binaries there).
pub fn test_device() -> Device {
    match std::env::var("BERTKIT_TEST_DEVICE") {
        Ok(spec) => bertkit::device::parse_device(&spec).unwrap(),
        Err(_) => Device::Cpu,
    }
}

impl Reference {
    /// The reference tensors, on the test device.
    pub fn load(path: &Path) -> Self {
        let tensors = Tensor::read_safetensors(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Reference(tensors.into_iter().map(|(name, t)| (name, t.to_device(test_device()))).collect())
    }

    pub fn get(&self, name: &str) -> &Tensor {
        self.0.get(name).unwrap_or_else(|| panic!("reference has no {name}"))
    }

    pub fn try_get(&self, name: &str) -> Option<&Tensor> {
        self.0.get(name)
    }

    /// Entries under `prefix.`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, &Tensor)> {
        self.0.iter().filter_map(|(k, v)| k.strip_prefix(&format!("{prefix}.")).map(|n| (n.to_string(), v))).collect()
    }
}

fn max_abs(t: &Tensor) -> f64 {
    if t.numel() == 0 { 0.0 } else { t.abs().max().to_kind(Kind::Double).double_value(&[]) }
}

/// Largest elementwise |got - want|.
pub fn max_abs_diff(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size(), "shapes differ");
    max_abs(&(got.to_kind(Kind::Double) - want.to_kind(Kind::Double)))
}

/// Exact equality (`tol` 0) or an absolute bound that the caller derives.
pub fn assert_close(name: &str, got: &Tensor, want: &Tensor, atol: f64) {
    assert_eq!(got.size(), want.size(), "{name}: shape {:?} vs reference {:?}", got.size(), want.size());
    let err = max_abs_diff(got, want);
    assert!(err <= atol, "{name}: max abs error {err:e} > {atol:e}");
}

/// The one rule for comparing float32 results in these tests.
///
/// Two float32 computations of the same values (bertkit's and transformers', two code paths of
/// bertkit, or the same code on another CPU's kernels) differ by rounding alone, and rounding
/// depends on the order each sum is taken in: the vector width (`ATEN_CPU_CAPABILITY`), the BLAS
/// blocking, the threads. Their largest difference is held to
///
/// ```text
///     C · ε · √k · depth · scale
/// ```
///
/// - ε = `f32::EPSILON` (2⁻²³): one rounding of a float32.
/// - k: the longest sum behind an entry (a feed-forward's inner dimension, the vocabulary a
///   softmax normalises over, the tokens a weight's gradient adds up). The k rounding errors of
///   a sum add like a random walk: √k · ε relative to the terms (Higham, *Accuracy and Stability
///   of Numerical Algorithms*, §2.8).
/// - depth: how many such sums are stacked between the inputs and the value (embeddings, each
///   layer, the head; twice that for a backward pass): each passes on the error it received,
///   relative to its output, and adds its own.
/// - scale: the size of the terms summed. That is the result's size unless the result cancels:
///   the tensor's largest entry for activations, logits and losses, but for gradients the
///   largest gradient of the whole backward pass (a gradient that cancels to nearly nothing, a
///   key bias's, carries the rounding of what cancelled).
/// - C = 6: the two computations round independently (×2) and a random walk strays up to three
///   standard deviations (×3).
///
/// Nothing in it comes from a machine. What a bug does (a wrong mask, a missing scale, a
/// transposed weight) moves results by 1e-2 of their scale or more; the largest bound here,
/// MiniLM's masked-LM gradients (k = its 30 522-word vocabulary, depth 16), is 2e-3 of the
/// largest gradient. Measured on three kernel paths (AVX-512, AVX2, default), the largest
/// difference was under a tenth of its bound.
#[derive(Debug, Clone, Copy)]
pub struct Drift {
    pub k: usize,
    pub depth: usize,
}

impl Drift {
    const C: f64 = 6.0;

    /// A model's forward pass, from its config.json: k the wider of the hidden and feed-forward
    /// sizes, depth the layers plus the embeddings and the head.
    pub fn forward(model: &Path) -> Drift {
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
        let int = |keys: &[&str]| keys.iter().find_map(|k| config[*k].as_u64()).unwrap_or(0) as usize;
        let k = int(&["intermediate_size", "hidden_dim"]).max(int(&["hidden_size", "dim"]));
        Drift { k, depth: int(&["num_hidden_layers", "n_layers"]) + 2 }
    }

    /// Its backward pass: twice as deep, and a weight's gradient also sums over `tokens`.
    pub fn backward(self, tokens: usize) -> Drift {
        Drift { k: self.k.max(tokens), depth: 2 * self.depth }
    }

    /// A value that also sums over `n` terms (a softmax over the vocabulary, a mean over a batch).
    pub fn summing(self, n: usize) -> Drift {
        Drift { k: self.k.max(n), ..self }
    }

    /// The largest difference allowed between two float32 computations whose terms are of size
    /// `scale`.
    pub fn tolerance(self, scale: f64) -> f64 {
        Self::C * f64::from(f32::EPSILON) * (self.k as f64).sqrt() * self.depth as f64 * scale
    }

    /// `got` against `want` at `want`'s own scale (activations, logits, losses); returns the
    /// error as a fraction of what is allowed.
    pub fn assert(self, name: &str, got: &Tensor, want: &Tensor) -> f64 {
        self.assert_at(name, got, want, max_abs(want))
    }

    /// `got` against `want` with terms of size `scale` (a gradient: the backward pass's largest).
    pub fn assert_at(self, name: &str, got: &Tensor, want: &Tensor, scale: f64) -> f64 {
        assert_eq!(got.size(), want.size(), "{name}: shape {:?} vs reference {:?}", got.size(), want.size());
        let (err, tol) = (max_abs_diff(got, want), self.tolerance(scale));
        assert!(
            err <= tol,
            "{name}: max abs error {err:e} > {tol:e} (6 ε √{} x depth {} x scale {scale:e})",
            self.k,
            self.depth
        );
        err / tol
    }
}

/// The largest entry over several tensors (the scale of a backward pass's gradients).
pub fn largest<'a>(tensors: impl IntoIterator<Item = &'a Tensor>) -> f64 {
    tensors.into_iter().map(max_abs).fold(0.0, f64::max)
}

/// Candidate lists: each question about a topic, two relevant clauses and four of other topics.
pub fn write_candidates(path: &Path, questions: usize) {
    let topics = ["rent", "repairs", "notice", "deposit", "pets", "parking", "noise", "keys"];
    let mut csv = "query,passage,label\n".to_string();
    for q in 0..questions {
        let t = topics[q % topics.len()];
        for j in 0..6 {
            let (topic, relevant) = if j < 2 { (t, 1) } else { (topics[(q + j) % topics.len()], 0) };
            csv += &format!("question {q} about {t},the clause on {topic} number {j},{relevant}\n");
        }
    }
    std::fs::write(path, csv).unwrap();
}

/// `bertkit predict`'s score of each (query, passage) row of `pairs` (CSV: query,passage) by the
/// reranker in `model`, in fp32.
pub fn rerank_scores(model: &Path, pairs: &Path) -> Vec<f64> {
    let [model, pairs] = [model, pairs].map(|p| p.display().to_string());
    let columns = ["--text-column", "query", "--text-pair-column", "passage", "--precision", "fp32"];
    let predicted = ok(&[&["predict", "--model", &model, "--input", &pairs][..], &columns[..]].concat());
    let score = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["score"].as_f64().unwrap();
    predicted.lines().map(score).collect()
}
