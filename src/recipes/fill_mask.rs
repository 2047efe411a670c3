use anyhow::{Result, bail};
use serde_json::json;

use crate::device::{Autocast, DeviceFlags};
use crate::predict::MaskedLanguageModel;
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::values::positive;

#[derive(clap::Args)]
pub struct FillMask {
    /// A model with an MLM head (e.g. the output of `bertkit pretrain`).
    #[arg(long)]
    pub model: String,
    /// Text with one or more `[MASK]` tokens (repeat --text for several).
    #[arg(long, required = true)]
    pub text: Vec<String>,
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub top_k: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: DeviceFlags,
}

impl FillMask {
    /// Runs the job as `bertkit fill-mask` does, its report on standard output.
    pub fn run(self) -> Result<()> {
        let args = self;
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
}
