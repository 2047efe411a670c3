//! The request side of serving: each request's sequences are checked and tokenised on the HTTP
//! threads while the model thread runs the batch before. Tokenising on the model thread left the
//! model idle for 75-110 ms of every 0.5 s batch of 32 IMDB reviews.

use std::sync::Arc;

use anyhow::Result;

use super::batcher::Refusal;
use super::engine::Sequence;
use crate::data::{Encoded, Example, Location, LongText, tokenize_long};
use crate::tokenizer::Tokenizer;

/// A request made ready for the model thread.
pub(crate) struct Prepared {
    pub seqs: Vec<Sequence>,
    /// Tokens it adds to a batch (what --max-batch-tokens bounds).
    pub tokens: usize,
    /// The model's inputs, cut to --max-input-length, for engines that take them as they are
    /// (sequence-level heads); empty for the others, which tokenise as their task needs.
    pub encoded: Vec<Encoded>,
}

/// What the HTTP side knows of the engine, and the tokenizer to read requests with.
#[derive(Clone)]
pub(crate) struct Reader {
    pub route: &'static str,
    pub task: &'static str,
    tokenizer: Arc<Tokenizer>,
    max_len: usize,
    how: Reading,
}

/// How an engine's requests are read (`Engine::reader` fills it in).
#[derive(Clone)]
pub(crate) struct Reading {
    /// Token classification reads long texts in windows: no length limit, lengths counted up
    /// to `max_len`.
    pub windows: bool,
    /// The engine takes `Prepared::encoded`.
    pub encodes: bool,
    /// Text pairs are refused (all but sequence-level heads).
    pub singles_only: bool,
    /// Fill-mask: the token every text must contain.
    pub mask_token: Option<String>,
    /// Question answering: the tokens consecutive windows share, which with the question must
    /// leave room for the context.
    pub question_stride: Option<usize>,
}

impl Reader {
    pub fn new(route: &'static str, task: &'static str, tokenizer: Tokenizer, max_len: usize, how: Reading) -> Self {
        Reader { route, task, tokenizer: Arc::new(tokenizer), max_len, how }
    }

    /// Checks and tokenises a request; `truncate` is TEI's (cut over-long inputs instead of
    /// refusing them).
    pub fn prepare(&self, seqs: Vec<Sequence>, truncate: bool) -> Result<Prepared, Refusal> {
        self.check(&seqs).map_err(Refusal::Invalid)?;
        let invalid = |e: anyhow::Error| Refusal::Invalid(format!("{e:#}"));
        if self.how.encodes && truncate {
            // The model's inputs are all a truncating request needs: one tokenisation.
            let encoded = self.encode(&seqs).map_err(invalid)?;
            let tokens = encoded.iter().map(|e| e.ids.len()).sum();
            return Ok(Prepared { seqs, tokens, encoded });
        }
        let whole = self.encode_whole(&seqs).map_err(invalid)?;
        let cap = if self.how.windows { self.max_len } else { usize::MAX };
        let lengths: Vec<usize> = whole.iter().map(|e| e.len().min(cap)).collect();
        if let Some((i, n)) = lengths.iter().enumerate().find(|(_, n)| **n > self.max_len)
            && !truncate
        {
            return Err(Refusal::TooLong(format!(
                "input {i} has {n} tokens, more than the {} this model takes (send \"truncate\": true to cut it)",
                self.max_len
            )));
        }
        // A sequence-level engine reads no windows, so nothing here is longer than max_len (it
        // would have been refused): the whole encodings are its inputs, not tokenised again.
        let encoded = if self.how.encodes { whole.iter().map(Encoded::from).collect() } else { vec![] };
        let tokens = lengths.iter().map(|&n| n.min(self.max_len)).sum();
        Ok(Prepared { seqs, tokens, encoded })
    }

    /// Why these sequences cannot be answered by this model, if they cannot.
    fn check(&self, seqs: &[Sequence]) -> std::result::Result<(), String> {
        if self.how.singles_only && seqs.iter().any(|s| s.pair.is_some()) {
            return Err(format!("{} takes single texts, not pairs", self.task));
        }
        if let Some(stride) = self.how.question_stride {
            let questions: Vec<&str> = seqs.iter().map(|s| s.text.as_str()).collect();
            let encoded = self.tokenizer.encode_plain(&questions).map_err(|e| format!("{e:#}"))?;
            let specials = self.tokenizer.pair_special_tokens();
            if let Some((i, e)) = encoded.iter().enumerate().find(|(_, e)| e.len() + specials + stride >= self.max_len)
            {
                return Err(format!(
                    "question {i} has {} tokens: with the {specials} special tokens and the windows' stride of {stride} \
                     it leaves no room for the context in {} tokens",
                    e.len(),
                    self.max_len
                ));
            }
        }
        match &self.how.mask_token {
            Some(mask) => match seqs.iter().position(|s| !s.text.contains(mask.as_str())) {
                Some(i) => Err(format!("input {i} has no {mask} token")),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Each sequence with the model's special tokens and not truncated: its length is what
    /// --max-input-length limits.
    fn encode_whole(&self, seqs: &[Sequence]) -> Result<Vec<tokenizers::Encoding>> {
        let texts: Vec<&str> = seqs.iter().map(|s| s.text.as_str()).collect();
        let pairs: Vec<&str> = seqs.iter().map(|s| s.pair.as_deref().unwrap_or("")).collect();
        let has_pairs = seqs.iter().any(|s| s.pair.is_some());
        self.tokenizer.encode_batch_whole(&texts, has_pairs.then_some(&pairs[..]))
    }

    /// The model's inputs, cut to `max_len` as `evaluate` cuts them.
    fn encode(&self, seqs: &[Sequence]) -> Result<Vec<Encoded>> {
        let at = Location { file: "request".into(), line: 0 };
        let examples: Vec<Example> = seqs
            .iter()
            .map(|s| Example { text: s.text.clone(), pair: s.pair.clone(), label: None, at: at.clone() })
            .collect();
        Ok(tokenize_long(&self.tokenizer, &examples, self.max_len, LongText::Truncate, 0)?.items)
    }
}
