use anyhow::{Result, bail};
use serde_json::json;

use bertkit::device::{Autocast, DeviceFlags};
use bertkit::predict::MaskedLanguageModel;
use bertkit::pretrained::{self, LoadOptions, ModelDir};
use bertkit::values::positive;

#[derive(clap::Args)]
pub struct Args {
    /// A model with an MLM head (e.g. the output of `bertkit pretrain`).
    #[arg(long)]
    model: String,
    /// Text with one or more `[MASK]` tokens (repeat --text for several).
    #[arg(long, required = true)]
    text: Vec<String>,
    #[arg(long, default_value_t = 5, value_parser = positive)]
    top_k: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    run: DeviceFlags,
}

pub fn run(args: Args) -> Result<()> {
    let device = args.run.setup()?;
    let model = ModelDir::open(&args.model)?;
    let mlm: MaskedLanguageModel = pretrained::load(&model, &LoadOptions::inference(device, Autocast::off()))?;
    let mut rows = Vec::new();
    for text in &args.text {
        let fills = mlm.fill_mask(text, args.top_k)?;
        if fills.is_empty() {
            bail!("{text:?} has no [MASK] token");
        }
        if !args.json {
            println!("{text}");
            for (i, candidates) in fills.iter().enumerate() {
                let line: Vec<String> = candidates.iter().map(|(t, p)| format!("{t} {p:.3}")).collect();
                println!("  [MASK] #{}: {}", i + 1, line.join("  "));
            }
        }
        rows.push(json!({"text": text, "masks": fills.iter().map(|c| c.iter().map(|(t, p)| json!({"token": t, "probability": p})).collect::<Vec<_>>()).collect::<Vec<_>>()}));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}
