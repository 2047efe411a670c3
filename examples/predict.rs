//! Predictions from code: labels and probabilities of a fine-tuned classifier.
//!
//! `cargo run --release --example predict -- [MODEL] [TEXT...]`: MODEL defaults to what the
//! `finetune` example writes (`target/examples/sentiment`).

use bertkit::predict::Classifier;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "target/examples/sentiment".into());
    let mut texts: Vec<String> = args.collect();
    if texts.is_empty() {
        texts = vec!["A wonderful film, I loved every minute.".into(), "Dull, slow and far too long.".into()];
    }

    let classifier = Classifier::load(&model)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (text, prediction) in texts.iter().zip(classifier.predict(&refs)?) {
        let scores: Vec<String> = prediction.scores.iter().map(|(label, p)| format!("{label} {p:.3}")).collect();
        println!("{:?}: {} ({})", text, prediction.labels.join(", "), scores.join(", "));
    }
    Ok(())
}
