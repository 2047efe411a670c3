//! `compare-models`' report as one self-contained HTML page, drawn in the browser from the
//! report's JSON: the metrics of both models, the examples whose prediction changed (with
//! links to their attribution and attention pages), linear CKA of every layer pair, and each
//! head's attention change, over the set or the examples of one gold label. Text reaches the
//! page only as JSON data and through `textContent`.

use super::html::fill;

pub(crate) fn page(report: &serde_json::Value) -> String {
    let models =
        report["models"].as_array().map(|m| m.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" → "));
    let title = format!("What changed: {}", models.unwrap_or_default());
    fill(TEMPLATE, &title, report)
}

const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
  body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
  h1 { font-size: 21px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 28px 0 8px; }
  .note { color: #666; font-size: 13px; }
  table { border-collapse: collapse; font-size: 13px; }
  th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
  th { background: #f4f4f4; }
  td.text { text-align: left; max-width: 520px; }
  .heat td { width: 34px; height: 24px; padding: 0; text-align: center; font-size: 11px; }
  .fixed { color: #1a7f37; } .broken { color: #b2182b; }
  select { margin-left: 6px; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div class="note" id="about"></div>
<h2>Metrics</h2>
<table id="metrics"></table>
<h2>Predictions that changed</h2>
<div class="note" id="change-counts"></div>
<table id="changes"></table>
<h2>Representation similarity (linear CKA, mean over tokens)</h2>
<div class="note">Row: layer of the first model, column: layer of the second (0 = embeddings). 1 = the same representation up to rotation and scale.</div>
<table class="heat" id="cka"></table>
<h2>Attention change per head (Jensen-Shannon divergence, mean over tokens and examples)</h2>
<div class="note">0 = unchanged, ln 2 ≈ 0.693 = disjoint. <label>Examples<select id="label"></select></label></div>
<table class="heat" id="divergence"></table>
<script type="application/json" id="data">{{DATA}}</script>
<script>
"use strict";
const r = JSON.parse(document.getElementById("data").textContent);
const $ = id => document.getElementById(id);
function cell(row, text, tag = "td") { const c = document.createElement(tag); c.textContent = text; row.appendChild(c); return c; }
function shade(v, max) {
  const t = Math.max(0, Math.min(1, max > 0 ? v / max : 0));
  const c = [255, 255, 255].map((x, i) => Math.round(x + ([8, 48, 107][i] - x) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
$("title").textContent = "What changed: " + r.models.join(" → ");
$("about").textContent = `${r.examples} examples of ${r.data} (${r.task}); both models over the set in ${r.seconds.toFixed(1)} s`;

const metrics = $("metrics");
const head = metrics.insertRow();
["metric", r.models[0], r.models[1], "change"].forEach(t => cell(head, t, "th"));
for (const name of Object.keys(r.metrics[0])) {
  const row = metrics.insertRow();
  const [a, b] = [r.metrics[0][name], r.metrics[1][name]];
  [name, a.toFixed(4), b.toFixed(4), (b - a >= 0 ? "+" : "") + (b - a).toFixed(4)].forEach(t => cell(row, t));
}

const counts = {};
r.changes.forEach(c => counts[c.change.direction] = (counts[c.change.direction] || 0) + 1);
$("change-counts").textContent = Object.entries(counts).map(([k, v]) => `${k}: ${v}`).join(" · ") || "none";
const changes = $("changes");
const ch = changes.insertRow();
["#", "text", "gold", r.models[0], r.models[1], "gold confidence", "change", "views"].forEach(t => cell(ch, t, "th"));
r.changes.forEach(c => {
  const row = changes.insertRow();
  const x = c.change;
  cell(row, String(x.example));
  cell(row, c.text).className = "text";
  [x.gold, x.before, x.after].forEach(t => cell(row, t));
  cell(row, x.gold_confidence.map(v => v.toFixed(3)).join(" → "));
  const d = cell(row, (x.confidence_change >= 0 ? "+" : "") + x.confidence_change.toFixed(3));
  d.className = x.direction === "fixed" || x.direction === "closer" ? "fixed" : x.direction === "broken" || x.direction === "further" ? "broken" : "";
  const views = cell(row, "");
  if (c.pages) {
    for (const [name, href] of [["attributions", c.pages.explain], ["attention", c.pages.attention]]) {
      const a = document.createElement("a");
      a.href = href; a.textContent = name;
      views.appendChild(a); views.appendChild(document.createTextNode(" "));
    }
  }
});

function heat(table, matrix, max, rowName, colName) {
  table.replaceChildren();
  const top = table.insertRow();
  cell(top, "", "th");
  matrix[0].forEach((_, j) => cell(top, colName + j, "th"));
  matrix.forEach((values, i) => {
    const row = table.insertRow();
    cell(row, rowName + i, "th");
    values.forEach(v => {
      const c = cell(row, v.toFixed(2));
      c.style.background = shade(v, max);
      if (v > 0.6 * max) c.style.color = "#fff";
      c.title = v.toPrecision(4);
    });
  });
}
heat($("cka"), r.cka, 1, "L", "L");
const select = $("label");
select.add(new Option(`all (${r.attention_divergence.examples_by_label.at(-1)})`, "all"));
r.attention_divergence.by_label.forEach((_, l) => {
  const n = r.attention_divergence.examples_by_label[l];
  if (n > 0) select.add(new Option(`gold ${r.labels[l]} (${n})`, String(l)));
});
function drawDivergence() {
  const m = select.value === "all" ? r.attention_divergence.all : r.attention_divergence.by_label[Number(select.value)];
  const max = Math.max(1e-9, ...r.attention_divergence.all.flat());
  heat($("divergence"), m, max, "layer ", "h");
  document.body.dataset.divergence = select.value;
}
select.addEventListener("change", drawDivergence);
drawDivergence();
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_text_cannot_escape_the_data() {
        let report = serde_json::json!({"models": ["<b>a</b>", "b"], "changes": [{"text": "</script><img src=x onerror=alert(1)>"}]});
        let html = page(&report);
        assert!(!html.contains("<img"));
        assert!(!html.contains("<b>a</b>"));
        assert_eq!(html.matches("</script>").count(), 2, "only the page's own script elements close");
    }
}
