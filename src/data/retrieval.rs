//! A search benchmark in BEIR's layout (what MTEB and sentence-transformers' evaluators read):
//! `queries.jsonl` (`_id`, `text`), `corpus.jsonl` (`_id`, `text`, optional `title`, joined as
//! BEIR joins them) and a qrels TSV (`query-id`, `corpus-id`, `score`, a header row; a score
//! above 0 is relevant).

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::labelled::{jsonl_lines, open_text};
use crate::error::Marked;

/// Queries and passages with their ids, and which passages are relevant to which query.
pub struct SearchData {
    pub query_ids: Vec<String>,
    pub queries: Vec<String>,
    pub passage_ids: Vec<String>,
    pub passages: Vec<String>,
    /// Per query (in `queries`' order), the indices of its relevant passages.
    pub relevant: Vec<BTreeSet<usize>>,
}

impl SearchData {
    /// Reads the three files; a qrels line naming an unknown id is an error that names it.
    pub fn read(queries: &Path, corpus: &Path, qrels: &Path) -> Result<SearchData> {
        let read = || -> Result<SearchData> {
            let (query_ids, queries) = read_texts(queries)?;
            let (passage_ids, passages) = read_texts(corpus)?;
            let relevant = read_qrels(qrels, &query_ids, &passage_ids)?;
            Ok(SearchData { query_ids, queries, passage_ids, passages, relevant })
        };
        read().data_error()
    }
}

/// The `_id` and text of each line (title and text joined by a space, as BEIR does).
fn read_texts(path: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    let mut seen = BTreeSet::new();
    jsonl_lines(path, |at, line| {
        let line = line.map_err(|why| anyhow::anyhow!("{at}: {why}"))?;
        let obj: Value = serde_json::from_str(&line).with_context(|| format!("{at}: not a JSON object"))?;
        let id = match &obj["_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => bail!("{at}: no \"_id\""),
        };
        let text = obj["text"].as_str().with_context(|| format!("{at}: no \"text\""))?;
        let title = obj["title"].as_str().unwrap_or_default();
        if !seen.insert(id.clone()) {
            bail!("{at}: _id {id:?} appears twice");
        }
        ids.push(id);
        texts.push(if title.is_empty() { text.to_string() } else { format!("{title} {text}") });
        Ok(())
    })?;
    if ids.is_empty() {
        bail!("{}: no lines", path.display());
    }
    Ok((ids, texts))
}

/// Relevant passages per query from a qrels TSV.
fn read_qrels(path: &Path, query_ids: &[String], passage_ids: &[String]) -> Result<Vec<BTreeSet<usize>>> {
    let index = |ids: &[String]| -> BTreeMap<String, usize> { ids.iter().cloned().zip(0..).collect() };
    let (queries, passages) = (index(query_ids), index(passage_ids));
    let mut relevant = vec![BTreeSet::new(); query_ids.len()];
    for (i, line) in std::io::BufReader::new(open_text(path)?).lines().enumerate().skip(1) {
        let line = line.with_context(|| format!("{}:{}: read error", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let fields: Vec<&str> = line.split('\t').collect();
        let [query, passage, score] = fields[..] else {
            bail!("{at}: expected query-id, corpus-id and score separated by tabs, found {} fields", fields.len())
        };
        let score: f64 = score.trim().parse().with_context(|| format!("{at}: score {score:?} is not a number"))?;
        let q = *queries.get(query).with_context(|| format!("{at}: query {query:?} is not in the queries file"))?;
        let p = *passages.get(passage).with_context(|| format!("{at}: passage {passage:?} is not in the corpus"))?;
        if score > 0.0 {
            relevant[q].insert(p);
        }
    }
    Ok(relevant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beir_files_and_a_qrels_line_naming_an_unknown_passage() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("q.jsonl"), "{\"_id\": \"q1\", \"text\": \"rent\"}\n{\"_id\": 2, \"text\": \"law\"}\n")
            .unwrap();
        std::fs::write(p("c.jsonl"), "{\"_id\": \"d1\", \"title\": \"Lease\", \"text\": \"pay rent\"}\n{\"_id\": \"d2\", \"text\": \"Delaware\"}\n").unwrap();
        std::fs::write(p("qrels.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t1\n2\td2\t1\n2\td1\t0\n").unwrap();
        let data = SearchData::read(&p("q.jsonl"), &p("c.jsonl"), &p("qrels.tsv")).unwrap();
        assert_eq!(data.passages[0], "Lease pay rent");
        assert_eq!(data.relevant, vec![BTreeSet::from([0]), BTreeSet::from([1])]);
        std::fs::write(p("qrels.tsv"), "query-id\tcorpus-id\tscore\nq1\td9\t1\n").unwrap();
        let err = SearchData::read(&p("q.jsonl"), &p("c.jsonl"), &p("qrels.tsv")).err().unwrap();
        assert!(format!("{err:#}").contains("qrels.tsv:2: passage \"d9\" is not in the corpus"), "{err:#}");
    }
}
