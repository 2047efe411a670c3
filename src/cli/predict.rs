use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use super::checks::{positive, resolve_max_len};
use super::data_flags::DataFlags;
use crate::data::{Format, tokenize_examples};
use crate::device::{Autocast, DeviceFlags, Precision};
use crate::fsutil::atomic_write;
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::train::classify::Classifier;

#[derive(clap::Args)]
pub struct Args {
    /// A fine-tuned classification model.
    #[arg(long)]
    model: String,
    /// Texts to classify: a data file (see --format) or - for standard input (one text per line).
    #[arg(long, default_value = "-")]
    input: PathBuf,
    /// Where to write predictions (.jsonl or .csv), or - for standard output (JSONL).
    #[arg(long, default_value = "-")]
    output: PathBuf,
    #[command(flatten)]
    flags: DataFlags,
    #[arg(long, default_value_t = 32, value_parser = positive)]
    batch_size: usize,
    /// fp32, bf16 (autocast), or auto: bf16 where the device computes it natively.
    #[arg(long, value_enum, default_value = "auto")]
    precision: Precision,
    #[command(flatten)]
    run: DeviceFlags,
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

pub fn run(args: Args) -> Result<()> {
    let device = args.run.setup()?;
    let model = ModelDir::open(&args.model)?;
    let max_len = resolve_max_len(args.flags.max_len, &model)?;
    let names = model.config.id2label().map(<[String]>::to_vec);
    let names = names.with_context(|| format!("{}: config.json has no id2label", model.dir.display()))?;
    let options = LoadOptions::inference(device, Autocast::new(args.precision, device));
    let classifier: Classifier = pretrained::load(&model, &options)?;
    let mut flags = args.flags.clone();
    if args.input.as_os_str() == "-" && flags.format.is_none() {
        flags.format = Some(Format::Lines);
    }
    let examples = flags.read(&args.input, false)?.examples;
    let tokenized = tokenize_examples(&classifier.tokenizer, &examples, max_len)?;
    if tokenized.truncated > 0 {
        tracing::info!("{} of {} texts truncated to {} tokens", tokenized.truncated, examples.len(), max_len);
    }
    let (probs, _) = classifier.predict(&tokenized.items, None, args.batch_size)?;
    let probs = Vec::<Vec<f32>>::try_from(probs)?;

    let csv = args.output.extension().is_some_and(|e| e == "csv");
    let mut out = Vec::new();
    if csv {
        let header: Vec<String> = ["text".to_string(), "label".into(), "score".into()]
            .into_iter()
            .chain(names.iter().map(|n| csv_field(&format!("prob_{n}"))))
            .collect();
        writeln!(out, "{}", header.join(","))?;
    }
    for (ex, p) in examples.iter().zip(&probs) {
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
        if csv {
            let cells: Vec<String> = [csv_field(&ex.text), csv_field(&names[best]), format!("{:.6}", p[best])]
                .into_iter()
                .chain(p.iter().map(|v| format!("{v:.6}")))
                .collect();
            writeln!(out, "{}", cells.join(","))?;
        } else {
            let probabilities: serde_json::Map<String, serde_json::Value> =
                names.iter().zip(p).map(|(n, v)| (n.clone(), json!(v))).collect();
            writeln!(
                out,
                "{}",
                json!({"text": ex.text, "label": names[best], "score": p[best], "probabilities": probabilities})
            )?;
        }
    }
    if args.output.as_os_str() == "-" {
        std::io::stdout().write_all(&out)?;
    } else {
        atomic_write(&args.output, &out)?;
        tracing::info!("wrote {} predictions to {}", examples.len(), args.output.display());
    }
    Ok(())
}
