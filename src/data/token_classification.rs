//! Tagged sentences for token classification (NER and other tagging): reading CoNLL files and
//! JSONL `{"tokens": [...], "tags": [...]}`, and cutting tokenised sentences into windows of at
//! most `--max-len` tokens with `--stride` tokens of overlap, in which every word is predicted
//! exactly once (by the window where it has the most context).

use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::batching::Encoded;
use super::labelled::{Location, OnBadRow, jsonl_lines, open_text};
use crate::error::Marked;

/// A sentence as words, with one tag per word when the data has tags.
#[derive(Debug, Clone)]
pub struct TaggedSentence {
    pub words: Vec<String>,
    pub tags: Option<Vec<String>>,
    pub at: Location,
}

/// CoNLL by extension (`.conll`, `.iob`, `.bio`), or a `.txt` file that starts with a
/// `-DOCSTART-` line as CoNLL-2003's files do.
pub fn is_conll(path: &Path) -> bool {
    if path.is_dir() {
        return false;
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_lowercase);
    match ext.as_deref() {
        Some("conll" | "conllu" | "iob" | "iob2" | "bio") => true,
        Some("txt") => open_text(path).ok().is_some_and(|r| {
            let first = BufReader::new(r).lines().map_while(Result::ok).find(|l| !l.trim().is_empty());
            first.is_some_and(|l| l.starts_with("-DOCSTART-"))
        }),
        _ => false,
    }
}

/// Whether sentences known to be tagged (the task says so) are CoNLL rather than JSONL:
/// `is_conll`'s names and `-DOCSTART-` files, and any other file whose first line is not a JSON
/// object (`word tag` columns without `-DOCSTART-`, as WNUT and most exported NER data come).
fn tagged_as_conll(path: &Path) -> bool {
    if is_conll(path) {
        return true;
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_lowercase);
    if path.is_dir() || matches!(ext.as_deref(), Some("jsonl" | "ndjson" | "json")) {
        return false;
    }
    open_text(path).ok().is_some_and(|r| {
        let first = BufReader::new(r).lines().map_while(Result::ok).find(|l| !l.trim().is_empty());
        first.is_some_and(|l| !l.trim_start().starts_with('{'))
    })
}

/// Where the tag is in a CoNLL line.
#[derive(Debug, Clone, Copy)]
pub enum TagColumn {
    Last,
    /// 1-based column (the word is column 1).
    Nth(usize),
}

/// Reads CoNLL (by `tagged_as_conll`) or JSONL tagged sentences; bad sentences stop the run or are
/// skipped (and counted in the returned messages) by `on_bad`.
pub fn read_tagged(
    path: &Path,
    column: TagColumn,
    with_tags: bool,
    on_bad: OnBadRow,
) -> Result<(Vec<TaggedSentence>, Vec<String>)> {
    read_sentences(path, column, with_tags, on_bad).data_error()
}

fn read_sentences(
    path: &Path,
    column: TagColumn,
    with_tags: bool,
    on_bad: OnBadRow,
) -> Result<(Vec<TaggedSentence>, Vec<String>)> {
    let mut sentences = Vec::new();
    let mut skipped = Vec::new();
    let mut sink = |row: Result<TaggedSentence, (Location, String)>| -> Result<()> {
        match row {
            Ok(s) => sentences.push(s),
            Err((at, why)) => match on_bad {
                OnBadRow::Error => bail!("{at}: {why} (pass --on-bad-row skip to skip such sentences)"),
                OnBadRow::Skip => skipped.push(format!("{at}: {why}")),
            },
        }
        Ok(())
    };
    if tagged_as_conll(path) {
        read_conll(path, column, with_tags, &mut sink)?;
    } else {
        read_tagged_jsonl(path, with_tags, &mut sink)?;
    }
    if sentences.is_empty() {
        bail!("{}: no usable sentences ({} skipped)", path.display(), skipped.len());
    }
    Ok((sentences, skipped))
}

type Sink<'a> = dyn FnMut(Result<TaggedSentence, (Location, String)>) -> Result<()> + 'a;

/// One word per line (`word ... tag`), a blank line between sentences, `-DOCSTART-` lines skipped.
fn read_conll(path: &Path, column: TagColumn, with_tags: bool, sink: &mut Sink) -> Result<()> {
    let reader = BufReader::new(open_text(path)?);
    // The sentence being read, and the first thing wrong with it.
    let mut current: Option<(TaggedSentence, Option<String>)> = None;
    let flush = |current: &mut Option<(TaggedSentence, Option<String>)>, sink: &mut Sink| match current.take() {
        Some((s, None)) => sink(Ok(s)),
        Some((s, Some(why))) => sink(Err((s.at, why))),
        None => Ok(()),
    };
    for (i, line) in reader.split(b'\n').enumerate() {
        let at = Location { file: path.to_path_buf(), line: i as u64 + 1 };
        let line = line.with_context(|| format!("{at}: read error"))?;
        // A line that is not UTF-8 spoils its sentence (skipped with it under --on-bad-row skip).
        let line = String::from_utf8(line).unwrap_or_else(|_| {
            let (_, error) = current.get_or_insert_with(|| {
                (TaggedSentence { words: vec![], tags: with_tags.then(Vec::new), at: at.clone() }, None)
            });
            error.get_or_insert(format!("line {}: not valid UTF-8", at.line));
            "\u{fffd}".to_string()
        });
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || fields[0] == "-DOCSTART-" {
            flush(&mut current, sink)?;
            continue;
        }
        let (sentence, error) = current.get_or_insert_with(|| {
            (TaggedSentence { words: vec![], tags: with_tags.then(Vec::new), at: at.clone() }, None)
        });
        sentence.words.push(fields[0].to_string());
        if let Some(tags) = &mut sentence.tags {
            let index = match column {
                TagColumn::Last => fields.len() - 1,
                TagColumn::Nth(n) => n - 1,
            };
            match fields.get(index) {
                Some(tag) if index > 0 => tags.push(tag.to_string()),
                _ if error.is_none() => {
                    *error = Some(format!("line {}: {} column(s), no tag (see --tag-column)", at.line, fields.len()))
                }
                _ => {}
            }
        }
    }
    flush(&mut current, sink)
}

fn read_tagged_jsonl(path: &Path, with_tags: bool, sink: &mut Sink) -> Result<()> {
    jsonl_lines(path, |at, line| match line {
        Ok(line) => sink(tagged_json(&line, with_tags, at)),
        Err(why) => sink(Err((at, why))),
    })
}

/// `{"tokens": [...], "tags": [...]}` (or `ner_tags`), checked.
fn tagged_json(line: &str, with_tags: bool, at: Location) -> Result<TaggedSentence, (Location, String)> {
    let obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| (at.clone(), format!("not a JSON object: {e}")))?;
    let strings = |key: &str| -> Option<Result<Vec<String>, String>> {
        let list = obj.get(key)?.as_array().map(|a| {
            a.iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    v => Err(format!("{key:?} holds {v}, not a string")),
                })
                .collect()
        });
        Some(list.unwrap_or_else(|| Err(format!("{key:?} is not a list"))))
    };
    let words = strings("tokens").unwrap_or_else(|| Err("no \"tokens\" list".into())).map_err(|e| (at.clone(), e))?;
    if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
        return Err((at, "an empty sentence or an empty token".into()));
    }
    let tags = match with_tags {
        false => None,
        true => Some(
            strings("tags")
                .or_else(|| strings("ner_tags"))
                .unwrap_or_else(|| Err("no \"tags\" list".into()))
                .map_err(|e| (at.clone(), e))?,
        ),
    };
    if let Some(t) = &tags
        && t.len() != words.len()
    {
        return Err((at, format!("{} tokens but {} tags", words.len(), t.len())));
    }
    Ok(TaggedSentence { words, tags, at })
}

/// A stretch of one sentence that fits the model: its tokens with `[CLS]`/`[SEP]` (or the
/// family's), which word each token belongs to, and the words it predicts.
#[derive(Debug, Clone, PartialEq)]
pub struct TagWindow {
    pub encoded: Encoded,
    /// Index of the sentence (or text) it comes from.
    pub sentence: usize,
    /// The word of each token (None for the special tokens).
    pub word_ids: Vec<Option<usize>>,
    /// The words whose prediction comes from this window, with the position of their first token.
    pub predicts: Vec<(usize, usize)>,
}

/// Windows of a tokenised sentence (`word_ids`: each token's word, from an encoding without
/// special tokens), each opened and closed by the tokenizer's `(cls, sep)` ids: at most
/// `max_len` tokens with those, consecutive windows sharing about `stride` tokens (at least a
/// word), cut only between words (a word longer than a window keeps its first tokens). Each word is predicted by exactly one window: shared words are split at
/// the middle of the overlap. (A word the tokenizer turns into no token has no prediction.)
pub(crate) fn windows(
    (cls, sep): (u32, u32),
    ids: &[u32],
    word_ids: &[Option<u32>],
    sentence: usize,
    max_len: usize,
    stride: usize,
) -> Vec<TagWindow> {
    let room = max_len.saturating_sub(2).max(1);
    let stride = stride.min(room / 2);
    // Each word that has tokens, with its token range.
    let mut spans: Vec<(usize, Range<usize>)> = Vec::new();
    for (t, w) in word_ids.iter().enumerate() {
        let Some(w) = w.map(|w| w as usize) else { continue };
        match spans.last_mut() {
            Some((last, range)) if *last == w => range.end = t + 1,
            _ => spans.push((w, t..t + 1)),
        }
    }
    let cost = |s: usize| spans[s].1.len().min(room);
    let (mut starts, mut ends) = (vec![0], Vec::new());
    loop {
        let start = *starts.last().unwrap();
        let (mut end, mut used) = (start, 0);
        while end < spans.len() && (end == start || used + cost(end) <= room) {
            used += cost(end);
            end += 1;
        }
        ends.push(end);
        if end >= spans.len() {
            break;
        }
        let (mut next, mut overlap) = (end, 0);
        // About `stride` tokens of overlap, and at least one word where the window can spare it.
        while next > start + 1 && (overlap == 0 || overlap + cost(next - 1) <= stride) {
            overlap += cost(next - 1);
            next -= 1;
        }
        starts.push(next);
    }
    let owned_from = |k: usize| if k == 0 { 0 } else { (starts[k] + ends[k - 1]).div_ceil(2) };
    (0..starts.len())
        .map(|k| {
            let owned = owned_from(k)..if k + 1 < starts.len() { owned_from(k + 1) } else { spans.len() };
            let (mut ids_out, mut words_out, mut predicts) = (vec![cls], vec![None], Vec::new());
            for s in starts[k]..ends[k] {
                let (word, range) = &spans[s];
                if owned.contains(&s) {
                    predicts.push((*word, ids_out.len()));
                }
                ids_out.extend_from_slice(&ids[range.start..range.start + cost(s)]);
                words_out.extend((0..cost(s)).map(|_| Some(*word)));
            }
            ids_out.push(sep);
            words_out.push(None);
            let encoded = Encoded { type_ids: vec![0; ids_out.len()], ids: ids_out };
            TagWindow { encoded, sentence, word_ids: words_out, predicts }
        })
        .collect()
}

/// A JSONL file whose first object has a `tokens` list (pre-split sentences).
pub fn is_tagged_jsonl(path: &Path) -> bool {
    let name = path.to_string_lossy().to_lowercase();
    let jsonl = [".jsonl", ".ndjson", ".json", ".jsonl.gz"].iter().any(|e| name.ends_with(e));
    jsonl
        && open_text(path).ok().is_some_and(|r| {
            let first = BufReader::new(r).lines().map_while(Result::ok).find(|l| !l.trim().is_empty());
            first
                .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
                .is_some_and(|v| v["tokens"].is_array())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_is_predicted_once_by_the_window_with_most_context() {
        // 10 words of 1, 2 or 3 tokens (word w has w % 3 + 1), windows of 8 (6 + 2 specials).
        let mut word_ids = vec![];
        for w in 0..10u32 {
            word_ids.extend(std::iter::repeat_n(Some(w), w as usize % 3 + 1));
        }
        let ids: Vec<u32> = (100..100 + word_ids.len() as u32).collect();
        let windows = windows((1, 2), &ids, &word_ids, 0, 8, 2);
        let mut predicted: Vec<usize> = windows.iter().flat_map(|w| w.predicts.iter().map(|p| p.0)).collect();
        predicted.sort();
        assert_eq!(predicted, (0..10).collect::<Vec<_>>(), "each word exactly once");
        for w in &windows {
            assert!(w.encoded.len() <= 8 && w.encoded.ids[0] == 1 && *w.encoded.ids.last().unwrap() == 2);
            for &(word, first) in &w.predicts {
                assert_eq!(w.word_ids[first], Some(word));
                assert_ne!(w.word_ids[first - 1], Some(word), "the word's first token");
            }
        }
        assert!(windows.len() > 2, "the sentence needs several windows");
        // Consecutive windows overlap (by about the stride) and cut only between words.
        for pair in windows.windows(2) {
            let last_of_first = pair[0].word_ids.iter().rev().flatten().next().unwrap();
            let first_of_next = pair[1].word_ids.iter().flatten().next().unwrap();
            assert!(first_of_next <= last_of_first, "windows overlap");
        }
    }

    #[test]
    fn a_word_longer_than_the_window_keeps_its_first_tokens() {
        let word_ids = vec![Some(0), Some(1), Some(1), Some(1), Some(1), Some(1), Some(2)];
        let windows = windows((1, 2), &[5, 6, 7, 8, 9, 10, 11], &word_ids, 0, 5, 1);
        let predicted: Vec<usize> = windows.iter().flat_map(|w| w.predicts.iter().map(|p| p.0)).collect();
        assert_eq!(predicted, vec![0, 1, 2]);
        assert!(windows.iter().all(|w| w.encoded.len() <= 5));
    }
}
