//! The examples whose prediction changed between the two models, most changed first, and a page
//! of attributions and one of attention for the first of them.

use anyhow::Result;
use serde::Serialize;
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use super::CompareModels;
use crate::data::long_text::LongText;
use crate::explain::text::figure;
use crate::explain::text::{Document, Method, Settings, explain};
use crate::explain::{Output, Target};
use crate::fsutil::atomic_write;
use crate::predict::{Classifier, decide};
use crate::pretrained::ModelDir;
use crate::viz::attention::AttentionMaps;
use crate::viz::{attribution, html};

/// Regression has no flips: its largest changes of score are listed instead.
const SCORE_CHANGES: usize = 20;

/// One example whose prediction changed.
#[derive(Debug, Serialize)]
pub struct Change {
    pub example: usize,
    pub gold: String,
    pub before: String,
    pub after: String,
    /// `fixed` (wrong before, right after), `broken` (the reverse), or `changed` (wrong both).
    /// For scores: `closer` or `further` from the gold score.
    pub direction: &'static str,
    /// How much each model believes the gold answer: the probability of the gold class; for
    /// label sets the mean probability of each label's gold decision; for scores minus the
    /// absolute error.
    pub gold_confidence: [f64; 2],
    /// After minus before.
    pub confidence_change: f64,
    /// What its pages explain: the gold class, the labels whose decision changed, or the score.
    #[serde(skip)]
    explained: Vec<Target>,
}

/// Every changed example, most changed confidence first.
pub fn changes(outputs: &[Tensor; 2], targets: &crate::data::Targets, names: &[String]) -> Result<Vec<Change>> {
    use crate::data::Targets;
    let rows = |t: &Tensor| Vec::<Vec<f32>>::try_from(t.to_kind(Kind::Float));
    let (a, b) = (rows(&outputs[0])?, rows(&outputs[1])?);
    let mut out: Vec<Change> = match targets {
        Targets::Classes(gold) => {
            (0..gold.len()).filter_map(|i| class_change(i, &a[i], &b[i], gold[i] as usize, names)).collect()
        }
        Targets::Sets(gold) => (0..gold.len()).filter_map(|i| set_change(i, &a[i], &b[i], &gold[i], names)).collect(),
        Targets::Scores(gold) | Targets::Relevance { relevance: gold, .. } => {
            let mut order: Vec<usize> = (0..gold.len()).collect();
            order.sort_by(|&x, &y| (b[y][0] - a[y][0]).abs().total_cmp(&(b[x][0] - a[x][0]).abs()));
            order.iter().take(SCORE_CHANGES).map(|&i| score_change(i, a[i][0], b[i][0], gold[i])).collect()
        }
    };
    out.sort_by(|x, y| y.confidence_change.abs().total_cmp(&x.confidence_change.abs()));
    Ok(out)
}

fn label_target(label: usize, names: &[String]) -> Target {
    Target::label(&names[label], label as i64)
}

fn class_change(i: usize, a: &[f32], b: &[f32], gold: usize, names: &[String]) -> Option<Change> {
    let (pa, pb) = (crate::predict::argmax(a), crate::predict::argmax(b));
    if pa == pb {
        return None;
    }
    let direction = if pb == gold {
        "fixed"
    } else if pa == gold {
        "broken"
    } else {
        "changed"
    };
    let name = |c: usize| format!("{} ({:.3})", names[c], if c == pa { a[c] } else { b[c] });
    let confidence = [a[gold] as f64, b[gold] as f64];
    Some(Change {
        example: i,
        gold: names[gold].clone(),
        before: name(pa),
        after: name(pb),
        direction,
        gold_confidence: confidence,
        confidence_change: confidence[1] - confidence[0],
        explained: vec![label_target(gold, names)],
    })
}

fn set_change(i: usize, a: &[f32], b: &[f32], gold: &[f32], names: &[String]) -> Option<Change> {
    let decided = decide(&[a.to_vec(), b.to_vec()], None);
    let gold: Vec<bool> = gold.iter().map(|&g| g > 0.5).collect();
    if decided[0] == decided[1] {
        return None;
    }
    let show = |set: &[bool]| {
        let chosen: Vec<&str> = names.iter().zip(set).filter(|(_, s)| **s).map(|(n, _)| n.as_str()).collect();
        if chosen.is_empty() { "(none)".to_string() } else { chosen.join(", ") }
    };
    let direction = if decided[1] == gold {
        "fixed"
    } else if decided[0] == gold {
        "broken"
    } else {
        "changed"
    };
    let belief = |p: &[f32]| {
        p.iter().zip(&gold).map(|(&p, &g)| if g { p as f64 } else { 1.0 - p as f64 }).sum::<f64>() / p.len() as f64
    };
    let confidence = [belief(a), belief(b)];
    Some(Change {
        example: i,
        gold: show(&gold),
        before: show(&decided[0]),
        after: show(&decided[1]),
        direction,
        gold_confidence: confidence,
        confidence_change: confidence[1] - confidence[0],
        explained: (0..names.len())
            .filter(|&l| decided[0][l] != decided[1][l])
            .map(|l| label_target(l, names))
            .collect(),
    })
}

fn score_change(i: usize, a: f32, b: f32, gold: f32) -> Change {
    let confidence = [-(a - gold).abs() as f64, -(b - gold).abs() as f64];
    Change {
        example: i,
        gold: format!("{gold}"),
        before: format!("{a:.4}"),
        after: format!("{b:.4}"),
        direction: if confidence[1] >= confidence[0] { "closer" } else { "further" },
        gold_confidence: confidence,
        confidence_change: confidence[1] - confidence[0],
        explained: vec![Target::label("score", 0)],
    }
}

/// For the first `--explain-flipped` changes: `flipped/N.explain.html` (integrated gradients
/// and gradient × input of both models) and `flipped/N.attention.html` (both models' heads,
/// the text's first window). Returns each change's pages (None past the first ones).
pub fn write_pages(
    args: &CompareModels,
    models: [&Classifier; 2],
    dirs: [&ModelDir; 2],
    changes: &[Change],
    texts: &[&str],
    max_len: usize,
    device: Device,
) -> Result<Vec<Option<Value>>> {
    let settings = Settings {
        methods: vec![Method::IntegratedGradients, Method::GradientXInput],
        output: Output::Probability,
        steps: args.steps,
        chunk: 16,
        baseline_id: models[0].tokenizer.pad_id,
    };
    let mut pages = Vec::new();
    for (n, change) in changes.iter().enumerate() {
        if n >= args.explain_flipped {
            pages.push(None);
            continue;
        }
        let text = texts[change.example];
        let mut doc = Document::new(&models[0].tokenizer, text, max_len, args.flags.stride)?;
        if args.flags.long_text != LongText::Window {
            // What the models read of a long text: its first window (the tokens past it score 0).
            doc.windows.truncate(1);
        }
        let explained: Vec<(String, _)> = models
            .iter()
            .zip(dirs)
            .map(|(m, d)| Ok((d.display_name(), explain(&m.model, &doc, &change.explained, &settings, device)?)))
            .collect::<Result<_>>()?;
        let explain_page = format!("flipped/{n}.explain.html");
        atomic_write(
            &args.out.join(&explain_page),
            attribution::page(&figure(text, &doc, &explained, &settings)).as_bytes(),
        )?;
        let window: Vec<String> = doc.windows[0].iter().map(|&p| doc.tokens[p].clone()).collect();
        let maps: Vec<AttentionMaps> = models
            .iter()
            .zip(dirs)
            .map(|(m, d)| {
                AttentionMaps::compute(
                    d.display_name(),
                    m.model.encoder.as_ref(),
                    &doc.window_inputs(0, device),
                    window.clone(),
                )
            })
            .collect::<Result<_>>()?;
        let attention_page = format!("flipped/{n}.attention.html");
        atomic_write(
            &args.out.join(&attention_page),
            html::page(text, &[html::Window { label: "first window".into(), models: maps.iter().collect() }], 0, 0)
                .as_bytes(),
        )?;
        pages.push(Some(json!({"explain": explain_page, "attention": attention_page})));
    }
    Ok(pages)
}
