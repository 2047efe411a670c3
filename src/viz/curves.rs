//! Loss and metric curves of a run, drawn from its `log.jsonl` as PNG and SVG.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{FONT, init_fonts};

/// One panel: a title and named series of (step, value).
pub struct Panel {
    pub title: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Groups a log into panels: losses together, metrics within [0, 1] together, any other
/// metric (e.g. perplexity) on its own scale.
fn panels(records: &[serde_json::Value]) -> Vec<Panel> {
    let mut train_loss = Vec::new();
    let mut eval: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in records {
        let Some(step) = r["step"].as_f64() else { continue };
        match r["event"].as_str() {
            Some("train") => train_loss.extend(r["loss"].as_f64().map(|l| (step, l))),
            Some("eval") => {
                for (k, v) in r["metrics"].as_object().into_iter().flatten() {
                    if let Some(v) = v.as_f64().filter(|v| v.is_finite()) {
                        eval.entry(k.clone()).or_default().push((step, v));
                    }
                }
            }
            _ => {}
        }
    }
    let mut losses = Panel { title: "loss".into(), series: vec![("train loss".into(), train_loss)] };
    let mut bounded = Panel { title: "evaluation".into(), series: vec![] };
    let mut others = Vec::new();
    for (name, points) in eval {
        if name.contains("loss") {
            losses.series.push((name, points));
        } else if points.iter().all(|&(_, v)| (0.0..=1.0).contains(&v)) {
            bounded.series.push((name, points));
        } else {
            others.push(Panel { title: name.clone(), series: vec![(name, points)] });
        }
    }
    std::iter::once(losses).chain((!bounded.series.is_empty()).then_some(bounded)).chain(others).collect()
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, panels: &[Panel], title: &str) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 22))?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(panels) {
        let points = panel.series.iter().flat_map(|(_, p)| p.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            continue;
        }
        let pad = ((y1 - y0) * 0.08).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0.min(x1 - 1.0)..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .x_labels(((x1 - x0).ceil() as usize + 1).clamp(2, 10))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for (i, (name, pts)) in panel.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = ShapeStyle { color, filled: true, stroke_width: 2 };
            let drawn = chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
            drawn.label(name.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            if pts.len() <= 50 {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, style)))?;
            }
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Writes `curves.png` and `curves.svg` into `out` from the records of a run's `log.jsonl`.
pub(crate) fn plot_run(records: &[serde_json::Value], out: &Path) -> Result<()> {
    init_fonts();
    let panels = panels(records);
    if panels.iter().all(|p| p.series.iter().all(|(_, s)| s.is_empty())) {
        bail!("{}: nothing to plot yet", out.display());
    }
    let title = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    plot_panels(&panels, &title, &out.join("curves"))
}

/// Draws panels side by side into `stem`.png and `stem`.svg.
pub fn plot_panels(panels: &[Panel], title: &str, stem: &Path) -> Result<()> {
    init_fonts();
    let size = (520 * panels.len() as u32, 440);
    let png = stem.with_extension("png");
    draw(BitMapBackend::new(&png, size).into_drawing_area(), panels, title)?;
    let svg = stem.with_extension("svg");
    draw(SVGBackend::new(&svg, size).into_drawing_area(), panels, title)?;
    Ok(())
}
