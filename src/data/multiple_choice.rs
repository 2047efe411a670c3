//! Multiple-choice data: a context, its N choices and the right one's index, in three layouts
//! (JSONL, or CSV with the same columns):
//!
//! - SWAG (transformers' run_swag.py): `sent1`, `sent2`, `ending0` ... `endingN`, `label`; each
//!   pair is `sent1` and `sent2 + " " + ending`.
//! - RACE: `article`, `question`, `options` (a list), `answer` (a letter, or an index); each pair
//!   is the article and the question with the option in its blank (`_`), else after it.
//! - Plain: `context` (or `prompt`), `choices` (or `endings`, a list), `label` (an index, or
//!   `answer`), an optional `question` put before each choice.
//!
//! Every question of a file has the same number of choices (a batch is questions x choices).
//! A bad row is an error naming its line, or skipped (`OnBadRow::Skip`, listed).

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Map, Value};

use super::labelled::{Location, jsonl_lines, open_text};
use super::{Encoded, OnBadRow};
use crate::error::Marked;
use crate::tokenizer::Tokenizer;

/// A question with its choices, each choice as the second text of its pair.
#[derive(Debug, Clone)]
pub struct ChoiceQuestion {
    pub id: String,
    pub context: String,
    /// The second text of each pair (question and choice, as the layout joins them).
    pub pairs: Vec<String>,
    /// The choices as the file writes them (what predictions name).
    pub choices: Vec<String>,
    /// The right choice's index; None in data to predict.
    pub label: Option<usize>,
    /// The file and line, for messages.
    pub at: String,
}

/// Whether a file's first row is multiple-choice data in one of the layouts.
pub fn is_multiple_choice(path: &Path) -> bool {
    let mut first = None;
    let _ = rows(path, |_, row| {
        first = row.ok();
        Err(anyhow::anyhow!("first row read"))
    });
    first.is_some_and(|row| layout(&row).is_some())
}

/// The questions of a JSONL or CSV file, and the bad rows skipped (with `OnBadRow::Skip`).
pub fn read_choices(path: &Path, on_bad: OnBadRow) -> Result<(Vec<ChoiceQuestion>, Vec<String>)> {
    read(path, on_bad).data_error()
}

fn read(path: &Path, on_bad: OnBadRow) -> Result<(Vec<ChoiceQuestion>, Vec<String>)> {
    let (mut questions, mut skipped) = (Vec::new(), Vec::new());
    rows(path, |at, row| {
        match row.and_then(|row| question(&row, &at)) {
            Ok(q) => questions.push(q),
            Err(why) if on_bad == OnBadRow::Skip => skipped.push(format!("{at}: {why}")),
            Err(why) => bail!("{at}: {why}"),
        }
        Ok(())
    })?;
    if let Some(first) = questions.first() {
        let n = first.pairs.len();
        if let Some(q) = questions.iter().find(|q| q.pairs.len() != n) {
            bail!(
                "{}: {} choices, where {} has {n}: every question of a file needs the same number",
                q.at,
                q.pairs.len(),
                first.at
            );
        }
    }
    Ok((questions, skipped))
}

/// Each row of a JSONL or CSV file as a JSON object, with its location.
fn rows(path: &Path, mut each: impl FnMut(Location, Result<Map<String, Value>, String>) -> Result<()>) -> Result<()> {
    let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !csv {
        return jsonl_lines(path, |at, line| {
            let row = line.and_then(|l| serde_json::from_str(&l).map_err(|e| format!("not a JSON object: {e}")));
            each(at, row)
        });
    }
    let mut reader = csv::Reader::from_reader(open_text(path)?);
    let headers = reader.headers().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?.clone();
    for (i, record) in reader.records().enumerate() {
        let at = Location { file: path.to_path_buf(), line: i as u64 + 2 };
        let row = record.map_err(|e| e.to_string()).map(|r| {
            headers.iter().zip(r.iter()).map(|(h, v)| (h.to_string(), Value::String(v.to_string()))).collect()
        });
        each(at, row)?;
    }
    Ok(())
}

/// The layouts, by the columns that name them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    Swag,
    Race,
    Plain,
}

fn layout(row: &Map<String, Value>) -> Option<Layout> {
    let has = |k: &str| row.contains_key(k);
    if has("sent1") && has("ending0") {
        Some(Layout::Swag)
    } else if has("article") && has("options") {
        Some(Layout::Race)
    } else if (has("context") || has("prompt")) && (has("choices") || has("endings")) {
        Some(Layout::Plain)
    } else {
        None
    }
}

/// One row as a question, or what is wrong with it.
fn question(row: &Map<String, Value>, at: &Location) -> Result<ChoiceQuestion, String> {
    let text = |k: &str| match row.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{k:?} is not a string: {other}")),
        None => Err(format!("no {k:?}")),
    };
    let list = |k: &str| match row.get(k) {
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(String::from).ok_or(format!("{k:?} holds a non-string"))).collect()
        }
        // A CSV cell holding a JSON list.
        Some(Value::String(s)) => serde_json::from_str::<Vec<String>>(s).map_err(|_| format!("{k:?} is not a list")),
        _ => Err(format!("no {k:?} list")),
    };
    let (context, pairs, choices, label) = match layout(row) {
        Some(Layout::Swag) => {
            let header = text("sent2").unwrap_or_default();
            let endings: Vec<String> = (0..).map_while(|i| text(&format!("ending{i}")).ok()).collect();
            let pairs = endings.iter().map(|e| format!("{header} {e}")).collect();
            (text("sent1")?, pairs, endings, row.get("label"))
        }
        Some(Layout::Race) => {
            let (question, options) = (text("question")?, list("options")?);
            let pair =
                |o: &String| if question.contains('_') { question.replace('_', o) } else { format!("{question} {o}") };
            (text("article")?, options.iter().map(pair).collect(), options, row.get("answer"))
        }
        Some(Layout::Plain) => {
            let context = text("context").or_else(|_| text("prompt"))?;
            let choices = list("choices").or_else(|_| list("endings"))?;
            let question = text("question").ok().filter(|q| !q.is_empty());
            let pairs = choices.iter().map(|c| question.as_ref().map_or(c.clone(), |q| format!("{q} {c}"))).collect();
            (context, pairs, choices, row.get("label").or(row.get("answer")))
        }
        None => {
            return Err(
                "neither SWAG's (sent1, ending0, ...), RACE's (article, options) nor context and choices".into()
            );
        }
    };
    if choices.len() < 2 {
        return Err(format!("{} choice(s): a question needs at least two", choices.len()));
    }
    let label =
        label.filter(|v| !v.is_null() && v.as_str() != Some("")).map(|v| index(v, choices.len())).transpose()?;
    let id = ["id", "example_id", "video-id"].iter().find_map(|k| text(k).ok().or(row.get(*k).map(Value::to_string)));
    Ok(ChoiceQuestion {
        id: id.unwrap_or_else(|| at.line.to_string()),
        context,
        pairs,
        choices,
        label,
        at: at.to_string(),
    })
}

/// A label as an index below `n`: a number, its text, or a letter (RACE's "A" ... ).
fn index(v: &Value, n: usize) -> Result<usize, String> {
    let i = match v {
        Value::Number(x) => x.as_u64().map(|x| x as usize),
        Value::String(s) if s.len() == 1 && s.as_bytes()[0].is_ascii_uppercase() => {
            Some((s.as_bytes()[0] - b'A') as usize)
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match i {
        Some(i) if i < n => Ok(i),
        _ => Err(format!("label {v} is not one of the {n} choices (an index from 0, or a letter from A)")),
    }
}

/// Questions tokenised: each question's pairs one after the other.
pub struct ChoiceSet {
    pub questions: Vec<ChoiceQuestion>,
    /// `questions.len() x choices` pairs, question-major.
    pub pairs: Vec<Encoded>,
    pub choices: usize,
    /// Pairs longer than `max_len` and cut (longest first, as transformers' `truncation=True`).
    pub truncated: usize,
}

impl ChoiceSet {
    pub fn new(tok: &Tokenizer, questions: Vec<ChoiceQuestion>, max_len: usize) -> Result<ChoiceSet> {
        let choices = questions.first().map_or(0, |q| q.pairs.len());
        let firsts: Vec<&str> = questions.iter().flat_map(|q| q.pairs.iter().map(|_| q.context.as_str())).collect();
        let seconds: Vec<&str> = questions.iter().flat_map(|q| q.pairs.iter().map(String::as_str)).collect();
        let super::Tokenized { items: pairs, truncated } = super::tokenize(tok, &firsts, Some(&seconds), max_len)?;
        Ok(ChoiceSet { questions, pairs, choices, truncated })
    }

    /// A question's length for batching: its longest pair.
    pub fn lengths(&self) -> Vec<usize> {
        self.pairs.chunks(self.choices.max(1)).map(|c| c.iter().map(Encoded::len).max().unwrap_or(0)).collect()
    }

    /// The pairs of questions `batch`, question-major.
    pub fn batch_pairs(&self, batch: &[usize]) -> Vec<&Encoded> {
        batch.iter().flat_map(|&q| &self.pairs[q * self.choices..(q + 1) * self.choices]).collect()
    }

    /// The right choices of questions `batch` (-100 where a question has none).
    pub fn labels(&self, batch: &[usize]) -> Vec<i64> {
        batch.iter().map(|&q| self.questions[q].label.map_or(-100, |l| l as i64)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ChoiceQuestion, String> {
        let at = Location { file: "t.jsonl".into(), line: 3 };
        question(&serde_json::from_str(json).unwrap(), &at)
    }

    #[test]
    fn the_three_layouts_make_run_swag_and_race_pairs() {
        let swag = parse(r#"{"sent1": "She opens the door.", "sent2": "She", "ending0": "walks in.", "ending1": "flies.", "label": 0}"#).unwrap();
        assert_eq!(swag.pairs, ["She walks in.", "She flies."]);
        assert_eq!((swag.context.as_str(), swag.label, swag.id.as_str()), ("She opens the door.", Some(0), "3"));
        let race = parse(
            r#"{"article": "A.", "question": "He went to _ .", "options": ["x", "y", "z"], "answer": "C", "id": "r1"}"#,
        )
        .unwrap();
        assert_eq!((race.pairs[2].as_str(), race.label, race.id.as_str()), ("He went to z .", Some(2), "r1"));
        let race = parse(r#"{"article": "A.", "question": "Why?", "options": ["x", "y"], "answer": 1}"#).unwrap();
        assert_eq!(race.pairs, ["Why? x", "Why? y"]);
        let plain = parse(r#"{"context": "c", "choices": ["a", "b"]}"#).unwrap();
        assert_eq!((plain.pairs.clone(), plain.label), (vec!["a".to_string(), "b".to_string()], None));
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        let e = parse(r#"{"context": "c", "choices": ["a", "b"], "label": 2}"#).unwrap_err();
        assert!(e.contains("label 2 is not one of the 2 choices"), "{e}");
        let e = parse(r#"{"context": "c", "choices": ["a"], "label": 0}"#).unwrap_err();
        assert!(e.contains("at least two"), "{e}");
        let e = parse(r#"{"text": "c"}"#).unwrap_err();
        assert!(e.contains("SWAG's"), "{e}");
    }
}
