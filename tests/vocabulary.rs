//! `pretrain --add-vocab`: the corpus's most useful words join the WordPiece vocabulary (as new
//! rows, or in BERT's [unusedK] slots), each embedding starting as the mean of its old pieces;
//! the result tokenises them whole, trains, and loads in transformers with the same ids.

mod common;

use std::path::{Path, PathBuf};

use bertkit::tokenizer::Tokenizer;
use tch::Tensor;

/// A corpus where three long legal words recur and cut into several pieces.
fn legal_corpus(dir: &Path) -> PathBuf {
    let path = dir.join("contracts.txt");
    let text =
        "the indemnification of the lessee and the subrogation of the assignee are governed by the arbitration clause";
    std::fs::write(&path, (0..120).map(|i| format!("section {i}. {text}.\n\n")).collect::<String>()).unwrap();
    path
}

fn pretrain(model: &Path, corpus: &Path, out: &Path, extra: &[&str]) {
    let [m, c, o] = [model, corpus, out].map(|p| p.to_str().unwrap().to_string());
    let mut args =
        vec!["pretrain", "--model", &m, "--corpus", &c, "--output", &o, "--max-len", "32", "--max-steps", "3"];
    args.extend(["--batch-size", "4", "--eval-split", "0", "--device", "cpu", "--threads", "1", "--precision", "fp32"]);
    args.extend(extra);
    let run = common::bertkit(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn word_embeddings(dir: &Path) -> Tensor {
    common::bert_weights(dir).remove("bert.embeddings.word_embeddings.weight").unwrap()
}

#[test]
fn added_words_become_new_rows_initialised_from_their_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapted");
    let tiny = common::tiny_model();
    let before = Tokenizer::from_dir(&tiny).unwrap();
    let old_size = json(&tiny.join("config.json"))["vocab_size"].as_i64().unwrap();
    pretrain(&tiny, &legal_corpus(tmp.path()), &out, &["--add-vocab", "3", "--add-vocab-into", "new-rows"]);

    let added = json(&out.join("added_vocabulary.json"));
    let words: Vec<&str> = added.as_array().unwrap().iter().map(|w| w["word"].as_str().unwrap()).collect();
    assert_eq!(words.len(), 3);
    for w in ["indemnification", "subrogation", "arbitration"] {
        assert!(words.contains(&w) || before.encode_plain(&[w]).unwrap()[0].len() == 1, "{w} missing from {words:?}");
    }
    let config = json(&out.join("config.json"));
    assert_eq!(config["vocab_size"].as_i64().unwrap(), old_size + 3);
    let after = Tokenizer::from_dir(&out).unwrap();
    let extended = out.with_extension("vocab");
    let (old, new) = (word_embeddings(&tiny), word_embeddings(&extended));
    assert_eq!(new.size()[0], old_size + 3);
    for w in added.as_array().unwrap() {
        let (word, id) = (w["word"].as_str().unwrap(), w["id"].as_i64().unwrap());
        assert_eq!(
            after.encode_plain(&[&format!("the {word} clause")]).unwrap()[0].get_ids()[1] as i64,
            id,
            "{word} is one token"
        );
        let pieces: Vec<i64> =
            before.encode_plain(&[&format!(" {word}")]).unwrap()[0].get_ids().iter().map(|&i| i as i64).collect();
        let mean = old.index_select(0, &Tensor::from_slice(&pieces)).mean_dim(0, false, tch::Kind::Float);
        assert!(new.get(id).allclose(&mean, 1e-6, 1e-6, false), "{word}: not the mean of its pieces");
    }
    // The old rows are untouched.
    assert!(new.narrow(0, 0, old_size).equal(&old));
}

#[test]
fn unused_slots_keep_the_size_and_python_reads_the_same_ids() {
    let Some((minilm, _)) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapted");
    pretrain(&minilm, &legal_corpus(tmp.path()), &out, &["--add-vocab", "2", "--add-vocab-into", "unused"]);
    let config = json(&out.join("config.json"));
    assert_eq!(config["vocab_size"], 30522, "the [unusedK] slots keep the size");
    let added = json(&out.join("added_vocabulary.json"));
    let ids: Vec<i64> = added.as_array().unwrap().iter().map(|w| w["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2], "[unused0] and [unused1]");
    let vocab = std::fs::read_to_string(out.join("vocab.txt")).unwrap();
    assert_eq!(vocab.lines().count(), 30522);
    assert_eq!(vocab.lines().nth(1), added[0]["word"].as_str());
    if !common::python_available() {
        return;
    }
    let text = format!("The {} of the lessee.", added[0]["word"].as_str().unwrap());
    let ours: Vec<u32> =
        Tokenizer::from_dir(&out).unwrap().encode_batch(&[&text], None, 64).unwrap()[0].get_ids().to_vec();
    let script = format!(
        "import sys, json, torch\nfrom transformers import AutoTokenizer, AutoModelForMaskedLM\n\
         tok = AutoTokenizer.from_pretrained(sys.argv[1]); m = AutoModelForMaskedLM.from_pretrained(sys.argv[1])\n\
         ids = tok({text:?})['input_ids']\n\
         print(json.dumps({{'ids': ids, 'logits': m(torch.tensor([ids])).logits.shape[-1]}}))"
    );
    let run = std::process::Command::new("python3").args(["-c", &script, out.to_str().unwrap()]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let python: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(python["ids"], serde_json::json!(ours), "transformers tokenises the added word as bertkit does");
    assert_eq!(python["logits"], 30522);
}

#[test]
fn add_vocab_refuses_what_it_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = legal_corpus(tmp.path());
    // The tiny BERT has no [unusedK] slots; a byte-level BPE vocabulary is not WordPiece.
    for (model, into, says) in [
        (common::tiny_model(), "unused", "[unusedK] slots"),
        (common::repo().join("tests/fixtures/tiny-roberta"), "auto", "WordPiece"),
    ] {
        let out = tmp.path().join("out");
        let [m, c, o] = [&model, &corpus, &out].map(|p| p.to_str().unwrap().to_string());
        let run = common::bertkit(&[
            "pretrain", "--model", &m, "--corpus", &c, "--output", &o, "--add-vocab", "2", "--add-vocab-into", into,
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(says), "{stderr}");
        assert!(!out.exists(), "nothing written in the output");
    }
}
