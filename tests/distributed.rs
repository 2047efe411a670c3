//! Data-parallel training on c10d (gloo, localhost): N ranks x batch B take the steps one
//! process takes with batch N x B (fine-tuning, sentence embeddings with the whole batch's
//! negatives, further pretraining), through `bertkit
//! launch` and through torchrun; evaluation spread over ranks gives one process's numbers
//! exactly; a rank that dies stops the others; ranks that disagree refuse to start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bertkit, conll, finetune_tiny, ok, synthetic_csv, tiny_model};
use safetensors::SafeTensors;

/// The fine-tuning command of these tests, without --batch-size: dropout off, so that the
/// split of a batch over ranks is the only difference; Adam's ε at 1 (`assert_same_weights`);
/// no clipping, which would hide a gradient off by a constant factor.
fn finetune(train: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let run = ["--dropout", "0", "--lr", "1e-3", "--adam-epsilon", "1", "--max-grad-norm", "0", "--max-len", "32"];
    let flags = [&run[..], &["--seed", "3", "--overwrite"], extra].concat();
    // Threads are the launcher's to set (one core per rank); a single process passes its own.
    let mut argv = finetune_tiny(train, out, &flags);
    let at = argv.iter().position(|a| a == "--threads").unwrap();
    argv.drain(at..at + 2);
    argv
}

fn launch(nproc: usize, command: &[String]) -> Vec<String> {
    let mut argv = vec!["launch".to_string(), "--nproc-per-node".into(), nproc.to_string(), "--".into()];
    argv.extend(command.iter().cloned());
    argv
}

/// Every tensor of two saved models equal up to what rounding does to `steps` AdamW steps at
/// `lr` from the tiny model. The ranks add a step's gradients in another order than one
/// process (`common::Drift` of a backward pass over a batch of `tokens`). With Adam's ε at 1 a
/// step moves a weight by lr x m / (√v + 1), about lr x its gradient where gradients are far
/// below 1, so the farthest a weight of `a` moved, per step and per unit of lr, is the size of
/// the largest gradient, and two runs' weights part by at most steps x lr x the drift at that
/// size, plus the weight's own rounding (ε |w|). At Trainer's ε (1e-8) a gradient near 0 is
/// divided by about itself: rounding alone can turn its step from -lr to +lr.
fn assert_same_weights(a: &Path, b: &Path, steps: usize, lr: f64, tokens: usize) {
    let read = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    let (d0, da, db) = (read(&tiny_model()), read(a), read(b));
    let [t0, ta, tb] = [&d0, &da, &db].map(|d| SafeTensors::deserialize(d).unwrap());
    let floats = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
    let mut moved = 0f64;
    // The encoder's weights: a new head starts from its own random values.
    for (name, x) in ta.tensors().into_iter().filter(|(n, _)| n.starts_with("bert.")) {
        if let Ok(w0) = t0.tensor(&name) {
            let far = floats(x.data()).iter().zip(floats(w0.data())).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            moved = moved.max(f64::from(far));
        }
    }
    let gradient = moved / (steps as f64 * lr);
    let drift = common::Drift::forward(&tiny_model()).backward(tokens);
    let allowed = steps as f64 * lr * drift.tolerance(gradient);
    assert_eq!(ta.len(), tb.len());
    for (name, x) in ta.tensors() {
        let y = tb.tensor(&name).unwrap();
        for (p, q) in floats(x.data()).iter().zip(floats(y.data())) {
            let tol = allowed + f64::from(f32::EPSILON) * f64::from(q.abs());
            assert!(f64::from((p - q).abs()) <= tol, "{name}: {p} vs {q} (allowed {tol:e})");
        }
    }
}

/// Every tensor of two saved models equal to the bit: for a run resumed on as many ranks, whose
/// every step repeats the uninterrupted run's arithmetic (the same batches on the same ranks, the
/// optimiser's state and the random generators restored from the checkpoint).
fn assert_identical_weights(a: &Path, b: &Path) {
    let (da, db) =
        (std::fs::read(a.join("model.safetensors")).unwrap(), std::fs::read(b.join("model.safetensors")).unwrap());
    let (ta, tb) = (SafeTensors::deserialize(&da).unwrap(), SafeTensors::deserialize(&db).unwrap());
    assert_eq!(ta.len(), tb.len());
    for (name, x) in ta.tensors() {
        assert!(x.data() == tb.tensor(&name).unwrap().data(), "{name} differs");
    }
}

/// Step losses equal up to the rounding of a forward pass (`common::Drift`) at their size.
fn assert_same_losses(l1: &[f64], l2: &[f64], what: &str) {
    let drift = common::Drift::forward(&tiny_model());
    for (a, b) in l1.iter().zip(l2) {
        assert!((a - b).abs() <= drift.tolerance(a.abs()), "{what}: step losses {l1:?} vs {l2:?}");
    }
}

fn losses(dir: &Path) -> Vec<f64> {
    let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "train")
        .map(|r| r["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn two_ranks_take_the_steps_of_one_process_with_their_batches_together() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, eval) = (tmp.path().join("train.csv"), tmp.path().join("eval.csv"));
    // 69 examples in batches of 8: the epoch's last batch (5) splits 2 + 3 over two ranks.
    synthetic_csv(&train, 69, 1);
    synthetic_csv(&eval, 30, 2);
    let e = eval.to_str().unwrap();
    let common = ["--max-steps", "10", "--log-every", "1", "--eval", e, "--eval-every", "9"];
    for (accum, name) in [("1", "plain"), ("2", "accumulated")] {
        let (one, two) = (tmp.path().join(format!("{name}-one")), tmp.path().join(format!("{name}-two")));
        let flags = [&common[..], &["--grad-accum", accum]].concat();
        ok(&[finetune(&train, &one, &flags), vec!["--batch-size".into(), "8".into(), "--threads".into(), "2".into()]]
            .concat());
        ok(&launch(2, &[finetune(&train, &two, &flags), vec!["--batch-size".into(), "4".into()]].concat()));
        // 10 steps at 1e-3, batches of 8 texts of up to 32 tokens.
        assert_same_weights(&one, &two, 10, 1e-3, 8 * 32);
        let (l1, l2) = (losses(&one), losses(&two));
        assert_eq!(l1.len(), 10, "{name}: one log line per step");
        assert_same_losses(&l1, &l2, name);
        let metrics = |d: &Path| std::fs::read_to_string(d.join("eval_results.json")).unwrap();
        let (m1, m2): (serde_json::Value, serde_json::Value) =
            (serde_json::from_str(&metrics(&one)).unwrap(), serde_json::from_str(&metrics(&two)).unwrap());
        assert_eq!(m1["metrics"]["accuracy"], m2["metrics"]["accuracy"], "{name}: the same evaluation");
        assert!(two.join("checkpoint-9").join("optimizer.safetensors").exists(), "rank 0 saved the checkpoint");
    }
}

/// Rows for embedding training: few questions, each asked of several passages (rows that share
/// an anchor land on both ranks, so the duplicate masks span the shares), passages and hard
/// negatives of varied length.
fn embedding_rows(path: &Path, n: usize) {
    let topics = ["rent", "repairs", "notice", "deposit", "pets", "parking", "noise"];
    let mut csv = "anchor,positive,negative,score\n".to_string();
    for i in 0..n {
        let (t, other) = (topics[i % 5], topics[(i + 2) % topics.len()]);
        let filler = "and the parties agree ".repeat(i % 4);
        csv += &format!("what about {t},the clause {filler}on {t} number {i},{filler}a clause on {other},{}\n", i % 5);
    }
    std::fs::write(path, csv).unwrap();
}

#[test]
fn two_ranks_train_embeddings_against_the_negatives_of_their_batches_together() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("rows.csv");
    // 33 rows in batches of 8: the epoch's last batch has one row, which leaves rank 1 a stand-in.
    embedding_rows(&train, 33);
    let common = [
        "--task", "embedding", "--text-column", "anchor", "--text-pair-column", "positive", "--max-steps", "6",
        "--log-every", "1",
    ];
    let variants: [(&str, &[&str]); 3] = [
        ("mnrl", &["--loss", "mnrl", "--negative-columns", "negative"]),
        ("cached-symmetric", &["--loss", "mnrl-symmetric", "--negative-columns", "negative", "--mini-batch-size", "3"]),
        ("cosent", &["--loss", "cosent", "--label-column", "score"]),
    ];
    for (name, extra) in variants {
        let (one, two) = (tmp.path().join(format!("{name}-one")), tmp.path().join(format!("{name}-two")));
        let flags = [&common[..], extra].concat();
        let single =
            [finetune(&train, &one, &flags), ["--batch-size", "8", "--threads", "2"].map(String::from).to_vec()];
        ok(&single.concat());
        ok(&launch(2, &[finetune(&train, &two, &flags), vec!["--batch-size".into(), "4".into()]].concat()));
        // 6 steps at 1e-3; a batch's three columns of up to 32 tokens.
        assert_same_weights(&one, &two, 6, 1e-3, 8 * 3 * 32);
        let (l1, l2) = (losses(&one), losses(&two));
        assert_eq!(l1.len(), 6, "{name}: one log line per step");
        assert_same_losses(&l1, &l2, name);
    }
}

/// A corpus of varied sentences, so that each block's masks matter.
fn corpus(path: &Path) {
    let words = ["lessee", "shall", "repair", "the", "premises", "licensee", "may", "not", "assign", "rights"];
    let text: String =
        (0..150).map(|i| format!("{} {}.\n\n", words[i % 10], words[(i * 7 + 3) % 10..].join(" "))).collect();
    std::fs::write(path, text).unwrap();
}

fn metrics(path: &Path) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(path).unwrap()).unwrap()["metrics"].clone()
}

#[test]
fn two_ranks_pretrain_as_one_process_with_their_batches_together() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("contracts.txt");
    corpus(&text);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let pretrain = |out: &Path| -> Vec<String> {
        let (m, t, o) = (tiny_model(), text.to_str().unwrap().to_string(), out.to_str().unwrap().to_string());
        let flags =
            ["--max-len", "16", "--max-steps", "6", "--grad-accum", "2", "--eval-split", "0.2", "--eval-every", "3"];
        let fixed = ["--dropout", "0", "--lr", "1e-3", "--adam-epsilon", "1", "--max-grad-norm", "0", "--seed", "3"];
        let cpu = ["--whole-word-masking", "--log-every", "1", "--device", "cpu", "--precision", "fp32", "--overwrite"];
        let head = [
            "pretrain".to_string(),
            "--model".into(),
            m.display().to_string(),
            "--corpus".into(),
            t,
            "--output".into(),
            o,
        ];
        [&head[..], &[&flags[..], &fixed, &cpu].concat().into_iter().map(String::from).collect::<Vec<_>>()].concat()
    };
    ok(&[pretrain(&one), ["--batch-size", "8", "--threads", "1"].map(String::from).to_vec()].concat());
    ok(&launch(2, &[pretrain(&two), vec!["--batch-size".into(), "4".into()]].concat()));
    // 6 steps at 1e-3, two batches of 8 blocks of 16 tokens each.
    assert_same_weights(&one, &two, 6, 1e-3, 2 * 8 * 16);
    let (l1, l2) = (losses(&one), losses(&two));
    assert_eq!(l1.len(), 6);
    assert_same_losses(&l1, &l2, "pretrain");
    // Before training both evaluate the same weights on one thread a rank: the same numbers.
    assert_eq!(metrics(&one.join("eval_before.json")), metrics(&two.join("eval_before.json")));
}

#[test]
fn evaluation_on_two_ranks_equals_one_process_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    synthetic_csv(&p("train.csv"), 16, 1);
    synthetic_csv(&p("eval.csv"), 37, 2);
    conll(&p("train.conll"), 16, 4);
    conll(&p("eval.conll"), 15, 5);
    corpus(&p("corpus.txt"));
    let windows = ["--max-len", "16", "--stride", "4"];
    ok(&finetune_tiny(&p("train.csv"), &p("classifier"), &["--max-steps", "2"]));
    ok(&finetune_tiny(&p("train.conll"), &p("tagger"), &[&["--max-steps", "2"][..], &windows].concat()));
    let s = |path: PathBuf| path.display().to_string();
    let mlm = tiny_model().display().to_string();
    let cases = [
        ("classification", s(p("classifier")), vec!["--data".to_string(), s(p("eval.csv"))]),
        (
            "tagging",
            s(p("tagger")),
            [&["--data".to_string(), s(p("eval.conll"))][..], &windows.map(String::from)].concat(),
        ),
        ("masked-lm", mlm, vec!["--corpus".to_string(), s(p("corpus.txt")), "--max-len".into(), "16".into()]),
    ];
    for (task, model, data) in cases {
        let (alone, spread) = (p(&format!("{task}-alone.json")), p(&format!("{task}-spread.json")));
        let evaluate = |json: &Path| -> Vec<String> {
            let head = ["evaluate", "--model", &model, "--json", json.to_str().unwrap(), "--batch-size", "4"];
            [&head.map(String::from)[..], &data, &["--device", "cpu", "--precision", "fp32"].map(String::from)].concat()
        };
        ok(&[evaluate(&alone), vec!["--threads".into(), "1".into()]].concat());
        ok(&launch(2, &evaluate(&spread)));
        let read =
            |path: &Path| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(path).unwrap()).unwrap();
        let (a, b) = (read(&alone), read(&spread));
        // Exact: each rank computes every other batch of the same batches one process computes,
        // and the results are summed with zeros where another rank computed (x + 0 = x).
        assert_eq!(a["metrics"], b["metrics"], "{task}");
        assert_eq!(a["report"], b["report"], "{task}");
    }
}

#[test]
fn a_resumed_data_parallel_run_reaches_the_uninterrupted_one_and_needs_as_many_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.csv");
    synthetic_csv(&train, 48, 1);
    let (whole, resumed) = (tmp.path().join("whole"), tmp.path().join("resumed"));
    let b4 = vec!["--batch-size".to_string(), "4".into()];
    let flags = ["--max-steps", "6", "--eval-every", "3"];
    ok(&launch(2, &[finetune(&train, &whole, &flags), b4.clone()].concat()));
    let checkpoint = whole.join("checkpoint-3");
    let resume = ["--resume-from", checkpoint.to_str().unwrap()];
    let one_rank = [finetune(&train, &resumed, &[&flags[..], &resume].concat()), b4.clone()].concat();
    let out = bertkit(&one_rank);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("was trained on 2 rank(s), this run has 1"), "{stderr}");
    ok(&launch(2, &[finetune(&train, &resumed, &[&flags[..], &resume].concat()), b4].concat()));
    assert_identical_weights(&whole, &resumed);
}

#[test]
fn two_launchers_as_two_nodes_take_the_steps_of_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.csv");
    synthetic_csv(&train, 32, 1);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let flags = ["--max-steps", "3"];
    let b8 = vec!["--batch-size".to_string(), "8".into(), "--threads".into(), "2".into()];
    ok(&[finetune(&train, &one, &flags), b8].concat());
    let port = free_port().to_string();
    let nodes: Vec<_> = ["0", "1"]
        .iter()
        .map(|node| {
            let mut argv: Vec<String> =
                ["launch", "--nnodes", "2", "--node-rank", node, "--master-port", &port].map(String::from).to_vec();
            argv.extend(["--nproc-per-node".into(), "1".into(), "--".into()]);
            argv.extend(finetune(&train, &two, &flags));
            argv.extend(["--batch-size".into(), "4".into(), "--threads".into(), "1".into()]);
            Command::new(env!("CARGO_BIN_EXE_bertkit")).args(&argv).stdout(Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut node in nodes {
        assert!(node.wait().unwrap().success(), "a node's launcher failed");
    }
    assert_same_weights(&one, &two, 3, 1e-3, 8 * 32);
}

#[test]
fn after_a_rank_is_killed_the_last_checkpoint_resumes_to_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.csv");
    synthetic_csv(&train, 64, 1);
    let (whole, broken) = (tmp.path().join("whole"), tmp.path().join("broken"));
    let b4 = vec!["--batch-size".to_string(), "4".into()];
    let flags = ["--max-steps", "600", "--eval-every", "25", "--save-total-limit", "2"];
    ok(&launch(2, &[finetune(&train, &whole, &flags), b4.clone()].concat()));
    let argv = launch(2, &[finetune(&train, &broken, &flags), b4.clone()].concat());
    let launcher = Command::new(env!("CARGO_BIN_EXE_bertkit")).args(&argv).stderr(Stdio::null()).spawn().unwrap();
    let rank1 = wait_for_rank(launcher.id(), "1");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !broken.join("checkpoint-25").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on a pid of our launcher's child.
    unsafe { libc::kill(rank1, libc::SIGKILL) };
    let out = launcher.wait_with_output().unwrap();
    assert!(!out.status.success(), "the run was to be cut short");
    let last = bertkit::train::run_dir::list_checkpoints(&broken).unwrap().pop().expect("a checkpoint was saved").1;
    let resume = ["--resume-from", last.to_str().unwrap()];
    ok(&launch(2, &[finetune(&train, &broken, &[&flags[..], &resume].concat()), b4].concat()));
    assert_identical_weights(&whole, &broken);
}

#[test]
fn torchrun_starts_bertkit_ranks_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.csv");
    synthetic_csv(&train, 32, 1);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let flags = ["--max-steps", "3"];
    ok(&[finetune(&train, &one, &flags), vec!["--batch-size".into(), "8".into(), "--threads".into(), "2".into()]]
        .concat());
    // torchrun is `python3 -m torch.distributed.run` (the torch bertkit is built against).
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(python)
        .args(["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", &free_port().to_string()])
        .arg("--no-python")
        .arg(env!("CARGO_BIN_EXE_bertkit"))
        .args(finetune(&train, &two, &flags))
        .args(["--batch-size", "4"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "torchrun --no-python bertkit finetune: {status}");
    assert_same_weights(&one, &two, 3, 1e-3, 8 * 32);
}

#[test]
fn a_killed_rank_stops_the_others_and_the_launcher_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.csv");
    synthetic_csv(&train, 400, 1);
    let out = tmp.path().join("run");
    let argv = launch(
        2,
        &[
            finetune(&train, &out, &["--epochs", "200", "--dist-timeout", "20"]),
            vec!["--batch-size".into(), "4".into()],
        ]
        .concat(),
    );
    let launcher = Command::new(env!("CARGO_BIN_EXE_bertkit")).args(&argv).stderr(Stdio::piped()).spawn().unwrap();
    // Wait for rank 1 to be training, then SIGKILL it.
    let rank1 = wait_for_rank(launcher.id(), "1");
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on a pid of our launcher's child.
    unsafe { libc::kill(rank1, libc::SIGKILL) };
    let started = Instant::now();
    let out = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("rank 1 was killed by signal 9"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(40), "the launcher took {:?}", started.elapsed());
}

#[test]
fn ranks_with_other_hyper_parameters_refuse_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.csv");
    synthetic_csv(&train, 32, 1);
    let port = free_port().to_string();
    let children: Vec<_> = ["1e-3", "2e-3"]
        .iter()
        .enumerate()
        .map(|(rank, lr)| {
            let out = tmp.path().join(format!("run{rank}"));
            let mut argv = finetune(&train, &out, &["--max-steps", "2", "--dist-timeout", "30"]);
            let at = argv.iter().position(|a| a == "--lr").unwrap();
            argv[at + 1] = lr.to_string();
            Command::new(env!("CARGO_BIN_EXE_bertkit"))
                .args(&argv)
                .env("WORLD_SIZE", "2")
                .env("RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let rank1 = String::from_utf8_lossy(&outputs[1].stderr);
    assert!(!outputs[1].status.success());
    assert!(rank1.contains("rank 1 has other bertkit version and hyper-parameters than rank 0"), "{rank1}");
    assert!(rank1.contains("0.002") && rank1.contains("0.001"), "{rank1}");
}

/// The pid of the launcher's child whose environment says RANK=`rank`.
fn wait_for_rank(launcher: u32, rank: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let parent = stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1)).unwrap_or("");
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let wanted = format!("RANK={rank}");
            if parent == launcher.to_string() && environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("rank {rank} of launcher {launcher} never started");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn nccl_on_the_cpu_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("train.csv");
    synthetic_csv(&train, 8, 1);
    let out = tmp.path().join("run");
    let argv = [
        finetune(&train, &out, &["--max-steps", "1", "--dist-backend", "nccl"]),
        vec!["--batch-size".into(), "4".into()],
    ]
    .concat();
    let res = bertkit(&launch(2, &argv));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(stderr.contains("--dist-backend nccl: NCCL connects GPUs and this run is on the CPU"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}
