//! Attributions as coloured text: each token's background is its share in the output (red
//! for, blue against; for rollout, blue by amount), one row per model, target and method, as
//! PNG, SVG or a self-contained HTML page (value of each token on hover).

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::heatmap::{colour, render, text_width};
use super::html::fill;
use super::{FONT, init_fonts};

/// One line of coloured text.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    pub caption: String,
    pub scores: Vec<f32>,
    /// Signed values (a diverging scale) rather than amounts.
    pub signed: bool,
}

/// A text's tokens and the rows that colour them.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Figure {
    pub title: String,
    /// Each token as shown: its text, with a leading space where the text had one.
    pub pieces: Vec<String>,
    /// Special tokens (`[CLS]`, `[SEP]`) are coloured but left out of each row's scale: rollout
    /// gives them most of the mass, which would wash out the words.
    pub special: Vec<bool>,
    pub rows: Vec<Row>,
}

const WIDTH: i32 = 1100;
const FONT_SIZE: f64 = 15.0;
const LINE: i32 = 24;

/// Where each token of a row goes: (line, x) from the left margin, wrapping at the width.
fn place(pieces: &[String]) -> Vec<(i32, i32)> {
    let (mut line, mut x) = (0, 0);
    pieces
        .iter()
        .map(|p| {
            let w = text_width(p, FONT_SIZE);
            if x + w > WIDTH - 40 && x > 0 {
                (line, x) = (line + 1, 0);
            }
            let at = (line, x);
            x += w;
            at
        })
        .collect()
}

fn row_height(pieces: &[String]) -> i32 {
    let lines = place(pieces).last().map_or(1, |p| p.0 + 1);
    28 + lines * LINE + 14
}

/// A row's colour range over its non-special tokens (all of them if there are no others):
/// (0, max |value|) for signed values; (min, max) for amounts, which are all alike in rollout.
fn range(fig: &Figure, row: &Row) -> (f32, f32) {
    let mut words: Vec<f32> = row.scores.iter().zip(&fig.special).filter(|(_, s)| !**s).map(|(v, _)| *v).collect();
    if words.is_empty() {
        words = row.scores.clone();
    }
    let lo = if row.signed { 0.0 } else { words.iter().copied().fold(f32::INFINITY, f32::min) };
    let hi = words.iter().fold(0f32, |m, v| m.max(v.abs()));
    (lo.min(hi), hi)
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, fig: &Figure) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let top_left = Pos::new(HPos::Left, VPos::Top);
    root.draw(&Text::new(fig.title.clone(), (20, 12), TextStyle::from((FONT, 20).into_font()).pos(top_left)))?;
    let grey = BLACK.mix(0.7);
    let caption = TextStyle::from((FONT, 14).into_font()).color(&grey).pos(top_left);
    let token = TextStyle::from((FONT, FONT_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let places = place(&fig.pieces);
    let mut y = 48;
    for row in &fig.rows {
        root.draw(&Text::new(row.caption.clone(), (20, y), caption.clone()))?;
        let (lo, hi) = range(fig, row);
        let max = (hi - lo).max(1e-12);
        for ((piece, &(line, x)), &v) in fig.pieces.iter().zip(&places).zip(&row.scores) {
            let (x, top) = (20 + x, y + 24 + line * LINE);
            let w = text_width(piece, FONT_SIZE);
            let v = (v - lo).clamp(-max, max);
            root.draw(&Rectangle::new([(x, top), (x + w, top + LINE - 2)], colour(v, max, row.signed).filled()))?;
            let ink = if v.abs() > 0.6 * max { &WHITE } else { &BLACK };
            root.draw(&Text::new(piece.clone(), (x + 2, top + LINE / 2), token.color(ink)))?;
        }
        y += row_height(&fig.pieces);
    }
    root.present()?;
    Ok(())
}

/// The figure as PNG or SVG, by the file's extension.
pub(crate) fn render_text(path: &Path, fig: &Figure) -> Result<()> {
    init_fonts();
    let height = 60 + fig.rows.len() as i32 * row_height(&fig.pieces);
    render(path, (WIDTH as u32, height as u32), |root| draw(root, fig), |root| draw(root, fig))
}

/// The figure as an HTML page: the data as JSON, the text put in by `textContent`.
pub(crate) fn page(fig: &Figure) -> String {
    let data = serde_json::to_value(fig).expect("plain data");
    fill(TEMPLATE, &fig.title, &data)
}

const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
  body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
  h1 { font-size: 20px; margin: 0 0 12px; }
  .row { margin: 14px 0 18px; }
  .caption { color: #555; font-size: 13px; margin-bottom: 4px; }
  .text { line-height: 1.9; font-size: 15px; }
  .tok { padding: 2px 0; border-radius: 2px; white-space: pre-wrap; }
  .legend { color: #777; font-size: 12px; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div class="legend">red: pushes the output up · blue: pulls it down (rollout: how much reaches the target, from least to most) · hover a token for its value</div>
<div id="rows"></div>
<script id="data" type="application/json">{{DATA}}</script>
<script>
const data = JSON.parse(document.getElementById("data").textContent);
document.getElementById("title").textContent = data.title;
function colour(v, max, signed) {
  const t = max > 0 ? Math.max(-1, Math.min(1, v / max)) : 0;
  const mix = (a, b, t) => a.map((x, i) => Math.round(x + (b[i] - x) * t));
  const c = !signed ? mix([255, 255, 255], [33, 102, 172], Math.abs(t))
    : t >= 0 ? mix([255, 255, 255], [178, 24, 43], t) : mix([255, 255, 255], [33, 102, 172], -t);
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
const rows = document.getElementById("rows");
for (const row of data.rows) {
  const div = document.createElement("div");
  div.className = "row";
  const cap = document.createElement("div");
  cap.className = "caption";
  cap.textContent = row.caption;
  div.appendChild(cap);
  const text = document.createElement("div");
  text.className = "text";
  let words = row.scores.filter((v, i) => !data.special[i]);
  if (words.length === 0) words = row.scores;
  const hi = words.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const lo = row.signed ? 0 : Math.min(hi, words.reduce((m, v) => Math.min(m, v), Infinity));
  const max = Math.max(1e-12, hi - lo);
  const frag = document.createDocumentFragment();
  data.pieces.forEach((piece, i) => {
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = piece;
    const v = Math.max(-max, Math.min(max, row.scores[i] - lo));
    span.style.background = colour(v, max, row.signed);
    if (Math.abs(v) > 0.6 * max) span.style.color = "#fff";
    span.title = row.scores[i].toPrecision(4);
    frag.appendChild(span);
  });
  text.appendChild(frag);
  div.appendChild(text);
  rows.appendChild(div);
}
</script>
</body>
</html>
"##;
