use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::json;

use super::run_flags::RunFlags;
use crate::fsutil::atomic_write;
use crate::viz::attention::{AttentionMaps, difference, head_changes};
use crate::viz::heatmap::{Heatmap, render_grid, render_panels};
use crate::viz::html;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory or hub id.
    #[arg(long)]
    model: String,
    /// The sentence to look at.
    #[arg(long)]
    text: String,
    /// Layer, counted from 0 as in transformers' `attentions[layer]`.
    #[arg(long, default_value_t = 0)]
    layer: usize,
    /// Head, counted from 0.
    #[arg(long, default_value_t = 0)]
    head: usize,
    /// Every layer x head as small multiples (PNG/SVG), plus the mean over heads.
    #[arg(long)]
    all: bool,
    /// A second model (e.g. after fine-tuning): side-by-side maps, their difference, and the
    /// heads that changed most (printed, and saved beside --out as .heads.json).
    #[arg(long)]
    compare: Option<String>,
    /// The picture: .png, .svg, or .html (an interactive head view).
    #[arg(long)]
    out: PathBuf,
    /// Also write the attention probabilities of the chosen layer/head (all with --all) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, default_value_t = 512)]
    max_len: usize,
    #[command(flatten)]
    run: RunFlags,
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!("{stem}{suffix}"))
}

pub fn run(args: Args) -> Result<()> {
    let device = args.run.setup()?;
    let ext = args.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !["png", "svg", "html"].contains(&ext) {
        bail!("{}: --out must end in .png, .svg or .html", args.out.display());
    }
    let a = AttentionMaps::compute(&args.model, &args.text, args.max_len, device)?;
    a.check(args.layer, args.head)?;
    let b = args.compare.as_deref().map(|m| AttentionMaps::compute(m, &args.text, args.max_len, device)).transpose()?;

    if let Some(b) = &b {
        let changes = head_changes(&a, b)?;
        println!("heads that changed most ({} -> {}), mean over tokens:", a.model, b.model);
        println!("  layer head  Jensen-Shannon     L1");
        for c in changes.iter().take(10) {
            println!("  {:5} {:4}  {:14.4}  {:5.3}", c.layer, c.head, c.jensen_shannon, c.l1);
        }
        let path = sibling(&args.out, ".heads.json");
        let report = json!({"text": args.text, "tokens": a.tokens, "from": a.model, "to": b.model, "heads": changes});
        atomic_write(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("ranking of all heads: {}", path.display());
    }

    if let Some(path) = &args.json {
        let pick = |m: &AttentionMaps| -> serde_json::Value {
            if args.all { json!(m.maps) } else { json!(m.head(args.layer, args.head)) }
        };
        let mut out = json!({
            "text": args.text, "tokens": a.tokens, "model": a.model,
            "layers": if args.all { json!((0..a.layers()).collect::<Vec<_>>()) } else { json!([args.layer]) },
            "heads": if args.all { json!((0..a.heads()).collect::<Vec<_>>()) } else { json!([args.head]) },
            "shape": if args.all { "[layer][head][query][key]" } else { "[query][key]" },
            "attention": pick(&a),
        });
        if let Some(b) = &b {
            out["compare"] = json!({"model": b.model, "attention": pick(b)});
        }
        atomic_write(path, serde_json::to_string(&out)?.as_bytes())?;
    }

    let (l, h) = (args.layer, args.head);
    match ext {
        "html" => {
            let models: Vec<&AttentionMaps> = std::iter::once(&a).chain(b.as_ref()).collect();
            atomic_write(&args.out, html::page(&args.text, &models, l, h).as_bytes())?;
        }
        _ if args.all => {
            let cols: Vec<String> = (0..a.layers()).map(|l| format!("layer {l}")).collect();
            let mut rows = Vec::new();
            let cell = |m: &AttentionMaps, l: usize, h: Option<usize>| match h {
                Some(h) => m.head(l, h).clone(),
                None => m.mean_over_heads(l),
            };
            let heads: Vec<Option<usize>> = (0..a.heads()).map(Some).chain([None]).collect();
            for head in heads {
                let name = head.map_or("mean".to_string(), |h| format!("head {h}"));
                let panels = (0..a.layers())
                    .map(|l| match &b {
                        Some(b) => Heatmap {
                            caption: String::new(),
                            matrix: difference(&cell(&a, l, head), &cell(b, l, head)),
                            diverging: true,
                        },
                        None => Heatmap { caption: String::new(), matrix: cell(&a, l, head), diverging: false },
                    })
                    .collect();
                rows.push((name, panels));
            }
            let title = match &b {
                Some(b) => format!("{} - {}: change of every head's attention", b.model, a.model),
                None => format!("{}: attention of every layer and head", a.model),
            };
            render_grid(&args.out, &title, &rows, &cols)?;
        }
        _ => {
            let mut panels = vec![Heatmap { caption: a.model.clone(), matrix: a.head(l, h).clone(), diverging: false }];
            let title = match &b {
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
            render_panels(&args.out, &title, &a.tokens, &panels)?;
        }
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
