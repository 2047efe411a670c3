//! Attention heatmaps as PNG or SVG: one or more labelled panels side by side, or a grid of
//! small multiples. Rows are the attending (query) tokens, columns the attended-to (key) tokens.

use std::path::Path;

use anyhow::{Result, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::attention::Matrix;
use super::{FONT, init_fonts};

/// One matrix to draw, with its caption; `diverging` for signed values (differences).
pub(crate) struct Heatmap {
    pub caption: String,
    pub matrix: Matrix,
    pub diverging: bool,
}

/// Colour of `v` on a white-to-dark-blue scale for [0, max], or blue-white-red for [-max, max].
pub(super) fn colour(v: f32, max: f32, diverging: bool) -> RGBColor {
    let lerp = |a: (f32, f32, f32), b: (f32, f32, f32), t: f32| {
        let t = t.clamp(0.0, 1.0);
        RGBColor((a.0 + (b.0 - a.0) * t) as u8, (a.1 + (b.1 - a.1) * t) as u8, (a.2 + (b.2 - a.2) * t) as u8)
    };
    let white = (255.0, 255.0, 255.0);
    if diverging {
        let t = if max > 0.0 { v / max } else { 0.0 };
        if t >= 0.0 { lerp(white, (178.0, 24.0, 43.0), t) } else { lerp(white, (33.0, 102.0, 172.0), -t) }
    } else {
        let t = if max > 0.0 { v / max } else { 0.0 };
        // Through a mid blue so small weights stay visible and large ones dark.
        if t < 0.5 {
            lerp(white, (107.0, 174.0, 214.0), t * 2.0)
        } else {
            lerp((107.0, 174.0, 214.0), (8.0, 48.0, 107.0), (t - 0.5) * 2.0)
        }
    }
}

/// Largest value (or absolute value) over the panels of each kind.
fn scales(panels: &[&Heatmap]) -> (f32, f32) {
    let max_of = |diverging: bool| {
        panels
            .iter()
            .filter(|p| p.diverging == diverging)
            .flat_map(|p| p.matrix.iter().flatten())
            .fold(0f32, |m, &v| m.max(v.abs()))
    };
    (max_of(false).max(1e-6), max_of(true).max(1e-6))
}

pub(super) fn text_width(s: &str, size: f64) -> i32 {
    (s.chars().count() as f64 * size * 0.62) as i32 + 4
}

fn draw_matrix<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    origin: (i32, i32),
    cell: i32,
    m: &Matrix,
    max: f32,
    diverging: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    for (r, row) in m.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let (x, y) = (origin.0 + c as i32 * cell, origin.1 + r as i32 * cell);
            area.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], colour(v, max, diverging).filled()))?;
        }
    }
    let n = m.len() as i32;
    area.draw(&Rectangle::new([origin, (origin.0 + n * cell, origin.1 + n * cell)], BLACK.mix(0.4).stroke_width(1)))?;
    Ok(())
}

/// A vertical colour bar with min/mid/max ticks.
fn draw_colourbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    height: i32,
    max: f32,
    diverging: bool,
    font: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let lo = if diverging { -max } else { 0.0 };
    let steps = 100;
    for i in 0..steps {
        let v = max - (max - lo) * i as f32 / steps as f32;
        let y0 = at.1 + height * i / steps;
        let y1 = at.1 + height * (i + 1) / steps;
        area.draw(&Rectangle::new([(at.0, y0), (at.0 + 16, y1 + 1)], colour(v, max, diverging).filled()))?;
    }
    area.draw(&Rectangle::new([at, (at.0 + 16, at.1 + height)], BLACK.mix(0.4).stroke_width(1)))?;
    let style = TextStyle::from((FONT, font).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (frac, v) in [(0.0, max), (0.5, (max + lo) / 2.0), (1.0, lo)] {
        let y = at.1 + (height as f32 * frac) as i32;
        area.draw(&Text::new(format!("{v:+.2}").trim_start_matches('+').to_string(), (at.0 + 20, y), style.clone()))?;
    }
    Ok(())
}

/// Geometry of a labelled panel figure.
struct Layout {
    cell: i32,
    font: f64,
    label: i32,
    panel: i32,
    gap: i32,
    top: i32,
}

fn layout(tokens: &[String]) -> Layout {
    let n = tokens.len().max(1) as i32;
    let cell = (640 / n).clamp(12, 40);
    let font = (cell as f64 * 0.75).clamp(10.0, 15.0);
    let label = tokens.iter().map(|t| text_width(t, font)).max().unwrap_or(20) + 8;
    Layout { cell, font, label, panel: n * cell, gap: 30, top: 70 }
}

fn labelled_panels<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    tokens: &[String],
    panels: &[Heatmap],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let l = layout(tokens);
    root.fill(&WHITE)?;
    let refs: Vec<&Heatmap> = panels.iter().collect();
    let (seq_max, div_max) = scales(&refs);
    let title_style = TextStyle::from((FONT, 20).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
    root.draw(&Text::new(title.to_string(), (12, 10), title_style))?;
    let small = (FONT, 13).into_font().color(&BLACK.mix(0.7)).pos(Pos::new(HPos::Left, VPos::Top));
    root.draw(&Text::new("rows: attending token (query) · columns: attended-to token (key)", (12, 38), small))?;
    let mut x = 10;
    let row_style = TextStyle::from((FONT, l.font).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let col_style = TextStyle::from((FONT, l.font).into_font().transform(FontTransform::Rotate90))
        .pos(Pos::new(HPos::Left, VPos::Center));
    let caption_style = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, p) in panels.iter().enumerate() {
        let origin = (x + l.label, l.top + 10);
        root.draw(&Text::new(p.caption.clone(), (origin.0 + l.panel / 2, origin.1 - 4), caption_style.clone()))?;
        draw_matrix(&root, origin, l.cell, &p.matrix, if p.diverging { div_max } else { seq_max }, p.diverging)?;
        for (k, t) in tokens.iter().enumerate() {
            let mid = k as i32 * l.cell + l.cell / 2;
            root.draw(&Text::new(t.clone(), (origin.0 - 5, origin.1 + mid), row_style.clone()))?;
            root.draw(&Text::new(t.clone(), (origin.0 + mid, origin.1 + l.panel + 5), col_style.clone()))?;
        }
        x = origin.0 + l.panel + l.gap;
        // A colour bar after the last panel of each scale.
        let next_differs = panels.get(i + 1).is_none_or(|n| n.diverging != p.diverging);
        if next_differs {
            draw_colourbar(
                &root,
                (x - l.gap + 12, origin.1),
                l.panel,
                if p.diverging { div_max } else { seq_max },
                p.diverging,
                12.0,
            )?;
            x += 70;
        }
    }
    root.present()?;
    Ok(())
}

/// Draws `panels` side by side with token labels (PNG or SVG by the file's extension).
pub(crate) fn render_panels(path: &Path, title: &str, tokens: &[String], panels: &[Heatmap]) -> Result<()> {
    init_fonts();
    let l = layout(tokens);
    let kinds = 1 + usize::from(panels.iter().any(|p| p.diverging) && panels.iter().any(|p| !p.diverging));
    let width = 20 + panels.len() as i32 * (l.label + l.panel + l.gap) + kinds as i32 * 70;
    let height = l.top + 10 + l.panel + l.label + 20;
    let size = (width.max(520) as u32, height as u32);
    render(
        path,
        size,
        |root| labelled_panels(root, title, tokens, panels),
        |root| labelled_panels(root, title, tokens, panels),
    )
}

/// Small multiples: `rows[r].1[c]`, with row and column labels, one shared scale per kind.
pub(crate) fn render_grid(
    path: &Path,
    title: &str,
    rows: &[(String, Vec<Heatmap>)],
    col_labels: &[String],
) -> Result<()> {
    init_fonts();
    let n = rows.first().and_then(|r| r.1.first()).map_or(1, |h| h.matrix.len()) as i32;
    let cell = (110 / n).clamp(2, 12);
    let panel = n * cell;
    let (gap, left, top) = (10, 90, 90);
    let cols = col_labels.len() as i32;
    let width = left + cols * (panel + gap) + 90;
    let height = top + rows.len() as i32 * (panel + gap) + 20;
    let geometry = (cell, panel, gap, left, top);
    render(
        path,
        (width as u32, height as u32),
        |root| grid(root, title, rows, col_labels, geometry),
        |root| grid(root, title, rows, col_labels, geometry),
    )
}

fn grid<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    rows: &[(String, Vec<Heatmap>)],
    col_labels: &[String],
    (cell, panel, gap, left, top): (i32, i32, i32, i32, i32),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let all: Vec<&Heatmap> = rows.iter().flat_map(|r| r.1.iter()).collect();
    let (seq_max, div_max) = scales(&all);
    let title_style = TextStyle::from((FONT, 20).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
    root.draw(&Text::new(title.to_string(), (12, 10), title_style))?;
    let label = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (c, name) in col_labels.iter().enumerate() {
        root.draw(&Text::new(name.clone(), (left + c as i32 * (panel + gap) + panel / 2, top - 6), label.clone()))?;
    }
    let row_label = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (r, (name, panels)) in rows.iter().enumerate() {
        let y = top + r as i32 * (panel + gap);
        root.draw(&Text::new(name.clone(), (left - 8, y + panel / 2), row_label.clone()))?;
        for (c, p) in panels.iter().enumerate() {
            let x = left + c as i32 * (panel + gap);
            draw_matrix(&root, (x, y), cell, &p.matrix, if p.diverging { div_max } else { seq_max }, p.diverging)?;
        }
    }
    let diverging = all.iter().any(|p| p.diverging);
    let bar_x = left + col_labels.len() as i32 * (panel + gap) + 10;
    let bar_h = (rows.len() as i32 * (panel + gap) - gap).min(300);
    draw_colourbar(&root, (bar_x, top), bar_h, if diverging { div_max } else { seq_max }, diverging, 12.0)?;
    root.present()?;
    Ok(())
}

/// Picks the backend from the extension and draws with it.
pub(super) fn render(
    path: &Path,
    size: (u32, u32),
    png: impl FnOnce(DrawingArea<BitMapBackend, Shift>) -> Result<()>,
    svg: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => png(BitMapBackend::new(path, size).into_drawing_area()),
        Some("svg") => svg(SVGBackend::new(path, size).into_drawing_area()),
        _ => bail!("{}: pictures are .png or .svg", path.display()),
    }
}
