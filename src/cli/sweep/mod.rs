//! `bertkit sweep`: a grid or random search over training flags. Each run is an ordinary run
//! directory (`run-000/`, ...) made by a `bertkit finetune`/`pretrain` child process, its console
//! output in `logs/`; the plan is `sweep.json`; the comparison is `summary.csv`/`.md`/`.png` and
//! `best.json`. Running the same sweep again keeps the finished runs, resumes interrupted ones
//! from their last checkpoint and runs the rest.

pub mod config;
mod summary;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use self::config::{SweepConfig, Trial, flag_words};
use bertkit::values::positive;

#[derive(clap::Args)]
pub struct Args {
    /// The sweep file (TOML): the command, the flags every run gets, the flags to vary (README).
    #[arg(long)]
    config: PathBuf,
    /// Where the runs and the summary go (default: the file's `output`).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Runs at a time, CPU threads divided among them (default: the file's `parallel`, else 1).
    #[arg(long, value_parser = positive)]
    parallel: Option<usize>,
    /// Replace the runs of a different sweep in --output.
    #[arg(long)]
    overwrite: bool,
}

/// One planned run: its directory name and command line (without the sweep's own flags).
struct Run {
    name: String,
    trial: Trial,
    argv: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let config = SweepConfig::read(&args.config)?;
    let Some(output) = args.output.clone().or_else(|| config.output.clone()) else {
        bail!("{}: no output: give --output DIR or output = \"DIR\" in the file", args.config.display());
    };
    let runs = plan(&config, &output)?;
    let parallel = args.parallel.or(config.parallel).unwrap_or(1).min(runs.len());
    prepare(&output, &config, &runs, args.overwrite)?;
    let finished = runs.iter().filter(|r| is_finished(&output.join(&r.name))).count();
    tracing::info!(
        "{} runs of `bertkit {}` in {} ({finished} already finished), {parallel} at a time",
        runs.len(),
        config.command,
        output.display()
    );
    let failures = execute(&runs, &output, parallel)?;
    let table = summary::collect(&output, &runs.iter().map(|r| (r.name.clone(), r.trial.clone())).collect::<Vec<_>>())?;
    summary::write(&output, &table)?;
    print!("{}", summary::markdown(&table));
    if let Some(best) = table.best() {
        println!(
            "best: {} ({}): {} {:.4} -> {}",
            best.name,
            best.flags_text(),
            table.metric,
            best.metric.unwrap_or(f64::NAN),
            output.join(&best.name).display()
        );
    }
    if !failures.is_empty() {
        bail!("{} run(s) failed: {} (their output: {}/logs/)", failures.len(), failures.join(", "), output.display());
    }
    Ok(())
}

/// The runs, each command line checked by the command's own parser before anything runs: a bad
/// flag or value is one line naming it and the run.
fn plan(config: &SweepConfig, output: &Path) -> Result<Vec<Run>> {
    let trials = config.trials();
    let width = (trials.len().max(2) - 1).to_string().len().max(3);
    trials
        .into_iter()
        .enumerate()
        .map(|(i, trial)| {
            let name = format!("run-{i:0width$}");
            let mut argv = vec![config.command.clone()];
            for (key, value) in config.args.iter().chain(&trial) {
                argv.extend(flag_words(key, value));
            }
            if let Some(metric) = &config.metric {
                argv.extend(["--metric-for-best".into(), metric.clone()]);
            }
            let mut checked = argv.clone();
            checked.extend(["--output".into(), output.join(&name).display().to_string()]);
            super::check_args(&checked).with_context(|| format!("{name} ({})", summary::flags_text(&trial)))?;
            Ok(Run { name, trial, argv })
        })
        .collect()
}

/// Creates the sweep directory, or checks that the one there was made by the same plan.
fn prepare(output: &Path, config: &SweepConfig, runs: &[Run], overwrite: bool) -> Result<()> {
    let plan = json!({"command": config.command, "runs": runs.iter().map(|r| json!({"name": r.name, "argv": r.argv})).collect::<Vec<_>>()});
    let path = output.join("sweep.json");
    if path.exists() {
        let before: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{}: not JSON", path.display()))?;
        if before == plan {
            return Ok(());
        }
        if !overwrite {
            bail!(
                "{}: holds a different sweep; pass --overwrite to replace its runs, or another --output",
                path.display()
            );
        }
        std::fs::remove_dir_all(output).with_context(|| format!("removing {}", output.display()))?;
    }
    std::fs::create_dir_all(output.join("logs")).with_context(|| format!("creating {}", output.display()))?;
    bertkit::fsutil::atomic_write(&path, serde_json::to_string_pretty(&plan)?.as_bytes())
}

/// A run is finished once its directory has the final `trainer_state.json` (a checkpoint keeps
/// its own inside `checkpoint-N/`).
fn is_finished(dir: &Path) -> bool {
    dir.join("trainer_state.json").exists()
}

/// Runs what is not finished, `parallel` at a time; returns the names of the runs that failed.
/// SIGINT or SIGTERM to the sweep is passed on to the running children (each saves a
/// checkpoint and exits; Ctrl-C reaches them anyway); no new run starts after it.
fn execute(runs: &[Run], output: &Path, parallel: usize) -> Result<Vec<String>> {
    let todo: Vec<&Run> = runs.iter().filter(|r| !is_finished(&output.join(&r.name))).collect();
    let threads = (bertkit::device::physical_cores() / parallel).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let bar = bertkit::progress::items_bar(todo.len() as u64, "runs");
    let (next, failures) = (AtomicUsize::new(0), Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                while let Some(run) = todo.get(next.fetch_add(1, Ordering::SeqCst)) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    bar.set_message(run.name.clone());
                    match run_one(run, output, threads, &stop) {
                        Ok(true) => {}
                        Ok(false) => failures.lock().unwrap().push(run.name.clone()),
                        Err(e) => {
                            bar.suspend(|| tracing::error!("{}: {e:#}", run.name));
                            failures.lock().unwrap().push(run.name.clone());
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted: run the same sweep again to resume (finished runs are kept)");
    }
    Ok(failures.into_inner().unwrap())
}

/// One child process: a fresh run, or the continuation of an interrupted one from its last
/// checkpoint. Its console output goes to `logs/NAME.txt`.
fn run_one(run: &Run, output: &Path, threads: usize, stop: &AtomicBool) -> Result<bool> {
    let dir = output.join(&run.name);
    let mut argv = run.argv.clone();
    argv.extend(["--output".into(), dir.display().to_string(), "--threads".into(), threads.to_string()]);
    let checkpoints = bertkit::train::run_dir::list_checkpoints(&dir)?;
    match checkpoints.last().map(|(_, path)| path) {
        Some(checkpoint) => argv.extend(["--resume-from".into(), checkpoint.display().to_string()]),
        None => argv.push("--overwrite".into()),
    }
    let log_path = output.join("logs").join(format!("{}.txt", run.name));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting bertkit")?;
    let mut told = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        // A SIGTERM sent to the sweep alone (a scheduler, `kill PID`) must stop its runs too.
        if stop.load(Ordering::SeqCst) && !told {
            // SAFETY: kill(2) on our own child's pid, which is not reaped before try_wait says so.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            told = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
