//! Request batching: HTTP handlers queue jobs, checked and tokenised (`reader.rs`); one thread
//! owns the model and runs whatever has queued up while it was busy as one batch, bounded by
//! --max-batch-tokens. A request that would not fit waits for the next batch; one larger than
//! the bound runs alone.

use std::sync::mpsc;

use anyhow::Result;
use serde_json::Value;
use tokio::sync::oneshot;

use super::engine::{Engine, Sequence};
use super::metrics::Metrics;
use super::reader::{Prepared, Reader};
use crate::data::Encoded;

/// Why a job got no answer: the client's fault (HTTP 413/422) or the model's (500).
#[derive(Debug)]
pub(crate) enum Refusal {
    TooLong(String),
    Invalid(String),
    Failed(String),
}

pub(crate) type Answer = std::result::Result<Vec<Value>, Refusal>;

/// One request, ready for the model, and where its answer goes.
pub(crate) struct Job {
    pub request: Prepared,
    pub reply: oneshot::Sender<Answer>,
}

pub(crate) struct Limits {
    pub max_len: usize,
    pub max_batch_tokens: usize,
}

/// Runs the batching loop on this thread until every sender is gone. `ready` hears once the
/// engine is loaded (with how requests are read for it) or why it could not be.
pub(crate) fn run(
    make: impl FnOnce() -> Result<Engine>,
    jobs: mpsc::Receiver<Job>,
    limits: Limits,
    metrics: Metrics,
    ready: std::sync::mpsc::Sender<Result<Reader>>,
) {
    let engine = match make() {
        Ok(engine) => {
            let _ = ready.send(Ok(engine.reader(limits.max_len)));
            engine
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut waiting: Option<Job> = None;
    loop {
        let first = match waiting.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut tokens = first.request.tokens;
        let mut batch = vec![first];
        while let Ok(job) = jobs.try_recv() {
            if tokens + job.request.tokens > limits.max_batch_tokens {
                waiting = Some(job);
                break;
            }
            tokens += job.request.tokens;
            batch.push(job);
        }
        metrics.observe_batch(batch.iter().map(|j| j.request.seqs.len()).sum(), tokens);
        answer(&engine, batch, limits.max_len);
    }
}

/// Runs the batch as one call and hands each job its slice of the answers. If the batch fails,
/// each job is retried alone so one bad input fails only its own request.
fn answer(engine: &Engine, batch: Vec<Job>, max_len: usize) {
    let seqs: Vec<Sequence> = batch.iter().flat_map(|j| j.request.seqs.iter().cloned()).collect();
    let encoded: Vec<Encoded> = batch.iter().flat_map(|j| j.request.encoded.iter().cloned()).collect();
    match engine.answer(&seqs, &encoded, max_len) {
        Ok(mut answers) => {
            for job in batch {
                let rest = answers.split_off(job.request.seqs.len());
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
