//! Entity-level scores of tag sequences, as seqeval computes them in its default mode (the one
//! transformers' examples and `evaluate.load("seqeval")` use): entities are read from IOB1,
//! IOB2 or IOBES tags with seqeval's chunk rules, and an entity counts only when its type and
//! both ends match.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{ClassScores, f1, ratio};

/// An entity: type, first and last position (inclusive) in the concatenated sequences.
type Entity = (String, usize, usize);

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EntityReport {
    pub sentences: u64,
    /// Micro-averaged over entity types (seqeval's `precision_score` etc.).
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Tags predicted right, over all tagged words.
    pub accuracy: f64,
    /// Per entity type, sorted by name.
    pub per_type: Vec<ClassScores>,
}

/// The prefix (B, I, E, S, O) and type of a tag (`B-PER` -> ('B', "PER"); `O` -> ('O', "_")).
fn split_tag(tag: &str) -> (char, &str) {
    let prefix = tag.chars().next().unwrap_or('O');
    let rest = tag.get(prefix.len_utf8()..).unwrap_or("");
    let kind = rest.split_once('-').map_or(rest, |(_, k)| k);
    (prefix, if kind.is_empty() { "_" } else { kind })
}

fn end_of_chunk(prev: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!(prev, 'E' | 'S')
        || (matches!(prev, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev != 'O' && prev != '.' && prev_type != kind)
}

fn start_of_chunk(prev: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != kind)
}

/// seqeval's `get_entities` over sentences joined with `O` between them.
pub fn entities(sentences: &[Vec<String>]) -> BTreeSet<Entity> {
    let flat: Vec<&str> = sentences.iter().flat_map(|s| s.iter().map(String::as_str).chain(["O"])).collect();
    let (mut prev, mut prev_type, mut begin) = ('O', "_", 0);
    let mut found = BTreeSet::new();
    for (i, tag) in flat.iter().chain(["O"].iter()).enumerate() {
        let (t, kind) = split_tag(tag);
        if end_of_chunk(prev, t, prev_type, kind) {
            found.insert((prev_type.to_string(), begin, i - 1));
        }
        if start_of_chunk(prev, t, prev_type, kind) {
            begin = i;
        }
        (prev, prev_type) = (t, kind);
    }
    found
}

fn count_by_type(set: &BTreeSet<Entity>) -> BTreeMap<&str, u64> {
    let mut counts = BTreeMap::new();
    for e in set {
        *counts.entry(e.0.as_str()).or_default() += 1;
    }
    counts
}

pub fn entity_report(predicted: &[Vec<String>], gold: &[Vec<String>]) -> EntityReport {
    assert_eq!(predicted.len(), gold.len());
    let (p, g) = (entities(predicted), entities(gold));
    let types: BTreeSet<&str> = p.iter().chain(&g).map(|e| e.0.as_str()).collect();
    let hits: BTreeSet<Entity> = p.intersection(&g).cloned().collect();
    let (hit, pred, true_) = (count_by_type(&hits), count_by_type(&p), count_by_type(&g));
    let per_type = types
        .iter()
        .map(|t| {
            let get = |m: &BTreeMap<&str, u64>| m.get(t).copied().unwrap_or(0);
            ClassScores::new(t, get(&hit), get(&pred), get(&true_))
        })
        .collect();
    let (precision, recall) = (ratio(hits.len() as u64, p.len() as u64), ratio(hits.len() as u64, g.len() as u64));
    let words: u64 = gold.iter().map(|s| s.len() as u64).sum();
    let right: u64 =
        predicted.iter().zip(gold).flat_map(|(p, g)| p.iter().zip(g)).filter(|(a, b)| a == b).count() as u64;
    EntityReport {
        sentences: gold.len() as u64,
        precision,
        recall,
        f1: f1(precision, recall),
        accuracy: ratio(right, words),
        per_type,
    }
}

impl EntityReport {
    pub fn table(&self) -> String {
        let (mut out, width) = super::scores_table(&self.per_type);
        out += &format!(
            "{:>width$}  precision {:.4}   recall {:.4}   f1 {:.4}   token accuracy {:.4}   ({} sentences)\n",
            "", self.precision, self.recall, self.f1, self.accuracy, self.sentences
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn seqeval_chunks_in_every_scheme() {
        // seqeval.metrics.sequence_labeling.get_entities on the same (flattened) inputs.
        let found = |s: &str| entities(&[tags(s)]).into_iter().collect::<Vec<_>>();
        let e = |t: &str, a, b| (t.to_string(), a, b);
        assert_eq!(found("B-PER I-PER O B-LOC"), vec![e("LOC", 3, 3), e("PER", 0, 1)]);
        // IOB1: an I- after O starts an entity; a type change splits.
        assert_eq!(found("I-ORG I-ORG I-PER O"), vec![e("ORG", 0, 1), e("PER", 2, 2)]);
        // IOBES.
        assert_eq!(found("S-LOC B-MISC E-MISC O"), vec![e("LOC", 0, 0), e("MISC", 1, 2)]);
        // Two sentences never join into one entity.
        assert_eq!(entities(&[tags("O B-PER"), tags("I-PER O")]).len(), 2);
    }

    #[test]
    fn report_counts_exact_matches_only() {
        let gold = vec![tags("B-PER I-PER O B-LOC"), tags("B-ORG O")];
        let pred = vec![tags("B-PER O O B-LOC"), tags("B-ORG O")];
        let r = entity_report(&pred, &gold);
        // predicted PER(0,0), LOC, ORG; gold PER(0,1), LOC, ORG -> 2 of 3 both ways.
        assert!((r.precision - 2.0 / 3.0).abs() < 1e-12 && (r.recall - 2.0 / 3.0).abs() < 1e-12, "{r:?}");
        assert_eq!(r.per_type.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["LOC", "ORG", "PER"]);
        assert_eq!(r.per_type[2].f1, 0.0);
        assert!((r.accuracy - 5.0 / 6.0).abs() < 1e-12);
    }
}
