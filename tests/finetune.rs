//! Fine-tuning end to end through the `bertkit` command, on the tiny model: it learns a
//! synthetic rule, resuming equals not stopping, and evaluate/predict read what finetune wrote.

mod common;

use std::path::{Path, PathBuf};

use common::{bertkit, finetune_tiny, ok, synthetic_csv};

fn read_json(path: PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn learns_a_synthetic_rule_then_evaluates_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval) = (tmp.path().join("train.csv"), tmp.path().join("eval.csv"));
    synthetic_csv(&train, 400, 1);
    synthetic_csv(&eval, 100, 2);
    let out = tmp.path().join("run");
    let out_s = out.to_str().unwrap();
    let eval_s = eval.to_str().unwrap();
    let flags = [
        "--eval", eval_s, "--epochs", "6", "--batch-size", "16", "--lr", "3e-3", "--warmup-ratio", "0.1",
        "--weight-decay", "0.01", "--max-len", "32", "--save-total-limit", "2",
    ];
    ok(&finetune_tiny(&train, &out, &flags));
    let results = read_json(out.join("eval_results.json"));
    let accuracy = results["metrics"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "accuracy {accuracy} (chance is 0.5)");

    let config = read_json(out.join("config.json"));
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"]["0"], "neg");
    assert_eq!(config["label2id"]["pos"], 1);
    for f in ["log.jsonl", "curves.png", "curves.svg", "trainer_state.json", "tokenizer.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let checkpoints: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        .collect();
    assert!(checkpoints.len() <= 2, "--save-total-limit 2 keeps {} checkpoints", checkpoints.len());
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    assert!(log.lines().any(|l| l.contains("\"event\":\"eval\"")));
    assert!(log.lines().any(|l| l.contains("\"examples_per_s\"")));

    // evaluate reproduces the best evaluation from the saved model.
    let json = tmp.path().join("eval.json");
    ok(&[
        "evaluate",
        "--model",
        out_s,
        "--data",
        eval.to_str().unwrap(),
        "--max-len",
        "32",
        "--device",
        "cpu",
        "--json",
        json.to_str().unwrap(),
    ]);
    let again = read_json(json)["metrics"]["accuracy"].as_f64().unwrap();
    assert_eq!(again, accuracy, "evaluate on the saved model agrees with training's evaluation");

    // predict, to CSV and to JSONL from stdin.
    let preds = tmp.path().join("preds.csv");
    ok(&[
        "predict",
        "--model",
        out_s,
        "--input",
        eval.to_str().unwrap(),
        "--output",
        preds.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let text = std::fs::read_to_string(&preds).unwrap();
    assert!(text.starts_with("text,label,score,prob_neg,prob_pos\n"), "{text}");
    assert_eq!(text.lines().count(), 101);
    let input = b"the film was good\nthe plot was bad and the film too\n";
    let out = common::bertkit_with_stdin(&["predict", "--model", out_s, "--device", "cpu"], input);
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["label"], "pos");
    assert_eq!(lines[1]["label"], "neg");
    let p: f64 = lines[0]["probabilities"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-4);
}

#[test]
fn resume_gives_the_same_weights_as_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.jsonl");
    let mut jsonl = String::new();
    for (i, text) in
        ["a good film", "bad plot", "good good", "the bad movie", "it was good", "bad", "good and fine", "so bad"]
            .iter()
            .cycle()
            .take(40)
            .enumerate()
    {
        jsonl += &format!("{}\n", serde_json::json!({"text": text, "label": (i % 3).to_string()}));
    }
    std::fs::write(&train, jsonl).unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let flags = [
            "--max-steps", "12", "--eval-every", "4", "--batch-size", "4", "--grad-accum", "2", "--lr", "1e-3",
            "--warmup-steps", "3", "--dropout", "0.2", "--max-len", "16",
        ];
        ok(&finetune_tiny(&train, out, &[&flags[..], extra].concat()));
    };
    let full = tmp.path().join("full");
    run(&full, &[]);
    // Two fresh runs agree bit for bit (this caught gradient norms summed in HashMap order).
    let again = tmp.path().join("again");
    run(&again, &[]);
    assert!(
        std::fs::read(full.join("model.safetensors")).unwrap()
            == std::fs::read(again.join("model.safetensors")).unwrap(),
        "two runs with the same seed differ"
    );
    let part = tmp.path().join("part");
    let ckpt = full.join("checkpoint-4");
    run(&part, &["--resume-from", ckpt.to_str().unwrap()]);
    let a = std::fs::read(full.join("model.safetensors")).unwrap();
    let b = std::fs::read(part.join("model.safetensors")).unwrap();
    // Exact: the resumed steps repeat the uninterrupted run's arithmetic (the same batches, one
    // thread, the optimiser's moments and the random generator's state read back bit for bit).
    assert!(a == b, "resumed run ends with different weights");
    let steps = |p: &Path| read_json(p.join("trainer_state.json"))["global_step"].as_u64().unwrap();
    assert_eq!(steps(&full), 12);
    assert_eq!(steps(&part), 12);

    // Resuming with other settings is refused rather than silently diverging.
    let other = tmp.path().join("other");
    let resume = ["--max-steps", "12", "--batch-size", "8", "--resume-from", ckpt.to_str().unwrap()];
    let out = bertkit(&finetune_tiny(&train, &other, &resume));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("other settings") && err.contains("--batch-size 8 (the checkpoint: 4)"), "{err}");
    // Every hyper-parameter is compared, not a chosen few: weight decay too.
    let resume = ["--max-steps", "12", "--weight-decay", "0.5", "--resume-from", ckpt.to_str().unwrap()];
    let err = String::from_utf8_lossy(&bertkit(&finetune_tiny(&train, &other, &resume)).stderr).to_string();
    assert!(err.contains("--weight-decay 0.5"), "{err}");
    // So are the examples and the task's settings: class weights, or one label changed in the
    // file (the same number of steps either way).
    let other_data = |extra: &[&str]| {
        let out = tmp.path().join("other-data");
        let mut flags = vec!["--max-steps", "12", "--eval-every", "4", "--batch-size", "4", "--grad-accum", "2"];
        flags.extend(["--lr", "1e-3", "--warmup-steps", "3", "--dropout", "0.2", "--max-len", "16"]);
        flags.extend(["--resume-from", ckpt.to_str().unwrap()]);
        let out = bertkit(&finetune_tiny(&train, &out, &[&flags[..], extra].concat()));
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = other_data(&["--class-weights", "balanced"]);
    assert!(err.contains("other examples or task settings"), "{err}");
    let text = std::fs::read_to_string(&train).unwrap();
    std::fs::write(&train, text.replacen(r#""label":"0""#, r#""label":"1""#, 1)).unwrap();
    let err = other_data(&[]);
    assert!(err.contains("other examples or task settings"), "{err}");
}

#[test]
fn refuses_to_overwrite_another_run() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 20, 3);
    let out = tmp.path().join("run");
    let run =
        |extra: &[&str]| bertkit(&finetune_tiny(&train, &out, &[["--max-steps", "1"].as_slice(), extra].concat()));
    assert!(run(&[]).status.success());
    let again = run(&[]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("holds another run") && err.contains("--overwrite"), "{err}");
    assert!(run(&["--overwrite"]).status.success());
}

#[test]
fn bf16_autocast_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 64, 6);
    let run = |out: &Path, precision: &str| {
        let train_s = train.to_str().unwrap();
        let flags = [
            "--eval", train_s, "--max-steps", "16", "--batch-size", "8", "--lr", "3e-3", "--precision", precision,
            "--max-len", "24",
        ];
        ok(&finetune_tiny(&train, out, &flags));
    };
    let out = tmp.path().join("run");
    run(&out, "bf16");
    let fp32 = tmp.path().join("fp32");
    run(&fp32, "fp32");
    let weights = |p: &Path| std::fs::read(p.join("model.safetensors")).unwrap();
    assert!(weights(&out) != weights(&fp32), "bf16 autocast changes the arithmetic");
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // Weights stay fp32 (master weights): the saved model is float32.
    let config = read_json(out.join("config.json"));
    assert_eq!(config["dtype"], "float32");
}

/// Every trained model directory gets a Hugging Face model card that huggingface_hub parses:
/// its pipeline, metrics and evaluation results in the front matter, the data and settings below.
#[test]
fn trained_model_has_a_model_card_the_hub_parses() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 30, 3);
    let out = tmp.path().join("run");
    ok(&finetune_tiny(&train, &out, &["--max-steps", "2", "--eval-split", "0.2", "--batch-size", "4"]));
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.starts_with("---\n") && card.contains("## Data") && card.contains("## Results"), "{card}");
    assert!(card.contains("\"learning_rate\"") || card.contains("\"lr\""), "hyper-parameters: {card}");
    if !common::python_available() {
        return;
    }
    let script = "import json, sys\nfrom huggingface_hub import ModelCard\nc = ModelCard.load(sys.argv[1])\n\
                  d = c.data.to_dict()\nr = c.data.eval_results\n\
                  print(json.dumps({'pipeline_tag': d['pipeline_tag'], 'library_name': d['library_name'], \
                  'metrics': sorted(e.metric_type for e in r), 'values': {e.metric_type: e.metric_value for e in r}}))";
    let py = std::process::Command::new("python3")
        .args(["-c", script, out.join("README.md").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let parsed: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(parsed["pipeline_tag"], "text-classification");
    assert_eq!(parsed["library_name"], "transformers");
    assert_eq!(parsed["metrics"], serde_json::json!(["accuracy", "eval_loss", "macro_f1"]), "{parsed}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval_results.json")).unwrap()).unwrap();
    assert_eq!(parsed["values"]["accuracy"], results["metrics"]["accuracy"], "{parsed} {results}");
}

/// `--report-to tensorboard` writes event files that TensorBoard's own reader takes: the same
/// training and evaluation scalars as log.jsonl (Trainer's tag names), the flags as `args` text,
/// the hyper-parameters and the run's end for the hparams plugin. A resumed run's events replace
/// the steps it redoes.
#[test]
fn tensorboard_reads_the_same_scalars_as_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 40, 4);
    let out = tmp.path().join("run");
    let flags =
        ["--max-steps", "6", "--eval-split", "0.2", "--batch-size", "4", "--log-every", "2", "--eval-every", "3"];
    ok(&finetune_tiny(&train, &out, &[&flags[..], &["--report-to", "tensorboard"]].concat()));
    // Resume the finished run from its middle: steps 4-6 are redone in a second event file.
    std::thread::sleep(std::time::Duration::from_millis(1100)); // event file names carry the second
    let checkpoint = out.join("checkpoint-3").display().to_string();
    ok(&finetune_tiny(
        &train,
        &out,
        &[&flags[..], &["--report-to", "tensorboard", "--resume-from", &checkpoint]].concat(),
    ));
    let events: Vec<_> = std::fs::read_dir(out.join("runs")).unwrap().collect();
    assert_eq!(events.len(), 2, "one event file per process");
    if !common::python_available() {
        return;
    }
    let script = "import json, sys\n\
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
        from tensorboard.plugins.hparams import plugin_data_pb2\n\
        acc = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'tensors': 0}); acc.Reload()\n\
        scalars = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()['scalars']}\n\
        data = acc.PluginTagToContent('hparams')\n\
        start = plugin_data_pb2.HParamsPluginData.FromString(data['_hparams_/session_start_info'])\n\
        end = plugin_data_pb2.HParamsPluginData.FromString(data['_hparams_/session_end_info'])\n\
        hparams = {k: v.WhichOneof('kind') and getattr(v, v.WhichOneof('kind')) for k, v in start.session_start_info.hparams.items()}\n\
        args = acc.Tensors('args/text_summary')[0].tensor_proto.string_val[0].decode()\n\
        print(json.dumps({'scalars': scalars, 'hparams': hparams, 'status': end.session_end_info.status, 'args': json.loads(args)}))";
    let py = std::process::Command::new("python3")
        .args(["-c", script, out.join("runs").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let read: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let log: Vec<serde_json::Value> = std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // (TensorBoard tag, log.jsonl event, where the value is in that record)
    let cases = [
        ("train/loss", "train", "/loss"),
        ("train/learning_rate", "train", "/lr"),
        ("train/tokens_per_s", "train", "/tokens_per_s"),
        ("eval/loss", "eval", "/metrics/eval_loss"),
        ("eval/accuracy", "eval", "/metrics/accuracy"),
    ];
    for (tag, event, field) in cases {
        let want: Vec<(u64, f64)> = log
            .iter()
            .filter(|r| r["event"] == event)
            .filter_map(|r| r.pointer(field).and_then(|v| v.as_f64()).map(|v| (r["step"].as_u64().unwrap(), v)))
            .collect();
        assert!(!want.is_empty(), "{field} in log.jsonl");
        let got: Vec<(u64, f64)> = read["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("{tag} missing: {read}"))
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{tag}: one value per logged step, the redone steps once: {got:?} vs {want:?}"
        );
        for ((gs, gv), (ws, wv)) in got.iter().zip(&want) {
            assert_eq!(gs, ws, "{tag}");
            assert!((gv - wv).abs() <= 1e-6 * wv.abs().max(1.0), "{tag} at step {gs}: {gv} vs {wv}");
        }
    }
    assert!(read["scalars"]["train/peak_rss"][0][1].as_f64().unwrap() > 1e6, "peak memory in bytes: {read}");
    assert_eq!(read["hparams"]["lr"], 5e-5);
    assert_eq!(read["hparams"]["batch_size"], 4.0);
    assert_eq!(read["hparams"]["train_sampling_strategy"], "random");
    assert_eq!(read["status"], 1, "STATUS_SUCCESS at the end");
    assert_eq!(read["args"]["hyper"]["max_steps"], 6);
}

/// evaluate, predict and serve compute in fp32 unless asked, so their numbers are transformers'
/// on every CPU (`auto` took bf16 on a bf16 CPU), and the log says which precision ran.
#[test]
fn inference_computes_in_fp32_unless_asked() {
    for command in ["evaluate", "predict", "serve"] {
        let help = common::ok(&[command, "--help"]);
        let flag = help.split("--precision").nth(1).unwrap_or_else(|| panic!("{command} has no --precision"));
        assert!(flag.split("\n  -").next().unwrap().contains("[default: fp32]"), "{command}: {flag}");
    }
    let model = common::tiny_model().display().to_string();
    let predict = |extra: &[&str]| {
        let args = [&["predict", "--model", &model, "--device", "cpu", "--input", "-"][..], extra].concat();
        let out = common::bertkit_with_stdin(&args, b"the film was good\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (default, log) = predict(&[]);
    assert!(log.contains("precision: fp32"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in a log that is not a terminal: {log:?}");
    assert_eq!(default, predict(&["--precision", "fp32"]).0);
    assert!(predict(&["--precision", "bf16"]).1.contains("precision: bf16 autocast"));
}
