//! `bertkit predict`: what a fine-tuned model says about each text, by its task: the label and
//! class probabilities, the label set (at the tuned thresholds where the model has them), the
//! score, (token classification) tags per word and entities with character offsets, or
//! (question answering) each question's answers in its context.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use crate::data::token_classification::{is_conll, is_tagged_jsonl};
use crate::data::{Example, Format, tokenize_long};
use crate::device::{Autocast, DeviceFlags, Precision};
use crate::distributed::Spread;
use crate::predict::{Aggregation, Tagger};
use crate::predict::{Classifier, decide, pool_documents, read_thresholds};
use crate::pretrained::{self, LoadOptions, ModelDir};
use crate::recipes::DataFlags;
use crate::recipes::TagFlags;
use crate::recipes::token_classification::Reading;
use crate::task::TaskKind;
use crate::values::positive;

#[derive(clap::Args)]
pub struct Predict {
    /// A fine-tuned model.
    #[arg(long)]
    pub model: String,
    /// Texts: a data file (see --format) or - for standard input (one text per line); for a
    /// tagger also CoNLL or JSONL {"tokens": [...]} sentences.
    #[arg(long, default_value = "-")]
    pub input: PathBuf,
    /// Where to write predictions (.jsonl or .csv), or - for standard output (JSONL).
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    #[command(flatten)]
    pub flags: DataFlags,
    #[command(flatten)]
    pub tags: TagFlags,
    #[command(flatten)]
    pub decoding: crate::predict::question_answering::DecodingFlags,
    /// Token classification: how a word's tokens make its tag (as transformers' pipeline).
    #[arg(long, value_enum, default_value = "first")]
    pub aggregation: Aggregation,
    #[arg(long, default_value_t = 32, value_parser = positive)]
    pub batch_size: usize,
    /// fp32 (the default: transformers' numbers), bf16 (autocast), or auto: bf16 where the
    /// device computes it natively (faster; probabilities move by ~1e-3).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    #[command(flatten)]
    pub run: DeviceFlags,
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

impl Predict {
    /// The predictions of `model` for the texts of `input` (a data file's text column, or a
    /// CoNLL/JSONL file for a tagger) written to `output` (.jsonl or .csv; `-` for standard
    /// output), every other setting at its flag's default.
    pub fn new(
        model: &str,
        input: impl AsRef<std::path::Path>,
        output: impl AsRef<std::path::Path>,
    ) -> Result<Predict> {
        let (input, output) = (input.as_ref().display().to_string(), output.as_ref().display().to_string());
        crate::values::from_flags(&["--model", model, "--input", &input, "--output", &output])
    }

    /// Runs the job as `bertkit predict` does, its report on standard output.
    pub fn run(self) -> Result<()> {
        let args = self;
        let device = args.run.setup()?;
        let model = ModelDir::open(&args.model)?;
        let max_len = model.max_len(args.flags.max_len)?;
        let options = LoadOptions::inference(device, Autocast::new(args.precision, device));
        if TaskKind::of(&model.config) == TaskKind::MultipleChoice {
            let chooser: crate::predict::Chooser = pretrained::load(&model, &options)?;
            let on_bad = args.flags.on_bad_row;
            let out =
                crate::recipes::multiple_choice::predict(&chooser, &args.input, max_len, on_bad, args.batch_size)?;
            return write_out(&args.output, &out);
        }
        if TaskKind::of(&model.config) == TaskKind::QuestionAnswering {
            let reader: crate::predict::Reader = pretrained::load(&model, &options)?;
            let (stride, on_bad) = (args.flags.stride, args.flags.on_bad_row);
            let how = crate::recipes::question_answering::Reading { decoding: &args.decoding, max_len, stride, on_bad };
            let out = crate::recipes::question_answering::predict(&reader, &args.input, &how, args.batch_size)?;
            return write_out(&args.output, &out);
        }
        let names = model.config.id2label().map(<[String]>::to_vec);
        let names = names.with_context(|| format!("{}: config.json has no id2label", model.dir.display()))?;
        let pre_split = args.input.as_os_str() != "-" && (is_conll(&args.input) || is_tagged_jsonl(&args.input));
        let out = if TaskKind::of(&model.config) == TaskKind::TokenClassification {
            let tagger: Tagger = pretrained::load(&model, &options)?;
            let texts =
                if pre_split { None } else { Some(read_texts(&args)?.into_iter().map(|e| e.text).collect::<Vec<_>>()) };
            let stride = args.flags.stride;
            let reading = Reading { tags: &args.tags, max_len, stride, on_bad: args.flags.on_bad_row };
            crate::recipes::token_classification::predict(
                &tagger,
                &args.input,
                texts.as_deref(),
                &reading,
                args.aggregation,
                args.batch_size,
            )?
        } else {
            let classifier: Classifier = pretrained::load(&model, &options)?;
            let examples = read_texts(&args)?;
            let (mode, stride) = (args.flags.long_text, args.flags.stride);
            let pieces = tokenize_long(&classifier.tokenizer, &examples, max_len, mode, stride)?;
            if pieces.long > 0 {
                tracing::info!(
                    "{} of {} texts longer than {max_len} tokens (--long-text {mode:?})",
                    pieces.long,
                    examples.len()
                );
            }
            let logits = classifier.logits(&pieces.items, args.batch_size, Spread::Alone)?;
            let logits = pool_documents(&logits, &pieces.doc_of, examples.len(), args.flags.window_pool);
            let outputs = Vec::<Vec<f32>>::try_from(classifier.outputs(&logits))?;
            let thresholds = read_thresholds(&model.dir, &names)?;
            let csv = args.output.extension().is_some_and(|e| e == "csv");
            render(classifier.model.kind, &examples, &outputs, &names, thresholds.as_deref(), csv)?
        };
        write_out(&args.output, &out)?;
        if args.output.as_os_str() != "-" {
            tracing::info!("wrote predictions to {}", args.output.display());
        }
        Ok(())
    }
}

/// The texts to predict: standard input line by line, or a data file's text column.
fn read_texts(args: &Predict) -> Result<Vec<Example>> {
    let mut flags = args.flags.clone();
    if args.input.as_os_str() == "-" && flags.format.is_none() {
        flags.format = Some(Format::Lines);
    }
    Ok(flags.read(&args.input, false)?.examples)
}

/// One line per text: JSONL, or CSV with a header.
fn render(
    kind: TaskKind,
    examples: &[Example],
    outputs: &[Vec<f32>],
    names: &[String],
    thresholds: Option<&[f32]>,
    csv: bool,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let prob_columns = names.iter().map(|n| csv_field(&format!("prob_{n}")));
    if csv {
        let header: Vec<String> = match kind {
            TaskKind::Regression => vec!["text".into(), "score".into()],
            TaskKind::Rerank => vec!["query".into(), "passage".into(), "score".into()],
            TaskKind::MultiLabel => ["text".to_string(), "labels".into()].into_iter().chain(prob_columns).collect(),
            _ => ["text".to_string(), "label".into(), "score".into()].into_iter().chain(prob_columns).collect(),
        };
        writeln!(out, "{}", header.join(","))?;
    }
    let sets = decide(outputs, thresholds);
    for ((ex, p), set) in examples.iter().zip(outputs).zip(&sets) {
        let best = crate::predict::argmax(p);
        let chosen: Vec<&str> = names.iter().zip(set).filter(|(_, on)| **on).map(|(n, _)| n.as_str()).collect();
        let probabilities: serde_json::Map<String, serde_json::Value> =
            names.iter().zip(p).map(|(n, v)| (n.clone(), json!(v))).collect();
        let probs = p.iter().map(|v| format!("{v:.6}"));
        let line = match (kind, csv) {
            (TaskKind::Regression, false) => json!({"text": ex.text, "score": p[0]}).to_string(),
            (TaskKind::Regression, true) => format!("{},{:.6}", csv_field(&ex.text), p[0]),
            (TaskKind::Rerank, false) => json!({"query": ex.text, "passage": ex.pair, "score": p[0]}).to_string(),
            (TaskKind::Rerank, true) => {
                let passage = csv_field(ex.pair.as_deref().unwrap_or_default());
                format!("{},{passage},{:.6}", csv_field(&ex.text), p[0])
            }
            (TaskKind::MultiLabel, false) => {
                json!({"text": ex.text, "labels": chosen, "probabilities": probabilities}).to_string()
            }
            (TaskKind::MultiLabel, true) => [csv_field(&ex.text), csv_field(&chosen.join(";"))]
                .into_iter()
                .chain(probs)
                .collect::<Vec<_>>()
                .join(","),
            (_, false) => {
                json!({"text": ex.text, "label": names[best], "score": p[best], "probabilities": probabilities})
                    .to_string()
            }
            (_, true) => [csv_field(&ex.text), csv_field(&names[best]), format!("{:.6}", p[best])]
                .into_iter()
                .chain(probs)
                .collect::<Vec<_>>()
                .join(","),
        };
        writeln!(out, "{line}")?;
    }
    Ok(out)
}

/// Writes predictions to a file or standard output.
pub fn write_out(output: &std::path::Path, out: &[u8]) -> Result<()> {
    if output.as_os_str() == "-" {
        std::io::stdout().write_all(out)?;
    } else {
        crate::fsutil::atomic_write(output, out)?;
    }
    Ok(())
}
