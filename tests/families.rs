//! Every command on a tiny random model of every encoder family: inspect, embed, finetune
//! (classification, token classification, multi-label), evaluate, predict, pretrain, fill-mask,
//! adapt, attention (PNG and HTML) and bench.

mod common;

use std::path::{Path, PathBuf};

use common::{ok, synthetic_csv};

/// The tiny model of each family, and the mask token its tokenizer uses.
fn families() -> Vec<(&'static str, PathBuf, &'static str)> {
    let fixtures = common::repo().join("tests/fixtures");
    vec![
        ("bert", fixtures.join("tiny-bert"), "[MASK]"),
        ("roberta", fixtures.join("tiny-roberta"), "<mask>"),
        ("xlm-roberta", fixtures.join("tiny-xlm-roberta"), "<mask>"),
        ("distilbert", fixtures.join("tiny-distilbert"), "[MASK]"),
        ("electra", fixtures.join("tiny-electra"), "[MASK]"),
        ("modernbert", fixtures.join("tiny-modernbert"), "[MASK]"),
        ("deberta-v2", fixtures.join("tiny-deberta-v3"), "[MASK]"),
    ]
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_command_runs_on_every_family() {
    for (family, model, mask) in families() {
        let tmp = tempfile::tempdir().unwrap();
        let (train, corpus) = (tmp.path().join("train.csv"), tmp.path().join("corpus.txt"));
        synthetic_csv(&train, 24, 5);
        std::fs::write(&corpus, "The lessee shall repair the premises.\n\nAny transfer is void.\n".repeat(20)).unwrap();
        let cpu = ["--device", "cpu", "--threads", "1"];
        let m = s(&model);

        let inspect = ok(&["inspect", m, "--json"]);
        assert!(inspect.contains(&format!("\"model_type\": \"{family}\"")), "{inspect}");
        let embed = ok(&[&["embed", m, "--text", "a good film", "--pooling", "mean"][..], &cpu].concat());
        assert!(embed.contains("\"dim\":32"), "{family}: {embed}");

        let run = tmp.path().join("run");
        let finetune = ["finetune", "--new-head", "--model", m, "--train", s(&train), "--output", s(&run)];
        let flags = ["--max-steps", "4", "--batch-size", "8", "--eval-split", "0.25", "--precision", "fp32"];
        ok(&[&finetune[..], &flags, &cpu].concat());
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
        assert!(saved["architectures"][0].as_str().unwrap().ends_with("ForSequenceClassification"), "{saved}");
        let report = ok(&[&["evaluate", "--model", s(&run), "--data", s(&train)][..], &cpu].concat());
        assert!(report.contains("accuracy"), "{family}: {report}");
        let predictions = tmp.path().join("p.jsonl");
        ok(&[&["predict", "--model", s(&run), "--input", s(&train), "--output", s(&predictions)][..], &cpu].concat());
        assert_eq!(std::fs::read_to_string(&predictions).unwrap().lines().count(), 24);

        // Token classification (words tokenised one by one: RoBERTa's byte-level BPE with a
        // prefix space) and multi-label classification.
        let (conll, tagger) = (tmp.path().join("ner.conll"), tmp.path().join("tagger"));
        std::fs::write(&conll, "John B-PER\nSmith I-PER\nsigned O\nin O\nParis B-LOC\n\nthe O\nfilm O\n\n".repeat(8))
            .unwrap();
        let finetune = ["finetune", "--new-head", "--model", m, "--train", s(&conll), "--output", s(&tagger)];
        ok(&[
            &finetune[..],
            &["--max-steps", "2", "--batch-size", "4", "--eval-split", "0.25", "--max-len", "8"],
            &cpu,
        ]
        .concat());
        let report =
            ok(&[&["evaluate", "--model", s(&tagger), "--data", s(&conll), "--max-len", "8"][..], &cpu].concat());
        assert!(report.contains("token accuracy"), "{family}: {report}");
        let text = tmp.path().join("text.txt");
        std::fs::write(&text, "John Smith signed in Paris\n").unwrap();
        let entities = ok(&[&["predict", "--model", s(&tagger), "--input", s(&text)][..], &cpu].concat());
        assert!(entities.contains("\"entities\""), "{family}: {entities}");
        let (labels, multi) = (tmp.path().join("multi.jsonl"), tmp.path().join("multi"));
        std::fs::write(
            &labels,
            "{\"text\": \"a good film\", \"label\": [\"good\", \"film\"]}\n{\"text\": \"the plot\", \"label\": []}\n"
                .repeat(6),
        )
        .unwrap();
        let finetune = ["finetune", "--new-head", "--model", m, "--train", s(&labels), "--output", s(&multi)];
        ok(&[&finetune[..], &["--max-steps", "2", "--batch-size", "4"], &cpu].concat());
        let predicted = ok(&[&["predict", "--model", s(&multi), "--input", s(&labels)][..], &cpu].concat());
        assert!(predicted.contains("\"labels\""), "{family}: {predicted}");

        let adapted = tmp.path().join("adapted");
        let pretrain = ["pretrain", "--model", m, "--corpus", s(&corpus), "--output", s(&adapted), "--max-len", "16"];
        ok(&[&pretrain[..], &["--max-steps", "3", "--batch-size", "4", "--eval-split", "0.2"], &cpu].concat());
        // Gradient checkpointing, bf16 autocast and whole-word masking, with the masked-only
        // MLM projection.
        let recomputed = tmp.path().join("recomputed");
        let pretrain =
            ["pretrain", "--model", m, "--corpus", s(&corpus), "--output", s(&recomputed), "--max-len", "16"];
        let flags = ["--max-steps", "2", "--batch-size", "4", "--gradient-checkpointing", "--precision", "bf16"];
        let flags = [&flags[..], &["--whole-word-masking"]].concat();
        ok(&[&pretrain[..], &flags, &cpu].concat());
        let log = std::fs::read_to_string(recomputed.join("log.jsonl")).unwrap();
        assert!(log.contains("\"precision\":\"bf16\"") && log.contains("\"event\":\"end\""), "{family}: {log}");
        let text = format!("The lessee shall {mask} the premises.");
        let fills = ok(&[&["fill-mask", "--model", s(&adapted), "--text", &text, "--json"][..], &cpu].concat());
        assert!(fills.contains("\"probability\""), "{family}: {fills}");

        let png = tmp.path().join("a.png");
        let html = tmp.path().join("a.html");
        for out in [&png, &html] {
            ok(&[
                &["attention", "--model", m, "--compare", s(&run), "--text", "a good film", "--out", s(out)][..],
                &cpu,
            ]
            .concat());
            assert!(out.metadata().unwrap().len() > 1000, "{family}: {}", out.display());
        }
        let bench =
            ["bench", "--model", m, "--workload", "mlm", "--batch-size", "2", "--seq-len", "16", "--steps", "1"];
        assert!(ok(&[&bench[..], &cpu].concat()).contains("tokens_per_s"));

        let study = tmp.path().join("study");
        let adapt = ["adapt", "--model", m, "--corpus", s(&corpus), "--train", s(&train), "--output", s(&study)];
        let sizes =
            ["--pretrain-steps", "2", "--pretrain-max-len", "16", "--finetune-epochs", "1", "--batch-size", "8"];
        ok(&[&adapt[..], &sizes, &["--device", "cpu", "--threads", "1", "--precision", "fp32"]].concat());
        assert!(study.join("report.json").exists(), "{family}: no report");
    }
}
