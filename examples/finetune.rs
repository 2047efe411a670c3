//! Fine-tuning from code: a sentiment classifier on the demo's IMDB sample.
//!
//! `cargo run --release --example finetune -- [MODEL] [OUTPUT]`: MODEL defaults to the test
//! fixture tiny-bert (a tiny random model: the run takes seconds and learns little), e.g.
//! `.models/all-MiniLM-L6-v2` for a real one; OUTPUT to `target/examples/sentiment`.

use bertkit::recipes::FineTune;

fn main() -> anyhow::Result<()> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()); // colour only for a person at a terminal
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_ansi(ansi).init();
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "tests/fixtures/tiny-bert".into());
    let output = args.next().unwrap_or_else(|| "target/examples/sentiment".into());

    let mut run = FineTune::new(&model, "data/demo/imdb/train.csv", &output)?;
    run.eval = Some("data/demo/imdb/held_out.csv".into());
    run.data.text_column = "review".into();
    run.data.label_column = "sentiment".into();
    run.data.max_len = Some(128);
    run.new_head = true; // this data's labels, whatever head the checkpoint has
    run.cfg.hyper.max_steps = Some(30);
    run.cfg.hyper.lr = 1e-4;
    run.cfg.control.overwrite = true;
    let trained = run.run()?;

    let (step, accuracy) = trained.outcome.best.expect("the run evaluates at its end");
    println!(
        "best {} {accuracy:.3} at step {step}; model in {}",
        trained.outcome.metric_for_best,
        trained.output.display()
    );
    Ok(())
}
