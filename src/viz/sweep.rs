//! A sweep at a glance: the metric of every run against each flag that varied, one panel per
//! flag (numbers on their own axis, on a log scale when they span 10x or more; other values
//! as categories).

use std::path::Path;

use anyhow::{Result, bail};
use plotters::prelude::*;

use super::{FONT, init_fonts};

/// One run's flags that varied, as the sweep's TOML gave them.
pub type Trial = std::collections::BTreeMap<String, toml::Value>;

/// A flag value as a word: strings bare, numbers as written.
pub fn value_word(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    }
}

/// Where one flag's values go on the x axis, and how the axis is labelled.
struct Axis {
    flag: String,
    xs: Vec<f64>,
    log: bool,
    categories: Vec<String>,
}

fn axis(flag: &str, points: &[(Trial, f64)]) -> Axis {
    let numbers: Option<Vec<f64>> = points
        .iter()
        .map(|(t, _)| t.get(flag).and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))))
        .collect();
    if let Some(xs) = numbers {
        let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let log = lo > 0.0 && hi / lo >= 10.0;
        let xs = if log { xs.iter().map(|x| x.log10()).collect() } else { xs };
        return Axis { flag: flag.into(), xs, log, categories: Vec::new() };
    }
    let mut categories: Vec<String> =
        points.iter().map(|(t, _)| t.get(flag).map_or(String::new(), value_word)).collect();
    let xs = categories.clone();
    categories.sort();
    categories.dedup();
    let xs = xs.iter().map(|c| categories.iter().position(|k| k == c).unwrap_or(0) as f64).collect();
    Axis { flag: flag.into(), xs, log: false, categories }
}

/// Writes the picture to `path` (PNG) from each run's varied flags and metric value.
pub fn plot_sweep(points: &[(Trial, f64)], metric: &str, path: &Path) -> Result<()> {
    let Some((first, _)) = points.first() else { bail!("no run has a value of {metric} yet") };
    init_fonts();
    let axes: Vec<Axis> = first.keys().map(|flag| axis(flag, points)).collect();
    let root = BitMapBackend::new(path, (420 * axes.len() as u32, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&format!("{metric} of each run"), (FONT, 20))?;
    let ys: Vec<f64> = points.iter().map(|(_, y)| *y).collect();
    let (y0, y1) = ys.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &y| (lo.min(y), hi.max(y)));
    let pad = ((y1 - y0) * 0.1).max(1e-3);
    for (area, axis) in root.split_evenly((1, axes.len())).iter().zip(&axes) {
        let (x0, x1) = axis.xs.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let xpad = if x1 > x0 { (x1 - x0) * 0.15 } else { (x0.abs() * 0.1).max(0.5) };
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((x0 - xpad)..(x1 + xpad), (y0 - pad)..(y1 + pad))?;
        let label = |x: &f64| match (axis.log, axis.categories.is_empty()) {
            (true, _) => number(10f64.powf(*x)),
            (false, true) => number(*x),
            (false, false) => {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    axis.categories.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        };
        chart
            .configure_mesh()
            .x_desc(if axis.log { format!("{} (log scale)", axis.flag) } else { axis.flag.clone() })
            .y_desc(metric)
            .x_labels(6)
            .x_label_formatter(&label)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        let style = ShapeStyle { color: Palette99::pick(0).to_rgba(), filled: true, stroke_width: 1 };
        chart.draw_series(axis.xs.iter().zip(&ys).map(|(&x, &y)| Circle::new((x, y), 5, style)))?;
    }
    root.present()?;
    Ok(())
}

/// A tick label: short, in scientific notation for learning-rate-sized numbers.
fn number(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-2 || x.abs() >= 1e5) {
        return format!("{x:.1e}");
    }
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
