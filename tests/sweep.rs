//! `bertkit sweep` end to end on the tiny model: every run of a grid made and compared, the best
//! one picked, a second invocation resuming (finished runs kept, an interrupted one continued
//! from its checkpoint, a missing one run), and mistakes refused before anything runs.

mod common;

use std::path::Path;

use common::{bertkit, synthetic_csv, tiny_model};

fn sweep_file(dir: &Path, vary: &str) -> std::path::PathBuf {
    let train = dir.join("t.csv");
    synthetic_csv(&train, 40, 5);
    let text = format!(
        "parallel = 2\n[args]\nmodel = {:?}\nnew-head = true\ntrain = {:?}\neval-split = 0.25\nmax-steps = 4\n\
         eval-every = 2\nbatch-size = 4\ndevice = \"cpu\"\nprecision = \"fp32\"\n[vary]\n{vary}",
        tiny_model().display().to_string(),
        train.display().to_string()
    );
    let path = dir.join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sweep(config: &Path, out: &Path, more: &[&str]) -> std::process::Output {
    let args = ["sweep", "--config", config.to_str().unwrap(), "--output", out.to_str().unwrap()];
    bertkit(&[&args[..], more].concat())
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn a_grid_runs_every_setting_picks_the_best_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = sweep_file(tmp.path(), "lr = [1e-3, 1e-4]\nseed = [1, 2]\n");
    let out = tmp.path().join("sweep");
    let first = sweep(&config, &out, &[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let names = ["run-000", "run-001", "run-002", "run-003"];
    let mut scores = Vec::new();
    for (name, (lr, seed)) in names.iter().zip([(1e-3, 1), (1e-3, 2), (1e-4, 1), (1e-4, 2)]) {
        let state = json(&out.join(name).join("trainer_state.json"));
        assert_eq!(state["hyper"]["lr"], lr, "{name}: grid order, first flag slowest");
        assert_eq!(state["hyper"]["seed"], seed, "{name}");
        assert!(out.join(name).join("model.safetensors").exists(), "{name}: a normal run directory");
        scores.push((state["best_metric"].as_f64().unwrap(), name.to_string()));
    }
    let best = json(&out.join("best.json"));
    let top = scores.iter().map(|(s, _)| *s).fold(f64::MIN, f64::max);
    assert_eq!(best["value"].as_f64().unwrap(), top, "{best}");
    assert_eq!(best["metric"], "accuracy");
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.starts_with("run,lr,seed,accuracy,"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with(best["run"].as_str().unwrap()), "best first: {csv}");
    assert!(out.join("summary.png").exists() && out.join("summary.md").exists());

    // Resume: run-001 untouched, run-002 gone, run-003 stopped after its step-2 checkpoint.
    let untouched = std::fs::metadata(out.join("run-001/log.jsonl")).unwrap().modified().unwrap();
    std::fs::remove_dir_all(out.join("run-002")).unwrap();
    let run3 = out.join("run-003");
    for f in ["trainer_state.json", "eval_results.json", "model.safetensors"] {
        std::fs::remove_file(run3.join(f)).unwrap();
    }
    std::fs::remove_dir_all(run3.join("checkpoint-4")).unwrap();
    let again = sweep(&config, &out, &[]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("(2 already finished)"), "{stderr}");
    assert_eq!(std::fs::metadata(out.join("run-001/log.jsonl")).unwrap().modified().unwrap(), untouched);
    assert!(std::fs::read_to_string(out.join("logs/run-003.txt")).unwrap().contains("resuming from"));
    for name in names {
        assert!(out.join(name).join("trainer_state.json").exists(), "{name} finished");
    }
    assert_eq!(json(&run3.join("trainer_state.json"))["global_step"], 4);
}

#[test]
fn mistakes_are_one_line_before_any_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let config = sweep_file(tmp.path(), "lrr = [1e-3]\n");
    let bad = sweep(&config, &out, &[]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(stderr.contains("run-000") && stderr.contains("--lrr"), "{stderr}");
    assert!(!out.exists(), "nothing written");
    let config = sweep_file(tmp.path(), "lr = [0]\n");
    let stderr = String::from_utf8_lossy(&sweep(&config, &out, &[]).stderr).to_string();
    assert!(stderr.contains("--lr") && stderr.contains("greater than 0"), "{stderr}");

    // Another plan in the same directory is refused, then replaced with --overwrite.
    let config = sweep_file(tmp.path(), "seed = [1]\n");
    assert!(sweep(&config, &out, &[]).status.success());
    let config = sweep_file(tmp.path(), "seed = [2]\n");
    let refused = sweep(&config, &out, &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("holds a different sweep"), "{stderr}");
    assert!(sweep(&config, &out, &["--overwrite"]).status.success());
    assert_eq!(json(&out.join("run-000/trainer_state.json"))["hyper"]["seed"], 2);
}

/// A SIGTERM sent to the sweep process alone (as a job scheduler or `kill PID` does) stops its
/// running children too: each saves a checkpoint and exits, the sweep says it was interrupted,
/// and no bertkit process of the sweep is left behind.
#[test]
fn sigterm_to_the_sweep_stops_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = sweep_file(tmp.path(), "lr = [1e-3, 1e-4]\n");
    // Long runs that checkpoint at every evaluation (2 steps), so each is mid-training when the
    // signal comes.
    let text = std::fs::read_to_string(&config).unwrap().replace("max-steps = 4", "max-steps = 100000");
    std::fs::write(&config, text).unwrap();
    let out = tmp.path().join("sweep");
    let args = ["sweep", "--config", config.to_str().unwrap(), "--output", out.to_str().unwrap()];
    let mut sweep = std::process::Command::new(env!("CARGO_BIN_EXE_bertkit"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !(out.join("run-000/checkpoint-2").exists() && out.join("run-001/checkpoint-2").exists()) {
        assert!(started.elapsed().as_secs() < 120, "the runs did not reach a checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    unsafe { libc::kill(sweep.id() as libc::pid_t, libc::SIGTERM) };
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(status) = sweep.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed().as_secs() < 60, "the sweep did not stop");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sweep.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success() && stderr.contains("interrupted"), "{stderr}");
    // No process of this sweep's runs is left.
    let marker = out.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains(&marker), "left running: {cmdline}");
    }
}
