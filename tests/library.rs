//! The library as a Rust user calls it: a recipe run from code trains the same model as the
//! command with the same flags, `Classifier::predict` says what `bertkit predict` says, and the
//! failures a caller branches on carry their kind (`bertkit::Error`).

mod common;

use std::path::Path;

use bertkit::Error;
use bertkit::predict::Classifier;
use bertkit::recipes::FineTune;
use common::{finetune_tiny, ok, synthetic_csv, tiny_model};

/// The recipes set libtorch's process-wide seed and thread count as they start (as the command
/// does), so two running at once in one process would reseed each other's dropout: the tests
/// here take turns.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `FineTune` with the settings `finetune_tiny` gives the command.
fn fine_tune(train: &Path, output: &Path) -> FineTune {
    let mut run = FineTune::new(tiny_model().to_str().unwrap(), train, output).unwrap();
    run.new_head = true;
    run.cfg.placement.device.device = "cpu".into();
    run.cfg.placement.device.threads = Some(1);
    run.cfg.placement.precision = bertkit::device::Precision::Fp32;
    run.cfg.hyper.max_steps = Some(3);
    run.cfg.hyper.batch_size = 8;
    run
}

#[test]
fn a_recipe_from_code_trains_what_the_command_trains() {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.csv");
    synthetic_csv(&train, 40, 1);
    // Same-named directories: the model card is titled by its directory's name.
    let (by_code, by_command) = (dir.path().join("code/model"), dir.path().join("command/model"));
    let trained = fine_tune(&train, &by_code).run().unwrap();
    assert_eq!(trained.output, by_code);
    ok(&finetune_tiny(&train, &by_command, &["--max-steps", "3", "--batch-size", "8"]));
    let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    // Same flags, same seed, one thread: the same arithmetic, so the same bytes.
    assert!(weights(&by_code) == weights(&by_command), "the weights differ");
    for file in ["config.json", "README.md"] {
        let read = |d: &Path| std::fs::read_to_string(d.join(file)).unwrap();
        assert_eq!(read(&by_code), read(&by_command), "{file}");
    }

    // What the classifier says from code is what `bertkit predict` prints.
    let texts = ["the movie was good", "a bad plot with it"];
    let classifier = Classifier::load(&by_code).unwrap();
    let predictions = classifier.predict(&texts).unwrap();
    let input = dir.path().join("texts.csv");
    std::fs::write(&input, format!("text\n{}\n{}\n", texts[0], texts[1])).unwrap();
    let printed =
        ok(&["predict", "--model", by_code.to_str().unwrap(), "--input", input.to_str().unwrap(), "--device", "cpu"]);
    for (prediction, line) in predictions.iter().zip(printed.lines()) {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(prediction.labels, [line["label"].as_str().unwrap()]);
        for (label, p) in &prediction.scores {
            let printed = line["probabilities"][label].as_f64().unwrap() as f32;
            assert_eq!(*p, printed, "{label}: the same model on the same device computes the same numbers");
        }
    }
}

#[test]
fn failures_carry_the_kind_a_caller_branches_on() {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let kind = |err: &anyhow::Error| match Error::kind_of(err) {
        Some(Error::Data(_)) => "data",
        Some(Error::Model(_)) => "model",
        Some(Error::Setting(_)) => "setting",
        None => "none",
    };

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "text,label\ngood film,pos\n,neg\n").unwrap();
    let err = fine_tune(&bad, &dir.path().join("a")).run().err().unwrap();
    assert_eq!(kind(&err), "data", "{err:#}");
    assert!(format!("{err:#}").contains("bad.csv:3: empty text"), "{err:#}");

    let train = dir.path().join("train.csv");
    synthetic_csv(&train, 10, 2);
    let mut run = fine_tune(&train, &dir.path().join("b"));
    run.model = dir.path().join("no-such-model").display().to_string();
    let err = run.run().err().unwrap();
    assert_eq!(kind(&err), "model", "{err:#}");

    let mut run = fine_tune(&train, &dir.path().join("c"));
    run.data.max_len = Some(100_000);
    let err = run.run().err().unwrap();
    assert_eq!(kind(&err), "setting", "{err:#}");
    assert!(format!("{err:#}").contains("--max-len 100000 exceeds"), "{err:#}");

    let err = bertkit::values::from_flags::<FineTune>(&["--model", "m", "--train", "t", "--output", "o", "--lr", "0"])
        .err()
        .unwrap();
    assert_eq!(kind(&err), "setting", "{err:#}");
    // Nothing was written for any of them.
    for out in ["a", "b", "c"] {
        assert!(!dir.path().join(out).exists(), "{out} was created");
    }
}
