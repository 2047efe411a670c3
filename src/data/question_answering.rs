//! Extractive question answering: questions about contexts with answers as character spans,
//! read from SQuAD's JSON (v1.1 and v2.0) or flat JSONL (`id, question, context, answers {text,
//! answer_start}`), and cut into windows as transformers' `run_qa.py` cuts them: the question
//! whole in every window, the context in pieces of what is left of `--max-len`, consecutive
//! pieces sharing `--doc-stride` tokens (`truncation="only_second"`, `return_overflowing_tokens`).
//!
//! A context is tokenised once however many questions ask about it (CUAD asks 41 of every
//! contract), and a window is only a question, a range of context tokens and its target: its
//! token ids are made when a batch needs them (`QaSet::encoded`).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::batching::Encoded;
use super::labelled::{OnBadRow, jsonl_lines, open_text};
use crate::error::Marked;
use crate::tokenizer::Tokenizer;

/// A gold answer: its text and where it starts in the context (in characters).
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerSpan {
    pub text: String,
    pub start: usize,
}

impl AnswerSpan {
    /// The characters it covers.
    pub fn chars(&self) -> Range<usize> {
        self.start..self.start + self.text.chars().count()
    }
}

/// A question about one of the contexts, with its gold answers (none: unanswerable, or no gold).
#[derive(Debug, Clone)]
pub struct Question {
    pub id: String,
    pub question: String,
    /// Index into `QaData::contexts`.
    pub context: usize,
    pub answers: Vec<AnswerSpan>,
    /// Whether the data gave answers at all (SQuAD v2's `is_impossible` questions do, as none).
    pub has_gold: bool,
    /// The file and the question's id, for messages.
    pub at: String,
}

/// Questions and the contexts they ask about (each context once).
#[derive(Debug, Clone, Default)]
pub struct QaData {
    pub contexts: Vec<String>,
    pub questions: Vec<Question>,
}

impl QaData {
    /// Questions without gold answers, each about its own context (served or explained
    /// questions): ids are their indices, `at` says "input N".
    pub fn unanswered<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> QaData {
        let mut data = QaData::default();
        for (i, (question, context)) in pairs.into_iter().enumerate() {
            data.contexts.push(context.to_string());
            data.questions.push(Question {
                id: i.to_string(),
                question: question.to_string(),
                context: i,
                answers: vec![],
                has_gold: false,
                at: format!("input {i}"),
            });
        }
        data
    }
}

/// Whether a file holds questions with contexts: SQuAD's JSON (`{"data": [{"paragraphs": ...}]}`)
/// or JSONL whose first object has `question` and `context`.
pub fn is_question_answering(path: &Path) -> bool {
    let Ok(mut reader) = open_text(path) else { return false };
    let mut head = vec![0u8; 1 << 16];
    let n = std::io::Read::read(&mut reader, &mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]);
    let first = head.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let squad = head.trim_start().starts_with('{') && head.contains("\"paragraphs\"") && head.contains("\"data\"");
    let flat =
        serde_json::from_str::<Value>(first).is_ok_and(|v| v.get("question").is_some() && v.get("context").is_some());
    squad || flat
}

/// Reads questions from SQuAD JSON or flat JSONL. A question whose answer does not occur in its
/// context where it says is an error naming it, or skipped (with `OnBadRow::Skip`, listed).
pub fn read_questions(path: &Path, on_bad: OnBadRow) -> Result<(QaData, Vec<String>)> {
    read(path, on_bad).data_error()
}

fn read(path: &Path, on_bad: OnBadRow) -> Result<(QaData, Vec<String>)> {
    let mut reader = Reader { data: QaData::default(), skipped: vec![], on_bad, known: HashMap::new() };
    let mut text = String::new();
    let squad = {
        let mut r = open_text(path)?;
        std::io::Read::read_to_string(&mut r, &mut text).with_context(|| format!("{}: not UTF-8", path.display()))?;
        serde_json::from_str::<Value>(&text).ok().filter(|v| v.get("data").is_some())
    };
    match squad {
        Some(json) => reader.squad(path, &json)?,
        None => {
            drop(text);
            jsonl_lines(path, |at, line| {
                let line = line.map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
                let row: Value = serde_json::from_str(&line).with_context(|| format!("{at}: not a JSON object"))?;
                reader.flat(&at.to_string(), &row)
            })?;
        }
    }
    if reader.data.questions.is_empty() {
        bail!("{}: no questions", path.display());
    }
    Ok((reader.data, reader.skipped))
}

struct Reader {
    data: QaData,
    skipped: Vec<String>,
    on_bad: OnBadRow,
    /// Context text -> its index, so a context asked about on several lines is kept once.
    known: HashMap<String, usize>,
}

impl Reader {
    fn context(&mut self, text: &str) -> usize {
        if let Some(&i) = self.known.get(text) {
            return i;
        }
        self.data.contexts.push(text.to_string());
        self.known.insert(text.to_string(), self.data.contexts.len() - 1);
        self.data.contexts.len() - 1
    }

    /// SQuAD: `data[].paragraphs[].{context, qas[].{id, question, answers[], is_impossible}}`.
    fn squad(&mut self, path: &Path, json: &Value) -> Result<()> {
        let file = path.display();
        let articles = json["data"].as_array().with_context(|| format!("{file}: \"data\" is not a list"))?;
        for (a, article) in articles.iter().enumerate() {
            let paragraphs = article["paragraphs"]
                .as_array()
                .with_context(|| format!("{file}: data[{a}] has no \"paragraphs\" list"))?;
            for (p, paragraph) in paragraphs.iter().enumerate() {
                let at = format!("{file}: data[{a}].paragraphs[{p}]");
                let context = paragraph["context"].as_str().with_context(|| format!("{at}: no \"context\""))?;
                let qas = paragraph["qas"].as_array().with_context(|| format!("{at}: no \"qas\" list"))?;
                let c = self.context(context);
                for (q, qa) in qas.iter().enumerate() {
                    let id = qa["id"].as_str().map_or_else(|| format!("{a}.{p}.{q}"), str::to_string);
                    let answers = qa.get("answers").map(squad_answers).transpose();
                    self.add(format!("{file}: question {id}"), id, qa["question"].as_str(), c, answers)?;
                }
            }
        }
        Ok(())
    }

    /// A flat row: `{id, question, context, answers}` with answers as `{text: [...],
    /// answer_start: [...]}` (the datasets layout) or a list of `{text, answer_start}`.
    fn flat(&mut self, at: &str, row: &Value) -> Result<()> {
        let Some(context) = row["context"].as_str() else { return self.bad(format!("{at}: no \"context\" string")) };
        let c = self.context(context);
        let id = match &row["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => at.rsplit(':').next().unwrap_or(at).to_string(),
        };
        let answers = match row.get("answers") {
            None | Some(Value::Null) => None,
            Some(Value::Object(columns)) => Some(columnar_answers(columns)),
            Some(list) => Some(squad_answers(list)),
        }
        .transpose();
        self.add(format!("{at}: question {id}"), id, row["question"].as_str(), c, answers)
    }

    fn add(
        &mut self,
        at: String,
        id: String,
        question: Option<&str>,
        context: usize,
        answers: Result<Option<Vec<AnswerSpan>>, String>,
    ) -> Result<()> {
        let Some(question) = question else { return self.bad(format!("{at}: no \"question\" string")) };
        let answers = match answers {
            Ok(a) => a,
            Err(e) => return self.bad(format!("{at}: {e}")),
        };
        let text = &self.data.contexts[context];
        for a in answers.iter().flatten() {
            let found: String = text.chars().skip(a.start).take(a.text.chars().count()).collect();
            if found != a.text || a.text.is_empty() {
                return self.bad(format!(
                    "{at}: answer {:?} is not at character {} of the context (found {found:?})",
                    a.text, a.start
                ));
            }
        }
        let question = Question {
            id,
            // run_qa.py strips the left of questions: some of SQuAD's start with many spaces.
            question: question.trim_start().to_string(),
            context,
            has_gold: answers.is_some(),
            answers: answers.unwrap_or_default(),
            at,
        };
        self.data.questions.push(question);
        Ok(())
    }

    fn bad(&mut self, message: String) -> Result<()> {
        match self.on_bad {
            OnBadRow::Error => bail!("{message}"),
            OnBadRow::Skip => {
                self.skipped.push(message);
                Ok(())
            }
        }
    }
}

/// `[{"text", "answer_start"}, ...]`.
fn squad_answers(list: &Value) -> Result<Vec<AnswerSpan>, String> {
    let list = list.as_array().ok_or("\"answers\" is neither a list nor {text, answer_start}")?;
    list.iter()
        .map(|a| match (a["text"].as_str(), a["answer_start"].as_u64()) {
            (Some(text), Some(start)) => Ok(AnswerSpan { text: text.to_string(), start: start as usize }),
            _ => Err(format!("answer {a} lacks a \"text\" string or an \"answer_start\" number")),
        })
        .collect()
}

/// `{"text": [...], "answer_start": [...]}`.
fn columnar_answers(columns: &serde_json::Map<String, Value>) -> Result<Vec<AnswerSpan>, String> {
    let texts = columns.get("text").and_then(Value::as_array).ok_or("answers has no \"text\" list")?;
    let starts = columns.get("answer_start").and_then(Value::as_array).ok_or("answers has no \"answer_start\" list")?;
    if texts.len() != starts.len() {
        return Err(format!("answers has {} texts but {} starts", texts.len(), starts.len()));
    }
    texts
        .iter()
        .zip(starts)
        .map(|(t, s)| match (t.as_str(), s.as_u64()) {
            (Some(text), Some(start)) => Ok(AnswerSpan { text: text.to_string(), start: start as usize }),
            _ => Err(format!("answer ({t}, {s}) is not (string, number)")),
        })
        .collect()
}

/// A context's tokens (no special tokens): ids and character offsets.
#[derive(Debug, Clone, Default)]
pub struct ContextTokens {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

/// A window: a question and a piece of its context (token indices into the context's tokens),
/// with its training target.
#[derive(Debug, Clone)]
pub struct QaWindow {
    pub question: usize,
    pub piece: Range<usize>,
    /// Tokens in the window, special tokens included.
    pub len: usize,
    /// Start and end position of the answer in the window; (0, 0), the first token, where the
    /// window holds no answer (SQuAD v2's and run_qa's convention).
    pub target: (i64, i64),
}

/// Questions cut into windows for a tokenizer.
pub struct QaSet {
    pub data: QaData,
    pub contexts: Vec<ContextTokens>,
    /// Each question's tokens (no special tokens).
    questions: Vec<tokenizers::Encoding>,
    pub windows: Vec<QaWindow>,
    /// Where the context starts in a window whose question has one token: the template's
    /// tokens before the question and between the two segments.
    context_start_one: usize,
}

impl QaSet {
    /// Tokenises every context once and every question, and cuts windows of at most `max_len`
    /// tokens, consecutive pieces of a context sharing `stride` tokens. A question too long to
    /// leave more than `stride` tokens of context is an error naming it.
    pub fn new(tok: &Tokenizer, data: QaData, max_len: usize, stride: usize) -> Result<QaSet> {
        let texts: Vec<&str> = data.contexts.iter().map(String::as_str).collect();
        let contexts: Vec<ContextTokens> = tok
            .encode_plain(&texts)?
            .iter()
            .map(|e| ContextTokens { ids: e.get_ids().to_vec(), offsets: e.get_offsets().to_vec() })
            .collect();
        let asked: Vec<&str> = data.questions.iter().map(|q| q.question.as_str()).collect();
        let questions = tok.encode_plain(&asked)?;
        let specials = tok.pair_special_tokens();
        let probe = tok.pair_window(&questions_probe(tok)?, &[tok.unk_id], &[(0, 1)])?;
        let context_start_one = probe.get_sequence_ids().iter().position(|s| *s == Some(1)).unwrap_or(0);
        let mut set = QaSet { data, contexts, questions, windows: vec![], context_start_one };
        for (q, question) in set.data.questions.iter().enumerate() {
            let asked = set.questions[q].len();
            let room = max_len.saturating_sub(asked + specials);
            if room <= stride {
                crate::error::refuse!(
                    "{}: the question has {asked} tokens, which with the {specials} special tokens and --doc-stride \
                     {stride} leaves no room for the context in --max-len {max_len}",
                    question.at
                );
            }
            let context = &set.contexts[question.context];
            for piece in pieces(context.ids.len(), room, stride) {
                let start = set.context_start(q);
                let target = target(&context.offsets, &piece, &question.answers, start);
                set.windows.push(QaWindow { question: q, len: asked + specials + piece.len(), piece, target });
            }
        }
        Ok(set)
    }

    /// Where the context starts in question `q`'s windows.
    pub fn context_start(&self, q: usize) -> usize {
        self.context_start_one + self.questions[q].len() - 1
    }

    pub fn lengths(&self) -> Vec<usize> {
        self.windows.iter().map(|w| w.len).collect()
    }

    /// A window's tokens with the template, as the model reads them.
    pub fn encoded(&self, tok: &Tokenizer, w: usize) -> Result<Encoded> {
        Ok(Encoded::from(&self.encoding(tok, w)?))
    }

    /// A window as the tokenizer gives it (type ids, special tokens' mask, sequence ids; the
    /// context's tokens have no strings).
    pub fn encoding(&self, tok: &Tokenizer, w: usize) -> Result<tokenizers::Encoding> {
        let window = &self.windows[w];
        let context = &self.contexts[self.data.questions[window.question].context];
        let piece = window.piece.clone();
        tok.pair_window(&self.questions[window.question], &context.ids[piece.clone()], &context.offsets[piece])
    }

    /// The context's characters under each position of window `w` (None outside the context).
    pub fn char_spans(&self, w: usize) -> Vec<Option<(usize, usize)>> {
        let window = &self.windows[w];
        let context = &self.contexts[self.data.questions[window.question].context];
        let start = self.context_start(window.question);
        let mut spans = vec![None; window.len];
        for (i, t) in window.piece.clone().enumerate() {
            spans[start + i] = Some(context.offsets[t]);
        }
        spans
    }

    /// Keeps every window that holds an answer and, of those that hold none, `keep` (a share,
    /// drawn with `seed`); the order of the rest is unchanged. Returns how many were dropped.
    pub fn thin_null_windows(&mut self, keep: NullWindows, seed: u64) -> usize {
        let null: Vec<usize> = (0..self.windows.len()).filter(|&w| self.windows[w].target == (0, 0)).collect();
        let answered = self.windows.len() - null.len();
        let kept = match keep {
            NullWindows::All => return 0,
            NullWindows::Balanced => answered.min(null.len()),
            NullWindows::Share(f) => ((null.len() as f64 * f).round() as usize).min(null.len()),
        };
        let mut drop = null;
        drop.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut dropped = vec![false; self.windows.len()];
        for &w in &drop[kept..] {
            dropped[w] = true;
        }
        let before = self.windows.len();
        let mut i = 0;
        self.windows.retain(|_| {
            i += 1;
            !dropped[i - 1]
        });
        before - self.windows.len()
    }
}

/// A question of one token, for finding where the template puts the context.
fn questions_probe(tok: &Tokenizer) -> Result<tokenizers::Encoding> {
    Ok(tokenizers::Encoding::from_tokens(vec![tokenizers::Token::new(tok.unk_id, String::new(), (0, 1))], 0))
}

/// Which training windows that hold no answer to keep (`--null-windows`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NullWindows {
    All,
    /// As many as hold an answer, as CUAD's training does (`get_balanced_dataset`).
    Balanced,
    Share(f64),
}

/// The flag's spelling, which `FromStr` reads back.
impl std::fmt::Display for NullWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NullWindows::All => write!(f, "all"),
            NullWindows::Balanced => write!(f, "balanced"),
            NullWindows::Share(share) => write!(f, "{share}"),
        }
    }
}

impl std::str::FromStr for NullWindows {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(NullWindows::All),
            "balanced" => Ok(NullWindows::Balanced),
            share => match share.parse::<f64>() {
                Ok(f) if f > 0.0 && f <= 1.0 => Ok(NullWindows::Share(f)),
                _ => Err(format!("{share:?}: all, balanced, or a share in (0, 1]")),
            },
        }
    }
}

/// The context pieces of `len` tokens that overflowing truncation to `room` tokens with `stride`
/// makes (tokenizers' `Encoding::truncate`): starts every `room - stride` tokens until a piece
/// reaches the end; one piece (maybe empty) where it all fits.
pub fn pieces(len: usize, room: usize, stride: usize) -> Vec<Range<usize>> {
    if room >= len {
        return std::iter::once(0..len).collect();
    }
    let mut out = Vec::new();
    for start in (0..len).step_by(room - stride) {
        let stop = (start + room).min(len);
        out.push(start..stop);
        if stop == len {
            break;
        }
    }
    out
}

/// A window's target: the first gold answer that lies wholly in the piece, as positions in the
/// window (the first token whose start is at or before the answer's, the last whose end is at or
/// after its end: run_qa's rule, kept to the piece's own tokens); (0, 0) where none does.
fn target(offsets: &[(usize, usize)], piece: &Range<usize>, answers: &[AnswerSpan], at: usize) -> (i64, i64) {
    if piece.is_empty() {
        return (0, 0);
    }
    let (first, last) = (offsets[piece.start].0, offsets[piece.end - 1].1);
    for answer in answers {
        let chars = answer.chars();
        if first <= chars.start && last >= chars.end {
            let start = piece.clone().take_while(|&t| offsets[t].0 <= chars.start).last().unwrap_or(piece.start);
            let end = piece.clone().rev().take_while(|&t| offsets[t].1 >= chars.end).last().unwrap_or(piece.end - 1);
            let position = |t: usize| (at + t - piece.start) as i64;
            return (position(start), position(end));
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_step_by_room_less_stride_until_one_reaches_the_end() {
        assert_eq!(pieces(5, 8, 2), vec![0..5]);
        assert_eq!(pieces(10, 4, 1), vec![0..4, 3..7, 6..10]);
        assert_eq!(pieces(11, 4, 1), vec![0..4, 3..7, 6..10, 9..11]);
        assert_eq!(pieces(0, 4, 1), vec![0..0]);
    }

    #[test]
    fn a_target_is_the_tokens_covering_the_first_answer_inside_the_piece() {
        // Tokens: "the"(0,3) "tenant"(4,10) "pays"(11,15) "rent"(16,20)
        let offsets = [(0, 3), (4, 10), (11, 15), (16, 20)];
        let rent = AnswerSpan { text: "rent".into(), start: 16 };
        let tenant = AnswerSpan { text: "enant pa".into(), start: 5 };
        // The context starts at position 5 of the window.
        assert_eq!(target(&offsets, &(0..4), std::slice::from_ref(&rent), 5), (8, 8));
        assert_eq!(target(&offsets, &(0..4), &[tenant.clone(), rent.clone()], 5), (6, 7));
        // Not wholly inside: the next answer, or none.
        assert_eq!(target(&offsets, &(0..2), &[rent.clone(), tenant.clone()], 5), (0, 0));
        assert_eq!(target(&offsets, &(1..3), &[rent, tenant], 5), (5, 6));
    }
}
