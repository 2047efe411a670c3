//! The `bertkit` command line: one module per subcommand.

mod adapt;
mod launch;
pub mod sweep;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bertkit",
    version,
    about = "Fine-tune, further-pretrain and inspect BERT models (Hugging Face checkpoints, libtorch engine)"
)]
struct Cli {
    /// Only warnings and errors on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Config, parameter count, heads and tokenizer of a model directory or hub id.
    Inspect(bertkit::recipes::Inspect),
    /// Sentence vectors (pooled as the checkpoint says, or CLS, pooler, mean, last token) as JSON.
    Embed(bertkit::recipes::Embed),
    /// Hard negatives for (query, positive) pairs from a bi-encoder's ranking: training rows for
    /// --task rerank (query, passage, label) or --task embedding (anchor, positive, negatives).
    MineNegatives(bertkit::recipes::MineNegatives),
    /// Fine-tune a model on labelled data: one class, a set of classes or a score per text, a tag
    /// per word, sentence embeddings from related texts, or a reranker on (query, passage) pairs.
    Finetune(Box<bertkit::recipes::FineTune>),
    /// The metrics of a fine-tuned model on labelled data (by its task: accuracy/F1, micro/macro-F1, Pearson, entity F1).
    Evaluate(bertkit::recipes::Evaluate),
    /// What a fine-tuned model says of each text: label and probabilities, label set, score, or entities (JSONL or CSV).
    Predict(bertkit::recipes::Predict),
    /// How much of a labelled task a frozen model's features already solve: a linear probe,
    /// fitted on --train, scored on --eval.
    Probe(bertkit::recipes::Probe),
    /// Further pretraining: continue masked-language-model training on unlabelled domain text.
    Pretrain(bertkit::recipes::Pretrain),
    /// The most likely tokens for each `[MASK]` in a text.
    FillMask(bertkit::recipes::FillMask),
    /// The domain-adaptation study: pretrain on a corpus, fine-tune original and adapted, report.
    Adapt(adapt::Args),
    /// Before training: how finely the tokenizer cuts a domain's words and how far its
    /// vocabulary is from general text.
    DomainFit(bertkit::recipes::DomainFit),
    /// A model behind HTTP: /predict, /embed, /rerank or /fill-mask (text-embeddings-inference's shapes),
    /// with request batching, /health, /info and Prometheus /metrics.
    Serve(bertkit::serve::Serve),
    /// A grid or random search over training flags: one run directory per setting, a summary
    /// table and plot, the best run; resumable.
    Sweep(sweep::Args),
    /// Start a data-parallel run on this machine as torchrun does: `bertkit launch
    /// --nproc-per-node 2 -- finetune ...` (ranks, rendezvous, signals, a failed rank stops all).
    Launch(launch::Args),
    /// Attention of a layer/head (or all) for a sentence, as PNG, SVG or an HTML head view.
    Attention(bertkit::recipes::Attention),
    /// Which tokens a fine-tuned model's output depends on: integrated gradients, gradient ×
    /// input, attention rollout; any head, any text length, optionally beside a second model.
    Explain(bertkit::recipes::Explain),
    /// Two models (before/after training) over a labelled set: metrics, flipped predictions,
    /// per-layer representation similarity (CKA), per-head attention change; an HTML report.
    CompareModels(bertkit::recipes::CompareModels),
    /// Time training or inference steps on synthetic batches (one JSON line; see bench/).
    Bench(bertkit::recipes::Bench),
    /// A fine-tuned model's layers in int8, written only if its metric on --data drops by at
    /// most --max-drop points and it runs faster on this CPU; else refused with both numbers.
    Quantize(bertkit::recipes::Quantize),
}

/// Runs the command line; returns the process exit code. Errors print as one line.
pub fn main() -> i32 {
    // Like any Unix filter: `bertkit predict ... | head` ends quietly instead of panicking.
    // SAFETY: restoring the default disposition of a signal, before any thread is started.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    bertkit::torch_failure::install_panic_hook();
    let cli = Cli::parse();
    let level = if cli.quiet { tracing::Level::WARN } else { tracing::Level::INFO };
    // Colour codes only for a person at a terminal: a log file or a pipe gets plain lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Prints how a training run ended; returns the exit code (130/143 after SIGINT/SIGTERM).
fn conclude(trained: bertkit::recipes::Trained) -> anyhow::Result<i32> {
    let outcome = &trained.outcome;
    let exit_code = match outcome.stop {
        bertkit::train::Stop::Interrupted { exit_code } => exit_code,
        bertkit::train::Stop::Finished | bertkit::train::Stop::EarlyStopped => 0,
    };
    if !bertkit::distributed::is_main() {
        return Ok(exit_code);
    }
    if let Some((path, tuned)) = &trained.tuned {
        println!("with tuned thresholds ({}):\n{}", path.display(), tuned.summary);
    }
    if let Some(ev) = &outcome.best_evaluation {
        println!("{}", ev.summary);
    }
    if let Some((step, value)) = outcome.best {
        println!("best {} {value:.4} at step {step}", outcome.metric_for_best);
    }
    if exit_code == 0 {
        println!("model saved to {}", trained.output.display());
    }
    Ok(exit_code)
}

/// Parses and runs one command line in this process (used by `adapt` to chain commands).
fn run_args(argv: impl IntoIterator<Item = String>) -> anyhow::Result<i32> {
    let cli = Cli::try_parse_from(argv)?;
    dispatch(cli.command)
}

/// Checks a command line (without the program name) as `bertkit` would parse it, running
/// nothing: a bad flag or value is the parser's one-line message.
fn check_args(argv: &[String]) -> anyhow::Result<()> {
    Cli::try_parse_from(std::iter::once("bertkit".to_string()).chain(argv.iter().cloned()))
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{}", bertkit::values::clap_message(&e)))
}

fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Inspect(job) => job.run().map(|()| 0),
        Command::Embed(job) => job.run().map(|()| 0),
        Command::MineNegatives(job) => job.run().map(|()| 0),
        Command::Finetune(run) => conclude(run.run()?),
        Command::Evaluate(job) => job.run().map(|()| 0),
        Command::Predict(job) => job.run().map(|()| 0),
        Command::Probe(job) => job.run().map(|()| 0),
        Command::Pretrain(run) => conclude(run.run()?),
        Command::FillMask(job) => job.run().map(|()| 0),
        Command::Adapt(args) => adapt::run(args).map(|()| 0),
        Command::DomainFit(job) => job.run().map(|()| 0),
        Command::Serve(server) => server.run().map(|()| 0),
        Command::Sweep(args) => sweep::run(args).map(|()| 0),
        Command::Launch(args) => launch::run(args),
        Command::Attention(job) => job.run().map(|()| 0),
        Command::Explain(job) => job.run().map(|()| 0),
        Command::CompareModels(job) => job.run().map(|()| 0),
        Command::Bench(job) => job.run().map(|()| 0),
        Command::Quantize(job) => job.run().map(|()| 0),
    }
}
