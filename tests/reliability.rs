//! Training never loses work: signals save a resumable checkpoint, SIGKILL at any moment leaves
//! the last complete one, a NaN stops (or is skipped) naming the step, a full disk while saving
//! leaves the previous checkpoint intact.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bertkit::fsutil::verify_manifest;
use bertkit::train::run_dir::list_checkpoints;
use common::{bertkit, finetune_tiny, synthetic_csv};
use rand::{Rng, SeedableRng};

/// `bertkit finetune` of the tiny model on `train` into `out`, logging every step, plus `extra` flags.
fn finetune_args(train: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut flags = vec!["--batch-size", "4", "--max-len", "24", "--log-every", "1"];
    flags.extend_from_slice(extra);
    finetune_tiny(train, out, &flags)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn wait_for_step(out: &Path, step: usize) {
    let start = Instant::now();
    let needle = format!("\"step\":{step},");
    while !std::fs::read_to_string(out.join("log.jsonl")).unwrap_or_default().contains(&needle) {
        assert!(start.elapsed().as_secs() < 60, "training did not reach step {step}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGINT (Ctrl-C) and SIGTERM (what schedulers send): the step finishes, a checkpoint is saved,
/// the exit code is 130 / 143, and the run resumes from that checkpoint to the end.
#[test]
fn sigint_and_sigterm_save_a_checkpoint_and_exit_130_or_143() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 200, 5);
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let out = tmp.path().join(format!("run-{signal}"));
        let args = finetune_args(&train, &out, &["--max-steps", "400"]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_bertkit")).args(&args).stderr(Stdio::null()).spawn().unwrap();
        wait_for_step(&out, 5);
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(child.wait().unwrap().code(), Some(code), "exit code after signal {signal}");
        let (step, checkpoint) = list_checkpoints(&out).unwrap().pop().expect("a checkpoint");
        assert!((5..400).contains(&step), "stopped at step {step}");
        verify_manifest(&checkpoint).unwrap();
        let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
        assert!(log.contains(&format!("{{\"event\":\"interrupted\",\"step\":{step}")), "{log}");

        let resumed = bertkit(&[args, vec!["--resume-from".into(), checkpoint.display().to_string()]].concat());
        assert!(resumed.status.success(), "resume after signal {signal}: {}", stderr(&resumed));
        assert_eq!(read_json(&out.join("trainer_state.json"))["global_step"], 400);
    }
}

/// SIGKILL at random moments (mid-step, mid-checkpoint): the newest complete checkpoint always
/// verifies, and resuming from it in the same directory ends with the uninterrupted run's weights.
#[test]
fn sigkill_at_any_moment_leaves_a_resumable_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 120, 7);
    let args = |out: &Path| finetune_args(&train, out, &["--max-steps", "24", "--eval-every", "2", "--dropout", "0.1"]);
    let reference = tmp.path().join("reference");
    assert!(bertkit(&args(&reference)).status.success());
    let want = std::fs::read(reference.join("model.safetensors")).unwrap();

    let kills = 10;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let mut resumed = 0;
    for k in 0..kills {
        let out = tmp.path().join(format!("killed-{k}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_bertkit"))
            .args(args(&out))
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !out.join("log.jsonl").exists() && start.elapsed().as_secs() < 30 {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let Some((step, latest)) = list_checkpoints(&out).unwrap().pop() else { continue };
        verify_manifest(&latest).unwrap();
        let again = bertkit(&[args(&out), vec!["--resume-from".into(), latest.display().to_string()]].concat());
        assert!(again.status.success(), "resume from {}: {}", latest.display(), stderr(&again));
        let got = std::fs::read(out.join("model.safetensors")).unwrap();
        assert!(got == want, "resumed from step {step} ends with different weights");
        resumed += 1;
    }
    assert!(resumed >= kills / 2, "only {resumed} of {kills} kills left a checkpoint to resume from");
}

/// A learning rate that blows the weights up: the run stops at the first non-finite loss, names
/// the step, and the checkpoint before it is intact. With --skip-nan-steps the updates are
/// skipped (and logged) until 10 in a row show the weights themselves are broken.
#[test]
fn nan_loss_stops_naming_the_step_or_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 100, 9);
    let blow_up = ["--max-steps", "30", "--lr", "1e8", "--warmup-steps", "20", "--eval-every", "2"];

    let out = tmp.path().join("stop");
    let stopped = bertkit(&finetune_args(&train, &out, &blow_up));
    assert!(!stopped.status.success());
    let err = stderr(&stopped);
    let line = err.lines().find(|l| l.contains("error:")).unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains("step 3: the loss is NaN") && line.contains("--skip-nan-steps"), "{line}");
    assert!(line.contains("checkpoint-2 is intact"), "{line}");
    let (step, checkpoint) = list_checkpoints(&out).unwrap().pop().unwrap();
    assert_eq!(step, 2);
    verify_manifest(&checkpoint).unwrap();

    let out = tmp.path().join("skip");
    let skipped = bertkit(&finetune_args(&train, &out, &[&blow_up[..], &["--skip-nan-steps"]].concat()));
    assert!(!skipped.status.success());
    let err = stderr(&skipped);
    assert!(err.contains("step 12: the loss is NaN") && err.contains("10 steps in a row"), "{err}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let skips: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "skipped_step")
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(skips, (3..=11).collect::<Vec<_>>(), "one log record per skipped step");
    // Skipped steps still count: checkpoints kept coming while updates were skipped.
    assert_eq!(list_checkpoints(&out).unwrap().pop().unwrap().0, 10);
}

/// The disk fills up while a checkpoint is written: a clear error naming the failed checkpoint
/// and the intact previous one, no half-written folder left behind, and resuming from the intact
/// one (on a disk with room) ends with the uninterrupted run's weights.
///
/// The full disk is a 1000 KiB tmpfs in a private mount namespace (`unshare`): one checkpoint of
/// the tiny model (~590 KB) fits, two do not.
#[test]
fn disk_full_while_saving_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("t.csv");
    synthetic_csv(&train, 60, 10);
    let flags = ["--max-steps", "6", "--eval-every", "2"];
    let reference = tmp.path().join("reference");
    assert!(bertkit(&finetune_args(&train, &reference, &flags)).status.success());

    let disk = tmp.path().join("disk");
    let rescued = tmp.path().join("rescued");
    std::fs::create_dir_all(&disk).unwrap();
    let quoted: Vec<String> =
        finetune_args(&train, &disk.join("run"), &flags).iter().map(|a| format!("'{a}'")).collect();
    // Inside the namespace: mount, train, then copy what is left out before the mount vanishes.
    let script = format!(
        "mount -t tmpfs -o size=1000k tmpfs '{disk}' || exit 99; '{exe}' {args} 2>'{tmp}/stderr'; echo $? >'{tmp}/code'; \
         ls -a '{disk}/run' >'{tmp}/listing'; cp -a '{disk}/run' '{rescued}'",
        disk = disk.display(),
        exe = env!("CARGO_BIN_EXE_bertkit"),
        args = quoted.join(" "),
        tmp = tmp.path().display(),
        rescued = rescued.display()
    );
    let status = Command::new("unshare").args(["-rm", "sh", "-c", &script]).status();
    if !status.as_ref().is_ok_and(|s| s.code() != Some(99) && s.code().is_some()) {
        // Without mount namespaces (some containers) there is no way to fill a disk safely.
        assert!(
            std::env::var("BERTKIT_REQUIRE_UNSHARE").as_deref() != Ok("1"),
            "unshare -rm with a tmpfs mount is unavailable: {status:?}"
        );
        eprintln!("SKIPPED: unshare -rm with a tmpfs mount is unavailable here ({status:?})");
        return;
    }
    let code = std::fs::read_to_string(tmp.path().join("code")).unwrap();
    assert_ne!(code.trim(), "0", "training on a full disk must fail");
    let err = std::fs::read_to_string(tmp.path().join("stderr")).unwrap();
    let line = err.lines().find(|l| l.contains("error:")).unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(line.contains("No space left on device"), "{line}");
    assert!(line.contains("saving") && line.contains("checkpoint-4 failed"), "{line}");
    assert!(line.contains("checkpoint-2 is intact"), "{line}");
    let listing = std::fs::read_to_string(tmp.path().join("listing")).unwrap();
    assert!(!listing.contains(".tmp"), "half-written files left behind:\n{listing}");
    assert!(!listing.contains("checkpoint-4"), "{listing}");

    let (step, checkpoint) = list_checkpoints(&rescued).unwrap().pop().unwrap();
    assert_eq!(step, 2);
    verify_manifest(&checkpoint).unwrap();
    let resume =
        [finetune_args(&train, &rescued, &flags), vec!["--resume-from".into(), checkpoint.display().to_string()]];
    let again = bertkit(&resume.concat());
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        std::fs::read(rescued.join("model.safetensors")).unwrap()
            == std::fs::read(reference.join("model.safetensors")).unwrap(),
        "resumed from the checkpoint that survived the full disk, the weights differ from the uninterrupted run"
    );
}

/// A batch that does not fit in memory: one error line naming the step, the batch and what to
/// change, exit code 1, no panic or C++ stack trace. The address space is capped (RLIMIT_AS) so
/// the allocation fails the same way on any machine; the attention scores of this batch alone
/// would need 8 GiB.
#[test]
fn out_of_memory_is_one_line_naming_the_step() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let train = tmp.path().join("long.csv");
    let mut csv = String::from("text,label\n");
    for i in 0..2048 {
        csv += &format!("{} {},{}\n", "the movie was a film of it ".repeat(80), ["good", "bad"][i % 2], i % 2);
    }
    std::fs::write(&train, csv).unwrap();
    let out = tmp.path().join("out");
    let args = finetune_tiny(&train, &out, &["--max-len", "512", "--batch-size", "2048", "--max-steps", "2"]);
    let limit = 6u64 << 30;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bertkit"));
    cmd.args(&args).env("RUST_BACKTRACE", "1");
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            let rlim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_AS, &rlim) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
    let failed = cmd.output().unwrap();
    let err = stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let line = errors[0];
    assert!(line.contains("step 1, a micro-batch of 2048 examples: out of memory ("), "{line}");
    assert!(line.contains("lower --batch-size") && line.contains("--gradient-checkpointing"), "{line}");
    assert!(line.contains("no checkpoint was saved before it"), "{line}");
    assert!(!err.contains("panicked") && !err.contains("frame #"), "{err}");
}
