//! Request batching: HTTP handlers queue jobs; one thread owns the model and runs whatever has
//! queued up while it was busy as one batch, bounded by --max-batch-tokens. A request that would
//! not fit waits for the next batch; one larger than the bound runs alone.

use std::sync::mpsc;

use anyhow::Result;
use serde_json::Value;
use tokio::sync::oneshot;

use super::engine::{Engine, Sequence};
use super::metrics::Metrics;

/// Why a job got no answer: the client's fault (HTTP 413/422) or the model's (500).
#[derive(Debug)]
pub enum Refusal {
    TooLong(String),
    Invalid(String),
    Failed(String),
}

pub type Answer = std::result::Result<Vec<Value>, Refusal>;

/// One request's sequences and where its answer goes.
pub struct Job {
    pub seqs: Vec<Sequence>,
    /// TEI's `truncate`: cut over-long inputs instead of refusing them.
    pub truncate: bool,
    pub reply: oneshot::Sender<Answer>,
}

pub struct Limits {
    pub max_len: usize,
    pub max_batch_tokens: usize,
}

/// Runs the batching loop on this thread until every sender is gone. `ready` hears once the
/// engine is loaded (or why it could not be).
pub fn run(
    make: impl FnOnce() -> Result<Engine>,
    jobs: mpsc::Receiver<Job>,
    limits: Limits,
    metrics: Metrics,
    ready: std::sync::mpsc::Sender<Result<EngineInfo>>,
) {
    let engine = match make() {
        Ok(engine) => {
            let _ = ready.send(Ok(EngineInfo { route: engine.route(), task: engine.task() }));
            engine
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut waiting: Option<(Job, usize)> = None;
    loop {
        let first = match waiting.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => match admit(&engine, job, &limits) {
                    Some(admitted) => admitted,
                    None => continue,
                },
                Err(_) => return,
            },
        };
        let mut tokens = first.1;
        let mut batch = vec![first.0];
        while let Ok(job) = jobs.try_recv() {
            let Some((job, n)) = admit(&engine, job, &limits) else { continue };
            if tokens + n > limits.max_batch_tokens {
                waiting = Some((job, n));
                break;
            }
            tokens += n;
            batch.push(job);
        }
        metrics.observe_batch(batch.iter().map(|j| j.seqs.len()).sum(), tokens);
        answer(&engine, batch, limits.max_len);
    }
}

/// What the HTTP side needs to know of the engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineInfo {
    pub route: &'static str,
    pub task: &'static str,
}

/// The job's size in tokens, or None after refusing it (an input over the limit without
/// `truncate`, or one the tokenizer cannot read).
fn admit(engine: &Engine, job: Job, limits: &Limits) -> Option<(Job, usize)> {
    if let Err(why) = engine.check(&job.seqs) {
        let _ = job.reply.send(Err(Refusal::Invalid(why)));
        return None;
    }
    match engine.lengths(&job.seqs, limits.max_len) {
        Ok(lengths) => {
            if let Some((i, n)) = lengths.iter().enumerate().find(|(_, n)| **n > limits.max_len)
                && !job.truncate
            {
                let why = format!(
                    "input {i} has {n} tokens, more than the {} this model takes (send \"truncate\": true to cut it)",
                    limits.max_len
                );
                let _ = job.reply.send(Err(Refusal::TooLong(why)));
                return None;
            }
            let tokens = lengths.iter().map(|&n| n.min(limits.max_len)).sum();
            Some((job, tokens))
        }
        Err(e) => {
            let _ = job.reply.send(Err(Refusal::Invalid(format!("{e:#}"))));
            None
        }
    }
}

/// Runs the batch as one call and hands each job its slice of the answers. If the batch fails,
/// each job is retried alone so one bad input fails only its own request.
fn answer(engine: &Engine, batch: Vec<Job>, max_len: usize) {
    let all: Vec<Sequence> = batch.iter().flat_map(|j| j.seqs.iter().cloned()).collect();
    match engine.answer(&all, max_len) {
        Ok(mut answers) => {
            for job in batch {
                let rest = answers.split_off(job.seqs.len());
                let _ = job.reply.send(Ok(std::mem::replace(&mut answers, rest)));
            }
        }
        Err(_) if batch.len() > 1 => {
            for job in batch {
                answer(engine, vec![job], max_len);
            }
        }
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Err(Refusal::Failed(format!("{e:#}"))));
            }
        }
    }
}
