use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;

use crate::data::Encoded;
use crate::data::long_text::{window_ranges, window_room};
use crate::device::{Autocast, DeviceFlags};
use crate::fsutil::atomic_write;
use crate::pretrained::{self, LoadOptions, ModelDir, Pretrained};
use crate::task::{Bare, TaskModel};
use crate::tokenizer::Tokenizer;
use crate::values::sequence_length;
use crate::viz::attention::{AttentionMaps, difference, head_changes};
use crate::viz::heatmap::{Heatmap, render_grid, render_panels};
use crate::viz::html;

#[derive(clap::Args)]
pub struct Attention {
    /// Model directory or hub id.
    #[arg(long)]
    pub model: String,
    /// The sentence to look at.
    #[arg(long)]
    pub text: String,
    /// Layer, counted from 0 as in transformers' `attentions[layer]`.
    #[arg(long, default_value_t = 0)]
    pub layer: usize,
    /// Head, counted from 0.
    #[arg(long, default_value_t = 0)]
    pub head: usize,
    /// Every layer x head as small multiples (PNG/SVG), plus the mean over heads.
    #[arg(long)]
    pub all: bool,
    /// A second model (e.g. after fine-tuning): side-by-side maps, their difference, and the
    /// heads that changed most (printed, and saved beside --out as .heads.json).
    #[arg(long)]
    pub compare: Option<String>,
    /// The picture: .png, .svg, or .html (an interactive head view).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the attention probabilities of the chosen layer/head (all with --all) as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Longest text in tokens; a longer one is cut into windows (see --window). Default: 512,
    /// or the model's positions if fewer.
    #[arg(long, value_parser = sequence_length)]
    pub max_len: Option<usize>,
    /// Which window of a text longer than --max-len to draw, counting from 0.
    #[arg(long)]
    pub window: Option<usize>,
    /// Tokens shared by consecutive windows (at most half a window).
    #[arg(long, default_value_t = 128, value_parser = crate::values::positive)]
    pub stride: usize,
    #[command(flatten)]
    pub run: DeviceFlags,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!("{stem}{suffix}"))
}

/// The attention maps of the model at `spec` (the exact probabilities: fp32, no autocast), one
/// per window drawn, each with its name.
fn attention_of(spec: &str, args: &Attention, device: tch::Device) -> Result<Vec<(String, AttentionMaps)>> {
    let model = ModelDir::open(spec)?;
    let max_len = model.max_len(args.max_len)?;
    let loaded: Pretrained<Bare<false>> = pretrained::load(&model, &LoadOptions::inference(device, Autocast::off()))?;
    let mut out = Vec::new();
    for (label, item, tokens) in windows_of(&loaded.tokenizer, args, max_len)? {
        let inputs = loaded.collator().collate(&[&item]).to_device(device);
        out.push((label, AttentionMaps::compute(model.display_name(), loaded.model.encoder(), &inputs, tokens)?));
    }
    Ok(out)
}

/// The text as the model reads it: whole when it fits in `max_len` tokens; else the window
/// --window names, or every window for an HTML page (a selector there), or the first one,
/// saying which was drawn.
fn windows_of(tok: &Tokenizer, args: &Attention, max_len: usize) -> Result<Vec<(String, Encoded, Vec<String>)>> {
    let plain = tok.encode_plain(&[args.text.as_str()])?.remove(0);
    if plain.len() <= window_room(max_len) {
        if args.window.is_some_and(|w| w > 0) {
            crate::error::refuse!(
                "--window: the text has {} tokens and fits in one window (--max-len {max_len})",
                plain.len()
            );
        }
        let enc = tok.encode_batch(&[args.text.as_str()], None, max_len)?.remove(0);
        return Ok(vec![("whole text".into(), Encoded::from(&enc), enc.get_tokens().to_vec())]);
    }
    let windows = window_ranges(plain.len(), max_len, args.stride);
    let every = args.window.is_none() && args.out.extension().is_some_and(|e| e == "html");
    let chosen: Vec<usize> = match args.window {
        _ if every => (0..windows.len()).collect(),
        Some(n) if n >= windows.len() => {
            crate::error::refuse!(
                "--window {n}: the text has {} windows of {max_len} tokens (0 to {})",
                windows.len(),
                windows.len() - 1
            )
        }
        n => vec![n.unwrap_or(0)],
    };
    if every {
        tracing::info!(
            "the text has {} tokens: all {} windows of {max_len} in the page (a selector)",
            plain.len(),
            windows.len()
        );
    } else {
        let (n, r) = (chosen[0], &windows[chosen[0]]);
        tracing::info!(
            "the text has {} tokens: drawing window {n} of {} (tokens {}..{}); --window chooses another",
            plain.len(),
            windows.len(),
            r.start,
            r.end
        );
    }
    let name = |id: u32| tok.id_to_token(id).unwrap_or_default();
    Ok(chosen
        .into_iter()
        .map(|w| {
            let range = windows[w].clone();
            let ids: Vec<u32> = [&[tok.cls_id][..], &plain.get_ids()[range.clone()], &[tok.sep_id]].concat();
            let tokens = ids.iter().map(|&id| name(id)).collect();
            (
                format!("window {w}: tokens {}..{}", range.start, range.end),
                Encoded { type_ids: vec![0; ids.len()], ids },
                tokens,
            )
        })
        .collect())
}

impl Attention {
    /// Runs the job as `bertkit attention` does, its report on standard output.
    pub fn run(self) -> Result<()> {
        let args = self;
        let device = args.run.setup()?;
        let ext = crate::viz::picture_format(&args.out)?;
        let a_windows = attention_of(&args.model, &args, device)?;
        let b_windows = args.compare.as_deref().map(|m| attention_of(m, &args, device)).transpose()?;
        let (a, b) = (&a_windows[0].1, b_windows.as_ref().map(|w| &w[0].1));
        a.check(args.layer, args.head)?;
        if let Some(b) = b {
            report_head_changes(&args, a, b)?;
        }
        if let Some(path) = &args.json {
            write_json(path, &args, a, b)?;
        }
        let (l, h) = (args.layer, args.head);
        match ext {
            "html" => {
                let windows: Vec<html::Window> = a_windows
                    .iter()
                    .enumerate()
                    .map(|(w, (label, a))| html::Window {
                        label: label.clone(),
                        models: std::iter::once(a).chain(b_windows.as_ref().map(|b| &b[w].1)).collect(),
                    })
                    .collect();
                atomic_write(&args.out, html::page(&args.text, &windows, l, h).as_bytes())?;
            }
            _ if args.all => draw_all(&args.out, a, b)?,
            _ => draw_head(&args.out, a, b, l, h)?,
        }
        eprintln!("wrote {}", args.out.display());
        Ok(())
    }
}

/// Prints the heads that changed most and saves the ranking of all beside --out.
fn report_head_changes(args: &Attention, a: &AttentionMaps, b: &AttentionMaps) -> Result<()> {
    let changes = head_changes(a, b)?;
    println!("heads that changed most ({} -> {}), mean over tokens:", a.model, b.model);
    println!("  layer head  Jensen-Shannon     L1");
    for c in changes.iter().take(10) {
        println!("  {:5} {:4}  {:14.4}  {:5.3}", c.layer, c.head, c.jensen_shannon, c.l1);
    }
    let path = sibling(&args.out, ".heads.json");
    let report = json!({"text": args.text, "tokens": a.tokens, "from": a.model, "to": b.model, "heads": changes});
    atomic_write(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("ranking of all heads: {}", path.display());
    Ok(())
}

/// The probabilities of the chosen layer/head (every one with --all), of both models.
fn write_json(path: &Path, args: &Attention, a: &AttentionMaps, b: Option<&AttentionMaps>) -> Result<()> {
    let pick = |m: &AttentionMaps| -> serde_json::Value {
        if args.all { json!(m.maps) } else { json!(m.head(args.layer, args.head)) }
    };
    let mut out = json!({
        "text": args.text, "tokens": a.tokens, "model": a.model,
        "layers": if args.all { json!((0..a.layers()).collect::<Vec<_>>()) } else { json!([args.layer]) },
        "heads": if args.all { json!((0..a.heads()).collect::<Vec<_>>()) } else { json!([args.head]) },
        "shape": if args.all { "[layer][head][query][key]" } else { "[query][key]" },
        "attention": pick(a),
    });
    if let Some(b) = b {
        out["compare"] = json!({"model": b.model, "attention": pick(b)});
    }
    atomic_write(path, serde_json::to_string(&out)?.as_bytes())
}

/// Every layer x head (and the mean over heads) as small multiples; with `b`, the differences.
fn draw_all(out: &Path, a: &AttentionMaps, b: Option<&AttentionMaps>) -> Result<()> {
    let cols: Vec<String> = (0..a.layers()).map(|l| format!("layer {l}")).collect();
    let cell = |m: &AttentionMaps, l: usize, h: Option<usize>| match h {
        Some(h) => m.head(l, h).clone(),
        None => m.mean_over_heads(l),
    };
    let heads: Vec<Option<usize>> = (0..a.heads()).map(Some).chain([None]).collect();
    let rows: Vec<(String, Vec<Heatmap>)> = heads
        .into_iter()
        .map(|head| {
            let name = head.map_or("mean".to_string(), |h| format!("head {h}"));
            let panels = (0..a.layers())
                .map(|l| match b {
                    Some(b) => Heatmap {
                        caption: String::new(),
                        matrix: difference(&cell(a, l, head), &cell(b, l, head)),
                        diverging: true,
                    },
                    None => Heatmap { caption: String::new(), matrix: cell(a, l, head), diverging: false },
                })
                .collect();
            (name, panels)
        })
        .collect();
    let title = match b {
        Some(b) => format!("{} - {}: change of every head's attention", b.model, a.model),
        None => format!("{}: attention of every layer and head", a.model),
    };
    render_grid(out, &title, &rows, &cols)
}

/// One head as a heatmap; with `b`, both models side by side and their difference.
fn draw_head(out: &Path, a: &AttentionMaps, b: Option<&AttentionMaps>, l: usize, h: usize) -> Result<()> {
    let mut panels = vec![Heatmap { caption: a.model.clone(), matrix: a.head(l, h).clone(), diverging: false }];
    let title = match b {
        Some(b) => {
            panels.push(Heatmap { caption: b.model.clone(), matrix: b.head(l, h).clone(), diverging: false });
            panels.push(Heatmap {
                caption: "difference (right - left)".into(),
                matrix: difference(a.head(l, h), b.head(l, h)),
                diverging: true,
            });
            format!("{} vs {} · layer {l} · head {h}", a.model, b.model)
        }
        None => format!("{} · layer {l} · head {h}", a.model),
    };
    render_panels(out, &title, &a.tokens, &panels)
}
