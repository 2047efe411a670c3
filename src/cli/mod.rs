//! The `bertkit` command line: one module per subcommand.

mod data_flags;
mod embed;
mod evaluate;
mod finetune;
mod inspect;
mod predict;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bertkit", version, about = "Fine-tune, further-pretrain and inspect BERT models (Hugging Face checkpoints, libtorch engine)")]
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
    Inspect(inspect::Args),
    /// Sentence vectors (CLS, pooler or mean of tokens) as JSON.
    Embed(embed::Args),
    /// Fine-tune a model with a classification head on labelled texts.
    Finetune(finetune::Args),
    /// Accuracy, macro-F1, per-class scores and confusion matrix of a classifier on labelled data.
    Evaluate(evaluate::Args),
    /// Label and class probabilities for each text (JSONL or CSV).
    Predict(predict::Args),
}

/// Runs the command line; returns the process exit code. Errors print as one line.
pub fn main() -> i32 {
    // Like any Unix filter: `bertkit predict ... | head` ends quietly instead of panicking.
    // SAFETY: restoring the default disposition of a signal, before any thread is started.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let level = if cli.quiet { tracing::Level::WARN } else { tracing::Level::INFO };
    tracing_subscriber::fmt().with_max_level(level).with_target(false).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args).map(|()| 0),
        Command::Embed(args) => embed::run(args).map(|()| 0),
        Command::Finetune(args) => finetune::run(args),
        Command::Evaluate(args) => evaluate::run(args).map(|()| 0),
        Command::Predict(args) => predict::run(args).map(|()| 0),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
