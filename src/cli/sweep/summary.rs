//! The comparison of a sweep's runs, read from their run directories: `summary.csv` and
//! `summary.md` (best first), `best.json`, and `summary.png` (the metric against each flag).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::config::{Trial, value_word};
use bertkit::train::TrainConfig;

pub struct Row {
    pub name: String,
    pub trial: Trial,
    /// The run's best value of the sweep's metric (`trainer_state.json`'s `best_metric`).
    pub metric: Option<f64>,
    pub best_step: Option<u64>,
    pub steps: Option<u64>,
    /// Training time of the process that finished the run.
    pub seconds: Option<f64>,
    pub finished: bool,
}

impl Row {
    pub fn flags_text(&self) -> String {
        flags_text(&self.trial)
    }
}

pub struct Table {
    pub metric: String,
    pub rows: Vec<Row>,
}

impl Table {
    pub fn best(&self) -> Option<&Row> {
        self.rows.first().filter(|r| r.metric.is_some())
    }
}

/// `batch-size 16, lr 0.00005`
pub fn flags_text(trial: &Trial) -> String {
    trial.iter().map(|(k, v)| format!("{k} {}", value_word(v))).collect::<Vec<_>>().join(", ")
}

/// Every run's outcome, best first (by its metric, maximised or minimised as Trainer would),
/// runs without a value last.
pub fn collect(output: &Path, runs: &[(String, Trial)]) -> Result<Table> {
    let mut metric = None;
    let mut rows = Vec::new();
    for (name, trial) in runs {
        let dir = output.join(name);
        let state = read_json(&dir.join("trainer_state.json"))?;
        if let Some(m) = state.as_ref().and_then(|s| s["metric_for_best"].as_str()) {
            metric.get_or_insert_with(|| m.to_string());
        }
        let end = bertkit::train::log::read_log(&dir.join("log.jsonl"))
            .ok()
            .and_then(|log| log.into_iter().rev().find(|r| r["event"] == "end"));
        rows.push(Row {
            name: name.clone(),
            trial: trial.clone(),
            metric: state.as_ref().and_then(|s| s["best_metric"].as_f64()),
            best_step: state.as_ref().and_then(|s| s["best_step"].as_u64()),
            steps: state.as_ref().and_then(|s| s["global_step"].as_u64()),
            seconds: end.and_then(|e| e["this_process"]["seconds"].as_f64()),
            finished: state.is_some(),
        });
    }
    let metric = metric.unwrap_or_else(|| "metric".into());
    let sign = if TrainConfig::greater_is_better(&metric) { -1.0 } else { 1.0 };
    rows.sort_by(|a, b| {
        let key = |r: &Row| r.metric.map_or(f64::INFINITY, |m| sign * m);
        key(a).total_cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
    Ok(Table { metric, rows })
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?))
}

fn cell(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.digits$}"))
}

fn columns(table: &Table) -> Vec<String> {
    table.rows.first().map(|r| r.trial.keys().cloned().collect()).unwrap_or_default()
}

/// The table as Markdown: one row per run, best first.
pub fn markdown(table: &Table) -> String {
    let flags = columns(table);
    let header: Vec<String> = ["run".into()]
        .into_iter()
        .chain(flags.iter().cloned())
        .chain([table.metric.clone(), "best step".into(), "steps".into(), "seconds".into()])
        .collect();
    let mut md = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for r in &table.rows {
        let values = flags.iter().map(|k| r.trial.get(k).map_or(String::new(), value_word));
        let status = if r.finished { cell(r.metric, 4) } else { "unfinished".into() };
        let cells: Vec<String> = [r.name.clone()]
            .into_iter()
            .chain(values)
            .chain([
                status,
                cell(r.best_step.map(|s| s as f64), 0),
                cell(r.steps.map(|s| s as f64), 0),
                cell(r.seconds, 1),
            ])
            .collect();
        md += &format!("| {} |\n", cells.join(" | "));
    }
    md
}

/// `summary.md`, `summary.csv`, `best.json` and `summary.png` in the sweep directory.
pub fn write(output: &Path, table: &Table) -> Result<()> {
    use bertkit::fsutil::atomic_write;
    atomic_write(&output.join("summary.md"), markdown(table).as_bytes())?;
    let flags = columns(table);
    let mut csv = csv::Writer::from_writer(Vec::new());
    let header = ["run"].into_iter().chain(flags.iter().map(String::as_str)).chain([
        table.metric.as_str(),
        "best_step",
        "steps",
        "seconds",
        "finished",
    ]);
    csv.write_record(header)?;
    for r in &table.rows {
        let values = flags.iter().map(|k| r.trial.get(k).map_or(String::new(), value_word));
        let numbers = [
            r.metric.map(|m| m.to_string()),
            r.best_step.map(|s| s.to_string()),
            r.steps.map(|s| s.to_string()),
            r.seconds.map(|s| format!("{s:.1}")),
        ];
        csv.write_record(
            [r.name.clone()]
                .into_iter()
                .chain(values)
                .chain(numbers.map(Option::unwrap_or_default))
                .chain([r.finished.to_string()]),
        )?;
    }
    atomic_write(&output.join("summary.csv"), &csv.into_inner()?)?;
    if let Some(best) = table.best() {
        let flags = serde_json::to_value(&best.trial)?;
        let record = json!({"run": best.name, "path": output.join(&best.name), "metric": table.metric, "value": best.metric, "flags": flags});
        atomic_write(&output.join("best.json"), serde_json::to_string_pretty(&record)?.as_bytes())?;
    }
    let points: Vec<(Trial, f64)> = table.rows.iter().filter_map(|r| r.metric.map(|m| (r.trial.clone(), m))).collect();
    if let Err(e) = bertkit::viz::sweep::plot_sweep(&points, &table.metric, &output.join("summary.png")) {
        tracing::warn!("could not draw the sweep summary: {e:#}");
    }
    Ok(())
}
