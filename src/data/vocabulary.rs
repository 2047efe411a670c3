//! The words of a corpus as a tokenizer sees them: how often each occurs, how many pieces the
//! tokenizer cuts it into, and how much two corpora's vocabularies overlap. Gururangan et al.
//! (2020) compare domains by the overlap of their 10 000 most frequent words, stopwords excluded.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::corpus::{CorpusSpec, for_each_corpus_document};
use crate::tokenizer::Tokenizer;

/// English stopwords (NLTK's list), left out of the vocabulary overlap.
const STOPWORDS: &[&str] = &[
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours", "yourself", "yourselves",
    "he", "him", "his", "himself", "she", "her", "hers", "herself", "it", "its", "itself", "they", "them", "their",
    "theirs", "themselves", "what", "which", "who", "whom", "this", "that", "these", "those", "am", "is", "are", "was",
    "were", "be", "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an", "the",
    "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for", "with", "about", "against",
    "between", "into", "through", "during", "before", "after", "above", "below", "to", "from", "up", "down", "in",
    "out", "on", "off", "over", "under", "again", "further", "then", "once", "here", "there", "when", "where", "why",
    "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not", "only",
    "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don", "should", "now", "d", "ll",
    "m", "o", "re", "ve", "y",
];

/// How often each word occurs, as written (case kept: a cased tokenizer cuts "Lessee" and
/// "lessee" differently). Words are runs of letters and digits: punctuation, which every
/// tokenizer splits off before cutting words, separates them ("Party's" is "Party" and "s").
#[derive(Debug, Default)]
pub(crate) struct WordCounts {
    pub counts: HashMap<String, u64>,
    pub total: u64,
}

impl WordCounts {
    pub fn of_corpus(spec: &CorpusSpec) -> Result<Self> {
        let mut counts = WordCounts::default();
        for_each_corpus_document(spec, |doc| {
            counts.add_text(&doc);
            Ok(())
        })?;
        Ok(counts)
    }

    pub fn add_text(&mut self, text: &str) {
        let mut word = String::new();
        for c in text.chars() {
            if c.is_alphanumeric() {
                word.push(c);
            } else if !word.is_empty() {
                *self.counts.entry(std::mem::take(&mut word)).or_default() += 1;
                self.total += 1;
            }
        }
        if !word.is_empty() {
            *self.counts.entry(word).or_default() += 1;
            self.total += 1;
        }
    }

    /// The `n` most frequent words, lower-cased and stopwords left out, most frequent first
    /// (ties in alphabetical order).
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut lower: HashMap<String, u64> = HashMap::new();
        for (word, &count) in &self.counts {
            *lower.entry(word.to_lowercase()).or_default() += count;
        }
        let mut words: Vec<(String, u64)> =
            lower.into_iter().filter(|(w, _)| !STOPWORDS.contains(&w.as_str())).collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        words.truncate(n);
        words
    }
}

/// Share of `a`'s `n` most frequent words that are among `b`'s (the study's "vocabulary overlap").
pub(crate) fn overlap(a: &WordCounts, b: &WordCounts, n: usize) -> f64 {
    let ours = a.top(n);
    let theirs: std::collections::HashSet<String> = b.top(n).into_iter().map(|(w, _)| w).collect();
    ours.iter().filter(|(w, _)| theirs.contains(w)).count() as f64 / ours.len().max(1) as f64
}

/// The tokens of each distinct word of `counts` as the tokenizer cuts it in running text
/// (after a space, so byte-level BPE sees `Ġword` as it would mid-sentence).
pub(crate) fn pieces(tokenizer: &Tokenizer, counts: &WordCounts) -> Result<HashMap<String, Vec<String>>> {
    let words: Vec<&String> = counts.counts.keys().collect();
    let mut out = HashMap::with_capacity(words.len());
    for chunk in words.chunks(4096) {
        let texts: Vec<String> = chunk.iter().map(|w| format!(" {w}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        for (word, enc) in chunk.iter().zip(tokenizer.encode_plain(&refs)?) {
            out.insert((*word).clone(), enc.get_tokens().to_vec());
        }
    }
    Ok(out)
}

/// A domain word worth a token of its own.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct NewWord {
    /// In the tokenizer's normal form (lower case for an uncased BERT).
    pub word: String,
    pub count: u64,
    /// The tokens it was cut into, and their ids.
    pub pieces: Vec<String>,
    pub piece_ids: Vec<u32>,
}

/// The `n` alphabetic words whose own token saves the most tokens over the corpus (count ×
/// (pieces − 1)), spellings that normalise alike counted together; most useful first.
pub(crate) fn most_useful_words(tokenizer: &Tokenizer, counts: &WordCounts, n: usize) -> Result<Vec<NewWord>> {
    let pieces = pieces(tokenizer, counts)?;
    let mut merged: HashMap<String, (u64, &Vec<String>)> = HashMap::new();
    for (word, &count) in &counts.counts {
        let cut = &pieces[word];
        if cut.len() < 2 || !word.chars().all(char::is_alphabetic) {
            continue;
        }
        merged.entry(tokenizer.normalized(word)?).or_insert((0, cut)).0 += count;
    }
    let saved = |(count, cut): &(u64, &Vec<String>)| count * (cut.len() as u64 - 1);
    let mut ranked: Vec<(String, (u64, &Vec<String>))> = merged.into_iter().collect();
    ranked.sort_by(|a, b| saved(&b.1).cmp(&saved(&a.1)).then_with(|| a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(n)
        .map(|(word, (count, cut))| {
            let piece_ids = cut
                .iter()
                .map(|p| tokenizer.token_to_id(p).context("a piece the tokenizer made"))
                .collect::<Result<_>>()?;
            Ok(NewWord { word, count, pieces: cut.clone(), piece_ids })
        })
        .collect()
}

/// How finely the tokenizer cuts a corpus's running words.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Fragmentation {
    pub words: u64,
    pub distinct_words: usize,
    pub tokens_per_word: f64,
    /// Share of word occurrences cut into two pieces or more.
    pub split_share: f64,
}

pub(crate) fn fragmentation(counts: &WordCounts, pieces: &HashMap<String, Vec<String>>) -> Fragmentation {
    let (mut tokens, mut split) = (0u64, 0u64);
    for (word, &count) in &counts.counts {
        let n = pieces.get(word).map_or(1, Vec::len) as u64;
        tokens += n * count;
        split += if n > 1 { count } else { 0 };
    }
    let words = counts.total.max(1) as f64;
    Fragmentation {
        words: counts.total,
        distinct_words: counts.counts.len(),
        tokens_per_word: tokens as f64 / words,
        split_share: split as f64 / words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_counts_and_overlap() {
        let mut a = WordCounts::default();
        a.add_text("The lessee's sub-lease: the Lessee shall repair; 30 days.");
        assert_eq!(a.total, 11);
        assert_eq!((a.counts["lessee"], a.counts["Lessee"], a.counts["s"], a.counts["sub"]), (1, 1, 1, 1));
        let top: Vec<(String, u64)> = a.top(3);
        assert_eq!(top, [("lessee".into(), 2), ("30".into(), 1), ("days".into(), 1)], "stopwords out, case folded");
        let mut b = WordCounts::default();
        b.add_text("days and days of lessee");
        assert_eq!(overlap(&b, &a, 10), 1.0);
        // a's top: lessee, 30, days, lease, repair, shall, sub ("the" and "s" are stopwords).
        assert!((overlap(&a, &b, 10) - 2.0 / 7.0).abs() < 1e-12, "{}", overlap(&a, &b, 10));
    }
}
