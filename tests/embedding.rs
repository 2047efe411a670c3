//! Sentence-embedding training (`finetune --task embedding`): its losses and gradients against a
//! few lines of torch in `scripts/make_reference.py embedding` (themselves checked there against
//! sentence-transformers' own losses) for every family; the search measures against
//! sentence-transformers' InformationRetrievalEvaluator; the saved directory loaded by
//! `SentenceTransformer`; and the refusals of bad input.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use bertkit::data::{Sampling, tokenize};
use bertkit::encoder::ForwardOptions;
use bertkit::metrics::retrieval::DEEPEST;
use bertkit::predict::embedding::PairSet;
use bertkit::predict::retrieval::evaluate_search;
use bertkit::pretrained::{self, LoadOptions, ModelDir, Pretrained, SentenceConfig};
use bertkit::task::Bare;
use bertkit::task::embedding::{BatchEmbeddings, Duplicates, EmbeddingLoss, Pooling};
use bertkit::train::embedding::{EmbeddingTraining, part_seed};
use bertkit::train::{Objective, OwnBackward, SentenceEmbedding};
use common::{Drift, FIXTURES, Reference, bertkit, largest, ok, repo, test_device};
use tch::Tensor;

/// make_reference.py's EMBEDDING_ROWS, EMBEDDING_SCORES, SCALE and MATRYOSHKA_DIMS.
const ROWS: [[&str; 3]; 5] = [
    ["How do I end the lease early?", "The tenant may terminate on sixty days' notice.", "Rent is due monthly."],
    ["Which law governs the contract?", "This agreement is governed by the laws of Delaware.", "Notices go by mail."],
    [
        "Who pays for repairs?",
        "The landlord shall maintain the roof and walls.",
        "The tenant may terminate on sixty days' notice.",
    ],
    ["What law applies here?", "This agreement is governed by the laws of Delaware.", "The term is two years."],
    ["How do I end the lease early?", "Either party may end the lease with notice.", "Parking is free."],
];
const SCORES: [f32; 5] = [4.5, 0.5, 3.0, 2.0, 1.0];
const SCALE: f64 = 20.0;

/// libtorch's random generator is one per process: the tests here that draw from it (dropout,
/// heads a checkpoint lacks) take turns, so that a seed set is the seed used.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
const MATRYOSHKA_DIMS: [i64; 3] = [32, 16, 8];

/// The training objective on the reference rows: `dir` without dropout (as the reference's
/// eval mode), the loss and pooling given.
fn objective(dir: &Path, loss: EmbeddingLoss, pooling: Pooling, matryoshka_dims: Vec<i64>) -> SentenceEmbedding {
    objective_with(dir, loss, pooling, matryoshka_dims, 0.0, None)
}

/// The same with dropout `p` and GradCache parts of `mini_batch` rows.
fn objective_with(
    dir: &Path,
    loss: EmbeddingLoss,
    pooling: Pooling,
    matryoshka_dims: Vec<i64>,
    p: f64,
    mini_batch: Option<usize>,
) -> SentenceEmbedding {
    let mut model = ModelDir::open(dir.to_str().unwrap()).unwrap();
    model.set_dropout(p).unwrap();
    let options = LoadOptions { device: test_device(), ..LoadOptions::default() };
    let model: Pretrained<Bare<false>> = pretrained::load(&model, &options).unwrap();
    let columns =
        (0..3).map(|c| tokenize(&model.tokenizer, &ROWS.map(|r| r[c]), None, 512).unwrap().items).collect::<Vec<_>>();
    let columns = if loss.scored() { columns[..2].to_vec() } else { columns };
    SentenceEmbedding {
        model,
        sentence: SentenceConfig { pooling, normalize: false, max_seq_length: Some(512) },
        training: EmbeddingTraining { loss, scale: SCALE, matryoshka_dims, mini_batch },
        train: PairSet { columns, scores: loss.scored().then(|| SCORES.to_vec()) },
        eval: None,
        batch_size: 5,
        sampling: Sampling::Random,
    }
}

#[test]
fn losses_and_gradients_equal_the_reference_for_every_family() {
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for (name, fixture) in FIXTURES {
        let dir = repo().join("tests/fixtures").join(fixture);
        let r = Reference::load(&repo().join(format!("tests/fixtures/reference/{name}_embedding.safetensors")));
        let all = [0, 1, 2, 3, 4];
        let task = objective(&dir, EmbeddingLoss::Mnrl, Pooling::Mean, vec![]);
        for (c, column) in task.train.columns.iter().enumerate() {
            let want = Vec::<Vec<i64>>::try_from(r.get(&format!("column{c}.input_ids"))).unwrap();
            let got: Vec<Vec<i64>> = column.iter().map(|e| e.ids.iter().map(|&i| i as i64).collect()).collect();
            // The reference pads its batch: compare each text's real tokens.
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g[..], w[..g.len()], "{name}: column {c} tokens");
            }
        }
        let step = task.train_loss(&all, 0).unwrap();
        let tokens: usize = task.train.columns.iter().flatten().map(|e| e.len()).sum();
        let loss_drift = Drift::forward(&dir).summing(tokens);
        loss_drift.assert(&format!("{name} mnrl loss"), &step.loss.reshape([1]), r.get("loss.mnrl"));
        step.loss.backward();
        let want = r.with_prefix("grad.mnrl");
        let vars = task.model.vs.variables();
        assert_eq!(want.len(), vars.len(), "{name}: one gradient per parameter");
        let scale = largest(want.iter().map(|(_, w)| *w));
        let drift = Drift::forward(&dir).backward(tokens);
        for (pname, w) in want {
            let g = vars.get(&pname).unwrap_or_else(|| panic!("{name}: no parameter {pname}")).grad();
            drift.assert_at(&format!("{name} mnrl gradient {pname}"), &g, w, scale);
        }

        let cases = [
            ("mnrl_symmetric", EmbeddingLoss::MnrlSymmetric, Pooling::Mean, vec![]),
            ("matryoshka", EmbeddingLoss::Mnrl, Pooling::Mean, MATRYOSHKA_DIMS.to_vec()),
            ("cosent_cls", EmbeddingLoss::Cosent, Pooling::Cls, vec![]),
            ("cosine_mse_last", EmbeddingLoss::CosineMse, Pooling::Last, vec![]),
        ];
        for (key, loss, pooling, dims) in cases {
            let task = objective(&dir, loss, pooling, dims);
            let got = tch::no_grad(|| task.train_loss(&all, 0).unwrap().loss);
            loss_drift.assert(&format!("{name} {key} loss"), &got.reshape([1]), r.get(&format!("loss.{key}")));
        }
    }
}

#[test]
fn search_measures_equal_sentence_transformers_evaluator() {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/reference/retrieval.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let scores: Vec<Vec<f32>> = serde_json::from_value(reference["scores"].clone()).unwrap();
    let (queries, passages) = (scores.len(), scores[0].len());
    // Scores as cosines: query rows against the identity, so search sees exactly these numbers.
    let q = Tensor::from_slice(&scores.concat()).view([queries as i64, passages as i64]);
    let corpus = Tensor::eye(passages as i64, (tch::Kind::Float, tch::Device::Cpu));
    let relevant: Vec<BTreeSet<usize>> = (0..queries)
        .map(|i| {
            let ids = &reference["relevant"][format!("q{i:02}")];
            ids.as_array().map_or(BTreeSet::new(), |a| a.iter().map(|d| d.as_u64().unwrap() as usize).collect())
        })
        .collect();
    assert!(passages > DEEPEST, "the reference ranks deeper than the search keeps");
    let got = evaluate_search(&q, &corpus, &relevant).metrics;
    for (metric, value) in got.iter().filter(|(k, _)| k.as_str() != "queries") {
        let want = reference["metrics"][metric].as_f64().unwrap_or_else(|| panic!("no {metric} in the reference"));
        assert!((value - want).abs() < 1e-12, "{metric}: {value} vs sentence-transformers {want}");
    }
    assert_eq!(got["queries"], 30.0, "queries without a relevant passage are not counted");
}

/// Rows of related texts: each anchor a phrase, its positive the phrase reworded, a hard
/// negative another row's topic.
fn write_pairs(path: &Path, n: usize) {
    let topics = ["rent", "repairs", "notice", "deposit", "pets", "parking", "noise", "keys"];
    let mut csv = "anchor,positive,negative,score\n".to_string();
    for i in 0..n {
        let (t, other) = (topics[i % topics.len()], topics[(i + 3) % topics.len()]);
        csv += &format!("question {i} about {t},the clause on {t} number {i},a clause on {other},{}\n", i % 5);
    }
    std::fs::write(path, csv).unwrap();
}

fn finetune_embedding(train: &Path, output: &Path, flags: &[&str]) -> Vec<String> {
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
        "embedding",
        "--text-column",
        "anchor",
        "--text-pair-column",
        "positive",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--precision",
        "fp32",
    ]
    .map(String::from)
    .to_vec();
    args.extend(flags.iter().map(|f| f.to_string()));
    args
}

#[test]
fn a_trained_embedding_model_loads_in_sentence_transformers_with_the_same_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let (train, out) = (dir.path().join("pairs.csv"), dir.path().join("model"));
    write_pairs(&train, 40);
    let flags = [
        "--negative-columns", "negative", "--eval-split", "0.25", "--pooling", "cls", "--normalize", "true",
        "--mini-batch-size", "3",
    ];
    ok(&finetune_embedding(&train, &out, &flags));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_results.json")).unwrap()).unwrap();
    assert!(results.to_string().contains("ndcg_at_10"), "evaluated as search: {results}");
    let saved = SentenceConfig::read(&out).unwrap().unwrap();
    assert_eq!((saved.pooling, saved.normalize), (Pooling::Cls, true));

    let texts = ["the clause on rent", "a question about pets and keys"];
    let embedded = ok(&["embed", out.to_str().unwrap(), "--text", texts[0], "--text", texts[1]]);
    let report: serde_json::Value = serde_json::from_str(&embedded).unwrap();
    assert_eq!((report["pooling"].as_str(), report["normalized"].as_bool()), (Some("cls"), Some(true)));
    if !common::python_available() {
        return;
    }
    let ours: Vec<Vec<f64>> = report["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_value(e["vector"].clone()).unwrap())
        .collect();
    let script = format!(
        "import json, sys\nfrom sentence_transformers import SentenceTransformer\n\
         m = SentenceTransformer(sys.argv[1], device='cpu')\n\
         print(json.dumps(m.encode({texts:?}, convert_to_numpy=True).tolist()))"
    );
    let py = std::process::Command::new("python3").args(["-c", &script, out.to_str().unwrap()]).output().unwrap();
    assert!(py.status.success(), "sentence-transformers failed: {}", String::from_utf8_lossy(&py.stderr));
    let stdout = String::from_utf8_lossy(&py.stdout);
    let theirs: Vec<Vec<f64>> = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for (a, b) in ours.iter().zip(&theirs) {
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        // Unit vectors from the same float32 arithmetic, 2 layers deep (tiny-bert).
        assert!(worst < 1e-5, "SentenceTransformer(dir).encode differs from bertkit embed by {worst}");
    }
}

#[test]
fn scored_pairs_train_with_cosent_and_are_evaluated_by_spearman() {
    let dir = tempfile::tempdir().unwrap();
    let (train, out) = (dir.path().join("pairs.csv"), dir.path().join("model"));
    write_pairs(&train, 40);
    ok(&finetune_embedding(&train, &out, &["--loss", "cosent", "--label-column", "score", "--eval-split", "0.25"]));
    let results = std::fs::read_to_string(out.join("eval_results.json")).unwrap();
    assert!(results.contains("spearman") && !results.contains("ndcg"), "{results}");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("library_name: sentence-transformers") && card.contains("sentence-similarity"));
}

#[test]
fn bad_embedding_input_is_refused_in_one_line_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (train, out) = (dir.path().join("pairs.csv"), dir.path().join("model"));
    write_pairs(&train, 12);
    let bad_score = dir.path().join("bad.csv");
    std::fs::write(&bad_score, "anchor,positive,score\na,b,1\nc,d,high\n").unwrap();
    let cases: [(&Path, Vec<&str>, &str); 5] = [
        (&train, vec!["--negative-columns", "nope"], "\"nope\""),
        (&train, vec!["--pooling", "pooler"], "--pooling pooler"),
        (&train, vec!["--matryoshka-dims", "64"], "--matryoshka-dims 64: larger than the model's 32"),
        (
            &train,
            vec!["--loss", "cosent", "--label-column", "score", "--negative-columns", "negative"],
            "--negative-columns",
        ),
        (&bad_score, vec!["--loss", "cosine-mse", "--label-column", "score"], "bad.csv:3: score \"high\""),
    ];
    for (data, flags, expected) in cases {
        let out_dir = out.to_str().unwrap();
        let result = bertkit(&finetune_embedding(data, Path::new(out_dir), &flags));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success() && stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(!out.exists(), "{flags:?}: nothing is written before the data is checked");
    }
    let mut without_pair = finetune_embedding(&train, &out, &[]);
    let at = without_pair.iter().position(|a| a == "--text-pair-column").unwrap();
    without_pair.drain(at..at + 2);
    let stderr = String::from_utf8_lossy(&bertkit(&without_pair).stderr).into_owned();
    assert!(stderr.contains("--task embedding reads two texts a row"), "{stderr}");
}

#[test]
fn evaluate_reads_a_beir_benchmark_and_pairs_alike() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // The same judgements twice: as (query, passage) rows, and in BEIR's three files.
    let rows = [("rent due", "pay rent monthly"), ("governing law", "laws of Delaware"), ("repairs", "fix the roof")];
    let mut csv = "q,p\n".to_string();
    let (mut queries, mut corpus, mut qrels) =
        (String::new(), String::new(), "query-id\tcorpus-id\tscore\n".to_string());
    for (i, (q, d)) in rows.iter().enumerate() {
        csv += &format!("{q},{d}\n");
        queries += &format!("{{\"_id\": \"q{i}\", \"text\": \"{q}\"}}\n");
        corpus += &format!("{{\"_id\": \"d{i}\", \"text\": \"{d}\"}}\n");
        qrels += &format!("q{i}\td{i}\t1\n");
    }
    for (name, text) in [("pairs.csv", csv), ("queries.jsonl", queries), ("corpus.jsonl", corpus), ("qrels.tsv", qrels)]
    {
        std::fs::write(p(name), text).unwrap();
    }
    let model = p("model");
    write_pairs(&p("train.csv"), 16);
    ok(&finetune_embedding(&p("train.csv"), &model, &[]));
    let model = model.to_str().unwrap();
    let (beir, pairs) = (p("beir.json"), p("pairs.json"));
    let (q, c, r) = (p("queries.jsonl"), p("corpus.jsonl"), p("qrels.tsv"));
    let benchmark = ["--queries", q.to_str().unwrap(), "--corpus", c.to_str().unwrap(), "--qrels", r.to_str().unwrap()];
    ok(&[&["evaluate", "--model", model, "--json", beir.to_str().unwrap()][..], &benchmark].concat());
    let columns = ["--text-column", "q", "--text-pair-column", "p"];
    let data = p("pairs.csv");
    ok(&[
        &["evaluate", "--model", model, "--data", data.to_str().unwrap(), "--json", pairs.to_str().unwrap()][..],
        &columns,
    ]
    .concat());
    // And with the corpus's vectors written to a file and searched memory-mapped.
    let (mapped, vectors) = (p("mapped.json"), p("corpus.npy"));
    let to_file = ["--corpus-vectors", vectors.to_str().unwrap(), "--json", mapped.to_str().unwrap()];
    ok(&[&["evaluate", "--model", model][..], &benchmark, &to_file].concat());
    let read = |f: &Path| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(f).unwrap()).unwrap();
    let (beir, pairs, mapped) = (read(&beir), read(&pairs), read(&mapped));
    assert_eq!(beir["task"], "embedding");
    assert_eq!(beir["metrics"], pairs["metrics"], "the same search either way");
    assert_eq!(beir["metrics"], mapped["metrics"], "the same search from the mapped file");
    assert_eq!(beir["metrics"]["queries"], 3.0);
    assert_eq!(read(&p("corpus.ids.json")), serde_json::json!(["d0", "d1", "d2"]));
    let bad = p("corpus.csv");
    let refused = bertkit(
        &[&["evaluate", "--model", model][..], &benchmark, &["--corpus-vectors", bad.to_str().unwrap()]].concat(),
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("written as .npy") && !bad.exists());
}

#[test]
fn adapt_studies_an_embedding_model_by_its_search_scores() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_pairs(&p("train.csv"), 24);
    let topics = ["rent", "repairs", "notice", "deposit"];
    let (mut queries, mut corpus, mut qrels) =
        (String::new(), String::new(), "query-id\tcorpus-id\tscore\n".to_string());
    for (i, t) in topics.iter().enumerate() {
        queries += &format!("{{\"_id\": \"q{i}\", \"text\": \"what about {t}\"}}\n");
        for k in 0..3 {
            corpus += &format!("{{\"_id\": \"d{i}-{k}\", \"text\": \"the clause on {t} part {k}\"}}\n");
            qrels += &format!("q{i}\td{i}-{k}\t1\n");
        }
    }
    for (name, text) in [("queries.jsonl", queries), ("corpus.jsonl", corpus), ("qrels.tsv", qrels)] {
        std::fs::write(p(name), text).unwrap();
    }
    let [train, q, c, r, study] = ["train.csv", "queries.jsonl", "corpus.jsonl", "qrels.tsv", "study"].map(p);
    let tiny = repo().join("tests/fixtures/tiny-bert");
    let settings = "--tapt --task embedding --text-column anchor --text-pair-column positive --negative-columns \
                    negative --pretrain-steps 2 --pretrain-max-len 16 --finetune-epochs 1 --finetune-max-len 16 \
                    --batch-size 8 --device cpu --threads 1 --precision fp32";
    let files = [("--model", &tiny), ("--train", &train), ("--test-queries", &q), ("--test-corpus", &c)];
    let files = files.into_iter().chain([("--test-qrels", &r), ("--output", &study)]);
    let study_flags: Vec<&str> = std::iter::once("adapt")
        .chain(settings.split_whitespace())
        .chain(files.flat_map(|(flag, path)| [flag, path.to_str().unwrap()]))
        .collect();
    let refused = bertkit(&[&study_flags[..], &["--probe-every", "1"]].concat());
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--probe finetune"));
    ok(&study_flags);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(study.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["checkpoint_metric"], "ndcg_at_10");
    assert_eq!(report["reported_on"], "test");
    for arm in ["original", "tapt"] {
        let runs = &report["downstream"][arm]["runs"][0]["metrics"];
        assert_eq!(runs["queries"], 4.0, "{arm}: scored on the benchmark's four queries");
        assert!(runs["ndcg_at_10"].as_f64().is_some_and(|v| v > 0.0), "{arm}: {runs}");
    }
    // TAPT reads every text column once: the passages are the task's domain text.
    let text = std::fs::read_to_string(study.join("task-text.txt")).unwrap();
    let paragraphs: Vec<&str> = text.split("\n\n").collect();
    assert!(paragraphs.contains(&"the clause on rent number 0") && paragraphs.contains(&"a clause on deposit"));
    assert_eq!(paragraphs.len(), paragraphs.iter().collect::<BTreeSet<_>>().len(), "each text once");
}

#[test]
fn evaluate_on_scored_pairs_equals_the_evaluation_during_training() {
    let dir = tempfile::tempdir().unwrap();
    let (train, eval, out) = (dir.path().join("pairs.csv"), dir.path().join("eval.csv"), dir.path().join("model"));
    write_pairs(&train, 24);
    write_pairs(&eval, 10);
    let flags = ["--loss", "cosine-mse", "--label-column", "score", "--eval", eval.to_str().unwrap()];
    ok(&finetune_embedding(&train, &out, &flags));
    let during: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_results.json")).unwrap()).unwrap();
    let json = dir.path().join("after.json");
    ok(&[
        "evaluate",
        "--model",
        out.to_str().unwrap(),
        "--data",
        eval.to_str().unwrap(),
        "--text-column",
        "anchor",
        "--text-pair-column",
        "positive",
        "--score-column",
        "score",
        "--json",
        json.to_str().unwrap(),
    ]);
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for metric in ["spearman", "pearson"] {
        let (a, b) = (after["metrics"][metric].as_f64().unwrap(), during["metrics"][metric].as_f64().unwrap());
        // The same model and pairs, batched differently (rounding at 1e-7).
        assert!((a - b).abs() < 1e-6, "{metric}: evaluate {a} vs during training {b}");
    }
}

#[test]
fn embed_writes_a_file_of_vectors_as_npy_parquet_and_jsonl_with_ids() {
    use arrow_array::Array;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let texts = ["the clause on rent", "a question about pets", "the governing law is Delaware"];
    let mut csv = "doc,body\n".to_string();
    for (i, t) in texts.iter().enumerate() {
        csv += &format!("id-{i},{t}\n");
    }
    std::fs::write(p("texts.csv"), csv).unwrap();
    let model = repo().join("tests/fixtures/tiny-bert");
    let model = model.to_str().unwrap();
    let shown = ok(&[&["embed", model, "--pooling", "mean"][..], &texts.map(|t| ["--text", t]).concat()].concat());
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let want: Vec<Vec<f32>> = shown["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_value(e["vector"].clone()).unwrap())
        .collect();
    let input = p("texts.csv");
    for out in ["v.jsonl", "v.npy", "v.parquet"] {
        let flags = ["--input", input.to_str().unwrap(), "--text-column", "body", "--id-column", "doc"];
        ok(&[
            &["embed", model, "--pooling", "mean", "--batch-size", "2", "--output", p(out).to_str().unwrap()][..],
            &flags,
        ]
        .concat());
    }
    let close = |got: &[f32], want: &[f32]| got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6);
    // JSONL: one object a row, in the input's order.
    let lines = std::fs::read_to_string(p("v.jsonl")).unwrap();
    for (i, line) in lines.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["id"], format!("id-{i}"));
        assert!(close(&serde_json::from_value::<Vec<f32>>(row["vector"].clone()).unwrap(), &want[i]), "jsonl row {i}");
    }
    // Parquet: id and a fixed-size list of float32.
    let file = std::fs::File::open(p("v.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batch = reader.map(Result::unwrap).next().unwrap();
    let ids = batch.column_by_name("id").unwrap().as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
    let vectors =
        batch.column_by_name("embedding").unwrap().as_any().downcast_ref::<arrow_array::FixedSizeListArray>().unwrap();
    assert_eq!((ids.value(2), vectors.value_length()), ("id-2", 32));
    let row = vectors.value(1);
    let row = row.as_any().downcast_ref::<arrow_array::Float32Array>().unwrap();
    assert!(close(row.values(), &want[1]), "parquet row 1");
    // .npy as NumPy reads it, the ids beside it.
    let ids: Vec<String> = serde_json::from_str(&std::fs::read_to_string(p("v.ids.json")).unwrap()).unwrap();
    assert_eq!(ids, ["id-0", "id-1", "id-2"]);
    if common::python_available() {
        let script = "import numpy, sys, json; a = numpy.load(sys.argv[1]); print(json.dumps([list(a.shape), a.dtype.str, a[2].tolist()]))";
        let py =
            std::process::Command::new("python3").args(["-c", script, p("v.npy").to_str().unwrap()]).output().unwrap();
        let (shape, dtype, row): (Vec<usize>, String, Vec<f32>) = serde_json::from_slice(&py.stdout).unwrap();
        assert_eq!((shape, dtype.as_str()), (vec![3, 32], "<f4"));
        assert!(close(&row, &want[2]), "npy row 2");
    }
    let err = bertkit(&[
        "embed",
        model,
        "--input",
        p("texts.csv").to_str().unwrap(),
        "--output",
        p("v.csv").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("write .npy, .parquet or .jsonl"));
}

/// Every parameter's gradient, by name (zero where none flowed).
fn gradients(task: &SentenceEmbedding) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = task.model.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter().map(|(n, v)| (n, if v.grad().defined() { v.grad().copy() } else { v.zeros_like() })).collect()
}

#[test]
fn the_cached_loss_gives_the_uncached_gradients_for_every_family() {
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for (name, fixture) in FIXTURES {
        let dir = repo().join("tests/fixtures").join(fixture);
        for (loss, dims) in [(EmbeddingLoss::Mnrl, vec![16, 8]), (EmbeddingLoss::Cosent, vec![])] {
            let all = [0, 1, 2, 3, 4];
            let plain = objective(&dir, loss, Pooling::Mean, dims.clone());
            let want_loss = plain.train_loss(&all, 7).unwrap().loss;
            want_loss.backward();
            // Parts of 2, 2 and 1 rows: every column recomputed three times.
            let cached = objective_with(&dir, loss, Pooling::Mean, dims, 0.0, Some(2));
            let got = cached.train_and_backward(&all, 7, &OwnBackward::new(1.0)).expect("cached").unwrap();
            let tokens: usize = plain.train.columns.iter().flatten().map(|e| e.len()).sum();
            let drift = Drift::forward(&dir).backward(tokens);
            drift.assert(&format!("{name} {loss:?} cached loss"), &got.loss.reshape([1]), &want_loss.reshape([1]));
            let (want, got) = (gradients(&plain), gradients(&cached));
            let scale = largest(want.iter().map(|(_, g)| g));
            for ((n, w), (_, g)) in want.iter().zip(&got) {
                drift.assert_at(&format!("{name} {loss:?} cached gradient {n}"), g, w, scale);
            }
        }
    }
}

#[test]
fn the_cached_loss_recomputes_with_the_dropout_it_embedded_with() {
    let _turn = RNG.lock().unwrap_or_else(|e| e.into_inner());
    // One part per column: the gradient must be that of the loss of these very dropout masks,
    // computed here in one pass from the same seeds.
    let dir = repo().join("tests/fixtures/tiny-bert");
    let all = [0, 1, 2, 3, 4];
    let cached = objective_with(&dir, EmbeddingLoss::Mnrl, Pooling::Mean, vec![], 0.3, Some(5));
    cached.train_and_backward(&all, 11, &OwnBackward::new(1.0)).expect("cached").unwrap();
    let direct = objective_with(&dir, EmbeddingLoss::Mnrl, Pooling::Mean, vec![], 0.3, None);
    let m = &direct.model;
    let mut columns = Vec::new();
    for (c, column) in direct.train.columns.iter().enumerate() {
        tch::manual_seed(part_seed(11, c, 0));
        let inputs = m.collator().collate(&column.iter().collect::<Vec<_>>());
        let out = m.model.encoder.forward(&inputs, ForwardOptions::train());
        columns.push(Pooling::Mean.pool(&out, &inputs).unwrap());
    }
    let ids: Vec<Vec<&[u32]>> =
        direct.train.columns.iter().map(|c| c.iter().map(|e| e.ids.as_slice()).collect()).collect();
    let loss = EmbeddingLoss::Mnrl.loss(&BatchEmbeddings { columns }, None, &Duplicates::of(&ids), SCALE);
    loss.backward();
    let (want, got) = (gradients(&direct), gradients(&cached));
    let scale = largest(want.iter().map(|(_, g)| g));
    let drift = Drift::forward(&dir).backward(200);
    for ((n, w), (_, g)) in want.iter().zip(&got) {
        drift.assert_at(&format!("dropout-masked gradient {n}"), g, w, scale);
    }
}
