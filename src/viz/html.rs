//! A self-contained HTML page with a head view in the manner of bertviz: the tokens in two
//! columns, a line from each attending token to each attended-to token whose opacity is the
//! weight, layer and head selectors, hover to focus one token, and a second model side by side.
//! No network, no CDN: data, style and script are all in the file.
//!
//! Model and user text only ever reaches the page as JSON data (with `<`, `>` and `&` escaped, so
//! `</script>` in a text cannot end the script) or through `textContent`; titles are
//! HTML-escaped.

use super::attention::AttentionMaps;

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
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
pub fn script_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

pub fn page(text: &str, models: &[&AttentionMaps], layer: usize, head: usize) -> String {
    let data = serde_json::json!({
        "text": text,
        "layer": layer,
        "head": head,
        "models": models.iter().map(|m| serde_json::json!({"name": m.model, "tokens": m.tokens, "maps": m.maps})).collect::<Vec<_>>(),
    });
    let title = format!("Attention: {}", models.iter().map(|m| m.model.as_str()).collect::<Vec<_>>().join(" vs "));
    TEMPLATE.replace("{{TITLE}}", &escape_html(&title)).replace("{{DATA}}", &script_json(&data))
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
</style>
</head>
<body>
<h1>{{TITLE}}</h1>
<div id="text"></div>
<div class="controls">
  <label>Layer <select id="layer"></select></label>
  <label>Head <select id="head"></select></label>
</div>
<div id="views"></div>
<div class="hint">Left: attending token. Right: attended-to token. Line opacity = attention weight. Hover a token to see only its lines. Layers and heads count from 0, as in transformers.</div>
<script type="application/json" id="data">{{DATA}}</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const layerSel = document.getElementById("layer");
const headSel = document.getElementById("head");
document.getElementById("text").textContent = data.text;
const first = data.models[0];
const layers = first.maps.length, heads = first.maps[0].length;
for (let l = 0; l < layers; l++) layerSel.add(new Option(String(l), String(l)));
for (let h = 0; h < heads; h++) headSel.add(new Option(String(h), String(h)));
headSel.add(new Option("mean of heads", "mean"));
layerSel.value = String(data.layer);
headSel.value = String(data.head);
let focus = null;

function weights(model, layer, head) {
  const m = model.maps[layer];
  if (head !== "mean") return m[Number(head)];
  const n = model.tokens.length;
  const out = [];
  for (let q = 0; q < n; q++) {
    out.push([]);
    for (let k = 0; k < n; k++) {
      let s = 0;
      for (let h = 0; h < m.length; h++) s += m[h][q][k];
      out[q].push(s / m.length);
    }
  }
  return out;
}

function el(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function drawModel(model, container) {
  const w = weights(model, Number(layerSel.value), headSel.value);
  const n = model.tokens.length, rowH = 20, colW = 120, gapW = 160;
  const svg = el("svg", { width: 2 * colW + gapW, height: n * rowH + 10, "data-model": model.name });
  const lines = el("g", { class: "lines" });
  svg.appendChild(lines);
  for (let q = 0; q < n; q++) {
    for (let k = 0; k < n; k++) {
      const v = w[q][k];
      if (v < 0.005) continue;
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
  for (const m of data.models) drawModel(m, views);
  document.body.dataset.drawn = layerSel.value + "/" + headSel.value;
}

layerSel.addEventListener("change", draw);
headSel.addEventListener("change", draw);
draw();
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
        let html = page("x </script><img src=x onerror=alert(1)> & y", &[&maps], 0, 0);
        assert!(!html.contains("<script>alert"), "raw script tag from a token");
        assert!(!html.contains("<img"), "raw tag from the text");
        assert!(!html.contains("<b>model"), "raw tag from the model name");
        assert!(html.contains("&lt;b&gt;model&lt;/b&gt;"), "title escaped");
        assert_eq!(html.matches("</script>").count(), 2, "only the page's own script elements close");
        // The data still round-trips exactly through JSON.parse (\u003c is '<').
        let start = html.find(r#"id="data">"#).unwrap() + 10;
        let end = start + html[start..].find("</script>").unwrap();
        let v: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(v["models"][0]["tokens"][1], "</script><script>alert(1)</script>");
    }
}
