//! Further pretraining: chunking modes, the token cache, masked-only loss, and the command end
//! to end on the tiny model (its output fine-tunes directly).

mod common;

use common::bertkit;
use std::path::Path;

use bertkit::data::corpus::{Chunking, CorpusSpec, TokenCache};
use bertkit::encoder::ForwardOptions;
use bertkit::task::{IGNORE_INDEX, MaskedLm, MaskedTargets};
use bertkit::tokenizer::Tokenizer;
use tch::{Device, Kind, Reduction, Tensor};

fn tok() -> Tokenizer {
    Tokenizer::from_dir(&common::tiny_model()).unwrap()
}

fn spec(paths: &[&Path], chunking: Chunking, max_len: usize) -> CorpusSpec {
    CorpusSpec {
        format: None,
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        chunking,
        max_len,
        text_field: "text".into(),
        dedupe: false,
    }
}

fn blocks(cache: &TokenCache) -> Vec<Vec<u32>> {
    (0..cache.len()).map(|i| cache.block(i).to_vec()).collect()
}

#[test]
fn chunking_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("corpus");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    // Single characters tokenise to one id each in the tiny vocabulary.
    std::fs::write(dir.join("a.txt"), "a b c d e\nf g\n").unwrap();
    std::fs::write(dir.join("sub/b.txt"), "h i j\n").unwrap();
    std::fs::write(dir.join("ignored.bin"), "x").unwrap();
    let t = tok();
    let id = |s: &str| t.token_to_id(s).unwrap();
    let ids = |s: &str| s.split(' ').map(id).collect::<Vec<u32>>();
    let sep = t.sep_id;

    // group: documents joined by [SEP], cut into blocks of max_len - 2 = 4; the last partial
    // block is kept when at least a quarter full.
    let c =
        TokenCache::open_or_build(&tmp.path().join("g"), &spec(&[&dir], Chunking::Group, 6), &t, &common::tiny_model())
            .unwrap();
    let mut want: Vec<u32> = ids("a b c d e f g");
    want.push(sep);
    want.extend(ids("h i j"));
    let got = blocks(&c);
    assert_eq!(got.concat(), want);
    assert!(got[..got.len() - 1].iter().all(|b| b.len() == 4));

    // line: one block per non-empty line, truncated.
    let c =
        TokenCache::open_or_build(&tmp.path().join("l"), &spec(&[&dir], Chunking::Line, 5), &t, &common::tiny_model())
            .unwrap();
    assert_eq!(blocks(&c), vec![ids("a b c"), ids("f g"), ids("h i j")]);
    assert_eq!(c.meta.truncated, 1);

    // document: full blocks that never cross a file.
    let c = TokenCache::open_or_build(
        &tmp.path().join("d"),
        &spec(&[&dir], Chunking::Document, 6),
        &t,
        &common::tiny_model(),
    )
    .unwrap();
    assert_eq!(blocks(&c), vec![ids("a b c d"), ids("e f g"), ids("h i j")]);
}

#[test]
fn a_corpus_shorter_than_a_block_says_how_many_tokens_and_what_to_change() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("task-text.txt");
    let t = tok();
    let build = |cache: &str, max_len: usize| {
        TokenCache::open_or_build(
            &tmp.path().join(cache),
            &spec(&[&file], Chunking::Group, max_len),
            &t,
            &common::tiny_model(),
        )
    };
    std::fs::write(&file, "a b c d e\n").unwrap(); // 5 tokens, under a quarter of a 126-token block
    let msg = format!("{:#}", build("c", 128).err().expect("no block to train on"));
    assert!(msg.contains("holds 5 tokens") && msg.contains("--max-len 7"), "{msg}");
    // What the message advises works.
    assert_eq!(build("d", 7).unwrap().len(), 1);

    std::fs::write(&file, "\n\n").unwrap();
    let msg = format!("{:#}", build("e", 128).err().expect("no text"));
    assert!(msg.contains("holds no text"), "{msg}");
}

#[test]
fn jsonl_corpus_gzip_and_dedupe() {
    let tmp = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"{\"body\": \"a b\\n\\nsame para\"}\n{\"body\": \"same para\\n\\nc d\"}\n")
        .unwrap();
    let file = tmp.path().join("docs.jsonl.gz");
    std::fs::write(&file, gz.finish().unwrap()).unwrap();
    let mut s = spec(&[&file], Chunking::Document, 32);
    s.text_field = "body".into();
    s.dedupe = true;
    let c = TokenCache::open_or_build(&tmp.path().join("c"), &s, &tok(), &common::tiny_model()).unwrap();
    assert_eq!(c.meta.documents, 2);
    assert_eq!(c.meta.duplicates_dropped, 1);
    let t = tok();
    let text = t.decode(c.block(1)).unwrap();
    assert_eq!(text, "c d", "the repeated paragraph is gone from the second document");
}

#[test]
fn token_cache_is_reused_and_invalidated() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("c.txt");
    std::fs::write(&file, "the lessee shall repair the premises\n").unwrap();
    let cache_dir = tmp.path().join("cache");
    let s = spec(&[&file], Chunking::Group, 16);
    let first = TokenCache::open_or_build(&cache_dir, &s, &tok(), &common::tiny_model()).unwrap();
    let stamp = std::fs::metadata(cache_dir.join("tokens.bin")).unwrap().modified().unwrap();
    drop(first);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = TokenCache::open_or_build(&cache_dir, &s, &tok(), &common::tiny_model()).unwrap();
    assert_eq!(
        std::fs::metadata(cache_dir.join("tokens.bin")).unwrap().modified().unwrap(),
        stamp,
        "reused, not rebuilt"
    );
    let n = again.meta.tokens;
    drop(again);
    std::fs::write(&file, "the lessee shall repair the premises and pay the rent\n").unwrap();
    let changed = TokenCache::open_or_build(&cache_dir, &s, &tok(), &common::tiny_model()).unwrap();
    assert!(changed.meta.tokens > n, "a changed corpus is tokenised again");
    drop(changed);
    let longer =
        TokenCache::open_or_build(&cache_dir, &spec(&[&file], Chunking::Line, 16), &tok(), &common::tiny_model())
            .unwrap();
    assert_eq!(longer.len(), 1, "other chunking settings rebuild");
}

#[test]
fn masked_only_loss_equals_full_projection_loss() {
    let loaded = common::load::<MaskedLm>(&common::tiny_model(), Device::Cpu).unwrap();
    let mlm = &loaded.model;
    let t = tok();
    let enc = t.encode_batch(&["the lessee shall repair the premises", "a good film"], None, 64).unwrap();
    let inputs = bertkit::data::Collator { pad_id: t.pad_id }.collate_encodings(&enc);
    let labels = inputs.input_ids.copy();
    // Keep targets at a few real positions only.
    let keep = Tensor::from_slice(&[
        0i64, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0,
    ]);
    let n = labels.numel() as i64;
    let keep = keep.narrow(0, 0, n).view(labels.size().as_slice()).to_kind(Kind::Bool);
    let labels = labels.where_self(&keep, &Tensor::from(IGNORE_INDEX));
    let masked = mlm.forward_masked(&inputs, &MaskedTargets::from_labels(&labels), ForwardOptions::eval());
    let full = mlm.forward(&inputs, ForwardOptions::eval());
    let reference = full.flatten(0, 1).cross_entropy_loss::<Tensor>(
        &labels.flatten(0, 1),
        None,
        Reduction::Mean,
        IGNORE_INDEX,
        0.0,
    );
    let diff = (masked.loss - reference).abs().double_value(&[]);
    assert!(diff < 1e-6, "masked-only loss differs by {diff}");
    assert_eq!(masked.logits.size()[0], labels.ne(IGNORE_INDEX).sum(Kind::Int64).int64_value(&[]));
}

#[test]
fn pretrain_then_finetune_and_fill_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("legal.txt");
    let sentence = "the lessee shall repair the premises and the licensee may not assign the rights granted herein without prior written consent";
    std::fs::write(&corpus, (0..200).map(|i| format!("section {i}. {sentence}.\n\n")).collect::<String>()).unwrap();
    let out = tmp.path().join("adapted");
    let model = common::tiny_model();
    let res = bertkit(&[
        "pretrain",
        "--model",
        model.to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--max-len",
        "64",
        "--max-steps",
        "60",
        "--batch-size",
        "8",
        "--lr",
        "5e-3",
        "--eval-split",
        "0.1",
        "--eval-every",
        "30",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--whole-word-masking",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_before.json")).unwrap()).unwrap();
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_results.json")).unwrap()).unwrap();
    let (b, a) = (before["metrics"]["eval_loss"].as_f64().unwrap(), after["metrics"]["eval_loss"].as_f64().unwrap());
    assert!(a < 0.7 * b, "held-out masked-token loss {b} -> {a}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertForMaskedLM");
    assert!(out.with_extension("token-cache").join("train/meta.json").exists());
    // What the MLM does not train (the pooler, the classifier) is carried through unchanged,
    // so the adapted model differs from the original only by what pretraining changed.
    let tensors = |dir: &Path| -> std::collections::BTreeMap<String, tch::Tensor> {
        tch::Tensor::read_safetensors(dir.join("model.safetensors")).unwrap().into_iter().collect()
    };
    let (original, adapted) = (tensors(&model), tensors(&out));
    for name in ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"] {
        assert!(original[name].equal(&adapted[name]), "{name} changed or dropped");
    }
    assert!(
        !original["bert.embeddings.word_embeddings.weight"].equal(&adapted["bert.embeddings.word_embeddings.weight"])
    );

    let fill = bertkit(&[
        "fill-mask",
        "--model",
        out.to_str().unwrap(),
        "--text",
        "the lessee shall [MASK] the premises",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(fill.status.success(), "{}", String::from_utf8_lossy(&fill.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&fill.stdout).unwrap();
    let top = &rows[0]["masks"][0];
    assert_eq!(top.as_array().unwrap().len(), 5);
    let p0 = top[0]["probability"].as_f64().unwrap();
    assert!(p0 >= top[4]["probability"].as_f64().unwrap() && p0 <= 1.0);

    // The adapted model is a valid starting point for fine-tuning (with a new head for other
    // labels, as the original would need: it carries the original's classifier).
    let train = tmp.path().join("t.csv");
    std::fs::write(&train, "text,label\nthe lessee shall repair,a\nthe licensee may not assign,b\nrepair the premises,a\nassign the rights,b\n").unwrap();
    let ft = bertkit(&[
        "finetune",
        "--new-head",
        "--model",
        out.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--output",
        tmp.path().join("ft").to_str().unwrap(),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(ft.status.success(), "{}", String::from_utf8_lossy(&ft.stderr));
}

#[test]
fn adapt_runs_the_whole_study() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("legal.txt");
    let text = "the lessee shall repair the premises and the licensee may not assign the rights granted herein";
    std::fs::write(&corpus, (0..80).map(|i| format!("section {i}. {text}.\n\n")).collect::<String>()).unwrap();
    let train = tmp.path().join("task.csv");
    let rows: String = (0..40)
        .map(|i| if i % 2 == 0 { "the lessee shall repair,repair\n" } else { "the licensee may not assign,assign\n" })
        .collect();
    std::fs::write(&train, format!("text,label\n{rows}")).unwrap();
    let test = tmp.path().join("test.csv");
    std::fs::write(&test, "text,label\nthe lessee shall repair,repair\nthe licensee may not assign,assign\n").unwrap();
    let out = tmp.path().join("study");
    let res = bertkit(&[
        "adapt",
        "--model",
        common::tiny_model().to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--seeds",
        "2",
        "--pretrain-steps",
        "8",
        "--pretrain-max-len",
        "32",
        "--finetune-epochs",
        "1",
        "--finetune-max-len",
        "16",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in ["before", "after"] {
        assert!(report["pretraining"]["dapt"][key]["perplexity"].as_f64().unwrap() > 1.0, "{key}");
    }
    // Checkpoints chosen by macro-F1 on the held-out split, scores from --test, two seeds.
    assert_eq!(report["checkpoint_metric"], "macro_f1");
    assert_eq!(report["reported_on"], "test");
    assert_eq!(report["seeds"], serde_json::json!([42, 43]));
    for key in ["original", "dapt"] {
        let arm = &report["downstream"][key];
        let acc = arm["mean"]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc) && arm["sd"]["accuracy"].as_f64().is_some(), "{key}: {arm}");
        assert_eq!(arm["runs"].as_array().unwrap().len(), 2, "{key}");
        let state = out.join(format!("finetuned/{key}-seed43/trainer_state.json"));
        let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
        assert_eq!(state["metric_for_best"], "macro_f1");
        assert!(out.join(format!("finetuned/{key}-seed43/test_results.json")).exists());
    }
    assert_eq!(report["comparison"]["paired_t"]["dapt"]["pairs"], 2, "{report}");
    let commands: Vec<&str> = report["commands"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let count = |verb: &str| commands.iter().filter(|c| c.starts_with(&format!("bertkit {verb} "))).count();
    assert_eq!((count("pretrain"), count("finetune"), count("evaluate")), (1, 4, 4), "{commands:?}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for part in ["perplexity", "| macro_f1 |", "| accuracy |", "the test set", "$ bertkit evaluate"] {
        assert!(md.contains(part), "{part}: {md}");
    }
    // (One epoch of the tiny model may leave both at the same score on both seeds.)
    assert!(
        md.contains("paired t-test over 2 seeds") || md.contains("the same macro_f1 as the original on every seed"),
        "{md}"
    );
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("$ bertkit pretrain") && stderr.contains("$ bertkit finetune"), "the chain is printed");
}

/// `evaluate --corpus` measures what further pretraining's held-out evaluation measures: the
/// same masks, the same blocks, the same numbers.
#[test]
fn evaluate_on_a_corpus_equals_the_held_out_evaluation() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, held_out, out) = (tmp.path().join("train.txt"), tmp.path().join("general.txt"), tmp.path().join("pt"));
    std::fs::write(&train, "the lessee shall repair the premises.\n\n".repeat(40)).unwrap();
    std::fs::write(&held_out, "a film about a dog who learns to sing, and the town that hears it.\n\n".repeat(10))
        .unwrap();
    let model = common::tiny_model();
    let (m, t, h, o) =
        (model.to_str().unwrap(), train.to_str().unwrap(), held_out.to_str().unwrap(), out.to_str().unwrap());
    let cpu = ["--device", "cpu", "--threads", "1", "--precision", "fp32"];
    let pretrain = [
        "pretrain", "--model", m, "--corpus", t, "--eval-corpus", h, "--output", o, "--max-len", "16", "--max-steps",
        "3",
    ];
    let res = bertkit(&[&pretrain[..], &["--batch-size", "8"], &cpu].concat());
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let json = tmp.path().join("general.json");
    let evaluate = ["evaluate", "--model", o, "--corpus", h, "--max-len", "16", "--json", json.to_str().unwrap()];
    let res = bertkit(&[&evaluate[..], &["--batch-size", "16"], &cpu].concat());
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let read = |p: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (held, general) = (read(&out.join("eval_results.json")), read(&json));
    assert_eq!(general["task"], "masked-lm");
    for key in ["eval_loss", "accuracy", "perplexity"] {
        let (a, b) = (held["metrics"][key].as_f64().unwrap(), general["metrics"][key].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{key}: pretrain {a}, evaluate {b}");
    }
}

/// `domain-fit` measures, for each vocabulary kind, how finely the tokenizer cuts the domain's
/// words against the reference's and how much their top words overlap.
#[test]
fn domain_fit_finds_the_words_the_tokenizer_cuts_worst() {
    let tmp = tempfile::tempdir().unwrap();
    let (domain, reference) = (tmp.path().join("contracts"), tmp.path().join("reviews.txt"));
    std::fs::create_dir(&domain).unwrap();
    let clause = "the indemnification obligations of the licensor survive termination of the movie";
    std::fs::write(domain.join("a.txt"), format!("{clause}.\n\n").repeat(30)).unwrap();
    std::fs::write(&reference, "the movie was good and the plot was bad.\n\n".repeat(30)).unwrap();
    for family in ["tiny-bert", "tiny-roberta", "tiny-xlm-roberta"] {
        let json = tmp.path().join(format!("{family}.json"));
        let model = common::repo().join("tests/fixtures").join(family);
        let args = ["domain-fit", "--model", model.to_str().unwrap(), "--corpus", domain.to_str().unwrap()];
        let more = ["--reference", reference.to_str().unwrap(), "--top", "5", "--json", json.to_str().unwrap()];
        let res = bertkit(&[&args[..], &more].concat());
        assert!(res.status.success(), "{family}: {}", String::from_utf8_lossy(&res.stderr));
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(r["domain"]["words"], 30 * 11, "{family}");
        // The domain's top 5 (stopwords out): indemnification, licensor, movie, obligations,
        // survive; only "movie" is among the reference's.
        assert!((r["vocabulary_overlap"].as_f64().unwrap() - 0.2).abs() < 1e-9, "{family}: {r}");
        let tokens = |k: &str| r[k]["tokens_per_word"].as_f64().unwrap();
        assert!(tokens("domain") > tokens("reference_fragmentation"), "{family}: {r}");
        let worst = &r["worst_split"][0];
        assert_eq!(worst["word"], "indemnification", "{family}: {r}");
        assert!(worst["pieces"].as_array().unwrap().len() > 3, "{family}: {worst}");
        assert!(r["verdict"].as_str().unwrap().starts_with("Far from the reference"), "{family}: {r}");
    }
}

/// TAPT pretrains on the task's own text (never its labels); with a corpus too, the study
/// compares original, DAPT, TAPT and DAPT+TAPT (TAPT continued from the DAPT model).
#[test]
fn adapt_compares_dapt_tapt_and_both() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("legal.txt");
    std::fs::write(&corpus, "the lessee shall repair the premises and may not assign the lease.\n\n".repeat(60))
        .unwrap();
    let train = tmp.path().join("task.csv");
    let rows: String = (0..60)
        .map(|i| {
            if i % 2 == 0 {
                "the tenant repairs the roof,REPAIRLABEL\n"
            } else {
                "no assignment without consent,ASSIGNLABEL\n"
            }
        })
        .collect();
    std::fs::write(&train, format!("text,label\n{rows}")).unwrap();
    let out = tmp.path().join("study");
    let model = common::tiny_model();
    let adapt = [
        "adapt",
        "--model",
        model.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let sizes =
        ["--pretrain-steps", "4", "--pretrain-max-len", "16", "--pretrain-eval-split", "0.2", "--finetune-epochs", "1"];
    let rest =
        ["--finetune-max-len", "16", "--batch-size", "8", "--device", "cpu", "--threads", "1", "--precision", "fp32"];
    let general = tmp.path().join("reviews.txt");
    std::fs::write(&general, "a film about a dog who learns to sing.\n\n".repeat(20)).unwrap();
    let with = ["--corpus", corpus.to_str().unwrap(), "--tapt", "--general-corpus", general.to_str().unwrap()];
    let res = bertkit(&[&adapt[..], &with, &sizes, &rest].concat());
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));

    let task_text = std::fs::read_to_string(out.join("task-text.txt")).unwrap();
    assert!(task_text.contains("the tenant repairs the roof") && !task_text.contains("LABEL"), "{task_text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let names = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&report["pretraining"]), ["dapt", "tapt", "dapt+tapt"]);
    assert_eq!(names(&report["downstream"]), ["original", "dapt", "tapt", "dapt+tapt"]);
    assert!(report["pretraining"]["dapt+tapt"]["from"].as_str().unwrap().ends_with("pretrained/dapt"));
    assert_eq!(
        report["pretraining"]["tapt"]["corpus"][0].as_str().unwrap(),
        out.join("task-text.txt").to_str().unwrap()
    );
    assert!(out.join("finetuned/dapt-tapt-seed42/model.safetensors").exists());
    // Forgetting: every model scored on the general-domain text with the same masks.
    let general = &report["general_domain"]["scores"];
    assert_eq!(names(general), ["original", "dapt", "tapt", "dapt+tapt"]);
    assert!(general["tapt"]["perplexity"].as_f64().unwrap() > 1.0, "{general}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| | original | dapt | tapt | dapt+tapt |") && md.contains("## General-domain text"), "{md}");
    // Domain fit of the corpus against the general text, measured before training.
    let fit = &report["domain_fit"];
    assert!(fit["domain"]["tokens_per_word"].as_f64().unwrap() >= 1.0, "{fit}");
    assert!(fit["vocabulary_overlap"].as_f64().is_some() && fit["verdict"].is_string(), "{fit}");
    assert!(md.contains("## Domain fit (before training)") && md.contains("vocabulary overlap"), "{md}");

    // TAPT alone needs no corpus (here with two task words added to the vocabulary); neither
    // is an error naming both flags.
    let alone = bertkit(&[&adapt[..], &["--tapt", "--overwrite", "--add-vocab", "2"], &sizes, &rest].concat());
    assert!(alone.status.success(), "{}", String::from_utf8_lossy(&alone.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(names(&report["downstream"]), ["original", "tapt"]);
    let added: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pretrained/tapt/added_vocabulary.json")).unwrap())
            .unwrap();
    assert_eq!(added.as_array().unwrap().len(), 2, "{added}");
    assert!(out.join("finetuned/tapt-seed42/model.safetensors").exists(), "the extended model fine-tunes");
    let neither = bertkit(&[&adapt[..], &sizes, &rest].concat());
    let err = String::from_utf8_lossy(&neither.stderr);
    assert!(!neither.status.success() && err.contains("--corpus") && err.contains("--tapt"), "{err}");
}

/// `--probe-every`: every checkpoint of each pretraining, and the model it starts from, is scored
/// on the task (the original once for DAPT and TAPT), the best one named and, with
/// `--adapted-checkpoint probe`, fine-tuned; the report draws perplexity and probe score by step.
#[test]
fn adapt_scores_pretraining_checkpoints_by_the_task() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("legal.txt");
    std::fs::write(&corpus, "the lessee shall repair the premises and may not assign the lease.\n\n".repeat(60))
        .unwrap();
    let train = tmp.path().join("task.csv");
    let rows: String =
        (0..60)
            .map(|i| {
                if i % 2 == 0 {
                    "the tenant repairs the roof,repair\n"
                } else {
                    "no assignment without consent,assign\n"
                }
            })
            .collect();
    std::fs::write(&train, format!("text,label\n{rows}")).unwrap();
    let out = tmp.path().join("study");
    let model = common::tiny_model();
    let (m, t, o) = (model.to_str().unwrap(), train.to_str().unwrap(), out.to_str().unwrap());
    let adapt = ["adapt", "--model", m, "--train", t, "--output", o, "--tapt", "--pretrain-steps", "4"];
    let rest = [
        "--pretrain-max-len", "16", "--pretrain-eval-split", "0.2", "--finetune-epochs", "1", "--finetune-max-len",
        "16", "--batch-size", "8", "--device", "cpu", "--threads", "1", "--precision", "fp32", "--probe-every", "2",
    ];
    let with = [
        "--corpus",
        corpus.to_str().unwrap(),
        "--adapted-checkpoint",
        "probe",
        "--probe-examples",
        "20",
        "--train-sampling-strategy",
        "group_by_length",
    ];
    let res = bertkit(&[&adapt[..], &rest, &with].concat());
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let dapt = &report["pretraining"]["dapt"];
    let points = dapt["probes"]["points"].as_array().unwrap();
    let steps: Vec<u64> = points.iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 2, 4], "{dapt}");
    assert!(points.iter().all(|p| p["metrics"]["macro_f1"].is_number()), "{dapt}");
    let perplexity_steps: Vec<f64> =
        dapt["perplexity_by_step"].as_array().unwrap().iter().map(|p| p[0].as_f64().unwrap()).collect();
    assert_eq!(perplexity_steps, [0.0, 2.0, 4.0]);
    // The best step's model is what the fine-tunes started from, and DAPT+TAPT continued.
    let best = dapt["probes"]["best_step"].as_u64().unwrap();
    let best_model = points.iter().find(|p| p["step"] == best).unwrap()["model"].clone();
    assert_eq!(dapt["fine_tuned_model"], best_model);
    assert_eq!(report["pretraining"]["dapt+tapt"]["from"], best_model);
    // The original was probed once: TAPT's step 0 reuses DAPT's.
    assert!(points[0]["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["pretraining"]["tapt"]["probes"]["points"][0]["seconds"], 0.0);
    assert_eq!(report["pretraining"]["tapt"]["probes"]["points"][0]["metrics"], points[0]["metrics"]);
    assert!(out.join("curves.png").exists() && out.join("curves.svg").exists());
    let finetunes: Vec<&str> = report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .filter(|c| c.contains(" finetune "))
        .collect();
    assert!(finetunes.iter().all(|c| c.contains("--train-sampling-strategy group_by_length")), "{finetunes:?}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Checkpoints scored by the task") && md.contains("(best)") && md.contains("% more"), "{md}");

    // The fine-tune probe scores any task; it leaves each probe's run beside its score.
    let res = bertkit(&[&adapt[..], &rest, &["--probe", "finetune", "--probe-examples", "16", "--overwrite"]].concat());
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert!(out.join("probes/tapt/step-2/eval_results.json").exists());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert!(report["pretraining"]["tapt"]["probes"]["points"][2]["metrics"]["macro_f1"].is_number(), "{report}");

    // Mistakes are named before anything runs.
    let unprobed = bertkit(&[&adapt[..], &["--adapted-checkpoint", "probe", "--overwrite"]].concat());
    let err = String::from_utf8_lossy(&unprobed.stderr);
    assert!(!unprobed.status.success() && err.contains("--probe-every"), "{err}");
    let conll = tmp.path().join("ner.conll");
    std::fs::write(&conll, "EU B-ORG\nrejects O\n\n").unwrap();
    let tagged =
        ["adapt", "--model", m, "--train", conll.to_str().unwrap(), "--output", o, "--tapt", "--probe-every", "2"];
    let err = bertkit(&tagged);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("--probe finetune"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}

/// Whole-word masking reads word boundaries from the cache: from the tokenizer's word ids, so
/// byte-level BPE (`Ġ`) and SentencePiece (`▁`) vocabularies get them as WordPiece's (`##`) does.
#[test]
fn token_cache_marks_word_pieces_for_every_vocabulary_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("c.txt");
    std::fs::write(&file, "the lessee shall unconscionably sublicense the premises, herein\n").unwrap();
    // Whether a piece (not the document's first) continues the word before it, by each kind's
    // convention: WordPiece's `##`; byte-level BPE's missing `Ġ`, punctuation being a word of
    // its own there; SentencePiece's missing `▁` (it splits words on whitespace only).
    let wordpiece = |p: &str| p.starts_with("##");
    let bpe = |p: &str| !p.starts_with('Ġ') && p.chars().all(|c| c.is_ascii_alphanumeric());
    let sentencepiece = |p: &str| !p.starts_with('▁');
    type ContinuesWord<'a> = &'a dyn Fn(&str) -> bool;
    let kinds: [(&str, ContinuesWord); 3] =
        [("tiny-bert", &wordpiece), ("tiny-roberta", &bpe), ("tiny-xlm-roberta", &sentencepiece)];
    for (model, continues_word) in kinds {
        let dir = common::repo().join("tests/fixtures").join(model);
        let tok = Tokenizer::from_dir(&dir).unwrap();
        let cache =
            TokenCache::open_or_build(&tmp.path().join(model), &spec(&[&file], Chunking::Document, 64), &tok, &dir)
                .unwrap();
        let pieces: Vec<String> = cache.block(0).iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
        let continues = cache.continues(0);
        assert_eq!(continues.len(), pieces.len());
        for (i, (piece, &c)) in pieces.iter().zip(continues).enumerate() {
            assert_eq!(c == 1, i > 0 && continues_word(piece), "{model}: {piece} in {pieces:?} / {continues:?}");
        }
        assert!(continues.contains(&1), "{model}: some word is split into pieces: {pieces:?}");
    }
}

/// Legal text usually comes without an extension (`LICENSE`, `GPL-2`, `Apache-2.0`): such files
/// are read as plain text when they are UTF-8; binary files are skipped in a directory and
/// refused by name, with `--format` named as the way out.
#[test]
fn extension_less_text_files_are_read_as_plain_text() {
    use bertkit::data::corpus::corpus_files;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("licenses");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("LICENSE"), "Permission is hereby granted, free of charge.\n").unwrap();
    std::fs::write(dir.join("Apache-2.0"), "Licensed under the Apache License, Version 2.0.\n").unwrap();
    std::fs::write(dir.join("blob"), [0u8, 159, 146, 150, 0, 1, 2]).unwrap();
    std::fs::write(dir.join(".hidden"), "not a corpus file\n").unwrap();
    std::fs::write(dir.join("notes.md"), "an extension bertkit does not read: skipped\n").unwrap();
    let files = corpus_files(std::slice::from_ref(&dir), None).unwrap();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(names, ["Apache-2.0", "LICENSE"]);
    let cache = TokenCache::open_or_build(
        &tmp.path().join("c"),
        &spec(&[&dir], Chunking::Document, 64),
        &tok(),
        &common::tiny_model(),
    )
    .unwrap();
    assert_eq!(cache.meta.documents, 2);
    let blob = dir.join("blob");
    let err = TokenCache::open_or_build(
        &tmp.path().join("b"),
        &spec(&[&blob], Chunking::Document, 64),
        &tok(),
        &common::tiny_model(),
    )
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap();
    assert!(err.contains("blob") && err.contains("--format text"), "{err}");
}
