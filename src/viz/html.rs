//! A self-contained HTML page with the two views of bertviz: the head view (the tokens in two
//! columns, a line from each attending token to each attended-to token whose opacity is the
//! weight, layer and head selectors, hover to focus one token, a second model side by side) and
//! the model view (every layer x head as a thumbnail; a click opens it in the head view).
//! No network, no CDN: data, style and script are all in the file.
//!
//! The page carries, per query token, only the keys it attends to with weight >= 0.01 (what a
//! line's opacity can show), at most `TOP_K` of them, rounded to 3 decimals: a 512-token window
//! of MiniLM (6 x 12) is then about 4 MB per model instead of 200, and draws at once. Exact
//! values are what `attention --json` writes.
//!
//! Model and user text only ever reaches the page as JSON data (with `<`, `>` and `&` escaped, so
//! `</script>` in a text cannot end the script) or through `textContent`; titles are
//! HTML-escaped.

use super::attention::AttentionMaps;

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that is safe inside a `<script>` element.
fn script_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// A page's template with its title (escaped) and its data (as script-safe JSON) put in: the
/// only way model and user text reaches any of bertkit's pages.
pub(crate) fn fill(template: &str, title: &str, data: &serde_json::Value) -> String {
    template.replace("{{TITLE}}", &escape_html(title)).replace("{{DATA}}", &script_json(data))
}

/// Keys kept per query token, the largest first.
const TOP_K: usize = 10;
/// The weight below which a line is not drawn (its opacity would not show).
const MIN_WEIGHT: f32 = 0.01;

/// One head's rows: per query token, the `(key, weight)` pairs worth a line.
type Edges = Vec<Vec<(usize, f64)>>;

fn edges(rows: &[Vec<f32>]) -> Edges {
    rows.iter()
        .map(|row| {
            let mut keys: Vec<usize> = (0..row.len()).filter(|&k| row[k] >= MIN_WEIGHT).collect();
            keys.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            keys.truncate(TOP_K);
            keys.sort_unstable();
            keys.into_iter().map(|k| (k, (row[k] as f64 * 1e3).round() / 1e3)).collect()
        })
        .collect()
}

/// Every layer's heads, then the mean over heads as one more, as edges.
fn model_edges(m: &AttentionMaps) -> Vec<Vec<Edges>> {
    (0..m.layers())
        .map(|l| {
            let mut heads: Vec<_> = m.maps[l].iter().map(|h| edges(h)).collect();
            heads.push(edges(&m.mean_over_heads(l)));
            heads
        })
        .collect()
}

/// One window of the text as every model reads it (a text that fits: one window).
pub(crate) struct Window<'a> {
    pub label: String,
    pub models: Vec<&'a AttentionMaps>,
}

pub(crate) fn page(text: &str, windows: &[Window], layer: usize, head: usize) -> String {
    let models = |w: &Window| -> Vec<serde_json::Value> {
        w.models
            .iter()
            .map(|m| serde_json::json!({"name": m.model, "tokens": m.tokens, "edges": model_edges(m)}))
            .collect()
    };
    let data = serde_json::json!({
        "text": text,
        "layer": layer,
        "head": head,
        "windows": windows.iter().map(|w| serde_json::json!({"label": w.label, "models": models(w)})).collect::<Vec<_>>(),
    });
    let names: Vec<&str> =
        windows.first().map(|w| w.models.iter().map(|m| m.model.as_str()).collect()).unwrap_or_default();
    let title = format!("Attention: {}", names.join(" vs "));
    fill(TEMPLATE, &title, &data)
}

const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
  body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  #text { color: #555; margin-bottom: 12px; white-space: pre-wrap; }
  .controls { margin-bottom: 12px; }
  .controls label { margin-right: 16px; }
  #views { display: flex; gap: 40px; flex-wrap: wrap; }
  .view h2 { font-size: 15px; margin: 0 0 6px; }
  .tok { font-size: 13px; cursor: default; }
  .tok.focus { font-weight: bold; fill: #b2182b; }
  .hint { color: #777; font-size: 12px; margin-top: 8px; }
  h2.section { font-size: 17px; margin: 28px 0 8px; }
  .grid { display: grid; gap: 4px; margin-bottom: 18px; }
  .grid canvas { border: 1px solid #ddd; cursor: pointer; }
  .grid canvas.chosen { border-color: #b2182b; }
  .grid .label { font-size: 11px; color: #666; align-self: center; }
</style>
</head>
<body>
<h1>{{TITLE}}</h1>
<div id="text"></div>
<div class="controls">
  <label id="window-label">Window <select id="window"></select></label>
  <label>Layer <select id="layer"></select></label>
  <label>Head <select id="head"></select></label>
</div>
<div id="views"></div>
<div class="hint">Left: attending token. Right: attended-to token. Line opacity = attention weight. Hover a token to see only its lines. Layers and heads count from 0, as in transformers.</div>
<h2 class="section">Model view</h2>
<div class="hint">Every layer (rows) and head (columns); click one to open it above.</div>
<div id="models"></div>
<script type="application/json" id="data">{{DATA}}</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const layerSel = document.getElementById("layer");
const headSel = document.getElementById("head");
document.getElementById("text").textContent = data.text;
const windowSel = document.getElementById("window");
data.windows.forEach((w, i) => windowSel.add(new Option(w.label, String(i))));
if (data.windows.length < 2) document.getElementById("window-label").style.display = "none";
// The models as they read the chosen window.
const current = () => data.windows[Number(windowSel.value)].models;
const first = data.windows[0].models[0];
const layers = first.edges.length, heads = first.edges[0].length - 1;
for (let l = 0; l < layers; l++) layerSel.add(new Option(String(l), String(l)));
for (let h = 0; h < heads; h++) headSel.add(new Option(String(h), String(h)));
headSel.add(new Option("mean of heads", "mean"));
layerSel.value = String(data.layer);
headSel.value = String(data.head);
let focus = null;

// The rows of [key, weight] pairs of a head ("mean": the mean over heads, sent last).
function edges(model, layer, head) {
  const m = model.edges[layer];
  return m[head === "mean" ? m.length - 1 : Number(head)];
}

function el(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function drawModel(model, container) {
  const rows = edges(model, Number(layerSel.value), headSel.value);
  const n = model.tokens.length, rowH = 20, colW = 120, gapW = 160;
  const svg = el("svg", { width: 2 * colW + gapW, height: n * rowH + 10, "data-model": model.name });
  const lines = el("g", { class: "lines" });
  svg.appendChild(lines);
  for (let q = 0; q < n; q++) {
    for (const [k, v] of rows[q]) {
      const hidden = focus !== null && focus !== q;
      lines.appendChild(el("line", {
        x1: colW, y1: q * rowH + rowH / 2 + 5, x2: colW + gapW, y2: k * rowH + rowH / 2 + 5,
        stroke: "#2166ac", "stroke-width": 2, "stroke-opacity": hidden ? 0 : v.toFixed(4),
        "data-q": q, "data-k": k,
      }));
    }
  }
  model.tokens.forEach((t, i) => {
    for (const side of ["left", "right"]) {
      const x = side === "left" ? colW - 6 : colW + gapW + 6;
      const label = el("text", { x, y: i * rowH + rowH / 2 + 9, class: "tok" + (side === "left" && focus === i ? " focus" : ""),
        "text-anchor": side === "left" ? "end" : "start" });
      label.textContent = t;
      if (side === "left") {
        label.addEventListener("mouseenter", () => { focus = i; draw(); });
        label.addEventListener("mouseleave", () => { focus = null; draw(); });
      }
      svg.appendChild(label);
    }
  });
  const box = document.createElement("div");
  box.className = "view";
  const h2 = document.createElement("h2");
  h2.textContent = model.name + " \u00b7 layer " + layerSel.value + " \u00b7 head " + headSel.value;
  box.appendChild(h2);
  box.appendChild(svg);
  container.appendChild(box);
}

function draw() {
  const views = document.getElementById("views");
  views.replaceChildren();
  for (const m of current()) drawModel(m, views);
  document.body.dataset.drawn = layerSel.value + "/" + headSel.value;
  document.body.dataset.window = windowSel.value;
}

layerSel.addEventListener("change", draw);
headSel.addEventListener("change", draw);
draw();

// Model view: a canvas per layer x head, lines from the left edge (query) to the right (key).
function thumbnail(model, layer, head) {
  const size = 64, n = model.tokens.length;
  const canvas = document.createElement("canvas");
  canvas.width = size; canvas.height = size;
  canvas.title = `layer ${layer} head ${head}`;
  canvas.dataset.layer = layer; canvas.dataset.head = head;
  const ctx = canvas.getContext("2d");
  ctx.strokeStyle = "#2166ac";
  ctx.lineWidth = 1;
  const y = i => (i + 0.5) * size / n;
  model.edges[layer][head].forEach((row, q) => {
    for (const [k, v] of row) {
      ctx.globalAlpha = Math.min(1, v);
      ctx.beginPath(); ctx.moveTo(4, y(q)); ctx.lineTo(size - 4, y(k)); ctx.stroke();
    }
  });
  canvas.addEventListener("click", () => {
    layerSel.value = String(layer); headSel.value = String(head);
    draw(); markChosen();
    document.getElementById("views").scrollIntoView({ behavior: "smooth" });
  });
  return canvas;
}

function markChosen() {
  for (const c of document.querySelectorAll(".grid canvas")) {
    c.classList.toggle("chosen", c.dataset.layer === layerSel.value && c.dataset.head === headSel.value);
  }
}

const modelsBox = document.getElementById("models");
function drawModelView() {
  modelsBox.replaceChildren();
  for (const model of current()) {
    const title = document.createElement("h2");
    title.className = "view";
    title.textContent = model.name;
    modelsBox.appendChild(title);
    const grid = document.createElement("div");
    grid.className = "grid";
    grid.style.gridTemplateColumns = `60px repeat(${heads}, 66px)`;
    grid.appendChild(document.createElement("span"));
    for (let h = 0; h < heads; h++) {
      const label = document.createElement("span");
      label.className = "label"; label.textContent = "head " + h;
      grid.appendChild(label);
    }
    for (let l = 0; l < layers; l++) {
      const label = document.createElement("span");
      label.className = "label"; label.textContent = "layer " + l;
      grid.appendChild(label);
      for (let h = 0; h < heads; h++) grid.appendChild(thumbnail(model, l, h));
    }
    modelsBox.appendChild(grid);
  }
  markChosen();
  document.body.dataset.thumbnails = String(document.querySelectorAll(".grid canvas").length);
}
drawModelView();
windowSel.addEventListener("change", () => { focus = null; draw(); drawModelView(); });
layerSel.addEventListener("change", markChosen);
headSel.addEventListener("change", markChosen);
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_escape_its_element() {
        let maps = AttentionMaps {
            model: "<b>model</b>".into(),
            tokens: vec!["[CLS]".into(), "</script><script>alert(1)</script>".into(), "[SEP]".into()],
            maps: vec![vec![vec![vec![1.0 / 3.0; 3]; 3]]],
        };
        let window = Window { label: "<i>w</i>".into(), models: vec![&maps] };
        let html = page("x </script><img src=x onerror=alert(1)> & y", &[window], 0, 0);
        assert!(!html.contains("<script>alert"), "raw script tag from a token");
        assert!(!html.contains("<img"), "raw tag from the text");
        assert!(!html.contains("<b>model"), "raw tag from the model name");
        assert!(html.contains("&lt;b&gt;model&lt;/b&gt;"), "title escaped");
        assert_eq!(html.matches("</script>").count(), 2, "only the page's own script elements close");
        // The data still round-trips exactly through JSON.parse (\u003c is '<').
        let start = html.find(r#"id="data">"#).unwrap() + 10;
        let end = start + html[start..].find("</script>").unwrap();
        let v: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(v["windows"][0]["models"][0]["tokens"][1], "</script><script>alert(1)</script>");
        assert!(!html.contains("<i>w"), "raw tag from a window's label");
    }
}
