//! The machine-readable record of a run: one JSON object per line (`log.jsonl`), flushed as it
//! is written so that a crash loses nothing already logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::tensorboard::EventWriter;

pub(crate) struct RunLog {
    /// None on ranks other than 0 of a data-parallel run, which log nothing.
    file: Option<std::fs::File>,
    path: PathBuf,
    /// TensorBoard event files written from the same records, when asked for.
    events: Option<EventWriter>,
}

impl RunLog {
    /// Starts a fresh log, or when resuming at `resume_step` > 0 keeps the records up to that
    /// step (later ones belong to the part of the run that is being redone). With
    /// `tensorboard`, every record also goes to a new event file in that directory.
    pub fn open(path: &Path, resume_step: usize, tensorboard: Option<&Path>) -> Result<Self> {
        if !crate::distributed::is_main() {
            return Ok(RunLog { file: None, path: path.to_path_buf(), events: None });
        }
        let kept: Vec<String> = if resume_step > 0 && path.exists() {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .lines()
                .filter(|line| {
                    serde_json::from_str::<Value>(line)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_none_or(|s| s as usize <= resume_step)
                })
                .map(String::from)
                .collect()
        } else {
            Vec::new()
        };
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        crate::fsutil::atomic_write(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let events = tensorboard.map(|dir| EventWriter::create(dir, resume_step)).transpose()?;
        Ok(RunLog { file: Some(file), path: path.to_path_buf(), events })
    }

    /// Appends one record, stamped with the wall-clock time (seconds since the Unix epoch).
    pub fn write(&mut self, mut record: Value) -> Result<()> {
        if let Value::Object(map) = &mut record {
            map.insert("time".into(), unix_time().into());
        }
        let Some(file) = &mut self.file else { return Ok(()) };
        writeln!(file, "{record}")
            .and_then(|_| file.flush())
            .with_context(|| format!("writing {}", self.path.display()))?;
        match &mut self.events {
            Some(events) => events.write_record(&record),
            None => Ok(()),
        }
    }
}

/// Wall-clock seconds since the Unix epoch: the `time` of every record, and TensorBoard's
/// `wall_time`.
pub(crate) fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// All records of a log file, in order.
pub fn read_log(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1)))
        .collect()
}
